//! The `qmoi` command line: run the bot, check its config, verify its audit
//! log, and export or import its memory.

use anyhow::{bail, Context, Result};
use clap::{CommandFactory, Parser, Subcommand};

mod cli;
use cli::memory::{AuditCmd, MemoryCmd};
use qmoi::app::{self, ConsoleIo};
use qmoi::channels::console::terminal;
use qmoi::config::{load_and_validate, Config, Sources, Validated};
use qmoi::lifecycle::{Event, Signals};
use std::net::SocketAddr;
use std::path::PathBuf;

#[derive(Parser)]
#[command(
    name = "qmoi",
    version = qmoi::version::LONG,
    after_help = "Examples:\n  qmoi serve --config /etc/qmoi/qmoi.toml\n  qmoi config check --config qmoi.toml --env-file prod.env\n  qmoi completions bash > /etc/bash_completion.d/qmoi\n  qmoi man > qmoi.1",
    about = "qmoi — chat-ops for an AI developer: tells people what CI/CD did, runs what they answer"
)]
struct Cli {
    /// Config file (TOML). Without one, built-in defaults apply.
    #[arg(long, global = true, env = "QMOI_CONFIG")]
    config: Option<PathBuf>,
    /// Memory directory (overrides data_dir).
    #[arg(long, global = true)]
    data: Option<PathBuf>,
    /// `.env` file read before the environment (default: `./.env` when it
    /// exists; a file named here must exist).
    #[arg(long, global = true)]
    env_file: Option<PathBuf>,
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the bot: HTTP server, channels, engine.
    #[command(
        after_help = "Examples:\n  qmoi serve                                   # defaults: console + 127.0.0.1:8080\n  qmoi serve --config /etc/qmoi/qmoi.toml --listen 0.0.0.0:8080\n  QMOI_LOG=debug qmoi serve --env-file prod.env\n\nSignals: SIGINT/SIGTERM stop, SIGHUP reloads commands, templates and people (and names what needs a restart)."
    )]
    Serve {
        /// Address to listen on (overrides server.listen).
        #[arg(long)]
        listen: Option<SocketAddr>,
    },
    /// Inspect the configuration.
    #[command(
        after_help = "Examples:\n  qmoi config check --config qmoi.toml\n  QMOI_NOTIFY__CHANNELS='[\"email\"]' qmoi config check --env-file prod.env"
    )]
    Config {
        #[command(subcommand)]
        command: ConfigCmd,
    },
    /// The audit log.
    #[command(after_help = "Examples:\n  qmoi audit verify --data /var/lib/qmoi/data")]
    Audit {
        #[command(subcommand)]
        command: AuditCmd,
    },
    /// Open questions, audit head, memory size and newest backup.
    Status(cli::memory::StatusArgs),
    /// Back up or restore the memory.
    #[command(
        after_help = "Examples:\n  qmoi memory export --out backup.jsonl\n  qmoi memory export --out - | gzip > backup.jsonl.gz\n  qmoi memory import --data ./new-data backup.jsonl"
    )]
    Memory {
        #[command(subcommand)]
        command: MemoryCmd,
    },
    /// Slack helpers.
    #[command(after_help = "Examples:\n  qmoi slack manifest --config qmoi.toml > manifest.json")]
    Slack {
        #[command(subcommand)]
        command: SlackCmd,
    },
    /// Discord helpers: register the slash command.
    Discord {
        #[command(subcommand)]
        command: qmoi::channels::discord::cli::DiscordCmd,
    },
    /// Debug email replies: what qmoi reads in them.
    #[command(
        after_help = "Examples:\n  qmoi email trim reply1.txt reply2.txt\n  qmoi email parse --config qmoi.toml message.eml"
    )]
    Email {
        #[command(subcommand)]
        command: EmailCmd,
    },
    /// Mirror sets: `qmoi mirror status`.
    #[command(
        after_help = "Examples:\n  qmoi mirror status --config qmoi.toml\n  qmoi mirror status --url http://127.0.0.1:8080 --json"
    )]
    Mirror {
        #[command(subcommand)]
        command: qmoi::mirror::cli::MirrorCmd,
    },
    /// Forges: `qmoi forge setup [--dry-run]` (webhooks, mirror repositories, permissions).
    #[command(
        after_help = "Examples:\n  qmoi forge setup --config qmoi.toml --dry-run\n  qmoi forge setup --config qmoi.toml\n  qmoi forge setup --config qmoi.toml --rotate-secret"
    )]
    Forge {
        #[command(subcommand)]
        command: qmoi::mirror::cli::ForgeCmd,
    },
    /// The master's dashboard.
    #[command(
        after_help = "Examples:\n  qmoi dashboard login-url --config qmoi.toml\n  qmoi dashboard login-url --url https://qmoi.example.org --person alice"
    )]
    Dashboard {
        #[command(subcommand)]
        command: DashboardCmd,
    },
    /// Print a shell completion script.
    #[command(
        after_help = "Examples:\n  qmoi completions bash > /etc/bash_completion.d/qmoi\n  qmoi completions zsh > ~/.zfunc/_qmoi\n  qmoi completions fish > ~/.config/fish/completions/qmoi.fish"
    )]
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Exit 0 when qmoi answers on server.listen (for a container HEALTHCHECK).
    #[command(
        after_help = "Examples:\n  qmoi healthcheck                  # GET /healthz on server.listen\n  qmoi healthcheck --path /readyz"
    )]
    Healthcheck {
        /// The path to GET.
        #[arg(long, default_value = "/healthz")]
        path: String,
    },
    /// Print the man page (roff).
    #[command(after_help = "Examples:\n  qmoi man > /usr/local/share/man/man1/qmoi.1 && man qmoi")]
    Man,
}

