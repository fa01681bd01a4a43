//! Channel adapters: how qmoi talks and listens on each medium.
//!
//! Each adapter does two things and nothing more: it delivers rendered
//! messages ([`crate::notify::Channel`]) and turns what people send into
//! [`crate::command::Command`]s for the engine. Adding a channel is one file
//! here plus its templates.

pub mod console;
pub mod discord;
pub mod email;
pub mod slack;
