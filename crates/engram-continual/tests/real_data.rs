//! Loaders and scenarios on the real offline data sets; skipped with a notice when
//! `cargo xtask setup` has not fetched them.

use engram_continual::data::{data_root, load_fashion_mnist, load_mnist5k};
use engram_continual::scenario::{permuted, rotated, split, Setting};

#[test]
fn fashion_mnist_loads_and_splits_into_five_tasks() {
    let root = data_root();
    if !root.join("fashion-mnist/train-images-idx3-ubyte.gz").exists() {
        eprintln!("skipping: Fashion-MNIST not found under {} (run `cargo xtask setup`)", root.display());
        return;
    }
    let d = load_fashion_mnist(&root).unwrap();
    assert_eq!((d.train.len(), d.test.len(), d.train.dim()), (60_000, 10_000, 784));
    let maxv = d.train.x.max().double_value(&[]);
    assert!(maxv <= 1.0 && maxv > 0.9);
    let s = split("fashion-mnist", &d, 2, Setting::ClassIncremental).unwrap();
    assert_eq!(s.n_tasks(), 5);
    assert!(s.experiences.iter().all(|e| e.train.len() == 12_000 && e.test.len() == 2_000));
}

#[test]
fn mnist5k_loads_and_makes_split_permuted_rotated_streams() {
    let root = data_root();
    if !root.join("mnist5k/mnist_5k.csv.gz").exists() {
        eprintln!("skipping: MNIST-5k not found under {} (run `cargo xtask setup`)", root.display());
        return;
    }
    let d = load_mnist5k(&root).unwrap();
    assert_eq!((d.train.len(), d.test.len()), (4_000, 1_000));
    let mut counts = [0usize; 10];
    for y in d.test.labels() {
        counts[y as usize] += 1;
    }
    assert_eq!(counts, [100; 10]);
    let s = split("mnist5k", &d, 2, Setting::TaskIncremental).unwrap();
    assert_eq!(s.n_tasks(), 5);
    let p = permuted("mnist5k", &d, 3, Setting::DomainIncremental, 1).unwrap();
    assert_eq!(p.n_classes, 10);
    let r = rotated("mnist5k", &d, &[0.0, 45.0, 90.0], Setting::DomainIncremental).unwrap();
    assert_eq!(r.n_tasks(), 3);
}
