//! Configuration: one TOML file, every key overridable from the environment.
//!
//! Precedence, lowest first: built-in defaults → the config file → `.env` →
//! process environment. An environment variable is the key path in capitals
//! with `__` between sections and the prefix `QMOI_`, so `gitlab.token` is
//! `QMOI_GITLAB__TOKEN` and `server.listen` is `QMOI_SERVER__LISTEN`.
//! The defaults alone make a working bot: memory in `./qmoi-data`, HTTP on
//! 127.0.0.1:8080 and the console channel, whose operator is the master.

mod secret;

pub use secret::{Secret, MASK};

use figment::providers::{Format, Serialized, Toml};
use figment::Figment;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

/// Prefix of every environment variable qmoi reads.
pub const ENV_PREFIX: &str = "QMOI_";

/// Why a configuration could not be loaded; always names the offending key.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file named with `--config`/`QMOI_CONFIG` does not exist.
    #[error("config file {0} does not exist")]
    Missing(PathBuf),
    /// A key has the wrong type, an unknown name or a bad value.
    #[error("{0}")]
    Invalid(String),
}

/// The whole effective configuration of one qmoi process.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Where the sled memory lives (`QMOI_DATA_DIR`).
    pub data_dir: PathBuf,
    /// The HTTP server (webhooks, API, health, metrics).
    pub server: ServerConfig,
    /// Where command definitions, templates and backups are read or written.
    pub paths: PathsConfig,
    /// The console channel: a person typing commands at the terminal.
    pub console: ConsoleConfig,
    /// Everyone qmoi will take commands from, with their roles and identities.
    pub people: Vec<PersonConfig>,
    /// How notifications are grouped, delivered and retried.
    pub notify: NotifyConfig,
    /// The command engine.
    pub engine: EngineConfig,
    /// GitLab: incoming webhooks and the REST API used by actions.
    pub gitlab: GitLabConfig,
    /// GitHub: incoming webhooks.
    pub github: GitHubConfig,
    /// The generic HTTP API (`/api/v1/...`).
    pub api: ApiConfig,
    /// The email channel: notifications over SMTP, replies over IMAP.
    pub email: EmailConfig,
    /// The Slack channel.
    pub slack: SlackConfig,
}

/// How Slack delivers events to qmoi.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum SlackMode {
    /// Slack POSTs to `/slack/commands`, `/slack/interactions`, `/slack/events`
    /// (needs a public HTTPS URL).
    Http,
    /// qmoi opens a WebSocket to Slack (no public URL; needs an app token).
    Socket,
}

/// The Slack channel.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SlackConfig {
    /// Bot token (`xoxb-…`) for the Web API.
    pub bot_token: Option<Secret>,
    /// Signing secret: every HTTP request from Slack is verified with it.
    pub signing_secret: Option<Secret>,
    /// App-level token (`xapp-…`) for Socket Mode.
    pub app_token: Option<Secret>,
    /// HTTP endpoints or Socket Mode.
    pub mode: SlackMode,
    /// Channel ID notifications go to unless a route says otherwise.
    pub channel: String,
    /// Event kind (`fix_proposed`, `job_failed`, …) → channel ID.
    pub routes: BTreeMap<String, String>,
    /// Web API base URL (tests point it at a local server).
    pub api_url: String,
    /// Messages per second per channel (Slack allows about one).
    pub per_channel_per_sec: u32,
    /// This many new notifications at once for one channel are posted in
    /// the thread of one parent message instead of one by one.
    pub burst_threshold: usize,
    /// The slash command name, for the manifest.
    pub command: String,
    /// Public base URL of qmoi, for the manifest's request URLs.
    pub public_url: String,
}

impl Default for SlackConfig {
    fn default() -> Self {
        SlackConfig {
            bot_token: None,
            signing_secret: None,
            app_token: None,
            mode: SlackMode::Http,
            channel: String::new(),
            routes: BTreeMap::new(),
            api_url: "https://slack.com/api/".into(),
            per_channel_per_sec: 1,
            burst_threshold: 3,
            command: "/qmoi".into(),
            public_url: "https://qmoi.example.com".into(),
        }
    }
}

