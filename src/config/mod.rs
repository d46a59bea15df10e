//! The daemon's config: one TOML file, read into raw serde structs ([`raw`]) and validated
//! once into a [`Config`] where every value is checked, every path resolved and every secret
//! read. Everything that can be wrong is reported at load time as FILE:LINE:COL, all problems at
//! once, so the daemon never starts half-configured.
//!
//! Secrets (passwords, tokens, recovery keys) come from a file or an environment variable,
//! never from the config text or the command line. Must not start anything or touch the
//! network: it only reads the files the config names.

pub mod raw;

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use toml::Spanned;

use crate::diagnostic::{Diagnostic, Diagnostics, Severity, Source};
use crate::irc::client::{IrcConfig, Sasl, Tls};
use crate::matrix::client::{MatrixAuth, MatrixConfig};
use raw::{RawConfig, SecretOrText};

/// The network name Matrix events carry. IRC networks are named by their `[irc.NAME]` table.
pub const MATRIX_NETWORK: &str = "matrix";

/// Where the metrics and health endpoint listens unless configured otherwise.
pub const DEFAULT_METRICS_LISTEN: &str = "127.0.0.1:9184";

/// A validated config.
#[derive(Debug, Clone)]
pub struct Config {
    pub file: PathBuf,
    pub data_dir: PathBuf,
    pub policy: PathBuf,
    pub audit_dir: PathBuf,
    /// Audit records older than this are purged.
    pub retention: Option<Duration>,
    /// None: no metrics endpoint.
    pub metrics_listen: Option<SocketAddr>,
    pub log_json: bool,
    pub log_level: String,
    /// The Matrix side; its `rooms` are every bridged and moderators' Matrix room.
    pub matrix: MatrixConfig,
    pub irc: Vec<IrcNetwork>,
    pub bridges: Vec<Bridge>,
    pub moderation: Moderation,
    /// Other bridges' bots: never relayed, never evaluated.
    pub ignore_senders: Vec<regex::Regex>,
}

/// One IRC network; its `channels` are every bridged and moderators' channel on it.
#[derive(Debug, Clone)]
pub struct IrcNetwork {
    pub config: IrcConfig,
    /// Channel modes that make someone a moderator in the channel, e.g. "oh".
    pub moderator_modes: String,
    /// Services accounts that are moderators in every channel of this network (lowercase).
    pub moderator_accounts: Vec<String>,
}

/// A bridged pair: a Matrix room and an IRC channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bridge {
    /// Room id or alias, as configured (aliases are resolved when the daemon joins).
    pub matrix: String,
    pub network: String,
    pub channel: String,
}

/// A room on either network.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum RoomRef {
    Matrix(String),
    Irc { network: String, channel: String },
}

#[derive(Debug, Clone)]
pub struct Moderation {
    pub command_prefix: String,
    /// Matrix power level from which someone is a moderator in a room.
    pub matrix_power_level: i64,
    /// Where escalations and failures are announced.
    pub rooms: Vec<RoomRef>,
}

/// What validation may read: files (secrets, certificates) and environment variables.
/// Tests give their own; [`Config::load`] gives the real ones.
pub struct Inputs<'a> {
    pub read_file: &'a mut dyn FnMut(&Path) -> io::Result<String>,
    pub env: &'a dyn Fn(&str) -> Option<String>,
}

