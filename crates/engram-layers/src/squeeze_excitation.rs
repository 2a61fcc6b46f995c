//! Squeeze-and-excitation (Hu et al. 2018), as torchvision's `SqueezeExcitation`.

use crate::conv::{Conv, ConvConfig};
use crate::util::ensure_shape;
use engram_core::Result;
use tch::{nn, Tensor};

/// Global average pool → `fc1` (1×1 conv) → ReLU → `fc2` (1×1 conv) → sigmoid → channel scale.
/// Parameter names `fc1.weight`, `fc1.bias`, `fc2.weight`, `fc2.bias` as torchvision.
///
/// ```
/// use engram_layers::squeeze_excitation::SqueezeExcitation;
/// let vs = tch::nn::VarStore::new(tch::Device::Cpu);
/// let se = SqueezeExcitation::new(vs.root() / "se", 16, 4).unwrap();
/// let y = se.try_forward(&tch::Tensor::randn([2, 16, 5, 5], tch::kind::FLOAT_CPU)).unwrap();
/// assert_eq!(y.size(), vec![2, 16, 5, 5]);
/// ```
#[derive(Debug)]
pub struct SqueezeExcitation {
    /// Channels → squeeze channels.
    pub fc1: Conv,
    /// Squeeze channels → channels.
    pub fc2: Conv,
    channels: i64,
}

impl SqueezeExcitation {
    /// `channels` in and out, `squeeze_channels` in the bottleneck.
    pub fn new<'a>(path: impl std::borrow::Borrow<nn::Path<'a>>, channels: i64, squeeze_channels: i64) -> Result<Self> {
        let p = path.borrow();
        let fc1 = Conv::new(p / "fc1", ConvConfig::conv2d(channels, squeeze_channels, 1))?;
        let fc2 = Conv::new(p / "fc2", ConvConfig::conv2d(squeeze_channels, channels, 1))?;
        Ok(SqueezeExcitation { fc1, fc2, channels })
    }

    /// Rescales the channels of `x [N, C, H, W]`.
    pub fn try_forward(&self, x: &Tensor) -> Result<Tensor> {
        let s = x.size();
        ensure_shape(s.len() == 4 && s[1] == self.channels, || format!("SE: expected [N, {}, H, W], got {s:?}", self.channels))?;
        let z = x.adaptive_avg_pool2d([1, 1]);
        let scale = self.fc2.try_forward(&self.fc1.try_forward(&z)?.relu())?.sigmoid();
        Ok(x * scale)
    }
}
