//! Audit store tests: appends, every query (indexed answers agree with full scans),
//! retention, reopen, durable state, group commit, and bad stores.

use std::sync::Arc;

use super::*;
use crate::policy::Strike;

fn who(network: &str, identity: &str, name: &str) -> Who {
    Who {
        network: network.into(),
        identity: identity.into(),
        name: name.into(),
    }
}

fn troll() -> Who {
    who("irc", "irc:account:troll", "Troll")
}

fn decision(room: &str, sender: Who, rules: &[&str], actions: &[&str]) -> Entry {
    Entry::Decision(DecisionRecord {
        room: room.into(),
        sender,
        text: "you idiot".into(),
        rules: rules.iter().map(|s| s.to_string()).collect(),
        dry_run: vec![],
        actions: actions.iter().map(|s| s.to_string()).collect(),
        matches: serde_json::json!([]),
        policy: "sha256:test".into(),
        mode: "enforce".into(),
        strikes: 1.0,
        relayed: false,
        event_id: None,
        explanation: vec![],
    })
}

fn action(kind: &str, room: &str, target: Who, rule: &str) -> ActionRecord {
    ActionRecord {
        action: kind.into(),
        room: room.into(),
        target,
        actor: Actor::Policy { rule: rule.into() },
        duration: None,
        reason: None,
        message: None,
        outcome: Outcome::Pending,
    }
}

/// Opens a store whose index chunks are small, so tests cross many chunk boundaries (the
/// memtable, persisted chunks, and the recovery of an unpersisted tail all take part).
fn open(dir: &tempfile::TempDir) -> AuditLog {
    let options = Options {
        index_chunk_records: 37,
        ..Options::default()
    };
    AuditLog::open_with(dir.path(), options).expect("open audit store")
}

#[tokio::test]
async fn appends_get_ids_that_increase_and_cases_link_records() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(&dir);
    let d = log
        .append(
            decision("#chat", troll(), &["insults"], &["delete", "mute"]),
            None,
            1000,
        )
        .await
        .unwrap();
    assert_eq!(d.case, d.id, "a decision opens its own case");
    let pending = log
        .begin_action(
            action("mute", "#chat", troll(), "insults"),
            Some(d.case),
            1001,
        )
        .await
        .unwrap();
    assert!(pending.id > d.id);
    let done = log
        .finish_action(&pending, Outcome::Applied, None, 1002)
        .await
        .unwrap();
    assert!(done.id > pending.id);
    let other = log
        .append(decision("#chat", troll(), &["flood"], &[]), None, 1003)
        .await
        .unwrap();

    let case = log.by_case(d.case).unwrap();
    let kinds: Vec<&str> = case.iter().map(|r| r.entry.kind()).collect();
    assert_eq!(kinds, ["decision", "action", "outcome"]);
    let Entry::Outcome(o) = &case[2].entry else {
        panic!()
    };
    assert_eq!(
        (o.action_id, o.outcome.clone()),
        (pending.id, Outcome::Applied)
    );
    assert_eq!(log.by_case(other.case).unwrap().len(), 1);
    let mut mine = log.by_user("irc:account:troll", 10).unwrap();
    let pending_of = |rs: &[Record]| -> Vec<Outcome> {
        rs.iter()
            .filter_map(|r| match &r.entry {
                Entry::Action(a) => Some(a.outcome.clone()),
                _ => None,
            })
            .collect()
    };
    assert_eq!(pending_of(&mine), [Outcome::Pending], "as written");
    log.settle_outcomes(&mut mine).unwrap();
    assert_eq!(
        pending_of(&mine),
        [Outcome::Applied],
        "joined with its outcome"
    );
    assert_eq!(log.get(pending.id).unwrap().unwrap().v, SCHEMA_VERSION);
    assert_eq!(log.get(9999).unwrap(), None);
    let recent: Vec<u64> = log.recent(2).unwrap().iter().map(|r| r.id).collect();
    assert_eq!(recent, [other.id, done.id]);
}

/// A small varied history: 4 users, 3 rooms, several rules and actions, over 10 days.
async fn history(log: &AuditLog) {
    let users = [
        troll(),
        who("irc", "irc:nick:spammer", "spammer"),
        who("matrix", "matrix:@eve:hs", "@eve:hs"),
        who("matrix", "matrix:@bob:hs", "@bob:hs"),
    ];
    let rooms = ["#chat", "#dev", "!abc:hs"];
    let rules = ["insults", "flood", "links"];
    for i in 0..300i64 {
        let u = users[(i % 4) as usize].clone();
        let room = rooms[(i % 3) as usize];
        let rule = rules[(i % 5 % 3) as usize];
        let ts = 1_700_000_000_000 + i * 3_600_000;
        let d = log
            .append(decision(room, u.clone(), &[rule], &["delete"]), None, ts)
            .await
            .unwrap();
        if i % 7 == 0 {
            let p = log
                .begin_action(action("mute", room, u, rule), Some(d.case), ts + 1)
                .await
                .unwrap();
            let outcome = if i % 14 == 0 {
                Outcome::Failed {
                    reason: "no power".into(),
                }
            } else {
                Outcome::Applied
            };
            log.finish_action(&p, outcome, None, ts + 2).await.unwrap();
        }
    }
}

