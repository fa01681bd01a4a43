//! Configuration: one TOML file, every key overridable from the environment.
//!
//! Precedence, lowest first: built-in defaults → the config file → `.env` →
//! process environment. An environment variable is the key path in capitals
//! with `__` between sections and the prefix `QMOI_`, so `gitlab.token` is
//! `QMOI_GITLAB__TOKEN` and `server.listen` is `QMOI_SERVER__LISTEN`.
//! The defaults alone make a working bot: memory in `./qmoi-data`, HTTP on
//! 127.0.0.1:8080 and the console channel, whose operator is the master.

mod dashboard;
mod discord;
pub mod dotenv;
pub mod memory;
mod mirror;
pub mod origin;
mod secret;
pub mod validate;

pub use dashboard::DashboardConfig;
pub use discord::{valid_command_name, valid_public_key, DiscordConfig, DiscordMode, Problem};
pub use memory::MemoryConfig;
pub use mirror::{GitCredential, MirrorConfig, Platform, RemoteConfig, RepoMirrorConfig};
pub use origin::{Origin, Origins};

pub use secret::{Secret, MASK};
pub use validate::{load_and_validate, Finding, Level, Validated};

use figment::providers::{Format, Serialized, Toml};
use figment::Figment;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

/// Prefix of every environment variable qmoi reads.
pub const ENV_PREFIX: &str = "QMOI_";

/// Why a configuration could not be loaded. Every variant names the file,
/// line or key, and none of them ever contains a secret's value.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file named with `--config`/`QMOI_CONFIG` does not exist.
    #[error("config file {0} does not exist")]
    Missing(PathBuf),
    /// The `.env` file given with `--env-file` does not exist.
    #[error("env file {0} does not exist (given with --env-file)")]
    EnvFileMissing(PathBuf),
    /// A file exists but cannot be read (permissions, not UTF-8, …).
    #[error("cannot read {path}: {reason}", path = path.display())]
    Unreadable {
        /// The file.
        path: PathBuf,
        /// The operating system's reason.
        reason: String,
    },
    /// The config file is not valid TOML; the offending line is not echoed.
    #[error("{path}:{line}:{column}: TOML syntax error: {message}", path = path.display())]
    Syntax {
        /// The config file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
        /// The parser's message, without the source line.
        message: String,
    },
    /// The `.env` file has a line qmoi cannot read.
    #[error(transparent)]
    DotEnv(#[from] dotenv::DotenvError),
    /// Keys with the wrong type, unknown names or values that would make a
    /// feature silently not work; warnings may be mixed in.
    #[error("{}", .0.iter().filter(|f| f.level == Level::Error).map(ToString::to_string).collect::<Vec<_>>().join("\n"))]
    Invalid(Vec<Finding>),
    /// Command definitions or templates could not be loaded.
    #[error("{0}")]
    Other(String),
}

/// The whole effective configuration of one qmoi process.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Where the memory lives (`QMOI_DATA_DIR`).
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
    /// The Discord channel.
    pub discord: DiscordConfig,
    /// Retention, cache, backups and audit checkpoints of the memory.
    pub memory: MemoryConfig,
    /// Repository mirroring and failover.
    pub mirror: MirrorConfig,
    /// The master's dashboard.
    pub dashboard: DashboardConfig,
    /// Logging (`QMOI_LOG` overrides `log.filter`).
    pub log: LogConfig,
}

/// How log lines are written (to stderr; stdout is the console's).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    /// Human-readable lines; coloured only when stderr is a terminal.
    Text,
    /// One JSON object per line: `timestamp`, `level`, `target`, `message`
    /// and the event's fields at the top level.
    Json,
}

/// Logging settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// Text or JSON lines.
    pub format: LogFormat,
    /// A tracing filter (`info`, `qmoi=debug,hyper=warn`); invalid is an error.
    pub filter: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            format: LogFormat::Text,
            filter: "info".into(),
        }
    }
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
    /// Upper bound for one Web API call. A post that times out may still
    /// have arrived: it is looked up (by its metadata) before any resend.
    pub request_timeout_secs: u64,
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
            request_timeout_secs: 10,
            burst_threshold: 3,
            command: "/qmoi".into(),
            public_url: "https://qmoi.example.com".into(),
        }
    }
}

