//! The bridge daemon: starts the audit log, the policy and the adapters from a validated
//! config, feeds every event through the routing core, and executes its effects; runs timed
//! undos from the durable schedule, reloads the policy on SIGHUP or when its files change,
//! serves metrics and health, and shuts down gracefully.
//!
//! The edge of the program: it holds no routing or policy logic of its own and knows no wire
//! format. Must not act on anything before its audit record is durable (the executor's job).

mod executor;
mod memory;
pub mod metrics;

use std::collections::HashMap;
use std::future::Future;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use anyhow::Context;
use tokio::sync::mpsc;

use crate::audit::{now_ms, AuditLog, Entry, PolicyLoadRecord};
use crate::chat::ChatEvent;
use crate::config::Config;
use crate::irc::client::IrcHandle;
use crate::policy::Policy;
use crate::routing::{IrcRules, Pair, Place, Router, Routes, MATRIX};
pub use executor::why;
use executor::{Control, Dispatcher, Executor, Job, Networks};
use metrics::{Gauge, Metrics, Response};

/// How often the policy files are checked for changes.
const WATCH_EVERY: Duration = Duration::from_secs(2);
/// How often the schedule is checked for undos that fell due.
const SCHEDULE_EVERY: Duration = Duration::from_secs(1);
/// A scheduled undo that failed is tried again after this long, doubling each time...
const SCHEDULE_RETRY: Duration = Duration::from_secs(60);
/// ...up to this many attempts; then it is given up and the moderators are told.
const UNDO_ATTEMPTS: u32 = 5;
/// Freed memory goes back to the system once events have been quiet this long...
const TRIM_QUIET: Duration = Duration::from_secs(1);
/// ...and at least this often while they go on.
const TRIM_AT_MOST: Duration = Duration::from_secs(30);
/// How far back startup looks for actions the last run never finished (every record of the
/// window is read once: a longer window costs startup time on a busy bridge).
const INTERRUPTED_WINDOW: Duration = Duration::from_secs(3 * 24 * 3600);
/// How long shutdown waits for in-flight effects.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// The policy files' identity on disk: what a change is measured against.
type Fingerprint = Vec<(PathBuf, Option<(SystemTime, u64)>)>;

fn fingerprint(files: &[PathBuf]) -> Fingerprint {
    files
        .iter()
        .map(|f| {
            let meta = std::fs::metadata(f)
                .ok()
                .and_then(|m| Some((m.modified().ok()?, m.len())));
            (f.clone(), meta)
        })
        .collect()
}

/// Actions the last run recorded but never saw end (killed, or the shutdown grace ran out)
/// may or may not have happened: each gets the outcome `interrupted`, and the moderators are
/// told which, to check by hand. Returns the announcement's effects.
async fn report_interrupted(audit: &Arc<AuditLog>, router: &Router) -> Vec<crate::routing::Effect> {
    const SHOWN: usize = 10;
    let since = now_ms().saturating_sub(INTERRUPTED_WINDOW.as_millis() as i64);
    let store = audit.clone();
    let open =
        match tokio::task::spawn_blocking(move || store.unfinished_actions(since, 1000)).await {
            Ok(Ok(open)) => open,
            Ok(Err(e)) => {
                tracing::error!(error = %e, "cannot look for interrupted actions");
                return Vec::new();
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot look for interrupted actions");
                return Vec::new();
            }
        };
    if open.is_empty() {
        return Vec::new();
    }
    let mut lines = Vec::new();
    for r in &open {
        let Entry::Action(a) = &r.entry else { continue };
        let pending = crate::audit::PendingAction {
            id: r.id,
            case: r.case,
            action: a.action.clone(),
        };
        if let Err(e) = audit
            .finish_action(&pending, crate::audit::Outcome::Interrupted, None, now_ms())
            .await
        {
            tracing::error!(error = %e, "cannot record an interrupted action");
        }
        tracing::warn!(record = r.id, action = %a.action, target = %a.target.name, room = %a.room, "an action was interrupted by the last stop");
        if lines.len() < SHOWN {
            lines.push(r.describe());
        }
    }
    if open.len() > SHOWN {
        lines.push(format!(
            "... and {} more (!audit, or `bridgewarden audit list --type action`)",
            open.len() - SHOWN
        ));
    }
    let text = format!(
        "{} moderation action(s) were interrupted when bridgewarden last stopped: they may or may not have happened, check by hand:\n{}",
        open.len(),
        lines.join("\n")
    );
    router.announce(&text)
}

/// State the health endpoint reads; refreshed in the background.
#[derive(Default)]
struct Health {
    irc: Vec<(String, bool)>,
    policy: String,
}

