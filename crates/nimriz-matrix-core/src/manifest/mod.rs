//! Stage 5: the run manifest — the record of what was asked, created, and failed.
//!
//! Files for a manifest `M` (default `<spec dir>/<spec stem>.manifest.json`, see
//! [`default_path`]): `M` itself (only ever replaced atomically), `M.journal` (progress
//! since `M` was last written; see `journal.rs` for the format and why a crash loses
//! nothing recorded) and `M.lock` (held while a build runs). A build writes through
//! [`ManifestStore`]; readers use [`load`].

mod atomic;
mod export;
mod journal;
mod lock;
pub mod model;
mod scan;
pub mod store;

pub use atomic::write_atomic;
pub use export::{
    ExportFormat, ExportSettings, LINK_COLUMNS, UTF8_BOM, dimension_names, export_command,
    neutralize, utm_columns, write_csv, write_json,
};
pub use model::{
    LinkRecord, LinkStatus, LinkSummary, Manifest, RecordedError, RunCounts, RunRecord,
    SCHEMA_VERSION, TOOL_NAME, WorkspaceRecord, now_rfc3339,
};
pub use store::{
    ManifestStore, default_path, journal_path, load, load_with_notes, lock_path, mark_printed,
    peek_header,
};
