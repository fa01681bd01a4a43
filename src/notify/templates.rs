//! Notification templates, one folder per channel with `default/` behind.
//!
//! `templates/<channel>/<kind>.txt` is used when present, otherwise
//! `templates/default/<kind>.txt`. The built-in copy of `templates/` is
//! compiled in; a `templates/` folder on disk replaces it, so operators can
//! reword messages without rebuilding.
//!
//! Escaping is by construction: each medium ([`Medium`]) has its own
//! environment whose auto-escape mode escapes every printed value for that
//! medium (Slack mrkdwn, HTML, Discord markdown, plain text), so a template
//! never has to remember a filter. Only qmoi's own template text, values
//! made by the helper functions (`link`, `code`, `fit`) and the built-in
//! `tojson` are printed as they are.

use crate::render::{self, Keep, Medium};
use include_dir::{include_dir, Dir};
use minijinja::{AutoEscape, Environment, Error, Output, State, Value};
use std::collections::BTreeMap;
use std::path::Path;

static BUILTIN: Dir<'_> = include_dir!("$CARGO_MANIFEST_DIR/templates");

/// Why a template could not be loaded or rendered.
#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    /// Syntax error or missing template.
    #[error("template {name}: {reason}")]
    Template {
        /// Template name.
        name: String,
        /// Why.
        reason: String,
    },
    /// Reading the folder.
    #[error("cannot read templates from {0}: {1}")]
    Io(String, std::io::Error),
}

/// The loaded templates.
pub struct Templates {
    envs: BTreeMap<Medium, Environment<'static>>,
    source: String,
    /// A digest of every file's name and text, so a reload can say
    /// whether anything changed.
    fingerprint: u64,
}

/// Prints a value in a template: escaped for the environment's medium
/// unless it is marked safe; nothing for none/undefined.
fn format_value(
    medium: Medium,
    out: &mut Output,
    state: &State,
    value: &Value,
) -> Result<(), Error> {
    match state.auto_escape() {
        AutoEscape::Custom(_) if value.is_safe() => write!(out, "{value}").map_err(Error::from),
        AutoEscape::Custom(_) if value.is_undefined() || value.is_none() => Ok(()),
        AutoEscape::Custom(_) => out
            .write_str(&render::escape(medium, &value.to_string()))
            .map_err(Error::from),
        _ => minijinja::escape_formatter(out, state, value),
    }
}

fn keep_of(s: Option<&str>) -> Keep {
    match s {
        Some("head") => Keep::Head,
        _ => Keep::Tail,
    }
}

/// Makes `env` print every value through render's escaper for `medium`
/// (`.json` templates excepted): the one auto-escape rule for every
/// template qmoi has, notifications and dashboard pages alike. Unlike
/// minijinja's built-in HTML escaping, render's also drops control
/// characters and shows bidi overrides.
pub fn escape_values(env: &mut Environment<'static>, medium: Medium) {
    env.set_auto_escape_callback(move |name| {
        if name.ends_with(".json") {
            AutoEscape::None
        } else {
            AutoEscape::Custom(medium.name())
        }
    });
    env.set_formatter(move |out, state, value| format_value(medium, out, state, value));
}

