//! The IRC adapter: one task per network that owns the connection.
//!
//! It connects (plain or TLS), registers with CAP 302 negotiation and SASL, keeps the link
//! alive (PING, read timeout), reconnects with exponential backoff and jitter, rejoins its
//! channels at a throttled pace, and sends through a token bucket from a bounded queue that
//! survives reconnects (drops are counted and logged, and the caller hears about them).
//! It turns wire lines into [`ChatEvent`]s and executes [`Command`]s; moderation commands
//! are answered only once the server confirmed them (its MODE/KICK echo) or refused them.
//! Nothing else in the program sees an IRC line.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};

use super::channels::Channels;
use super::codec::{self, Ctcp};
use super::flood::TokenBucket;
use super::isupport::{Isupport, MuteMethod};
use super::line::Line;
use crate::chat::{ChatEvent, ChatEventKind, Command, Done, ModeChange, SendKind, Target, User};

/// How to log in with SASL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sasl {
    Plain {
        account: String,
        password: String,
    },
    /// TLS client certificate (`tls.client_cert`), known to services.
    External,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tls {
    /// Trust this CA (PEM) in addition to the public roots (for private networks, tests).
    pub ca_file: Option<PathBuf>,
    /// Client certificate and key (PEM), for SASL EXTERNAL / CertFP.
    pub client_cert: Option<(PathBuf, PathBuf)>,
}

#[derive(Debug, Clone)]
pub struct IrcConfig {
    /// The configured network name; events carry it.
    pub network: String,
    pub host: String,
    pub port: u16,
    pub tls: Option<Tls>,
    /// Server password (PASS).
    pub password: Option<String>,
    pub nick: String,
    /// Nicks to try when ours is taken; then ours with `_` appended.
    pub alt_nicks: Vec<String>,
    pub user: String,
    pub realname: String,
    pub sasl: Option<Sasl>,
    pub channels: Vec<String>,
    /// Lines that may go at once...
    pub flood_burst: u32,
    /// ...then this many per second.
    pub flood_rate: f64,
    /// Lines waiting to be sent at most; beyond, sends fail (counted and logged).
    pub queue_limit: usize,
    /// Lines one relayed message may take; the rest is cut with a marker.
    pub max_lines: usize,
    /// Ping the server after this much silence; give up after as much again.
    pub ping_interval: Duration,
    pub reconnect_min: Duration,
    pub reconnect_max: Duration,
    /// Pause between JOINs after (re)connecting.
    pub join_interval: Duration,
    /// How long to wait for the server to confirm a moderation command.
    pub confirm_timeout: Duration,
}

