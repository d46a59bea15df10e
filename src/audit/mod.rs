//! The audit log and durable moderation state, in sled. The only module that knows sled.
//!
//! Every decision that is not a plain allow, every action (with its outcome), every policy
//! load and every moderator command is appended as a versioned [`Record`]. Appends go through
//! one writer thread that commits in groups: all appends waiting at a moment share one sled
//! batch and one flush, and each `append(..).await` returns only once its record is durable.
//! The daemon's write-before-act discipline is [`AuditLog::begin_action`] (durable `Pending`
//! record) -> execute -> [`AuditLog::finish_action`] (outcome record).
//!
//! Records and their index entries (user, room, rule, action kind, time, case) live in one tree
//! and are written in one atomic batch, so queries never scan the whole log and an index entry
//! never points at a missing record. Strikes and scheduled actions (timed unmutes and unbans)
//! live in trees of their own and survive restarts. Retention deletes old records with their
//! index entries in small batches on a background thread.
//!
//! Must not decide anything: it stores and answers what the daemon and the CLI ask.

pub mod record;

mod index;
mod marker;
mod query;
mod state;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc, Condvar, Mutex, RwLock};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub use query::{format_ts as record_time, Query, Stats};
pub use record::{
    ActionRecord, Actor, CommandRecord, DecisionRecord, Entry, Outcome, OutcomeRecord,
    PolicyLoadRecord, Record, Who, SCHEMA_VERSION,
};
pub use state::{Scheduled, ScheduledKind};

use index::Memtable;
use writer::{Op, Prepared};

/// Errors of the audit store. Every variant names the path it is about where there is one.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("audit store {path} is in use by another process (only one may open it at a time)")]
    Locked { path: PathBuf },
    #[error("audit store {path} is corrupted or truncated: {reason}")]
    Corrupt { path: PathBuf, reason: String },
    #[error("cannot open audit store {path}: {reason}")]
    Open { path: PathBuf, reason: String },
    #[error("audit store {path}: {reason}")]
    Io { path: PathBuf, reason: String },
    #[error("audit record {id} in {path} cannot be read: {reason}")]
    BadRecord {
        path: PathBuf,
        id: u64,
        reason: String,
    },
    #[error("the audit writer has stopped; no more records can be written")]
    WriterGone,
    #[error("{0}")]
    BadQuery(String),
}

pub type Result<T, E = AuditError> = std::result::Result<T, E>;

/// How to open the store.
#[derive(Debug, Clone)]
pub struct Options {
    /// How long opening may take before the store is declared corrupt. sled can spin forever
    /// recovering a file with garbage in it; a deadline turns that into an error.
    pub open_timeout: Duration,
    /// Most records committed together in one flush.
    pub max_group: usize,
    /// Index postings are kept in memory and persisted as chunks after this many records...
    pub index_chunk_records: usize,
    /// ...or when the oldest is this old.
    pub index_chunk_age: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            open_timeout: Duration::from_secs(60),
            max_group: 1024,
            index_chunk_records: index::CHUNK_RECORDS,
            index_chunk_age: index::CHUNK_AGE,
        }
    }
}

/// What an append returned: the record's id and its case.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    pub id: u64,
    pub case: u64,
}

/// An action recorded as pending, to be completed with [`AuditLog::finish_action`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingAction {
    pub id: u64,
    pub case: u64,
    pub action: String,
}

/// The sled handles every part of the store shares.
#[derive(Clone)]
pub(crate) struct Trees {
    pub db: sled::Db,
    pub log: sled::Tree,
    /// Index chunks and the index watermark (apart from the log, so record appends never
    /// share pages with large index values).
    pub index: sled::Tree,
    pub strikes: sled::Tree,
    pub schedule: sled::Tree,
    pub path: PathBuf,
    /// How many flushes the writer has done (group commit shares them).
    pub commits: Arc<std::sync::atomic::AtomicU64>,
}

impl Trees {
    pub(crate) fn io(&self, e: sled::Error) -> AuditError {
        AuditError::Io {
            path: self.path.clone(),
            reason: e.to_string(),
        }
    }
}

