//! Counting statistics: accuracies with Wilson 95% intervals, summaries and histograms.

use serde::{Deserialize, Serialize};

/// z for a two-sided 95% interval.
pub const Z95: f64 = 1.959_963_984_540_054;

/// A measured accuracy: `correct` out of `total`, with its Wilson 95% interval.
///
/// ```
/// let a = engram_diagnostics::stats::Accuracy::new(45, 50);
/// assert!((a.accuracy - 0.9).abs() < 1e-12);
/// assert!(a.ci_low < 0.9 && a.ci_high > 0.9 && a.ci_high <= 1.0);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Accuracy {
    /// Number of correct trials.
    pub correct: u64,
    /// Number of trials.
    pub total: u64,
    /// `correct / total` (0 when there were no trials).
    pub accuracy: f64,
    /// Lower end of the Wilson 95% interval.
    pub ci_low: f64,
    /// Upper end of the Wilson 95% interval.
    pub ci_high: f64,
}

impl Accuracy {
    /// Builds the accuracy and its interval.
    pub fn new(correct: u64, total: u64) -> Self {
        let (lo, hi) = wilson(correct, total);
        let accuracy = if total == 0 { 0.0 } else { correct as f64 / total as f64 };
        Accuracy { correct, total, accuracy, ci_low: lo, ci_high: hi }
    }
    /// `"93.3% [78.7, 98.2] (28/30)"`.
    pub fn display(&self) -> String {
        if self.total == 0 {
            return "n/a (0 trials)".into();
        }
        format!(
            "{:.1}% [{:.1}, {:.1}] ({}/{})",
            100.0 * self.accuracy,
            100.0 * self.ci_low,
            100.0 * self.ci_high,
            self.correct,
            self.total
        )
    }
}

/// Wilson score interval at 95% for `k` successes in `n` trials; `(0, 1)` for `n = 0`.
pub fn wilson(k: u64, n: u64) -> (f64, f64) {
    if n == 0 {
        return (0.0, 1.0);
    }
    let n_f = n as f64;
    let p = k as f64 / n_f;
    let z2 = Z95 * Z95;
    let denom = 1.0 + z2 / n_f;
    let center = (p + z2 / (2.0 * n_f)) / denom;
    let half = Z95 / denom * (p * (1.0 - p) / n_f + z2 / (4.0 * n_f * n_f)).sqrt();
    ((center - half).max(0.0), (center + half).min(1.0))
}

/// Mean, standard deviation, minimum and maximum of a sample.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// Sample size.
    pub n: u64,
    /// Mean.
    pub mean: f64,
    /// Population standard deviation.
    pub std: f64,
    /// Minimum.
    pub min: f64,
    /// Maximum.
    pub max: f64,
}

impl Summary {
    /// Summarises `xs` (`None` when empty).
    pub fn of(xs: &[f64]) -> Option<Self> {
        if xs.is_empty() {
            return None;
        }
        let n = xs.len() as f64;
        let mean = xs.iter().sum::<f64>() / n;
        let var = xs.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / n;
        let min = xs.iter().cloned().fold(f64::INFINITY, f64::min);
        let max = xs.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        Some(Summary { n: xs.len() as u64, mean, std: var.sqrt(), min, max })
    }
}

/// Counts of `xs` in `bins` equal bins over `[lo, hi]` (values outside are clamped in).
pub fn histogram(xs: &[f64], lo: f64, hi: f64, bins: usize) -> Vec<u64> {
    let mut h = vec![0u64; bins.max(1)];
    let width = (hi - lo) / h.len() as f64;
    for &x in xs {
        if !x.is_finite() {
            continue;
        }
        let i = (((x - lo) / width).floor().max(0.0) as usize).min(h.len() - 1);
        h[i] += 1;
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;
    use approx::assert_abs_diff_eq;
    #[test]
    fn wilson_known_values() {
        // statsmodels proportion_confint(8, 10, method="wilson") = (0.4902, 0.9433)
        let (lo, hi) = wilson(8, 10);
        assert_abs_diff_eq!(lo, 0.490_162, epsilon = 1e-5);
        assert_abs_diff_eq!(hi, 0.943_318, epsilon = 1e-5);
        let (lo, hi) = wilson(0, 30);
        assert_eq!(lo, 0.0);
        assert_abs_diff_eq!(hi, 0.113_513, epsilon = 1e-5);
        assert_eq!(wilson(0, 0), (0.0, 1.0));
    }
    #[test]
    fn histogram_and_summary() {
        let xs = [0.0, 0.1, 0.5, 0.99, 1.0, 2.0];
        assert_eq!(histogram(&xs, 0.0, 1.0, 2), vec![2, 4]);
        let s = Summary::of(&[1.0, 3.0]).unwrap();
        assert_eq!((s.mean, s.std, s.min, s.max), (2.0, 1.0, 1.0, 3.0));
        assert!(Summary::of(&[]).is_none());
    }
}