impl SlackConfig {
    /// What is missing for the Slack channel, naming the variables.
    pub fn problems(&self) -> Vec<String> {
        let unset = |s: &Option<Secret>| s.as_ref().is_none_or(Secret::is_empty);
        let mut p = Vec::new();
        if unset(&self.bot_token) {
            p.push("slack channel is off: set QMOI_SLACK__BOT_TOKEN (slack.bot_token)".into());
        }
        if self.channel.is_empty() && self.routes.is_empty() {
            p.push("slack has nowhere to post: set QMOI_SLACK__CHANNEL (slack.channel) to a channel ID".into());
        }
        match self.mode {
            SlackMode::Http if unset(&self.signing_secret) => p.push(
                "slack requests are all refused: set QMOI_SLACK__SIGNING_SECRET (slack.signing_secret)".into(),
            ),
            SlackMode::Socket if unset(&self.app_token) => p.push(
                "slack Socket Mode cannot connect: set QMOI_SLACK__APP_TOKEN (slack.app_token)".into(),
            ),
            _ => {}
        }
        p
    }

    /// Whether outbound messages can be sent.
    pub fn usable(&self) -> bool {
        self.bot_token.as_ref().is_some_and(|t| !t.is_empty())
    }
}

/// How to reach a mail server.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Security {
    /// TLS from the first byte (SMTPS 465, IMAPS 993).
    Tls,
    /// Plain connection upgraded with STARTTLS (submission 587, IMAP 143).
    Starttls,
    /// No encryption: only for a server on loopback.
    Plain,
}

/// The email channel.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EmailConfig {
    /// qmoi's mailbox address; replies go to `local+TOKEN@domain`.
    pub address: String,
    /// Who receives notifications; empty means every person's email identity.
    pub recipients: Vec<String>,
    /// SMTP server host.
    pub smtp_host: String,
    /// SMTP port.
    pub smtp_port: u16,
    /// SMTP transport security.
    pub smtp_security: Security,
    /// SMTP AUTH user (empty: no AUTH).
    pub smtp_username: String,
    /// SMTP AUTH password.
    pub smtp_password: Option<Secret>,
    /// IMAP server host.
    pub imap_host: String,
    /// IMAP port.
    pub imap_port: u16,
    /// IMAP transport security.
    pub imap_security: Security,
    /// IMAP user.
    pub imap_username: String,
    /// IMAP password.
    pub imap_password: Option<Secret>,
    /// Mailbox replies arrive in.
    pub imap_mailbox: String,
    /// Where handled replies are moved (never deleted).
    pub processed_folder: String,
    /// Where refused or ignored mail is moved (never deleted).
    pub rejected_folder: String,
    /// Re-issue IDLE at least this often (at most 300 s, RFC 2177 advises 29 min max).
    pub idle_secs: u64,
    /// Timeout for every IMAP/SMTP command.
    pub command_timeout_secs: u64,
    /// Extra CA certificate (PEM) to trust, for a self-signed server.
    pub ca_file: Option<PathBuf>,
    /// HMAC key for reply tokens.
    pub token_secret: Option<Secret>,
    /// How long a reply token is valid.
    pub token_ttl_days: u64,
    /// `Authentication-Results` authserv-ids whose verdict is trusted.
    pub trusted_authserv_ids: Vec<String>,
    /// Host name of qmoi's own MTA: its `Received: … (Authenticated sender: X)`
    /// line proves the sender logged in (self-hosted servers). Empty: off.
    pub trusted_mta: String,
    /// DEVELOPMENT ONLY: accept replies without sender authentication.
    pub insecure_skip_sender_auth: bool,
    /// Larger messages are refused unread.
    pub max_message_bytes: u64,
}

impl Default for EmailConfig {
    fn default() -> Self {
        EmailConfig {
            address: String::new(),
            recipients: Vec::new(),
            smtp_host: "127.0.0.1".into(),
            smtp_port: 587,
            smtp_security: Security::Starttls,
            smtp_username: String::new(),
            smtp_password: None,
            imap_host: "127.0.0.1".into(),
            imap_port: 993,
            imap_security: Security::Tls,
            imap_username: String::new(),
            imap_password: None,
            imap_mailbox: "INBOX".into(),
            processed_folder: "qmoi/processed".into(),
            rejected_folder: "qmoi/rejected".into(),
            idle_secs: 300,
            command_timeout_secs: 30,
            ca_file: None,
            token_secret: None,
            token_ttl_days: 7,
            trusted_authserv_ids: Vec::new(),
            trusted_mta: String::new(),
            insecure_skip_sender_auth: false,
            max_message_bytes: 2 * 1024 * 1024,
        }
    }
}

