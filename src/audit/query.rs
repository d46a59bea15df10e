//! Questions to the audit log, answered from its indexes; statistics; retention.

use std::collections::BTreeMap;

use serde::Serialize;

use super::index::{self, T_ACTION, T_ROOM, T_RULE, T_TIME, T_USER};
use super::record::{id_of_record_key, record_key, Entry, Record, K_RECORD};
use super::{AuditError, AuditLog, Result};

/// A filter over records; every field given must hold. Newest records come first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Query {
    /// Identity (e.g. "irc:account:alice", "@bob:example.org") or name (nick), any case.
    pub user: Option<String>,
    pub room: Option<String>,
    pub rule: Option<String>,
    /// Action kind: mute, ban, delete, ...
    pub action: Option<String>,
    /// Record type: decision, action, outcome, policy_load, command.
    pub kind: Option<String>,
    /// Unix ms, inclusive.
    pub since: Option<i64>,
    /// Unix ms, inclusive.
    pub until: Option<i64>,
    /// At most this many records (0: no limit).
    pub limit: usize,
}

impl Query {
    fn check(&self) -> Result<()> {
        if let (Some(s), Some(u)) = (self.since, self.until) {
            if s > u {
                return Err(AuditError::BadQuery(format!(
                    "--since ({}) is after --until ({}): no record can match",
                    format_ts(s),
                    format_ts(u)
                )));
            }
        }
        Ok(())
    }

    /// Whether `r` satisfies every filter.
    pub fn matches(&self, r: &Record) -> bool {
        let e = &r.entry;
        self.since.is_none_or(|s| r.ts >= s)
            && self.until.is_none_or(|u| r.ts <= u)
            && self.kind.as_deref().is_none_or(|k| e.kind() == k)
            && self.user.as_deref().is_none_or(|u| {
                let u = u.to_lowercase();
                e.users()
                    .iter()
                    .any(|w| w.identity.to_lowercase() == u || w.name.to_lowercase() == u)
            })
            && self.room.as_deref().is_none_or(|room| {
                e.room()
                    .is_some_and(|x| x.to_lowercase() == room.to_lowercase())
            })
            && self.rule.as_deref().is_none_or(|rule| {
                e.rules()
                    .iter()
                    .any(|x| x.to_lowercase() == rule.to_lowercase())
            })
            && self.action.as_deref().is_none_or(|a| {
                e.actions()
                    .iter()
                    .any(|x| x.to_lowercase() == a.to_lowercase())
            })
    }

    /// The index to read: the most selective filter given, else time.
    fn index_name(&self) -> Vec<u8> {
        if let Some(u) = &self.user {
            index::name(T_USER, u)
        } else if let Some(r) = &self.rule {
            index::name(T_RULE, r)
        } else if let Some(r) = &self.room {
            index::name(T_ROOM, r)
        } else if let Some(a) = &self.action {
            index::name(T_ACTION, a)
        } else {
            vec![T_TIME]
        }
    }

    pub(crate) fn run(&self, log: &AuditLog) -> Result<Vec<Record>> {
        self.check()?;
        let postings = postings(log, &self.index_name(), self.since, self.until)?;
        let limit = if self.limit == 0 {
            usize::MAX
        } else {
            self.limit
        };
        let mut out = Vec::new();
        for (_, id) in postings.into_iter().rev() {
            if let Some(r) = log.get(id)? {
                if self.matches(&r) {
                    out.push(r);
                    if out.len() >= limit {
                        break;
                    }
                }
            }
        }
        Ok(out)
    }

    pub(crate) fn run_by_scan(&self, log: &AuditLog) -> Result<Vec<Record>> {
        self.check()?;
        let limit = if self.limit == 0 {
            usize::MAX
        } else {
            self.limit
        };
        let mut out = Vec::new();
        for item in log.trees.log.scan_prefix([K_RECORD]).rev() {
            let (k, v) = item.map_err(|e| log.trees.io(e))?;
            let id = id_of_record_key(&k).unwrap_or(0);
            let r = log.decode(id, &v)?;
            if self.matches(&r) {
                out.push(r);
                if out.len() >= limit {
                    break;
                }
            }
        }
        Ok(out)
    }
}

/// `YYYY-MM-DDTHH:MM:SSZ` for unix ms.
pub fn format_ts(ms: i64) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms.max(0) as u64);
    humantime::format_rfc3339_seconds(t).to_string()
}

