//! Prometheus metrics for `GET /metrics`.
//!
//! A registry per process (not a global) so tests can run many bots in one
//! process. Counters are labelled by outcome so an operator can alert on
//! "denied" or "failed" without parsing logs.

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use std::sync::Mutex;
use std::time::Duration;

type Labels = Vec<(String, String)>;

/// Refreshes gauges that are read from the memory (outbox depth and age)
/// just before they are rendered.
pub type Probe = Box<dyn Fn(&Metrics) + Send + Sync>;

/// The process's metrics.
pub struct Metrics {
    registry: Registry,
    events: Family<Labels, Counter>,
    commands: Family<Labels, Counter>,
    notifications: Family<Labels, Counter>,
    webhooks_rejected: Family<Labels, Counter>,
    ack_seconds: Histogram,
    delivery: DeliveryMetrics,
    probe: Mutex<Option<Probe>>,
}

/// What the delivery side counts.
#[derive(Default)]
struct DeliveryMetrics {
    deliveries: Family<Labels, Counter>,
    fallbacks: Family<Labels, Counter>,
    chases: Family<Labels, Counter>,
    broken: Family<Labels, Gauge>,
    depth: Family<Labels, Gauge>,
    oldest: Family<Labels, Gauge>,
}

impl DeliveryMetrics {
    fn register(&self, registry: &mut Registry) {
        registry.register(
            "deliveries",
            "Delivery attempts, by channel and result (sent, retry, refused, failed, broken)",
            self.deliveries.clone(),
        );
        registry.register(
            "fallbacks",
            "Messages copied to a fallback channel, by primary and fallback",
            self.fallbacks.clone(),
        );
        registry.register(
            "question_chases",
            "Reminders, escalations and expiries of open questions",
            self.chases.clone(),
        );
        registry.register(
            "channel_broken",
            "1 while a channel cannot deliver (bad token, missing channel)",
            self.broken.clone(),
        );
        registry.register(
            "outbox_depth",
            "Undelivered messages in the outbox, by channel",
            self.depth.clone(),
        );
        registry.register(
            "outbox_oldest_undelivered_seconds",
            "Age of the oldest undelivered message, by channel",
            self.oldest.clone(),
        );
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    /// Registers every metric.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("qmoi");
        let events = Family::<Labels, Counter>::default();
        let commands = Family::<Labels, Counter>::default();
        let notifications = Family::<Labels, Counter>::default();
        let webhooks_rejected = Family::<Labels, Counter>::default();
        let ack_seconds = Histogram::new([
            0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1.0,
        ]);
        registry.register(
            "events",
            "Events received, by platform and result",
            events.clone(),
        );
        registry.register("commands", "Commands handled, by result", commands.clone());
        registry.register(
            "notifications",
            "Notifications created, updated or silenced",
            notifications.clone(),
        );
        registry.register(
            "webhooks_rejected",
            "Webhook or API requests refused, by reason",
            webhooks_rejected.clone(),
        );
        registry.register(
            "command_ack_seconds",
            "Time from receiving a command to its durable acknowledgement",
            ack_seconds.clone(),
        );
        let delivery = DeliveryMetrics::default();
        delivery.register(&mut registry);
        Metrics {
            registry,
            events,
            commands,
            notifications,
            webhooks_rejected,
            ack_seconds,
            delivery,
            probe: Mutex::new(None),
        }
    }

    /// Counts a delivery attempt's result on a channel.
    pub fn delivery(&self, channel: &str, result: &str) {
        self.delivery
            .deliveries
            .get_or_create(&vec![
                ("channel".into(), channel.into()),
                ("result".into(), result.into()),
            ])
            .inc();
    }

    /// Counts a fallback copy.
    pub fn fallback(&self, from: &str, to: &str) {
        self.delivery
            .fallbacks
            .get_or_create(&vec![
                ("from".into(), from.into()),
                ("to".into(), to.into()),
            ])
            .inc();
    }

    /// Counts a reminder, escalation or expiry (`what`).
    pub fn chase(&self, what: &str) {
        self.delivery
            .chases
            .get_or_create(&vec![("kind".into(), what.into())])
            .inc();
    }

    /// Sets whether `channel` is broken.
    pub fn channel_broken(&self, channel: &str, broken: bool) {
        self.delivery
            .broken
            .get_or_create(&vec![("channel".into(), channel.into())])
            .set(i64::from(broken));
    }

    /// Sets a channel's outbox depth and oldest undelivered age.
    pub fn outbox(&self, channel: &str, depth: u64, oldest_secs: u64) {
        let l = vec![("channel".into(), channel.into())];
        self.delivery
            .depth
            .get_or_create(&l)
            .set(i64::try_from(depth).unwrap_or(i64::MAX));
        self.delivery
            .oldest
            .get_or_create(&l)
            .set(i64::try_from(oldest_secs).unwrap_or(i64::MAX));
    }

    /// Installs the probe run before every render.
    pub fn set_probe(&self, probe: Probe) {
        *self.probe.lock().unwrap_or_else(|p| p.into_inner()) = Some(probe);
    }

    /// Counts an event.
    pub fn event(&self, platform: &str, result: &str) {
        self.events
            .get_or_create(&vec![
                ("platform".into(), platform.into()),
                ("result".into(), result.into()),
            ])
            .inc();
    }

    /// Counts a command.
    pub fn command(&self, result: &str) {
        self.commands
            .get_or_create(&vec![("result".into(), result.into())])
            .inc();
    }

    /// Counts a notification change.
    pub fn notification(&self, what: &str) {
        self.notifications
            .get_or_create(&vec![("change".into(), what.into())])
            .inc();
    }

    /// Counts a refused request.
    pub fn rejected(&self, endpoint: &str, reason: &str) {
        self.webhooks_rejected
            .get_or_create(&vec![
                ("endpoint".into(), endpoint.into()),
                ("reason".into(), reason.into()),
            ])
            .inc();
    }

    /// Records an acknowledgement latency.
    pub fn observe_ack(&self, d: Duration) {
        self.ack_seconds.observe(d.as_secs_f64());
    }

    /// Prometheus text exposition.
    pub fn render(&self) -> String {
        if let Some(probe) = self
            .probe
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
        {
            probe(self);
        }
        let mut out = String::new();
        if encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}
