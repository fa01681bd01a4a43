//! qmoi — the voice and ears of an automated AI developer working on CI/CD.
//!
//! The shape, in the order data flows:
//!
//! - [`web`] and [`channels`] — inbound adapters: webhooks, the API, the
//!   console (email, Slack and Discord plug in beside it);
//! - [`events`] → [`intake`] — what happened on a forge becomes a durable
//!   event and then a notification;
//! - [`command`] — every answer from every channel becomes one [`command::Command`];
//! - [`engine`] — authorize → deduplicate → decide once → run → record → report;
//! - [`actions`] and [`forge`] — what commands do, and the forge clients;
//! - [`effects`] — the ledger every outside side effect goes through (at most
//!   once, reconciled by reading the other side);
//! - [`notify`] — templates → outbox → channel adapters, with retries;
//! - [`render`] — per-medium escaping, limits and message shapes: outside
//!   content is made inert for each medium by construction;
//! - [`store`] — the memory behind a narrow storage trait, including the hash-chained audit log;
//! - [`mutes`] — projects the master muted (intake sends nothing about them);
//! - [`config`], [`identity`], [`metrics`], [`clock`], [`app`] — settings,
//!   people, counters, time that tests can move, and the wiring.

pub mod actions;
pub mod allocator;
pub mod app;
pub mod channels;
pub mod clock;
pub mod command;
pub mod config;
pub mod effects;
pub mod engine;
pub mod events;
pub mod forge;
pub mod fuzz;
pub mod health;
pub mod identity;
pub mod intake;
pub mod lifecycle;
pub mod logging;
pub mod metrics;
pub mod mirror;
pub mod mutes;
pub mod notify;
pub mod reload;
pub mod render;
pub mod store;
pub mod version;
pub mod web;
