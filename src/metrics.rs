//! Metrics for `GET /metrics`, in the Prometheus text format 0.0.4 served
//! with its own content type ([`CONTENT_TYPE`]).
//!
//! One registry per process (not a global) so tests can run many bots in one
//! process. Two kinds of metrics:
//! - counters bumped where things happen ([`Metrics::inc`]; the named
//!   helpers below are thin wrappers), labelled by outcome so an operator
//!   can alert on "denied" or "failed" without parsing logs;
//! - gauges read at scrape time by a [`Collector`] (outbox depth, open
//!   questions, connection state, process figures).
//!
//! Adding a metric: call `metrics.inc("qmoi_x_total", "Help", &[("k", v)])`
//! where it happens, or register a [`Collector`] in `app.rs`.

use crate::health::{ConnState, Health};
use crate::store::Store;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

/// The content type of [`Metrics::render`]'s output.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

type Labels = Vec<(String, String)>;

/// Gauge name → (help, labels → value).
type Gauges = BTreeMap<String, (String, BTreeMap<Labels, f64>)>;

/// Counter name → (help, labels → value).
type Counters = BTreeMap<String, (String, BTreeMap<Labels, u64>)>;

/// The kind of a metric family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Only goes up; name ends in `_total`.
    Counter,
    /// Goes up and down.
    Gauge,
    /// Buckets, sum and count.
    Histogram,
}

struct Family {
    kind: Kind,
    help: String,
    samples: Vec<(String, Labels, f64)>,
}

/// Samples being gathered for one scrape; grouped by family when rendered,
/// so collectors may add samples in any order.
#[derive(Default)]
pub struct Exposition {
    families: BTreeMap<String, Family>,
}

impl Exposition {
    /// Adds one sample of family `name`.
    pub fn sample(
        &mut self,
        name: &str,
        kind: Kind,
        help: &str,
        labels: &[(&str, &str)],
        value: f64,
    ) {
        self.raw(name, name, kind, help, own(labels), value);
    }

    fn raw(
        &mut self,
        family: &str,
        sample: &str,
        kind: Kind,
        help: &str,
        labels: Labels,
        value: f64,
    ) {
        self.families
            .entry(family.to_string())
            .or_insert_with(|| Family {
                kind,
                help: help.to_string(),
                samples: Vec::new(),
            })
            .samples
            .push((sample.to_string(), labels, value));
    }

    /// A gauge sample.
    pub fn gauge(&mut self, name: &str, help: &str, labels: &[(&str, &str)], value: f64) {
        self.sample(name, Kind::Gauge, help, labels, value);
    }

    /// The text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for (name, f) in &self.families {
            let kind = match f.kind {
                Kind::Counter => "counter",
                Kind::Gauge => "gauge",
                Kind::Histogram => "histogram",
            };
            let _ = writeln!(out, "# HELP {name} {}", escape_help(&f.help));
            let _ = writeln!(out, "# TYPE {name} {kind}");
            for (sample, labels, value) in &f.samples {
                out.push_str(sample);
                if !labels.is_empty() {
                    out.push('{');
                    let parts: Vec<String> = labels
                        .iter()
                        .map(|(k, v)| format!("{k}=\"{}\"", escape_label(v)))
                        .collect();
                    out.push_str(&parts.join(","));
                    out.push('}');
                }
                let _ = writeln!(out, " {}", number(*value));
            }
        }
        out
    }
}

fn own(labels: &[(&str, &str)]) -> Labels {
    labels
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn number(v: f64) -> String {
    if v.is_infinite() {
        if v > 0.0 { "+Inf" } else { "-Inf" }.to_string()
    } else if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v}")
    }
}

fn escape_help(s: &str) -> String {
    s.replace('\\', "\\\\").replace('\n', "\\n")
}

