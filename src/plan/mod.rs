//! Stage 3: the plan — every link a build would send — and its dry-run output.

mod model;
pub use model::{Cell, DomainRef, InputFile, Plan, PlanSource, PlannedLink};

use crate::cli::{BuildArgs, ValidateArgs};
use crate::output::Printer;
use crate::{Error, Result};
use std::path::Path;

/// Load, expand and validate a spec into an in-memory plan (what `build` sends).
pub fn load(_spec: &Path, _max_links: u64, _printer: &Printer) -> Result<Plan> {
    Err(Error::Usage("spec loading is not built yet".into()))
}

pub fn validate_command(_args: &ValidateArgs, _printer: &Printer) -> Result<u8> {
    Err(Error::Usage("validate is not built yet".into()))
}

pub fn dry_run_command(_args: &BuildArgs, _printer: &Printer) -> Result<u8> {
    Err(Error::Usage("dry-run is not built yet".into()))
}
