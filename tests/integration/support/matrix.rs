//! Matrix fixtures: a Synapse (from the venv `contrib/install-test-servers.sh` creates) per
//! test, on a free port in a temp dir, with users registered through the shared-secret admin
//! API.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use hmac::{Hmac, Mac};
use serde_json::{json, Value};

use matrix_sdk::config::SyncSettings;
use matrix_sdk::room::Room;
use matrix_sdk::ruma::api::client::room::create_room::v3::Request as CreateRoom;
use matrix_sdk::ruma::events::room::encryption::RoomEncryptionEventContent;
use matrix_sdk::ruma::events::room::message::{
    OriginalSyncRoomMessageEvent, RoomMessageEventContent,
};
use matrix_sdk::ruma::events::room::redaction::OriginalSyncRoomRedactionEvent;
use matrix_sdk::ruma::events::InitialStateEvent;
use matrix_sdk::ruma::{Int, OwnedRoomId, OwnedUserId};
use matrix_sdk::Client;
use tokio::sync::mpsc;

use super::{fill, free_port, repo, Server};

/// How long tests wait for something to arrive.
pub const WAIT: Duration = Duration::from_secs(20);

const SYNAPSE_CONF: &str = include_str!("../../servers/synapse.yaml");
const SYNAPSE_LOG: &str = include_str!("../../servers/synapse-log.yaml");
const SECRET: &str = "shared-secret-for-tests";
pub const SERVER_NAME: &str = "bw.test";

