//! The engine's memory between events: rates, repeats, presence and strikes.
//!
//! Pure data that evaluation receives and returns, so the daemon decides where it lives
//! (strikes are persisted by the audit store; rates may stay in memory). Every collection is
//! bounded: timestamps are capped per key and pruned by the longest window that needs them.
//! Must not read a clock: every method takes `now` from the event.

use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasherDefault, Hasher};

use serde::{Deserialize, Serialize};

use super::duration::Duration;

/// Strikes stop counting below this weight under half-life decay.
const NEGLIGIBLE_WEIGHT: f64 = 0.01;
/// Entries kept per repeat key: enough to find a repeated text among other messages.
pub(crate) const REPEAT_CAP: usize = 64;

/// One strike against an identity.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Strike {
    pub ts: i64,
    pub weight: f64,
    pub rule: String,
}

/// How strikes lose their weight over time.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Decay {
    /// A strike counts fully for this long, then not at all.
    Window(Duration),
    /// A strike's weight halves every this long.
    HalfLife(Duration),
}

impl Decay {
    /// After how long a strike no longer counts at all (with a half-life: when any weight has
    /// become negligible), so that it can be forgotten.
    pub fn forgotten_after(self) -> Duration {
        match self {
            Decay::Window(d) => d,
            Decay::HalfLife(h) => Duration::from_millis(h.as_millis().saturating_mul(64)),
        }
    }

    fn weight_at(self, strike: &Strike, now: i64) -> f64 {
        let age = now.saturating_sub(strike.ts);
        if age < 0 {
            return 0.0; // a strike from the future (clock skew) does not count yet
        }
        match self {
            Decay::Window(d) => {
                if (age as u64) < d.as_millis() {
                    strike.weight
                } else {
                    0.0
                }
            }
            Decay::HalfLife(h) => {
                let halvings = age as f64 / h.as_millis().max(1) as f64;
                let w = strike.weight * 0.5f64.powf(halvings);
                if w < NEGLIGIBLE_WEIGHT {
                    0.0
                } else {
                    w
                }
            }
        }
    }
}

/// A counter key: a 64-bit hash of the parts that name it (scope, room, identity). Counters are
/// touched on every event; hashing the parts once is far cheaper than building strings.
pub type Key = u64;

/// FNV-1a over the parts, with a separator no UTF-8 text contains, and a final mix.
pub fn key(parts: &[&str]) -> Key {
    let mut k = KeyBuilder::new();
    for part in parts {
        k.bytes(part.as_bytes());
        k.end_part();
    }
    k.finish()
}

/// Builds a [`Key`] from pieces of text, the same as [`key`] would from the joined parts.
pub(crate) struct KeyBuilder(u64);

impl KeyBuilder {
    pub fn new() -> Self {
        KeyBuilder(0xcbf2_9ce4_8422_2325)
    }

    pub fn bytes(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0 ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3);
        }
    }

    pub fn end_part(&mut self) {
        self.bytes(&[0xFF]);
    }

    pub fn finish(&self) -> Key {
        mix(self.0)
    }
}

/// Combines hashes (and small tags) into one key.
pub(crate) fn combine(parts: &[u64]) -> Key {
    let mut h: u64 = 0x243f_6a88_85a3_08d3;
    for p in parts {
        h = mix(h ^ p);
    }
    h
}

