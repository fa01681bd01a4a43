//! Wiring: build every part from the config and start them.
//!
//! This is the only place that knows all the parts. Reading it top to bottom
//! shows the shape of qmoi: memory, command definitions and templates, the
//! notifier and its channels, forges and actions, the engine, the intake, and
//! the HTTP server in front.

use crate::actions::{ActionRegistry, Services};
use crate::channels::console::{self, ConsoleChannel, Output};
use crate::channels::{discord, email, slack};
use crate::clock::{SharedClock, SystemClock};
use crate::command::Registry;
use crate::config::{Config, Validated};
use crate::effects::Ledger;
use crate::engine::Engine;
use crate::forge::Forges;
use crate::health::Health;
use crate::intake::Intake;
use crate::lifecycle::{ReloadError, ReloadReport, Reloadable};
use crate::metrics::{Metrics, StoreGauges};
use crate::mirror::Mirror;
use crate::notify::{Notifier, Templates};
use crate::store::maintenance::{Job, Maintenance};
use crate::store::Store;
use crate::web::{self, AppState};
use anyhow::Context;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::io::AsyncBufRead;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// Where the console reads and writes (stdin/stdout, or pipes in tests).
pub struct ConsoleIo {
    /// Lines typed by the operator.
    pub input: Box<dyn AsyncBufRead + Send + Unpin>,
    /// Where notifications and replies are printed.
    pub output: Output,
}

/// How long requests in flight may take to finish at shutdown
/// (the systemd unit's `TimeoutStopSec` is larger).
pub const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(10);

/// A running bot.
pub struct Running {
    /// The bound HTTP address (useful with port 0).
    pub addr: SocketAddr,
    /// The engine, for in-process channels and tests.
    pub engine: Engine,
    /// The memory.
    pub store: Store,
    /// The notifier, for registering further channels.
    pub notifier: Arc<Notifier>,
    /// Event intake.
    pub intake: Arc<Intake>,
    /// Repository mirroring.
    pub mirror: Arc<Mirror>,
    /// Startup warnings (also logged).
    pub warnings: Vec<String>,
    /// What a SIGHUP replaces (commands, templates, people).
    pub reloadable: Reloadable,
    quit: Arc<tokio::sync::Notify>,
    stop: Option<oneshot::Sender<()>>,
    tasks: Vec<JoinHandle<()>>,
    server: Option<JoinHandle<()>>,
    maintenance: Maintenance,
    data_dir: std::path::PathBuf,
}

impl Running {
    /// SIGHUP with a validated config: replaces commands, templates and
    /// people everywhere at once; says what else needs a restart.
    pub fn reload(&self, new: &Validated) -> Result<ReloadReport, ReloadError> {
        self.reloadable.apply(&self.engine, new)
    }

    /// Resolves when someone typed `quit` at the console.
    pub async fn quit_requested(&self) {
        self.quit.notified().await;
    }

    /// Stops accepting requests, stops workers and flushes the memory.
    /// Requests in flight get [`SHUTDOWN_GRACE`] to finish; then they are
    /// dropped (unacknowledged, so their senders retry).
    pub async fn shutdown(mut self) -> anyhow::Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(mut server) = self.server.take() {
            if tokio::time::timeout(SHUTDOWN_GRACE, &mut server)
                .await
                .is_err()
            {
                tracing::warn!(
                    grace_secs = SHUTDOWN_GRACE.as_secs(),
                    "HTTP requests still running at shutdown were cut off"
                );
                server.abort();
            }
        }
        self.notifier.stop().await;
        for t in &self.tasks {
            t.abort();
        }
        for t in self.tasks.drain(..) {
            let _ = t.await;
        }
        self.store
            .durable()
            .await
            .context("flushing memory on shutdown")?;
        // The last records are vouched for outside the store too.
        if let Err(e) = self.maintenance.run(Job::Checkpoint).await {
            tracing::warn!(error = %e, "could not write the final audit checkpoint");
        }
        crate::store::open::remove_pid(&self.data_dir);
        Ok(())
    }
}

/// Builds and starts everything, on the system clock.
pub async fn start(config: Config, console_io: Option<ConsoleIo>) -> anyhow::Result<Running> {
    start_with_clock(config, console_io, SystemClock::shared()).await
}

