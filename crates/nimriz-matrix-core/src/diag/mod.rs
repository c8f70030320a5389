//! Diagnostics shared by every input reader (spec, CSV inputs, `listen.toml`): a loaded
//! source file that turns byte offsets into `file:line:col` + snippet, and the report of
//! every problem found, each naming where it is and the fix.

pub mod format;
mod report;
mod source;

pub use report::{Problem, Report};
pub use source::{Location, SourceFile};
