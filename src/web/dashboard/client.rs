//! `qmoi dashboard login-url`: asks the running bot for a sign-in link.
//!
//! Links live in the running process (a restart signs everyone out), so
//! the command talks to it over HTTP with the API token, like the other
//! admin reads, rather than opening the memory.

use crate::config::Config;
use serde::Deserialize;

/// What the bot answers.
#[derive(Debug, Deserialize)]
pub struct LoginLink {
    /// The link to open.
    pub url: String,
    /// Who it signs in.
    pub person: String,
    /// How long it stays valid.
    pub valid_minutes: u64,
}

/// The API's error body.
#[derive(Debug, Default, Deserialize)]
struct ApiError {
    message: Option<String>,
}

/// Why no link was had.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    /// No API token to authenticate with.
    #[error(
        "set memory.admin_token (QMOI_MEMORY__ADMIN_TOKEN), or api.token, to the running bot's"
    )]
    NoToken,
    /// The bot could not be reached.
    #[error("qmoi is not answering at {url}: {reason} (is `qmoi serve` running? use --url)")]
    Unreachable {
        /// Where we asked.
        url: String,
        /// Why.
        reason: String,
    },
    /// The bot refused.
    #[error("qmoi refused: {0}")]
    Refused(String),
}

/// Requests a link for `person` (default: the first master) from the bot at
/// `base` (default: `server.listen`).
pub async fn login_url(
    config: &Config,
    base: Option<&str>,
    person: Option<&str>,
) -> Result<LoginLink, LinkError> {
    let token = super::signin::admin_token(config).ok_or(LinkError::NoToken)?;
    let base = base
        .map(str::to_string)
        .unwrap_or_else(|| format!("http://{}", config.server.listen));
    let url = format!(
        "{}/api/v1/admin/dashboard/login-url",
        base.trim_end_matches('/')
    );
    let unreachable = |e: reqwest::Error| LinkError::Unreachable {
        url: base.clone(),
        reason: e.without_url().to_string(),
    };
    let res = reqwest::Client::new()
        .post(&url)
        .bearer_auth(token.expose())
        .json(&serde_json::json!({ "person": person }))
        .send()
        .await
        .map_err(unreachable)?;
    if !res.status().is_success() {
        let body: ApiError = res.json().await.unwrap_or_default();
        return Err(LinkError::Refused(
            body.message.unwrap_or_else(|| "no reason given".into()),
        ));
    }
    res.json::<LoginLink>().await.map_err(unreachable)
}
