//! The policy engine: a TOML policy file in, a decision per event out.
//!
//! Loading ([`Policy::from_toml`]) parses the file into raw serde structs (`raw`), then
//! validates and compiles everything once (`compile`): durations parsed, names resolved, all
//! list terms normalised into one Aho-Corasick automaton per match mode, all regexes into a
//! set. Every problem is reported with FILE:LINE:COL. Evaluation ([`Policy::evaluate`]) takes
//! an event and the engine [`State`] and returns a [`Decision`]; it cannot fail.
//!
//! This module is the pure core of bridgewarden. It must not do I/O (list files are read
//! through a function the caller passes in), read the clock, or know about IRC or Matrix
//! beyond the plain [`Event`] type: no tokio, sled, irc or matrix-sdk here.

pub(crate) mod condition;
pub mod decision;
pub use crate::diagnostic;
pub mod duration;
pub mod event;
pub mod explain;
pub mod link;
pub mod matcher;
pub mod normalize;
pub mod raw;
pub mod state;
pub mod template;
pub mod testcase;

mod compile;
mod evaluate;

use std::io;
use std::path::Path;

pub use decision::{Action, ActionKind, Decision, Evidence, RuleMatch};
pub use diagnostic::{Diagnostic, Diagnostics, Severity};
pub use duration::Duration;
pub use event::{Event, EventInput, EventKind, Network};
pub use state::{Decay, State, Strike};

use condition::{Condition, RatePer, RepeatScope};
use matcher::{MatchMode, RegexBank, TermMatcher};
use normalize::Normalizer;
use template::Template;

/// The largest policy file accepted; policies are hand-written and much smaller.
pub const MAX_POLICY_BYTES: usize = 1 << 20;
/// The largest list file accepted.
pub const MAX_LIST_BYTES: usize = 16 << 20;

/// Enforce or only pretend, for the whole policy or one rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    Enforce,
    DryRun,
    Off,
}

impl Mode {
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "enforce" => Some(Mode::Enforce),
            "dry-run" => Some(Mode::DryRun),
            "off" => Some(Mode::Off),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Mode::Enforce => "enforce",
            Mode::DryRun => "dry-run",
            Mode::Off => "off",
        }
    }
}

#[derive(Debug)]
pub(crate) struct List {
    pub name: String,
    /// Terms as written (for explanations), for term lists.
    pub terms: Vec<String>,
    /// Lower-cased domains, for domain lists.
    pub domains: Vec<String>,
    pub is_domains: bool,
    pub mode: MatchMode,
}

/// The most roles a policy may define: they are held in one 64-bit set per event.
pub const MAX_ROLES: usize = 64;

/// The roles a sender holds, by role index.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct RoleSet(u64);

impl RoleSet {
    pub fn holds(self, role: usize) -> bool {
        self.0 >> role & 1 == 1
    }
}

#[derive(Debug)]
pub(crate) struct Role {
    pub name: String,
    pub matrix_power_level: Option<i64>,
    pub irc_modes: Vec<char>,
    pub irc_accounts: Vec<String>,
    pub matrix_users: Vec<String>,
}

impl Role {
    fn held_by(&self, ev: &Event) -> bool {
        if ev.roles.contains(&self.name) {
            return true;
        }
        match ev.network {
            Network::Matrix => {
                self.matrix_power_level
                    .is_some_and(|min| ev.power_level.is_some_and(|pl| pl >= min))
                    || self.matrix_users.contains(&ev.sender)
            }
            Network::Irc => {
                ev.irc_modes.chars().any(|m| self.irc_modes.contains(&m))
                    || ev.account.as_deref().is_some_and(|a| {
                        self.irc_accounts.iter().any(|x| x.eq_ignore_ascii_case(a))
                    })
            }
        }
    }
}

#[derive(Debug, Clone)]
pub(crate) struct ActionSpec {
    pub kind: ActionKind,
    pub message: Option<Template>,
    pub reason: Option<Template>,
    pub duration: Option<Duration>,
    pub relay: bool,
}

#[derive(Debug)]
pub(crate) struct Rule {
    pub id: String,
    pub description: String,
    pub on: Vec<EventKind>,
    pub networks: Option<Vec<Network>>,
    /// Lower-cased for `#` names (IRC channels, Matrix aliases); room ids exact.
    pub rooms: Option<Vec<String>>,
    pub mode: Mode,
    pub unless: Option<Condition>,
    pub when: Condition,
    pub actions: Vec<ActionSpec>,
    pub strikes: f64,
}

