//! The seed-000 notebook's four seeded cells, reproduced digit for digit through libtorch.
//! Reference: `tests/golden/seed000_reference.py` (PyTorch 2.11 prints the same figures).

use engram_continual::seed000::{pct, reproduce_published, Cell};

#[test]
fn seed000_cells_print_the_published_accuracies() {
    let g = engram_core::seed::global_rng_lock();
    // One intra-op thread: the figures are the same with libtorch's default (checked), but on a
    // busy 2-core CI machine OpenMP's spinning threads make the run ten times slower.
    tch::set_num_threads(1);
    let results = reproduce_published(&g).expect("cells run");
    for r in &results {
        let got = [pct(r.a_before), pct(r.b), pct(r.a_after)];
        let want = r.cell.published().map(pct);
        assert_eq!(got, want, "{}: got {got:?}, published {want:?}", r.cell.label());
    }
    assert_eq!(results.iter().map(|r| r.cell).collect::<Vec<_>>(), Cell::SEEDED.to_vec());
    // The replay cell's B set lost its top-right points; 85.88% must be k/n_B for that n_B.
    let replay = &results[0];
    assert!((700..=800).contains(&replay.n_b), "n_B = {}", replay.n_b);
    let k = (replay.b / 100.0 * replay.n_b as f64).round();
    assert_eq!(pct(k / replay.n_b as f64 * 100.0), "85.88");
}
