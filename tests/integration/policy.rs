//! The policy CLI contract, end to end through the binary: `policy check`, `test`, `eval`,
//! `explain`, `schema`, the shipped policies, and a corpus of broken policy files.

use std::fs;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::support::{bridgewarden, repo, run_in};

/// Every `.toml` file below `dir`, sorted.
fn toml_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir).expect("read dir") {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            out.extend(toml_files(&path));
        } else if path.extension().is_some_and(|e| e == "toml") {
            out.push(path);
        }
    }
    out.sort();
    out
}

fn rel(path: &Path) -> String {
    path.strip_prefix(repo())
        .unwrap_or(path)
        .display()
        .to_string()
}

#[test]
fn every_shipped_policy_checks_clean_and_passes_its_tests() {
    let files = toml_files(&repo().join("policies"));
    assert!(files.len() >= 4, "default plus three examples: {files:?}");
    for file in &files {
        let name = rel(file);
        let check = bridgewarden(&["policy", "check", "--strict", &name], b"");
        assert_eq!(check.code, Some(0), "{name}: {}", check.stderr);
        assert_eq!(check.stderr, "", "{name} has warnings");
        let test = bridgewarden(&["policy", "test", &name], b"");
        assert_eq!(
            test.code,
            Some(0),
            "{name}:\n{}{}",
            test.stdout,
            test.stderr
        );
        assert!(
            test.stdout.contains(" passed, 0 failed"),
            "{name}: {}",
            test.stdout
        );
    }
}

#[test]
fn the_default_policy_has_tests_in_every_language() {
    let text = fs::read_to_string(repo().join("policies/default.toml")).unwrap();
    let count = text.matches("[[test]]").count();
    assert!(count >= 20, "{count} tests");
    for sample in [
        "1d10t",
        "и у р о д",
        "احـــمق",
        "Scunthorpe",
        "احمقانه",
        "застрахуй",
    ] {
        assert!(text.contains(sample), "no test case with {sample}");
    }
}

/// Each broken file names its expected first error in its first line:
/// `# expect: LINE:COL: text` (in the file itself) or `# expect-file: PATH:LINE:COL: text`
/// (in a list file, relative to the policy).
#[test]
fn every_broken_policy_gets_a_located_error_and_exit_1() {
    let dir = repo().join("tests/policies/broken");
    let files = toml_files(&dir);
    assert!(files.len() >= 15, "{files:?}");
    for file in files {
        let name = rel(&file);
        let bytes = fs::read(&file).unwrap();
        let first =
            String::from_utf8_lossy(bytes.split(|b| *b == b'\n').next().unwrap()).into_owned();
        let expected = if let Some(rest) = first.strip_prefix("# expect: ") {
            format!("{name}:{rest}")
        } else if let Some(rest) = first.strip_prefix("# expect-file: ") {
            format!("{}/{rest}", rel(file.parent().unwrap()))
        } else {
            panic!("{name}: first line must say what to expect");
        };
        let (location, text) = split_expectation(&expected);
        let run = bridgewarden(&["policy", "check", &name], b"");
        assert_eq!(
            run.code,
            Some(1),
            "{name}: exit code (101 would be a panic)\n{}",
            run.stderr
        );
        let error = run
            .stderr
            .lines()
            .find(|l| l.contains(": error: "))
            .unwrap_or_else(|| panic!("{name}: no error line in {:?}", run.stderr));
        assert!(
            error.starts_with(&format!("{location}: error: ")),
            "{name}: expected {location}, got {error}"
        );
        assert!(error.contains(text), "{name}: expected {text:?} in {error}");
        // `policy test` and `policy eval` refuse the file the same way.
        assert_eq!(
            bridgewarden(&["policy", "test", &name], b"").code,
            Some(1),
            "{name}"
        );
        assert_eq!(
            bridgewarden(&["policy", "eval", &name], b"").code,
            Some(1),
            "{name}"
        );
    }
}

/// "path:LINE:COL: text" -> ("path:LINE:COL", "text").
fn split_expectation(s: &str) -> (&str, &str) {
    let mut colons = s.match_indices(':').map(|(i, _)| i);
    let (_, _, third) = (
        colons.next(),
        colons.next(),
        colons.next().expect("LINE:COL: text"),
    );
    (&s[..third], s[third + 1..].trim())
}