/// HTTP server settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    /// Address to bind; loopback by default so nothing is exposed by accident.
    pub listen: SocketAddr,
}

/// Locations of data files that operators may want to customise.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PathsConfig {
    /// Command definitions; when the folder is absent the built-in copy is used.
    pub commands: PathBuf,
    /// Notification templates; when absent the built-in copy is used.
    pub templates: PathBuf,
    /// Where `qmoi memory export` and `import` write backups.
    pub backups: PathBuf,
}

/// The console channel.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ConsoleConfig {
    /// Read commands from standard input and print notifications to standard output.
    pub enabled: bool,
    /// The console identity commands typed at the terminal come from.
    pub identity: String,
}

/// One person: a name, roles and the identities that prove it is them.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PersonConfig {
    /// The name shown in outcomes ("approved by alice").
    pub name: String,
    /// Roles such as `master`, `team`, `viewer`; commands list the roles they allow.
    #[serde(default)]
    pub roles: Vec<String>,
    /// Channel name → identities on that channel (email addresses, Slack or
    /// Discord user IDs, the console identity, API actor names).
    #[serde(default)]
    pub identities: BTreeMap<String, Vec<String>>,
}

/// Notification grouping and delivery.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NotifyConfig {
    /// Events with the same dedup key within this window update one notification.
    pub dedup_window_secs: u64,
    /// Channels every notification goes to (those that are enabled).
    pub channels: Vec<String>,
    /// Delivery attempts per message before it is marked failed.
    pub max_attempts: u32,
    /// First retry delay; doubles on each attempt.
    pub retry_base_ms: u64,
}

/// Engine settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EngineConfig {
    /// How long a confirmation code for a dangerous command stays valid.
    pub confirm_ttl_secs: u64,
    /// Upper bound for one action run, so a hung forge cannot wedge a decision.
    pub action_timeout_secs: u64,
}

/// GitLab settings.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct GitLabConfig {
    /// Base URL of the GitLab instance, e.g. `https://gitlab.example.com`.
    pub url: Option<String>,
    /// Personal/project access token with `api` scope, sent as `PRIVATE-TOKEN`.
    pub token: Option<Secret>,
    /// Secret token configured on the GitLab webhook (`X-Gitlab-Token`).
    pub webhook_secret: Option<Secret>,
    /// Base URL of the mirror that takes over on `failover`.
    pub mirror_url: Option<String>,
    /// Token for the mirror; defaults to `token` when unset.
    pub mirror_token: Option<Secret>,
    /// Per-request timeout for REST calls.
    pub timeout_secs: u64,
    /// Fetch the failed job's log to quote its last lines in notifications.
    pub fetch_trace: bool,
}

/// GitHub settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GitHubConfig {
    /// Webhook secret used to verify `X-Hub-Signature-256`.
    pub webhook_secret: Option<Secret>,
    /// Token with `actions: write`, for re-running failed jobs.
    pub token: Option<Secret>,
    /// REST base (`https://HOST/api/v3` for GitHub Enterprise).
    pub api_url: String,
}

impl Default for GitHubConfig {
    fn default() -> Self {
        GitHubConfig {
            webhook_secret: None,
            token: None,
            api_url: "https://api.github.com".into(),
        }
    }
}