impl IrcConfig {
    /// Defaults that keep a real network from killing the connection for flooding.
    pub fn new(network: &str, host: &str, port: u16, nick: &str) -> Self {
        IrcConfig {
            network: network.to_string(),
            host: host.to_string(),
            port,
            tls: None,
            password: None,
            nick: nick.to_string(),
            alt_nicks: Vec::new(),
            user: "bridgewarden".into(),
            realname: "bridgewarden Matrix bridge".into(),
            sasl: None,
            channels: Vec::new(),
            flood_burst: 5,
            flood_rate: 2.0,
            queue_limit: 1000,
            max_lines: 5,
            ping_interval: Duration::from_secs(60),
            reconnect_min: Duration::from_millis(500),
            reconnect_max: Duration::from_secs(120),
            join_interval: Duration::from_millis(300),
            confirm_timeout: Duration::from_secs(10),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IrcError {
    #[error("the outbound queue is full ({0} lines): message dropped")]
    QueueFull(usize),
    #[error("the server refused: {0}")]
    Refused(String),
    #[error("no confirmation from the server within {0:?}")]
    Unconfirmed(Duration),
    #[error("not in channel {0}")]
    NotInChannel(String),
    #[error("{0}")]
    Invalid(String),
    #[error("the IRC adapter has stopped")]
    Stopped,
}

/// Counters for metrics and tests.
#[derive(Debug, Default)]
pub struct IrcStats {
    pub connects: AtomicU64,
    pub reconnects: AtomicU64,
    pub lines_sent: AtomicU64,
    pub queue_drops: AtomicU64,
}

/// What the adapter knows about itself.
#[derive(Debug, Clone, Default)]
pub struct Status {
    pub registered: bool,
    pub nick: String,
    pub caps: Vec<String>,
    pub account: Option<String>,
    /// How SASL went on this connection: Some(true) on 903, Some(false) on a failure, None
    /// when not attempted.
    pub sasl: Option<bool>,
    pub channels: Vec<String>,
    pub mute_method: Option<MuteMethod>,
    pub linelen: usize,
    pub queued: usize,
}

enum Request {
    Execute(Command, oneshot::Sender<Result<Done, IrcError>>),
    Status(oneshot::Sender<Status>),
    Member(String, String, oneshot::Sender<Option<User>>),
    Raw(String),
}

/// The handle the rest of the program holds.
#[derive(Clone)]
pub struct IrcHandle {
    requests: mpsc::Sender<Request>,
    pub stats: Arc<IrcStats>,
    network: String,
}

impl IrcHandle {
    pub fn network(&self) -> &str {
        &self.network
    }

    /// Queues a command now, in call order, and returns its outcome to await later: how a
    /// relay keeps messages in order without waiting for each to be written.
    pub async fn submit(
        &self,
        command: Command,
    ) -> Result<impl std::future::Future<Output = Result<Done, IrcError>> + Send + 'static, IrcError>
    {
        let (tx, rx) = oneshot::channel();
        self.requests
            .send(Request::Execute(command, tx))
            .await
            .map_err(|_| IrcError::Stopped)?;
        Ok(async move { rx.await.map_err(|_| IrcError::Stopped)? })
    }

    /// Executes a command; for moderation, returns once the server confirmed it.
    pub async fn execute(&self, command: Command) -> Result<Done, IrcError> {
        let (tx, rx) = oneshot::channel();
        self.requests
            .send(Request::Execute(command, tx))
            .await
            .map_err(|_| IrcError::Stopped)?;
        rx.await.map_err(|_| IrcError::Stopped)?
    }

    pub async fn status(&self) -> Result<Status, IrcError> {
        let (tx, rx) = oneshot::channel();
        self.requests
            .send(Request::Status(tx))
            .await
            .map_err(|_| IrcError::Stopped)?;
        rx.await.map_err(|_| IrcError::Stopped)
    }

    /// A channel member as the adapter knows them (modes, account), for authorisation.
    pub async fn member(&self, channel: &str, nick: &str) -> Result<Option<User>, IrcError> {
        let (tx, rx) = oneshot::channel();
        self.requests
            .send(Request::Member(channel.to_string(), nick.to_string(), tx))
            .await
            .map_err(|_| IrcError::Stopped)?;
        rx.await.map_err(|_| IrcError::Stopped)
    }

    /// Sends a raw line (already safe), for tests and operator tooling.
    pub async fn raw(&self, line: &str) -> Result<(), IrcError> {
        if line.contains(['\r', '\n', '\0']) {
            return Err(IrcError::Invalid("raw line with CR, LF or NUL".into()));
        }
        self.requests
            .send(Request::Raw(line.to_string()))
            .await
            .map_err(|_| IrcError::Stopped)
    }
}

/// Starts the adapter; events arrive on the returned receiver. Dropping every handle stops it.
pub fn spawn(config: IrcConfig) -> (IrcHandle, mpsc::Receiver<ChatEvent>) {
    let (req_tx, req_rx) = mpsc::channel(256);
    let (ev_tx, ev_rx) = mpsc::channel(1024);
    let stats = Arc::new(IrcStats::default());
    let handle = IrcHandle {
        requests: req_tx,
        stats: stats.clone(),
        network: config.network.clone(),
    };
    tokio::spawn(run(config, req_rx, ev_tx, stats));
    (handle, ev_rx)
}

/// A line waiting to be sent.
struct Out {
    line: String,
    /// The channel it must wait for us to be in (relays after a reconnect wait for the rejoin).
    channel: Option<String>,
    /// Answered once this line is written (the last line of a message).
    done: Option<oneshot::Sender<Result<Done, IrcError>>>,
}

/// A moderation command waiting for the server's confirmation.
struct Pending {
    channel: String,
    expect: Expect,
    detail: Option<String>,
    reply: oneshot::Sender<Result<Done, IrcError>>,
    deadline: Instant,
}

#[derive(Debug, PartialEq, Eq)]
enum Expect {
    Mode { set: bool, mode: char, arg: String },
    Kick { nick: String },
}

/// State that lives across connections.
struct Adapter {
    config: IrcConfig,
    stats: Arc<IrcStats>,
    events: mpsc::Sender<ChatEvent>,
    /// Priority lines (moderation, joins) go before relays.
    urgent: VecDeque<Out>,
    queue: VecDeque<Out>,
    pending: Vec<Pending>,
    // Per connection:
    isupport: Isupport,
    channels: Channels,
    caps: Vec<String>,
    nick: String,
    /// `user@host` as the server shows us, for the line budget.
    userhost: Option<String>,
    account: Option<String>,
    sasl: Option<bool>,
    registered: bool,
    joins_due: VecDeque<String>,
}

enum End {
    Shutdown,
    Lost(String),
}

async fn run(
    config: IrcConfig,
    mut requests: mpsc::Receiver<Request>,
    events: mpsc::Sender<ChatEvent>,
    stats: Arc<IrcStats>,
) {
    let mut a = Adapter {
        nick: config.nick.clone(),
        config,
        stats,
        events,
        urgent: VecDeque::new(),
        queue: VecDeque::new(),
        pending: Vec::new(),
        isupport: Isupport::default(),
        channels: Channels::default(),
        caps: Vec::new(),
        userhost: None,
        account: None,
        sasl: None,
        registered: false,
        joins_due: VecDeque::new(),
    };
    let mut backoff = a.config.reconnect_min;
    let mut attempt = 0u64;
    loop {
        let started = Instant::now();
        let end = match connect(&a.config).await {
            Ok(stream) => {
                a.stats.connects.fetch_add(1, Ordering::Relaxed);
                if attempt > 0 {
                    a.stats.reconnects.fetch_add(1, Ordering::Relaxed);
                }
                a.session(stream, &mut requests).await
            }
            Err(e) => End::Lost(format!("connect: {e}")),
        };
        attempt += 1;
        a.disconnected();
        let reason = match end {
            End::Shutdown => return,
            End::Lost(reason) => reason,
        };
        // A session that lasted resets the backoff; quick failures double it.
        if started.elapsed() > Duration::from_secs(60) {
            backoff = a.config.reconnect_min;
        }
        let wait = jitter(backoff, attempt);
        tracing::warn!(network = %a.config.network, %reason, retry_in = ?wait, "IRC connection lost");
        backoff = (backoff * 2).min(a.config.reconnect_max);
        // Keep taking requests while waiting, so callers are never blocked by an outage.
        let sleep = tokio::time::sleep(wait);
        tokio::pin!(sleep);
        loop {
            tokio::select! {
                _ = &mut sleep => break,
                req = requests.recv() => match req {
                    Some(r) => a.request(r),
                    None => return,
                },
            }
        }
    }
}

/// `base` plus up to 50% random jitter, so many bridges do not reconnect in lockstep.
fn jitter(base: Duration, salt: u64) -> Duration {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos() as u64);
    let r = (nanos ^ salt.wrapping_mul(0x9E37_79B9_7F4A_7C15)) % 1000;
    base + base.mul_f64(r as f64 / 2000.0)
}

trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

async fn connect(config: &IrcConfig) -> std::io::Result<Box<dyn Stream>> {
    let tcp = tokio::time::timeout(
        Duration::from_secs(10),
        TcpStream::connect((config.host.as_str(), config.port)),
    )
    .await
    .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out"))??;
    tcp.set_nodelay(true)?;
    let Some(tls) = &config.tls else {
        return Ok(Box::new(tcp));
    };
    let connector = tls_connector(tls)?;
    let name = tokio_rustls::rustls::pki_types::ServerName::try_from(config.host.clone())
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    let stream = tokio::time::timeout(Duration::from_secs(10), connector.connect(name, tcp))
        .await
        .map_err(|_| {
            std::io::Error::new(std::io::ErrorKind::TimedOut, "TLS handshake timed out")
        })??;
    Ok(Box::new(stream))
}

fn tls_connector(tls: &Tls) -> std::io::Result<tokio_rustls::TlsConnector> {
    use tokio_rustls::rustls::pki_types::pem::PemObject;
    use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
    use tokio_rustls::rustls::{ClientConfig, RootCertStore};
    let invalid = |e: String| std::io::Error::new(std::io::ErrorKind::InvalidData, e);
    let mut roots = RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    if let Some(ca) = &tls.ca_file {
        for cert in CertificateDer::pem_file_iter(ca)
            .map_err(|e| invalid(format!("{}: {e}", ca.display())))?
        {
            roots
                .add(cert.map_err(|e| invalid(e.to_string()))?)
                .map_err(|e| invalid(e.to_string()))?;
        }
    }
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| invalid(e.to_string()))?
        .with_root_certificates(roots);
    let config = match &tls.client_cert {
        None => builder.with_no_client_auth(),
        Some((cert, key)) => {
            let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
                .map_err(|e| invalid(format!("{}: {e}", cert.display())))?
                .collect::<Result<_, _>>()
                .map_err(|e| invalid(e.to_string()))?;
            let key = PrivateKeyDer::from_pem_file(key)
                .map_err(|e| invalid(format!("{}: {e}", key.display())))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| invalid(e.to_string()))?
        }
    };
    Ok(tokio_rustls::TlsConnector::from(Arc::new(config)))
}