/// splitmix64's finaliser: spreads the bits so the low ones index hash tables well.
pub(crate) fn mix(mut h: u64) -> u64 {
    h ^= h >> 30;
    h = h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h ^= h >> 27;
    h = h.wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

/// Hashes a [`Key`] as itself: keys are hashes already.
#[derive(Default)]
pub(crate) struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0 << 8) | u64::from(*b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

type KeyMap<V> = HashMap<Key, V, BuildHasherDefault<KeyHasher>>;

/// The strikes of one identity, keyed by the hash of the identity.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
struct StrikeRecord {
    identity: String,
    strikes: Vec<Strike>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct Presence {
    pub joined_ts: Option<i64>,
    pub spoke: bool,
}

/// Everything the engine remembers. Keys are built from the room and the sender's identity.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct State {
    #[serde(default)]
    rates: KeyMap<VecDeque<i64>>,
    #[serde(default)]
    repeats: KeyMap<VecDeque<(u64, i64)>>,
    #[serde(default)]
    strikes: KeyMap<StrikeRecord>,
    #[serde(default)]
    presence: KeyMap<Presence>,
}

/// Inserts `item` keeping `v` sorted by `key`, so late (out of order) events count right.
/// In order (the usual case) it is a push at the back.
fn insert_sorted<T, K: Ord>(v: &mut VecDeque<T>, item: T, key: impl Fn(&T) -> K) {
    let k = key(&item);
    if v.back().is_none_or(|last| key(last) <= k) {
        v.push_back(item);
        return;
    }
    let at = v.partition_point(|x| key(x) <= k);
    v.insert(at, item);
}

impl State {
    pub fn new() -> Self {
        Self::default()
    }

    /// Records an event at `ts` under `key`, keeping at most `cap` timestamps no older than
    /// `horizon` before the newest.
    pub(crate) fn record_rate(&mut self, key: Key, ts: i64, cap: usize, horizon: Duration) {
        let v = self.rates.entry(key).or_default();
        insert_sorted(v, ts, |t| *t);
        let newest = *v.back().unwrap_or(&ts);
        let oldest_kept = newest.saturating_sub(horizon.as_millis() as i64);
        let stale = v.partition_point(|t| *t <= oldest_kept);
        let over = v.len().saturating_sub(cap);
        v.drain(..stale.max(over));
    }

    /// How many recorded events under `key` fall in the window `(now - within, now]`.
    pub(crate) fn rate_count(&self, key: Key, now: i64, within: Duration) -> usize {
        let since = now.saturating_sub(within.as_millis() as i64);
        self.rates.get(&key).map_or(0, |v| {
            v.iter().filter(|t| **t > since && **t <= now).count()
        })
    }

    pub(crate) fn record_repeat(&mut self, key: Key, hash: u64, ts: i64, horizon: Duration) {
        let v = self.repeats.entry(key).or_default();
        insert_sorted(v, (hash, ts), |(_, t)| *t);
        let newest = v.back().map_or(ts, |(_, t)| *t);
        let oldest_kept = newest.saturating_sub(horizon.as_millis() as i64);
        let stale = v.partition_point(|(_, t)| *t <= oldest_kept);
        let over = v.len().saturating_sub(REPEAT_CAP);
        v.drain(..stale.max(over));
    }

    pub(crate) fn repeat_count(&self, key: Key, hash: u64, now: i64, within: Duration) -> usize {
        let since = now.saturating_sub(within.as_millis() as i64);
        self.repeats.get(&key).map_or(0, |v| {
            v.iter()
                .filter(|(h, t)| *h == hash && *t > since && *t <= now)
                .count()
        })
    }

    pub(crate) fn presence(&self, key: Key) -> Option<&Presence> {
        self.presence.get(&key)
    }

    pub(crate) fn presence_mut(&mut self, key: Key) -> &mut Presence {
        self.presence.entry(key).or_default()
    }

    /// The live strike total of `identity` at `now`.
    pub fn strike_total(&self, identity: &str, now: i64, decay: Decay) -> f64 {
        self.strike_total_by_key(key(&[identity]), now, decay)
    }

    pub(crate) fn strike_total_by_key(&self, k: Key, now: i64, decay: Decay) -> f64 {
        self.strikes.get(&k).map_or(0.0, |r| {
            r.strikes.iter().map(|s| decay.weight_at(s, now)).sum()
        })
    }

    /// The strikes on record for `identity`, oldest first, including ones that decayed but
    /// were not pruned yet.
    pub fn strikes(&self, identity: &str) -> &[Strike] {
        self.strikes
            .get(&key(&[identity]))
            .map_or(&[], |r| r.strikes.as_slice())
    }

    /// Adds a strike against the identity whose key is `k`; `identity` names it (called only
    /// when the identity is not on record yet).
    pub(crate) fn add_strike(
        &mut self,
        k: Key,
        identity: impl FnOnce() -> String,
        strike: Strike,
        decay: Decay,
    ) {
        let now = strike.ts;
        let r = self.strikes.entry(k).or_insert_with(|| StrikeRecord {
            identity: identity(),
            strikes: Vec::new(),
        });
        r.strikes
            .retain(|s| decay.weight_at(s, now) > 0.0 || s.ts > now);
        let at = r.strikes.partition_point(|s| s.ts <= strike.ts);
        r.strikes.insert(at, strike);
    }

    /// Replaces the strikes of `identity` (the daemon seeds them from the audit store).
    pub fn set_strikes(&mut self, identity: &str, strikes: Vec<Strike>) {
        let k = key(&[identity]);
        if strikes.is_empty() {
            self.strikes.remove(&k);
        } else {
            self.strikes.insert(
                k,
                StrikeRecord {
                    identity: identity.to_string(),
                    strikes,
                },
            );
        }
    }

    /// Forgets the strikes of `identity` (a moderator's `strikes clear`).
    pub fn clear_strikes(&mut self, identity: &str) {
        self.strikes.remove(&key(&[identity]));
    }

    /// Every identity with strikes on record.
    pub fn identities_with_strikes(&self) -> impl Iterator<Item = &str> {
        self.strikes.values().map(|r| r.identity.as_str())
    }

    /// Drops everything that can no longer affect a decision at `now`: rate and repeat
    /// entries older than `horizon`, decayed strikes, and presence older than `horizon` for
    /// people who have spoken. The daemon calls this periodically to bound memory.
    pub fn prune(&mut self, now: i64, horizon: Duration, decay: Decay) {
        let since = now.saturating_sub(horizon.as_millis() as i64);
        self.rates.retain(|_, v| {
            v.retain(|t| *t > since);
            !v.is_empty()
        });
        self.repeats.retain(|_, v| {
            v.retain(|(_, t)| *t > since);
            !v.is_empty()
        });
        self.strikes.retain(|_, r| {
            r.strikes
                .retain(|s| decay.weight_at(s, now) > 0.0 || s.ts > now);
            !r.strikes.is_empty()
        });
        self.presence
            .retain(|_, p| !p.spoke || p.joined_ts.is_some_and(|j| j > since));
    }

    /// How many keys the state holds, for metrics and tests of pruning.
    pub fn len(&self) -> usize {
        self.rates.len() + self.repeats.len() + self.strikes.len() + self.presence.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const K: Key = 42;
    use super::key;

    fn d(text: &str) -> Duration {
        Duration::parse(text).unwrap()
    }

    #[test]
    fn rates_count_the_window_and_stay_bounded() {
        let mut s = State::new();
        for t in 0..100 {
            s.record_rate(K, t * 1000, 5, d("10s"));
        }
        assert_eq!(s.rate_count(K, 99_000, d("10s")), 5); // capped at 5
        assert_eq!(s.rate_count(K, 99_000, d("3s")), 3);
        assert_eq!(s.rates[&K].len(), 5);
        // An event that arrives late still lands in order.
        s.record_rate(K, 96_500, 10, d("10s"));
        assert_eq!(s.rate_count(K, 99_000, d("3s")), 4);
    }

    #[test]
    fn repeats_find_the_same_text_among_others() {
        let mut s = State::new();
        for (i, h) in [1u64, 2, 1, 3, 1].into_iter().enumerate() {
            s.record_repeat(K, h, i as i64 * 1000, d("1m"));
        }
        assert_eq!(s.repeat_count(K, 1, 4000, d("1m")), 3);
        assert_eq!(s.repeat_count(K, 1, 4000, d("2s")), 1);
    }

    #[test]
    fn window_decay_forgets_old_strikes() {
        let decay = Decay::Window(d("1h"));
        let mut s = State::new();
        s.add_strike(
            key(&["u"]),
            || "u".into(),
            Strike {
                ts: 0,
                weight: 1.0,
                rule: "a".into(),
            },
            decay,
        );
        s.add_strike(
            key(&["u"]),
            || "u".into(),
            Strike {
                ts: 1_800_000,
                weight: 2.0,
                rule: "b".into(),
            },
            decay,
        );
        assert_eq!(s.strike_total("u", 1_800_000, decay), 3.0);
        assert_eq!(s.strike_total("u", 3_600_000, decay), 2.0);
        assert_eq!(s.strike_total("u", 5_400_000, decay), 0.0);
    }

    #[test]
    fn half_life_decay_halves() {
        let decay = Decay::HalfLife(d("1h"));
        let mut s = State::new();
        s.add_strike(
            key(&["u"]),
            || "u".into(),
            Strike {
                ts: 0,
                weight: 4.0,
                rule: "a".into(),
            },
            decay,
        );
        assert_eq!(s.strike_total("u", 3_600_000, decay), 2.0);
        assert_eq!(s.strike_total("u", 7_200_000, decay), 1.0);
        assert_eq!(s.strike_total("u", 3_600_000 * 20, decay), 0.0);
    }

    #[test]
    fn prune_bounds_memory() {
        let decay = Decay::Window(d("1h"));
        let mut s = State::new();
        for i in 0..1000 {
            let name = format!("user{i}");
            s.record_rate(key(&[&name]), i, 5, d("1m"));
            s.add_strike(
                key(&[&name]),
                || name.clone(),
                Strike {
                    ts: i,
                    weight: 1.0,
                    rule: "r".into(),
                },
                decay,
            );
        }
        assert_eq!(s.len(), 2000);
        s.prune(10 * 3_600_000, d("1m"), decay);
        assert!(s.is_empty());
    }

    #[test]
    fn state_round_trips_through_json() {
        let mut s = State::new();
        s.record_rate(K, 5, 5, d("1m"));
        s.add_strike(
            key(&["u"]),
            || "u".into(),
            Strike {
                ts: 1,
                weight: 1.0,
                rule: "r".into(),
            },
            Decay::Window(d("1h")),
        );
        let json = serde_json::to_string(&s).unwrap();
        assert_eq!(serde_json::from_str::<State>(&json).unwrap(), s);
    }
}
