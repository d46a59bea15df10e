//! Group commit, as a two-stage pipeline.
//!
//! Appends queue up on a channel, already serialised by their callers. The *writer* thread
//! takes everything waiting, gives each record the next id (so ids increase monotonically) and
//! applies the records with the high-water mark in one atomic batch, then hands their replies
//! to the *flusher* thread. The flusher repeatedly takes every reply handed over so far,
//! flushes once, adds the records' postings to the in-memory index, moves the marker, and only
//! then answers. While one flush runs, the writer keeps applying what arrives, so the next
//! flush covers all of it: under load many appends share a flush; alone, an append costs one.
//!
//! Invariant: a reply is sent only after a flush that started after its batch was applied.

use std::sync::{mpsc, Arc, Condvar, Mutex, RwLock};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use super::index::{self, Memtable, T_CASE};
use super::marker::Marker;
use super::record::{record_key, K_HIGH_WATER, K_WATERMARK, SCHEMA_VERSION};
use super::{Appended, AuditError, Result, Trees};

/// An append, prepared by its caller.
pub(crate) struct Prepared {
    /// The entry as JSON (an object).
    pub entry_json: Vec<u8>,
    /// Its index names, except the case (which may depend on the id).
    pub names: Vec<Vec<u8>>,
    pub case: Option<u64>,
    pub ts: i64,
}

/// A change to the state trees, run on the writer thread.
pub(crate) type StateChange = Box<dyn FnOnce(&Trees) -> Result<()> + Send>;

/// A write operation waiting for the writer.
pub(crate) enum Op {
    Append {
        record: Prepared,
        /// Share the flush with other appends (false: the naive flush-per-record path).
        group: bool,
        reply: oneshot::Sender<Result<Appended>>,
    },
    /// A change to the moderation state trees, durable when answered.
    State {
        apply: StateChange,
        reply: oneshot::Sender<Result<()>>,
    },
    Flush {
        reply: oneshot::Sender<Result<()>>,
    },
}

/// A reply waiting for a flush, with what to index once durable.
enum Reply {
    Appended(
        oneshot::Sender<Result<Appended>>,
        Appended,
        i64,
        Vec<Vec<u8>>,
    ),
    Done(oneshot::Sender<Result<()>>),
    /// Wakes the writer once flushed (the naive path waits for its own flush).
    Barrier(mpsc::Sender<()>),
}

/// What the writer has handed to the flusher.
#[derive(Default)]
struct Handoff {
    replies: Vec<Reply>,
    /// The highest id applied so far.
    applied: u64,
    closed: bool,
}

type Shared = Arc<(Mutex<Handoff>, Condvar)>;

/// The apply stage.
pub(crate) struct Writer {
    pub trees: Trees,
    pub next_id: u64,
    pub max_group: usize,
    handoff: Shared,
}

/// The flush stage.
pub(crate) struct Flusher {
    pub trees: Trees,
    pub marker: Marker,
    pub memtable: Arc<RwLock<Memtable>>,
    pub chunk_records: usize,
    pub chunk_age: Duration,
    handoff: Shared,
}

/// Starts both stages; returns their threads (writer first).
pub(crate) fn start(
    trees: Trees,
    next_id: u64,
    max_group: usize,
    marker: Marker,
    memtable: Arc<RwLock<Memtable>>,
    (chunk_records, chunk_age): (usize, Duration),
    ops: mpsc::Receiver<Op>,
) -> std::io::Result<(std::thread::JoinHandle<()>, std::thread::JoinHandle<()>)> {
    let handoff: Shared = Arc::default();
    let writer = Writer {
        trees: trees.clone(),
        next_id,
        max_group,
        handoff: handoff.clone(),
    };
    let flusher = Flusher {
        trees,
        marker,
        memtable,
        chunk_records,
        chunk_age,
        handoff,
    };
    let f = std::thread::Builder::new()
        .name("audit-flusher".into())
        .spawn(move || flusher.run())?;
    let w = std::thread::Builder::new()
        .name("audit-writer".into())
        .spawn(move || writer.run(ops))?;
    Ok((w, f))
}

impl Writer {
    fn run(mut self, ops: mpsc::Receiver<Op>) {
        while let Ok(first) = ops.recv() {
            let mut group = vec![first];
            while group.len() < self.max_group {
                match ops.try_recv() {
                    Ok(op) => group.push(op),
                    Err(_) => break,
                }
            }
            self.apply(group);
        }
        let (lock, cvar) = &*self.handoff;
        lock.lock().unwrap_or_else(|p| p.into_inner()).closed = true;
        cvar.notify_all();
    }

