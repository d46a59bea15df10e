//! IRC fixtures: the test servers (InspIRCd + Atheme, ngIRCd) started per test on free ports,
//! and a raw IRC client for "the other side".

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use bridgewarden::irc::line::Line;

/// A plain-socket IRC client that registers, joins and checks what it receives.
pub struct RawClient {
    writer: TcpStream,
    reader: BufReader<TcpStream>,
    pub nick: String,
    /// Every line received so far (for failure messages).
    pub log: Vec<String>,
}

impl RawClient {
    /// Connects and registers with NICK/USER, answering PINGs, until 001.
    pub fn connect(port: u16, nick: &str) -> RawClient {
        Self::connect_with(port, nick, &[], None)
    }

    /// Connects, requests `caps` (and SASL PLAIN with `sasl`), registers.
    pub fn connect_with(
        port: u16,
        nick: &str,
        caps: &[&str],
        sasl: Option<(&str, &str)>,
    ) -> RawClient {
        let stream = TcpStream::connect(("127.0.0.1", port)).expect("connect to the IRC server");
        stream
            .set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let mut c = RawClient {
            writer: stream.try_clone().unwrap(),
            reader: BufReader::new(stream),
            nick: nick.to_string(),
            log: Vec::new(),
        };
        let mut want: Vec<&str> = caps.to_vec();
        if sasl.is_some() {
            want.push("sasl");
        }
        if !want.is_empty() {
            c.send("CAP LS 302");
        }
        c.send(&format!("NICK {nick}"));
        c.send(&format!("USER {nick} 0 * :test client {nick}"));
        if !want.is_empty() {
            c.expect(
                |l| l.command == "CAP" && l.param(1) == Some("LS") && l.param(2) != Some("*"),
                Duration::from_secs(10),
            )
            .expect("CAP LS reply");
            c.send(&format!("CAP REQ :{}", want.join(" ")));
            c.expect(
                |l| l.command == "CAP" && l.param(1) == Some("ACK"),
                Duration::from_secs(10),
            )
            .expect("CAP ACK");
            if let Some((account, password)) = sasl {
                use base64::Engine as _;
                c.send("AUTHENTICATE PLAIN");
                c.expect(|l| l.command == "AUTHENTICATE", Duration::from_secs(10))
                    .expect("AUTHENTICATE +");
                let payload = base64::engine::general_purpose::STANDARD
                    .encode(format!("{account}\0{account}\0{password}"));
                c.send(&format!("AUTHENTICATE {payload}"));
                c.expect(|l| l.command == "903", Duration::from_secs(10))
                    .expect("SASL success (903)");
            }
            c.send("CAP END");
        }
        c.expect(|l| l.command == "001", Duration::from_secs(15))
            .unwrap_or_else(|| panic!("{nick} did not register"));
        c
    }

    pub fn send(&mut self, line: &str) {
        self.writer
            .write_all(format!("{line}\r\n").as_bytes())
            .expect("write to the IRC server");
    }

