//! Stage 5: the run manifest — the record of what was asked, created, and failed.

use crate::cli::ExportArgs;
use crate::{Error, Result};

pub fn export_command(_args: &ExportArgs) -> Result<u8> {
    Err(Error::Usage("export is not built yet".into()))
}
