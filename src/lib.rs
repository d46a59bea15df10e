#![recursion_limit = "256"]
//! bridgewarden: a Matrix <-> IRC bridge with a declarative moderation policy.
//!
//! See ARCHITECTURE.md for the map of modules and the invariants they keep.

pub mod audit;
pub mod chat;
pub mod cli;
pub mod config;
pub mod daemon;
pub mod diagnostic;
pub mod irc;
pub mod matrix;
pub mod moderator;
pub mod policy;
pub mod policy_files;
pub mod rich_text;
pub mod routing;