/// Capabilities we use when the server offers them.
const WANTED_CAPS: [&str; 10] = [
    "multi-prefix",
    "server-time",
    "message-tags",
    "account-tag",
    "account-notify",
    "extended-join",
    "echo-message",
    "chghost",
    "userhost-in-names",
    "sasl",
];

/// Lines longer than this from the server are cut (the protocol allows 512 plus tags).
const MAX_IN_LINE: usize = 16 * 1024;

impl Adapter {
    fn disconnected(&mut self) {
        self.registered = false;
        self.sasl = None;
        self.channels.clear();
        self.caps.clear();
        self.joins_due.clear();
        self.isupport = Isupport::default();
        // Moderation in flight cannot be confirmed any more.
        for p in self.pending.drain(..) {
            let _ = p.reply.send(Err(IrcError::Refused(
                "the connection was lost before the server confirmed".into(),
            )));
        }
    }

    async fn session(
        &mut self,
        stream: Box<dyn Stream>,
        requests: &mut mpsc::Receiver<Request>,
    ) -> End {
        let (read, mut write) = tokio::io::split(stream);
        let mut reader = BufReader::new(read);
        let mut bucket = TokenBucket::new(
            self.config.flood_burst,
            self.config.flood_rate,
            Instant::now(),
        );
        let mut buf = Vec::with_capacity(1024);
        let mut last_heard = Instant::now();
        let mut pinged = false;
        let mut next_join = Instant::now();
        let mut nick_attempt = 0usize;
        let mut sasl_done = self.config.sasl.is_none();
        let mut ls_caps: Vec<String> = Vec::new();
        let register_by = Instant::now() + Duration::from_secs(30);
        let mut reclaim_at = Instant::now() + Duration::from_secs(30);

        let mut hello: Vec<String> = vec!["CAP LS 302".into()];
        if let Some(pass) = &self.config.password {
            hello.push(format!("PASS {pass}"));
        }
        hello.push(format!("NICK {}", self.config.nick));
        hello.push(format!(
            "USER {} 0 * :{}",
            self.config.user,
            codec::sanitize(&self.config.realname)
        ));
        self.nick = self.config.nick.clone();
        for l in hello {
            if let Err(e) = write_line(&mut write, &l).await {
                return End::Lost(e.to_string());
            }
        }

        loop {
            // When may the queue send next, and is there anything it may send?
            let sendable = self.registered && self.next_sendable().is_some();
            let wait_send = if sendable {
                match bucket.take(Instant::now()) {
                    Ok(()) => Duration::ZERO,
                    Err(d) => d,
                }
            } else {
                Duration::from_secs(3600)
            };
            let ping_at = last_heard + self.config.ping_interval;
            let join_due = self.registered && !self.joins_due.is_empty();
            let join_wait = if join_due {
                next_join.saturating_duration_since(Instant::now())
            } else {
                Duration::from_secs(3600)
            };
            let confirm_at = self.pending.iter().map(|p| p.deadline).min();
            if !self.registered && Instant::now() > register_by {
                return End::Lost("registration timed out".into());
            }

            tokio::select! {
                biased;
                read = read_line(&mut reader, &mut buf) => {
                    match read {
                        Ok(true) => {}
                        Ok(false) => return End::Lost("the server closed the connection".into()),
                        Err(e) => return End::Lost(e.to_string()),
                    }
                    last_heard = Instant::now();
                    pinged = false;
                    let text = codec::decode_line(&buf);
                    buf.clear();
                    let Ok(line) = Line::parse(&text) else { continue };
                    match self.handle(&line, &mut write, &mut nick_attempt, &mut sasl_done, &mut ls_caps).await {
                        Ok(()) => {}
                        Err(reason) => return End::Lost(reason),
                    }
                }
                // A line the bucket allows goes now: even a zero sleep waits for the timer's
                // next tick (up to a millisecond on every relayed line).
                _ = async { if !wait_send.is_zero() { tokio::time::sleep(wait_send).await } }, if sendable => {
                    if wait_send > Duration::ZERO && bucket.take(Instant::now()).is_err() {
                        continue;
                    }
                    if let Some(out) = self.take_sendable() {
                        if let Err(e) = write_line(&mut write, &out.line).await {
                            // Put it back: it goes out after the reconnect.
                            self.queue.push_front(out);
                            return End::Lost(e.to_string());
                        }
                        self.stats.lines_sent.fetch_add(1, Ordering::Relaxed);
                        if let Some(done) = out.done {
                            let _ = done.send(Ok(Done::default()));
                        }
                    }
                }
                _ = tokio::time::sleep(join_wait), if join_due => {
                    if let Some(ch) = self.joins_due.pop_front() {
                        if let Err(e) = write_line(&mut write, &format!("JOIN {ch}")).await {
                            return End::Lost(e.to_string());
                        }
                    }
                    next_join = Instant::now() + self.config.join_interval;
                }
                _ = tokio::time::sleep_until(ping_at.into()) => {
                    if pinged {
                        return End::Lost(format!("no reply from the server for {:?}", 2 * self.config.ping_interval));
                    }
                    if let Err(e) = write_line(&mut write, "PING :bridgewarden").await {
                        return End::Lost(e.to_string());
                    }
                    pinged = true;
                    last_heard = Instant::now();
                }
                _ = tokio::time::sleep_until(confirm_at.unwrap_or(Instant::now() + Duration::from_secs(3600)).into()), if confirm_at.is_some() => {
                    let now = Instant::now();
                    let (late, keep): (Vec<Pending>, Vec<Pending>) = self.pending.drain(..).partition(|p| p.deadline <= now);
                    self.pending = keep;
                    for p in late {
                        let _ = p.reply.send(Err(IrcError::Unconfirmed(self.config.confirm_timeout)));
                    }
                }
                _ = tokio::time::sleep_until(reclaim_at.into()), if self.registered && !self.isupport.fold(&self.nick).eq(&self.isupport.fold(&self.config.nick)) => {
                    // Our nick was taken when we connected: try to get it back now and then.
                    if let Err(e) = write_line(&mut write, &format!("NICK {}", self.config.nick)).await {
                        return End::Lost(e.to_string());
                    }
                    reclaim_at = Instant::now() + Duration::from_secs(30);
                }
                req = requests.recv() => match req {
                    Some(r) => self.request(r),
                    None => {
                        let _ = write_line(&mut write, "QUIT :bridgewarden shutting down").await;
                        return End::Shutdown;
                    }
                },
            }
        }
    }