#[derive(Subcommand)]
enum DashboardCmd {
    /// Print a single-use sign-in link (asks the running bot).
    ///
    /// Example: `qmoi dashboard login-url --url https://qmoi.example.org`
    LoginUrl {
        /// Where the running bot answers (default: server.listen).
        #[arg(long)]
        url: Option<String>,
        /// Sign in as this person (default: the first master).
        #[arg(long)]
        person: Option<String>,
    },
}

#[derive(Subcommand)]
enum SlackCmd {
    /// Print an app manifest to paste into Slack ("Create an app → From a manifest").
    Manifest,
}

#[derive(Subcommand)]
enum EmailCmd {
    /// Plain-text bodies in; JSON lines `{"file","reply"}` out.
    Trim {
        /// Files holding plain-text bodies.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// A whole message (.eml) in; JSON out: sender, token, thread, reply
    /// text, the command, or why it would be refused.
    Parse {
        /// The message file.
        file: PathBuf,
    },
    /// Reply-reading accuracy: qmoi's evaluation set (command accuracy,
    /// false positives) and, when present, the public corpora's scores.
    Eval {
        /// The evaluation set (expected.toml + replies/).
        #[arg(long, default_value = "tests/eval")]
        set: PathBuf,
        /// The public corpora (email_reply_trimmer/, email_reply_parser/);
        /// not scored when not given.
        #[arg(long)]
        corpora: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum ConfigCmd {
    /// Print the effective config (secrets masked) and its warnings; exit 1 on errors.
    Check,
}

fn sources(cli: &Cli) -> Sources {
    Sources {
        file: cli.config.clone(),
        dotenv: Some(cli.env_file.clone().unwrap_or_else(|| ".env".into())),
        dotenv_required: cli.env_file.is_some(),
        env: None,
    }
}

/// Command-line overrides of config keys.
fn overrides(cli: &Cli, listen: Option<SocketAddr>) -> impl FnOnce(&mut Config) + '_ {
    move |config: &mut Config| {
        if let Some(d) = &cli.data {
            config.data_dir = d.clone();
        }
        if let Some(l) = listen {
            config.server.listen = l;
        }
    }
}

/// The config for tools that only read it (no validation of channels).
fn load_config(cli: &Cli, listen: Option<SocketAddr>) -> Result<Config> {
    let mut config = Config::load(&sources(cli))?;
    overrides(cli, listen)(&mut config);
    Ok(config)
}

/// The config `serve` and `config check` run with: loaded and validated by
/// the one shared function, so both refuse the same configs.
fn validated_config(cli: &Cli, listen: Option<SocketAddr>) -> Result<Validated> {
    Ok(load_and_validate(&sources(cli), overrides(cli, listen))?)
}

fn main() -> std::process::ExitCode {
    qmoi::allocator::tune();
    let cli = Cli::parse();
    let result = match &cli.command {
        Cmd::Serve { listen } => {
            let _term = terminal::TermGuard::save();
            validated_config(&cli, *listen)
                .and_then(|v| {
                    qmoi::logging::init(&v.config.log)?;
                    Ok(v.config)
                })
                .and_then(|config| {
                    let rt = tokio::runtime::Builder::new_multi_thread()
                        .enable_all()
                        .build()
                        .context("starting the async runtime")?;
                    let r = rt.block_on(serve(&cli, *listen, config));
                    // Never wait on a blocked write to a full stdout pipe.
                    rt.shutdown_timeout(std::time::Duration::from_secs(2));
                    r
                })
        }
        Cmd::Config {
            command: ConfigCmd::Check,
        } => config_check(&cli),
        Cmd::Audit { command } => {
            load_config(&cli, None).and_then(|c| cli::memory::audit(c, command))
        }
        Cmd::Memory { command } => {
            load_config(&cli, None).and_then(|c| cli::memory::memory(c, command))
        }
        Cmd::Status(args) => load_config(&cli, None).and_then(|c| cli::memory::status(c, args)),
        Cmd::Email {
            command: EmailCmd::Trim { files },
        } => email_trim(files),
        Cmd::Email {
            command: EmailCmd::Parse { file },
        } => email_parse(&cli, file),
        Cmd::Discord { command } => {
            load_config(&cli, None).and_then(|c| qmoi::channels::discord::cli::run(&c, command))
        }
        Cmd::Email {
            command: EmailCmd::Eval { set, corpora },
        } => qmoi::channels::email::eval::cli(set, corpora.as_deref()),
        Cmd::Mirror { command } => {
            load_config(&cli, None).and_then(|c| qmoi::mirror::cli::mirror(&c, command))
        }
        Cmd::Forge { command } => {
            load_config(&cli, None).and_then(|c| qmoi::mirror::cli::forge(&c, command))
        }
        Cmd::Dashboard {
            command: DashboardCmd::LoginUrl { url, person },
        } => dashboard_login_url(&cli, url.as_deref(), person.as_deref()),
        Cmd::Completions { shell } => {
            let mut script = Vec::new();
            clap_complete::generate(*shell, &mut Cli::command(), "qmoi", &mut script);
            std::io::Write::write_all(&mut std::io::stdout(), &script)
                .context("writing the completion script")
        }
        Cmd::Healthcheck { path } => load_config(&cli, None).and_then(|c| healthcheck(&c, path)),
        Cmd::Man => clap_mangen::Man::new(Cli::command())
            .render(&mut std::io::stdout())
            .context("writing the man page"),
        Cmd::Slack {
            command: SlackCmd::Manifest,
        } => load_config(&cli, None).and_then(|c| {
            println!(
                "{}",
                serde_json::to_string_pretty(&qmoi::channels::slack::manifest::manifest(&c.slack))?
            );
            Ok(())
        }),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("qmoi: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn dashboard_login_url(cli: &Cli, url: Option<&str>, person: Option<&str>) -> Result<()> {
    let config = load_config(cli, None)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let link = rt.block_on(qmoi::web::dashboard::client::login_url(
        &config, url, person,
    ))?;
    println!("{}", link.url);
    eprintln!(
        "Signs in {} once, within {} minutes.",
        link.person, link.valid_minutes
    );
    Ok(())
}

async fn serve(cli: &Cli, listen: Option<SocketAddr>, config: Config) -> Result<()> {
    let mut signals = Signals::install().context("installing signal handlers")?;
    let console = config.console.enabled.then(|| {
        let t = terminal::open();
        ConsoleIo {
            input: Box::new(t.input),
            output: t.output,
        }
    });
    let running = app::start(config.clone(), console).await?;
    eprintln!(
        "qmoi listening on http://{} — type `help` here for commands",
        running.addr
    );
    loop {
        tokio::select! {
            event = signals.next() => match event {
                Event::Stop(signal) => {
                    tracing::info!(signal, "shutting down");
                    break;
                }
                Event::Reload => reload(cli, listen, &running),
            },
            _ = running.quit_requested() => {
                tracing::info!("quit typed at the console; shutting down");
                break;
            }
        }
    }
    running.shutdown().await
}

/// SIGHUP: validate the new config; when it validates, replace commands,
/// templates and people in the running bot and say what needs a restart.
fn reload(cli: &Cli, listen: Option<SocketAddr>, running: &app::Running) {
    let new = match validated_config(cli, listen) {
        Ok(new) => new,
        Err(e) => {
            tracing::error!(error = %format!("{e:#}"), "reload refused: the new config does not validate; still running the old one");
            return;
        }
    };
    match running.reload(&new) {
        Ok(report) => tracing::warn!(
            reloaded = %report.reloaded.join(", "),
            needs_restart = %report.needs_restart.join(", "),
            "reload: {}",
            report.summary()
        ),
        Err(e) => {
            tracing::error!(error = %e, "reload refused; still running the old commands, templates and people")
        }
    }
}

/// Prints the effective config and the same findings `serve` acts on.
fn config_check(cli: &Cli) -> Result<()> {
    let checked = validated_config(cli, None)?;
    print!("{}", checked.config.to_masked_toml());
    for w in &checked.warnings {
        eprintln!("{w}");
    }
    eprintln!("config OK");
    Ok(())
}

/// One GET on the configured address; Ok only for HTTP 200.
fn healthcheck(config: &Config, path: &str) -> Result<()> {
    use std::io::{Read, Write};
    let mut addr = config.server.listen;
    if addr.ip().is_unspecified() {
        addr.set_ip(if addr.is_ipv4() {
            std::net::Ipv4Addr::LOCALHOST.into()
        } else {
            std::net::Ipv6Addr::LOCALHOST.into()
        });
    }
    let timeout = std::time::Duration::from_secs(3);
    let mut s = std::net::TcpStream::connect_timeout(&addr, timeout)
        .with_context(|| format!("connecting to {addr}"))?;
    s.set_read_timeout(Some(timeout))?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n")?;
    let mut head = [0u8; 64];
    let n = s.read(&mut head)?;
    let status = String::from_utf8_lossy(&head[..n]);
    match status.split_whitespace().nth(1) {
        Some("200") => Ok(()),
        other => bail!("{path} on {addr} answered {}", other.unwrap_or("nothing")),
    }
}

fn email_trim(files: &[PathBuf]) -> Result<()> {
    use std::io::Write;
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let mut failed = 0;
    for f in files {
        match std::fs::read(f) {
            Ok(bytes) => {
                let text = String::from_utf8_lossy(&bytes);
                let t = qmoi::channels::email::reply::trim(&text);
                let line = serde_json::json!({ "file": f.display().to_string(), "reply": t.reply, "elided": t.elided });
                writeln!(out, "{line}")?;
            }
            Err(e) => {
                eprintln!("qmoi: {}: {e}", f.display());
                failed += 1;
            }
        }
    }
    if failed > 0 {
        bail!("{failed} file(s) could not be read");
    }
    Ok(())
}

fn email_parse(cli: &Cli, file: &PathBuf) -> Result<()> {
    let config = load_config(cli, None)?;
    let raw = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
    let (registry, _) =
        qmoi::command::Registry::load(&config.paths.commands).context("command definitions")?;
    // The memory's checks (token records, replays) need the store, which
    // a running qmoi holds; without it those checks are listed as not run.
    let store = config
        .data_dir
        .is_dir()
        .then(|| qmoi::store::Store::open(&config.data_dir).ok())
        .flatten();
    let tokens = store
        .as_ref()
        .zip(config.email.token_secret.clone())
        .map(|(s, secret)| {
            qmoi::channels::email::token::Tokens::new(
                s.clone(),
                secret,
                config.email.token_ttl_days,
            )
        });
    let memory = store
        .as_ref()
        .zip(tokens.as_ref())
        .map(|(store, tokens)| qmoi::channels::email::inbound::Memory { tokens, store });
    let examined = qmoi::channels::email::inbound::examine(&raw, &config.email, &registry, memory);
    let m = examined.mail.as_ref();
    let out = serde_json::json!({
        "file": file.display().to_string(),
        "from": m.map(|m| m.from.clone()),
        "message_id": m.map(|m| m.message_id.clone()),
        "in_reply_to": m.map(|m| m.in_reply_to.clone()),
        "references": m.map(|m| m.references.clone()),
        "token": examined.token,
        "reply": examined.reply,
        "command": examined.command,
        "refused": examined.refused,
        "refusals": examined.refusals,
        "unchecked": examined.unchecked,
    });
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(())
}