impl Config {
    /// Reads and validates the config file at `path`.
    pub fn load(path: &Path) -> Result<(Config, Vec<Diagnostic>), Diagnostics> {
        let name = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| {
            Diagnostics(vec![Diagnostic {
                file: name.clone(),
                line: 1,
                col: 1,
                severity: Severity::Error,
                message: format!("cannot read the config: {e}"),
                hint: None,
            }])
        })?;
        let mut read = |p: &Path| std::fs::read_to_string(p);
        let env = |k: &str| std::env::var(k).ok();
        Config::from_toml(
            &name,
            &text,
            Inputs {
                read_file: &mut read,
                env: &env,
            },
        )
    }

    /// Validates config text; `file` names it in diagnostics and is the base of relative
    /// paths. On success, also returns the warnings.
    pub fn from_toml(
        file: &str,
        text: &str,
        inputs: Inputs<'_>,
    ) -> Result<(Config, Vec<Diagnostic>), Diagnostics> {
        let src = Source { name: file, text };
        let raw: RawConfig = toml::from_str(text).map_err(|e| {
            let span = e.span().unwrap_or(0..0);
            let message = e.message().trim().replace('\n', " ");
            Diagnostics(vec![src.diagnostic(Severity::Error, span, message)])
        })?;
        let mut v = Validator {
            src,
            base: Path::new(file)
                .parent()
                .map(Path::to_path_buf)
                .unwrap_or_default(),
            diags: Vec::new(),
            inputs,
        };
        let config = v.config(raw);
        let mut diags = Diagnostics(v.diags);
        diags.sort();
        match config {
            Some(c) if !diags.has_errors() => Ok((c, diags.0)),
            _ => Err(diags),
        }
    }

    /// Every room the daemon is in, on every network.
    pub fn rooms(&self) -> Vec<RoomRef> {
        let mut out: Vec<RoomRef> = Vec::new();
        for b in &self.bridges {
            out.push(RoomRef::Matrix(b.matrix.clone()));
            out.push(RoomRef::Irc {
                network: b.network.clone(),
                channel: b.channel.clone(),
            });
        }
        for r in &self.moderation.rooms {
            if !out.contains(r) {
                out.push(r.clone());
            }
        }
        out
    }
}

struct Validator<'s, 'i> {
    src: Source<'s>,
    base: PathBuf,
    diags: Vec<Diagnostic>,
    inputs: Inputs<'i>,
}

impl Validator<'_, '_> {
    fn error(&mut self, span: Range<usize>, message: impl Into<String>) {
        let d = self.src.diagnostic(Severity::Error, span, message);
        self.diags.push(d);
    }

    fn error_hint(&mut self, span: Range<usize>, message: impl Into<String>, hint: &str) {
        let mut d = self.src.diagnostic(Severity::Error, span, message);
        d.hint = Some(hint.into());
        self.diags.push(d);
    }

    fn warning(&mut self, span: Range<usize>, message: impl Into<String>) {
        let d = self.src.diagnostic(Severity::Warning, span, message);
        self.diags.push(d);
    }

    fn path(&self, p: &str) -> PathBuf {
        self.base.join(p)
    }

    fn config(&mut self, raw: RawConfig) -> Option<Config> {
        let data_dir = self.nonempty_path(&raw.data_dir, "data_dir");
        let policy = self.nonempty_path(&raw.policy, "policy");
        if let Some(p) = &policy {
            if !p.is_file() {
                self.error_hint(
                    raw.policy.span(),
                    format!("policy file {} does not exist", p.display()),
                    "paths are relative to the config file's directory",
                );
            }
        }
        let irc = self.irc_networks(&raw);
        let network_names: Vec<String> = irc.iter().map(|n| n.config.network.clone()).collect();
        let bridges = self.bridges(&raw, &network_names);
        let moderation = self.moderation(&raw, &network_names);
        let ignore_senders = self.relay_ignores(&raw);
        let allow_room_ping = raw
            .relay
            .as_ref()
            .and_then(|r| r.get_ref().allow_room_ping)
            .unwrap_or(false);
        let (audit_dir, retention) = self.audit(&raw, data_dir.as_deref());
        let metrics_listen = self.metrics(&raw);
        let (log_json, log_level) = self.log(&raw);
        let mut matrix = self.matrix(&raw, data_dir.as_deref())?;
        matrix.allow_room_ping = allow_room_ping;
        if bridges.is_empty() {
            self.warning(0..0, "no [[bridge]] is configured: nothing will be relayed");
        }

        let mut config = Config {
            file: PathBuf::from(self.src.name),
            data_dir: data_dir?,
            policy: policy?,
            audit_dir: audit_dir?,
            retention,
            metrics_listen,
            log_json,
            log_level,
            matrix,
            irc: Vec::new(),
            bridges,
            moderation: moderation?,
            ignore_senders,
        };
        // Every room and channel the daemon must be in: bridged ones and moderators' ones.
        let rooms = config.rooms();
        config.matrix.rooms = rooms
            .iter()
            .filter_map(|r| match r {
                RoomRef::Matrix(id) => Some(id.clone()),
                RoomRef::Irc { .. } => None,
            })
            .collect();
        let mut irc = irc;
        for net in &mut irc {
            net.config.channels = rooms
                .iter()
                .filter_map(|r| match r {
                    RoomRef::Irc { network, channel } if *network == net.config.network => {
                        Some(channel.clone())
                    }
                    _ => None,
                })
                .collect();
        }
        config.irc = irc;
        Some(config)
    }
}

