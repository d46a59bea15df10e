//! The config file as written: serde structs that mirror the TOML, with spans for
//! diagnostics. Nothing here is checked beyond TOML types and unknown keys; `validate` turns it
//! into a [`super::Config`].

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    /// Where the Matrix session and store live, and by default the audit log.
    pub data_dir: Spanned<String>,
    /// The policy file.
    pub policy: Spanned<String>,
    pub matrix: Spanned<RawMatrix>,
    #[serde(default)]
    pub irc: BTreeMap<String, Spanned<RawIrc>>,
    #[serde(default)]
    pub bridge: Vec<Spanned<RawBridge>>,
    pub moderation: Option<Spanned<RawModeration>>,
    pub relay: Option<Spanned<RawRelay>>,
    pub audit: Option<Spanned<RawAudit>>,
    pub metrics: Option<Spanned<RawMetrics>>,
    pub log: Option<Spanned<RawLog>>,
}

/// A secret: read from a file or an environment variable, never written in the config.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSecret {
    // Plain strings: spans do not survive the untagged enum around this; errors point at the
    // key that holds the table.
    pub file: Option<String>,
    pub env: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMatrix {
    pub homeserver: Spanned<String>,
    pub user: Spanned<String>,
    pub password: Option<Spanned<SecretOrText>>,
    pub access_token: Option<Spanned<SecretOrText>>,
    pub recovery_key: Option<Spanned<SecretOrText>>,
    pub store_passphrase: Option<Spanned<SecretOrText>>,
    #[serde(default)]
    pub invite_from: Vec<Spanned<String>>,
    pub device_name: Option<Spanned<String>>,
    pub sync_timeout: Option<Spanned<String>>,
}

/// What a secret key holds: the `{ file = .. }` / `{ env = .. }` table, or (refused with a
/// hint) the secret itself.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum SecretOrText {
    Secret(RawSecret),
    Text(String),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawIrc {
    pub host: Spanned<String>,
    pub port: Option<Spanned<i64>>,
    pub tls: Option<bool>,
    pub ca_file: Option<Spanned<String>>,
    pub client_cert: Option<Spanned<String>>,
    pub client_key: Option<Spanned<String>>,
    pub password: Option<Spanned<SecretOrText>>,
    pub nick: Spanned<String>,
    #[serde(default)]
    pub alt_nicks: Vec<Spanned<String>>,
    pub username: Option<Spanned<String>>,
    pub realname: Option<String>,
    pub sasl: Option<Spanned<RawSasl>>,
    pub flood_burst: Option<Spanned<i64>>,
    pub flood_rate: Option<Spanned<f64>>,
    pub queue_limit: Option<Spanned<i64>>,
    pub max_lines: Option<Spanned<i64>>,
    /// Channel modes that make someone a moderator in that channel (default "oh").
    pub moderator_modes: Option<Spanned<String>>,
    /// Services accounts that are moderators in every bridged channel of this network.
    #[serde(default)]
    pub moderator_accounts: Vec<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSasl {
    pub mechanism: Spanned<String>,
    pub account: Option<Spanned<String>>,
    pub password: Option<Spanned<SecretOrText>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBridge {
    /// Matrix room id or alias.
    pub matrix: Spanned<String>,
    /// IRC network name (a key of `[irc]`); may be left out when there is one network.
    pub network: Option<Spanned<String>>,
    pub channel: Spanned<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawModeration {
    pub command_prefix: Option<Spanned<String>>,
    /// Matrix power level from which someone is a moderator in a room (default 50).
    pub matrix_power_level: Option<Spanned<i64>>,
    /// Where escalations and failed actions are announced: Matrix room ids or aliases, and
    /// `network/#channel` or `#channel` for IRC.
    #[serde(default)]
    pub rooms: Vec<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRelay {
    /// Senders never relayed or evaluated: other bridges' bots (regexes on the IRC nick or
    /// Matrix user id).
    #[serde(default)]
    pub ignore_senders: Vec<Spanned<String>>,
    /// Let relayed text ping a whole Matrix room with @room.
    pub allow_room_ping: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAudit {
    pub dir: Option<Spanned<String>>,
    /// Records older than this are purged (e.g. "365d"); none: kept forever.
    pub retention: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMetrics {
    /// `host:port` for /metrics and /health; "" turns the endpoint off.
    pub listen: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLog {
    /// "text" (default) or "json".
    pub format: Option<Spanned<String>>,
    /// A tracing filter, e.g. "info" or "bridgewarden=debug,matrix_sdk=warn".
    pub level: Option<Spanned<String>>,
}
