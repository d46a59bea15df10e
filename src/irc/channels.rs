//! What we know about the channels we are in and the people in them: who holds which
//! channel modes, and which services account each nick is logged in to.
//!
//! Fed by NAMES, JOIN, PART, KICK, QUIT, NICK, MODE, account-tag, WHOX and WHOIS replies.
//! Moderator authority is decided from this (modes and accounts), never from a nick alone.
//! Pure data; names are folded by the server's case mapping.

use std::collections::HashMap;

use super::isupport::Isupport;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Person {
    pub nick: String,
    pub ident: Option<String>,
    pub host: Option<String>,
    /// Services account; None when known not logged in or unknown.
    pub account: Option<String>,
}

#[derive(Debug, Default)]
pub struct Channels {
    /// Folded channel -> (folded nick -> modes held, as mode letters).
    members: HashMap<String, HashMap<String, String>>,
    /// Folded nick -> what we know of them.
    people: HashMap<String, Person>,
}

impl Channels {
    pub fn clear(&mut self) {
        self.members.clear();
        self.people.clear();
    }

    pub fn is_in(&self, is: &Isupport, channel: &str) -> bool {
        self.members.contains_key(&is.fold(channel))
    }

    pub fn channels(&self) -> impl Iterator<Item = &String> {
        self.members.keys()
    }

    fn person(&mut self, is: &Isupport, nick: &str) -> &mut Person {
        self.people.entry(is.fold(nick)).or_insert_with(|| Person {
            nick: nick.to_string(),
            ..Person::default()
        })
    }

    /// Records what a line's source tells about a person.
    pub fn seen(&mut self, is: &Isupport, nick: &str, ident: Option<&str>, host: Option<&str>) {
        let p = self.person(is, nick);
        if let Some(i) = ident {
            p.ident = Some(i.to_string());
        }
        if let Some(h) = host {
            p.host = Some(h.to_string());
        }
    }

    pub fn set_account(&mut self, is: &Isupport, nick: &str, account: Option<&str>) {
        self.person(is, nick).account = account
            .filter(|a| !a.is_empty() && *a != "*" && *a != "0")
            .map(String::from);
    }

    pub fn get(&self, is: &Isupport, nick: &str) -> Option<&Person> {
        self.people.get(&is.fold(nick))
    }

    pub fn join(&mut self, is: &Isupport, channel: &str, nick: &str) {
        self.members
            .entry(is.fold(channel))
            .or_default()
            .insert(is.fold(nick), String::new());
        self.person(is, nick);
    }

    /// We left (or were kicked from) a channel: forget its members.
    pub fn leave(&mut self, is: &Isupport, channel: &str) {
        self.members.remove(&is.fold(channel));
    }

    pub fn part(&mut self, is: &Isupport, channel: &str, nick: &str) {
        if let Some(m) = self.members.get_mut(&is.fold(channel)) {
            m.remove(&is.fold(nick));
        }
    }

    pub fn quit(&mut self, is: &Isupport, nick: &str) {
        let n = is.fold(nick);
        for m in self.members.values_mut() {
            m.remove(&n);
        }
        self.people.remove(&n);
    }

    pub fn rename(&mut self, is: &Isupport, old: &str, new: &str) {
        let (o, n) = (is.fold(old), is.fold(new));
        for m in self.members.values_mut() {
            if let Some(modes) = m.remove(&o) {
                m.insert(n.clone(), modes);
            }
        }
        if let Some(mut p) = self.people.remove(&o) {
            p.nick = new.to_string();
            self.people.insert(n, p);
        }
    }

