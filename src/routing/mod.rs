//! The routing core: one shared event in, a list of [`Effect`]s out.
//!
//! It decides everything the bridge does about an event: whether it is ours or another
//! bridge's (dropped), a moderator command (authorised, answered, turned into actions), or chat
//! (evaluated by the policy unless a moderator wrote it; relayed to the other side of its pair
//! unless the policy blocks it; actions and escalations for what the policy decided). Strikes
//! follow a person: an identity is the network account where known.
//!
//! Pure: no I/O, no clock (times come with the events), no tokio, sled, IRC or Matrix. The
//! daemon executes the effects in order, audit first.

mod commands;
pub mod effect;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use crate::audit::{ActionRecord, Actor, DecisionRecord, Entry, Outcome, Who};
use crate::chat::{ChatEvent, ChatEventKind, Command, SendKind, Target, User};
use crate::moderator::{self, Parsed};
use crate::policy::{self, ActionKind, Decision, Event, EventKind, Network, Policy, State};
use crate::rich_text::RichText;
pub use commands::StoredTarget;
pub use effect::{Act, Effect, Place, Query};

/// The network name Matrix events carry.
pub const MATRIX: &str = crate::config::MATRIX_NETWORK;

/// People remembered for identities and targets; beyond this, the least recently seen go.
const PEOPLE_CAP: usize = 50_000;

/// A bridged pair.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pair {
    /// The Matrix room id.
    pub matrix_room: String,
    /// The room as the config names it (id or alias): what policy room scopes match.
    pub matrix_name: String,
    pub network: String,
    pub channel: String,
}

/// Who moderates on an IRC network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IrcRules {
    pub network: String,
    pub moderator_modes: String,
    /// Lowercase services accounts.
    pub moderator_accounts: Vec<String>,
}

/// The routing table and the rules the core applies, from the validated config.
#[derive(Debug, Clone)]
pub struct Routes {
    pub pairs: Vec<Pair>,
    pub irc: Vec<IrcRules>,
    pub matrix_power_level: i64,
    pub command_prefix: String,
    /// Escalations and failures go here.
    pub moderation_rooms: Vec<Place>,
    pub ignore_senders: Vec<regex::Regex>,
}

/// Someone seen on a network.
#[derive(Debug, Clone)]
struct Seen {
    user: User,
    last: i64,
    /// When they joined each room, where seen.
    joined: HashMap<String, i64>,
}

pub struct Router {
    routes: Routes,
    policy: Arc<Policy>,
    state: State,
    /// (network, folded id) -> what we know of them.
    people: HashMap<(String, String), Seen>,
}

/// How a network compares names: IRC nicks and channels case-insensitively, Matrix ids exactly.
fn fold(network: &str, id: &str) -> String {
    if network == MATRIX {
        id.to_string()
    } else {
        id.chars()
            .map(|c| match c {
                '[' => '{',
                ']' => '}',
                '\\' => '|',
                '~' => '^',
                c => c.to_ascii_lowercase(),
            })
            .collect()
    }
}

/// Looks like a Matrix user id: `@local:server`.
fn is_mxid(s: &str) -> bool {
    s.starts_with('@') && s.contains(':')
}

/// The identity strikes follow: the services account on IRC where known, else the nick; the
/// user id on Matrix. Networks are kept apart (the same account name on two IRC networks is
/// two people).
pub fn identity(network: &str, user: &User) -> String {
    if network == MATRIX {
        format!("matrix:{}", user.id)
    } else if let Some(account) = &user.account {
        format!("irc:{network}:account:{}", account.to_lowercase())
    } else {
        format!("irc:{network}:nick:{}", fold(network, &user.id))
    }
}

impl Router {
    pub fn new(routes: Routes, policy: Arc<Policy>) -> Self {
        Router {
            routes,
            policy,
            state: State::new(),
            people: HashMap::new(),
        }
    }

    pub fn routes(&self) -> &Routes {
        &self.routes
    }

    pub fn policy(&self) -> &Arc<Policy> {
        &self.policy
    }

