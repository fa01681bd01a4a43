#!/usr/bin/env bash
# The test command (README "Test it"): installs what the tests need on a fresh
# Debian machine, then runs formatting, lints and the whole test suite.
# Safe to run repeatedly; installs only what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v cc >/dev/null 2>&1 || need_apt+=(gcc libc6-dev)
command -v git >/dev/null 2>&1 || need_apt+=(git)
# tests/deploy.rs: systemd-analyze verify/security on deploy/qmoi.service and
# an unprivileged start with setpriv (util-linux).
command -v systemd-analyze >/dev/null 2>&1 || need_apt+=(systemd)
command -v setpriv >/dev/null 2>&1 || need_apt+=(util-linux)
# tests/durability.rs checks the order of fsyncs and acknowledgements under strace.
command -v strace >/dev/null 2>&1 || need_apt+=(strace)
# The dashboard tests drive Debian's headless Chromium over WebDriver.
command -v chromium >/dev/null 2>&1 || need_apt+=(chromium)
command -v chromedriver >/dev/null 2>&1 || need_apt+=(chromium-driver)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "test.sh: installing ${need_apt[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need_apt[@]}"
fi
# The email tests run a private Postfix + Dovecot (deploy/mail/devmail.sh).
bash deploy/mail/devmail.sh install

if ! command -v cargo >/dev/null 2>&1; then
  echo "test.sh: cargo is missing; install Rust (rustup) first" >&2
  exit 1
fi

cargo fmt --all -- --check
cargo clippy --all-targets --locked -- -D warnings
cargo test --locked