#[derive(Debug)]
pub(crate) struct Step {
    pub at: f64,
    pub action: ActionSpec,
}

/// Where `escalate` notices go.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Escalation {
    pub matrix_room: Option<String>,
    pub irc_channel: Option<String>,
}

/// Which counters evaluation must keep, derived from the rules' conditions.
#[derive(Debug, Default)]
pub(crate) struct Trackers {
    /// (event kind group, scope) pairs that rate conditions read.
    pub rates: Vec<(u64, RatePer)>,
    pub rate_cap: usize,
    pub rate_horizon: Duration,
    pub repeats: Vec<RepeatScope>,
    pub repeat_horizon: Duration,
}

/// A loaded, validated, compiled policy.
#[derive(Debug)]
pub struct Policy {
    pub(crate) name: String,
    pub(crate) file: String,
    pub(crate) hash: std::sync::Arc<str>,
    pub(crate) mode: Mode,
    pub(crate) normalizer: Normalizer,
    pub(crate) lists: Vec<List>,
    pub(crate) terms: TermMatcher,
    pub(crate) regex_norm: RegexBank,
    pub(crate) regex_raw: RegexBank,
    pub(crate) roles: Vec<Role>,
    pub(crate) exempt: Vec<usize>,
    pub(crate) rules: Vec<Rule>,
    pub(crate) decay: Decay,
    pub(crate) ladder: Vec<Step>,
    pub(crate) escalation: Escalation,
    pub(crate) tests: Vec<testcase::TestCase>,
    pub(crate) trackers: Trackers,
    pub(crate) warnings: Vec<Diagnostic>,
}

impl Policy {
    /// Loads a policy from its text. `file` names it in diagnostics and is the base for
    /// relative list paths; `read_file` reads those list files (the caller decides how).
    /// On success the policy may still carry warnings ([`Policy::warnings`]).
    pub fn from_toml(
        file: &str,
        text: &str,
        read_file: &mut dyn FnMut(&Path) -> io::Result<String>,
    ) -> Result<Policy, Diagnostics> {
        compile::compile(file, text, read_file)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The file the policy was loaded from, as given to [`Policy::from_toml`].
    pub fn file(&self) -> &str {
        &self.file
    }

    /// `sha256:` and the hex digest of the policy file and its list files.
    pub fn hash(&self) -> &str {
        &self.hash
    }

    /// The first 12 hex digits of the hash, for people.
    pub fn short_hash(&self) -> &str {
        let hex = self.hash.trim_start_matches("sha256:");
        &hex[..hex.len().min(12)]
    }

    pub fn mode(&self) -> Mode {
        self.mode
    }

    pub fn warnings(&self) -> &[Diagnostic] {
        &self.warnings
    }

    pub fn rule_ids(&self) -> impl Iterator<Item = &str> {
        self.rules.iter().map(|r| r.id.as_str())
    }

    pub fn escalation(&self) -> &Escalation {
        &self.escalation
    }

    pub fn decay(&self) -> Decay {
        self.decay
    }

    /// How many `[[test]]` cases the policy carries.
    pub fn test_count(&self) -> usize {
        self.tests.len()
    }

    /// Whether the sender of `event` holds the role `name` as this policy defines it
    /// (e.g. "moderator" for command authorisation). False for unknown roles.
    pub fn holds_role(&self, event: &Event, name: &str) -> bool {
        self.roles
            .iter()
            .any(|r| r.name == name && r.held_by(event))
    }

    /// The longest window any counter needs: what the daemon passes to [`State::prune`].
    pub fn state_horizon(&self) -> Duration {
        self.trackers
            .rate_horizon
            .max(self.trackers.repeat_horizon)
            .max(Duration::from_millis(60_000))
    }

    fn roles_of(&self, ev: &Event) -> RoleSet {
        RoleSet(
            self.roles
                .iter()
                .enumerate()
                .filter(|(_, r)| r.held_by(ev))
                .fold(0, |set, (i, _)| set | 1 << i),
        )
    }
}

#[cfg(test)]
mod tests;
