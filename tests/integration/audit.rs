//! The audit store end to end: the `audit` CLI on a real store, bad stores, and a crash test
//! that kills a writer with SIGKILL and checks every acknowledged record survived.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bridgewarden::audit::{ActionRecord, Actor, AuditLog, DecisionRecord, Entry, Outcome, Who};

use crate::support::run_in;

fn who(name: &str) -> Who {
    Who {
        network: "irc".into(),
        identity: format!("irc:account:{name}"),
        name: name.into(),
    }
}

fn decision(room: &str, sender: &str, rule: &str, text: &str) -> Entry {
    Entry::Decision(DecisionRecord {
        room: room.into(),
        sender: who(sender),
        text: text.into(),
        rules: vec![rule.into()],
        dry_run: vec![],
        actions: vec!["delete".into()],
        matches: serde_json::json!([]),
        policy: "sha256:test".into(),
        mode: "enforce".into(),
        strikes: 1.0,
        relayed: false,
        event_id: None,
        explanation: vec![],
    })
}

const DAY: i64 = 86_400_000;
const T0: i64 = 1_764_115_200_000; // 2025-11-26T00:00:00Z

/// A store with three days of records: decisions by troll and spammer, a mute with outcome.
fn populate(dir: &Path) -> (u64, u64) {
    let log = AuditLog::open(dir).unwrap();
    let mut case = 0;
    let mut mute = 0;
    for day in 0..3 {
        for i in 0..10 {
            let (who, rule) = if i % 2 == 0 {
                ("troll", "insults")
            } else {
                ("spammer", "flood")
            };
            let d = log
                .append_blocking(
                    decision("#chat", who, rule, &format!("message {day}-{i}")),
                    None,
                    T0 + day * DAY + i,
                )
                .unwrap();
            if day == 1 && i == 0 {
                case = d.case;
                let action = ActionRecord {
                    action: "mute".into(),
                    room: "#chat".into(),
                    target: who_of(who),
                    actor: Actor::Policy { rule: rule.into() },
                    duration: Some("10m".into()),
                    reason: Some("No insults".into()),
                    message: None,
                    outcome: Outcome::Pending,
                };
                mute = log
                    .append_blocking(Entry::Action(action), Some(case), T0 + day * DAY + 100)
                    .unwrap()
                    .id;
                let done = Entry::Outcome(bridgewarden::audit::OutcomeRecord {
                    action_id: mute,
                    action: "mute".into(),
                    outcome: Outcome::Failed {
                        reason: "no power".into(),
                    },
                    detail: None,
                });
                log.append_blocking(done, Some(case), T0 + day * DAY + 101)
                    .unwrap();
            }
        }
    }
    (case, mute)
}

fn who_of(name: &str) -> Who {
    who(name)
}

fn audit(dir: &Path, args: &[&str]) -> crate::support::Run {
    let mut full = vec!["audit", "--audit-dir", dir.to_str().unwrap()];
    full.extend_from_slice(args);
    run_in(dir, &full, b"")
}

