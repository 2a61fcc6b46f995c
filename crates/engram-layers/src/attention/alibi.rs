//! ALiBi (Press et al. 2022): a per-head linear distance penalty added to attention logits.

use crate::util::ensure;
use engram_core::Result;
use tch::{Device, Kind, Tensor};

/// The per-head slopes of the paper's reference code: for `n` a power of two, the geometric
/// sequence starting at `2^(−8/n)`; otherwise those of the closest smaller power of two followed
/// by every other slope of the next power of two.
///
/// ```
/// let s = engram_layers::attention::alibi_slopes(8).unwrap();
/// assert_eq!(s[0], 0.5);
/// assert_eq!(s[7], 1.0 / 256.0);
/// ```
pub fn alibi_slopes(n_heads: i64) -> Result<Vec<f64>> {
    ensure(n_heads > 0, || format!("ALiBi needs at least one head, got {n_heads}"))?;
    fn pow2(n: i64) -> Vec<f64> {
        let start = 2f64.powf(-(2f64.powf(-((n as f64).log2() - 3.0))));
        (0..n).map(|i| start * start.powi(i as i32)).collect()
    }
    let n = n_heads;
    if (n as u64).is_power_of_two() {
        return Ok(pow2(n));
    }
    let closest = 1i64 << (63 - (n as u64).leading_zeros());
    let mut s = pow2(closest);
    s.extend(pow2(2 * closest).into_iter().step_by(2).take((n - closest) as usize));
    Ok(s)
}

/// The additive bias `[H, Lq, Lk]`: `−slope_h·|i − j|` between query `i` and key `j`, queries
/// aligned to the end of the keys as in [`super::MaskKind`]. Combine it with a causal mask for
/// decoder models (then it equals the paper's `slope·(j − i)` on the visible keys).
pub fn alibi_bias(n_heads: i64, q_len: i64, k_len: i64, device: Device) -> Result<Tensor> {
    ensure(k_len >= q_len && q_len >= 0, || format!("ALiBi: need k_len ≥ q_len, got {q_len}, {k_len}"))?;
    let slopes = Tensor::from_slice(&alibi_slopes(n_heads)?).to_kind(Kind::Float).to_device(device).view([n_heads, 1, 1]);
    let q = Tensor::arange_start(k_len - q_len, k_len, (Kind::Float, device)).view([q_len, 1]);
    let k = Tensor::arange(k_len, (Kind::Float, device)).view([1, k_len]);
    Ok(-(slopes * (q - k).abs()))
}