    fn apply(&mut self, group: Vec<Op>) {
        let mut batch = sled::Batch::default();
        let mut replies: Vec<Reply> = Vec::with_capacity(group.len());
        for op in group {
            match op {
                Op::Append {
                    record,
                    group: true,
                    reply,
                } => replies.push(self.add(&mut batch, record, reply)),
                Op::Append {
                    record,
                    group: false,
                    reply,
                } => {
                    // Naive path: hand over what is pending, then this record alone, and wait
                    // for its own flush before doing anything else.
                    self.hand_over(std::mem::take(&mut batch), std::mem::take(&mut replies));
                    let mut own = sled::Batch::default();
                    let r = self.add(&mut own, record, reply);
                    let (tx, rx) = mpsc::channel();
                    self.hand_over(own, vec![r, Reply::Barrier(tx)]);
                    let _ = rx.recv();
                }
                Op::State { apply, reply } => match apply(&self.trees) {
                    Ok(()) => replies.push(Reply::Done(reply)),
                    Err(e) => {
                        let _ = reply.send(Err(e));
                    }
                },
                Op::Flush { reply } => replies.push(Reply::Done(reply)),
            }
        }
        self.hand_over(batch, replies);
    }

    fn add(
        &mut self,
        batch: &mut sled::Batch,
        p: Prepared,
        reply: oneshot::Sender<Result<Appended>>,
    ) -> Reply {
        let id = self.next_id;
        self.next_id += 1;
        let case = p.case.unwrap_or(id);
        // The caller serialised the entry; the record is it with the header fields in front.
        let mut bytes = format!(
            r#"{{"v":{SCHEMA_VERSION},"id":{id},"case":{case},"ts":{}"#,
            p.ts
        )
        .into_bytes();
        let body = p.entry_json.get(1..).unwrap_or_default();
        if body.first().is_some_and(|b| *b != b'}') {
            bytes.push(b',');
        }
        bytes.extend_from_slice(body);
        batch.insert(&record_key(id), bytes);
        let mut names = p.names;
        if case != id {
            names.push(index::name(T_CASE, &format!("{case:016x}")));
        }
        Reply::Appended(reply, Appended { id, case }, p.ts, names)
    }

    /// Applies the batch (not yet durable) and gives its replies to the flusher.
    fn hand_over(&self, mut batch: sled::Batch, replies: Vec<Reply>) {
        if replies.is_empty() {
            return;
        }
        let applied = self.next_id - 1;
        batch.insert(K_HIGH_WATER, &applied.to_be_bytes());
        if let Err(e) = self.trees.log.apply_batch(batch) {
            let e = self.trees.io(e);
            for r in replies {
                fail(r, &e);
            }
            return;
        }
        let (lock, cvar) = &*self.handoff;
        let mut h = lock.lock().unwrap_or_else(|p| p.into_inner());
        h.replies.extend(replies);
        h.applied = h.applied.max(applied);
        cvar.notify_one();
    }
}

impl Flusher {
    fn run(self) {
        // Appends answered by the last flush: under steady load about as many come back for
        // the next one, a moment later (their callers prepare the next record first).
        let mut last_group = 1usize;
        let mut last_flush = Duration::ZERO;
        loop {
            let (replies, applied, closed) = {
                let (lock, cvar) = &*self.handoff;
                let mut h = lock.lock().unwrap_or_else(|p| p.into_inner());
                while h.replies.is_empty() && !h.closed {
                    h = cvar.wait(h).unwrap_or_else(|p| p.into_inner());
                }
                // Commit delay: wait for the rest of the last group's size, at most as long as
                // the last flush took (grouping never costs more than one flush of latency),
                // unless an append asked to be flushed alone. A lone appender never waits.
                let deadline = Instant::now() + last_flush.min(MAX_COMMIT_DELAY);
                while appends(&h.replies) < last_group
                    && !h.closed
                    && !h.replies.iter().any(|r| matches!(r, Reply::Barrier(_)))
                {
                    let now = Instant::now();
                    if now >= deadline {
                        break;
                    }
                    h = cvar
                        .wait_timeout(h, deadline - now)
                        .unwrap_or_else(|p| p.into_inner())
                        .0;
                }
                (
                    std::mem::take(&mut h.replies),
                    h.applied,
                    h.closed && h.replies.is_empty(),
                )
            };
            last_group = appends(&replies).max(1);
            if !replies.is_empty() {
                let started = Instant::now();
                self.flush_and_answer(replies, applied);
                last_flush = started.elapsed();
                let due = self
                    .memtable
                    .read()
                    .unwrap_or_else(|p| p.into_inner())
                    .due(self.chunk_records, self.chunk_age);
                if due {
                    self.persist_index();
                }
            }
            if closed {
                // Shut down: put the memtable on disk so the next open starts from a short tail.
                self.persist_index();
                let _ = self.trees.db.flush();
                return;
            }
        }
    }