    /// One entry of a NAMES reply: prefix symbols (all of them with multi-prefix), then the
    /// nick, possibly `nick!user@host` (userhost-in-names).
    pub fn names_entry(&mut self, is: &Isupport, channel: &str, entry: &str) {
        let first_plain = entry
            .char_indices()
            .find(|(_, c)| is.mode_for_symbol(*c).is_none())
            .map_or(entry.len(), |(i, _)| i);
        let (symbols, rest) = entry.split_at(first_plain);
        if rest.is_empty() {
            return;
        }
        let (nick, uh) = rest
            .split_once('!')
            .map_or((rest, None), |(n, uh)| (n, Some(uh)));
        let modes: String = symbols
            .chars()
            .filter_map(|s| is.mode_for_symbol(s))
            .collect();
        self.members
            .entry(is.fold(channel))
            .or_default()
            .insert(is.fold(nick), modes);
        if let Some((u, h)) = uh.and_then(|uh| uh.split_once('@')) {
            self.seen(is, nick, Some(u), Some(h));
        } else {
            self.person(is, nick);
        }
    }

    /// A prefix mode set or unset on a member (`+o alice`).
    pub fn member_mode(&mut self, is: &Isupport, channel: &str, nick: &str, mode: char, set: bool) {
        let Some(m) = self.members.get_mut(&is.fold(channel)) else {
            return;
        };
        let modes = m.entry(is.fold(nick)).or_default();
        modes.retain(|c| c != mode);
        if set {
            modes.push(mode);
        }
    }

    /// The channel modes a member holds (mode letters), "" when none or not a member.
    pub fn modes(&self, is: &Isupport, channel: &str, nick: &str) -> String {
        self.members
            .get(&is.fold(channel))
            .and_then(|m| m.get(&is.fold(nick)))
            .cloned()
            .unwrap_or_default()
    }

    pub fn is_member(&self, is: &Isupport, channel: &str, nick: &str) -> bool {
        self.members
            .get(&is.fold(channel))
            .is_some_and(|m| m.contains_key(&is.fold(nick)))
    }

    /// How many members a channel has.
    pub fn size(&self, is: &Isupport, channel: &str) -> usize {
        self.members.get(&is.fold(channel)).map_or(0, HashMap::len)
    }

    /// Members of a channel (folded nicks).
    pub fn members(&self, is: &Isupport, channel: &str) -> Vec<String> {
        self.members
            .get(&is.fold(channel))
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn is() -> Isupport {
        let mut i = Isupport::default();
        i.apply(&["PREFIX=(qaohv)~&@%+"]);
        i
    }

    #[test]
    fn names_modes_and_renames() {
        let is = is();
        let mut c = Channels::default();
        for e in ["@%Alice", "+bob", "carol!c@host.example", "~&@dave"] {
            c.names_entry(&is, "#Chat", e);
        }
        assert_eq!(c.modes(&is, "#chat", "alice"), "oh");
        assert_eq!(c.modes(&is, "#chat", "BOB"), "v");
        assert_eq!(
            c.get(&is, "carol").unwrap().host.as_deref(),
            Some("host.example")
        );
        assert_eq!(c.modes(&is, "#chat", "dave"), "qao");
        c.member_mode(&is, "#chat", "bob", 'o', true);
        c.member_mode(&is, "#chat", "bob", 'v', false);
        assert_eq!(c.modes(&is, "#chat", "bob"), "o");
        c.rename(&is, "bob", "robert");
        assert_eq!(c.modes(&is, "#chat", "robert"), "o");
        assert!(!c.is_member(&is, "#chat", "bob"));
        c.quit(&is, "robert");
        assert_eq!(c.size(&is, "#chat"), 3);
    }

    #[test]
    fn accounts_are_tracked_per_person() {
        let is = is();
        let mut c = Channels::default();
        c.join(&is, "#c", "alice");
        c.set_account(&is, "alice", Some("alice_acct"));
        assert_eq!(
            c.get(&is, "ALICE").unwrap().account.as_deref(),
            Some("alice_acct")
        );
        c.set_account(&is, "alice", Some("*"));
        assert_eq!(c.get(&is, "alice").unwrap().account, None);
        c.set_account(&is, "alice", Some("a"));
        c.rename(&is, "alice", "alice2");
        assert_eq!(c.get(&is, "alice2").unwrap().account.as_deref(), Some("a"));
    }
}