impl Validator<'_, '_> {
    fn nonempty_path(&mut self, value: &Spanned<String>, key: &str) -> Option<PathBuf> {
        if value.get_ref().trim().is_empty() {
            self.error(value.span(), format!("`{key}` is empty"));
            return None;
        }
        Some(self.path(value.get_ref()))
    }

    /// Reads a secret from its file or environment variable. `key` names it in messages.
    fn secret(&mut self, value: &Spanned<SecretOrText>, key: &str) -> Option<String> {
        let span = value.span();
        let secret = match value.get_ref() {
            SecretOrText::Text(_) => {
                self.error_hint(
                    span,
                    format!("`{key}` must not be written in the config"),
                    &format!(
                        "read it from a file or the environment: {key} = {{ file = \"/etc/bridgewarden/{}\" }} or {key} = {{ env = \"BRIDGEWARDEN_{}\" }}",
                        key.replace('_', "-"),
                        key.to_ascii_uppercase()
                    ),
                );
                return None;
            }
            SecretOrText::Secret(s) => s,
        };
        let text = match (&secret.file, &secret.env) {
            (Some(file), None) => {
                let path = self.path(file);
                match (self.inputs.read_file)(&path) {
                    Ok(t) => t,
                    Err(e) => {
                        self.error(
                            span,
                            format!("cannot read `{key}` from {}: {e}", path.display()),
                        );
                        return None;
                    }
                }
            }
            (None, Some(var)) => match (self.inputs.env)(var) {
                Some(t) => t,
                None => {
                    self.error(
                        span,
                        format!("`{key}`: environment variable {var} is not set"),
                    );
                    return None;
                }
            },
            _ => {
                self.error(
                    span,
                    format!("`{key}` needs exactly one of `file` or `env`"),
                );
                return None;
            }
        };
        // Files usually end with a newline; the secret does not.
        let text = text.trim_end_matches(['\r', '\n']).to_string();
        if text.is_empty() {
            self.error(span, format!("`{key}` is empty"));
            return None;
        }
        Some(text)
    }

    fn duration(&mut self, value: &Spanned<String>) -> Option<Duration> {
        match crate::policy::Duration::parse(value.get_ref()) {
            Ok(d) => Some(Duration::from_millis(d.as_millis())),
            Err(e) => {
                self.error(value.span(), e);
                None
            }
        }
    }

    fn readable_file(&mut self, value: &Spanned<String>, what: &str) -> PathBuf {
        let path = self.path(value.get_ref());
        if let Err(e) = (self.inputs.read_file)(&path) {
            self.error(
                value.span(),
                format!("cannot read {what} {}: {e}", path.display()),
            );
        }
        path
    }