    /// The first queued line that may go now: urgent lines first, and channel lines only once
    /// we are in the channel (after a reconnect, relays wait for the rejoin).
    fn next_sendable(&self) -> Option<(bool, usize)> {
        for (urgent, q) in [(true, &self.urgent), (false, &self.queue)] {
            if let Some(out) = q.front() {
                if out
                    .channel
                    .as_ref()
                    .is_none_or(|c| self.channels.is_in(&self.isupport, c))
                {
                    return Some((urgent, 0));
                }
            }
        }
        None
    }

    fn take_sendable(&mut self) -> Option<Out> {
        let (urgent, i) = self.next_sendable()?;
        if urgent {
            self.urgent.remove(i)
        } else {
            self.queue.remove(i)
        }
    }

    fn status(&self) -> Status {
        Status {
            registered: self.registered,
            nick: self.nick.clone(),
            caps: self.caps.clone(),
            account: self.account.clone(),
            sasl: self.sasl,
            channels: self.channels.channels().cloned().collect(),
            mute_method: self.registered.then(|| self.isupport.mute_method()),
            linelen: self.isupport.linelen,
            queued: self.queue.len() + self.urgent.len(),
        }
    }

    fn request(&mut self, r: Request) {
        match r {
            Request::Status(tx) => {
                let _ = tx.send(self.status());
            }
            Request::Member(channel, nick, tx) => {
                let user = self
                    .channels
                    .is_member(&self.isupport, &channel, &nick)
                    .then(|| self.user(&nick, Some(&channel)));
                let _ = tx.send(user);
            }
            Request::Raw(line) => self.enqueue(
                true,
                Out {
                    line,
                    channel: None,
                    done: None,
                },
            ),
            Request::Execute(cmd, reply) => self.execute(cmd, reply),
        }
    }

    fn enqueue(&mut self, urgent: bool, out: Out) {
        let total = self.queue.len() + self.urgent.len();
        if total >= self.config.queue_limit {
            self.stats.queue_drops.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(network = %self.config.network, queued = total, "IRC outbound queue full: dropping a line");
            if let Some(done) = out.done {
                let _ = done.send(Err(IrcError::QueueFull(total)));
            }
            return;
        }
        if urgent {
            self.urgent.push_back(out);
        } else {
            self.queue.push_back(out);
        }
    }

    /// Our own prefix as the server will show it, for the line budget. Before we know our
    /// user@host, assume the longest usual one.
    fn own_prefix(&self) -> String {
        let uh = self
            .userhost
            .clone()
            .unwrap_or_else(|| format!("~{}@{}", self.config.user, "x".repeat(63)));
        format!("{}!{}", self.nick, uh)
    }

    fn execute(&mut self, cmd: Command, reply: oneshot::Sender<Result<Done, IrcError>>) {
        match cmd {
            Command::Send {
                room,
                text,
                kind,
                from,
            } => self.send_text(&room, &text, kind, from.as_deref(), reply),
            Command::NoticeUser {
                room: _,
                user,
                text,
            } => {
                let body = codec::sanitize(&text);
                let budget =
                    codec::text_budget(self.isupport.linelen, &self.own_prefix(), "NOTICE", &user);
                let parts: Vec<String> = codec::split(&body, budget)
                    .into_iter()
                    .take(self.config.max_lines)
                    .map(String::from)
                    .collect();
                let n = parts.len();
                let mut reply = Some(reply);
                for (i, p) in parts.into_iter().enumerate() {
                    let Ok(line) = Line::build("NOTICE", &[&user, &p]) else {
                        continue;
                    };
                    let done = if i + 1 == n { reply.take() } else { None };
                    self.enqueue(
                        false,
                        Out {
                            line,
                            channel: None,
                            done,
                        },
                    );
                }
                if let Some(r) = reply {
                    let _ = r.send(Ok(Done::default()));
                }
            }
            Command::Kick {
                room,
                target,
                reason,
            } => {
                let reason = codec::sanitize(&reason);
                match Line::build("KICK", &[&room, &target.id, &reason]) {
                    Ok(line) => {
                        self.expect(
                            &room,
                            Expect::Kick {
                                nick: target.id.clone(),
                            },
                            None,
                            reply,
                        );
                        self.enqueue(
                            true,
                            Out {
                                line,
                                channel: None,
                                done: None,
                            },
                        );
                    }
                    Err(e) => {
                        let _ = reply.send(Err(IrcError::Invalid(e.to_string())));
                    }
                }
            }
            Command::Ban {
                room,
                target,
                reason,
            } => {
                let mask = target
                    .mask
                    .clone()
                    .unwrap_or_else(|| self.ban_mask(&target));
                let Ok(mode) = Line::build("MODE", &[&room, "+b", &mask]) else {
                    let _ = reply.send(Err(IrcError::Invalid(format!("bad ban mask {mask:?}"))));
                    return;
                };
                self.expect(
                    &room,
                    Expect::Mode {
                        set: true,
                        mode: 'b',
                        arg: mask.clone(),
                    },
                    Some(mask),
                    reply,
                );
                self.enqueue(
                    true,
                    Out {
                        line: mode,
                        channel: None,
                        done: None,
                    },
                );
                // A ban removes the person too, as on Matrix.
                // Always sent: our member list may lag their JOIN; a 441 is then harmless.
                if let Ok(kick) =
                    Line::build("KICK", &[&room, &target.id, &codec::sanitize(&reason)])
                {
                    self.enqueue(
                        true,
                        Out {
                            line: kick,
                            channel: None,
                            done: None,
                        },
                    );
                }
            }
            Command::Unban { room, target } => {
                let mask = target
                    .mask
                    .clone()
                    .unwrap_or_else(|| self.ban_mask(&target));
                self.mode_command(&room, false, 'b', mask, reply);
            }
            Command::Mute { room, target } => {
                let (mode, mask) = target
                    .mask
                    .clone()
                    .map_or_else(|| self.mute_mask(&target), |m| (self.mute_mode(), m));
                self.mode_command(&room, true, mode, mask, reply);
            }
            Command::Unmute { room, target } => {
                let (mode, mask) = target
                    .mask
                    .clone()
                    .map_or_else(|| self.mute_mask(&target), |m| (self.mute_mode(), m));
                self.mode_command(&room, false, mode, mask, reply);
            }
            Command::Redact { .. } => {
                // IRC cannot unsend: the message is simply not relayed, which the caller did.
                let _ = reply.send(Ok(Done {
                    detail: Some("IRC cannot delete messages; it was not relayed".into()),
                }));
            }
        }
    }

