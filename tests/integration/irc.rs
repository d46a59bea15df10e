//! The IRC adapter against real servers: InspIRCd with Atheme (accounts, SASL, IRCv3, the
//! mute extban) and ngIRCd (no SASL, no quiet mode: the fallbacks). Each test starts its own
//! servers on free ports; "the other side" is a raw socket client.

use std::time::{Duration, Instant};

use bridgewarden::chat::{ChatEvent, ChatEventKind, Command, Done, SendKind, Target};
use bridgewarden::irc::client::{self, IrcConfig, IrcError, IrcHandle, Sasl, Status};
use bridgewarden::irc::isupport::MuteMethod;
use bridgewarden::rich_text::RichText;
use tokio::sync::mpsc;

use crate::support::free_port;
use crate::support::irc::{InspIrcd, NgIrcd, RawClient};

const WAIT: Duration = Duration::from_secs(10);

/// The adapter on a runtime of its own, driven from a plain test thread (the raw clients
/// block on their sockets).
struct Bot {
    rt: tokio::runtime::Runtime,
    handle: IrcHandle,
    events: mpsc::Receiver<ChatEvent>,
}

impl Bot {
    fn start(config: IrcConfig) -> Bot {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let (handle, events) = {
            let _guard = rt.enter();
            client::spawn(config)
        };
        Bot { rt, handle, events }
    }

    fn exec(&self, cmd: Command) -> Result<Done, IrcError> {
        self.rt.block_on(self.handle.execute(cmd))
    }

    /// Queues a command now (in call order) without waiting for its outcome.
    fn exec_later(&self, cmd: Command) -> tokio::task::JoinHandle<Result<Done, IrcError>> {
        let outcome = self
            .rt
            .block_on(self.handle.submit(cmd))
            .expect("the adapter runs");
        self.rt.spawn(outcome)
    }

    fn status(&self) -> Status {
        self.rt.block_on(self.handle.status()).unwrap()
    }

