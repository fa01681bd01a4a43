//! Process lifecycle: which signal means what, and what a reload changes.
//!
//! SIGINT (Ctrl-C) and SIGTERM stop qmoi at once in every mode — the console
//! reads stdin on its own thread (see `channels::console::terminal`), so
//! nothing waits for a key press. SIGHUP re-reads and re-validates the
//! configuration; when it validates, the command definitions, templates and
//! people (with their roles) are replaced at once ([`Reloadable`]) and every
//! other changed section is named as needing a restart. A config that does
//! not validate is refused and the running one kept whole.

use crate::command::Registry;
use crate::config::{Config, PersonConfig, Validated};
use crate::engine::Engine;
use crate::identity::Directory;
use crate::notify::Templates;
use crate::reload::Live;

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

/// What a reload did, for the log and the console.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct ReloadReport {
    /// Replaced while running: `commands`, `templates`, `people`.
    pub reloaded: Vec<String>,
    /// Changed, but only taking effect after a restart (config sections,
    /// and what is derived once at startup).
    pub needs_restart: Vec<String>,
}

impl ReloadReport {
    /// One sentence for the log and the console.
    pub fn summary(&self) -> String {
        let done = if self.reloaded.is_empty() {
            "nothing to reload".to_string()
        } else {
            format!("reloaded {}", self.reloaded.join(", "))
        };
        if self.needs_restart.is_empty() {
            format!("{done}; nothing needs a restart")
        } else {
            format!(
                "{done}; needs a restart to take effect: {}",
                self.needs_restart.join(", ")
            )
        }
    }
}

/// Why a reload changed nothing.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// The templates directory no longer loads.
    #[error("templates: {0}")]
    Templates(#[from] crate::notify::TemplateError),
    /// A command names an action that does not exist.
    #[error("commands: {0}")]
    Commands(String),
}

/// What a SIGHUP replaces, shared with every part that reads it (the
/// engine, the notifier, intake, actions and the channels hold clones of
/// these handles).
#[derive(Clone)]
pub struct Reloadable {
    /// Command definitions (`paths.commands`).
    pub registry: Live<Registry>,
    /// Message templates (`paths.templates`).
    pub templates: Live<Templates>,
    /// Who is who, with roles (`[[people]]`).
    pub directory: Live<Directory>,
    /// `[[people]]` as configured (escalations reach them).
    pub people: Live<Vec<PersonConfig>>,
    /// The config the running parts were built from, with the reloaded
    /// parts updated: what the next reload compares against.
    running: Live<Config>,
}

impl Reloadable {
    /// Holds what startup loaded.
    pub fn new(config: &Config, registry: Registry, templates: Templates) -> Reloadable {
        Reloadable {
            registry: Live::new(registry),
            templates: Live::new(templates),
            directory: Live::new(Directory::new(&config.people)),
            people: Live::new(config.people.clone()),
            running: Live::new(config.clone()),
        }
    }

    /// Replaces commands, templates and people with those of `new` (all or
    /// nothing) and names what else changed and needs a restart.
    pub fn apply(&self, engine: &Engine, new: &Validated) -> Result<ReloadReport, ReloadError> {
        let running = self.running.current();
        let templates = Templates::load(&new.config.paths.templates)?;
        let mut report = ReloadReport::default();
        if format!("{:?}", self.registry.current().all()) != format!("{:?}", new.commands.all()) {
            report.reloaded.push("commands".into());
        }
        if self.templates.current().fingerprint() != templates.fingerprint() {
            report.reloaded.push("templates".into());
        }
        let people_changed = running.people != new.config.people;
        if people_changed {
            report.reloaded.push("people".into());
        }
        engine
            .reload(
                new.commands.clone(),
                templates,
                Directory::new(&new.config.people),
            )
            .map_err(ReloadError::Commands)?;
        self.people.replace(new.config.people.clone());
        report.needs_restart = restart_needed(&running, &new.config, people_changed, &report);
        let mut applied = running.as_ref().clone();
        applied.people = new.config.people.clone();
        applied.paths.commands = new.config.paths.commands.clone();
        applied.paths.templates = new.config.paths.templates.clone();
        self.running.replace(applied);
        Ok(report)
    }
}

