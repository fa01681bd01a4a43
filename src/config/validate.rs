//! The one validation `serve` and `config check` both run.
//!
//! A check is a plain function `fn(&Input, &mut Findings)` listed in
//! [`CHECKS`]; it reports errors (qmoi refuses to start: a feature would
//! silently not work) and warnings (a feature is off, and here is how to turn
//! it on). To add one for your section: write the function (in this file or
//! beside your section's config struct) and append it to [`CHECKS`]; a
//! channel that can deliver notifications also gets a line in [`CHANNELS`].
//!
//! Every finding names the key and where its value came from (file and line,
//! environment variable, `.env` line, or the default), and never contains a
//! secret's value: checks only ever say whether a secret is set.

use super::origin::{Origin, Origins};
use super::{Config, ConfigError, Secret, Sources, ENV_PREFIX};
use crate::command::Registry;
use std::collections::BTreeSet;
use std::fmt;

/// How bad a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    /// qmoi refuses to start.
    Error,
    /// qmoi starts with a feature off.
    Warning,
}

/// One problem in the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// Error or warning.
    pub level: Level,
    /// The dotted key (`notify.channels`, `people[0].roles`).
    pub key: String,
    /// What is wrong and how to fix it; never a secret's value.
    pub message: String,
    /// Where the key's value came from.
    pub origin: Origin,
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let level = match self.level {
            Level::Error => "error",
            Level::Warning => "warning",
        };
        match &self.origin {
            Origin::Default => write!(f, "{level}: {}: {}", self.key, self.message),
            o => write!(f, "{level}: {o}: {}: {}", self.key, self.message),
        }
    }
}

/// What a check sees.
pub struct Input<'a> {
    /// The loaded configuration.
    pub config: &'a Config,
    /// Where each value came from.
    pub origins: &'a Origins,
    /// The command definitions (for role names).
    pub commands: &'a Registry,
}

/// Collects findings, attaching each key's origin.
pub struct Findings<'a> {
    origins: &'a Origins,
    list: Vec<Finding>,
}

impl<'a> Findings<'a> {
    /// An empty collection resolving origins from `origins`.
    pub fn new(origins: &'a Origins) -> Self {
        Findings {
            origins,
            list: Vec::new(),
        }
    }

    /// Something that would make a feature silently not work.
    pub fn error(&mut self, key: impl Into<String>, message: impl Into<String>) {
        self.push(Level::Error, key.into(), message.into());
    }

    /// A feature that is off, and how to turn it on.
    pub fn warn(&mut self, key: impl Into<String>, message: impl Into<String>) {
        self.push(Level::Warning, key.into(), message.into());
    }

    fn push(&mut self, level: Level, key: String, message: String) {
        let origin = self.origins.of(&key);
        self.list.push(Finding {
            level,
            key,
            message,
            origin,
        });
    }

    /// The findings, errors first.
    pub fn into_vec(mut self) -> Vec<Finding> {
        self.list.sort_by_key(|f| f.level);
        self.list
    }
}

/// A named check; see the module docs for how to add one.
pub type Check = fn(&Input, &mut Findings);

/// Every check, in the order their findings are printed.
pub const CHECKS: &[Check] = &[
    people,
    identities,
    notify_channels,
    notify_delivery,
    email_section,
    email_tls,
    gitlab_section,
    github_section,
    api_section,
    super::memory::memory_section,
    super::mirror::check,
    engine_section,
    log_section,
];

/// A notification channel: its name and whether it can deliver with this
/// config (reporting why not as errors, since it is listed in `notify.channels`).
pub struct ChannelCheck {
    /// The name used in `notify.channels` and `people[].identities`.
    pub name: &'static str,
    /// Reports what is missing; returns true when the channel can deliver.
    pub check: fn(&Input, &mut Findings, usize) -> bool,
}

/// The channels this build knows.
pub const CHANNELS: &[ChannelCheck] = &[
    ChannelCheck {
        name: "console",
        check: console_channel,
    },
    ChannelCheck {
        name: crate::channels::email::NAME,
        check: email_channel,
    },
    ChannelCheck {
        name: crate::channels::slack::NAME,
        check: slack_channel,
    },
    ChannelCheck {
        name: crate::channels::discord::NAME,
        check: discord_channel,
    },
];

/// Identity namespaces that are not notification channels.
const OTHER_IDENTITY_KINDS: &[&str] = &["api"];