    /// Waits until the status satisfies `pred`.
    fn wait_for(&self, what: &str, pred: impl Fn(&Status) -> bool, timeout: Duration) -> Status {
        let deadline = Instant::now() + timeout;
        loop {
            let s = self.status();
            if pred(&s) {
                return s;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}: {s:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn in_channel(&self, channel: &str) -> Status {
        let ch = channel.to_lowercase();
        self.wait_for(
            &format!("joining {channel}"),
            |s| s.registered && s.channels.contains(&ch),
            WAIT,
        )
    }

    /// The next event satisfying `pred`.
    fn event(&mut self, pred: impl Fn(&ChatEvent) -> bool, timeout: Duration) -> Option<ChatEvent> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let events = &mut self.events;
            match self
                .rt
                .block_on(async { tokio::time::timeout(left, events.recv()).await })
            {
                Ok(Some(e)) if pred(&e) => return Some(e),
                Ok(Some(_)) => continue,
                _ => return None,
            }
        }
    }

    fn member(&self, channel: &str, nick: &str) -> Option<bridgewarden::chat::User> {
        self.rt.block_on(self.handle.member(channel, nick)).unwrap()
    }
}

fn config(port: u16, nick: &str, channels: &[&str]) -> IrcConfig {
    let mut c = IrcConfig::new("test", "127.0.0.1", port, nick);
    c.channels = channels.iter().map(|s| s.to_string()).collect();
    c.reconnect_min = Duration::from_millis(200);
    c.reconnect_max = Duration::from_secs(2);
    c.join_interval = Duration::from_millis(20);
    c.flood_burst = 100;
    c.flood_rate = 100.0;
    c.max_lines = 10;
    c
}

fn say(room: &str, text: &str, from: Option<&str>) -> Command {
    Command::Send {
        room: room.into(),
        text: RichText::plain(text),
        kind: SendKind::Message,
        from: from.map(String::from),
    }
}

fn target(nick: &str) -> Target {
    Target {
        id: nick.into(),
        ..Target::default()
    }
}

fn text_of(e: &ChatEvent) -> String {
    match &e.kind {
        ChatEventKind::Message { text }
        | ChatEventKind::Emote { text }
        | ChatEventKind::Notice { text } => text.to_plain(),
        _ => String::new(),
    }
}

#[test]
fn inspircd_sasl_join_and_messages_both_ways() {
    let s = InspIrcd::start();
    let mut reg = s.register("bwbot", "botpass");
    reg.send("QUIT :done");
    drop(reg);
    let mut alice = RawClient::connect(s.port, "alice");
    alice.join("#test");
    let mut cfg = config(s.port, "bwbot", &["#test"]);
    cfg.sasl = Some(Sasl::Plain {
        account: "bwbot".into(),
        password: "botpass".into(),
    });
    let mut bot = Bot::start(cfg);
    let status = bot.in_channel("#test");
    assert_eq!(status.account.as_deref(), Some("bwbot"), "SASL login");
    for cap in [
        "account-tag",
        "server-time",
        "echo-message",
        "multi-prefix",
        "chghost",
        "sasl",
    ] {
        assert!(
            status.caps.iter().any(|c| c == cap),
            "{cap} not enabled: {:?}",
            status.caps
        );
    }
    assert_eq!(
        status.mute_method,
        Some(MuteMethod::Extban {
            prefix: None,
            letter: 'm'
        })
    );

    alice.privmsg("#test", "hello from \x02irc\x02");
    let e = bot
        .event(|e| text_of(e) == "hello from irc", WAIT)
        .expect("the bot saw alice's message");
    assert!(
        matches!(&e.kind, ChatEventKind::Message { text } if text.is_styled()),
        "bold kept: {e:?}"
    );
    assert_eq!(
        (
            e.room.as_str(),
            e.sender.id.as_str(),
            e.sender.channel_modes.as_str()
        ),
        ("#test", "alice", "o")
    );
    assert!(
        e.sender.host.is_some() && e.id.is_some(),
        "host and msgid: {e:?}"
    );

    alice.privmsg("#test", "\x01ACTION waves\x01");
    let e = bot
        .event(|e| matches!(e.kind, ChatEventKind::Emote { .. }), WAIT)
        .expect("emote");
    assert_eq!(text_of(&e), "waves");

    bot.exec(say("#test", "hello from the bridge", Some("carol")))
        .unwrap();
    alice
        .expect_privmsg(
            "#test",
            |t| t == "<c\u{200B}arol> hello from the bridge",
            WAIT,
        )
        .expect("alice got the relay");
    let own = bot
        .event(|e| e.own, WAIT)
        .expect("echo-message brings our own line back");
    assert!(text_of(&own).ends_with("hello from the bridge"));

    bot.exec(Command::Send {
        room: "#test".into(),
        text: RichText::plain("dances"),
        kind: SendKind::Emote,
        from: None,
    })
    .unwrap();
    alice
        .expect_privmsg("#test", |t| t == "\x01ACTION dances\x01", WAIT)
        .expect("alice got the emote");
    bot.exec(Command::Send {
        room: "#test".into(),
        text: RichText::plain("bows"),
        kind: SendKind::Emote,
        from: Some("dave".into()),
    })
    .unwrap();
    alice
        .expect_privmsg("#test", |t| t == "* d\u{200B}ave bows", WAIT)
        .expect("a relayed emote names its sender");
}

#[test]
fn long_multibyte_messages_split_exactly_at_the_limit() {
    let s = NgIrcd::start();
    let bot = Bot::start(config(s.port, "bwbot", &["#long"]));
    bot.in_channel("#long");
    let mut alice = RawClient::connect(s.port, "alice");
    alice.join("#long");
    // 2,400 bytes of two-byte letters, no spaces: every cut is a character boundary.
    let text: String = "я".repeat(1200);
    bot.exec(say("#long", &text, None)).unwrap();
    let mut got = String::new();
    let mut lines = Vec::new();
    while got.len() < text.len() {
        let l = alice
            .expect_privmsg("#long", |_| true, WAIT)
            .unwrap_or_else(|| panic!("missing parts after {} bytes", got.len()));
        got.push_str(l.param(1).unwrap());
        lines.push(alice.log.last().unwrap().clone());
    }
    assert_eq!(got, text, "the parts concatenate to the message");
    for (i, raw) in lines.iter().enumerate() {
        let on_wire = raw.len() + 2; // CRLF
        assert!(on_wire <= 512, "line {i} is {on_wire} bytes");
        if i + 1 < lines.len() {
            assert!(
                on_wire >= 511,
                "line {i} is only {on_wire} bytes: not filled to the limit"
            );
        }
    }
    assert_eq!(lines.len(), 6, "2,400 bytes in ~470-byte parts");
    // Words are kept whole where they can be.
    let words: String = (0..200).map(|i| format!("слово{i} ")).collect();
    bot.exec(say("#long", words.trim_end(), None)).unwrap();
    let first = alice.expect_privmsg("#long", |_| true, WAIT).unwrap();
    let second = alice.expect_privmsg("#long", |_| true, WAIT).unwrap();
    // (The server trims the space the cut leaves at the end of a part.)
    let last_word = first
        .param(1)
        .unwrap()
        .trim_end()
        .rsplit(' ')
        .next()
        .unwrap()
        .to_string();
    let n: usize = last_word
        .trim_start_matches("слово")
        .parse()
        .expect("the part ends with a whole word");
    assert!(
        second
            .param(1)
            .unwrap()
            .starts_with(&format!("слово{} ", n + 1)),
        "{:?} / {:?}",
        first.param(1),
        second.param(1)
    );
}

#[test]
fn crlf_injection_attempts_are_neutralised() {
    let s = NgIrcd::start();
    let bot = Bot::start(config(s.port, "bwbot", &["#c"]));
    bot.in_channel("#c");
    let mut alice = RawClient::connect(s.port, "alice");
    alice.join("#c");
    // A relayed name carrying a command: one PRIVMSG, no JOIN.
    bot.exec(say("#c", "hi", Some("evil\r\nJOIN #owned")))
        .unwrap();
    let l = alice
        .expect_privmsg("#c", |_| true, WAIT)
        .expect("the relay");
    assert_eq!(l.param(1), Some("<e\u{200B}vilJOIN #owned> hi"));
    // A text carrying a CR: one PRIVMSG, no QUIT.
    bot.exec(say("#c", "one\rQUIT :gone", None)).unwrap();
    let l = alice
        .expect_privmsg("#c", |_| true, WAIT)
        .expect("the text");
    assert_eq!(l.param(1), Some("oneQUIT :gone"));
    assert!(
        alice.expect_none(
            |l| l.command != "PRIVMSG" || l.param(0) != Some("#c"),
            Duration::from_millis(800)
        ),
        "{:?}",
        alice.log
    );
    let st = bot.status();
    assert!(
        st.registered && !st.channels.iter().any(|c| c == "#owned"),
        "{st:?}"
    );
    // Commands with CR/LF in a name are refused, and raw lines too.
    assert!(matches!(
        bot.exec(Command::Kick {
            room: "#c".into(),
            target: target("alice\r\nQUIT"),
            reason: "x".into()
        }),
        Err(IrcError::Invalid(_))
    ));
    assert!(bot
        .rt
        .block_on(bot.handle.raw("PRIVMSG #c :a\r\nQUIT"))
        .is_err());
}

/// Moderation on one server: mute (a second client does not receive the muted user), unmute,
/// kick, ban (and rejoin refused), unban.
fn moderation(port: u16, expect_mute: MuteMethod, mute_refusal: &str) {
    let bot = Bot::start(config(port, "bwbot", &["#mod"]));
    bot.in_channel("#mod");
    let mut alice = RawClient::connect(port, "alice");
    let mut bob = RawClient::connect(port, "bob");
    alice.join("#mod");
    bob.join("#mod");
    assert_eq!(bot.status().mute_method, Some(expect_mute));
    std::thread::sleep(Duration::from_millis(200));

    let muted = bot
        .exec(Command::Mute {
            room: "#mod".into(),
            target: target("alice"),
        })
        .expect("mute confirmed");
    let mask = muted.detail.expect("the mute mask");
    alice.privmsg("#mod", "can anyone hear me");
    let refused = alice
        .expect(|l| l.command == "404", WAIT)
        .expect("the server refused alice's message");
    assert!(
        refused.param(2).unwrap_or("").contains(mute_refusal),
        "{:?}",
        refused
    );
    assert!(
        bob.expect_none(
            |l| l.command == "PRIVMSG" && l.nick() == Some("alice"),
            Duration::from_secs(1)
        ),
        "bob heard a muted user"
    );
    // Muting alice did not mute bob.
    bob.privmsg("#mod", "bob can talk");
    alice
        .expect_privmsg("#mod", |t| t == "bob can talk", WAIT)
        .expect("bob is not muted");

    bot.exec(Command::Unmute {
        room: "#mod".into(),
        target: Target {
            mask: Some(mask),
            ..target("alice")
        },
    })
    .expect("unmute confirmed");
    alice.privmsg("#mod", "back again");
    bob.expect_privmsg("#mod", |t| t == "back again", WAIT)
        .expect("unmuted: bob hears alice");

    bot.exec(Command::Kick {
        room: "#mod".into(),
        target: target("bob"),
        reason: "cool off".into(),
    })
    .expect("kick confirmed");
    bob.expect(|l| l.command == "KICK" && l.param(1) == Some("bob"), WAIT)
        .expect("bob was kicked");
    bob.join("#mod");

    let banned = bot
        .exec(Command::Ban {
            room: "#mod".into(),
            target: target("bob"),
            reason: "enough".into(),
        })
        .expect("ban confirmed");
    bob.expect(|l| l.command == "KICK" && l.param(1) == Some("bob"), WAIT)
        .expect("a ban removes bob");
    bob.send("JOIN #mod");
    bob.expect(|l| l.command == "474", WAIT)
        .expect("bob cannot come back while banned");
    bot.exec(Command::Unban {
        room: "#mod".into(),
        target: Target {
            mask: banned.detail,
            ..target("bob")
        },
    })
    .expect("unban confirmed");
    bob.join("#mod");
}

#[test]
fn moderation_on_inspircd_uses_the_mute_extban() {
    let s = InspIrcd::start();
    moderation(
        s.port,
        MuteMethod::Extban {
            prefix: None,
            letter: 'm',
        },
        "(mute) extban",
    );
}

#[test]
fn moderation_on_ngircd_falls_back_to_a_ban_without_kick() {
    let s = NgIrcd::start();
    moderation(s.port, MuteMethod::BanWithoutKick, "Cannot send to channel");
}

#[test]
fn moderation_without_op_is_refused_with_the_reason() {
    let s = NgIrcd::start();
    let mut alice = RawClient::connect(s.port, "alice");
    alice.join("#noop");
    let bot = Bot::start(config(s.port, "bwbot", &["#noop"]));
    bot.in_channel("#noop");
    let err = bot
        .exec(Command::Kick {
            room: "#noop".into(),
            target: target("alice"),
            reason: "x".into(),
        })
        .unwrap_err();
    assert!(
        matches!(&err, IrcError::Refused(r) if r.starts_with("482")),
        "{err:?}"
    );
}

#[test]
fn ops_and_accounts_are_detected_never_from_a_bare_nick() {
    let s = InspIrcd::start();
    let mut alice = s.register("alice", "alicepw");
    alice.join("#acc");
    let mut carol = RawClient::connect(s.port, "carol");
    carol.join("#acc");
    let mut bot = Bot::start(config(s.port, "bwbot", &["#acc"]));
    bot.in_channel("#acc");
    // Present before the bot joined: known through WHOX.
    let deadline = Instant::now() + WAIT;
    while bot
        .member("#acc", "alice")
        .and_then(|u| u.account)
        .is_none()
        && Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(50));
    }
    let a = bot.member("#acc", "alice").expect("alice is a member");
    assert_eq!(
        (a.account.as_deref(), a.channel_modes.as_str()),
        (Some("alice"), "o")
    );
    let c = bot.member("#acc", "carol").expect("carol is a member");
    assert_eq!((c.account, c.channel_modes.as_str()), (None, ""));
    // Messages carry the account (account-tag).
    alice.privmsg("#acc", "from alice");
    let e = bot.event(|e| text_of(e) == "from alice", WAIT).unwrap();
    assert_eq!(e.sender.account.as_deref(), Some("alice"));
    // Someone who logs in later is noticed (account-notify).
    let mut dave = RawClient::connect(s.port, "dave");
    dave.join("#acc");
    dave.privmsg("NickServ", "REGISTER davepw dave@example.org");
    dave.expect(|l| l.command == "900", WAIT)
        .expect("dave logged in");
    let deadline = Instant::now() + WAIT;
    while bot.member("#acc", "dave").and_then(|u| u.account).is_none() && Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(
        bot.member("#acc", "dave").unwrap().account.as_deref(),
        Some("dave")
    );
    // Ops are followed through MODE.
    alice.send("MODE #acc +o carol");
    let deadline = Instant::now() + WAIT;
    while bot.member("#acc", "carol").unwrap().channel_modes != "o" && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(bot.member("#acc", "carol").unwrap().channel_modes, "o");
    // alice leaves; mallory takes the nick "alice": same nick, no account, no op.
    alice.send("QUIT :bye");
    drop(alice);
    let mut mallory = RawClient::connect(s.port, "alice");
    mallory.join("#acc");
    let deadline = Instant::now() + WAIT;
    while bot.member("#acc", "alice").is_none() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let m = bot
        .member("#acc", "alice")
        .expect("the new alice is a member");
    assert_eq!(
        (m.account, m.channel_modes.as_str()),
        (None, ""),
        "a taken nick carries nothing"
    );
    mallory.privmsg("#acc", "i am alice, trust me");
    let e = bot
        .event(|e| text_of(e) == "i am alice, trust me", WAIT)
        .unwrap();
    assert_eq!(e.sender.account, None);
}

