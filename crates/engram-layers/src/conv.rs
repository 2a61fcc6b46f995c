//! Convolutions in 1, 2 and 3 dimensions, plain and transposed, with stride, padding, dilation
//! and groups (grouped and depthwise), on ATen's `convolution`; parameters and init as
//! `nn.Conv{1,2,3}d` / `nn.ConvTranspose{1,2,3}d`.

use crate::init;
use crate::util::{ensure, ensure_shape, or_panic};
use engram_core::Result;
use serde::{Deserialize, Serialize};
use tch::{nn, Tensor};

/// Configuration of [`Conv`]. The number of spatial dims is `kernel_size.len()` (1–3); the other
/// per-dim lists have that length (the constructors broadcast scalars).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConvConfig {
    /// Input channels.
    pub in_channels: i64,
    /// Output channels.
    pub out_channels: i64,
    /// Kernel size per spatial dim.
    pub kernel_size: Vec<i64>,
    /// Stride per dim.
    pub stride: Vec<i64>,
    /// Zero padding per dim (for transposed convs: removed from the output, as PyTorch).
    pub padding: Vec<i64>,
    /// Dilation per dim.
    pub dilation: Vec<i64>,
    /// Groups; `groups = in_channels` is a depthwise convolution.
    pub groups: i64,
    /// Learn a bias.
    pub bias: bool,
    /// Transposed ("deconvolution") instead of plain.
    pub transposed: bool,
    /// Extra size added to one side of a transposed conv's output.
    pub output_padding: Vec<i64>,
}

impl ConvConfig {
    /// A plain convolution with `dims` spatial dims and a cubic kernel `k`, stride 1, no padding.
    pub fn new(dims: usize, in_channels: i64, out_channels: i64, k: i64) -> Self {
        ConvConfig {
            in_channels,
            out_channels,
            kernel_size: vec![k; dims],
            stride: vec![1; dims],
            padding: vec![0; dims],
            dilation: vec![1; dims],
            groups: 1,
            bias: true,
            transposed: false,
            output_padding: vec![0; dims],
        }
    }
    /// `nn.Conv1d(in, out, k)`.
    pub fn conv1d(i: i64, o: i64, k: i64) -> Self {
        Self::new(1, i, o, k)
    }
    /// `nn.Conv2d(in, out, k)`.
    pub fn conv2d(i: i64, o: i64, k: i64) -> Self {
        Self::new(2, i, o, k)
    }
    /// `nn.Conv3d(in, out, k)`.
    pub fn conv3d(i: i64, o: i64, k: i64) -> Self {
        Self::new(3, i, o, k)
    }
    /// Makes it a transposed convolution.
    pub fn transposed(mut self) -> Self {
        self.transposed = true;
        self
    }
    /// Same stride on every dim.
    pub fn stride(mut self, s: i64) -> Self {
        self.stride = vec![s; self.kernel_size.len()];
        self
    }
    /// Same padding on every dim.
    pub fn padding(mut self, p: i64) -> Self {
        self.padding = vec![p; self.kernel_size.len()];
        self
    }
    /// Same dilation on every dim.
    pub fn dilation(mut self, d: i64) -> Self {
        self.dilation = vec![d; self.kernel_size.len()];
        self
    }
    /// Groups.
    pub fn groups(mut self, g: i64) -> Self {
        self.groups = g;
        self
    }
    /// Same output padding on every dim (transposed only).
    pub fn output_padding(mut self, p: i64) -> Self {
        self.output_padding = vec![p; self.kernel_size.len()];
        self
    }
    /// Without bias.
    pub fn no_bias(mut self) -> Self {
        self.bias = false;
        self
    }

