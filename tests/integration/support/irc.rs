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
    pub fn connect_with(port: u16, nick: &str, caps: &[&str], sasl: Option<(&str, &str)>) -> RawClient {
        let stream = TcpStream::connect(("127.0.0.1", port)).expect("connect to the IRC server");
        stream.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
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
            c.expect(|l| l.command == "CAP" && l.param(1) == Some("LS") && l.param(2) != Some("*"), Duration::from_secs(10))
                .expect("CAP LS reply");
            c.send(&format!("CAP REQ :{}", want.join(" ")));
            c.expect(|l| l.command == "CAP" && l.param(1) == Some("ACK"), Duration::from_secs(10)).expect("CAP ACK");
            if let Some((account, password)) = sasl {
                use base64::Engine as _;
                c.send("AUTHENTICATE PLAIN");
                c.expect(|l| l.command == "AUTHENTICATE", Duration::from_secs(10)).expect("AUTHENTICATE +");
                let payload = base64::engine::general_purpose::STANDARD.encode(format!("{account}\0{account}\0{password}"));
                c.send(&format!("AUTHENTICATE {payload}"));
                c.expect(|l| l.command == "903", Duration::from_secs(10)).expect("SASL success (903)");
            }
            c.send("CAP END");
        }
        c.expect(|l| l.command == "001", Duration::from_secs(15)).unwrap_or_else(|| panic!("{nick} did not register"));
        c
    }

    pub fn send(&mut self, line: &str) {
        self.writer.write_all(format!("{line}\r\n").as_bytes()).expect("write to the IRC server");
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
                    let Ok(line) = Line::parse(&text) else { continue };
                    if line.command == "PING" {
                        self.send(&format!("PONG :{}", line.param(0).unwrap_or("")));
                        continue;
                    }
                    if pred(&line) {
                        return Some(line);
                    }
                }
                Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
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
        self.expect(|l| l.command == "366" && l.param(1).is_some_and(|c| c.eq_ignore_ascii_case(&ch)), Duration::from_secs(10))
            .unwrap_or_else(|| panic!("{} could not join {channel}", self.nick));
    }

    pub fn privmsg(&mut self, target: &str, text: &str) {
        self.send(&format!("PRIVMSG {target} :{text}"));
    }

    /// Waits for a PRIVMSG to `target` whose text satisfies `text`.
    pub fn expect_privmsg(&mut self, target: &str, text: impl Fn(&str) -> bool, timeout: Duration) -> Option<Line> {
        let target = target.to_string();
        self.expect(|l| l.command == "PRIVMSG" && l.param(0).is_some_and(|t| t.eq_ignore_ascii_case(&target)) && text(l.param(1).unwrap_or("")), timeout)
    }
}
