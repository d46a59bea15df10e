//! The IRC side of the bridge: the only code that knows IRC wire details.
pub mod channels;
pub mod client;
pub mod codec;
pub mod flood;
pub mod isupport;
pub mod line;
