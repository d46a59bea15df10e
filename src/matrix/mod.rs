//! The Matrix side of the bridge: the only code that knows Matrix events and matrix-sdk.
pub mod client;
pub mod html;
