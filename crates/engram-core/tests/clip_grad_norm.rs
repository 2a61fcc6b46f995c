//! `engram_core::ops::clip_grad_norm` (PyTorch's foreach `clip_grad_norm_` without a host sync):
//! the tch path on the CPU against an f64 reference, the clipping and `max_norm` semantics, the
//! argument errors; on a GPU with the kernel library, the library path against the tch path
//! (skipped with a notice elsewhere).

use engram_core::ops::clip_grad_norm::{available, clip_grad_norm, clip_with_library, clip_with_tch};
use engram_core::seed::{global_rng_lock, manual_seed};
use engram_core::Error;
use tch::{Device, Kind, Tensor};

const SHAPES: [&[i64]; 5] = [&[7, 5], &[13], &[3, 4, 2], &[1], &[64, 33]];

fn grads(dev: Device, kind: Kind, scale: f64, seed: u64) -> Vec<Tensor> {
    let _g = global_rng_lock();
    manual_seed(seed);
    SHAPES.iter().map(|s| (Tensor::randn(*s, (Kind::Float, Device::Cpu)) * scale).to_kind(kind).to_device(dev)).collect()
}

fn copies(ts: &[Tensor]) -> Vec<Tensor> {
    ts.iter().map(|t| t.copy()).collect()
}

/// The global L2 norm computed on the host in f64.
fn reference_norm(ts: &[Tensor]) -> f64 {
    ts.iter()
        .map(|t| {
            let v: Vec<f64> = Vec::try_from(t.to_device(Device::Cpu).to_kind(Kind::Double).flatten(0, -1)).unwrap();
            v.iter().map(|x| x * x).sum::<f64>()
        })
        .sum::<f64>()
        .sqrt()
}

fn max_abs_diff(a: &[Tensor], b: &[Tensor]) -> f64 {
    a.iter().zip(b).map(|(x, y)| (x.to_kind(Kind::Double) - y.to_kind(Kind::Double)).abs().max().double_value(&[])).fold(0.0, f64::max)
}

fn same(a: &[Tensor], b: &[Tensor]) -> bool {
    a.iter().zip(b).all(|(x, y)| x.equal(y))
}

#[test]
fn norm_matches_the_f64_reference_and_is_a_0_dim_f32_tensor() {
    let g = grads(Device::Cpu, Kind::Float, 1.0, 1);
    let before = copies(&g);
    let total = clip_grad_norm(&g, 0.0).unwrap();
    assert_eq!(total.dim(), 0);
    assert_eq!(total.kind(), Kind::Float);
    assert_eq!(total.device(), Device::Cpu);
    let want = reference_norm(&g);
    let got = total.double_value(&[]);
    assert!((got - want).abs() <= 1e-6 * want, "norm {got} vs f64 reference {want}");
    assert!(same(&g, &before), "max_norm 0 must not touch the gradients");
    // f64 gradients: the norm is computed in f64 and only rounded to f32 at the end.
    let g64 = grads(Device::Cpu, Kind::Double, 1.0, 1);
    let got = clip_grad_norm(&g64, 0.0).unwrap().double_value(&[]);
    let want = reference_norm(&g64);
    assert!((got - want).abs() <= 1e-7 * want, "f64 norm {got} vs {want}");
}

#[test]
fn clipping_scales_to_max_norm() {
    let g = grads(Device::Cpu, Kind::Float, 3.0, 2);
    let before = copies(&g);
    let want = reference_norm(&g);
    let max_norm = 0.25;
    let total = clip_grad_norm(&g, max_norm).unwrap().double_value(&[]);
    assert!((total - want).abs() <= 1e-6 * want, "returns the norm before clipping: {total} vs {want}");
    let after = reference_norm(&g);
    assert!((after - max_norm).abs() < 1e-6, "clipped norm {after}, want {max_norm}");
    // Every gradient was scaled by the same coefficient, PyTorch's max_norm / (total + 1e-6).
    let coef = max_norm / (total + 1e-6);
    let scaled: Vec<Tensor> = before.iter().map(|t| t * coef).collect();
    assert!(max_abs_diff(&g, &scaled) < 1e-6);
    // Clipping again: the norm is now at the threshold, so the coefficient clamps to ~1.
    let again = clip_grad_norm(&g, max_norm).unwrap().double_value(&[]);
    assert!((again - max_norm).abs() < 1e-6);
}

#[test]
fn below_the_threshold_nothing_changes() {
    let g = grads(Device::Cpu, Kind::Float, 0.01, 3);
    let before = copies(&g);
    let want = reference_norm(&g);
    assert!(want < 1.0);
    let total = clip_grad_norm(&g, 1.0).unwrap().double_value(&[]);
    assert!((total - want).abs() <= 1e-6 * want);
    assert!(same(&g, &before), "a coefficient clamped to 1 leaves the gradients bit for bit");
}

#[test]
fn max_norm_semantics_and_empty_list() {
    let g = grads(Device::Cpu, Kind::Float, 5.0, 4);
    let before = copies(&g);
    let want = reference_norm(&g);
    for m in [0.0, -1.0, f64::INFINITY] {
        let total = clip_grad_norm(&g, m).unwrap().double_value(&[]);
        assert!((total - want).abs() <= 1e-6 * want, "max_norm {m}: {total} vs {want}");
        assert!(same(&g, &before), "max_norm {m} must leave the gradients unchanged");
    }
    assert!(matches!(clip_grad_norm(&g, f64::NAN), Err(Error::InvalidArgument(_))));
    // Empty list: a CPU zero, as torch.nn.utils.clip_grad_norm_ returns torch.tensor(0.0).
    for m in [0.0, 1.0] {
        let z = clip_grad_norm(&[], m).unwrap();
        assert_eq!((z.dim(), z.kind(), z.double_value(&[])), (0, Kind::Float, 0.0));
    }
}