#[test]
fn reconnects_and_rejoins_within_5s_after_a_restart_and_delivers_the_queue() {
    let mut s = InspIrcd::start();
    let mut cfg = config(s.port, "bwbot", &["#re"]);
    // The first retry after a second: the test's own client rejoins first.
    cfg.reconnect_min = Duration::from_millis(1000);
    let bot = Bot::start(cfg);
    bot.in_channel("#re");
    s.kill_ircd();
    bot.wait_for("noticing the outage", |st| !st.registered, WAIT);
    // Sent while the server is down: queued.
    let pending: Vec<_> = (0..3)
        .map(|i| bot.exec_later(say("#re", &format!("queued {i}"), None)))
        .collect();
    let restarted = Instant::now();
    s.restart_ircd();
    let mut alice = RawClient::connect(s.port, "alice");
    alice.join("#re");
    bot.in_channel("#re");
    let rejoined = restarted.elapsed();
    assert!(
        rejoined < Duration::from_secs(5),
        "rejoined after {rejoined:?}"
    );
    for i in 0..3 {
        alice
            .expect_privmsg("#re", |t| t == format!("queued {i}"), WAIT)
            .unwrap_or_else(|| panic!("queued {i} lost: {:?}", alice.log));
    }
    assert!(
        restarted.elapsed() < Duration::from_secs(5),
        "delivered after {:?}",
        restarted.elapsed()
    );
    for p in pending {
        bot.rt
            .block_on(p)
            .unwrap()
            .expect("each queued send is answered once written");
    }
    assert!(
        bot.handle
            .stats
            .reconnects
            .load(std::sync::atomic::Ordering::Relaxed)
            >= 1
    );
}