#[test]
fn cli_lists_shows_exports_and_counts() {
    let dir = tempfile::tempdir().unwrap();
    let (case, mute) = populate(dir.path());

    let list = audit(dir.path(), &["list", "--user", "TROLL", "--limit", "4"]);
    assert_eq!(list.code, Some(0), "{}", list.stderr);
    let rows: Vec<&str> = list.stdout.lines().collect();
    assert_eq!(rows.len(), 5, "header + 4 rows:\n{}", list.stdout);
    assert!(rows[0].starts_with("      ID  TIME (UTC)"), "{}", rows[0]);
    assert!(
        rows[1..].iter().all(|r| r.contains("troll")),
        "{}",
        list.stdout
    );
    assert!(
        rows[1].contains("2025-11-28T00:00:00Z"),
        "newest first: {}",
        rows[1]
    );

    let json = audit(
        dir.path(),
        &[
            "list",
            "--rule",
            "flood",
            "--since",
            "2025-11-27",
            "--until",
            "2025-11-27T23:59:59Z",
            "--json",
            "--limit",
            "100",
        ],
    );
    let records: Vec<serde_json::Value> = json
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(records.len(), 5, "{}", json.stdout);
    assert!(records
        .iter()
        .all(|r| r["rules"][0] == "flood" && r["ts"].as_i64().unwrap() / DAY == T0 / DAY + 1));

    let actions = audit(
        dir.path(),
        &["list", "--action", "mute", "--type", "action", "--json"],
    );
    assert_eq!(actions.stdout.lines().count(), 1, "{}", actions.stdout);

    let show = audit(dir.path(), &["show", &mute.to_string()]);
    assert_eq!(show.code, Some(0), "{}", show.stderr);
    assert!(
        show.stdout.starts_with(&format!("case {case} (3 records)")),
        "{}",
        show.stdout
    );
    assert!(
        show.stdout.contains(&format!("> #{mute} ")),
        "{}",
        show.stdout
    );
    assert!(
        show.stdout.contains("mute 10m (rule insults) pending"),
        "{}",
        show.stdout
    );
    assert!(show.stdout.contains("failed: no power"), "{}", show.stdout);
    assert!(
        show.stdout.contains("text: \"message 1-0\""),
        "{}",
        show.stdout
    );

    let out = dir.path().join("export.jsonl");
    let export = audit(dir.path(), &["export", "--output", out.to_str().unwrap()]);
    assert_eq!(export.code, Some(0), "{}", export.stderr);
    let exported = std::fs::read_to_string(&out).unwrap();
    assert_eq!(exported.lines().count(), 32);
    let ids: Vec<u64> = exported
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["id"]
                .as_u64()
                .unwrap()
        })
        .collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "oldest first");
    let stdout_export = audit(dir.path(), &["export", "--since", "2025-11-28"]);
    assert_eq!(stdout_export.stdout.lines().count(), 10);

    let stats = audit(dir.path(), &["stats"]);
    assert_eq!(stats.code, Some(0), "{}", stats.stderr);
    assert!(
        stats
            .stdout
            .contains("2025-11-26  rule      insults                             5"),
        "{}",
        stats.stdout
    );
    assert!(
        stats
            .stdout
            .contains("2025-11-27  action    mute                                1"),
        "{}",
        stats.stdout
    );
    assert!(
        stats
            .stdout
            .contains("2025-11-27  failed    mute                                1"),
        "{}",
        stats.stdout
    );
}

#[test]
fn cli_refuses_impossible_filters_and_bad_input() {
    let dir = tempfile::tempdir().unwrap();
    populate(dir.path());
    let run = audit(
        dir.path(),
        &["list", "--since", "2025-11-28", "--until", "2025-11-26"],
    );
    assert_eq!(run.code, Some(1));
    assert!(
        run.stderr
            .contains("--since (2025-11-28T00:00:00Z) is after --until (2025-11-26T00:00:00Z)"),
        "{}",
        run.stderr
    );
    let run = audit(dir.path(), &["list", "--since", "yesterday-ish"]);
    assert_eq!(run.code, Some(1));
    assert!(
        run.stderr.contains("--since \"yesterday-ish\""),
        "{}",
        run.stderr
    );
    let run = audit(dir.path(), &["show", "999999"]);
    assert_eq!(run.code, Some(1));
    assert!(run.stderr.contains("no record 999999"), "{}", run.stderr);
    let empty = tempfile::tempdir().unwrap();
    let run = audit(empty.path(), &["list"]);
    assert_eq!(run.code, Some(1));
    assert!(run.stderr.contains("no audit store in"), "{}", run.stderr);
}

#[test]
fn cli_on_a_store_in_use_says_so_at_once() {
    let dir = tempfile::tempdir().unwrap();
    populate(dir.path());
    let _held = AuditLog::open(dir.path()).unwrap();
    let started = Instant::now();
    let run = audit(dir.path(), &["list"]);
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!(run.code, Some(1));
    assert!(
        run.stderr.contains("is in use by another process"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains(&dir.path().display().to_string()),
        "{}",
        run.stderr
    );
}

#[test]
fn cli_on_a_damaged_store_gives_a_clear_error_naming_the_path() {
    for damage in ["truncate-empty", "truncate-half", "garbage"] {
        let dir = tempfile::tempdir().unwrap();
        populate(dir.path());
        let db = dir.path().join("db");
        let len = std::fs::metadata(&db).unwrap().len();
        match damage {
            "truncate-empty" => std::fs::File::options()
                .write(true)
                .open(&db)
                .unwrap()
                .set_len(0)
                .unwrap(),
            "truncate-half" => std::fs::File::options()
                .write(true)
                .open(&db)
                .unwrap()
                .set_len(len / 2)
                .unwrap(),
            _ => {
                let mut bytes = std::fs::read(&db).unwrap();
                let mut x: u32 = 12345;
                for b in bytes
                    .iter_mut()
                    .skip(len as usize / 4)
                    .take(len as usize / 2)
                {
                    x ^= x << 13;
                    x ^= x >> 17;
                    x ^= x << 5;
                    *b = x as u8;
                }
                std::fs::write(&db, bytes).unwrap();
            }
        }
        let mut full = vec!["audit", "--audit-dir", dir.path().to_str().unwrap(), "list"];
        full.truncate(4);
        let started = Instant::now();
        let out = Command::new(env!("CARGO_BIN_EXE_bridgewarden"))
            .args(&full)
            .env("BRIDGEWARDEN_AUDIT_OPEN_TIMEOUT", "3")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "{damage}: took {:?}",
            started.elapsed()
        );
        assert_eq!(out.status.code(), Some(1), "{damage}: {stderr}");
        assert!(
            stderr.contains("is corrupted or truncated"),
            "{damage}: {stderr}"
        );
        assert!(
            stderr.contains(&dir.path().display().to_string()),
            "{damage}: {stderr}"
        );
        assert!(!stderr.contains("panicked"), "{damage}: {stderr}");
    }
}

