//! The daemon end to end: `bridgewarden run` as a process, against a real InspIRCd + Atheme
//! and a real Synapse, with raw IRC clients and matrix-sdk clients as the people on each side.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use bridgewarden::audit::{AuditLog, Entry, Outcome};
use matrix_sdk::ruma::events::room::message::RoomMessageEventContent;
use matrix_sdk::ruma::OwnedRoomId;

use crate::support::irc::{InspIrcd, RawClient};
use crate::support::matrix::{set_power, Account, Peer, Seen, Synapse, SERVER_NAME};
use crate::support::{free_port, Server};

const WAIT: Duration = Duration::from_secs(20);
const CHANNEL: &str = "#chat";
const BOT_NICK: &str = "bw";
const BOT_IRC_PASSWORD: &str = "bot-services-password";

pub const POLICY: &str = r#"
[policy]
name = "e2e"
format = 1

[lists.insults]
terms = ["idiot"]

[lists.kickable]
terms = ["kickme"]

[[rule]]
id = "insults"
when = { list = "insults" }
actions = [{ do = "delete" }, { do = "warn", message = "{sender}: no insults here" }, { do = "escalate", message = "insult" }]
strikes = 1

[[rule]]
id = "kick-word"
when = { list = "kickable" }
actions = [{ do = "kick", reason = "you asked for it" }]
"#;

/// Servers, people, and the daemon under test.
struct World {
    daemon: Option<Server>,
    admin: Peer,
    alice: Peer,
    room: OwnedRoomId,
    mods: OwnedRoomId,
    metrics_port: u16,
    rt: tokio::runtime::Runtime,
    irc: InspIrcd,
    _synapse: Synapse,
    bot: Account,
    dir: tempfile::TempDir,
}

