//! Carrying out the routing core's effects, safely: audit first (write-before-act), then the
//! action on its network, then its outcome in the audit log; failures are reported to the
//! moderators. One worker per source room keeps each room's effects in order without letting
//! a slow action in one room hold up the others.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinSet;

use super::metrics::Metrics;
use crate::audit::{now_ms, AuditLog, Entry, Outcome, Record, Scheduled, ScheduledKind};
use crate::chat::{Command, Done};
use crate::irc::client::IrcHandle;
use crate::matrix::client::MatrixHandle;
use crate::routing::effect::say;
use crate::routing::{Act, Effect, Place, Query, Router, StoredTarget, MATRIX};

/// The adapters, by network name.
#[derive(Clone)]
pub struct Networks {
    pub matrix: MatrixHandle,
    pub irc: HashMap<String, IrcHandle>,
}

impl Networks {
    fn irc(&self, network: &str) -> Result<&IrcHandle, String> {
        self.irc
            .get(network)
            .ok_or_else(|| format!("no IRC network named {network}"))
    }

    /// Executes a command and waits for its outcome.
    pub async fn execute(&self, network: &str, command: Command) -> Result<Done, String> {
        if network == MATRIX {
            self.matrix
                .execute(command)
                .await
                .map_err(|e| e.to_string())
        } else {
            self.irc(network)?
                .execute(command)
                .await
                .map_err(|e| e.to_string())
        }
    }
}

/// Work for a room's worker: effects in order, possibly continuing an audit case.
pub struct Job {
    pub effects: Vec<Effect>,
    /// The audit case the effects belong to, when it was opened elsewhere (the schedule).
    pub case: Option<u64>,
    /// The scheduled undo this job carries out: cancelled once its action is applied.
    pub scheduled: Option<u64>,
}

/// What workers ask of the main loop.
pub enum Control {
    Reload { by: String, reply_to: Place },
    ScheduledDone(u64),
}

pub struct Executor {
    pub audit: Arc<AuditLog>,
    pub networks: Networks,
    pub metrics: Arc<Metrics>,
    pub control: mpsc::Sender<Control>,
}

/// Routes jobs to one worker per room.
pub struct Dispatcher {
    exec: Arc<Executor>,
    workers: HashMap<Place, mpsc::Sender<Job>>,
    tasks: JoinSet<()>,
}

impl Dispatcher {
    pub fn new(exec: Arc<Executor>) -> Self {
        Dispatcher {
            exec,
            workers: HashMap::new(),
            tasks: JoinSet::new(),
        }
    }

    pub async fn dispatch(&mut self, room: Place, job: Job) {
        if job.effects.is_empty() {
            return;
        }
        let exec = self.exec.clone();
        let tasks = &mut self.tasks;
        let tx = self.workers.entry(room).or_insert_with(|| {
            let (tx, mut rx) = mpsc::channel::<Job>(1024);
            tasks.spawn(async move {
                while let Some(job) = rx.recv().await {
                    exec.run(job).await;
                }
            });
            tx
        });
        // A full queue waits: nothing is dropped.
        if tx.send(job).await.is_err() {
            tracing::error!("a room worker has stopped; effects not executed");
        }
    }

    /// Lets every worker finish what it holds, for at most `grace`.
    pub async fn drain(mut self, grace: Duration) {
        self.workers.clear();
        let all = async { while self.tasks.join_next().await.is_some() {} };
        if tokio::time::timeout(grace, all).await.is_err() {
            tracing::warn!(?grace, "shutdown: some effects did not finish in time");
        }
    }
}

impl Executor {
    fn audit_failed(&self, e: &dyn std::fmt::Display) {
        self.metrics
            .audit_errors
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        tracing::error!(error = %e, "cannot write the audit log: the actions that depend on it are not taken");
    }

    /// Sends notices, logging what cannot be sent.
    async fn say(&self, to: &Place, text: &str) {
        for e in say(to, text, to.network != MATRIX) {
            if let Effect::Say { to, command } = e {
                if let Err(err) = self.networks.execute(&to.network, command).await {
                    tracing::warn!(room = %to, error = %err, "cannot send a notice");
                }
            }
        }
    }