/// The child half of the crash test: appends from 8 concurrent writers as fast as it can and
/// prints each id once `append` returned. Does nothing unless started by the crash test.
#[test]
fn crash_child() {
    let Ok(dir) = std::env::var("BRIDGEWARDEN_CRASH_CHILD_DIR") else {
        return;
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let log = Arc::new(AuditLog::open(Path::new(&dir)).unwrap());
        let mut tasks = Vec::new();
        for w in 0..8 {
            let log = log.clone();
            tasks.push(tokio::spawn(async move {
                for n in 0.. {
                    let text = format!("record {w}-{n}");
                    let a = log
                        .append(
                            decision("#crash", &format!("writer{w}"), "crash", &text),
                            None,
                            1000 + n,
                        )
                        .await
                        .unwrap();
                    println!("APPENDED {} {w} {n}", a.id);
                }
            }));
        }
        for t in tasks {
            let _ = t.await;
        }
    });
}

#[test]
fn every_acknowledged_record_survives_sigkill() {
    let mut seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos() as u64
        | 1;
    for round in 0..20 {
        let dir = tempfile::tempdir().unwrap();
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "audit::crash_child",
                "--exact",
                "--nocapture",
                "--test-threads",
                "1",
            ])
            .env("BRIDGEWARDEN_CRASH_CHILD_DIR", dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let reader = std::thread::spawn(move || {
            let mut acked = Vec::new();
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(rest) = line.strip_prefix("APPENDED ") {
                    let v: Vec<u64> = rest.split(' ').map(|x| x.parse().unwrap()).collect();
                    if acked.is_empty() {
                        let _ = tx.send(());
                    }
                    acked.push((v[0], v[1], v[2]));
                }
            }
            acked
        });
        // Wait for the first acknowledged append, then kill at a random moment.
        rx.recv_timeout(Duration::from_secs(30))
            .expect("the child appended nothing");
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        std::thread::sleep(Duration::from_millis(5 + seed % 300));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        let acked = reader.join().unwrap();
        assert!(!acked.is_empty());

        let log = AuditLog::open(dir.path())
            .unwrap_or_else(|e| panic!("round {round}: reopen failed: {e}"));
        for (id, w, n) in &acked {
            let record = log
                .get(*id)
                .unwrap_or_else(|e| panic!("round {round}: record {id}: {e}"));
            let Some(record) = record else {
                panic!(
                    "round {round}: acknowledged record {id} is missing ({} acked)",
                    acked.len()
                )
            };
            let Entry::Decision(d) = &record.entry else {
                panic!("round {round}: record {id} changed type")
            };
            assert_eq!(
                d.text,
                format!("record {w}-{n}"),
                "round {round}: record {id} is not intact"
            );
            assert_eq!(d.sender.name, format!("writer{w}"));
        }
        // The index was recovered too: each writer's acknowledged records are found by user.
        for w in 0..8u64 {
            let mine: std::collections::BTreeSet<u64> =
                acked.iter().filter(|a| a.1 == w).map(|a| a.0).collect();
            let q = bridgewarden::audit::Query {
                user: Some(format!("writer{w}")),
                ..Default::default()
            };
            let found: std::collections::BTreeSet<u64> =
                log.query(&q).unwrap().iter().map(|r| r.id).collect();
            assert!(
                found.is_superset(&mine),
                "round {round}: writer{w}'s records missing from the index"
            );
        }
        // The store takes new appends after the crash, with fresh ids.
        let max = acked.iter().map(|a| a.0).max().unwrap();
        let next = log
            .append_blocking(decision("#crash", "after", "crash", "after"), None, 1)
            .unwrap();
        assert!(next.id > max, "round {round}: id {} reused", next.id);
    }
}
