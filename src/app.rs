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
/// timers, and the reconciliation backoff. The steps, in order: memory and
/// definitions ([`Core::load`]), outbound channels ([`Outbound::register`]),
/// forges, mirror and the engine with interrupted actions resumed
/// ([`build_engine`]), the workers, the channels' listeners, the HTTP
/// server ([`serve_http`]), then the inputs (email, console).
pub async fn start_with_clock(
    config: Config,
    console_io: Option<ConsoleIo>,
    clock: SharedClock,
) -> anyhow::Result<Running> {
    let core = Core::load(config, clock)?;
    let outbound = Outbound::register(&core, console_io)?;
    let (engine, mirror, forges) = build_engine(&core).await?;
    let (intake, queue) = Intake::new(
        core.store.clone(),
        core.notifier.clone(),
        core.reloadable.registry.clone(),
        forges,
        core.config.notify.clone(),
        &core.config.gitlab,
        core.metrics.clone(),
    );
    let mut tasks = vec![
        tokio::spawn(intake.clone().run(queue)),
        tokio::spawn(core.notifier.clone().run()),
        tokio::spawn(engine.clone().reconcile_loop(core.clock.clone())),
    ];
    mirror.set_intake(intake.clone());
    tasks.extend(mirror.spawn());
    let channel_routes = listen_channels(&core, &outbound, &engine, &mut tasks);
    let maintenance = Maintenance::new(
        core.store.clone(),
        crate::clock::SystemClock::shared(),
        core.config.paths.backups.clone(),
        core.config.memory.clone(),
    );
    tasks.extend(maintenance.clone().spawn());
    let http = serve_http(&core, &engine, &intake, &mirror, channel_routes).await?;
    let quit = Arc::new(tokio::sync::Notify::new());
    tasks.extend(start_inputs(&core, outbound, &engine, &http.signin, &quit));
    let warnings = startup_warnings(&core.config, &core.notifier);
    tracing::info!(addr = %http.addr, channels = ?core.notifier.active_channels(), "qmoi is listening");
    Ok(Running {
        addr: http.addr,
        engine,
        store: core.store,
        notifier: core.notifier,
        intake,
        mirror,
        warnings,
        reloadable: core.reloadable,
        quit,
        stop: Some(http.stop),
        tasks,
        server: Some(http.server),
        maintenance,
        data_dir: core.config.data_dir.clone(),
    })
}

/// What every later startup step reads: the config, the memory, the
/// reloadable definitions, metrics, health, the notifier and the clock.
struct Core {
    config: Arc<Config>,
    store: Store,
    reloadable: Reloadable,
    metrics: Arc<Metrics>,
    health: Arc<Health>,
    notifier: Arc<Notifier>,
    clock: SharedClock,
}

impl Core {
    /// Opens the memory (one plain sentence when it cannot: lock held,
    /// damaged store), loads commands and templates behind the shared
    /// handles a SIGHUP swaps, and builds the notifier.
    fn load(config: Config, clock: SharedClock) -> anyhow::Result<Core> {
        let config = Arc::new(config);
        let store = crate::store::open::open(
            &config.data_dir,
            config.memory.cache_mb,
            &config.paths.backups,
        )?;
        let (registry, commands_from) =
            Registry::load(&config.paths.commands).context("loading command definitions")?;
        let templates = Templates::load(&config.paths.templates).context("loading templates")?;
        tracing::info!(commands = %commands_from, templates = %templates.source(), data = %config.data_dir.display(), "loaded");
        let reloadable = Reloadable::new(&config, registry, templates);
        let metrics = Arc::new(Metrics::new());
        let health = Health::new(
            crate::clock::SystemClock::shared(),
            std::time::Duration::from_secs(config.server.ready_retry_budget_secs),
        );
        let notifier = Arc::new(
            Notifier::new(
                store.clone(),
                reloadable.templates.clone(),
                reloadable.registry.clone(),
                config.notify.clone(),
            )
            .with_clock(clock.clone())
            .with_metrics(metrics.clone())
            .with_people(reloadable.people.clone()),
        );
        Ok(Core {
            config,
            store,
            reloadable,
            metrics,
            health,
            notifier,
            clock,
        })
    }

    /// A channel runs when notifications or fallback copies go to it.
    fn wanted(&self, name: &str) -> bool {
        let n = &self.config.notify;
        n.channels.iter().any(|c| c == name) || n.fallback.iter().any(|c| c == name)
    }
}

/// The channels registered with the notifier, and what their listeners
/// need later.
struct Outbound {
    console: Option<ConsoleIo>,
    email_tokens: Option<email::token::Tokens>,
    slack_on: bool,
    discord: Option<discord::Discord>,
}

impl Outbound {
    /// Registers every enabled, configured channel's outbound half.
    fn register(core: &Core, console_io: Option<ConsoleIo>) -> anyhow::Result<Outbound> {
        let (config, notifier) = (&core.config, &core.notifier);
        let console = console_io.filter(|_| config.console.enabled);
        if let Some(io) = &console {
            notifier.register(Arc::new(ConsoleChannel::new(io.output.clone())));
            core.health.reporter(console::NAME).connected();
        }
        let email_tokens = if core.wanted(email::NAME) && config.email.usable() {
            Some(
                email::register(
                    config,
                    &core.store,
                    notifier,
                    core.reloadable.templates.clone(),
                )
                .context("configuring the email channel")?,
            )
        } else {
            None
        };
        let slack_on = core.wanted(slack::NAME) && config.slack.usable();
        if slack_on {
            slack::register(config, notifier).context("configuring the Slack channel")?;
        }
        let discord = (core.wanted(discord::NAME) && config.discord.usable()).then(|| {
            discord::register(
                config,
                notifier,
                core.reloadable.templates.clone(),
                core.reloadable.registry.clone(),
                core.clock.clone(),
            )
        });
        Ok(Outbound {
            console,
            email_tokens,
            slack_on,
            discord,
        })
    }
}

