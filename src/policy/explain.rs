//! Human explanations of a decision: what `policy explain` prints and the in-room `why`
//! command shows.
//!
//! Shows the normalised text the rules saw, each rule's outcome with its evidence, and where
//! in the original text a term or pattern matched. Must not decide anything itself: it only
//! formats what evaluation traced.

use std::fmt::Write;

use super::decision::{Decision, Evidence};
use super::evaluate::RuleOutcome;
use super::event::Event;
use super::state::State;
use super::template::format_number;
use super::Policy;

/// Evaluates `event` and explains the outcome in plain text.
pub fn explain(policy: &Policy, event: &Event, state: &mut State) -> String {
    let (decision, trace) = policy.evaluate_traced(event, state);
    let mut out = String::new();
    let _ = writeln!(
        out,
        "policy:     {} ({}, {})",
        policy.name(),
        policy.hash(),
        policy.mode().name()
    );
    let _ = writeln!(
        out,
        "event:      {} on {} in {} from {}",
        event.kind.name(),
        event.network.name(),
        event.room,
        event.sender
    );
    let _ = writeln!(out, "text:       {:?}", event.body);
    let readings = policy.normalizer.readings(&event.body);
    for (i, r) in readings.iter().enumerate() {
        let label = if i == 0 { "normalised:" } else { "or:        " };
        let _ = writeln!(out, "{label} {:?}", r.text());
    }
    if decision.exempt {
        let _ = writeln!(out, "\nthe sender is exempt by role: no rule was evaluated");
    }
    if !trace.is_empty() {
        let _ = writeln!(out, "\nrules:");
    }
    let width = trace.iter().map(|(id, _)| id.len()).max().unwrap_or(0);
    for (id, outcome) in &trace {
        let (label, evidence) = match outcome {
            RuleOutcome::Off => ("off".to_string(), None),
            RuleOutcome::OutOfScope { why } => (format!("skipped: {}", why.describe(event)), None),
            RuleOutcome::Unless { evidence } => {
                ("skipped: `unless` held".to_string(), Some(evidence))
            }
            RuleOutcome::NoMatch => ("no match".to_string(), None),
            RuleOutcome::Matched {
                dry_run: true,
                evidence,
            } => ("MATCHED (dry-run: would act)".to_string(), Some(evidence)),
            RuleOutcome::Matched {
                dry_run: false,
                evidence,
            } => ("MATCHED".to_string(), Some(evidence)),
        };
        let _ = writeln!(out, "  {id:width$}  {label}");
        for e in evidence.into_iter().flatten() {
            let _ = writeln!(out, "  {:width$}    {e}", "");
            if let Some(marker) = underline(&event.body, e) {
                let _ = writeln!(
                    out,
                    "  {:width$}      {}",
                    "",
                    event.body.replace('\n', " ")
                );
                let _ = writeln!(out, "  {:width$}      {marker}", "");
            }
        }
    }
    if trace.len() < policy.rules.len() && !decision.exempt {
        let _ = writeln!(out, "  (evaluation stopped at an `allow`)");
    }
    let _ = writeln!(out, "\n{}", summary(&decision));
    out
}

/// One line: what will happen, relay or not, strikes.
pub fn summary(d: &Decision) -> String {
    let mut parts = Vec::new();
    for a in &d.actions {
        let mut s = a.kind.name().to_string();
        if let Some(dur) = a.duration {
            let _ = write!(s, " {dur}");
        }
        if let Some(m) = &a.message {
            let _ = write!(s, " {m:?}");
        }
        if let Some(r) = &a.reason {
            let _ = write!(s, " (reason {r:?})");
        }
        parts.push(s);
    }
    let actions = if parts.is_empty() {
        "no action".to_string()
    } else {
        parts.join(", ")
    };
    let mut line = format!(
        "decision:   {actions}; relay: {}; strikes: {}",
        if d.relay { "yes" } else { "no" },
        format_number(d.strikes)
    );
    if let Some(step) = d.ladder_step {
        let _ = write!(line, " (ladder step at {})", format_number(step));
    }
    if !d.dry_run.is_empty() {
        let would: Vec<&str> = d.dry_run_actions.iter().map(|a| a.kind.name()).collect();
        let _ = write!(
            line,
            "\ndry-run:    {} would have done: {}",
            d.dry_run.join(", "),
            would.join(", ")
        );
    }
    line
}

/// A `^^^` line under the matched part of a single-line body.
fn underline(body: &str, e: &Evidence) -> Option<String> {
    let (start, end) = match e {
        Evidence::Term { start, end, .. } | Evidence::Regex { start, end, .. } => (*start, *end),
        _ => return None,
    };
    if body.contains('\n') || end > body.len() || start >= end {
        return None;
    }
    let pad = body[..start].chars().count();
    let len = body[start..end].chars().count().max(1);
    Some(format!("{}{}", " ".repeat(pad), "^".repeat(len)))
}
