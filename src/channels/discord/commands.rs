//! Slash commands from the same `commands/*.toml` data the parser reads:
//! one `/qmoi` command with a subcommand per definition and a typed option
//! per argument. Registration compares what Discord has with what the files
//! describe and overwrites only when they differ (Discord allows 200
//! command creates per day per guild).

use super::embed::truncate;
use super::rest::{id, Rest, RestError};
use crate::command::{ArgKind, ArgSpec, CommandSpec, Registry};
use crate::config::{valid_command_name, DiscordConfig};
use serde_json::{json, Map, Value};
use serenity::http::{LightMethod, Route};

/// Discord's option types.
const SUB_COMMAND: u8 = 1;
const STRING: u8 = 3;
const INTEGER: u8 = 4;
/// Subcommands per command and options per subcommand.
const MAX_OPTIONS: usize = 25;
/// Description length.
const DESCRIPTION: usize = 100;

fn option(arg: &ArgSpec) -> Value {
    let (kind, description) = match arg.kind {
        ArgKind::Notification => (
            INTEGER,
            "Notification number (#N); in a notification's thread, that one".to_string(),
        ),
        ArgKind::Int => (INTEGER, format!("{} (a whole number)", arg.name)),
        ArgKind::Duration => (
            STRING,
            format!("{}: a duration such as 30m, 2h, 1d", arg.name),
        ),
        ArgKind::Word => (STRING, format!("{} (one word)", arg.name)),
        ArgKind::Text => (STRING, arg.name.clone()),
    };
    let description = match &arg.default {
        Some(d) => format!("{description} (default {d})"),
        None => description,
    };
    let mut o = json!({
        "type": kind,
        "name": arg.name,
        "description": truncate(&description, DESCRIPTION),
    });
    // A notification may come from the thread the command is typed in.
    if arg.required && arg.kind != ArgKind::Notification {
        o["required"] = json!(true);
    }
    if arg.kind == ArgKind::Notification {
        o["min_value"] = json!(1);
    }
    if !arg.choices.is_empty() {
        o["choices"] = arg
            .choices
            .iter()
            .map(|c| {
                let value = match (kind, c.value().parse::<u64>()) {
                    (INTEGER, Ok(n)) => json!(n),
                    _ => json!(c.value()),
                };
                json!({ "name": truncate(c.label(), DESCRIPTION), "value": value })
            })
            .collect();
    }
    o
}

fn subcommand(spec: &CommandSpec) -> Option<Value> {
    if !valid_command_name(&spec.name) || spec.args.iter().any(|a| !valid_command_name(&a.name)) {
        tracing::warn!(command = %spec.name, "left out of Discord's slash commands: names must be lowercase letters, digits, - or _");
        return None;
    }
    // Discord wants required options first.
    let mut options: Vec<Value> = spec.args.iter().map(option).collect();
    options.sort_by_key(|o| o["required"] != json!(true));
    options.truncate(MAX_OPTIONS);
    Some(json!({
        "type": SUB_COMMAND,
        "name": spec.name,
        "description": truncate(&spec.summary, DESCRIPTION),
        "options": options,
    }))
}

/// The commands qmoi registers: `/NAME` with one subcommand per definition.
pub fn definitions(cfg: &DiscordConfig, registry: &Registry) -> Value {
    let mut subs: Vec<Value> = registry.all().iter().filter_map(subcommand).collect();
    if subs.len() > MAX_OPTIONS {
        tracing::warn!(
            count = subs.len(),
            "Discord takes 25 subcommands; the rest are typed as text in a notification's thread"
        );
        subs.truncate(MAX_OPTIONS);
    }
    json!([{
        "type": 1,
        "name": cfg.command,
        "description": "Answer qmoi, the AI developer's voice: approve, retry, silence, status…",
        "options": subs,
    }])
}

/// The command line a slash command stands for, in the definition's
/// argument order (`silence #4 2h`), for the one parser every channel uses.
pub fn text_from_options(registry: &Registry, sub: &Value) -> Option<String> {
    let name = sub["name"].as_str()?;
    let spec = registry.get(name)?;
    let given: Map<String, Value> = sub["options"]
        .as_array()
        .map(|opts| {
            opts.iter()
                .filter_map(|o| Some((o["name"].as_str()?.to_string(), o["value"].clone())))
                .collect()
        })
        .unwrap_or_default();
    let mut words = vec![spec.name.clone()];
    for arg in &spec.args {
        let Some(v) = given.get(&arg.name) else {
            continue;
        };
        let text = match v {
            Value::String(s) => s.clone(),
            Value::Number(n) => n.to_string(),
            Value::Bool(b) => b.to_string(),
            _ => continue,
        };
        words.push(match arg.kind {
            ArgKind::Notification => format!("#{text}"),
            _ => text,
        });
    }
    Some(words.join(" "))
}