    /// Swaps the policy; strikes and counters stay.
    pub fn set_policy(&mut self, policy: Arc<Policy>) {
        self.policy = policy;
    }

    /// Strikes read back from the audit store at startup.
    pub fn load_strikes(&mut self, strikes: Vec<(String, Vec<policy::Strike>)>) {
        for (identity, s) in strikes {
            self.state.set_strikes(&identity, s);
        }
    }

    /// Drops counters and strikes too old to matter.
    pub fn prune(&mut self, now: i64) {
        let horizon = self.policy.state_horizon();
        self.state.prune(now, horizon, self.policy.decay());
    }

    /// Strikes older than this (back from now) count for nothing under the current policy.
    pub fn strike_horizon(&self) -> Duration {
        Duration::from_millis(self.policy.decay().forgotten_after().as_millis())
    }

    /// Notices to every moderators' room.
    pub fn announce(&self, text: &str) -> Vec<Effect> {
        self.routes
            .moderation_rooms
            .iter()
            .flat_map(|p| effect::say(p, text, p.network != MATRIX))
            .collect()
    }

    fn pair_of(&self, network: &str, room: &str) -> Option<&Pair> {
        if network == MATRIX {
            self.routes.pairs.iter().find(|p| p.matrix_room == room)
        } else {
            let room = fold(network, room);
            self.routes
                .pairs
                .iter()
                .find(|p| p.network == network && fold(network, &p.channel) == room)
        }
    }

    fn ignored(&self, ev: &ChatEvent) -> bool {
        self.routes
            .ignore_senders
            .iter()
            .any(|r| r.is_match(&ev.sender.id))
    }

    /// Moderator authority: Matrix power level in the room; IRC channel modes or a configured
    /// services account. Never a bare nick.
    pub fn is_moderator(&self, network: &str, user: &User) -> bool {
        if network == MATRIX {
            return user.power_level.unwrap_or(0) >= self.routes.matrix_power_level;
        }
        let Some(rules) = self.routes.irc.iter().find(|r| r.network == network) else {
            return false;
        };
        user.channel_modes
            .chars()
            .any(|m| rules.moderator_modes.contains(m))
            || user
                .account
                .as_ref()
                .is_some_and(|a| rules.moderator_accounts.contains(&a.to_lowercase()))
    }

    fn see(&mut self, ev: &ChatEvent) {
        let key = (ev.network.clone(), fold(&ev.network, &ev.sender.id));
        if self.people.len() >= PEOPLE_CAP && !self.people.contains_key(&key) {
            // Forget the least recently seen half: cheap, and rare.
            let mut lasts: Vec<i64> = self.people.values().map(|s| s.last).collect();
            lasts.sort_unstable();
            let cutoff = lasts[lasts.len() / 2];
            self.people.retain(|_, s| s.last > cutoff);
        }
        let seen = self.people.entry(key).or_insert_with(|| Seen {
            user: ev.sender.clone(),
            last: ev.ts,
            joined: HashMap::new(),
        });
        // The latest event is the truth, the account included: an event without one means
        // not logged in (now). Carrying an old account forward would let whoever takes a
        // nick inherit its owner's account in targets and identities.
        seen.user = ev.sender.clone();
        seen.last = ev.ts;
        if ev.kind == ChatEventKind::Join {
            seen.joined.insert(fold(&ev.network, &ev.room), ev.ts);
        }
        if let ChatEventKind::Nick { new } = &ev.kind {
            let mut moved = seen.clone();
            moved.user.id = new.clone();
            moved.user.name = new.clone();
            self.people
                .insert((ev.network.clone(), fold(&ev.network, new)), moved);
        }
    }

    fn known(&self, network: &str, id: &str) -> Option<&Seen> {
        self.people.get(&(network.to_string(), fold(network, id)))
    }

    fn who(network: &str, user: &User) -> Who {
        Who {
            network: network.into(),
            identity: identity(network, user),
            name: user.id.clone(),
        }
    }

