//! Small shared helpers: shape checks that turn would-be libtorch aborts into [`Error`]s.

use engram_core::{Error, Result};
use tch::Tensor;

#[allow(dead_code)]
/// Fails with [`Error::Shape`] unless `t` has `dim` dimensions.
pub(crate) fn expect_dim(name: &str, t: &Tensor, dim: usize) -> Result<()> {
    if t.dim() != dim {
        return Err(Error::Shape(format!("{name}: expected {dim} dims, got shape {:?}", t.size())));
    }
    Ok(())
}

/// Fails with [`Error::Shape`] unless the last dimension of `t` is `n`.
pub(crate) fn expect_last(name: &str, t: &Tensor, n: i64) -> Result<()> {
    match t.size().last() {
        Some(&d) if d == n => Ok(()),
        _ => Err(Error::Shape(format!("{name}: expected last dim {n}, got shape {:?}", t.size()))),
    }
}

/// Fails with [`Error::InvalidArgument`] when `ok` is false.
pub(crate) fn ensure(ok: bool, msg: impl FnOnce() -> String) -> Result<()> {
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidArgument(msg()))
    }
}

/// Fails with [`Error::Shape`] when `ok` is false.
pub(crate) fn ensure_shape(ok: bool, msg: impl FnOnce() -> String) -> Result<()> {
    if ok {
        Ok(())
    } else {
        Err(Error::Shape(msg()))
    }
}

/// Unwraps a checked forward inside a `tch::nn::Module` impl, whose signature cannot carry an
/// error; the message names the layer so the failure is traceable.
pub(crate) fn or_panic(layer: &str, r: Result<Tensor>) -> Tensor {
    match r {
        Ok(t) => t,
        Err(e) => panic!("{layer}: {e} (use try_forward for a Result)"),
    }
}