#[test]
fn flood_control_paces_a_burst_without_losing_or_reordering() {
    let s = NgIrcd::start();
    let mut cfg = config(s.port, "bwbot", &["#flood"]);
    cfg.flood_burst = 5;
    cfg.flood_rate = 10.0;
    let bot = Bot::start(cfg);
    bot.in_channel("#flood");
    let mut alice = RawClient::connect(s.port, "alice");
    alice.join("#flood");
    let started = Instant::now();
    let sends: Vec<_> = (0..25)
        .map(|i| bot.exec_later(say("#flood", &format!("m{i}"), None)))
        .collect();
    for i in 0..25 {
        alice
            .expect_privmsg("#flood", |t| t == format!("m{i}"), WAIT)
            .unwrap_or_else(|| panic!("m{i} missing or out of order"));
    }
    let took = started.elapsed();
    // 5 at once, then 20 at 10 per second.
    assert!(
        took >= Duration::from_millis(1800),
        "25 lines in {took:?}: not paced"
    );
    assert!(took < Duration::from_secs(6), "25 lines in {took:?}");
    for s in sends {
        bot.rt.block_on(s).unwrap().unwrap();
    }
}

#[test]
fn a_full_queue_drops_with_an_error_and_counts() {
    // Nothing listens: everything waits in the queue.
    let mut cfg = config(free_port(), "bwbot", &["#q"]);
    cfg.queue_limit = 10;
    let bot = Bot::start(cfg);
    let sends: Vec<_> = (0..15)
        .map(|i| bot.exec_later(say("#q", &format!("m{i}"), None)))
        .collect();
    let mut full = 0;
    for s in sends.into_iter().skip(10) {
        match bot.rt.block_on(s).unwrap() {
            Err(IrcError::QueueFull(10)) => full += 1,
            other => panic!("expected a full queue, got {other:?}"),
        }
    }
    assert_eq!(full, 5);
    assert_eq!(
        bot.handle
            .stats
            .queue_drops
            .load(std::sync::atomic::Ordering::Relaxed),
        5
    );
    assert_eq!(bot.status().queued, 10);
}

