//! Subcommands that live in their own modules (one enum + one dispatch
//! line each in `main.rs`).

pub mod memory;