#[tokio::test]
async fn every_query_agrees_with_a_full_scan() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(&dir);
    history(&log).await;
    let t0 = 1_700_000_000_000i64;
    let q = |f: &dyn Fn(&mut Query)| {
        let mut q = Query::default();
        f(&mut q);
        q
    };
    let queries = vec![
        q(&|q| q.user = Some("irc:account:troll".into())),
        q(&|q| q.user = Some("TROLL".into())),
        q(&|q| q.user = Some("@eve:hs".into())),
        q(&|q| q.room = Some("#CHAT".into())),
        q(&|q| q.room = Some("!abc:hs".into())),
        q(&|q| q.rule = Some("flood".into())),
        q(&|q| q.action = Some("mute".into())),
        q(&|q| q.kind = Some("outcome".into())),
        q(&|q| {
            q.since = Some(t0 + 50 * 3_600_000);
            q.until = Some(t0 + 60 * 3_600_000);
        }),
        q(&|q| {
            q.user = Some("spammer".into());
            q.room = Some("#dev".into());
            q.rule = Some("links".into());
        }),
        q(&|q| {
            q.action = Some("mute".into());
            q.since = Some(t0 + 100 * 3_600_000);
            q.limit = 3;
        }),
        q(&|q| q.user = Some("nobody".into())),
    ];
    for query in queries {
        let indexed: Vec<u64> = log.query(&query).unwrap().iter().map(|r| r.id).collect();
        let scanned: Vec<u64> = log
            .query_by_scan(&query)
            .unwrap()
            .iter()
            .map(|r| r.id)
            .collect();
        assert_eq!(indexed, scanned, "{query:?}");
        assert!(
            indexed.windows(2).all(|w| w[0] > w[1]),
            "newest first: {query:?}"
        );
        if query.user.as_deref() != Some("nobody") {
            assert!(
                !indexed.is_empty(),
                "{query:?} found nothing; the test data is wrong"
            );
        }
    }
    let troll = log.by_user("troll", 5).unwrap();
    assert_eq!(troll.len(), 5);
    assert!(troll
        .iter()
        .all(|r| r.entry.users().iter().any(|w| w.name == "Troll")));
}

#[tokio::test]
async fn an_impossible_time_range_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(&dir);
    let err = log
        .query(&Query {
            since: Some(2000),
            until: Some(1000),
            ..Query::default()
        })
        .unwrap_err();
    assert!(
        err.to_string().contains("--since") && err.to_string().contains("is after --until"),
        "{err}"
    );
}

#[tokio::test]
async fn stats_count_rules_actions_and_failures_per_day() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(&dir);
    history(&log).await;
    let s = log.stats(None, None).unwrap();
    let total_rules: u64 = s.days.values().flat_map(|d| d.rules.values()).sum();
    let mutes: u64 = s.days.values().filter_map(|d| d.actions.get("mute")).sum();
    let failed: u64 = s.days.values().filter_map(|d| d.failed.get("mute")).sum();
    assert_eq!((total_rules, mutes, failed), (300, 43, 22));
    assert_eq!(
        s.days.len(),
        14,
        "300 hours from 22:13 on the 14th reach the 27th"
    );
    assert!(s
        .days
        .keys()
        .all(|d| d.len() == 10 && d.starts_with("2023-11-")));
}