impl World {
    /// Servers up, Matrix rooms made (the bot invited and given power), config written.
    fn new(policy: &str) -> World {
        let irc = InspIrcd::start();
        // The bot's services account owns the channel, so ChanServ ops the bot whenever it
        // joins, across restarts, as on a real network.
        let mut owner = irc.register(BOT_NICK, BOT_IRC_PASSWORD);
        owner.join(CHANNEL);
        owner.privmsg("ChanServ", &format!("REGISTER {CHANNEL}"));
        owner
            .expect(
                |l| l.command == "NOTICE" && l.param(1).is_some_and(|t| t.contains("registered")),
                WAIT,
            )
            .unwrap_or_else(|| panic!("ChanServ did not register the channel: {:#?}", owner.log));
        owner.send("QUIT");
        owner.expect(|_| false, Duration::from_millis(300));
        let synapse = Synapse::start();
        let (bot, admin_acct, alice_acct) = (
            synapse.register("bw"),
            synapse.register("admin"),
            synapse.register("alice"),
        );
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let admin = rt.block_on(Peer::login(&synapse, &admin_acct));
        let alice = rt.block_on(Peer::login(&synapse, &alice_acct));
        let (room, mods) = rt.block_on(async {
            let room = admin
                .create_room_with(false, true, &[&bot.user_id, &alice_acct.user_id])
                .await;
            let mods = admin.create_room(false, &[&bot.user_id]).await;
            set_power(&admin, &room, &bot.user_id, 100).await;
            alice.join(&room).await;
            (room, mods)
        });
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("policy.toml"), policy).unwrap();
        std::fs::write(
            dir.path().join("matrix-password"),
            format!("{}\n", bot.password),
        )
        .unwrap();
        std::fs::write(dir.path().join("irc-password"), BOT_IRC_PASSWORD).unwrap();
        let metrics_port = free_port();
        let config = format!(
            r#"
data_dir = "data"
policy = "policy.toml"

[matrix]
homeserver = "{url}"
user = "{bot}"
password = {{ file = "matrix-password" }}
invite_from = ["@admin:{server}"]
sync_timeout = "5s"

[irc.test]
host = "127.0.0.1"
port = {port}
nick = "{BOT_NICK}"
sasl = {{ mechanism = "plain", account = "{BOT_NICK}", password = {{ file = "irc-password" }} }}
moderator_accounts = ["ircmod"]
flood_burst = 50
flood_rate = 50.0

[[bridge]]
matrix = "{room}"
channel = "{CHANNEL}"

[moderation]
rooms = ["{mods}"]

[relay]
ignore_senders = ["^otherbridge$"]

[metrics]
listen = "127.0.0.1:{metrics_port}"

[log]
level = "info,bridgewarden=debug"
"#,
            url = synapse.url(),
            bot = bot.user_id,
            server = SERVER_NAME,
            port = irc.port,
        );
        std::fs::write(dir.path().join("bridgewarden.toml"), config).unwrap();
        World {
            daemon: None,
            admin,
            alice,
            room,
            mods,
            metrics_port,
            rt,
            irc,
            _synapse: synapse,
            bot,
            dir,
        }
    }

    fn config(&self) -> PathBuf {
        self.dir.path().join("bridgewarden.toml")
    }

    /// Starts the daemon and waits until it is healthy and opped in the channel.
    fn start_daemon(&mut self) {
        let exe = env!("CARGO_BIN_EXE_bridgewarden");
        let config = self.config().display().to_string();
        let mut server = Server::start(
            "bridgewarden",
            exe,
            &["run", "--config", &config],
            self.dir.path(),
        );
        server.stop_signal = 15;
        self.daemon = Some(server);
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if self.http("/health").0 == 200 {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the daemon did not become healthy:\n{}",
                self.daemon_log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        // ChanServ ops the bot when it joins.
        let mut probe = RawClient::connect(self.irc.port, &format!("probe{}", free_port()));
        let deadline = Instant::now() + WAIT;
        loop {
            probe.send(&format!("NAMES {CHANNEL}"));
            let names = probe.expect(
                |l| l.command == "353" || l.command == "366",
                Duration::from_secs(2),
            );
            if names.is_some_and(|l| {
                l.command == "353"
                    && l.param(3)
                        .is_some_and(|n| n.split(' ').any(|x| x == format!("@{BOT_NICK}")))
            }) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the bot is not an operator in {CHANNEL}:\n{}",
                self.daemon_log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        probe.send("QUIT");
    }

    /// SIGTERM, and wait for a graceful exit.
    fn stop_daemon(&mut self) {
        if let Some(mut d) = self.daemon.take() {
            d.stop();
        }
    }

    fn kill_daemon(&mut self) {
        if let Some(mut d) = self.daemon.take() {
            d.kill();
        }
    }

    fn daemon_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("bridgewarden.log")).unwrap_or_default()
    }

    fn pid(&self) -> u32 {
        self.daemon
            .as_ref()
            .and_then(Server::pid)
            .expect("the daemon runs")
    }

    /// GET on the metrics endpoint: (status, body).
    fn http(&self, path: &str) -> (u16, String) {
        let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", self.metrics_port)) else {
            return (0, String::new());
        };
        let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
        let _ = s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes());
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
        let status = out
            .split(' ')
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        let body = out
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_string())
            .unwrap_or_default();
        (status, body)
    }

    /// An IRC user in the channel.
    fn irc_user(&self, nick: &str) -> RawClient {
        let mut c = RawClient::connect(self.irc.port, nick);
        c.join(CHANNEL);
        c
    }

    /// An IRC user logged in to a services account, in the channel.
    fn irc_account(&self, nick: &str) -> RawClient {
        let mut c = self.irc.register(nick, "secret-password");
        c.join(CHANNEL);
        c
    }

    /// The audit log (the daemon must be stopped: sled is single-process).
    fn audit(&self) -> AuditLog {
        assert!(self.daemon.is_none(), "stop the daemon first");
        AuditLog::open(&self.dir.path().join("data/audit")).unwrap()
    }

    fn say(&self, peer: &Peer, room: &OwnedRoomId, text: &str) -> String {
        self.rt
            .block_on(peer.say(room, RoomMessageEventContent::text_plain(text)))
    }

    fn say_html(&self, peer: &Peer, room: &OwnedRoomId, body: &str, html: &str) -> String {
        self.rt
            .block_on(peer.say(room, RoomMessageEventContent::text_html(body, html)))
    }
}

/// Everything `peer` sees in `room` until a message satisfying `until` (returned last).
fn collect(
    rt: &tokio::runtime::Runtime,
    peer: &mut Peer,
    room: &OwnedRoomId,
    until: impl Fn(&Seen) -> bool,
) -> Vec<Seen> {
    let mut seen = Vec::new();
    rt.block_on(async {
        let deadline = Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let s = tokio::time::timeout(left, peer.seen.recv())
                .await
                .unwrap_or_else(|_| panic!("timed out; seen so far: {seen:#?}"))
                .unwrap();
            if s.0 != room.as_str() {
                continue;
            }
            let done = until(&s);
            seen.push(s);
            if done {
                return;
            }
        }
    });
    seen
}

/// How a relayed IRC nick shows on IRC: a zero-width space after its first character.
fn shown(nick: &str) -> String {
    let mut c = nick.chars();
    let first = c.next().unwrap();
    format!("{first}\u{200B}{}", c.as_str())
}