impl SlackConfig {
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
    /// How long a channel may be reconnecting before `/readyz` says 503.
    pub ready_retry_budget_secs: u64,
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
    /// Optional cap on delivery attempts per message (0, the default: no
    /// cap — the retry horizon decides when to give up).
    pub max_attempts: u32,
    /// First retry delay; doubles on each attempt up to `retry_max_ms`,
    /// with jitter.
    pub retry_base_ms: u64,
    /// Longest wait between two attempts (the backoff's cap).
    pub retry_max_ms: u64,
    /// How long a message keeps being retried (counted from when it was
    /// queued, across restarts) before it is marked failed.
    pub retry_horizon_secs: u64,
    /// Channels, in order, that receive a message when its delivery on a
    /// `channels` channel failed or is still undelivered after
    /// `fallback_after_secs`.
    pub fallback: Vec<String>,
    /// How long a message may stay undelivered before its fallback copy goes.
    pub fallback_after_secs: u64,
    /// An open question gets one reminder in its thread after this long
    /// (0: no reminders).
    pub remind_after_secs: u64,
    /// An open question goes to `escalate_to` after this long (0: never).
    pub escalate_after_secs: u64,
    /// People (by name) who receive escalated questions on their channels.
    pub escalate_to: Vec<String>,
    /// Per event kind (`fix_proposed`, `job_failed`, …): seconds after which
    /// an unanswered question expires with a final notice.
    pub expire_after_secs: BTreeMap<String, u64>,
    /// Per channel (`email = 4`): how many messages its worker delivers at
    /// once (default 1). Messages about one notification still go in order.
    pub concurrency: BTreeMap<String, usize>,
}

/// Engine settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EngineConfig {
    /// How long a confirmation code for a dangerous command stays valid.
    pub confirm_ttl_secs: u64,
    /// Upper bound for one action run, so a hung forge cannot wedge a decision.
    pub action_timeout_secs: u64,
    /// First wait before checking the forge again for a pending outcome.
    pub reconcile_base_secs: u64,
    /// Longest wait between checks of a pending outcome (the backoff cap).
    pub reconcile_max_secs: u64,
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
            dashboard: DashboardConfig::default(),
            slack: SlackConfig::default(),
            discord: DiscordConfig::default(),
            memory: MemoryConfig::default(),
            mirror: MirrorConfig::default(),
            log: LogConfig::default(),
        }
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            ready_retry_budget_secs: 120,
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
            max_attempts: 0,
            retry_base_ms: 500,
            retry_max_ms: 300_000,
            retry_horizon_secs: 86_400,
            fallback: Vec::new(),
            fallback_after_secs: 120,
            remind_after_secs: 3_600,
            escalate_after_secs: 14_400,
            escalate_to: Vec::new(),
            expire_after_secs: BTreeMap::new(),
            concurrency: BTreeMap::new(),
        }
    }
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            confirm_ttl_secs: 600,
            action_timeout_secs: 120,
            reconcile_base_secs: 5,
            reconcile_max_secs: 300,
        }
    }
}

/// Where configuration comes from; tests pass their own environment.
#[derive(Debug, Default, Clone)]
pub struct Sources {
    /// The TOML file, if any.
    pub file: Option<PathBuf>,
    /// A `.env` file to read before the environment.
    pub dotenv: Option<PathBuf>,
    /// A missing `dotenv` file is an error (it was named explicitly).
    pub dotenv_required: bool,
    /// Environment variables to apply; `None` means the process environment.
    pub env: Option<Vec<(String, String)>>,
}

impl Config {
    /// Loads defaults, then the file, then `.env`, then the environment.
    /// Only type and name errors are reported here; the relations between
    /// keys are [`validate`]'s job.
    pub fn load(sources: &Sources) -> Result<Config, ConfigError> {
        Ok(Config::load_traced(sources)?.0)
    }

