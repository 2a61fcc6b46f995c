//! Scenarios: a stream of experiences, each with a training set, a held-out test set and a task id.
//!
//! The setting decides what the learner is told and what it must output (van de Ven & Tolias):
//! * **task-incremental**: the task id is given at test time; the learner only chooses among the
//!   current task's classes (a head per task, or the shared head masked to the task's classes);
//! * **domain-incremental**: no task id; every task has the same label space;
//! * **class-incremental**: no task id; the learner chooses among all classes seen so far.

use crate::data::{permute_pixels, rotate_images, Dataset, TrainTest};
use crate::error::{invalid, Result};
use engram_core::seed::HostRng;
use serde::{Deserialize, Serialize};
use tch::{Device, Tensor};

/// The three continual-learning settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Setting {
    /// Task id given at test time.
    TaskIncremental,
    /// One shared label space, no task id.
    DomainIncremental,
    /// All classes seen so far, no task id.
    ClassIncremental,
}

impl Setting {
    /// Short name: `task-il`, `domain-il`, `class-il`.
    pub fn short(&self) -> &'static str {
        match self {
            Setting::TaskIncremental => "task-il",
            Setting::DomainIncremental => "domain-il",
            Setting::ClassIncremental => "class-il",
        }
    }
}

impl std::str::FromStr for Setting {
    type Err = crate::error::Error;
    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "task" | "task-il" | "task-incremental" => Ok(Setting::TaskIncremental),
            "domain" | "domain-il" | "domain-incremental" => Ok(Setting::DomainIncremental),
            "class" | "class-il" | "class-incremental" => Ok(Setting::ClassIncremental),
            other => Err(invalid(format!("unknown setting '{other}': expected task-il, domain-il or class-il"))),
        }
    }
}

/// One step of the stream.
#[derive(Debug, Clone)]
pub struct Experience {
    /// Position in the stream (also the task id).
    pub task: usize,
    /// The labels this experience's data use.
    pub classes: Vec<i64>,
    /// Training samples.
    pub train: Dataset,
    /// Held-out samples of the same task.
    pub test: Dataset,
}

/// A stream of experiences in one setting.
///
/// ```
/// use engram_continual::scenario::{quadrant_tasks, Setting};
/// let s = quadrant_tasks(200, 100, Setting::DomainIncremental, 7).unwrap();
/// assert_eq!(s.experiences.len(), 2);
/// assert_eq!(s.n_classes, 2);
/// ```
#[derive(Debug, Clone)]
pub struct Scenario {
    /// A name for reports.
    pub name: String,
    /// The setting.
    pub setting: Setting,
    /// Width of the output layer of a single-head learner.
    pub n_classes: i64,
    /// The stream.
    pub experiences: Vec<Experience>,
}

impl Scenario {
    fn check(self) -> Result<Self> {
        if self.experiences.is_empty() {
            return Err(invalid("a scenario needs at least one experience"));
        }
        for e in &self.experiences {
            if e.train.is_empty() || e.test.is_empty() {
                return Err(invalid(format!("experience {} of '{}' has an empty train or test set", e.task, self.name)));
            }
            if e.classes.iter().any(|&c| c < 0 || c >= self.n_classes) {
                return Err(invalid(format!("experience {} uses classes outside 0..{}", e.task, self.n_classes)));
            }
        }
        Ok(self)
    }

    /// Number of tasks.
    pub fn n_tasks(&self) -> usize {
        self.experiences.len()
    }

    /// `[T, C]` boolean table: which outputs task `t` may use at test time in this setting.
    pub fn class_mask(&self, device: Device) -> Tensor {
        let t = self.n_tasks() as i64;
        let mut m = vec![false; (t * self.n_classes) as usize];
        for e in &self.experiences {
            for &c in &e.classes {
                m[e.task * self.n_classes as usize + c as usize] = true;
            }
        }
        Tensor::from_slice(&m).reshape([t, self.n_classes]).to_device(device)
    }

    /// Moves every set to `device`.
    pub fn to_device(&self, device: Device) -> Self {
        let mut s = self.clone();
        for e in &mut s.experiences {
            e.train = e.train.to_device(device);
            e.test = e.test.to_device(device);
        }
        s
    }
}

