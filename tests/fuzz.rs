//! Bounded fuzz runs of every input parser (issue #11), part of `cargo test`.
//!
//! Deterministic: fixed seeds, a fixed number of mutants per target
//! (`QMOI_FUZZ_ITERS`, default 3,000; set it higher for a longer run, e.g.
//! `QMOI_FUZZ_ITERS=2000000 cargo test --release --test fuzz`). A failure
//! names the input. Longer, coverage-guided runs: `fuzz/` (cargo-fuzz).

use qmoi::fuzz::{run, targets};

fn iterations() -> usize {
    std::env::var("QMOI_FUZZ_ITERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3_000)
}

#[test]
fn command_parser() {
    let n = run(0x11, iterations(), targets::COMMAND_SEEDS, targets::command);
    assert!(n >= iterations());
}

#[test]
fn suggested_answers_parse_to_their_command() {
    // Every combination of command, alias and decoration the data can pick.
    let mut ran = 0;
    for a in 0..=255u8 {
        for b in 0..16u8 {
            let data = [
                a,
                b,
                a ^ b,
                a.wrapping_mul(7),
                b,
                a.wrapping_add(b),
                b.wrapping_mul(3),
            ];
            targets::suggested(&data);
            ran += 1;
        }
    }
    let seeds: &[&[u8]] = &[b"\x00\x00\x00\x00\x00\x00\x00"];
    ran += run(0x12, iterations(), seeds, targets::suggested);
    assert!(ran > 4000);
}

#[test]
fn reply_extractor() {
    let mut seeds: Vec<&[u8]> = targets::COMMAND_SEEDS.to_vec();
    seeds.extend(targets::MIME_SEEDS);
    run(0x13, iterations(), &seeds, targets::reply);
}

#[test]
fn mime_intake() {
    run(0x14, iterations(), targets::MIME_SEEDS, targets::mime);
}

#[test]
fn gitlab_and_github_webhooks() {
    run(0x15, iterations(), targets::WEBHOOK_SEEDS, targets::gitlab);
    run(0x16, iterations(), targets::WEBHOOK_SEEDS, targets::github);
}

#[test]
fn slack_payloads() {
    run(0x17, iterations(), targets::SLACK_SEEDS, targets::slack);
}

/// The panic found by a mutation fuzzer (22 M executions), kept as a seed.
#[test]
fn dotted_capital_i_preamble() {
    targets::command("/qmo\u{130} retry".as_bytes());
    targets::command("\u{130}".repeat(40).as_bytes());
}