#[test]
fn messages_relay_both_ways_with_formatting() {
    let mut w = World::new(POLICY);
    w.start_daemon();
    let mut carol = w.irc_user("carol");

    // IRC -> Matrix: mIRC bold becomes HTML.
    carol.privmsg(CHANNEL, "\x02bold\x02 and plain");
    let s =
        w.rt.block_on(w.alice.expect(&w.room, |s| s.2.contains("bold and plain")));
    assert_eq!(s.2, "<carol> bold and plain");
    assert!(
        s.3.as_deref()
            .is_some_and(|h| h.contains("<strong>bold</strong>")),
        "{s:?}"
    );
    // An emote.
    carol.privmsg(CHANNEL, "\x01ACTION waves\x01");
    let s =
        w.rt.block_on(w.alice.expect(&w.room, |s| s.2.contains("waves")));
    assert_eq!(s.2, "* carol waves");

    // Matrix -> IRC: HTML italics become mIRC italics, the sender's name in front.
    w.say_html(&w.alice, &w.room, "hi there", "<em>hi</em> there");
    let line = carol
        .expect_privmsg(CHANNEL, |t| t.contains("there"), WAIT)
        .unwrap_or_else(|| panic!("no relay on IRC: {:?}\n{}", carol.log, w.daemon_log()));
    assert_eq!(
        line.param(1).unwrap(),
        format!("<{}> \x1dhi\x1d there", shown("alice"))
    );
    // HTML in a plain Matrix message reaches IRC as text, and a newline never splits a command.
    w.say(&w.alice, &w.room, "a <b>tag</b>\r\nQUIT :injected");
    let line = carol
        .expect_privmsg(CHANNEL, |t| t.contains("tag"), WAIT)
        .unwrap();
    assert!(line.param(1).unwrap().contains("a <b>tag</b>"), "{line:?}");
    assert!(carol.expect_none(
        |l| l.command == "QUIT" && l.nick() == Some(BOT_NICK),
        Duration::from_secs(1)
    ));

    // Another bridge's bot is not relayed.
    let mut other = w.irc_user("otherbridge");
    other.privmsg(CHANNEL, "[telegram] <x> relayed elsewhere");
    carol.privmsg(CHANNEL, "after the other bridge");
    let seen = collect(&w.rt, &mut w.alice, &w.room, |s| {
        s.2.contains("after the other bridge")
    });
    assert!(
        seen.iter().all(|s| !s.2.contains("relayed elsewhere")),
        "{seen:?}"
    );

    // Metrics count the relays.
    let (status, metrics) = w.http("/metrics");
    assert_eq!(status, 200);
    assert!(
        metrics.contains("bridgewarden_relayed_total{direction=\"irc_to_matrix\"}"),
        "{metrics}"
    );
    assert!(
        metrics.contains("bridgewarden_irc_connected{network=\"test\"} 1"),
        "{metrics}"
    );
    w.stop_daemon();
    assert!(
        w.daemon_log().contains("stopped"),
        "graceful stop:\n{}",
        w.daemon_log()
    );
}

/// A notice from the bot to `target` (a nick or the channel) containing `text`.
#[track_caller]
fn bot_notice(c: &mut RawClient, target: &str, text: &str) -> String {
    let (target, text) = (target.to_string(), text.to_string());
    c.expect(
        |l| {
            l.command == "NOTICE"
                && l.nick() == Some(BOT_NICK)
                && l.param(0).is_some_and(|t| t.eq_ignore_ascii_case(&target))
                && l.param(1).is_some_and(|t| t.contains(&text))
        },
        WAIT,
    )
    .map(|l| l.param(1).unwrap_or_default().to_string())
    .unwrap_or_else(|| {
        panic!(
            "{}: no notice to {target} containing {text:?}:\n{:#?}",
            c.nick, c.log
        )
    })
}

#[derive(Clone, Copy)]
enum Who {
    Admin,
    Alice,
}

#[derive(Clone, Copy)]
enum In {
    Chat,
    Mods,
}

impl World {
    /// A message from the bot in a Matrix room containing `text`, as `who` sees it.
    #[track_caller]
    fn bot_says(&mut self, who: Who, room: In, text: &str) -> String {
        let World {
            rt,
            admin,
            alice,
            room: chat,
            mods,
            bot,
            ..
        } = self;
        let peer = match who {
            Who::Admin => admin,
            Who::Alice => alice,
        };
        let room = match room {
            In::Chat => chat,
            In::Mods => mods,
        };
        let s = collect(rt, peer, room, |s| s.1 == bot.user_id && s.2.contains(text));
        s.last().unwrap().2.clone()
    }
}

