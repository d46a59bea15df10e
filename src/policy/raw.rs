//! The policy file as written: serde structs that mirror the TOML one to one.
//!
//! Stage one of loading. Every table denies unknown keys, and every value that can be wrong
//! in a way serde cannot see (a duration, a regex, a list name, a rule id) keeps its span, so
//! that `compile` can report it as FILE:LINE:COL. Nothing here is validated beyond types:
//! that is `compile`'s job. The JSON Schema for editors is derived from these same structs,
//! so the schema cannot drift from what the loader accepts.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::Deserialize;
use toml::Spanned;

/// A bridgewarden moderation policy (format 1).
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawPolicy {
    #[schemars(with = "RawHeader")]
    pub policy: Spanned<RawHeader>,
    #[serde(default)]
    pub normalize: RawNormalize,
    /// Named term and domain lists, referenced by `list = "NAME"` and `domains = "NAME"`.
    #[serde(default)]
    #[schemars(with = "BTreeMap<String, RawList>")]
    pub lists: BTreeMap<String, Spanned<RawList>>,
    /// Named roles; a sender may hold several.
    #[serde(default)]
    #[schemars(with = "BTreeMap<String, RawRole>")]
    pub roles: BTreeMap<String, Spanned<RawRole>>,
    #[serde(default)]
    pub exempt: RawExempt,
    #[serde(default)]
    #[schemars(with = "Vec<RawRule>")]
    pub rule: Vec<Spanned<RawRule>>,
    #[schemars(with = "Option<RawStrikes>")]
    pub strikes: Option<Spanned<RawStrikes>>,
    pub escalation: Option<RawEscalation>,
    #[serde(default)]
    #[schemars(with = "Vec<RawTest>")]
    pub test: Vec<Spanned<RawTest>>,
}

/// The `[policy]` header.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawHeader {
    pub name: String,
    /// The format version of this file; this bridgewarden reads format 1.
    #[schemars(with = "u32")]
    pub format: Spanned<i64>,
    /// "enforce" (default) or "dry-run": decide and audit, act on nothing.
    #[schemars(with = "Option<ModeName>")]
    pub mode: Option<Spanned<String>>,
}

#[derive(JsonSchema)]
#[allow(dead_code)] // Only describes the allowed strings in the schema.
#[serde(rename_all = "kebab-case")]
enum ModeName {
    Enforce,
    DryRun,
    Off,
}

/// How text is prepared before list and regex matching. Every step defaults to on.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct RawNormalize {
    pub nfkc: bool,
    pub casefold: bool,
    pub strip_invisible: bool,
    pub strip_formatting: bool,
    pub strip_marks: bool,
    pub arabic_script: bool,
    pub confusables: bool,
    pub leetspeak: bool,
    pub collapse_repeats: bool,
    pub join_spaced_letters: bool,
}

impl Default for RawNormalize {
    fn default() -> Self {
        RawNormalize {
            nfkc: true,
            casefold: true,
            strip_invisible: true,
            strip_formatting: true,
            strip_marks: true,
            arabic_script: true,
            confusables: true,
            leetspeak: true,
            collapse_repeats: true,
            join_spaced_letters: true,
        }
    }
}

/// A term list (`terms` and/or `file`) or a domain list (`domains` and/or `domains_file`).
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawList {
    #[serde(default)]
    #[schemars(with = "Vec<String>")]
    pub terms: Vec<Spanned<String>>,
    /// One term per line, `#` comments; the path is relative to the policy file.
    #[schemars(with = "Option<String>")]
    pub file: Option<Spanned<String>>,
    /// "word" (default: whole words), "substring" or "prefix".
    #[schemars(with = "Option<MatchName>")]
    #[serde(rename = "match")]
    pub match_mode: Option<Spanned<String>>,
    /// Domains; a link matches a domain and its subdomains.
    #[schemars(with = "Option<Vec<String>>")]
    pub domains: Option<Vec<Spanned<String>>>,
    /// One domain per line, `#` comments; the path is relative to the policy file.
    #[schemars(with = "Option<String>")]
    pub domains_file: Option<Spanned<String>>,
}

#[derive(JsonSchema)]
#[allow(dead_code)] // Only describes the allowed strings in the schema.
#[serde(rename_all = "lowercase")]
enum MatchName {
    Word,
    Substring,
    Prefix,
}

/// Who holds a role: any one of the criteria is enough.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawRole {
    /// Matrix senders whose power level in the room is at least this.
    pub matrix_power_level: Option<i64>,
    /// IRC senders holding any of these channel modes (e.g. "o", "h", "v").
    #[serde(default)]
    #[schemars(with = "Vec<String>")]
    pub irc_modes: Vec<Spanned<String>>,
    /// IRC services accounts (never nicks: anyone can take a nick).
    #[serde(default)]
    pub irc_accounts: Vec<String>,
    /// Matrix user ids.
    #[serde(default)]
    #[schemars(with = "Vec<String>")]
    pub matrix_users: Vec<Spanned<String>>,
}

