//! The Differentiable Neural Computer (Graves et al. 2016): an LSTM controller that reads from
//! and writes to an external memory through content lookup, usage-based allocation and a
//! temporal link matrix.

pub mod addressing;

use crate::error::{invalid, MemoryError, Result};
use crate::lstm::{LstmCell, LstmState};
use addressing as a;
use engram_layers::{Linear, LinearConfig};
use serde::{Deserialize, Serialize};
use tch::{nn, nn::Module, Device, Kind, Tensor};

/// Sizes of a DNC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct DncConfig {
    /// Input features per time step.
    pub input: i64,
    /// Output features per time step.
    pub output: i64,
    /// LSTM controller units.
    pub hidden: i64,
    /// Memory slots `N`.
    pub slots: i64,
    /// Word size `W`.
    pub word: i64,
    /// Read heads `R`.
    pub reads: i64,
}

impl DncConfig {
    /// Length of the interface vector: `R·W` read keys, `R` read strengths, `W` write key, 1 write
    /// strength, `W` erase, `W` write vector, `R` free gates, allocation and write gates, `3R` read modes.
    pub fn interface_size(&self) -> i64 {
        self.reads * self.word + 3 * self.word + 5 * self.reads + 3
    }
    fn validate(&self) -> Result<()> {
        if [self.input, self.output, self.hidden, self.slots, self.word, self.reads].iter().any(|&v| v <= 0) {
            return Err(invalid(format!("every DNC size must be positive: {self:?}")));
        }
        Ok(())
    }
}

/// The recurrent state carried between time steps.
#[derive(Debug)]
pub struct DncState {
    /// Controller state.
    pub lstm: LstmState,
    /// `[B, N, W]`.
    pub memory: Tensor,
    /// `[B, N]` in `[0, 1]`.
    pub usage: Tensor,
    /// `[B, N, N]`, zero diagonal.
    pub link: Tensor,
    /// `[B, N]`.
    pub precedence: Tensor,
    /// `[B, N]`.
    pub write_weights: Tensor,
    /// `[B, R, N]`.
    pub read_weights: Tensor,
    /// `[B, R, W]`.
    pub read_vectors: Tensor,
}

/// A DNC.
///
/// ```
/// use engram_memory::dnc::{Dnc, DncConfig};
/// let vs = tch::nn::VarStore::new(tch::Device::Cpu);
/// let cfg = DncConfig { input: 5, output: 4, hidden: 16, slots: 8, word: 6, reads: 2 };
/// let dnc = Dnc::new(&vs.root(), cfg).unwrap();
/// let x = tch::Tensor::zeros([3, 7, 5], (tch::Kind::Float, tch::Device::Cpu)); // [B, T, input]
/// let (y, _state) = dnc.forward(&x).unwrap();
/// assert_eq!(y.size(), vec![3, 7, 4]);
/// ```
#[derive(Debug)]
pub struct Dnc {
    cfg: DncConfig,
    controller: LstmCell,
    interface: Linear,
    output: Linear,
}

fn oneplus(x: &Tensor) -> Tensor {
    1.0 + x.softplus()
}

impl Dnc {
    /// Creates the parameters under `path`.
    pub fn new(path: &nn::Path, cfg: DncConfig) -> Result<Self> {
        cfg.validate()?;
        Ok(Dnc {
            cfg,
            controller: LstmCell::new(&(path / "controller"), cfg.input + cfg.reads * cfg.word, cfg.hidden),
            interface: Linear::new(path / "interface", LinearConfig::new(cfg.hidden, cfg.interface_size())),
            output: Linear::new(path / "output", LinearConfig::new(cfg.hidden + cfg.reads * cfg.word, cfg.output)),
        })
    }

    /// The configuration.
    pub fn config(&self) -> DncConfig {
        self.cfg
    }

