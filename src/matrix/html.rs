//! Matrix message formatting: rich text to `body` + `formatted_body` (HTML), and back.
//!
//! Outbound, every piece of text is HTML-escaped and only a fixed set of tags is written, so
//! nothing a user typed on IRC (a nick, a message) can become markup in a Matrix client. Links
//! keep only http(s), mailto and matrix.to targets. `@room` is defused (a zero-width space
//! after the `@`) unless the caller allows it, so a relay cannot ping a whole room.
//!
//! Inbound, a small tolerant parser reads the HTML subset Matrix clients send: styles, colours,
//! links, pills (which become mentions), line breaks; the reply fallback (`<mx-reply>`) and
//! unknown tags are dropped, their text kept. Pure: no I/O.

use crate::rich_text::{Colour, RichText, Style};

/// Escapes text for HTML content and attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

/// Whether a link target may be written into a message.
fn safe_href(url: &str) -> bool {
    let lower = url.trim().to_ascii_lowercase();
    ["https://", "http://", "mailto:", "matrix:"]
        .iter()
        .any(|p| lower.starts_with(p))
}

/// `@room` written so that no client treats it as a room ping.
fn defuse_room_ping(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.to_ascii_lowercase().find("@room") {
        out.push_str(&rest[..=i]);
        out.push('\u{200B}');
        rest = &rest[i + 1..];
    }
    out.push_str(rest);
    out
}

fn hex(c: Colour) -> Option<String> {
    c.rgb().map(|(r, g, b)| format!("#{r:02x}{g:02x}{b:02x}"))
}

/// Renders rich text as (`body`, `formatted_body` when any styling is present).
pub fn render(text: &RichText, allow_room_ping: bool) -> (String, Option<String>) {
    let fix = |s: &str| {
        if allow_room_ping {
            s.to_string()
        } else {
            defuse_room_ping(s)
        }
    };
    let body = fix(&text.to_plain());
    if !text.is_styled() {
        return (body, None);
    }
    let mut html = String::new();
    for span in &text.spans {
        let s = span.style;
        let mut open = String::new();
        let mut close = Vec::new();
        let mut tag = |o: String, c: &'static str| {
            open.push_str(&o);
            close.push(c);
        };
        if let Some(url) = span.link.as_deref().filter(|u| safe_href(u)) {
            tag(format!("<a href=\"{}\">", escape(url)), "</a>");
        }
        if s.bold {
            tag("<strong>".into(), "</strong>");
        }
        if s.italic {
            tag("<em>".into(), "</em>");
        }
        if s.underline {
            tag("<u>".into(), "</u>");
        }
        if s.strike {
            tag("<del>".into(), "</del>");
        }
        if s.monospace {
            tag("<code>".into(), "</code>");
        }
        if s.fg.is_some() || s.bg.is_some() {
            let mut attrs = String::new();
            if let Some(c) = s.fg.and_then(hex) {
                attrs.push_str(&format!(" data-mx-color=\"{c}\""));
            }
            if let Some(c) = s.bg.and_then(hex) {
                attrs.push_str(&format!(" data-mx-bg-color=\"{c}\""));
            }
            tag(format!("<font{attrs}>"), "</font>");
        }
        html.push_str(&open);
        html.push_str(&escape(&fix(&span.text)).replace('\n', "<br>"));
        for c in close.iter().rev() {
            html.push_str(c);
        }
    }
    (body, Some(html))
}

/// What an incoming formatted message says.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Parsed {
    pub text: RichText,
    /// User ids of pills (`<a href="https://matrix.to/#/@user:server">`).
    pub mentions: Vec<String>,
}

