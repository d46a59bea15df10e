//! `bridgewarden audit ...`: reading the audit log, for ops.

use std::fs::File;
use std::io::{self, BufWriter, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context as _};
use clap::{Args, Subcommand};

use crate::audit::{self, AuditLog, Entry, Query, Record};
use crate::policy::Duration as PolicyDuration;

/// Where the audit store is when `--audit-dir` is not given.
pub const DEFAULT_AUDIT_DIR: &str = "/var/lib/bridgewarden/audit";

#[derive(Debug, Args)]
pub struct AuditArgs {
    /// The audit store's directory [default: $BRIDGEWARDEN_AUDIT_DIR, else /var/lib/bridgewarden/audit].
    #[arg(long, global = true, value_name = "DIR")]
    audit_dir: Option<PathBuf>,
    #[command(subcommand)]
    command: AuditCommand,
}

#[derive(Debug, Args, Default)]
struct Filters {
    /// A user's identity (irc:account:alice, @bob:example.org) or nick.
    #[arg(long)]
    user: Option<String>,
    /// An IRC channel or Matrix room.
    #[arg(long)]
    room: Option<String>,
    /// A policy rule id.
    #[arg(long)]
    rule: Option<String>,
    /// An action kind: warn, delete, mute, kick, ban, unmute, unban, escalate...
    #[arg(long)]
    action: Option<String>,
    /// Record type: decision, action, outcome, policy_load, command.
    #[arg(long = "type")]
    kind: Option<String>,
    /// From this time: RFC 3339 (2026-11-26T10:00:00Z), a date (2026-11-26), unix ms, or an
    /// age like 2h or 7d (that long ago).
    #[arg(long)]
    since: Option<String>,
    /// Until this time (same forms as --since).
    #[arg(long)]
    until: Option<String>,
}

#[derive(Debug, Subcommand)]
enum AuditCommand {
    /// List records, newest first, as a table (or JSON Lines with --json).
    List {
        #[command(flatten)]
        filters: Filters,
        /// At most this many records.
        #[arg(long, default_value_t = 50)]
        limit: usize,
        #[arg(long)]
        json: bool,
    },
    /// Show one record, or every record of a case, with details.
    Show {
        /// A record id or a case id.
        id: u64,
        #[arg(long)]
        json: bool,
    },
    /// Export records as JSON Lines (stdout, or --output FILE), oldest first.
    Export {
        #[arg(long, short)]
        output: Option<PathBuf>,
        #[arg(long)]
        since: Option<String>,
        #[arg(long)]
        until: Option<String>,
    },
    /// Count decisions per rule and actions per kind, per day.
    Stats {
        #[arg(long)]
        since: Option<String>,
        #[arg(long)]
        until: Option<String>,
        #[arg(long)]
        json: bool,
    },
}

pub fn run(args: AuditArgs) -> anyhow::Result<ExitCode> {
    let dir = args
        .audit_dir
        .or_else(|| std::env::var_os("BRIDGEWARDEN_AUDIT_DIR").map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from(DEFAULT_AUDIT_DIR));
    let now = audit::now_ms();
    // Check the arguments before touching the store.
    let command = args.command;
    let (since, until) = match &command {
        AuditCommand::List { filters, .. } => times(&filters.since, &filters.until, now)?,
        AuditCommand::Export { since, until, .. } | AuditCommand::Stats { since, until, .. } => {
            times(since, until, now)?
        }
        AuditCommand::Show { .. } => (None, None),
    };
    let log = open(&dir)?;
    let stdout = io::stdout();
    let mut out = BufWriter::new(stdout.lock());
    match command {
        AuditCommand::List {
            filters,
            limit,
            json,
        } => {
            let q = Query {
                user: filters.user,
                room: filters.room,
                rule: filters.rule,
                action: filters.action,
                kind: filters.kind,
                since,
                until,
                limit,
            };
            let mut records = log.query(&q)?;
            if json {
                // The log as written: an action's outcome is its own record.
                for r in &records {
                    writeln!(out, "{}", serde_json::to_string(r)?)?;
                }
            } else {
                log.settle_outcomes(&mut records)?;
                print_table(&mut out, &records)?;
            }
        }
        AuditCommand::Show { id, json } => {
            let Some(record) = log.get(id)? else {
                bail!("no record {id} in {}", dir.display());
            };
            let case = log.by_case(record.case)?;
            if json {
                for r in &case {
                    writeln!(out, "{}", serde_json::to_string(r)?)?;
                }
            } else {
                writeln!(out, "case {} ({} records)\n", record.case, case.len())?;
                for r in &case {
                    let marker = if r.id == id { ">" } else { " " };
                    writeln!(out, "{marker} {}", r.describe())?;
                    for line in details(r) {
                        writeln!(out, "      {line}")?;
                    }
                }
            }
        }
        AuditCommand::Export { output, .. } => {
            let n = export(&log, output.as_deref(), since, until)?;
            eprintln!("exported {n} records");
        }
        AuditCommand::Stats { json, .. } => {
            let s = log.stats(since, until)?;
            if json {
                writeln!(out, "{}", serde_json::to_string_pretty(&s)?)?;
            } else {
                writeln!(
                    out,
                    "{:<10}  {:<8}  {:<28}  {:>7}",
                    "DAY", "WHAT", "NAME", "COUNT"
                )?;
                for (day, d) in &s.days {
                    for (what, map) in [
                        ("rule", &d.rules),
                        ("action", &d.actions),
                        ("failed", &d.failed),
                    ] {
                        for (name, n) in map {
                            writeln!(out, "{day:<10}  {what:<8}  {name:<28}  {n:>7}")?;
                        }
                    }
                }
            }
        }
    }
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

fn open(dir: &Path) -> anyhow::Result<AuditLog> {
    if !dir.join("db").exists() {
        bail!("no audit store in {} (give --audit-dir DIR)", dir.display());
    }
    let mut options = audit::Options::default();
    if let Some(secs) = std::env::var("BRIDGEWARDEN_AUDIT_OPEN_TIMEOUT")
        .ok()
        .and_then(|s| s.parse().ok())
    {
        options.open_timeout = Duration::from_secs(secs);
    }
    Ok(AuditLog::open_with(dir, options)?)
}

/// Parses --since/--until and checks they make a range.
fn times(
    since: &Option<String>,
    until: &Option<String>,
    now: i64,
) -> anyhow::Result<(Option<i64>, Option<i64>)> {
    let since = since
        .as_deref()
        .map(|s| parse_time(s, now).with_context(|| format!("--since {s:?}")))
        .transpose()?;
    let until = until
        .as_deref()
        .map(|s| parse_time(s, now).with_context(|| format!("--until {s:?}")))
        .transpose()?;
    if let (Some(s), Some(u)) = (since, until) {
        if s > u {
            bail!(
                "--since ({}) is after --until ({}): no record can match",
                audit::record_time(s),
                audit::record_time(u)
            );
        }
    }
    Ok((since, until))
}

/// RFC 3339, a date, unix milliseconds, or an age ("7d": seven days ago).
fn parse_time(s: &str, now: i64) -> anyhow::Result<i64> {
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
        return s.parse().context("not a number of milliseconds");
    }
    if let Ok(age) = PolicyDuration::parse(s) {
        return Ok(now - age.as_millis() as i64);
    }
    let text = if s.len() == 10 {
        format!("{s}T00:00:00Z")
    } else {
        s.to_string()
    };
    let t = humantime::parse_rfc3339_weak(&text).map_err(|_| {
        anyhow::anyhow!(
            "write a time as 2026-11-26T10:00:00Z, 2026-11-26, unix ms, or an age like 7d"
        )
    })?;
    let ms = t
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    Ok(ms)
}

