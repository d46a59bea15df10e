//! The one place text crosses into and out of IRC.
//!
//! Outbound: [`sanitize`] strips CR, LF, NUL and `\x01` from anything that came from elsewhere
//! (a CR/LF in relayed text would start a second IRC command: the injection other bridges had
//! CVEs for), [`render`] turns rich text into mIRC formatting codes, and [`split`] cuts a line
//! into parts that fit the server's limit, never inside a UTF-8 character or a colour code,
//! preferring word boundaries. [`text_budget`] computes that limit from the prefix the server
//! will put in front of our message.
//!
//! Inbound: [`decode_line`] reads bytes as UTF-8, or as Windows-1252 when they are not (old
//! clients), instead of dropping them; [`parse_formatting`] turns mIRC codes into rich text;
//! [`ctcp`] recognises `/me` (CTCP ACTION) and other CTCP requests.
//!
//! Pure: no sockets, no clock.

use crate::rich_text::{Colour, RichText, Style};

/// Characters that must never reach the wire inside relayed text.
pub fn is_forbidden(c: char) -> bool {
    matches!(c, '\r' | '\n' | '\0' | '\x01')
}

/// Removes CR, LF, NUL and CTCP `\x01` from text that came from elsewhere.
pub fn sanitize(text: &str) -> String {
    text.chars().filter(|c| !is_forbidden(*c)).collect()
}

/// Bytes available for the text of `COMMAND target :text` when the server relays it with our
/// `nick!user@host` prefix, within `line_len` bytes (512 unless ISUPPORT LINELEN says more),
/// CRLF included.
pub fn text_budget(line_len: usize, prefix: &str, command: &str, target: &str) -> usize {
    // ":" prefix " " command " " target " :" text "\r\n"
    let overhead = 1 + prefix.len() + 1 + command.len() + 1 + target.len() + 2 + 2;
    line_len.saturating_sub(overhead)
}

/// Splits sanitised `text` into parts of at most `budget` bytes, at the last space that fits
/// (the space stays at the end of its part, so the parts concatenate to the text), else at the
/// last character boundary, never inside a colour code's digits.
pub fn split(text: &str, budget: usize) -> Vec<&str> {
    let budget = budget.max(8);
    let mut parts = Vec::new();
    let mut rest = text;
    while rest.len() > budget {
        let mut cut = budget;
        while !rest.is_char_boundary(cut) {
            cut -= 1;
        }
        cut = back_out_of_colour_code(rest, cut);
        // Prefer the last space in the window (keep it with the left part), unless that would
        // leave a tiny part.
        if let Some(space) = rest[..cut].rfind(' ') {
            if space + 1 >= cut / 2 {
                cut = space + 1;
            }
        }
        if cut == 0 {
            // A colour code longer than the budget: cannot happen with budget >= 8, but never
            // loop forever.
            cut = rest.char_indices().nth(1).map_or(rest.len(), |(i, _)| i);
        }
        parts.push(&rest[..cut]);
        rest = &rest[cut..];
    }
    if !rest.is_empty() || parts.is_empty() {
        parts.push(rest);
    }
    parts
}

/// If `cut` falls inside `\x03NN,NN` or `\x04RRGGBB,RRGGBB`, moves it to before the code.
fn back_out_of_colour_code(text: &str, cut: usize) -> usize {
    let bytes = text.as_bytes();
    let start = cut.saturating_sub(14);
    for i in (start..cut).rev() {
        match bytes[i] {
            0x03 | 0x04 => {
                let end = i + 1 + colour_code_len(&bytes[i..]) - 1;
                return if end > cut { i } else { cut };
            }
            b'0'..=b'9' | b'a'..=b'f' | b'A'..=b'F' | b',' => continue,
            _ => return cut,
        }
    }
    cut
}

