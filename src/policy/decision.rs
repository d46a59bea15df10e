//! What evaluation returns: the decision about one event, with its explanation.
//!
//! Plain data, serialisable to the JSON Lines of `policy eval` and into audit records. Must
//! not execute anything: the daemon turns decisions into effects.

use serde::{Serialize, Serializer};

use super::duration::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ActionKind {
    Allow,
    Warn,
    Delete,
    Mute,
    Kick,
    Ban,
    Escalate,
    Block,
}

impl ActionKind {
    pub const ALL: [ActionKind; 8] = [
        ActionKind::Allow,
        ActionKind::Warn,
        ActionKind::Delete,
        ActionKind::Mute,
        ActionKind::Kick,
        ActionKind::Ban,
        ActionKind::Escalate,
        ActionKind::Block,
    ];

    pub fn name(self) -> &'static str {
        match self {
            ActionKind::Allow => "allow",
            ActionKind::Warn => "warn",
            ActionKind::Delete => "delete",
            ActionKind::Mute => "mute",
            ActionKind::Kick => "kick",
            ActionKind::Ban => "ban",
            ActionKind::Escalate => "escalate",
            ActionKind::Block => "block",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.name() == name)
    }
}

/// One thing to do, with its parameters filled in.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Action {
    #[serde(rename = "do")]
    pub kind: ActionKind,
    /// Mute or ban length; none means until undone.
    #[serde(rename = "for", skip_serializing_if = "Option::is_none")]
    pub duration: Option<Duration>,
    /// Rendered warn or escalation text.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Rendered kick or ban reason.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The message is relayed despite this action.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub relay: bool,
    /// The rule id that asked for this, or "ladder" for a strikes-ladder step.
    pub rule: String,
}

impl Action {
    pub fn blocks_relay(&self) -> bool {
        self.kind != ActionKind::Allow && !self.relay
    }

    /// Of two mutes (or bans), the one that lasts longer; none (until undone) is longest.
    fn stronger(a: Option<Duration>, b: Option<Duration>) -> bool {
        match (a, b) {
            (None, _) => true,
            (Some(_), None) => false,
            (Some(x), Some(y)) => x >= y,
        }
    }
}

/// Appends `action` unless an equivalent one is there: one delete, one kick, one escalate,
/// one block, the strongest mute and the strongest ban, identical warnings once.
pub fn push_deduplicated(actions: &mut Vec<Action>, action: Action) {
    use ActionKind::*;
    let same = actions
        .iter_mut()
        .find(|a| a.kind == action.kind && (action.kind != Warn || a.message == action.message));
    match (same, action.kind) {
        (None, _) => actions.push(action),
        (Some(existing), Mute | Ban) => {
            if !Action::stronger(existing.duration, action.duration) {
                let relay = existing.relay && action.relay;
                *existing = Action { relay, ..action };
            }
        }
        (Some(existing), _) => existing.relay &= action.relay,
    }
}

/// Why a condition held: the evidence an explanation and an audit record show.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Evidence {
    /// A list term matched; `start..end` are byte offsets in the original body.
    Term {
        list: String,
        term: String,
        matched: String,
        start: usize,
        end: usize,
    },
    Regex {
        pattern: String,
        matched: String,
        start: usize,
        end: usize,
        raw: bool,
    },
    Domain {
        list: String,
        domain: String,
        url: String,
    },
    Link {
        url: String,
    },
    NoLink,
    Mentions {
        count: usize,
    },
    MassPing {
        via: String,
    },
    Caps {
        ratio: f64,
        letters: usize,
    },
    Length {
        chars: usize,
    },
    Lines {
        lines: usize,
    },
    Rate {
        count: usize,
        within: Duration,
        per: &'static str,
    },
    Repeat {
        count: usize,
        within: Duration,
    },
    JoinedWithin {
        ago: Duration,
    },
    FirstMessage {
        first: bool,
    },
    Sender {
        sender: String,
    },
    Roles {
        roles: Vec<String>,
    },
    /// A negated condition held because its inner condition did not.
    Not {
        condition: String,
    },
}