/// Runs the daemon until `shutdown` completes.
pub async fn run(config: Config, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
    let started = Instant::now();
    // First: a reload signal during startup waits for the main loop instead of killing us.
    let mut sighup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        .context("cannot handle SIGHUP")?;
    let audit_dir = config.audit_dir.clone();
    let audit = tokio::task::spawn_blocking(move || AuditLog::open(&audit_dir))
        .await?
        .with_context(|| {
            format!(
                "cannot open the audit log in {}",
                config.audit_dir.display()
            )
        })?;
    let audit = Arc::new(audit);
    if let Some(max_age) = config.retention {
        audit.start_retention(max_age, Duration::from_secs(3600));
    }

    let (policy, mut watched) = crate::policy_files::load_tracked(&config.policy);
    let policy = match policy {
        Ok(p) => Arc::new(p),
        Err(diags) => {
            let _ = audit
                .append(
                    policy_load(&config, None, "startup", Some(diags.to_string())),
                    None,
                    now_ms(),
                )
                .await;
            anyhow::bail!("the policy does not load:\n{diags}");
        }
    };
    for w in policy.warnings() {
        tracing::warn!("{w}");
    }
    audit
        .append(
            policy_load(&config, Some(&policy), "startup", None),
            None,
            now_ms(),
        )
        .await
        .context("cannot write the audit log")?;
    let mut seen = fingerprint(&watched);

    // Adapters.
    let (events_tx, mut events) = mpsc::channel::<ChatEvent>(4096);
    let mut irc: HashMap<String, IrcHandle> = HashMap::new();
    for net in &config.irc {
        let (handle, mut rx) = crate::irc::client::spawn(net.config.clone());
        let tx = events_tx.clone();
        tokio::spawn(async move {
            while let Some(e) = rx.recv().await {
                if tx.send(e).await.is_err() {
                    break;
                }
            }
        });
        irc.insert(net.config.network.clone(), handle);
    }
    let (matrix, mut mrx) = crate::matrix::client::start(config.matrix.clone())
        .await
        .context("cannot start the Matrix side")?;
    let tx = events_tx.clone();
    tokio::spawn(async move {
        while let Some(e) = mrx.recv().await {
            if tx.send(e).await.is_err() {
                break;
            }
        }
    });
    drop(events_tx);

    // Room aliases become ids: events carry ids.
    let mut pairs = Vec::new();
    for b in &config.bridges {
        let id = match matrix.join(&b.matrix).await {
            Ok(id) => id,
            Err(e) => {
                tracing::error!(room = %b.matrix, error = %e, "cannot join a bridged Matrix room; its pair stays down");
                continue;
            }
        };
        pairs.push(Pair {
            matrix_room: id,
            matrix_name: b.matrix.clone(),
            network: b.network.clone(),
            channel: b.channel.clone(),
        });
    }
    let mut moderation_rooms = Vec::new();
    for r in &config.moderation.rooms {
        match r {
            crate::config::RoomRef::Matrix(room) => match matrix.join(room).await {
                Ok(id) => moderation_rooms.push(Place::new(MATRIX, &id)),
                Err(e) => tracing::error!(%room, error = %e, "cannot join a moderators' room"),
            },
            crate::config::RoomRef::Irc { network, channel } => {
                moderation_rooms.push(Place::new(network, channel))
            }
        }
    }
    let routes = Routes {
        pairs,
        irc: config
            .irc
            .iter()
            .map(|n| IrcRules {
                network: n.config.network.clone(),
                moderator_modes: n.moderator_modes.clone(),
                moderator_accounts: n.moderator_accounts.clone(),
            })
            .collect(),
        matrix_power_level: config.moderation.matrix_power_level,
        command_prefix: config.moderation.command_prefix.clone(),
        moderation_rooms,
        ignore_senders: config.ignore_senders.clone(),
    };
    let mut router = Router::new(routes, policy.clone());
    let strikes = {
        let audit = audit.clone();
        tokio::task::spawn_blocking(move || audit.all_strikes()).await??
    };
    router.load_strikes(strikes);

    let metrics = Arc::new(Metrics::default());
    let health = Arc::new(Mutex::new(Health {
        policy: policy.hash().to_string(),
        ..Health::default()
    }));
    let networks = Networks {
        matrix: matrix.clone(),
        irc: irc.clone(),
    };
    if let Some(addr) = config.metrics_listen {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("cannot listen on {addr} for metrics"))?;
        tracing::info!(%addr, "metrics and health endpoint");
        let handler = endpoint(metrics.clone(), health.clone(), networks.clone());
        tokio::spawn(metrics::serve(listener, handler));
    }
    tokio::spawn(refresh_health(health.clone(), irc.clone()));

    let (control_tx, mut control) = mpsc::unbounded_channel::<Control>();
    let exec = Arc::new(Executor {
        audit: audit.clone(),
        networks,
        metrics: metrics.clone(),
        control: control_tx,
    });
    let mut dispatcher = Dispatcher::new(exec);
    let daemon_place = Place::new("", "");
    let effects = report_interrupted(&audit, &router).await;
    dispatcher.dispatch(
        daemon_place.clone(),
        Job {
            effects,
            case: None,
            scheduled: None,
        },
    );
    tracing::info!(
        pairs = router.routes().pairs.len(),
        policy = %policy.short_hash(),
        startup = ?started.elapsed(),
        "bridgewarden is running"
    );

    let mut watch = tokio::time::interval(WATCH_EVERY);
    let mut schedule = tokio::time::interval(SCHEDULE_EVERY);
    let mut prune = tokio::time::interval(Duration::from_secs(600));
    let mut trim = tokio::time::interval(TRIM_QUIET);
    let mut trimmer = memory::Trimmer::new(TRIM_QUIET, TRIM_AT_MOST, Instant::now());
    // Scheduled undos handed to a worker or waiting to be tried again.
    let mut undos: HashMap<u64, UndoState> = HashMap::new();
    // A change seen but not yet reloaded: editors write in steps, so wait until it settles.
    let mut settling: Option<Fingerprint> = None;
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            ev = events.recv() => {
                let Some(ev) = ev else { break };
                metrics.events.inc(&[("network", &ev.network)]);
                let t = Instant::now();
                trimmer.activity(t);
                let effects = router.handle(&ev);
                metrics.observe_latency(t.elapsed());
                tracing::debug!(network = %ev.network, room = %ev.room, since_sent_ms = now_ms() - ev.ts, routed = ?t.elapsed(), effects = effects.len(), "event");
                let room = Place::new(&ev.network, &ev.room);
                dispatcher.dispatch(room, Job { effects, case: None, scheduled: None });
            }
            Some(c) = control.recv() => match c {
                Control::Reload { by, reply_to } => {
                    let effects = reload(&config, &mut router, &mut watched, &mut seen, &metrics, &health, &by, Some(&reply_to)).await;
                    dispatcher.dispatch(daemon_place.clone(), Job { effects, case: None, scheduled: None });
                }
                Control::ScheduledDone(id) => { undos.remove(&id); }
                Control::ScheduledFailed(id) => {
                    let state = undos.entry(id).or_default();
                    state.attempts += 1;
                    if state.attempts < UNDO_ATTEMPTS {
                        let wait = SCHEDULE_RETRY.saturating_mul(1 << (state.attempts - 1));
                        state.retry_at = Some(now_ms().saturating_add(wait.as_millis() as i64));
                        continue;
                    }
                    // Given up: off the schedule, and the moderators are told (each attempt
                    // is in the audit log with its reason).
                    undos.remove(&id);
                    if let Err(e) = audit.unschedule(id).await {
                        tracing::error!(error = %e, "cannot remove a scheduled undo");
                    }
                    let text = format!("gave up a scheduled undo after {UNDO_ATTEMPTS} failed attempts (schedule #{id}): undo it by hand; the audit log has each attempt's reason");
                    tracing::error!("{text}");
                    dispatcher.dispatch(daemon_place.clone(), Job { effects: router.announce(&text), case: None, scheduled: None });
                }
            },
            _ = sighup.recv() => {
                let effects = reload(&config, &mut router, &mut watched, &mut seen, &metrics, &health, "SIGHUP", None).await;
                dispatcher.dispatch(daemon_place.clone(), Job { effects, case: None, scheduled: None });
            }
            _ = watch.tick() => {
                let now = fingerprint(&watched);
                if now == seen {
                    settling = None;
                } else if settling.as_ref() == Some(&now) {
                    settling = None;
                    let effects = reload(&config, &mut router, &mut watched, &mut seen, &metrics, &health, "file change", None).await;
                    dispatcher.dispatch(daemon_place.clone(), Job { effects, case: None, scheduled: None });
                } else {
                    settling = Some(now);
                }
            }
            _ = schedule.tick() => {
                let now = now_ms();
                let reader = audit.clone();
                let due = match tokio::task::spawn_blocking(move || reader.due(now)).await {
                    Ok(Ok(d)) => d,
                    Ok(Err(e)) => { tracing::error!(error = %e, "cannot read the schedule"); continue; }
                    Err(e) => { tracing::error!(error = %e, "cannot read the schedule"); continue; }
                };
                // Forget the state of undos that left the schedule (cancelled by hand).
                undos.retain(|id, st| (st.dispatched && st.retry_at.is_none()) || due.iter().any(|s| s.id == *id));
                for s in due {
                    // Handed to a worker and not reported back, or waiting for its retry.
                    let state = undos.entry(s.id).or_default();
                    if state.retry_at.is_none_or(|at| at > now) && state.dispatched {
                        continue;
                    }
                    state.dispatched = true;
                    state.retry_at = None;
                    let effects = router.undo(&s);
                    let room = Place::new(&s.network, &s.room);
                    dispatcher.dispatch(room, Job { effects, case: Some(s.case), scheduled: Some(s.id) });
                }
            }
            _ = trim.tick() => {
                if trimmer.due(Instant::now()) {
                    tokio::task::spawn_blocking(memory::release_free_memory);
                }
            }
            _ = prune.tick() => {
                let now = now_ms();
                router.prune(now);
                // Durable strikes the policy no longer counts are forgotten too.
                let cutoff = now.saturating_sub(router.strike_horizon().as_millis() as i64);
                let store = audit.clone();
                match tokio::task::spawn_blocking(move || store.prune_strikes(cutoff)).await {
                    Ok(Ok(n)) if n > 0 => tracing::info!(strikes = n, "forgot strikes that no longer count"),
                    Ok(Err(e)) => tracing::warn!(error = %e, "cannot prune old strikes"),
                    _ => {}
                }
            }
            () = &mut shutdown => {
                tracing::info!("shutting down: finishing in-flight actions");
                break;
            }
        }
    }
    // What the adapters delivered before the signal is still handled; nothing after.
    while let Ok(ev) = events.try_recv() {
        let effects = router.handle(&ev);
        dispatcher.dispatch(
            Place::new(&ev.network, &ev.room),
            Job {
                effects,
                case: None,
                scheduled: None,
            },
        );
    }
    dispatcher.drain(SHUTDOWN_GRACE).await;
    if let Err(e) = audit.flush().await {
        tracing::error!(error = %e, "cannot flush the audit log at shutdown");
    }
    tracing::info!("stopped");
    Ok(())
}

