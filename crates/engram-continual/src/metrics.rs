//! Continual-learning metrics over the accuracy matrix `R[i][j]`: accuracy on task `j`'s test
//! set after training on experience `i` (Lopez-Paz & Ranzato 2017; Chaudhry et al. 2018).
//!
//! With `T` tasks, `b_j` the accuracy of the untrained network on task `j`:
//! * average accuracy `ACC = (1/T) Σ_j R[T-1][j]`;
//! * backward transfer `BWT = (1/(T-1)) Σ_{j<T-1} (R[T-1][j] − R[j][j])` (negative = forgetting);
//! * forward transfer `FWT = (1/(T-1)) Σ_{j≥1} (R[j-1][j] − b_j)`;
//! * forgetting `F = (1/(T-1)) Σ_{j<T-1} max_{l∈[j, T-2]} (R[l][j] − R[T-1][j])`.
//!
//! A matrix with a single row (the joint upper bound) has an average accuracy only.

use crate::error::{invalid, Result};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// The accuracy matrix and, optionally, the untrained network's accuracies.
///
/// ```
/// use engram_continual::metrics::AccuracyMatrix;
/// let r = AccuracyMatrix::new(vec![vec![0.9, 0.1], vec![0.5, 0.8]], Some(vec![0.5, 0.5])).unwrap();
/// assert!((r.average_accuracy() - 0.65).abs() < 1e-12);
/// assert!((r.backward_transfer().unwrap() + 0.4).abs() < 1e-12);
/// assert!((r.forward_transfer().unwrap() + 0.4).abs() < 1e-12);
/// assert!((r.forgetting().unwrap() - 0.4).abs() < 1e-12);
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AccuracyMatrix {
    /// `rows[i][j]`: accuracy on task `j` after experience `i`.
    pub rows: Vec<Vec<f64>>,
    /// `b_j`: accuracy of the untrained network on task `j`.
    pub initial: Option<Vec<f64>>,
}

/// The summary metrics, for JSON reports.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// Average accuracy after the last experience.
    pub average_accuracy: f64,
    /// Backward transfer.
    pub backward_transfer: Option<f64>,
    /// Forward transfer.
    pub forward_transfer: Option<f64>,
    /// Average forgetting.
    pub forgetting: Option<f64>,
    /// Average accuracy over the tasks seen so far, after each experience.
    pub average_accuracy_curve: Vec<f64>,
}

impl AccuracyMatrix {
    /// Checks shape (every row of width `T`; `T` rows, or one row for joint training) and range.
    pub fn new(rows: Vec<Vec<f64>>, initial: Option<Vec<f64>>) -> Result<Self> {
        let t = rows.first().map(|r| r.len()).unwrap_or(0);
        if t == 0 || rows.iter().any(|r| r.len() != t) || (rows.len() != t && rows.len() != 1) {
            return Err(invalid(format!("accuracy matrix must be T×T or 1×T, got {} rows of widths {:?}", rows.len(), rows.iter().map(|r| r.len()).collect::<Vec<_>>())));
        }
        if initial.as_ref().is_some_and(|b| b.len() != t) {
            return Err(invalid("initial accuracies must have one entry per task"));
        }
        if rows.iter().flatten().chain(initial.iter().flatten()).any(|a| !(0.0..=1.0).contains(a)) {
            return Err(invalid("accuracies must lie in [0, 1]"));
        }
        Ok(AccuracyMatrix { rows, initial })
    }

    /// Number of tasks.
    pub fn n_tasks(&self) -> usize {
        self.rows[0].len()
    }

    fn is_square(&self) -> bool {
        self.rows.len() == self.n_tasks() && self.n_tasks() > 1
    }

    /// Mean accuracy over all tasks after the last experience.
    pub fn average_accuracy(&self) -> f64 {
        let last = self.rows.last().expect("checked non-empty");
        last.iter().sum::<f64>() / last.len() as f64
    }

    /// Backward transfer (None for fewer than two tasks or a single-row matrix).
    pub fn backward_transfer(&self) -> Option<f64> {
        if !self.is_square() {
            return None;
        }
        let t = self.n_tasks();
        Some((0..t - 1).map(|j| self.rows[t - 1][j] - self.rows[j][j]).sum::<f64>() / (t - 1) as f64)
    }

    /// Forward transfer (None without initial accuracies).
    pub fn forward_transfer(&self) -> Option<f64> {
        let b = self.initial.as_ref()?;
        if !self.is_square() {
            return None;
        }
        let t = self.n_tasks();
        Some((1..t).map(|j| self.rows[j - 1][j] - b[j]).sum::<f64>() / (t - 1) as f64)
    }

    /// Average forgetting.
    pub fn forgetting(&self) -> Option<f64> {
        if !self.is_square() {
            return None;
        }
        let t = self.n_tasks();
        let f = (0..t - 1)
            .map(|j| {
                let best = (j..t - 1).map(|l| self.rows[l][j]).fold(f64::NEG_INFINITY, f64::max);
                best - self.rows[t - 1][j]
            })
            .sum::<f64>();
        Some(f / (t - 1) as f64)
    }

