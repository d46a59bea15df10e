//! The writer thread: group commit.
//!
//! Appends queue up on a channel. The writer takes everything waiting (up to a limit), gives
//! each record the next id, writes all records and their index entries in one atomic batch,
//! flushes once, and only then answers every waiting append. Under load many appends share a
//! flush; alone, an append costs one flush. Ids are assigned here, in one place, so they
//! increase monotonically.

use std::sync::mpsc;

use tokio::sync::oneshot;

use super::record::{index_keys, record_key, Entry, Record, K_HIGH_WATER, SCHEMA_VERSION};
use super::{Appended, AuditError, Result, Trees};

/// A write operation waiting for the writer.
pub(crate) enum Op {
    Append {
        entry: Entry,
        case: Option<u64>,
        ts: i64,
        /// Share the flush with other appends (false: the naive flush-per-record path).
        group: bool,
        reply: oneshot::Sender<Result<Appended>>,
    },
    /// A change to the moderation state trees, committed with the next flush.
    State {
        apply: Box<dyn FnOnce(&Trees) -> Result<()> + Send>,
        reply: oneshot::Sender<Result<()>>,
    },
    Flush {
        reply: oneshot::Sender<Result<()>>,
    },
}

/// A reply to send once the group is durable.
enum Reply {
    Appended(oneshot::Sender<Result<Appended>>, Appended),
    Done(oneshot::Sender<Result<()>>),
    Failed(oneshot::Sender<Result<()>>, AuditError),
}

pub(crate) struct Writer {
    pub marker: super::marker::Marker,
    pub trees: Trees,
    pub next_id: u64,
    pub max_group: usize,
}

impl Writer {
    pub fn run(mut self, ops: mpsc::Receiver<Op>) {
        while let Ok(first) = ops.recv() {
            let mut group = vec![first];
            while group.len() < self.max_group {
                match ops.try_recv() {
                    Ok(op) => group.push(op),
                    Err(_) => break,
                }
            }
            self.commit(group);
        }
    }

    fn commit(&mut self, group: Vec<Op>) {
        let mut batch = sled::Batch::default();
        let mut replies: Vec<Reply> = Vec::with_capacity(group.len());
        for op in group {
            match op {
                Op::Append {
                    entry,
                    case,
                    ts,
                    group: true,
                    reply,
                } => {
                    let appended = self.add(&mut batch, entry, case, ts);
                    replies.push(Reply::Appended(reply, appended));
                }
                Op::Append {
                    entry,
                    case,
                    ts,
                    group: false,
                    reply,
                } => {
                    // Naive path: commit what is pending, then this record with its own flush.
                    self.finish(std::mem::take(&mut batch), std::mem::take(&mut replies));
                    let mut own = sled::Batch::default();
                    let appended = self.add(&mut own, entry, case, ts);
                    self.finish(own, vec![Reply::Appended(reply, appended)]);
                }
                Op::State { apply, reply } => match apply(&self.trees) {
                    Ok(()) => replies.push(Reply::Done(reply)),
                    Err(e) => replies.push(Reply::Failed(reply, e)),
                },
                Op::Flush { reply } => replies.push(Reply::Done(reply)),
            }
        }
        self.finish(batch, replies);
    }

    fn add(
        &mut self,
        batch: &mut sled::Batch,
        entry: Entry,
        case: Option<u64>,
        ts: i64,
    ) -> Appended {
        let id = self.next_id;
        self.next_id += 1;
        let record = Record {
            v: SCHEMA_VERSION,
            id,
            case: case.unwrap_or(id),
            ts,
            entry,
        };
        for key in index_keys(&record) {
            batch.insert(key, &[][..]);
        }
        // Serialising plain data cannot fail.
        let bytes = serde_json::to_vec(&record).unwrap_or_default();
        batch.insert(&record_key(id), bytes);
        Appended {
            id,
            case: record.case,
        }
    }

    /// Applies the batch, flushes, and answers; on failure every waiting append gets the error.
    fn finish(&self, mut batch: sled::Batch, replies: Vec<Reply>) {
        if replies.is_empty() {
            return;
        }
        let committed = self.next_id - 1;
        batch.insert(K_HIGH_WATER, &committed.to_be_bytes());
        let result = self
            .trees
            .log
            .apply_batch(batch)
            .and_then(|()| self.trees.db.flush().map(|_| ()))
            .map_err(|e| self.trees.io(e));
        self.trees
            .commits
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if result.is_ok() {
            if let Err(e) = self.marker.set(committed) {
                tracing::warn!(error = %e, "cannot update the audit marker file");
            }
        }
        for reply in replies {
            match (reply, &result) {
                (Reply::Appended(tx, a), Ok(())) => {
                    let _ = tx.send(Ok(a));
                }
                (Reply::Done(tx), Ok(())) => {
                    let _ = tx.send(Ok(()));
                }
                (Reply::Appended(tx, _), Err(e)) => {
                    let _ = tx.send(Err(copy_err(e)));
                }
                (Reply::Done(tx), Err(e)) => {
                    let _ = tx.send(Err(copy_err(e)));
                }
                (Reply::Failed(tx, e), _) => {
                    let _ = tx.send(Err(e));
                }
            }
        }
    }
}

fn copy_err(e: &AuditError) -> AuditError {
    match e {
        AuditError::Io { path, reason } => AuditError::Io {
            path: path.clone(),
            reason: reason.clone(),
        },
        other => AuditError::Io {
            path: Default::default(),
            reason: other.to_string(),
        },
    }
}
