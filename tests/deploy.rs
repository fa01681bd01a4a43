//! The shipped deploy works as shipped: `deploy/qmoi.service` passes
//! `systemd-analyze verify` and rates ≤ 2.5 in `systemd-analyze security`,
//! and qmoi starts the way the unit starts it — as an unprivileged user,
//! reading a world-readable config from the configuration directory, its
//! secrets from `$CREDENTIALS_DIRECTORY`, writing only its state directory.

mod support;

use std::os::unix::fs::{chown, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use support::process::serve_in;

const UNIT: &str = include_str!("../deploy/qmoi.service");
const EXAMPLE: &str = include_str!("../deploy/qmoi.example.toml");
/// The user the test runs qmoi as (DynamicUser picks an arbitrary unused one).
const SERVICE_UID: u32 = 65534;
const API_TOKEN: &str = "cred-api-token-5150";

/// `Key=value` lines of the unit (all of them, in order).
fn directives(key: &str) -> Vec<String> {
    UNIT.lines()
        .filter_map(|l| l.strip_prefix(&format!("{key}=")))
        .map(str::to_string)
        .collect()
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

fn mode(p: &Path, m: u32) {
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(m)).expect("chmod");
}

/// A root-like layout in a temporary directory: etc/qmoi (the
/// ConfigurationDirectory), var/lib/qmoi (StateDirectory, owned by the
/// service user), creds (what systemd's LoadCredential= makes), bin/qmoi.
struct Layout {
    root: tempfile::TempDir,
}

impl Layout {
    fn new(config_mode: u32) -> Layout {
        let root = tempfile::tempdir().expect("tmp");
        mode(root.path(), 0o755);
        let l = Layout { root };
        let etc = l.path("etc/qmoi");
        std::fs::create_dir_all(&etc).expect("etc");
        mode(&l.path("etc"), 0o755);
        mode(&etc, 0o755);
        std::fs::write(etc.join("qmoi.toml"), EXAMPLE).expect("config");
        mode(&etc.join("qmoi.toml"), config_mode);
        let state = l.path("var/lib/qmoi");
        std::fs::create_dir_all(&state).expect("state");
        for d in ["var", "var/lib"] {
            mode(&l.path(d), 0o755);
        }
        mode(&state, 0o700);
        let creds = l.path("creds");
        std::fs::create_dir_all(&creds).expect("creds");
        mode(&creds, 0o500);
        // The unit's LoadCredential=ID:PATH → $CREDENTIALS_DIRECTORY/ID.
        for spec in directives("LoadCredential") {
            let (id, _) = spec.split_once(':').expect("ID:PATH");
            let file = creds.join(id);
            std::fs::write(
                &file,
                format!(
                    "QMOI_EMAIL__TOKEN_SECRET=cred-token-key\nQMOI_EMAIL__SMTP_PASSWORD=smtp-pw\nQMOI_EMAIL__IMAP_PASSWORD=imap-pw\nQMOI_API__TOKEN={API_TOKEN}\n"
                ),
            )
            .expect("credential");
            mode(&file, 0o400);
        }
        // The binary, where any user can execute it.
        let bin = l.path("bin");
        std::fs::create_dir_all(&bin).expect("bin");
        mode(&bin, 0o755);
        std::fs::copy(env!("CARGO_BIN_EXE_qmoi"), bin.join("qmoi")).expect("copy binary");
        mode(&bin.join("qmoi"), 0o755);
        if is_root() {
            for p in [state.clone(), creds.clone()] {
                chown(&p, Some(SERVICE_UID), Some(SERVICE_UID)).expect("chown");
            }
            for id in std::fs::read_dir(&creds).expect("ls") {
                chown(
                    id.expect("entry").path(),
                    Some(SERVICE_UID),
                    Some(SERVICE_UID),
                )
                .expect("chown");
            }
        }
        l
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.root.path().join(rel)
    }

    /// The unit's paths, moved under the layout.
    fn place(&self, s: &str) -> String {
        s.replace("%E", &self.path("etc").display().to_string())
            .replace(
                "/var/lib/qmoi",
                &self.path("var/lib/qmoi").display().to_string(),
            )
            .replace(
                "/usr/local/bin/qmoi",
                &self.path("bin/qmoi").display().to_string(),
            )
    }

    /// The environment the unit gives qmoi, plus loopback-only overrides so
    /// the example config's hosts are never looked up.
    fn env(&self) -> Vec<(String, String)> {
        let mut env: Vec<(String, String)> = directives("Environment")
            .iter()
            .flat_map(|l| l.split_whitespace().map(str::to_string).collect::<Vec<_>>())
            .filter_map(|kv| {
                kv.split_once('=')
                    .map(|(k, v)| (k.to_string(), self.place(v)))
            })
            .collect();
        env.push((
            "CREDENTIALS_DIRECTORY".into(),
            self.path("creds").display().to_string(),
        ));
        for (k, v) in [
            ("QMOI_EMAIL__SMTP_HOST", "127.0.0.1"),
            ("QMOI_EMAIL__SMTP_PORT", "9"),
            ("QMOI_EMAIL__IMAP_HOST", "127.0.0.1"),
            ("QMOI_EMAIL__IMAP_PORT", "9"),
            ("QMOI_GITLAB__URL", "http://127.0.0.1:9"),
        ] {
            env.push((k.into(), v.into()));
        }
        env
    }

    /// ExecStart's arguments after `serve`.
    fn serve_args(&self) -> Vec<String> {
        let exec = directives("ExecStart").pop().expect("ExecStart");
        let exec = self.place(&exec);
        let mut words = exec.split_whitespace();
        assert_eq!(
            words.next().map(str::to_string),
            Some(self.place("/usr/local/bin/qmoi"))
        );
        assert_eq!(words.next(), Some("serve"));
        words.map(str::to_string).collect()
    }

    /// How the unit's user is switched to (nothing when not root).
    fn launcher(&self) -> Option<Vec<String>> {
        is_root().then(|| {
            let id = SERVICE_UID.to_string();
            vec![
                "setpriv".into(),
                format!("--reuid={id}"),
                format!("--regid={id}"),
                "--clear-groups".into(),
                "--no-new-privs".into(),
            ]
        })
    }
}

#[test]
fn qmoi_starts_as_the_unit_starts_it_unprivileged() {
    let layout = Layout::new(0o644);
    let env = layout.env();
    let env_ref: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let args = layout.serve_args();
    let args_ref: Vec<&str> = args.iter().map(String::as_str).collect();
    let launcher = layout.launcher();
    let launcher_ref: Option<Vec<&str>> = launcher
        .as_ref()
        .map(|l| l.iter().map(String::as_str).collect());
    let cwd = tempfile::TempDir::new_in(layout.path("var/lib/qmoi")).ok();
    // Start in the unit's WorkingDirectory (the state directory).
    let dir = cwd.unwrap_or_else(|| tempfile::tempdir().expect("tmp"));
    if is_root() {
        chown(dir.path(), Some(SERVICE_UID), Some(SERVICE_UID)).expect("chown cwd");
    }
    let mut bot = serve_in(
        dir,
        &args_ref,
        &env_ref,
        Stdio::null(),
        launcher_ref.as_deref(),
    );
    let (code, _, body) = bot.http("GET", "/healthz", &[], "");
    assert_eq!(code, 200, "{body}");
    // The API token came from the credential: the right one is accepted.
    let auth = format!("Bearer {API_TOKEN}");
    let (code, _, body) = bot.http(
        "POST",
        "/api/v1/events",
        &[
            ("Authorization", auth.as_str()),
            ("Content-Type", "application/json"),
        ],
        "{}",
    );
    assert_ne!(code, 401, "credential's API token refused: {body}");
    // The container HEALTHCHECK command, against this instance.
    let addr = bot.addr.expect("addr").to_string();
    let hc = Command::new(layout.path("bin/qmoi"))
        .arg("healthcheck")
        .env("QMOI_SERVER__LISTEN", &addr)
        .current_dir(layout.path("bin"))
        .output()
        .expect("healthcheck");
    assert!(
        hc.status.success(),
        "{}",
        String::from_utf8_lossy(&hc.stderr)
    );
    // Memory lives in the state directory the unit names.
    assert!(
        layout.path("var/lib/qmoi/data").is_dir(),
        "data dir created"
    );
    bot.signal(libc::SIGTERM);
    assert!(bot.exits(), "clean exit on SIGTERM");
    assert!(!bot.seen.join("\n").contains("cred-token-key"));
}

#[test]
fn an_unreadable_config_is_named_in_the_error() {
    // The old recipe: root-only config under a DynamicUser.
    let layout = Layout::new(if is_root() { 0o640 } else { 0o000 });
    let mut c = match layout.launcher() {
        Some(l) => {
            let mut c = Command::new(&l[0]);
            c.args(&l[1..]).arg(layout.path("bin/qmoi"));
            c
        }
        None => Command::new(layout.path("bin/qmoi")),
    };
    let config = layout.path("etc/qmoi/qmoi.toml");
    let out = c
        .args(["config", "check", "--config"])
        .arg(&config)
        .current_dir(layout.path("bin"))
        .output()
        .expect("run");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!(
            "cannot read {}: Permission denied",
            config.display()
        )),
        "{err}"
    );
}

