//! Stage 4: make the plan real on Nimriz — batches, retries, conflicts, journal.
//!
//! - `settings.rs`: [`BuildSettings`], resolved once from flags + env.
//! - `build.rs`: [`run_build`], the batch scheduler and the manifest bookkeeping.
//! - `send.rs`: one create request and what its answer means for each row (slug conflicts
//!   are looked up before they count as done).
//! - `report.rs`: [`BuildReport`] and the end-of-build summary.
//! - `shorten.rs`: mint one link now ([`mint_link`], `shorten`).

mod build;
mod report;
mod send;
mod settings;
mod shorten;

pub use build::{run_build, run_build_until};
pub use report::{BuildOutcome, BuildReport};
pub use send::same_destination;
pub use settings::{BuildSettings, MAX_BATCH_SIZE, MAX_CONCURRENCY};
pub use shorten::{
    MintRequest, Minted, MintedLink, check_slug, mint_link, shorten_command, with_utm,
};

use crate::Result;
use crate::cli::BuildArgs;
use crate::output::Printer;
use crate::plan::Plan;

/// `nimriz-matrix build SPEC`: exit 0 all done, 1 some failed/drifted, 130 interrupted;
/// errors map to 2 (usage, unknown domain), 3 (API: auth, unreachable), 4 (I/O, lock).
pub async fn build_command(plan: Plan, args: &BuildArgs, printer: &Printer) -> Result<u8> {
    let settings = BuildSettings::resolve(args)?;
    let report = run_build(plan, &settings, printer).await?;
    report.print(printer);
    Ok(report.exit_code())
}
