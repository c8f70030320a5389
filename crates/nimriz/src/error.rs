//! Errors of setting the client up (before any request). Request errors are
//! [`crate::ClientError`].

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// A wrong key, base URL or environment value: the user's to fix (exit 2 in the CLI).
    #[error("{0}")]
    Usage(String),
    /// The HTTP client could not be built.
    #[error("{0}")]
    Api(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