/// Forges, mirroring and the engine; before anything else runs, every
/// running or pending effect is reconciled (its decision resumed through
/// the ledger).
async fn build_engine(core: &Core) -> anyhow::Result<(Engine, Arc<Mirror>, Arc<Forges>)> {
    let (config, store, clock) = (&core.config, &core.store, &core.clock);
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
        registry: core.reloadable.registry.clone(),
        forges: forges.clone(),
        ledger: Ledger::new(store.clone(), clock.clone()),
        mirror: mirror.clone(),
    });
    let engine = Engine::new(
        store.clone(),
        core.reloadable.registry.clone(),
        core.reloadable.directory.clone(),
        ActionRegistry::builtin(),
        core.notifier.clone(),
        core.reloadable.templates.clone(),
        services,
        config.engine.clone(),
        core.metrics.clone(),
    )
    .map_err(anyhow::Error::msg)?;
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
    Ok((engine, mirror, forges))
}

/// Starts Slack's and Discord's inbound halves; their HTTP routes (when
/// they take requests) join the server's.
fn listen_channels(
    core: &Core,
    outbound: &Outbound,
    engine: &Engine,
    tasks: &mut Vec<JoinHandle<()>>,
) -> Vec<axum::Router> {
    let mut routes = Vec::new();
    if outbound.slack_on {
        let (r, task) = slack::listen(
            &core.config,
            engine.clone(),
            core.notifier.clone(),
            core.store.clone(),
            core.health.reporter(slack::NAME),
        );
        routes.extend(r);
        tasks.extend(task);
    }
    if let Some(d) = &outbound.discord {
        let (r, t) = discord::listen(
            d,
            &core.config,
            engine.clone(),
            core.notifier.clone(),
            core.store.clone(),
            core.reloadable.directory.clone(),
            core.health.reporter(discord::NAME),
        );
        routes.extend(r);
        tasks.extend(t);
    }
    routes
}

/// The running HTTP server.
struct Http {
    addr: SocketAddr,
    signin: Arc<web::dashboard::session::Auth>,
    stop: oneshot::Sender<()>,
    server: JoinHandle<()>,
}

/// Binds `server.listen`, writes the pid file and serves qmoi's routes plus
/// the channels', all under the error contract.
async fn serve_http(
    core: &Core,
    engine: &Engine,
    intake: &Arc<Intake>,
    mirror: &Arc<Mirror>,
    channel_routes: Vec<axum::Router>,
) -> anyhow::Result<Http> {
    let config = &core.config;
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
        core.clock.clone(),
        config.dashboard.clone(),
        web::dashboard::session::base_url(&config.dashboard, addr),
    ));
    if let Err(e) = crate::store::open::write_pid(&config.data_dir, addr) {
        tracing::warn!(error = %e, "could not write the pid file");
    }
    let state = AppState {
        config: config.clone(),
        engine: engine.clone(),
        intake: intake.clone(),
        store: core.store.clone(),
        metrics: core.metrics.clone(),
        health: core.health.clone(),
        mirror: mirror.clone(),
        clock: core.clock.clone(),
        signin: signin.clone(),
    };
    core.metrics.register(Arc::new(StoreGauges {
        store: core.store.clone(),
        health: core.health.clone(),
        channels: core.notifier.active_channels(),
    }));
    let (stop, stop_rx) = oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        let app = channel_routes
            .into_iter()
            .fold(web::routes(state), axum::Router::merge);
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
    Ok(Http {
        addr,
        signin,
        stop,
        server,
    })
}

/// Starts reading what people send: email replies (IMAP) and the console.
fn start_inputs(
    core: &Core,
    outbound: Outbound,
    engine: &Engine,
    signin: &Arc<web::dashboard::session::Auth>,
    quit: &Arc<tokio::sync::Notify>,
) -> Vec<JoinHandle<()>> {
    let mut tasks = Vec::new();
    if let Some(tokens) = outbound.email_tokens {
        tasks.extend(email::listen(
            &core.config,
            engine.clone(),
            core.notifier.clone(),
            tokens,
            core.store.clone(),
            core.reloadable.registry.clone(),
            core.health.reporter(email::NAME),
        ));
    }
    if let Some(io) = outbound.console {
        tasks.push(tokio::spawn(console::listen(
            engine.clone(),
            io.input,
            io.output,
            core.config.console.identity.clone(),
            quit.clone(),
            Some(web::dashboard::session::console_login(
                &core.config,
                signin.clone(),
            )),
        )));
    }
    tasks
}

/// Config warnings, deliverability problems and channels listed but not
/// running: logged, and returned for `Running::warnings`.
fn startup_warnings(config: &Config, notifier: &Notifier) -> Vec<String> {
    let mut warnings = config.warnings();
    for (key, p) in crate::notify::deliverability_problems(config) {
        tracing::error!("{key}: {p}");
        warnings.push(format!("{key}: {p}"));
    }
    for ch in notifier.missing_channels() {
        warnings.push(format!("notify.channels lists '{ch}', but that channel is not running; its messages wait in the outbox"));
    }
    for w in &warnings {
        tracing::warn!("{w}");
    }
    warnings
}