    async fn relay(&self, to: Place, command: Command, direction: &'static str) {
        if to.network == MATRIX {
            let started = std::time::Instant::now();
            match self.networks.matrix.execute(command).await {
                Ok(_) => {
                    tracing::debug!(room = %to, took = ?started.elapsed(), "relayed to Matrix");
                    self.metrics.relayed.inc(&[("direction", direction)]);
                }
                Err(e) => {
                    self.metrics.relay_failures.inc(&[("network", MATRIX)]);
                    tracing::warn!(room = %to, error = %e, "relay to Matrix failed");
                }
            }
            return;
        }
        // IRC: queued in order now, delivered at the flood-control pace; the outcome is
        // counted when it comes, without holding up the room.
        let irc = match self.networks.irc(&to.network) {
            Ok(h) => h,
            Err(e) => {
                tracing::error!(error = %e, "relay to an unknown network");
                return;
            }
        };
        match irc.submit(command).await {
            Ok(done) => {
                let metrics = self.metrics.clone();
                let started = std::time::Instant::now();
                tokio::spawn(async move {
                    match done.await {
                        Ok(_) => {
                            tracing::debug!(room = %to, took = ?started.elapsed(), "relayed to IRC");
                            metrics.relayed.inc(&[("direction", direction)]);
                        }
                        Err(e) => {
                            metrics.relay_failures.inc(&[("network", &to.network)]);
                            tracing::warn!(room = %to, error = %e, "relay to IRC failed");
                        }
                    }
                });
            }
            Err(e) => {
                self.metrics.relay_failures.inc(&[("network", &to.network)]);
                tracing::warn!(room = %to, error = %e, "relay to IRC failed");
            }
        }
    }

    pub async fn run(&self, job: Job) {
        let mut case = job.case;
        let mut acts_ok = true;
        for effect in job.effects {
            match effect {
                Effect::Record(entry) => {
                    if let Entry::Decision(d) = &entry {
                        for r in &d.rules {
                            self.metrics
                                .decisions
                                .inc(&[("rule", r), ("mode", "enforce")]);
                        }
                        for r in &d.dry_run {
                            self.metrics
                                .decisions
                                .inc(&[("rule", r), ("mode", "dry-run")]);
                        }
                    }
                    match self.audit.append(entry, case, now_ms()).await {
                        Ok(a) => case = Some(a.case),
                        Err(e) => {
                            // Nothing that depends on this record may happen without it.
                            self.audit_failed(&e);
                            return;
                        }
                    }
                }
                Effect::Strike { identity, strike } => {
                    if let Err(e) = self.audit.add_strike(&identity, strike).await {
                        self.audit_failed(&e);
                    }
                }
                Effect::ClearStrikes { identity } => {
                    if let Err(e) = self.audit.clear_strikes(&identity).await {
                        self.audit_failed(&e);
                    }
                }
                Effect::Relay { to, command } => {
                    let direction = if to.network == MATRIX {
                        "irc_to_matrix"
                    } else {
                        "matrix_to_irc"
                    };
                    self.relay(to, command, direction).await;
                }
                Effect::Say { to, command } => {
                    if let Err(e) = self.networks.execute(&to.network, command).await {
                        tracing::warn!(room = %to, error = %e, "cannot send a notice");
                    }
                }
                Effect::Act(a) => acts_ok &= self.act(*a, case).await,
                Effect::Query(q) => self.answer(q).await,
                Effect::ReloadPolicy { by, reply_to } => {
                    let _ = self.control.send(Control::Reload { by, reply_to }).await;
                }
            }
        }
        if let (Some(id), true) = (job.scheduled, acts_ok) {
            match self.audit.unschedule(id).await {
                Ok(_) => {
                    let _ = self.control.send(Control::ScheduledDone(id)).await;
                }
                Err(e) => self.audit_failed(&e),
            }
        }
    }

