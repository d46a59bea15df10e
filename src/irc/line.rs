//! IRC protocol lines: parsing what the server sends, building what we send.
//!
//! A line is `[@tags] [:source] COMMAND params... [:trailing]`. Tags are IRCv3 message tags
//! (escaped values unescaped here). Building a line takes parameters that must already be
//! safe (our own, or text through `codec::sanitize`): [`Line::build`] refuses CR, LF and NUL
//! anywhere as a last line of defence, so no code path can put two commands on the wire.

use std::fmt;

/// Where a line came from: a server name, or `nick!user@host`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    pub nick: String,
    pub user: Option<String>,
    pub host: Option<String>,
}

impl Source {
    fn parse(s: &str) -> Source {
        let (nick, rest) = s.split_once('!').map_or((s, None), |(n, r)| (n, Some(r)));
        let (user, host) = match rest {
            Some(r) => match r.split_once('@') {
                Some((u, h)) => (Some(u.to_string()), Some(h.to_string())),
                None => (Some(r.to_string()), None),
            },
            None => match nick.split_once('@') {
                Some((_, h)) => (None, Some(h.to_string())),
                None => (None, None),
            },
        };
        let nick = nick.split('@').next().unwrap_or(nick).to_string();
        Source { nick, user, host }
    }
}

/// One parsed line from the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    pub tags: Vec<(String, String)>,
    pub source: Option<Source>,
    /// Upper-cased command or three-digit numeric.
    pub command: String,
    pub params: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LineError {
    #[error("empty line")]
    Empty,
    #[error("line has no command")]
    NoCommand,
    #[error("line contains CR, LF or NUL")]
    Forbidden,
}

impl Line {
    /// Parses one line (without its CRLF).
    pub fn parse(text: &str) -> Result<Line, LineError> {
        let mut rest = text.trim_end_matches(['\r', '\n']);
        if rest.trim().is_empty() {
            return Err(LineError::Empty);
        }
        let mut tags = Vec::new();
        if let Some(t) = rest.strip_prefix('@') {
            let (raw, after) = t.split_once(' ').unwrap_or((t, ""));
            for tag in raw.split(';').filter(|t| !t.is_empty()) {
                let (k, v) = tag.split_once('=').unwrap_or((tag, ""));
                tags.push((k.to_string(), unescape_tag(v)));
            }
            rest = after.trim_start_matches(' ');
        }
        let mut source = None;
        if let Some(s) = rest.strip_prefix(':') {
            let (src, after) = s.split_once(' ').unwrap_or((s, ""));
            source = Some(Source::parse(src));
            rest = after.trim_start_matches(' ');
        }
        let (command, mut rest) = rest.split_once(' ').unwrap_or((rest, ""));
        if command.is_empty() {
            return Err(LineError::NoCommand);
        }
        let mut params = Vec::new();
        loop {
            rest = rest.trim_start_matches(' ');
            if rest.is_empty() {
                break;
            }
            if let Some(trailing) = rest.strip_prefix(':') {
                params.push(trailing.to_string());
                break;
            }
            let (p, after) = rest.split_once(' ').unwrap_or((rest, ""));
            params.push(p.to_string());
            rest = after;
        }
        Ok(Line {
            tags,
            source,
            command: command.to_ascii_uppercase(),
            params,
        })
    }

    /// The value of a tag, if present.
    pub fn tag(&self, key: &str) -> Option<&str> {
        self.tags
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    pub fn nick(&self) -> Option<&str> {
        self.source.as_ref().map(|s| s.nick.as_str())
    }

    pub fn param(&self, i: usize) -> Option<&str> {
        self.params.get(i).map(String::as_str)
    }

    /// Builds `COMMAND params...` with the last parameter as trailing where needed. Fails on
    /// CR, LF or NUL anywhere, on empty middle parameters, and on spaces in middle parameters.
    pub fn build(command: &str, params: &[&str]) -> Result<String, LineError> {
        let mut out = String::with_capacity(64);
        out.push_str(command);
        for (i, p) in params.iter().enumerate() {
            if p.contains(['\r', '\n', '\0']) {
                return Err(LineError::Forbidden);
            }
            out.push(' ');
            let last = i + 1 == params.len();
            if last && (p.is_empty() || p.contains(' ') || p.starts_with(':')) {
                out.push(':');
            } else if !last && (p.is_empty() || p.contains(' ') || p.starts_with(':')) {
                return Err(LineError::Forbidden);
            }
            out.push_str(p);
        }
        Ok(out)
    }
}

impl fmt::Display for Line {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(s) = &self.source {
            write!(f, ":{}", s.nick)?;
            if let Some(u) = &s.user {
                write!(f, "!{u}")?;
            }
            if let Some(h) = &s.host {
                write!(f, "@{h}")?;
            }
            f.write_str(" ")?;
        }
        f.write_str(&self.command)?;
        for (i, p) in self.params.iter().enumerate() {
            if i + 1 == self.params.len() {
                write!(f, " :{p}")?;
            } else {
                write!(f, " {p}")?;
            }
        }
        Ok(())
    }
}

