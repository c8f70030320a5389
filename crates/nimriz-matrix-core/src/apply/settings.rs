//! `build`'s settings, resolved once from flags + env (flags > env > defaults).

use crate::cli::BuildArgs;
use crate::client::ApiConfig;
use crate::{Error, Result};
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
        }
    }

    pub fn resolve(args: &BuildArgs) -> Result<Self> {
        if args.batch_size == 0 || args.batch_size > MAX_BATCH_SIZE {
            return Err(Error::Usage(format!(
                "--batch-size must be between 1 and {MAX_BATCH_SIZE}, got {}",
                args.batch_size
            )));
        }
        if args.concurrency == 0 || args.concurrency > MAX_CONCURRENCY {
            return Err(Error::Usage(format!(
                "--concurrency must be between 1 and {MAX_CONCURRENCY}, got {}",
                args.concurrency
            )));
        }
        let manifest_path = args
            .manifest
            .clone()
            .unwrap_or_else(|| crate::manifest::default_path(&args.spec));
        let mut s = BuildSettings::new(ApiConfig::resolve(&args.api)?, manifest_path);
        s.batch_size = args.batch_size;
        s.concurrency = args.concurrency;
        Ok(s)
    }
}