    /// The scheduled undo of `kind` for this user in this room, if one is waiting.
    fn scheduled_undo(
        &self,
        kind: ScheduledKind,
        at: &Place,
        user: &str,
    ) -> Option<(Scheduled, StoredTarget)> {
        let all = self.audit.scheduled().ok()?;
        all.into_iter().find_map(|s| {
            let t: StoredTarget = serde_json::from_str(&s.target).ok()?;
            let same = s.kind == kind
                && s.network == at.network
                && Router::same_user(&at.network, &s.room, &at.room)
                && Router::same_user(&at.network, &t.id, user);
            same.then_some((s, t))
        })
    }

    /// Write-before-act: the pending record is durable before the command goes out.
    async fn act(&self, mut a: Act, case: Option<u64>) -> bool {
        let kind = a.record.action.clone();
        // Undoing by hand what the schedule would undo: use the mask (or power level) that was
        // applied, and cancel the scheduled undo.
        let mut cancel = None;
        if let Command::Unmute { target, .. } | Command::Unban { target, .. } = &mut a.command {
            let undo = if kind == "unmute" {
                ScheduledKind::Unmute
            } else {
                ScheduledKind::Unban
            };
            if target.mask.is_none() {
                if let Some((s, stored)) = self.scheduled_undo(undo, &a.at, &target.id) {
                    target.mask = stored.mask;
                    if target.account.is_none() {
                        target.account = stored.account;
                    }
                    cancel = Some(s.id);
                }
            }
        }
        let pending = match self
            .audit
            .begin_action(a.record.clone(), case, now_ms())
            .await
        {
            Ok(p) => p,
            Err(e) => {
                self.audit_failed(&e);
                self.metrics
                    .actions
                    .inc(&[("action", &kind), ("outcome", "not_recorded")]);
                for place in &a.report_failure {
                    self.say(
                        place,
                        &format!(
                            "{kind} {} was not done: the audit log cannot be written ({e})",
                            a.record.target.name
                        ),
                    )
                    .await;
                }
                return false;
            }
        };
        if a.cite_case {
            if let Command::Send { text, .. } = &mut a.command {
                text.push(
                    &format!(" [audit case {}]", pending.case),
                    Default::default(),
                );
            }
        }
        let target = match &a.command {
            Command::Mute { target, .. } | Command::Ban { target, .. } => Some(target.clone()),
            _ => None,
        };
        let result = self.networks.execute(&a.at.network, a.command).await;
        let (outcome, detail) = match &result {
            Ok(done) => (Outcome::Applied, done.detail.clone()),
            Err(reason) => (
                Outcome::Failed {
                    reason: reason.clone(),
                },
                None,
            ),
        };
        let label = if result.is_ok() { "applied" } else { "failed" };
        self.metrics
            .actions
            .inc(&[("action", &kind), ("outcome", label)]);
        if let Err(e) = self
            .audit
            .finish_action(&pending, outcome, detail.clone(), now_ms())
            .await
        {
            self.audit_failed(&e);
        }
        match result {
            Ok(_) => {
                if let (Some(after), Some(t)) = (a.undo_after, target) {
                    let undo = if kind == "mute" {
                        ScheduledKind::Unmute
                    } else {
                        ScheduledKind::Unban
                    };
                    let s = Scheduled {
                        id: 0,
                        due: now_ms() + after.as_millis() as i64,
                        kind: undo,
                        network: a.at.network.clone(),
                        room: a.at.room.clone(),
                        target: serde_json::to_string(&StoredTarget::new(&t, detail))
                            .unwrap_or_default(),
                        case: pending.case,
                    };
                    if let Err(e) = self.audit.schedule(s).await {
                        self.audit_failed(&e);
                        for place in &a.report_failure {
                            self.say(place, &format!("{kind} of {} is applied but its timed undo could not be scheduled: undo it by hand", a.record.target.name)).await;
                        }
                    }
                }
                if let Some(id) = cancel {
                    if let Err(e) = self.audit.unschedule(id).await {
                        self.audit_failed(&e);
                    }
                }
                if let Some((place, text)) = &a.on_success {
                    self.say(place, text).await;
                }
                true
            }
            Err(reason) => {
                tracing::warn!(action = %kind, target = %a.record.target.name, room = %a.at, %reason, "moderation action failed");
                for place in &a.report_failure {
                    self.say(
                        place,
                        &format!(
                            "could not {kind} {} in {}: {reason} [audit case {}]",
                            a.record.target.name, a.at, pending.case
                        ),
                    )
                    .await;
                }
                false
            }
        }
    }

