//! Compiled matchers: every list term in one Aho-Corasick automaton per match mode, every
//! regex in one set per target (normalised or original text).
//!
//! Built once at load; searching cannot fail. A text is searched once per automaton per
//! reading, whatever the number of lists or terms. Must not know about rules.

use std::ops::Range;

use aho_corasick::{AhoCorasick, AhoCorasickKind, MatchKind};
use regex::{Regex, RegexBuilder, RegexSet, RegexSetBuilder};

use super::normalize::Reading;

/// How a term must sit in the text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MatchMode {
    /// Whole words: no letter or digit right before or after.
    Word,
    Substring,
    /// The start of a word.
    Prefix,
}

impl MatchMode {
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "word" => Some(MatchMode::Word),
            "substring" => Some(MatchMode::Substring),
            "prefix" => Some(MatchMode::Prefix),
            _ => None,
        }
    }

    fn accepts(self, reading: &Reading, range: Range<usize>) -> bool {
        match self {
            MatchMode::Word => reading.is_word(range),
            MatchMode::Substring => true,
            MatchMode::Prefix => reading.starts_word(range.start),
        }
    }
}

/// A term of a list found in a text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListHit {
    pub list: usize,
    pub term: usize,
    /// Byte range in the original text.
    pub span: Range<usize>,
}

/// One automaton and, per pattern, the (list, term) pairs it stands for.
#[derive(Debug)]
struct ModeAutomaton {
    mode: MatchMode,
    automaton: AhoCorasick,
    owners: Vec<Owners>,
}

/// All term lists of a policy, compiled.
#[derive(Debug, Default)]
pub struct TermMatcher {
    automata: Vec<ModeAutomaton>,
}

/// Collects the normalised patterns of every term, grouped by match mode.
#[derive(Debug, Default)]
pub struct TermMatcherBuilder {
    /// Per match mode: the patterns, and per pattern its owners.
    modes: Vec<(MatchMode, Vec<String>, Vec<Owners>)>,
}

/// The (list, term) pairs one pattern stands for.
type Owners = Vec<(usize, usize)>;

impl TermMatcherBuilder {
    /// Adds the normalised `patterns` of term `term` of list `list`.
    pub fn add(&mut self, mode: MatchMode, list: usize, term: usize, patterns: &[String]) {
        let idx = match self.modes.iter().position(|(m, _, _)| *m == mode) {
            Some(i) => i,
            None => {
                self.modes.push((mode, Vec::new(), Vec::new()));
                self.modes.len() - 1
            }
        };
        let (_, pats, owners) = &mut self.modes[idx];
        for p in patterns {
            match pats.iter().position(|q| q == p) {
                Some(i) => owners[i].push((list, term)),
                None => {
                    pats.push(p.clone());
                    owners.push(vec![(list, term)]);
                }
            }
        }
    }

    pub fn build(self) -> Result<TermMatcher, String> {
        let mut automata = Vec::new();
        for (mode, patterns, owners) in self.modes {
            // A DFA is the fastest to search; it is affordable for lists of moderation
            // size. Very large lists fall back to the contiguous NFA to bound memory.
            let kind = if patterns.len() <= 20_000 {
                AhoCorasickKind::DFA
            } else {
                AhoCorasickKind::ContiguousNFA
            };
            let automaton = AhoCorasick::builder()
                .match_kind(MatchKind::Standard)
                .kind(Some(kind))
                .build(&patterns)
                .map_err(|e| format!("term lists too large to compile: {e}"))?;
            automata.push(ModeAutomaton {
                mode,
                automaton,
                owners,
            });
        }
        Ok(TermMatcher { automata })
    }
}

impl TermMatcher {
    /// Whether any pattern occurs in `text`, boundaries not checked: the cheap first test.
    pub fn any_match(&self, text: &str) -> bool {
        self.automata.iter().any(|a| a.automaton.is_match(text))
    }

