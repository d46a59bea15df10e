use super::*;
use crate::audit::{Actor, Scheduled, ScheduledKind};
use crate::chat::Quote;

const POLICY: &str = r##"
[policy]
name = "routing-test"
format = 1

[lists.insults]
terms = ["idiot", "идиот"]

[lists.scam]
terms = ["airdrop"]

[[rule]]
id = "insults"
when = { list = "insults" }
actions = [{ do = "delete" }, { do = "warn", message = "{sender}: no insults" }]
strikes = 1

[[rule]]
id = "scam"
when = { list = "scam" }
actions = [{ do = "ban", for = "1d", reason = "scam" }, { do = "escalate", message = "scam seen" }]

[[rule]]
id = "shouting"
mode = "dry-run"
when = { caps_ratio = { min = 0.9, min_letters = 5 } }
actions = [{ do = "mute", for = "10m" }]

[strikes]
decay = "24h"
ladder = [{ at = 2, do = "mute", for = "30m" }]
"##;

fn policy() -> Arc<Policy> {
    Arc::new(
        Policy::from_toml("test.toml", POLICY, &mut |_| {
            Err(std::io::Error::other("no files"))
        })
        .unwrap(),
    )
}

fn router() -> Router {
    Router::new(
        Routes {
            pairs: vec![Pair {
                matrix_room: "!room:hs".into(),
                matrix_name: "#chat:hs".into(),
                network: "libera".into(),
                channel: "#chat".into(),
            }],
            irc: vec![IrcRules {
                network: "libera".into(),
                moderator_modes: "oh".into(),
                moderator_accounts: vec!["staffer".into()],
            }],
            matrix_power_level: 50,
            command_prefix: "!".into(),
            moderation_rooms: vec![Place::new(MATRIX, "!mods:hs")],
            ignore_senders: vec![regex::Regex::new(r"^telegram_.*|^@_discord_").unwrap()],
        },
        policy(),
    )
}

const T0: i64 = 1_700_000_000_000;

fn irc(nick: &str, text: &str) -> ChatEvent {
    ChatEvent {
        network: "libera".into(),
        room: "#chat".into(),
        sender: User {
            id: nick.into(),
            name: nick.into(),
            ident: Some("u".into()),
            host: Some("host.example".into()),
            ..User::default()
        },
        kind: ChatEventKind::Message {
            text: RichText::plain(text),
        },
        ts: T0,
        id: None,
        mentions: vec![],
        reply_to: None,
        own: false,
    }
}

fn mx(user: &str, text: &str) -> ChatEvent {
    ChatEvent {
        network: MATRIX.into(),
        room: "!room:hs".into(),
        sender: User {
            id: user.into(),
            name: user
                .trim_start_matches('@')
                .split(':')
                .next()
                .unwrap()
                .into(),
            power_level: Some(0),
            ..User::default()
        },
        id: Some("$ev1".into()),
        ..irc("x", text)
    }
}

fn op(mut e: ChatEvent) -> ChatEvent {
    e.sender.channel_modes = "o".into();
    e.sender.power_level = Some(100);
    e
}

/// A compact picture of effects for assertions.
fn shape(effects: &[Effect]) -> Vec<String> {
    effects
        .iter()
        .map(|e| match e {
            Effect::Record(entry) => format!("record {}", entry.kind()),
            Effect::Strike { identity, .. } => format!("strike {identity}"),
            Effect::ClearStrikes { identity } => format!("clear {identity}"),
            Effect::Relay { to, command } => format!("relay {to}: {}", sent(command)),
            Effect::Say { to, command } => format!("say {to}: {}", sent(command)),
            Effect::Act(a) => format!(
                "act {} {} at {}",
                a.record.action, a.record.target.name, a.at
            ),
            Effect::Query(q) => format!("query {q:?}"),
            Effect::ReloadPolicy { .. } => "reload".into(),
        })
        .collect()
}

fn sent(c: &Command) -> String {
    match c {
        Command::Send { text, from, .. } => match from {
            Some(f) => format!("<{f}> {}", text.to_plain()),
            None => text.to_plain(),
        },
        Command::NoticeUser { user, text, .. } => format!("{user}: {text}"),
        other => format!("{other:?}"),
    }
}

