//! Moderator commands typed in a room (`!mute alice 10m spamming`), parsed with clap from the
//! chat line so that `!help`, `!mute --help` and usage errors read like the CLI.
//!
//! Pure: a line in, a [`Parsed`] out. Who may run a command and what it does are the routing
//! core's business; this module must not know networks, rooms or the audit log.

use clap::{ColorChoice, CommandFactory, FromArgMatches, Parser, Subcommand};

use crate::policy::Duration;

/// A command, checked and typed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModeratorCommand {
    Warn {
        user: String,
        message: String,
    },
    Mute {
        user: String,
        duration: Option<Duration>,
        reason: Option<String>,
    },
    Unmute {
        user: String,
    },
    Kick {
        user: String,
        reason: Option<String>,
    },
    Ban {
        user: String,
        duration: Option<Duration>,
        reason: Option<String>,
    },
    Unban {
        user: String,
    },
    StrikesShow {
        user: String,
    },
    StrikesClear {
        user: String,
    },
    Audit {
        user: String,
        limit: usize,
    },
    /// Explain the last decision about a user, or (no user) about the message replied to.
    Why {
        user: Option<String>,
    },
    PolicyStatus,
    PolicyReload,
    PolicyTest {
        text: String,
    },
}

impl ModeratorCommand {
    /// The user the command is about, if any.
    pub fn user(&self) -> Option<&str> {
        use ModeratorCommand::*;
        match self {
            Warn { user, .. }
            | Mute { user, .. }
            | Unmute { user }
            | Kick { user, .. }
            | Ban { user, .. }
            | Unban { user }
            | StrikesShow { user }
            | StrikesClear { user }
            | Audit { user, .. } => Some(user),
            Why { user } => user.as_deref(),
            PolicyStatus | PolicyReload | PolicyTest { .. } => None,
        }
    }
}

/// What a chat line is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed {
    /// Ordinary chat: relay and evaluate it.
    NotACommand,
    Command(ModeratorCommand),
    /// `!help`, `!cmd --help`, or a usage error: the text to answer with.
    Reply(String),
}

/// Parses `line` if it starts with `prefix` followed by a command name; anything else (`!!!`,
/// `!lol`) is ordinary chat.
pub fn parse(prefix: &str, line: &str) -> Parsed {
    let Some(rest) = line.trim().strip_prefix(prefix) else {
        return Parsed::NotACommand;
    };
    let first = rest.split_whitespace().next().unwrap_or_default();
    let known = Line::command()
        .get_subcommands()
        .any(|c| c.get_name() == first)
        || first == "help";
    if !known || rest.starts_with(char::is_whitespace) {
        return Parsed::NotACommand;
    }
    let words = match split_words(rest) {
        Ok(w) => w,
        Err(e) => return Parsed::Reply(format!("error: {e}")),
    };
    let cmd = Line::command()
        .no_binary_name(true)
        .bin_name(prefix.to_string())
        .name(prefix.to_string())
        .color(ColorChoice::Never)
        .term_width(100);
    // clap writes "Usage: ! mute"; in chat the command is typed "!mute".
    let usage = |e: clap::Error| {
        let text = e.render().to_string();
        Parsed::Reply(
            text.trim_end()
                .replace(&format!("Usage: {prefix} "), &format!("Usage: {prefix}")),
        )
    };
    let matches = match cmd.try_get_matches_from(words) {
        Ok(m) => m,
        Err(e) => return usage(e),
    };
    match Line::from_arg_matches(&matches) {
        Ok(line) => match line.command.typed() {
            Ok(c) => Parsed::Command(c),
            Err(e) => Parsed::Reply(format!("error: {e}")),
        },
        Err(e) => usage(e),
    }
}