    /// Every (list, term, span) found in any reading, deduplicated.
    pub fn find(&self, readings: &[Reading]) -> Vec<ListHit> {
        let mut hits: Vec<ListHit> = Vec::new();
        for reading in readings {
            for a in &self.automata {
                for m in a.automaton.find_overlapping_iter(reading.text()) {
                    if !a.mode.accepts(reading, m.range()) {
                        continue;
                    }
                    let span = reading.original_span(m.range());
                    for &(list, term) in &a.owners[m.pattern().as_usize()] {
                        let hit = ListHit {
                            list,
                            term,
                            span: span.clone(),
                        };
                        if !hits.iter().any(|h| h.list == list && h.span == span) {
                            hits.push(hit);
                        }
                    }
                }
            }
        }
        hits
    }
}

/// Compiled size limit of one regex; beyond it a pattern is refused at load time.
const REGEX_SIZE_LIMIT: usize = 1 << 20;
/// Size limit of a whole regex set.
const REGEX_SET_SIZE_LIMIT: usize = 16 << 20;

/// Compiles one policy regex, refusing patterns whose compiled form is too large.
pub fn compile_regex(pattern: &str) -> Result<Regex, String> {
    // Parse first for a one-line message that says where in the pattern the problem is.
    if let Err(e) = regex_syntax::ParserBuilder::new().build().parse(pattern) {
        return Err(match &e {
            regex_syntax::Error::Parse(e) => format!(
                "bad regex: {} (at character {} of the pattern)",
                e.kind(),
                e.span().start.column
            ),
            regex_syntax::Error::Translate(e) => format!(
                "bad regex: {} (at character {} of the pattern)",
                e.kind(),
                e.span().start.column
            ),
            other => format!("bad regex: {other}"),
        });
    }
    RegexBuilder::new(pattern)
        .size_limit(REGEX_SIZE_LIMIT)
        .dfa_size_limit(REGEX_SIZE_LIMIT)
        .build()
        .map_err(|e| match e {
            regex::Error::CompiledTooBig(limit) => format!(
                "regex is too large once compiled (limit {limit} bytes); simplify it or use a list"
            ),
            other => format!("bad regex: {other}"),
        })
}

/// Rewrites a regex so that its literal characters are folded the way normalised text is
/// (`fold` maps one character to what the normaliser makes of it): a pattern written in plain
/// words then meets text in which look-alikes, case and marks were folded. Character classes,
/// escapes like `\s`, and flags are left as written.
pub fn fold_regex(pattern: &str, fold: &dyn Fn(char) -> Vec<char>) -> Result<String, String> {
    use regex_syntax::ast::{self, Ast};
    fn lit(span: ast::Span, c: char) -> Ast {
        let kind = if regex_syntax::is_meta_character(c) {
            ast::LiteralKind::Meta
        } else {
            ast::LiteralKind::Verbatim
        };
        Ast::literal(ast::Literal { span, kind, c })
    }
    fn walk(node: &mut Ast, fold: &dyn Fn(char) -> Vec<char>) {
        match node {
            Ast::Literal(l) => {
                let span = l.span;
                let folded = fold(l.c);
                *node = match folded.as_slice() {
                    [] => Ast::empty(span),
                    [one] => lit(span, *one),
                    many => Ast::group(ast::Group {
                        span,
                        kind: ast::GroupKind::NonCapturing(ast::Flags {
                            span,
                            items: vec![],
                        }),
                        ast: Box::new(Ast::concat(ast::Concat {
                            span,
                            asts: many.iter().map(|c| lit(span, *c)).collect(),
                        })),
                    }),
                };
            }
            Ast::Repetition(r) => walk(&mut r.ast, fold),
            Ast::Group(g) => walk(&mut g.ast, fold),
            Ast::Alternation(a) => a.asts.iter_mut().for_each(|x| walk(x, fold)),
            Ast::Concat(c) => c.asts.iter_mut().for_each(|x| walk(x, fold)),
            _ => {}
        }
    }
    let mut parsed = ast::parse::Parser::new()
        .parse(pattern)
        .map_err(|e| format!("bad regex: {e}"))?;
    walk(&mut parsed, fold);
    let mut out = String::new();
    ast::print::Printer::new()
        .print(&parsed, &mut out)
        .map_err(|e| e.to_string())?;
    Ok(out)
}