    fn matrix(&mut self, raw: &RawConfig, data_dir: Option<&Path>) -> Option<MatrixConfig> {
        let m = raw.matrix.get_ref();
        let hs = m.homeserver.get_ref();
        if !(hs.starts_with("http://") || hs.starts_with("https://")) || hs.len() < 9 {
            self.error_hint(
                m.homeserver.span(),
                format!("homeserver {hs:?} is not an http(s) URL"),
                "e.g. homeserver = \"https://matrix.example.org\"",
            );
        }
        let user = m.user.get_ref();
        let localpart_ok = |l: &str| {
            !l.is_empty()
                && l.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "._=-/+".contains(c))
        };
        let user_ok = match user.strip_prefix('@') {
            Some(rest) => rest
                .split_once(':')
                .is_some_and(|(l, server)| localpart_ok(l) && !server.is_empty()),
            None => localpart_ok(user),
        };
        if !user_ok {
            self.error_hint(
                m.user.span(),
                format!("{user:?} is not a Matrix user id"),
                "write \"@bot:example.org\" or the localpart \"bot\"",
            );
        }
        let auth = match (&m.password, &m.access_token) {
            (Some(p), None) => self.secret(p, "password").map(MatrixAuth::Password),
            (None, Some(t)) => self.secret(t, "access_token").map(MatrixAuth::AccessToken),
            (Some(_), Some(t)) => {
                self.error(
                    t.span(),
                    "give either `password` or `access_token`, not both",
                );
                None
            }
            (None, None) => {
                self.error_hint(
                    raw.matrix.span(),
                    "[matrix] needs `password` or `access_token`",
                    "password = { file = \"/etc/bridgewarden/matrix-password\" }",
                );
                None
            }
        };
        let recovery_key = m
            .recovery_key
            .as_ref()
            .and_then(|k| self.secret(k, "recovery_key"));
        let store_passphrase = m
            .store_passphrase
            .as_ref()
            .and_then(|k| self.secret(k, "store_passphrase"));
        let mut invite_from = Vec::new();
        for u in &m.invite_from {
            if !u.get_ref().starts_with('@') || !u.get_ref().contains(':') {
                self.error(
                    u.span(),
                    format!("{:?} is not a Matrix user id", u.get_ref()),
                );
            } else if let Some((local, server)) = u.get_ref().split_once(':') {
                if local.chars().any(|c| c.is_uppercase()) {
                    // Servers lowercase new user ids: this entry would silently never match.
                    self.warning(
                        u.span(),
                        format!(
                            "{:?} has capital letters, which Matrix user ids do not have (only some very old accounts): invites from {}:{server} would be declined",
                            u.get_ref(),
                            local.to_lowercase()
                        ),
                    );
                }
            }
            invite_from.push(u.get_ref().clone());
        }
        let sync_timeout = m.sync_timeout.as_ref().and_then(|d| self.duration(d));
        let mut config = MatrixConfig::new(
            MATRIX_NETWORK,
            hs.trim_end_matches('/'),
            user,
            auth?,
            data_dir?.join("matrix"),
        );
        config.recovery_key = recovery_key;
        config.store_passphrase = store_passphrase;
        config.invite_from = invite_from;
        if let Some(t) = sync_timeout {
            config.sync_timeout = t;
        }
        if let Some(d) = &m.device_name {
            config.device_name = d.get_ref().clone();
        }
        Some(config)
    }

    fn irc_networks(&mut self, raw: &RawConfig) -> Vec<IrcNetwork> {
        let mut out = Vec::new();
        for (name, table) in &raw.irc {
            let span = table.span();
            let n = table.get_ref();
            if name == MATRIX_NETWORK
                || name.is_empty()
                || !name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            {
                self.error_hint(
                    span.clone(),
                    format!("{name:?} cannot name an IRC network"),
                    "use letters, digits, - and _ (and not \"matrix\")",
                );
            }
            if n.host.get_ref().trim().is_empty() {
                self.error(n.host.span(), "`host` is empty");
            }
            let tls_on = n.tls.unwrap_or(false);
            let port = match &n.port {
                Some(p) => match u16::try_from(*p.get_ref()) {
                    Ok(port) if port > 0 => port,
                    _ => {
                        self.error(p.span(), format!("port {} is out of range", p.get_ref()));
                        0
                    }
                },
                None if tls_on => 6697,
                None => 6667,
            };
            if !valid_nick(n.nick.get_ref()) {
                self.error(
                    n.nick.span(),
                    format!("{:?} is not a valid IRC nick", n.nick.get_ref()),
                );
            }
            let mut config = IrcConfig::new(name, n.host.get_ref(), port, n.nick.get_ref());
            for alt in &n.alt_nicks {
                if !valid_nick(alt.get_ref()) {
                    self.error(
                        alt.span(),
                        format!("{:?} is not a valid IRC nick", alt.get_ref()),
                    );
                }
                config.alt_nicks.push(alt.get_ref().clone());
            }
            if let Some(u) = &n.username {
                if u.get_ref().is_empty() || u.get_ref().contains([' ', '@', '\r', '\n', '\0']) {
                    self.error(
                        u.span(),
                        format!("{:?} is not a valid IRC username", u.get_ref()),
                    );
                }
                config.user = u.get_ref().clone();
            }
            if let Some(r) = &n.realname {
                config.realname = r.clone();
            }
            config.password = n.password.as_ref().and_then(|p| self.secret(p, "password"));
            let ca_file = n
                .ca_file
                .as_ref()
                .map(|f| self.readable_file(f, "the CA file"));
            let client_cert = n
                .client_cert
                .as_ref()
                .map(|f| self.readable_file(f, "the client certificate"));
            let client_key = n
                .client_key
                .as_ref()
                .map(|f| self.readable_file(f, "the client key"));
            if let Some(k) = &n.client_key {
                if client_cert.is_none() {
                    self.error(k.span(), "`client_key` without `client_cert`");
                }
            }
            if tls_on {
                config.tls = Some(Tls {
                    ca_file,
                    client_cert: client_cert.map(|c| {
                        let key = client_key.unwrap_or_else(|| c.clone());
                        (c, key)
                    }),
                });
            } else if let Some(f) = n.ca_file.as_ref().or(n.client_cert.as_ref()) {
                self.error_hint(
                    f.span(),
                    "TLS files given but `tls` is not on",
                    "tls = true",
                );
            }
            if let Some(s) = &n.sasl {
                config.sasl = self.sasl(s, &config);
            }
            if let Some(b) = &n.flood_burst {
                match u32::try_from(*b.get_ref()) {
                    Ok(b) if b >= 1 => config.flood_burst = b,
                    _ => self.error(b.span(), "`flood_burst` must be at least 1"),
                }
            }
            if let Some(r) = &n.flood_rate {
                let rate = *r.get_ref();
                if rate.is_finite() && rate > 0.0 && rate <= 1000.0 {
                    config.flood_rate = rate;
                } else {
                    self.error(r.span(), "`flood_rate` (lines per second) must be above 0");
                }
            }
            if let Some(q) = &n.queue_limit {
                match usize::try_from(*q.get_ref()) {
                    Ok(q) if q >= 1 => config.queue_limit = q,
                    _ => self.error(q.span(), "`queue_limit` must be at least 1"),
                }
            }
            if let Some(m) = &n.max_lines {
                match usize::try_from(*m.get_ref()) {
                    Ok(m) if (1..=100).contains(&m) => config.max_lines = m,
                    _ => self.error(m.span(), "`max_lines` must be between 1 and 100"),
                }
            }
            let moderator_modes = match &n.moderator_modes {
                Some(m)
                    if !m.get_ref().is_empty()
                        && m.get_ref().chars().all(|c| c.is_ascii_alphabetic()) =>
                {
                    m.get_ref().clone()
                }
                Some(m) => {
                    self.error_hint(
                        m.span(),
                        "`moderator_modes` must be mode letters",
                        "e.g. \"oh\" (op and half-op)",
                    );
                    String::new()
                }
                None => "oh".into(),
            };
            let moderator_accounts = n
                .moderator_accounts
                .iter()
                .map(|a| a.get_ref().to_lowercase())
                .collect();
            out.push(IrcNetwork {
                config,
                moderator_modes,
                moderator_accounts,
            });
        }
        out
    }

    fn sasl(&mut self, s: &Spanned<raw::RawSasl>, config: &IrcConfig) -> Option<Sasl> {
        let r = s.get_ref();
        match r.mechanism.get_ref().to_ascii_lowercase().as_str() {
            "plain" => {
                let account = match &r.account {
                    Some(a) if !a.get_ref().is_empty() => Some(a.get_ref().clone()),
                    _ => {
                        self.error(s.span(), "SASL PLAIN needs `account`");
                        None
                    }
                };
                let password = match &r.password {
                    Some(p) => self.secret(p, "password"),
                    None => {
                        self.error(s.span(), "SASL PLAIN needs `password`");
                        None
                    }
                };
                Some(Sasl::Plain {
                    account: account?,
                    password: password?,
                })
            }
            "external" => {
                let has_cert = config.tls.as_ref().is_some_and(|t| t.client_cert.is_some());
                if !has_cert {
                    self.error_hint(
                        s.span(),
                        "SASL EXTERNAL needs a TLS client certificate",
                        "tls = true and client_cert = \"bridgewarden.pem\"",
                    );
                }
                if let Some(a) = &r.account {
                    self.error(
                        a.span(),
                        "SASL EXTERNAL takes no `account`: the certificate names it",
                    );
                }
                Some(Sasl::External)
            }
            other => {
                self.error_hint(
                    r.mechanism.span(),
                    format!("unknown SASL mechanism {other:?}"),
                    "\"plain\" or \"external\"",
                );
                None
            }
        }
    }

    fn bridges(&mut self, raw: &RawConfig, networks: &[String]) -> Vec<Bridge> {
        let mut out: Vec<Bridge> = Vec::new();
        let mut seen_matrix: HashMap<String, ()> = HashMap::new();
        let mut seen_irc: HashMap<(String, String), ()> = HashMap::new();
        for b in &raw.bridge {
            let r = b.get_ref();
            let matrix = r.matrix.get_ref();
            if !valid_matrix_room(matrix) {
                self.error_hint(
                    r.matrix.span(),
                    format!("{matrix:?} is not a Matrix room id or alias"),
                    "\"!roomid:example.org\" or \"#alias:example.org\"",
                );
            }
            let Some(network) = self.network_of(r.network.as_ref(), b.span(), networks) else {
                continue;
            };
            let channel = r.channel.get_ref();
            if !valid_channel(channel) {
                self.error(
                    r.channel.span(),
                    format!("{channel:?} is not an IRC channel name"),
                );
            }
            if seen_matrix.insert(matrix.clone(), ()).is_some() {
                self.error(r.matrix.span(), format!("{matrix} is bridged twice"));
            }
            if seen_irc
                .insert((network.clone(), channel.to_lowercase()), ())
                .is_some()
            {
                self.error(
                    r.channel.span(),
                    format!("{channel} on {network} is bridged twice"),
                );
            }
            out.push(Bridge {
                matrix: matrix.clone(),
                network,
                channel: channel.clone(),
            });
        }
        out
    }

    /// The IRC network a table names, or the only one when it names none.
    fn network_of(
        &mut self,
        given: Option<&Spanned<String>>,
        span: Range<usize>,
        networks: &[String],
    ) -> Option<String> {
        match given {
            Some(n) if networks.contains(n.get_ref()) => Some(n.get_ref().clone()),
            Some(n) => {
                self.error_hint(
                    n.span(),
                    format!("no IRC network named {:?}", n.get_ref()),
                    &format!("configured: {}", networks.join(", ")),
                );
                None
            }
            None if networks.len() == 1 => Some(networks[0].clone()),
            None if networks.is_empty() => {
                self.error(
                    span,
                    "no IRC network is configured: add an [irc.NAME] table",
                );
                None
            }
            None => {
                self.error_hint(
                    span,
                    "several IRC networks are configured: say which",
                    &format!("network = \"{}\"", networks[0]),
                );
                None
            }
        }
    }

    fn moderation(&mut self, raw: &RawConfig, networks: &[String]) -> Option<Moderation> {
        let mut m = Moderation {
            command_prefix: "!".into(),
            matrix_power_level: 50,
            rooms: Vec::new(),
        };
        let Some(table) = &raw.moderation else {
            return Some(m);
        };
        let r = table.get_ref();
        if let Some(p) = &r.command_prefix {
            let p_ok = !p.get_ref().is_empty()
                && p.get_ref().chars().count() <= 3
                && !p
                    .get_ref()
                    .chars()
                    .any(|c| c.is_whitespace() || c.is_alphanumeric());
            if p_ok {
                m.command_prefix = p.get_ref().clone();
            } else {
                self.error_hint(
                    p.span(),
                    format!("{:?} cannot be a command prefix", p.get_ref()),
                    "one to three punctuation characters, e.g. \"!\"",
                );
            }
        }
        if let Some(pl) = &r.matrix_power_level {
            if *pl.get_ref() < 1 {
                self.error(
                    pl.span(),
                    "`matrix_power_level` must be at least 1 (0 is everyone)",
                );
            }
            m.matrix_power_level = *pl.get_ref();
        }
        for room in &r.rooms {
            let text = room.get_ref();
            if valid_matrix_room(text) {
                m.rooms.push(RoomRef::Matrix(text.clone()));
                continue;
            }
            let (net, channel) = match text.split_once('/') {
                Some((net, channel)) => (Some(Spanned::new(room.span(), net.to_string())), channel),
                None => (None, text.as_str()),
            };
            if !valid_channel(channel) {
                self.error_hint(
                    room.span(),
                    format!("{text:?} is neither a Matrix room nor an IRC channel"),
                    "\"!id:server\", \"#alias:server\", \"network/#channel\" or \"#channel\"",
                );
                continue;
            }
            if let Some(network) = self.network_of(net.as_ref(), room.span(), networks) {
                m.rooms.push(RoomRef::Irc {
                    network,
                    channel: channel.to_string(),
                });
            }
        }
        Some(m)
    }

    fn relay_ignores(&mut self, raw: &RawConfig) -> Vec<regex::Regex> {
        let mut out = Vec::new();
        let Some(relay) = &raw.relay else {
            return out;
        };
        for pattern in &relay.get_ref().ignore_senders {
            match regex::Regex::new(pattern.get_ref()) {
                Ok(r) => out.push(r),
                Err(e) => {
                    let message = e.to_string().lines().last().unwrap_or_default().to_string();
                    self.error(
                        pattern.span(),
                        format!("bad regex in ignore_senders: {message}"),
                    );
                }
            }
        }
        out
    }

    fn audit(
        &mut self,
        raw: &RawConfig,
        data_dir: Option<&Path>,
    ) -> (Option<PathBuf>, Option<Duration>) {
        let table = raw.audit.as_ref().map(Spanned::get_ref);
        let dir = match table.and_then(|a| a.dir.as_ref()) {
            Some(d) => self.nonempty_path(d, "audit.dir"),
            None => data_dir.map(|d| d.join("audit")),
        };
        let retention = table
            .and_then(|a| a.retention.as_ref())
            .and_then(|r| self.duration(r));
        (dir, retention)
    }

    fn metrics(&mut self, raw: &RawConfig) -> Option<SocketAddr> {
        let listen = raw
            .metrics
            .as_ref()
            .and_then(|m| m.get_ref().listen.as_ref());
        let Some(listen) = listen else {
            return DEFAULT_METRICS_LISTEN.parse().ok();
        };
        if listen.get_ref().is_empty() {
            return None;
        }
        match listen.get_ref().parse::<SocketAddr>() {
            Ok(addr) => {
                if !addr.ip().is_loopback() {
                    self.warning(
                        listen.span(),
                        format!("metrics and health on {addr} are reachable from other machines"),
                    );
                }
                Some(addr)
            }
            Err(_) => {
                self.error_hint(
                    listen.span(),
                    format!("{:?} is not an address to listen on", listen.get_ref()),
                    "\"127.0.0.1:9184\", \"[::1]:9184\", or \"\" for none",
                );
                None
            }
        }
    }

    fn log(&mut self, raw: &RawConfig) -> (bool, String) {
        let table = raw.log.as_ref().map(Spanned::get_ref);
        let json = match table.and_then(|l| l.format.as_ref()) {
            None => false,
            Some(f) if f.get_ref() == "text" => false,
            Some(f) if f.get_ref() == "json" => true,
            Some(f) => {
                self.error(
                    f.span(),
                    format!("log format {:?}: use \"text\" or \"json\"", f.get_ref()),
                );
                false
            }
        };
        let level = match table.and_then(|l| l.level.as_ref()) {
            Some(l) => {
                if let Err(e) = tracing_subscriber::EnvFilter::try_new(l.get_ref()) {
                    self.error(l.span(), format!("bad log level: {e}"));
                }
                l.get_ref().clone()
            }
            None => "info".into(),
        };
        (json, level)
    }
}