#[test]
fn the_unit_verifies_and_is_hardened() {
    let dir = tempfile::tempdir().expect("tmp");
    let unit = dir.path().join("qmoi.service");
    // verify checks ExecStart exists: point it at the built binary.
    std::fs::write(
        &unit,
        UNIT.replace("/usr/local/bin/qmoi", env!("CARGO_BIN_EXE_qmoi")),
    )
    .expect("write");
    let verify = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&unit)
        .output()
        .expect("systemd-analyze (deploy/test.sh installs systemd)");
    assert!(
        verify.status.success() && verify.stderr.is_empty(),
        "verify: {}",
        String::from_utf8_lossy(&verify.stderr)
    );
    let sec = Command::new("systemd-analyze")
        .args(["security", "--offline=yes", "--no-pager"])
        .arg(&unit)
        .output()
        .expect("systemd-analyze security");
    let text = String::from_utf8_lossy(&sec.stdout);
    let level: f64 = text
        .lines()
        .find_map(|l| l.split("exposure level for qmoi.service: ").nth(1))
        .and_then(|r| r.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no exposure level in:\n{text}"));
    assert!(level <= 2.5, "exposure {level} > 2.5:\n{text}");
}

/// The Dockerfile's build stage is checked against the repository without
/// a container engine (none runs on the CI machines): every `COPY` source
/// exists and is not filtered out by `.dockerignore`, and everything the
/// release build reads is copied — the manifest's `[[bench]]` files, the
/// folders compiled in with `include_dir!`, and `build.rs`.
#[test]
fn the_dockerfile_copies_what_the_build_reads() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dockerfile = std::fs::read_to_string(root.join("deploy/Dockerfile")).expect("Dockerfile");
    let ignore = std::fs::read_to_string(root.join(".dockerignore")).expect(".dockerignore");
    let copied: Vec<String> = dockerfile
        .lines()
        .filter_map(|l| l.trim().strip_prefix("COPY "))
        .filter(|l| !l.starts_with("--from"))
        .flat_map(|l| {
            let parts: Vec<&str> = l.split_whitespace().collect();
            parts[..parts.len().saturating_sub(1)]
                .iter()
                .map(|s| s.to_string())
                .collect::<Vec<_>>()
        })
        .collect();
    assert!(!copied.is_empty(), "no COPY lines found");
    for src in &copied {
        assert!(root.join(src).exists(), "COPY {src}: not in the repository");
        let top = src.trim_end_matches('/');
        assert!(
            !ignore
                .lines()
                .any(|l| l.trim().trim_end_matches('/') == top),
            "COPY {src}: excluded by .dockerignore"
        );
    }
    let is_copied = |path: &str| {
        copied
            .iter()
            .any(|c| path == c || path.starts_with(&format!("{}/", c.trim_end_matches('/'))))
    };
    let manifest = std::fs::read_to_string(root.join("Cargo.toml")).expect("Cargo.toml");
    for name in manifest
        .lines()
        .filter_map(|l| l.trim().strip_prefix("name = \""))
        .filter_map(|l| l.strip_suffix('"'))
        .filter(|n| root.join(format!("benches/{n}.rs")).exists())
    {
        assert!(
            is_copied(&format!("benches/{name}.rs")),
            "bench {name} not copied"
        );
    }
    for needed in [
        "Cargo.toml",
        "Cargo.lock",
        "build.rs",
        "src/main.rs",
        "src/lib.rs",
    ] {
        assert!(
            is_copied(needed),
            "{needed} is not copied into the build stage"
        );
    }
    let sources = Command::new("grep")
        .args(["-rhoE", r#"include_dir!\("\$CARGO_MANIFEST_DIR/[^"]+"#])
        .arg(root.join("src"))
        .output()
        .expect("grep");
    let roots: Vec<String> = String::from_utf8_lossy(&sources.stdout)
        .lines()
        .filter_map(|l| l.split("$CARGO_MANIFEST_DIR/").nth(1))
        .map(str::to_string)
        .collect();
    assert!(!roots.is_empty(), "no include_dir! found in src");
    for r in roots {
        assert!(is_copied(&r), "{r} is compiled in but not copied");
    }
    assert!(
        dockerfile.contains("--bin qmoi") && dockerfile.contains("--locked"),
        "the build stage builds the qmoi binary from the lock file"
    );
}