#[test]
fn mixed_dtypes_and_non_finite_gradients() {
    // One device, several dtypes: each group keeps its dtype, the total is promoted (f64 here).
    let f32s = grads(Device::Cpu, Kind::Float, 1.0, 5);
    let mut g = vec![f32s[0].to_kind(Kind::Double), f32s[1].shallow_clone(), f32s[2].to_kind(Kind::BFloat16)];
    let kinds: Vec<Kind> = g.iter().map(Tensor::kind).collect();
    let want = reference_norm(&g);
    let total = clip_grad_norm(&g, 0.5).unwrap().double_value(&[]);
    assert!((total - want).abs() <= 1e-3 * want, "{total} vs {want}");
    assert_eq!(g.iter().map(Tensor::kind).collect::<Vec<_>>(), kinds, "in place: dtypes are kept");
    assert!((reference_norm(&g) - 0.5).abs() < 5e-3);
    // A non-finite gradient is not an error (error_if_nonfinite=False): the norm says so.
    g[1] = Tensor::from_slice(&[1.0f32, f32::NAN]);
    assert!(clip_grad_norm(&g, 1.0).unwrap().double_value(&[]).is_nan());
    let inf = [Tensor::from_slice(&[f32::INFINITY, 1.0])];
    assert_eq!(clip_grad_norm(&inf, 0.0).unwrap().double_value(&[]), f64::INFINITY);
}

#[test]
fn bad_arguments_are_errors() {
    let ints = [Tensor::from_slice(&[1i64, 2])];
    assert!(matches!(clip_grad_norm(&ints, 1.0), Err(Error::Dtype(_))));
    // The CPU is never the library path; asking for it explicitly is an error, not a fallback.
    let g = grads(Device::Cpu, Kind::Float, 1.0, 6);
    assert!(!available(Device::Cpu));
    assert!(matches!(clip_with_library(&g, 1.0), Err(Error::Kernel(_))));
    if tch::Cuda::is_available() {
        let mixed = [g[0].shallow_clone(), g[1].to_device(Device::Cuda(0))];
        let e = clip_grad_norm(&mixed, 1.0).unwrap_err();
        assert!(matches!(e, Error::Device(_)) && e.to_string().contains("one device"), "{e}");
        assert!(matches!(clip_with_tch(&mixed, 1.0), Err(Error::Device(_))));
    } else {
        eprintln!("notice: the mismatched-devices case needs a GPU (a CPU-only machine has one device); checked in the GPU test");
    }
}

#[test]
fn library_path_matches_the_tch_path_on_gpu() {
    let dev = Device::Cuda(0);
    if !tch::Cuda::is_available() || !available(dev) {
        eprintln!(
            "notice: skipped: no GPU or no kernel library with engram_clip_grad_norm ({})",
            engram_core::kernels::load_error().unwrap_or_else(|| "library loaded".into())
        );
        return;
    }
    for (kind, tol) in [(Kind::Float, 1e-5), (Kind::BFloat16, 1e-2)] {
        for (scale, max_norm) in [(3.0, 1.0), (0.01, 1.0), (3.0, 0.0)] {
            let a = grads(dev, kind, scale, 7);
            let b = copies(&a);
            let want = reference_norm(&a);
            let ta = clip_with_library(&a, max_norm).unwrap();
            let tb = clip_with_tch(&b, max_norm).unwrap();
            assert_eq!((ta.dim(), ta.kind(), ta.device()), (0, Kind::Float, dev));
            let (na, nb) = (ta.double_value(&[]), tb.double_value(&[]));
            assert!((na - nb).abs() <= tol * want, "{kind:?} scale {scale}: library {na} vs tch {nb}");
            assert!((na - want).abs() <= tol * want, "{kind:?} scale {scale}: library {na} vs f64 {want}");
            let d = max_abs_diff(&a, &b);
            assert!(d <= tol * scale.max(1.0), "{kind:?} scale {scale} max_norm {max_norm}: gradients differ by {d}");
            if max_norm > 0.0 && want > max_norm {
                let after = reference_norm(&a);
                assert!((after - max_norm).abs() <= 10.0 * tol * max_norm, "{kind:?}: clipped norm {after}");
            }
        }
    }
    // The dispatching entry point takes the library on CUDA and returns a device tensor.
    let g = grads(dev, Kind::Float, 1.0, 8);
    assert_eq!(clip_grad_norm(&g, 1.0).unwrap().device(), dev);
    // Mismatched devices are an error on either path.
    let mixed = [g[0].shallow_clone(), g[1].to_device(Device::Cpu)];
    assert!(matches!(clip_grad_norm(&mixed, 1.0), Err(Error::Device(_))));
    assert!(matches!(clip_with_library(&mixed, 1.0), Err(Error::Device(_))));
    // Empty list through the library entry point.
    assert_eq!(clip_with_library(&[], 1.0).unwrap().double_value(&[]), 0.0);
}