/// The audit log and moderation state of one data directory.
pub struct AuditLog {
    trees: Trees,
    /// Postings of the records not yet in index chunks (shared with the writer).
    memtable: Arc<RwLock<Memtable>>,
    ops: mpsc::Sender<Op>,
    /// The writer and flusher threads.
    threads: Option<(JoinHandle<()>, JoinHandle<()>)>,
    retention: Mutex<Option<Retention>>,
}

struct Retention {
    stop: Arc<(Mutex<bool>, Condvar)>,
    thread: JoinHandle<()>,
}

/// The current time as unix milliseconds.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

impl AuditLog {
    /// Opens (or creates) the store in `dir`.
    pub fn open(dir: &Path) -> Result<Self> {
        Self::open_with(dir, Options::default())
    }

    pub fn open_with(dir: &Path, options: Options) -> Result<Self> {
        let path = dir.to_path_buf();
        // A store released a moment ago (by this process or one shutting down) can stay locked
        // while sled finishes its background work: retry briefly before calling it in use.
        let started = std::time::Instant::now();
        let (trees, high_water, marker) = loop {
            match open_trees(&path, options.open_timeout) {
                Err(AuditError::Locked { .. }) if started.elapsed() < LOCK_RETRY => {
                    std::thread::sleep(Duration::from_millis(50));
                }
                other => break other?,
            }
        };
        let next_id = high_water + 1;
        let memtable = Arc::new(RwLock::new(recover_index(&trees)?));
        let (tx, rx) = mpsc::channel();
        let threads = writer::start(
            trees.clone(),
            next_id,
            options.max_group.max(1),
            marker,
            memtable.clone(),
            (options.index_chunk_records.max(1), options.index_chunk_age),
            rx,
        )
        .map_err(|e| AuditError::Open {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        Ok(AuditLog {
            trees,
            memtable,
            ops: tx,
            threads: Some(threads),
            retention: Mutex::new(None),
        })
    }

    pub fn path(&self) -> &Path {
        &self.trees.path
    }

    async fn submit<T>(
        &self,
        make: impl FnOnce(tokio::sync::oneshot::Sender<Result<T>>) -> Op,
    ) -> Result<T> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.ops
            .send(make(tx))
            .map_err(|_| AuditError::WriterGone)?;
        rx.await.map_err(|_| AuditError::WriterGone)?
    }

    fn submit_blocking<T>(
        &self,
        make: impl FnOnce(tokio::sync::oneshot::Sender<Result<T>>) -> Op,
    ) -> Result<T> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.ops
            .send(make(tx))
            .map_err(|_| AuditError::WriterGone)?;
        rx.blocking_recv().map_err(|_| AuditError::WriterGone)?
    }

    /// Appends a record at `ts`; returns once it is durable. `case` links it to the record
    /// that opened its case (none: it opens a case of its own).
    pub async fn append(&self, entry: Entry, case: Option<u64>, ts: i64) -> Result<Appended> {
        let record = prepare(entry, case, ts);
        self.submit(|reply| Op::Append {
            record,
            group: true,
            reply,
        })
        .await
    }

    /// [`AuditLog::append`] for code outside an async runtime (the CLI, tests).
    pub fn append_blocking(&self, entry: Entry, case: Option<u64>, ts: i64) -> Result<Appended> {
        let record = prepare(entry, case, ts);
        self.submit_blocking(|reply| Op::Append {
            record,
            group: true,
            reply,
        })
    }

    /// The same as [`AuditLog::append`] but flushing for this record alone, never sharing the
    /// flush with other appends: the naive path, kept to measure what group commit saves.
    pub async fn append_flush_each(
        &self,
        entry: Entry,
        case: Option<u64>,
        ts: i64,
    ) -> Result<Appended> {
        let record = prepare(entry, case, ts);
        self.submit(|reply| Op::Append {
            record,
            group: false,
            reply,
        })
        .await
    }