    /// Average accuracy on tasks `0..=i` after experience `i`.
    pub fn average_accuracy_curve(&self) -> Vec<f64> {
        if !self.is_square() {
            return vec![self.average_accuracy()];
        }
        (0..self.rows.len()).map(|i| self.rows[i][..=i].iter().sum::<f64>() / (i + 1) as f64).collect()
    }

    /// All summary metrics.
    pub fn summary(&self) -> Summary {
        Summary {
            average_accuracy: self.average_accuracy(),
            backward_transfer: self.backward_transfer(),
            forward_transfer: self.forward_transfer(),
            forgetting: self.forgetting(),
            average_accuracy_curve: self.average_accuracy_curve(),
        }
    }

    /// The matrix and its summary as pretty JSON.
    pub fn to_json(&self) -> Result<String> {
        #[derive(Serialize)]
        struct Out<'a> {
            accuracy_matrix: &'a [Vec<f64>],
            initial_accuracy: &'a Option<Vec<f64>>,
            summary: Summary,
        }
        Ok(serde_json::to_string_pretty(&Out { accuracy_matrix: &self.rows, initial_accuracy: &self.initial, summary: self.summary() })?)
    }

    /// Writes a heatmap PNG of `R` (dark = 0%, bright = 100%, with each cell's percentage).
    pub fn write_heatmap(&self, path: &Path) -> Result<()> {
        crate::heatmap::write_png(&self.rows, path)
    }
}

/// Median of a non-empty slice.
pub fn median(xs: &[f64]) -> f64 {
    let mut v = xs.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n == 0 {
        return f64::NAN;
    }
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// Sample standard deviation (0 for fewer than two values).
pub fn std_dev(xs: &[f64]) -> f64 {
    if xs.len() < 2 {
        return 0.0;
    }
    let m = xs.iter().sum::<f64>() / xs.len() as f64;
    (xs.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (xs.len() - 1) as f64).sqrt()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn three_task_matrix_by_hand() {
        // R = [[0.9, 0.2, 0.1],
        //      [0.6, 0.8, 0.3],
        //      [0.7, 0.5, 0.95]],  b = [0.1, 0.1, 0.2]
        let r = AccuracyMatrix::new(
            vec![vec![0.9, 0.2, 0.1], vec![0.6, 0.8, 0.3], vec![0.7, 0.5, 0.95]],
            Some(vec![0.1, 0.1, 0.2]),
        )
        .unwrap();
        // ACC = (0.7 + 0.5 + 0.95)/3
        assert!((r.average_accuracy() - 2.15 / 3.0).abs() < 1e-12);
        // BWT = ((0.7-0.9) + (0.5-0.8))/2 = -0.25
        assert!((r.backward_transfer().unwrap() + 0.25).abs() < 1e-12);
        // FWT = ((0.2-0.1) + (0.3-0.2))/2 = 0.1
        assert!((r.forward_transfer().unwrap() - 0.1).abs() < 1e-12);
        // Forgetting: task 0: max(0.9, 0.6) - 0.7 = 0.2; task 1: max(0.8) - 0.5 = 0.3 → 0.25
        assert!((r.forgetting().unwrap() - 0.25).abs() < 1e-12);
        // Curve: 0.9, (0.6+0.8)/2, ACC
        let c = r.average_accuracy_curve();
        assert!((c[1] - 0.7).abs() < 1e-12 && (c[2] - 2.15 / 3.0).abs() < 1e-12);
        let js: serde_json::Value = serde_json::from_str(&r.to_json().unwrap()).unwrap();
        assert!((js["summary"]["forgetting"].as_f64().unwrap() - 0.25).abs() < 1e-12);
    }

    #[test]
    fn forgetting_uses_the_best_earlier_accuracy_not_the_diagonal() {
        // Task 0 improves after task 1 (0.5 → 0.9) then drops to 0.4: forgetting 0.5, BWT -0.1.
        let r = AccuracyMatrix::new(vec![vec![0.5, 0.0, 0.0], vec![0.9, 0.9, 0.0], vec![0.4, 0.9, 0.9]], None).unwrap();
        assert!((r.forgetting().unwrap() - (0.5 + 0.0) / 2.0).abs() < 1e-12);
        assert!((r.backward_transfer().unwrap() - (-0.1 + 0.0) / 2.0).abs() < 1e-12);
        assert_eq!(r.forward_transfer(), None);
    }

    #[test]
    fn rejects_bad_shapes_and_single_row_has_only_accuracy() {
        assert!(AccuracyMatrix::new(vec![vec![0.5, 0.5], vec![0.5]], None).is_err());
        assert!(AccuracyMatrix::new(vec![vec![1.5]], None).is_err());
        let j = AccuracyMatrix::new(vec![vec![0.9, 0.7, 0.8]], None).unwrap();
        assert!((j.average_accuracy() - 0.8).abs() < 1e-12);
        assert_eq!(j.backward_transfer(), None);
        assert_eq!(j.forgetting(), None);
        assert_eq!(median(&[3.0, 1.0, 2.0, 10.0]), 2.5);
        assert!((std_dev(&[1.0, 3.0]) - 2f64.sqrt()).abs() < 1e-12);
    }
}
