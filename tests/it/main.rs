//! The `nimriz-matrix` binary, run as a user runs it (these need `CARGO_BIN_EXE_nimriz-matrix`).
//! One test binary per crate (see ARCHITECTURE.md); each module is one area.

mod action;
mod e2e_build;
mod handoff;
mod hostile;
mod layout;
mod lifecycle_cli;
mod listen_attack;
mod listen_crash;
mod listen_pg;
mod listen_receive;
mod manifest_export;
mod messages;
mod readme;
mod sandbox_cli;
mod shell_cli;
mod shorten_cli;
mod spec_cli;
mod workspace_cli;
