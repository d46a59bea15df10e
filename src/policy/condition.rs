//! Compiled conditions and how they are checked against one event.
//!
//! A condition is checked against a [`Context`], which computes the expensive views of the
//! event (normalised readings, list hits, regex matches, links) at most once, and only when
//! a condition needs them. Checking never fails and never changes state: counters were
//! updated before the rules ran. Children of `all`/`any` are ordered cheapest first at load
//! time, which is safe because checking has no side effects.

use std::cell::OnceCell;
use std::fmt;

use super::decision::Evidence;
use super::duration::Duration;
use super::event::{Event, EventKind, Network};
use super::link::{find_links, host_in_domain, Link};
use super::matcher::ListHit;
use super::normalize::{QuickText, Reading};
use super::state::{combine, key, Key, State};
use super::{Policy, RoleSet};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RatePer {
    /// The sender in this room.
    Sender,
    /// The sender in any room.
    SenderAnywhere,
    /// Everyone in this room.
    Room,
}

impl RatePer {
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "sender" => Some(RatePer::Sender),
            "sender_anywhere" => Some(RatePer::SenderAnywhere),
            "room" => Some(RatePer::Room),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            RatePer::Sender => "sender",
            RatePer::SenderAnywhere => "sender_anywhere",
            RatePer::Room => "room",
        }
    }

    /// The state key under which events of `kind`'s group are counted for this scope.
    pub(crate) fn key(self, kind: EventKind, k: EventKeys) -> Key {
        let group = kind.rate_group_id();
        match self {
            RatePer::Sender => combine(&[1, group, k.room, k.identity]),
            RatePer::SenderAnywhere => combine(&[2, group, k.identity]),
            RatePer::Room => combine(&[3, group, k.room]),
        }
    }
}

/// Whose messages a repeat condition compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RepeatScope {
    pub across_rooms: bool,
    pub any_sender: bool,
}

