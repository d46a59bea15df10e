//! What the server told us it supports (RPL_ISUPPORT, numeric 005), and the decisions that
//! follow from it: how names compare, how long lines may be, and how to mute someone.

use std::collections::HashMap;

/// How nicks and channel names compare.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CaseMapping {
    Ascii,
    /// `[]\~` are the upper case of `{}|^` (the default).
    Rfc1459,
    /// Like rfc1459 without `~`/`^`.
    StrictRfc1459,
}

/// How to silence someone who stays in the channel, by what the server supports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MuteMethod {
    /// A `q` list mode (quiet): `+q mask`.
    QuietList,
    /// A mute extban: `+b` with `{prefix}{letter}:mask` (InspIRCd: `m:mask`).
    Extban { prefix: Option<char>, letter: char },
    /// A plain ban without kick: a banned member cannot speak on most servers (ngIRCd).
    BanWithoutKick,
}

#[derive(Debug, Clone)]
pub struct Isupport {
    tokens: HashMap<String, String>,
    /// (mode, symbol) from most to least powerful, e.g. [('o','@'), ('v','+')].
    pub prefix: Vec<(char, char)>,
    /// CHANMODES groups A (lists), B, C, D.
    pub chanmodes: [String; 4],
    pub casemapping: CaseMapping,
    /// Bytes per line, CRLF included.
    pub linelen: usize,
    pub nicklen: Option<usize>,
}

impl Default for Isupport {
    fn default() -> Self {
        Isupport {
            tokens: HashMap::new(),
            prefix: vec![('o', '@'), ('v', '+')],
            chanmodes: ["b".into(), "k".into(), "l".into(), "imnpst".into()],
            casemapping: CaseMapping::Rfc1459,
            linelen: 512,
            nicklen: None,
        }
    }
}

impl Isupport {
    /// Takes the tokens of one 005 line (its parameters without our nick and the trailing
    /// text).
    pub fn apply<S: AsRef<str>>(&mut self, tokens: &[S]) {
        for token in tokens {
            let token = token.as_ref();
            if let Some(name) = token.strip_prefix('-') {
                self.tokens.remove(name);
                continue;
            }
            let (name, value) = token.split_once('=').unwrap_or((token, ""));
            self.tokens.insert(name.to_string(), value.to_string());
            match name {
                "PREFIX" => {
                    if let Some((modes, symbols)) =
                        value.strip_prefix('(').and_then(|v| v.split_once(')'))
                    {
                        self.prefix = modes.chars().zip(symbols.chars()).collect();
                    }
                }
                "CHANMODES" => {
                    let mut groups = value.split(',').map(String::from);
                    for slot in &mut self.chanmodes {
                        *slot = groups.next().unwrap_or_default();
                    }
                }
                "CASEMAPPING" => {
                    self.casemapping = match value {
                        "ascii" => CaseMapping::Ascii,
                        "strict-rfc1459" => CaseMapping::StrictRfc1459,
                        _ => CaseMapping::Rfc1459,
                    }
                }
                "LINELEN" => self.linelen = value.parse().unwrap_or(512).max(512),
                "NICKLEN" => self.nicklen = value.parse().ok(),
                _ => {}
            }
        }
    }

    pub fn has(&self, token: &str) -> bool {
        self.tokens.contains_key(token)
    }

    pub fn get(&self, token: &str) -> Option<&str> {
        self.tokens.get(token).map(String::as_str)
    }

    /// The channel mode a prefix symbol stands for (`@` -> `o`).
    pub fn mode_for_symbol(&self, symbol: char) -> Option<char> {
        self.prefix
            .iter()
            .find(|(_, s)| *s == symbol)
            .map(|(m, _)| *m)
    }

    pub fn is_prefix_mode(&self, mode: char) -> bool {
        self.prefix.iter().any(|(m, _)| *m == mode)
    }