fn escape_label(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Something that adds gauges at scrape time.
pub trait Collector: Send + Sync {
    /// Adds this collector's samples.
    fn collect(&self, out: &mut Exposition);
}

struct Histogram {
    bounds: Vec<f64>,
    counts: Vec<u64>,
    sum: f64,
    count: u64,
}

/// Refreshes gauges that are read from the memory (outbox depth and age)
/// just before they are rendered (the delivery side installs one).
pub type Probe = Box<dyn Fn(&Metrics) + Send + Sync>;

/// The process's metrics.
pub struct Metrics {
    counters: Mutex<Counters>,
    gauges: Mutex<Gauges>,
    probe: Mutex<Option<Probe>>,
    ack: Mutex<Histogram>,
    collectors: RwLock<Vec<Arc<dyn Collector>>>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    /// Empty counters, build and process collectors registered.
    pub fn new() -> Self {
        let bounds = vec![
            0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1.0,
        ];
        let m = Metrics {
            counters: Mutex::new(BTreeMap::new()),
            gauges: Mutex::new(BTreeMap::new()),
            probe: Mutex::new(None),
            ack: Mutex::new(Histogram {
                counts: vec![0; bounds.len()],
                bounds,
                sum: 0.0,
                count: 0,
            }),
            collectors: RwLock::new(Vec::new()),
        };
        START.get_or_init(now_secs);
        m.register(Arc::new(BuildInfo));
        m.register(Arc::new(Process));
        m
    }

    /// Adds a scrape-time collector.
    pub fn register(&self, c: Arc<dyn Collector>) {
        self.collectors
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .push(c);
    }

    /// Adds one to counter `name` (must end in `_total`) with `labels`.
    pub fn inc(&self, name: &str, help: &str, labels: &[(&str, &str)]) {
        let mut c = self.counters.lock().unwrap_or_else(|p| p.into_inner());
        let family = c
            .entry(name.to_string())
            .or_insert_with(|| (help.to_string(), BTreeMap::new()));
        *family.1.entry(own(labels)).or_insert(0) += 1;
    }

    /// The current value of a counter (for tests and the status command).
    pub fn counter(&self, name: &str, labels: &[(&str, &str)]) -> u64 {
        let c = self.counters.lock().unwrap_or_else(|p| p.into_inner());
        c.get(name)
            .and_then(|(_, v)| v.get(&own(labels)).copied())
            .unwrap_or(0)
    }

    /// Counts an event.
    pub fn event(&self, platform: &str, result: &str) {
        self.inc(
            "qmoi_events_total",
            "Events received, by platform and result",
            &[("platform", platform), ("result", result)],
        );
    }

    /// Counts a command.
    pub fn command(&self, result: &str) {
        self.inc(
            "qmoi_commands_total",
            "Commands handled, by result",
            &[("result", result)],
        );
    }

    /// Counts a notification change.
    pub fn notification(&self, what: &str) {
        self.inc(
            "qmoi_notifications_total",
            "Notifications created, updated or silenced",
            &[("change", what)],
        );
    }

    /// Counts a refused request.
    pub fn rejected(&self, endpoint: &str, reason: &str) {
        self.inc(
            "qmoi_webhooks_rejected_total",
            "Webhook, API or channel requests refused, by endpoint and reason",
            &[("endpoint", endpoint), ("reason", reason)],
        );
    }

    /// Counts a delivery attempt's result (`sent`, `retry`, `failed`) per channel.
    pub fn delivery(&self, channel: &str, result: &str) {
        self.inc(
            "qmoi_deliveries_total",
            "Delivery attempts, by channel and result",
            &[("channel", channel), ("result", result)],
        );
    }

    /// Counts a fallback copy.
    pub fn fallback(&self, from: &str, to: &str) {
        self.inc(
            "qmoi_fallbacks_total",
            "Messages copied to a fallback channel, by primary and fallback",
            &[("from", from), ("to", to)],
        );
    }

    /// Counts a reminder, escalation or expiry (`what`).
    pub fn chase(&self, what: &str) {
        self.inc(
            "qmoi_question_chases_total",
            "Reminders, escalations and expiries of open questions",
            &[("kind", what)],
        );
    }

    /// Sets a gauge `name` with `labels` to `value`.
    pub fn set_gauge(&self, name: &str, help: &str, labels: &[(&str, &str)], value: f64) {
        let mut g = self.gauges.lock().unwrap_or_else(|p| p.into_inner());
        g.entry(name.to_string())
            .or_insert_with(|| (help.to_string(), BTreeMap::new()))
            .1
            .insert(own(labels), value);
    }

    /// Sets whether `channel` is broken.
    pub fn channel_broken(&self, channel: &str, broken: bool) {
        self.set_gauge(
            "qmoi_channel_broken",
            "1 while a channel is held as broken by the delivery side",
            &[("channel", channel)],
            f64::from(u8::from(broken)),
        );
    }

    /// Sets a channel's outbox depth and oldest undelivered age.
    pub fn outbox(&self, channel: &str, depth: u64, oldest_secs: u64) {
        self.set_gauge(
            "qmoi_outbox_depth",
            "Undelivered messages in the outbox, by channel",
            &[("channel", channel)],
            depth as f64,
        );
        self.set_gauge(
            "qmoi_outbox_oldest_undelivered_seconds",
            "Age of the oldest undelivered message, by channel (0 when empty)",
            &[("channel", channel)],
            oldest_secs as f64,
        );
    }

    /// Installs the probe run before every render.
    pub fn set_probe(&self, probe: Probe) {
        *self.probe.lock().unwrap_or_else(|p| p.into_inner()) = Some(probe);
    }

    /// Records an acknowledgement latency.
    pub fn observe_ack(&self, d: Duration) {
        let v = d.as_secs_f64();
        let mut h = self.ack.lock().unwrap_or_else(|p| p.into_inner());
        for (i, b) in h.bounds.clone().iter().enumerate() {
            if v <= *b {
                h.counts[i] += 1;
            }
        }
        h.sum += v;
        h.count += 1;
    }

    /// Prometheus text exposition (format 0.0.4; serve with [`CONTENT_TYPE`]).
    pub fn render(&self) -> String {
        if let Some(p) = self
            .probe
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
        {
            p(self);
        }
        let mut e = Exposition::default();
        {
            let g = self.gauges.lock().unwrap_or_else(|p| p.into_inner());
            for (name, (help, values)) in g.iter() {
                for (labels, v) in values {
                    e.raw(name, name, Kind::Gauge, help, labels.clone(), *v);
                }
            }
        }
        {
            let c = self.counters.lock().unwrap_or_else(|p| p.into_inner());
            for (name, (help, values)) in c.iter() {
                for (labels, v) in values {
                    e.raw(name, name, Kind::Counter, help, labels.clone(), *v as f64);
                }
            }
        }
        self.render_ack(&mut e);
        let collectors = self.collectors.read().unwrap_or_else(|p| p.into_inner());
        for c in collectors.iter() {
            c.collect(&mut e);
        }
        e.render()
    }

    fn render_ack(&self, e: &mut Exposition) {
        const NAME: &str = "qmoi_command_ack_seconds";
        const HELP: &str = "Time from receiving a command to its durable acknowledgement";
        let h = self.ack.lock().unwrap_or_else(|p| p.into_inner());
        for (b, n) in h.bounds.iter().zip(&h.counts) {
            let le = number(*b);
            let labels = vec![("le".to_string(), le)];
            e.raw(
                NAME,
                "qmoi_command_ack_seconds_bucket",
                Kind::Histogram,
                HELP,
                labels,
                *n as f64,
            );
        }
        let inf = vec![("le".to_string(), "+Inf".to_string())];
        e.raw(
            NAME,
            "qmoi_command_ack_seconds_bucket",
            Kind::Histogram,
            HELP,
            inf,
            h.count as f64,
        );
        e.raw(
            NAME,
            "qmoi_command_ack_seconds_sum",
            Kind::Histogram,
            HELP,
            Vec::new(),
            h.sum,
        );
        e.raw(
            NAME,
            "qmoi_command_ack_seconds_count",
            Kind::Histogram,
            HELP,
            Vec::new(),
            h.count as f64,
        );
    }
}

/// `qmoi_build_info{version,commit,built} 1`.
struct BuildInfo;

impl Collector for BuildInfo {
    fn collect(&self, out: &mut Exposition) {
        out.gauge(
            "qmoi_build_info",
            "The running build (always 1)",
            &[
                ("version", env!("CARGO_PKG_VERSION")),
                ("commit", crate::version::COMMIT),
                ("built", crate::version::DATE),
            ],
            1.0,
        );
    }
}

/// The standard `process_*` metrics, from `/proc/self` (Linux).
struct Process;

impl Collector for Process {
    fn collect(&self, out: &mut Exposition) {
        // SAFETY: sysconf has no memory effects.
        let (tick, page) = unsafe {
            (
                libc::sysconf(libc::_SC_CLK_TCK),
                libc::sysconf(libc::_SC_PAGESIZE),
            )
        };
        if let Ok(stat) = std::fs::read_to_string("/proc/self/stat") {
            // Fields after the command name, which is in parentheses.
            let rest = stat.rsplit_once(") ").map_or("", |(_, r)| r);
            let f: Vec<&str> = rest.split_whitespace().collect();
            let num = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
            if tick > 0 {
                // utime and stime are fields 14 and 15 (indexes 11, 12 here).
                let cpu = (num(11) + num(12)) / tick as f64;
                out.sample(
                    "process_cpu_seconds_total",
                    Kind::Counter,
                    "Total user and system CPU time spent in seconds",
                    &[],
                    cpu,
                );
            }
            out.gauge(
                "process_virtual_memory_bytes",
                "Virtual memory size in bytes",
                &[],
                num(20),
            );
            out.gauge(
                "process_resident_memory_bytes",
                "Resident memory size in bytes",
                &[],
                num(21) * page as f64,
            );
        }
        // Not from /proc/stat's btime: systemd's ProcSubset=pid hides it.
        out.gauge(
            "process_start_time_seconds",
            "Start time of the process since unix epoch in seconds",
            &[],
            *START.get_or_init(now_secs),
        );
        if let Ok(fds) = std::fs::read_dir("/proc/self/fd") {
            out.gauge(
                "process_open_fds",
                "Number of open file descriptors",
                &[],
                fds.count() as f64,
            );
        }
    }
}

/// When the first [`Metrics`] was made: the process start, near enough.
static START: std::sync::OnceLock<f64> = std::sync::OnceLock::new();

fn now_secs() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// Gauges read from the memory and the connection table at scrape time:
/// outbox depth and oldest age per channel, open questions, pending
/// effects, connection state per channel.
pub struct StoreGauges {
    /// The memory.
    pub store: Store,
    /// The connection table.
    pub health: Arc<Health>,
    /// Channels to always report (depth 0 when empty).
    pub channels: Vec<String>,
}

impl Collector for StoreGauges {
    fn collect(&self, out: &mut Exposition) {
        if let Ok(open) = self.store.open_notifications(None, usize::MAX) {
            out.gauge(
                "qmoi_questions_open",
                "Notifications with an open question",
                &[],
                open.len() as f64,
            );
        }
        let ledger =
            crate::effects::Ledger::new(self.store.clone(), crate::clock::SystemClock::shared());
        if let Ok(pending) = ledger.unsettled() {
            out.gauge(
                "qmoi_effects_pending",
                "Side effects intended but not settled (intended or unknown)",
                &[],
                pending.len() as f64,
            );
        }
        for c in self.health.channels() {
            let up = matches!(c.state, ConnState::Connected);
            out.gauge(
                "qmoi_channel_connected",
                "1 when the channel is connected, 0 while it reconnects",
                &[("channel", &c.channel)],
                f64::from(u8::from(up)),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_and_histogram_render_as_classic_text() {
        let m = Metrics::new();
        m.command("succeeded");
        m.command("succeeded");
        m.rejected("api", "bad_token");
        m.observe_ack(Duration::from_millis(3));
        let text = m.render();
        assert!(
            text.contains("# TYPE qmoi_commands_total counter\n"),
            "{text}"
        );
        assert!(
            text.contains("qmoi_commands_total{result=\"succeeded\"} 2\n"),
            "{text}"
        );
        assert!(
            text.contains("qmoi_command_ack_seconds_bucket{le=\"0.005\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("qmoi_command_ack_seconds_bucket{le=\"+Inf\"} 1\n"),
            "{text}"
        );
        assert!(text.contains("qmoi_build_info{version="), "{text}");
        assert!(!text.contains("# EOF"), "{text}");
        assert_eq!(
            m.counter("qmoi_commands_total", &[("result", "succeeded")]),
            2
        );
    }
}
