//! The Nimriz API client. Everything assumed about the API (not documented by Nimriz)
//! lives in `contract.rs`, so it is cheap to change when the real answer is known.
