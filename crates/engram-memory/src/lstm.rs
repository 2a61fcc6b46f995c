//! An LSTM cell with `torch.nn.LSTMCell`'s gate order (input, forget, cell, output), built from
//! two [`engram_layers::Linear`] maps.

use engram_layers::{Linear, LinearConfig};
use tch::{nn, nn::Module, Tensor};

/// `(h, c)`, each `[B, hidden]`.
#[derive(Debug)]
pub struct LstmState {
    /// Hidden state.
    pub h: Tensor,
    /// Cell state.
    pub c: Tensor,
}

/// One LSTM layer stepped one time step at a time.
#[derive(Debug)]
pub struct LstmCell {
    ih: Linear,
    hh: Linear,
    hidden: i64,
}

impl LstmCell {
    /// A cell mapping `input` features to `hidden` units.
    pub fn new(path: &nn::Path, input: i64, hidden: i64) -> Self {
        LstmCell { ih: Linear::new(path / "ih", LinearConfig::new(input, 4 * hidden)), hh: Linear::new(path / "hh", LinearConfig::new(hidden, 4 * hidden)), hidden }
    }
    /// Zero state for a batch.
    pub fn zero_state(&self, batch: i64, device: tch::Device) -> LstmState {
        let z = Tensor::zeros([batch, self.hidden], (tch::Kind::Float, device));
        LstmState { h: z.shallow_clone(), c: z }
    }
    /// One step.
    pub fn step(&self, x: &Tensor, s: &LstmState) -> LstmState {
        let gates = self.ih.forward(x) + self.hh.forward(&s.h);
        let g = gates.chunk(4, -1);
        let (i, f, cand, o) = (g[0].sigmoid(), g[1].sigmoid(), g[2].tanh(), g[3].sigmoid());
        let c = f * &s.c + i * cand;
        let h = o * c.tanh();
        LstmState { h, c }
    }
}
