//! The one error type `run` returns, and the exit-code table (also in the README).

use std::path::PathBuf;

/// Exit codes. Documented in README.md; tests assert them.
pub mod exit {
    /// Everything asked for is done (`created` or `exists`), or the spec is valid.
    pub const OK: u8 = 0;
    /// Finished, manifest written, but some rows failed or drifted.
    pub const PARTIAL: u8 = 1;
    /// Invalid spec, input file or usage.
    pub const INVALID: u8 = 2;
    /// The API refused the run: auth, or unreachable after retries.
    pub const API: u8 = 3;
    /// Local I/O failure, or the manifest is locked by another run.
    pub const LOCAL: u8 = 4;
    /// Interrupted (Ctrl-C): in-flight work finished, manifest written.
    pub const INTERRUPTED: u8 = 130;
    /// `plan`/`refresh --detailed-exitcode`: changes pending or drift found (then any error
    /// is [`PARTIAL`], 1, as Terraform's `-detailed-exitcode`).
    pub const CHANGES: u8 = 2;
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// One or more problems in the spec or its input files, each with a location.
    #[error("{0}")]
    Spec(#[from] crate::diag::Report),
    /// Bad flags or arguments that clap could not catch.
    #[error("{0}")]
    Usage(String),
    /// The API refused the run as a whole (auth, unreachable after retries, ...).
    #[error("{0}")]
    Api(String),
    #[error("could not {action} {}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Another run holds the manifest lock.
    #[error("{0}")]
    Lock(String),
    #[error("interrupted")]
    Interrupted,
}

impl Error {
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Spec(_) | Error::Usage(_) => exit::INVALID,
            Error::Api(_) => exit::API,
            Error::Io { .. } | Error::Lock(_) => exit::LOCAL,
            Error::Interrupted => exit::INTERRUPTED,
        }
    }

    pub fn io(action: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            action,
            path: path.into(),
            source,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl From<nimriz::Error> for Error {
    fn from(e: nimriz::Error) -> Self {
        match e {
            nimriz::Error::Usage(m) => Error::Usage(m),
            nimriz::Error::Api(m) => Error::Api(m),
        }
    }
}

impl From<nimriz::ClientError> for Error {
    fn from(e: nimriz::ClientError) -> Self {
        Error::Api(e.to_string())
    }
}
