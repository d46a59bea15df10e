//! What the routing core asks the daemon to do: plain data, executed in order.

use crate::audit::{ActionRecord, Entry};
use crate::chat::{Command, SendKind, Target};
use crate::policy::Strike;
use crate::rich_text::RichText;

/// A room on a network.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Place {
    /// The configured network name ("matrix", "libera").
    pub network: String,
    /// Matrix room id or IRC channel.
    pub room: String,
}

impl Place {
    pub fn new(network: &str, room: &str) -> Self {
        Place {
            network: network.into(),
            room: room.into(),
        }
    }
}

impl std::fmt::Display for Place {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.network, self.room)
    }
}

/// One thing to do. The daemon executes a list of these in order; an [`Effect::Record`] opens
/// an audit case that the [`Effect::Act`]s after it join.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    /// Append to the audit log, durably, before anything after it happens.
    Record(Entry),
    /// Persist a new strike.
    Strike { identity: String, strike: Strike },
    /// Forget someone's strikes (the core's own state is already cleared).
    ClearStrikes { identity: String },
    /// Relay a message to the other side of a pair.
    Relay { to: Place, command: Command },
    /// Say something that is not a relay: a reply, an announcement. Not audited.
    Say { to: Place, command: Command },
    /// A moderation action: audit (pending), execute, audit the outcome.
    Act(Box<Act>),
    /// A moderator's question the audit log answers.
    Query(Query),
    /// Load the policy file again (a moderator asked).
    ReloadPolicy { by: String, reply_to: Place },
}

/// A moderation action and what to do around it.
#[derive(Debug, Clone, PartialEq)]
pub struct Act {
    pub at: Place,
    pub command: Command,
    /// Written (as pending) before the command is executed.
    pub record: ActionRecord,
    /// Undo it after this long (timed mutes and bans): scheduled durably once applied.
    pub undo_after: Option<std::time::Duration>,
    /// Where to say that it failed, and why.
    pub report_failure: Vec<Place>,
    /// What to say, and where, when it worked.
    pub on_success: Option<(Place, String)>,
    /// Add the audit case number to the text sent (escalations: moderators can look it up).
    pub cite_case: bool,
}

/// Questions for the audit log, answered in `reply_to`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Query {
    /// A user's recent records.
    Audit {
        identity: String,
        name: String,
        limit: usize,
        reply_to: Place,
    },
    /// The last decision about a user.
    WhyUser {
        identity: String,
        name: String,
        reply_to: Place,
    },
    /// The decision about one message.
    WhyEvent { event_id: String, reply_to: Place },
}

/// A notice in a room, line by line on IRC (where one message is one line).
pub fn say(to: &Place, text: &str, irc: bool) -> Vec<Effect> {
    let lines: Vec<&str> = if irc {
        text.lines().filter(|l| !l.trim().is_empty()).collect()
    } else {
        vec![text]
    };
    lines
        .into_iter()
        .map(|line| Effect::Say {
            to: to.clone(),
            command: Command::Send {
                room: to.room.clone(),
                text: RichText::plain(line),
                kind: SendKind::Notice,
                from: None,
            },
        })
        .collect()
}

/// The target of an action on a user, as the adapters need it.
pub fn target(id: &str) -> Target {
    Target {
        id: id.into(),
        ..Target::default()
    }
}