    /// Write-before-act, step one: records `action` as pending and returns once that record
    /// is durable. Execute the action only after this returned.
    pub async fn begin_action(
        &self,
        mut action: ActionRecord,
        case: Option<u64>,
        ts: i64,
    ) -> Result<PendingAction> {
        action.outcome = Outcome::Pending;
        let kind = action.action.clone();
        let a = self.append(Entry::Action(action), case, ts).await?;
        Ok(PendingAction {
            id: a.id,
            case: a.case,
            action: kind,
        })
    }

    /// Write-before-act, step three: records how the action ended.
    pub async fn finish_action(
        &self,
        pending: &PendingAction,
        outcome: Outcome,
        detail: Option<String>,
        ts: i64,
    ) -> Result<Appended> {
        let entry = Entry::Outcome(OutcomeRecord {
            action_id: pending.id,
            action: pending.action.clone(),
            outcome,
            detail,
        });
        self.append(entry, Some(pending.case), ts).await
    }

    /// Waits until everything submitted before is durable.
    pub async fn flush(&self) -> Result<()> {
        self.submit(|reply| Op::Flush { reply }).await
    }

    /// One record by id.
    pub fn get(&self, id: u64) -> Result<Option<Record>> {
        match self
            .trees
            .log
            .get(record::record_key(id))
            .map_err(|e| self.trees.io(e))?
        {
            None => Ok(None),
            Some(bytes) => self.decode(id, &bytes).map(Some),
        }
    }

    /// The stored bytes of a record (JSON), exactly as written.
    pub fn get_raw(&self, id: u64) -> Result<Option<Vec<u8>>> {
        Ok(self
            .trees
            .log
            .get(record::record_key(id))
            .map_err(|e| self.trees.io(e))?
            .map(|b| b.to_vec()))
    }

    fn decode(&self, id: u64, bytes: &[u8]) -> Result<Record> {
        serde_json::from_slice(bytes).map_err(|e| AuditError::BadRecord {
            path: self.trees.path.clone(),
            id,
            reason: e.to_string(),
        })
    }

    /// The `n` newest records, newest first.
    pub fn recent(&self, n: usize) -> Result<Vec<Record>> {
        let mut out = Vec::with_capacity(n.min(1024));
        for item in self.trees.log.scan_prefix([record::K_RECORD]).rev().take(n) {
            let (k, v) = item.map_err(|e| self.trees.io(e))?;
            let id = record::id_of_record_key(&k).unwrap_or(0);
            out.push(self.decode(id, &v)?);
        }
        Ok(out)
    }

    /// Every record of a case, oldest first.
    pub fn by_case(&self, case: u64) -> Result<Vec<Record>> {
        let mut out: Vec<Record> = self.get(case)?.into_iter().collect();
        let name = index::name(index::T_CASE, &format!("{case:016x}"));
        for (_, id) in query::postings(self, &name, None, None)? {
            if let Some(r) = self.get(id)? {
                out.push(r);
            }
        }
        out.sort_by_key(|r| r.id);
        out.dedup_by_key(|r| r.id);
        Ok(out)
    }

    /// Brings each pending action in `records` up to date with how it ended. An action is
    /// written as `Pending` before it runs (write-before-act) and its outcome is a later record
    /// of the same case; a reader who wants "what happened" wants the two joined.
    pub fn settle_outcomes(&self, records: &mut [Record]) -> Result<()> {
        for r in records.iter_mut() {
            let Entry::Action(a) = &mut r.entry else {
                continue;
            };
            if a.outcome != Outcome::Pending {
                continue;
            }
            let last = self
                .by_case(r.case)?
                .into_iter()
                .rev()
                .find_map(|x| match x.entry {
                    Entry::Outcome(o) if o.action_id == r.id => Some(o.outcome),
                    _ => None,
                });
            if let Some(outcome) = last {
                a.outcome = outcome;
            }
        }
        Ok(())
    }

