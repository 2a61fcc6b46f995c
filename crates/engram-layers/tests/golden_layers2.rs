//! Parity of convolutions, recurrent layers, pooling, ALiBi, linear attention and the transformer
//! block with PyTorch, including bit-identical seeded initialisation.

mod common;
use common::{close32, set, with_grad, Golden};
use engram_layers::attention::*;
use engram_layers::bilinear::{Bilinear, BilinearConfig};
use engram_layers::block::{TransformerBlock, TransformerBlockConfig};
use engram_layers::conv::{Conv, ConvConfig, PatchEmbedding, PatchEmbeddingConfig};
use engram_layers::pooling::{adaptive_pool, Pool, PoolConfig, PoolKind};
use engram_layers::recurrent::{Gru, Lstm, RnnConfig};
use engram_layers::squeeze_excitation::SqueezeExcitation;
use tch::{nn, Device, Tensor};

fn assert_params_equal(vs: &nn::VarStore, g: &Golden, prefix: &str) {
    let vars = vs.variables();
    assert!(!vars.is_empty());
    for (name, t) in vars {
        let want = g.get(&format!("{prefix}.{name}"));
        assert_eq!(t, want, "{prefix}.{name} differs from PyTorch's seeded init");
    }
}

struct Built {
    c2: Conv,
    c1: Conv,
    c3: Conv,
    ct: Conv,
    bil: Bilinear,
    lstm: Lstm,
    gru: Gru,
    stores: Vec<(String, nn::VarStore)>,
}

/// Builds every layer in gen_golden.py's order under `manual_seed(11)`.
fn build() -> Built {
    let _g = engram_core::seed::global_rng_lock();
    tch::manual_seed(11);
    let mk = || nn::VarStore::new(Device::Cpu);
    let (v1, v2, v3, v4, v5, v6, v7) = (mk(), mk(), mk(), mk(), mk(), mk(), mk());
    let c2 = Conv::new(v1.root(), ConvConfig::conv2d(4, 6, 3).stride(2).padding(1).groups(2)).unwrap();
    let c1 = Conv::new(v2.root(), ConvConfig::conv1d(3, 3, 5).padding(4).dilation(2).groups(3)).unwrap();
    let c3 = Conv::new(v3.root(), ConvConfig::conv3d(2, 4, 3).padding(1)).unwrap();
    let ct = Conv::new(v4.root(), ConvConfig::conv2d(4, 6, 3).transposed().stride(2).padding(1).output_padding(1).groups(2)).unwrap();
    let bil = Bilinear::new(v5.root(), BilinearConfig { in1_features: 3, in2_features: 4, out_features: 2, bias: true }).unwrap();
    let lstm = Lstm::new(v6.root(), RnnConfig { num_layers: 2, bidirectional: true, ..RnnConfig::new(3, 5) }).unwrap();
    let gru = Gru::new(v7.root(), RnnConfig { batch_first: false, ..RnnConfig::new(3, 4) }).unwrap();
    let stores = ["c2", "c1", "c3", "ct", "bil", "lstm", "gru"].iter().map(|s| s.to_string()).zip([v1, v2, v3, v4, v5, v6, v7]).collect();
    Built { c2, c1, c3, ct, bil, lstm, gru, stores }
}

#[test]
fn seeded_init_of_conv_bilinear_lstm_gru_is_bit_identical_to_torch() {
    let g = Golden::load("layers2.safetensors");
    let b = build();
    for (prefix, vs) in &b.stores {
        assert_params_equal(vs, &g, prefix);
    }
}

#[test]
fn conv_forward_and_backward_match_torch() {
    let g = Golden::load("layers2.safetensors");
    let b = build();
    for (name, conv, x) in [("c2", &b.c2, "x2"), ("c1", &b.c1, "x1"), ("c3", &b.c3, "x3"), ("ct", &b.ct, "x2")] {
        let (y, gx) = with_grad(|xs| conv.try_forward(&xs[0]).unwrap(), &[g.get(x)]);
        close32(&format!("{name}.y"), &y, &g.get(&format!("{name}.y")));
        close32(&format!("{name}.gx"), &gx[0], &g.get(&format!("{name}.gx")));
    }
    close32("bil.y", &b.bil.try_forward(&g.get("bil.x1"), &g.get("bil.x2")).unwrap(), &g.get("bil.y"));
    // shape errors come back as errors
    assert!(b.c2.try_forward(&Tensor::zeros([2, 3, 7, 7], tch::kind::FLOAT_CPU)).is_err());
    assert!(b.c3.try_forward(&Tensor::zeros([2, 4, 4], tch::kind::FLOAT_CPU)).is_err(), "conv3d needs 3 spatial dims");
    // random inits draw from libtorch's global generator: under the lock, so that they cannot
    // shift another test's seeded init running on a parallel thread
    let _lock = engram_core::seed::global_rng_lock();
    let small = Conv::new(nn::VarStore::new(Device::Cpu).root(), ConvConfig::conv1d(3, 3, 5)).unwrap();
    assert!(small.try_forward(&Tensor::zeros([1, 3, 4], tch::kind::FLOAT_CPU)).is_err(), "shorter than the kernel");
    assert!(b.bil.try_forward(&g.get("bil.x1"), &g.get("bil.x1")).is_err());
    assert!(Conv::new(nn::VarStore::new(Device::Cpu).root(), ConvConfig::conv2d(4, 6, 3).groups(4)).is_err());
}