fn policy_load(config: &Config, policy: Option<&Policy>, by: &str, error: Option<String>) -> Entry {
    Entry::PolicyLoad(PolicyLoadRecord {
        file: config.policy.display().to_string(),
        hash: policy.map(|p| p.hash().to_string()),
        by: by.to_string(),
        ok: error.is_none(),
        error,
    })
}

/// Loads the policy again: swapped in whole when it loads, kept as it was when it does not;
/// either way audited and announced (the returned effects). Updates the files to watch and
/// what they looked like before the load, so that an edit made during the load is seen.
#[allow(clippy::too_many_arguments)]
async fn reload(
    config: &Config,
    router: &mut Router,
    watched: &mut Vec<PathBuf>,
    seen: &mut Fingerprint,
    metrics: &Metrics,
    health: &Mutex<Health>,
    by: &str,
    reply_to: Option<&Place>,
) -> Vec<crate::routing::Effect> {
    let before = fingerprint(watched);
    let path = config.policy.clone();
    let (loaded, files) =
        match tokio::task::spawn_blocking(move || crate::policy_files::load_tracked(&path)).await {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(error = %e, "policy reload did not finish");
                return Vec::new();
            }
        };
    let mut now = fingerprint(&files);
    for (file, meta) in &mut now {
        if let Some((_, old)) = before.iter().find(|(f, _)| f == file) {
            *meta = *old;
        }
    }
    *watched = files;
    *seen = now;
    let (record, text) = match loaded {
        Ok(p) => {
            let p = Arc::new(p);
            let text = format!(
                "policy reloaded ({by}): {:?} {} ({}), {} rule(s){}",
                p.name(),
                p.short_hash(),
                p.mode().name(),
                p.rule_ids().count(),
                if p.warnings().is_empty() {
                    String::new()
                } else {
                    format!(", {} warning(s)", p.warnings().len())
                }
            );
            tracing::info!("{text}");
            metrics.policy_reloads.inc(&[("result", "ok")]);
            if let Ok(mut h) = health.lock() {
                h.policy = p.hash().to_string();
            }
            let record = policy_load(config, Some(&p), by, None);
            router.set_policy(p);
            (record, text)
        }
        Err(diags) => {
            let shown: Vec<String> = diags.errors().take(5).map(ToString::to_string).collect();
            let text = format!(
                "policy reload ({by}) failed; still using {}:\n{}",
                router.policy().short_hash(),
                shown.join("\n")
            );
            tracing::error!("{text}");
            metrics.policy_reloads.inc(&[("result", "error")]);
            (policy_load(config, None, by, Some(diags.to_string())), text)
        }
    };
    let mut effects = vec![crate::routing::Effect::Record(record)];
    effects.extend(router.announce(&text));
    if let Some(place) = reply_to {
        if !router.routes().moderation_rooms.contains(place) {
            effects.extend(crate::routing::effect::say(
                place,
                &text,
                place.network != MATRIX,
            ));
        }
    }
    effects
}

