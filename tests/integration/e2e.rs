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
    synapse: Synapse,
    bot: Account,
    dir: tempfile::TempDir,
}

impl World {
    /// Servers up, Matrix rooms made (the bot invited and given power), config written.
    fn new(policy: &str) -> World {
        let irc = InspIrcd::start();
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
        std::fs::write(dir.path().join("matrix-password"), format!("{}\n", bot.password)).unwrap();
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
            synapse,
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
        let mut server = Server::start("bridgewarden", exe, &["run", "--config", &config], self.dir.path());
        server.stop_signal = 15;
        self.daemon = Some(server);
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if self.http("/health").0 == 200 {
                break;
            }
            assert!(Instant::now() < deadline, "the daemon did not become healthy:\n{}", self.daemon_log());
            std::thread::sleep(Duration::from_millis(100));
        }
        // The bot is first in the channel, so the server made it an operator.
        let mut probe = RawClient::connect(self.irc.port, &format!("probe{}", free_port()));
        let deadline = Instant::now() + WAIT;
        loop {
            probe.send(&format!("NAMES {CHANNEL}"));
            let names = probe.expect(|l| l.command == "353" || l.command == "366", Duration::from_secs(2));
            if names.is_some_and(|l| l.command == "353" && l.param(3).is_some_and(|n| n.split(' ').any(|x| x == format!("@{BOT_NICK}")))) {
                break;
            }
            assert!(Instant::now() < deadline, "the bot is not an operator in {CHANNEL}:\n{}", self.daemon_log());
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
        self.daemon.as_ref().and_then(Server::pid).expect("the daemon runs")
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
        let status = out.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
        let body = out.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
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
        self.rt.block_on(peer.say(room, RoomMessageEventContent::text_plain(text)))
    }

    fn say_html(&self, peer: &Peer, room: &OwnedRoomId, body: &str, html: &str) -> String {
        self.rt.block_on(peer.say(room, RoomMessageEventContent::text_html(body, html)))
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
    let s = w.rt.block_on(w.alice.expect(&w.room, |s| s.2.contains("bold and plain")));
    assert_eq!(s.2, "<carol> bold and plain");
    assert!(s.3.as_deref().is_some_and(|h| h.contains("<strong>bold</strong>")), "{s:?}");
    // An emote.
    carol.privmsg(CHANNEL, "\x01ACTION waves\x01");
    let s = w.rt.block_on(w.alice.expect(&w.room, |s| s.2.contains("waves")));
    assert_eq!(s.2, "* carol waves");

    // Matrix -> IRC: HTML italics become mIRC italics, the sender's name in front.
    w.say_html(&w.alice, &w.room, "hi there", "<em>hi</em> there");
    let line = carol
        .expect_privmsg(CHANNEL, |t| t.contains("there"), WAIT)
        .unwrap_or_else(|| panic!("no relay on IRC: {:?}\n{}", carol.log, w.daemon_log()));
    assert_eq!(line.param(1).unwrap(), format!("<{}> \x1dhi\x1d there", shown("alice")));
    // HTML in a plain Matrix message reaches IRC as text, and a newline never splits a command.
    w.say(&w.alice, &w.room, "a <b>tag</b>\r\nQUIT :injected");
    let line = carol.expect_privmsg(CHANNEL, |t| t.contains("tag"), WAIT).unwrap();
    assert!(line.param(1).unwrap().contains("a <b>tag</b>"), "{line:?}");
    assert!(carol.expect_none(|l| l.command == "QUIT" && l.nick() == Some(BOT_NICK), Duration::from_secs(1)));

    // Another bridge's bot is not relayed.
    let mut other = w.irc_user("otherbridge");
    other.privmsg(CHANNEL, "[telegram] <x> relayed elsewhere");
    carol.privmsg(CHANNEL, "after the other bridge");
    let seen = collect(&w.rt, &mut w.alice, &w.room, |s| s.2.contains("after the other bridge"));
    assert!(seen.iter().all(|s| !s.2.contains("relayed elsewhere")), "{seen:?}");

    // Metrics count the relays.
    let (status, metrics) = w.http("/metrics");
    assert_eq!(status, 200);
    assert!(metrics.contains("bridgewarden_relayed_total{direction=\"irc_to_matrix\"}"), "{metrics}");
    assert!(metrics.contains("bridgewarden_irc_connected{network=\"test\"} 1"), "{metrics}");
    w.stop_daemon();
    assert!(w.daemon_log().contains("stopped"), "graceful stop:\n{}", w.daemon_log());
    let _ = (&w.synapse, &w.bot, &w.mods, &w.admin);
}