    /// Like [`Config::load`], also returning where each value came from.
    pub fn load_traced(sources: &Sources) -> Result<(Config, Origins), ConfigError> {
        let mut origins = Origins::default();
        let mut fig = Figment::from(Serialized::defaults(Config::default()));
        if let Some(file) = &sources.file {
            let text = read_text(file, ConfigError::Missing(file.clone()))?;
            let doc = toml_edit::ImDocument::parse(text.clone())
                .map_err(|e| syntax_error(file, &text, &e))?;
            origins.set_file(file, doc);
            fig = fig.merge(Toml::string(&text));
        }
        let mut vars: Vec<(String, String, Origin)> = Vec::new();
        if let Some(path) = &sources.dotenv {
            match read_text(path, ConfigError::EnvFileMissing(path.clone())) {
                Ok(text) => vars.extend(dotenv::parse(path, &text)?.into_iter().map(|a| {
                    let origin = Origin::DotEnv {
                        path: path.clone(),
                        line: a.line,
                        var: a.key.clone(),
                    };
                    (a.key, a.value, origin)
                })),
                Err(ConfigError::EnvFileMissing(_)) if !sources.dotenv_required => {}
                Err(e) => return Err(e),
            }
        }
        let env: Vec<(String, String)> = match &sources.env {
            Some(env) => env.clone(),
            None => std::env::vars().collect(),
        };
        if let Some((_, dir)) = env.iter().find(|(k, _)| k == CREDENTIALS_VAR) {
            vars.extend(credentials(std::path::Path::new(dir))?);
        }
        vars.extend(env.into_iter().map(|(k, v)| {
            let origin = Origin::Env { var: k.clone() };
            (k, v, origin)
        }));
        // Later entries win: the real environment overrides `.env`.
        let merged: BTreeMap<String, (String, Origin)> = vars
            .into_iter()
            .filter(|(k, _, _)| k.starts_with(ENV_PREFIX) && !is_cli_only_var(k))
            .map(|(k, v, o)| (k, (v, o)))
            .collect();
        // Figment's Env provider reads the process environment; an explicit
        // list lets tests and `.env` work without mutating global state.
        let mut fig_env = Figment::new();
        for (k, (v, origin)) in &merged {
            let key = match k.as_str() {
                // The one short name: QMOI_LOG=debug.
                "QMOI_LOG" => "log.filter".to_string(),
                _ => k[ENV_PREFIX.len()..].to_lowercase().replace("__", "."),
            };
            origins.set_var(&key, origin.clone());
            // Secrets stay exactly as written; other values may be numbers,
            // booleans or lists (`QMOI_NOTIFY__CHANNELS='["console","email"]'`).
            let value: figment::value::Value = if is_secret_key(&key) {
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
                    .map(|e| describe_figment_error(&e, &origins))
                    .collect(),
            )
        })?;
        Ok((config, origins))
    }

    /// Startup warnings: what is off and exactly which key turns it on.
    /// (The same findings `config check` prints, without their origins.)
    pub fn warnings(&self) -> Vec<String> {
        let Ok((commands, _)) = crate::command::Registry::load(&self.paths.commands) else {
            return Vec::new();
        };
        let origins = Origins::default();
        validate::validate(&validate::Input {
            config: self,
            origins: &origins,
            commands: &commands,
        })
        .into_iter()
        .map(|f| format!("{}: {}", f.key, f.message))
        .collect()
    }

    /// The effective configuration as TOML, secrets masked.
    pub fn to_masked_toml(&self) -> String {
        toml::to_string_pretty(self).unwrap_or_else(|e| format!("# cannot render config: {e}\n"))
    }
}

impl EmailConfig {
    /// Whether enough is configured to run the channel.
    pub fn usable(&self) -> bool {
        self.address.contains('@') && self.token_secret.as_ref().is_some_and(|s| !s.is_empty())
    }
}

/// Variables read by the command line itself, not part of the config tree.
fn is_cli_only_var(k: &str) -> bool {
    matches!(k, "QMOI_CONFIG")
}

/// Set by systemd (`LoadCredential=`) to the folder holding the credentials.
pub const CREDENTIALS_VAR: &str = "CREDENTIALS_DIRECTORY";

/// systemd credentials: a file named `*.env` is read as a `.env` file, a
/// file named `QMOI_*` is that variable's value (trailing newline dropped).
/// They sit between `.env` and the environment in precedence.
fn credentials(dir: &std::path::Path) -> Result<Vec<(String, String, Origin)>, ConfigError> {
    let unreadable = |e: std::io::Error| ConfigError::Unreadable {
        path: dir.to_path_buf(),
        reason: e.to_string(),
    };
    let mut names: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(unreadable)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    names.sort();
    let mut out = Vec::new();
    for path in names {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if name.ends_with(".env") {
            let text = read_text(&path, ConfigError::Missing(path.clone()))?;
            for a in dotenv::parse(&path, &text)? {
                let origin = Origin::DotEnv {
                    path: path.clone(),
                    line: a.line,
                    var: a.key.clone(),
                };
                out.push((a.key, a.value, origin));
            }
        } else if name.starts_with(ENV_PREFIX) {
            let text = read_text(&path, ConfigError::Missing(path.clone()))?;
            let value = text.strip_suffix('\n').unwrap_or(&text).to_string();
            out.push((
                name.clone(),
                value,
                Origin::DotEnv {
                    path: path.clone(),
                    line: 1,
                    var: name,
                },
            ));
        }
    }
    Ok(out)
}

