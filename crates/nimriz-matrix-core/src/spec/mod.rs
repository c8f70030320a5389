//! Stage 1: read the spec (TOML, or a CSV with one row per link) into a checked model,
//! keeping source locations so every later error can point at a line.

mod csv_input;
mod dimensions;
mod fields;
mod input;
mod load;
pub mod model;
mod raw;
pub mod rows;
mod shape;
pub mod template;

pub use csv_input::encoding_for_label;
pub use encoding_rs::Encoding;
pub use input::{DEFAULT_MAX_INPUT_BYTES, InputPolicy};
pub use load::{load, load_with};
pub use model::Spec;