/// Length of the colour code at the start of `b` (the control byte included).
fn colour_code_len(b: &[u8]) -> usize {
    let (max, is_digit): (usize, fn(u8) -> bool) = match b.first() {
        Some(0x03) => (2, |c| c.is_ascii_digit()),
        Some(0x04) => (6, |c| c.is_ascii_hexdigit()),
        _ => return 0,
    };
    let mut i = 1;
    let take = |i: &mut usize| {
        let s = *i;
        while *i < b.len() && *i - s < max && is_digit(b[*i]) {
            *i += 1;
        }
        *i - s
    };
    if take(&mut i) == 0 {
        return 1;
    }
    if b.get(i) == Some(&b',') && b.get(i + 1).is_some_and(|c| is_digit(*c)) {
        i += 1;
        take(&mut i);
    }
    i
}

/// Renders rich text as one IRC line with mIRC formatting codes. Newlines must have been
/// split off before (see [`RichText::lines`]); forbidden characters are stripped here too.
pub fn render(text: &RichText) -> String {
    let mut out = String::new();
    let mut cur = Style::default();
    for span in &text.spans {
        let s = span.style;
        let plain_body = sanitize(&span.text);
        let body = match &span.link {
            // IRC clients make URLs clickable by themselves; keep the target visible.
            Some(url) if !plain_body.contains(url.as_str()) => {
                format!("{plain_body} ({})", sanitize(url))
            }
            _ => plain_body,
        };
        if body.is_empty() {
            continue;
        }
        if s != cur {
            for (on_now, on_next, code) in [
                (cur.bold, s.bold, '\x02'),
                (cur.italic, s.italic, '\x1D'),
                (cur.underline, s.underline, '\x1F'),
                (cur.strike, s.strike, '\x1E'),
                (cur.monospace, s.monospace, '\x11'),
            ] {
                if on_now != on_next {
                    out.push(code);
                }
            }
            if (s.fg, s.bg) != (cur.fg, cur.bg) {
                match (s.fg, s.bg) {
                    (None, None) => out.push('\x03'),
                    (fg, bg) => {
                        out.push('\x03');
                        // A background needs a foreground; 99 is "default colour".
                        out.push_str(&format!("{:02}", fg.map_or(99, Colour::nearest_index)));
                        if let Some(bg) = bg {
                            out.push_str(&format!(",{:02}", bg.nearest_index()));
                        }
                    }
                }
                // Text starting with "," right after a colour would be read as a background.
                if body.starts_with(',') {
                    out.push_str("\x02\x02");
                }
            }
            cur = s;
        }
        out.push_str(&body);
    }
    if !cur.is_plain() {
        out.push('\x0F');
    }
    out
}

/// Parses mIRC formatting codes into rich text.
pub fn parse_formatting(line: &str) -> RichText {
    let mut t = RichText::default();
    let mut style = Style::default();
    let mut run = String::new();
    let bytes = line.as_bytes();
    let mut i = 0;
    while i < line.len() {
        let c = bytes[i];
        let code = matches!(
            c,
            0x02 | 0x03 | 0x04 | 0x0F | 0x11 | 0x16 | 0x1D | 0x1E | 0x1F
        );
        if !code {
            let ch = line[i..].chars().next().unwrap_or(' ');
            run.push(ch);
            i += ch.len_utf8();
            continue;
        }
        t.push(&run, style);
        run.clear();
        match c {
            0x02 => style.bold = !style.bold,
            0x1D => style.italic = !style.italic,
            0x1F => style.underline = !style.underline,
            0x1E => style.strike = !style.strike,
            0x11 => style.monospace = !style.monospace,
            0x16 => std::mem::swap(&mut style.fg, &mut style.bg),
            0x0F => style = Style::default(),
            _ => {
                let len = colour_code_len(&bytes[i..]);
                let params = &line[i + 1..i + len];
                if params.is_empty() {
                    style.fg = None;
                    style.bg = None;
                } else {
                    let (fg, bg) = match params.split_once(',') {
                        Some((f, b)) => (f, Some(b)),
                        None => (params, None),
                    };
                    let parse = |s: &str| -> Option<Colour> {
                        if c == 0x03 {
                            s.parse::<u8>().ok().filter(|n| *n < 99).map(Colour::Index)
                        } else {
                            let v = u32::from_str_radix(s, 16).ok()?;
                            Some(Colour::Rgb((v >> 16) as u8, (v >> 8) as u8, v as u8))
                        }
                    };
                    style.fg = parse(fg);
                    if let Some(bg) = bg {
                        style.bg = parse(bg);
                    }
                }
                i += len;
                continue;
            }
        }
        i += 1;
    }
    t.push(&run, style);
    t
}

