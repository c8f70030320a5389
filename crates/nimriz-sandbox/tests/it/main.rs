//! The sandbox API in-process.
//! One test binary per crate (see ARCHITECTURE.md); each module is one area.

mod sandbox_api;