#[test]
fn lstm_and_gru_match_torch() {
    let g = Golden::load("layers2.safetensors");
    let b = build();
    let (y, (h, c)) = b.lstm.forward(&g.get("xs"), None, false).unwrap();
    close32("lstm.y", &y, &g.get("lstm.y"));
    close32("lstm.h", &h, &g.get("lstm.h"));
    close32("lstm.c", &c, &g.get("lstm.c"));
    let (y, h) = b.gru.forward(&g.get("xs").transpose(0, 1), Some(&g.get("gru.h0")), false).unwrap();
    close32("gru.y", &y, &g.get("gru.y"));
    close32("gru.h", &h, &g.get("gru.h"));
    assert!(b.gru.forward(&g.get("xs"), Some(&Tensor::zeros([2, 2, 4], tch::kind::FLOAT_CPU)), false).is_err());
}

#[test]
fn pooling_matches_torch() {
    let g = Golden::load("layers2.safetensors");
    let x = g.get("xp");
    let mp = Pool::new(PoolConfig { stride: vec![2, 2], padding: vec![1, 1], ..PoolConfig::new(PoolKind::Max, 2, 3) }).unwrap();
    close32("maxpool", &mp.try_forward(&x).unwrap(), &g.get("maxpool"));
    let ap = Pool::new(PoolConfig { ceil_mode: true, ..PoolConfig::new(PoolKind::Avg, 2, 2) }).unwrap();
    close32("avgpool", &ap.try_forward(&x).unwrap(), &g.get("avgpool_ceil"));
    close32("adaptive_avg", &adaptive_pool(&x, PoolKind::Avg, &[4, 3]).unwrap(), &g.get("adaptive_avg"));
    close32("adaptive_max1d", &adaptive_pool(&x.select(2, 0), PoolKind::Max, &[4]).unwrap(), &g.get("adaptive_max1d"));
    assert!(Pool::new(PoolConfig { padding: vec![2, 2], ..PoolConfig::new(PoolKind::Max, 2, 3) }).is_err());
    assert!(mp.try_forward(&Tensor::zeros([1, 1], tch::kind::FLOAT_CPU)).is_err());
}

#[test]
fn squeeze_excitation_and_patch_embedding_match_torch_from_the_same_seed() {
    let g = Golden::load("layers2.safetensors");
    let _lock = engram_core::seed::global_rng_lock();
    tch::manual_seed(12);
    let vs = nn::VarStore::new(Device::Cpu);
    let se = SqueezeExcitation::new(vs.root() / "se", 8, 2).unwrap();
    tch::manual_seed(13);
    let pe = PatchEmbedding::new(vs.root() / "patch_embed", PatchEmbeddingConfig { img_size: 8, patch_size: 4, in_channels: 3, embed_dim: 16 }).unwrap();
    close32("se", &se.try_forward(&g.get("se.x")).unwrap(), &g.get("se.y"));
    close32("patch", &pe.try_forward(&g.get("patch.x")).unwrap(), &g.get("patch.y"));
    assert_eq!(pe.num_patches(), 4);
    let names: Vec<String> = vs.variables().into_keys().collect();
    assert!(names.contains(&"se.fc1.weight".to_string()) && names.contains(&"patch_embed.proj.bias".to_string()));
}

