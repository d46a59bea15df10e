//! Stage two of loading: raw structs -> a validated, compiled [`Policy`].
//!
//! Everything that can be wrong with a policy is found here, at load time, and reported with
//! the FILE:LINE:COL of the offending value (in the policy or in a list file): unknown names,
//! bad regexes, bad durations, duplicate ids, ladder steps out of order, impossible numbers.
//! Errors are collected rather than stopping at the first, so one `policy check` run shows
//! them all. What passes here can be evaluated without any further checks.

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::ops::Range;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use toml::Spanned;

use super::condition::{Condition, RatePer, RepeatScope, SenderMatch};
use super::decision::ActionKind;
use super::diagnostic::{Diagnostic, Diagnostics, Severity, Source};
use super::duration::Duration;
use super::event::{EventKind, Network};
use super::matcher::{compile_regex, fold_regex, MatchMode, RegexBank, TermMatcherBuilder};
use super::normalize::{Normalizer, Options};
use super::raw::{RawAction, RawCondition, RawList, RawPolicy, RawRule};
use super::template::Template;
use super::testcase::{Expect, TestCase};
use super::{
    ActionSpec, Decay, Escalation, List, Mode, Policy, Role, Rule, Step, Trackers, MAX_LIST_BYTES,
    MAX_POLICY_BYTES,
};

/// Conditions nest at most this deep; deeper is a mistake or an attack.
const MAX_DEPTH: usize = 32;
/// Terms across all lists.
const MAX_TERMS: usize = 500_000;
/// Regexes across all rules.
const MAX_REGEXES: usize = 2_000;
/// The largest `count` of a rate or repeat condition.
const MAX_COUNT: i64 = 1_000;

pub(super) fn compile(
    file: &str,
    text: &str,
    read_file: &mut dyn FnMut(&Path) -> io::Result<String>,
) -> Result<Policy, Diagnostics> {
    let src = Source { name: file, text };
    if text.len() > MAX_POLICY_BYTES {
        let mut d = src.diagnostic(
            Severity::Error,
            0..0,
            format!(
                "policy file is {} bytes; the limit is {} bytes",
                text.len(),
                MAX_POLICY_BYTES
            ),
        );
        d.hint = Some("move long term lists into list files (`file = \"lists/x.txt\"`)".into());
        return Err(Diagnostics(vec![d]));
    }
    let raw: RawPolicy = match toml::from_str(text) {
        Ok(raw) => raw,
        Err(e) => {
            let span = e.span().unwrap_or(0..0);
            let message = e.message().trim().replace('\n', " ");
            return Err(Diagnostics(vec![src.diagnostic(
                Severity::Error,
                span,
                message,
            )]));
        }
    };
    let mut c = Compiler {
        src,
        base: Path::new(file)
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default(),
        diags: Vec::new(),
        list_ids: HashMap::new(),
        list_used: Vec::new(),
        role_ids: HashMap::new(),
        regex_norm: Vec::new(),
        regex_raw: Vec::new(),
        normalizer: None,
        hasher: Sha256::new(),
    };
    c.hasher.update(text.as_bytes());
    let policy = c.policy(raw, read_file);
    let mut diags = Diagnostics(c.diags);
    diags.sort();
    match policy {
        Some(mut p) if !diags.has_errors() => {
            p.warnings = diags.0;
            Ok(p)
        }
        _ => Err(diags),
    }
}

struct Compiler<'a> {
    src: Source<'a>,
    base: PathBuf,
    diags: Vec<Diagnostic>,
    /// List name -> (index, is a domain list).
    list_ids: HashMap<String, (usize, bool)>,
    list_used: Vec<bool>,
    role_ids: HashMap<String, usize>,
    regex_norm: Vec<(String, regex::Regex)>,
    regex_raw: Vec<(String, regex::Regex)>,
    normalizer: Option<Normalizer>,
    hasher: Sha256,
}

