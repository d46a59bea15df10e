//! A small rich-text model shared by both networks: runs of text with a style.
//!
//! IRC formatting codes and Matrix HTML are both converted into this and out of it, so the
//! bridge never translates one wire format into the other directly, and neither side ever sees
//! the other's raw markup. Must not know any wire format itself.

/// An IRC-style colour: one of the 99 numbered colours, or an RGB value (`\x04` codes, HTML).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Colour {
    Index(u8),
    Rgb(u8, u8, u8),
}

/// The standard RGB values of IRC colours 0-15 (what clients commonly show).
pub const IRC_PALETTE: [(u8, u8, u8); 16] = [
    (0xff, 0xff, 0xff),
    (0x00, 0x00, 0x00),
    (0x00, 0x00, 0x7f),
    (0x00, 0x93, 0x00),
    (0xff, 0x00, 0x00),
    (0x7f, 0x00, 0x00),
    (0x9c, 0x00, 0x9c),
    (0xfc, 0x7f, 0x00),
    (0xff, 0xff, 0x00),
    (0x00, 0xfc, 0x00),
    (0x00, 0x93, 0x93),
    (0x00, 0xff, 0xff),
    (0x00, 0x00, 0xfc),
    (0xff, 0x00, 0xff),
    (0x7f, 0x7f, 0x7f),
    (0xd2, 0xd2, 0xd2),
];

impl Colour {
    /// The RGB value, where known.
    pub fn rgb(self) -> Option<(u8, u8, u8)> {
        match self {
            Colour::Rgb(r, g, b) => Some((r, g, b)),
            Colour::Index(i) => IRC_PALETTE.get(i as usize).copied(),
        }
    }

    /// The nearest of the 16 standard IRC colours.
    pub fn nearest_index(self) -> u8 {
        match self {
            Colour::Index(i) => i,
            Colour::Rgb(r, g, b) => {
                let dist = |(pr, pg, pb): (u8, u8, u8)| {
                    let d = |a: u8, b: u8| (i32::from(a) - i32::from(b)).pow(2);
                    d(r, pr) + d(g, pg) + d(b, pb)
                };
                (0..16u8)
                    .min_by_key(|i| dist(IRC_PALETTE[*i as usize]))
                    .unwrap_or(1)
            }
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Style {
    pub bold: bool,
    pub italic: bool,
    pub underline: bool,
    pub strike: bool,
    pub monospace: bool,
    pub fg: Option<Colour>,
    pub bg: Option<Colour>,
}

impl Style {
    pub fn is_plain(&self) -> bool {
        *self == Style::default()
    }
}

/// A run of text with one style, possibly a link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Span {
    pub text: String,
    pub style: Style,
    /// Where the text links to (from Matrix `<a href>`; IRC has no links beyond the text).
    pub link: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RichText {
    pub spans: Vec<Span>,
}

impl RichText {
    pub fn plain(text: &str) -> Self {
        let mut t = RichText::default();
        t.push(text, Style::default());
        t
    }

    /// Appends text, merging it into the last span when the style is the same.
    pub fn push(&mut self, text: &str, style: Style) {
        self.push_link(text, style, None);
    }

    pub fn push_link(&mut self, text: &str, style: Style, link: Option<String>) {
        if text.is_empty() {
            return;
        }
        if let Some(last) = self.spans.last_mut() {
            if last.style == style && last.link == link {
                last.text.push_str(text);
                return;
            }
        }
        self.spans.push(Span {
            text: text.to_string(),
            style,
            link,
        });
    }

    /// The text without any styling.
    pub fn to_plain(&self) -> String {
        self.spans.iter().map(|s| s.text.as_str()).collect()
    }

    pub fn is_empty(&self) -> bool {
        self.spans.iter().all(|s| s.text.is_empty())
    }

    /// Whether any span carries a style or a link.
    pub fn is_styled(&self) -> bool {
        self.spans
            .iter()
            .any(|s| !s.style.is_plain() || s.link.is_some())
    }

    /// Splits at newlines into one rich text per line.
    pub fn lines(&self) -> Vec<RichText> {
        let mut out = vec![RichText::default()];
        for span in &self.spans {
            for (i, part) in span.text.split('\n').enumerate() {
                if i > 0 {
                    out.push(RichText::default());
                }
                if let Some(line) = out.last_mut() {
                    line.push_link(part, span.style, span.link.clone());
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pushes_merge_runs_of_one_style() {
        let bold = Style {
            bold: true,
            ..Style::default()
        };
        let mut t = RichText::default();
        t.push("a", Style::default());
        t.push("b", Style::default());
        t.push("c", bold);
        t.push("", bold);
        assert_eq!(t.spans.len(), 2);
        assert_eq!(t.to_plain(), "abc");
        assert!(t.is_styled());
        assert!(!RichText::plain("x").is_styled());
    }

    #[test]
    fn lines_keep_styles() {
        let bold = Style {
            bold: true,
            ..Style::default()
        };
        let mut t = RichText::default();
        t.push("one\ntw", bold);
        t.push("o\nthree", Style::default());
        let lines: Vec<String> = t.lines().iter().map(RichText::to_plain).collect();
        assert_eq!(lines, ["one", "two", "three"]);
        assert_eq!(t.lines()[1].spans[0].style, bold);
    }

    #[test]
    fn nearest_colour() {
        assert_eq!(Colour::Rgb(250, 5, 5).nearest_index(), 4);
        assert_eq!(Colour::Rgb(0, 0, 0).nearest_index(), 1);
        assert_eq!(Colour::Index(7).rgb(), Some((0xfc, 0x7f, 0x00)));
    }
}
