//! `cargo run -p engram-gdn --example train -- CONFIG OUT [STEPS]`: the library's training entry
//! point without the CLI (handy when only this crate is built).

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 3 {
        anyhow::bail!("usage: train CONFIG OUT [STEPS]");
    }
    let mut cfg = engram_gdn::train::RunConfig::from_file(std::path::Path::new(&args[1]))?;
    if let Some(s) = args.get(3) {
        cfg.train.steps = s.parse()?;
    }
    let opts = engram_gdn::train::TrainOptions {
        out_dir: args[2].clone().into(),
        device: tch::Device::cuda_if_available(),
        resume: None,
        progress: false,
        group: None,
    };
    let s = engram_gdn::train::train(&cfg, &opts)?;
    println!("{}", serde_json::to_string_pretty(&s)?);
    Ok(())
}
