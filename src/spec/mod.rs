//! Stage 1: read the spec (TOML, or a CSV with one row per link) into a typed model,
//! keeping source locations so every later error can point at a line.

mod report;
pub use report::{Problem, SpecReport};