/// Config sections (by their secret-masked value) that differ, except what
/// a reload applies, plus what startup derived once from what was reloaded.
fn restart_needed(
    running: &Config,
    new: &Config,
    people_changed: bool,
    report: &ReloadReport,
) -> Vec<String> {
    let sections = |c: &Config| -> Vec<(String, String)> {
        let mut c = c.clone();
        // Applied by the reload itself.
        c.people = Vec::new();
        c.paths.commands = Default::default();
        c.paths.templates = Default::default();
        match toml::Value::try_from(&c) {
            Ok(toml::Value::Table(t)) => t.into_iter().map(|(k, v)| (k, v.to_string())).collect(),
            _ => Vec::new(),
        }
    };
    let (old_s, new_s) = (sections(running), sections(new));
    let mut out: Vec<String> = new_s
        .iter()
        .filter(|(k, v)| old_s.iter().find(|(ok, _)| ok == k).map(|(_, ov)| ov) != Some(v))
        .map(|(k, _)| format!("[{k}]"))
        .collect();
    let email_from_people = running.email.recipients.is_empty() && running.email.usable();
    if people_changed && email_from_people {
        out.push("email recipients (taken from [[people]] at startup)".into());
    }
    if people_changed && running.dashboard.enabled {
        out.push("dashboard sign-in links (people as at startup)".into());
    }
    if report.reloaded.iter().any(|r| r == "commands") && running.discord.usable() {
        out.push("Discord slash commands (run `qmoi discord register`)".into());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{PersonConfig, Secret};

    fn person(name: &str) -> PersonConfig {
        PersonConfig {
            name: name.into(),
            roles: vec!["master".into()],
            identities: Default::default(),
        }
    }

    /// A running config with email (recipients from people), the dashboard
    /// and Discord on.
    fn running() -> Config {
        let mut c = Config {
            people: vec![person("alice")],
            ..Config::default()
        };
        c.email.address = "qmoi@example.test".into();
        c.email.token_secret = Some(Secret::new("s"));
        c.dashboard.enabled = true;
        c.discord.bot_token = Some(Secret::new("t"));
        c
    }

    #[test]
    fn a_people_change_names_what_startup_derived_from_people() {
        let old = running();
        let mut new = old.clone();
        new.people.push(person("carol"));
        let report = ReloadReport {
            reloaded: vec!["people".into()],
            needs_restart: Vec::new(),
        };
        let got = restart_needed(&old, &new, true, &report);
        assert_eq!(
            got,
            vec![
                "email recipients (taken from [[people]] at startup)".to_string(),
                "dashboard sign-in links (people as at startup)".to_string(),
            ]
        );
        let report = ReloadReport {
            reloaded: vec!["people".into()],
            needs_restart: got,
        };
        assert_eq!(
            report.summary(),
            "reloaded people; needs a restart to take effect: email recipients (taken from \
             [[people]] at startup), dashboard sign-in links (people as at startup)"
        );
    }

    #[test]
    fn changed_commands_name_discord_registration_and_sections_are_named() {
        let old = running();
        let mut new = old.clone();
        new.server.ready_retry_budget_secs += 1;
        let report = ReloadReport {
            reloaded: vec!["commands".into()],
            needs_restart: Vec::new(),
        };
        assert_eq!(
            restart_needed(&old, &new, false, &report),
            vec![
                "[server]".to_string(),
                "Discord slash commands (run `qmoi discord register`)".to_string(),
            ]
        );
        // Explicit email recipients do not depend on people.
        let mut old = running();
        old.email.recipients = vec!["ops@example.test".into()];
        let mut new = old.clone();
        new.people.push(person("carol"));
        let none = ReloadReport::default();
        let got = restart_needed(&old, &new, true, &none);
        assert!(!got.iter().any(|s| s.starts_with("email")), "{got:?}");
    }
}
