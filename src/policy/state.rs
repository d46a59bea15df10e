//! The engine's memory between events: rates, repeats, presence and strikes.
//!
//! Pure data that evaluation receives and returns, so the daemon decides where it lives
//! (strikes are persisted by the audit store; rates may stay in memory). Every collection is
//! bounded: timestamps are capped per key and pruned by the longest window that needs them.
//! Must not read a clock: every method takes `now` from the event.

use std::collections::HashMap;

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
                if w < NEGLIGIBLE_WEIGHT { 0.0 } else { w }
            }
        }
    }
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
    rates: HashMap<String, Vec<i64>>,
    #[serde(default)]
    repeats: HashMap<String, Vec<(u64, i64)>>,
    #[serde(default)]
    strikes: HashMap<String, Vec<Strike>>,
    #[serde(default)]
    presence: HashMap<String, Presence>,
}

/// Inserts `item` keeping `v` sorted by `key`, so late (out of order) events count right.
fn insert_sorted<T, K: Ord>(v: &mut Vec<T>, item: T, key: impl Fn(&T) -> K) {
    let k = key(&item);
    let at = v.partition_point(|x| key(x) <= k);
    v.insert(at, item);
}

impl State {
    pub fn new() -> Self {
        Self::default()
    }

    /// Records an event at `ts` under `key`, keeping at most `cap` timestamps no older than
    /// `horizon` before the newest.
    pub(crate) fn record_rate(&mut self, key: &str, ts: i64, cap: usize, horizon: Duration) {
        let v = match self.rates.get_mut(key) {
            Some(v) => v,
            None => self.rates.entry(key.to_string()).or_default(),
        };
        insert_sorted(v, ts, |t| *t);
        let newest = *v.last().unwrap_or(&ts);
        let oldest_kept = newest.saturating_sub(horizon.as_millis() as i64);
        let stale = v.partition_point(|t| *t <= oldest_kept);
        let over = v.len().saturating_sub(cap);
        v.drain(..stale.max(over));
    }

    /// How many recorded events under `key` fall in the window `(now - within, now]`.
    pub(crate) fn rate_count(&self, key: &str, now: i64, within: Duration) -> usize {
        let since = now.saturating_sub(within.as_millis() as i64);
        self.rates.get(key).map_or(0, |v| v.iter().filter(|t| **t > since && **t <= now).count())
    }

    pub(crate) fn record_repeat(&mut self, key: &str, hash: u64, ts: i64, horizon: Duration) {
        let v = match self.repeats.get_mut(key) {
            Some(v) => v,
            None => self.repeats.entry(key.to_string()).or_default(),
        };
        insert_sorted(v, (hash, ts), |(_, t)| *t);
        let newest = v.last().map_or(ts, |(_, t)| *t);
        let oldest_kept = newest.saturating_sub(horizon.as_millis() as i64);
        let stale = v.partition_point(|(_, t)| *t <= oldest_kept);
        let over = v.len().saturating_sub(REPEAT_CAP);
        v.drain(..stale.max(over));
    }

    pub(crate) fn repeat_count(&self, key: &str, hash: u64, now: i64, within: Duration) -> usize {
        let since = now.saturating_sub(within.as_millis() as i64);
        self.repeats.get(key).map_or(0, |v| {
            v.iter().filter(|(h, t)| *h == hash && *t > since && *t <= now).count()
        })
    }

    pub(crate) fn presence(&self, key: &str) -> Option<&Presence> {
        self.presence.get(key)
    }

    pub(crate) fn presence_mut(&mut self, key: &str) -> &mut Presence {
        if !self.presence.contains_key(key) {
            self.presence.insert(key.to_string(), Presence::default());
        }
        self.presence.get_mut(key).expect("inserted above")
    }

    /// The live strike total of `identity` at `now`.
    pub fn strike_total(&self, identity: &str, now: i64, decay: Decay) -> f64 {
        self.strikes
            .get(identity)
            .map_or(0.0, |v| v.iter().map(|s| decay.weight_at(s, now)).sum())
    }

    /// The strikes on record for `identity`, oldest first, including ones that decayed but
    /// were not pruned yet.
    pub fn strikes(&self, identity: &str) -> &[Strike] {
        self.strikes.get(identity).map_or(&[], Vec::as_slice)
    }