    /// Reads lines until one satisfies `pred` (answering PINGs), or the timeout passes.
    pub fn expect(&mut self, pred: impl Fn(&Line) -> bool, timeout: Duration) -> Option<Line> {
        let deadline = Instant::now() + timeout;
        let mut buf = String::new();
        while Instant::now() < deadline {
            buf.clear();
            match self.reader.read_line(&mut buf) {
                Ok(0) => return None,
                Ok(_) => {
                    let text = buf.trim_end_matches(['\r', '\n']).to_string();
                    self.log.push(text.clone());
                    let Ok(line) = Line::parse(&text) else {
                        continue;
                    };
                    if line.command == "PING" {
                        self.send(&format!("PONG :{}", line.param(0).unwrap_or("")));
                        continue;
                    }
                    if pred(&line) {
                        return Some(line);
                    }
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(_) => return None,
            }
        }
        None
    }

    /// True when no line satisfying `pred` arrives within `wait`.
    pub fn expect_none(&mut self, pred: impl Fn(&Line) -> bool, wait: Duration) -> bool {
        self.expect(pred, wait).is_none()
    }

    /// Joins a channel and waits for the end of its NAMES.
    pub fn join(&mut self, channel: &str) {
        self.send(&format!("JOIN {channel}"));
        let ch = channel.to_string();
        self.expect(
            |l| l.command == "366" && l.param(1).is_some_and(|c| c.eq_ignore_ascii_case(&ch)),
            Duration::from_secs(10),
        )
        .unwrap_or_else(|| panic!("{} could not join {channel}", self.nick));
    }

    pub fn privmsg(&mut self, target: &str, text: &str) {
        self.send(&format!("PRIVMSG {target} :{text}"));
    }

    /// Waits for a PRIVMSG to `target` whose text satisfies `text`.
    pub fn expect_privmsg(
        &mut self,
        target: &str,
        text: impl Fn(&str) -> bool,
        timeout: Duration,
    ) -> Option<Line> {
        let target = target.to_string();
        self.expect(
            |l| {
                l.command == "PRIVMSG"
                    && l.param(0).is_some_and(|t| t.eq_ignore_ascii_case(&target))
                    && text(l.param(1).unwrap_or(""))
            },
            timeout,
        )
    }
}

use super::{fill, free_port, wait_for_port, Server};

const INSPIRCD_CONF: &str = include_str!("../../servers/inspircd.conf");
const INSPIRCD_TLS_CONF: &str = include_str!("../../servers/inspircd-tls.conf");
const NGIRCD_TLS_CONF: &str = include_str!("../../servers/ngircd-tls.conf");

/// Creates the test CA, server and client certificates in `dir` (tests/servers/make-certs.sh).
fn make_certs(dir: &std::path::Path) {
    let script = super::repo().join("tests/servers/make-certs.sh");
    let out = std::process::Command::new("bash")
        .arg(&script)
        .arg(dir)
        .output()
        .expect("make-certs.sh");
    assert!(
        out.status.success(),
        "make-certs.sh: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
const ATHEME_CONF: &str = include_str!("../../servers/atheme.conf");
const NGIRCD_CONF: &str = include_str!("../../servers/ngircd.conf");
const LINK_PASSWORD: &str = "linkpass-for-tests";

/// InspIRCd with Atheme services linked to it, in a temp dir, on free ports.
pub struct InspIrcd {
    pub port: u16,
    /// The TLS listener, when started with TLS (certificates are in `dir`).
    pub tls_port: Option<u16>,
    link_port: u16,
    // Dropped in this order: the servers stop, then their files go.
    ircd: Server,
    _services: Server,
    pub dir: tempfile::TempDir,
}

impl InspIrcd {
    /// Starts both and waits until SASL is offered (Atheme linked).
    pub fn start() -> InspIrcd {
        Self::start_with(false)
    }

    /// With `tls`, also a TLS listener, and certificates for SASL EXTERNAL.
    pub fn start_with(tls: bool) -> InspIrcd {
        let dir = tempfile::tempdir().unwrap();
        let (port, link_port, tls_port) = (free_port(), free_port(), free_port());
        let values = [
            ("client_port", port.to_string()),
            ("link_port", link_port.to_string()),
            ("tls_port", tls_port.to_string()),
            ("dir", dir.path().display().to_string()),
            ("password", LINK_PASSWORD.to_string()),
        ];
        let values: Vec<(&str, &str)> = values.iter().map(|(k, v)| (*k, v.as_str())).collect();
        if tls {
            make_certs(dir.path());
        }
        let template = if tls {
            INSPIRCD_TLS_CONF
        } else {
            INSPIRCD_CONF
        };
        std::fs::write(dir.path().join("inspircd.conf"), fill(template, &values)).unwrap();
        std::fs::write(dir.path().join("atheme.conf"), fill(ATHEME_CONF, &values)).unwrap();
        let ircd = start_inspircd(dir.path());
        let d = dir.path().display().to_string();
        let (conf, log, pid) = (
            format!("{d}/atheme.conf"),
            format!("{d}/atheme.log"),
            format!("{d}/atheme.pid"),
        );
        let mut services = Server::start(
            "atheme",
            "atheme-services",
            &["-n", "-c", &conf, "-D", &d, "-l", &log, "-p", &pid],
            dir.path(),
        );
        // SIGTERM lets Atheme write its account database.
        services.stop_signal = 15;
        let s = InspIrcd {
            port,
            tls_port: tls.then_some(tls_port),
            link_port,
            ircd,
            _services: services,
            dir,
        };
        s.wait_ready();
        s
    }

    /// Waits until the server offers SASL, i.e. Atheme is linked.
    pub fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(mut s) = TcpStream::connect(("127.0.0.1", self.port)) {
                let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
                let _ = s.write_all(b"CAP LS 302\r\n");
                let mut line = String::new();
                if BufReader::new(&s).read_line(&mut line).is_ok() && line.contains(" sasl=") {
                    return;
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("InspIRCd + Atheme not ready:\n{}", self.ircd.log());
    }

    /// Kills InspIRCd (SIGKILL) and starts it again on the same ports; Atheme keeps running
    /// and relinks.
    pub fn kill_ircd(&mut self) {
        self.ircd.kill();
    }

    pub fn restart_ircd(&mut self) {
        self.ircd = start_inspircd(self.dir.path());
        assert!(
            wait_for_port(self.port, Duration::from_secs(10)),
            "InspIRCd did not come back"
        );
        let _ = self.link_port;
    }

    /// Registers a services account (NickServ REGISTER); returns the client, logged in.
    pub fn register(&self, nick: &str, password: &str) -> RawClient {
        let mut c = RawClient::connect(self.port, nick);
        c.privmsg(
            "NickServ",
            &format!("REGISTER {password} {nick}@example.org"),
        );
        c.expect(|l| l.command == "900", Duration::from_secs(10))
            .unwrap_or_else(|| panic!("could not register {nick}: {:?}", c.log));
        c
    }
}

fn start_inspircd(dir: &std::path::Path) -> Server {
    let conf = dir.join("inspircd.conf").display().to_string();
    Server::start(
        "inspircd",
        "inspircd",
        &["--nofork", "--runasroot", "--config", &conf],
        dir,
    )
}

/// ngIRCd in a temp dir on a free port.
pub struct NgIrcd {
    pub port: u16,
    /// The TLS listener, when started with TLS (certificates are in `dir`).
    pub tls_port: Option<u16>,
    // Dropped in this order: the server stops, then its files go.
    _server: Server,
    pub dir: tempfile::TempDir,
}

impl NgIrcd {
    pub fn start() -> NgIrcd {
        Self::start_with(false)
    }

    pub fn start_with(tls: bool) -> NgIrcd {
        let dir = tempfile::tempdir().unwrap();
        // ngIRCd drops to nobody before writing its pid file.
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
        let (port, tls_port) = (free_port(), free_port());
        let values = [
            ("client_port", port.to_string()),
            ("tls_port", tls_port.to_string()),
            ("dir", dir.path().display().to_string()),
            ("password", LINK_PASSWORD.to_string()),
        ];
        let values: Vec<(&str, &str)> = values.iter().map(|(k, v)| (*k, v.as_str())).collect();
        if tls {
            make_certs(dir.path());
        }
        let template = if tls { NGIRCD_TLS_CONF } else { NGIRCD_CONF };
        std::fs::write(dir.path().join("ngircd.conf"), fill(template, &values)).unwrap();
        std::fs::create_dir_all(dir.path().join("ngircd.conf.d")).unwrap();
        std::fs::write(dir.path().join("ngircd.motd"), "bridgewarden test server\n").unwrap();
        let server = start_ngircd(dir.path());
        let ready = wait_for_port(port, Duration::from_secs(10))
            && (!tls || wait_for_port(tls_port, Duration::from_secs(10)));
        assert!(ready, "ngIRCd did not start:\n{}", server.log());
        NgIrcd {
            port,
            tls_port: tls.then_some(tls_port),
            _server: server,
            dir,
        }
    }
}

fn start_ngircd(dir: &std::path::Path) -> Server {
    let conf = dir.join("ngircd.conf").display().to_string();
    Server::start("ngircd", "ngircd", &["--nodaemon", "--config", &conf], dir)
}