    fn validate(&self) -> Result<()> {
        let d = self.kernel_size.len();
        ensure((1..=3).contains(&d), || format!("conv: 1-3 spatial dims, got kernel {:?}", self.kernel_size))?;
        for (n, v) in [("stride", &self.stride), ("padding", &self.padding), ("dilation", &self.dilation), ("output_padding", &self.output_padding)] {
            ensure(v.len() == d, || format!("conv: {n} {v:?} must have {d} entries"))?;
        }
        ensure(self.kernel_size.iter().all(|&k| k > 0) && self.stride.iter().all(|&s| s > 0) && self.dilation.iter().all(|&x| x > 0), || {
            format!("conv: kernel, stride and dilation must be positive: {self:?}")
        })?;
        ensure(self.padding.iter().all(|&p| p >= 0) && self.output_padding.iter().all(|&p| p >= 0), || format!("conv: negative padding {self:?}"))?;
        ensure(self.groups > 0 && self.in_channels % self.groups == 0 && self.out_channels % self.groups == 0, || {
            format!("conv: in {} and out {} channels must be divisible by groups {}", self.in_channels, self.out_channels, self.groups)
        })?;
        if self.transposed {
            for i in 0..d {
                ensure(self.output_padding[i] < self.stride[i].max(self.dilation[i]), || {
                    "conv: output_padding must be smaller than stride or dilation".to_string()
                })?;
            }
        } else {
            ensure(self.output_padding.iter().all(|&p| p == 0), || "conv: output_padding is for transposed convs".to_string())?;
        }
        Ok(())
    }
}

/// A convolution layer with `weight` (`[out, in/groups, *k]`, transposed: `[in, out/groups, *k]`)
/// and `bias [out]`, drawn like PyTorch (`kaiming_uniform_(a=√5)` then the bias), so seeded runs
/// start identical.
///
/// ```
/// use engram_layers::conv::{Conv, ConvConfig};
/// use tch::nn::Module;
/// let vs = tch::nn::VarStore::new(tch::Device::Cpu);
/// // depthwise 3×3 with padding 1 keeps the size
/// let c = Conv::new(vs.root() / "dw", ConvConfig::conv2d(8, 8, 3).padding(1).groups(8)).unwrap();
/// let y = c.forward(&tch::Tensor::randn([2, 8, 5, 5], tch::kind::FLOAT_CPU));
/// assert_eq!(y.size(), vec![2, 8, 5, 5]);
/// ```
#[derive(Debug)]
pub struct Conv {
    /// The kernel.
    pub weight: Tensor,
    /// The bias, when configured.
    pub bias: Option<Tensor>,
    cfg: ConvConfig,
}

impl Conv {
    /// Creates `weight`/`bias` under `path`.
    pub fn new<'a>(path: impl std::borrow::Borrow<nn::Path<'a>>, cfg: ConvConfig) -> Result<Self> {
        cfg.validate()?;
        let p = path.borrow();
        let mut shape = if cfg.transposed {
            vec![cfg.in_channels, cfg.out_channels / cfg.groups]
        } else {
            vec![cfg.out_channels, cfg.in_channels / cfg.groups]
        };
        shape.extend_from_slice(&cfg.kernel_size);
        let weight = init::torch_default_weight(p, "weight", &shape);
        let bias = cfg.bias.then(|| init::torch_default_bias(p, "bias", &[cfg.out_channels], init::fan_in(&shape)));
        Ok(Conv { weight, bias, cfg })
    }

    /// The configuration.
    pub fn config(&self) -> &ConvConfig {
        &self.cfg
    }

    /// Convolves `x [N, C_in, *spatial]` (or unbatched `[C_in, *spatial]`).
    pub fn try_forward(&self, x: &Tensor) -> Result<Tensor> {
        let d = self.cfg.kernel_size.len();
        let s = x.size();
        ensure_shape(s.len() == d + 2 || s.len() == d + 1, || format!("conv{d}d: expected [N, C, {d} spatial dims], got {s:?}"))?;
        let unbatched = s.len() == d + 1;
        let xb = if unbatched { x.unsqueeze(0) } else { x.shallow_clone() };
        let c = xb.size()[1];
        ensure_shape(c == self.cfg.in_channels, || format!("conv{d}d: expected {} input channels, got {s:?}", self.cfg.in_channels))?;
        if !self.cfg.transposed {
            let sp = &xb.size()[2..];
            for i in 0..d {
                let eff = self.cfg.dilation[i] * (self.cfg.kernel_size[i] - 1) + 1;
                ensure_shape(sp[i] + 2 * self.cfg.padding[i] >= eff, || {
                    format!("conv{d}d: input {s:?} (padded) is smaller than the dilated kernel {eff} on dim {i}")
                })?;
            }
        }
        let y = xb.f_convolution(
            &self.weight,
            self.bias.as_ref(),
            self.cfg.stride.as_slice(),
            self.cfg.padding.as_slice(),
            self.cfg.dilation.as_slice(),
            self.cfg.transposed,
            self.cfg.output_padding.as_slice(),
            self.cfg.groups,
        )?;
        Ok(if unbatched { y.squeeze_dim(0) } else { y })
    }
}

