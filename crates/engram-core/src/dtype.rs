//! Dtype helpers: parsing names, sizes, and the float kinds the delta-rule op accepts.

use crate::{Error, Result};
use tch::Kind;

/// Parses `f32|float32|float`, `f64|float64|double`, `bf16|bfloat16`, `f16|float16|half`.
///
/// ```
/// assert_eq!(engram_core::dtype::parse_kind("bf16").unwrap(), tch::Kind::BFloat16);
/// ```
pub fn parse_kind(s: &str) -> Result<Kind> {
    match s.trim().to_ascii_lowercase().as_str() {
        "f32" | "float32" | "float" | "fp32" => Ok(Kind::Float),
        "f64" | "float64" | "double" | "fp64" => Ok(Kind::Double),
        "bf16" | "bfloat16" => Ok(Kind::BFloat16),
        "f16" | "float16" | "half" | "fp16" => Ok(Kind::Half),
        other => Err(Error::Dtype(format!("unknown dtype '{other}': expected f32, f64, bf16 or f16"))),
    }
}

/// The short name used in configs and reports.
pub fn kind_name(k: Kind) -> &'static str {
    match k {
        Kind::Float => "f32",
        Kind::Double => "f64",
        Kind::BFloat16 => "bf16",
        Kind::Half => "f16",
        Kind::Int64 => "i64",
        Kind::Int => "i32",
        Kind::Bool => "bool",
        Kind::Uint8 => "u8",
        _ => "other",
    }
}

/// Bytes per element.
pub fn size_of(k: Kind) -> usize {
    k.elt_size_in_bytes()
}

/// True for floating kinds.
pub fn is_float(k: Kind) -> bool {
    matches!(k, Kind::Float | Kind::Double | Kind::BFloat16 | Kind::Half)
}

/// The kind arithmetic should accumulate in: f64 stays f64, everything else becomes f32.
pub fn accum_kind(k: Kind) -> Kind {
    if k == Kind::Double { Kind::Double } else { Kind::Float }
}

/// Errors unless `k` is a float kind.
pub fn ensure_float(name: &str, k: Kind) -> Result<()> {
    if is_float(k) { Ok(()) } else { Err(Error::Dtype(format!("{name} must be a float tensor, got {k:?}"))) }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn round_trip_names() {
        for k in [Kind::Float, Kind::Double, Kind::BFloat16, Kind::Half] {
            assert_eq!(parse_kind(kind_name(k)).unwrap(), k);
        }
        assert!(parse_kind("int8").is_err());
        assert_eq!(size_of(Kind::BFloat16), 2);
        assert_eq!(accum_kind(Kind::Half), Kind::Float);
    }
}