    async fn answer(&self, q: Query) {
        let audit = self.audit.clone();
        let (reply_to, text) = match q {
            Query::Audit {
                identity,
                name,
                limit,
                reply_to,
            } => {
                let found = tokio::task::spawn_blocking(move || {
                    let mut records = audit.by_user(&identity, limit)?;
                    if records.is_empty() {
                        records = audit.by_user(&name, limit)?;
                    }
                    audit.settle_outcomes(&mut records)?;
                    Ok::<_, crate::audit::AuditError>(records)
                })
                .await;
                let text = match found {
                    Ok(Ok(records)) if records.is_empty() => {
                        "no audit records about them".to_string()
                    }
                    Ok(Ok(records)) => records
                        .iter()
                        .map(Record::describe)
                        .collect::<Vec<_>>()
                        .join("\n"),
                    Ok(Err(e)) => format!("cannot read the audit log: {e}"),
                    Err(e) => format!("cannot read the audit log: {e}"),
                };
                (reply_to, text)
            }
            Query::WhyUser {
                identity,
                name,
                reply_to,
            } => {
                let found = tokio::task::spawn_blocking(move || {
                    let mut records = audit.by_user(&identity, 200)?;
                    if records.is_empty() {
                        records = audit.by_user(&name, 200)?;
                    }
                    Ok::<_, crate::audit::AuditError>(
                        records
                            .into_iter()
                            .find(|r| matches!(r.entry, Entry::Decision(_))),
                    )
                })
                .await;
                let text = match found {
                    Ok(Ok(Some(r))) => why(&r),
                    Ok(Ok(None)) => "the policy has not decided anything about them".into(),
                    Ok(Err(e)) => format!("cannot read the audit log: {e}"),
                    Err(e) => format!("cannot read the audit log: {e}"),
                };
                (reply_to, text)
            }
            Query::WhyEvent { event_id, reply_to } => {
                let found = tokio::task::spawn_blocking(move || {
                    let recent = audit.recent(5000)?;
                    Ok::<_, crate::audit::AuditError>(recent.into_iter().find(|r| {
                        matches!(&r.entry, Entry::Decision(d) if d.event_id.as_deref() == Some(event_id.as_str()))
                    }))
                })
                .await;
                let text = match found {
                    Ok(Ok(Some(r))) => why(&r),
                    Ok(Ok(None)) => {
                        "no decision about that message (it was allowed as it is)".into()
                    }
                    Ok(Err(e)) => format!("cannot read the audit log: {e}"),
                    Err(e) => format!("cannot read the audit log: {e}"),
                };
                (reply_to, text)
            }
        };
        self.say(&reply_to, &text).await;
    }
}

/// A decision record in words: what was decided, and the evidence.
pub fn why(r: &Record) -> String {
    let Entry::Decision(d) = &r.entry else {
        return r.describe();
    };
    let mut out = format!(
        "#{} {}: {} said {:?}",
        r.id,
        crate::audit::record_time(r.ts),
        d.sender.name,
        crate::routing::clip(&d.text, 200)
    );
    if !d.rules.is_empty() {
        out.push_str(&format!(
            "\nrules {} -> {}",
            d.rules.join(", "),
            if d.actions.is_empty() {
                "no action".to_string()
            } else {
                d.actions.join(", ")
            }
        ));
    }
    if !d.dry_run.is_empty() {
        out.push_str(&format!("\ndry-run {}", d.dry_run.join(", ")));
    }
    out.push_str(&format!(
        "\nrelayed: {}; strikes then: {}; policy {} ({})",
        if d.relayed { "yes" } else { "no" },
        crate::policy::template::format_number(d.strikes),
        d.policy
            .trim_start_matches("sha256:")
            .chars()
            .take(12)
            .collect::<String>(),
        d.mode
    ));
    for line in &d.explanation {
        out.push_str("\n  ");
        out.push_str(line);
    }
    out
}