/// A Matrix room id (`!...`) or alias (`#local:server`).
pub fn valid_matrix_room(s: &str) -> bool {
    let clean = !s.contains(|c: char| c.is_whitespace() || c.is_control());
    match s.chars().next() {
        Some('!') => s.len() > 1 && clean,
        Some('#') => {
            s.split_once(':')
                .is_some_and(|(l, server)| l.len() > 1 && !server.is_empty())
                && clean
        }
        _ => false,
    }
}

/// An IRC channel name: a channel prefix, then no space, comma, BELL or control character.
pub fn valid_channel(s: &str) -> bool {
    s.len() > 1
        && s.len() <= 200
        && s.starts_with(['#', '&', '+', '!'])
        && !s.contains(|c: char| c == ' ' || c == ',' || c == '\x07' || c.is_control())
}

/// An IRC nick as RFC 2812 allows it (any length: servers announce their own limit).
pub fn valid_nick(s: &str) -> bool {
    let special = |c: char| "[]\\`_^{|}".contains(c);
    let mut chars = s.chars();
    match chars.next() {
        Some(c) if c.is_ascii_alphabetic() || special(c) => {}
        _ => return false,
    }
    chars.all(|c| c.is_ascii_alphanumeric() || special(c) || c == '-')
}

#[cfg(test)]
mod tests;
