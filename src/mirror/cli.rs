//! `qmoi mirror status` and `qmoi forge setup`.
//!
//! Both need the mirror sets' live state (which remote is the active
//! primary; for status also health, lag and the last sync). A running bot
//! holds the memory's lock, so they ask it over `GET /api/v1/mirror` with the
//! admin token (like `qmoi dashboard login-url`): at `--url`, or at the
//! address in the data directory's pid file. With the bot stopped they read
//! the data directory itself (health is then unknown: nobody is probing).

use super::service::{Mirror, RepoStatus};
use crate::config::Config;
use crate::store::open::OpenError;
use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use std::collections::BTreeMap;

/// Where the running bot answers.
#[derive(Args, Clone, Default, Debug)]
pub struct BotUrl {
    /// The running bot's base URL (default: the address in the data
    /// directory's pid file; without a running bot the data directory is read).
    #[arg(long)]
    pub url: Option<String>,
    /// Token for --url (default: memory.admin_token, else api.token).
    #[arg(long, env = "QMOI_ADMIN_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
}

/// `qmoi mirror …`.
#[derive(Subcommand, Debug)]
pub enum MirrorCmd {
    /// Each repository's active primary, mirrors, lag, last sync and health.
    Status {
        #[command(flatten)]
        bot: BotUrl,
        /// Print the JSON the API serves instead of text.
        #[arg(long)]
        json: bool,
    },
}

/// `qmoi forge …`.
#[derive(Subcommand, Debug)]
pub enum ForgeCmd {
    /// Create or update qmoi's webhooks on every mirror set's GitLab projects
    /// and GitHub repositories, create missing mirror repositories, and
    /// report permissions the tokens lack. Idempotent; re-run after a failover.
    Setup {
        /// Read everything and print the changes, but change nothing.
        #[arg(long)]
        dry_run: bool,
        /// Set the webhook secret from config on every qmoi hook (the forges
        /// never show a secret, so a changed one cannot be compared).
        #[arg(long)]
        rotate_secret: bool,
        #[command(flatten)]
        bot: BotUrl,
    },
}

/// Where the state came from.
pub enum Source {
    /// The running bot's API.
    Bot(String),
    /// The data directory (bot stopped).
    DataDir,
}

/// The mirror sets' status: from the running bot, or the data directory.
pub async fn statuses(config: &Config, bot: &BotUrl) -> Result<(Vec<RepoStatus>, Source)> {
    if let Some(url) = &bot.url {
        return Ok((ask(config, bot, url).await?, Source::Bot(url.clone())));
    }
    match crate::store::open::open(
        &config.data_dir,
        config.memory.cache_mb,
        &config.paths.backups,
    ) {
        Ok(store) => {
            let m = Mirror::new(
                config.mirror.clone(),
                &config.data_dir,
                store,
                crate::clock::SystemClock::shared(),
            );
            Ok((m.status().await, Source::DataDir))
        }
        Err(OpenError::Locked { url: Some(url), .. }) => {
            Ok((ask(config, bot, &url).await?, Source::Bot(url)))
        }
        Err(e) => Err(e.into()),
    }
}

/// `GET {url}/api/v1/mirror` with the admin token.
async fn ask(config: &Config, bot: &BotUrl, url: &str) -> Result<Vec<RepoStatus>> {
    let token = bot
        .token
        .clone()
        .or_else(|| {
            [&config.memory.admin_token, &config.api.token]
                .into_iter()
                .flatten()
                .find(|t| !t.is_empty())
                .map(|t| t.expose().to_string())
        })
        .filter(|t| !t.is_empty())
        .context("asking the running bot needs its token: pass --token or set QMOI_MEMORY__ADMIN_TOKEN (or QMOI_API__TOKEN)")?;
    let full = format!("{}/api/v1/mirror", url.trim_end_matches('/'));
    let res = reqwest::Client::new()
        .get(&full)
        .bearer_auth(token)
        .timeout(std::time::Duration::from_secs(30))
        .send()
        .await
        .map_err(|e| anyhow::anyhow!("qmoi is not answering at {url}: {}", e.without_url()))?;
    let status = res.status();
    let body: serde_json::Value = res.json().await.unwrap_or_default();
    if !status.is_success() {
        bail!(
            "{url} answered {status}: {}",
            body["error"]
                .as_str()
                .or(body["message"].as_str())
                .unwrap_or("no reason given")
        );
    }
    serde_json::from_value(body["repos"].clone())
        .with_context(|| format!("{full} did not answer the mirror status"))
}

/// The active primary of every repository, by name.
pub fn active_of(st: &[RepoStatus]) -> BTreeMap<String, String> {
    st.iter()
        .map(|r| (r.repo.clone(), r.active.clone()))
        .collect()
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}

/// Runs `qmoi mirror …`.
pub fn mirror(config: &Config, cmd: &MirrorCmd) -> Result<()> {
    let MirrorCmd::Status { bot, json } = cmd;
    let (st, source) = runtime()?.block_on(statuses(config, bot))?;
    if *json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({ "repos": st }))?
        );
        return Ok(());
    }
    if let Source::DataDir = source {
        println!("qmoi is not running: active primary, lag and sync history are read from the data directory; health is not known");
    }
    println!("{}", super::service::render_status(&st));
    Ok(())
}

/// Runs `qmoi forge …`.
pub fn forge(config: &Config, cmd: &ForgeCmd) -> Result<()> {
    let ForgeCmd::Setup {
        dry_run,
        rotate_secret,
        bot,
    } = cmd;
    let options = crate::forge::setup::Options {
        dry_run: *dry_run,
        rotate_secret: *rotate_secret,
    };
    let rt = runtime()?;
    let report = rt.block_on(async {
        let active = match statuses(config, bot).await {
            Ok((st, _)) => active_of(&st),
            Err(e) => {
                eprintln!("qmoi: could not read which remotes are active ({e:#}); assuming the configured primaries");
                BTreeMap::new()
            }
        };
        crate::forge::setup::run_with(config, &active, options).await
    })?;
    println!("{report}");
    if report.problems() > 0 {
        bail!(
            "{} problem(s): see the LACKING, FAILED and REFUSED lines",
            report.problems()
        );
    }
    Ok(())
}