/// Runs every check.
pub fn validate(input: &Input) -> Vec<Finding> {
    let mut f = Findings::new(input.origins);
    for check in CHECKS {
        check(input, &mut f);
    }
    f.into_vec()
}

/// What `serve` and `config check` both get: the config, where it came from,
/// and the warnings. Errors (any [`Level::Error`]) are returned as
/// [`ConfigError::Invalid`].
pub struct Validated {
    /// The configuration.
    pub config: Config,
    /// Where each value came from.
    pub origins: Origins,
    /// The command definitions the check used.
    pub commands: Registry,
    /// Features that are off.
    pub warnings: Vec<Finding>,
}

/// Loads the configuration and runs every check: the single entry point for
/// `serve` and `config check`, so both accept and refuse the same configs.
/// `adjust` applies command-line overrides before checking.
pub fn load_and_validate(
    sources: &Sources,
    adjust: impl FnOnce(&mut Config),
) -> Result<Validated, ConfigError> {
    let (mut config, origins) = Config::load_traced(sources)?;
    adjust(&mut config);
    let (commands, _) = Registry::load(&config.paths.commands)
        .map_err(|e| ConfigError::Other(format!("command definitions: {e}")))?;
    crate::notify::Templates::load(&config.paths.templates)
        .map_err(|e| ConfigError::Other(format!("templates: {e}")))?;
    let findings = validate(&Input {
        config: &config,
        origins: &origins,
        commands: &commands,
    });
    if findings.iter().any(|f| f.level == Level::Error) {
        return Err(ConfigError::Invalid(findings));
    }
    Ok(Validated {
        config,
        origins,
        commands,
        warnings: findings,
    })
}

/// The environment variable for a dotted key: `gitlab.token` → `QMOI_GITLAB__TOKEN`.
pub fn env_var(key: &str) -> String {
    format!("{ENV_PREFIX}{}", key.to_uppercase().replace('.', "__"))
}

/// "`gitlab.token` (QMOI_GITLAB__TOKEN)": how to set a key, both ways.
pub fn how_to_set(key: &str) -> String {
    format!("{key} (or {})", env_var(key))
}

/// The closest candidate to `word`, if it is close enough to be a typo.
pub fn did_you_mean<'c>(
    word: &str,
    candidates: impl IntoIterator<Item = &'c str>,
) -> Option<&'c str> {
    let word = word.to_lowercase();
    candidates
        .into_iter()
        .map(|c| (strsim::jaro_winkler(&word, &c.to_lowercase()), c))
        .filter(|(score, _)| *score >= 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| c)
}

/// " — did you mean 'x'?" or "" — appended to unknown-name messages.
pub fn suggestion<'c>(word: &str, candidates: impl IntoIterator<Item = &'c str>) -> String {
    did_you_mean(word, candidates)
        .map(|c| format!("; did you mean '{c}'?"))
        .unwrap_or_default()
}

/// "unknown role 'mastr'; did you mean 'master'? (known: master, team)".
pub fn unknown(what: &str, word: &str, known: &[&str]) -> String {
    format!(
        "unknown {what} '{word}'{} (known: {})",
        suggestion(word, known.iter().copied()),
        known.join(", ")
    )
}

fn unset(s: &Option<Secret>) -> bool {
    s.as_ref().is_none_or(Secret::is_empty)
}

fn people(input: &Input, f: &mut Findings) {
    let known: BTreeSet<&str> = input
        .commands
        .all()
        .iter()
        .flat_map(|c| c.roles.iter().map(String::as_str))
        .collect();
    let mut names = BTreeSet::new();
    for (i, p) in input.config.people.iter().enumerate() {
        if p.name.trim().is_empty() {
            f.error(
                format!("people[{i}].name"),
                "is empty; every person needs a name",
            );
        } else if !names.insert(p.name.to_lowercase()) {
            f.error(
                format!("people[{i}].name"),
                format!("'{}' appears twice; names must be unique", p.name),
            );
        }
        for (j, role) in p.roles.iter().enumerate() {
            if !known.contains(role.as_str()) {
                let known: Vec<&str> = known.iter().copied().collect();
                f.error(
                    format!("people[{i}].roles[{j}]"),
                    unknown("role", role, &known),
                );
            }
        }
    }
}

