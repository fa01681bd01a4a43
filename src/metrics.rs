//! Prometheus metrics for `GET /metrics`.
//!
//! A registry per process (not a global) so tests can run many bots in one
//! process. Counters are labelled by outcome so an operator can alert on
//! "denied" or "failed" without parsing logs.

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use std::time::Duration;

type Labels = Vec<(String, String)>;

/// The process's metrics.
pub struct Metrics {
    registry: Registry,
    events: Family<Labels, Counter>,
    commands: Family<Labels, Counter>,
    notifications: Family<Labels, Counter>,
    webhooks_rejected: Family<Labels, Counter>,
    ack_seconds: Histogram,
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
        Metrics {
            registry,
            events,
            commands,
            notifications,
            webhooks_rejected,
            ack_seconds,
        }
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
        let mut out = String::new();
        if encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}
