//! A small Vision Transformer with masked linear layers, for lottery tickets (seed 004: 6 layers,
//! 6 heads, width 192, MLP 768, patch 4). Seed 004 used CIFAR-10 (32×32×3, 64 patches); CIFAR-10
//! is not available offline here, so it runs on 28×28 grey images (Fashion-MNIST, 49 patches).

use crate::error::{invalid, Result};
use crate::mask::{DensityRule, MaskedLinear};
use crate::model::MaskedModel;
use crate::optim::MaskedParam;
use engram_core::seed::HostRng;
use engram_layers::LinearConfig;
use serde::{Deserialize, Serialize};
use tch::{nn, Kind, Tensor};

/// ViT shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct VitConfig {
    /// Side of the square input image.
    pub image: i64,
    /// Input channels.
    pub channels: i64,
    /// Side of a square patch.
    pub patch: i64,
    /// Model width.
    pub dim: i64,
    /// Transformer blocks.
    pub depth: i64,
    /// Attention heads.
    pub heads: i64,
    /// Hidden width of the MLP.
    pub mlp_dim: i64,
    /// Classes.
    pub classes: i64,
}

impl VitConfig {
    /// Seed 004's ViT shape on 28×28 grey images.
    pub fn seed004_fashion() -> Self {
        VitConfig { image: 28, channels: 1, patch: 4, dim: 192, depth: 6, heads: 6, mlp_dim: 768, classes: 10 }
    }
    fn validate(&self) -> Result<()> {
        if self.image % self.patch != 0 || self.dim % self.heads != 0 || [self.image, self.channels, self.patch, self.dim, self.depth, self.heads, self.mlp_dim, self.classes].iter().any(|&v| v <= 0) {
            return Err(invalid(format!("bad ViT config {self:?}: sizes must be positive, patch must divide image and heads must divide dim")));
        }
        Ok(())
    }
    /// Number of patches.
    pub fn patches(&self) -> i64 {
        (self.image / self.patch).pow(2)
    }
}

#[derive(Debug)]
struct LayerNorm {
    weight: Tensor,
    bias: Tensor,
}

impl LayerNorm {
    fn new(p: &nn::Path, dim: i64) -> Self {
        LayerNorm { weight: p.ones("weight", &[dim]), bias: p.zeros("bias", &[dim]) }
    }
    fn forward(&self, x: &Tensor) -> Tensor {
        let d = self.weight.size()[0];
        x.layer_norm([d], Some(&self.weight), Some(&self.bias), 1e-5, false)
    }
}

#[derive(Debug)]
struct Block {
    ln1: LayerNorm,
    qkv: MaskedLinear,
    proj: MaskedLinear,
    ln2: LayerNorm,
    fc1: MaskedLinear,
    fc2: MaskedLinear,
}

/// The ViT; every linear layer (patch embedding, attention, MLP, head) is masked and prunable.
///
/// ```
/// use engram_sparse::{vit::{Vit, VitConfig}, model::MaskedModel};
/// let vs = tch::nn::VarStore::new(tch::Device::Cpu);
/// let cfg = VitConfig { dim: 16, depth: 1, heads: 2, mlp_dim: 32, ..VitConfig::seed004_fashion() };
/// let vit = Vit::new(&vs.root(), cfg).unwrap();
/// let y = vit.logits(&tch::Tensor::zeros([2, 784], (tch::Kind::Float, tch::Device::Cpu)));
/// assert_eq!(y.size(), vec![2, 10]);
/// ```
#[derive(Debug)]
pub struct Vit {
    cfg: VitConfig,
    embed: MaskedLinear,
    cls: Tensor,
    pos: Tensor,
    blocks: Vec<Block>,
    ln: LayerNorm,
    head: MaskedLinear,
}