/// Splits a chat line into words: whitespace separates, "double" or 'single' quotes group, a
/// backslash escapes the next character inside double quotes and outside quotes.
pub fn split_words(text: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        match c {
            '"' | '\'' => {
                in_word = true;
                let quote = c;
                loop {
                    match chars.next() {
                        Some(q) if q == quote => break,
                        Some('\\') if quote == '"' => match chars.next() {
                            Some(e) => word.push(e),
                            None => return Err("unfinished escape at the end".into()),
                        },
                        Some(other) => word.push(other),
                        None => return Err(format!("unbalanced {quote} quote")),
                    }
                }
            }
            '\\' => match chars.next() {
                Some(e) => {
                    in_word = true;
                    word.push(e);
                }
                None => return Err("unfinished escape at the end".into()),
            },
            c if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            c => {
                in_word = true;
                word.push(c);
            }
        }
    }
    if in_word {
        words.push(word);
    }
    Ok(words)
}

/// Moderator commands. A user is an IRC nick, or a Matrix user id (`@name:server`).
#[derive(Debug, Parser)]
#[command(disable_version_flag = true)]
struct Line {
    #[command(subcommand)]
    command: Raw,
}

#[derive(Debug, Subcommand)]
enum Raw {
    /// Warn a user: a notice to them, recorded in the audit log
    Warn {
        user: String,
        /// What to tell them
        #[arg(required = true, num_args = 1..)]
        message: Vec<String>,
    },
    /// Mute a user, for a while (10m, 2h, 7d) or until unmuted
    Mute {
        user: String,
        /// [DURATION] [REASON...]
        #[arg(value_name = "DURATION|REASON")]
        rest: Vec<String>,
    },
    /// Undo a mute
    Unmute { user: String },
    /// Kick a user from the room
    Kick {
        user: String,
        /// Why (shown to them)
        reason: Vec<String>,
    },
    /// Ban a user, for a while (1d, 2w) or until unbanned
    Ban {
        user: String,
        /// [DURATION] [REASON...]
        #[arg(value_name = "DURATION|REASON")]
        rest: Vec<String>,
    },
    /// Undo a ban
    Unban { user: String },
    /// Show or clear a user's strikes
    Strikes {
        #[command(subcommand)]
        action: StrikesAction,
    },
    /// A user's recent audit records
    Audit {
        user: String,
        /// How many records
        #[arg(short = 'n', long, default_value_t = 5, value_parser = clap::value_parser!(u16).range(1..=50))]
        limit: u16,
    },
    /// Why the bot acted: the last decision about a user (or, as a reply, about that message)
    Why { user: Option<String> },
    /// The policy: status, reload, or test a text against it
    Policy {
        #[command(subcommand)]
        action: PolicyAction,
    },
}

#[derive(Debug, Subcommand)]
enum StrikesAction {
    /// A user's live strikes
    Show { user: String },
    /// Forget a user's strikes
    Clear { user: String },
}

#[derive(Debug, Subcommand)]
enum PolicyAction {
    /// Which policy is loaded
    Status,
    /// Load the policy file again (kept as is if the new one has errors)
    Reload,
    /// What the policy would decide about a message
    Test {
        #[arg(required = true, num_args = 1..)]
        text: Vec<String>,
    },
}

/// `[DURATION] [REASON...]`: a first word that reads as a duration is one.
fn duration_and_reason(rest: Vec<String>) -> (Option<Duration>, Option<String>) {
    let mut words = rest.into_iter().peekable();
    let duration = match words.peek().map(|w| Duration::parse(w)) {
        Some(Ok(d)) => {
            words.next();
            Some(d)
        }
        _ => None,
    };
    (duration, joined(words.collect()))
}

fn joined(words: Vec<String>) -> Option<String> {
    let text = words.join(" ");
    (!text.trim().is_empty()).then_some(text)
}