/// One medium's environment: same templates, that medium's escaping and
/// helpers.
fn environment(medium: Medium) -> Environment<'static> {
    let mut env = Environment::new();
    env.set_trim_blocks(true);
    env.set_lstrip_blocks(true);
    env.set_undefined_behavior(minijinja::UndefinedBehavior::Chainable);
    escape_values(&mut env, medium);
    // `{{ link(url, label) }}`: a link when `url` is http(s), else the label.
    env.add_function("link", move |url: Option<String>, label: Option<String>| {
        let url = url.unwrap_or_default();
        let label = label.unwrap_or_else(|| url.clone());
        Value::from_safe_string(render::markup::link(medium, &url, &label))
    });
    // `{{ code(text, max, keep, full) }}`: a block content cannot close,
    // cut to `max` characters (default 4000) from the `keep` end ("tail"
    // for logs, "head"), naming `full` as where the whole text is.
    env.add_function(
        "code",
        move |text: Option<String>,
              max: Option<usize>,
              keep: Option<String>,
              full: Option<String>| {
            Value::from_safe_string(render::markup::code_block(
                medium,
                &text.unwrap_or_default(),
                max.unwrap_or(render::limits::email::EXCERPT),
                keep_of(keep.as_deref()),
                full.as_deref(),
            ))
        },
    );
    // `{{ mention(slack_id, name) }}`: a Slack mention on Slack, the name
    // elsewhere.
    env.add_function(
        "mention",
        move |id: Option<String>, name: Option<String>| {
            let name = name.unwrap_or_default();
            Value::from_safe_string(match (medium, id) {
                (Medium::SlackMrkdwn, Some(id)) => render::markup::slack_mention(&id, &name),
                _ => render::escape(medium, &name),
            })
        },
    );
    // `{{ date(unix_ts) }}`: each Slack or Discord reader's own time zone;
    // UTC text elsewhere.
    env.add_function("date", move |ts: Option<i64>| {
        let at = chrono::DateTime::from_timestamp(ts.unwrap_or(0), 0).unwrap_or_default();
        Value::from_safe_string(match medium {
            Medium::SlackMrkdwn => render::markup::slack_date(at),
            // Discord shows `<t:…:f>` in each reader's own time zone.
            Medium::Discord => format!("<t:{}:f>", at.timestamp()),
            _ => at.format("%Y-%m-%d %H:%M UTC").to_string(),
        })
    });
    // `{{ text | prose }}`: qmoi's own prose with outside content in it
    // (command answers), escaped, `backtick` spans as the medium's inline
    // code (quotes in plain text).
    env.add_filter("prose", move |text: Option<String>| {
        Value::from_safe_string(render::markup::prose(
            medium,
            &text.unwrap_or_default(),
            usize::MAX,
        ))
    });
    // `{{ text | fit(max, full) }}`: escaped and visibly cut to `max`.
    env.add_filter(
        "fit",
        move |text: Option<String>, max: Option<usize>, full: Option<String>| {
            Value::from_safe_string(
                render::Markup::new(medium)
                    .fitted(
                        &text.unwrap_or_default(),
                        max.unwrap_or(usize::MAX),
                        Keep::Head,
                        full.as_deref(),
                    )
                    .into_string(),
            )
        },
    );
    env
}

impl Templates {
    /// Loads `dir` when it exists, otherwise the built-in templates.
    pub fn load(dir: &Path) -> Result<Templates, TemplateError> {
        let mut files: Vec<(String, String)> = Vec::new();
        let source;
        if dir.is_dir() {
            source = dir.display().to_string();
            collect_disk(dir, dir, &mut files)?;
        } else {
            source = "built-in templates".to_string();
            collect_builtin(&BUILTIN, &mut files);
        }
        Templates::from_files(files, source)
    }

    /// Builds from `(name, text)` pairs such as `("default/notification.txt", …)`.
    pub fn from_files(
        files: Vec<(String, String)>,
        source: String,
    ) -> Result<Templates, TemplateError> {
        let mut envs = BTreeMap::new();
        for medium in Medium::ALL {
            let mut env = environment(medium);
            for (name, text) in &files {
                env.add_template_owned(name.clone(), text.clone())
                    .map_err(|e| TemplateError::Template {
                        name: name.clone(),
                        reason: e.to_string(),
                    })?;
            }
            envs.insert(medium, env);
        }
        let env = &envs[&Medium::Console];
        for required in [
            "default/notification.txt",
            "default/update.txt",
            "default/report.txt",
            "default/subject.txt",
        ] {
            if env.get_template(required).is_err() {
                return Err(TemplateError::Template {
                    name: required.into(),
                    reason: "missing".into(),
                });
            }
        }
        let fingerprint = {
            use std::hash::{Hash, Hasher};
            let mut sorted: Vec<&(String, String)> = files.iter().collect();
            sorted.sort();
            let mut h = std::collections::hash_map::DefaultHasher::new();
            sorted.hash(&mut h);
            h.finish()
        };
        Ok(Templates {
            envs,
            source,
            fingerprint,
        })
    }

    /// Changes when any template's name or text changes (not a security
    /// hash: it only tells a reload whether to say "templates changed").
    pub fn fingerprint(&self) -> u64 {
        self.fingerprint
    }

