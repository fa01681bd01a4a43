//! `qmoi audit verify`, `qmoi memory export|import|backup|restore` and
//! `qmoi status`: on the data directory when the bot is stopped, or over
//! the running bot's admin API with `--url` (token: `--token` or
//! `memory.admin_token` / `QMOI_MEMORY__ADMIN_TOKEN`).

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use qmoi::config::Config;
use qmoi::store::{self, backup, checkpoint, Store};
use qmoi::web::admin;
use std::path::{Path, PathBuf};

/// Where an admin read goes: a running bot, or the directory.
#[derive(Args, Clone, Default)]
pub struct Remote {
    /// A running bot's base URL (e.g. http://127.0.0.1:8080); without it
    /// the data directory is read (the bot must be stopped).
    #[arg(long)]
    pub url: Option<String>,
    /// Admin token for --url (default: memory.admin_token).
    #[arg(long, env = "QMOI_ADMIN_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
}

/// `qmoi audit …`.
#[derive(Subcommand)]
pub enum AuditCmd {
    /// Check the archive, the hash chain and the newest checkpoint; exit 1
    /// naming every edited, deleted, reordered or truncated record.
    Verify {
        #[command(flatten)]
        remote: Remote,
    },
}

/// `qmoi memory …`.
#[derive(Subcommand)]
pub enum MemoryCmd {
    /// Write every record as JSON lines (default: a new verified file under the backups folder).
    Export {
        /// Output file, or `-` for standard output.
        #[arg(long)]
        out: Option<PathBuf>,
        #[command(flatten)]
        remote: Remote,
    },
    /// Load JSON lines into an empty memory (backs nothing up: the target must be empty).
    Import {
        /// The export to read.
        file: PathBuf,
    },
    /// Write a verified backup to the backups folder now.
    Backup,
    /// Replace the memory with a backup (the current directory is moved aside, not deleted).
    Restore {
        /// The backup file (`qmoi-….jsonl`).
        backup: PathBuf,
    },
}

/// `qmoi status`.
#[derive(Args)]
pub struct StatusArgs {
    #[command(flatten)]
    remote: Remote,
}

fn open(config: &Config) -> Result<Store> {
    Ok(store::open::open(
        &config.data_dir,
        config.memory.cache_mb,
        &config.paths.backups,
    )?)
}

