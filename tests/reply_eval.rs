//! qmoi's own reply evaluation set (tests/eval/): every reply is read as
//! the live path reads it; no command may run where none was meant.

use qmoi::channels::email::eval;
use std::path::Path;

#[test]
fn evaluation_set_has_no_false_positives() {
    let registry = qmoi::command::Registry::builtin().expect("commands");
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/eval");
    let report = eval::run_set(&dir, &registry).expect("the set reads");
    assert!(report.total >= 60 && report.clients >= 12 && report.languages >= 8);
    let wrong: Vec<String> = report
        .outcomes
        .iter()
        .filter(|o| !o.ok)
        .map(|o| format!("{}: {}", o.file, o.note))
        .collect();
    assert_eq!(report.false_positives, 0, "{wrong:#?}");
    assert_eq!(report.correct, report.total, "{wrong:#?}");
}
