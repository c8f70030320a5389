//! Helpers shared by the workspace's tests (`publish = false`): one way to run the binary
//! with a clean environment, one kill-on-drop process guard, one scratch folder for temp
//! specs, and builders for manifests and `listen` setups.

pub mod bin;
pub mod listen;
pub mod manifest;
pub mod pg;

pub use bin::{ChildGuard, Run, Scratch, command, repo, run_in, sandbox};
