//! The core library: properties of expansion, the manifest store and schema, build faults.
//! One test binary per crate (see ARCHITECTURE.md); each module is one area.

mod build_faults;
mod contract_shapes;
mod lifecycle_plan;
mod lifecycle_wire;
mod manifest_schema;
mod manifest_store;
mod one_pass;
mod prop_core;
