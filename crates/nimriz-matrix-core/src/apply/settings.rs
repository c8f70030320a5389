//! `build`'s settings. The binary resolves flags + env into them once (flags > env >
//! defaults); [`BuildSettings::checked`] holds the limits.

use crate::{Error, Result};
use nimriz::ApiConfig;
use std::path::PathBuf;

/// Largest batch we agree to send; the real bulk maximum is unknown [assumed], and 413
/// halving takes care of anything lower.
pub const MAX_BATCH_SIZE: usize = 1000;
/// More in-flight requests than this only invites rate limiting.
pub const MAX_CONCURRENCY: usize = 32;

#[derive(Debug, Clone)]
pub struct BuildSettings {
    pub api: ApiConfig,
    /// Rows per bulk request (halved on 413 for the rest of the run).
    pub batch_size: usize,
    /// Requests in flight at once (bulk batches, or single creates after a fallback).
    pub concurrency: usize,
    pub manifest_path: PathBuf,
    /// Times a row with no usable result (missing from a response ...) is resent in one
    /// run before it is recorded as failed.
    pub max_resends: u32,
    /// Apply spec changes to live links (`--update`); without it they are listed and the
    /// run exits 1.
    pub update: bool,
    /// With `update`: also set drifted links (edited outside the spec) back to the spec.
    pub force_drift: bool,
    /// Allow renaming printed links or leaving them behind (`--break-printed`).
    pub break_printed: bool,
}

impl BuildSettings {
    /// Defaults for everything but where to send and where to record.
    pub fn new(api: ApiConfig, manifest_path: PathBuf) -> Self {
        BuildSettings {
            api,
            batch_size: 100,
            concurrency: 4,
            manifest_path,
            max_resends: 3,
            update: false,
            force_drift: false,
            break_printed: false,
        }
    }

    /// Settings from the user's values, refusing ones out of range (exit 2).
    pub fn checked(
        api: ApiConfig,
        manifest_path: PathBuf,
        batch_size: usize,
        concurrency: usize,
    ) -> Result<Self> {
        if batch_size == 0 || batch_size > MAX_BATCH_SIZE {
            return Err(Error::Usage(format!(
                "--batch-size must be between 1 and {MAX_BATCH_SIZE}, got {batch_size}"
            )));
        }
        if concurrency == 0 || concurrency > MAX_CONCURRENCY {
            return Err(Error::Usage(format!(
                "--concurrency must be between 1 and {MAX_CONCURRENCY}, got {concurrency}"
            )));
        }
        let mut s = BuildSettings::new(api, manifest_path);
        s.batch_size = batch_size;
        s.concurrency = concurrency;
        Ok(s)
    }
}