/// The regexes of a policy: one set to test them all at once, and each one for its span.
#[derive(Debug)]
pub struct RegexBank {
    set: RegexSet,
    each: Vec<Regex>,
    /// The patterns as the policy wrote them (before folding), for explanations.
    written: Vec<String>,
}

impl RegexBank {
    /// `each` pairs a pattern as written with the regex compiled from it.
    pub fn new(each: Vec<(String, Regex)>) -> Result<Self, String> {
        let (written, each): (Vec<String>, Vec<Regex>) = each.into_iter().unzip();
        let set = RegexSetBuilder::new(each.iter().map(Regex::as_str))
            .size_limit(REGEX_SET_SIZE_LIMIT)
            .dfa_size_limit(REGEX_SET_SIZE_LIMIT)
            .build()
            .map_err(|e| format!("the policy's regexes together are too large: {e}"))?;
        Ok(RegexBank { set, each, written })
    }

    pub fn is_empty(&self) -> bool {
        self.each.is_empty()
    }

    pub fn len(&self) -> usize {
        self.each.len()
    }

    /// Which regexes match `text`, by index.
    pub fn matches(&self, text: &str) -> Vec<bool> {
        let m = self.set.matches(text);
        (0..self.each.len()).map(|i| m.matched(i)).collect()
    }

    pub fn pattern(&self, idx: usize) -> &str {
        &self.written[idx]
    }

    pub fn find(&self, idx: usize, text: &str) -> Option<Range<usize>> {
        self.each[idx].find(text).map(|m| m.range())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::normalize::{Normalizer, Options};

    fn matcher(mode: MatchMode, terms: &[&str]) -> (Normalizer, TermMatcher) {
        let n = Normalizer::new(Options::default());
        let mut b = TermMatcherBuilder::default();
        for (i, t) in terms.iter().enumerate() {
            b.add(mode, 0, i, &n.term_patterns(t));
        }
        (n, b.build().unwrap())
    }

    fn found(mode: MatchMode, terms: &[&str], text: &str) -> Vec<String> {
        let (n, m) = matcher(mode, terms);
        m.find(&n.readings(text))
            .into_iter()
            .map(|h| text[h.span].to_string())
            .collect()
    }

    #[test]
    fn modes_decide_what_counts() {
        assert_eq!(found(MatchMode::Word, &["ass"], "class ass"), ["ass"]);
        assert_eq!(found(MatchMode::Substring, &["ass"], "class"), ["ass"]);
        assert_eq!(
            found(MatchMode::Prefix, &["spam"], "spammer xspam"),
            ["spam"]
        );
        assert!(found(MatchMode::Word, &["spam"], "spammer").is_empty());
    }

    #[test]
    fn spans_are_in_the_original_text() {
        assert_eq!(found(MatchMode::Word, &["idiot"], "you 1D1OT!"), ["1D1OT"]);
        assert_eq!(
            found(MatchMode::Word, &["fuck"], "so f . u . c . k"),
            ["f . u . c . k"]
        );
    }

    #[test]
    fn regex_literals_fold_like_text() {
        let n = Normalizer::new(Options::default());
        let fold = |c: char| n.fold_char(c);
        let folded = fold_regex(r"FREE\s+money[m]+(?i)m*\d", &fold).unwrap();
        assert_eq!(folded, r"free\s+(?:rn)oney[m]+(?i)(?:rn)*\d");
        let re = compile_regex(&fold_regex(r"free\s+money", &fold).unwrap()).unwrap();
        // Cyrillic е and о, capitals and a run of spaces.
        assert!(re.is_match(n.primary("Frее   mоney").text()));
        assert_eq!(fold_regex(r"a\.b", &fold).unwrap(), r"a\.b");
    }

    #[test]
    fn regex_size_is_limited() {
        assert!(compile_regex("(a{1000}){1000}")
            .unwrap_err()
            .contains("too large"));
        assert!(compile_regex("a(").unwrap_err().contains("bad regex"));
        let bank = RegexBank::new(vec![
            ("b+".into(), compile_regex("b+").unwrap()),
            ("c".into(), compile_regex("c").unwrap()),
        ])
        .unwrap();
        assert_eq!(bank.matches("abbb"), [true, false]);
        assert_eq!(bank.find(0, "abbb"), Some(1..4));
    }
}