    /// Handles one event from either network.
    pub fn handle(&mut self, ev: &ChatEvent) -> Vec<Effect> {
        if ev.own || self.ignored(ev) {
            return Vec::new();
        }
        self.see(ev);
        let pair = self.pair_of(&ev.network, &ev.room).cloned();
        match &ev.kind {
            ChatEventKind::Message { text } => {
                let line = text.to_plain();
                match moderator::parse(&self.routes.command_prefix, &line) {
                    Parsed::NotACommand => {}
                    parsed => return self.command(ev, pair.as_ref(), &line, parsed),
                }
                self.chat(
                    ev,
                    pair.as_ref(),
                    EventKind::Message,
                    text,
                    SendKind::Message,
                )
            }
            ChatEventKind::Emote { text } => {
                self.chat(ev, pair.as_ref(), EventKind::Message, text, SendKind::Emote)
            }
            ChatEventKind::Notice { text } => self.chat(
                ev,
                pair.as_ref(),
                EventKind::Message,
                text,
                SendKind::Notice,
            ),
            ChatEventKind::Edit { text, .. } => {
                // IRC cannot edit: the new text goes out marked as a correction.
                let mut shown = RichText::plain("* ");
                shown.spans.extend(text.spans.iter().cloned());
                let mut effects =
                    self.chat(ev, pair.as_ref(), EventKind::Edit, text, SendKind::Message);
                for e in &mut effects {
                    if let Effect::Relay {
                        command: Command::Send { text, .. },
                        ..
                    } = e
                    {
                        *text = shown.clone();
                    }
                }
                effects
            }
            ChatEventKind::Join => {
                let name = ev.sender.name.clone();
                self.evaluate_only(ev, pair.as_ref(), EventKind::Join, &name)
            }
            ChatEventKind::Nick { new } => {
                let new = new.clone();
                self.evaluate_only(ev, pair.as_ref(), EventKind::Nick, &new)
            }
            _ => Vec::new(),
        }
    }

    /// The policy's view of an event.
    fn policy_event(&self, ev: &ChatEvent, pair: &Pair, kind: EventKind, body: &str) -> Event {
        let (network, room) = if ev.network == MATRIX {
            (Network::Matrix, pair.matrix_name.clone())
        } else {
            (Network::Irc, ev.room.clone())
        };
        let mut e = Event::message(network, &room, &ev.sender.id, body, ev.ts);
        e.kind = kind;
        e.power_level = ev.sender.power_level;
        e.irc_modes = ev.sender.channel_modes.clone();
        e.account = ev.sender.account.clone();
        e.mentions = ev.mentions.clone();
        e.identity = Some(identity(&ev.network, &ev.sender));
        e.joined_ts = self
            .known(&ev.network, &ev.sender.id)
            .and_then(|s| s.joined.get(&fold(&ev.network, &ev.room)).copied());
        e
    }

    /// Evaluates; returns the decision and the effects that record it (decision record,
    /// strikes) and carry out its actions. The relay is the caller's.
    fn decide(
        &mut self,
        ev: &ChatEvent,
        pair: &Pair,
        kind: EventKind,
        body: &str,
    ) -> (Decision, Vec<Effect>, Vec<Effect>) {
        let event = self.policy_event(ev, pair, kind, body);
        let identity = identity(&ev.network, &ev.sender);
        let before: Vec<policy::Strike> = self.state.strikes(&identity).to_vec();
        let decision = self.policy.evaluate(&event, &mut self.state);
        let mut record = Vec::new();
        if !decision.is_plain_allow() {
            record.push(Effect::Record(Entry::Decision(DecisionRecord {
                room: ev.room.clone(),
                sender: Self::who(&ev.network, &ev.sender),
                text: body.to_string(),
                rules: decision.rules.clone(),
                dry_run: decision.dry_run.clone(),
                actions: decision
                    .actions
                    .iter()
                    .map(|a| a.kind.name().to_string())
                    .collect(),
                matches: serde_json::to_value(&decision.matches).unwrap_or_default(),
                policy: decision.policy.to_string(),
                mode: self.policy.mode().name().to_string(),
                strikes: decision.strikes,
                relayed: decision.relay,
                event_id: ev.id.clone(),
                explanation: explanation(&decision),
            })));
        }
        for strike in self.state.strikes(&identity) {
            if !before.contains(strike) {
                record.push(Effect::Strike {
                    identity: identity.clone(),
                    strike: strike.clone(),
                });
            }
        }
        let acts = self.policy_acts(ev, pair, &decision, body);
        (decision, record, acts)
    }