fn identities(input: &Input, f: &mut Findings) {
    let kinds: Vec<&str> = CHANNELS
        .iter()
        .map(|c| c.name)
        .chain(OTHER_IDENTITY_KINDS.iter().copied())
        .collect();
    for (i, p) in input.config.people.iter().enumerate() {
        for kind in p.identities.keys() {
            if !kinds.contains(&kind.as_str()) {
                f.error(
                    format!("people[{i}].identities.{kind}"),
                    unknown("channel", kind, &kinds),
                );
            }
        }
    }
}

fn notify_channels(input: &Input, f: &mut Findings) {
    let names: Vec<&str> = CHANNELS.iter().map(|c| c.name).collect();
    let mut deliverable = false;
    let mut seen = BTreeSet::new();
    for (i, ch) in input.config.notify.channels.iter().enumerate() {
        let key = format!("notify.channels[{i}]");
        if !seen.insert(ch.as_str()) {
            f.warn(key, format!("'{ch}' is listed twice"));
            continue;
        }
        match CHANNELS.iter().find(|c| c.name == ch) {
            Some(c) => deliverable |= (c.check)(input, f, i),
            None => f.error(key, unknown("channel", ch, &names)),
        }
    }
    if !deliverable {
        f.error(
            "notify.channels",
            "no listed channel can deliver, so every notification would wait in the outbox forever; list a configured channel",
        );
    }
    for c in CHANNELS.iter().filter(|c| c.name != "console") {
        if !seen.contains(c.name) {
            f.warn(
                "notify.channels",
                format!(
                    "the {0} channel is off: add \"{0}\" to notify.channels and configure [{0}] to use it",
                    c.name
                ),
            );
        }
    }
}

/// Fallback channels and escalation names (issue #9's keys).
fn notify_delivery(input: &Input, f: &mut Findings) {
    for (key, message) in crate::notify::deliverability_problems(input.config) {
        f.error(key, message);
    }
}

fn console_channel(input: &Input, f: &mut Findings, i: usize) -> bool {
    if !input.config.console.enabled {
        f.error(
            format!("notify.channels[{i}]"),
            format!(
                "lists 'console' but the console is off ({} = false); remove it or turn the console on",
                how_to_set("console.enabled")
            ),
        );
        return false;
    }
    true
}

fn email_channel(input: &Input, f: &mut Findings, _: usize) -> bool {
    let e = &input.config.email;
    let mut ok = true;
    if !e.address.contains('@') {
        f.error(
            "email.address",
            format!(
                "notify.channels lists \"email\" but qmoi has no mailbox address; set {}",
                how_to_set("email.address")
            ),
        );
        ok = false;
    }
    if unset(&e.token_secret) {
        f.error(
            "email.token_secret",
            format!(
                "notify.channels lists \"email\" but reply tokens cannot be signed; set {}",
                how_to_set("email.token_secret")
            ),
        );
        ok = false;
    }
    if !e.imap_username.is_empty() && unset(&e.imap_password) {
        f.error(
            "email.imap_password",
            format!(
                "email.imap_username is set but not its password, so replies are never read; set {}",
                how_to_set("email.imap_password")
            ),
        );
    }
    if !e.smtp_username.is_empty() && unset(&e.smtp_password) {
        f.error(
            "email.smtp_password",
            format!(
                "email.smtp_username is set but not its password, so SMTP AUTH fails; set {}",
                how_to_set("email.smtp_password")
            ),
        );
        ok = false;
    }
    ok
}

fn email_section(input: &Input, f: &mut Findings) {
    let e = &input.config.email;
    if !input.config.notify.channels.iter().any(|c| c == "email") {
        return;
    }
    if e.imap_username.is_empty() {
        f.warn(
            "email.imap_username",
            format!(
                "email replies are not read: set {} and email.imap_password",
                how_to_set("email.imap_username")
            ),
        );
    }
    if e.trusted_authserv_ids.is_empty() && e.trusted_mta.is_empty() && !e.insecure_skip_sender_auth
    {
        f.warn("email.trusted_authserv_ids", "email replies will all be refused: set email.trusted_authserv_ids or email.trusted_mta so qmoi can tell a real sender from a forged one");
    }
    if e.insecure_skip_sender_auth {
        f.warn("email.insecure_skip_sender_auth", "DANGER: on — anyone who can forge a From header and holds a reply token can run commands. Development only.");
    }
}

