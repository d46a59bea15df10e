//! What the audit log stores: versioned records of decisions, actions, outcomes, policy loads
//! and moderator commands, and the index keys each record is found by.
//!
//! Records are JSON with a schema version `v`. Fields added later must carry a serde default,
//! so records written by older versions keep reading; fields and record types this version
//! does not know are ignored (an unknown type reads as [`Entry::Other`]), so a newer writer's
//! log does not break an older reader. Must not know sled: keys are plain bytes here.

use serde::{Deserialize, Serialize};

/// The schema version this build writes.
pub const SCHEMA_VERSION: u32 = 1;

/// Someone on a network: who acted, or who was acted upon.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Who {
    /// "irc", "irc:libera", "matrix", ...: where the identity lives.
    pub network: String,
    /// The stable identity: services account or Matrix user id where known (what strikes
    /// follow), as the policy engine computes it.
    pub identity: String,
    /// The name shown at the time: IRC nick or Matrix user id / display name.
    pub name: String,
}

/// Who took an action.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "by", rename_all = "snake_case")]
pub enum Actor {
    /// The policy, because of this rule (or "ladder").
    Policy { rule: String },
    /// A moderator, by command.
    Moderator { who: Who },
    /// The schedule: a timed unmute or unban falling due.
    Schedule,
}

/// Where an action stands.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Outcome {
    /// Recorded, about to be executed.
    Pending,
    Applied,
    Failed {
        reason: String,
    },
    Reverted {
        by: String,
    },
    /// The daemon stopped (crash, kill, shutdown grace over) between recording the action and
    /// learning how it ended: it may or may not have happened. Written at the next start.
    Interrupted,
}

/// A decision of the policy that was not a plain allow.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DecisionRecord {
    pub room: String,
    pub sender: Who,
    /// The original message text.
    pub text: String,
    pub rules: Vec<String>,
    #[serde(default)]
    pub dry_run: Vec<String>,
    /// The actions decided on (kinds), ladder included.
    #[serde(default)]
    pub actions: Vec<String>,
    /// Per matched rule, the evidence (as `policy eval` prints it).
    #[serde(default)]
    pub matches: serde_json::Value,
    /// The policy's hash.
    pub policy: String,
    /// "enforce" or "dry-run" (the policy's mode).
    pub mode: String,
    #[serde(default)]
    pub strikes: f64,
    #[serde(default)]
    pub relayed: bool,
    /// The network's id of the message (a Matrix event id), to find the decision about it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_id: Option<String>,
    /// The evidence in words, one line per matched condition (what `why` shows).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub explanation: Vec<String>,
}

/// An action, recorded before it is executed (with outcome `Pending`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ActionRecord {
    /// warn, delete, mute, unmute, kick, ban, unban, escalate, ...
    pub action: String,
    pub room: String,
    pub target: Who,
    pub actor: Actor,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    pub outcome: Outcome,
}

/// The outcome of an earlier action record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OutcomeRecord {
    /// The id of the action record.
    pub action_id: u64,
    /// Its kind again, so outcomes can be counted without loading the action.
    pub action: String,
    pub outcome: Outcome,
    /// What was applied, e.g. the ban mask or the power level a mute replaced (to undo it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// A policy load or reload, successful or not.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PolicyLoadRecord {
    pub file: String,
    #[serde(default)]
    pub hash: Option<String>,
    /// Who or what triggered it: "startup", "sighup", "file change", or a moderator.
    pub by: String,
    pub ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// A moderator command.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CommandRecord {
    pub room: String,
    pub by: Who,
    /// The command line as typed.
    pub command: String,
    pub ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply: Option<String>,
}

/// The content of a record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Entry {
    Decision(DecisionRecord),
    Action(ActionRecord),
    Outcome(OutcomeRecord),
    PolicyLoad(PolicyLoadRecord),
    Command(CommandRecord),
    /// A record type this version does not know (written by a newer version).
    #[serde(other)]
    Other,
}

