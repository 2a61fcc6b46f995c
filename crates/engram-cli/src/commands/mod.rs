//! One module per subcommand.

pub mod bench;
pub mod diagnose;
pub mod generate;
pub mod info;
pub mod reproduce;
pub mod train;