/// `email.ca_file` and the server certificate in it, verified as the
/// connection will verify them (issue #11's `channels::email::tls::check`).
fn email_tls(input: &Input, f: &mut Findings) {
    for p in crate::channels::email::tls::check(&input.config.email) {
        f.error(p.key, p.message);
    }
}

fn slack_channel(input: &Input, f: &mut Findings, _: usize) -> bool {
    use super::SlackMode;
    let s = &input.config.slack;
    let mut ok = true;
    if unset(&s.bot_token) {
        f.error(
            "slack.bot_token",
            format!(
                "notify.channels lists \"slack\" but nothing can be posted; set {}",
                how_to_set("slack.bot_token")
            ),
        );
        ok = false;
    }
    if s.channel.is_empty() && s.routes.is_empty() {
        f.error(
            "slack.channel",
            format!(
                "notify.channels lists \"slack\" but there is nowhere to post; set {} to a channel ID",
                how_to_set("slack.channel")
            ),
        );
        ok = false;
    }
    match s.mode {
        SlackMode::Http if unset(&s.signing_secret) => f.error(
            "slack.signing_secret",
            format!(
                "every request from Slack would be refused; set {}",
                how_to_set("slack.signing_secret")
            ),
        ),
        SlackMode::Socket if unset(&s.app_token) => f.error(
            "slack.app_token",
            format!(
                "Socket Mode cannot connect; set {}",
                how_to_set("slack.app_token")
            ),
        ),
        _ => {}
    }
    ok
}

/// `[discord]`'s own checks (config/discord.rs), reported here.
fn discord_channel(input: &Input, f: &mut Findings, _: usize) -> bool {
    let mut ok = true;
    for p in input.config.discord.problems() {
        if p.error {
            ok = false;
            f.error(p.key, p.message);
        } else {
            f.warn(p.key, p.message);
        }
    }
    ok
}

fn gitlab_section(input: &Input, f: &mut Findings) {
    let g = &input.config.gitlab;
    for (key, url) in [("gitlab.url", &g.url), ("gitlab.mirror_url", &g.mirror_url)] {
        if let Some(u) = url {
            if reqwest::Url::parse(u).is_err() {
                f.error(
                    key,
                    format!("'{u}' is not a URL (expected e.g. https://gitlab.example.com)"),
                );
            }
        }
    }
    if unset(&g.webhook_secret) {
        f.warn(
            "gitlab.webhook_secret",
            format!(
                "GitLab webhooks are off: /hooks/gitlab answers 401 until {} is set",
                how_to_set("gitlab.webhook_secret")
            ),
        );
    }
    match (g.url.is_some(), !unset(&g.token)) {
        (true, true) => {}
        (true, false) => f.warn(
            "gitlab.token",
            format!(
                "GitLab actions are off: gitlab.url is set but not {}",
                how_to_set("gitlab.token")
            ),
        ),
        (false, true) => f.warn(
            "gitlab.url",
            format!(
                "GitLab actions are off: gitlab.token is set but not {}",
                how_to_set("gitlab.url")
            ),
        ),
        (false, false) => f.warn(
            "gitlab.url",
            format!(
                "GitLab actions are off: set {} and {} to retry jobs and merge fixes",
                how_to_set("gitlab.url"),
                how_to_set("gitlab.token")
            ),
        ),
    }
    if g.mirror_url.is_none() && input.config.mirror.repos.is_empty() {
        f.warn(
            "gitlab.mirror_url",
            format!(
                "failover is off: configure [[mirror.repos]] or set {} to name the mirror that takes over",
                how_to_set("gitlab.mirror_url")
            ),
        );
    }
}

fn github_section(input: &Input, f: &mut Findings) {
    let g = &input.config.github;
    if unset(&g.webhook_secret) {
        f.warn(
            "github.webhook_secret",
            format!(
                "GitHub webhooks are off: /hooks/github answers 401 until {} is set",
                how_to_set("github.webhook_secret")
            ),
        );
    }
    if unset(&g.token) {
        f.warn(
            "github.token",
            format!(
                "GitHub re-runs are off: set {} so `retry` works on GitHub notifications",
                how_to_set("github.token")
            ),
        );
    }
}

