//! A local Nimriz-compatible API server for trying builds and for end-to-end tests.

use crate::output::Printer;
use crate::{Error, Result};

#[derive(Debug, clap::Args)]
pub struct SandboxArgs {
    /// Address to listen on (loopback by default).
    #[arg(long, default_value = "127.0.0.1:8787")]
    pub addr: String,
}

pub async fn serve_command(_args: SandboxArgs, _printer: &Printer) -> Result<u8> {
    Err(Error::Usage("sandbox is not built yet".into()))
}