/// Parses Matrix HTML into rich text.
pub fn parse(html: &str) -> Parsed {
    let mut out = Parsed::default();
    // Open elements: (name, style before it, link before it).
    let mut stack: Vec<(String, Style, Option<String>)> = Vec::new();
    let mut style = Style::default();
    let mut link: Option<String> = None;
    let mut skip_depth = 0usize; // inside <mx-reply>
    let mut rest = html;
    while !rest.is_empty() {
        let Some(lt) = rest.find('<') else {
            if skip_depth == 0 {
                out.text
                    .push_link(&decode_entities(rest), style, link.clone());
            }
            break;
        };
        if lt > 0 && skip_depth == 0 {
            out.text
                .push_link(&decode_entities(&rest[..lt]), style, link.clone());
        }
        let after = &rest[lt + 1..];
        // A tag starts with a letter (or `/` and a letter, or `!` for comments); any other `<`
        // is text, as in "a < b".
        let starts_tag = {
            let mut c = after.chars();
            match c.next() {
                Some('/') => c.next().is_some_and(|n| n.is_ascii_alphabetic()),
                Some(n) => n.is_ascii_alphabetic() || n == '!',
                None => false,
            }
        };
        if !starts_tag {
            if skip_depth == 0 {
                out.text.push_link("<", style, link.clone());
            }
            rest = after;
            continue;
        }
        let Some(gt) = after.find('>') else {
            // A lone '<': text.
            if skip_depth == 0 {
                out.text
                    .push_link(&decode_entities(&rest[lt..]), style, link.clone());
            }
            break;
        };
        let tag = &after[..gt];
        rest = &after[gt + 1..];
        let closing = tag.starts_with('/');
        let body = tag.trim_start_matches('/').trim_end_matches('/');
        let name_end = body.find(|c: char| c.is_whitespace()).unwrap_or(body.len());
        let name = body[..name_end].to_ascii_lowercase();
        let attrs = &body[name_end..];
        if name == "mx-reply" {
            if closing {
                skip_depth = skip_depth.saturating_sub(1);
            } else {
                skip_depth += 1;
            }
            continue;
        }
        if skip_depth > 0 {
            continue;
        }
        if closing {
            if let Some(pos) = stack.iter().rposition(|(n, _, _)| *n == name) {
                let (_, s, l) = stack[pos].clone();
                stack.truncate(pos);
                style = s;
                link = l;
            }
            if matches!(
                name.as_str(),
                "p" | "div"
                    | "li"
                    | "blockquote"
                    | "pre"
                    | "h1"
                    | "h2"
                    | "h3"
                    | "h4"
                    | "h5"
                    | "h6"
                    | "tr"
            ) {
                out.text.push("\n", Style::default());
            }
            continue;
        }
        match name.as_str() {
            "br" => {
                out.text.push("\n", Style::default());
                continue;
            }
            "img" => {
                let alt = attr(attrs, "alt").unwrap_or_else(|| "image".into());
                out.text.push(&format!("[{alt}]"), style);
                continue;
            }
            "li" => out.text.push("• ", style),
            _ => {}
        }
        let void = tag.ends_with('/') || matches!(name.as_str(), "hr" | "input" | "meta" | "link");
        if void {
            continue;
        }
        stack.push((name.clone(), style, link.clone()));
        match name.as_str() {
            "b" | "strong" => style.bold = true,
            "i" | "em" => style.italic = true,
            "u" | "ins" => style.underline = true,
            "del" | "s" | "strike" => style.strike = true,
            "code" | "pre" => style.monospace = true,
            "font" | "span" => {
                if let Some(c) = attr(attrs, "data-mx-color")
                    .or_else(|| attr(attrs, "color"))
                    .and_then(|c| parse_colour(&c))
                {
                    style.fg = Some(c);
                }
                if let Some(c) = attr(attrs, "data-mx-bg-color").and_then(|c| parse_colour(&c)) {
                    style.bg = Some(c);
                }
            }
            "a" => {
                if let Some(href) = attr(attrs, "href") {
                    if let Some(user) = pill_user(&href) {
                        if !out.mentions.contains(&user) {
                            out.mentions.push(user);
                        }
                    }
                    link = Some(href);
                }
            }
            _ => {}
        }
    }
    // Trailing newlines from closing blocks.
    while out
        .text
        .spans
        .last()
        .is_some_and(|s| s.text.ends_with('\n'))
    {
        let last = out.text.spans.last_mut().expect("checked");
        last.text.pop();
        if last.text.is_empty() {
            out.text.spans.pop();
        }
    }
    out
}

