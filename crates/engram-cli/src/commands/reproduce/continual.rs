//! `engram reproduce continual`: seed 000, notebook A (catastrophic forgetting on two quadrant
//! tasks; replay, EWC and multi-head). Re-runs the four seeded cells exactly, then the same
//! protocols over several seeds with held-out points, and says where the seed's conclusions do
//! not hold. `--benchmark` runs the Split Fashion-MNIST benchmark of every strategy instead.

use anyhow::{Context, Result};
use clap::Parser;
use engram_continual::benchmark::{aggregate, markdown_table, BenchConfig};
use engram_continual::metrics::median;
use engram_continual::scenario::Setting;
use engram_continual::seed000::{pct, protocol, reproduce_published, Cell, CellResult};
use engram_continual::strategies::StrategyKind;
use std::path::PathBuf;

#[derive(Parser, Debug)]
#[command(about = "Seed 000: catastrophic forgetting, replay, EWC, multi-head (and the Split Fashion-MNIST benchmark)")]
struct Opts {
    /// Seeds of the held-out protocol (0 skips it).
    #[arg(long, default_value_t = 10)]
    seeds: u64,
    /// libtorch intra-op threads (1 is fastest for these small models on a busy machine;
    /// the published figures come out the same either way).
    #[arg(long, default_value_t = 1)]
    threads: i32,
    /// Write every result as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Run the Split Fashion-MNIST benchmark instead of the seed's cells.
    #[arg(long)]
    benchmark: bool,
    /// Benchmark: epochs per experience.
    #[arg(long, default_value_t = 1)]
    epochs: usize,
    /// Benchmark: seeds (0..n).
    #[arg(long, default_value_t = 3)]
    bench_seeds: u64,
    /// Benchmark: comma-separated strategies (default: all).
    #[arg(long, value_delimiter = ',')]
    strategies: Vec<String>,
    /// Benchmark: comma-separated settings (class-il, task-il).
    #[arg(long, value_delimiter = ',', default_value = "class-il,task-il")]
    settings: Vec<String>,
    /// Benchmark: training images kept per class (default: all 6,000).
    #[arg(long)]
    train_per_class: Option<usize>,
    /// Benchmark: directory for JSON, heatmaps and the Markdown table.
    #[arg(long, default_value = "runs/continual-bench")]
    out: PathBuf,
}

/// Runs the experiment; `argv[0]` is the command name, the rest its options.
pub fn run(argv: &[String]) -> Result<()> {
    let Some(o) = crate::commands::parse_opts::<Opts>(argv)? else { return Ok(()) };
    if o.threads < 1 {
        anyhow::bail!("--threads must be at least 1");
    }
    tch::set_num_threads(o.threads);
    if o.benchmark {
        return run_benchmark(&o);
    }
    let g = engram_core::seed::global_rng_lock();

    println!("== Seed 000, notebook A: the four seeded cells, manual_seed(42), evaluated on training points as published ==");
    println!("{:<28} {:>9} {:>9} {:>9}   {:>9} {:>9} {:>9}  match", "cell", "A before", "B", "A after", "pub A0", "pub B", "pub A1");
    let published = reproduce_published(&g)?;
    let mut all = true;
    for r in &published {
        let ours = [pct(r.a_before), pct(r.b), pct(r.a_after)];
        let want = r.cell.published().map(pct);
        let ok = ours == want;
        all &= ok;
        println!(
            "{:<28} {:>9} {:>9} {:>9}   {:>9} {:>9} {:>9}  {}",
            r.cell.label(),
            ours[0],
            ours[1],
            ours[2],
            want[0],
            want[1],
            want[2],
            if ok { "exact" } else { "MISMATCH" }
        );
    }
    println!("published figures: {}", if all { "reproduced digit for digit" } else { "NOT reproduced" });

    let mut results: Vec<CellResult> = published.clone();
    if o.seeds > 0 {
        let seeds: Vec<u64> = (0..o.seeds).collect();
        println!(
            "\n== The same protocols over seeds 0..{} (In[1] naive included), with {} fresh held-out points per task ==",
            o.seeds - 1,
            engram_continual::seed000::HELDOUT_POINTS
        );
        let bar = indicatif::ProgressBar::new(Cell::ALL.len() as u64 * o.seeds);
        let runs = protocol(&Cell::ALL, &seeds, &g, |_| bar.inc(1))?;
        bar.finish_and_clear();
        print_protocol(&runs);
        print_conclusions(&runs);
        results.extend(runs);
    }
    if let Some(path) = &o.json {
        std::fs::write(path, serde_json::to_string_pretty(&results)?).with_context(|| format!("writing {}", path.display()))?;
        println!("\nwrote {}", path.display());
    }
    Ok(())
}

