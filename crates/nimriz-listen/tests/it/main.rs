//! The receiver in-process: delivery and the full loop with the sandbox.
//! One test binary per crate (see ARCHITECTURE.md); each module is one area.

mod campaign_count;
mod listen_delivery;
mod listen_loop;
