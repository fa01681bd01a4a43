//! Notification templates, one folder per channel with `default/` behind.
//!
//! `templates/<channel>/<kind>.txt` is used when present, otherwise
//! `templates/default/<kind>.txt`. The built-in copy of `templates/` is
//! compiled in; a `templates/` folder on disk replaces it, so operators can
//! reword messages without rebuilding.

use include_dir::{include_dir, Dir};
use minijinja::Environment;
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
    env: Environment<'static>,
    source: String,
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
        let mut env = Environment::new();
        env.set_trim_blocks(true);
        env.set_lstrip_blocks(true);
        env.set_undefined_behavior(minijinja::UndefinedBehavior::Chainable);
        for (name, text) in files {
            env.add_template_owned(name.clone(), text)
                .map_err(|e| TemplateError::Template {
                    name,
                    reason: e.to_string(),
                })?;
        }
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
        Ok(Templates { env, source })
    }

    /// Where the templates came from, for the startup log.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Renders `kind` for `channel`, falling back to `default/`.
    pub fn render(
        &self,
        channel: &str,
        kind: &str,
        ctx: &serde_json::Value,
    ) -> Result<String, TemplateError> {
        let specific = format!("{channel}/{kind}.txt");
        let name = if self.env.get_template(&specific).is_ok() {
            specific
        } else {
            format!("default/{kind}.txt")
        };
        let tmpl = self
            .env
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
    pub fn render_file(
        &self,
        channel: &str,
        file: &str,
        ctx: &serde_json::Value,
    ) -> Option<Result<String, TemplateError>> {
        let name = [format!("{channel}/{file}"), format!("default/{file}")]
            .into_iter()
            .find(|n| self.env.get_template(n).is_ok())?;
        let tmpl = self.env.get_template(&name).ok()?;
        Some(tmpl.render(ctx).map_err(|e| TemplateError::Template {
            name,
            reason: e.to_string(),
        }))
    }

    /// Renders a one-off template string (command reply lines).
    pub fn render_str(
        &self,
        source: &str,
        ctx: &serde_json::Value,
    ) -> Result<String, TemplateError> {
        self.env
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