/// Reads a line as UTF-8, or, when it is not, as Windows-1252 (what old clients send), so no
/// message is dropped for its encoding.
pub fn decode_line(bytes: &[u8]) -> String {
    match std::str::from_utf8(bytes) {
        Ok(s) => s.to_string(),
        Err(_) => bytes.iter().map(|b| cp1252(*b)).collect(),
    }
}

fn cp1252(b: u8) -> char {
    const HIGH: [char; 32] = [
        '€', '\u{81}', '‚', 'ƒ', '„', '…', '†', '‡', 'ˆ', '‰', 'Š', '‹', 'Œ', '\u{8D}', 'Ž',
        '\u{8F}', '\u{90}', '‘', '’', '“', '”', '•', '–', '—', '˜', '™', 'š', '›', 'œ', '\u{9D}',
        'ž', 'Ÿ',
    ];
    match b {
        0x80..=0x9F => HIGH[(b - 0x80) as usize],
        _ => char::from(b),
    }
}

/// What a PRIVMSG or NOTICE text is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ctcp<'a> {
    /// Ordinary text.
    None(&'a str),
    /// `/me`: CTCP ACTION with its text.
    Action(&'a str),
    /// Another CTCP request (VERSION, PING, ...): command and argument.
    Other(&'a str, &'a str),
}

/// Recognises CTCP framing (`\x01COMMAND args\x01`, the closing `\x01` optional).
pub fn ctcp(text: &str) -> Ctcp<'_> {
    let Some(inner) = text.strip_prefix('\x01') else {
        return Ctcp::None(text);
    };
    let inner = inner.strip_suffix('\x01').unwrap_or(inner);
    let (cmd, arg) = inner.split_once(' ').unwrap_or((inner, ""));
    if cmd.eq_ignore_ascii_case("ACTION") {
        Ctcp::Action(arg)
    } else {
        Ctcp::Other(cmd, arg)
    }
}

/// The text of a `/me` emote as sent on the wire.
pub fn action(text: &str) -> String {
    format!("\x01ACTION {}\x01", sanitize(text))
}