/// Runs `qmoi audit …`.
pub fn audit(config: Config, cmd: &AuditCmd) -> Result<()> {
    let AuditCmd::Verify { remote } = cmd;
    let report = match &remote.url {
        Some(url) => get_json(&config, remote, url, "/admin/v1/audit/verify")?,
        None => {
            let s = open(&config)?;
            let r = checkpoint::verify_all(
                &s,
                &config.paths.backups,
                config.memory.checkpoint_key.as_ref(),
            )?;
            admin::report_json(&r)
        }
    };
    let problems: Vec<String> = report["problems"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|p| p.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    if !problems.is_empty() {
        bail!("audit log TAMPERED: {}", problems.join("; "));
    }
    let head = report["head"]["seq"].as_u64().unwrap_or(0);
    println!(
        "audit log intact: {head} records ({} archived, {} live; {})",
        report["archived"].as_u64().unwrap_or(0),
        report["live"].as_u64().unwrap_or(0),
        match report["checkpoint"].as_u64() {
            Some(c) => format!("newest checkpoint vouches for {c}"),
            None => "no checkpoint yet".into(),
        }
    );
    Ok(())
}

/// Runs `qmoi memory …`.
pub fn memory(config: Config, cmd: &MemoryCmd) -> Result<()> {
    match cmd {
        MemoryCmd::Export { out, remote } => export(&config, out.as_deref(), remote),
        MemoryCmd::Import { file } => {
            let s = open(&config)?;
            let f =
                std::fs::File::open(file).with_context(|| format!("opening {}", file.display()))?;
            let n = store::import_jsonl(&s, &mut std::io::BufReader::new(f))?;
            println!("imported {n} records");
            Ok(())
        }
        MemoryCmd::Backup => {
            let s = open(&config)?;
            let path = config
                .paths
                .backups
                .join(backup::backup_name(chrono::Utc::now(), false));
            let v = backup::write_verified(&s, &path)?;
            println!(
                "backup written and verified: {} ({} records)",
                path.display(),
                v.records
            );
            Ok(())
        }
        MemoryCmd::Restore { backup: file } => {
            let r = backup::restore(file, &config.data_dir, chrono::Utc::now())
                .map_err(|e| restore_error(&config, e))?;
            println!(
                "restored {} records from {} into {}{}",
                r.records,
                file.display(),
                config.data_dir.display(),
                r.set_aside
                    .map(|p| format!("; the previous directory was kept as {}", p.display()))
                    .unwrap_or_default()
            );
            Ok(())
        }
    }
}

/// A restore that cannot take the lock names the running bot.
fn restore_error(config: &Config, e: store::ExportError) -> anyhow::Error {
    match store::open::open(&config.data_dir, 1, &config.paths.backups) {
        Err(lock @ store::open::OpenError::Locked { .. }) => lock.into(),
        _ => e.into(),
    }
}

fn export(config: &Config, out: Option<&Path>, remote: &Remote) -> Result<()> {
    if let Some(url) = &remote.url {
        let body = get(config, remote, url, "/admin/v1/memory/export")?;
        match out {
            Some(p) if p.as_os_str() != "-" => {
                std::fs::write(p, &body).with_context(|| format!("writing {}", p.display()))?;
                eprintln!(
                    "exported {} records to {}",
                    body.iter().filter(|b| **b == b'\n').count(),
                    p.display()
                );
            }
            _ => {
                use std::io::Write;
                std::io::stdout().write_all(&body)?;
            }
        }
        return Ok(());
    }
    let s = open(config)?;
    match out {
        Some(p) if p.as_os_str() == "-" => {
            let stdout = std::io::stdout();
            store::export_jsonl(&s, &mut stdout.lock())?;
        }
        other => {
            let path = match other {
                Some(p) => p.to_path_buf(),
                None => config
                    .paths
                    .backups
                    .join(backup::backup_name(chrono::Utc::now(), false)),
            };
            let v = backup::write_verified(&s, &path)?;
            eprintln!("exported {} records to {}", v.records, path.display());
        }
    }
    Ok(())
}

/// Runs `qmoi status`.
pub fn status(config: Config, args: &StatusArgs) -> Result<()> {
    let report: admin::StatusReport = match &args.remote.url {
        Some(url) => {
            let body = get(&config, &args.remote, url, "/admin/v1/status")?;
            serde_json::from_slice(&body)
                .with_context(|| format!("{url}/admin/v1/status did not answer a status"))?
        }
        None => admin::status_json(&open(&config)?, &config.paths.backups)?,
    };
    print!("{}", status_text(&report));
    Ok(())
}

/// The status as the terminal shows it, in the words the chat `status`
/// uses ("Open questions: N — showing the 10 newest"). Project names and
/// subjects come from the forge: escaped for the console, so no escape
/// sequence in them reaches the terminal.
fn status_text(r: &admin::StatusReport) -> String {
    use qmoi::render::{escape, Medium};
    use std::fmt::Write;
    let mut out = String::new();
    let total = r.open_total.unwrap_or(r.open_questions.len());
    if total == 0 {
        out.push_str("No open questions.\n");
    } else {
        if total > admin::STATUS_COUNT_UPTO {
            let _ = write!(
                out,
                "Open questions: more than {}",
                admin::STATUS_COUNT_UPTO
            );
        } else {
            let _ = write!(out, "Open questions: {total}");
        }
        if r.open_questions.len() < total {
            let _ = write!(out, " — showing the {} newest", r.open_questions.len());
        }
        out.push('\n');
        for q in &r.open_questions {
            let _ = writeln!(
                out,
                "  #{} {} {} {}",
                q.id,
                escape(Medium::Console, &q.kind),
                escape(Medium::Console, &q.project),
                escape(Medium::Console, &q.subject)
            );
        }
    }
    let _ = writeln!(
        out,
        "Audit log: {} records. Memory on disk: {:.1} MB. Newest good backup: {}.",
        r.audit_head.unwrap_or(0),
        r.size_on_disk as f64 / 1e6,
        escape(
            Medium::Console,
            r.newest_good_backup.as_deref().unwrap_or("none")
        )
    );
    out
}

fn get_json(config: &Config, remote: &Remote, url: &str, path: &str) -> Result<serde_json::Value> {
    let body = get(config, remote, url, path)?;
    serde_json::from_slice(&body).with_context(|| format!("{url}{path} did not answer JSON"))
}

/// One authenticated GET to the running bot's admin API.
fn get(config: &Config, remote: &Remote, url: &str, path: &str) -> Result<Vec<u8>> {
    let token = remote
        .token
        .clone()
        .or_else(|| {
            config
                .memory
                .admin_token
                .as_ref()
                .map(|t| t.expose().to_string())
        })
        .filter(|t| !t.is_empty())
        .context("--url needs the admin token: pass --token or set QMOI_MEMORY__ADMIN_TOKEN")?;
    let full = format!("{}{path}", url.trim_end_matches('/'));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let r = reqwest::Client::new()
            .get(&full)
            .bearer_auth(token)
            .send()
            .await
            .with_context(|| format!("reaching {url}"))?;
        let status = r.status();
        let body = r.bytes().await?.to_vec();
        if !status.is_success() {
            let msg = serde_json::from_slice::<serde_json::Value>(&body)
                .ok()
                .and_then(|v| v["error"].as_str().map(str::to_string))
                .unwrap_or_else(|| String::from_utf8_lossy(&body).into_owned());
            bail!("{url} answered {status}: {msg}");
        }
        Ok(body)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn question(id: u64, project: &str, subject: &str) -> admin::OpenQuestion {
        admin::OpenQuestion {
            id,
            kind: "job_failed".into(),
            project: project.into(),
            subject: subject.into(),
            last_at: chrono::DateTime::from_timestamp(1_700_000_000, 0).unwrap_or_default(),
        }
    }

    #[test]
    fn status_uses_the_products_wording_and_escapes_outside_content() {
        let report = admin::StatusReport {
            open_questions: vec![question(
                12,
                "evil\u{1b}]0;pwned\u{7}/proj",
                "job \u{1b}[2Jlint \u{202E}failed",
            )],
            open_total: Some(12),
            audit_head: Some(40),
            size_on_disk: 2_000_000,
            newest_good_backup: None,
        };
        let text = status_text(&report);
        assert!(
            text.starts_with("Open questions: 12 — showing the 1 newest\n"),
            "{text}"
        );
        assert!(
            !text.contains('\u{1b}') && !text.contains('\u{7}'),
            "{text:?}"
        );
        assert!(
            text.contains("  #12 job_failed evil]0;pwned/proj job [2Jlint [U+202E]failed\n"),
            "{text:?}"
        );
        assert!(
            text.ends_with(
                "Audit log: 40 records. Memory on disk: 2.0 MB. Newest good backup: none.\n"
            ),
            "{text}"
        );
    }

    #[test]
    fn the_admin_status_round_trips_and_an_older_bot_without_a_total_is_read() {
        let report = admin::StatusReport {
            open_questions: vec![question(1, "g/p", "main")],
            open_total: Some(1),
            audit_head: None,
            size_on_disk: 0,
            newest_good_backup: Some("/b/x.qmoi".into()),
        };
        let json = serde_json::to_vec(&report).expect("json");
        let back: admin::StatusReport = serde_json::from_slice(&json).expect("back");
        assert_eq!(back, report);
        let mut old = serde_json::to_value(&report).expect("value");
        old.as_object_mut().map(|o| o.remove("open_total"));
        let back: admin::StatusReport = serde_json::from_value(old).expect("older bot");
        assert_eq!(status_text(&back).lines().next(), Some("Open questions: 1"));
        let mut many = report.clone();
        many.open_total = Some(admin::STATUS_COUNT_UPTO + 1);
        assert_eq!(
            status_text(&many).lines().next(),
            Some("Open questions: more than 100 — showing the 1 newest")
        );
    }
}