/// Split a labelled set into tasks of `classes_per_task` consecutive classes (0,1 | 2,3 | ...).
/// In the domain-incremental setting the labels become the position within the task (0 or 1
/// for pairs), as in van de Ven's Split MNIST.
pub fn split(name: &str, data: &TrainTest, classes_per_task: usize, setting: Setting) -> Result<Scenario> {
    let mut classes: Vec<i64> = data.train.labels();
    classes.sort_unstable();
    classes.dedup();
    if classes_per_task == 0 || !classes.len().is_multiple_of(classes_per_task) {
        return Err(invalid(format!("{} classes cannot be split into tasks of {classes_per_task}", classes.len())));
    }
    let mut experiences = Vec::new();
    for (task, group) in classes.chunks(classes_per_task).enumerate() {
        let mut train = data.train.filter_classes(group)?.with_task(task as i64);
        let mut test = data.test.filter_classes(group)?.with_task(task as i64);
        let mut task_classes = group.to_vec();
        if setting == Setting::DomainIncremental {
            let g = group.to_vec();
            let pos = move |y: i64| g.iter().position(|&c| c == y).unwrap_or(0) as i64;
            train = train.map_labels(&pos);
            test = test.map_labels(&pos);
            task_classes = (0..classes_per_task as i64).collect();
        }
        experiences.push(Experience { task, classes: task_classes, train, test });
    }
    let n_classes = if setting == Setting::DomainIncremental { classes_per_task as i64 } else { classes.len() as i64 };
    Scenario { name: format!("split-{name}"), setting, n_classes, experiences }.check()
}

/// Input-domain tasks sharing the 10 labels: `transform(task)` makes each task's inputs.
/// Domain-IL keeps the labels; task-IL keeps them too (the task id picks a head); class-IL
/// offsets task `k`'s labels by `10k`.
fn domain_tasks(
    name: String,
    data: &TrainTest,
    n_tasks: usize,
    setting: Setting,
    transform: impl Fn(usize, &Dataset) -> Result<Dataset>,
) -> Result<Scenario> {
    let base = {
        let mut c = data.train.labels();
        c.sort_unstable();
        c.dedup();
        c
    };
    let width = base.len() as i64;
    let mut experiences = Vec::new();
    for task in 0..n_tasks {
        let mut train = transform(task, &data.train)?.with_task(task as i64);
        let mut test = transform(task, &data.test)?.with_task(task as i64);
        let mut classes = base.clone();
        if setting == Setting::ClassIncremental {
            let off = task as i64 * width;
            train = train.map_labels(|y| y + off);
            test = test.map_labels(|y| y + off);
            classes = base.iter().map(|c| c + off).collect();
        }
        experiences.push(Experience { task, classes, train, test });
    }
    let n_classes = if setting == Setting::ClassIncremental { width * n_tasks as i64 } else { width };
    Scenario { name, setting, n_classes, experiences }.check()
}

/// Permuted images: task 0 is the original, task `k > 0` a fixed random pixel permutation.
pub fn permuted(name: &str, data: &TrainTest, n_tasks: usize, setting: Setting, seed: u64) -> Result<Scenario> {
    let dim = data.train.dim();
    let mut rng = HostRng::new(seed);
    let perms: Vec<Vec<i64>> = (0..n_tasks)
        .map(|k| {
            let mut p: Vec<i64> = (0..dim).collect();
            if k > 0 {
                rng.shuffle(&mut p);
            }
            p
        })
        .collect();
    domain_tasks(format!("permuted-{name}"), data, n_tasks, setting, |k, d| permute_pixels(d, &perms[k]))
}

/// Rotated images: task `k` rotates every image by `angles[k]` degrees.
pub fn rotated(name: &str, data: &TrainTest, angles: &[f64], setting: Setting) -> Result<Scenario> {
    domain_tasks(format!("rotated-{name}"), data, angles.len(), setting, |k, d| rotate_images(d, angles[k]))
}

/// Labels a quadrant task: A = top-right (x>0 and y>0), B = bottom-left (x<0 and y<0).
pub fn quadrant_label(task: usize, x: f32, y: f32) -> i64 {
    match task {
        0 => (x > 0.0 && y > 0.0) as i64,
        _ => (x < 0.0 && y < 0.0) as i64,
    }
}

