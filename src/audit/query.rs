//! Questions to the audit log, answered from its indexes; statistics; retention.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use super::record::{
    id_of_index_key, index_keys, named_prefix, record_key, ts_bytes, Entry, Record, K_ACTION,
    K_RECORD, K_ROOM, K_RULE, K_TIME, K_USER,
};
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
    fn index_prefix(&self) -> Vec<u8> {
        if let Some(u) = &self.user {
            named_prefix(K_USER, u)
        } else if let Some(r) = &self.rule {
            named_prefix(K_RULE, r)
        } else if let Some(r) = &self.room {
            named_prefix(K_ROOM, r)
        } else if let Some(a) = &self.action {
            named_prefix(K_ACTION, a)
        } else {
            vec![K_TIME]
        }
    }

    pub(crate) fn run(&self, log: &AuditLog) -> Result<Vec<Record>> {
        self.check()?;
        let prefix = self.index_prefix();
        let mut lo = prefix.clone();
        lo.extend_from_slice(&ts_bytes(self.since.unwrap_or(0)));
        let mut hi = prefix;
        hi.extend_from_slice(&ts_bytes(self.until.unwrap_or(i64::MAX)));
        hi.extend_from_slice(&[0xFF; 8]);
        let limit = if self.limit == 0 {
            usize::MAX
        } else {
            self.limit
        };
        let mut out = Vec::new();
        let mut seen = BTreeSet::new();
        for item in log.trees.log.range(lo..=hi).rev() {
            let (k, _) = item.map_err(|e| log.trees.io(e))?;
            let Some(id) = id_of_index_key(&k) else {
                continue;
            };
            if !seen.insert(id) {
                continue;
            }
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
            let id = id_of_index_key(&k).unwrap_or(0);
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
    let mut lo = vec![K_TIME];
    lo.extend_from_slice(&ts_bytes(since.unwrap_or(0)));
    let mut hi = vec![K_TIME];
    hi.extend_from_slice(&ts_bytes(until.unwrap_or(i64::MAX)));
    hi.extend_from_slice(&[0xFF; 8]);
    let mut ids = Vec::new();
    for item in log.trees.log.range(lo..=hi) {
        let (k, _) = item.map_err(|e| log.trees.io(e))?;
        if let Some(id) = id_of_index_key(&k) {
            ids.push(id);
        }
    }
    Ok(ids)
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
    let mut removed = 0;
    loop {
        let lo = vec![K_TIME];
        let mut hi = vec![K_TIME];
        hi.extend_from_slice(&ts_bytes(cutoff));
        let mut keys: Vec<sled::IVec> = Vec::with_capacity(batch);
        for item in t.log.range(lo..hi).take(batch) {
            keys.push(item.map_err(|e| t.io(e))?.0);
        }
        if keys.is_empty() {
            return Ok(removed);
        }
        let mut b = sled::Batch::default();
        for k in &keys {
            b.remove(k.clone());
            let Some(id) = id_of_index_key(k) else {
                continue;
            };
            if let Some(bytes) = t.log.get(record_key(id)).map_err(|e| t.io(e))? {
                if let Ok(r) = serde_json::from_slice::<Record>(&bytes) {
                    for key in index_keys(&r) {
                        b.remove(key);
                    }
                }
                b.remove(&record_key(id));
                removed += 1;
            }
        }
        t.log.apply_batch(b).map_err(|e| t.io(e))?;
    }
}
