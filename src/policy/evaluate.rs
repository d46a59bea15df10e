//! Evaluation: one event plus the engine state in, a decision out.
//!
//! Order of work for an event: find the sender's roles (exempt senders stop here, untouched);
//! record the event in the counters the policy reads (rates, repeats, presence); run the rules
//! in file order; add the strikes of enforced rules and fire the ladder step reached; render
//! templates; decide whether to relay. Nothing here can fail.

use super::condition::{Context, EventKeys, Texts};
use super::decision::{push_deduplicated, Action, ActionKind, Decision, Evidence, RuleMatch};
use super::event::{Event, EventKind};
use super::state::{State, Strike};
use super::template::Values;
use super::{ActionSpec, Mode, Policy, Rule};

/// What happened to one rule for one event: what `policy explain` shows.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum RuleOutcome {
    Off,
    /// The rule does not look at this kind of event, network or room.
    OutOfScope {
        why: ScopeMiss,
    },
    /// `unless` held, so the rule was skipped.
    Unless {
        evidence: Vec<Evidence>,
    },
    NoMatch,
    Matched {
        dry_run: bool,
        evidence: Vec<Evidence>,
    },
}

/// Which scope of a rule an event is outside of.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ScopeMiss {
    Kind,
    Network,
    Room,
}

impl ScopeMiss {
    pub fn describe(self, ev: &Event) -> String {
        match self {
            ScopeMiss::Kind => format!("does not run on {} events", ev.kind.name()),
            ScopeMiss::Network => format!("does not run on {}", ev.network.name()),
            ScopeMiss::Room => format!("does not run in {}", ev.room),
        }
    }
}

impl Policy {
    /// Decides about `event`, reading and updating `state`. Equivalent to
    /// [`Policy::evaluate_owned`] without moving the state.
    pub fn evaluate(&self, event: &Event, state: &mut State) -> Decision {
        self.run(event, state, None)
    }

    /// The same decision, taking the state and returning the new one.
    pub fn evaluate_owned(&self, event: &Event, mut state: State) -> (Decision, State) {
        let d = self.run(event, &mut state, None);
        (d, state)
    }

    /// The decision plus every rule's outcome, for explanations.
    pub fn evaluate_traced(
        &self,
        event: &Event,
        state: &mut State,
    ) -> (Decision, Vec<(String, RuleOutcome)>) {
        let mut trace = Vec::new();
        let d = self.run(event, state, Some(&mut trace));
        (d, trace)
    }

    fn run(
        &self,
        ev: &Event,
        state: &mut State,
        mut trace: Option<&mut Vec<(String, RuleOutcome)>>,
    ) -> Decision {
        let identity = ev.identity_hash();
        let roles = self.roles_of(ev);
        let mut decision = Decision {
            rules: Vec::new(),
            actions: Vec::new(),
            relay: true,
            strikes: state.strike_total_by_key(identity, ev.ts, self.decay),
            dry_run: Vec::new(),
            dry_run_actions: Vec::new(),
            exempt: false,
            ladder_step: None,
            matches: Vec::new(),
            policy: self.hash.clone(),
        };
        if self.exempt.iter().any(|r| roles.holds(*r)) {
            decision.exempt = true;
            return decision;
        }

        let texts = Texts::new(
            self,
            if ev.kind == EventKind::Join {
                ""
            } else {
                &ev.body
            },
        );
        let fingerprint = if ev.kind.has_text() && !self.trackers.repeats.is_empty() {
            texts.fingerprint()
        } else {
            None
        };
        let keys = EventKeys::new(&ev.room, identity);
        let presence = keys.presence();
        let first_message = !state.presence(presence).is_some_and(|p| p.spoke);
        self.record(ev, keys, fingerprint, state);

        let cx = Context {
            policy: self,
            event: ev,
            keys,
            roles,
            state,
            texts: &texts,
            fingerprint,
            first_message,
        };
        // (rule, action) pairs, rendered once the strike total is known.
        let mut enforced: Vec<(&Rule, &ActionSpec)> = Vec::new();
        let mut shadow: Vec<(&Rule, &ActionSpec)> = Vec::new();
        let mut added: Vec<(&Rule, f64)> = Vec::new();
        for rule in &self.rules {
            let outcome = self.check_rule(rule, &cx);
            let stop = match &outcome {
                RuleOutcome::Matched { dry_run, evidence } => {
                    decision.matches.push(RuleMatch {
                        rule: rule.id.clone(),
                        dry_run: *dry_run,
                        evidence: evidence.clone(),
                    });
                    if *dry_run {
                        decision.dry_run.push(rule.id.clone());
                        shadow.extend(rule.actions.iter().map(|a| (rule, a)));
                        false
                    } else {
                        decision.rules.push(rule.id.clone());
                        enforced.extend(rule.actions.iter().map(|a| (rule, a)));
                        if rule.strikes > 0.0 {
                            added.push((rule, rule.strikes));
                        }
                        rule.actions.iter().any(|a| a.kind == ActionKind::Allow)
                    }
                }
                _ => false,
            };
            if let Some(t) = trace.as_deref_mut() {
                t.push((rule.id.clone(), outcome));
            }
            if stop {
                break;
            }
        }

        let before = decision.strikes;
        let total_added: f64 = added.iter().map(|(_, w)| w).sum();
        for (rule, weight) in &added {
            let strike = Strike {
                ts: ev.ts,
                weight: *weight,
                rule: rule.id.clone(),
            };
            state.add_strike(identity, || ev.identity_key(), strike, self.decay);
        }
        let after = if total_added > 0.0 {
            state.strike_total_by_key(identity, ev.ts, self.decay)
        } else {
            before
        };
        decision.strikes = after;

        for (rule, spec) in enforced {
            let action = self.render(spec, &rule.id, &rule.description, ev, after);
            push_deduplicated(&mut decision.actions, action);
        }
        for (rule, spec) in shadow {
            let action = self.render(spec, &rule.id, &rule.description, ev, after);
            push_deduplicated(&mut decision.dry_run_actions, action);
        }
        if total_added > 0.0 {
            if let Some(step) = self.ladder.iter().rev().find(|s| s.at <= after) {
                if before < step.at {
                    let description = format!("{} strikes", super::template::format_number(after));
                    let action = self.render(&step.action, "ladder", &description, ev, after);
                    push_deduplicated(&mut decision.actions, action);
                    decision.ladder_step = Some(step.at);
                }
            }
        }
        decision.relay = !decision.actions.iter().any(Action::blocks_relay);
        if ev.kind.has_text() {
            state.presence_mut(presence).spoke = true;
        }
        decision
    }