#[test]
fn generated_adversarial_files_are_refused_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    // A 10 MB file: refused by size, before parsing.
    let big = dir.path().join("big.toml");
    let mut text = String::from("[policy]\nname = \"big\"\nformat = 1\n[lists.x]\nterms = [\n");
    while text.len() < 10 * 1024 * 1024 {
        text.push_str("  \"abcdefghijklmnopqrstuvwxyz\",\n");
    }
    text.push_str("]\n");
    fs::write(&big, &text).unwrap();
    // Deeply nested conditions: refused by depth, not by a stack overflow.
    let deep = dir.path().join("deep.toml");
    let mut cond = String::from("{ has_link = true }");
    for _ in 0..200 {
        cond = format!("{{ not = {cond} }}");
    }
    fs::write(
        &deep,
        format!("[policy]\nname = \"d\"\nformat = 1\n[[rule]]\nid = \"r\"\nwhen = {cond}\n"),
    )
    .unwrap();
    // Binary garbage.
    let garbage = dir.path().join("garbage.toml");
    fs::write(
        &garbage,
        (0..4096u32)
            .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
            .collect::<Vec<u8>>(),
    )
    .unwrap();
    // A directory where a file should be.
    let not_file = dir.path().join("dir.toml");
    fs::create_dir(&not_file).unwrap();
    for (file, needle) in [
        (&big, "big.toml:1:1: error: file is"),
        (&deep, "deep.toml:"),
        (&garbage, "garbage.toml:"),
        (&not_file, "dir.toml:1:1: error: cannot read policy file"),
    ] {
        let run = run_in(
            dir.path(),
            &[
                "policy",
                "check",
                file.file_name().unwrap().to_str().unwrap(),
            ],
            b"",
        );
        assert_eq!(run.code, Some(1), "{file:?}: {}", run.stderr);
        assert!(run.stderr.contains(needle), "{file:?}: {}", run.stderr);
        assert!(
            run.stderr.lines().all(|l| l.starts_with("  hint:")
                || l.contains(": error: ")
                || l.contains(": warning: ")),
            "{}",
            run.stderr
        );
    }
}

#[test]
fn check_reports_every_error_not_just_the_first() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(
        dir.path().join("p.toml"),
        "[policy]\nname = \"x\"\nformat = 1\n[[rule]]\nid = \"a\"\nwhen = { list = \"nope\" }\nactions = [{ do = \"delete\" }]\n[[rule]]\nid = \"b\"\nwhen = { regex = \"(\" }\nactions = [{ do = \"delete\" }]\n",
    )
    .unwrap();
    let run = run_in(dir.path(), &["policy", "check", "p.toml"], b"");
    assert_eq!(run.code, Some(1));
    let errors: Vec<&str> = run
        .stderr
        .lines()
        .filter(|l| l.contains(": error: "))
        .collect();
    assert_eq!(errors.len(), 2, "{}", run.stderr);
    assert!(
        errors[0].starts_with("p.toml:6:17: error: unknown list"),
        "{}",
        errors[0]
    );
    assert!(
        errors[1].starts_with("p.toml:10:18: error: bad regex"),
        "{}",
        errors[1]
    );
}

#[test]
fn failing_inline_tests_are_reported_with_their_location() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(
        dir.path().join("p.toml"),
        r##"[policy]
name = "x"
format = 1
[lists.bad]
terms = ["idiot"]
[[rule]]
id = "r"
when = { list = "bad" }
actions = [{ do = "delete" }]
[[test]]
name = "wrong expectation"
events = [{ network = "irc", room = "#c", sender = "s", body = "hello" }]
expect = { rules = ["r"] }
"##,
    )
    .unwrap();
    let run = run_in(dir.path(), &["policy", "test", "p.toml"], b"");
    assert_eq!(run.code, Some(1));
    assert!(
        run.stdout
            .contains("FAIL p.toml:10:1: wrong expectation: rules: expected [\"r\"], got []"),
        "{}",
        run.stdout
    );
    assert!(run.stdout.contains("0 passed, 1 failed"), "{}", run.stdout);
}

fn eval(lines: &[&[u8]]) -> Vec<Value> {
    let input: Vec<u8> = lines.join(&b'\n');
    let run = bridgewarden(&["policy", "eval", "policies/default.toml"], &input);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    run.stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}")))
        .collect()
}

#[test]
fn eval_answers_every_line_in_order_and_carries_state() {
    let out = eval(&[
        br##"{"network":"irc","room":"#chat","sender":"troll","body":"you idiot","ts":1700000000000}"##,
        br##"{"network":"irc","room":"#chat","sender":"troll","body":"you moron","ts":1700000001000}"##,
        br##"{"network":"irc","room":"#chat","sender":"alice","body":"hello"}"##,
    ]);
    assert_eq!(out.len(), 3);
    assert_eq!(out[0]["rules"], serde_json::json!(["insults"]));
    assert_eq!(out[0]["strikes"], 1);
    assert_eq!(out[0]["relay"], false);
    assert_eq!(out[0]["actions"][0]["do"], "delete");
    assert_eq!(out[1]["strikes"], 2, "state carried from line to line");
    assert_eq!(out[1]["actions"][2]["rule"], "ladder");
    assert_eq!(out[2]["rules"], serde_json::json!([]));
    assert_eq!(out[2]["relay"], true);
    assert!(out[0]["policy"].as_str().unwrap().starts_with("sha256:"));
    let evidence = &out[0]["matches"][0]["evidence"][0];
    assert_eq!(
        (evidence["term"].as_str(), evidence["matched"].as_str()),
        (Some("idiot"), Some("idiot"))
    );
}

