//! Moderator commands: authorised here, answered or turned into actions. Part of the pure
//! routing core.

use super::effect::{say, target};
use super::{fold, identity, is_mxid, Act, Effect, Pair, Place, Query, Router, MATRIX};
use crate::audit::{
    ActionRecord, Actor, CommandRecord, Entry, Outcome, Scheduled, ScheduledKind, Who,
};
use crate::chat::{ChatEvent, ChatEventKind, Command, SendKind, Target, User};
use crate::moderator::{ModeratorCommand, Parsed};
use crate::policy::{explain, Event, EventKind, Network, State};

impl Router {
    /// A line that parsed as a command (or as help / a usage error).
    pub(super) fn command(
        &mut self,
        ev: &ChatEvent,
        pair: Option<&Pair>,
        line: &str,
        parsed: Parsed,
    ) -> Vec<Effect> {
        let here = Place::new(&ev.network, &ev.room);
        let irc = ev.network != MATRIX;
        let by = Self::who(&ev.network, &ev.sender);
        let record = |ok: bool, reply: &str| {
            Effect::Record(Entry::Command(CommandRecord {
                room: ev.room.clone(),
                by: by.clone(),
                command: line.to_string(),
                ok,
                reply: Some(super::clip(reply, 500)),
            }))
        };
        if !self.is_moderator(&ev.network, &ev.sender) {
            // Not a moderator: the line is chat like any other, judged and relayed by the
            // policy, so that a command word is no way around it (`!warn <slur>`). The
            // refusal is said only when the policy let the line be.
            let mut out = match &ev.kind {
                ChatEventKind::Message { text } => {
                    self.chat(ev, pair, EventKind::Message, text, SendKind::Message)
                }
                _ => Vec::new(),
            };
            if out.iter().any(|e| matches!(e, Effect::Act(_))) {
                return out;
            }
            let text = format!(
                "{}: only moderators can use {} commands here",
                ev.sender.name, self.routes.command_prefix
            );
            out.push(record(false, &text));
            out.extend(say(&here, &text, irc));
            return out;
        }
        let cmd = match parsed {
            Parsed::Command(c) => c,
            Parsed::Reply(text) => return say(&here, &text, irc),
            Parsed::NotACommand => return Vec::new(),
        };
        match self.run(ev, pair, &here, &by, cmd) {
            Ok(mut effects) => {
                effects.insert(0, record(true, ""));
                effects
            }
            Err(text) => {
                let text = format!("{}: {text}", ev.sender.name);
                let mut out = vec![record(false, &text)];
                out.extend(say(&here, &text, irc));
                out
            }
        }
    }

    /// Where a command about `user` acts: a Matrix user id on the Matrix side of the pair, a
    /// nick on the IRC side.
    fn target_place(&self, here: &Place, pair: Option<&Pair>, user: &str) -> Result<Place, String> {
        let on_matrix = is_mxid(user);
        if on_matrix == (here.network == MATRIX) {
            if pair.is_none() {
                return Err("use this command in a bridged room".into());
            }
            return Ok(here.clone());
        }
        match pair {
            Some(p) if on_matrix => Ok(Place::new(MATRIX, &p.matrix_room)),
            Some(p) => Ok(Place::new(&p.network, &p.channel)),
            None => Err("use this command in a bridged room".into()),
        }
    }

    /// What we know of a user on a network (account, ident, host), for targets and identities.
    fn user_on(&self, network: &str, id: &str) -> User {
        self.known(network, id).map_or_else(
            || User {
                id: id.into(),
                name: id.into(),
                ..User::default()
            },
            |s| s.user.clone(),
        )
    }

    fn target_of(&self, network: &str, id: &str) -> (Target, Who) {
        let user = self.user_on(network, id);
        let t = Target {
            id: id.to_string(),
            account: user.account.clone(),
            ident: user.ident.clone(),
            host: user.host.clone(),
            mask: None,
        };
        (
            t,
            Self::who(
                network,
                &User {
                    id: id.into(),
                    ..user
                },
            ),
        )
    }

    /// The identity of a user named in a command: a Matrix id, or a nick on the room's IRC
    /// network (by their account when we have seen them).
    fn identity_of(&self, here: &Place, pair: Option<&Pair>, user: &str) -> String {
        let network = if is_mxid(user) {
            MATRIX.to_string()
        } else if here.network != MATRIX {
            here.network.clone()
        } else {
            match pair {
                Some(p) => p.network.clone(),
                None => self
                    .routes
                    .irc
                    .first()
                    .map_or_else(String::new, |r| r.network.clone()),
            }
        };
        identity(&network, &self.user_on(&network, user))
    }