impl RepeatScope {
    pub(crate) fn key(self, k: EventKeys) -> Key {
        match (self.across_rooms, self.any_sender) {
            (false, false) => combine(&[4, k.room, k.identity]),
            (true, false) => combine(&[5, k.identity]),
            (false, true) => combine(&[6, k.room]),
            (true, true) => combine(&[7]),
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct SenderMatch {
    pub network: Option<Network>,
    /// Lower-cased glob on the nick or user id.
    pub pattern: Option<String>,
    pub matrix_server: Option<String>,
    pub account: Option<String>,
    pub roles: Vec<usize>,
}

#[derive(Debug, Clone)]
pub enum Condition {
    List {
        list: usize,
        name: String,
    },
    Regex {
        idx: usize,
        raw: bool,
    },
    Domains {
        list: usize,
        name: String,
    },
    /// A link points outside the domain list.
    LinksOutside {
        list: usize,
        name: String,
    },
    HasLink(bool),
    MentionsAtLeast(usize),
    MassPing(bool),
    Caps {
        min: f64,
        min_letters: usize,
    },
    LengthOver(usize),
    LinesOver(usize),
    Rate {
        count: usize,
        within: Duration,
        per: RatePer,
    },
    Repeat {
        count: usize,
        within: Duration,
        scope: RepeatScope,
    },
    JoinedWithin(Duration),
    FirstMessage(bool),
    Sender(SenderMatch),
    /// The sender holds any of these roles (ids into the policy's roles).
    Roles(Vec<usize>),
    All(Vec<Condition>),
    Any(Vec<Condition>),
    Not(Box<Condition>),
}

impl Condition {
    /// A rough cost class, so that cheap checks run first inside `all` and `any`.
    pub fn cost(&self) -> u8 {
        match self {
            Condition::List { .. } | Condition::Regex { .. } => 4,
            Condition::Domains { .. } | Condition::LinksOutside { .. } | Condition::HasLink(_) => 3,
            Condition::Caps { .. } | Condition::MassPing(_) | Condition::Repeat { .. } => 2,
            Condition::All(c) | Condition::Any(c) => c.iter().map(Self::cost).max().unwrap_or(0),
            Condition::Not(c) => c.cost(),
            _ => 1,
        }
    }

    /// Checks the condition; on success, appends why to `evidence`.
    pub fn check(&self, cx: &Context<'_>, evidence: &mut Vec<Evidence>) -> bool {
        let ev = cx.event;
        match self {
            Condition::List { list, .. } => {
                let hits: Vec<&ListHit> =
                    cx.list_hits().iter().filter(|h| h.list == *list).collect();
                for h in &hits {
                    evidence.push(cx.term_evidence(h));
                }
                !hits.is_empty()
            }
            Condition::Regex { idx, raw } => cx
                .regex_evidence(*idx, *raw)
                .map(|e| evidence.push(e))
                .is_some(),
            Condition::Domains { list, name } => {
                let domains = &cx.policy.lists[*list].domains;
                let mut found = false;
                for link in cx.links() {
                    if let Some(d) = domains.iter().find(|d| host_in_domain(&link.host, d)) {
                        evidence.push(Evidence::Domain {
                            list: name.clone(),
                            domain: d.clone(),
                            url: link.url.clone(),
                        });
                        found = true;
                    }
                }
                found
            }
            Condition::LinksOutside { list, .. } => {
                let domains = &cx.policy.lists[*list].domains;
                let outside: Vec<&Link> = cx
                    .links()
                    .iter()
                    .filter(|l| !domains.iter().any(|d| host_in_domain(&l.host, d)))
                    .collect();
                for l in &outside {
                    evidence.push(Evidence::Link { url: l.url.clone() });
                }
                !outside.is_empty()
            }
            Condition::HasLink(want) => {
                let links = cx.links();
                if links.is_empty() != *want {
                    match links.first() {
                        Some(l) => evidence.push(Evidence::Link { url: l.url.clone() }),
                        None => evidence.push(Evidence::NoLink),
                    }
                    true
                } else {
                    false
                }
            }
            Condition::MentionsAtLeast(n) => {
                let count = cx.distinct_mentions();
                (count >= *n)
                    .then(|| evidence.push(Evidence::Mentions { count }))
                    .is_some()
            }
            Condition::MassPing(want) => {
                let via = cx.mass_ping();
                match (via, want) {
                    (Some(via), true) => {
                        evidence.push(Evidence::MassPing { via });
                        true
                    }
                    (None, false) => true,
                    _ => false,
                }
            }
            Condition::Caps { min, min_letters } => {
                let (upper, cased) = cx.texts.case_counts();
                let ratio = if cased == 0 {
                    0.0
                } else {
                    upper as f64 / cased as f64
                };
                let holds = cased >= *min_letters && cased > 0 && ratio >= *min;
                if holds {
                    evidence.push(Evidence::Caps {
                        ratio,
                        letters: cased,
                    });
                }
                holds
            }
            Condition::LengthOver(n) => {
                let chars = ev.body.chars().count();
                (chars > *n)
                    .then(|| evidence.push(Evidence::Length { chars }))
                    .is_some()
            }
            Condition::LinesOver(n) => {
                let lines = ev.body.lines().count();
                (lines > *n)
                    .then(|| evidence.push(Evidence::Lines { lines }))
                    .is_some()
            }
            Condition::Rate { count, within, per } => {
                let seen = cx
                    .state
                    .rate_count(per.key(ev.kind, cx.keys), ev.ts, *within);
                (seen >= *count)
                    .then(|| {
                        evidence.push(Evidence::Rate {
                            count: seen,
                            within: *within,
                            per: per.name(),
                        })
                    })
                    .is_some()
            }
            Condition::Repeat {
                count,
                within,
                scope,
            } => {
                let Some(hash) = cx.fingerprint else {
                    return false;
                };
                let seen = cx
                    .state
                    .repeat_count(scope.key(cx.keys), hash, ev.ts, *within);
                (seen >= *count)
                    .then(|| {
                        evidence.push(Evidence::Repeat {
                            count: seen,
                            within: *within,
                        })
                    })
                    .is_some()
            }
            Condition::JoinedWithin(within) => {
                let Some(joined) = cx.joined_ts() else {
                    return false;
                };
                let ago = ev.ts.saturating_sub(joined);
                let holds = ago >= 0 && (ago as u64) < within.as_millis();
                if holds {
                    evidence.push(Evidence::JoinedWithin {
                        ago: Duration::from_millis(ago as u64),
                    });
                }
                holds
            }
            Condition::FirstMessage(want) => {
                let first = cx.first_message;
                (first == *want)
                    .then(|| evidence.push(Evidence::FirstMessage { first }))
                    .is_some()
            }
            Condition::Sender(m) => {
                let holds = sender_matches(m, ev, cx.roles);
                if holds {
                    evidence.push(Evidence::Sender {
                        sender: ev.sender.clone(),
                    });
                }
                holds
            }
            Condition::Roles(ids) => {
                let held: Vec<String> = ids
                    .iter()
                    .filter(|r| cx.roles.holds(**r))
                    .map(|r| cx.policy.roles[*r].name.clone())
                    .collect();
                let holds = !held.is_empty();
                if holds {
                    evidence.push(Evidence::Roles { roles: held });
                }
                holds
            }
            Condition::All(children) => {
                let mark = evidence.len();
                let holds = children.iter().all(|c| c.check(cx, evidence));
                if !holds {
                    evidence.truncate(mark);
                }
                holds
            }
            Condition::Any(children) => {
                let mark = evidence.len();
                for c in children {
                    if c.check(cx, evidence) {
                        return true;
                    }
                    evidence.truncate(mark);
                }
                false
            }
            Condition::Not(inner) => {
                let mut scratch = Vec::new();
                let holds = !inner.check(cx, &mut scratch);
                if holds {
                    evidence.push(Evidence::Not {
                        condition: inner.describe(cx.policy),
                    });
                }
                holds
            }
        }
    }

    /// A short human description, e.g. `list "insults"` or `rate 5 within 10s per sender`.
    pub fn describe(&self, policy: &Policy) -> String {
        Describe(self, policy).to_string()
    }
}

struct Describe<'a>(&'a Condition, &'a Policy);

impl fmt::Display for Describe<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let p = self.1;
        let join = |f: &mut fmt::Formatter<'_>, word: &str, cs: &[Condition]| {
            write!(f, "{word}(")?;
            for (i, c) in cs.iter().enumerate() {
                if i > 0 {
                    write!(f, ", ")?;
                }
                write!(f, "{}", Describe(c, p))?;
            }
            write!(f, ")")
        };
        match self.0 {
            Condition::List { name, .. } => write!(f, "list {name:?}"),
            Condition::Regex { idx, raw: false } => {
                write!(f, "regex {:?}", p.regex_norm.pattern(*idx))
            }
            Condition::Regex { idx, raw: true } => {
                write!(f, "regex_raw {:?}", p.regex_raw.pattern(*idx))
            }
            Condition::Domains { name, .. } => write!(f, "domains {name:?}"),
            Condition::LinksOutside { name, .. } => write!(f, "links_outside {name:?}"),
            Condition::HasLink(b) => write!(f, "has_link = {b}"),
            Condition::MentionsAtLeast(n) => write!(f, "mentions_at_least = {n}"),
            Condition::MassPing(b) => write!(f, "mass_ping = {b}"),
            Condition::Caps { min, min_letters } => {
                write!(f, "caps_ratio >= {min} (min {min_letters} letters)")
            }
            Condition::LengthOver(n) => write!(f, "length_over = {n}"),
            Condition::LinesOver(n) => write!(f, "lines_over = {n}"),
            Condition::Rate { count, within, per } => {
                write!(f, "rate {count} within {within} per {}", per.name())
            }
            Condition::Repeat { count, within, .. } => write!(f, "repeat {count} within {within}"),
            Condition::JoinedWithin(d) => write!(f, "joined_within = {d}"),
            Condition::FirstMessage(b) => write!(f, "first_message = {b}"),
            Condition::Sender(_) => write!(f, "sender"),
            Condition::Roles(ids) => {
                let names: Vec<&str> = ids.iter().map(|r| p.roles[*r].name.as_str()).collect();
                write!(f, "roles {names:?}")
            }
            Condition::All(cs) => join(f, "all", cs),
            Condition::Any(cs) => join(f, "any", cs),
            Condition::Not(c) => write!(f, "not({})", Describe(c, p)),
        }
    }
}