/// Sends as `peer`; Err when the homeserver refuses.
fn try_say(w: &World, peer: &Peer, room: &OwnedRoomId, text: &str) -> Result<String, String> {
    w.rt.block_on(async {
        let r = peer.room(room).await;
        r.send(RoomMessageEventContent::text_plain(text))
            .await
            .map(|r| r.response.event_id.to_string())
            .map_err(|e| e.to_string())
    })
}

/// Whether `listener` receives `speaker`'s `text` in the channel within `wait`.
fn heard(speaker: &mut RawClient, listener: &mut RawClient, text: &str, wait: Duration) -> bool {
    speaker.privmsg(CHANNEL, text);
    listener
        .expect_privmsg(CHANNEL, |t| t == text, wait)
        .is_some()
}

#[test]
fn a_violation_on_each_side_is_blocked_acted_on_audited_and_escalated() {
    let mut w = World::new(POLICY);
    w.start_daemon();
    let mut carol = w.irc_user("carol");
    let mut dave = w.irc_user("dave");

    // IRC: an insult is not relayed, carol is warned, the moderators hear of it.
    carol.privmsg(CHANNEL, "you idiot");
    carol.privmsg(CHANNEL, "clean after the insult");
    let seen = collect(&w.rt, &mut w.alice, &w.room, |s| {
        s.2.contains("clean after the insult")
    });
    assert!(seen.iter().all(|s| !s.2.contains("idiot")), "{seen:#?}");
    assert_eq!(
        bot_notice(&mut carol, "carol", "no insults here"),
        "carol: no insults here"
    );
    let esc = w.bot_says(Who::Admin, In::Mods, "[escalation]");
    assert!(
        esc.contains("insult - carol in test #chat: \"you idiot\" [audit case"),
        "{esc}"
    );
    // A kick on the network the message came from.
    dave.privmsg(CHANNEL, "kickme now");
    dave.expect(|l| l.command == "KICK" && l.param(1) == Some("dave"), WAIT)
        .unwrap_or_else(|| panic!("dave was not kicked: {:#?}\n{}", dave.log, w.daemon_log()));

    // Matrix: the insult is redacted, not relayed, alice is warned in the room.
    let bad = w.say(&w.alice, &w.room, "you are an idiot");
    w.say(&w.alice, &w.room, "clean from matrix");
    let redacted = w.rt.block_on(async {
        tokio::time::timeout(WAIT, w.admin.redactions.recv())
            .await
            .ok()
            .flatten()
    });
    assert_eq!(
        redacted.as_deref(),
        Some(bad.as_str()),
        "{}",
        w.daemon_log()
    );
    let line = carol
        .expect_privmsg(CHANNEL, |t| t.contains("clean from matrix"), WAIT)
        .unwrap();
    assert!(
        carol.log.iter().all(|l| !l.contains("are an idiot")),
        "{:#?}",
        carol.log
    );
    let _ = line;
    let warn = w.bot_says(Who::Alice, In::Chat, "no insults here");
    assert!(warn.starts_with("@alice:"), "{warn}");
    let esc = w.bot_says(Who::Admin, In::Mods, "[escalation]");
    assert!(
        esc.contains("@alice:") && esc.contains("you are an idiot"),
        "{esc}"
    );

    // Everything is in the audit log, outcomes included.
    w.stop_daemon();
    let audit = w.audit();
    let carol_records = audit.by_user("irc:test:nick:carol", 50).unwrap();
    let kinds: Vec<String> = carol_records
        .iter()
        .map(|r| format!("{} {}", r.entry.kind(), r.entry.actions().join(",")))
        .collect();
    for want in [
        "decision delete,warn,escalate",
        "action warn",
        "action escalate",
    ] {
        assert!(kinds.iter().any(|k| k == want), "{want} missing: {kinds:?}");
    }
    let alice_id = format!("matrix:@alice:{SERVER_NAME}");
    let alice_records = audit.by_user(&alice_id, 50).unwrap();
    let delete = alice_records
        .iter()
        .find(|r| matches!(&r.entry, Entry::Action(a) if a.action == "delete"))
        .expect("the redaction is audited");
    let outcome = audit
        .by_case(delete.case)
        .unwrap()
        .into_iter()
        .find_map(|r| match r.entry {
            Entry::Outcome(o) if o.action_id == delete.id => Some(o.outcome),
            _ => None,
        });
    assert_eq!(outcome, Some(Outcome::Applied));
    let dave_records = audit.by_user("irc:test:nick:dave", 50).unwrap();
    assert!(dave_records
        .iter()
        .any(|r| matches!(&r.entry, Entry::Action(a) if a.action == "kick")));
}

