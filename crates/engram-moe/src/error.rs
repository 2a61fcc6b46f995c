//! The crate's error type.

/// What can go wrong when building or running a mixture of experts.
#[derive(Debug, thiserror::Error)]
pub enum MoeError {
    /// A tensor had a shape the operation cannot accept.
    #[error("shape error: {0}")]
    Shape(String),
    /// A configuration value is out of range.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// Reading data failed.
    #[error("data error: {0}")]
    Data(String),
    /// An error raised by libtorch.
    #[error(transparent)]
    Torch(#[from] tch::TchError),
    /// An I/O error.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// Result alias of this crate.
pub type Result<T> = std::result::Result<T, MoeError>;

pub(crate) fn shape_err<T>(msg: impl Into<String>) -> Result<T> {
    Err(MoeError::Shape(msg.into()))
}

pub(crate) fn config_err<T>(msg: impl Into<String>) -> Result<T> {
    Err(MoeError::Config(msg.into()))
}