    fn env(&self, medium: Medium) -> &Environment<'static> {
        // Every medium's environment is built in `from_files`.
        &self.envs[&medium]
    }

    /// Where the templates came from, for the startup log.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Renders `kind` for `channel`, falling back to `default/`, escaped
    /// for the channel's medium ([`Medium::for_channel`]).
    pub fn render(
        &self,
        channel: &str,
        kind: &str,
        ctx: &serde_json::Value,
    ) -> Result<String, TemplateError> {
        let env = self.env(Medium::for_channel(channel));
        let specific = format!("{channel}/{kind}.txt");
        let name = if env.get_template(&specific).is_ok() {
            specific
        } else {
            format!("default/{kind}.txt")
        };
        let tmpl = env
            .get_template(&name)
            .map_err(|e| TemplateError::Template {
                name: name.clone(),
                reason: e.to_string(),
            })?;
        tmpl.render(ctx).map_err(|e| TemplateError::Template {
            name,
            reason: e.to_string(),
        })
    }

    /// Renders `templates/<channel>/<file>` (falling back to `default/`), for
    /// extra parts such as an HTML alternative; `None` when neither exists.
    /// Escaped for [`Medium::for_template`] (`.html` files as HTML).
    pub fn render_file(
        &self,
        channel: &str,
        file: &str,
        ctx: &serde_json::Value,
    ) -> Option<Result<String, TemplateError>> {
        let env = self.env(Medium::for_template(channel, file));
        let name = [format!("{channel}/{file}"), format!("default/{file}")]
            .into_iter()
            .find(|n| env.get_template(n).is_ok())?;
        let tmpl = env.get_template(&name).ok()?;
        Some(tmpl.render(ctx).map_err(|e| TemplateError::Template {
            name,
            reason: e.to_string(),
        }))
    }

    /// Renders a one-off template string (command reply lines) as plain
    /// text: values are sanitized, and each channel escapes the result for
    /// its medium when it shows it.
    pub fn render_str(
        &self,
        source: &str,
        ctx: &serde_json::Value,
    ) -> Result<String, TemplateError> {
        self.env(Medium::Console)
            .render_str(source, ctx)
            .map_err(|e| TemplateError::Template {
                name: "inline".into(),
                reason: e.to_string(),
            })
    }
}

fn collect_builtin(dir: &Dir<'_>, out: &mut Vec<(String, String)>) {
    for f in dir.files() {
        if let Some(text) = f.contents_utf8() {
            out.push((
                f.path().to_string_lossy().replace('\\', "/"),
                text.to_string(),
            ));
        }
    }
    for d in dir.dirs() {
        collect_builtin(d, out);
    }
}

fn collect_disk(
    root: &Path,
    dir: &Path,
    out: &mut Vec<(String, String)>,
) -> Result<(), TemplateError> {
    let entries =
        std::fs::read_dir(dir).map_err(|e| TemplateError::Io(dir.display().to_string(), e))?;
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            collect_disk(root, &path, out)?;
        } else if let Ok(rel) = path.strip_prefix(root) {
            let text = std::fs::read_to_string(&path)
                .map_err(|e| TemplateError::Io(path.display().to_string(), e))?;
            out.push((rel.to_string_lossy().replace('\\', "/"), text));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn templates(extra: &[(&str, &str)]) -> Templates {
        let mut files: Vec<(String, String)> = [
            ("default/notification.txt", "{{ v }}"),
            ("default/update.txt", "u"),
            ("default/report.txt", "r"),
            ("default/subject.txt", "s"),
        ]
        .iter()
        .chain(extra)
        .map(|(n, t)| (n.to_string(), t.to_string()))
        .collect();
        files.sort();
        Templates::from_files(files, "test".into()).unwrap()
    }

    #[test]
    fn every_value_is_escaped_for_the_channel_medium() {
        let t = templates(&[("email/part.html", "<b>{{ v }}</b>")]);
        let ctx = json!({ "v": "<!channel> **x** <i>" });
        assert_eq!(
            t.render("slack", "notification", &ctx).unwrap(),
            "&lt;!channel&gt; \u{200B}*\u{200B}*x\u{200B}*\u{200B}* &lt;i&gt;"
        );
        assert_eq!(
            t.render("discord", "notification", &ctx).unwrap(),
            "\\<!channel\\> \\*\\*x\\*\\* \\<i\\>"
        );
        assert_eq!(
            t.render("email", "notification", &ctx).unwrap(),
            "<!channel> **x** <i>"
        );
        assert_eq!(
            t.render_file("email", "part.html", &ctx).unwrap().unwrap(),
            "<b>&lt;!channel&gt; **x** &lt;i&gt;</b>"
        );
        assert_eq!(
            t.render("console", "notification", &json!({ "v": "\x1b[2Jgone" }))
                .unwrap(),
            "[2Jgone"
        );
    }

    #[test]
    fn helpers_make_links_and_closed_code_blocks() {
        let t = templates(&[(
            "discord/notification.txt",
            "{{ link(url, label) }}\n{{ code(log, 20) }}",
        )]);
        let ctx =
            json!({ "url": "https://ci.example/1", "label": "job *1*", "log": "```\n@everyone" });
        let out = t.render("discord", "notification", &ctx).unwrap();
        assert!(
            out.starts_with("[job \\*1\\*](<https://ci.example/1>)\n```\n"),
            "{out}"
        );
        assert_eq!(out.matches("```").count(), 2, "{out}");
    }
}