#[test]
fn moderator_commands_work_from_both_networks_and_only_for_moderators() {
    let mut w = World::new(POLICY);
    w.start_daemon();
    // Someone takes the moderator's nick before the moderator is around.
    let mut taker = w.irc_user("ircmod");
    let mut carol = w.irc_user("carol");
    let mut dave = w.irc_user("dave");
    taker.privmsg(CHANNEL, "!kick carol");
    assert!(bot_notice(&mut taker, CHANNEL, "only moderators").starts_with("ircmod:"));
    taker.send("QUIT");
    carol.privmsg(CHANNEL, "!kick dave");
    bot_notice(
        &mut carol,
        CHANNEL,
        "carol: only moderators can use ! commands here",
    );
    w.say(&w.alice, &w.room, "!ban carol");
    w.bot_says(Who::Alice, In::Chat, "only moderators");
    assert!(carol.expect_none(|l| l.command == "KICK", Duration::from_millis(500)));

    // The real moderator: logged in to the services account.
    std::thread::sleep(Duration::from_millis(500));
    let mut m = w.irc_account("ircmod");
    m.privmsg(CHANNEL, "!warn carol please calm down");
    assert_eq!(
        bot_notice(&mut carol, "carol", "calm down"),
        "please calm down"
    );
    m.privmsg(CHANNEL, "!mute carol 1h");
    bot_notice(&mut m, CHANNEL, "mute carol done");
    assert!(
        !heard(&mut carol, &mut dave, "muted words", Duration::from_secs(2)),
        "the mute holds"
    );
    m.privmsg(CHANNEL, "!unmute carol");
    bot_notice(&mut m, CHANNEL, "unmute carol done");
    assert!(
        heard(&mut carol, &mut dave, "free words", WAIT),
        "the unmute restores"
    );
    m.privmsg(CHANNEL, "!kick dave enough");
    dave.expect(|l| l.command == "KICK" && l.param(1) == Some("dave"), WAIT)
        .expect("dave kicked");
    m.privmsg(CHANNEL, "!ban dave 1d spam");
    bot_notice(&mut m, CHANNEL, "ban dave done");
    dave.send(&format!("JOIN {CHANNEL}"));
    dave.expect(|l| l.command == "474", WAIT)
        .expect("dave is banned");
    m.privmsg(CHANNEL, "!unban dave");
    bot_notice(&mut m, CHANNEL, "unban dave done");
    dave.join(CHANNEL);
    // From IRC, on a Matrix user: the power level drops and Synapse refuses her messages.
    let alice = format!("@alice:{SERVER_NAME}");
    m.privmsg(CHANNEL, &format!("!mute {alice}"));
    bot_notice(&mut m, CHANNEL, &format!("mute {alice} done"));
    assert!(try_say(&w, &w.alice, &w.room, "can I talk?").is_err());
    m.privmsg(CHANNEL, &format!("!unmute {alice}"));
    bot_notice(&mut m, CHANNEL, &format!("unmute {alice} done"));
    assert!(try_say(&w, &w.alice, &w.room, "yes I can").is_ok());

    // From Matrix: the admin has power 100 in the room.
    w.say(&w.admin, &w.room, "!kick carol bye");
    carol
        .expect(|l| l.command == "KICK" && l.param(1) == Some("carol"), WAIT)
        .expect("carol kicked from Matrix");
    w.say(&w.admin, &w.room, &format!("!ban {alice} 1d"));
    w.bot_says(Who::Admin, In::Chat, &format!("ban {alice} done"));
    assert!(try_say(&w, &w.alice, &w.room, "still here?").is_err());
    w.say(&w.admin, &w.room, &format!("!unban {alice}"));
    w.bot_says(Who::Admin, In::Chat, &format!("unban {alice} done"));
    w.rt.block_on(w.alice.join(&w.room));
    // Queries and the policy.
    w.say(&w.admin, &w.room, "!strikes show carol");
    w.bot_says(Who::Admin, In::Chat, "carol has 0 strike(s) now");
    w.say(&w.admin, &w.room, "!audit carol");
    let audit = w.bot_says(Who::Admin, In::Chat, "kick");
    assert!(
        audit.contains("by @admin:") && audit.contains("mute"),
        "{audit}"
    );
    assert!(
        !audit.contains("pending") && audit.contains("applied"),
        "actions are shown with how they ended: {audit}"
    );
    w.say(&w.admin, &w.room, "!policy status");
    w.bot_says(Who::Admin, In::Chat, "policy \"e2e\"");
    w.say(&w.admin, &w.room, "!policy test you idiot");
    let test = w.bot_says(Who::Admin, In::Chat, "decision:");
    assert!(
        test.contains("delete, warn") && test.contains("term \"idiot\""),
        "{test}"
    );
    m.privmsg(CHANNEL, "!help");
    bot_notice(&mut m, CHANNEL, "Usage: !<COMMAND>");
    // Why did the bot act? carol insults, the moderator asks.
    carol.join(CHANNEL);
    carol.privmsg(CHANNEL, "what an idiot");
    bot_notice(&mut carol, "carol", "no insults");
    m.privmsg(CHANNEL, "!why carol");
    bot_notice(&mut m, CHANNEL, "rules insults -> delete, warn, escalate");
    bot_notice(&mut m, CHANNEL, "term \"idiot\" matched \"idiot\"");
    // The rest of the commands, from the side not used above.
    m.privmsg(CHANNEL, "!strikes show carol");
    bot_notice(&mut m, CHANNEL, "carol has 1 strike(s) now");
    m.privmsg(CHANNEL, "!audit carol -n 3");
    bot_notice(&mut m, CHANNEL, "decision carol in #chat: rules insults");
    m.privmsg(CHANNEL, "!policy status");
    bot_notice(&mut m, CHANNEL, "policy \"e2e\"");
    m.privmsg(CHANNEL, "!policy test kickme");
    bot_notice(&mut m, CHANNEL, "decision: kick");
    w.say(&w.admin, &w.room, "!why carol");
    w.bot_says(
        Who::Admin,
        In::Chat,
        "rules insults -> delete, warn, escalate",
    );
    w.say(&w.admin, &w.room, "!warn carol last warning");
    assert_eq!(
        bot_notice(&mut carol, "carol", "last warning"),
        "last warning"
    );
    w.say(&w.admin, &w.room, "!strikes clear carol");
    w.bot_says(Who::Admin, In::Chat, "carol's strikes are cleared");
    m.privmsg(CHANNEL, "!strikes show carol");
    bot_notice(&mut m, CHANNEL, "carol has 0 strike(s) now");
    w.say(&w.admin, &w.room, "!help");
    w.bot_says(Who::Admin, In::Chat, "Usage: !<COMMAND>");
    // Commands and their answers are not relayed to the other side.
    carol.privmsg(CHANNEL, "the end");
    let seen = collect(&w.rt, &mut w.alice, &w.room, |s| s.2.contains("the end"));
    // (alice sees the admin's Matrix commands natively; the bot must add nothing from IRC.)
    let from_bot: Vec<&str> = seen
        .iter()
        .filter(|s| s.1.starts_with("@bw:"))
        .map(|s| s.2.as_str())
        .collect();
    assert!(
        from_bot.iter().all(|t| !t.contains("<ircmod>")
            && !t.contains("1 strike(s)")
            && !t.contains("decision: kick")),
        "{from_bot:#?}"
    );
    w.stop_daemon();
}