impl Entry {
    pub fn kind(&self) -> &'static str {
        match self {
            Entry::Decision(_) => "decision",
            Entry::Action(_) => "action",
            Entry::Outcome(_) => "outcome",
            Entry::PolicyLoad(_) => "policy_load",
            Entry::Command(_) => "command",
            Entry::Other => "other",
        }
    }

    /// The people a record is about (indexed by identity and by name).
    pub fn users(&self) -> Vec<&Who> {
        match self {
            Entry::Decision(d) => vec![&d.sender],
            Entry::Action(a) => {
                let mut v = vec![&a.target];
                if let Actor::Moderator { who } = &a.actor {
                    v.push(who);
                }
                v
            }
            Entry::Command(c) => vec![&c.by],
            Entry::Outcome(_) | Entry::PolicyLoad(_) | Entry::Other => vec![],
        }
    }

    pub fn room(&self) -> Option<&str> {
        match self {
            Entry::Decision(d) => Some(&d.room),
            Entry::Action(a) => Some(&a.room),
            Entry::Command(c) => Some(&c.room),
            _ => None,
        }
    }

    /// The rules a record is about: those that matched, enforced or dry-run, and the rule
    /// that caused an automatic action.
    pub fn rules(&self) -> Vec<&str> {
        match self {
            Entry::Decision(d) => d
                .rules
                .iter()
                .chain(&d.dry_run)
                .map(String::as_str)
                .collect(),
            Entry::Action(ActionRecord {
                actor: Actor::Policy { rule },
                ..
            }) => vec![rule.as_str()],
            _ => vec![],
        }
    }

    /// The action kinds a record is about.
    pub fn actions(&self) -> Vec<&str> {
        match self {
            Entry::Decision(d) => d.actions.iter().map(String::as_str).collect(),
            Entry::Action(a) => vec![a.action.as_str()],
            Entry::Outcome(o) => vec![o.action.as_str()],
            _ => vec![],
        }
    }
}

/// A stored record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// Schema version the record was written with.
    pub v: u32,
    /// Monotonically increasing, unique.
    pub id: u64,
    /// Links a decision (or command) to the actions and outcomes it caused: the id of the
    /// record that opened the case.
    pub case: u64,
    /// Unix milliseconds.
    pub ts: i64,
    #[serde(flatten)]
    pub entry: Entry,
}

impl Outcome {
    /// "applied", "failed: reason", ...
    pub fn describe(&self) -> String {
        let o = self;
        match o {
            Outcome::Pending => "pending".into(),
            Outcome::Applied => "applied".into(),
            Outcome::Failed { reason } => format!("failed: {reason}"),
            Outcome::Reverted { by } => format!("reverted by {by}"),
            Outcome::Interrupted => {
                "interrupted (the daemon stopped; it may or may not have happened)".into()
            }
        }
    }
}

impl Entry {
    /// One line about what a record says.
    pub fn summary(&self) -> String {
        let e = self;
        match e {
            Entry::Decision(d) => {
                let mut s = format!("rules {}", d.rules.join(","));
                if !d.dry_run.is_empty() {
                    s.push_str(&format!(" dry-run {}", d.dry_run.join(",")));
                }
                if !d.actions.is_empty() {
                    s.push_str(&format!(" -> {}", d.actions.join(",")));
                }
                s
            }
            Entry::Action(a) => {
                let by = match &a.actor {
                    Actor::Policy { rule } => format!("rule {rule}"),
                    Actor::Moderator { who } => format!("by {}", who.name),
                    Actor::Schedule => "scheduled".into(),
                };
                let dur = a
                    .duration
                    .as_deref()
                    .map(|d| format!(" {d}"))
                    .unwrap_or_default();
                format!("{}{dur} ({by}) {}", a.action, a.outcome.describe())
            }
            Entry::Outcome(o) => format!("{} #{}: {}", o.action, o.action_id, o.outcome.describe()),
            Entry::PolicyLoad(p) => {
                let status = if p.ok {
                    "loaded".to_string()
                } else {
                    format!("failed: {}", p.error.as_deref().unwrap_or(""))
                };
                format!(
                    "{} {} by {} {status}",
                    p.file,
                    p.hash.as_deref().unwrap_or("-"),
                    p.by
                )
            }
            Entry::Command(c) => format!("{:?} {}", c.command, if c.ok { "ok" } else { "refused" }),
            Entry::Other => "(a record type this version does not know)".into(),
        }
    }
}

impl Record {
    /// `#id time kind user in room: summary`.
    pub fn describe(&self) -> String {
        let r = self;
        let user = r
            .entry
            .users()
            .first()
            .map(|w| format!(" {}", w.name))
            .unwrap_or_default();
        let room = r
            .entry
            .room()
            .map(|x| format!(" in {x}"))
            .unwrap_or_default();
        format!(
            "#{} {} {}{user}{room}: {}",
            r.id,
            super::query::format_ts(r.ts),
            r.entry.kind(),
            r.entry.summary()
        )
    }
}

// Key layout of the log tree: records under `r` + id; index chunks under their index names
// (see `index`); two marks.
pub(crate) const K_RECORD: u8 = b'r';
/// The highest record id committed, written with every commit (never deleted by retention).
pub(crate) const K_HIGH_WATER: &[u8] = b"h";
/// The last record id whose postings are in index chunks.
pub(crate) const K_WATERMARK: &[u8] = b"w";

