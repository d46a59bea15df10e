//! The shared event type: what both adapters make of their wire events, and the commands
//! they execute. The routing core reads [`ChatEvent`]s and emits [`Command`]s; it never sees
//! an IRC line or a Matrix event.
//!
//! Events carry the real sender identity (nick, user, host, account, channel modes; Matrix
//! user id, display name, power level), never a pre-formatted string, so policies and
//! authorisation can rely on what the network knows. Must not know any wire format.

use crate::rich_text::RichText;

/// Who sent something, as the network knows them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct User {
    /// IRC nick or Matrix user id.
    pub id: String,
    /// What to show: IRC nick, Matrix display name.
    pub name: String,
    /// IRC services account (from account-tag, WHOX or WHOIS), if logged in.
    pub account: Option<String>,
    /// IRC `user@host`, where known.
    pub ident: Option<String>,
    pub host: Option<String>,
    /// IRC channel modes held in the event's room, e.g. "o" or "ov".
    pub channel_modes: String,
    /// Matrix power level in the event's room.
    pub power_level: Option<i64>,
}

/// A channel mode change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModeChange {
    pub set: bool,
    pub mode: char,
    pub arg: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChatEventKind {
    Message {
        text: RichText,
    },
    /// `/me`.
    Emote {
        text: RichText,
    },
    Notice {
        text: RichText,
    },
    /// A Matrix edit of an earlier message.
    Edit {
        text: RichText,
        replaces: String,
    },
    Join,
    Part {
        reason: Option<String>,
    },
    Quit {
        reason: Option<String>,
    },
    Nick {
        new: String,
    },
    Kick {
        target: String,
        reason: Option<String>,
    },
    Mode {
        changes: Vec<ModeChange>,
    },
    /// A Matrix redaction.
    Redaction {
        redacts: String,
        reason: Option<String>,
    },
}

/// A quoted message a reply refers to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quote {
    pub event_id: String,
    pub sender: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatEvent {
    /// The configured network name ("libera", "matrix").
    pub network: String,
    /// IRC channel (or, for a private message, the sender's nick); Matrix room id.
    pub room: String,
    pub sender: User,
    pub kind: ChatEventKind,
    /// Unix ms (server time where the network gives it).
    pub ts: i64,
    /// The network's id of the event (IRCv3 msgid, Matrix event id).
    pub id: Option<String>,
    /// Users mentioned (Matrix mentions and pills, IRC nick highlights).
    pub mentions: Vec<String>,
    pub reply_to: Option<Quote>,
    /// Our own message, echoed back by the network.
    pub own: bool,
}

/// How a message is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendKind {
    Message,
    Emote,
    Notice,
}

/// Who a moderation command is about.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Target {
    /// IRC nick or Matrix user id.
    pub id: String,
    pub account: Option<String>,
    pub ident: Option<String>,
    pub host: Option<String>,
    /// A mask chosen earlier (e.g. the one a mute used, for its unmute).
    pub mask: Option<String>,
}

/// Something an adapter is asked to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Say something in a room. `from` names the relayed sender ("alice" -> `<alice> text`).
    Send {
        room: String,
        text: RichText,
        kind: SendKind,
        from: Option<String>,
    },
    /// A notice to one user (IRC NOTICE to a nick; Matrix: a notice in the room).
    NoticeUser {
        room: String,
        user: String,
        text: String,
    },
    Kick {
        room: String,
        target: Target,
        reason: String,
    },
    Ban {
        room: String,
        target: Target,
        reason: String,
    },
    Unban {
        room: String,
        target: Target,
    },
    Mute {
        room: String,
        target: Target,
    },
    Unmute {
        room: String,
        target: Target,
    },
    /// Matrix: redact an event.
    Redact {
        room: String,
        event_id: String,
        reason: Option<String>,
    },
}

/// What a command did, when it worked.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Done {
    /// What was applied, e.g. the ban or mute mask (kept to undo it later).
    pub detail: Option<String>,
}