fn sender_matches(m: &SenderMatch, ev: &Event, roles: RoleSet) -> bool {
    if m.network.is_some_and(|n| n != ev.network) {
        return false;
    }
    if let Some(p) = &m.pattern {
        if !glob_match(p, &ev.sender.to_lowercase()) {
            return false;
        }
    }
    if let Some(server) = &m.matrix_server {
        let theirs = (ev.network == Network::Matrix)
            .then(|| ev.sender.split_once(':').map(|(_, s)| s.to_lowercase()))
            .flatten();
        if theirs.as_deref() != Some(server.as_str()) {
            return false;
        }
    }
    if let Some(account) = &m.account {
        if !ev
            .account
            .as_deref()
            .is_some_and(|a| a.eq_ignore_ascii_case(account))
        {
            return false;
        }
    }
    m.roles.iter().all(|r| roles.holds(*r))
}

/// `*` matches any run of characters, `?` one character. Linear-time with one backtrack point.
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ti));
            pi += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

/// Everything a condition may look at, computed lazily and at most once per event.
pub(crate) struct Context<'a> {
    pub policy: &'a Policy,
    pub event: &'a Event,
    pub keys: EventKeys,
    pub roles: RoleSet,
    pub state: &'a State,
    pub texts: &'a Texts<'a>,
    pub fingerprint: Option<u64>,
    pub first_message: bool,
}

