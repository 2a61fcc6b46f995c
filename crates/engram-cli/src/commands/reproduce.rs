//! `engram reproduce <experiment> [options]`: re-runs a published experiment from the seeds.
//! Each experiment lives in `reproduce/<name>.rs` and parses its own options.

use anyhow::Result;

mod attention;
mod continual;
mod dnc;
mod fewshot;
mod lottery;
mod moe;
mod sparse;
mod xor;

#[derive(clap::Args)]
pub struct Args {
    /// Which experiment: continual, moe, attention, xor, sparse, lottery, dnc, fewshot.
    #[arg(allow_hyphen_values = true)]
    experiment: String,
    /// Options of the experiment (see `engram reproduce <experiment> --help`).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    rest: Vec<String>,
}

pub fn run(args: Args) -> Result<()> {
    if matches!(args.experiment.as_str(), "-h" | "--help" | "help") {
        crate::print_subcommand_help("reproduce");
        return Ok(());
    }
    let argv: Vec<String> =
        std::iter::once(format!("engram reproduce {}", args.experiment)).chain(args.rest).collect();
    match args.experiment.as_str() {
        "continual" => continual::run(&argv),
        "moe" => moe::run(&argv),
        "attention" => attention::run(&argv),
        "xor" => xor::run(&argv),
        "sparse" => sparse::run(&argv),
        "lottery" => lottery::run(&argv),
        "dnc" => dnc::run(&argv),
        "fewshot" => fewshot::run(&argv),
        other => anyhow::bail!(
            "unknown experiment '{other}': expected continual, moe, attention, xor, sparse, lottery, dnc or fewshot"
        ),
    }
}

/// Options every training experiment takes.
#[derive(clap::Args, Debug)]
pub struct RunOpts {
    /// Seed (initialisation, data order, masks, episodes).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Device: auto, cpu, cuda, cuda:N.
    #[arg(long, default_value = "auto")]
    pub device: String,
    /// libtorch CPU threads (0 keeps libtorch's default; 1 is fastest for small models and on
    /// a shared machine).
    #[arg(long, default_value_t = 0)]
    pub threads: i32,
    /// Directory for the reports (JSON, PNG).
    #[arg(long, default_value = "runs/reproduce")]
    pub out: std::path::PathBuf,
}

impl RunOpts {
    /// Applies `--threads` and resolves `--device`.
    pub fn apply(&self) -> Result<tch::Device> {
        anyhow::ensure!(self.threads >= 0, "--threads must not be negative");
        if self.threads > 0 {
            tch::set_num_threads(self.threads);
        }
        Ok(self.device.parse::<engram_core::device::DeviceChoice>()?.resolve()?)
    }
}

/// The image dataset `data` (seeded split), its training part cut to the first `train_limit`
/// examples when positive, both parts on `device` (sparse and lottery share this).
fn image_split(
    data: &str,
    train_limit: i64,
    seed: u64,
    device: tch::Device,
) -> Result<(engram_sparse::datasets::DatasetName, engram_sparse::datasets::Split)> {
    use engram_sparse::datasets::{self, DatasetName, Split};
    let name: DatasetName = data.parse()?;
    let split = datasets::load(name, &datasets::data_root(), seed)?;
    let train = if train_limit > 0 { split.train.take(train_limit) } else { split.train };
    Ok((name, Split { train: train.to(device), test: split.test.to(device) }))
}