/// Generic HTTP API settings.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct ApiConfig {
    /// Bearer token for `/api/v1/*`; the API refuses every request without it.
    pub token: Option<Secret>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            data_dir: PathBuf::from("qmoi-data"),
            server: ServerConfig::default(),
            paths: PathsConfig::default(),
            console: ConsoleConfig::default(),
            people: vec![PersonConfig {
                name: "operator".into(),
                roles: vec!["master".into()],
                identities: BTreeMap::from([
                    ("console".to_string(), vec!["operator".to_string()]),
                    ("api".to_string(), vec!["operator".to_string()]),
                ]),
            }],
            notify: NotifyConfig::default(),
            engine: EngineConfig::default(),
            gitlab: GitLabConfig {
                timeout_secs: 15,
                fetch_trace: true,
                ..GitLabConfig::default()
            },
            github: GitHubConfig::default(),
            api: ApiConfig::default(),
            email: EmailConfig::default(),
            slack: SlackConfig::default(),
        }
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
        }
    }
}

impl Default for PathsConfig {
    fn default() -> Self {
        PathsConfig {
            commands: PathBuf::from("commands"),
            templates: PathBuf::from("templates"),
            backups: PathBuf::from("qmoi-backups"),
        }
    }
}

impl Default for ConsoleConfig {
    fn default() -> Self {
        ConsoleConfig {
            enabled: true,
            identity: "operator".into(),
        }
    }
}

impl Default for NotifyConfig {
    fn default() -> Self {
        NotifyConfig {
            dedup_window_secs: 1800,
            channels: vec!["console".into()],
            max_attempts: 5,
            retry_base_ms: 500,
        }
    }
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            confirm_ttl_secs: 600,
            action_timeout_secs: 120,
        }
    }
}

/// Where configuration comes from; tests pass their own environment.
#[derive(Debug, Default, Clone)]
pub struct Sources {
    /// The TOML file, if any.
    pub file: Option<PathBuf>,
    /// A `.env` file to read before the environment (ignored when missing).
    pub dotenv: Option<PathBuf>,
    /// Environment variables to apply; `None` means the process environment.
    pub env: Option<Vec<(String, String)>>,
}

impl Config {
    /// Loads defaults, then the file, then `.env`, then the environment.
    pub fn load(sources: &Sources) -> Result<Config, ConfigError> {
        let mut fig = Figment::from(Serialized::defaults(Config::default()));
        if let Some(file) = &sources.file {
            if !file.exists() {
                return Err(ConfigError::Missing(file.clone()));
            }
            fig = fig.merge(Toml::file_exact(file));
        }
        let mut vars: Vec<(String, String)> = Vec::new();
        if let Some(path) = &sources.dotenv {
            if let Ok(iter) = dotenvy::from_path_iter(path) {
                for item in iter {
                    let (k, v) =
                        item.map_err(|e| ConfigError::Invalid(format!("{}: {e}", path.display())))?;
                    vars.push((k, v));
                }
            }
        }
        match &sources.env {
            Some(env) => vars.extend(env.iter().cloned()),
            None => vars.extend(std::env::vars()),
        }
        // Later entries win: the real environment overrides `.env`.
        let merged: BTreeMap<String, String> = vars
            .into_iter()
            .filter(|(k, _)| k.starts_with(ENV_PREFIX) && !is_cli_only_var(k))
            .collect();
        // Figment's Env provider reads the process environment; an explicit
        // list lets tests and `.env` work without mutating global state.
        let mut fig_env = Figment::new();
        for (k, v) in &merged {
            let key = k[ENV_PREFIX.len()..].to_lowercase().replace("__", ".");
            // Secrets stay exactly as written; other values may be numbers,
            // booleans or lists (`QMOI_NOTIFY__CHANNELS='["console","email"]'`).
            let secret = ["token", "secret", "password"]
                .iter()
                .any(|s| key.ends_with(s));
            let value: figment::value::Value = if secret {
                figment::value::Value::from(v.clone())
            } else {
                v.parse()
                    .unwrap_or_else(|_| figment::value::Value::from(v.clone()))
            };
            fig_env = fig_env.merge(Serialized::default(&key, value));
        }
        fig = fig.merge(fig_env);
        let config: Config = fig.extract().map_err(|e| {
            ConfigError::Invalid(
                e.into_iter()
                    .map(|e| describe_figment_error(&e))
                    .collect::<Vec<_>>()
                    .join("; "),
            )
        })?;
        config.validate()?;
        Ok(config)
    }

