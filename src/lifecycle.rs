//! Process lifecycle: which signal means what, and what a reload changes.
//!
//! SIGINT (Ctrl-C) and SIGTERM stop qmoi at once in every mode — the console
//! reads stdin on its own thread (see `channels::console::terminal`), so
//! nothing waits for a key press. SIGHUP re-reads and re-validates the
//! configuration, command definitions and templates and reports what changed;
//! a config that no longer validates is refused and the running one kept.

use crate::command::Registry;
use crate::config::{Config, Validated};
use crate::notify::Templates;

/// What a signal asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// Stop (the signal's name).
    Stop(&'static str),
    /// Re-read the configuration.
    Reload,
}

/// The signals qmoi handles, installed once at startup (before anything
/// slow, so an early Ctrl-C is not the default "die mid-write").
pub struct Signals {
    #[cfg(unix)]
    int: tokio::signal::unix::Signal,
    #[cfg(unix)]
    term: tokio::signal::unix::Signal,
    #[cfg(unix)]
    hup: tokio::signal::unix::Signal,
}

impl Signals {
    /// Installs the handlers.
    pub fn install() -> std::io::Result<Signals> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            Ok(Signals {
                int: signal(SignalKind::interrupt())?,
                term: signal(SignalKind::terminate())?,
                hup: signal(SignalKind::hangup())?,
            })
        }
        #[cfg(not(unix))]
        Ok(Signals {})
    }

    /// The next signal.
    pub async fn next(&mut self) -> Event {
        #[cfg(unix)]
        {
            tokio::select! {
                _ = self.int.recv() => Event::Stop("SIGINT"),
                _ = self.term.recv() => Event::Stop("SIGTERM"),
                _ = self.hup.recv() => Event::Reload,
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
            Event::Stop("Ctrl-C")
        }
    }
}

/// What a reload found, for the log.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct ReloadReport {
    /// Parts whose content changed.
    pub changed: Vec<String>,
    /// Of those, what only takes effect after a restart.
    pub needs_restart: Vec<String>,
}

/// Compares the running configuration with a freshly validated one.
///
/// Commands, templates and people are compared by content; every other
/// config section by its (secret-masked) value. The running engine holds
/// its registry, templates and directory for its whole life, so every
/// change is reported as needing a restart; the new config was validated,
/// so the restart will succeed.
pub fn compare(running: &Config, new: &Validated) -> ReloadReport {
    let mut r = ReloadReport::default();
    let old_commands = Registry::load(&running.paths.commands).ok();
    let same_commands = old_commands
        .as_ref()
        .is_some_and(|(c, _)| format!("{:?}", c.all()) == format!("{:?}", new.commands.all()));
    if !same_commands {
        r.changed.push("commands".into());
    }
    let old_t = Templates::load(&running.paths.templates)
        .ok()
        .map(|t| t.source().to_string());
    let new_t = Templates::load(&new.config.paths.templates)
        .ok()
        .map(|t| t.source().to_string());
    if old_t != new_t || running.paths.templates != new.config.paths.templates {
        r.changed.push("templates".into());
    }
    if running.people != new.config.people {
        r.changed.push("people".into());
    }
    let sections = |c: &Config| -> Vec<(String, String)> {
        match toml::Value::try_from(c) {
            Ok(toml::Value::Table(t)) => t
                .into_iter()
                .filter(|(k, _)| k != "people")
                .map(|(k, v)| (k, v.to_string()))
                .collect(),
            _ => Vec::new(),
        }
    };
    let (old_s, new_s) = (sections(running), sections(&new.config));
    for (k, v) in &new_s {
        if old_s.iter().find(|(ok, _)| ok == k).map(|(_, ov)| ov) != Some(v) {
            r.changed.push(k.clone());
        }
    }
    r.needs_restart = r.changed.clone();
    r
}