#[test]
fn clean_messages_are_relayed_both_ways_and_nothing_else() {
    let mut r = router();
    assert_eq!(
        shape(&r.handle(&irc("alice", "hello"))),
        ["relay matrix !room:hs: <alice> hello"]
    );
    assert_eq!(
        shape(&r.handle(&mx("@bob:hs", "hi there"))),
        ["relay libera #chat: <bob> hi there"]
    );
    // Unbridged rooms and private messages are not relayed.
    let mut pm = irc("alice", "hello");
    pm.room = "alice".into();
    assert!(r.handle(&pm).is_empty());
}

#[test]
fn kinds_keep_their_shape_across() {
    let mut r = router();
    let mut e = mx("@bob:hs", "waves");
    e.kind = ChatEventKind::Emote {
        text: RichText::plain("waves"),
    };
    match &r.handle(&e)[0] {
        Effect::Relay {
            command: Command::Send { kind, .. },
            ..
        } => assert_eq!(*kind, SendKind::Emote),
        other => panic!("{other:?}"),
    }
    let mut e = mx("@bob:hs", "");
    e.kind = ChatEventKind::Edit {
        text: RichText::plain("fixed"),
        replaces: "$1".into(),
    };
    assert_eq!(shape(&r.handle(&e)), ["relay libera #chat: <bob> * fixed"]);
    let mut e = mx("@bob:hs", "me too");
    e.reply_to = Some(Quote {
        event_id: "$0".into(),
        sender: "@carol:hs".into(),
    });
    assert_eq!(
        shape(&r.handle(&e)),
        ["relay libera #chat: <bob> carol: me too"]
    );
    // Joins are evaluated, never relayed.
    let mut e = irc("dave", "");
    e.kind = ChatEventKind::Join;
    assert!(r.handle(&e).is_empty());
}

#[test]
fn own_messages_and_other_bridges_are_never_relayed() {
    let mut r = router();
    let mut own = irc("bridgewarden", "<bob> hi");
    own.own = true;
    assert!(r.handle(&own).is_empty());
    assert!(r.handle(&irc("telegram_bot", "[tg] <x> hi")).is_empty());
    assert!(r.handle(&mx("@_discord_123:hs", "hi")).is_empty());
    // Not even evaluated: an insult from another bridge costs nobody a strike.
    assert!(r.handle(&irc("telegram_bot", "idiot")).is_empty());
}

#[test]
fn a_violation_is_recorded_then_acted_on_and_not_relayed() {
    let mut r = router();
    let effects = r.handle(&mx("@troll:hs", "you idiot"));
    assert_eq!(
        shape(&effects),
        [
            "record decision",
            "strike matrix:@troll:hs",
            "act delete @troll:hs at matrix !room:hs",
            "act warn @troll:hs at matrix !room:hs",
        ]
    );
    let Effect::Record(Entry::Decision(d)) = &effects[0] else {
        unreachable!()
    };
    assert_eq!(d.rules, ["insults"]);
    assert!(!d.relayed);
    assert_eq!(d.event_id.as_deref(), Some("$ev1"));
    assert!(
        d.explanation[0].starts_with("insults: list \"insults\": term \"idiot\""),
        "{:?}",
        d.explanation
    );
    let Effect::Act(redact) = &effects[2] else {
        unreachable!()
    };
    assert!(matches!(&redact.command, Command::Redact { event_id, .. } if event_id == "$ev1"));
    assert!(matches!(&redact.record.actor, Actor::Policy { rule } if rule == "insults"));
    assert_eq!(redact.report_failure, [Place::new(MATRIX, "!mods:hs")]);
}

#[test]
fn on_irc_a_delete_is_not_relaying_and_the_warning_is_a_notice() {
    let mut r = router();
    let effects = r.handle(&irc("troll", "ты идиот"));
    assert_eq!(
        shape(&effects),
        [
            "record decision",
            "strike irc:libera:nick:troll",
            "act warn troll at libera #chat"
        ]
    );
    let Effect::Act(warn) = &effects[2] else {
        unreachable!()
    };
    assert_eq!(sent(&warn.command), "troll: troll: no insults");
}