#[test]
fn eval_answers_garbage_with_errors_and_keeps_going() {
    let long = vec![b'x'; 2 * 1024 * 1024];
    let out = eval(&[
        b"not json at all",
        b"{\"network\":\"irc\"",
        b"\xff\xfe\xfd",
        b"[1,2,3]",
        br##"{"network":"irc","room":"#chat","sender":"x","body":"hi","colour":"red"}"##,
        br##"{"network":"carrier-pigeon","room":"#chat","sender":"x"}"##,
        br##"{"network":"irc","room":"#chat","sender":"x","after":"soon"}"##,
        &long,
        b"",
        br##"{"network":"irc","room":"#chat","sender":"troll","body":"idiot"}"##,
    ]);
    assert_eq!(out.len(), 9, "one answer per non-blank line: {out:#?}");
    for (i, o) in out[..8].iter().enumerate() {
        assert!(o["error"].is_string(), "line {}: {o}", i + 1);
        assert_eq!(o["line"], i + 1);
    }
    assert!(out[4]["error"]
        .as_str()
        .unwrap()
        .contains("unknown field `colour`"));
    assert!(out[7]["error"].as_str().unwrap().contains("longer than"));
    assert_eq!(
        out[8]["rules"],
        serde_json::json!(["insults"]),
        "processing went on"
    );
}

#[test]
fn explain_shows_the_normalised_text_and_where_it_matched() {
    let run = bridgewarden(
        &[
            "policy",
            "explain",
            "policies/default.toml",
            "--body",
            "you 1d10t",
            "--room",
            "#chat",
            "--sender",
            "troll",
        ],
        b"",
    );
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let out = run.stdout;
    assert!(out.contains("normalised: \"you idiot\""), "{out}");
    assert!(out.contains("insults") && out.contains("MATCHED"), "{out}");
    assert!(out.contains("term \"idiot\" matched \"1d10t\""), "{out}");
    assert!(
        out.contains("      you 1d10t\n") && out.contains("          ^^^^^\n"),
        "{out}"
    );
    assert!(out.contains("flood") && out.contains("no match"), "{out}");
    assert!(
        out.contains("raid") && out.contains("skipped: does not run on message events"),
        "{out}"
    );
    assert!(out.contains("decision:   delete, warn"), "{out}");
}

#[test]
fn every_subcommand_has_help() {
    for args in [
        vec!["--help"],
        vec!["policy", "--help"],
        vec!["policy", "check", "--help"],
        vec!["policy", "test", "--help"],
        vec!["policy", "eval", "--help"],
        vec!["policy", "explain", "--help"],
        vec!["policy", "schema", "--help"],
    ] {
        let run = bridgewarden(&args, b"");
        assert_eq!(run.code, Some(0), "{args:?}: {}", run.stderr);
        assert!(run.stdout.contains("Usage:"), "{args:?}");
    }
    assert_eq!(
        bridgewarden(&["policy", "check"], b"").code,
        Some(2),
        "usage errors exit 2"
    );
}

#[test]
fn the_schema_accepts_every_shipped_policy_and_rejects_unknown_keys() {
    let run = bridgewarden(&["policy", "schema"], b"");
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let schema: Value = serde_json::from_str(&run.stdout).unwrap();
    let validator = jsonschema::validator_for(&schema).expect("a valid JSON Schema");
    for file in toml_files(&repo().join("policies")) {
        let doc: Value = toml::from_str(&fs::read_to_string(&file).unwrap()).unwrap();
        let errors: Vec<String> = validator
            .iter_errors(&doc)
            .map(|e| format!("{} at {}", e, e.instance_path))
            .collect();
        assert!(errors.is_empty(), "{}: {errors:#?}", rel(&file));
    }
    let bad: Value = toml::from_str(
        "[policy]\nname = \"x\"\nformat = 1\n[[rule]]\nid = \"r\"\nwhen = { lst = \"x\" }\n",
    )
    .unwrap();
    assert!(!validator.is_valid(&bad), "unknown keys must not validate");
}
