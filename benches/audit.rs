//! Audit store throughput and query speed.
//!
//! Group `audit`:
//! - `append_durable`: 1,024 records appended by 16 concurrent writers through the real API,
//!   each append awaited until durable, indexes included (group commit);
//! - `baseline_sled_flush`: the same records' bytes inserted into a bare sled tree in batches
//!   of 16 with one flush per batch: the floor for that durability;
//! - `append_flush_each`: the same 1,024 records through the naive path that flushes per
//!   record;
//! - `query_user`: one user's whole history from a store of 1,000,000 records (by index);
//! - `scan_all`: the same question answered by reading every record.
//!
//! Under `cargo test` (no `--bench` flag) the big store has 10,000 records so the suite stays
//! fast; the figures come from `cargo bench --bench audit`.

use std::sync::Arc;

use bridgewarden::audit::{AuditLog, DecisionRecord, Entry, Query, Record, Who, SCHEMA_VERSION};
use criterion::{criterion_group, criterion_main, Criterion};

const RECORDS: usize = 1024;
const WRITERS: usize = 16;
const USERS: usize = 2_000;

fn entry(i: usize) -> Entry {
    let user = i % USERS;
    Entry::Decision(DecisionRecord {
        room: format!("#room{}", i % 50),
        sender: Who {
            network: "irc".into(),
            identity: format!("irc:account:user{user}"),
            name: format!("user{user}"),
        },
        text: format!("message number {i} with some ordinary words in it, as chat messages go"),
        rules: vec![["insults", "flood", "links", "shouting"][i % 4].into()],
        dry_run: vec![],
        actions: vec!["delete".into(), "warn".into()],
        matches: serde_json::json!([{"rule": "insults", "dry_run": false, "evidence": [{"kind": "term", "list": "insults-en", "term": "idiot", "matched": "1d10t", "start": 4, "end": 9}]}]),
        policy: "sha256:5e1f6a4b2c3d4e5f60718293a4b5c6d7e8f90112233445566778899aabbccdd".into(),
        mode: "enforce".into(),
        strikes: 1.0,
        relayed: false,
        event_id: None,
        explanation: vec![],
    })
}

fn bench(c: &mut Criterion) {
    let full = std::env::args().any(|a| a == "--bench");
    let big = if full { 1_000_000 } else { 10_000 };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let entries: Vec<Entry> = (0..RECORDS).map(entry).collect();
    let mut group = c.benchmark_group("audit");
    group.sample_size(20);

    let dir = tempfile::tempdir().unwrap();
    let log = Arc::new(AuditLog::open(dir.path()).unwrap());
    let append = |log: &Arc<AuditLog>, flush_each: bool| {
        rt.block_on(async {
            let mut tasks = Vec::with_capacity(WRITERS);
            for w in 0..WRITERS {
                let log = log.clone();
                let mine: Vec<Entry> = entries.iter().skip(w).step_by(WRITERS).cloned().collect();
                tasks.push(tokio::spawn(async move {
                    for e in mine {
                        if flush_each {
                            log.append_flush_each(e, None, 1_700_000_000_000)
                                .await
                                .unwrap();
                        } else {
                            log.append(e, None, 1_700_000_000_000).await.unwrap();
                        }
                    }
                }));
            }
            for t in tasks {
                t.await.unwrap();
            }
        })
    };
    group.bench_function("append_durable", |b| b.iter(|| append(&log, false)));
    group.bench_function("append_flush_each", |b| b.iter(|| append(&log, true)));
    drop(log);

    // The floor: the same records' bytes, batches of 16, one flush per batch, no indexes.
    let bytes: Vec<Vec<u8>> = entries
        .iter()
        .enumerate()
        .map(|(i, e)| {
            serde_json::to_vec(&Record {
                v: SCHEMA_VERSION,
                id: i as u64,
                case: i as u64,
                ts: 0,
                entry: e.clone(),
            })
            .unwrap()
        })
        .collect();
    let bare_dir = tempfile::tempdir().unwrap();
    let db = sled::Config::new()
        .path(bare_dir.path())
        .mode(sled::Mode::HighThroughput)
        .flush_every_ms(None)
        .open()
        .unwrap();
    let tree = db.open_tree("log").unwrap();
    let mut next: u64 = 0;
    group.bench_function("baseline_sled_flush", |b| {
        b.iter(|| {
            for chunk in bytes.chunks(16) {
                let mut batch = sled::Batch::default();
                for rec in chunk {
                    next += 1;
                    batch.insert(&next.to_be_bytes(), rec.as_slice());
                }
                tree.apply_batch(batch).unwrap();
                db.flush().unwrap();
            }
        })
    });

    // A big store for queries, built only when a query benchmark runs.
    let big_dir = tempfile::tempdir().unwrap();
    let store: std::cell::OnceCell<Arc<AuditLog>> = std::cell::OnceCell::new();
    let big_store = || {
        store
            .get_or_init(|| {
                let log = Arc::new(AuditLog::open(big_dir.path()).unwrap());
                let started = std::time::Instant::now();
                rt.block_on(async {
                    let mut tasks = Vec::new();
                    for w in 0..64 {
                        let log = log.clone();
                        tasks.push(tokio::spawn(async move {
                            for i in (w..big).step_by(64) {
                                log.append(entry(i), None, 1_700_000_000_000 + i as i64 * 1000).await.unwrap();
                            }
                        }));
                    }
                    for t in tasks {
                        t.await.unwrap();
                    }
                    log.flush().await.unwrap();
                });
                let size = log.size_on_disk().unwrap();
                eprintln!(
                    "audit store: {big} records written in {:?}; {size} bytes on disk, {} bytes per record",
                    started.elapsed(),
                    size / big as u64
                );
                log
            })
            .clone()
    };
    let q = Query {
        user: Some("irc:account:user1234".into()),
        ..Query::default()
    };
    let expected = big / USERS;
    group.bench_function("query_user", |b| {
        let log = big_store();
        b.iter(|| {
            let r = log.query(&q).unwrap();
            assert_eq!(r.len(), expected);
        })
    });
    group.sample_size(10);
    group.bench_function("scan_all", |b| {
        let log = big_store();
        b.iter(|| {
            let r = log.query_by_scan(&q).unwrap();
            assert_eq!(r.len(), expected);
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