fn stat(v: &[f64]) -> String {
    let lo = v.iter().cloned().fold(f64::INFINITY, f64::min);
    let hi = v.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    format!("{:.2} [{:.2}, {:.2}]", median(v), lo, hi)
}

fn of(runs: &[CellResult], c: Cell, f: impl Fn(&CellResult) -> f64) -> Vec<f64> {
    runs.iter().filter(|r| r.cell == c).map(f).collect()
}

fn print_protocol(runs: &[CellResult]) {
    println!("median [min, max] over seeds; 'pub' is the notebook's single run (In[1] had no seed)");
    println!("{:<28} {:<22} {:<22} {:<22} {:<22} {:<22} {:<22}", "cell", "A before (train)", "B (train)", "A after (train)", "A after (held-out)", "B (held-out)", "A lost (train)");
    for c in Cell::ALL {
        let p = c.published();
        println!(
            "{:<28} {:<22} {:<22} {:<22} {:<22} {:<22} {:<22}",
            c.label(),
            stat(&of(runs, c, |r| r.a_before)),
            stat(&of(runs, c, |r| r.b)),
            stat(&of(runs, c, |r| r.a_after)),
            stat(&of(runs, c, |r| r.heldout_a_after)),
            stat(&of(runs, c, |r| r.heldout_b)),
            stat(&of(runs, c, |r| r.a_before - r.a_after)),
        );
        println!("{:<28} {:<22} {:<22} {:<22} {:<22} {:<22} {:<22}", "  pub", pct(p[0]), pct(p[1]), pct(p[2]), "—", "—", pct(p[0] - p[2]));
    }
}

fn print_conclusions(runs: &[CellResult]) {
    let n = runs.iter().filter(|r| r.cell == Cell::MultiHead).count();
    println!("\n== Where the seed's conclusions hold and where they do not ==");
    // 1. Single-head rows sit at the label-conflict floor.
    for c in [Cell::Naive, Cell::Ewc128, Cell::Ewc512Clip] {
        let a = median(&of(runs, c, |r| r.heldout_a_after));
        let b = median(&of(runs, c, |r| r.heldout_b));
        let verdict = if a - 50.0 < 5.0 {
            "It sits at that floor: the row measures the label conflict, not forgetting.".to_string()
        } else {
            format!("It sits {:.1} points above that floor only by giving up {:.1} points of B: a trade-off between contradictory labels, not retention.", a - 50.0, 100.0 - b)
        };
        println!(
            "- {}: held-out A after B = {a:.1}% (B {b:.1}%). Task B labels the top-right quadrant 0 where A labels it 1 (and bottom-left the other way), \
so a single head that is right on B scores about 50% on A (spec §1.11). {verdict}",
            c.label()
        );
    }
    // 2. EWC 'explosions' and 'spare capacity'.
    let max_loss = runs.iter().filter(|r| matches!(r.cell, Cell::Ewc128 | Cell::Ewc512Clip)).map(|r| r.max_phase2_loss).fold(f64::NEG_INFINITY, f64::max);
    println!(
        "- EWC 'exploding gradients': the largest phase-2 loss over all EWC runs is {max_loss:.3} ({}). The notebook shows no divergence either; the λ=10,000 run it blames is not in the file.",
        if max_loss.is_finite() { "finite: no divergence" } else { "NON-FINITE" }
    );
    let e128 = median(&of(runs, Cell::Ewc128, |r| r.heldout_a_after));
    let e512 = median(&of(runs, Cell::Ewc512Clip, |r| r.heldout_a_after));
    println!(
        "- EWC 'requires spare capacity' (128 → 512 units): held-out A after B goes {e128:.1}% → {e512:.1}%; {}. The two cells also change λ, learning rate and clipping at once.",
        if e512 > e128 + 2.0 { "more capacity helped here" } else { "more capacity did not help" }
    );
    // 3. Replay.
    let ra = median(&of(runs, Cell::Replay, |r| r.heldout_a_after));
    let rb = median(&of(runs, Cell::Replay, |r| r.heldout_b));
    println!(
        "- Replay: held-out A after B = {ra:.1}%, B = {rb:.1}%. The buffer still labels bottom-left 0 while B labels it 1, so these are a compromise between \
two label sets (an ideal 'union' model scores 75% on A's labels), not a retention measurement."
    );
    // 4. Multi-head.
    let lost = of(runs, Cell::MultiHead, |r| r.a_before - r.a_after);
    let at_most_1 = lost.iter().filter(|l| **l <= 1.0 + 1e-9).count();
    let gained = lost.iter().filter(|l| **l < 0.0).count();
    let ha = median(&of(runs, Cell::MultiHead, |r| r.heldout_a_after));
    println!(
        "- Multi-head: memory lost on A's training points {} over {n} seeds; at most 1% was lost in {at_most_1}/{n} seeds (A improved in {gained}): the notebook's '0% to 1% memory loss' {}. \
Held-out A after B: {ha:.1}%. The published -0.30% is 3 of 1000 points: noise. Multi-head is the task-incremental setting (the task id picks the head), \
which removes the label conflict by construction, so it is not comparable with the single-head rows.",
        stat(&lost),
        if at_most_1 == n { "holds".to_string() } else { format!("fails in {} seeds", n - at_most_1) }
    );
}