    fn run(
        &mut self,
        ev: &ChatEvent,
        pair: Option<&Pair>,
        here: &Place,
        by: &Who,
        cmd: ModeratorCommand,
    ) -> Result<Vec<Effect>, String> {
        use ModeratorCommand as M;
        let irc = here.network != MATRIX;
        let moderator = Actor::Moderator { who: by.clone() };
        // A failure is told to whoever asked, and to the moderators' rooms.
        let mut report = vec![here.clone()];
        for r in &self.routes.moderation_rooms {
            if !report.contains(r) {
                report.push(r.clone());
            }
        }
        let act = |at: Place,
                   command: Command,
                   kind: &str,
                   who: Who,
                   extra: (Option<String>, Option<String>, Option<String>)| {
            let (duration, reason, message) = extra;
            Act {
                command,
                record: ActionRecord {
                    action: kind.into(),
                    room: at.room.clone(),
                    target: who.clone(),
                    actor: moderator.clone(),
                    duration,
                    reason,
                    message,
                    outcome: Outcome::Pending,
                },
                undo_after: None,
                report_failure: report.clone(),
                on_success: Some((
                    here.clone(),
                    format!("{}: {kind} {} done", ev.sender.name, who.name),
                )),
                cite_case: false,
                at,
            }
        };
        let one = |a: Act| Ok(vec![Effect::Act(Box::new(a))]);
        match cmd {
            M::Warn { user, message } => {
                let at = self.target_place(here, pair, &user)?;
                let (_, who) = self.target_of(&at.network, &user);
                let command = Command::NoticeUser {
                    room: at.room.clone(),
                    user: user.clone(),
                    text: message.clone(),
                };
                one(act(at, command, "warn", who, (None, None, Some(message))))
            }
            M::Mute {
                user,
                duration,
                reason,
            } => {
                let at = self.target_place(here, pair, &user)?;
                let (t, who) = self.target_of(&at.network, &user);
                let command = Command::Mute {
                    room: at.room.clone(),
                    target: t,
                };
                let mut a = act(
                    at,
                    command,
                    "mute",
                    who,
                    (duration.map(|d| d.to_string()), reason, None),
                );
                a.undo_after = duration.map(|d| std::time::Duration::from_millis(d.as_millis()));
                one(a)
            }
            M::Ban {
                user,
                duration,
                reason,
            } => {
                let at = self.target_place(here, pair, &user)?;
                let (t, who) = self.target_of(&at.network, &user);
                let why = reason
                    .clone()
                    .unwrap_or_else(|| format!("banned by {}", ev.sender.name));
                let command = Command::Ban {
                    room: at.room.clone(),
                    target: t,
                    reason: why,
                };
                let mut a = act(
                    at,
                    command,
                    "ban",
                    who,
                    (duration.map(|d| d.to_string()), reason, None),
                );
                a.undo_after = duration.map(|d| std::time::Duration::from_millis(d.as_millis()));
                one(a)
            }
            M::Kick { user, reason } => {
                let at = self.target_place(here, pair, &user)?;
                let (t, who) = self.target_of(&at.network, &user);
                let why = reason
                    .clone()
                    .unwrap_or_else(|| format!("kicked by {}", ev.sender.name));
                let command = Command::Kick {
                    room: at.room.clone(),
                    target: t,
                    reason: why,
                };
                one(act(at, command, "kick", who, (None, reason, None)))
            }
            M::Unmute { user } => {
                let at = self.target_place(here, pair, &user)?;
                let (t, who) = self.target_of(&at.network, &user);
                let command = Command::Unmute {
                    room: at.room.clone(),
                    target: t,
                };
                one(act(at, command, "unmute", who, (None, None, None)))
            }
            M::Unban { user } => {
                let at = self.target_place(here, pair, &user)?;
                let (t, who) = self.target_of(&at.network, &user);
                let command = Command::Unban {
                    room: at.room.clone(),
                    target: t,
                };
                one(act(at, command, "unban", who, (None, None, None)))
            }
            M::StrikesShow { user } => {
                let id = self.identity_of(here, pair, &user);
                let decay = self.policy.decay();
                let total = self.state.strike_total(&id, ev.ts, decay);
                let strikes = self.state.strikes(&id);
                let mut text = format!(
                    "{user} has {} strike(s) now",
                    crate::policy::template::format_number(total)
                );
                for s in strikes.iter().rev().take(5) {
                    text.push_str(&format!(
                        "\n  {} ({}) {} ago",
                        s.rule,
                        crate::policy::template::format_number(s.weight),
                        ago(ev.ts - s.ts)
                    ));
                }
                Ok(say(here, &text, irc))
            }
            M::StrikesClear { user } => {
                let id = self.identity_of(here, pair, &user);
                self.state.clear_strikes(&id);
                let mut out = vec![Effect::ClearStrikes { identity: id }];
                out.extend(say(here, &format!("{user}'s strikes are cleared"), irc));
                Ok(out)
            }
            M::Audit { user, limit } => Ok(vec![Effect::Query(Query::Audit {
                identity: self.identity_of(here, pair, &user),
                name: user,
                limit,
                reply_to: here.clone(),
            })]),
            M::Why { user: Some(user) } => Ok(vec![Effect::Query(Query::WhyUser {
                identity: self.identity_of(here, pair, &user),
                name: user,
                reply_to: here.clone(),
            })]),
            M::Why { user: None } => match &ev.reply_to {
                Some(q) => Ok(vec![Effect::Query(Query::WhyEvent {
                    event_id: q.event_id.clone(),
                    reply_to: here.clone(),
                })]),
                None => {
                    Err("say whose decision: why USER (or reply to the message with why)".into())
                }
            },
            M::PolicyStatus => {
                let p = &self.policy;
                let text = format!(
                    "policy {:?} {} ({}), {} rule(s), {} test(s){}",
                    p.name(),
                    p.short_hash(),
                    p.mode().name(),
                    p.rule_ids().count(),
                    p.test_count(),
                    if p.warnings().is_empty() {
                        String::new()
                    } else {
                        format!(", {} warning(s)", p.warnings().len())
                    }
                );
                Ok(say(here, &text, irc))
            }
            M::PolicyReload => Ok(vec![Effect::ReloadPolicy {
                by: format!("{} ({})", by.name, by.network),
                reply_to: here.clone(),
            }]),
            M::PolicyTest { text } => {
                // A fresh state: testing must not count towards anyone's rates or strikes.
                let network = if irc { Network::Irc } else { Network::Matrix };
                let room = match (irc, pair) {
                    (false, Some(p)) => p.matrix_name.clone(),
                    _ => ev.room.clone(),
                };
                let event = Event::message(network, &room, "policy-test", &text, ev.ts);
                let mut state = State::new();
                let decision = self.policy.evaluate(&event, &mut state);
                let mut reply = explain::summary(&decision).replace("decision:   ", "decision: ");
                for line in super::explanation(&decision) {
                    reply.push_str("\n  ");
                    reply.push_str(&line);
                }
                Ok(say(here, &reply, irc))
            }
        }
    }