/// The seed's two quadrant tasks on `U[-1,1)²` (task A: top-right is 1; task B: bottom-left is
/// 1), with `n_test` fresh held-out points per task. Drawn from a host RNG, so building the
/// scenario leaves libtorch's generator alone. The two tasks label the top-right and
/// bottom-left quadrants oppositely: in the domain-incremental setting no single-head model
/// can exceed about 50% on A once it is perfect on B.
pub fn quadrant_tasks(n_train: usize, n_test: usize, setting: Setting, seed: u64) -> Result<Scenario> {
    if setting == Setting::ClassIncremental {
        return Err(invalid("the quadrant tasks are binary: use task-il or domain-il"));
    }
    let mut rng = HostRng::new(seed);
    let mut draw = |n: usize, task: usize| -> Result<Dataset> {
        let pts: Vec<f32> = (0..2 * n).map(|_| (rng.uniform() * 2.0 - 1.0) as f32).collect();
        let y: Vec<i64> = pts.chunks(2).map(|p| quadrant_label(task, p[0], p[1])).collect();
        Dataset::new(Tensor::from_slice(&pts).reshape([n as i64, 2]), Tensor::from_slice(&y), task as i64)
    };
    let mut experiences = Vec::new();
    for task in 0..2 {
        let train = draw(n_train, task)?;
        let test = draw(n_test, task)?;
        experiences.push(Experience { task, classes: vec![0, 1], train, test });
    }
    Scenario { name: "quadrants".into(), setting, n_classes: 2, experiences }.check()
}

/// One scenario whose single experience holds every task's training data (the joint upper bound),
/// keeping each task's test set for evaluation.
pub fn joint_training_set(s: &Scenario) -> Result<Dataset> {
    let parts: Vec<&Dataset> = s.experiences.iter().map(|e| &e.train).collect();
    Dataset::concat(&parts)
}

/// Synthetic 10-class "images" for tests and smoke runs: class `c` lights up a band of pixels.
pub fn synthetic_images(n_per_class: usize, noise: f64, seed: u64) -> Result<TrainTest> {
    let mut rng = HostRng::new(seed);
    let mut make = |n: usize| -> Result<Dataset> {
        let mut x = vec![0f32; n * 10 * 784];
        let mut y = Vec::with_capacity(n * 10);
        for c in 0..10usize {
            for i in 0..n {
                let row = &mut x[(c * n + i) * 784..(c * n + i + 1) * 784];
                for (p, v) in row.iter_mut().enumerate() {
                    let on = p / 78 == c;
                    *v = (if on { 0.8 } else { 0.0 } + noise * rng.uniform()) as f32;
                }
                y.push(c as i64);
            }
        }
        Dataset::new(Tensor::from_slice(&x).reshape([(n * 10) as i64, 784]), Tensor::from_slice(&y), 0)
    };
    Ok(TrainTest { train: make(n_per_class)?, test: make(n_per_class / 2 + 1)? })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Kind;

    #[test]
    fn split_class_and_domain_labels() {
        let d = synthetic_images(4, 0.1, 1).unwrap();
        let s = split("syn", &d, 2, Setting::ClassIncremental).unwrap();
        assert_eq!((s.n_tasks(), s.n_classes), (5, 10));
        assert_eq!(s.experiences[3].classes, vec![6, 7]);
        let mut l = s.experiences[3].train.labels();
        l.dedup();
        assert_eq!(l, vec![6, 7]);
        let dom = split("syn", &d, 2, Setting::DomainIncremental).unwrap();
        assert_eq!(dom.n_classes, 2);
        let mut l = dom.experiences[3].train.labels();
        l.dedup();
        assert_eq!(l, vec![0, 1]);
        assert!(split("syn", &d, 3, Setting::ClassIncremental).is_err());
        let m: Vec<bool> = Vec::try_from(s.class_mask(Device::Cpu).get(1)).unwrap();
        assert_eq!(m, vec![false, false, true, true, false, false, false, false, false, false]);
    }

    #[test]
    fn permuted_class_il_offsets_labels_and_keeps_pixels_as_a_multiset() {
        let d = synthetic_images(2, 0.1, 2).unwrap();
        let s = permuted("syn", &d, 3, Setting::ClassIncremental, 9).unwrap();
        assert_eq!(s.n_classes, 30);
        assert_eq!(s.experiences[2].classes[0], 20);
        let a = s.experiences[0].train.x.sum(Kind::Float).double_value(&[]);
        let b = s.experiences[2].train.x.sum(Kind::Float).double_value(&[]);
        assert!((a - b).abs() < 1e-2);
        assert!(!s.experiences[0].train.x.equal(&s.experiences[1].train.x));
    }

    #[test]
    fn quadrant_tasks_conflict_on_top_right() {
        let s = quadrant_tasks(400, 100, Setting::DomainIncremental, 3).unwrap();
        assert_eq!(quadrant_label(0, 0.5, 0.5), 1);
        assert_eq!(quadrant_label(1, 0.5, 0.5), 0);
        assert_eq!(quadrant_label(1, -0.5, -0.5), 1);
        let pos = s.experiences[0].train.labels().iter().sum::<i64>() as f64 / 400.0;
        assert!((0.15..0.35).contains(&pos), "{pos}");
        assert!(quadrant_tasks(10, 10, Setting::ClassIncremental, 3).is_err());
    }
}
