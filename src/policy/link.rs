//! Finding links and their domains in message text.
//!
//! A link is a URL with a scheme (`https://`, `matrix:` is not one), a `www.` address, or a
//! bare domain whose top-level domain is one spammers use (`bit.ly/x`, `t.me/joinchat`).
//! Bare names with file-like endings (`main.rs`, `node.js`) are not links. Must stay pure.

use std::borrow::Cow;

use unicode_normalization::UnicodeNormalization;

use super::normalize::{is_invisible, strip_formatting};

/// One link found in a text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    /// The link as written (cleaned of invisible characters and trailing punctuation).
    pub url: String,
    /// The lower-cased host name, without port or user info.
    pub host: String,
}

/// Top-level domains that count for bare domains without a scheme or `www.`.
const BARE_TLDS: &[&str] = &[
    "app", "biz", "buzz", "cc", "cf", "click", "club", "cn", "co", "com", "de", "dev", "eu", "fun",
    "ga", "gg", "gq", "icu", "info", "io", "ir", "li", "link", "live", "ly", "me", "ml", "net",
    "onion", "online", "org", "pw", "ru", "shop", "site", "space", "store", "su", "tk", "to",
    "top", "tv", "uk", "us", "vip", "win", "ws", "xyz",
];

/// Finds the links in `text`.
pub fn find_links(text: &str) -> Vec<Link> {
    // Every form of link has a dot (or a full-width one that NFKC turns into a dot): most
    // messages are done here.
    if !text.as_bytes().contains(&b'.') && !text.contains('．') {
        return Vec::new();
    }
    let mut links = Vec::new();
    for raw in text.split(|c: char| c.is_whitespace() || "<>\"'()[]{}".contains(c)) {
        if !raw.contains(['.', '．']) {
            continue;
        }
        // Invisible characters and IRC formatting are removed and full-width forms folded,
        // so that "bit\u{200B}.ly" and "bit．ly" are still found. Plain ASCII needs none of it.
        let cleaned: Cow<'_, str> = if raw.bytes().all(|b| (0x21..0x80).contains(&b)) {
            Cow::Borrowed(raw)
        } else {
            Cow::Owned(
                strip_formatting(raw)
                    .chars()
                    .filter(|c| !is_invisible(*c) && !c.is_control())
                    .collect::<String>()
                    .nfkc()
                    .collect(),
            )
        };
        let token = cleaned.trim_end_matches(|c: char| ".,;:!?".contains(c));
        if let Some(link) = parse_link(token) {
            links.push(link);
        }
    }
    links
}

fn parse_link(token: &str) -> Option<Link> {
    let lower = token.to_lowercase();
    let (rest, bare) = if let Some(pos) = lower.find("://") {
        let scheme = &lower[..pos];
        if scheme.is_empty()
            || !scheme
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '+')
        {
            return None;
        }
        (&lower[pos + 3..], false)
    } else if lower.starts_with("www.") {
        (lower.as_str(), false)
    } else if lower.contains('@') {
        return None; // an e-mail address or a mention
    } else {
        (lower.as_str(), true)
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host_port = authority.rsplit('@').next().unwrap_or("");
    let host = host_port
        .split(':')
        .next()
        .unwrap_or("")
        .trim_end_matches('.');
    if !is_host(host) {
        return None;
    }
    if bare {
        let tld = host.rsplit('.').next().unwrap_or("");
        if !host.contains('.') || !BARE_TLDS.contains(&tld) {
            return None;
        }
    }
    Some(Link {
        url: token.to_string(),
        host: host.to_string(),
    })
}

fn is_host(host: &str) -> bool {
    !host.is_empty()
        && host.split('.').all(|label| {
            !label.is_empty()
                && !label.starts_with('-')
                && label.chars().all(|c| c.is_alphanumeric() || c == '-')
        })
}

/// Whether `host` is `domain` or one of its subdomains.
pub fn host_in_domain(host: &str, domain: &str) -> bool {
    host == domain
        || host
            .strip_suffix(domain)
            .is_some_and(|prefix| prefix.ends_with('.'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hosts(text: &str) -> Vec<String> {
        find_links(text).into_iter().map(|l| l.host).collect()
    }

    #[test]
    fn finds_links_in_their_usual_forms() {
        assert_eq!(hosts("see https://Example.org/path?x=1."), ["example.org"]);
        assert_eq!(hosts("go to www.spam.com now"), ["www.spam.com"]);
        assert_eq!(hosts("join t.me/joinchat/abc"), ["t.me"]);
        assert_eq!(hosts("(bit.ly/x)"), ["bit.ly"]);
        assert_eq!(hosts("http://user:pw@host.example:8080/"), ["host.example"]);
        assert_eq!(hosts("bit\u{200B}.ly/abc"), ["bit.ly"]);
        assert_eq!(hosts("bit．ly/abc"), ["bit.ly"]);
        assert_eq!(hosts("\x0304bit.ly/abc\x0f"), ["bit.ly"]);
        assert_eq!(
            hosts("сайт.рф is not in the bare list but https://сайт.рф is"),
            ["сайт.рф"]
        );
    }

    #[test]
    fn ordinary_text_has_no_links() {
        for text in [
            "see main.rs and node.js",
            "e.g. this",
            "mail bob@example.com",
            "version 1.2.3",
            "end of sentence.Next one",
            "ftp://",
            "hello... world",
        ] {
            assert_eq!(hosts(text), Vec::<String>::new(), "{text}");
        }
    }

    #[test]
    fn subdomains_belong_to_their_domain() {
        assert!(host_in_domain("bit.ly", "bit.ly"));
        assert!(host_in_domain("a.b.bit.ly", "bit.ly"));
        assert!(!host_in_domain("notbit.ly", "bit.ly"));
        assert!(!host_in_domain("ly", "bit.ly"));
    }
}