    /// Empty memory, zero usage and links, for a batch.
    pub fn initial_state(&self, batch: i64, device: Device) -> DncState {
        let c = &self.cfg;
        let z = |s: &[i64]| Tensor::zeros(s, (Kind::Float, device));
        DncState {
            lstm: self.controller.zero_state(batch, device),
            memory: z(&[batch, c.slots, c.word]),
            usage: z(&[batch, c.slots]),
            link: z(&[batch, c.slots, c.slots]),
            precedence: z(&[batch, c.slots]),
            write_weights: z(&[batch, c.slots]),
            read_weights: z(&[batch, c.reads, c.slots]),
            read_vectors: z(&[batch, c.reads, c.word]),
        }
    }

    /// One time step: `x [B, input]` → (`y [B, output]`, next state).
    pub fn step(&self, x: &Tensor, s: &DncState) -> Result<(Tensor, DncState)> {
        let c = &self.cfg;
        let b = x.size()[0];
        if x.size() != [b, c.input] || s.memory.size()[0] != b {
            return Err(MemoryError::Shape(format!("input {:?} / state batch {} do not fit [B, {}]", x.size(), s.memory.size()[0], c.input)));
        }
        let ctrl_in = Tensor::cat(&[x.shallow_clone(), s.read_vectors.view([b, c.reads * c.word])], 1);
        let lstm = self.controller.step(&ctrl_in, &s.lstm);
        let xi = self.interface.forward(&lstm.h);
        let (r, w) = (c.reads, c.word);
        let sizes = [r * w, r, w, 1, w, w, r, 1, 1, 3 * r];
        let parts = xi.split_with_sizes(sizes.as_slice(), 1);
        let read_keys = parts[0].view([b, r, w]);
        let read_strengths = oneplus(&parts[1]);
        let write_key = parts[2].view([b, 1, w]);
        let write_strength = oneplus(&parts[3]);
        let erase = parts[4].sigmoid();
        let write_vec = parts[5].shallow_clone();
        let free_gates = parts[6].sigmoid();
        let alloc_gate = parts[7].sigmoid();
        let write_gate = parts[8].sigmoid();
        let modes = parts[9].view([b, r, 3]).softmax(-1, Kind::Float);

        // Write first (with last step's read weights freeing slots), then read the new memory.
        let usage = a::update_usage(&s.usage, &s.write_weights, &free_gates, &s.read_weights);
        let alloc = a::allocation_weights(&usage);
        let write_content = a::content_weights(&s.memory, &write_key, &write_strength).squeeze_dim(1);
        let ww = a::write_weights(&write_gate, &alloc_gate, &alloc, &write_content);
        let memory = a::write_memory(&s.memory, &ww, &erase, &write_vec);
        let link = a::update_link(&s.link, &ww, &s.precedence);
        let precedence = a::update_precedence(&s.precedence, &ww);
        let (fwd, bwd) = a::directional_weights(&link, &s.read_weights);
        let read_content = a::content_weights(&memory, &read_keys, &read_strengths);
        let rw = a::read_weights(&modes, &bwd, &read_content, &fwd);
        let read_vectors = rw.matmul(&memory);
        let y = self.output.forward(&Tensor::cat(&[lstm.h.shallow_clone(), read_vectors.view([b, r * w])], 1));
        Ok((y, DncState { lstm, memory, usage, link, precedence, write_weights: ww, read_weights: rw, read_vectors }))
    }

    /// Runs a whole sequence `[B, T, input]` from the initial state → (`[B, T, output]`, final state).
    pub fn forward(&self, xs: &Tensor) -> Result<(Tensor, DncState)> {
        let (b, t) = (xs.size()[0], xs.size()[1]);
        if xs.dim() != 3 || t == 0 {
            return Err(MemoryError::Shape(format!("expected a non-empty [B, T, {}] sequence, got {:?}", self.cfg.input, xs.size())));
        }
        let mut s = self.initial_state(b, xs.device());
        let mut ys = Vec::with_capacity(t as usize);
        for i in 0..t {
            let (y, next) = self.step(&xs.select(1, i), &s)?;
            ys.push(y);
            s = next;
        }
        Ok((Tensor::stack(&ys, 1), s))
    }
}
