//! The `nimriz` client against loopback servers (wiremock).
//! One test binary per crate (see ARCHITECTURE.md); each module is one area.

mod client_contract;
mod prop_contract;
mod whoami_shapes;
