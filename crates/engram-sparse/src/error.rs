//! The crate error type.

/// Errors raised by engram-sparse.
#[derive(Debug, thiserror::Error)]
pub enum SparseError {
    /// A data file is missing; the message names the command that fetches it.
    #[error("{path}: not found; run `cargo xtask setup` (or `cargo xtask data`) to fetch the offline data sets")]
    MissingData {
        /// The file that was looked for.
        path: std::path::PathBuf,
    },
    /// A data file exists but is not in the expected format.
    #[error("{path}: malformed data: {reason}")]
    BadData {
        /// The offending file.
        path: std::path::PathBuf,
        /// What was wrong.
        reason: String,
    },
    /// An invalid argument or configuration value.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// A tensor had the wrong shape.
    #[error("shape error: {0}")]
    Shape(String),
    /// An error raised by libtorch.
    #[error("libtorch: {0}")]
    Torch(#[from] tch::TchError),
    /// An I/O error.
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
}

/// `Result` with [`SparseError`].
pub type Result<T, E = SparseError> = std::result::Result<T, E>;

pub(crate) fn invalid(msg: impl Into<String>) -> SparseError {
    SparseError::InvalidArgument(msg.into())
}
