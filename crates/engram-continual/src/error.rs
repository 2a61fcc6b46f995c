//! The crate error type.

use std::path::PathBuf;

/// Errors raised by engram-continual.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A data file is missing: the message names the command that fetches it.
    #[error("{what} not found at {path}: run `cargo xtask setup` (or `cargo xtask data`) to fetch the offline data sets")]
    MissingData { what: String, path: PathBuf },
    /// A data file exists but is not in the expected format.
    #[error("malformed data file {path}: {reason}")]
    MalformedData { path: PathBuf, reason: String },
    /// An invalid argument or configuration value.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// A tensor had an unexpected shape.
    #[error("shape error: {0}")]
    Shape(String),
    /// An error raised by libtorch.
    #[error("libtorch: {0}")]
    Torch(#[from] tch::TchError),
    /// An I/O error.
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
    /// A JSON (de)serialisation error.
    #[error("json: {0}")]
    Json(#[from] serde_json::Error),
}

/// `Result` with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Shorthand for an [`Error::InvalidArgument`].
pub(crate) fn invalid(msg: impl Into<String>) -> Error {
    Error::InvalidArgument(msg.into())
}