#[test]
fn a_later_permanent_mute_is_not_lifted_by_an_earlier_timed_one() {
    let mut w = World::new(POLICY);
    w.start_daemon();
    let alice = format!("@alice:{SERVER_NAME}");
    w.say(&w.admin, &w.room, &format!("!mute {alice} 4s"));
    w.bot_says(Who::Admin, In::Chat, &format!("mute {alice} done"));
    w.say(&w.admin, &w.room, &format!("!mute {alice}"));
    w.bot_says(Who::Admin, In::Chat, &format!("mute {alice} done"));
    std::thread::sleep(Duration::from_secs(7));
    assert!(
        try_say(&w, &w.alice, &w.room, "free?").is_err(),
        "the first mute's timed undo lifted the second, permanent mute:\n{}",
        w.daemon_log()
    );
    w.say(&w.admin, &w.room, &format!("!unmute {alice}"));
    w.bot_says(Who::Admin, In::Chat, &format!("unmute {alice} done"));
    assert!(try_say(&w, &w.alice, &w.room, "free now").is_ok());
    w.stop_daemon();
}

#[test]
fn a_timed_mute_ends_on_time_across_a_daemon_restart() {
    let mut w = World::new(POLICY);
    w.start_daemon();
    let mut carol = w.irc_user("carol");
    let mut dave = w.irc_user("dave");
    let alice = format!("@alice:{SERVER_NAME}");
    let t0 = Instant::now();
    w.say(&w.admin, &w.room, "!mute carol 12s");
    w.say(&w.admin, &w.room, &format!("!mute {alice} 12s"));
    w.bot_says(Who::Admin, In::Chat, &format!("mute {alice} done"));
    assert!(!heard(
        &mut carol,
        &mut dave,
        "muted",
        Duration::from_secs(1)
    ));
    assert!(try_say(&w, &w.alice, &w.room, "muted?").is_err());

    w.stop_daemon();
    // A kick the last run recorded but never saw end (as if killed in the middle of it): the
    // next start gives it the outcome `interrupted` and tells the moderators.
    let interrupted = {
        let audit = w.audit();
        let kick = bridgewarden::audit::ActionRecord {
            action: "kick".into(),
            room: format!("test {CHANNEL}"),
            target: bridgewarden::audit::Who {
                network: "irc:test".into(),
                identity: "irc:test:nick:mallory".into(),
                name: "mallory".into(),
            },
            actor: bridgewarden::audit::Actor::Policy {
                rule: "insults".into(),
            },
            duration: None,
            reason: None,
            message: None,
            outcome: bridgewarden::audit::Outcome::Pending,
        };
        let now = bridgewarden::audit::now_ms();
        w.rt.block_on(audit.begin_action(kick, None, now))
            .unwrap()
            .id
    };
    std::thread::sleep(Duration::from_secs(1));
    w.start_daemon();
    let notice = w.bot_says(
        Who::Admin,
        In::Mods,
        "interrupted when bridgewarden last stopped",
    );
    assert!(
        notice.contains("mallory") && notice.contains("kick"),
        "{notice}"
    );

    // Both undo on time: not before 12 s, and within a few seconds after.
    let deadline = t0 + Duration::from_secs(25);
    loop {
        if heard(
            &mut carol,
            &mut dave,
            "free again",
            Duration::from_millis(500),
        ) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "carol still muted:\n{}",
            w.daemon_log()
        );
    }
    let irc_done = t0.elapsed();
    loop {
        if try_say(&w, &w.alice, &w.room, "me too").is_ok() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "alice still muted:\n{}",
            w.daemon_log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let matrix_done = t0.elapsed();
    assert!(
        irc_done >= Duration::from_secs(12) && matrix_done >= Duration::from_secs(12),
        "{irc_done:?} {matrix_done:?}"
    );
    w.stop_daemon();
    let audit = w.audit();
    let carol_records = audit.by_user("irc:test:nick:carol", 50).unwrap();
    assert!(
        carol_records.iter().any(|r| matches!(&r.entry, Entry::Action(a) if a.action == "unmute" && a.actor == bridgewarden::audit::Actor::Schedule)),
        "{carol_records:#?}"
    );
    assert!(
        audit.scheduled().unwrap().is_empty(),
        "nothing left scheduled"
    );
    let mut kick = vec![audit.get(interrupted).unwrap().unwrap()];
    audit.settle_outcomes(&mut kick).unwrap();
    assert!(
        matches!(&kick[0].entry, Entry::Action(a) if a.outcome == bridgewarden::audit::Outcome::Interrupted),
        "{kick:#?}"
    );
    assert!(
        audit.unfinished_actions(0, 10).unwrap().is_empty(),
        "nothing else unfinished"
    );
}