#[test]
fn alibi_and_linear_attention_match_reference() {
    let g = Golden::load("layers2.safetensors");
    for n in [8i64, 6, 12] {
        let got = Tensor::from_slice(&alibi_slopes(n).unwrap());
        common::close64(&format!("slopes{n}"), &got, &g.get(&format!("alibi.slopes{n}")));
    }
    let (q, k, v) = (g.get("alibi.q"), g.get("alibi.k"), g.get("alibi.v"));
    let bias = alibi_bias(6, 5, 5, Device::Cpu).unwrap();
    let y = attention_with_bias(&q, &k, &v, &bias, &AttentionMask::new(MaskKind::Causal), SdpaOptions::default()).unwrap();
    close32("alibi.y", &y, &g.get("alibi.y"));
    let lin = linear_attention(&q, &k, &v, FeatureMap::EluPlusOne, false, 1e-6).unwrap();
    close32("lin.y", &lin, &g.get("lin.y"));
    let lin_c = linear_attention(&q, &k, &v, FeatureMap::EluPlusOne, true, 1e-6).unwrap();
    close32("lin.y_causal", &lin_c, &g.get("lin.y_causal"));
    assert!(attention_with_bias(&q, &k, &v, &Tensor::zeros([7, 5, 5], tch::kind::FLOAT_CPU), &AttentionMask::default(), SdpaOptions::default()).is_err());
}

#[test]
fn llama_block_from_the_same_seed_matches_torch() {
    let g = Golden::load("layers2.safetensors");
    let _lock = engram_core::seed::global_rng_lock();
    tch::manual_seed(21);
    let vs = nn::VarStore::new(Device::Cpu);
    let block = TransformerBlock::new(vs.root() / "layer", TransformerBlockConfig::llama(16, 4, 2, 24)).unwrap();
    let x = g.get("block.x");
    let y = block.forward_t(&x, &AttentionMask::new(MaskKind::Causal), false).unwrap();
    close32("block.y", &y, &g.get("block.y"));
    // decoding with a KV cache gives the same outputs
    let mut cache = KvCache::new(None);
    let steps: Vec<Tensor> = (0..6).map(|t| block.forward_cached(&x.narrow(1, t, 1), &mut cache, MaskKind::Causal).unwrap()).collect();
    close32("block.cached", &Tensor::cat(&steps, 1), &g.get("block.y"));
    let names: Vec<String> = vs.variables().into_keys().collect();
    for n in ["layer.input_layernorm.weight", "layer.self_attn.q_proj.weight", "layer.post_attention_layernorm.weight", "layer.mlp.gate_proj.weight"] {
        assert!(names.contains(&n.to_string()), "{n} missing");
    }
}

#[test]
fn lora_starts_as_a_no_op_trains_only_the_adapter_and_merges_exactly() {
    use engram_layers::lora::{LoraConfig, LoraLinear};
    use engram_layers::LinearConfig;
    use tch::nn::ModuleT;
    let _lock = engram_core::seed::global_rng_lock();  // random draws: see conv_forward_and_backward_match_torch
    let vs = nn::VarStore::new(Device::Cpu);
    let l = LoraLinear::new(vs.root() / "fc", LoraConfig { base: LinearConfig::new(6, 5), rank: 2, alpha: 8.0, dropout: 0.0 }).unwrap();
    let x = Tensor::randn([4, 6], tch::kind::FLOAT_CPU);
    let base = x.linear(&l.base.weight, l.base.bias.as_ref());
    assert_eq!(l.forward_t(&x, false), base);
    set(&l.lora_b, &Tensor::randn([5, 2], tch::kind::FLOAT_CPU));
    let y = l.forward_t(&x, false);
    close32("merged", &y, &x.linear(&l.merged_weight(), l.base.bias.as_ref()));
    y.sum(tch::Kind::Float).backward();
    assert!(l.lora_a.grad().defined() && l.lora_b.grad().defined());
    assert!(!l.base.weight.grad().defined(), "the base layer is frozen");
    let names: Vec<String> = vs.variables().into_keys().collect();
    assert!(names.contains(&"fc.lora_A.weight".to_string()) && names.contains(&"fc.base_layer.weight".to_string()));
}

#[test]
fn torch_multihead_attention_mirror_matches_nn_multiheadattention() {
    let g = Golden::load("layers2.safetensors");
    let _lock = engram_core::seed::global_rng_lock();
    tch::manual_seed(31);
    let vs = nn::VarStore::new(Device::Cpu);
    let cfg = TorchMultiheadAttentionConfig { embed_dim: 8, num_heads: 2, dropout: 0.0, bias: true };
    let mha = TorchMultiheadAttention::new(vs.root(), cfg).unwrap();
    assert_params_equal(&vs, &g, "tmha");
    let x = g.get("tmha.x");
    let mask = AttentionMask::from_torch_key_padding(MaskKind::Causal, &g.get("tmha.pad").to_kind(tch::Kind::Bool));
    let y = mha.forward(&x, &x, &x, &mask, false).unwrap();
    close32("tmha.y", &y, &g.get("tmha.y"));
    assert!(mha.forward(&x, &x, &x.narrow(1, 0, 4), &AttentionMask::default(), false).is_err());
}
