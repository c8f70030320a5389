//! Links as code, the offline half: compare what the spec plans with what the manifest
//! records, and say what a build would change (`plan`), in words, JSON or markdown.
//!
//! - `classify.rs`: every planned link and every record gets one action (create, unchanged,
//!   update, rename, orphan, drift, cannot-update); [`field_changes`] is the one comparison
//!   of a record with its planned link, shared with `build --update`.
//! - `render.rs`: the plan as text, versioned JSON (`nimriz-matrix-plan`, version 1) and a
//!   pull-request comment.
//! - `command.rs`: `nimriz-matrix plan` ([`compare`] is also `build --dry-run`'s counts).
//! - `saved.rs`: `plan --out` / `build --plan`: hashes of the spec, its inputs and the
//!   record, so a stale plan is refused.
//!
//! The online half (applying updates, refresh, import, retire) lives in `apply`, which
//! calls into this module; this module never talks to the API.

mod classify;
mod command;
mod render;
mod saved;

pub use classify::{
    Action, Classified, Counts, Entry, FieldChange, Moved, PlannedFields, classify, field_changes,
};
pub(crate) use classify::{host_token, id_token, refuse_printed, same_instant};
pub use command::{Compared, PlanOutput, PlanSettings, compare, plan_command};
pub use render::{MARKDOWN_MARKER, PlanView, render_human, render_json, render_markdown, summary};
pub use saved::{Hashes, SavedPlan, check_fresh, hashes_now};
