//! Matrix fixtures: a Synapse (from the venv `contrib/install-test-servers.sh` creates) per
//! test, on a free port in a temp dir, with users registered through the shared-secret admin
//! API.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use hmac::{Hmac, Mac};
use serde_json::{json, Value};

use super::{fill, free_port, repo, Server};

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