    /// How many parameters a channel mode letter takes when set (`+`) or unset (`-`).
    pub fn mode_takes_param(&self, mode: char, set: bool) -> bool {
        if self.is_prefix_mode(mode)
            || self.chanmodes[0].contains(mode)
            || self.chanmodes[1].contains(mode)
        {
            return true;
        }
        set && self.chanmodes[2].contains(mode)
    }

    /// How to mute: a `q` list mode if it is one (not a prefix, as on ngIRCd), else a mute
    /// extban, else a plain ban without a kick.
    pub fn mute_method(&self) -> MuteMethod {
        if self.chanmodes[0].contains('q') && !self.is_prefix_mode('q') {
            return MuteMethod::QuietList;
        }
        if let Some(value) = self.get("EXTBAN") {
            let (prefix, letters) = value.split_once(',').unwrap_or(("", value));
            if letters.contains('m') {
                return MuteMethod::Extban {
                    prefix: prefix.chars().next(),
                    letter: 'm',
                };
            }
        }
        MuteMethod::BanWithoutKick
    }

    /// Folds a nick or channel name for comparison, by the server's case mapping.
    pub fn fold(&self, name: &str) -> String {
        name.chars()
            .map(|c| match (self.casemapping, c) {
                (_, 'A'..='Z') => c.to_ascii_lowercase(),
                (CaseMapping::Ascii, _) => c,
                (_, '[') => '{',
                (_, ']') => '}',
                (_, '\\') => '|',
                (CaseMapping::Rfc1459, '~') => '^',
                _ => c,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(tokens: &str) -> Isupport {
        let mut i = Isupport::default();
        i.apply(&tokens.split(' ').collect::<Vec<_>>());
        i
    }

    #[test]
    fn inspircd_and_ngircd_as_seen_here() {
        let insp = with("CASEMAPPING=rfc1459 CHANMODES=b,k,l,MRimnprst EXTBAN=,RUm LINELEN=512 PREFIX=(ov)@+ NAMESX WHOX");
        assert_eq!(
            insp.mute_method(),
            MuteMethod::Extban {
                prefix: None,
                letter: 'm'
            }
        );
        assert_eq!(insp.mode_for_symbol('@'), Some('o'));
        assert!(insp.has("WHOX"));
        let ng = with("CASEMAPPING=ascii PREFIX=(qaohv)~&@%+ CHANMODES=beI,k,l,imMnOPQRstVz");
        assert_eq!(
            ng.mute_method(),
            MuteMethod::BanWithoutKick,
            "q is a prefix on ngIRCd"
        );
        assert_eq!(ng.mode_for_symbol('%'), Some('h'));
        assert_eq!(ng.fold("Nick[1]"), "nick[1]");
        let quiet = with("CHANMODES=beIq,k,l,imnpst PREFIX=(ov)@+");
        assert_eq!(quiet.mute_method(), MuteMethod::QuietList);
        let tilde = with("EXTBAN=~,qjncrRam");
        assert_eq!(
            tilde.mute_method(),
            MuteMethod::Extban {
                prefix: Some('~'),
                letter: 'm'
            }
        );
    }

    #[test]
    fn case_mappings() {
        let rfc = Isupport::default();
        assert_eq!(rfc.fold("A[B]\\~"), "a{b}|^");
        let strict = with("CASEMAPPING=strict-rfc1459");
        assert_eq!(strict.fold("~"), "~");
    }

    #[test]
    fn mode_parameters() {
        let i = with("CHANMODES=beI,k,l,imnst PREFIX=(ohv)@%+");
        assert!(i.mode_takes_param('o', false) && i.mode_takes_param('b', true));
        assert!(i.mode_takes_param('l', true) && !i.mode_takes_param('l', false));
        assert!(!i.mode_takes_param('m', true));
        let mut j = with("LINELEN=1024 NICKLEN=30");
        assert_eq!((j.linelen, j.nicklen), (1024, Some(30)));
        j.apply(&["-NICKLEN"]);
        assert!(!j.has("NICKLEN"));
    }
}
