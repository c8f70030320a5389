//! Stage 1: read the spec (TOML, or a CSV with one row per link) into a checked model,
//! keeping source locations so every later error can point at a line.

mod csv_input;
mod dimensions;
mod fields;
mod load;
pub mod model;
mod raw;
mod shape;
pub mod template;

pub use load::load;
pub use model::Spec;