fn unescape_tag(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    let mut chars = v.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some(':') => out.push(';'),
            Some('s') => out.push(' '),
            Some('\\') => out.push('\\'),
            Some('r') => out.push('\r'),
            Some('n') => out.push('\n'),
            Some(other) => out.push(other),
            None => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_tags_source_command_params() {
        let l = Line::parse("@time=2026-11-26T10:00:00.000Z;account=alice;x=a\\sb\\:c :alice!al@host.example PRIVMSG #chat :hello world").unwrap();
        assert_eq!(l.tag("account"), Some("alice"));
        assert_eq!(l.tag("x"), Some("a b;c"));
        assert_eq!(
            l.source,
            Some(Source {
                nick: "alice".into(),
                user: Some("al".into()),
                host: Some("host.example".into())
            })
        );
        assert_eq!(l.command, "PRIVMSG");
        assert_eq!(l.params, ["#chat", "hello world"]);
    }

    #[test]
    fn parses_numerics_servers_and_edge_cases() {
        let l =
            Line::parse(":irc.localhost 005 bw CASEMAPPING=rfc1459 PREFIX=(ov)@+ :are supported")
                .unwrap();
        assert_eq!(l.nick(), Some("irc.localhost"));
        assert_eq!(l.params.len(), 4);
        assert_eq!(Line::parse("PING :abc").unwrap().params, ["abc"]);
        assert_eq!(Line::parse("AUTHENTICATE +").unwrap().params, ["+"]);
        assert_eq!(Line::parse("AUTHENTICATE :+").unwrap().params, ["+"]);
        assert_eq!(
            Line::parse("privmsg  #a   b  :").unwrap().params,
            ["#a", "b", ""]
        );
        assert_eq!(Line::parse(""), Err(LineError::Empty));
        assert_eq!(Line::parse("@a=b "), Err(LineError::NoCommand));
        assert_eq!(Line::parse(":nick").unwrap_err(), LineError::NoCommand);
    }

    #[test]
    fn builds_safe_lines_only() {
        assert_eq!(
            Line::build("PRIVMSG", &["#c", "hi there"]).unwrap(),
            "PRIVMSG #c :hi there"
        );
        assert_eq!(Line::build("JOIN", &["#c"]).unwrap(), "JOIN #c");
        assert_eq!(
            Line::build("PRIVMSG", &["#c", ":)"]).unwrap(),
            "PRIVMSG #c ::)"
        );
        assert_eq!(Line::build("PRIVMSG", &["#c", ""]).unwrap(), "PRIVMSG #c :");
        assert_eq!(
            Line::build("PRIVMSG", &["#c", "a\r\nQUIT"]),
            Err(LineError::Forbidden)
        );
        assert_eq!(
            Line::build("KICK", &["#c x", "y"]),
            Err(LineError::Forbidden)
        );
    }

    #[test]
    fn display_round_trips() {
        let text = ":n!u@h PRIVMSG #c :hi there";
        assert_eq!(Line::parse(text).unwrap().to_string(), text);
    }

    proptest::proptest! {
        /// Whatever a server sends, parsing returns a line or an error, never a panic.
        #[test]
        fn parse_never_panics(text in "\\PC{0,200}|[@:;= !a-z\\\\]{0,80}") {
            let _ = Line::parse(&text);
        }

        /// A line we build parses back to the command and parameters we gave.
        #[test]
        fn built_lines_parse_back(
            middle in proptest::collection::vec("[#a-zA-Z0-9][^ \\r\\n\\x00]{0,12}", 0..4),
            trailing in "[^\\r\\n\\x00]{0,60}",
        ) {
            let mut params: Vec<&str> = middle.iter().map(String::as_str).collect();
            params.push(&trailing);
            let built = Line::build("PRIVMSG", &params).unwrap();
            let line = Line::parse(&built).unwrap();
            proptest::prop_assert_eq!(line.command.as_str(), "PRIVMSG");
            proptest::prop_assert_eq!(line.params, params);
        }
    }
}
