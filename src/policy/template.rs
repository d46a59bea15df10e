//! Message templates: `"{sender}: {description}"`.
//!
//! Parsed and checked at load time, so an unknown placeholder is a policy error rather than
//! a literal `{typo}` in a room. `{{` and `}}` write literal braces. Must not format anything
//! else than the placeholders below.

use std::fmt::Write;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Var {
    Sender,
    Room,
    Rule,
    Description,
    Strikes,
    Network,
}

const VARS: [(&str, Var); 6] = [
    ("sender", Var::Sender),
    ("room", Var::Room),
    ("rule", Var::Rule),
    ("description", Var::Description),
    ("strikes", Var::Strikes),
    ("network", Var::Network),
];

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Text(String),
    Var(Var),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template(Vec<Part>);

/// The values a template is rendered with.
pub struct Values<'a> {
    pub sender: &'a str,
    pub room: &'a str,
    pub rule: &'a str,
    pub description: &'a str,
    pub strikes: f64,
    pub network: &'a str,
}

impl Template {
    /// Parses a template; the error carries the byte offset of the problem in `text`.
    pub fn parse(text: &str) -> Result<Self, (usize, String)> {
        let mut parts = Vec::new();
        let mut lit = String::new();
        let mut chars = text.char_indices().peekable();
        while let Some((i, c)) = chars.next() {
            match c {
                '{' if chars.peek().is_some_and(|(_, n)| *n == '{') => {
                    chars.next();
                    lit.push('{');
                }
                '}' if chars.peek().is_some_and(|(_, n)| *n == '}') => {
                    chars.next();
                    lit.push('}');
                }
                '{' => {
                    let rest = &text[i + 1..];
                    let Some(close) = rest.find('}') else {
                        return Err((i, "unclosed '{' in template; write '{{' for a brace".into()));
                    };
                    let name = &rest[..close];
                    let Some((_, var)) = VARS.iter().find(|(n, _)| *n == name) else {
                        let known: Vec<_> = VARS.iter().map(|(n, _)| format!("{{{n}}}")).collect();
                        return Err((
                            i,
                            format!(
                                "unknown placeholder {{{name}}} in template; known: {}",
                                known.join(", ")
                            ),
                        ));
                    };
                    if !lit.is_empty() {
                        parts.push(Part::Text(std::mem::take(&mut lit)));
                    }
                    parts.push(Part::Var(*var));
                    for _ in 0..name.chars().count() + 1 {
                        chars.next();
                    }
                }
                '}' => return Err((i, "lone '}' in template; write '}}' for a brace".into())),
                _ => lit.push(c),
            }
        }
        if !lit.is_empty() {
            parts.push(Part::Text(lit));
        }
        Ok(Template(parts))
    }

    pub fn render(&self, v: &Values<'_>) -> String {
        let mut out = String::new();
        for part in &self.0 {
            match part {
                Part::Text(t) => out.push_str(t),
                Part::Var(Var::Sender) => out.push_str(v.sender),
                Part::Var(Var::Room) => out.push_str(v.room),
                Part::Var(Var::Rule) => out.push_str(v.rule),
                Part::Var(Var::Description) => out.push_str(v.description),
                Part::Var(Var::Network) => out.push_str(v.network),
                Part::Var(Var::Strikes) => {
                    let _ = write!(out, "{}", format_number(v.strikes));
                }
            }
        }
        out
    }
}

/// Whole numbers without a fraction, others with up to two decimals.
pub fn format_number(x: f64) -> String {
    if x.fract() == 0.0 && x.abs() < 1e15 {
        format!("{}", x as i64)
    } else {
        format!("{:.2}", x)
            .trim_end_matches('0')
            .trim_end_matches('.')
            .to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values() -> Values<'static> {
        Values {
            sender: "troll",
            room: "#chat",
            rule: "insults",
            description: "No insults",
            strikes: 2.0,
            network: "irc",
        }
    }

    #[test]
    fn renders_every_placeholder() {
        let t =
            Template::parse("{sender} in {room} on {network}: {description} ({rule}, {strikes})")
                .unwrap();
        assert_eq!(
            t.render(&values()),
            "troll in #chat on irc: No insults (insults, 2)"
        );
    }

    #[test]
    fn braces_escape() {
        let t = Template::parse("{{literal}} {sender}").unwrap();
        assert_eq!(t.render(&values()), "{literal} troll");
    }

    #[test]
    fn errors_point_at_the_problem() {
        for (text, at, needle) in [
            ("hi {sendr}", 3, "unknown placeholder {sendr}"),
            ("hi {sender", 3, "unclosed"),
            ("hi } there", 3, "lone"),
            ("{}", 0, "unknown placeholder {}"),
        ] {
            let (pos, msg) = Template::parse(text).unwrap_err();
            assert_eq!(pos, at, "{text}");
            assert!(msg.contains(needle), "{text}: {msg}");
        }
    }

    #[test]
    fn numbers_print_plainly() {
        assert_eq!(format_number(3.0), "3");
        assert_eq!(format_number(2.5), "2.5");
        assert_eq!(format_number(1.0 / 3.0), "0.33");
    }
}