    /// Records the event in the counters the policy's conditions read.
    fn record(&self, ev: &Event, keys: EventKeys, fingerprint: Option<u64>, state: &mut State) {
        let t = &self.trackers;
        let group = ev.kind.rate_group_id();
        for (g, per) in &t.rates {
            if *g == group {
                state.record_rate(per.key(ev.kind, keys), ev.ts, t.rate_cap, t.rate_horizon);
            }
        }
        if let Some(hash) = fingerprint {
            for scope in &t.repeats {
                state.record_repeat(scope.key(keys), hash, ev.ts, t.repeat_horizon);
            }
        }
        if ev.kind == EventKind::Join {
            let p = state.presence_mut(keys.presence());
            p.joined_ts = Some(ev.ts);
            p.spoke = false;
        }
    }

    fn check_rule(&self, rule: &Rule, cx: &Context<'_>) -> RuleOutcome {
        let ev = cx.event;
        if rule.mode == Mode::Off {
            return RuleOutcome::Off;
        }
        if !rule.on.contains(&ev.kind) {
            return RuleOutcome::OutOfScope {
                why: ScopeMiss::Kind,
            };
        }
        if rule
            .networks
            .as_ref()
            .is_some_and(|n| !n.contains(&ev.network))
        {
            return RuleOutcome::OutOfScope {
                why: ScopeMiss::Network,
            };
        }
        if rule
            .rooms
            .as_ref()
            .is_some_and(|r| !r.contains(&super::compile::room_key(&ev.room)))
        {
            return RuleOutcome::OutOfScope {
                why: ScopeMiss::Room,
            };
        }
        if let Some(unless) = &rule.unless {
            let mut evidence = Vec::new();
            if unless.check(cx, &mut evidence) {
                return RuleOutcome::Unless { evidence };
            }
        }
        let mut evidence = Vec::new();
        if !rule.when.check(cx, &mut evidence) {
            return RuleOutcome::NoMatch;
        }
        let dry_run = self.mode == Mode::DryRun || rule.mode == Mode::DryRun;
        RuleOutcome::Matched { dry_run, evidence }
    }

    fn render(
        &self,
        spec: &ActionSpec,
        rule: &str,
        description: &str,
        ev: &Event,
        strikes: f64,
    ) -> Action {
        let values = Values {
            sender: &ev.sender,
            room: &ev.room,
            rule,
            description,
            strikes,
            network: ev.network.name(),
        };
        let message = match (&spec.message, spec.kind) {
            (Some(t), _) => Some(t.render(&values)),
            (None, ActionKind::Warn) if rule == "ladder" => Some(format!(
                "{}: you have {} strikes; further violations will be acted on",
                ev.sender,
                super::template::format_number(strikes)
            )),
            (None, ActionKind::Warn) if !description.is_empty() => {
                Some(format!("{}: {description}", ev.sender))
            }
            (None, ActionKind::Warn) => {
                Some(format!("{}: your message broke the rule {rule}", ev.sender))
            }
            (None, _) => None,
        };
        let reason = match (&spec.reason, spec.kind) {
            (Some(t), _) => Some(t.render(&values)),
            (None, ActionKind::Kick | ActionKind::Ban | ActionKind::Mute)
                if !description.is_empty() =>
            {
                Some(description.to_string())
            }
            (None, _) => None,
        };
        Action {
            kind: spec.kind,
            duration: spec.duration,
            message,
            reason,
            relay: spec.relay,
            rule: rule.to_string(),
        }
    }
}