/// The postings (ts, id) of an index name between `since` and `until`, oldest first: from
/// the persisted chunks and the memtable.
pub(crate) fn postings(
    log: &AuditLog,
    name: &[u8],
    since: Option<i64>,
    until: Option<i64>,
) -> Result<Vec<(i64, u64)>> {
    let (since, until) = (since.unwrap_or(i64::MIN), until.unwrap_or(i64::MAX));
    let prefix = index::chunk_prefix(name);
    // Chunks are keyed by their newest time: those newer than `since` may hold postings in range.
    let mut lo = prefix.clone();
    lo.extend_from_slice(&(since.max(0) as u64).to_be_bytes());
    let mut out = Vec::new();
    for item in log.trees.index.range(lo..) {
        let (k, v) = item.map_err(|e| log.trees.io(e))?;
        if !k.starts_with(&prefix) {
            break;
        }
        out.extend(index::decode(&v).filter(|(ts, _)| *ts >= since && *ts <= until));
    }
    out.extend(
        log.memtable
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(name, since, until),
    );
    out.sort_unstable();
    out.dedup();
    Ok(out)
}

/// Ids of the records between `since` and `until`, oldest first.
pub(crate) fn time_range_ids(
    log: &AuditLog,
    since: Option<i64>,
    until: Option<i64>,
) -> Result<Vec<u64>> {
    Query {
        since,
        until,
        ..Query::default()
    }
    .check()?;
    Ok(postings(log, &[T_TIME], since, until)?
        .into_iter()
        .map(|(_, id)| id)
        .collect())
}

/// Counts for one day.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct DayStats {
    /// Decisions per rule; dry-run matches as "RULE (dry-run)".
    pub rules: BTreeMap<String, u64>,
    /// Actions recorded per kind.
    pub actions: BTreeMap<String, u64>,
    /// Actions that failed, per kind.
    pub failed: BTreeMap<String, u64>,
}

/// Counts per day (`YYYY-MM-DD`, UTC).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Stats {
    pub days: BTreeMap<String, DayStats>,
}

pub(crate) fn stats(log: &AuditLog, since: Option<i64>, until: Option<i64>) -> Result<Stats> {
    let mut s = Stats::default();
    for id in time_range_ids(log, since, until)? {
        let Some(r) = log.get(id)? else { continue };
        let day = format_ts(r.ts)[..10].to_string();
        let d = s.days.entry(day).or_default();
        match &r.entry {
            Entry::Decision(dec) => {
                for rule in &dec.rules {
                    *d.rules.entry(rule.clone()).or_default() += 1;
                }
                for rule in &dec.dry_run {
                    *d.rules.entry(format!("{rule} (dry-run)")).or_default() += 1;
                }
            }
            Entry::Action(a) => *d.actions.entry(a.action.clone()).or_default() += 1,
            Entry::Outcome(o) => {
                if matches!(o.outcome, super::Outcome::Failed { .. }) {
                    *d.failed.entry(o.action.clone()).or_default() += 1;
                }
            }
            _ => {}
        }
    }
    Ok(s)
}

pub(crate) fn purge_before(log: &AuditLog, cutoff: i64, batch: usize) -> Result<usize> {
    let t = &log.trees;
    // The records, in batches so appends are never held up for long.
    let old = time_range_ids(log, None, Some(cutoff - 1))?;
    let mut removed = 0;
    for ids in old.chunks(batch) {
        let mut b = sled::Batch::default();
        for id in ids {
            if t.log.contains_key(record_key(*id)).map_err(|e| t.io(e))? {
                b.remove(&record_key(*id));
                removed += 1;
            }
        }
        t.log.apply_batch(b).map_err(|e| t.io(e))?;
    }
    // Index chunks whose every posting is older than the cutoff. Chunks that straddle it keep
    // postings of deleted records until they age out; queries skip those.
    for tag in index::CHUNK_TAGS {
        let mut b = sled::Batch::default();
        let mut n = 0;
        for item in t.index.scan_prefix([tag]) {
            let (k, _) = item.map_err(|e| t.io(e))?;
            if index::chunk_newest_ts(&k).is_some_and(|ts| ts < cutoff) {
                b.remove(k);
                n += 1;
                if n % batch == 0 {
                    t.index
                        .apply_batch(std::mem::take(&mut b))
                        .map_err(|e| t.io(e))?;
                }
            }
        }
        t.index.apply_batch(b).map_err(|e| t.io(e))?;
    }
    Ok(removed)
}
