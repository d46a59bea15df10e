//! Engine tests: every condition, action, ladder rule, mode, scope and exemption, and the
//! loader's diagnostics. One small policy per case, built by `policy()`.

use std::collections::HashMap;
use std::path::Path;

use super::*;

const T0: i64 = 1_700_000_000_000;

/// A policy from TOML; `files` are list files by path relative to the policy.
fn load(toml: &str, files: &[(&str, &str)]) -> Result<Policy, Diagnostics> {
    let files: HashMap<String, String> = files
        .iter()
        .map(|(p, t)| (format!("dir/{p}"), t.to_string()))
        .collect();
    Policy::from_toml("dir/p.toml", toml, &mut |path: &Path| {
        files
            .get(path.to_str().unwrap())
            .cloned()
            .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::NotFound, "No such file"))
    })
}

fn policy(body: &str) -> Policy {
    let toml = format!("[policy]\nname = \"t\"\nformat = 1\n{body}");
    match load(&toml, &[]) {
        Ok(p) => p,
        Err(d) => panic!("policy did not load:\n{d}\n{toml}"),
    }
}

/// A policy with one rule `r` that deletes when `when` holds.
fn rule(when: &str) -> Policy {
    policy(&format!(
        "[[rule]]\nid = \"r\"\nwhen = {when}\nactions = [{{ do = \"delete\" }}]\n"
    ))
}

fn msg(body: &str) -> Event {
    Event::message(Network::Irc, "#chat", "troll", body, T0)
}

/// Evaluates events in order on one state; returns the last decision.
fn run(p: &Policy, events: &[Event]) -> Decision {
    let mut state = State::new();
    let mut last = None;
    for e in events {
        last = Some(p.evaluate(e, &mut state));
    }
    last.expect("at least one event")
}

fn fires(p: &Policy, events: &[Event]) -> bool {
    run(p, events).rules == ["r"]
}

/// `n` copies of `e`, one second apart.
fn series(e: &Event, n: usize) -> Vec<Event> {
    (0..n)
        .map(|i| Event {
            ts: e.ts + i as i64 * 1000,
            ..e.clone()
        })
        .collect()
}

fn with(e: Event, f: impl FnOnce(&mut Event)) -> Event {
    let mut e = e;
    f(&mut e);
    e
}

#[test]
fn list_condition_in_each_match_mode() {
    let p = policy(
        r##"
[lists.w]
terms = ["ass"]
[lists.s]
terms = ["ass"]
match = "substring"
[lists.p]
terms = ["spam"]
match = "prefix"
[[rule]]
id = "word"
when = { list = "w" }
actions = [{ do = "block" }]
[[rule]]
id = "sub"
when = { list = "s" }
actions = [{ do = "block" }]
[[rule]]
id = "pre"
when = { list = "p" }
actions = [{ do = "block" }]
"##,
    );
    for (body, rules) in [
        ("you ass", vec!["word", "sub"]),
        ("class", vec!["sub"]),
        ("spammer", vec!["pre"]),
        ("antispam", vec![]),
        ("a$$", vec!["word", "sub"]),
    ] {
        assert_eq!(run(&p, &[msg(body)]).rules, rules, "{body}");
    }
}

#[test]
fn list_files_and_inline_terms_share_a_list() {
    let toml = r##"
[policy]
name = "t"
format = 1
[lists.x]
terms = ["moron"]
file = "lists/ru.txt"
[[rule]]
id = "r"
when = { list = "x" }
actions = [{ do = "delete" }]
"##;
    let p = load(
        toml,
        &[(
            "lists/ru.txt",
            "# comment\nурод\n  сука   # trailing comment\n\n",
        )],
    )
    .unwrap();
    for body in ["moron", "ты урод", "СУКА", "cyкa"] {
        assert!(fires(&p, &[msg(body)]), "{body}");
    }
    assert!(!fires(&p, &[msg("# comment")]));
}