#[tokio::test]
async fn retention_deletes_old_records_and_their_index_entries() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(&dir);
    history(&log).await;
    let keys_before = log.trees.log.len();
    let cutoff = 1_700_000_000_000 + 150 * 3_600_000;
    let removed = log.purge_before(cutoff, 17).unwrap();
    let left = log.len();
    assert_eq!(removed + left, 300 + 2 * 43);
    assert!(log
        .query_by_scan(&Query::default())
        .unwrap()
        .iter()
        .all(|r| r.ts >= cutoff));
    // No index chunk is left whose every posting is older than the cutoff.
    for item in log.trees.index.iter() {
        let (k, _) = item.unwrap();
        if let Some(ts) = index::chunk_newest_ts(&k).filter(|_| index::CHUNK_TAGS.contains(&k[0])) {
            assert!(ts >= cutoff, "stale chunk {k:?}");
        }
    }
    assert!(log.trees.log.len() < keys_before);
    // Queries still agree.
    let q = Query {
        user: Some("troll".into()),
        ..Query::default()
    };
    assert_eq!(log.query(&q).unwrap(), log.query_by_scan(&q).unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_runs_in_the_background_while_appends_go_on() {
    let dir = tempfile::tempdir().unwrap();
    let log = Arc::new(open(&dir));
    // Records from long ago, then retention every 10 ms while fresh appends continue.
    for i in 0..200 {
        log.append(decision("#chat", troll(), &["old"], &[]), None, 1000 + i)
            .await
            .unwrap();
    }
    log.start_retention(
        std::time::Duration::from_secs(3600),
        std::time::Duration::from_millis(10),
    );
    for _ in 0..100 {
        log.append(decision("#chat", troll(), &["new"], &[]), None, now_ms())
            .await
            .unwrap();
    }
    for _ in 0..200 {
        if log.len() == 100 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert_eq!(log.len(), 100, "old records purged, new ones kept");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_appends_share_flushes() {
    let dir = tempfile::tempdir().unwrap();
    let log = Arc::new(open(&dir));
    let before = log.commits();
    let mut tasks = Vec::new();
    for w in 0..16 {
        let log = log.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..32 {
                log.append(
                    decision("#chat", troll(), &["flood"], &[]),
                    None,
                    w * 1000 + i,
                )
                .await
                .unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let flushes = log.commits() - before;
    assert_eq!(log.len(), 512);
    assert!(
        flushes < 512 / 2,
        "512 appends took {flushes} flushes: no group commit"
    );
    // The naive path flushes every record.
    let before = log.commits();
    for i in 0..10 {
        log.append_flush_each(decision("#chat", troll(), &["x"], &[]), None, i)
            .await
            .unwrap();
    }
    assert_eq!(log.commits() - before, 10);
}

#[tokio::test]
async fn records_and_ids_survive_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let last = {
        let log = open(&dir);
        history(&log).await;
        log.recent(1).unwrap()[0].id
    };
    let log = open(&dir);
    assert_eq!(log.len(), 300 + 2 * 43);
    let next = log
        .append(decision("#chat", troll(), &["x"], &[]), None, 1)
        .await
        .unwrap();
    assert_eq!(next.id, last + 1, "ids continue after the highest on disk");
}

#[tokio::test]
async fn scheduled_actions_that_fell_due_while_down_are_due_on_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let now = 1_700_000_000_000;
    let (soon, later) = {
        let log = open(&dir);
        let s = |due, kind| Scheduled {
            id: 0,
            due,
            kind,
            network: "libera".into(),
            room: "#chat".into(),
            target: "troll!*@*".into(),
            case: 7,
        };
        let soon = log
            .schedule(s(now + 60_000, ScheduledKind::Unmute))
            .await
            .unwrap();
        let later = log
            .schedule(s(now + 86_400_000, ScheduledKind::Unban))
            .await
            .unwrap();
        assert!(log.due(now).unwrap().is_empty());
        (soon, later)
        // The process "goes down" here: the store is dropped.
    };
    let log = open(&dir);
    // Back an hour later: the unmute fell due while down, the unban is still ahead.
    let due = log.due(now + 3_600_000).unwrap();
    assert_eq!(due.len(), 1);
    assert_eq!(
        (due[0].id, due[0].kind, due[0].target.as_str()),
        (soon, ScheduledKind::Unmute, "troll!*@*")
    );
    assert!(log.unschedule(soon).await.unwrap());
    assert!(!log.unschedule(soon).await.unwrap());
    assert!(log.due(now + 3_600_000).unwrap().is_empty());
    assert_eq!(
        log.scheduled()
            .unwrap()
            .iter()
            .map(|s| s.id)
            .collect::<Vec<_>>(),
        [later]
    );
}

#[tokio::test]
async fn strikes_persist_per_identity() {
    let dir = tempfile::tempdir().unwrap();
    {
        let log = open(&dir);
        for (i, id) in ["irc:account:troll", "matrix:@eve:hs", "irc:account:troll"]
            .iter()
            .enumerate()
        {
            log.add_strike(
                id,
                Strike {
                    ts: 1000 + i as i64,
                    weight: 1.0,
                    rule: "insults".into(),
                },
            )
            .await
            .unwrap();
        }
        // Same millisecond twice: both kept.
        log.add_strike(
            "irc:account:troll",
            Strike {
                ts: 1002,
                weight: 2.0,
                rule: "slurs".into(),
            },
        )
        .await
        .unwrap();
    }
    let log = open(&dir);
    let troll = log.strikes("irc:account:troll").unwrap();
    assert_eq!(troll.iter().map(|s| s.weight).sum::<f64>(), 4.0);
    assert_eq!(troll.len(), 3);
    let all = log.all_strikes().unwrap();
    assert_eq!(
        all.iter()
            .map(|(id, v)| (id.as_str(), v.len()))
            .collect::<Vec<_>>(),
        [("irc:account:troll", 3), ("matrix:@eve:hs", 1)]
    );
    assert_eq!(log.prune_strikes(1001).unwrap(), 1);
    assert_eq!(log.clear_strikes("irc:account:troll").await.unwrap(), 2);
    assert!(log.strikes("irc:account:troll").unwrap().is_empty());
    assert_eq!(log.strikes("matrix:@eve:hs").unwrap().len(), 1);
}

#[test]
fn a_store_in_use_gives_a_clear_error_not_a_hang() {
    let dir = tempfile::tempdir().unwrap();
    let _first = open(&dir);
    let started = std::time::Instant::now();
    let err = AuditLog::open(dir.path())
        .err()
        .expect("second open must fail");
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
    assert!(matches!(err, AuditError::Locked { .. }), "{err}");
    assert!(
        err.to_string().contains(&dir.path().display().to_string()),
        "{err}"
    );
}

#[test]
fn a_truncated_store_gives_a_clear_error_naming_the_path() {
    let dir = tempfile::tempdir().unwrap();
    {
        let log = open(&dir);
        for i in 0..100 {
            log.append_blocking(decision("#chat", troll(), &["x"], &[]), None, i)
                .unwrap();
        }
    }
    let db = dir.path().join("db");
    let len = std::fs::metadata(&db).unwrap().len();
    for cut in [0, 100, len / 3, len / 2, len * 3 / 4] {
        let f = std::fs::OpenOptions::new().write(true).open(&db).unwrap();
        f.set_len(cut).unwrap();
        drop(f);
        let err = AuditLog::open(dir.path())
            .err()
            .expect("a truncated store must not open");
        assert!(
            matches!(err, AuditError::Corrupt { .. }),
            "cut at {cut}: {err}"
        );
        assert!(
            err.to_string().contains(&dir.path().display().to_string()),
            "{err}"
        );
    }
}

#[tokio::test]
async fn actions_without_an_outcome_are_found_across_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let (old, done, open_kick, open_ban) = {
        let log = open(&dir);
        let begin = |kind: &'static str, ts: i64| {
            let log = &log;
            async move {
                log.begin_action(action(kind, "#chat", troll(), "r"), None, ts)
                    .await
                    .unwrap()
            }
        };
        // Too old to be asked about, finished, and two the daemon never finished.
        let old = begin("warn", 1_000).await;
        let done = begin("mute", 10_000).await;
        log.finish_action(&done, Outcome::Applied, None, 10_001)
            .await
            .unwrap();
        let open_kick = begin("kick", 10_002).await;
        let open_ban = begin("ban", 10_003).await;
        // Many records in between: the answer comes across index chunks.
        for i in 0..100 {
            log.append(
                decision("#chat", troll(), &["flood"], &[]),
                None,
                10_004 + i,
            )
            .await
            .unwrap();
        }
        log.flush().await.unwrap();
        (old, done, open_kick, open_ban)
    };
    let log = open(&dir);
    let ids = |rs: Vec<Record>| rs.iter().map(|r| r.id).collect::<Vec<_>>();
    assert_eq!(
        ids(log.unfinished_actions(5_000, 10).unwrap()),
        [open_kick.id, open_ban.id],
        "oldest first; neither the finished one ({}) nor the old one ({})",
        done.id,
        old.id
    );
    assert_eq!(
        ids(log.unfinished_actions(0, 1).unwrap()),
        [old.id],
        "limit"
    );
    // Once given an outcome, they are no longer unfinished.
    for p in [&open_kick, &open_ban] {
        log.finish_action(p, Outcome::Interrupted, None, 20_000)
            .await
            .unwrap();
    }
    assert!(log.unfinished_actions(5_000, 10).unwrap().is_empty());
    let mut settled = vec![log.get(open_kick.id).unwrap().unwrap()];
    log.settle_outcomes(&mut settled).unwrap();
    let Entry::Action(a) = &settled[0].entry else {
        panic!()
    };
    assert_eq!(a.outcome, Outcome::Interrupted);
    assert!(settled[0].entry.summary().contains("interrupted"));
}