/// The derived views of an event's text.
pub struct Texts<'a> {
    policy: &'a Policy,
    body: &'a str,
    /// The primary reading's text from the quick path, when the text allowed it.
    quick: OnceCell<Option<QuickText>>,
    readings: OnceCell<Vec<Reading>>,
    hits: OnceCell<Vec<ListHit>>,
    regex_norm: OnceCell<Vec<bool>>,
    regex_raw: OnceCell<Vec<bool>>,
    links: OnceCell<Vec<Link>>,
}

impl<'a> Texts<'a> {
    pub fn new(policy: &'a Policy, body: &'a str) -> Self {
        Texts {
            policy,
            body,
            quick: OnceCell::new(),
            readings: OnceCell::new(),
            hits: OnceCell::new(),
            regex_norm: OnceCell::new(),
            regex_raw: OnceCell::new(),
            links: OnceCell::new(),
        }
    }

    pub fn readings(&self) -> &[Reading] {
        self.readings
            .get_or_init(|| self.policy.normalizer.readings(self.body))
    }

    fn quick(&self) -> Option<&QuickText> {
        self.quick
            .get_or_init(|| self.policy.normalizer.quick_text(self.body))
            .as_ref()
    }

    /// Upper-case letters and letters with case in the original text.
    fn case_counts(&self) -> (usize, usize) {
        match self.quick() {
            Some(q) => (q.upper, q.cased),
            None => self.policy.normalizer.case_counts(self.body),
        }
    }

    /// A hash of the primary reading without ASCII spacing and punctuation: equal for
    /// messages that differ only in case, spacing, punctuation or evasion tricks. None for
    /// text with nothing left.
    pub fn fingerprint(&self) -> Option<u64> {
        match self.quick() {
            Some(q) => q.fingerprint,
            None => super::normalize::fingerprint(self.readings()[0].text()),
        }
    }
}