    /// Checks relations between keys that types alone cannot express.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let mut names = std::collections::HashSet::new();
        for (i, p) in self.people.iter().enumerate() {
            if p.name.trim().is_empty() {
                return Err(ConfigError::Invalid(format!("people[{i}].name is empty")));
            }
            if !names.insert(p.name.to_lowercase()) {
                return Err(ConfigError::Invalid(format!(
                    "people[{i}].name: '{}' appears twice",
                    p.name
                )));
            }
        }
        for (key, url) in [
            ("gitlab.url", &self.gitlab.url),
            ("gitlab.mirror_url", &self.gitlab.mirror_url),
        ] {
            if let Some(u) = url {
                if reqwest::Url::parse(u).is_err() {
                    return Err(ConfigError::Invalid(format!(
                        "{key}: '{u}' is not a URL (expected e.g. https://gitlab.example.com)"
                    )));
                }
            }
        }
        Ok(())
    }

    /// Startup warnings: what is off and exactly which variable turns it on.
    pub fn warnings(&self) -> Vec<String> {
        let mut w = Vec::new();
        let unset = |s: &Option<Secret>| s.as_ref().is_none_or(Secret::is_empty);
        if unset(&self.gitlab.webhook_secret) {
            w.push("GitLab webhooks are off: /hooks/gitlab answers 401 until QMOI_GITLAB__WEBHOOK_SECRET (gitlab.webhook_secret) is set".into());
        }
        if self.gitlab.url.is_none() || unset(&self.gitlab.token) {
            w.push("GitLab actions are off: set QMOI_GITLAB__URL (gitlab.url) and QMOI_GITLAB__TOKEN (gitlab.token) to retry jobs and merge fixes".into());
        }
        if self.gitlab.mirror_url.is_none() {
            w.push("failover is off: set QMOI_GITLAB__MIRROR_URL (gitlab.mirror_url) to name the mirror that takes over".into());
        }
        if unset(&self.github.webhook_secret) {
            w.push("GitHub webhooks are off: /hooks/github answers 401 until QMOI_GITHUB__WEBHOOK_SECRET (github.webhook_secret) is set".into());
        }
        if unset(&self.github.token) {
            w.push("GitHub re-runs are off: set QMOI_GITHUB__TOKEN (github.token) so `retry` works on GitHub notifications".into());
        }
        if unset(&self.api.token) {
            w.push(
                "the HTTP API is off: /api/v1 answers 401 until QMOI_API__TOKEN (api.token) is set"
                    .into(),
            );
        }
        if self.notify.channels.iter().any(|c| c == "email") {
            w.extend(self.email.problems());
            if self.email.insecure_skip_sender_auth {
                w.push("DANGER: email.insecure_skip_sender_auth is on — anyone who can forge a From header and holds a reply token can run commands. Development only.".into());
            }
        }
        if self.notify.channels.iter().any(|c| c == "slack") {
            w.extend(self.slack.problems());
        }
        for ch in ["email", "slack", "discord"] {
            if !self.notify.channels.iter().any(|c| c == ch) {
                w.push(format!(
                    "{ch} channel is off: add \"{ch}\" to notify.channels (QMOI_NOTIFY__CHANNELS) and configure [{ch}] to enable it"
                ));
            }
        }
        w
    }

    /// The effective configuration as TOML, secrets masked.
    pub fn to_masked_toml(&self) -> String {
        toml::to_string_pretty(self).unwrap_or_else(|e| format!("# cannot render config: {e}\n"))
    }
}

impl EmailConfig {
    /// What is missing for the email channel to work, naming the variables.
    pub fn problems(&self) -> Vec<String> {
        let mut p = Vec::new();
        let unset = |s: &Option<Secret>| s.as_ref().is_none_or(Secret::is_empty);
        if !self.address.contains('@') {
            p.push(
                "email channel is off: set QMOI_EMAIL__ADDRESS (email.address), qmoi's mailbox"
                    .into(),
            );
        }
        if unset(&self.token_secret) {
            p.push("email channel is off: set QMOI_EMAIL__TOKEN_SECRET (email.token_secret) to sign reply tokens".into());
        }
        if !self.imap_username.is_empty() && unset(&self.imap_password) {
            p.push(
                "email replies are not read: set QMOI_EMAIL__IMAP_PASSWORD (email.imap_password)"
                    .into(),
            );
        }
        if !self.smtp_username.is_empty() && unset(&self.smtp_password) {
            p.push("email cannot be sent with AUTH: set QMOI_EMAIL__SMTP_PASSWORD (email.smtp_password)".into());
        }
        if self.trusted_authserv_ids.is_empty()
            && self.trusted_mta.is_empty()
            && !self.insecure_skip_sender_auth
        {
            p.push("email replies will all be refused: set email.trusted_authserv_ids (QMOI_EMAIL__TRUSTED_AUTHSERV_IDS) or email.trusted_mta (QMOI_EMAIL__TRUSTED_MTA) so qmoi can tell a real sender from a forged one".into());
        }
        p
    }