#[test]
fn the_policy_reloads_when_good_and_is_kept_when_broken() {
    let mut w = World::new(POLICY);
    w.start_daemon();
    let mut carol = w.irc_user("carol");
    let policy = w.dir.path().join("policy.toml");

    carol.privmsg(CHANNEL, "banana one");
    w.rt.block_on(w.alice.expect(&w.room, |s| s.2.contains("banana one")));
    // A file change: banana becomes an insult.
    std::fs::write(
        &policy,
        POLICY.replace("terms = [\"idiot\"]", "terms = [\"idiot\", \"banana\"]"),
    )
    .unwrap();
    let text = w.bot_says(Who::Admin, In::Mods, "policy reloaded (file change)");
    assert!(text.contains("\"e2e\""), "{text}");
    carol.privmsg(CHANNEL, "banana two");
    bot_notice(&mut carol, "carol", "no insults");
    // A broken file: the error with its position, and the old policy stays.
    std::fs::write(
        &policy,
        "[policy]\nname = \"e2e\"\nformat = 1\n\n[[rule]]\nid = \"x\"\nwhen = { lisst = \"a\" }\n",
    )
    .unwrap();
    let text = w.bot_says(Who::Admin, In::Mods, "failed; still using");
    assert!(text.contains("policy.toml:7:"), "{text}");
    carol.privmsg(CHANNEL, "banana three");
    bot_notice(&mut carol, "carol", "no insults");
    // SIGHUP after restoring the original.
    std::fs::write(&policy, POLICY).unwrap();
    let hup = std::process::Command::new("kill")
        .args(["-HUP", &w.pid().to_string()])
        .status()
        .unwrap();
    assert!(hup.success());
    w.bot_says(Who::Admin, In::Mods, "policy reloaded (SIGHUP)");
    carol.privmsg(CHANNEL, "banana four");
    w.rt.block_on(w.alice.expect(&w.room, |s| s.2.contains("banana four")));
    // And by command.
    w.say(&w.admin, &w.room, "!policy reload");
    w.bot_says(Who::Admin, In::Mods, "policy reloaded (@admin:");
    w.stop_daemon();
    let audit = w.audit();
    let loads: Vec<(bool, String)> = audit
        .recent(100)
        .unwrap()
        .into_iter()
        .filter_map(|r| match r.entry {
            Entry::PolicyLoad(p) => Some((p.ok, p.by)),
            _ => None,
        })
        .collect();
    assert_eq!(loads.len(), 5, "{loads:?}");
    assert!(
        loads.iter().any(|(ok, by)| !ok && by == "file change"),
        "{loads:?}"
    );
}

