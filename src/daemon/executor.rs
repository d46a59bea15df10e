//! Carrying out the routing core's effects, safely: audit first (write-before-act), then the
//! action on its network, then its outcome in the audit log; failures are reported to the
//! moderators. One worker per source room keeps each room's effects in order without letting
//! a slow action in one room hold up the others.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinSet;

use super::metrics::Metrics;
use crate::audit::{now_ms, AuditLog, Entry, Outcome, Record, Scheduled, ScheduledKind};
use crate::chat::{Command, Done, SendKind};
use crate::irc::client::IrcHandle;
use crate::matrix::client::MatrixHandle;
use crate::rich_text::RichText;
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

/// At most this many relayed lines go into one Matrix message when a backlog is merged...
const MERGE_LINES: usize = 20;
/// ...and at most this much text.
const MERGE_BYTES: usize = 8 * 1024;

/// A relayed line: where it goes (place and the adapter's room), its text and sender.
type Line<'a> = (&'a Place, &'a str, &'a RichText, Option<&'a str>);

/// The relayed line a job is, if it is nothing else: one plain message relayed to Matrix.
fn matrix_line(job: &Job) -> Option<Line<'_>> {
    match (job.case, job.scheduled, job.effects.as_slice()) {
        (
            None,
            None,
            [Effect::Relay {
                to,
                command:
                    Command::Send {
                        room,
                        text,
                        kind: SendKind::Message,
                        from,
                    },
            }],
        ) if to.network == MATRIX => Some((to, room, text, from.as_deref())),
        _ => None,
    }
}

/// When relayed lines for one Matrix room wait behind each other, sends them as one message
/// (one line each, `<nick> text`, in order): a homeserver takes tens of milliseconds per
/// event, so a burst from IRC would otherwise fall further and further behind. Only a backlog
/// is merged, never a line that could go out alone; a job that is not such a line ends the
/// merge and is kept in `held` for next. Returns the job to run and how many jobs it stands for.
fn merge_backlog(
    job: Job,
    rx: &mut mpsc::UnboundedReceiver<Job>,
    held: &mut Option<Job>,
) -> (Job, u64) {
    let Some((to, room, first, from)) = matrix_line(&job) else {
        return (job, 1);
    };
    let (to, room) = (to.clone(), room.to_string());
    let mut lines = vec![(from.map(str::to_string), first.clone())];
    let mut bytes = first.to_plain().len();
    while lines.len() < MERGE_LINES {
        let Ok(next) = rx.try_recv() else { break };
        match matrix_line(&next) {
            Some((place, _, text, from))
                if *place == to && bytes + text.to_plain().len() <= MERGE_BYTES =>
            {
                bytes += text.to_plain().len();
                lines.push((from.map(str::to_string), text.clone()));
            }
            _ => {
                *held = Some(next);
                break;
            }
        }
    }
    if lines.len() == 1 {
        return (job, 1);
    }
    let n = lines.len() as u64;
    let mut text = RichText::default();
    for (i, (from, line)) in lines.into_iter().enumerate() {
        if i > 0 {
            text.push("\n", Default::default());
        }
        if let Some(name) = from {
            text.push(&format!("<{name}> "), Default::default());
        }
        for span in line.spans {
            text.push_link(&span.text, span.style, span.link);
        }
    }
    let merged = Job {
        effects: vec![Effect::Relay {
            to,
            command: Command::Send {
                room,
                text,
                kind: SendKind::Message,
                from: None,
            },
        }],
        case: None,
        scheduled: None,
    };
    (merged, n)
}

/// A target as the schedule stores it.
fn stored(t: &crate::chat::Target, detail: Option<String>) -> String {
    serde_json::to_string(&StoredTarget::new(t, detail)).unwrap_or_default()
}

/// What workers tell the main loop. Unbounded, like the room queues: a worker must never
/// wait on the main loop while the main loop feeds it.
pub enum Control {
    Reload {
        by: String,
        reply_to: Place,
    },
    /// A scheduled undo was carried out.
    ScheduledDone(u64),
    /// A scheduled undo failed; the main loop decides when to try again.
    ScheduledFailed(u64),
}

pub struct Executor {
    pub audit: Arc<AuditLog>,
    pub networks: Networks,
    pub metrics: Arc<Metrics>,
    pub control: mpsc::UnboundedSender<Control>,
}

/// Routes jobs to one worker per room.
///
/// The queues are unbounded on purpose: the main loop must never wait for a room (a room
/// whose actions wait on a server's confirmation would otherwise stop every room, and the
/// adapters behind them). What piles up is bounded by what the networks deliver; the
/// backlog is visible in the `bridgewarden_effects_queued` gauge.
pub struct Dispatcher {
    exec: Arc<Executor>,
    workers: HashMap<Place, mpsc::UnboundedSender<Job>>,
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