impl Context<'_> {
    fn list_hits(&self) -> &[ListHit] {
        let t = self.texts;
        t.hits.get_or_init(|| {
            // Most texts contain no term at all: a plain search of the quick text says so
            // without building readings; only a possible match pays for the full search.
            if t.quick()
                .is_some_and(|q| !self.policy.terms.any_match(&q.text))
            {
                return Vec::new();
            }
            self.policy.terms.find(t.readings())
        })
    }

    fn term_evidence(&self, h: &ListHit) -> Evidence {
        let list = &self.policy.lists[h.list];
        Evidence::Term {
            list: list.name.clone(),
            term: list.terms[h.term].clone(),
            matched: self.event.body[h.span.clone()].to_string(),
            start: h.span.start,
            end: h.span.end,
        }
    }

    fn regex_evidence(&self, idx: usize, raw: bool) -> Option<Evidence> {
        let t = self.texts;
        let p = self.policy;
        if raw {
            let hits = t.regex_raw.get_or_init(|| p.regex_raw.matches(t.body));
            if !hits[idx] {
                return None;
            }
            let span = p.regex_raw.find(idx, t.body)?;
            return Some(Evidence::Regex {
                pattern: p.regex_raw.pattern(idx).to_string(),
                matched: t.body[span.clone()].to_string(),
                start: span.start,
                end: span.end,
                raw: true,
            });
        }
        let hits = t.regex_norm.get_or_init(|| {
            if let Some(q) = t.quick() {
                return p.regex_norm.matches(&q.text);
            }
            let mut any = vec![false; p.regex_norm.len()];
            for r in t.readings() {
                for (i, m) in p.regex_norm.matches(r.text()).into_iter().enumerate() {
                    any[i] |= m;
                }
            }
            any
        });
        if !hits[idx] {
            return None;
        }
        t.readings().iter().find_map(|r| {
            let found = p.regex_norm.find(idx, r.text())?;
            let span = r.original_span(found);
            Some(Evidence::Regex {
                pattern: p.regex_norm.pattern(idx).to_string(),
                matched: t.body[span.clone()].to_string(),
                start: span.start,
                end: span.end,
                raw: false,
            })
        })
    }

    fn links(&self) -> &[Link] {
        self.texts.links.get_or_init(|| find_links(self.texts.body))
    }

    fn distinct_mentions(&self) -> usize {
        let mut seen: Vec<String> = self
            .event
            .mentions
            .iter()
            .map(|m| m.to_lowercase())
            .collect();
        seen.sort();
        seen.dedup();
        seen.len()
    }

    /// How the event pings everyone, if it does.
    fn mass_ping(&self) -> Option<String> {
        let body = &self.event.body;
        for (at, _) in body.match_indices('@') {
            let rest = &body.as_bytes()[at..];
            for word in ["@room", "@everyone", "@here"] {
                let end = at + word.len();
                if rest.len() < word.len()
                    || !rest[..word.len()].eq_ignore_ascii_case(word.as_bytes())
                {
                    continue;
                }
                let before = body[..at].chars().next_back();
                let after = body.get(end..).and_then(|s| s.chars().next());
                if !before.is_some_and(char::is_alphanumeric)
                    && !after.is_some_and(char::is_alphanumeric)
                {
                    return Some(word.to_string());
                }
            }
        }
        let members = self.event.room_members? as usize;
        let count = self.distinct_mentions();
        (members > 0 && count >= 3 && count * 2 >= members)
            .then(|| format!("{count} of {members} members mentioned"))
    }

    fn joined_ts(&self) -> Option<i64> {
        self.event.joined_ts.or_else(|| {
            self.state
                .presence(self.keys.presence())
                .and_then(|p| p.joined_ts)
        })
    }
}

/// The hashes of an event's room and sender identity, computed once per event; every
/// counter key is combined from them.
#[derive(Debug, Clone, Copy)]
pub struct EventKeys {
    pub room: u64,
    pub identity: u64,
}

impl EventKeys {
    pub fn new(room: &str, identity: Key) -> Self {
        EventKeys {
            room: key(&[room]),
            identity,
        }
    }

    pub(crate) fn presence(self) -> Key {
        combine(&[8, self.room, self.identity])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        for (p, t, want) in [
            ("spam*bot*", "spamxbot1", true),
            ("spam*bot*", "spambot", true),
            ("spam*bot*", "spambo", false),
            ("*", "", true),
            ("a?c", "abc", true),
            ("a?c", "ac", false),
            ("*@evil.example", "@x:evil.example", false),
            ("@*:evil.example", "@x:evil.example", true),
            ("**a**", "bab", true),
        ] {
            assert_eq!(glob_match(p, t), want, "{p} {t}");
        }
    }
}