/// The Python of the Synapse venv.
pub fn python() -> PathBuf {
    let venv = std::env::var_os("BRIDGEWARDEN_SYNAPSE_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join("target/synapse-venv"));
    venv.join("bin/python")
}

pub struct Synapse {
    pub port: u16,
    server: Server,
    pub dir: tempfile::TempDir,
}

/// A registered user.
#[derive(Debug, Clone)]
pub struct Account {
    pub user_id: String,
    pub localpart: String,
    pub password: String,
}

impl Synapse {
    pub fn start() -> Synapse {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let d = dir.path().display().to_string();
        let p = port.to_string();
        let values = [
            ("server_name", SERVER_NAME),
            ("port", p.as_str()),
            ("dir", d.as_str()),
            ("secret", SECRET),
        ];
        std::fs::write(
            dir.path().join("homeserver.yaml"),
            fill(SYNAPSE_CONF, &values),
        )
        .unwrap();
        std::fs::write(dir.path().join("log.yaml"), fill(SYNAPSE_LOG, &values)).unwrap();
        let conf = dir.path().join("homeserver.yaml").display().to_string();
        let py = python();
        assert!(
            py.exists(),
            "no Synapse venv at {}: run contrib/install-test-servers.sh",
            py.display()
        );
        let status = std::process::Command::new(&py)
            .args([
                "-m",
                "synapse.app.homeserver",
                "-c",
                &conf,
                "--generate-keys",
            ])
            .current_dir(dir.path())
            .output()
            .expect("generate Synapse keys");
        assert!(
            status.status.success(),
            "{}",
            String::from_utf8_lossy(&status.stderr)
        );
        let server = start_synapse(&py, &conf, dir.path());
        let s = Synapse { port, server, dir };
        s.wait_ready();
        s
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if http(self.port, "GET", "/_matrix/client/versions", None)
                .is_ok_and(|(code, _)| code == 200)
            {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("Synapse did not start:\n{}", self.server.log());
    }

    /// Stops Synapse (SIGTERM, then SIGKILL) and starts it again on the same port and data.
    pub fn restart(&mut self) {
        self.server.stop();
        let conf = self
            .dir
            .path()
            .join("homeserver.yaml")
            .display()
            .to_string();
        self.server = start_synapse(&python(), &conf, self.dir.path());
        self.wait_ready();
    }

    /// Registers a user through the shared-secret admin API.
    pub fn register(&self, localpart: &str) -> Account {
        let password = format!("{localpart}-password");
        let (_, nonce) =
            http(self.port, "GET", "/_synapse/admin/v1/register", None).expect("nonce");
        let nonce = nonce["nonce"].as_str().expect("nonce").to_string();
        let mut mac = Hmac::<sha1::Sha1>::new_from_slice(SECRET.as_bytes()).unwrap();
        mac.update(format!("{nonce}\0{localpart}\0{password}\0notadmin").as_bytes());
        let mac: String = mac
            .finalize()
            .into_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let body = json!({"nonce": nonce, "username": localpart, "password": password, "admin": false, "mac": mac});
        let (code, reply) = http(
            self.port,
            "POST",
            "/_synapse/admin/v1/register",
            Some(&body),
        )
        .expect("register");
        assert_eq!(code, 200, "registering {localpart}: {reply}");
        Account {
            user_id: reply["user_id"].as_str().unwrap().to_string(),
            localpart: localpart.to_string(),
            password,
        }
    }
}

fn start_synapse(py: &std::path::Path, conf: &str, dir: &std::path::Path) -> Server {
    let mut s = Server::start(
        "synapse",
        py.to_str().unwrap(),
        &["-m", "synapse.app.homeserver", "-c", conf],
        dir,
    );
    s.stop_signal = 15;
    s
}

/// A small HTTP/1.1 JSON request to 127.0.0.1:`port`.
pub fn http(
    port: u16,
    method: &str,
    path: &str,
    body: Option<&Value>,
) -> std::io::Result<(u16, Value)> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    let mut raw = String::new();
    s.read_to_string(&mut raw)?;
    let code = raw
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let json = raw.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
    // Chunked bodies: take the JSON between the first '{' and the last '}'.
    let start = json.find('{').unwrap_or(0);
    let end = json.rfind('}').map_or(json.len(), |e| e + 1);
    Ok((
        code,
        serde_json::from_str(&json[start..end.max(start)]).unwrap_or(Value::Null),
    ))
}

/// What a peer saw: (room, sender, body, formatted body, event id).
pub type Seen = (String, String, String, Option<String>, String);

/// A second Matrix user, syncing in the background.
pub struct Peer {
    pub client: Client,
    pub seen: mpsc::UnboundedReceiver<Seen>,
    pub redactions: mpsc::UnboundedReceiver<String>,
    _dir: tempfile::TempDir,
}

impl Peer {
    pub async fn login(s: &Synapse, a: &Account) -> Peer {
        let dir = tempfile::tempdir().unwrap();
        let client = Client::builder()
            .homeserver_url(s.url())
            .sqlite_store(dir.path(), None)
            .build()
            .await
            .unwrap();
        client
            .matrix_auth()
            .login_username(&a.localpart, &a.password)
            .send()
            .await
            .unwrap();
        client
            .encryption()
            .wait_for_e2ee_initialization_tasks()
            .await;
        client
            .sync_once(SyncSettings::default().timeout(Duration::ZERO))
            .await
            .unwrap();
        let (tx, seen) = mpsc::unbounded_channel();
        client.add_event_handler(move |ev: OriginalSyncRoomMessageEvent, room: Room| {
            let tx = tx.clone();
            async move {
                let formatted = match &ev.content.msgtype {
                    matrix_sdk::ruma::events::room::message::MessageType::Text(t) => {
                        t.formatted.as_ref().map(|f| f.body.clone())
                    }
                    matrix_sdk::ruma::events::room::message::MessageType::Notice(t) => {
                        t.formatted.as_ref().map(|f| f.body.clone())
                    }
                    matrix_sdk::ruma::events::room::message::MessageType::Emote(t) => {
                        t.formatted.as_ref().map(|f| f.body.clone())
                    }
                    _ => None,
                };
                let _ = tx.send((
                    room.room_id().to_string(),
                    ev.sender.to_string(),
                    ev.content.body().to_string(),
                    formatted,
                    ev.event_id.to_string(),
                ));
            }
        });
        let (rtx, redactions) = mpsc::unbounded_channel();
        client.add_event_handler(move |ev: OriginalSyncRoomRedactionEvent| {
            let rtx = rtx.clone();
            async move {
                if let Some(id) = ev.redacts.clone().or(ev.content.redacts.clone()) {
                    let _ = rtx.send(id.to_string());
                }
            }
        });
        let c = client.clone();
        tokio::spawn(async move {
            loop {
                if c.sync_once(SyncSettings::default().timeout(Duration::from_secs(5)))
                    .await
                    .is_err()
                {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        });
        Peer {
            client,
            seen,
            redactions,
            _dir: dir,
        }
    }

    pub async fn create_room(&self, encrypted: bool, invite: &[&str]) -> OwnedRoomId {
        self.create_room_with(encrypted, false, invite).await
    }

    /// `public`: anyone may join (so only a ban keeps someone out).
    pub async fn create_room_with(
        &self,
        encrypted: bool,
        public: bool,
        invite: &[&str],
    ) -> OwnedRoomId {
        let mut req = CreateRoom::new();
        if public {
            req.preset =
                Some(matrix_sdk::ruma::api::client::room::create_room::v3::RoomPreset::PublicChat);
        }
        req.invite = invite
            .iter()
            .map(|u| OwnedUserId::try_from(*u).unwrap())
            .collect();
        if encrypted {
            req.initial_state = vec![InitialStateEvent::with_empty_state_key(
                RoomEncryptionEventContent::with_recommended_defaults(),
            )
            .to_raw_any()];
        }
        self.client
            .create_room(req)
            .await
            .unwrap()
            .room_id()
            .to_owned()
    }

    pub async fn room(&self, id: &OwnedRoomId) -> Room {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(r) = self.client.get_room(id) {
                return r;
            }
            assert!(Instant::now() < deadline, "room {id} unknown to the peer");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub async fn say(&self, room: &OwnedRoomId, content: RoomMessageEventContent) -> String {
        self.room(room)
            .await
            .send(content)
            .await
            .unwrap()
            .response
            .event_id
            .to_string()
    }

    /// The next message in `room` from someone else satisfying `pred`.
    pub async fn expect(&mut self, room: &OwnedRoomId, pred: impl Fn(&Seen) -> bool) -> Seen {
        let me = self.client.user_id().unwrap().to_string();
        let deadline = Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let s = tokio::time::timeout(left, self.seen.recv())
                .await
                .expect("timed out waiting for a message")
                .unwrap();
            if s.0 == room.as_str() && s.1 != me && pred(&s) {
                return s;
            }
        }
    }

    pub async fn join(&self, room: &OwnedRoomId) {
        let deadline = Instant::now() + WAIT;
        loop {
            let last = match self.client.join_room_by_id(room).await {
                Ok(_) => return,
                Err(e) => e.to_string(),
            };
            assert!(Instant::now() < deadline, "could not join {room}: {last}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// Gives `user` power `level` in a room the peer created.
pub async fn set_power(peer: &Peer, room: &OwnedRoomId, user: &str, level: i32) {
    let r = peer.room(room).await;
    r.sync_up().await;
    let id = OwnedUserId::try_from(user).unwrap();
    r.update_power_levels(vec![(&id, Int::from(level))])
        .await
        .unwrap();
}
