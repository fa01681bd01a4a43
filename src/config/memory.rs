//! `[memory]`: how long qmoi remembers, how much RAM the memory may use,
//! and how it is backed up and checked.

use super::validate::{Findings, Input};
use super::Secret;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// The memory's retention, cache, backups and audit checkpoints.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MemoryConfig {
    /// Events, deliveries, command records and notifications older than
    /// this are pruned (audit records are archived first); 0 keeps all.
    /// Decisions and the error→fix history are always kept.
    pub retention_days: u32,
    /// Records removed per retention batch (each batch is one short pause
    /// for nobody: it runs on a blocking thread).
    pub retention_batch: usize,
    /// How often retention runs a round of batches, e.g. `10m`.
    pub retention_every: String,
    /// The storage backend's page cache in MiB (the backend's own default is 1 GiB).
    pub cache_mb: u64,
    /// How often a verified backup is written to `paths.backups`
    /// (`1d`, `12h`, `30m`; `off` for never).
    pub backup_every: String,
    /// How many scheduled backups are kept (older ones are deleted).
    pub backups_keep: usize,
    /// How often the audit checkpoint (record count and head hash) is
    /// written outside the live store, e.g. `10s`.
    pub checkpoint_every: String,
    /// Signs audit checkpoints (HMAC-SHA256) when set.
    pub checkpoint_key: Option<Secret>,
    /// Bearer token for the admin reads on a running bot
    /// (`/admin/v1/...`: audit verify, memory export, status).
    pub admin_token: Option<Secret>,
}

impl Default for MemoryConfig {
    fn default() -> Self {
        MemoryConfig {
            retention_days: 90,
            retention_batch: 1000,
            retention_every: "10m".into(),
            cache_mb: 16,
            backup_every: "1d".into(),
            backups_keep: 7,
            checkpoint_every: "10s".into(),
            checkpoint_key: None,
            admin_token: None,
        }
    }
}

/// The longest period accepted (100 years): longer ones are typos, and
/// timers adding them to "now" must not overflow.
const MAX_EVERY_SECS: u64 = 100 * 365 * 86_400;

/// Parses `30s`, `10m`, `12h`, `1d`; `off` (or `0`) is `None`.
pub fn parse_every(text: &str) -> Result<Option<Duration>, String> {
    let t = text.trim();
    if t.eq_ignore_ascii_case("off") || t == "0" {
        return Ok(None);
    }
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("'{text}' is not a duration like 30s, 10m, 12h, 1d or off"))?;
    let per_unit: u64 = match unit.trim() {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => {
            return Err(format!(
                "'{text}' is not a duration like 30s, 10m, 12h, 1d or off"
            ))
        }
    };
    // Checked: a huge number must be an error, not a wrapped (debug: a
    // panicking) product.
    let secs = n
        .checked_mul(per_unit)
        .filter(|s| *s <= MAX_EVERY_SECS)
        .ok_or_else(|| format!("'{text}' is too long (at most 100 years)"))?;
    Ok((secs > 0).then(|| Duration::from_secs(secs)))
}

impl MemoryConfig {
    /// The backup period (`None`: off).
    pub fn backup_period(&self) -> Option<Duration> {
        parse_every(&self.backup_every).ok().flatten()
    }

    /// The retention period (`None`: off).
    pub fn retention_period(&self) -> Option<Duration> {
        if self.retention_days == 0 {
            return None;
        }
        parse_every(&self.retention_every).ok().flatten()
    }

    /// The audit checkpoint period (`None`: off).
    pub fn checkpoint_period(&self) -> Option<Duration> {
        parse_every(&self.checkpoint_every).ok().flatten()
    }
}

/// The `[memory]` check for [`super::validate::CHECKS`].
pub fn memory_section(input: &Input, f: &mut Findings) {
    let m = &input.config.memory;
    for (key, value) in [
        ("memory.backup_every", &m.backup_every),
        ("memory.retention_every", &m.retention_every),
        ("memory.checkpoint_every", &m.checkpoint_every),
    ] {
        if let Err(e) = parse_every(value) {
            f.error(key, e);
        }
    }
    if m.cache_mb == 0 {
        f.error("memory.cache_mb", "must be at least 1 (MiB)");
    }
    if m.retention_batch == 0 {
        f.error("memory.retention_batch", "must be at least 1");
    }
    if m.backups_keep == 0 && m.backup_period().is_some() {
        f.error(
            "memory.backups_keep",
            "must be at least 1 while memory.backup_every is on",
        );
    }
    if m.retention_days == 0 {
        f.warn(
            "memory.retention_days",
            "retention is off: the memory grows without bound",
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_every("30s"), Ok(Some(Duration::from_secs(30))));
        assert_eq!(parse_every("10m"), Ok(Some(Duration::from_secs(600))));
        assert_eq!(parse_every("1d"), Ok(Some(Duration::from_secs(86_400))));
        assert_eq!(parse_every("off"), Ok(None));
        assert!(parse_every("soon").is_err());
        assert!(parse_every("5w").is_err());
        assert!(parse_every("12").is_err());
    }

    #[test]
    fn huge_durations_are_a_clear_error_not_an_overflow() {
        for text in [
            "307445734561825861m",
            "18446744073709551615d",
            "5124095576030432h",
        ] {
            let e = parse_every(text).err();
            assert!(
                e.as_deref().is_some_and(|e| e.contains("too long")),
                "{text}: {e:?}"
            );
        }
        assert!(parse_every("99999999999999999999s").is_err(), "beyond u64");
        assert_eq!(
            parse_every("36500d"),
            Ok(Some(Duration::from_secs(36_500 * 86_400)))
        );
    }
}
