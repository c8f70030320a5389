//! `nimriz-matrix-core`: a campaign matrix → Nimriz short links, as a library.
//!
//! The pipeline, one folder per stage, each using only the stages before it:
//! `spec` (parse TOML/CSV, with locations) → `expand` (cells, templates, slugs, UTMs, rules)
//! → `plan` (the list of links; dry-run output) → `apply` (create them through the `nimriz`
//! client) → `manifest` (the crash-safe record).
//!
//! At the bottom, used by every stage: `model` (the shared domain types: `Cell`,
//! `DomainRef`, `PlannedLink`, input-file identity), `diag` (`SourceFile`, `Problem`,
//! `Report`), `error` (the one error type and the exit-code table), `guard` (outputs never
//! replace the spec, its inputs or a manifest's files) and `report` (the
//! trait through which library code tells a person what it does; the binary prints).
//!
//! No module here parses flags or prints on its own: the `nimriz-matrix` binary resolves
//! flags into the settings structs these functions take.

pub mod diag;
pub mod error;
pub mod guard;
pub mod model;
pub mod report;

pub mod spec;

pub mod expand;

pub mod plan;
// Links as code: the plan against the record (offline half; `apply` holds the online half).
pub mod lifecycle;

pub mod apply;
pub mod manifest;

pub use error::{Error, Result, exit};