impl nn::Module for Conv {
    fn forward(&self, xs: &Tensor) -> Tensor {
        or_panic("Conv", self.try_forward(xs))
    }
}

/// Configuration of [`PatchEmbedding`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PatchEmbeddingConfig {
    /// Image side (square images).
    pub img_size: i64,
    /// Patch side; must divide `img_size`.
    pub patch_size: i64,
    /// Input channels.
    pub in_channels: i64,
    /// Embedding width.
    pub embed_dim: i64,
}

/// ViT patch embedding (timm's `PatchEmbed`, parameter `proj.weight`/`proj.bias`): a conv with
/// kernel = stride = patch, flattened to `[N, num_patches, embed_dim]`.
///
/// ```
/// use engram_layers::conv::{PatchEmbedding, PatchEmbeddingConfig};
/// let vs = tch::nn::VarStore::new(tch::Device::Cpu);
/// let cfg = PatchEmbeddingConfig { img_size: 32, patch_size: 8, in_channels: 3, embed_dim: 16 };
/// let pe = PatchEmbedding::new(vs.root() / "patch_embed", cfg).unwrap();
/// let y = pe.try_forward(&tch::Tensor::randn([2, 3, 32, 32], tch::kind::FLOAT_CPU)).unwrap();
/// assert_eq!(y.size(), vec![2, 16, 16]);
/// ```
#[derive(Debug)]
pub struct PatchEmbedding {
    /// The patchifying convolution.
    pub proj: Conv,
    cfg: PatchEmbeddingConfig,
}

impl PatchEmbedding {
    /// Creates `proj` under `path`.
    pub fn new<'a>(path: impl std::borrow::Borrow<nn::Path<'a>>, cfg: PatchEmbeddingConfig) -> Result<Self> {
        ensure(cfg.patch_size > 0 && cfg.img_size % cfg.patch_size == 0, || {
            format!("patch size {} must divide image size {}", cfg.patch_size, cfg.img_size)
        })?;
        let proj = Conv::new(path.borrow() / "proj", ConvConfig::conv2d(cfg.in_channels, cfg.embed_dim, cfg.patch_size).stride(cfg.patch_size))?;
        Ok(PatchEmbedding { proj, cfg })
    }

    /// Patches in one image.
    pub fn num_patches(&self) -> i64 {
        (self.cfg.img_size / self.cfg.patch_size).pow(2)
    }

    /// `[N, C, H, W]` with `H = W = img_size` → `[N, num_patches, embed_dim]`.
    pub fn try_forward(&self, x: &Tensor) -> Result<Tensor> {
        let s = x.size();
        ensure_shape(s.len() == 4 && s[2] == self.cfg.img_size && s[3] == self.cfg.img_size, || {
            format!("PatchEmbedding: expected [N, {0}, {1}, {1}], got {s:?}", self.cfg.in_channels, self.cfg.img_size)
        })?;
        Ok(self.proj.try_forward(x)?.flatten(2, -1).transpose(1, 2))
    }
}
