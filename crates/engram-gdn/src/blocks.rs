//! Small building blocks of the hybrid: RMSNorm, SwiGLU FFN, rotary embedding, causal conv and
//! dtype-following projections.
//!
//! Parameters stay in fp32 (the master weights); every op casts them to the activation dtype, so
//! running the model on bf16 activations is mixed precision with fp32 master weights and
//! gradients (what autocast does, without depending on libtorch's autocast dtype default).

use engram_layers::{Linear, LinearConfig};
use tch::{nn, Kind, Tensor};

/// `x W^T (+ b)` with the weights cast to `x`'s dtype.
pub(crate) fn project(l: &Linear, x: &Tensor) -> Tensor {
    let k = x.kind();
    let b = l.bias.as_ref().map(|b| b.to_kind(k));
    x.linear(&l.weight.to_kind(k), b.as_ref())
}

/// A bias-free linear layer.
pub(crate) fn linear(p: &nn::Path, name: &str, i: i64, o: i64) -> Linear {
    Linear::new(p / name, LinearConfig::new(i, o).no_bias())
}

/// A linear layer whose bias starts at the constant `bias` (the seed's gate projections).
pub(crate) fn linear_const_bias(p: &nn::Path, name: &str, i: i64, o: i64, bias: f64) -> Linear {
    let mut l = Linear::new(p / name, LinearConfig::new(i, o));
    if let Some(b) = l.bias.as_mut() {
        tch::no_grad(|| {
            let _ = b.fill_(bias);
        });
    }
    l
}

/// RMSNorm over the last dim, `x / sqrt(mean(x²) + eps) · w`, computed in fp32 and returned in
/// the input dtype.
#[derive(Debug)]
pub(crate) struct RmsNorm {
    pub weight: Tensor,
    eps: f64,
}

impl RmsNorm {
    pub fn new(p: &nn::Path, dim: i64, eps: f64) -> Self {
        RmsNorm { weight: p.ones("weight", &[dim]), eps }
    }
    pub fn forward(&self, x: &Tensor) -> Tensor {
        let xf = x.to_kind(Kind::Float);
        let rms = (xf.square().mean_dim(-1, true, Kind::Float) + self.eps).rsqrt();
        (xf * rms * &self.weight).to_kind(x.kind())
    }
}

/// Pre-norm SwiGLU FFN block with its residual: `x + w2(silu(w1 n) ⊙ w3 n)`, `n = norm(x)`.
#[derive(Debug)]
pub(crate) struct SwiGlu {
    norm: RmsNorm,
    w1: Linear,
    w2: Linear,
    w3: Linear,
}

impl SwiGlu {
    pub fn new(p: &nn::Path, d: i64, hidden: i64, eps: f64) -> Self {
        // Seed order: w1, w2, w3 as declared in SwiGLUFFN, then the norm.
        let w1 = linear(p, "w1", d, hidden);
        let w2 = linear(p, "w2", hidden, d);
        let w3 = linear(p, "w3", d, hidden);
        let norm = RmsNorm::new(&(p / "norm"), d, eps);
        SwiGlu { norm, w1, w2, w3 }
    }
    pub fn forward(&self, x: &Tensor) -> Tensor {
        let h = self.norm.forward(x);
        x + project(&self.w2, &(project(&self.w1, &h).silu() * project(&self.w3, &h)))
    }
}

/// Rotary embedding (rotate-half convention) on `x [B,T,H,D]` at absolute positions
/// `offset .. offset+T`.
pub(crate) fn rope(x: &Tensor, offset: i64, base: f64) -> Tensor {
    let (_, t, _, d) = x.size4().expect("rope expects [B,T,H,D]");
    let dev = x.device();
    let inv = Tensor::arange_start_step(0, d, 2, (Kind::Float, dev)).divide_scalar(d as f64);
    // the base filled on the device (a host scalar copied over would synchronise the stream)
    let inv = Tensor::full(&[] as &[i64], base, (Kind::Double, dev)).pow(&inv).reciprocal();
    let pos = Tensor::arange_start(offset, offset + t, (Kind::Float, dev));
    let freqs = pos.outer(&inv);
    let emb = Tensor::cat(&[&freqs, &freqs], -1); // [T, D]
    let cos = emb.cos().view([1, t, 1, d]).to_kind(x.kind());
    let sin = emb.sin().view([1, t, 1, d]).to_kind(x.kind());
    let half = d / 2;
    let x1 = x.narrow(-1, 0, half);
    let x2 = x.narrow(-1, half, half);
    let rotated = Tensor::cat(&[&x2.neg(), &x1], -1);
    x * cos + rotated * sin
}

/// Causal conv over time of `x [B,T,C]` with `weight [O, C/groups, W]`: the output at t sees
/// inputs t-W+1..t. `prev [B,W-1,C]` holds the inputs before this call (zeros at the start);
/// returns the output `[B,T,O]` and the new `prev`.
pub(crate) fn causal_conv(x: &Tensor, weight: &Tensor, groups: i64, prev: Option<&Tensor>) -> (Tensor, Option<Tensor>) {
    let w = weight.size()[2];
    if w == 1 {
        let y = x.transpose(1, 2).conv1d(&weight.to_kind(x.kind()), None::<Tensor>, [1], [0], [1], groups).transpose(1, 2);
        return (y, None);
    }
    let (b, _, c) = x.size3().expect("causal_conv expects [B,T,C]");
    let pad = match prev {
        Some(p) => p.to_kind(x.kind()),
        None => Tensor::zeros([b, w - 1, c], (x.kind(), x.device())),
    };
    let full = Tensor::cat(&[&pad, x], 1);
    let total = full.size()[1];
    let new_prev = full.narrow(1, total - (w - 1), w - 1);
    let y = full
        .transpose(1, 2)
        .conv1d(&weight.to_kind(x.kind()), None::<Tensor>, [1], [0], [1], groups)
        .transpose(1, 2);
    (y, Some(new_prev))
}

/// `t` moved one step later along dim 1: position 0 gets `first [B,1,..]`, position i gets
/// `t[i-1]`. Returns the shifted tensor and `t`'s last step (the `first` of the next call).
pub(crate) fn shift_right(t: &Tensor, first: &Tensor) -> (Tensor, Tensor) {
    let len = t.size()[1];
    let last = t.narrow(1, len - 1, 1);
    let shifted = Tensor::cat(&[&first.to_kind(t.kind()), &t.narrow(1, 0, len - 1)], 1);
    (shifted, last)
}

/// L2 normalisation over the last dim in fp32, returned in the input dtype (F.normalize).
pub(crate) fn l2norm(x: &Tensor) -> Tensor {
    let xf = x.to_kind(Kind::Float);
    let n = xf.square().sum_dim_intlist(-1, true, Kind::Float).sqrt().clamp_min(1e-12);
    (xf / n).to_kind(x.kind())
}
