//! Loss parity with torch.nn.functional (golden files).

mod common;
use common::{close32, with_grad, Golden};
use engram_layers::loss::*;
use tch::Tensor;

type SliceLoss<'a> = Box<dyn Fn(&[Tensor]) -> Tensor + 'a>;
type TensorLoss<'a> = Box<dyn Fn(&Tensor) -> Tensor + 'a>;

#[test]
fn cross_entropy_and_nll_match_torch() {
    let g = Golden::load("losses.safetensors");
    let (logits, target, weight) = (g.get("logits"), g.get("target"), g.get("weight"));
    let ce = |o: CrossEntropyOptions, w: Option<Tensor>| {
        let t = target.shallow_clone();
        move |xs: &[Tensor]| cross_entropy(&xs[0], &t, w.as_ref(), o).unwrap()
    };
    let d = CrossEntropyOptions::default();
    let cases: Vec<(&str, SliceLoss)> = vec![
        ("ce", Box::new(ce(d, None))),
        ("ce_ls_ignore", Box::new(ce(CrossEntropyOptions { ignore_index: 2, label_smoothing: 0.1, ..d }, None))),
        ("ce_weight_sum", Box::new(ce(CrossEntropyOptions { reduction: Reduction::Sum, ..d }, Some(weight.shallow_clone())))),
        ("ce_weight_ls", Box::new(ce(CrossEntropyOptions { label_smoothing: 0.2, ..d }, Some(weight.shallow_clone())))),
        ("nll", Box::new(|xs: &[Tensor]| nll_loss(&xs[0].log_softmax(-1, tch::Kind::Float), &g.get("target"), None, 4, Reduction::Mean).unwrap())),
    ];
    for (name, f) in cases {
        let (y, gr) = with_grad(|xs| f(xs), &[logits.shallow_clone()]);
        close32(&format!("{name}.y"), &y.reshape([1]), &g.get(&format!("{name}.y")));
        close32(&format!("{name}.g"), &gr[0], &g.get(&format!("{name}.g")));
    }
    let (lz, lt) = (g.get("sp.logits"), g.get("sp.target"));
    close32("sp.ce", &cross_entropy(&lz, &lt, None, d).unwrap().reshape([1]), &g.get("sp.ce"));
    let lp = lz.log_softmax(1, tch::Kind::Float);
    close32("sp.nll", &nll_loss(&lp, &lt, None, -100, Reduction::Mean).unwrap().reshape([1]), &g.get("sp.nll"));
    // invalid targets are errors, not aborts
    assert!(cross_entropy(&logits, &Tensor::from_slice(&[0i64, 5, 0, 0, 0, 0]), None, d).is_err());
    assert!(cross_entropy(&logits, &Tensor::from_slice(&[0i64, 1]), None, d).is_err());
    assert!(cross_entropy(&logits, &target.to_kind(tch::Kind::Float), None, d).is_err());
    assert!(cross_entropy(&logits, &Tensor::from_slice(&[0i64, -100, 0, 0, 0, 0]), None, d).is_ok(), "ignore_index may be out of range");
}

#[test]
fn binary_losses_match_torch_including_clamping() {
    let g = Golden::load("losses.safetensors");
    let (x, y, bw) = (g.get("bx"), g.get("by"), g.get("bw"));
    let pw = Tensor::full([12], 2.5, tch::kind::FLOAT_CPU);
    let (l, gr) = with_grad(|xs| binary_cross_entropy_with_logits(&xs[0], &y, Some(&bw), Some(&pw), Reduction::Mean).unwrap(), &[x.shallow_clone()]);
    close32("bcel.y", &l.reshape([1]), &g.get("bcel.y"));
    close32("bcel.g", &gr[0], &g.get("bcel.g"));
    let (l, gr) = with_grad(|xs| binary_cross_entropy(&xs[0], &y, Some(&bw), Reduction::Mean).unwrap(), &[g.get("bce.p")]);
    close32("bce.y", &l.reshape([1]), &g.get("bce.y"));
    close32("bce.g", &gr[0], &g.get("bce.g"));
    let (l, gr) = with_grad(|xs| sigmoid_focal_loss(&xs[0], &y, 0.25, 2.0, Reduction::Mean).unwrap(), &[x.shallow_clone()]);
    close32("focal.y", &l.reshape([1]), &g.get("focal.y"));
    close32("focal.g", &gr[0], &g.get("focal.g"));
    assert!(binary_cross_entropy(&(&x * 1.0), &y, None, Reduction::Mean).is_err(), "logits are not probabilities");
}

#[test]
fn regression_losses_match_torch() {
    let g = Golden::load("losses.safetensors");
    let (a, t) = (g.get("ra"), g.get("rt"));
    let cases: Vec<(&str, TensorLoss)> = vec![
        ("mse", Box::new(|z: &Tensor| mse_loss(z, &t, Reduction::Mean).unwrap())),
        ("l1", Box::new(|z: &Tensor| l1_loss(z, &t, Reduction::Sum).unwrap())),
        ("huber", Box::new(|z: &Tensor| huber_loss(z, &t, 0.5, Reduction::Mean).unwrap())),
        ("smooth_l1", Box::new(|z: &Tensor| smooth_l1_loss(z, &t, 0.5, Reduction::Mean).unwrap())),
    ];
    for (name, f) in cases {
        let (l, gr) = with_grad(|xs| f(&xs[0]), &[a.shallow_clone()]);
        close32(&format!("{name}.y"), &l.reshape([1]), &g.get(&format!("{name}.y")));
        close32(&format!("{name}.g"), &gr[0], &g.get(&format!("{name}.g")));
    }
    assert!(mse_loss(&a, &t.narrow(0, 0, 2), Reduction::Mean).is_err());
    let (lp, tp) = (g.get("kl.input"), g.get("kl.target"));
    close32("kl.batchmean", &kl_div(&lp, &tp, false, KlReduction::BatchMean).unwrap().reshape([1]), &g.get("kl.batchmean"));
    close32("kl.log_target", &kl_div(&lp, &tp.log(), true, KlReduction::Sum).unwrap().reshape([1]), &g.get("kl.log_target_sum"));
}

#[test]
fn info_nce_and_cosine_embedding_match_reference() {
    let g = Golden::load("losses.safetensors");
    let (l, gr) = with_grad(|xs| info_nce(&xs[0], &xs[1], 0.1, true).unwrap(), &[g.get("nce.q"), g.get("nce.k")]);
    close32("nce.y", &l.reshape([1]), &g.get("nce.y"));
    close32("nce.gq", &gr[0], &g.get("nce.gq"));
    close32("nce.gk", &gr[1], &g.get("nce.gk"));
    let (c2, cy) = (g.get("cos.x2"), g.get("cos.y"));
    let (l, gr) = with_grad(|xs| cosine_embedding_loss(&xs[0], &c2, &cy, 0.2, Reduction::Mean).unwrap(), &[g.get("cos.x1")]);
    close32("cos.loss", &l.reshape([1]), &g.get("cos.loss"));
    close32("cos.g", &gr[0], &g.get("cos.g"));
    assert!(cosine_embedding_loss(&c2, &c2, &Tensor::from_slice(&[1.0f32, 0.0, 1.0, 1.0]), 0.0, Reduction::Mean).is_err());
}
