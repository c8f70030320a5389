//! Stage 4: make the plan real on Nimriz — batches, retries, conflicts, journal.

use crate::cli::{BuildArgs, ShortenArgs};
use crate::output::Printer;
use crate::plan::Plan;
use crate::{Error, Result};

pub async fn build_command(_plan: Plan, _args: &BuildArgs, _printer: &Printer) -> Result<u8> {
    Err(Error::Usage("build is not built yet".into()))
}

pub async fn shorten_command(_args: &ShortenArgs, _printer: &Printer) -> Result<u8> {
    Err(Error::Usage("shorten is not built yet".into()))
}