impl Compiler<'_> {
    fn report(
        &mut self,
        severity: Severity,
        span: Range<usize>,
        msg: String,
        hint: Option<String>,
    ) {
        let mut d = self.src.diagnostic(severity, span, msg);
        d.hint = hint;
        self.diags.push(d);
    }

    fn error(&mut self, span: Range<usize>, msg: impl Into<String>) {
        self.report(Severity::Error, span, msg.into(), None);
    }

    fn error_hint(&mut self, span: Range<usize>, msg: impl Into<String>, hint: impl Into<String>) {
        self.report(Severity::Error, span, msg.into(), Some(hint.into()));
    }

    fn warn(&mut self, span: Range<usize>, msg: impl Into<String>) {
        self.report(Severity::Warning, span, msg.into(), None);
    }

    fn duration(&mut self, s: &Spanned<String>) -> Option<Duration> {
        match Duration::parse(s.get_ref()) {
            Ok(d) => Some(d),
            Err(e) => {
                self.error(s.span(), e);
                None
            }
        }
    }

    fn positive_duration(&mut self, s: &Spanned<String>) -> Option<Duration> {
        let d = self.duration(s)?;
        if d.as_millis() == 0 {
            self.error(s.span(), "duration must be longer than 0s");
            return None;
        }
        Some(d)
    }

    fn policy(
        &mut self,
        raw: RawPolicy,
        read_file: &mut dyn FnMut(&Path) -> io::Result<String>,
    ) -> Option<Policy> {
        let header = raw.policy.get_ref();
        if *header.format.get_ref() != 1 {
            self.error_hint(
                header.format.span(),
                format!("unsupported policy format {}", header.format.get_ref()),
                "this bridgewarden reads format = 1",
            );
        }
        let mode = match &header.mode {
            None => Mode::Enforce,
            Some(m) => match Mode::parse(m.get_ref()) {
                Some(Mode::Off) | None => {
                    self.error(
                        m.span(),
                        format!(
                            "unknown policy mode {:?}; use \"enforce\" or \"dry-run\"",
                            m.get_ref()
                        ),
                    );
                    Mode::Enforce
                }
                Some(mode) => mode,
            },
        };
        let n = &raw.normalize;
        let normalizer = Normalizer::new(Options {
            nfkc: n.nfkc,
            casefold: n.casefold,
            strip_invisible: n.strip_invisible,
            strip_formatting: n.strip_formatting,
            strip_marks: n.strip_marks,
            arabic_script: n.arabic_script,
            confusables: n.confusables,
            leetspeak: n.leetspeak,
            collapse_repeats: n.collapse_repeats,
            join_spaced_letters: n.join_spaced_letters,
        });
        self.normalizer = Some(normalizer.clone());

        let mut terms = TermMatcherBuilder::default();
        let mut lists = Vec::new();
        let mut list_spans = Vec::new();
        let mut term_count = 0;
        for (name, list) in &raw.lists {
            let idx = lists.len();
            let compiled = self.list(name, list, &normalizer, read_file, &mut terms, idx);
            term_count += compiled.terms.len();
            self.list_ids
                .insert(name.clone(), (idx, compiled.is_domains));
            lists.push(compiled);
            list_spans.push(list.span());
        }
        self.list_used = vec![false; lists.len()];
        if term_count > MAX_TERMS {
            self.error(
                0..0,
                format!("{term_count} list terms; the limit is {MAX_TERMS}"),
            );
        }

        let roles = self.roles(&raw.roles);
        let mut exempt = Vec::new();
        for r in &raw.exempt.roles {
            if let Some(id) = self.role(r) {
                exempt.push(id);
            }
        }

        let mut rules: Vec<Rule> = Vec::new();
        let mut seen_ids: HashMap<String, Range<usize>> = HashMap::new();
        for r in &raw.rule {
            let id = r.get_ref().id.get_ref();
            if let Some(first) = seen_ids.get(id) {
                let (line, col) = self.src.position(first.start);
                self.error_hint(
                    r.get_ref().id.span(),
                    format!("duplicate rule id {id:?}"),
                    format!("first defined at line {line}, column {col}; rule ids must be unique"),
                );
            } else {
                seen_ids.insert(id.clone(), r.get_ref().id.span());
            }
            if let Some(rule) = self.rule(r) {
                rules.push(rule);
            }
        }

        let (decay, ladder) = self.strikes(&raw, &rules);
        let escalation = Escalation {
            matrix_room: raw.escalation.as_ref().and_then(|e| e.matrix_room.clone()),
            irc_channel: raw.escalation.as_ref().and_then(|e| e.irc_channel.clone()),
        };
        for (i, used) in self.list_used.clone().into_iter().enumerate() {
            if !used {
                self.warn(
                    list_spans[i].clone(),
                    format!("list {:?} is never used", lists[i].name),
                );
            }
        }

        let tests = self.tests(&raw, &rules);

        let norm = std::mem::take(&mut self.regex_norm);
        let regex_norm = self.regex_bank(norm);
        let raw_regexes = std::mem::take(&mut self.regex_raw);
        let regex_raw = self.regex_bank(raw_regexes);
        let terms = match terms.build() {
            Ok(t) => Some(t),
            Err(e) => {
                self.error(0..0, e);
                None
            }
        };
        let trackers = trackers(&rules);
        let hash = format!("sha256:{:x}", std::mem::take(&mut self.hasher).finalize()).into();
        Some(Policy {
            name: header.name.clone(),
            file: self.src.name.to_string(),
            hash,
            mode,
            normalizer,
            lists,
            terms: terms?,
            regex_norm: regex_norm?,
            regex_raw: regex_raw?,
            roles,
            exempt,
            rules,
            decay,
            ladder,
            escalation,
            tests,
            trackers,
            warnings: Vec::new(),
        })
    }

    fn regex_bank(&mut self, regexes: Vec<(String, regex::Regex)>) -> Option<RegexBank> {
        match RegexBank::new(regexes) {
            Ok(bank) => Some(bank),
            Err(e) => {
                self.error(0..0, e);
                None
            }
        }
    }

    fn list(
        &mut self,
        name: &str,
        list: &Spanned<RawList>,
        normalizer: &Normalizer,
        read_file: &mut dyn FnMut(&Path) -> io::Result<String>,
        terms_out: &mut TermMatcherBuilder,
        idx: usize,
    ) -> List {
        let raw = list.get_ref();
        let is_domains = raw.domains.is_some() || raw.domains_file.is_some();
        let mut out = List {
            name: name.to_string(),
            terms: Vec::new(),
            domains: Vec::new(),
            is_domains,
            mode: MatchMode::Word,
        };
        if is_domains && (!raw.terms.is_empty() || raw.file.is_some()) {
            self.error_hint(
                list.span(),
                format!("list {name:?} has both terms and domains"),
                "make two lists: one with `terms`/`file`, one with `domains`/`domains_file`",
            );
        }
        if let Some(m) = &raw.match_mode {
            match MatchMode::parse(m.get_ref()) {
                Some(_) if is_domains => {
                    self.error(m.span(), "`match` applies to term lists, not domain lists")
                }
                Some(mode) => out.mode = mode,
                None => self.error(
                    m.span(),
                    format!(
                        "unknown match mode {:?}; use \"word\", \"substring\" or \"prefix\"",
                        m.get_ref()
                    ),
                ),
            }
        }
        // (text, where it was written) for every entry, inline or from a file.
        let mut entries: Vec<(String, Diagnostic)> = Vec::new();
        let inline = if is_domains {
            raw.domains.as_deref().unwrap_or(&[])
        } else {
            &raw.terms[..]
        };
        for t in inline {
            entries.push((
                t.get_ref().clone(),
                self.src.diagnostic(Severity::Warning, t.span(), ""),
            ));
        }
        let file = if is_domains {
            &raw.domains_file
        } else {
            &raw.file
        };
        let mut unreadable = false;
        if let Some(path) = file {
            match self.list_file(path, read_file) {
                Some(lines) => entries.extend(lines),
                None => unreadable = true,
            }
        }
        for (text, at) in entries {
            if is_domains {
                match clean_domain(&text) {
                    Ok(d) => out.domains.push(d),
                    Err(msg) => self.diags.push(Diagnostic {
                        severity: Severity::Error,
                        message: msg,
                        ..at
                    }),
                }
                continue;
            }
            let patterns = normalizer.term_patterns(&text);
            if patterns.is_empty() {
                self.diags.push(Diagnostic {
                    message: format!("term {text:?} is empty once normalised and never matches"),
                    ..at
                });
                continue;
            }
            terms_out.add(out.mode, idx, out.terms.len(), &patterns);
            out.terms.push(text);
        }
        if out.terms.is_empty() && out.domains.is_empty() && !unreadable {
            self.warn(list.span(), format!("list {name:?} is empty"));
        }
        out
    }

    /// Reads a list file: one entry per line, `#` starts a comment. None if unreadable.
    fn list_file(
        &mut self,
        path: &Spanned<String>,
        read_file: &mut dyn FnMut(&Path) -> io::Result<String>,
    ) -> Option<Vec<(String, Diagnostic)>> {
        let full = self.base.join(path.get_ref());
        let text = match read_file(&full) {
            Ok(t) => t,
            Err(e) => {
                self.error(
                    path.span(),
                    format!("cannot read list file {}: {e}", full.display()),
                );
                return None;
            }
        };
        if text.len() > MAX_LIST_BYTES {
            self.error(
                path.span(),
                format!(
                    "list file {} is {} bytes; the limit is {MAX_LIST_BYTES}",
                    full.display(),
                    text.len()
                ),
            );
            return None;
        }
        self.hasher.update(b"\0");
        self.hasher.update(full.to_string_lossy().as_bytes());
        self.hasher.update(b"\0");
        self.hasher.update(text.as_bytes());
        let name = full.display().to_string();
        let src = Source {
            name: &name,
            text: &text,
        };
        let mut out = Vec::new();
        let mut offset = 0;
        for line in text.split_inclusive('\n') {
            let content = match line.find('#') {
                Some(i) if line[..i].trim().is_empty() || line[..i].ends_with([' ', '\t']) => {
                    &line[..i]
                }
                _ => line,
            };
            let term = content.trim();
            if !term.is_empty() {
                let at = offset + (content.len() - content.trim_start().len());
                out.push((
                    term.to_string(),
                    src.diagnostic(Severity::Warning, at..at, ""),
                ));
            }
            offset += line.len();
        }
        Some(out)
    }

    fn roles(&mut self, raw: &BTreeMap<String, Spanned<super::raw::RawRole>>) -> Vec<Role> {
        let mut roles = Vec::new();
        if raw.len() > super::MAX_ROLES {
            self.error(
                0..0,
                format!(
                    "{} roles; a policy may define at most {}",
                    raw.len(),
                    super::MAX_ROLES
                ),
            );
        }
        for (name, r) in raw.iter().take(super::MAX_ROLES) {
            let span = r.span();
            let r = r.get_ref();
            let mut irc_modes = Vec::new();
            for m in &r.irc_modes {
                let mut chars = m.get_ref().chars();
                match (chars.next(), chars.next()) {
                    (Some(c), None) if c.is_ascii_alphabetic() => irc_modes.push(c),
                    _ => self.error(
                        m.span(),
                        format!(
                            "IRC mode {:?} must be one letter, like \"o\" or \"h\"",
                            m.get_ref()
                        ),
                    ),
                }
            }
            for u in &r.matrix_users {
                let u_ref = u.get_ref();
                if !(u_ref.starts_with('@') && u_ref.contains(':')) {
                    self.error(
                        u.span(),
                        format!("{u_ref:?} is not a Matrix user id (@name:server)"),
                    );
                }
            }
            if r.matrix_power_level.is_none()
                && irc_modes.is_empty()
                && r.irc_accounts.is_empty()
                && r.matrix_users.is_empty()
            {
                self.warn(
                    span,
                    format!("role {name:?} names nobody; only the daemon can assign it"),
                );
            }
            self.role_ids.insert(name.clone(), roles.len());
            roles.push(Role {
                name: name.clone(),
                matrix_power_level: r.matrix_power_level,
                irc_modes,
                irc_accounts: r.irc_accounts.clone(),
                matrix_users: r.matrix_users.iter().map(|u| u.get_ref().clone()).collect(),
            });
        }
        roles
    }

    fn role(&mut self, name: &Spanned<String>) -> Option<usize> {
        if let Some(id) = self.role_ids.get(name.get_ref()) {
            return Some(*id);
        }
        let mut known: Vec<&str> = self.role_ids.keys().map(String::as_str).collect();
        known.sort();
        let hint = if known.is_empty() {
            "define roles in a [roles] table".to_string()
        } else {
            format!("known roles: {}", known.join(", "))
        };
        self.error_hint(
            name.span(),
            format!("unknown role {:?}", name.get_ref()),
            hint,
        );
        None
    }

    fn rule(&mut self, spanned: &Spanned<RawRule>) -> Option<Rule> {
        let r = spanned.get_ref();
        let id = r.id.get_ref();
        let mut ok = true;
        if id.is_empty()
            || !id
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
        {
            self.error(
                r.id.span(),
                format!("rule id {id:?} must be made of a-z, 0-9, '_' and '-'"),
            );
            ok = false;
        }
        let on = match &r.on {
            None => vec![EventKind::Message, EventKind::Edit],
            Some(kinds) => {
                if kinds.is_empty() {
                    self.error(spanned.span(), "`on` is empty: the rule would never run");
                    ok = false;
                }
                let mut out = Vec::new();
                for k in kinds {
                    match EventKind::parse(k.get_ref()) {
                        Some(kind) => out.push(kind),
                        None => {
                            self.error(
                                k.span(),
                                format!(
                                    "unknown event kind {:?}; use message, edit, join or nick",
                                    k.get_ref()
                                ),
                            );
                            ok = false;
                        }
                    }
                }
                out
            }
        };
        let networks = match &r.networks {
            None => None,
            Some(list) => {
                let mut out = Vec::new();
                for n in list {
                    match Network::parse(n.get_ref()) {
                        Some(net) => out.push(net),
                        None => {
                            self.error(
                                n.span(),
                                format!(
                                    "unknown network {:?}; use \"irc\" or \"matrix\"",
                                    n.get_ref()
                                ),
                            );
                            ok = false;
                        }
                    }
                }
                Some(out)
            }
        };
        let mode = match &r.mode {
            None => Mode::Enforce,
            Some(m) => Mode::parse(m.get_ref()).unwrap_or_else(|| {
                self.error(
                    m.span(),
                    format!(
                        "unknown rule mode {:?}; use \"enforce\", \"dry-run\" or \"off\"",
                        m.get_ref()
                    ),
                );
                ok = false;
                Mode::Off
            }),
        };
        let when = self.condition(&r.when, 0);
        let unless = r.unless.as_ref().map(|u| self.condition(u, 0));
        let mut actions = Vec::new();
        for a in &r.actions {
            match self.action(a.get_ref(), a.span(), false) {
                Some(spec) => actions.push(spec),
                None => ok = false,
            }
        }
        let strikes = match &r.strikes {
            None => 0.0,
            Some(s) => {
                let v = *s.get_ref();
                if !(v.is_finite() && (0.0..=1000.0).contains(&v)) {
                    self.error(s.span(), "strikes must be a number from 0 to 1000");
                    ok = false;
                }
                v
            }
        };
        if r.actions.is_empty() && strikes == 0.0 {
            self.warn(
                r.id.span(),
                format!("rule {id:?} has no actions and adds no strikes"),
            );
        }
        let rooms = r
            .rooms
            .as_ref()
            .map(|rs| rs.iter().map(|x| room_key(x)).collect());
        let when = when?;
        let unless = match unless {
            Some(u) => Some(u?),
            None => None,
        };
        ok.then(|| Rule {
            id: id.clone(),
            description: r.description.clone(),
            on,
            networks,
            rooms,
            mode,
            unless,
            when,
            actions,
            strikes,
        })
    }

    fn action(&mut self, a: &RawAction, span: Range<usize>, in_ladder: bool) -> Option<ActionSpec> {
        let Some(kind) = ActionKind::parse(a.kind.get_ref()) else {
            let names: Vec<&str> = ActionKind::ALL.iter().map(|k| k.name()).collect();
            self.error_hint(
                a.kind.span(),
                format!("unknown action {:?}", a.kind.get_ref()),
                format!("actions: {}", names.join(", ")),
            );
            return None;
        };
        let mut ok = true;
        if in_ladder && kind == ActionKind::Allow {
            self.error(a.kind.span(), "a ladder step cannot `allow`");
            ok = false;
        }
        use ActionKind::*;
        let duration = match &a.duration {
            Some(d) if matches!(kind, Mute | Ban) => self.positive_duration(d),
            Some(d) => {
                self.error(
                    d.span(),
                    format!("`for` applies to mute and ban, not {}", kind.name()),
                );
                ok = false;
                None
            }
            None => None,
        };
        let message = match &a.message {
            Some(m) if matches!(kind, Warn | Escalate) => self.template(m),
            Some(m) => {
                self.error(
                    m.span(),
                    format!(
                        "`message` applies to warn and escalate, not {}",
                        kind.name()
                    ),
                );
                ok = false;
                None
            }
            None => None,
        };
        let reason = match &a.reason {
            Some(m) if matches!(kind, Kick | Ban | Mute) => self.template(m),
            Some(m) => {
                self.error(
                    m.span(),
                    format!(
                        "`reason` applies to kick, ban and mute, not {}",
                        kind.name()
                    ),
                );
                ok = false;
                None
            }
            None => None,
        };
        if a.relay && kind == Allow {
            self.warn(
                span,
                "`relay` on `allow` changes nothing: allow always relays",
            );
        }
        let failed_template =
            (a.message.is_some() && message.is_none()) || (a.reason.is_some() && reason.is_none());
        (ok && !failed_template).then_some(ActionSpec {
            kind,
            message,
            reason,
            duration,
            relay: a.relay,
        })
    }

    fn template(&mut self, t: &Spanned<String>) -> Option<Template> {
        match Template::parse(t.get_ref()) {
            Ok(tpl) => Some(tpl),
            Err((offset, msg)) => {
                // The span covers the quotes; point inside the string where the problem is.
                let at = t.span().start + 1 + offset;
                self.error(at..at, msg);
                None
            }
        }
    }

    fn condition(&mut self, spanned: &Spanned<RawCondition>, depth: usize) -> Option<Condition> {
        let span = spanned.span();
        if depth > MAX_DEPTH {
            self.error(
                span,
                format!("conditions nested deeper than {MAX_DEPTH} levels"),
            );
            return None;
        }
        let c = spanned.get_ref();
        let mut parts: Vec<Option<Condition>> = Vec::new();
        if let Some(name) = &c.list {
            parts.push(self.list_ref(name, false).map(|list| Condition::List {
                list,
                name: name.get_ref().clone(),
            }));
        }
        if let Some(name) = &c.domains {
            parts.push(self.list_ref(name, true).map(|list| Condition::Domains {
                list,
                name: name.get_ref().clone(),
            }));
        }
        if let Some(name) = &c.links_outside {
            parts.push(
                self.list_ref(name, true)
                    .map(|list| Condition::LinksOutside {
                        list,
                        name: name.get_ref().clone(),
                    }),
            );
        }
        for (pattern, raw) in [(&c.regex, false), (&c.regex_raw, true)] {
            if let Some(p) = pattern {
                parts.push(self.regex(p, raw));
            }
        }
        if let Some(b) = c.has_link {
            parts.push(Some(Condition::HasLink(b)));
        }
        if let Some(n) = &c.mentions_at_least {
            parts.push(
                self.count(n, 1, i64::from(u32::MAX), "mentions_at_least")
                    .map(Condition::MentionsAtLeast),
            );
        }
        if let Some(b) = c.mass_ping {
            parts.push(Some(Condition::MassPing(b)));
        }
        if let Some(caps) = &c.caps_ratio {
            let cr = caps.get_ref();
            if !(cr.min > 0.0 && cr.min <= 1.0) {
                self.error(
                    caps.span(),
                    "caps_ratio.min must be above 0 and at most 1 (e.g. 0.7)",
                );
                parts.push(None);
            } else {
                parts.push(Some(Condition::Caps {
                    min: cr.min,
                    min_letters: cr.min_letters as usize,
                }));
            }
        }
        if let Some(n) = &c.length_over {
            parts.push(
                self.count(n, 0, i64::from(u32::MAX), "length_over")
                    .map(Condition::LengthOver),
            );
        }
        if let Some(n) = &c.lines_over {
            parts.push(
                self.count(n, 0, i64::from(u32::MAX), "lines_over")
                    .map(Condition::LinesOver),
            );
        }
        if let Some(rate) = &c.rate {
            let r = rate.get_ref();
            let within = self.positive_duration(&r.within);
            let per = match &r.per {
                None => Some(RatePer::Sender),
                Some(p) => RatePer::parse(p.get_ref()).or_else(|| {
                    self.error(
                        p.span(),
                        format!(
                            "unknown rate scope {:?}; use sender, sender_anywhere or room",
                            p.get_ref()
                        ),
                    );
                    None
                }),
            };
            let count = self.count_in(rate.span(), i64::from(r.count), "rate.count");
            parts.push(match (within, per, count) {
                (Some(within), Some(per), Some(count)) => {
                    Some(Condition::Rate { count, within, per })
                }
                _ => None,
            });
        }
        if let Some(rep) = &c.repeat {
            let r = rep.get_ref();
            let within = self.positive_duration(&r.within);
            let count = self.count_in(rep.span(), i64::from(r.count), "repeat.count");
            let scope = RepeatScope {
                across_rooms: r.across_rooms,
                any_sender: r.any_sender,
            };
            parts.push(match (within, count) {
                (Some(within), Some(count)) => Some(Condition::Repeat {
                    count,
                    within,
                    scope,
                }),
                _ => None,
            });
        }
        if let Some(d) = &c.joined_within {
            parts.push(self.positive_duration(d).map(Condition::JoinedWithin));
        }
        if let Some(b) = c.first_message {
            parts.push(Some(Condition::FirstMessage(b)));
        }
        if let Some(s) = &c.sender {
            parts.push(self.sender(s));
        }
        if let Some(names) = &c.roles {
            let ids: Vec<Option<usize>> = names.iter().map(|n| self.role(n)).collect();
            parts.push(
                ids.into_iter()
                    .collect::<Option<Vec<_>>>()
                    .map(Condition::Roles),
            );
        }
        for (children, is_all) in [(&c.all, true), (&c.any, false)] {
            let Some(children) = children else { continue };
            if children.is_empty() {
                self.error(
                    span.clone(),
                    format!(
                        "`{}` needs at least one condition",
                        if is_all { "all" } else { "any" }
                    ),
                );
                parts.push(None);
                continue;
            }
            let compiled: Vec<Option<Condition>> = children
                .iter()
                .map(|ch| self.condition(ch, depth + 1))
                .collect();
            let mut compiled: Option<Vec<Condition>> = compiled.into_iter().collect();
            if let Some(cs) = &mut compiled {
                cs.sort_by_key(Condition::cost);
            }
            parts.push(compiled.map(|cs| {
                if is_all {
                    Condition::All(cs)
                } else {
                    Condition::Any(cs)
                }
            }));
        }
        if let Some(inner) = &c.not {
            parts.push(
                self.condition(inner, depth + 1)
                    .map(|i| Condition::Not(Box::new(i))),
            );
        }
        match parts.len() {
            0 => {
                self.error_hint(
                    span,
                    "empty condition",
                    "give at least one of: list, regex, regex_raw, domains, links_outside, has_link, mentions_at_least, mass_ping, caps_ratio, length_over, lines_over, rate, repeat, joined_within, first_message, sender, roles, all, any, not",
                );
                None
            }
            1 => parts.pop().flatten(),
            _ => {
                let mut all: Vec<Condition> = parts.into_iter().collect::<Option<Vec<_>>>()?;
                all.sort_by_key(Condition::cost);
                Some(Condition::All(all))
            }
        }
    }

    fn list_ref(&mut self, name: &Spanned<String>, want_domains: bool) -> Option<usize> {
        let Some(&(idx, is_domains)) = self.list_ids.get(name.get_ref()) else {
            let mut known: Vec<&str> = self.list_ids.keys().map(String::as_str).collect();
            known.sort();
            let hint = if known.is_empty() {
                "define it in a [lists.NAME] table".to_string()
            } else {
                format!("known lists: {}", known.join(", "))
            };
            self.error_hint(
                name.span(),
                format!("unknown list {:?}", name.get_ref()),
                hint,
            );
            return None;
        };
        self.list_used[idx] = true;
        if is_domains != want_domains {
            let (is, use_) = if is_domains {
                ("a domain list", "domains")
            } else {
                ("a term list", "list")
            };
            self.error(
                name.span(),
                format!(
                    "{:?} is {is}; refer to it with `{use_} = ...`",
                    name.get_ref()
                ),
            );
            return None;
        }
        Some(idx)
    }

    fn regex(&mut self, p: &Spanned<String>, raw: bool) -> Option<Condition> {
        let total = self.regex_norm.len() + self.regex_raw.len();
        if total >= MAX_REGEXES {
            self.error(p.span(), format!("more than {MAX_REGEXES} regexes"));
            return None;
        }
        // Errors are reported against the pattern as written; the normalised-text regex is
        // then compiled from the folded pattern.
        let compiled = compile_regex(p.get_ref()).and_then(|re| match (raw, &self.normalizer) {
            (false, Some(n)) => {
                let folded = fold_regex(p.get_ref(), &|c| n.fold_char(c))?;
                compile_regex(&folded)
            }
            _ => Ok(re),
        });
        match compiled {
            Ok(re) => {
                let bank = if raw {
                    &mut self.regex_raw
                } else {
                    &mut self.regex_norm
                };
                bank.push((p.get_ref().clone(), re));
                Some(Condition::Regex {
                    idx: bank.len() - 1,
                    raw,
                })
            }
            Err(msg) => {
                self.error(p.span(), msg.replace('\n', " "));
                None
            }
        }
    }

    fn count(&mut self, n: &Spanned<i64>, min: i64, max: i64, what: &str) -> Option<usize> {
        let v = *n.get_ref();
        if v < min || v > max {
            self.error(n.span(), format!("{what} must be between {min} and {max}"));
            return None;
        }
        Some(v as usize)
    }

    fn count_in(&mut self, span: Range<usize>, v: i64, what: &str) -> Option<usize> {
        if !(1..=MAX_COUNT).contains(&v) {
            self.error(span, format!("{what} must be between 1 and {MAX_COUNT}"));
            return None;
        }
        Some(v as usize)
    }

    fn sender(&mut self, s: &Spanned<super::raw::RawSender>) -> Option<Condition> {
        let r = s.get_ref();
        let mut ok = true;
        let network = match &r.network {
            None => None,
            Some(n) => Network::parse(n.get_ref()).or_else(|| {
                self.error(
                    n.span(),
                    format!(
                        "unknown network {:?}; use \"irc\" or \"matrix\"",
                        n.get_ref()
                    ),
                );
                ok = false;
                None
            }),
        };
        let mut roles = Vec::new();
        for name in &r.roles {
            match self.role(name) {
                Some(id) => roles.push(id),
                None => ok = false,
            }
        }
        let m = SenderMatch {
            network,
            pattern: r.pattern.as_ref().map(|p| p.to_lowercase()),
            matrix_server: r.matrix_server.as_ref().map(|p| p.to_lowercase()),
            account: r.account.clone(),
            roles,
        };
        if m.network.is_none()
            && m.pattern.is_none()
            && m.matrix_server.is_none()
            && m.account.is_none()
            && m.roles.is_empty()
            && ok
        {
            self.error(
                s.span(),
                "empty sender condition: give network, pattern, matrix_server, account or roles",
            );
            return None;
        }
        ok.then_some(Condition::Sender(m))
    }

    fn strikes(&mut self, raw: &RawPolicy, rules: &[Rule]) -> (Decay, Vec<Step>) {
        let default = Decay::Window(Duration::from_millis(24 * 3600 * 1000));
        let Some(st) = &raw.strikes else {
            return (default, Vec::new());
        };
        let s = st.get_ref();
        let decay = match (&s.decay, &s.half_life) {
            (Some(_), Some(h)) => {
                self.error(
                    h.span(),
                    "give either `decay` (a window) or `half_life`, not both",
                );
                default
            }
            (Some(d), None) => self.positive_duration(d).map_or(default, Decay::Window),
            (None, Some(h)) => self.positive_duration(h).map_or(default, Decay::HalfLife),
            (None, None) => default,
        };
        let mut ladder: Vec<Step> = Vec::new();
        let mut permanent_ban_at: Option<f64> = None;
        for step in &s.ladder {
            let raw_step = step.get_ref();
            let at = *raw_step.at.get_ref();
            if !(at.is_finite() && at > 0.0) {
                self.error(
                    raw_step.at.span(),
                    "ladder `at` must be a positive number of strikes",
                );
                continue;
            }
            if let Some(prev) = ladder.last() {
                if at <= prev.at {
                    self.error_hint(
                        raw_step.at.span(),
                        format!(
                            "ladder steps out of order: at = {at} comes after at = {}",
                            prev.at
                        ),
                        "list ladder steps by increasing `at`, each value once",
                    );
                    continue;
                }
            }
            if let Some(ban_at) = permanent_ban_at {
                self.warn(
                    step.span(),
                    format!(
                        "unreachable ladder step: a permanent ban at {ban_at} strikes comes first"
                    ),
                );
            }
            let Some(action) = self.action(&raw_step.action(), step.span(), true) else {
                continue;
            };
            if action.kind == ActionKind::Ban && action.duration.is_none() {
                permanent_ban_at.get_or_insert(at);
            }
            ladder.push(Step { at, action });
        }
        if !ladder.is_empty() && rules.iter().all(|r| r.strikes == 0.0) {
            self.warn(
                st.span(),
                "the strikes ladder is unreachable: no rule adds strikes",
            );
        }
        (decay, ladder)
    }

    fn tests(&mut self, raw: &RawPolicy, rules: &[Rule]) -> Vec<TestCase> {
        let mut out = Vec::new();
        for t in &raw.test {
            let tr = t.get_ref();
            let (line, col) = self.src.position(t.span().start);
            let mut ok = true;
            if tr.events.is_empty() {
                self.error(t.span(), format!("test {:?} has no events", tr.name));
                ok = false;
            }
            for e in &tr.events {
                if let Some(after) = &e.get_ref().after {
                    if let Err(msg) = Duration::parse(after) {
                        self.error(e.span(), msg);
                        ok = false;
                    }
                }
            }
            let expect = &tr.expect;
            for id in expect
                .rules
                .iter()
                .flatten()
                .chain(expect.dry_run.iter().flatten())
            {
                if !rules.iter().any(|r| r.id == *id) {
                    self.error(
                        t.span(),
                        format!(
                            "test {:?} expects rule {id:?}, which does not exist",
                            tr.name
                        ),
                    );
                    ok = false;
                }
            }
            for a in expect.actions.iter().flatten() {
                let (kind, duration) = match a {
                    super::raw::ExpectedAction::Name(k) => (k, None),
                    super::raw::ExpectedAction::Table { kind, duration } => {
                        (kind, duration.as_ref())
                    }
                };
                if ActionKind::parse(kind).is_none() {
                    self.error(
                        t.span(),
                        format!("test {:?} expects unknown action {kind:?}", tr.name),
                    );
                    ok = false;
                }
                if let Some(Err(msg)) = duration.map(|d| Duration::parse(d)) {
                    self.error(t.span(), msg);
                    ok = false;
                }
            }
            if ok {
                out.push(TestCase {
                    name: tr.name.clone(),
                    location: format!("{}:{line}:{col}", self.src.name),
                    events: tr.events.iter().map(|e| e.get_ref().clone()).collect(),
                    expect: Expect::from_raw(expect),
                });
            }
        }
        out
    }
}