impl Vit {
    /// Builds the network (dense masks) under `path`.
    pub fn new(path: &nn::Path, cfg: VitConfig) -> Result<Self> {
        cfg.validate()?;
        let mut rng = HostRng::new(0);
        let mut lin = |p: nn::Path, i: i64, o: i64| MaskedLinear::new(p, LinearConfig::new(i, o), DensityRule::Dense, &mut rng);
        let d = cfg.dim;
        let embed = lin(path / "patch_embed", cfg.channels * cfg.patch * cfg.patch, d)?;
        let cls = path.var("cls_token", &[1, 1, d], nn::Init::Randn { mean: 0.0, stdev: 0.02 });
        let pos = path.var("pos_embed", &[1, cfg.patches() + 1, d], nn::Init::Randn { mean: 0.0, stdev: 0.02 });
        let mut blocks = Vec::new();
        for b in 0..cfg.depth {
            let p = path / format!("blocks_{b}");
            blocks.push(Block {
                ln1: LayerNorm::new(&(&p / "norm1"), d),
                qkv: lin(&p / "attn_qkv", d, 3 * d)?,
                proj: lin(&p / "attn_proj", d, d)?,
                ln2: LayerNorm::new(&(&p / "norm2"), d),
                fc1: lin(&p / "mlp_fc1", d, cfg.mlp_dim)?,
                fc2: lin(&p / "mlp_fc2", cfg.mlp_dim, d)?,
            });
        }
        let ln = LayerNorm::new(&(path / "norm"), d);
        let head = lin(path / "head", d, cfg.classes)?;
        Ok(Vit { cfg, embed, cls, pos, blocks, ln, head })
    }

    /// Number of trainable scalars.
    pub fn num_parameters(&self) -> i64 {
        self.params().iter().map(|p| p.param.numel() as i64).sum()
    }

    fn patchify(&self, x: &Tensor) -> Tensor {
        let c = &self.cfg;
        let b = x.size()[0];
        let g = c.image / c.patch;
        x.view([b, c.channels, g, c.patch, g, c.patch]).permute([0, 2, 4, 1, 3, 5]).reshape([b, g * g, c.channels * c.patch * c.patch])
    }

    fn attention(&self, blk: &Block, x: &Tensor) -> Tensor {
        let (b, t, d) = (x.size()[0], x.size()[1], self.cfg.dim);
        let h = self.cfg.heads;
        let qkv = blk.qkv.forward(x).view([b, t, 3, h, d / h]).permute([2, 0, 3, 1, 4]);
        let (q, k, v) = (qkv.get(0), qkv.get(1), qkv.get(2));
        let att = (q.matmul(&k.transpose(-2, -1)) / ((d / h) as f64).sqrt()).softmax(-1, Kind::Float);
        blk.proj.forward(&att.matmul(&v).transpose(1, 2).reshape([b, t, d]))
    }
}

impl MaskedModel for Vit {
    fn logits(&self, x: &Tensor) -> Tensor {
        let b = x.size()[0];
        let tokens = self.embed.forward(&self.patchify(x));
        let mut h = Tensor::cat(&[self.cls.expand([b, 1, self.cfg.dim], false), tokens], 1) + &self.pos;
        for blk in &self.blocks {
            h = &h + self.attention(blk, &blk.ln1.forward(&h));
            h = &h + blk.fc2.forward(&blk.fc1.forward(&blk.ln2.forward(&h)).gelu("none"));
        }
        self.head.forward(&self.ln.forward(&h.select(1, 0)))
    }
    fn masked_layers(&self) -> Vec<&MaskedLinear> {
        let mut v = vec![&self.embed];
        for b in &self.blocks {
            v.extend([&b.qkv, &b.proj, &b.fc1, &b.fc2]);
        }
        v.push(&self.head);
        v
    }
    fn params(&self) -> Vec<MaskedParam> {
        let mut v = Vec::new();
        let lin = |v: &mut Vec<MaskedParam>, l: &MaskedLinear| {
            v.push(MaskedParam::new(&l.weight, Some(&l.mask)));
            if let Some(b) = &l.bias {
                v.push(MaskedParam::new(b, None));
            }
        };
        lin(&mut v, &self.embed);
        v.push(MaskedParam::new(&self.cls, None));
        v.push(MaskedParam::new(&self.pos, None));
        for b in &self.blocks {
            for ln in [&b.ln1, &b.ln2] {
                v.push(MaskedParam::new(&ln.weight, None));
                v.push(MaskedParam::new(&ln.bias, None));
            }
            for l in [&b.qkv, &b.proj, &b.fc1, &b.fc2] {
                lin(&mut v, l);
            }
        }
        v.push(MaskedParam::new(&self.ln.weight, None));
        v.push(MaskedParam::new(&self.ln.bias, None));
        lin(&mut v, &self.head);
        v
    }
}
