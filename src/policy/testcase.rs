//! `[[test]]` cases: policies tested like code.
//!
//! Each case runs its events, in order, against a fresh state, on a fixed clock (the first
//! event at a fixed instant, each next one `after` the previous, 1s by default), and checks
//! the decision about the last event against `expect`. Keys left out of `expect` are not
//! checked. Must not print: results are data for the CLI to format.

use super::decision::Decision;
use super::duration::Duration;
use super::event::EventInput;
use super::raw::{ExpectedAction, RawExpect};
use super::state::State;
use super::Policy;

/// The instant the first event of a test happens at, unless it gives `ts`.
pub const TEST_EPOCH_MS: i64 = 1_700_000_000_000;
const DEFAULT_GAP_MS: u64 = 1000;

#[derive(Debug, Clone)]
pub struct TestCase {
    pub name: String,
    /// FILE:LINE:COL of the `[[test]]`.
    pub location: String,
    pub events: Vec<EventInput>,
    pub expect: Expect,
}

#[derive(Debug, Clone)]
pub struct Expect {
    rules: Option<Vec<String>>,
    actions: Option<Vec<ExpectedAction>>,
    relay: Option<bool>,
    strikes: Option<f64>,
    dry_run: Option<Vec<String>>,
}

impl Expect {
    pub(crate) fn from_raw(raw: &RawExpect) -> Self {
        Expect {
            rules: raw.rules.clone(),
            actions: raw.actions.clone(),
            relay: raw.relay,
            strikes: raw.strikes,
            dry_run: raw.dry_run.clone(),
        }
    }

    /// Every way `d` differs from what is expected.
    fn mismatches(&self, d: &Decision) -> Vec<String> {
        let mut out = Vec::new();
        if let Some(rules) = &self.rules {
            if *rules != d.rules {
                out.push(format!("rules: expected {rules:?}, got {:?}", d.rules));
            }
        }
        if let Some(dry) = &self.dry_run {
            if *dry != d.dry_run {
                out.push(format!("dry_run: expected {dry:?}, got {:?}", d.dry_run));
            }
        }
        if let Some(actions) = &self.actions {
            let same = actions.len() == d.actions.len()
                && actions
                    .iter()
                    .zip(&d.actions)
                    .all(|(want, got)| match want {
                        ExpectedAction::Name(kind) => got.kind.name() == kind,
                        ExpectedAction::Table { kind, duration } => {
                            got.kind.name() == kind
                                && duration
                                    .as_deref()
                                    .map(Duration::parse)
                                    .and_then(Result::ok)
                                    == got.duration
                        }
                    });
            if !same {
                let want: Vec<String> = actions.iter().map(describe_expected).collect();
                let got: Vec<String> = d
                    .actions
                    .iter()
                    .map(|a| match a.duration {
                        Some(dur) => format!("{} {dur}", a.kind.name()),
                        None => a.kind.name().to_string(),
                    })
                    .collect();
                out.push(format!("actions: expected {want:?}, got {got:?}"));
            }
        }
        if let Some(relay) = self.relay {
            if relay != d.relay {
                out.push(format!("relay: expected {relay}, got {}", d.relay));
            }
        }
        if let Some(strikes) = self.strikes {
            if (strikes - d.strikes).abs() > 1e-9 {
                out.push(format!("strikes: expected {strikes}, got {}", d.strikes));
            }
        }
        out
    }
}

fn describe_expected(a: &ExpectedAction) -> String {
    match a {
        ExpectedAction::Name(k) => k.clone(),
        ExpectedAction::Table {
            kind,
            duration: Some(d),
        } => format!("{kind} {d}"),
        ExpectedAction::Table {
            kind,
            duration: None,
        } => kind.clone(),
    }
}

/// The outcome of one test case.
#[derive(Debug, Clone)]
pub struct TestResult {
    pub name: String,
    pub location: String,
    /// Empty when the test passed.
    pub failures: Vec<String>,
}

impl TestResult {
    pub fn passed(&self) -> bool {
        self.failures.is_empty()
    }
}

impl Policy {
    /// Runs every `[[test]]` case of the policy.
    pub fn run_tests(&self) -> Vec<TestResult> {
        self.tests.iter().map(|t| self.run_test(t)).collect()
    }

    fn run_test(&self, t: &TestCase) -> TestResult {
        let mut state = State::new();
        let mut last = None;
        let mut prev_ts: Option<i64> = None;
        let mut failures = Vec::new();
        for input in &t.events {
            let mut input = input.clone();
            if input.ts.is_none() && input.after.is_none() && prev_ts.is_some() {
                input.after = Some(Duration::from_millis(DEFAULT_GAP_MS).to_string());
            }
            // Validated at load time; an error here would mean a loader bug, reported as a failure.
            match input.into_event(prev_ts, TEST_EPOCH_MS) {
                Ok(ev) => {
                    prev_ts = Some(ev.ts);
                    last = Some(self.evaluate(&ev, &mut state));
                }
                Err(e) => failures.push(e),
            }
        }
        if let Some(d) = &last {
            failures.extend(t.expect.mismatches(d));
        }
        TestResult {
            name: t.name.clone(),
            location: t.location.clone(),
            failures,
        }
    }
}