#[test]
fn regex_conditions_see_normalised_or_original_text() {
    let p = rule(r##"{ regex = "free\\s+money" }"##);
    assert!(fires(&p, &[msg("FREE   MONEY")]));
    assert!(fires(&p, &[msg("fr33 m0ney")]));
    let raw = rule(r##"{ regex_raw = "^[A-Z]+$" }"##);
    assert!(fires(&raw, &[msg("HELLO")]));
    assert!(!fires(&raw, &[msg("hello")]));
    let d = run(&p, &[msg("get fr33  m0ney now")]);
    match &d.matches[0].evidence[0] {
        Evidence::Regex { matched, .. } => assert_eq!(matched, "fr33  m0ney"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn link_conditions() {
    let p = policy(
        r##"
[lists.short]
domains = ["bit.ly"]
[[rule]]
id = "r"
when = { domains = "short" }
actions = [{ do = "delete" }]
"##,
    );
    assert!(fires(&p, &[msg("see https://x.bit.ly/abc")]));
    assert!(!fires(&p, &[msg("see https://example.org")]));
    let allowed = policy(
        r##"
[lists.ok]
domains = ["example.org"]
[[rule]]
id = "r"
when = { links_outside = "ok" }
actions = [{ do = "delete" }]
"##,
    );
    assert!(!fires(
        &allowed,
        &[msg("see https://docs.example.org/x and example.org")]
    ));
    assert!(fires(
        &allowed,
        &[msg("see https://example.org and https://evil.example")]
    ));
    assert!(!fires(&allowed, &[msg("no links at all")]));
    let any = rule("{ has_link = true }");
    assert!(fires(&any, &[msg("www.example.org")]));
    assert!(!fires(&any, &[msg("main.rs is a file")]));
    let none = rule("{ has_link = false }");
    assert!(fires(&none, &[msg("no links")]));
}

#[test]
fn mention_and_mass_ping_conditions() {
    let p = rule("{ mentions_at_least = 3 }");
    let m = |names: &[&str]| {
        with(msg("hi"), |e| {
            e.mentions = names.iter().map(|s| s.to_string()).collect()
        })
    };
    assert!(fires(&p, &[m(&["a", "b", "c"])]));
    assert!(
        !fires(&p, &[m(&["a", "b", "B"])]),
        "mentions are distinct, case-insensitively"
    );
    let mass = rule("{ mass_ping = true }");
    assert!(fires(&mass, &[msg("hey @room look")]));
    assert!(fires(&mass, &[msg("@EVERYONE")]));
    assert!(!fires(&mass, &[msg("email me at x@roomservice.com")]));
    let most = with(m(&["a", "b", "c", "d"]), |e| e.room_members = Some(6));
    assert!(fires(&mass, &[most]));
    let few = with(m(&["a", "b", "c"]), |e| e.room_members = Some(100));
    assert!(!fires(&mass, &[few]));
}

#[test]
fn shape_conditions() {
    let caps = rule("{ caps_ratio = { min = 0.7, min_letters = 8 } }");
    assert!(fires(&caps, &[msg("STOP SHOUTING AT ME")]));
    assert!(fires(&caps, &[msg("ПРЕКРАТИ КРИЧАТЬ")]));
    assert!(!fires(&caps, &[msg("OK")]), "too few letters");
    assert!(!fires(&caps, &[msg("I said Hello to NASA today")]));
    assert!(
        !fires(&caps, &[msg("سلام دوستان عزیز")]),
        "no case, no shouting"
    );
    let long = rule("{ length_over = 5 }");
    assert!(fires(&long, &[msg("привет!")]));
    assert!(!fires(&long, &[msg("приве")]), "characters, not bytes");
    let lines = rule("{ lines_over = 2 }");
    assert!(fires(&lines, &[msg("a\nb\nc")]));
    assert!(!fires(&lines, &[msg("a\nb")]));
}

#[test]
fn rate_per_sender_sender_anywhere_and_room() {
    let p = rule(r##"{ rate = { count = 3, within = "10s" } }"##);
    assert!(!fires(&p, &series(&msg("x"), 2)));
    assert!(fires(&p, &series(&msg("x"), 3)));
    // Spread out: never three within 10s.
    let slow: Vec<Event> = (0..5)
        .map(|i| with(msg("x"), |e| e.ts = T0 + i * 6000))
        .collect();
    assert!(!fires(&p, &slow));
    // Per sender in this room: other rooms and other senders do not count.
    let mixed = vec![
        msg("x"),
        with(msg("x"), |e| e.room = "#other".into()),
        with(msg("x"), |e| e.sender = "bob".into()),
    ];
    let mixed: Vec<Event> = mixed
        .into_iter()
        .enumerate()
        .map(|(i, e)| Event {
            ts: T0 + i as i64,
            ..e
        })
        .collect();
    assert!(!fires(&p, &mixed));
    let anywhere = rule(r##"{ rate = { count = 3, within = "10s", per = "sender_anywhere" } }"##);
    let rooms: Vec<Event> = ["#a", "#b", "#c"]
        .iter()
        .enumerate()
        .map(|(i, r)| {
            with(msg("x"), |e| {
                e.room = r.to_string();
                e.ts = T0 + i as i64;
            })
        })
        .collect();
    assert!(fires(&anywhere, &rooms));
    let room = rule(r##"{ rate = { count = 3, within = "10s", per = "room" } }"##);
    let people: Vec<Event> = ["a", "b", "c"]
        .iter()
        .enumerate()
        .map(|(i, s)| {
            with(msg("x"), |e| {
                e.sender = s.to_string();
                e.ts = T0 + i as i64;
            })
        })
        .collect();
    assert!(fires(&room, &people));
}

#[test]
fn join_rate_detects_raids() {
    let p = policy(
        r##"
[[rule]]
id = "r"
on = ["join"]
when = { rate = { count = 5, within = "10s", per = "room" } }
actions = [{ do = "escalate" }]
"##,
    );
    let joins: Vec<Event> = (0..5)
        .map(|i| {
            with(msg(""), |e| {
                e.kind = EventKind::Join;
                e.sender = format!("bot{i}");
                e.ts = T0 + i * 100;
            })
        })
        .collect();
    assert!(fires(&p, &joins));
    assert!(!fires(&p, &joins[..4]));
    // Messages do not count towards join rates.
    let mut mixed = joins[..4].to_vec();
    mixed.insert(2, with(msg("hello"), |e| e.ts = T0 + 150));
    assert!(!fires(&p, &mixed));
}

#[test]
fn repeats_within_a_room_across_rooms_and_across_senders() {
    let p = rule(r##"{ repeat = { count = 3, within = "1m" } }"##);
    let same = ["BUY NOW", "buy now!", "b u y  n o w"];
    let evs: Vec<Event> = same
        .iter()
        .enumerate()
        .map(|(i, b)| with(msg(b), |e| e.ts = T0 + i as i64 * 1000))
        .collect();
    assert!(fires(&p, &evs), "near-identical texts are the same");
    let other_rooms: Vec<Event> = evs
        .iter()
        .enumerate()
        .map(|(i, e)| with(e.clone(), |e| e.room = format!("#r{i}")))
        .collect();
    assert!(!fires(&p, &other_rooms));
    let across = rule(r##"{ repeat = { count = 3, within = "1m", across_rooms = true } }"##);
    assert!(fires(&across, &other_rooms));
    let wave = rule(r##"{ repeat = { count = 3, within = "1m", any_sender = true } }"##);
    let senders: Vec<Event> = evs
        .iter()
        .enumerate()
        .map(|(i, e)| with(e.clone(), |e| e.sender = format!("bot{i}")))
        .collect();
    assert!(fires(&wave, &senders));
    assert!(!fires(&p, &senders));
    // Outside the window it is not a repeat.
    let slow: Vec<Event> = (0..3)
        .map(|i| with(msg("buy now"), |e| e.ts = T0 + i * 40_000))
        .collect();
    assert!(!fires(&p, &slow));
}

#[test]
fn newcomer_conditions() {
    let p = rule(r##"{ joined_within = "10m" }"##);
    assert!(fires(
        &p,
        &[with(msg("hi"), |e| e.joined_ts = Some(T0 - 60_000))]
    ));
    assert!(!fires(
        &p,
        &[with(msg("hi"), |e| e.joined_ts = Some(T0 - 3_600_000))]
    ));
    assert!(
        !fires(&p, &[msg("hi")]),
        "unknown join time is not a newcomer"
    );
    // A join event seen by the engine counts too.
    let join = with(msg(""), |e| {
        e.kind = EventKind::Join;
        e.ts = T0 - 1000;
    });
    assert!(fires(&p, &[join.clone(), msg("hi")]));

    let first = rule("{ first_message = true }");
    assert!(fires(&first, &[msg("hi")]));
    assert!(!fires(
        &first,
        &[msg("hi"), with(msg("again"), |e| e.ts += 1)]
    ));
    // A new join makes the next message a first one again.
    assert!(fires(
        &first,
        &[
            msg("hi"),
            with(join, |e| e.ts = T0 + 5),
            with(msg("back"), |e| e.ts = T0 + 10)
        ]
    ));
}

#[test]
fn sender_conditions() {
    let p = rule(r##"{ sender = { pattern = "spam*bot*" } }"##);
    assert!(fires(
        &p,
        &[with(msg("x"), |e| e.sender = "SpamXBot9".into())]
    ));
    assert!(!fires(&p, &[msg("x")]));
    let hs = rule(r##"{ sender = { matrix_server = "evil.example" } }"##);
    let m = |sender: &str| {
        with(msg("x"), |e| {
            e.network = Network::Matrix;
            e.sender = sender.into();
        })
    };
    assert!(fires(&hs, &[m("@a:Evil.Example")]));
    assert!(!fires(&hs, &[m("@a:good.example")]));
    let acct = rule(r##"{ sender = { network = "irc", account = "Bob" } }"##);
    assert!(fires(
        &acct,
        &[with(msg("x"), |e| e.account = Some("bob".into()))]
    ));
    assert!(!fires(&acct, &[msg("x")]));
}

#[test]
fn combinators_and_multi_key_tables() {
    let p = rule(r##"{ all = [{ has_link = true }, { not = { joined_within = "1d" } }] }"##);
    assert!(fires(&p, &[msg("see example.com")]));
    assert!(!fires(
        &p,
        &[with(msg("see example.com"), |e| e.joined_ts = Some(T0 - 1000))]
    ));
    let any = rule(r##"{ any = [{ length_over = 100 }, { regex = "spam" }] }"##);
    assert!(fires(&any, &[msg("spam")]));
    assert!(!fires(&any, &[msg("ham")]));
    // Several keys in one table must all hold.
    let both = rule(r##"{ has_link = true, first_message = true }"##);
    assert!(fires(&both, &[msg("example.com")]));
    assert!(!fires(
        &both,
        &[msg("hi"), with(msg("example.com"), |e| e.ts += 1)]
    ));
}

#[test]
fn actions_are_rendered_and_deduplicated() {
    let p = policy(
        r##"
[lists.bad]
terms = ["idiot"]
[[rule]]
id = "a"
description = "No insults"
when = { list = "bad" }
actions = [{ do = "delete" }, { do = "warn", message = "{sender} in {room} on {network}: {description} ({rule}, {strikes})" }, { do = "mute", for = "10m" }]
strikes = 1
[[rule]]
id = "b"
when = { list = "bad" }
actions = [{ do = "delete" }, { do = "mute", for = "1h", reason = "{description}!" }, { do = "kick", reason = "bye {sender}" }, { do = "ban", for = "1d" }, { do = "escalate" }]
"##,
    );
    let d = run(&p, &[msg("idiot")]);
    let kinds: Vec<&str> = d.actions.iter().map(|a| a.kind.name()).collect();
    assert_eq!(kinds, ["delete", "warn", "mute", "kick", "ban", "escalate"]);
    assert_eq!(
        d.actions[1].message.as_deref(),
        Some("troll in #chat on irc: No insults (a, 1)")
    );
    assert_eq!(
        d.actions[2].duration.unwrap().to_string(),
        "1h",
        "the strongest mute wins"
    );
    assert_eq!(
        d.actions[2].reason.as_deref(),
        Some("!"),
        "rule b has no description"
    );
    assert_eq!(d.actions[3].reason.as_deref(), Some("bye troll"));
    assert!(!d.relay);
}

#[test]
fn allow_stops_evaluation_and_relay_true_relays() {
    let p = policy(
        r##"
[[rule]]
id = "ok"
when = { regex = "^!" }
actions = [{ do = "allow" }]
[[rule]]
id = "r"
when = { regex = "." }
actions = [{ do = "warn", relay = true }]
"##,
    );
    let d = run(&p, &[msg("!help")]);
    assert_eq!(d.rules, ["ok"]);
    assert!(d.relay);
    let d = run(&p, &[msg("hello")]);
    assert_eq!(d.rules, ["r"]);
    assert!(d.relay, "relay = true keeps the message");
    let block = rule("{ length_over = 0 }");
    assert!(!run(&block, &[msg("x")]).relay);
}

const LADDER: &str = r##"
[lists.bad]
terms = ["idiot"]
[[rule]]
id = "r"
when = { list = "bad" }
strikes = 1
[strikes]
decay = "1h"
ladder = [
  { at = 2, do = "warn" },
  { at = 3, do = "mute", for = "10m" },
  { at = 5, do = "kick" },
]
"##;

#[test]
fn ladder_steps_fire_once_when_reached() {
    let p = policy(LADDER);
    let mut state = State::new();
    let mut steps = Vec::new();
    for i in 0..6 {
        let d = p.evaluate(&with(msg("idiot"), |e| e.ts = T0 + i * 1000), &mut state);
        steps.push((
            d.strikes,
            d.actions.iter().map(|a| a.kind.name()).collect::<Vec<_>>(),
        ));
    }
    assert_eq!(
        steps,
        [
            (1.0, vec![]),
            (2.0, vec!["warn"]),
            (3.0, vec!["mute"]),
            (4.0, vec![]),
            (5.0, vec!["kick"]),
            (6.0, vec![]),
        ]
    );
}

#[test]
fn strikes_decay_and_a_jump_fires_only_the_step_reached() {
    let p = policy(LADDER);
    let mut state = State::new();
    p.evaluate(&msg("idiot"), &mut state);
    // An hour later the first strike has decayed.
    let d = p.evaluate(&with(msg("idiot"), |e| e.ts = T0 + 3_600_000), &mut state);
    assert_eq!(d.strikes, 1.0);
    assert!(d.actions.is_empty());

    let heavy = policy(&LADDER.replace("strikes = 1\n", "strikes = 4\n"));
    let d = run(&heavy, &[msg("idiot")]);
    assert_eq!(
        d.actions.iter().map(|a| a.kind.name()).collect::<Vec<_>>(),
        ["mute"]
    );
    assert_eq!(d.ladder_step, Some(3.0));
}

#[test]
fn half_life_decay() {
    let p = policy(&LADDER.replace("decay = \"1h\"", "half_life = \"1h\""));
    let mut state = State::new();
    p.evaluate(&msg("idiot"), &mut state);
    p.evaluate(&with(msg("idiot"), |e| e.ts = T0 + 1), &mut state);
    let d = p.evaluate(&with(msg("hi"), |e| e.ts = T0 + 3_600_001), &mut state);
    assert!((d.strikes - 1.0).abs() < 0.01, "{}", d.strikes);
}

#[test]
fn strikes_follow_the_account_across_nicks_and_rooms() {
    let p = policy(LADDER);
    let a = with(msg("idiot"), |e| e.account = Some("troll".into()));
    let b = with(a.clone(), |e| {
        e.sender = "troll_".into();
        e.room = "#elsewhere".into();
        e.ts += 1000;
    });
    let d = run(&p, &[a, b]);
    assert_eq!(d.strikes, 2.0);
    let identity = with(msg("idiot"), |e| e.identity = Some("person-1".into()));
    let other = with(identity.clone(), |e| {
        e.network = Network::Matrix;
        e.sender = "@x:hs".into();
    });
    assert_eq!(run(&p, &[identity, other]).strikes, 2.0);
}

#[test]
fn modes_dry_run_and_off() {
    let dry = rule("{ length_over = 0 }");
    let base = "[[rule]]\nid = \"r\"\nwhen = { length_over = 0 }\nactions = [{ do = \"delete\" }]\nstrikes = 1\n";
    let d = run(&dry, &[msg("x")]);
    assert_eq!(d.rules, ["r"]);

    let per_rule = policy(&base.replace("strikes = 1", "strikes = 1\nmode = \"dry-run\""));
    let d = run(&per_rule, &[msg("x")]);
    assert!(d.rules.is_empty());
    assert_eq!(d.dry_run, ["r"]);
    assert_eq!(d.dry_run_actions[0].kind, ActionKind::Delete);
    assert!(d.actions.is_empty() && d.relay);
    assert_eq!(d.strikes, 0.0, "dry-run rules add no strikes");

    let global = Policy::from_toml(
        "p.toml",
        &format!("[policy]\nname = \"t\"\nformat = 1\nmode = \"dry-run\"\n{base}"),
        &mut |_: &Path| unreachable!(),
    )
    .unwrap();
    let d = run(&global, &[msg("x")]);
    assert_eq!((d.rules.len(), d.dry_run.len(), d.relay), (0, 1, true));

    let off = policy(&base.replace("strikes = 1", "strikes = 1\nmode = \"off\""));
    assert!(run(&off, &[msg("x")]).is_plain_allow());
}

#[test]
fn scopes_limit_where_rules_run() {
    let p = policy(
        r##"
[[rule]]
id = "r"
on = ["nick"]
networks = ["matrix"]
rooms = ["#Chat:hs", "!RoomId"]
when = { length_over = 0 }
actions = [{ do = "block" }]
"##,
    );
    let nick = |room: &str, network: Network| {
        with(msg("newnick"), |e| {
            e.kind = EventKind::Nick;
            e.room = room.into();
            e.network = network;
        })
    };
    assert!(
        fires(&p, &[nick("#chat:hs", Network::Matrix)]),
        "aliases are case-insensitive"
    );
    assert!(fires(&p, &[nick("!RoomId", Network::Matrix)]));
    assert!(
        !fires(&p, &[nick("!roomid", Network::Matrix)]),
        "room ids are exact"
    );
    assert!(!fires(&p, &[nick("#chat:hs", Network::Irc)]));
    assert!(!fires(
        &p,
        &[with(nick("#chat:hs", Network::Matrix), |e| e.kind =
            EventKind::Message)]
    ));
}

#[test]
fn exemptions_by_role_and_unless() {
    let p = policy(
        r##"
[roles]
moderator = { matrix_power_level = 50, irc_modes = ["o", "h"], irc_accounts = ["alice"], matrix_users = ["@carol:hs"] }
trusted = { irc_accounts = ["old"] }
[exempt]
roles = ["moderator"]
[[rule]]
id = "r"
unless = { roles = ["trusted"] }
when = { length_over = 0 }
actions = [{ do = "delete" }]
"##,
    );
    let matrix = |sender: &str, pl: i64| {
        with(msg("x"), |e| {
            e.network = Network::Matrix;
            e.sender = sender.into();
            e.power_level = Some(pl);
        })
    };
    for (e, exempt) in [
        (with(msg("x"), |e| e.irc_modes = "o".into()), true),
        (with(msg("x"), |e| e.irc_modes = "v".into()), false),
        (with(msg("x"), |e| e.account = Some("ALICE".into())), true),
        (with(msg("x"), |e| e.roles = vec!["moderator".into()]), true),
        (matrix("@x:hs", 50), true),
        (matrix("@x:hs", 0), false),
        (matrix("@carol:hs", 0), true),
        // A nick is not an account: anyone can call themselves alice.
        (with(msg("x"), |e| e.sender = "alice".into()), false),
    ] {
        let d = run(&p, std::slice::from_ref(&e));
        assert_eq!(d.exempt, exempt, "{e:?}");
        assert_eq!(d.relay, exempt || !d.rules.contains(&"r".to_string()));
    }
    let d = run(&p, &[with(msg("x"), |e| e.account = Some("old".into()))]);
    assert!(
        d.rules.is_empty() && !d.exempt,
        "unless skips the rule only"
    );
    assert!(p.holds_role(&with(msg("x"), |e| e.irc_modes = "h".into()), "moderator"));
}

#[test]
fn identity_hash_is_the_hash_of_the_identity_key() {
    for e in [
        msg("x"),
        with(msg("x"), |e| e.sender = "ТРОЛЛЬ".into()),
        with(msg("x"), |e| e.account = Some("Alice".into())),
        with(msg("x"), |e| {
            e.network = Network::Matrix;
            e.sender = "@Bob:hs".into();
        }),
        with(msg("x"), |e| e.identity = Some("Person-1".into())),
    ] {
        assert_eq!(e.identity_hash(), state::key(&[&e.identity_key()]), "{e:?}");
    }
    let d = run(
        &policy(LADDER),
        &[with(msg("idiot"), |e| e.account = Some("Troll".into()))],
    );
    assert_eq!(d.strikes, 1.0);
    let mut s = State::new();
    policy(LADDER).evaluate(
        &with(msg("idiot"), |e| e.account = Some("Troll".into())),
        &mut s,
    );
    assert_eq!(s.strikes("irc:account:troll").len(), 1);
    assert_eq!(
        s.identities_with_strikes().collect::<Vec<_>>(),
        ["irc:account:troll"]
    );
}

#[test]
fn evaluation_is_a_function_of_event_and_state() {
    let p = policy(LADDER);
    let (d1, s1) = p.evaluate_owned(&msg("idiot"), State::new());
    let (d2, s2) = p.evaluate_owned(&msg("idiot"), State::new());
    assert_eq!(d1, d2);
    assert_eq!(s1, s2);
    let (d3, _) = p.evaluate_owned(&with(msg("idiot"), |e| e.ts += 1), s1);
    assert_eq!(d3.strikes, 2.0);
}

/// Errors as "LINE:COL: message" for a policy body placed after a 3-line header.
fn errors(body: &str, files: &[(&str, &str)]) -> Vec<String> {
    let toml = format!("[policy]\nname = \"t\"\nformat = 1\n{body}");
    match load(&toml, files) {
        Ok(_) => Vec::new(),
        Err(d) => d
            .errors()
            .map(|e| format!("{}:{}:{}: {}", e.file, e.line, e.col, e.message))
            .collect(),
    }
}

fn assert_error(body: &str, files: &[(&str, &str)], at: &str, needle: &str) {
    let errs = errors(body, files);
    assert!(
        errs.iter().any(|e| e.starts_with(at) && e.contains(needle)),
        "expected {at} ... {needle}, got {errs:#?}"
    );
}

#[test]
fn diagnostics_point_at_the_problem() {
    let r = "[[rule]]\nid = \"r\"\n";
    let cases: Vec<(String, &str, &str)> = vec![
        ("[policy2]\n".into(), "dir/p.toml:4:2", "unknown field `policy2`"),
        (format!("{r}when = {{ lst = \"x\" }}\n"), "dir/p.toml:6:10", "unknown field `lst`"),
        (format!("{r}when = {{ list = \"nope\" }}\n"), "dir/p.toml:6:17", "unknown list \"nope\""),
        (format!("{r}when = {{ regex = \"a(\" }}\n"), "dir/p.toml:6:18", "bad regex"),
        (format!("{r}when = {{ regex = \"(a{{1000}}){{1000}}\" }}\n"), "dir/p.toml:6:18", "too large"),
        (format!("{r}when = {{ joined_within = \"10 minutes\" }}\n"), "dir/p.toml:6:26", "bad duration"),
        (format!("{r}when = {{ has_link = \"yes\" }}\n"), "dir/p.toml:6:21", "invalid type"),
        (format!("{r}when = {{ has_link = true }}\n{r}when = {{ has_link = true }}\n"), "dir/p.toml:8:6", "duplicate rule id"),
        (format!("{r}when = {{}}\n"), "dir/p.toml:6:8", "empty condition"),
        (format!("{r}when = {{ roles = [\"admin\"] }}\n"), "dir/p.toml:6:19", "unknown role"),
        (format!("{r}when = {{ has_link = true }}\nactions = [{{ do = \"nuke\" }}]\n"), "dir/p.toml:7:19", "unknown action"),
        (format!("{r}when = {{ has_link = true }}\nactions = [{{ do = \"kick\", for = \"1h\" }}]\n"), "dir/p.toml:7:33", "`for` applies to mute and ban"),
        (format!("{r}when = {{ has_link = true }}\nactions = [{{ do = \"warn\", message = \"hi {{sendr}}\" }}]\n"), "dir/p.toml:7:41", "unknown placeholder"),
        (format!("{r}when = {{ has_link = true }}\nstrikes = 1\n[strikes]\nladder = [{{ at = 3, do = \"warn\" }}, {{ at = 2, do = \"kick\" }}]\n"), "dir/p.toml:9:43", "ladder steps out of order"),
        (format!("{r}when = {{ rate = {{ count = 0, within = \"1s\" }} }}\n"), "dir/p.toml:6:17", "rate.count"),
        ("[lists.x]\nfile = \"missing.txt\"\n".into(), "dir/p.toml:5:8", "cannot read list file dir/missing.txt"),
        ("[lists.x]\ndomains = [\"https://bit.ly\"]\n".into(), "dir/p.toml:5:12", "not a bare domain"),
        (format!("[lists.d]\ndomains = [\"bit.ly\"]\n{r}when = {{ list = \"d\" }}\n"), "dir/p.toml:8:17", "is a domain list"),
        (format!("{r}id2 = 1\n"), "dir/p.toml:6:1", "unknown field `id2`"),
        ("[[rule]]\nid = \"Bad Id\"\nwhen = { has_link = true }\n".into(), "dir/p.toml:5:6", "must be made of"),
        ("x = = 1\n".into(), "dir/p.toml:4:", ""),
    ];
    for (body, at, needle) in cases {
        assert_error(&body, &[], at, needle);
    }
    let header = load("[policy]\nname = \"t\"\nformat = 2\n", &[]).unwrap_err();
    assert!(
        header
            .to_string()
            .starts_with("dir/p.toml:3:10: error: unsupported policy format 2"),
        "{header}"
    );
}

#[test]
fn list_file_problems_are_located_in_the_list_file() {
    let body = "[lists.x]\nfile = \"l.txt\"\n[[rule]]\nid = \"r\"\nwhen = { list = \"x\" }\nactions = [{ do = \"block\" }]\n";
    let toml = format!("[policy]\nname = \"t\"\nformat = 1\n{body}");
    let p = load(&toml, &[("l.txt", "ok\n  \u{200B}\u{200B}\n")]).unwrap();
    let w: Vec<String> = p.warnings().iter().map(|w| w.to_string()).collect();
    assert_eq!(w, ["dir/l.txt:2:3: warning: term \"\\u{200b}\\u{200b}\" is empty once normalised and never matches"]);
}

#[test]
fn warnings_do_not_stop_loading() {
    let p = policy("[lists.unused]\nterms = [\"x\"]\n[[rule]]\nid = \"r\"\nwhen = { has_link = true }\n[strikes]\nladder = [{ at = 1, do = \"ban\" }, { at = 2, do = \"kick\" }]\n");
    let w: Vec<&str> = p.warnings().iter().map(|w| w.message.as_str()).collect();
    assert!(w.iter().any(|m| m.contains("never used")), "{w:?}");
    assert!(
        w.iter()
            .any(|m| m.contains("no actions and adds no strikes")),
        "{w:?}"
    );
    assert!(
        w.iter().any(|m| m.contains("unreachable ladder step")),
        "{w:?}"
    );
    assert!(
        w.iter().any(|m| m.contains("no rule adds strikes")),
        "{w:?}"
    );
}

#[test]
fn deep_nesting_is_refused_not_overflowed() {
    let mut cond = String::from("{ has_link = true }");
    for _ in 0..40 {
        cond = format!("{{ not = {cond} }}");
    }
    let errs = errors(&format!("[[rule]]\nid = \"r\"\nwhen = {cond}\n"), &[]);
    assert!(!errs.is_empty());
}

#[test]
fn the_hash_covers_list_files() {
    let toml = "[policy]\nname = \"t\"\nformat = 1\n[lists.x]\nfile = \"l.txt\"\n[[rule]]\nid = \"r\"\nwhen = { list = \"x\" }\nactions = [{ do = \"block\" }]\n";
    let a = load(toml, &[("l.txt", "one\n")]).unwrap();
    let b = load(toml, &[("l.txt", "two\n")]).unwrap();
    assert_ne!(a.hash(), b.hash());
    assert!(a.hash().starts_with("sha256:") && a.short_hash().len() == 12);
}

#[test]
fn inline_tests_pass_and_fail() {
    let p = policy(
        r##"
[lists.bad]
terms = ["idiot"]
[[rule]]
id = "r"
when = { list = "bad" }
actions = [{ do = "mute", for = "1h" }]
[[test]]
name = "passes"
events = [{ network = "irc", room = "#c", sender = "x", body = "1d1ot" }]
expect = { rules = ["r"], actions = [{ do = "mute", for = "1h" }], relay = false }
[[test]]
name = "fails"
events = [{ network = "irc", room = "#c", sender = "x", body = "hello" }]
expect = { rules = ["r"], actions = ["delete"] }
"##,
    );
    let results = p.run_tests();
    assert!(results[0].passed(), "{:?}", results[0]);
    assert!(!results[1].passed());
    assert!(
        results[1].failures[0].contains("rules: expected [\"r\"], got []"),
        "{:?}",
        results[1]
    );
    assert!(
        results[1].location.starts_with("dir/p.toml:"),
        "{}",
        results[1].location
    );
}

mod props {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]

        /// Whatever the bytes, loading answers with a policy or diagnostics, never a panic.
        #[test]
        fn loading_never_panics(text in "\\PC{0,200}") {
            let _ = Policy::from_toml("p.toml", &text, &mut |_: &Path| Ok(String::new()));
        }

        /// Mutations of a valid policy never panic either (they reach deeper than random text).
        #[test]
        fn mutated_policies_never_panic(cut in 0usize..400, insert in "[\\[\\]{}=\"a-z0-9 ,.\\n]{0,8}") {
            let base = LADDER;
            let cut = cut.min(base.len());
            let cut = (0..=cut).rev().find(|i| base.is_char_boundary(*i)).unwrap_or(0);
            let text = format!("[policy]\nname = \"t\"\nformat = 1\n{}{}{}", &base[..cut], insert, &base[cut..]);
            let _ = Policy::from_toml("p.toml", &text, &mut |_: &Path| Ok(String::new()));
        }

        /// Evaluation of any text never panics, and a blocked message is never relayed.
        #[test]
        fn evaluation_never_panics(body in "\\PC{0,80}") {
            let p = policy(LADDER);
            let d = run(&p, &[msg(&body)]);
            prop_assert_eq!(d.relay, !d.actions.iter().any(|a| a.blocks_relay()));
        }
    }
}
