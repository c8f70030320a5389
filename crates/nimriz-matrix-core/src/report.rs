//! How library code reports to a person: [`Reporter`] (status, detail, warnings) and
//! [`ProgressSink`] (links settled so far), defined by the `nimriz` client crate and
//! implemented by the binary's printer. [`Silent`] prints nothing.

pub use nimriz::report::{ProgressSink, Reporter, RetryCounter, Silent};

/// A reporter shared with tasks and the API client.
pub type SharedReporter = std::sync::Arc<dyn Reporter>;