    /// Actions recorded since `since` (unix ms) that have no outcome: the daemon stopped
    /// between writing them and learning how they ended. Oldest first, at most `limit`.
    /// Meant for startup, before this run records actions of its own.
    pub fn unfinished_actions(&self, since: i64, limit: usize) -> Result<Vec<Record>> {
        // Only actions and outcomes are kept in memory (the window's other records are read
        // and dropped); an outcome is written after its action, so the window holds it too.
        let of_kind = |kind: &str| {
            self.query(&Query {
                kind: Some(kind.into()),
                since: Some(since),
                ..Query::default()
            })
        };
        let ended: std::collections::HashSet<u64> = of_kind("outcome")?
            .into_iter()
            .filter_map(|r| match r.entry {
                Entry::Outcome(o) => Some(o.action_id),
                _ => None,
            })
            .collect();
        let mut open: Vec<Record> = of_kind("action")?
            .into_iter()
            .filter(|r| !ended.contains(&r.id))
            .collect();
        open.reverse();
        open.truncate(limit);
        Ok(open)
    }

    /// A user's history (by identity or by name), newest first.
    pub fn by_user(&self, user: &str, limit: usize) -> Result<Vec<Record>> {
        self.query(&Query {
            user: Some(user.to_string()),
            limit,
            ..Query::default()
        })
    }

    /// Records matching every filter of `q`, newest first, answered from the most selective
    /// index: never a scan of the whole log.
    pub fn query(&self, q: &Query) -> Result<Vec<Record>> {
        q.run(self)
    }

    /// The same question answered by reading every record: what the indexes save (benchmarks
    /// and tests compare the two).
    pub fn query_by_scan(&self, q: &Query) -> Result<Vec<Record>> {
        q.run_by_scan(self)
    }

    /// Counts per day of decisions per rule and actions per kind, between `since` and `until`.
    pub fn stats(&self, since: Option<i64>, until: Option<i64>) -> Result<Stats> {
        query::stats(self, since, until)
    }

    /// Calls `f` with the stored bytes of every record in id order, optionally limited to a
    /// time range; returns how many. `total` gets the number of records first (for progress).
    pub fn export(
        &self,
        since: Option<i64>,
        until: Option<i64>,
        total: impl FnOnce(usize),
        mut f: impl FnMut(&[u8]) -> std::io::Result<()>,
    ) -> Result<usize> {
        let io = |e: std::io::Error| AuditError::Io {
            path: self.trees.path.clone(),
            reason: e.to_string(),
        };
        let mut n = 0;
        if since.is_none() && until.is_none() {
            total(self.len());
            for item in self.trees.log.scan_prefix([record::K_RECORD]) {
                let (_, v) = item.map_err(|e| self.trees.io(e))?;
                f(&v).map_err(io)?;
                n += 1;
            }
            return Ok(n);
        }
        let ids = query::time_range_ids(self, since, until)?;
        total(ids.len());
        for id in ids {
            if let Some(bytes) = self.get_raw(id)? {
                f(&bytes).map_err(io)?;
                n += 1;
            }
        }
        Ok(n)
    }

    /// How many records the log holds.
    pub fn len(&self) -> usize {
        self.trees.log.scan_prefix([record::K_RECORD]).count()
    }

    pub fn is_empty(&self) -> bool {
        self.trees
            .log
            .scan_prefix([record::K_RECORD])
            .next()
            .is_none()
    }