    /// A timed unmute or unban that fell due, as an action by the schedule.
    pub fn undo(&self, s: &Scheduled) -> Vec<Effect> {
        let t: Target = serde_json::from_str::<StoredTarget>(&s.target)
            .map(StoredTarget::into_target)
            .unwrap_or_else(|_| target(&s.target));
        let at = Place::new(&s.network, &s.room);
        let (command, kind) = match s.kind {
            ScheduledKind::Unmute => (
                Command::Unmute {
                    room: s.room.clone(),
                    target: t.clone(),
                },
                "unmute",
            ),
            ScheduledKind::Unban => (
                Command::Unban {
                    room: s.room.clone(),
                    target: t.clone(),
                },
                "unban",
            ),
        };
        let user = User {
            id: t.id.clone(),
            account: t.account.clone(),
            ..User::default()
        };
        vec![Effect::Act(Box::new(Act {
            command,
            record: ActionRecord {
                action: kind.into(),
                room: s.room.clone(),
                target: Self::who(&s.network, &user),
                actor: Actor::Schedule,
                duration: None,
                reason: Some("the time is up".into()),
                message: None,
                outcome: Outcome::Pending,
            },
            undo_after: None,
            report_failure: self.routes.moderation_rooms.clone(),
            on_success: None,
            cite_case: false,
            at,
        }))]
    }

    /// Whether `a` and `b` name the same user on `network`.
    pub fn same_user(network: &str, a: &str, b: &str) -> bool {
        fold(network, a) == fold(network, b)
    }
}

/// A target as the schedule stores it (JSON in [`Scheduled::target`]).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct StoredTarget {
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account: Option<String>,
    /// The mask or power level the action applied, to undo exactly that.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mask: Option<String>,
}

impl StoredTarget {
    pub fn new(t: &Target, detail: Option<String>) -> Self {
        StoredTarget {
            id: t.id.clone(),
            account: t.account.clone(),
            mask: detail,
        }
    }

    pub fn into_target(self) -> Target {
        Target {
            id: self.id,
            account: self.account,
            mask: self.mask,
            ..Target::default()
        }
    }
}

/// "3h", "2d": how long ago, roughly.
fn ago(ms: i64) -> String {
    let s = ms.max(0) / 1000;
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m", s / 60),
        3600..86_400 => format!("{}h", s / 3600),
        _ => format!("{}d", s / 86_400),
    }
}
