//! Log output: text or JSON lines on stderr (stdout is the console's).
//!
//! Colour only when stderr is a terminal, so files and journald never get
//! escape codes. JSON lines have stable top-level names: `timestamp`,
//! `level`, `target`, `message`, plus the event's own fields (`who`,
//! `channel`, `place`, `command`, `result`, `duration_ms` for commands;
//! `status`, `error`, `peer`, `method`, `path` for refused requests).

use crate::config::{LogConfig, LogFormat};
use std::io::IsTerminal;

/// Why logging could not start.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// The filter does not parse (validation reports this first).
    #[error("log.filter: '{filter}' is not a log filter: {reason}")]
    Filter {
        /// The filter given.
        filter: String,
        /// The parser's reason.
        reason: String,
    },
    /// A global subscriber was already installed.
    #[error("logging already started: {0}")]
    Init(String),
}

/// Installs the global subscriber for `cfg`.
pub fn init(cfg: &LogConfig) -> Result<(), LogError> {
    let filter = tracing_subscriber::EnvFilter::builder()
        .parse(&cfg.filter)
        .map_err(|e| LogError::Filter {
            filter: cfg.filter.clone(),
            reason: e.to_string(),
        })?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let result = match cfg.format {
        LogFormat::Text => builder
            .with_target(false)
            .with_ansi(std::io::stderr().is_terminal())
            .try_init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(false)
            .with_target(true)
            .try_init(),
    };
    result.map_err(|e| LogError::Init(e.to_string()))
}