/// Whether a dotted key holds a secret (its value is never shown).
pub fn is_secret_key(key: &str) -> bool {
    ["token", "secret", "password"]
        .iter()
        .any(|s| key.ends_with(s))
}

/// Reads a config or `.env` file, naming it in every error.
fn read_text(path: &std::path::Path, missing: ConfigError) -> Result<String, ConfigError> {
    match std::fs::read_to_string(path) {
        Ok(t) => Ok(t),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(missing),
        Err(e) => Err(ConfigError::Unreadable {
            path: path.to_path_buf(),
            reason: e.to_string(),
        }),
    }
}

/// A TOML syntax error as file:line:column and the parser's message —
/// never the offending line, which may hold a secret.
fn syntax_error(path: &std::path::Path, text: &str, e: &toml_edit::TomlError) -> ConfigError {
    let at = e.span().map_or(0, |s| s.start);
    let line = origin::line_of(text, at);
    let line_start = text[..at.min(text.len())].rfind('\n').map_or(0, |i| i + 1);
    let column = text[line_start..at.min(text.len())].chars().count() + 1;
    let message = e
        .message()
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("; ");
    ConfigError::Syntax {
        path: path.to_path_buf(),
        line,
        column,
        message,
    }
}

/// What kind of value serde saw, without the value itself.
fn kind_of(a: &figment::error::Actual) -> &'static str {
    use figment::error::Actual as A;
    match a {
        A::Bool(_) => "a boolean",
        A::Unsigned(_) | A::Signed(_) => "an integer",
        A::Float(_) => "a number",
        A::Char(_) | A::Str(_) => "a string",
        A::Bytes(_) => "bytes",
        A::Unit | A::Option => "nothing",
        A::Seq => "an array",
        A::Map => "a table",
        _ => "a value of another kind",
    }
}

/// One figment error as a finding: the full key, where its value came from,
/// and a message that shows a value only when the key is not a secret.
fn describe_figment_error(e: &figment::Error, origins: &Origins) -> Finding {
    use figment::error::{Actual, Kind};
    let path = e.path.join(".");
    let (key, message) = match &e.kind {
        Kind::UnknownField(field, expected) => {
            // figment's path already ends with the unknown field.
            let parent = match e.path.split_last() {
                Some((last, parent)) if last == field => parent.join("."),
                _ => path.clone(),
            };
            let key = if parent.is_empty() {
                field.clone()
            } else {
                format!("{parent}.{field}")
            };
            let place = if parent.is_empty() {
                "at the top level".to_string()
            } else {
                format!("in [{parent}]")
            };
            let hint = validate::suggestion(field, expected.iter().copied());
            let hint = if hint.is_empty() {
                format!(" (known: {})", expected.join(", "))
            } else {
                hint
            };
            (key, format!("unknown key '{field}' {place}{hint}"))
        }
        Kind::UnknownVariant(v, expected) => {
            (path.clone(), validate::unknown("value", v, expected))
        }
        Kind::InvalidType(actual, expected) => (
            path.clone(),
            format!("expected {expected}, found {}", kind_of(actual)),
        ),
        Kind::InvalidValue(Actual::Str(v), expected) if !is_secret_key(&path) => (
            path.clone(),
            format!("'{v}' is not valid: expected {expected}"),
        ),
        Kind::InvalidValue(actual, expected) => (
            path.clone(),
            format!("invalid {}: expected {expected}", kind_of(actual)),
        ),
        Kind::MissingField(f) => (
            if path.is_empty() {
                f.to_string()
            } else {
                format!("{path}.{f}")
            },
            "is required".to_string(),
        ),
        Kind::Message(_) if is_secret_key(&path) => {
            (path.clone(), "is not a valid secret value".to_string())
        }
        other => (path.clone(), other.to_string()),
    };
    let key = if key.is_empty() {
        "(config)".to_string()
    } else {
        key
    };
    let origin = origins.of(&key);
    Finding {
        level: Level::Error,
        key,
        message,
        origin,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(env: &[(&str, &str)], file: Option<&str>) -> Result<Config, ConfigError> {
        let dir = tempfile::tempdir().map_err(|e| ConfigError::Other(e.to_string()))?;
        let file = file.map(|text| {
            let p = dir.path().join("qmoi.toml");
            std::fs::write(&p, text).ok();
            p
        });
        Config::load(&Sources {
            file,
            env: Some(
                env.iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            ),
            ..Sources::default()
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