impl Raw {
    fn typed(self) -> Result<ModeratorCommand, String> {
        use ModeratorCommand as M;
        let cmd = match self {
            Raw::Warn { user, message } => M::Warn {
                user,
                message: message.join(" "),
            },
            Raw::Mute { user, rest } => {
                let (duration, reason) = duration_and_reason(rest);
                M::Mute {
                    user,
                    duration,
                    reason,
                }
            }
            Raw::Unmute { user } => M::Unmute { user },
            Raw::Kick { user, reason } => M::Kick {
                user,
                reason: joined(reason),
            },
            Raw::Ban { user, rest } => {
                let (duration, reason) = duration_and_reason(rest);
                M::Ban {
                    user,
                    duration,
                    reason,
                }
            }
            Raw::Unban { user } => M::Unban { user },
            Raw::Strikes { action } => match action {
                StrikesAction::Show { user } => M::StrikesShow { user },
                StrikesAction::Clear { user } => M::StrikesClear { user },
            },
            Raw::Audit { user, limit } => M::Audit {
                user,
                limit: limit.into(),
            },
            Raw::Why { user } => M::Why { user },
            Raw::Policy { action } => match action {
                PolicyAction::Status => M::PolicyStatus,
                PolicyAction::Reload => M::PolicyReload,
                PolicyAction::Test { text } => M::PolicyTest {
                    text: text.join(" "),
                },
            },
        };
        if let Some(user) = cmd.user() {
            if user.is_empty() || user.contains(|c: char| c.is_whitespace() || c.is_control()) {
                return Err(format!("{user:?} is not a nick or Matrix user id"));
            }
        }
        Ok(cmd)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ModeratorCommand as M;

    fn dur(s: &str) -> Option<Duration> {
        Some(Duration::parse(s).unwrap())
    }

    #[track_caller]
    fn command(line: &str) -> ModeratorCommand {
        match parse("!", line) {
            Parsed::Command(c) => c,
            other => panic!("{line:?}: {other:?}"),
        }
    }

    #[track_caller]
    fn reply(line: &str) -> String {
        match parse("!", line) {
            Parsed::Reply(r) => r,
            other => panic!("{line:?}: {other:?}"),
        }
    }

    #[test]
    fn commands_parse_into_typed_values() {
        let cases: Vec<(&str, ModeratorCommand)> = vec![
            (
                "!warn bob stop that",
                M::Warn {
                    user: "bob".into(),
                    message: "stop that".into(),
                },
            ),
            (
                "!mute bob",
                M::Mute {
                    user: "bob".into(),
                    duration: None,
                    reason: None,
                },
            ),
            (
                "!mute bob 10m",
                M::Mute {
                    user: "bob".into(),
                    duration: dur("10m"),
                    reason: None,
                },
            ),
            (
                "!mute bob 1h30m flooding the channel",
                M::Mute {
                    user: "bob".into(),
                    duration: dur("1h30m"),
                    reason: Some("flooding the channel".into()),
                },
            ),
            (
                "!mute bob spamming links",
                M::Mute {
                    user: "bob".into(),
                    duration: None,
                    reason: Some("spamming links".into()),
                },
            ),
            (
                "!unmute @bob:example.org",
                M::Unmute {
                    user: "@bob:example.org".into(),
                },
            ),
            (
                "!kick bob",
                M::Kick {
                    user: "bob".into(),
                    reason: None,
                },
            ),
            (
                "!kick bob \"go away\" now",
                M::Kick {
                    user: "bob".into(),
                    reason: Some("go away now".into()),
                },
            ),
            (
                "!ban bob 7d",
                M::Ban {
                    user: "bob".into(),
                    duration: dur("7d"),
                    reason: None,
                },
            ),
            ("!unban bob", M::Unban { user: "bob".into() }),
            ("!strikes show bob", M::StrikesShow { user: "bob".into() }),
            ("!strikes clear bob", M::StrikesClear { user: "bob".into() }),
            (
                "!audit bob",
                M::Audit {
                    user: "bob".into(),
                    limit: 5,
                },
            ),
            (
                "!audit bob -n 20",
                M::Audit {
                    user: "bob".into(),
                    limit: 20,
                },
            ),
            ("!why", M::Why { user: None }),
            (
                "!why bob",
                M::Why {
                    user: Some("bob".into()),
                },
            ),
            ("!policy status", M::PolicyStatus),
            ("!policy reload", M::PolicyReload),
            (
                "!policy test you are an 1d10t",
                M::PolicyTest {
                    text: "you are an 1d10t".into(),
                },
            ),
            (
                "!policy test 'quoted  spaces'",
                M::PolicyTest {
                    text: "quoted  spaces".into(),
                },
            ),
            (
                "  !kick   bob   ",
                M::Kick {
                    user: "bob".into(),
                    reason: None,
                },
            ),
            (
                "!warn привет ты здесь",
                M::Warn {
                    user: "привет".into(),
                    message: "ты здесь".into(),
                },
            ),
        ];
        for (line, expected) in cases {
            assert_eq!(command(line), expected, "{line}");
        }
    }

    #[test]
    fn ordinary_chat_is_not_a_command() {
        for line in [
            "hello",
            "!!!",
            "!lol",
            "! kick bob",
            "!kickbob",
            "",
            "!",
            "kick bob",
            "!Kick bob",
        ] {
            assert_eq!(parse("!", line), Parsed::NotACommand, "{line:?}");
        }
        assert_eq!(parse("~", "!kick bob"), Parsed::NotACommand);
        assert!(matches!(parse("~", "~kick bob"), Parsed::Command(_)));
    }

    #[test]
    fn help_and_usage_errors_are_replies() {
        let help = reply("!help");
        for name in [
            "warn", "mute", "unmute", "kick", "ban", "unban", "strikes", "audit", "why", "policy",
        ] {
            assert!(help.contains(name), "{name} missing from:\n{help}");
        }
        assert!(help.contains("Usage: !<COMMAND>"), "{help}");
        assert!(
            reply("!mute").contains("Usage: !mute <USER>"),
            "{}",
            reply("!mute")
        );
        assert!(reply("!mute --help").contains("DURATION"));
        assert!(reply("!help ban").contains("Ban a user"));
        assert!(reply("!kick").contains("required"), "{}", reply("!kick"));
        assert!(reply("!strikes").contains("Usage"));
        assert!(reply("!audit bob -n 0").contains("0"));
        assert!(reply("!audit bob --frobnicate").contains("unexpected argument"));
        assert!(reply("!warn \"bob").contains("unbalanced"));
        assert!(
            !reply("!help").contains('\x1b'),
            "no terminal colours in chat"
        );
    }

    #[test]
    fn words_split_like_a_shell() {
        let ok: &[(&str, &[&str])] = &[
            ("a b  c", &["a", "b", "c"]),
            ("\"a b\" c", &["a b", "c"]),
            ("'a \"b\"' c", &["a \"b\"", "c"]),
            ("a\\ b", &["a b"]),
            ("\"\"", &[""]),
            ("x\"y z\"w", &["xy zw"]),
            ("\"say \\\"hi\\\"\"", &["say \"hi\""]),
        ];
        for (text, words) in ok {
            assert_eq!(split_words(text).unwrap(), *words, "{text:?}");
        }
        for bad in ["\"open", "'open", "end\\"] {
            assert!(split_words(bad).is_err(), "{bad:?}");
        }
    }

    proptest::proptest! {
        /// No line, however hostile, panics the parser.
        #[test]
        fn parsing_never_panics(line in "!\\PC{0,80}|![a-z]{1,8}( [\"'\\\\a-z0-9-]{0,6}){0,6}") {
            let _ = parse("!", &line);
        }

        /// Quoting any word keeps it whole.
        #[test]
        fn quoted_words_survive(words in proptest::collection::vec("[^\"\\\\]{0,10}", 0..6)) {
            let line: Vec<String> = words.iter().map(|w| format!("\"{w}\"")).collect();
            proptest::prop_assert_eq!(split_words(&line.join(" ")).unwrap(), words);
        }
    }
}