    /// Whether enough is configured to run the channel.
    pub fn usable(&self) -> bool {
        self.address.contains('@') && self.token_secret.as_ref().is_some_and(|s| !s.is_empty())
    }
}

/// Variables read by the command line itself, not part of the config tree.
fn is_cli_only_var(k: &str) -> bool {
    matches!(k, "QMOI_CONFIG" | "QMOI_LOG")
}

fn describe_figment_error(e: &figment::Error) -> String {
    let path = e.path.join(".");
    let env_name = if path.is_empty() {
        String::new()
    } else {
        format!(
            " (env {}{})",
            ENV_PREFIX,
            path.to_uppercase().replace('.', "__")
        )
    };
    if path.is_empty() {
        format!("{}", e.kind)
    } else {
        format!("{path}{env_name}: {}", e.kind)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(env: &[(&str, &str)], file: Option<&str>) -> Result<Config, ConfigError> {
        let dir = tempfile::tempdir().map_err(|e| ConfigError::Invalid(e.to_string()))?;
        let file = file.map(|text| {
            let p = dir.path().join("qmoi.toml");
            std::fs::write(&p, text).ok();
            p
        });
        Config::load(&Sources {
            file,
            dotenv: None,
            env: Some(
                env.iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            ),
        })
    }

    #[test]
    fn defaults_work_alone() {
        let c = load(&[], None).expect("defaults load");
        assert_eq!(c.server.listen.to_string(), "127.0.0.1:8080");
        assert!(c.console.enabled);
        assert_eq!(c.people[0].roles, vec!["master".to_string()]);
    }

    #[test]
    fn env_overrides_file() {
        let c = load(
            &[
                ("QMOI_GITLAB__TOKEN", "12345"),
                ("QMOI_API__TOKEN", "[abc],1e5"),
                ("QMOI_SERVER__LISTEN", "127.0.0.1:9999"),
                ("QMOI_DATA_DIR", "/tmp/x"),
            ],
            Some("[gitlab]\nurl = \"http://127.0.0.1:1\"\ntoken = \"from-file\"\n"),
        )
        .expect("loads");
        assert_eq!(c.gitlab.token.as_ref().map(Secret::expose), Some("12345"));
        assert_eq!(c.api.token.as_ref().map(Secret::expose), Some("[abc],1e5"));
        assert_eq!(c.server.listen.port(), 9999);
        assert_eq!(c.data_dir, PathBuf::from("/tmp/x"));
    }

    #[test]
    fn errors_name_the_key() {
        let err = load(&[("QMOI_SERVER__LISTEN", "not-an-addr")], None)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("server.listen"), "{err}");
        assert!(err.contains("QMOI_SERVER__LISTEN"), "{err}");
        let err = load(&[], Some("[gitlab]\nurll = 1\n"))
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("urll"), "{err}");
    }

    #[test]
    fn masked_output_hides_secrets() {
        let c = load(&[("QMOI_GITLAB__TOKEN", "glpat-very-secret")], None).expect("loads");
        let out = c.to_masked_toml();
        assert!(!out.contains("glpat-very-secret"));
        assert!(out.contains(MASK));
    }

    #[test]
    fn warnings_name_variables() {
        let c = load(&[], None).expect("loads");
        let w = c.warnings().join("\n");
        assert!(w.contains("QMOI_GITLAB__WEBHOOK_SECRET"));
        assert!(w.contains("QMOI_API__TOKEN"));
    }
}