#[test]
fn sigkill_mid_stream_duplicates_no_relay_and_loses_no_audited_action() {
    let mut w = World::new(POLICY);
    w.start_daemon();
    let mut carol = w.irc_user("carol");
    let mut dave = w.irc_user("dave");
    let n = 120;
    for i in 0..n {
        if i == n / 2 {
            w.kill_daemon();
            w.start_daemon();
        }
        // Every tenth message from carol is an insult: warned, audited.
        let text = if i % 10 == 0 {
            format!("idiot {i}")
        } else {
            format!("irc-{i}")
        };
        carol.privmsg(CHANNEL, &text);
        w.say(&w.alice, &w.room, &format!("mx-{i}"));
        std::thread::sleep(Duration::from_millis(30));
    }
    carol.privmsg(CHANNEL, "irc-end");
    w.say(&w.alice, &w.room, "mx-end");
    let seen = collect(&w.rt, &mut w.admin, &w.room, |s| s.2.ends_with("irc-end"));
    dave.expect_privmsg(CHANNEL, |t| t.ends_with("mx-end"), WAIT)
        .expect("the Matrix stream reached IRC");
    carol.expect(|_| false, Duration::from_secs(2));
    let warnings = carol
        .log
        .iter()
        .filter(|l| l.contains("NOTICE carol") && l.contains("no insults"))
        .count();
    w.stop_daemon();

    let count = |texts: &mut dyn Iterator<Item = String>| {
        let mut m = std::collections::HashMap::<String, usize>::new();
        for t in texts {
            *m.entry(t).or_default() += 1;
        }
        m
    };
    let to_matrix = count(
        &mut seen
            .iter()
            .filter(|s| s.1 == w.bot.user_id)
            .map(|s| s.2.clone()),
    );
    let to_irc = count(
        &mut dave
            .log
            .iter()
            .filter_map(|l| l.split_once(" :<").map(|(_, t)| t.to_string())),
    );
    let dup: Vec<_> = to_matrix
        .iter()
        .chain(to_irc.iter())
        .filter(|(_, c)| **c > 1)
        .collect();
    assert!(dup.is_empty(), "duplicated relays: {dup:?}");
    assert!(
        to_matrix.len() > n / 2 && to_irc.len() > n / 2,
        "{} {}",
        to_matrix.len(),
        to_irc.len()
    );
    // Each warning carol received is in the audit log, before its outcome.
    let audit = w.audit();
    let records = audit.by_user("irc:test:nick:carol", 1000).unwrap();
    let warns: Vec<_> = records
        .iter()
        .filter(|r| matches!(&r.entry, Entry::Action(a) if a.action == "warn"))
        .collect();
    assert!(
        warns.len() >= warnings && warnings >= 6,
        "{} warn records for {warnings} warnings received",
        warns.len()
    );
    for r in &warns {
        let decision = audit.get(r.case).unwrap().expect("the case's decision");
        assert!(matches!(decision.entry, Entry::Decision(_)) && decision.id < r.id);
    }
}
