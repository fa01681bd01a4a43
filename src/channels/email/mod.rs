//! The email channel (under construction in this change).

pub mod reply;
pub mod token;
