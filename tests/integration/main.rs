//! The one integration test binary: every file under `tests/` would otherwise link the whole
//! crate again. One module per area; `cargo test --test integration policy::` selects one.

mod audit;
mod bench;
mod e2e;
mod irc;
mod matrix;
mod policy;
mod support;
