//! `engram generate CKPT [--prompt TEXT] [--tokens N] [--temperature T] [--top-k K] [--top-p P]
//! [--seed S] [--device D]`: samples text from a hybrid checkpoint with the recurrent decoder.

use anyhow::Result;
use engram_core::device::DeviceChoice;
use engram_gdn::generate::{generate, SamplingConfig};
use engram_gdn::Tokenizer;
use std::io::Write;
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct Args {
    /// Checkpoint directory written by `engram train`.
    checkpoint: PathBuf,
    /// Text to continue.
    #[arg(long, default_value = "\n")]
    prompt: String,
    /// Tokens to generate.
    #[arg(long, default_value_t = 200)]
    tokens: usize,
    /// Sampling temperature; 0 = greedy.
    #[arg(long, default_value_t = 0.8)]
    temperature: f64,
    /// Keep only the K most likely tokens (0 = off).
    #[arg(long, default_value_t = 0)]
    top_k: usize,
    /// Nucleus sampling mass (1 = off).
    #[arg(long, default_value_t = 0.95)]
    top_p: f64,
    /// Sampling seed.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// cpu, cuda, cuda:N or auto.
    #[arg(long, default_value = "cpu")]
    device: String,
}

pub fn run(args: Args) -> Result<()> {
    let device = args.device.parse::<DeviceChoice>()?.resolve()?;
    let loaded = engram_gdn::checkpoint::load(&args.checkpoint, device)?;
    let tok = &loaded.tokenizer;
    let prompt = tok.encode(&args.prompt);
    let cfg = SamplingConfig { temperature: args.temperature, top_k: args.top_k, top_p: args.top_p, seed: args.seed };
    let t0 = std::time::Instant::now();
    let ids = generate(&loaded.model, &prompt, args.tokens, &cfg)?;
    let secs = t0.elapsed().as_secs_f64();
    let mut out = std::io::stdout().lock();
    writeln!(out, "{}{}", args.prompt, tok.decode(&ids))?;
    eprintln!("[{} tokens in {:.2} s, {:.0} tokens/s, step {} checkpoint]", ids.len(), secs, ids.len() as f64 / secs.max(1e-9), loaded.step);
    Ok(())
}
