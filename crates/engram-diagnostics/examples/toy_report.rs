//! Diagnoses two constructed models side by side and writes the report, e.g.
//! `cargo run -p engram-diagnostics --example toy_report -- /tmp/toy-report [lookup|window|constant|delta] [lookup|...]`.
//! A quick way to see every table and plot without a trained checkpoint.

use engram_diagnostics::probe::Probeable;
use engram_diagnostics::retrieval::SuiteConfig;
use engram_diagnostics::tasks::TaskTokens;
use engram_diagnostics::toy::{ConstantModel, DeltaToy, LookupModel};
use engram_diagnostics::{diagnose, report, DiagnoseOptions, Subject};

fn model(name: &str, tt: &TaskTokens) -> anyhow::Result<Box<dyn Probeable>> {
    Ok(match name {
        "lookup" => Box::new(LookupModel::perfect(tt.vocab).for_tasks(tt)),
        "window" => Box::new(LookupModel::windowed(tt.vocab, 32).for_tasks(tt)),
        "constant" => Box::new(ConstantModel::shortcut(tt)),
        "delta" => Box::new(DeltaToy::new(tt.clone(), 64, 1.0)),
        other => anyhow::bail!("unknown toy model '{other}' (lookup, window, constant, delta)"),
    })
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let out = args.first().cloned().unwrap_or_else(|| "toy-report".into());
    let names: Vec<&str> = if args.len() > 1 { args[1..].iter().map(String::as_str).collect() } else { vec!["delta", "window"] };
    engram_core::seed::manual_seed(0);
    let tt = TaskTokens::for_vocab(256)?;
    let subjects = names.iter().map(|n| Ok(Subject::new(model(n, &tt)?))).collect::<anyhow::Result<Vec<_>>>()?;
    let mut suite = SuiteConfig::quick();
    suite.grid_lengths = vec![64, 128, 256];
    let rep = diagnose(subjects, &DiagnoseOptions::new(suite, &out))?;
    print!("{}", report::summary_table(&rep.models));
    println!("wrote {out}/report.json, report.md, {} plots in {:.1} s", rep.plots.len(), rep.elapsed_s);
    Ok(())
}