    fn flush_and_answer(&self, replies: Vec<Reply>, applied: u64) {
        let result = self
            .trees
            .db
            .flush()
            .map(|_| ())
            .map_err(|e| self.trees.io(e));
        self.trees
            .commits
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if result.is_ok() {
            if let Err(e) = self.marker.set(applied) {
                tracing::warn!(error = %e, "cannot update the audit marker file");
            }
            // Durable now: make the records findable before anyone hears they are written.
            let mut m = self.memtable.write().unwrap_or_else(|p| p.into_inner());
            for r in &replies {
                if let Reply::Appended(_, a, ts, names) = r {
                    for n in names {
                        m.postings.entry(n.clone()).or_default().push((*ts, a.id));
                    }
                    m.records += 1;
                    m.oldest.get_or_insert_with(Instant::now);
                    m.last_id = m.last_id.max(a.id);
                }
            }
        }
        for r in replies {
            match &result {
                Ok(()) => match r {
                    Reply::Appended(tx, a, ..) => {
                        let _ = tx.send(Ok(a));
                    }
                    Reply::Done(tx) => {
                        let _ = tx.send(Ok(()));
                    }
                    Reply::Barrier(tx) => {
                        let _ = tx.send(());
                    }
                },
                Err(e) => fail(r, e),
            }
        }
    }

    /// Writes the memtable as one chunk per index name, with the watermark, in one batch (made
    /// durable by the next flush; until then a crash just means recovering a longer tail).
    fn persist_index(&self) {
        let (postings, last_id) = {
            let m = self.memtable.read().unwrap_or_else(|p| p.into_inner());
            if m.records == 0 {
                return;
            }
            (m.postings.clone(), m.last_id)
        };
        let seq = match self.trees.db.generate_id() {
            Ok(s) => s,
            Err(e) => return tracing::warn!(error = %e, "cannot persist the audit index"),
        };
        let mut batch = sled::Batch::default();
        for (name, mut list) in postings {
            list.sort_unstable();
            for (piece, part) in list.chunks(index::CHUNK_POSTINGS).enumerate() {
                let newest = part.last().map_or(0, |(ts, _)| *ts);
                // Pieces of one persist share the sequence number's high bits.
                let key = index::chunk_key(&name, newest, seq << 20 | piece as u64);
                batch.insert(key, index::encode(part));
            }
        }
        batch.insert(K_WATERMARK, &last_id.to_be_bytes());
        match self.trees.index.apply_batch(batch) {
            Ok(()) => {
                // The chunks are in the tree: drop what they cover.
                let mut m = self.memtable.write().unwrap_or_else(|p| p.into_inner());
                for list in m.postings.values_mut() {
                    list.retain(|(_, id)| *id > last_id);
                }
                m.postings.retain(|_, l| !l.is_empty());
                m.records = m.postings.get(&[index::T_TIME][..]).map_or(0, Vec::len);
                m.oldest = (m.records > 0).then(Instant::now);
            }
            Err(e) => tracing::warn!(error = %e, "cannot persist the audit index"),
        }
    }
}

/// The longest a flush waits for more appends to join it.
const MAX_COMMIT_DELAY: Duration = Duration::from_millis(1);

fn appends(replies: &[Reply]) -> usize {
    replies
        .iter()
        .filter(|r| matches!(r, Reply::Appended(..)))
        .count()
}

fn fail(r: Reply, e: &AuditError) {
    let copy = || match e {
        AuditError::Io { path, reason } => AuditError::Io {
            path: path.clone(),
            reason: reason.clone(),
        },
        other => AuditError::Io {
            path: Default::default(),
            reason: other.to_string(),
        },
    };
    match r {
        Reply::Appended(tx, ..) => {
            let _ = tx.send(Err(copy()));
        }
        Reply::Done(tx) => {
            let _ = tx.send(Err(copy()));
        }
        Reply::Barrier(tx) => {
            let _ = tx.send(());
        }
    }
}
