//! What the policy engine evaluates: one event from either network, as plain data.
//!
//! The bridge's adapters fill this from wire events; `policy eval` and `[[test]]` cases fill
//! it from JSON or TOML (`EventInput`). It carries the real sender identity (nick or Matrix
//! id, services account, power level, channel modes), never a pre-formatted string. Must not
//! know any wire format.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::duration::Duration;
use super::state::KeyBuilder;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum EventKind {
    #[default]
    Message,
    Edit,
    Join,
    Nick,
}

impl EventKind {
    pub const ALL: [EventKind; 4] = [
        EventKind::Message,
        EventKind::Edit,
        EventKind::Join,
        EventKind::Nick,
    ];

    pub fn name(self) -> &'static str {
        match self {
            EventKind::Message => "message",
            EventKind::Edit => "edit",
            EventKind::Join => "join",
            EventKind::Nick => "nick",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.name() == name)
    }

    /// A small number naming the rate group, for counter keys. Edits count with messages:
    /// editing fast is flooding too.
    pub(crate) fn rate_group_id(self) -> u64 {
        match self {
            EventKind::Message | EventKind::Edit => 1,
            EventKind::Join => 2,
            EventKind::Nick => 3,
        }
    }

    pub(crate) fn has_text(self) -> bool {
        matches!(self, EventKind::Message | EventKind::Edit)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Network {
    Irc,
    Matrix,
}

impl Network {
    pub fn name(self) -> &'static str {
        match self {
            Network::Irc => "irc",
            Network::Matrix => "matrix",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "irc" => Some(Network::Irc),
            "matrix" => Some(Network::Matrix),
            _ => None,
        }
    }
}

/// One event to evaluate.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Event {
    pub kind: EventKind,
    pub network: Network,
    /// IRC channel or Matrix room id/alias.
    pub room: String,
    /// IRC nick or Matrix user id.
    pub sender: String,
    pub body: String,
    /// Unix milliseconds.
    pub ts: i64,
    /// When the sender joined this room, if the adapter knows.
    pub joined_ts: Option<i64>,
    /// Roles assigned from outside the policy (in addition to the policy's own `[roles]`).
    pub roles: Vec<String>,
    /// Matrix power level of the sender in this room.
    pub power_level: Option<i64>,
    /// IRC channel modes the sender holds in this channel, e.g. "o" or "ov".
    pub irc_modes: String,
    /// IRC services account (or, on Matrix, nothing: the user id is the identity).
    pub account: Option<String>,
    /// Users mentioned (Matrix mentions, IRC nick highlights), as the adapter found them.
    pub mentions: Vec<String>,
    /// How many members the room has, if known (for `mass_ping`).
    pub room_members: Option<u32>,
    /// Who strikes and rates are counted against; by default the network plus the services
    /// account where known, else the nick or user id.
    pub identity: Option<String>,
}

impl Event {
    /// A plain message; the other fields can be set afterwards.
    pub fn message(network: Network, room: &str, sender: &str, body: &str, ts: i64) -> Self {
        Event {
            kind: EventKind::Message,
            network,
            room: room.to_string(),
            sender: sender.to_string(),
            body: body.to_string(),
            ts,
            joined_ts: None,
            roles: Vec::new(),
            power_level: None,
            irc_modes: String::new(),
            account: None,
            mentions: Vec::new(),
            room_members: None,
            identity: None,
        }
    }

    /// The key strikes and rates follow: the person, across rooms and nick changes where the
    /// network knows their account.
    pub fn identity_key(&self) -> String {
        let (prefix, name, lower) = self.identity_parts();
        let mut out = String::with_capacity(prefix.len() + name.len());
        out.push_str(prefix);
        if lower {
            out.extend(name.chars().flat_map(char::to_lowercase));
        } else {
            out.push_str(name);
        }
        out
    }

    /// The hash of [`Event::identity_key`] (the state key of strikes), without building it.
    pub fn identity_hash(&self) -> u64 {
        let (prefix, name, lower) = self.identity_parts();
        let mut k = KeyBuilder::new();
        k.bytes(prefix.as_bytes());
        if lower && name.is_ascii() {
            for b in name.bytes() {
                k.bytes(&[b.to_ascii_lowercase()]);
            }
        } else if lower {
            let mut buf = [0u8; 4];
            for c in name.chars().flat_map(char::to_lowercase) {
                k.bytes(c.encode_utf8(&mut buf).as_bytes());
            }
        } else {
            k.bytes(name.as_bytes());
        }
        k.end_part();
        k.finish()
    }

    /// (prefix, name, whether the name is compared case-insensitively).
    fn identity_parts(&self) -> (&'static str, &str, bool) {
        if let Some(id) = &self.identity {
            return ("", id, false);
        }
        match (self.network, &self.account) {
            (Network::Irc, Some(account)) => ("irc:account:", account, true),
            (Network::Irc, None) => ("irc:nick:", &self.sender, true),
            (Network::Matrix, _) => ("matrix:", &self.sender, false),
        }
    }
}

/// An event as `policy eval` reads it (JSON) and `[[test]]` cases write it (TOML).
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EventInput {
    #[serde(default)]
    pub kind: EventKind,
    pub network: Network,
    pub room: String,
    pub sender: String,
    #[serde(default)]
    pub body: String,
    /// Unix milliseconds; default: `after` the previous event, or now.
    pub ts: Option<i64>,
    /// Time since the previous event, e.g. "5s" (used when `ts` is absent).
    pub after: Option<String>,
    pub joined_ts: Option<i64>,
    #[serde(default)]
    pub roles: Vec<String>,
    pub power_level: Option<i64>,
    #[serde(default)]
    pub irc_modes: String,
    pub account: Option<String>,
    #[serde(default)]
    pub mentions: Vec<String>,
    pub room_members: Option<u32>,
    pub identity: Option<String>,
}

impl EventInput {
    /// Resolves the timestamp: `ts` if given, else `previous + after` when both are known,
    /// else `now`, but never earlier than the previous event (a stream without timestamps
    /// must not run backwards).
    pub fn into_event(self, previous_ts: Option<i64>, now: i64) -> Result<Event, String> {
        let after = self.after.as_deref().map(Duration::parse).transpose()?;
        let ts = match (self.ts, previous_ts, after) {
            (Some(ts), _, _) => ts,
            (None, Some(prev), Some(after)) => prev.saturating_add(after.as_millis() as i64),
            (None, Some(prev), None) => now.max(prev),
            (None, None, _) => now,
        };
        Ok(Event {
            kind: self.kind,
            network: self.network,
            room: self.room,
            sender: self.sender,
            body: self.body,
            ts,
            joined_ts: self.joined_ts,
            roles: self.roles,
            power_level: self.power_level,
            irc_modes: self.irc_modes,
            account: self.account,
            mentions: self.mentions,
            room_members: self.room_members,
            identity: self.identity,
        })
    }
}