/// Where a scheduled undo stands in this run of the daemon.
#[derive(Default)]
struct UndoState {
    /// Handed to a worker (and not reported back, or failed and waiting for `retry_at`).
    dispatched: bool,
    attempts: u32,
    retry_at: Option<i64>,
}

/// Keeps the health snapshot current (adapter state is asked for asynchronously).
async fn refresh_health(health: Arc<Mutex<Health>>, irc: HashMap<String, IrcHandle>) {
    let mut tick = tokio::time::interval(Duration::from_secs(2));
    loop {
        tick.tick().await;
        let mut states = Vec::new();
        for (name, h) in &irc {
            let ok = h.status().await.map(|s| s.registered).unwrap_or(false);
            states.push((name.clone(), ok));
        }
        states.sort();
        if let Ok(mut h) = health.lock() {
            h.irc = states;
        }
    }
}

/// `/metrics` and `/health`.
fn endpoint(
    metrics: Arc<Metrics>,
    health: Arc<Mutex<Health>>,
    networks: Networks,
) -> metrics::Handler {
    Arc::new(move |path: &str| {
        let matrix_ok = networks.matrix.stats.syncing.load(Ordering::Relaxed);
        let (irc, policy) = health
            .lock()
            .map(|h| (h.irc.clone(), h.policy.clone()))
            .unwrap_or_default();
        match path {
            "/metrics" => {
                let mut gauges = vec![
                    Gauge {
                        name: "bridgewarden_matrix_syncing",
                        help: "1 when the last Matrix sync succeeded.",
                        kind: "gauge",
                        labels: vec![],
                        value: f64::from(u8::from(matrix_ok)),
                    },
                    Gauge {
                        name: "bridgewarden_matrix_sync_errors_total",
                        help: "Matrix syncs that failed (each is retried).",
                        kind: "counter",
                        labels: vec![],
                        value: networks.matrix.stats.sync_errors.load(Ordering::Relaxed) as f64,
                    },
                    Gauge {
                        name: "bridgewarden_matrix_gaps_total",
                        help: "Room timelines a Matrix sync returned cut short (events missed after an outage).",
                        kind: "counter",
                        labels: vec![],
                        value: networks.matrix.stats.gaps.load(Ordering::Relaxed) as f64,
                    },
                ];
                for (name, ok) in &irc {
                    gauges.push(Gauge {
                        name: "bridgewarden_irc_connected",
                        help: "1 when registered with the IRC server.",
                        kind: "gauge",
                        labels: vec![("network", name.clone())],
                        value: f64::from(u8::from(*ok)),
                    });
                }
                for (name, h) in &networks.irc {
                    let labels = vec![("network", name.clone())];
                    gauges.push(Gauge {
                        name: "bridgewarden_irc_reconnects_total",
                        help: "IRC reconnections.",
                        kind: "counter",
                        labels: labels.clone(),
                        value: h.stats.reconnects.load(Ordering::Relaxed) as f64,
                    });
                    gauges.push(Gauge {
                        name: "bridgewarden_irc_queue_drops_total",
                        help: "IRC lines dropped because the outbound queue was full.",
                        kind: "counter",
                        labels,
                        value: h.stats.queue_drops.load(Ordering::Relaxed) as f64,
                    });
                }
                Some(Response {
                    ok: true,
                    content_type: "text/plain; version=0.0.4",
                    body: metrics.render(&gauges),
                })
            }
            "/health" => {
                let all_ok = matrix_ok && irc.iter().all(|(_, ok)| *ok);
                let irc_json: serde_json::Map<String, serde_json::Value> = irc
                    .iter()
                    .map(|(n, ok)| (n.clone(), serde_json::Value::Bool(*ok)))
                    .collect();
                let body = serde_json::json!({
                    "status": if all_ok { "ok" } else { "degraded" },
                    "matrix": matrix_ok,
                    "irc": irc_json,
                    "policy": policy,
                });
                Some(Response {
                    ok: all_ok,
                    content_type: "application/json",
                    body: format!("{body}\n"),
                })
            }
            _ => None,
        }
    })
}
