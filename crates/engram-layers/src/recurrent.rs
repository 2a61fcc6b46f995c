//! LSTM and GRU on ATen's fused kernels, with the parameter names (`weight_ih_l0`,
//! `weight_hh_l0_reverse`, ...), layout and init of `nn.LSTM` / `nn.GRU`.
//!
//! ```
//! use engram_layers::recurrent::{Gru, Lstm, RnnConfig};
//! let vs = tch::nn::VarStore::new(tch::Device::Cpu);
//! let x = tch::Tensor::randn([2, 7, 3], tch::kind::FLOAT_CPU);
//! let lstm = Lstm::new(vs.root() / "lstm", RnnConfig { bidirectional: true, ..RnnConfig::new(3, 5) }).unwrap();
//! let (y, (h, c)) = lstm.forward(&x, None, false).unwrap();
//! assert_eq!((y.size(), h.size(), c.size()), (vec![2, 7, 10], vec![2, 2, 5], vec![2, 2, 5]));
//! let gru = Gru::new(vs.root() / "gru", RnnConfig { num_layers: 2, ..RnnConfig::new(3, 4) }).unwrap();
//! let (y, h) = gru.forward(&x, None, false).unwrap();
//! assert_eq!((y.size(), h.size()), (vec![2, 7, 4], vec![2, 2, 4]));
//! assert!(vs.variables().contains_key("lstm.weight_hh_l0_reverse"));
//! ```

use crate::util::{ensure, ensure_shape};
use engram_core::Result;
use serde::{Deserialize, Serialize};
use tch::{nn, Tensor};

/// Configuration shared by [`Lstm`] and [`Gru`] (`nn.LSTM` / `nn.GRU` arguments).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RnnConfig {
    /// Input features.
    pub input_size: i64,
    /// Hidden features H.
    pub hidden_size: i64,
    /// Stacked layers.
    pub num_layers: i64,
    /// Learn `bias_ih`/`bias_hh`.
    pub bias: bool,
    /// Inputs/outputs are `[N, L, *]` instead of `[L, N, *]`.
    pub batch_first: bool,
    /// Dropout between layers (training only).
    pub dropout: f64,
    /// Run a reverse direction too and concatenate.
    pub bidirectional: bool,
}

impl RnnConfig {
    /// One unidirectional layer with bias, batch-first.
    pub fn new(input_size: i64, hidden_size: i64) -> Self {
        RnnConfig { input_size, hidden_size, num_layers: 1, bias: true, batch_first: true, dropout: 0.0, bidirectional: false }
    }
    fn dirs(&self) -> i64 {
        if self.bidirectional {
            2
        } else {
            1
        }
    }
}

/// Creates the flat parameter list in PyTorch's registration order and draws every tensor
/// from `U(−1/√H, 1/√H)` in that order, as `RNNBase.reset_parameters` does.
fn rnn_params(p: &nn::Path, cfg: &RnnConfig, gates: i64) -> Result<Vec<Tensor>> {
    ensure(cfg.input_size > 0 && cfg.hidden_size > 0 && cfg.num_layers > 0, || format!("RNN: bad sizes {cfg:?}"))?;
    ensure((0.0..1.0).contains(&cfg.dropout), || format!("RNN: dropout {} not in [0, 1)", cfg.dropout))?;
    let h = cfg.hidden_size;
    let bound = 1.0 / (h as f64).sqrt();
    let mut out = Vec::new();
    for layer in 0..cfg.num_layers {
        for dir in 0..cfg.dirs() {
            let sfx = if dir == 1 { "_reverse" } else { "" };
            let in_size = if layer == 0 { cfg.input_size } else { h * cfg.dirs() };
            out.push(p.zeros(&format!("weight_ih_l{layer}{sfx}"), &[gates * h, in_size]));
            out.push(p.zeros(&format!("weight_hh_l{layer}{sfx}"), &[gates * h, h]));
            if cfg.bias {
                out.push(p.zeros(&format!("bias_ih_l{layer}{sfx}"), &[gates * h]));
                out.push(p.zeros(&format!("bias_hh_l{layer}{sfx}"), &[gates * h]));
            }
        }
    }
    for t in &mut out {
        crate::init::uniform_(t, -bound, bound);
    }
    Ok(out)
}