fn log_section(input: &Input, f: &mut Findings) {
    if let Err(e) = tracing_subscriber::EnvFilter::builder().parse(&input.config.log.filter) {
        f.error(
            "log.filter",
            format!(
                "'{}' is not a log filter ({e}); e.g. info or qmoi=debug,hyper=warn",
                input.config.log.filter
            ),
        );
    }
}

fn api_section(input: &Input, f: &mut Findings) {
    if unset(&input.config.api.token) {
        f.warn(
            "api.token",
            format!(
                "the HTTP API is off: /api/v1 answers 401 until {} is set",
                how_to_set("api.token")
            ),
        );
    }
}

/// The reconciliation backoff must be able to wait at all, and its cap
/// must not be below its first wait.
fn engine_section(input: &Input, f: &mut Findings) {
    let e = &input.config.engine;
    if e.reconcile_base_secs == 0 {
        f.error(
            "engine.reconcile_base_secs",
            "must be at least 1: it is the first wait before checking the forge again for a pending outcome",
        );
    }
    if e.reconcile_max_secs < e.reconcile_base_secs {
        f.error(
            "engine.reconcile_max_secs",
            format!(
                "must not be below engine.reconcile_base_secs ({}): it caps the wait between checks of a pending outcome",
                e.reconcile_base_secs
            ),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(toml: &str) -> Vec<Finding> {
        let dir = tempfile::tempdir().expect("tmp");
        let p = dir.path().join("qmoi.toml");
        std::fs::write(&p, toml).expect("write");
        let sources = Sources {
            file: Some(p),
            env: Some(Vec::new()),
            ..Sources::default()
        };
        match load_and_validate(&sources, |_| {}) {
            Ok(v) => v.warnings,
            Err(ConfigError::Invalid(f)) => f,
            Err(e) => panic!("unexpected {e}"),
        }
    }

    fn errors(toml: &str) -> String {
        check(toml)
            .iter()
            .filter(|f| f.level == Level::Error)
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("\n")
    }

    #[test]
    fn reconcile_backoff_must_wait_and_cap_above_its_start() {
        let e = errors("[engine]\nreconcile_base_secs = 10\nreconcile_max_secs = 5\n");
        assert!(
            e.contains(
                "engine.reconcile_max_secs: must not be below engine.reconcile_base_secs (10)"
            ),
            "{e}"
        );
        let e = errors("[engine]\nreconcile_base_secs = 0\n");
        assert!(
            e.contains("engine.reconcile_base_secs: must be at least 1"),
            "{e}"
        );
    }

    #[test]
    fn typoed_channel_suggests_and_names_the_line() {
        let e = errors("[notify]\nchannels = [\"console\", \"emial\"]\n");
        assert!(
            e.contains("qmoi.toml:2: notify.channels[1]: unknown channel 'emial'"),
            "{e}"
        );
        assert!(e.contains("did you mean 'email'?"), "{e}");
    }

    #[test]
    fn email_listed_without_address_or_token() {
        let e = errors("[notify]\nchannels = [\"email\"]\n");
        assert!(e.contains("email.address"), "{e}");
        assert!(e.contains("email.token_secret"), "{e}");
        assert!(e.contains("no listed channel can deliver"), "{e}");
    }

    #[test]
    fn unknown_role_and_identity_kind() {
        let e = errors(
            "[[people]]\nname = \"a\"\nroles = [\"mastr\"]\nidentities = { slak = [\"U1\"] }\n",
        );
        assert!(
            e.contains("qmoi.toml:3: people[0].roles[0]: unknown role 'mastr'"),
            "{e}"
        );
        assert!(e.contains("did you mean 'master'?"), "{e}");
        assert!(
            e.contains("unknown channel 'slak'") && e.contains("'slack'"),
            "{e}"
        );
    }

    #[test]
    fn console_off_with_only_console_listed() {
        let e = errors("[console]\nenabled = false\n");
        assert!(e.contains("console is off"), "{e}");
        assert!(e.contains("no listed channel can deliver"), "{e}");
    }

    #[test]
    fn defaults_pass_with_warnings_that_name_only_what_is_missing() {
        assert_eq!(errors(""), "");
        let w = check("[gitlab]\nurl = \"https://gitlab.example.com\"\n")
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("\n");
        assert!(
            w.contains("gitlab.url is set but not gitlab.token (or QMOI_GITLAB__TOKEN)"),
            "{w}"
        );
        assert!(!w.contains("QMOI_GITLAB__URL"), "{w}");
    }
}
