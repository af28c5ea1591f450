//! The `explain` binary as CI runs it: exit statuses of the replay gate, of failing rule
//! cases and of `lint --deny`, and what each prints.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

fn explain(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_explain")).args(args).current_dir(ROOT).output().unwrap()
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

/// A scratch directory of this test's own, removed first if an earlier run left it.
fn scratch(name: &str) -> PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

const REPLAY: &[&str] = &[
    "replay",
    "tests/replay/corpus",
    "--baseline",
    "rules/matrix.toml",
    "--candidate",
    "tests/replay/candidate.toml",
    "--shop",
    "corpus.myshopify.com",
];

#[test]
fn the_replay_gate_exits_1_over_its_limit_and_0_within() {
    let run = |extra: &[&str]| explain(&[REPLAY, extra].concat());
    // 3 of 40 orders change (7.5%).
    let within = run(&["--max-changed", "7.5%"]);
    assert_eq!(within.status.code(), Some(0), "{}", text(&within));
    assert!(text(&within).contains("gate: passed"), "{}", text(&within));
    let over = run(&["--max-changed", "2%"]);
    assert_eq!(over.status.code(), Some(1), "{}", text(&over));
    assert!(text(&over).contains("gate: FAILED\n  3 of 40 orders changed (7.5%), over the limit of 2.00%"));
    // Per transition: two orders newly held for fraud.
    let t = run(&["--max-transition", "ready-for-fulfilment->hold/fraud=2"]);
    assert_eq!(t.status.code(), Some(0), "{}", text(&t));
    let t = run(&["--max-transition", "ready-for-fulfilment->hold/fraud=1", "--max-changed", "10%"]);
    assert_eq!(t.status.code(), Some(1), "{}", text(&t));
    assert!(
        text(&t).contains("ready-for-fulfilment → hold/fraud: 2 orders (5.0%), over the limit of 1 orders")
    );
    // Nothing newly released to the warehouse: holds.
    assert_eq!(run(&["--max-transition", "*->ready-for-fulfilment=0"]).status.code(), Some(0));
    // Without a limit there is no gate.
    let plain = run(&["--changed-only"]);
    assert_eq!(plain.status.code(), Some(0));
    assert!(!text(&plain).contains("gate:"));
    assert!(!text(&plain).contains("#R1001"), "--changed-only leaves out unchanged orders");
    // JSON carries the same verdict.
    let j = run(&["--json", "--max-changed", "2"]);
    assert_eq!(j.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&j.stdout).unwrap();
    assert_eq!(v["changed"], 3);
    assert_eq!(v["gate"]["passed"], false);
    assert_eq!(
        v["transitions"][1],
        serde_json::json!({"from": "ready-for-fulfilment", "to": "hold/fraud", "orders": 2})
    );
}

#[test]
fn bad_replay_input_exits_2_and_says_why() {
    let cases: &[(&[&str], &str)] = &[
        (
            &["replay", "--baseline", "rules/matrix.toml", "--candidate", "rules/matrix.toml"],
            "needs a corpus",
        ),
        (&["replay", "tests/replay/corpus", "--candidate", "rules/matrix.toml"], "--baseline"),
        (&["replay", "tests/replay/corpus", "--baseline", "rules/matrix.toml"], "--candidate"),
        (&[REPLAY, &["--max-changed", "lots"]].concat(), "--max-changed lots"),
        (&[REPLAY, &["--max-transition", "ready->hold=1"]].concat(), "not an outcome"),
        (
            &[
                "replay",
                "/nonexistent/x.json",
                "--baseline",
                "rules/matrix.toml",
                "--candidate",
                "rules/matrix.toml",
            ],
            "/nonexistent/x.json",
        ),
        (
            &[
                "replay",
                "tests/replay/corpus",
                "--baseline",
                "tests/fixtures/order-paid.json",
                "--candidate",
                "rules/matrix.toml",
            ],
            "route matrix",
        ),
    ];
    for (args, words) in cases {
        let o = explain(args);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", text(&o));
        assert!(text(&o).contains(words), "{args:?}: {}", text(&o));
    }
}

#[test]
fn a_failing_case_exits_1_naming_the_case_its_line_and_the_rules_that_fired() {
    let ok = explain(&["test"]);
    assert_eq!(ok.status.code(), Some(0), "{}", text(&ok));
    assert!(text(&ok).contains("62 of 62 cases hold"), "{}", text(&ok));
    // The candidate matrix breaks the case that pins the 3,000.00 limit.
    let o = explain(&["test", "--matrix", "tests/replay/candidate.toml"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let src = std::fs::read_to_string(Path::new(ROOT).join("rules/tests.toml")).unwrap();
    let name = "a total of exactly 3,000.00 passes";
    let line = src.lines().position(|l| l.contains(name)).unwrap(); // the name is one below the header
    let want = format!(
        "FAIL rules/tests.toml line {line}: case \"{name}\" fails: outcome ready-for-fulfilment expected, got hold/fraud; fraud.total_over_limit must not fire and did (decided hold/fraud in lane default); rules fired: fraud.total_over_limit*\n"
    );
    assert!(text(&o).contains(&want), "{}\nwanted {want}", text(&o));
    assert!(text(&o).contains("of 62 cases hold"), "{}", text(&o));
    // The README shows this very output.
    let readme = std::fs::read_to_string(Path::new(ROOT).join("README.md")).unwrap();
    assert!(
        readme.contains(&String::from_utf8_lossy(&o.stdout).to_string()),
        "README's `explain test` sample is stale"
    );
}

#[test]
fn the_readme_replay_sample_is_the_output() {
    let o = explain(
        &[REPLAY, &["--max-changed", "2%", "--max-transition", "*->ready-for-fulfilment=0"]].concat(),
    );
    assert_eq!(o.status.code(), Some(1));
    let out = String::from_utf8(o.stdout).unwrap();
    let tail = &out[out.find("changed: ").unwrap()..];
    let readme = std::fs::read_to_string(Path::new(ROOT).join("README.md")).unwrap();
    assert!(readme.contains(tail), "README's replay sample is stale; it is now:\n{tail}");
}

#[test]
fn lint_warns_and_deny_fails() {
    let clean = explain(&["lint", "--deny"]);
    assert_eq!(clean.status.code(), Some(0), "{}", text(&clean));
    let dir = scratch("lint");
    let src = std::fs::read_to_string(Path::new(ROOT).join("rules/matrix.toml")).unwrap();
    let bad = src.replacen("wins_over = [\"eu\"]", "", 1);
    assert_ne!(bad, src);
    let path = dir.join("matrix.toml");
    std::fs::write(&path, bad).unwrap();
    let p = path.to_str().unwrap();
    let warn = explain(&["lint", "--matrix", p]);
    assert_eq!(warn.status.code(), Some(0), "{}", text(&warn));
    assert!(text(&warn).contains("warning: "), "{}", text(&warn));
    assert!(
        text(&warn).contains("lane \"wholesale\", match: an order can match both this lane and \"eu\""),
        "{}",
        text(&warn)
    );
    let deny = explain(&["lint", "--matrix", p, "--deny"]);
    assert_eq!(deny.status.code(), Some(1), "{}", text(&deny));
    assert!(text(&deny).contains("error: ") && text(&deny).contains("[overlap]"), "{}", text(&deny));
}

#[test]
fn intake_prints_the_readme_table() {
    let o = explain(&["intake"]);
    assert_eq!(o.status.code(), Some(0));
    let table = String::from_utf8(o.stdout).unwrap();
    let readme = std::fs::read_to_string(Path::new(ROOT).join("README.md")).unwrap();
    assert!(readme.contains(&table), "README's intake table is not `explain intake`'s output");
}