fn run_benchmark(o: &Opts) -> Result<()> {
    let root = engram_continual::data::data_root();
    let data = engram_continual::data::load_fashion_mnist(&root)?;
    let strategies: Vec<StrategyKind> = if o.strategies.is_empty() {
        StrategyKind::ALL.to_vec()
    } else {
        o.strategies.iter().map(|s| s.parse()).collect::<std::result::Result<_, _>>()?
    };
    let settings: Vec<Setting> = o.settings.iter().map(|s| s.parse()).collect::<std::result::Result<_, _>>()?;
    let cfg = BenchConfig {
        epochs: o.epochs,
        seeds: (0..o.bench_seeds).collect(),
        settings,
        strategies,
        train_per_class: o.train_per_class,
        ..BenchConfig::default()
    };
    std::fs::create_dir_all(&o.out).with_context(|| format!("creating {}", o.out.display()))?;
    println!(
        "== Split Fashion-MNIST, 5 tasks × 2 classes, MLP 784-{}, Adam {}, batch {}, {} epoch(s)/task, seeds {:?} ==",
        cfg.hidden.iter().map(|h| h.to_string()).collect::<Vec<_>>().join("-"),
        cfg.lr,
        cfg.batch_size,
        cfg.epochs,
        cfg.seeds
    );
    let out = o.out.clone();
    let runs = engram_continual::benchmark::run(&data, &cfg, |r| {
        let a = &r.result.accuracy;
        println!(
            "{:<9} {:<16} seed {}  ACC {:5.1}%  BWT {:>6}  wall {:6.1}s",
            r.setting.short(),
            r.strategy,
            r.seed,
            100.0 * a.average_accuracy(),
            a.backward_transfer().map_or("—".into(), |b| format!("{:.1}", 100.0 * b)),
            r.result.wall_s
        );
        let stem = format!("{}-{}-seed{}", r.setting.short(), r.strategy.replace('+', "p"), r.seed);
        if let Ok(js) = a.to_json() {
            let _ = std::fs::write(out.join(format!("{stem}.json")), js);
        }
        let _ = a.write_heatmap(&out.join(format!("{stem}.png")));
    })?;
    let rows = aggregate(&runs);
    let table = markdown_table(&rows);
    println!("\n{table}");
    std::fs::write(o.out.join("table.md"), &table)?;
    std::fs::write(o.out.join("runs.json"), serde_json::to_string_pretty(&runs)?)?;
    println!("wrote {}", o.out.display());
    Ok(())
}