fn check_input(name: &str, cfg: &RnnConfig, x: &Tensor) -> Result<i64> {
    let s = x.size();
    ensure_shape(s.len() == 3 && s[2] == cfg.input_size, || {
        let layout = if cfg.batch_first { "[N, L, input]" } else { "[L, N, input]" };
        format!("{name}: expected {layout} with input {}, got {s:?}", cfg.input_size)
    })?;
    Ok(if cfg.batch_first { s[0] } else { s[1] })
}

fn check_state(name: &str, cfg: &RnnConfig, t: &Tensor, batch: i64) -> Result<()> {
    let want = [cfg.num_layers * cfg.dirs(), batch, cfg.hidden_size];
    ensure_shape(t.size() == want, || format!("{name}: state must be {want:?}, got {:?}", t.size()))
}

/// `nn.LSTM`.
#[derive(Debug)]
pub struct Lstm {
    params: Vec<Tensor>,
    cfg: RnnConfig,
}

impl Lstm {
    /// Creates the parameters under `path`.
    pub fn new<'a>(path: impl std::borrow::Borrow<nn::Path<'a>>, cfg: RnnConfig) -> Result<Self> {
        Ok(Lstm { params: rnn_params(path.borrow(), &cfg, 4)?, cfg })
    }

    /// The flat parameter list in PyTorch's order.
    pub fn parameters(&self) -> &[Tensor] {
        &self.params
    }

    /// Runs the sequence; `state = (h0, c0)` each `[layers·dirs, N, H]` (zeros when `None`).
    /// Returns the output `[N, L, dirs·H]` (batch-first) and the final `(h, c)`.
    pub fn forward(&self, x: &Tensor, state: Option<(&Tensor, &Tensor)>, train: bool) -> Result<(Tensor, (Tensor, Tensor))> {
        let n = check_input("LSTM", &self.cfg, x)?;
        let zeros = || Tensor::zeros([self.cfg.num_layers * self.cfg.dirs(), n, self.cfg.hidden_size], (x.kind(), x.device()));
        let (h0, c0) = match state {
            Some((h, c)) => {
                check_state("LSTM", &self.cfg, h, n)?;
                check_state("LSTM", &self.cfg, c, n)?;
                (h.shallow_clone(), c.shallow_clone())
            }
            None => (zeros(), zeros()),
        };
        let c = &self.cfg;
        let (y, h, cc) = x.f_lstm(&[h0, c0], &self.params, c.bias, c.num_layers, c.dropout, train, c.bidirectional, c.batch_first)?;
        Ok((y, (h, cc)))
    }
}

/// `nn.GRU`.
#[derive(Debug)]
pub struct Gru {
    params: Vec<Tensor>,
    cfg: RnnConfig,
}

impl Gru {
    /// Creates the parameters under `path`.
    pub fn new<'a>(path: impl std::borrow::Borrow<nn::Path<'a>>, cfg: RnnConfig) -> Result<Self> {
        Ok(Gru { params: rnn_params(path.borrow(), &cfg, 3)?, cfg })
    }

    /// The flat parameter list in PyTorch's order.
    pub fn parameters(&self) -> &[Tensor] {
        &self.params
    }

    /// Runs the sequence; `h0 [layers·dirs, N, H]` (zeros when `None`). Returns the output and
    /// the final hidden state.
    pub fn forward(&self, x: &Tensor, h0: Option<&Tensor>, train: bool) -> Result<(Tensor, Tensor)> {
        let n = check_input("GRU", &self.cfg, x)?;
        let h0 = match h0 {
            Some(h) => {
                check_state("GRU", &self.cfg, h, n)?;
                h.shallow_clone()
            }
            None => Tensor::zeros([self.cfg.num_layers * self.cfg.dirs(), n, self.cfg.hidden_size], (x.kind(), x.device())),
        };
        let c = &self.cfg;
        Ok(x.f_gru(&h0, &self.params, c.bias, c.num_layers, c.dropout, train, c.bidirectional, c.batch_first)?)
    }
}