/// The user id a matrix.to or matrix: link to a user points at.
pub fn pill_user(href: &str) -> Option<String> {
    let rest = href
        .strip_prefix("https://matrix.to/#/")
        .map(|r| r.split('?').next().unwrap_or(r).to_string())
        .or_else(|| {
            href.strip_prefix("matrix:u/")
                .map(|r| format!("@{}", r.split('?').next().unwrap_or(r)))
        })?;
    let user = percent_decode(&rest);
    (user.starts_with('@') && user.contains(':')).then_some(user)
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let Ok(b) = u8::from_str_radix(&s[i + 1..i + 3], 16) {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn attr(attrs: &str, name: &str) -> Option<String> {
    let mut rest = attrs;
    while let Some(i) = rest.to_ascii_lowercase().find(name) {
        let after = rest[i + name.len()..].trim_start();
        let boundary_ok = i == 0 || rest.as_bytes()[i - 1].is_ascii_whitespace();
        if boundary_ok {
            if let Some(v) = after.strip_prefix('=') {
                let v = v.trim_start();
                let value = if let Some(q) = v.strip_prefix('"') {
                    q.split('"').next().unwrap_or("")
                } else if let Some(q) = v.strip_prefix('\'') {
                    q.split('\'').next().unwrap_or("")
                } else {
                    v.split(|c: char| c.is_whitespace()).next().unwrap_or("")
                };
                return Some(decode_entities(value));
            }
        }
        rest = &rest[i + name.len()..];
    }
    None
}

fn parse_colour(c: &str) -> Option<Colour> {
    let h = c.trim().strip_prefix('#')?;
    if h.len() != 6 {
        return None;
    }
    let v = u32::from_str_radix(h, 16).ok()?;
    Some(Colour::Rgb((v >> 16) as u8, (v >> 8) as u8, v as u8))
}

/// Decodes the entities HTML text may contain.
pub fn decode_entities(s: &str) -> String {
    if !s.contains('&') {
        return s.to_string();
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('&') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        let end = after.find(';').filter(|e| *e <= 10);
        let decoded = end.and_then(|e| {
            let ent = &after[..e];
            let c = match ent {
                "amp" => Some('&'),
                "lt" => Some('<'),
                "gt" => Some('>'),
                "quot" => Some('"'),
                "apos" => Some('\''),
                "nbsp" => Some('\u{A0}'),
                _ => ent
                    .strip_prefix("#x")
                    .or_else(|| ent.strip_prefix("#X"))
                    .and_then(|h| u32::from_str_radix(h, 16).ok())
                    .or_else(|| ent.strip_prefix('#').and_then(|d| d.parse().ok()))
                    .and_then(char::from_u32),
            }?;
            Some((c, e))
        });
        match decoded {
            Some((c, e)) => {
                out.push(c);
                rest = &after[e + 1..];
            }
            None => {
                out.push('&');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

/// Removes the plain-text reply fallback (`> <@user> quoted` lines and the blank line after)
/// from a reply's body.
pub fn strip_reply_fallback(body: &str) -> &str {
    if !body.starts_with("> ") {
        return body;
    }
    let mut rest = body;
    while rest.starts_with("> ") || rest.starts_with(">\n") {
        rest = rest.split_once('\n').map_or("", |(_, r)| r);
    }
    rest.strip_prefix('\n').unwrap_or(rest)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const ALLOWED_TAGS: [&str; 8] = ["strong", "em", "u", "del", "code", "font", "a", "br"];

    /// Every tag in `html` is one we write.
    fn only_our_tags(html: &str) -> bool {
        html.match_indices('<').all(|(i, _)| {
            let name: String = html[i + 1..]
                .trim_start_matches('/')
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric())
                .collect();
            ALLOWED_TAGS.contains(&name.as_str())
        })
    }

    #[test]
    fn styles_become_safe_tags() {
        let mut t = RichText::default();
        t.push(
            "bold",
            Style {
                bold: true,
                ..Style::default()
            },
        );
        t.push(" <script>alert(1)</script> & ", Style::default());
        t.push(
            "red",
            Style {
                fg: Some(Colour::Index(4)),
                ..Style::default()
            },
        );
        let (body, html) = render(&t, false);
        assert_eq!(body, "bold <script>alert(1)</script> & red");
        let html = html.unwrap();
        assert_eq!(html, "<strong>bold</strong> &lt;script&gt;alert(1)&lt;/script&gt; &amp; <font data-mx-color=\"#ff0000\">red</font>");
        assert!(only_our_tags(&html));
        assert_eq!(
            render(&RichText::plain("plain <b>"), false),
            ("plain <b>".to_string(), None)
        );
    }

    #[test]
    fn links_keep_only_safe_schemes() {
        let mut t = RichText::default();
        t.push_link(
            "ok",
            Style::default(),
            Some("https://example.org/?a=1&b=\"2\"".into()),
        );
        t.push_link("evil", Style::default(), Some("javascript:alert(1)".into()));
        let html = render(&t, false).1.unwrap();
        assert_eq!(
            html,
            "<a href=\"https://example.org/?a=1&amp;b=&quot;2&quot;\">ok</a>evil"
        );
    }

    #[test]
    fn room_pings_are_defused_unless_allowed() {
        let (body, _) = render(&RichText::plain("hey @room and @ROOM"), false);
        assert_eq!(body, "hey @\u{200B}room and @\u{200B}ROOM");
        assert_eq!(render(&RichText::plain("hey @room"), true).0, "hey @room");
    }

    #[test]
    fn parses_what_clients_send() {
        let p = parse("<mx-reply><blockquote>quoted <b>old</b></blockquote></mx-reply>Hi <strong>there</strong>, <a href=\"https://matrix.to/#/@bob:example.org\">Bob</a>!<br>next &amp; last &#x263A;");
        assert_eq!(p.text.to_plain(), "Hi there, Bob!\nnext & last ☺");
        assert_eq!(p.mentions, ["@bob:example.org"]);
        assert!(p
            .text
            .spans
            .iter()
            .any(|s| s.text == "there" && s.style.bold));
        let c = parse("<font color=\"#00ff00\">green</font><span data-mx-color=\"#0000ff\">blue</span><code>x</code>");
        assert_eq!(c.text.spans[0].style.fg, Some(Colour::Rgb(0, 255, 0)));
        assert_eq!(c.text.spans[1].style.fg, Some(Colour::Rgb(0, 0, 255)));
        assert!(c.text.spans[2].style.monospace);
        assert_eq!(parse("<p>one</p><p>two</p>").text.to_plain(), "one\ntwo");
        assert_eq!(parse("a < b and c > d").text.to_plain(), "a < b and c > d");
        assert_eq!(
            parse("<ul><li>x</li><li>y</li></ul>").text.to_plain(),
            "• x\n• y"
        );
        assert_eq!(
            pill_user("https://matrix.to/#/%40alice%3Aexample.org?via=x"),
            Some("@alice:example.org".into())
        );
    }

    #[test]
    fn reply_fallbacks_are_stripped() {
        assert_eq!(
            strip_reply_fallback("> <@a:hs> old\n> more\n\nnew text"),
            "new text"
        );
        assert_eq!(strip_reply_fallback("no quote"), "no quote");
    }

    proptest! {
        /// Whatever the text and its styling, formatted_body holds only the tags we write and
        /// reads back as the same text.
        #[test]
        fn untrusted_text_never_becomes_markup(
            parts in proptest::collection::vec(("\\PC{0,30}|[<>&\"'/a-z =]{0,30}", any::<u8>(), proptest::option::of("\\PC{0,20}|javascript:[<>\"]{0,5}")), 1..6)
        ) {
            let mut t = RichText::default();
            for (text, bits, link) in &parts {
                let style = Style { bold: bits & 1 != 0, italic: bits & 2 != 0, strike: bits & 4 != 0, fg: (bits & 8 != 0).then_some(Colour::Index(bits % 16)), ..Style::default() };
                t.push_link(text, style, link.clone());
            }
            let (body, html) = render(&t, false);
            if let Some(html) = html {
                prop_assert!(only_our_tags(&html), "{}", html);
                prop_assert!(!html.contains("javascript:"), "{}", html);
                let back = parse(&html).text.to_plain().replace('\u{200B}', "");
                let want = body.replace('\u{200B}', "");
                prop_assert_eq!(back.as_str(), want.trim_end_matches('\n'));
            }
        }
    }
}