/// How rooms are compared: IRC channels and Matrix aliases case-insensitively, room ids as is.
pub(crate) fn room_key(room: &str) -> String {
    if room.starts_with('#') {
        room.to_lowercase()
    } else {
        room.to_string()
    }
}

fn clean_domain(text: &str) -> Result<String, String> {
    let d = text.trim().trim_end_matches('.').to_lowercase();
    if d.contains("://") || d.contains('/') {
        return Err(format!(
            "{text:?} is not a bare domain; write just the domain, e.g. \"bit.ly\""
        ));
    }
    let valid = !d.is_empty()
        && d.split('.')
            .all(|l| !l.is_empty() && l.chars().all(|c| c.is_alphanumeric() || c == '-'));
    if !valid {
        return Err(format!("{text:?} is not a domain"));
    }
    Ok(d)
}

/// Which counters the rules read, so evaluation records only those.
fn trackers(rules: &[Rule]) -> Trackers {
    let mut t = Trackers::default();
    fn walk(c: &Condition, on: &[EventKind], t: &mut Trackers) {
        match c {
            Condition::Rate { count, within, per } => {
                for kind in on {
                    let pair = (kind.rate_group_id(), *per);
                    if !t.rates.contains(&pair) {
                        t.rates.push(pair);
                    }
                }
                t.rate_cap = t.rate_cap.max(*count);
                t.rate_horizon = t.rate_horizon.max(*within);
            }
            Condition::Repeat { within, scope, .. } => {
                if !t.repeats.contains(scope) {
                    t.repeats.push(*scope);
                }
                t.repeat_horizon = t.repeat_horizon.max(*within);
            }
            Condition::All(cs) | Condition::Any(cs) => cs.iter().for_each(|c| walk(c, on, t)),
            Condition::Not(c) => walk(c, on, t),
            _ => {}
        }
    }
    for r in rules {
        walk(&r.when, &r.on, &mut t);
        if let Some(u) = &r.unless {
            walk(u, &r.on, &mut t);
        }
    }
    t
}