    /// Chat in a room: evaluated (unless a moderator wrote it), then relayed unless blocked.
    fn chat(
        &mut self,
        ev: &ChatEvent,
        pair: Option<&Pair>,
        kind: EventKind,
        text: &RichText,
        send: SendKind,
    ) -> Vec<Effect> {
        let Some(pair) = pair else {
            return Vec::new();
        };
        let body = text.to_plain();
        let (relay, mut effects, acts) = if self.is_moderator(&ev.network, &ev.sender) {
            (true, Vec::new(), Vec::new())
        } else {
            let (decision, record, acts) = self.decide(ev, pair, kind, &body);
            (decision.relay, record, acts)
        };
        if relay {
            effects.push(self.relay(ev, pair, text, send));
        }
        effects.extend(acts);
        effects
    }

    /// Joins and nick changes: evaluated (a policy may act on them), never relayed.
    fn evaluate_only(
        &mut self,
        ev: &ChatEvent,
        pair: Option<&Pair>,
        kind: EventKind,
        body: &str,
    ) -> Vec<Effect> {
        let Some(pair) = pair else {
            return Vec::new();
        };
        if self.is_moderator(&ev.network, &ev.sender) {
            return Vec::new();
        }
        let (_, mut effects, acts) = self.decide(ev, pair, kind, body);
        effects.extend(acts);
        effects
    }

    fn relay(&self, ev: &ChatEvent, pair: &Pair, text: &RichText, kind: SendKind) -> Effect {
        let to = if ev.network == MATRIX {
            Place::new(&pair.network, &pair.channel)
        } else {
            Place::new(MATRIX, &pair.matrix_room)
        };
        let mut shown = RichText::default();
        if let Some(q) = &ev.reply_to {
            // "bob: ..." on IRC for a Matrix reply; the quoted text itself stays on Matrix.
            let quoted = q
                .sender
                .strip_prefix('@')
                .and_then(|s| s.split(':').next())
                .unwrap_or(&q.sender);
            shown.push(&format!("{quoted}: "), Default::default());
        }
        shown.spans.extend(text.spans.iter().cloned());
        Effect::Relay {
            command: Command::Send {
                room: to.room.clone(),
                text: shown,
                kind,
                from: Some(ev.sender.name.clone()),
            },
            to,
        }
    }

    /// Where escalations go: the moderators' rooms and the policy's escalation rooms.
    fn escalation_rooms(&self, ev: &ChatEvent, pair: &Pair) -> Vec<Place> {
        let mut rooms = self.routes.moderation_rooms.clone();
        let esc = self.policy.escalation();
        if let Some(room) = &esc.matrix_room {
            let id = self
                .routes
                .pairs
                .iter()
                .find(|p| &p.matrix_name == room)
                .map_or(room.clone(), |p| p.matrix_room.clone());
            rooms.push(Place::new(MATRIX, &id));
        }
        if let Some(channel) = &esc.irc_channel {
            let network = if ev.network == MATRIX {
                &pair.network
            } else {
                &ev.network
            };
            rooms.push(Place::new(network, channel));
        }
        let mut unique = Vec::new();
        for r in rooms {
            if !unique.contains(&r) {
                unique.push(r);
            }
        }
        unique
    }