#[test]
fn a_taken_nick_is_replaced_then_reclaimed() {
    let s = NgIrcd::start();
    let mut holder = RawClient::connect(s.port, "bwbot");
    holder.join("#n");
    let mut cfg = config(s.port, "bwbot", &["#n"]);
    cfg.alt_nicks = vec!["bwbot2".into()];
    let bot = Bot::start(cfg);
    let st = bot.in_channel("#n");
    assert_eq!(st.nick, "bwbot2");
    holder.send("QUIT :freeing the nick");
    bot.wait_for("reclaiming the nick", |st| st.nick == "bwbot", WAIT);
}

#[test]
fn a_silent_server_is_detected_and_left() {
    use std::io::{BufRead, BufReader, Write};
    // A server that registers us and then never says anything again, not even PONG.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let connections = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let count = connections.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { break };
            count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            std::thread::spawn(move || {
                let reader = BufReader::new(stream.try_clone().unwrap());
                for line in reader.lines() {
                    let Ok(line) = line else { break };
                    if line.starts_with("USER") {
                        let _ = stream.write_all(b":silent.example 001 bwbot :hi\r\n");
                    }
                }
            });
        }
    });
    let mut cfg = config(port, "bwbot", &[]);
    cfg.ping_interval = Duration::from_millis(500);
    let bot = Bot::start(cfg);
    bot.wait_for("registering", |s| s.registered, WAIT);
    let deadline = Instant::now() + WAIT;
    while connections.load(std::sync::atomic::Ordering::SeqCst) < 2 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        connections.load(std::sync::atomic::Ordering::SeqCst) >= 2,
        "the dead link was not detected"
    );
}