    fn mode_command(
        &mut self,
        room: &str,
        set: bool,
        mode: char,
        mask: String,
        reply: oneshot::Sender<Result<Done, IrcError>>,
    ) {
        let flag = format!("{}{mode}", if set { '+' } else { '-' });
        match Line::build("MODE", &[room, &flag, &mask]) {
            Ok(line) => {
                self.expect(
                    room,
                    Expect::Mode {
                        set,
                        mode,
                        arg: mask.clone(),
                    },
                    Some(mask),
                    reply,
                );
                self.enqueue(
                    true,
                    Out {
                        line,
                        channel: None,
                        done: None,
                    },
                );
            }
            Err(e) => {
                let _ = reply.send(Err(IrcError::Invalid(e.to_string())));
            }
        }
    }

    fn expect(
        &mut self,
        channel: &str,
        expect: Expect,
        detail: Option<String>,
        reply: oneshot::Sender<Result<Done, IrcError>>,
    ) {
        self.pending.push(Pending {
            channel: self.isupport.fold(channel),
            expect,
            detail,
            reply,
            deadline: Instant::now() + self.config.confirm_timeout,
        });
    }

    /// A mask for a person: their services account where the server has an account extban
    /// (it follows them across nicks and hosts), else `*!ident@host` (a host alone may be
    /// shared: loopback, web gateways, NAT), else `nick!*@*`.
    fn user_mask(&self, t: &Target) -> String {
        let known = self.channels.get(&self.isupport, &t.id);
        let account = t
            .account
            .clone()
            .or_else(|| known.and_then(|p| p.account.clone()));
        if let (Some(acct), Some(ext)) = (account, self.isupport.get("EXTBAN")) {
            let (prefix, letters) = ext.split_once(',').unwrap_or(("", ext));
            if letters.contains('R') {
                return format!("{prefix}R:{acct}");
            }
        }
        let ident = t
            .ident
            .clone()
            .or_else(|| known.and_then(|p| p.ident.clone()));
        let host = t
            .host
            .clone()
            .or_else(|| known.and_then(|p| p.host.clone()));
        match (ident, host) {
            (Some(i), Some(h)) => format!("*!{i}@{h}"),
            (None, Some(h)) => format!("*!*@{h}"),
            _ => format!("{}!*@*", t.id),
        }
    }

    fn ban_mask(&self, t: &Target) -> String {
        self.user_mask(t)
    }

    fn mute_mode(&self) -> char {
        match self.isupport.mute_method() {
            MuteMethod::QuietList => 'q',
            _ => 'b',
        }
    }

    fn mute_mask(&self, t: &Target) -> (char, String) {
        let mask = self.user_mask(t);
        match self.isupport.mute_method() {
            MuteMethod::QuietList => ('q', mask),
            MuteMethod::Extban { prefix, letter } => (
                'b',
                format!(
                    "{}{letter}:{mask}",
                    prefix.map(String::from).unwrap_or_default()
                ),
            ),
            MuteMethod::BanWithoutKick => ('b', mask),
        }
    }

    fn send_text(
        &mut self,
        room: &str,
        text: &crate::rich_text::RichText,
        kind: SendKind,
        from: Option<&str>,
        reply: oneshot::Sender<Result<Done, IrcError>>,
    ) {
        let command = if kind == SendKind::Notice {
            "NOTICE"
        } else {
            "PRIVMSG"
        };
        let mut budget =
            codec::text_budget(self.isupport.linelen, &self.own_prefix(), command, room);
        if kind == SendKind::Emote {
            budget = budget.saturating_sub(codec::ACTION_OVERHEAD);
        }
        // "<alice> text", or "* alice waves"; a zero-width space keeps the name from pinging
        // an IRC user of the same nick.
        let shown = from.map(|f| {
            let f = codec::sanitize(f);
            let mut chars = f.chars();
            match chars.next() {
                Some(first) => format!("{first}\u{200B}{}", chars.as_str()),
                None => f,
            }
        });
        let mut parts: Vec<String> = Vec::new();
        for line in text.lines() {
            let rendered = codec::render(&line);
            if rendered.is_empty() {
                continue;
            }
            let head = match (&shown, kind) {
                (Some(n), SendKind::Emote) if parts.is_empty() => format!("* {n} "),
                (Some(n), _) => format!("<{n}> "),
                (None, _) => String::new(),
            };
            let body = format!("{head}{rendered}");
            parts.extend(codec::split(&body, budget).into_iter().map(String::from));
        }
        if parts.is_empty() {
            let _ = reply.send(Ok(Done::default()));
            return;
        }
        if parts.len() > self.config.max_lines {
            parts.truncate(self.config.max_lines);
            let marker = " [\u{2026}]";
            if let Some(last) = parts.last_mut() {
                while last.len() + marker.len() > budget {
                    last.pop();
                }
                last.push_str(marker);
            }
        }
        let n = parts.len();
        let mut reply = Some(reply);
        for (i, p) in parts.into_iter().enumerate() {
            let text = if kind == SendKind::Emote && from.is_none() {
                codec::action(&p)
            } else {
                p
            };
            let Ok(line) = Line::build(command, &[room, &text]) else {
                continue;
            };
            let done = if i + 1 == n { reply.take() } else { None };
            let channel = self.is_channel(room).then(|| room.to_string());
            self.enqueue(
                false,
                Out {
                    line,
                    channel,
                    done,
                },
            );
        }
        if let Some(r) = reply {
            let _ = r.send(Ok(Done::default()));
        }
    }