/// Builds and starts everything, reading time from `clock` (tests pass a
/// [`crate::clock::ManualClock`]): delivery retries, fallback and question
/// timers, and the reconciliation backoff.
pub async fn start_with_clock(
    config: Config,
    console_io: Option<ConsoleIo>,
    clock: SharedClock,
) -> anyhow::Result<Running> {
    let config = Arc::new(config);
    // One plain sentence when it cannot open (lock held, damaged store).
    let store = crate::store::open::open(
        &config.data_dir,
        config.memory.cache_mb,
        &config.paths.backups,
    )?;
    let (registry, commands_from) =
        Registry::load(&config.paths.commands).context("loading command definitions")?;
    let templates = Templates::load(&config.paths.templates).context("loading templates")?;
    tracing::info!(commands = %commands_from, templates = %templates.source(), data = %config.data_dir.display(), "loaded");
    // Shared handles: a SIGHUP swaps what every part reads.
    let reloadable = Reloadable::new(&config, registry, templates);
    let (registry, templates) = (reloadable.registry.clone(), reloadable.templates.clone());
    let metrics = Arc::new(Metrics::new());
    let health = Health::new(
        crate::clock::SystemClock::shared(),
        std::time::Duration::from_secs(config.server.ready_retry_budget_secs),
    );

    let notifier = Arc::new(
        Notifier::new(
            store.clone(),
            templates.clone(),
            registry.clone(),
            config.notify.clone(),
        )
        .with_clock(clock.clone())
        .with_metrics(metrics.clone())
        .with_people(reloadable.people.clone()),
    );
    let mut console_listener = None;
    if config.console.enabled {
        if let Some(io) = console_io {
            notifier.register(Arc::new(ConsoleChannel::new(io.output.clone())));
            health.reporter(console::NAME).connected();
            console_listener = Some(io);
        }
    }

    // A channel runs when notifications or fallback copies go to it.
    let wanted = |name: &str| {
        config.notify.channels.iter().any(|c| c == name)
            || config.notify.fallback.iter().any(|c| c == name)
    };
    let email_tokens = if wanted(email::NAME) && config.email.usable() {
        Some(
            email::register(&config, &store, &notifier, templates.clone())
                .context("configuring the email channel")?,
        )
    } else {
        None
    };

    let slack_on = wanted(slack::NAME) && config.slack.usable();
    if slack_on {
        slack::register(&config, &notifier).context("configuring the Slack channel")?;
    }

    let discord_on = wanted(discord::NAME) && config.discord.usable();
    let discord = discord_on.then(|| {
        discord::register(
            &config,
            &notifier,
            templates.clone(),
            registry.clone(),
            clock.clone(),
        )
    });

    let forges = Arc::new(
        Forges::new(store.clone(), &config.gitlab, &config.github).context("configuring GitLab")?,
    );
    let mirror = Mirror::new(
        config.mirror.clone(),
        &config.data_dir,
        store.clone(),
        clock.clone(),
    );
    let services = Arc::new(Services {
        store: store.clone(),
        registry: registry.clone(),
        forges: forges.clone(),
        ledger: Ledger::new(store.clone(), clock.clone()),
        mirror: mirror.clone(),
    });
    let engine = Engine::new(
        store.clone(),
        registry.clone(),
        reloadable.directory.clone(),
        ActionRegistry::builtin(),
        notifier.clone(),
        templates,
        services,
        config.engine.clone(),
        metrics.clone(),
    )
    .map_err(anyhow::Error::msg)?;
    // Before anything else runs: every running or pending effect is
    // reconciled (its decision resumed through the ledger).
    let resumed = engine
        .recover()
        .await
        .context("resuming interrupted actions")?;
    if resumed > 0 {
        tracing::warn!(
            resumed,
            "decisions were running or pending when qmoi last stopped; resumed through the effect ledger"
        );
    }

    let (intake, queue) = Intake::new(
        store.clone(),
        notifier.clone(),
        registry.clone(),
        forges,
        config.notify.clone(),
        &config.gitlab,
        metrics.clone(),
    );
    let mut tasks = vec![
        tokio::spawn(intake.clone().run(queue)),
        tokio::spawn(notifier.clone().run()),
        tokio::spawn(engine.clone().reconcile_loop(clock.clone())),
    ];
    mirror.set_intake(intake.clone());
    tasks.extend(mirror.spawn());

    let mut slack_routes = None;
    if slack_on {
        let (routes, task) = slack::listen(
            &config,
            engine.clone(),
            notifier.clone(),
            store.clone(),
            health.reporter(slack::NAME),
        );
        slack_routes = routes;
        tasks.extend(task);
    }

    let mut discord_routes = None;
    if let Some(d) = &discord {
        let (routes, t) = discord::listen(
            d,
            &config,
            engine.clone(),
            notifier.clone(),
            store.clone(),
            reloadable.directory.clone(),
            health.reporter(discord::NAME),
        );
        discord_routes = routes;
        tasks.extend(t);
    }

    let listener = tokio::net::TcpListener::bind(config.server.listen)
        .await
        .with_context(|| {
            format!(
                "binding {} (server.listen / QMOI_SERVER__LISTEN)",
                config.server.listen
            )
        })?;
    let addr = listener.local_addr()?;
    let signin = Arc::new(web::dashboard::session::Auth::new(
        clock.clone(),
        config.dashboard.clone(),
        web::dashboard::session::base_url(&config.dashboard, addr),
    ));
    if let Err(e) = crate::store::open::write_pid(&config.data_dir, addr) {
        tracing::warn!(error = %e, "could not write the pid file");
    }
    let maintenance = Maintenance::new(
        store.clone(),
        crate::clock::SystemClock::shared(),
        config.paths.backups.clone(),
        config.memory.clone(),
    );
    tasks.extend(maintenance.clone().spawn());
    let state = AppState {
        config: config.clone(),
        engine: engine.clone(),
        intake: intake.clone(),
        store: store.clone(),
        metrics: metrics.clone(),
        health: health.clone(),
        mirror: mirror.clone(),
        clock: clock.clone(),
        signin: signin.clone(),
    };
    metrics.register(Arc::new(StoreGauges {
        store: store.clone(),
        health: health.clone(),
        channels: notifier.active_channels(),
    }));
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        let mut app = web::routes(state);
        if let Some(routes) = slack_routes {
            app = app.merge(routes);
        }
        if let Some(routes) = discord_routes {
            app = app.merge(routes);
        }
        let app = web::with_error_contract(app);
        if let Err(e) = axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(async {
            let _ = stop_rx.await;
        })
        .await
        {
            tracing::error!(error = %e, "HTTP server stopped");
        }
    });

    if let Some(tokens) = email_tokens {
        if let Some(t) = email::listen(
            &config,
            engine.clone(),
            notifier.clone(),
            tokens,
            store.clone(),
            registry.clone(),
            health.reporter(email::NAME),
        ) {
            tasks.push(t);
        }
    }
    let quit = Arc::new(tokio::sync::Notify::new());
    if let Some(io) = console_listener {
        tasks.push(tokio::spawn(console::listen(
            engine.clone(),
            io.input,
            io.output,
            config.console.identity.clone(),
            quit.clone(),
            Some(web::dashboard::session::console_login(
                &config,
                signin.clone(),
            )),
        )));
    }

    let mut warnings = config.warnings();
    for (key, p) in crate::notify::deliverability_problems(&config) {
        tracing::error!("{key}: {p}");
        warnings.push(format!("{key}: {p}"));
    }
    for ch in notifier.missing_channels() {
        warnings.push(format!("notify.channels lists '{ch}', but that channel is not running; its messages wait in the outbox"));
    }
    for w in &warnings {
        tracing::warn!("{w}");
    }
    tracing::info!(%addr, channels = ?notifier.active_channels(), "qmoi is listening");
    Ok(Running {
        addr,
        engine,
        store,
        notifier,
        intake,
        mirror,
        warnings,
        reloadable,
        quit,
        stop: Some(stop_tx),
        tasks,
        server: Some(server),
        maintenance,
        data_dir: config.data_dir.clone(),
    })
}