    /// The policy's actions as effects on the sender's network and room.
    fn policy_acts(
        &self,
        ev: &ChatEvent,
        pair: &Pair,
        decision: &Decision,
        body: &str,
    ) -> Vec<Effect> {
        let here = Place::new(&ev.network, &ev.room);
        let who = Self::who(&ev.network, &ev.sender);
        let target = Target {
            id: ev.sender.id.clone(),
            account: ev.sender.account.clone(),
            ident: ev.sender.ident.clone(),
            host: ev.sender.host.clone(),
            mask: None,
        };
        let report = self.routes.moderation_rooms.clone();
        let mut out: Vec<Act> = Vec::new();
        for action in &decision.actions {
            let record = |kind: &str| ActionRecord {
                action: kind.into(),
                room: ev.room.clone(),
                target: who.clone(),
                actor: Actor::Policy {
                    rule: action.rule.clone(),
                },
                duration: action.duration.map(|d| d.to_string()),
                reason: action.reason.clone(),
                message: action.message.clone(),
                outcome: Outcome::Pending,
            };
            let act = |command: Command, kind: &str| Act {
                at: here.clone(),
                command,
                record: record(kind),
                undo_after: None,
                report_failure: report.clone(),
                on_success: None,
                cite_case: false,
            };
            let reason = action
                .reason
                .clone()
                .unwrap_or_else(|| format!("policy: {}", action.rule));
            let timed = action
                .duration
                .map(|d| std::time::Duration::from_millis(d.as_millis()));
            match action.kind {
                ActionKind::Allow | ActionKind::Block => {}
                ActionKind::Warn => {
                    let text = action
                        .message
                        .clone()
                        .unwrap_or_else(|| "please follow the room's rules".into());
                    out.push(act(
                        Command::NoticeUser {
                            room: ev.room.clone(),
                            user: ev.sender.id.clone(),
                            text,
                        },
                        "warn",
                    ));
                }
                // IRC cannot delete a message: not relaying it is all there is.
                ActionKind::Delete => {
                    if let (true, Some(id)) = (ev.network == MATRIX, &ev.id) {
                        out.push(act(
                            Command::Redact {
                                room: ev.room.clone(),
                                event_id: id.clone(),
                                reason: Some(reason),
                            },
                            "delete",
                        ));
                    }
                }
                ActionKind::Mute => {
                    let mut a = act(
                        Command::Mute {
                            room: ev.room.clone(),
                            target: target.clone(),
                        },
                        "mute",
                    );
                    a.undo_after = timed;
                    out.push(a);
                }
                ActionKind::Kick => out.push(act(
                    Command::Kick {
                        room: ev.room.clone(),
                        target: target.clone(),
                        reason,
                    },
                    "kick",
                )),
                ActionKind::Ban => {
                    let mut a = act(
                        Command::Ban {
                            room: ev.room.clone(),
                            target: target.clone(),
                            reason,
                        },
                        "ban",
                    );
                    a.undo_after = timed;
                    out.push(a);
                }
                ActionKind::Escalate => {
                    let what = action
                        .message
                        .clone()
                        .unwrap_or_else(|| format!("rule {} needs a moderator", action.rule));
                    let where_ = if ev.network == MATRIX {
                        pair.matrix_name.clone()
                    } else {
                        format!("{} {}", ev.network, ev.room)
                    };
                    let text = format!(
                        "[escalation] {what} - {} in {where_}: {:?}",
                        ev.sender.id,
                        clip(body, 300)
                    );
                    for room in self.escalation_rooms(ev, pair) {
                        let mut a = act(
                            Command::Send {
                                room: room.room.clone(),
                                text: RichText::plain(&text),
                                kind: SendKind::Notice,
                                from: None,
                            },
                            "escalate",
                        );
                        a.at = room;
                        a.cite_case = true;
                        out.push(a);
                    }
                }
            }
        }
        out.into_iter().map(|a| Effect::Act(Box::new(a))).collect()
    }
}

/// The evidence of a decision in words, one line per matched condition.
pub fn explanation(d: &Decision) -> Vec<String> {
    let mut out = Vec::new();
    for m in &d.matches {
        let tag = if m.dry_run { " (dry run)" } else { "" };
        if m.evidence.is_empty() {
            out.push(format!("{}{tag}: matched", m.rule));
        }
        for e in &m.evidence {
            out.push(format!("{}{tag}: {e}", m.rule));
        }
    }
    out
}

/// At most `max` characters of `text`, with an ellipsis when cut.
pub fn clip(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((i, _)) => format!("{}…", &text[..i]),
        None => text.to_string(),
    }
}

#[cfg(test)]
mod tests;
