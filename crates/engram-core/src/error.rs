//! The crate error type. Every fallible public function returns [`Result`].

use std::path::PathBuf;

/// Errors raised by engram-core.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A tensor argument had the wrong shape.
    #[error("shape error: {0}")]
    Shape(String),
    /// A tensor argument had an unsupported dtype.
    #[error("dtype error: {0}")]
    Dtype(String),
    /// Tensors live on different devices, or a device is not available.
    #[error("device error: {0}")]
    Device(String),
    /// An invalid argument or configuration value.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// A checkpoint is missing, truncated, tampered with or of another format.
    #[error("checkpoint {path}: {reason}")]
    Checkpoint { path: PathBuf, reason: String },
    /// The CUDA kernel library failed (the C++ exception message is carried over).
    #[error("kernel error: {0}")]
    Kernel(String),
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

impl Error {
    pub(crate) fn ckpt(path: impl Into<PathBuf>, reason: impl Into<String>) -> Self {
        Error::Checkpoint { path: path.into(), reason: reason.into() }
    }
}