/// The parts of a command Discord echoes back that qmoi sets, in one shape,
/// so a registered command compares equal to its definition.
pub fn normalize(v: &Value) -> Value {
    match v {
        Value::Array(items) => Value::Array(items.iter().map(normalize).collect()),
        Value::Object(m) => {
            let mut out = Map::new();
            for key in ["type", "name", "description", "min_value", "choices"] {
                if let Some(x) = m.get(key).filter(|x| !x.is_null()) {
                    out.insert(key.into(), x.clone());
                }
            }
            out.insert(
                "required".into(),
                m.get("required").cloned().unwrap_or(json!(false)),
            );
            let opts = m.get("options").map(normalize).unwrap_or(json!([]));
            out.insert("options".into(), opts);
            if out.get("type").is_none() {
                out.insert("type".into(), json!(1));
            }
            Value::Object(out)
        }
        other => other.clone(),
    }
}

/// Where commands are registered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope<'a> {
    /// One guild: visible at once.
    Guild(&'a str),
    /// Every guild the app is in: takes up to an hour.
    Global,
}

fn route<'a>(app: &'a str, scope: Scope<'a>) -> Result<Route<'a>, RestError> {
    let application_id = id(app)?;
    Ok(match scope {
        Scope::Guild(g) => Route::GuildCommands {
            application_id,
            guild_id: id(g)?,
        },
        Scope::Global => Route::Commands { application_id },
    })
}

/// What a registration did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Registered {
    /// Discord already had exactly these commands.
    Unchanged,
    /// The commands were overwritten.
    Overwritten,
}

/// Compares Discord's commands in `scope` with `wanted` and overwrites them
/// (one bulk PUT) when they differ, or always with `force`.
pub async fn sync(
    rest: &Rest,
    cfg: &DiscordConfig,
    scope: Scope<'_>,
    wanted: &Value,
    force: bool,
) -> Result<Registered, RestError> {
    let r = route(&cfg.application_id, scope)?;
    if !force {
        let have = rest.call(r, LightMethod::Get, None).await?;
        let mut have = normalize(&have);
        let mut want = normalize(wanted);
        let by_name = |v: &Value| v["name"].as_str().unwrap_or_default().to_string();
        for list in [&mut have, &mut want] {
            if let Value::Array(items) = list {
                items.sort_by_key(by_name);
            }
        }
        if have == want {
            return Ok(Registered::Unchanged);
        }
    }
    rest.call(r, LightMethod::Put, Some(wanted)).await?;
    Ok(Registered::Overwritten)
}

/// Registers in every configured scope; used at startup and by
/// `qmoi discord register`.
pub async fn register_all(
    rest: &Rest,
    cfg: &DiscordConfig,
    registry: &Registry,
    force: bool,
) -> Result<Vec<(String, Registered)>, RestError> {
    let wanted = definitions(cfg, registry);
    let mut done = Vec::new();
    if !cfg.guild_id.is_empty() {
        let r = sync(rest, cfg, Scope::Guild(&cfg.guild_id), &wanted, force).await?;
        done.push((format!("guild {}", cfg.guild_id), r));
    }
    if cfg.global_commands {
        let r = sync(rest, cfg, Scope::Global, &wanted, force).await?;
        done.push(("global".to_string(), r));
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn registry() -> Registry {
        Registry::builtin().expect("builtin commands")
    }

    #[test]
    fn every_builtin_command_becomes_a_typed_subcommand() {
        let cfg = DiscordConfig::default();
        let defs = definitions(&cfg, &registry());
        let top = &defs[0];
        assert_eq!(top["name"], "qmoi");
        let subs = top["options"].as_array().expect("subcommands");
        assert_eq!(subs.len(), registry().all().len());
        let silence = subs
            .iter()
            .find(|s| s["name"] == "silence")
            .expect("silence");
        assert_eq!(silence["type"], 1);
        assert_eq!(silence["options"][0]["name"], "target");
        assert_eq!(silence["options"][0]["type"], INTEGER);
        assert_eq!(silence["options"][1]["name"], "for");
        assert_eq!(silence["options"][1]["type"], STRING);
        assert!(silence["options"][1]["description"]
            .as_str()
            .unwrap_or("")
            .contains("default 1h"));
        for s in subs {
            assert!(s["description"].as_str().map(|d| d.chars().count()) <= Some(DESCRIPTION));
        }
    }

    #[test]
    fn options_become_the_line_the_parser_reads() {
        let sub = json!({"type": 1, "name": "silence", "options": [
            {"name": "for", "type": 3, "value": "2h"},
            {"name": "target", "type": 4, "value": 4}
        ]});
        assert_eq!(
            text_from_options(&registry(), &sub).as_deref(),
            Some("silence #4 2h")
        );
        let bare = json!({"type": 1, "name": "status"});
        assert_eq!(
            text_from_options(&registry(), &bare).as_deref(),
            Some("status")
        );
        assert_eq!(
            text_from_options(&registry(), &json!({"name": "nope"})),
            None
        );
    }

    #[test]
    fn what_discord_echoes_back_compares_equal_to_the_definition() {
        let cfg = DiscordConfig::default();
        let defs = definitions(&cfg, &registry());
        let mut echoed = defs.clone();
        echoed[0]["id"] = json!("111");
        echoed[0]["application_id"] = json!("5");
        echoed[0]["version"] = json!("9");
        echoed[0]["default_member_permissions"] = Value::Null;
        assert_eq!(normalize(&echoed), normalize(&defs));
        echoed[0]["options"][0]["description"] = json!("changed");
        assert_ne!(normalize(&echoed), normalize(&defs));
    }
}