    fn is_channel(&self, name: &str) -> bool {
        let types = self.isupport.get("CHANTYPES").unwrap_or("#&");
        name.chars().next().is_some_and(|c| types.contains(c))
    }

    fn user(&self, nick: &str, channel: Option<&str>) -> User {
        let p = self.channels.get(&self.isupport, nick);
        User {
            id: nick.to_string(),
            name: nick.to_string(),
            account: p.and_then(|p| p.account.clone()),
            ident: p.and_then(|p| p.ident.clone()),
            host: p.and_then(|p| p.host.clone()),
            channel_modes: channel
                .map(|c| self.channels.modes(&self.isupport, c, nick))
                .unwrap_or_default(),
            power_level: None,
        }
    }

    async fn emit(&self, room: &str, sender: User, kind: ChatEventKind, line: &Line) {
        let ts = line
            .tag("time")
            .and_then(|t| humantime::parse_rfc3339_weak(t).ok())
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map_or_else(crate::audit::now_ms, |d| d.as_millis() as i64);
        let own = self.isupport.fold(&sender.id) == self.isupport.fold(&self.nick);
        let mentions = match &kind {
            ChatEventKind::Message { text }
            | ChatEventKind::Emote { text }
            | ChatEventKind::Notice { text } => self.highlights(room, &text.to_plain()),
            _ => Vec::new(),
        };
        let event = ChatEvent {
            network: self.config.network.clone(),
            room: room.to_string(),
            sender,
            kind,
            ts,
            id: line.tag("msgid").map(String::from),
            mentions,
            reply_to: None,
            own,
        };
        let _ = self.events.send(event).await;
    }

    /// Nicks of channel members that appear as words in the text.
    fn highlights(&self, channel: &str, text: &str) -> Vec<String> {
        if !self.is_channel(channel) {
            return Vec::new();
        }
        let mut out: Vec<String> = Vec::new();
        for word in text.split(|c: char| !(c.is_alphanumeric() || "-_[]\\`^{}|".contains(c))) {
            if !word.is_empty()
                && self.channels.is_member(&self.isupport, channel, word)
                && !out.iter().any(|o| o.eq_ignore_ascii_case(word))
            {
                out.push(word.to_string());
            }
        }
        out
    }

