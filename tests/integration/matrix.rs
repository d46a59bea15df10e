//! The Matrix adapter against a real Synapse (started per test), with a second matrix-sdk
//! client as "the other side", encrypted rooms included.

use std::time::{Duration, Instant};

use bridgewarden::chat::{ChatEvent, ChatEventKind, Command, SendKind, Target};
use bridgewarden::matrix::client::{self, MatrixAuth, MatrixConfig, MatrixError, MatrixHandle};
use bridgewarden::rich_text::RichText;
use matrix_sdk::ruma::events::room::message::RoomMessageEventContent;
use tokio::sync::mpsc;

use crate::support::matrix::{set_power, Account, Peer, Synapse, WAIT};

/// The adapter on a runtime of its own, so that "stopping the bot" drops everything.
struct Bot {
    rt: Option<tokio::runtime::Runtime>,
    handle: MatrixHandle,
    events: mpsc::UnboundedReceiver<ChatEvent>,
}

impl Bot {
    fn start(config: MatrixConfig) -> Result<Bot, MatrixError> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let (handle, events) = rt.block_on(client::start(config))?;
        Ok(Bot {
            rt: Some(rt),
            handle,
            events,
        })
    }

    fn rt(&self) -> &tokio::runtime::Runtime {
        self.rt.as_ref().unwrap()
    }

    fn exec(&self, cmd: Command) -> Result<bridgewarden::chat::Done, MatrixError> {
        let h = self.handle.clone();
        self.rt().block_on(async move { h.execute(cmd).await })
    }

    fn event(&mut self, pred: impl Fn(&ChatEvent) -> bool, timeout: Duration) -> Option<ChatEvent> {
        let deadline = Instant::now() + timeout;
        let rt = self.rt.as_ref().unwrap();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let events = &mut self.events;
            match rt.block_on(async { tokio::time::timeout(left, events.recv()).await }) {
                Ok(Some(e)) if pred(&e) => return Some(e),
                Ok(Some(_)) => continue,
                _ => return None,
            }
        }
    }

    /// All events that arrive within `wait`.
    fn drain(&mut self, wait: Duration) -> Vec<ChatEvent> {
        let mut out = Vec::new();
        while let Some(e) = self.event(|_| true, wait) {
            out.push(e);
        }
        out
    }

    fn stop(mut self) {
        if let Some(rt) = self.rt.take() {
            rt.shutdown_timeout(Duration::from_secs(5));
        }
    }
}

