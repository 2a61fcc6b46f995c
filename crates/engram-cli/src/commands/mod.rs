//! One module per subcommand.

pub mod bench;
pub mod diagnose;
pub mod generate;
pub mod info;
pub mod reproduce;
pub mod train;

/// Parses a subcommand's own options from `argv` (`argv[0]` is the command name). Returns
/// `Ok(None)` after printing `--help` or `--version`, which are successful runs, not errors.
pub fn parse_opts<T: clap::Parser>(argv: &[String]) -> anyhow::Result<Option<T>> {
    match T::try_parse_from(argv) {
        Ok(o) => Ok(Some(o)),
        Err(e) if matches!(e.kind(), clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion) => {
            print!("{e}");
            Ok(None)
        }
        Err(e) => Err(e.into()),
    }
}