#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawExempt {
    /// Senders holding any of these roles are never evaluated.
    #[serde(default)]
    #[schemars(with = "Vec<String>")]
    pub roles: Vec<Spanned<String>>,
}

/// A `[[rule]]`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawRule {
    /// Unique, `[a-z0-9_-]+`; appears in audit records and explanations.
    #[schemars(with = "String")]
    pub id: Spanned<String>,
    #[serde(default)]
    pub description: String,
    /// Event kinds: message, edit, join, nick (default: message, edit).
    #[schemars(with = "Option<Vec<EventKindName>>")]
    pub on: Option<Vec<Spanned<String>>>,
    /// Networks the rule applies to: "irc", "matrix".
    #[schemars(with = "Option<Vec<NetworkName>>")]
    pub networks: Option<Vec<Spanned<String>>>,
    /// IRC channels or Matrix room ids/aliases the rule applies to.
    pub rooms: Option<Vec<String>>,
    #[schemars(with = "Option<ModeName>")]
    pub mode: Option<Spanned<String>>,
    #[schemars(with = "Option<RawCondition>")]
    pub unless: Option<Spanned<RawCondition>>,
    #[schemars(with = "RawCondition")]
    pub when: Spanned<RawCondition>,
    #[serde(default)]
    #[schemars(with = "Vec<RawAction>")]
    pub actions: Vec<Spanned<RawAction>>,
    /// Weight added to the sender's strike count (default 0).
    #[schemars(with = "Option<f64>")]
    pub strikes: Option<Spanned<f64>>,
}

#[derive(JsonSchema)]
#[allow(dead_code)] // Only describes the allowed strings in the schema.
#[serde(rename_all = "lowercase")]
enum EventKindName {
    Message,
    Edit,
    Join,
    Nick,
}

#[derive(JsonSchema)]
#[allow(dead_code)] // Only describes the allowed strings in the schema.
#[serde(rename_all = "lowercase")]
enum NetworkName {
    Irc,
    Matrix,
}

/// A condition. Several keys in one table must all hold.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawCondition {
    /// The normalised text contains a term of this list.
    #[schemars(with = "Option<String>")]
    pub list: Option<Spanned<String>>,
    /// A Rust regex matched against the normalised text.
    #[schemars(with = "Option<String>")]
    pub regex: Option<Spanned<String>>,
    /// A Rust regex matched against the original text.
    #[schemars(with = "Option<String>")]
    pub regex_raw: Option<Spanned<String>>,
    /// A link points at a domain (or subdomain) of this domain list.
    #[schemars(with = "Option<String>")]
    pub domains: Option<Spanned<String>>,
    /// A link points outside the domains of this domain list (addition to format 1).
    #[schemars(with = "Option<String>")]
    pub links_outside: Option<Spanned<String>>,
    pub has_link: Option<bool>,
    #[schemars(with = "Option<u32>")]
    pub mentions_at_least: Option<Spanned<i64>>,
    pub mass_ping: Option<bool>,
    #[schemars(with = "Option<RawCaps>")]
    pub caps_ratio: Option<Spanned<RawCaps>>,
    #[schemars(with = "Option<u32>")]
    pub length_over: Option<Spanned<i64>>,
    #[schemars(with = "Option<u32>")]
    pub lines_over: Option<Spanned<i64>>,
    #[schemars(with = "Option<RawRate>")]
    pub rate: Option<Spanned<RawRate>>,
    #[schemars(with = "Option<RawRepeat>")]
    pub repeat: Option<Spanned<RawRepeat>>,
    /// The sender joined the room less than this long ago.
    #[schemars(with = "Option<String>")]
    pub joined_within: Option<Spanned<String>>,
    pub first_message: Option<bool>,
    #[schemars(with = "Option<RawSender>")]
    pub sender: Option<Spanned<RawSender>>,
    /// The sender holds any of these roles.
    #[schemars(with = "Option<Vec<String>>")]
    pub roles: Option<Vec<Spanned<String>>>,
    #[schemars(with = "Option<Vec<RawCondition>>")]
    pub all: Option<Vec<Spanned<RawCondition>>>,
    #[schemars(with = "Option<Vec<RawCondition>>")]
    pub any: Option<Vec<Spanned<RawCondition>>>,
    #[schemars(with = "Option<Box<RawCondition>>")]
    pub not: Option<Box<Spanned<RawCondition>>>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawCaps {
    pub min: f64,
    #[serde(default)]
    pub min_letters: u32,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawRate {
    pub count: u32,
    #[schemars(with = "String")]
    pub within: Spanned<String>,
    /// "sender" (default: the sender in this room), "sender_anywhere" or "room".
    #[schemars(with = "Option<RatePerName>")]
    pub per: Option<Spanned<String>>,
}

#[derive(JsonSchema)]
#[allow(dead_code)] // Only describes the allowed strings in the schema.
#[serde(rename_all = "snake_case")]
enum RatePerName {
    Sender,
    SenderAnywhere,
    Room,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawRepeat {
    pub count: u32,
    #[schemars(with = "String")]
    pub within: Spanned<String>,
    #[serde(default)]
    pub across_rooms: bool,
    /// Count the same text from anyone, not only this sender (spam waves by many accounts).
    #[serde(default)]
    pub any_sender: bool,
}

#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawSender {
    #[schemars(with = "Option<NetworkName>")]
    pub network: Option<Spanned<String>>,
    /// A glob (`*`, `?`) on the nick or Matrix user id, case-insensitive.
    pub pattern: Option<String>,
    pub matrix_server: Option<String>,
    pub account: Option<String>,
    #[serde(default)]
    #[schemars(with = "Vec<String>")]
    pub roles: Vec<Spanned<String>>,
}

/// An action: `{ do = "mute", for = "1h" }`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawAction {
    #[serde(rename = "do")]
    #[schemars(rename = "do", with = "ActionName")]
    pub kind: Spanned<String>,
    /// Template for warn (and escalate) texts.
    #[schemars(with = "Option<String>")]
    pub message: Option<Spanned<String>>,
    /// Template for kick and ban reasons.
    #[schemars(with = "Option<String>")]
    pub reason: Option<Spanned<String>>,
    /// Duration of a mute or ban; default: until undone.
    #[serde(rename = "for")]
    #[schemars(rename = "for", with = "Option<String>")]
    pub duration: Option<Spanned<String>>,
    /// Relay the message anyway.
    #[serde(default)]
    pub relay: bool,
}

