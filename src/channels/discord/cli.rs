//! `qmoi discord …`: helpers for the Discord application.

use super::commands::{register_all, Registered};
use crate::clock::SystemClock;
use crate::command::Registry;
use crate::config::Config;
use anyhow::{bail, Context};

/// Subcommands of `qmoi discord`.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum DiscordCmd {
    /// Register the slash command from commands/*.toml (guild, and global
    /// with discord.global_commands); only when it differs, unless --force.
    Register {
        /// Overwrite even when Discord already has the same commands.
        #[arg(long)]
        force: bool,
        /// Print the commands as JSON and register nothing.
        #[arg(long)]
        print: bool,
    },
}

/// Runs a `qmoi discord` subcommand.
pub fn run(config: &Config, cmd: &DiscordCmd) -> anyhow::Result<()> {
    let DiscordCmd::Register { force, print } = cmd;
    let (registry, _) =
        Registry::load(&config.paths.commands).context("loading command definitions")?;
    if *print {
        let defs = super::commands::definitions(&config.discord, &registry);
        println!("{}", serde_json::to_string_pretty(&defs)?);
        return Ok(());
    }
    let cfg = &config.discord;
    if !cfg.usable() || cfg.application_id.is_empty() {
        bail!("set QMOI_DISCORD__BOT_TOKEN (discord.bot_token) and QMOI_DISCORD__APPLICATION_ID (discord.application_id) first");
    }
    if cfg.guild_id.is_empty() && !cfg.global_commands {
        bail!("nowhere to register: set discord.guild_id (QMOI_DISCORD__GUILD_ID) or discord.global_commands = true");
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let rest = super::rest_client(config, SystemClock::shared());
    let done = rt
        .block_on(register_all(&rest, cfg, &registry, *force))
        .context("registering Discord slash commands")?;
    for (scope, r) in done {
        match r {
            Registered::Unchanged => println!("{scope}: /{} is up to date", cfg.command),
            Registered::Overwritten => println!("{scope}: /{} registered", cfg.command),
        }
    }
    Ok(())
}