    pub(crate) fn add_strike(&mut self, identity: &str, strike: Strike, decay: Decay) {
        let now = strike.ts;
        let v = self.strikes.entry(identity.to_string()).or_default();
        v.retain(|s| decay.weight_at(s, now) > 0.0 || s.ts > now);
        insert_sorted(v, strike, |s| s.ts);
    }

    /// Replaces the strikes of `identity` (the daemon seeds them from the audit store).
    pub fn set_strikes(&mut self, identity: &str, strikes: Vec<Strike>) {
        if strikes.is_empty() {
            self.strikes.remove(identity);
        } else {
            self.strikes.insert(identity.to_string(), strikes);
        }
    }

    /// Forgets the strikes of `identity` (a moderator's `strikes clear`).
    pub fn clear_strikes(&mut self, identity: &str) {
        self.strikes.remove(identity);
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
        self.strikes.retain(|_, v| {
            v.retain(|s| decay.weight_at(s, now) > 0.0 || s.ts > now);
            !v.is_empty()
        });
        self.presence.retain(|_, p| !p.spoke || p.joined_ts.is_some_and(|j| j > since));
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

    fn d(text: &str) -> Duration {
        Duration::parse(text).unwrap()
    }

    #[test]
    fn rates_count_the_window_and_stay_bounded() {
        let mut s = State::new();
        for t in 0..100 {
            s.record_rate("k", t * 1000, 5, d("10s"));
        }
        assert_eq!(s.rate_count("k", 99_000, d("10s")), 5); // capped at 5
        assert_eq!(s.rate_count("k", 99_000, d("3s")), 3);
        assert_eq!(s.rates["k"].len(), 5);
        // An event that arrives late still lands in order.
        s.record_rate("k", 96_500, 10, d("10s"));
        assert_eq!(s.rate_count("k", 99_000, d("3s")), 4);
    }

    #[test]
    fn repeats_find_the_same_text_among_others() {
        let mut s = State::new();
        for (i, h) in [1u64, 2, 1, 3, 1].into_iter().enumerate() {
            s.record_repeat("k", h, i as i64 * 1000, d("1m"));
        }
        assert_eq!(s.repeat_count("k", 1, 4000, d("1m")), 3);
        assert_eq!(s.repeat_count("k", 1, 4000, d("2s")), 1);
    }

    #[test]
    fn window_decay_forgets_old_strikes() {
        let decay = Decay::Window(d("1h"));
        let mut s = State::new();
        s.add_strike("u", Strike { ts: 0, weight: 1.0, rule: "a".into() }, decay);
        s.add_strike("u", Strike { ts: 1_800_000, weight: 2.0, rule: "b".into() }, decay);
        assert_eq!(s.strike_total("u", 1_800_000, decay), 3.0);
        assert_eq!(s.strike_total("u", 3_600_000, decay), 2.0);
        assert_eq!(s.strike_total("u", 5_400_000, decay), 0.0);
    }

    #[test]
    fn half_life_decay_halves() {
        let decay = Decay::HalfLife(d("1h"));
        let mut s = State::new();
        s.add_strike("u", Strike { ts: 0, weight: 4.0, rule: "a".into() }, decay);
        assert_eq!(s.strike_total("u", 3_600_000, decay), 2.0);
        assert_eq!(s.strike_total("u", 7_200_000, decay), 1.0);
        assert_eq!(s.strike_total("u", 3_600_000 * 20, decay), 0.0);
    }

    #[test]
    fn prune_bounds_memory() {
        let decay = Decay::Window(d("1h"));
        let mut s = State::new();
        for i in 0..1000 {
            let key = format!("user{i}");
            s.record_rate(&key, i, 5, d("1m"));
            s.add_strike(&key, Strike { ts: i, weight: 1.0, rule: "r".into() }, decay);
        }
        assert_eq!(s.len(), 2000);
        s.prune(10 * 3_600_000, d("1m"), decay);
        assert!(s.is_empty());
    }

    #[test]
    fn state_round_trips_through_json() {
        let mut s = State::new();
        s.record_rate("k", 5, 5, d("1m"));
        s.add_strike("u", Strike { ts: 1, weight: 1.0, rule: "r".into() }, Decay::Window(d("1h")));
        let json = serde_json::to_string(&s).unwrap();
        assert_eq!(serde_json::from_str::<State>(&json).unwrap(), s);
    }
}