#[test]
fn strikes_follow_the_account_across_nicks_and_climb_the_ladder() {
    let mut r = router();
    let mut first = irc("troll", "idiot");
    first.sender.account = Some("TrollAcct".into());
    r.handle(&first);
    let mut second = irc("troll_", "idiot again");
    second.sender.account = Some("trollacct".into());
    second.ts += 1000;
    let effects = r.handle(&second);
    let s = shape(&effects);
    assert!(
        s.contains(&"strike irc:libera:account:trollacct".to_string()),
        "{s:?}"
    );
    let mute = effects.iter().find_map(|e| match e {
        Effect::Act(a) if a.record.action == "mute" => Some(a),
        _ => None,
    });
    let mute = mute.expect("the ladder mutes at 2 strikes");
    assert_eq!(mute.undo_after, Some(std::time::Duration::from_secs(1800)));
    assert!(
        matches!(&mute.command, Command::Mute { target, .. } if target.id == "troll_" && target.host.as_deref() == Some("host.example"))
    );
}

#[test]
fn timed_bans_are_undone_and_escalations_reach_the_moderators() {
    let mut r = router();
    let effects = r.handle(&irc("spammer", "free airdrop"));
    let s = shape(&effects);
    assert_eq!(s[0], "record decision");
    let ban = effects.iter().find_map(|e| match e {
        Effect::Act(a) if a.record.action == "ban" => Some(a),
        _ => None,
    });
    let ban = ban.unwrap();
    assert_eq!(ban.undo_after, Some(std::time::Duration::from_secs(86_400)));
    assert!(matches!(&ban.command, Command::Ban { reason, .. } if reason == "scam"));
    let esc = effects.iter().find_map(|e| match e {
        Effect::Act(a) if a.record.action == "escalate" => Some(a),
        _ => None,
    });
    let esc = esc.unwrap();
    assert_eq!(esc.at, Place::new(MATRIX, "!mods:hs"));
    assert!(esc.cite_case);
    assert!(
        sent(&esc.command).contains("scam seen - spammer in libera #chat: \"free airdrop\""),
        "{}",
        sent(&esc.command)
    );
}

#[test]
fn dry_run_rules_are_recorded_but_nothing_happens() {
    let mut r = router();
    let effects = r.handle(&irc("loud", "HELLO EVERYONE"));
    assert_eq!(
        shape(&effects),
        [
            "record decision",
            "relay matrix !room:hs: <loud> HELLO EVERYONE"
        ]
    );
    let Effect::Record(Entry::Decision(d)) = &effects[0] else {
        unreachable!()
    };
    assert_eq!(d.dry_run, ["shouting"]);
    assert!(d.relayed);
}

#[test]
fn moderators_are_never_evaluated() {
    let mut r = router();
    assert_eq!(
        shape(&r.handle(&op(irc("chanop", "idiot")))),
        ["relay matrix !room:hs: <chanop> idiot"]
    );
    assert_eq!(
        shape(&r.handle(&op(mx("@admin:hs", "idiot")))),
        ["relay libera #chat: <admin> idiot"]
    );
    let mut staff = irc("whoever", "idiot");
    staff.sender.account = Some("Staffer".into());
    assert_eq!(
        shape(&r.handle(&staff)),
        ["relay matrix !room:hs: <whoever> idiot"]
    );
}

#[test]
fn commands_are_authorised_by_power_modes_or_account_never_by_nick() {
    let mut r = router();
    // A nick-taker: the same nick as the op, without the op's modes or account.
    for e in [
        irc("chanop", "!kick bob"),
        mx("@admin:hs", "!kick bob"),
        irc("x", "!help"),
    ] {
        let s = shape(&r.handle(&e));
        // The line is chat (relayed, as the policy allows it), then refused.
        assert!(s[0].starts_with("relay "), "{s:?}");
        assert_eq!(s[1], "record command", "{s:?}");
        assert!(
            s[2].contains("only moderators can use ! commands here"),
            "{s:?}"
        );
    }
    // A command word is no way around the policy: judged like any line, and no refusal
    // (the policy's warning says enough).
    let s = shape(&r.handle(&irc("x", "!warn you idiot")));
    assert_eq!(
        s,
        [
            "record decision",
            "strike irc:libera:nick:x",
            "act warn x at libera #chat"
        ]
    );
    let s = shape(&r.handle(&op(irc("chanop", "!kick bob spam"))));
    assert_eq!(s, ["record command", "act kick bob at libera #chat"]);
    let mut staff = irc("whoever", "!kick bob");
    staff.sender.account = Some("staffer".into());
    assert_eq!(shape(&r.handle(&staff))[1], "act kick bob at libera #chat");
    // Ordinary lines that merely start with the prefix are chat.
    assert_eq!(
        shape(&r.handle(&irc("x", "!!! wow"))),
        ["relay matrix !room:hs: <x> !!! wow"]
    );
}

