//! Durable moderation state: strikes per identity, and scheduled actions (timed unmutes and
//! unbans) that must happen on time even across restarts.
//!
//! Writes go through the writer thread like appends, so they are durable when they return.
//! Reads are direct.

use serde::{Deserialize, Serialize};

use super::writer::Op;
use super::{AuditError, AuditLog, Result, Trees};
use crate::policy::Strike;

/// What a scheduled action undoes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ScheduledKind {
    Unmute,
    Unban,
}

impl ScheduledKind {
    pub fn name(self) -> &'static str {
        match self {
            ScheduledKind::Unmute => "unmute",
            ScheduledKind::Unban => "unban",
        }
    }
}

/// An action to execute at `due` (unix ms).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Scheduled {
    /// Assigned when scheduled.
    #[serde(default)]
    pub id: u64,
    pub due: i64,
    pub kind: ScheduledKind,
    /// Network name as configured (e.g. "matrix", "libera").
    pub network: String,
    pub room: String,
    /// Who to unmute or unban, as the adapter needs it (identity, nick, or a ban mask).
    pub target: String,
    /// The audit case of the action this undoes.
    pub case: u64,
}

fn strike_prefix(identity: &str) -> Vec<u8> {
    let mut k: Vec<u8> = identity
        .bytes()
        .map(|b| if b == 0 { 1 } else { b })
        .collect();
    k.push(0);
    k
}

impl AuditLog {
    async fn state_op(
        &self,
        apply: impl FnOnce(&Trees) -> Result<()> + Send + 'static,
    ) -> Result<()> {
        self.submit(|reply| Op::State {
            apply: Box::new(apply),
            reply,
        })
        .await
    }

    /// Records a strike against `identity`; durable when it returns.
    pub async fn add_strike(&self, identity: &str, strike: Strike) -> Result<()> {
        let mut key = strike_prefix(identity);
        key.extend_from_slice(&(strike.ts.max(0) as u64).to_be_bytes());
        let value = serde_json::to_vec(&strike).unwrap_or_default();
        self.state_op(move |t| {
            // Two strikes in the same millisecond get distinct keys.
            let seq = t.db.generate_id().map_err(|e| t.io(e))?;
            key.extend_from_slice(&seq.to_be_bytes());
            t.strikes
                .insert(key, value)
                .map(|_| ())
                .map_err(|e| t.io(e))
        })
        .await
    }

    /// The strikes on record for `identity`, oldest first.
    pub fn strikes(&self, identity: &str) -> Result<Vec<Strike>> {
        let mut out = Vec::new();
        for item in self.trees.strikes.scan_prefix(strike_prefix(identity)) {
            let (_, v) = item.map_err(|e| self.trees.io(e))?;
            if let Ok(s) = serde_json::from_slice(&v) {
                out.push(s);
            }
        }
        Ok(out)
    }

    /// Every identity's strikes: what the daemon seeds the policy state with at startup.
    pub fn all_strikes(&self) -> Result<Vec<(String, Vec<Strike>)>> {
        let mut out: Vec<(String, Vec<Strike>)> = Vec::new();
        for item in self.trees.strikes.iter() {
            let (k, v) = item.map_err(|e| self.trees.io(e))?;
            let Some(end) = k.iter().position(|b| *b == 0) else {
                continue;
            };
            let identity = String::from_utf8_lossy(&k[..end]).into_owned();
            let Ok(strike) = serde_json::from_slice::<Strike>(&v) else {
                continue;
            };
            match out.last_mut() {
                Some((id, list)) if *id == identity => list.push(strike),
                _ => out.push((identity, vec![strike])),
            }
        }
        Ok(out)
    }

    /// Forgets the strikes of `identity`; returns how many there were.
    pub async fn clear_strikes(&self, identity: &str) -> Result<usize> {
        let prefix = strike_prefix(identity);
        let (tx, rx) = std::sync::mpsc::channel();
        self.state_op(move |t| {
            let mut batch = sled::Batch::default();
            let mut n = 0;
            for item in t.strikes.scan_prefix(&prefix) {
                batch.remove(item.map_err(|e| t.io(e))?.0);
                n += 1;
            }
            let _ = tx.send(n);
            t.strikes.apply_batch(batch).map_err(|e| t.io(e))
        })
        .await?;
        Ok(rx.try_recv().unwrap_or(0))
    }

    /// Deletes strikes older than `before` (unix ms): they no longer count under any decay the
    /// daemon uses. Returns how many.
    pub fn prune_strikes(&self, before: i64) -> Result<usize> {
        let mut batch = sled::Batch::default();
        let mut n = 0;
        for item in self.trees.strikes.iter() {
            let (k, v) = item.map_err(|e| self.trees.io(e))?;
            if serde_json::from_slice::<Strike>(&v).is_ok_and(|s| s.ts < before) {
                batch.remove(k);
                n += 1;
            }
        }
        // An empty batch is not free in sled (it writes a batch marker into a fresh log
        // buffer): most passes find nothing to forget.
        if n > 0 {
            self.trees
                .strikes
                .apply_batch(batch)
                .map_err(|e| self.trees.io(e))?;
        }
        Ok(n)
    }

    /// Schedules an action; durable when it returns. Returns its id.
    pub async fn schedule(&self, mut action: Scheduled) -> Result<u64> {
        let id = self.trees.db.generate_id().map_err(|e| self.trees.io(e))?;
        action.id = id;
        self.reschedule(action).await?;
        Ok(id)
    }

    /// Replaces the scheduled action with `action.id` (or puts it back); durable on return.
    pub async fn reschedule(&self, action: Scheduled) -> Result<()> {
        let id = action.id;
        let value = serde_json::to_vec(&action).unwrap_or_default();
        self.state_op(move |t| {
            t.schedule
                .insert(id.to_be_bytes(), value)
                .map(|_| ())
                .map_err(|e| t.io(e))
        })
        .await
    }

    /// Every scheduled action, soonest first. An entry that does not decode is logged and
    /// skipped: one bad entry must not hold up every other timed undo.
    pub fn scheduled(&self) -> Result<Vec<Scheduled>> {
        let mut out = Vec::new();
        for item in self.trees.schedule.iter() {
            let (k, v) = item.map_err(|e| self.trees.io(e))?;
            match serde_json::from_slice::<Scheduled>(&v) {
                Ok(s) => out.push(s),
                Err(e) => {
                    let id = k.as_ref().try_into().map(u64::from_be_bytes).unwrap_or(0);
                    let bad = AuditError::BadRecord {
                        path: self.trees.path.clone(),
                        id,
                        reason: e.to_string(),
                    };
                    tracing::error!(error = %bad, "a scheduled action cannot be read; skipped");
                }
            }
        }
        out.sort_by_key(|s| (s.due, s.id));
        Ok(out)
    }

    /// Scheduled actions due at `now`, including ones that fell due while the daemon was down.
    pub fn due(&self, now: i64) -> Result<Vec<Scheduled>> {
        Ok(self
            .scheduled()?
            .into_iter()
            .filter(|s| s.due <= now)
            .collect())
    }

    /// Removes a scheduled action (done, or cancelled by a moderator); durable on return.
    pub async fn unschedule(&self, id: u64) -> Result<bool> {
        let (tx, rx) = std::sync::mpsc::channel();
        self.state_op(move |t| {
            let old = t.schedule.remove(id.to_be_bytes()).map_err(|e| t.io(e))?;
            let _ = tx.send(old.is_some());
            Ok(())
        })
        .await?;
        Ok(rx.try_recv().unwrap_or(false))
    }
}