    /// How many flushes have committed records since the store was opened.
    pub fn commits(&self) -> u64 {
        self.trees
            .commits
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Bytes the store takes on disk.
    pub fn size_on_disk(&self) -> Result<u64> {
        self.trees.db.size_on_disk().map_err(|e| self.trees.io(e))
    }

    /// Deletes records older than `cutoff` (unix ms) with their index entries, in batches of
    /// `batch` so concurrent appends are never held up for long. Returns how many.
    pub fn purge_before(&self, cutoff: i64, batch: usize) -> Result<usize> {
        query::purge_before(self, cutoff, batch.max(1))
    }

    /// Starts deleting records older than `max_age` every `every`, in the background, until
    /// the log is dropped. Replaces an earlier retention thread.
    pub fn start_retention(self: &Arc<Self>, max_age: Duration, every: Duration) {
        self.stop_retention();
        let stop = Arc::new((Mutex::new(false), Condvar::new()));
        let log = Arc::downgrade(self);
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("audit-retention".into())
            .spawn(move || loop {
                if let Some(log) = log.upgrade() {
                    let cutoff = now_ms() - max_age.as_millis() as i64;
                    if let Err(e) = log.purge_before(cutoff, 512) {
                        tracing::warn!(error = %e, "audit retention pass failed");
                    }
                } else {
                    return;
                }
                let (lock, cvar) = &*flag;
                let stopped = lock.lock().unwrap_or_else(|p| p.into_inner());
                let (stopped, _) = cvar
                    .wait_timeout(stopped, every)
                    .unwrap_or_else(|p| p.into_inner());
                if *stopped {
                    return;
                }
            })
            .expect("spawn retention thread");
        *self.retention.lock().unwrap_or_else(|p| p.into_inner()) =
            Some(Retention { stop, thread });
    }

    fn stop_retention(&self) {
        let taken = self
            .retention
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(r) = taken {
            *r.stop.0.lock().unwrap_or_else(|p| p.into_inner()) = true;
            r.stop.1.notify_all();
            if r.thread.thread().id() != std::thread::current().id() {
                let _ = r.thread.join();
            }
        }
    }
}

impl Drop for AuditLog {
    fn drop(&mut self) {
        self.stop_retention();
        // Closing the channel ends the writer after it has committed what it holds.
        let (tx, _) = mpsc::channel();
        drop(std::mem::replace(&mut self.ops, tx));
        // The writer ends once the channel is empty, then the flusher once it has answered
        // and persisted the index.
        if let Some((w, f)) = self.threads.take() {
            let _ = w.join();
            let _ = f.join();
        }
        let _ = self.trees.db.flush();
    }
}

/// How long opening retries a locked store before reporting it in use.
const LOCK_RETRY: Duration = Duration::from_secs(2);

/// A key in the database's default tree, written when the store is created.
const CREATED_KEY: &[u8] = b"bridgewarden/created";

fn corrupt(path: &Path, e: sled::Error) -> AuditError {
    let reason = match e {
        sled::Error::Corruption { at: Some(at), .. } => {
            format!("damaged data at {at:?} in the database file")
        }
        sled::Error::Corruption { at: None, .. } => {
            "the database file is damaged or truncated".to_string()
        }
        sled::Error::Unsupported(reason) => reason,
        other => other.to_string(),
    };
    AuditError::Corrupt {
        path: path.to_path_buf(),
        reason,
    }
}

/// Opens the database and its trees on a helper thread, giving up after `timeout`, and checks
/// it against the marker file. Returns the trees, the highest committed id, and the marker.
fn open_trees(path: &Path, timeout: Duration) -> Result<(Trees, u64, marker::Marker)> {
    if let Err(e) = std::fs::create_dir_all(path) {
        return Err(AuditError::Open {
            path: path.to_path_buf(),
            reason: e.to_string(),
        });
    }
    let io_err = |e: std::io::Error| AuditError::Open {
        path: path.to_path_buf(),
        reason: e.to_string(),
    };
    let marked = marker::Marker::read(path).map_err(io_err)?;
    let (tx, rx) = mpsc::channel();
    let p = path.to_path_buf();
    let opener = std::thread::Builder::new().name("audit-open".into()).spawn(move || {
        let result = std::panic::catch_unwind(|| -> Result<Trees, sled::Error> {
            let db = sled::Config::new().path(&p).mode(sled::Mode::HighThroughput).flush_every_ms(None).open()?;
            let log = db.open_tree("log")?;
            let index = db.open_tree("index")?;
            let strikes = db.open_tree("strikes")?;
            let schedule = db.open_tree("schedule")?;
            // Touch both ends of the log: recovery problems surface here rather than later.
            let _ = log.first()?;
            let _ = log.last()?;
            let created = db.get(CREATED_KEY)?;
            if created.is_none() {
                if marked.is_some() {
                    // The store existed (its marker says so) but the database holds none of
                    // it: the file was truncated to nothing or replaced.
                    return Err(sled::Error::Unsupported(
                        "the database file holds none of the store's data: it was truncated or replaced".into(),
                    ));
                }
                db.insert(CREATED_KEY, &crate::audit::now_ms().to_be_bytes())?;
                db.flush()?;
            }
            Ok(Trees { db, log, index, strikes, schedule, path: p.clone(), commits: Default::default() })
        });
        let _ = tx.send(result);
    });
    if let Err(e) = opener {
        return Err(AuditError::Open {
            path: path.to_path_buf(),
            reason: e.to_string(),
        });
    }
    match rx.recv_timeout(timeout) {
        Ok(Ok(Ok(trees))) => {
            let high_water = high_water(&trees)?;
            if let Some(committed) = marked.filter(|c| *c > high_water) {
                return Err(AuditError::Corrupt {
                    path: path.to_path_buf(),
                    reason: format!(
                        "the log ends at record {high_water} but records up to {committed} were \
                         committed: the database file was truncated or rolled back"
                    ),
                });
            }
            let marker = marker::Marker::write(path, high_water).map_err(io_err)?;
            Ok((trees, high_water, marker))
        }
        Ok(Ok(Err(sled::Error::Io(e)))) if e.to_string().contains("could not acquire lock") => {
            Err(AuditError::Locked {
                path: path.to_path_buf(),
            })
        }
        Ok(Ok(Err(sled::Error::Io(e)))) => Err(AuditError::Open {
            path: path.to_path_buf(),
            reason: e.to_string(),
        }),
        Ok(Ok(Err(e))) => Err(corrupt(path, e)),
        Ok(Err(_panic)) => Err(AuditError::Corrupt {
            path: path.to_path_buf(),
            reason: "the database could not be read (sled failed while recovering it)".into(),
        }),
        Err(_) => Err(AuditError::Corrupt {
            path: path.to_path_buf(),
            reason: format!(
                "recovery did not finish within {}s; the file looks damaged",
                timeout.as_secs()
            ),
        }),
    }
}

/// Prepares an append in the caller's thread: the entry serialised, its index names computed.
fn prepare(entry: Entry, case: Option<u64>, ts: i64) -> Prepared {
    let record = Record {
        v: SCHEMA_VERSION,
        id: 0,
        case: 0,
        ts,
        entry,
    };
    let names = index::names_of(&record);
    // Serialising plain data cannot fail.
    let entry_json = serde_json::to_vec(&record.entry).unwrap_or_else(|_| b"{}".to_vec());
    Prepared {
        entry_json,
        names,
        case,
        ts,
    }
}

/// Rebuilds the postings of the records after the index watermark (the tail the last run did
/// not put into chunks, e.g. because it crashed).
fn recover_index(t: &Trees) -> Result<Memtable> {
    let watermark = match t
        .index
        .get(record::K_WATERMARK)
        .map_err(|e| corrupt(&t.path, e))?
    {
        Some(v) => v.as_ref().try_into().map(u64::from_be_bytes).unwrap_or(0),
        None => 0,
    };
    let mut m = Memtable::default();
    let start = record::record_key(watermark.saturating_add(1));
    for item in t.log.range(start..=record::record_key(u64::MAX)) {
        let (k, v) = item.map_err(|e| corrupt(&t.path, e))?;
        let id = record::id_of_record_key(&k).unwrap_or(0);
        match serde_json::from_slice::<Record>(&v) {
            Ok(r) => m.add(&r),
            Err(e) => {
                return Err(AuditError::BadRecord {
                    path: t.path.clone(),
                    id,
                    reason: e.to_string(),
                })
            }
        }
    }
    Ok(m)
}

/// The highest record id the log has committed.
fn high_water(t: &Trees) -> Result<u64> {
    let mark = match t
        .log
        .get(record::K_HIGH_WATER)
        .map_err(|e| corrupt(&t.path, e))?
    {
        Some(v) => v.as_ref().try_into().map(u64::from_be_bytes).unwrap_or(0),
        None => 0,
    };
    let last = match t.log.scan_prefix([record::K_RECORD]).next_back() {
        None => 0,
        Some(Err(e)) => return Err(corrupt(&t.path, e)),
        Some(Ok((k, _))) => record::id_of_record_key(&k).unwrap_or(0),
    };
    Ok(mark.max(last))
}

#[cfg(test)]
mod tests;