#[test]
fn a_nick_taker_does_not_inherit_the_owners_account() {
    let mut r = router();
    let mut alice = irc("alice", "hello");
    alice.sender.account = Some("alice".into());
    r.handle(&alice);
    // alice leaves; someone else takes the nick, not logged in.
    let mut taker = irc("alice", "hi all");
    taker.sender.host = Some("elsewhere.example".into());
    r.handle(&taker);
    let effects = r.handle(&op(irc("chanop", "!ban alice 1d")));
    let ban = effects
        .iter()
        .find_map(|e| match e {
            Effect::Act(a) => Some(a),
            _ => None,
        })
        .expect("a ban");
    let Command::Ban { target, .. } = &ban.command else {
        panic!("{:?}", ban.command)
    };
    assert_eq!(
        target.account, None,
        "the ban must not hit the account owner"
    );
    assert_eq!(target.host.as_deref(), Some("elsewhere.example"));
    assert_eq!(ban.record.target.identity, "irc:libera:nick:alice");
}

#[test]
fn commands_act_on_the_side_the_target_lives_on() {
    let mut r = router();
    let cases: &[(ChatEvent, &str)] = &[
        (
            op(irc("chanop", "!mute bob 10m")),
            "act mute bob at libera #chat",
        ),
        (
            op(irc("chanop", "!ban @eve:hs 1d spam")),
            "act ban @eve:hs at matrix !room:hs",
        ),
        (
            op(mx("@admin:hs", "!kick @eve:hs")),
            "act kick @eve:hs at matrix !room:hs",
        ),
        (
            op(mx("@admin:hs", "!unban bob")),
            "act unban bob at libera #chat",
        ),
        (
            op(mx("@admin:hs", "!unmute bob")),
            "act unmute bob at libera #chat",
        ),
        (
            op(mx("@admin:hs", "!warn bob be nice")),
            "act warn bob at libera #chat",
        ),
    ];
    for (e, expected) in cases {
        let effects = r.handle(e);
        assert_eq!(shape(&effects)[1], *expected);
        let Effect::Act(a) = &effects[1] else {
            unreachable!()
        };
        assert!(matches!(&a.record.actor, Actor::Moderator { who } if who.name == e.sender.id));
        assert_eq!(
            a.report_failure,
            [
                Place::new(&e.network, &e.room),
                Place::new(MATRIX, "!mods:hs")
            ]
        );
    }
    let effects = r.handle(&op(irc("chanop", "!mute bob 10m")));
    let Effect::Act(a) = &effects[1] else {
        unreachable!()
    };
    assert_eq!(a.undo_after, Some(std::time::Duration::from_secs(600)));
    assert_eq!(a.record.duration.as_deref(), Some("10m"));
}

#[test]
fn command_replies_and_queries() {
    let mut r = router();
    r.handle(&mx("@troll:hs", "idiot"));
    let s = shape(&r.handle(&op(irc("chanop", "!strikes show @troll:hs"))));
    assert!(
        s[1].starts_with("say libera #chat: @troll:hs has 1 strike(s) now"),
        "{s:?}"
    );
    let s = shape(&r.handle(&op(irc("chanop", "!strikes clear @troll:hs"))));
    assert_eq!(s[1], "clear matrix:@troll:hs");
    let s = shape(&r.handle(&op(irc("chanop", "!strikes show @troll:hs"))));
    assert!(s[1].contains("has 0 strike(s)"), "{s:?}");
    let s = shape(&r.handle(&op(mx("@admin:hs", "!audit bob -n 3"))));
    assert!(
        s[1].contains("Audit { identity: \"irc:libera:nick:bob\", name: \"bob\", limit: 3"),
        "{s:?}"
    );
    let s = shape(&r.handle(&op(mx("@admin:hs", "!why @troll:hs"))));
    assert!(
        s[1].contains("WhyUser { identity: \"matrix:@troll:hs\""),
        "{s:?}"
    );
    let mut reply = op(mx("@admin:hs", "!why"));
    reply.reply_to = Some(Quote {
        event_id: "$bad".into(),
        sender: "@troll:hs".into(),
    });
    assert!(shape(&r.handle(&reply))[1].contains("WhyEvent { event_id: \"$bad\""));
    let s = shape(&r.handle(&op(mx("@admin:hs", "!why"))));
    assert!(
        s[0] == "record command" && s[1].contains("say whose decision"),
        "{s:?}"
    );
    let s = shape(&r.handle(&op(mx("@admin:hs", "!policy status"))));
    assert!(
        s[1].contains("policy \"routing-test\"") && s[1].contains("3 rule(s)"),
        "{s:?}"
    );
    assert_eq!(
        shape(&r.handle(&op(mx("@admin:hs", "!policy reload"))))[1],
        "reload"
    );
    let s = shape(&r.handle(&op(irc("chanop", "!policy test you 1d10t"))));
    assert!(s[1].contains("delete, warn"), "{s:?}");
    assert!(
        s.iter()
            .any(|l| l.contains("term \"idiot\" matched \"1d10t\"")),
        "{s:?}"
    );
    // Testing does not cost anyone a strike.
    let s = shape(&r.handle(&op(irc("chanop", "!strikes show policy-test"))));
    assert!(s[1].contains("0 strike(s)"), "{s:?}");
    // Help goes line by line on IRC, in one notice on Matrix.
    assert!(r.handle(&op(irc("chanop", "!help"))).len() > 5);
    assert_eq!(r.handle(&op(mx("@admin:hs", "!help"))).len(), 1);
}