fn export(
    log: &AuditLog,
    output: Option<&Path>,
    since: Option<i64>,
    until: Option<i64>,
) -> anyhow::Result<usize> {
    let mut sink: Box<dyn Write> = match output {
        Some(path) => Box::new(BufWriter::new(
            File::create(path).with_context(|| format!("creating {}", path.display()))?,
        )),
        None => Box::new(BufWriter::new(io::stdout().lock())),
    };
    // A progress line on a terminal, for large exports; nothing when piped.
    let show_progress = io::stderr().is_terminal();
    let total = std::cell::Cell::new(0usize);
    let mut done = 0usize;
    let n = log.export(
        since,
        until,
        |t| total.set(t),
        |bytes| {
            let total = total.get();
            sink.write_all(bytes)?;
            sink.write_all(b"\n")?;
            done += 1;
            if show_progress && (done.is_multiple_of(10_000) || done == total) {
                let pct = (done * 100).checked_div(total).unwrap_or(100);
                eprint!("\rexporting: {done}/{total} records ({pct}%)");
                if done == total {
                    eprintln!();
                }
            }
            Ok(())
        },
    )?;
    sink.flush()?;
    Ok(n)
}

fn print_table(out: &mut impl Write, records: &[Record]) -> io::Result<()> {
    writeln!(
        out,
        "{:>8}  {:<20}  {:<11}  {:<16}  {:<24}  DETAIL",
        "ID", "TIME (UTC)", "TYPE", "ROOM", "USER"
    )?;
    for r in records {
        let user = r
            .entry
            .users()
            .first()
            .map(|w| w.name.clone())
            .unwrap_or_default();
        writeln!(
            out,
            "{:>8}  {:<20}  {:<11}  {:<16}  {:<24}  {}",
            r.id,
            audit::record_time(r.ts),
            r.entry.kind(),
            cut(r.entry.room().unwrap_or("-"), 16),
            cut(&user, 24),
            r.entry.summary()
        )?;
    }
    Ok(())
}

fn cut(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        format!("{}…", s.chars().take(n - 1).collect::<String>())
    }
}

fn details(r: &Record) -> Vec<String> {
    match &r.entry {
        Entry::Decision(d) => {
            let mut v = vec![
                format!("text: {:?}", d.text),
                format!(
                    "sender: {} ({} on {})",
                    d.sender.name, d.sender.identity, d.sender.network
                ),
                format!(
                    "policy: {} ({}), strikes now {}",
                    d.policy, d.mode, d.strikes
                ),
            ];
            if let Some(matches) = d.matches.as_array() {
                for m in matches {
                    v.push(format!("evidence: {m}"));
                }
            }
            v
        }
        Entry::Action(a) => {
            let mut v = vec![format!("target: {} ({})", a.target.name, a.target.identity)];
            if let Some(reason) = &a.reason {
                v.push(format!("reason: {reason}"));
            }
            if let Some(m) = &a.message {
                v.push(format!("message: {m}"));
            }
            v
        }
        _ => vec![],
    }
}