    pub fn dispatch(&mut self, room: Place, job: Job) {
        if job.effects.is_empty() {
            return;
        }
        // Private messages to the bot (an IRC "room" that is a nick) share one worker per
        // network: one per nick would grow without bound.
        let room = if room.network != MATRIX && !room.room.starts_with(['#', '&', '+', '!']) {
            Place::new(&room.network, "")
        } else {
            room
        };
        let exec = self.exec.clone();
        let tasks = &mut self.tasks;
        let tx = self.workers.entry(room).or_insert_with(|| {
            let (tx, mut rx) = mpsc::unbounded_channel::<Job>();
            tasks.spawn(async move {
                let mut held = None;
                loop {
                    let job = match held.take() {
                        Some(job) => job,
                        None => match rx.recv().await {
                            Some(job) => job,
                            None => break,
                        },
                    };
                    let (job, merged) = merge_backlog(job, &mut rx, &mut held);
                    exec.run(job).await;
                    exec.metrics.queued.fetch_sub(merged, Ordering::Relaxed);
                }
            });
            tx
        });
        self.exec.metrics.queued.fetch_add(1, Ordering::Relaxed);
        if tx.send(job).is_err() {
            self.exec.metrics.queued.fetch_sub(1, Ordering::Relaxed);
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
                    let _ = self.control.send(Control::Reload { by, reply_to });
                }
            }
        }
        if let Some(id) = job.scheduled {
            if !acts_ok {
                let _ = self.control.send(Control::ScheduledFailed(id));
                return;
            }
            match self.audit.unschedule(id).await {
                Ok(_) => {
                    let _ = self.control.send(Control::ScheduledDone(id));
                }
                Err(e) => {
                    self.audit_failed(&e);
                    let _ = self.control.send(Control::ScheduledFailed(id));
                }
            }
        }
    }

    /// The scheduled undo of `kind` for this user in this room, if one is waiting.
    async fn scheduled_undo(
        &self,
        kind: ScheduledKind,
        at: &Place,
        user: &str,
    ) -> Option<(Scheduled, StoredTarget)> {
        let audit = self.audit.clone();
        let all = tokio::task::spawn_blocking(move || audit.scheduled())
            .await
            .ok()?
            .ok()?;
        all.into_iter().find_map(|s| {
            let t: StoredTarget = serde_json::from_str(&s.target).ok()?;
            let same = s.kind == kind
                && s.network == at.network
                && Router::same_user(&at.network, &s.room, &at.room)
                && Router::same_user(&at.network, &t.id, user);
            same.then_some((s, t))
        })
    }

    /// Write-before-act: the pending record is durable before the command goes out; so is
    /// the undo of a timed mute or ban (a crash between the action and its undo must not make
    /// it permanent).
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
                if let Some((s, stored)) = self.scheduled_undo(undo, &a.at, &target.id).await {
                    target.mask = stored.mask;
                    if target.account.is_none() {
                        target.account = stored.account;
                    }
                    cancel = Some(s.id);
                }
            }
        }
        // Muting or banning again someone whose undo is waiting: the new action replaces the
        // old one's undo (a later permanent ban must not be lifted by an earlier timed one),
        // keeping what the first action found (a Matrix user's power level before any mute).
        let (target, prior) = match &a.command {
            Command::Mute { target, .. } | Command::Ban { target, .. } => {
                let undo = if kind == "mute" {
                    ScheduledKind::Unmute
                } else {
                    ScheduledKind::Unban
                };
                let prior = self.scheduled_undo(undo, &a.at, &target.id).await;
                (Some((undo, target.clone())), prior)
            }
            _ => (None, None),
        };
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
                self.report(
                    &a,
                    &format!(
                        "{kind} {} was not done: the audit log cannot be written ({e})",
                        a.record.target.name
                    ),
                )
                .await;
                return false;
            }
        };
        let mut undo = match (a.undo_after, &target) {
            (Some(after), Some((undo_kind, t))) => {
                let s = Scheduled {
                    id: 0,
                    due: now_ms().saturating_add(after.as_millis() as i64),
                    kind: *undo_kind,
                    network: a.at.network.clone(),
                    room: a.at.room.clone(),
                    target: stored(t, prior.as_ref().and_then(|p| p.1.mask.clone())),
                    case: pending.case,
                };
                match self.audit.schedule(s.clone()).await {
                    Ok(id) => Some(Scheduled { id, ..s }),
                    Err(e) => {
                        self.audit_failed(&e);
                        let reason = format!("its timed undo cannot be scheduled ({e})");
                        if let Err(e) = self
                            .audit
                            .finish_action(
                                &pending,
                                Outcome::Failed {
                                    reason: reason.clone(),
                                },
                                None,
                                now_ms(),
                            )
                            .await
                        {
                            self.audit_failed(&e);
                        }
                        self.metrics
                            .actions
                            .inc(&[("action", &kind), ("outcome", "failed")]);
                        self.report(
                            &a,
                            &format!("{kind} {} was not done: {reason}", a.record.target.name),
                        )
                        .await;
                        return false;
                    }
                }
            }
            _ => None,
        };
        if a.cite_case {
            if let Command::Send { text, .. } = &mut a.command {
                text.push(
                    &format!(" [audit case {}]", pending.case),
                    Default::default(),
                );
            }
        }
        let result = self
            .networks
            .execute(&a.at.network, a.command.clone())
            .await;
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
                // What the action applied (the IRC mask, the Matrix power level before) is
                // known only now: the undo learns it. On Matrix an earlier mute's undo knows
                // better: the level before the first mute, not the muted one.
                let keep_prior = a.at.network == MATRIX && prior.is_some();
                if let (Some(s), Some((_, t)), false) = (undo.as_mut(), &target, keep_prior) {
                    if detail.is_some() {
                        s.target = stored(t, detail.clone());
                        if let Err(e) = self.audit.reschedule(s.clone()).await {
                            self.audit_failed(&e);
                        }
                    }
                }
                for id in cancel.into_iter().chain(prior.map(|p| p.0.id)) {
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
                if let Some(s) = undo {
                    if let Err(e) = self.audit.unschedule(s.id).await {
                        self.audit_failed(&e);
                    }
                }
                tracing::warn!(action = %kind, target = %a.record.target.name, room = %a.at, %reason, "moderation action failed");
                self.report(
                    &a,
                    &format!(
                        "could not {kind} {} in {}: {reason} [audit case {}]",
                        a.record.target.name, a.at, pending.case
                    ),
                )
                .await;
                false
            }
        }
    }

    /// Tells the places an action reports its failures to.
    async fn report(&self, a: &Act, text: &str) {
        for place in &a.report_failure {
            self.say(place, text).await;
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

#[cfg(test)]
mod tests {
    use super::*;

    fn line(room: &str, from: &str, text: &str) -> Job {
        Job {
            effects: vec![Effect::Relay {
                to: Place::new(MATRIX, room),
                command: Command::Send {
                    room: room.into(),
                    text: RichText::plain(text),
                    kind: SendKind::Message,
                    from: Some(from.into()),
                },
            }],
            case: None,
            scheduled: None,
        }
    }

    fn text_of(job: &Job) -> (String, Option<String>) {
        match &job.effects[..] {
            [Effect::Relay {
                command: Command::Send { text, from, .. },
                ..
            }] => (text.to_plain(), from.clone()),
            other => panic!("{}", other.len()),
        }
    }

    #[test]
    fn a_backlog_of_lines_for_one_room_goes_out_as_one_message_in_order() {
        let (tx, mut rx) = mpsc::unbounded_channel();
        for (who, text) in [("b", "two"), ("c", "three")] {
            tx.send(line("!r:hs", who, text)).unwrap();
        }
        tx.send(line("!other:hs", "d", "elsewhere")).unwrap();
        tx.send(line("!r:hs", "e", "after")).unwrap();
        let mut held = None;
        let (job, n) = merge_backlog(line("!r:hs", "a", "one"), &mut rx, &mut held);
        assert_eq!(n, 3);
        assert_eq!(
            text_of(&job),
            ("<a> one\n<b> two\n<c> three".to_string(), None)
        );
        // The line for another room ends the merge and is kept, in order.
        let held = held.expect("kept");
        assert_eq!(text_of(&held).0, "elsewhere");
        assert_eq!(text_of(&rx.try_recv().unwrap()).0, "after");
    }

    #[test]
    fn a_line_without_a_backlog_and_other_jobs_go_out_as_they_are() {
        let (_tx, mut rx) = mpsc::unbounded_channel();
        let mut held = None;
        let (job, n) = merge_backlog(line("!r:hs", "a", "one"), &mut rx, &mut held);
        assert_eq!(
            (n, text_of(&job)),
            (1, ("one".to_string(), Some("a".into())))
        );
        let (tx, mut rx) = mpsc::unbounded_channel();
        tx.send(line("!r:hs", "b", "two")).unwrap();
        let mut scheduled = line("!r:hs", "a", "one");
        scheduled.scheduled = Some(7);
        let (job, n) = merge_backlog(scheduled, &mut rx, &mut held);
        assert_eq!((n, job.scheduled), (1, Some(7)));
        assert!(held.is_none());
        // Never more than MERGE_LINES at once.
        for i in 0..30 {
            tx.send(line("!r:hs", "x", &format!("{i}"))).unwrap();
        }
        let (_, n) = merge_backlog(line("!r:hs", "a", "first"), &mut rx, &mut held);
        assert_eq!(n, MERGE_LINES as u64);
    }
}
