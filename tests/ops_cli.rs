//! `--version` names the commit and build date; help has examples; shell
//! completions and the man page are generated from the same definitions.

use std::process::Command;

fn run(args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_qmoi"))
        .args(args)
        .output()
        .expect("run qmoi");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[test]
fn version_names_commit_and_build_date() {
    let (ok, out) = run(&["--version"]);
    assert!(ok);
    assert!(
        out.starts_with(&format!("qmoi {}", env!("CARGO_PKG_VERSION"))),
        "{out}"
    );
    assert!(
        out.contains("(commit ") && out.contains(", built "),
        "{out}"
    );
    let built = out.split(", built ").nth(1).unwrap_or("");
    assert!(
        built.starts_with("20") || built.starts_with("unknown"),
        "{out}"
    );
}

#[test]
fn every_subcommand_help_has_examples() {
    for sub in [
        "serve",
        "config",
        "audit",
        "memory",
        "slack",
        "email",
        "completions",
        "man",
    ] {
        let (ok, out) = run(&[sub, "--help"]);
        assert!(ok, "{sub}");
        assert!(out.contains("Examples:\n  qmoi "), "{sub} --help:\n{out}");
    }
}

#[test]
fn completions_and_man_page() {
    for (shell, marker) in [
        ("bash", "_qmoi()"),
        ("zsh", "#compdef qmoi"),
        ("fish", "complete -c qmoi"),
    ] {
        let (ok, out) = run(&["completions", shell]);
        assert!(ok && out.contains(marker), "{shell}: {out}");
        assert!(out.contains("serve"), "{shell} completes subcommands");
    }
    let (ok, out) = run(&["man"]);
    assert!(ok);
    assert!(out.contains(".TH qmoi 1"), "{out}");
    assert!(out.contains("serve"), "{out}");
}