pub(crate) fn record_key(id: u64) -> [u8; 9] {
    let mut k = [0u8; 9];
    k[0] = K_RECORD;
    k[1..].copy_from_slice(&id.to_be_bytes());
    k
}

/// The record id of a record key.
pub(crate) fn id_of_record_key(key: &[u8]) -> Option<u64> {
    let tail: [u8; 8] = key.get(1..9)?.try_into().ok()?;
    (key.len() == 9 && key[0] == K_RECORD).then(|| u64::from_be_bytes(tail))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn who(name: &str) -> Who {
        Who {
            network: "irc".into(),
            identity: format!("irc:account:{name}"),
            name: name.into(),
        }
    }

    /// A decision record exactly as version 1 writes it. Keep this literal: it stands for
    /// every log already on disk. When a field is added, this must still decode.
    const V1_DECISION: &str = r##"{"v":1,"id":7,"case":7,"ts":1700000000000,"type":"decision","room":"#chat","sender":{"network":"irc","identity":"irc:account:troll","name":"troll"},"text":"you idiot","rules":["insults"],"dry_run":[],"actions":["delete","warn"],"matches":[{"rule":"insults","dry_run":false,"evidence":[{"kind":"term","list":"insults","term":"idiot","matched":"idiot","start":4,"end":9}]}],"policy":"sha256:abc","mode":"enforce","strikes":1.0,"relayed":false}"##;

    #[test]
    fn version_1_records_still_read() {
        let r: Record = serde_json::from_str(V1_DECISION).unwrap();
        assert_eq!((r.v, r.id, r.case), (1, 7, 7));
        let Entry::Decision(d) = &r.entry else {
            panic!("{r:?}")
        };
        assert_eq!(d.rules, ["insults"]);
        assert_eq!(d.sender, who("troll"));
    }

    #[test]
    fn records_from_a_newer_version_still_read() {
        // A field this version does not know.
        let newer = V1_DECISION.replace(r#""v":1,"#, r#""v":2,"colour":"red","#);
        let r: Record = serde_json::from_str(&newer).unwrap();
        assert_eq!(r.v, 2);
        assert!(matches!(r.entry, Entry::Decision(_)));
        // A record type this version does not know.
        let other: Record = serde_json::from_str(
            r#"{"v":3,"id":9,"case":9,"ts":5,"type":"appeal","text":"please"}"#,
        )
        .unwrap();
        assert_eq!(other.entry, Entry::Other);
        // Optional fields missing (as an older writer would leave them) take defaults.
        let minimal = r##"{"v":1,"id":1,"case":1,"ts":1,"type":"decision","room":"#c","sender":{"network":"irc","identity":"x","name":"x"},"text":"t","rules":["r"],"policy":"p","mode":"enforce"}"##;
        let r: Record = serde_json::from_str(minimal).unwrap();
        let Entry::Decision(d) = r.entry else {
            panic!()
        };
        assert!(d.dry_run.is_empty() && d.actions.is_empty() && !d.relayed);
    }

    #[test]
    fn records_round_trip() {
        let r = Record {
            v: SCHEMA_VERSION,
            id: 3,
            case: 1,
            ts: 10,
            entry: Entry::Action(ActionRecord {
                action: "mute".into(),
                room: "#chat".into(),
                target: who("troll"),
                actor: Actor::Moderator { who: who("alice") },
                duration: Some("10m".into()),
                reason: Some("flood".into()),
                message: None,
                outcome: Outcome::Pending,
            }),
        };
        let json = serde_json::to_string(&r).unwrap();
        assert_eq!(serde_json::from_str::<Record>(&json).unwrap(), r);
        assert!(
            json.contains(r#""type":"action""#) && json.contains(r#""status":"pending""#),
            "{json}"
        );
    }

    #[test]
    fn index_names_cover_users_by_identity_and_name_rooms_rules_and_actions() {
        use crate::audit::index::{
            name, names_of, T_ACTION, T_CASE, T_ROOM, T_RULE, T_TIME, T_USER,
        };
        let mut r: Record = serde_json::from_str(V1_DECISION).unwrap();
        let names = names_of(&r);
        for n in [
            name(T_USER, "irc:account:troll"),
            name(T_USER, "TROLL"),
            name(T_ROOM, "#CHAT"),
            name(T_RULE, "insults"),
            name(T_ACTION, "delete"),
            name(T_ACTION, "warn"),
            vec![T_TIME],
        ] {
            assert!(names.contains(&n), "{n:?} missing from {names:?}");
        }
        assert!(
            !names.iter().any(|n| n[0] == T_CASE),
            "a case opener needs no case posting"
        );
        r.case = 3;
        assert!(names_of(&r).contains(&name(T_CASE, "0000000000000003")));
    }
}