    /// Handles one line from the server.
    async fn handle<W: AsyncWrite + Unpin>(
        &mut self,
        line: &Line,
        write: &mut W,
        nick_attempt: &mut usize,
        sasl_done: &mut bool,
        ls_caps: &mut Vec<String>,
    ) -> Result<(), String> {
        let w = |e: std::io::Error| e.to_string();
        let p = |i: usize| line.param(i).unwrap_or("");
        let nick = line.nick().unwrap_or("").to_string();
        if let Some(src) = &line.source {
            if src.user.is_some() {
                self.channels.seen(
                    &self.isupport,
                    &src.nick,
                    src.user.as_deref(),
                    src.host.as_deref(),
                );
            }
        }
        // account-tag: present on every message from a logged-in user, absent otherwise.
        if self.caps.iter().any(|c| c == "account-tag")
            && line.source.as_ref().is_some_and(|s| s.user.is_some())
        {
            self.channels
                .set_account(&self.isupport, &nick, line.tag("account"));
        }
        match line.command.as_str() {
            "PING" => write_line(
                write,
                &Line::build("PONG", &[p(0)]).unwrap_or_else(|_| "PONG :x".into()),
            )
            .await
            .map_err(w)?,
            "ERROR" => return Err(format!("server error: {}", p(0))),
            "CAP" => match p(1) {
                "LS" => {
                    let (more, list) = if p(2) == "*" {
                        (true, p(3))
                    } else {
                        (false, p(2))
                    };
                    ls_caps.extend(
                        list.split(' ')
                            .filter(|c| !c.is_empty())
                            .map(|c| c.split('=').next().unwrap_or(c).to_string()),
                    );
                    if !more {
                        let want: Vec<&str> = WANTED_CAPS
                            .iter()
                            .copied()
                            .filter(|c| ls_caps.iter().any(|l| l == c))
                            .filter(|c| *c != "sasl" || self.config.sasl.is_some())
                            .collect();
                        if want.is_empty() {
                            write_line(write, "CAP END").await.map_err(w)?;
                        } else {
                            write_line(write, &format!("CAP REQ :{}", want.join(" ")))
                                .await
                                .map_err(w)?;
                        }
                    }
                }
                "ACK" => {
                    let acked: Vec<String> = p(2)
                        .split(' ')
                        .filter(|c| !c.is_empty())
                        .map(String::from)
                        .collect();
                    self.caps.extend(acked.iter().cloned());
                    if !self.registered {
                        if acked.iter().any(|c| c == "sasl") && !*sasl_done {
                            let mech = match self.config.sasl {
                                Some(Sasl::External) => "EXTERNAL",
                                _ => "PLAIN",
                            };
                            write_line(write, &format!("AUTHENTICATE {mech}"))
                                .await
                                .map_err(w)?;
                        } else {
                            write_line(write, "CAP END").await.map_err(w)?;
                        }
                    }
                }
                "NAK" if !self.registered => write_line(write, "CAP END").await.map_err(w)?,
                _ => {}
            },
            "AUTHENTICATE" if p(0) == "+" => {
                let payload = match &self.config.sasl {
                    Some(Sasl::Plain { account, password }) => {
                        base64::engine::general_purpose::STANDARD
                            .encode(format!("{account}\0{account}\0{password}"))
                    }
                    _ => String::new(),
                };
                if payload.is_empty() {
                    write_line(write, "AUTHENTICATE +").await.map_err(w)?;
                } else {
                    for chunk in payload.as_bytes().chunks(400) {
                        write_line(
                            write,
                            &format!("AUTHENTICATE {}", String::from_utf8_lossy(chunk)),
                        )
                        .await
                        .map_err(w)?;
                    }
                    if payload.len() % 400 == 0 {
                        write_line(write, "AUTHENTICATE +").await.map_err(w)?;
                    }
                }
            }
            // Logged in (900), SASL done (903), or failed (902, 904-907).
            "900" => self.account = line.params.get(2).cloned(),
            "903" | "902" | "904" | "905" | "906" | "907" => {
                if line.command != "903" {
                    tracing::error!(network = %self.config.network, reply = %p(line.params.len().saturating_sub(1)), "SASL login failed; continuing without an account");
                }
                *sasl_done = true;
                self.sasl = Some(line.command == "903");
                if !self.registered {
                    write_line(write, "CAP END").await.map_err(w)?;
                }
            }
            "001" => {
                self.registered = true;
                self.nick = p(0).to_string();
                self.joins_due = self.config.channels.iter().cloned().collect();
                tracing::info!(network = %self.config.network, nick = %self.nick, "IRC registered");
            }
            "005" if line.params.len() > 2 => {
                let tokens = &line.params[1..line.params.len() - 1];
                self.isupport.apply(tokens);
            }
            // Nick taken or not allowed while registering: next alternative.
            "433" | "432" | "436" if !self.registered => {
                *nick_attempt += 1;
                let next = self
                    .config
                    .alt_nicks
                    .get(*nick_attempt - 1)
                    .cloned()
                    .unwrap_or_else(|| {
                        format!(
                            "{}{}",
                            self.config.nick,
                            "_".repeat(*nick_attempt - self.config.alt_nicks.len())
                        )
                    });
                self.nick = next.clone();
                write_line(write, &format!("NICK {next}"))
                    .await
                    .map_err(w)?;
            }
            "NICK" => {
                let new = p(0).to_string();
                let is_us = self.isupport.fold(&nick) == self.isupport.fold(&self.nick);
                let chans: Vec<String> = self
                    .channels
                    .channels()
                    .filter(|c| self.channels.is_member(&self.isupport, c, &nick))
                    .cloned()
                    .collect();
                self.channels.rename(&self.isupport, &nick, &new);
                if is_us {
                    self.nick = new.clone();
                } else if self.isupport.fold(&nick) == self.isupport.fold(&self.config.nick) {
                    // Whoever held our nick let it go: take it back now.
                    self.reclaim(write).await.map_err(w)?;
                }
                for ch in chans {
                    let sender = self.user(&new, Some(&ch));
                    self.emit(
                        &ch,
                        User {
                            id: nick.clone(),
                            name: nick.clone(),
                            ..sender
                        },
                        ChatEventKind::Nick { new: new.clone() },
                        line,
                    )
                    .await;
                }
            }
            "JOIN" => {
                let ch = p(0).to_string();
                if line.params.len() >= 2 && self.caps.iter().any(|c| c == "extended-join") {
                    self.channels.set_account(&self.isupport, &nick, Some(p(1)));
                }
                let is_us = self.isupport.fold(&nick) == self.isupport.fold(&self.nick);
                if is_us {
                    if let Some(src) = &line.source {
                        if let (Some(u), Some(h)) = (&src.user, &src.host) {
                            self.userhost = Some(format!("{u}@{h}"));
                        }
                    }
                    self.channels.join(&self.isupport, &ch, &nick);
                    if self.isupport.has("WHOX") {
                        // Accounts of everyone in the channel: %t(oken) c n u h f a.
                        write_line(write, &format!("WHO {ch} %tcnuhfa,777"))
                            .await
                            .map_err(w)?;
                    }
                } else {
                    self.channels.join(&self.isupport, &ch, &nick);
                }
                let sender = self.user(&nick, Some(&ch));
                self.emit(&ch, sender, ChatEventKind::Join, line).await;
            }
            "PART" => {
                let ch = p(0).to_string();
                let sender = self.user(&nick, Some(&ch));
                if self.isupport.fold(&nick) == self.isupport.fold(&self.nick) {
                    self.channels.leave(&self.isupport, &ch);
                } else {
                    self.channels.part(&self.isupport, &ch, &nick);
                }
                self.emit(
                    &ch,
                    sender,
                    ChatEventKind::Part {
                        reason: line.params.get(1).cloned(),
                    },
                    line,
                )
                .await;
            }
            "KICK" => {
                let (ch, target) = (p(0).to_string(), p(1).to_string());
                self.confirm(
                    &ch,
                    &Expect::Kick {
                        nick: target.clone(),
                    },
                );
                let sender = self.user(&nick, Some(&ch));
                if self.isupport.fold(&target) == self.isupport.fold(&self.nick) {
                    self.channels.leave(&self.isupport, &ch);
                    // Kicked: try to come back after the usual pause.
                    self.joins_due.push_back(ch.clone());
                } else {
                    self.channels.part(&self.isupport, &ch, &target);
                }
                self.emit(
                    &ch,
                    sender,
                    ChatEventKind::Kick {
                        target,
                        reason: line.params.get(2).cloned(),
                    },
                    line,
                )
                .await;
            }
            "QUIT" => {
                if self.isupport.fold(&nick) == self.isupport.fold(&self.config.nick) {
                    self.reclaim(write).await.map_err(w)?;
                }
                let chans: Vec<String> = self
                    .channels
                    .channels()
                    .filter(|c| self.channels.is_member(&self.isupport, c, &nick))
                    .cloned()
                    .collect();
                let reason = line.params.first().cloned();
                for ch in &chans {
                    let sender = self.user(&nick, Some(ch));
                    self.emit(
                        ch,
                        sender,
                        ChatEventKind::Quit {
                            reason: reason.clone(),
                        },
                        line,
                    )
                    .await;
                }
                self.channels.quit(&self.isupport, &nick);
            }
            "MODE" if self.is_channel(p(0)) => {
                let ch = p(0).to_string();
                let changes = self.parse_modes(&line.params[1..]);
                for c in &changes {
                    if let Some(arg) = &c.arg {
                        if self.isupport.is_prefix_mode(c.mode) {
                            self.channels
                                .member_mode(&self.isupport, &ch, arg, c.mode, c.set);
                        }
                        self.confirm(
                            &ch,
                            &Expect::Mode {
                                set: c.set,
                                mode: c.mode,
                                arg: arg.clone(),
                            },
                        );
                    }
                }
                let sender = self.user(&nick, Some(&ch));
                self.emit(&ch, sender, ChatEventKind::Mode { changes }, line)
                    .await;
            }
            "PRIVMSG" | "NOTICE" => {
                let target = p(0);
                let Some(src) = &line.source else {
                    return Ok(());
                };
                if src.user.is_none()
                    && !src.nick.contains('.')
                    && line.command == "NOTICE"
                    && !self.registered
                {
                    return Ok(());
                }
                if src.user.is_none() && src.nick.contains('.') {
                    return Ok(()); // server notices
                }
                let room = if self.is_channel(target) {
                    target.to_string()
                } else {
                    nick.clone()
                };
                let text = p(1);
                let kind = match (codec::ctcp(text), line.command.as_str()) {
                    (Ctcp::Action(t), _) => ChatEventKind::Emote {
                        text: codec::parse_formatting(t),
                    },
                    (Ctcp::Other(..), _) => return Ok(()),
                    (Ctcp::None(t), "NOTICE") => ChatEventKind::Notice {
                        text: codec::parse_formatting(t),
                    },
                    (Ctcp::None(t), _) => ChatEventKind::Message {
                        text: codec::parse_formatting(t),
                    },
                };
                let sender = self.user(&nick, self.is_channel(&room).then_some(room.as_str()));
                self.emit(&room, sender, kind, line).await;
            }
            // NAMES.
            "353" => {
                let ch = p(2).to_string();
                for entry in p(3).split(' ').filter(|e| !e.is_empty()) {
                    self.channels.names_entry(&self.isupport, &ch, entry);
                }
            }
            // WHOX reply to our query: token, channel, user, host, nick, flags, account.
            "354" if p(1) == "777" => {
                let (user, host, who, account) = (p(3), p(4), p(5), p(7));
                self.channels
                    .seen(&self.isupport, who, Some(user), Some(host));
                self.channels
                    .set_account(&self.isupport, who, Some(account));
            }
            // WHOIS: logged in as.
            "330" => self.channels.set_account(&self.isupport, p(1), Some(p(2))),
            "ACCOUNT" => self.channels.set_account(&self.isupport, &nick, Some(p(0))),
            "CHGHOST" => self
                .channels
                .seen(&self.isupport, &nick, Some(p(0)), Some(p(1))),
            // Refusals of moderation: not an operator, no such nick, not on channel, list full.
            "482" | "441" | "401" | "403" | "442" | "478" | "502" => {
                let reason = line.params.last().cloned().unwrap_or_default();
                let channel = line
                    .params
                    .iter()
                    .skip(1)
                    .find(|x| self.is_channel(x))
                    .map(|c| self.isupport.fold(c));
                // Which pending command a refusal is about: not-on-channel and no-such-nick
                // only concern kicks, a full list only modes, not-an-operator either.
                let applies = |pe: &Pending| match (line.command.as_str(), &pe.expect) {
                    ("441" | "401", Expect::Kick { .. }) => true,
                    ("441" | "401", _) => false,
                    ("478", Expect::Mode { .. }) => true,
                    ("478", _) => false,
                    _ => true,
                };
                if let Some(i) = self
                    .pending
                    .iter()
                    .position(|pe| channel.as_ref().is_none_or(|c| *c == pe.channel) && applies(pe))
                {
                    let pe = self.pending.remove(i);
                    let _ = pe.reply.send(Err(IrcError::Refused(format!(
                        "{} {}",
                        line.command, reason
                    ))));
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// Asks for our configured nick back if we do not have it.
    async fn reclaim<W: AsyncWrite + Unpin>(&self, write: &mut W) -> std::io::Result<()> {
        if self.registered
            && self.isupport.fold(&self.nick) != self.isupport.fold(&self.config.nick)
        {
            write_line(write, &format!("NICK {}", self.config.nick)).await?;
        }
        Ok(())
    }

    /// A pending moderation command confirmed by the server's echo.
    fn confirm(&mut self, channel: &str, seen: &Expect) {
        let ch = self.isupport.fold(channel);
        let fold = |e: &Expect| match e {
            Expect::Mode { set, mode, arg } => Expect::Mode {
                set: *set,
                mode: *mode,
                arg: self.isupport.fold(arg),
            },
            Expect::Kick { nick } => Expect::Kick {
                nick: self.isupport.fold(nick),
            },
        };
        let seen = fold(seen);
        if let Some(i) = self
            .pending
            .iter()
            .position(|p| p.channel == ch && fold(&p.expect) == seen)
        {
            let p = self.pending.remove(i);
            let _ = p.reply.send(Ok(Done { detail: p.detail }));
        }
    }

    /// Parses `+o-v alice bob` into changes, using ISUPPORT to know which modes take a
    /// parameter.
    fn parse_modes(&self, params: &[String]) -> Vec<ModeChange> {
        let mut out = Vec::new();
        let Some(flags) = params.first() else {
            return out;
        };
        let mut args = params[1..].iter();
        let mut set = true;
        for c in flags.chars() {
            match c {
                '+' => set = true,
                '-' => set = false,
                m => {
                    let arg = if self.isupport.mode_takes_param(m, set) {
                        args.next().cloned()
                    } else {
                        None
                    };
                    out.push(ModeChange { set, mode: m, arg });
                }
            }
        }
        out
    }
}

async fn write_line<W: AsyncWrite + Unpin>(w: &mut W, line: &str) -> std::io::Result<()> {
    debug_assert!(!line.contains(['\r', '\n', '\0']));
    let mut bytes = Vec::with_capacity(line.len() + 2);
    bytes.extend_from_slice(line.as_bytes());
    bytes.extend_from_slice(b"\r\n");
    w.write_all(&bytes).await?;
    w.flush().await
}

/// Reads one line into `buf` (without CRLF); false at end of stream. Overlong lines are cut.
async fn read_line<R: AsyncRead + Unpin>(
    r: &mut BufReader<R>,
    buf: &mut Vec<u8>,
) -> std::io::Result<bool> {
    // Cancel-safe: `select!` may drop this future between reads; what was read of a line so
    // far stays in `buf` (the caller clears it once the line is handled).
    loop {
        let chunk = r.fill_buf().await?;
        if chunk.is_empty() {
            return Ok(!buf.is_empty());
        }
        let (part, found) = match chunk.iter().position(|b| *b == b'\n') {
            Some(i) => (&chunk[..i], true),
            None => (chunk, false),
        };
        let room = MAX_IN_LINE.saturating_sub(buf.len());
        buf.extend_from_slice(&part[..part.len().min(room)]);
        let used = part.len() + usize::from(found);
        r.consume(used);
        if found {
            if buf.last() == Some(&b'\r') {
                buf.pop();
            }
            return Ok(true);
        }
    }
}
