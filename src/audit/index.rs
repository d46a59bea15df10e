//! The audit log's indexes: postings (record time and id) per index name, kept the way an LSM
//! tree keeps them.
//!
//! sled charges about the same for every key written, however small, so one key per index per
//! record would cost several times the record itself. Instead, postings of recent records are
//! kept in memory (the *memtable*) and persisted as one *chunk* per index name every
//! [`CHUNK_RECORDS`] records or [`CHUNK_AGE`], in one batch with the *watermark*: the last
//! record id covered by chunks. The records themselves are durable on append; on open, records
//! after the watermark are read back into the memtable, so a crash loses no index entry.
//!
//! Index names: `t` (time; every record), `c`+case (records that joined another record's case),
//! `u`+user identity and `u`+user name, `o`+room, `l`+rule, `a`+action kind; names lower-cased.
//! Chunk keys: name + NUL + newest ts in the chunk + sequence; values: packed (ts, id) pairs,
//! at most [`CHUNK_POSTINGS`] per chunk (a long list becomes several chunks).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use super::record::Record;

/// Postings per chunk value at most: large values make sled rewrite large pages.
pub(crate) const CHUNK_POSTINGS: usize = 512;

/// Persist the memtable after this many records...
pub const CHUNK_RECORDS: usize = 16_384;
/// ...or when its oldest posting is this old.
pub const CHUNK_AGE: Duration = Duration::from_secs(30);

pub(crate) const T_TIME: u8 = b't';
pub(crate) const T_CASE: u8 = b'c';
pub(crate) const T_USER: u8 = b'u';
pub(crate) const T_ROOM: u8 = b'o';
pub(crate) const T_RULE: u8 = b'l';
pub(crate) const T_ACTION: u8 = b'a';
/// The tags of chunk keys (every other key of the log tree is a record or a marker).
pub(crate) const CHUNK_TAGS: [u8; 6] = [T_TIME, T_CASE, T_USER, T_ROOM, T_RULE, T_ACTION];

/// An index name: tag byte + lower-cased name, without NUL bytes.
pub(crate) fn name(tag: u8, text: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(text.len() + 1);
    k.push(tag);
    k.extend(
        text.to_lowercase()
            .bytes()
            .map(|b| if b == 0 { 1 } else { b }),
    );
    k
}

/// The index names a record is found by.
pub(crate) fn names_of(r: &Record) -> Vec<Vec<u8>> {
    let e = &r.entry;
    let mut names = vec![vec![T_TIME]];
    if r.case != r.id {
        names.push(name(T_CASE, &format!("{:016x}", r.case)));
    }
    for who in e.users() {
        names.push(name(T_USER, &who.identity));
        names.push(name(T_USER, &who.name));
    }
    if let Some(room) = e.room() {
        names.push(name(T_ROOM, room));
    }
    for rule in e.rules() {
        names.push(name(T_RULE, rule));
    }
    for action in e.actions() {
        names.push(name(T_ACTION, action));
    }
    names.sort();
    names.dedup();
    names
}

/// The prefix of every chunk key of an index name.
pub(crate) fn chunk_prefix(name: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(name.len() + 17);
    k.extend_from_slice(name);
    k.push(0);
    k
}

pub(crate) fn chunk_key(name: &[u8], newest_ts: i64, seq: u64) -> Vec<u8> {
    let mut k = chunk_prefix(name);
    k.extend_from_slice(&(newest_ts.max(0) as u64).to_be_bytes());
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

/// The newest timestamp a chunk holds, from its key.
pub(crate) fn chunk_newest_ts(key: &[u8]) -> Option<i64> {
    let b: [u8; 8] = key
        .get(key.len().checked_sub(16)?..key.len() - 8)?
        .try_into()
        .ok()?;
    Some(u64::from_be_bytes(b) as i64)
}

pub(crate) fn encode(postings: &[(i64, u64)]) -> Vec<u8> {
    let mut v = Vec::with_capacity(postings.len() * 16);
    for (ts, id) in postings {
        v.extend_from_slice(&ts.to_be_bytes());
        v.extend_from_slice(&id.to_be_bytes());
    }
    v
}

pub(crate) fn decode(bytes: &[u8]) -> impl Iterator<Item = (i64, u64)> + '_ {
    bytes.chunks_exact(16).map(|c| {
        let ts = i64::from_be_bytes(c[..8].try_into().unwrap_or_default());
        let id = u64::from_be_bytes(c[8..].try_into().unwrap_or_default());
        (ts, id)
    })
}

/// Postings of records not yet covered by chunks.
#[derive(Debug, Default)]
pub(crate) struct Memtable {
    pub postings: BTreeMap<Vec<u8>, Vec<(i64, u64)>>,
    pub records: usize,
    pub oldest: Option<Instant>,
    /// The last record id added.
    pub last_id: u64,
}

impl Memtable {
    pub fn add(&mut self, r: &Record) {
        for n in names_of(r) {
            self.postings.entry(n).or_default().push((r.ts, r.id));
        }
        self.records += 1;
        self.oldest.get_or_insert_with(Instant::now);
        self.last_id = self.last_id.max(r.id);
    }

    pub fn due(&self, records: usize, age: Duration) -> bool {
        self.records >= records || self.oldest.is_some_and(|t| t.elapsed() >= age)
    }

    /// The postings of `name` between `since` and `until`.
    pub fn get(
        &self,
        name: &[u8],
        since: i64,
        until: i64,
    ) -> impl Iterator<Item = (i64, u64)> + '_ {
        self.postings
            .get(name)
            .into_iter()
            .flatten()
            .copied()
            .filter(move |(ts, _)| *ts >= since && *ts <= until)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn postings_round_trip() {
        let p = vec![(5, 1), (-1, 2), (i64::MAX, u64::MAX)];
        assert_eq!(decode(&encode(&p)).collect::<Vec<_>>(), p);
    }

    #[test]
    fn chunk_keys_sort_by_name_then_time() {
        let a = chunk_key(&name(T_USER, "Alice"), 10, 7);
        let b = chunk_key(&name(T_USER, "alice"), 20, 1);
        let c = chunk_key(&name(T_USER, "alicea"), 0, 0);
        assert!(
            a < b && b < c,
            "the NUL after the name keeps alice and alicea apart"
        );
        assert_eq!(chunk_newest_ts(&b), Some(20));
        assert!(a.starts_with(&chunk_prefix(&name(T_USER, "ALICE"))));
    }
}