#[derive(JsonSchema)]
#[allow(dead_code)] // Only describes the allowed strings in the schema.
#[serde(rename_all = "lowercase")]
enum ActionName {
    Allow,
    Warn,
    Delete,
    Mute,
    Kick,
    Ban,
    Escalate,
    Block,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawStrikes {
    /// A strike counts for this long (a window).
    #[schemars(with = "Option<String>")]
    pub decay: Option<Spanned<String>>,
    /// Instead of `decay`: a strike's weight halves every this long.
    #[schemars(with = "Option<String>")]
    pub half_life: Option<Spanned<String>>,
    #[serde(default)]
    #[schemars(with = "Vec<RawStep>")]
    pub ladder: Vec<Spanned<RawStep>>,
}

/// A ladder step: fired when the sender's live strike total reaches `at`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawStep {
    #[schemars(with = "f64")]
    pub at: Spanned<f64>,
    #[serde(rename = "do")]
    #[schemars(rename = "do", with = "ActionName")]
    pub kind: Spanned<String>,
    #[schemars(with = "Option<String>")]
    pub message: Option<Spanned<String>>,
    #[schemars(with = "Option<String>")]
    pub reason: Option<Spanned<String>>,
    #[serde(rename = "for")]
    #[schemars(rename = "for", with = "Option<String>")]
    pub duration: Option<Spanned<String>>,
    #[serde(default)]
    pub relay: bool,
}

impl RawStep {
    /// The step's action part, in the shape rule actions have.
    pub fn action(&self) -> RawAction {
        RawAction {
            kind: self.kind.clone(),
            message: self.message.clone(),
            reason: self.reason.clone(),
            duration: self.duration.clone(),
            relay: self.relay,
        }
    }
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawEscalation {
    pub matrix_room: Option<String>,
    pub irc_channel: Option<String>,
}

/// An inline test case.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawTest {
    pub name: String,
    #[schemars(with = "Vec<super::event::EventInput>")]
    pub events: Vec<Spanned<super::event::EventInput>>,
    pub expect: RawExpect,
}

/// What the last event of a test must produce; keys left out are not checked.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawExpect {
    pub rules: Option<Vec<String>>,
    /// Action names ("delete") or tables (`{ do = "mute", for = "1h" }`), in order.
    pub actions: Option<Vec<ExpectedAction>>,
    pub relay: Option<bool>,
    pub strikes: Option<f64>,
    pub dry_run: Option<Vec<String>>,
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum ExpectedAction {
    Name(String),
    Table {
        #[serde(rename = "do")]
        kind: String,
        #[serde(rename = "for")]
        duration: Option<String>,
    },
}