/// Bytes the CTCP ACTION framing adds to a text.
pub const ACTION_OVERHEAD: usize = "\x01ACTION \x01".len();

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn parts(text: &str, budget: usize) -> Vec<String> {
        split(text, budget).into_iter().map(String::from).collect()
    }

    #[test]
    fn sanitize_strips_what_would_inject_commands() {
        assert_eq!(sanitize("hi\r\nQUIT :bye"), "hiQUIT :bye");
        assert_eq!(sanitize("a\0b\x01c"), "abc");
        assert_eq!(
            sanitize("ок\u{0085}"),
            "ок\u{0085}",
            "only the four are forbidden"
        );
    }

    #[test]
    fn budget_counts_the_prefix_the_server_adds() {
        // ":bw!bridge@127.0.0.1 PRIVMSG #chat :" + CRLF = 38 bytes.
        assert_eq!(
            text_budget(512, "bw!bridge@127.0.0.1", "PRIVMSG", "#chat"),
            512 - 38
        );
        assert_eq!(text_budget(10, "a-very-long-prefix", "PRIVMSG", "#c"), 0);
    }

    #[test]
    fn splits_on_words_then_characters() {
        assert_eq!(parts("hello world again", 12), ["hello world ", "again"]);
        assert_eq!(parts("abcdefghijklmnop", 10), ["abcdefghij", "klmnop"]);
        // Never inside a character: each Cyrillic letter is 2 bytes.
        let ru = "приветприветпривет";
        for p in parts(ru, 9) {
            assert!(p.len() <= 9 && !p.is_empty());
        }
        assert_eq!(parts(ru, 9).concat(), ru);
        assert_eq!(parts("", 10), [""]);
    }

    #[test]
    fn never_splits_a_colour_code() {
        let text = "abcdefg\x0304,05red";
        for p in parts(text, 10) {
            assert!(
                !p.ends_with('\x03') && !p.ends_with("\x0304") && !p.ends_with("\x0304,"),
                "{p:?}"
            );
        }
        assert_eq!(parts(text, 10).concat(), text);
    }

    #[test]
    fn formatting_round_trips_through_rich_text() {
        for line in [
            "plain",
            "\x02bold\x02 and \x1Ditalic\x1D",
            "\x0304red\x03 \x0304,12red on blue\x0F normal",
            "\x1Funder\x1F\x1Estrike\x1E\x11mono\x11",
            "\x04FF0000hex red\x04",
        ] {
            let rich = parse_formatting(line);
            assert_eq!(
                rich.to_plain(),
                crate::policy::normalize::strip_formatting(line),
                "{line:?}"
            );
            let again = parse_formatting(&render(&rich));
            assert_eq!(again.to_plain(), rich.to_plain(), "{line:?}");
            assert_eq!(
                again
                    .spans
                    .iter()
                    .map(|s| (s.style.bold, s.style.italic))
                    .collect::<Vec<_>>(),
                rich.spans
                    .iter()
                    .map(|s| (s.style.bold, s.style.italic))
                    .collect::<Vec<_>>(),
                "{line:?}"
            );
        }
        let rich = parse_formatting("\x0304red");
        assert_eq!(rich.spans[0].style.fg, Some(Colour::Index(4)));
    }

    #[test]
    fn a_comma_after_a_colour_is_not_a_background() {
        let mut t = RichText::default();
        t.push(
            "red",
            Style {
                fg: Some(Colour::Index(4)),
                ..Style::default()
            },
        );
        t.push(",5 apples", Style::default());
        let back = parse_formatting(&render(&t));
        assert_eq!(back.to_plain(), "red,5 apples");
    }

    #[test]
    fn links_keep_their_target() {
        let mut t = RichText::default();
        t.push_link(
            "the docs",
            Style::default(),
            Some("https://example.org/d".into()),
        );
        assert_eq!(render(&t), "the docs (https://example.org/d)");
        let mut t = RichText::default();
        t.push_link(
            "https://example.org",
            Style::default(),
            Some("https://example.org".into()),
        );
        assert_eq!(render(&t), "https://example.org");
    }

    #[test]
    fn render_strips_forbidden_characters() {
        let t = RichText::plain("hi\r\nPRIVMSG #x :owned\x01");
        assert_eq!(render(&t), "hiPRIVMSG #x :owned");
    }

    #[test]
    fn decoding_falls_back_to_windows_1252() {
        assert_eq!(decode_line("привет".as_bytes()), "привет");
        assert_eq!(decode_line(b"caf\xe9 \x80 \x93ok\x94"), "café € “ok”");
    }

    #[test]
    fn ctcp_action_and_others() {
        assert_eq!(ctcp("\x01ACTION waves\x01"), Ctcp::Action("waves"));
        assert_eq!(ctcp("\x01ACTION waves"), Ctcp::Action("waves"));
        assert_eq!(ctcp("\x01VERSION\x01"), Ctcp::Other("VERSION", ""));
        assert_eq!(ctcp("hello"), Ctcp::None("hello"));
        assert_eq!(action("waves\x01\r\n"), "\x01ACTION waves\x01");
    }

    proptest! {
        /// No part exceeds the budget or carries CR/LF/NUL, and the parts concatenate to the
        /// cleaned input.
        #[test]
        fn split_parts_fit_and_concatenate(text in "\\PC{0,300}|[a \\r\\n\\x00\\x01\\x03\\x04\\x0205,]{0,300}", budget in 8usize..80) {
            let clean = sanitize(&text);
            let parts = split(&clean, budget);
            for p in &parts {
                prop_assert!(p.len() <= budget, "{} > {}", p.len(), budget);
                prop_assert!(!p.contains(['\r', '\n', '\0']));
            }
            prop_assert_eq!(parts.concat(), clean);
        }

        #[test]
        fn parsing_any_line_never_panics(text in "\\PC{0,100}|[\\x02\\x03\\x04\\x0f\\x16\\x1d\\x1e\\x1f0-9a-f,]{0,40}") {
            let rich = parse_formatting(&text);
            let _ = render(&rich);
        }
    }
}