fn tls(dir: &std::path::Path, client_cert: bool) -> bridgewarden::irc::client::Tls {
    bridgewarden::irc::client::Tls {
        ca_file: Some(dir.join("ca.pem")),
        client_cert: client_cert.then(|| (dir.join("client.pem"), dir.join("client-key.pem"))),
    }
}

#[test]
fn tls_with_a_private_ca_and_refused_without_it() {
    let s = NgIrcd::start_with(true);
    let tls_port = s.tls_port.unwrap();
    let mut cfg = config(tls_port, "bwbot", &["#tls"]);
    cfg.tls = Some(tls(s.dir.path(), false));
    let bot = Bot::start(cfg);
    bot.in_channel("#tls");
    let mut alice = RawClient::connect(s.port, "alice");
    alice.join("#tls");
    bot.exec(say("#tls", "over TLS", None)).unwrap();
    alice
        .expect_privmsg("#tls", |t| t == "over TLS", WAIT)
        .expect("relayed over TLS");
    // Without our CA the certificate is not trusted: no connection, ever.
    let mut untrusting = config(tls_port, "bwbot2", &["#tls"]);
    untrusting.tls = Some(bridgewarden::irc::client::Tls::default());
    let bot2 = Bot::start(untrusting);
    std::thread::sleep(Duration::from_secs(2));
    assert!(!bot2.status().registered);
    assert_eq!(
        bot2.handle
            .stats
            .connects
            .load(std::sync::atomic::Ordering::Relaxed),
        0,
        "an untrusted certificate was accepted"
    );
}

#[test]
fn sasl_external_logs_in_with_a_client_certificate() {
    let s = InspIrcd::start_with(true);
    // An account that knows the client certificate's fingerprint.
    let mut reg = s.register("extbot", "extpass");
    let fp = std::fs::read_to_string(s.dir.path().join("client-fp-sha256.txt")).unwrap();
    reg.privmsg("NickServ", &format!("CERT ADD {}", fp.trim()));
    reg.expect(
        |l| l.command == "NOTICE" && l.param(1).is_some_and(|t| t.contains("Added fingerprint")),
        WAIT,
    )
    .expect("fingerprint added");
    reg.send("QUIT :done");
    drop(reg);
    let mut cfg = config(s.tls_port.unwrap(), "extbot", &["#ext"]);
    cfg.tls = Some(tls(s.dir.path(), true));
    cfg.sasl = Some(Sasl::External);
    let bot = Bot::start(cfg);
    let st = bot.in_channel("#ext");
    assert_eq!(st.sasl, Some(true), "SASL EXTERNAL succeeded (903)");
    assert_eq!(st.account.as_deref(), Some("extbot"));
    // And a wrong password over PLAIN fails visibly (904) but the bridge still connects.
    let mut bad = config(s.port, "plainbot", &[]);
    bad.sasl = Some(Sasl::Plain {
        account: "extbot".into(),
        password: "wrong".into(),
    });
    let bot2 = Bot::start(bad);
    let st = bot2.wait_for("registering", |st| st.registered, WAIT);
    assert_eq!((st.sasl, st.account), (Some(false), None));
}
