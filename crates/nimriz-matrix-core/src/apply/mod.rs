//! Stage 4: make the plan real on Nimriz — batches, retries, conflicts, journal.
//!
//! - `settings.rs`: [`BuildSettings`] (the binary resolves them from flags + env).
//! - `build.rs`: [`run_build`], the batch scheduler and the manifest bookkeeping.
//! - `send.rs`: one create request and what its answer means for each row (slug conflicts
//!   are looked up before they count as done).
//! - `refresh.rs`: `refresh`, reading recorded links back and recording outside changes.
//! - `adopt.rs`: `import`, adopting the workspace's links the spec plans.
//! - `retire.rs`: `retire`, ending orphans or a whole campaign (fallback, expiry, delete).
//! - `session.rs`: the client + workspace check + manifest those three share with build.
//! - `report.rs`: [`BuildReport`] and the end-of-build summary.
//! - `shorten.rs`: mint one link now ([`mint_link`], `shorten`).
//! - `update.rs`: changing live links in place (`build --update`, `retire`), each change
//!   confirmed by the answer or by reading the link back.
//! - `workspace.rs`: the manifest's workspace checked against the one the key belongs to.

mod adopt;
mod build;
mod refresh;
mod report;
mod retire;
mod send;
mod session;
mod settings;
mod shorten;
mod update;
pub mod workspace;

pub use adopt::import_command;
pub use build::run_build;
pub use refresh::{RefreshReport, refresh_command, run_refresh};
pub use report::{BuildOutcome, BuildReport};
pub use retire::{Confirm, RetireHow, RetireSettings, retire_command};
pub use send::same_destination;
pub use session::LiveSettings;
pub use settings::{BuildSettings, MAX_BATCH_SIZE, MAX_CONCURRENCY};
pub use shorten::{
    MintRequest, Minted, MintedLink, ShortenSettings, check_slug, mint_link, shorten_command,
    with_utm,
};