#[test]
fn commands_outside_a_bridged_room_say_where_to_use_them() {
    let mut r = router();
    let mut e = op(mx("@admin:hs", "!kick bob"));
    e.room = "!mods:hs".into();
    let s = shape(&r.handle(&e));
    assert!(s[1].contains("use this command in a bridged room"), "{s:?}");
    // Queries work anywhere.
    e.kind = ChatEventKind::Message {
        text: RichText::plain("!policy status"),
    };
    assert!(shape(&r.handle(&e))[1].contains("policy \"routing-test\""));
}

#[test]
fn schedule_undo_restores_the_applied_mask() {
    let r = router();
    let stored = StoredTarget {
        id: "bob".into(),
        account: None,
        mask: Some("m:*!u@host".into()),
    };
    let s = Scheduled {
        id: 7,
        due: T0,
        kind: ScheduledKind::Unmute,
        network: "libera".into(),
        room: "#chat".into(),
        target: serde_json::to_string(&stored).unwrap(),
        case: 3,
    };
    let effects = r.undo(&s);
    let Effect::Act(a) = &effects[0] else {
        unreachable!()
    };
    assert!(
        matches!(&a.command, Command::Unmute { target, .. } if target.mask.as_deref() == Some("m:*!u@host"))
    );
    assert_eq!(a.record.actor, Actor::Schedule);
}

#[test]
fn policy_swaps_keep_strikes() {
    let mut r = router();
    r.handle(&mx("@troll:hs", "idiot"));
    r.set_policy(policy());
    let s = shape(&r.handle(&op(mx("@admin:hs", "!strikes show @troll:hs"))));
    assert!(s[1].contains("has 1 strike(s)"), "{s:?}");
}

#[test]
fn clip_cuts_on_characters() {
    assert_eq!(clip("привет", 3), "при…");
    assert_eq!(clip("hi", 3), "hi");
}

proptest::proptest! {
    /// Whatever arrives, the core never panics, never relays a message the policy blocked, and
    /// records every decision before any action it causes.
    #[test]
    fn records_come_before_actions(texts in proptest::collection::vec("(idiot|airdrop|HELLO WORLD|hi|!kick x|!mute y 5m|[a-zA-Z !@:]{0,20})", 1..12), mods in proptest::collection::vec(proptest::bool::ANY, 12)) {
        let mut r = router();
        for (i, t) in texts.iter().enumerate() {
            let mut e = if i % 2 == 0 { irc("user", t) } else { mx("@user:hs", t) };
            if mods[i] { e = op(e); }
            e.ts = T0 + i as i64 * 1000;
            let effects = r.handle(&e);
            let first_act = effects.iter().position(|e| matches!(e, Effect::Act(_)));
            let first_record = effects.iter().position(|e| matches!(e, Effect::Record(_)));
            if let Some(a) = first_act {
                proptest::prop_assert!(first_record.is_some_and(|r| r < a), "{:?}", shape(&effects));
            }
            for e in &effects {
                if let Effect::Record(Entry::Decision(d)) = e {
                    let relayed = effects.iter().any(|e| matches!(e, Effect::Relay { .. }));
                    proptest::prop_assert_eq!(d.relayed, relayed);
                }
            }
        }
    }
}
