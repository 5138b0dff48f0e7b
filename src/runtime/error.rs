use crate::store::StoreError;

/// Why a runtime operation did not happen. Each variant maps to one CLI exit code and one API
/// error code, and every message is a sentence fit to show a user.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// The request itself is wrong: unknown pipeline, bad param.
    #[error("{0}")]
    BadInput(String),
    /// A run, stage or dead-letter entry that does not exist.
    #[error("{0}")]
    NotFound(String),
    /// The request does not fit the current state, such as cancelling a finished run.
    #[error("{0}")]
    Conflict(String),
    /// Another process hosts the workspace.
    #[error("{0}")]
    Hosted(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0}")]
    Io(String),
}

pub type Result<T, E = RuntimeError> = std::result::Result<T, E>;
