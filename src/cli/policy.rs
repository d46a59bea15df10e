//! `bridgewarden policy ...`: the policy CLI contract of docs/policy.md.

use std::io::{self, BufRead, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use clap::Subcommand;

use crate::policy::{explain, Event, EventInput, EventKind, Network, Policy, State};
use crate::policy_files;

/// Input lines longer than this are answered with an error and skipped.
const MAX_EVENT_LINE: usize = 1 << 20;

#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Validate policy files: every problem as FILE:LINE:COL on stderr; exit 1 on errors.
    Check {
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Treat warnings as errors.
        #[arg(long)]
        strict: bool,
    },
    /// Run the [[test]] cases of policy files; one line per failure; exit 1 if any fail.
    Test {
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Read events as JSON Lines on stdin, write one decision per event as JSON Lines.
    Eval { file: PathBuf },
    /// Explain, for people, what the policy decides about one message and why.
    Explain {
        file: PathBuf,
        #[arg(long)]
        body: String,
        #[arg(long, default_value = "irc", value_parser = parse_network)]
        network: Network,
        #[arg(long, default_value = "#test")]
        room: String,
        #[arg(long, default_value = "someone")]
        sender: String,
        /// message, edit, join or nick.
        #[arg(long, default_value = "message", value_parser = parse_kind)]
        kind: EventKind,
        /// The sender's IRC services account.
        #[arg(long)]
        account: Option<String>,
        /// The sender's Matrix power level.
        #[arg(long)]
        power_level: Option<i64>,
        /// The sender's IRC channel modes, e.g. "o".
        #[arg(long, default_value = "")]
        irc_modes: String,
    },
    /// Print the JSON Schema of policy files (for taplo / Even Better TOML).
    Schema,
}

fn parse_network(s: &str) -> Result<Network, String> {
    Network::parse(s).ok_or_else(|| "use irc or matrix".to_string())
}

fn parse_kind(s: &str) -> Result<EventKind, String> {
    EventKind::parse(s).ok_or_else(|| "use message, edit, join or nick".to_string())
}

pub fn run(cmd: PolicyCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        PolicyCommand::Check { files, strict } => Ok(check(&files, strict)),
        PolicyCommand::Test { files } => Ok(test(&files)),
        PolicyCommand::Eval { file } => eval(&file),
        PolicyCommand::Explain {
            file,
            body,
            network,
            room,
            sender,
            kind,
            account,
            power_level,
            irc_modes,
        } => {
            let Some(policy) = load_or_report(&file) else {
                return Ok(ExitCode::FAILURE);
            };
            let mut event = Event::message(network, &room, &sender, &body, now_ms());
            event.kind = kind;
            event.account = account;
            event.power_level = power_level;
            event.irc_modes = irc_modes;
            print!("{}", explain::explain(&policy, &event, &mut State::new()));
            Ok(ExitCode::SUCCESS)
        }
        PolicyCommand::Schema => {
            let schema = schemars::schema_for!(crate::policy::raw::RawPolicy);
            println!("{}", serde_json::to_string_pretty(&schema)?);
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Loads a policy, printing its diagnostics (warnings too) on stderr.
pub(super) fn load_or_report(file: &std::path::Path) -> Option<Policy> {
    match policy_files::load(file) {
        Ok(p) => {
            for w in p.warnings() {
                eprintln!("{w}");
            }
            Some(p)
        }
        Err(diags) => {
            eprintln!("{diags}");
            None
        }
    }
}

fn check(files: &[PathBuf], strict: bool) -> ExitCode {
    let mut failed = false;
    for file in files {
        match load_or_report(file) {
            Some(p) => failed |= strict && !p.warnings().is_empty(),
            None => failed = true,
        }
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

fn test(files: &[PathBuf]) -> ExitCode {
    let (mut passed, mut failed, mut broken) = (0, 0, 0);
    for file in files {
        let Some(policy) = load_or_report(file) else {
            broken += 1;
            continue;
        };
        for r in policy.run_tests() {
            if r.passed() {
                passed += 1;
            } else {
                failed += 1;
                println!("FAIL {}: {}: {}", r.location, r.name, r.failures.join("; "));
            }
        }
    }
    println!(
        "{passed} passed, {failed} failed{}",
        if broken > 0 {
            format!(", {broken} files did not load")
        } else {
            String::new()
        }
    );
    if failed > 0 || broken > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

fn eval(file: &std::path::Path) -> anyhow::Result<ExitCode> {
    let Some(policy) = load_or_report(file) else {
        return Ok(ExitCode::FAILURE);
    };
    let stdin = io::stdin();
    let mut input = stdin.lock();
    let stdout = io::stdout();
    let mut out = io::BufWriter::new(stdout.lock());
    let mut state = State::new();
    let mut prev_ts = None;
    let mut line_no = 0;
    let mut buf = Vec::new();
    loop {
        let (complete, too_long) =
            read_line_capped(&mut input, &mut buf).context("reading stdin")?;
        if !complete && buf.is_empty() && !too_long {
            break;
        }
        line_no += 1;
        let reply = if too_long {
            error_json(line_no, &format!("line longer than {MAX_EVENT_LINE} bytes"))
        } else {
            match std::str::from_utf8(&buf) {
                Err(_) => error_json(line_no, "line is not valid UTF-8"),
                Ok(text) if text.trim().is_empty() => String::new(),
                Ok(text) => match serde_json::from_str::<EventInput>(text) {
                    Err(e) => error_json(line_no, &e.to_string()),
                    Ok(input) => match input.into_event(prev_ts, now_ms()) {
                        Err(e) => error_json(line_no, &e),
                        Ok(event) => {
                            prev_ts = Some(event.ts);
                            serde_json::to_string(&policy.evaluate(&event, &mut state))?
                        }
                    },
                },
            }
        };
        if !reply.is_empty() {
            writeln!(out, "{reply}")?;
            out.flush()?;
        }
        if !complete {
            break;
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn error_json(line: usize, message: &str) -> String {
    serde_json::json!({ "error": message, "line": line }).to_string()
}

/// Reads one line into `buf` (without the newline), keeping at most `MAX_EVENT_LINE` bytes.
/// Returns (a newline ended the line, the line was too long).
fn read_line_capped(input: &mut impl BufRead, buf: &mut Vec<u8>) -> io::Result<(bool, bool)> {
    buf.clear();
    let mut too_long = false;
    loop {
        let chunk = input.fill_buf()?;
        if chunk.is_empty() {
            return Ok((false, too_long));
        }
        let (part, found) = match chunk.iter().position(|b| *b == b'\n') {
            Some(i) => (&chunk[..i], true),
            None => (chunk, false),
        };
        if buf.len() + part.len() > MAX_EVENT_LINE {
            too_long = true;
            buf.clear();
        } else if !too_long {
            buf.extend_from_slice(part);
        }
        let used = part.len() + usize::from(found);
        input.consume(used);
        if found {
            if buf.last() == Some(&b'\r') {
                buf.pop();
            }
            return Ok((true, too_long));
        }
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}
