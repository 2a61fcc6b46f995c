//! Golden-file loading and tolerant comparison shared by the integration tests.
#![allow(dead_code)]

use std::collections::HashMap;
use tch::{Kind, Tensor};

pub struct Golden(HashMap<String, Tensor>);

impl Golden {
    pub fn load(file: &str) -> Golden {
        let path = format!("{}/tests/golden/{file}", env!("CARGO_MANIFEST_DIR"));
        let v = Tensor::read_safetensors(&path).unwrap_or_else(|e| panic!("{path}: {e} (run gen_golden.py)"));
        Golden(v.into_iter().collect())
    }
    pub fn get(&self, k: &str) -> Tensor {
        self.0.get(k).unwrap_or_else(|| panic!("golden tensor {k} missing")).shallow_clone()
    }
    pub fn f64(&self, k: &str) -> Vec<f64> {
        to_vec(&self.get(k))
    }
}

pub fn to_vec(t: &Tensor) -> Vec<f64> {
    Vec::<f64>::try_from(t.detach().to_kind(Kind::Double).flatten(0, -1)).unwrap()
}

/// Element-wise `approx::relative_eq!` with an absolute floor `atol` and relative `rtol`.
pub fn assert_close(what: &str, got: &Tensor, want: &Tensor, rtol: f64, atol: f64) {
    assert_eq!(got.size(), want.size(), "{what}: shape");
    let (g, w) = (to_vec(got), to_vec(want));
    let mut worst = (0usize, 0.0f64);
    for (i, (a, b)) in g.iter().zip(&w).enumerate() {
        if !approx::relative_eq!(*a, *b, epsilon = atol, max_relative = rtol) {
            let d = (a - b).abs();
            if d > worst.1 {
                worst = (i, d);
            }
        }
    }
    assert!(worst.1 == 0.0, "{what}: element {} differs: got {} want {} (|d| = {:e})", worst.0, g[worst.0], w[worst.0], worst.1);
}

/// f32 tolerance of the project (1e-5 relative, tiny absolute floor for values near 0).
pub fn close32(what: &str, got: &Tensor, want: &Tensor) {
    assert_close(what, got, want, 1e-5, 1e-6);
}

/// f64 tolerance of the project.
pub fn close64(what: &str, got: &Tensor, want: &Tensor) {
    assert_close(what, got, want, 1e-10, 1e-12);
}

/// Copies `src` into the parameter `dst` without recording gradients.
pub fn set(dst: &Tensor, src: &Tensor) {
    tch::no_grad(|| dst.shallow_clone().copy_(src));
}

/// Output of `f` and the gradient of `sum(out * linspace(-1, 1))` w.r.t. each input, the same
/// probe as gen_golden.py's `with_grad`.
pub fn with_grad(f: impl FnOnce(&[Tensor]) -> Tensor, inputs: &[Tensor]) -> (Tensor, Vec<Tensor>) {
    let xs: Vec<Tensor> = inputs.iter().map(|x| x.detach().copy().set_requires_grad(true)).collect();
    let y = f(&xs);
    let w = Tensor::linspace(-1.0, 1.0, y.numel() as i64, (y.kind(), y.device())).view_as(&y);
    (&y * w).sum(y.kind()).backward();
    let gs = xs.iter().map(|x| x.grad()).collect();
    (y.detach(), gs)
}
