//! `engram info`: what this build sees.

use anyhow::Result;

#[derive(clap::Args)]
pub struct Args {
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

pub fn run(args: Args) -> Result<()> {
    let info = engram_core::info::runtime_info();
    if args.json {
        println!("{}", serde_json::to_string_pretty(&info)?);
        return Ok(());
    }
    println!("engram           {}", info.engram_version);
    println!("libtorch         {}", info.libtorch_version);
    println!("cuda available   {}", info.cuda_available);
    println!("cuda devices     {}", info.cuda_device_count);
    println!("device name      {}", info.cuda_device_name.as_deref().unwrap_or("-"));
    println!("cudnn            {}", info.cudnn_available);
    println!("cpu threads      {}", info.cpu_threads);
    match (&info.kernels_path, &info.kernels_error) {
        (Some(p), _) => println!("kernel library   loaded: {p} ({})", info.kernels_version.as_deref().unwrap_or("?")),
        (None, Some(e)) => println!("kernel library   not loaded: {e}"),
        (None, None) => println!("kernel library   not loaded"),
    }
    Ok(())
}
