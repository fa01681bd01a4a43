//! What build this is: version, commit and build date (from `build.rs`).

/// The git commit (short hash, `-dirty` when built from a modified tree).
pub const COMMIT: &str = env!("BUILD_GIT_COMMIT");

/// UTC build date, `YYYY-MM-DDTHH:MM:SSZ` (or `SOURCE_DATE_EPOCH`).
pub const DATE: &str = env!("BUILD_DATE_UTC");

/// The crate version.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// `0.1.0 (commit 1a2b3c4d5e6f, built 2026-12-01T09:00:00Z)`.
pub const LONG: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("BUILD_GIT_COMMIT"),
    ", built ",
    env!("BUILD_DATE_UTC"),
    ")"
);
