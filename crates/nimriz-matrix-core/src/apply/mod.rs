//! Stage 4: make the plan real on Nimriz — batches, retries, conflicts, journal.
//!
//! - `settings.rs`: [`BuildSettings`] (the binary resolves them from flags + env).
//! - `build.rs`: [`run_build`], the batch scheduler and the manifest bookkeeping.
//! - `send.rs`: one create request and what its answer means for each row (slug conflicts
//!   are looked up before they count as done).
//! - `report.rs`: [`BuildReport`] and the end-of-build summary.
//! - `shorten.rs`: mint one link now ([`mint_link`], `shorten`).
//! - `workspace.rs`: the manifest's workspace checked against the one the key belongs to.

mod build;
mod report;
mod send;
mod settings;
mod shorten;
pub mod workspace;

pub use build::run_build;
pub use report::{BuildOutcome, BuildReport};
pub use send::same_destination;
pub use settings::{BuildSettings, MAX_BATCH_SIZE, MAX_CONCURRENCY};
pub use shorten::{
    MintRequest, Minted, MintedLink, ShortenSettings, check_slug, mint_link, shorten_command,
    with_utm,
};