impl std::fmt::Display for Evidence {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Evidence::Term {
                list,
                term,
                matched,
                start,
                end,
            } => {
                write!(
                    f,
                    "list {list:?}: term {term:?} matched {matched:?} at bytes {start}..{end}"
                )
            }
            Evidence::Regex {
                pattern,
                matched,
                start,
                end,
                raw,
            } => {
                let which = if *raw { "original" } else { "normalised" };
                write!(
                    f,
                    "regex {pattern:?} matched {matched:?} in the {which} text at {start}..{end}"
                )
            }
            Evidence::Domain { list, domain, url } => {
                write!(f, "domain list {list:?}: {url:?} is under {domain:?}")
            }
            Evidence::Link { url } => write!(f, "link {url:?}"),
            Evidence::NoLink => write!(f, "no link"),
            Evidence::Mentions { count } => write!(f, "{count} users mentioned"),
            Evidence::MassPing { via } => write!(f, "mass ping via {via}"),
            Evidence::Caps { ratio, letters } => {
                write!(f, "{:.0}% of {letters} letters are capitals", ratio * 100.0)
            }
            Evidence::Length { chars } => write!(f, "{chars} characters"),
            Evidence::Lines { lines } => write!(f, "{lines} lines"),
            Evidence::Rate { count, within, per } => {
                write!(f, "{count} events within {within} (per {per})")
            }
            Evidence::Repeat { count, within } => {
                write!(f, "the same text {count} times within {within}")
            }
            Evidence::JoinedWithin { ago } => write!(f, "joined {ago} ago"),
            Evidence::FirstMessage { first: true } => write!(f, "first message since joining"),
            Evidence::FirstMessage { first: false } => write!(f, "not the first message"),
            Evidence::Sender { sender } => write!(f, "sender {sender:?} matches"),
            Evidence::Roles { roles } => write!(f, "sender holds {}", roles.join(", ")),
            Evidence::Not { condition } => write!(f, "not ({condition})"),
        }
    }
}

/// The evidence for one matched rule.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RuleMatch {
    pub rule: String,
    pub dry_run: bool,
    pub evidence: Vec<Evidence>,
}

/// The decision about one event.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Decision {
    /// Enforced rules that matched, in file order.
    pub rules: Vec<String>,
    /// What to do, rule actions first, then a ladder step; deduplicated.
    pub actions: Vec<Action>,
    /// Whether the event is relayed to the other side.
    pub relay: bool,
    /// The sender's live strike total after this event.
    #[serde(serialize_with = "number")]
    pub strikes: f64,
    /// Rules that matched in dry-run mode: audited as "would have", nothing done.
    pub dry_run: Vec<String>,
    /// What the dry-run rules would have done.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub dry_run_actions: Vec<Action>,
    /// The sender is exempt (by role) and was not evaluated.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub exempt: bool,
    /// The ladder step reached by this event, if any.
    #[serde(skip_serializing_if = "Option::is_none", serialize_with = "opt_number")]
    pub ladder_step: Option<f64>,
    /// Why each rule matched.
    pub matches: Vec<RuleMatch>,
    /// The policy that decided (sha256 of the policy file and its list files).
    pub policy: std::sync::Arc<str>,
}

impl Decision {
    /// Nothing matched, nothing to do: the event is relayed as is.
    pub fn is_plain_allow(&self) -> bool {
        self.rules.is_empty() && self.dry_run.is_empty() && self.actions.is_empty()
    }
}

fn number<S: Serializer>(x: &f64, s: S) -> Result<S::Ok, S::Error> {
    if x.fract() == 0.0 && x.abs() < 9.0e15 {
        s.serialize_i64(*x as i64)
    } else {
        s.serialize_f64((*x * 1000.0).round() / 1000.0)
    }
}

fn opt_number<S: Serializer>(x: &Option<f64>, s: S) -> Result<S::Ok, S::Error> {
    match x {
        Some(x) => number(x, s),
        None => s.serialize_none(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn action(kind: ActionKind, duration: Option<&str>) -> Action {
        Action {
            kind,
            duration: duration.map(|d| Duration::parse(d).unwrap()),
            message: None,
            reason: None,
            relay: false,
            rule: "r".into(),
        }
    }

    #[test]
    fn deduplication_keeps_one_delete_and_the_strongest_mute() {
        let mut v = Vec::new();
        for a in [
            action(ActionKind::Delete, None),
            action(ActionKind::Mute, Some("10m")),
            action(ActionKind::Delete, None),
            action(ActionKind::Mute, Some("1h")),
            action(ActionKind::Mute, Some("5m")),
            action(ActionKind::Ban, Some("1d")),
            action(ActionKind::Ban, None),
            action(ActionKind::Ban, Some("7d")),
        ] {
            push_deduplicated(&mut v, a);
        }
        let summary: Vec<_> = v
            .iter()
            .map(|a| (a.kind.name(), a.duration.map(|d| d.to_string())))
            .collect();
        assert_eq!(
            summary,
            [
                ("delete", None),
                ("mute", Some("1h".to_string())),
                ("ban", None)
            ]
        );
    }

    #[test]
    fn strikes_serialise_as_integers_when_whole() {
        let d = Decision {
            rules: vec![],
            actions: vec![],
            relay: true,
            strikes: 2.0,
            dry_run: vec![],
            dry_run_actions: vec![],
            exempt: false,
            ladder_step: None,
            matches: vec![],
            policy: std::sync::Arc::from("x"),
        };
        let json = serde_json::to_string(&d).unwrap();
        assert!(json.contains("\"strikes\":2,"), "{json}");
    }
}