impl Drop for Bot {
    fn drop(&mut self) {
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}

fn bot_config(s: &Synapse, bot: &Account, dir: &std::path::Path) -> MatrixConfig {
    let mut c = MatrixConfig::new(
        "matrix",
        &s.url(),
        &bot.localpart,
        MatrixAuth::Password(bot.password.clone()),
        dir.to_path_buf(),
    );
    c.sync_timeout = Duration::from_secs(2);
    c
}

fn text_of(e: &ChatEvent) -> String {
    match &e.kind {
        ChatEventKind::Message { text }
        | ChatEventKind::Emote { text }
        | ChatEventKind::Notice { text }
        | ChatEventKind::Edit { text, .. } => text.to_plain(),
        _ => String::new(),
    }
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn the_session_is_reused_across_a_restart_without_replay_or_loss() {
    let s = Synapse::start();
    let (bot_acct, alice_acct) = (s.register("bot"), s.register("alice"));
    let data = tempfile::tempdir().unwrap();
    let peers = rt();
    let alice = peers.block_on(Peer::login(&s, &alice_acct));
    let room = peers.block_on(alice.create_room(false, &[&bot_acct.user_id]));
    let mut cfg = bot_config(&s, &bot_acct, data.path());
    cfg.rooms = vec![room.to_string()];

    let mut bot = Bot::start(cfg.clone()).unwrap();
    let device = bot.handle.device_id().unwrap();
    let devices_before = bot
        .rt()
        .block_on(bot.handle.client().devices())
        .unwrap()
        .devices
        .len();
    peers.block_on(alice.say(
        &room,
        RoomMessageEventContent::text_plain("before the restart"),
    ));
    bot.event(|e| text_of(e) == "before the restart", WAIT)
        .expect("first message");
    bot.stop();

    // Sent while the bot is down: more than one sync returns per room (100), so the oldest
    // six are skipped, and counted as a gap; the rest arrive once, in order.
    peers.block_on(async {
        for i in 0..105 {
            alice
                .say(
                    &room,
                    RoomMessageEventContent::text_plain(format!("away {i}")),
                )
                .await;
        }
        alice
            .say(
                &room,
                RoomMessageEventContent::text_plain("while you were away"),
            )
            .await;
    });
    let session = std::fs::read_to_string(data.path().join("session.json")).unwrap();
    assert!(!session.is_empty());

    let mut bot = Bot::start(cfg).unwrap();
    assert_eq!(
        bot.handle.device_id().unwrap(),
        device,
        "the same device after a restart"
    );
    peers.block_on(alice.say(
        &room,
        RoomMessageEventContent::text_plain("after the restart"),
    ));
    let seen: Vec<String> = bot
        .drain(Duration::from_secs(4))
        .iter()
        .map(text_of)
        .filter(|t| !t.is_empty())
        .collect();
    assert_eq!(
        seen.iter().filter(|t| *t == "before the restart").count(),
        0,
        "old events replayed: {seen:?}"
    );
    assert_eq!(
        seen.iter().filter(|t| *t == "while you were away").count(),
        1,
        "missed or doubled: {seen:?}"
    );
    let away: Vec<&String> = seen.iter().filter(|t| t.starts_with("away ")).collect();
    let expected: Vec<String> = (6..105).map(|i| format!("away {i}")).collect();
    assert_eq!(
        away,
        expected.iter().collect::<Vec<_>>(),
        "the newest 99 of the backlog, in order"
    );
    assert_eq!(
        bot.handle
            .stats
            .gaps
            .load(std::sync::atomic::Ordering::Relaxed),
        1
    );
    assert_eq!(
        seen.iter().filter(|t| *t == "after the restart").count(),
        1,
        "{seen:?}"
    );
    // No new device on the server: a restart is not a fresh login.
    let devices = bot.rt().block_on(bot.handle.client().devices()).unwrap();
    assert_eq!(devices.devices.len(), devices_before);
}

#[test]
fn messages_emotes_notices_edits_replies_and_mentions_both_ways() {
    let s = Synapse::start();
    let (bot_acct, alice_acct, bob_acct) =
        (s.register("bot"), s.register("alice"), s.register("bob"));
    let data = tempfile::tempdir().unwrap();
    let peers = rt();
    let mut alice = peers.block_on(Peer::login(&s, &alice_acct));
    let room = peers.block_on(alice.create_room(false, &[&bot_acct.user_id]));
    let mut cfg = bot_config(&s, &bot_acct, data.path());
    cfg.rooms = vec![room.to_string()];
    let mut bot = Bot::start(cfg).unwrap();

    let first = peers.block_on(alice.say(
        &room,
        RoomMessageEventContent::text_html("hello **there**", "hello <strong>there</strong>"),
    ));
    let e = bot
        .event(|e| text_of(e) == "hello there", WAIT)
        .expect("message");
    assert!(
        matches!(&e.kind, ChatEventKind::Message { text } if text.spans.iter().any(|s| s.style.bold))
    );
    assert_eq!(
        (e.sender.id.as_str(), e.room.as_str()),
        (alice_acct.user_id.as_str(), room.as_str())
    );
    assert!(e.sender.power_level.is_some(), "power level known");

    peers.block_on(alice.say(&room, RoomMessageEventContent::emote_plain("waves")));
    assert!(matches!(
        bot.event(|e| text_of(e) == "waves", WAIT).unwrap().kind,
        ChatEventKind::Emote { .. }
    ));
    peers.block_on(alice.say(&room, RoomMessageEventContent::notice_plain("a notice")));
    assert!(matches!(
        bot.event(|e| text_of(e) == "a notice", WAIT).unwrap().kind,
        ChatEventKind::Notice { .. }
    ));

    let edit = RoomMessageEventContent::text_plain("hello again").make_replacement(
        matrix_sdk::ruma::events::room::message::ReplacementMetadata::new(
            first.as_str().try_into().unwrap(),
            None,
        ),
    );
    peers.block_on(alice.say(&room, edit));
    let e = bot
        .event(|e| matches!(e.kind, ChatEventKind::Edit { .. }), WAIT)
        .expect("edit");
    assert_eq!(
        (
            text_of(&e),
            matches!(&e.kind, ChatEventKind::Edit { replaces, .. } if *replaces == first)
        ),
        ("hello again".into(), true)
    );

    // A reply, with a pill mentioning bob.
    let pill = format!(
        "<a href=\"https://matrix.to/#/{}\">bob</a> look",
        bob_acct.user_id
    );
    let reply = RoomMessageEventContent::text_html("bob look", pill).make_reply_to(
        matrix_sdk::ruma::events::room::message::ReplyMetadata::new(
            first.as_str().try_into().unwrap(),
            alice_acct.user_id.as_str().try_into().unwrap(),
            None,
        ),
        matrix_sdk::ruma::events::room::message::ForwardThread::No,
        matrix_sdk::ruma::events::room::message::AddMentions::No,
    );
    peers.block_on(alice.say(&room, reply));
    let e = bot
        .event(|e| text_of(e).ends_with("look"), WAIT)
        .expect("reply");
    assert_eq!(
        e.reply_to.as_ref().map(|q| q.sender.as_str()),
        Some(alice_acct.user_id.as_str()),
        "{e:?}"
    );
    assert!(e.mentions.contains(&bob_acct.user_id), "{:?}", e.mentions);

    // Outbound: relayed with the IRC nick shown, HTML escaped, no @room.
    let mut t = RichText::plain("hi <script>x</script> @room ");
    t.push(
        "bold",
        bridgewarden::rich_text::Style {
            bold: true,
            ..Default::default()
        },
    );
    bot.exec(Command::Send {
        room: room.to_string(),
        text: t,
        kind: SendKind::Message,
        from: Some("ircguy".into()),
    })
    .unwrap();
    let got = peers.block_on(alice.expect(&room, |s| s.2.starts_with("<ircguy>")));
    assert_eq!(got.2, "<ircguy> hi <script>x</script> @\u{200B}room bold");
    let html = got.3.expect("formatted body");
    assert!(
        html.contains("&lt;script&gt;")
            && !html.contains("<script>")
            && html.contains("<strong>bold</strong>"),
        "{html}"
    );
    bot.exec(Command::Send {
        room: room.to_string(),
        text: RichText::plain("waves back"),
        kind: SendKind::Emote,
        from: Some("ircguy".into()),
    })
    .unwrap();
    peers.block_on(alice.expect(&room, |s| s.2 == "* ircguy waves back"));
    bot.exec(Command::NoticeUser {
        room: room.to_string(),
        user: "alice".into(),
        text: "please be nice".into(),
    })
    .unwrap();
    peers.block_on(alice.expect(&room, |s| s.2 == "alice: please be nice"));
}

#[test]
fn encrypted_rooms_work_both_ways() {
    let s = Synapse::start();
    let (bot_acct, alice_acct) = (s.register("bot"), s.register("alice"));
    let data = tempfile::tempdir().unwrap();
    let peers = rt();
    let mut alice = peers.block_on(Peer::login(&s, &alice_acct));
    let room = peers.block_on(alice.create_room(true, &[&bot_acct.user_id]));
    let mut cfg = bot_config(&s, &bot_acct, data.path());
    // Joined through the invite, which alice is allowed to send.
    cfg.invite_from = vec![alice_acct.user_id.clone()];
    let mut bot = Bot::start(cfg).unwrap();
    let deadline = Instant::now() + WAIT;
    while bot
        .rt()
        .block_on(bot.handle.member(room.as_str(), &bot_acct.user_id))
        .is_err()
    {
        assert!(
            Instant::now() < deadline,
            "the bot did not accept alice's invite"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // Alice must know the bot's device before she encrypts to it.
    std::thread::sleep(Duration::from_millis(500));
    peers.block_on(alice.say(&room, RoomMessageEventContent::text_plain("secret hello")));
    let e = bot
        .event(|e| text_of(e) == "secret hello", WAIT)
        .expect("the bot decrypted alice's message");
    assert_eq!(e.sender.id, alice_acct.user_id);
    bot.exec(Command::Send {
        room: room.to_string(),
        text: RichText::plain("secret reply"),
        kind: SendKind::Message,
        from: Some("irc".into()),
    })
    .unwrap();
    peers.block_on(alice.expect(&room, |s| s.2 == "<irc> secret reply"));
    assert!(peers.block_on(async {
        alice
            .room(&room)
            .await
            .latest_encryption_state()
            .await
            .unwrap()
            .is_encrypted()
    }));
}

#[test]
fn redact_kick_ban_unban_and_a_mute_synapse_enforces() {
    let s = Synapse::start();
    let (bot_acct, alice_acct, bob_acct, carol_acct) = (
        s.register("bot"),
        s.register("alice"),
        s.register("bob"),
        s.register("carol"),
    );
    let data = tempfile::tempdir().unwrap();
    let peers = rt();
    let mut alice = peers.block_on(Peer::login(&s, &alice_acct));
    let bob = peers.block_on(Peer::login(&s, &bob_acct));
    let carol = peers.block_on(Peer::login(&s, &carol_acct));
    let room = peers.block_on(alice.create_room_with(
        false,
        true,
        &[&bot_acct.user_id, &bob_acct.user_id, &carol_acct.user_id],
    ));
    peers.block_on(bob.join(&room));
    peers.block_on(carol.join(&room));
    let mut cfg = bot_config(&s, &bot_acct, data.path());
    cfg.rooms = vec![room.to_string()];
    let mut bot = Bot::start(cfg).unwrap();

    // Without power: a clear error, not a silent no-op.
    let err = bot
        .exec(Command::Kick {
            room: room.to_string(),
            target: Target {
                id: bob_acct.user_id.clone(),
                ..Target::default()
            },
            reason: "x".into(),
        })
        .unwrap_err();
    assert!(
        matches!(&err, MatrixError::NoPower { action: "kick", .. }),
        "{err}"
    );
    assert!(err.to_string().contains("lacks the power"), "{err}");

    peers.block_on(set_power(&alice, &room, &bot_acct.user_id, 100));
    std::thread::sleep(Duration::from_secs(1));

    // Mute: bob's send is refused by Synapse; unmute restores it. Carol is muted right
    // after bob, before any sync could bring the first change back: the second mute must not
    // rewrite the power levels from a copy without the first.
    let mute = |who: &str| {
        bot.exec(Command::Mute {
            room: room.to_string(),
            target: Target {
                id: who.to_string(),
                ..Target::default()
            },
        })
        .expect("mute")
    };
    let muted = mute(&bob_acct.user_id);
    mute(&carol_acct.user_id);
    for (peer, who) in [(&bob, "bob"), (&carol, "carol")] {
        let r = peers.block_on(async {
            peer.room(&room)
                .await
                .send(RoomMessageEventContent::text_plain("can you hear me"))
                .await
        });
        let err = r.expect_err(&format!("muted {who} must not be able to send"));
        assert!(
            err.to_string().contains("403")
                || err.to_string().to_lowercase().contains("forbidden")
                || err.to_string().contains("power"),
            "{err}"
        );
    }
    bot.exec(Command::Unmute {
        room: room.to_string(),
        target: Target {
            id: bob_acct.user_id.clone(),
            mask: muted.detail,
            ..Target::default()
        },
    })
    .expect("unmute");
    std::thread::sleep(Duration::from_millis(500));
    let said = peers.block_on(bob.say(&room, RoomMessageEventContent::text_plain("back again")));
    peers.block_on(alice.expect(&room, |s| s.2 == "back again"));

    // Redact bob's message.
    bot.event(|e| text_of(e) == "back again", WAIT)
        .expect("the bot saw it");
    bot.exec(Command::Redact {
        room: room.to_string(),
        event_id: said.clone(),
        reason: Some("policy: insults".into()),
    })
    .expect("redact");
    let deadline = Instant::now() + WAIT;
    loop {
        let r = peers.block_on(async {
            tokio::time::timeout(Duration::from_secs(1), alice.redactions.recv()).await
        });
        if let Ok(Some(id)) = r {
            if id == said {
                break;
            }
        }
        assert!(Instant::now() < deadline, "alice never saw the redaction");
    }

    // Kick, ban (rejoin refused), unban (rejoin works).
    let bob_target = Target {
        id: bob_acct.user_id.clone(),
        ..Target::default()
    };
    bot.exec(Command::Kick {
        room: room.to_string(),
        target: bob_target.clone(),
        reason: "cool off".into(),
    })
    .expect("kick");
    peers.block_on(bob.join(&room));
    bot.exec(Command::Ban {
        room: room.to_string(),
        target: bob_target.clone(),
        reason: "enough".into(),
    })
    .expect("ban");
    let rejoin = peers.block_on(async { bob.client.join_room_by_id(&room).await });
    assert!(rejoin.is_err(), "a banned user cannot rejoin");
    bot.exec(Command::Unban {
        room: room.to_string(),
        target: bob_target,
    })
    .expect("unban");
    peers.block_on(async {
        bob.client
            .join_room_by_id(&room)
            .await
            .expect("unbanned: rejoin")
    });
}

#[test]
fn invites_are_accepted_only_from_configured_users() {
    let s = Synapse::start();
    let (bot_acct, alice_acct, mallory_acct) = (
        s.register("bot"),
        s.register("alice"),
        s.register("mallory"),
    );
    let data = tempfile::tempdir().unwrap();
    let peers = rt();
    let alice = peers.block_on(Peer::login(&s, &alice_acct));
    let mallory = peers.block_on(Peer::login(&s, &mallory_acct));
    let mut cfg = bot_config(&s, &bot_acct, data.path());
    cfg.invite_from = vec![alice_acct.user_id.clone()];
    let bot = Bot::start(cfg).unwrap();
    let spam = peers.block_on(mallory.create_room(false, &[&bot_acct.user_id]));
    let good = peers.block_on(alice.create_room(false, &[&bot_acct.user_id]));
    let deadline = Instant::now() + WAIT;
    while bot
        .rt()
        .block_on(bot.handle.member(good.as_str(), &bot_acct.user_id))
        .is_err()
    {
        assert!(Instant::now() < deadline, "alice's invite was not accepted");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        bot.rt()
            .block_on(bot.handle.member(spam.as_str(), &bot_acct.user_id))
            .is_err(),
        "mallory's invite must be declined"
    );
}

#[test]
fn a_homeserver_restart_resumes_the_sync_without_loss_or_duplicates() {
    let mut s = Synapse::start();
    let (bot_acct, alice_acct) = (s.register("bot"), s.register("alice"));
    let data = tempfile::tempdir().unwrap();
    let peers = rt();
    let alice = peers.block_on(Peer::login(&s, &alice_acct));
    let room = peers.block_on(alice.create_room(false, &[&bot_acct.user_id]));
    let mut cfg = bot_config(&s, &bot_acct, data.path());
    cfg.rooms = vec![room.to_string()];
    let mut bot = Bot::start(cfg).unwrap();
    peers.block_on(alice.say(&room, RoomMessageEventContent::text_plain("m0")));
    bot.event(|e| text_of(e) == "m0", WAIT).expect("before");
    s.restart();
    for i in 1..=5 {
        let alice_client = alice.client.clone();
        let room = room.clone();
        peers.block_on(async move {
            let deadline = Instant::now() + WAIT;
            loop {
                match alice_client
                    .get_room(&room)
                    .unwrap()
                    .send(RoomMessageEventContent::text_plain(format!("m{i}")))
                    .await
                {
                    Ok(_) => break,
                    Err(e) => {
                        assert!(
                            Instant::now() < deadline,
                            "alice cannot send after the restart: {e}"
                        );
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                }
            }
        });
    }
    let seen: Vec<String> = bot
        .drain(Duration::from_secs(8))
        .iter()
        .map(text_of)
        .filter(|t| t.starts_with('m'))
        .collect();
    assert_eq!(
        seen,
        ["m1", "m2", "m3", "m4", "m5"],
        "after the restart, each once, in order"
    );
    assert!(
        bot.handle
            .stats
            .sync_errors
            .load(std::sync::atomic::Ordering::Relaxed)
            >= 1,
        "the outage was seen"
    );
}

/// The child of `figures`: holds the adapter in the rooms it is given and idles.
/// Not a test of its own; `figures` runs it in a separate process.
#[test]
#[ignore]
fn rss_child() {
    let Ok(spec) = std::env::var("BRIDGEWARDEN_RSS_CHILD") else {
        return;
    };
    let v: serde_json::Value = serde_json::from_str(&spec).unwrap();
    let mut cfg = MatrixConfig::new(
        "matrix",
        v["homeserver"].as_str().unwrap(),
        v["user"].as_str().unwrap(),
        MatrixAuth::Password(v["password"].as_str().unwrap().into()),
        v["dir"].as_str().unwrap().into(),
    );
    cfg.rooms = v["rooms"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_str().unwrap().to_string())
        .collect();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (_handle, _events) = rt.block_on(client::start(cfg)).unwrap();
    println!("READY");
    std::thread::sleep(Duration::from_secs(600));
}

/// Figures for the issue, run by hand: `cargo test --test integration matrix::figures -- --ignored --nocapture`.
#[test]
#[ignore]
fn figures() {
    let s = Synapse::start();
    let (bot_acct, alice_acct) = (s.register("bot"), s.register("alice"));
    let peers = rt();
    let alice = peers.block_on(Peer::login(&s, &alice_acct));

    // Rooms for the RSS measurement, made first.
    let rooms: Vec<String> = (0..20)
        .map(|_| {
            peers
                .block_on(alice.create_room(false, &[&bot_acct.user_id]))
                .to_string()
        })
        .collect();

    // Latency: alice's send to the adapter's event.
    let data = tempfile::tempdir().unwrap();
    let room = peers.block_on(alice.create_room(false, &[&bot_acct.user_id]));
    let mut cfg = bot_config(&s, &bot_acct, data.path());
    cfg.rooms = vec![room.to_string()];
    cfg.sync_timeout = Duration::from_secs(30);
    let mut bot = Bot::start(cfg).unwrap();
    let mut lat = Vec::new();
    for i in 0..50 {
        let body = format!("lat-{i}");
        let started = Instant::now();
        peers.block_on(alice.say(&room, RoomMessageEventContent::text_plain(body.clone())));
        bot.event(|e| text_of(e) == body, WAIT)
            .expect("latency message");
        lat.push(started.elapsed());
        std::thread::sleep(Duration::from_millis(100));
    }
    lat.sort();
    println!(
        "send -> adapter event over 50 messages: p50 {:?} p90 {:?} max {:?}",
        lat[25], lat[45], lat[49]
    );
    bot.stop();

    // Idle RSS of a process holding the client in 20 rooms.
    let child_dir = tempfile::tempdir().unwrap();
    let spec = serde_json::json!({"homeserver": s.url(), "user": bot_acct.localpart, "password": bot_acct.password, "dir": child_dir.path(), "rooms": rooms});
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "matrix::rss_child",
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads",
            "1",
        ])
        .env("BRIDGEWARDEN_RSS_CHILD", spec.to_string())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::BufRead;
    let out = std::io::BufReader::new(child.stdout.take().unwrap());
    for line in out.lines() {
        if line.unwrap().contains("READY") {
            break;
        }
    }
    std::thread::sleep(Duration::from_secs(15));
    let status = std::fs::read_to_string(format!("/proc/{}/status", child.id())).unwrap();
    let rss = status
        .lines()
        .find(|l| l.starts_with("VmRSS"))
        .unwrap_or("VmRSS: ?")
        .to_string();
    let anon = status
        .lines()
        .find(|l| l.starts_with("RssAnon"))
        .unwrap_or("RssAnon: ?")
        .to_string();
    println!("idle, 20 rooms, after 15 s (this test binary, debug build): {rss}; {anon}");
    let _ = child.kill();
    let _ = child.wait();
}
