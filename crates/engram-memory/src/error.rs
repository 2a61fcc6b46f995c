//! The crate error type.

/// Errors raised by engram-memory.
#[derive(Debug, thiserror::Error)]
pub enum MemoryError {
    /// An invalid argument or configuration value.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// A tensor had the wrong shape.
    #[error("shape error: {0}")]
    Shape(String),
    /// An error raised by libtorch.
    #[error("libtorch: {0}")]
    Torch(#[from] tch::TchError),
}

/// `Result` with [`MemoryError`].
pub type Result<T, E = MemoryError> = std::result::Result<T, E>;

pub(crate) fn invalid(msg: impl Into<String>) -> MemoryError {
    MemoryError::InvalidArgument(msg.into())
}
