//! The Matrix adapter: a bot account (relay mode) on matrix-sdk.
//!
//! It logs in with a password or an access token (read by the config layer from a file or the
//! environment, never the command line), keeps its session and the SDK's SQLite store (state,
//! sync token, crypto keys) under the data directory so a restart reuses the device and resumes
//! the sync without replaying events (or losing any, up to 100 per room), joins the bridged
//! rooms, accepts invites only from configured users, and syncs in its own loop with backoff so
//! a homeserver restart is survived. Encrypted rooms work through the SDK: events are decrypted
//! before they reach us, and sends into encrypted rooms are encrypted.
//!
//! It turns sync events into [`ChatEvent`]s and executes [`Command`]s (send, redact, kick, ban,
//! unban, mute by power level). No policy or routing logic lives here.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use matrix_sdk::authentication::matrix::MatrixSession;
use matrix_sdk::config::SyncSettings;
use matrix_sdk::encryption::EncryptionSettings;
use matrix_sdk::room::Room;
use matrix_sdk::ruma::events::room::member::{
    MembershipChange, OriginalSyncRoomMemberEvent, StrippedRoomMemberEvent,
};
use matrix_sdk::ruma::events::room::message::{
    MessageType, OriginalSyncRoomMessageEvent, Relation, RoomMessageEventContent,
};
use matrix_sdk::ruma::events::room::redaction::OriginalSyncRoomRedactionEvent;
use matrix_sdk::ruma::events::room::MediaSource;
use matrix_sdk::ruma::events::Mentions;
use matrix_sdk::ruma::{Int, OwnedEventId, OwnedUserId, RoomOrAliasId, UserId};
use matrix_sdk::{Client, RoomState, SessionMeta, SessionTokens};
use tokio::sync::mpsc;

use super::html;
use crate::chat::{ChatEvent, ChatEventKind, Command, Done, Quote, SendKind, User};
use crate::rich_text::RichText;

/// How the bot logs in. Secrets arrive here already read from a file or the environment.
#[derive(Clone)]
pub enum MatrixAuth {
    Password(String),
    AccessToken(String),
}

impl std::fmt::Debug for MatrixAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            MatrixAuth::Password(_) => "Password(<redacted>)",
            MatrixAuth::AccessToken(_) => "AccessToken(<redacted>)",
        })
    }
}

#[derive(Debug, Clone)]
pub struct MatrixConfig {
    /// The configured network name; events carry it.
    pub network: String,
    pub homeserver: String,
    /// The bot's user id (`@bot:example.org`) or localpart.
    pub user: String,
    pub auth: MatrixAuth,
    /// Where the session and the SDK store live (back it up: it holds the crypto keys).
    pub data_dir: PathBuf,
    /// Encrypts the SDK store at rest.
    pub store_passphrase: Option<String>,
    /// Rooms to join, by id or alias.
    pub rooms: Vec<String>,
    /// Invites are accepted only from these user ids.
    pub invite_from: Vec<String>,
    /// A recovery key to verify the bot's device through cross-signing (see docs).
    pub recovery_key: Option<String>,
    /// Let relays ping the whole room with @room.
    pub allow_room_ping: bool,
    /// Long-poll timeout of each sync request.
    pub sync_timeout: Duration,
    pub device_name: String,
}

impl MatrixConfig {
    pub fn new(
        network: &str,
        homeserver: &str,
        user: &str,
        auth: MatrixAuth,
        data_dir: PathBuf,
    ) -> Self {
        MatrixConfig {
            network: network.to_string(),
            homeserver: homeserver.to_string(),
            user: user.to_string(),
            auth,
            data_dir,
            store_passphrase: None,
            rooms: Vec::new(),
            invite_from: Vec::new(),
            recovery_key: None,
            allow_room_ping: false,
            sync_timeout: Duration::from_secs(30),
            device_name: "bridgewarden".into(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MatrixError {
    #[error("cannot log in to {homeserver}: {reason}")]
    Login { homeserver: String, reason: String },
    #[error("the store in {path} cannot be used: {reason}")]
    Store { path: String, reason: String },
    #[error("not in room {0}")]
    NotInRoom(String),
    #[error("bad {what} {value:?}")]
    Invalid { what: &'static str, value: String },
    #[error("the bot lacks the power to {action} in {room} (it has {have}, needs {need}): give it a higher power level")]
    NoPower {
        action: &'static str,
        room: String,
        have: String,
        need: i64,
    },
    #[error("the homeserver refused: {0}")]
    Refused(String),
}

fn refused(e: impl std::fmt::Display) -> MatrixError {
    MatrixError::Refused(e.to_string())
}

/// Counters for metrics and tests.
#[derive(Debug, Default)]
pub struct MatrixStats {
    pub syncs: AtomicU64,
    pub sync_errors: AtomicU64,
    pub events: AtomicU64,
    /// Room timelines a sync returned cut short: more events arrived (while the bridge was
    /// away) than one sync returns per room, and the older ones were not relayed.
    pub gaps: AtomicU64,
    /// Whether the last sync succeeded (for the health endpoint).
    pub syncing: std::sync::atomic::AtomicBool,
}

/// The handle the rest of the program holds.
#[derive(Clone)]
pub struct MatrixHandle {
    client: Client,
    config: Arc<MatrixConfig>,
    pub stats: Arc<MatrixStats>,
}

const SESSION_FILE: &str = "session.json";
const STORE_DIR: &str = "store";

/// Logs in (or restores the saved session), joins the configured rooms, and starts syncing.
pub async fn start(
    config: MatrixConfig,
) -> Result<(MatrixHandle, mpsc::UnboundedReceiver<ChatEvent>), MatrixError> {
    let config = Arc::new(config);
    let store_err = |e: &dyn std::fmt::Display| MatrixError::Store {
        path: config.data_dir.display().to_string(),
        reason: e.to_string(),
    };
    std::fs::create_dir_all(&config.data_dir).map_err(|e| store_err(&e))?;
    let client = Client::builder()
        .homeserver_url(&config.homeserver)
        .sqlite_store(
            config.data_dir.join(STORE_DIR),
            config.store_passphrase.as_deref(),
        )
        .with_encryption_settings(EncryptionSettings {
            auto_enable_cross_signing: true,
            ..Default::default()
        })
        .build()
        .await
        .map_err(|e| store_err(&e))?;
    let restored = login(&client, &config).await?;
    // Keys uploaded before anyone encrypts to us.
    client
        .encryption()
        .wait_for_e2ee_initialization_tasks()
        .await;
    verify_device(&client, &config).await;

    // Unbounded: the first syncs below run the handlers before anyone can read the channel
    // (a restored session's backlog after an outage can be thousands of events); a bounded
    // channel would hang startup. The daemon reads it at the speed of routing (microseconds).
    let (tx, rx) = mpsc::unbounded_channel();
    let stats = Arc::new(MatrixStats::default());
    let handle = MatrixHandle {
        client: client.clone(),
        config: config.clone(),
        stats: stats.clone(),
    };
    // A restored session's syncs carry what happened while we were away: gaps there matter.
    let sync_now = || sync(&client, sync_settings(Duration::ZERO), &stats, restored);
    if restored {
        // Resuming from the stored sync token: the next sync holds exactly what happened while
        // we were away, so the handlers must see it.
        install_handlers(&client, &config, tx, stats.clone());
    } else {
        // A fresh login's first sync is old history: take it in without relaying it.
        if let Err(e) = sync_now().await {
            tracing::warn!(error = %e, "first Matrix sync failed; the sync loop will retry");
        }
        install_handlers(&client, &config, tx, stats.clone());
    }
    for room in &config.rooms {
        if let Err(e) = handle.join(room).await {
            tracing::warn!(%room, error = %e, "cannot join a bridged Matrix room");
        }
    }
    // Invites that arrived before the handlers existed.
    if let Err(e) = sync_now().await {
        tracing::warn!(error = %e, "Matrix sync failed; the sync loop will retry");
    }
    for room in client.invited_rooms() {
        let inviter = room
            .invite_details()
            .await
            .ok()
            .and_then(|d| d.inviter)
            .map(|m| m.user_id().to_string());
        answer_invite(&room, inviter.as_deref(), &config.invite_from).await;
    }
    // Rooms joined just now get their state (power levels, members) before we return.
    if let Err(e) = sync_now().await {
        tracing::warn!(error = %e, "Matrix sync failed; the sync loop will retry");
    }
    tokio::spawn(sync_loop(client, config, stats));
    Ok((handle, rx))
}

/// Restores the saved session or logs in; true when a session was restored.
async fn login(client: &Client, config: &MatrixConfig) -> Result<bool, MatrixError> {
    let fail = |e: &dyn std::fmt::Display| MatrixError::Login {
        homeserver: config.homeserver.clone(),
        reason: e.to_string(),
    };
    let session_path = config.data_dir.join(SESSION_FILE);
    if let Ok(saved) = std::fs::read_to_string(&session_path) {
        let session: MatrixSession = serde_json::from_str(&saved).map_err(|e| fail(&e))?;
        client
            .restore_session(session)
            .await
            .map_err(|e| fail(&e))?;
        tracing::info!(user = ?client.user_id(), device = ?client.device_id(), "Matrix session restored");
        return Ok(true);
    }
    match &config.auth {
        MatrixAuth::Password(password) => {
            client
                .matrix_auth()
                .login_username(&config.user, password)
                .initial_device_display_name(&config.device_name)
                .send()
                .await
                .map_err(|e| fail(&e))?;
        }
        MatrixAuth::AccessToken(token) => {
            // The token's owner and device, from the homeserver.
            let url = format!(
                "{}/_matrix/client/v3/account/whoami",
                config.homeserver.trim_end_matches('/')
            );
            let who: serde_json::Value = matrix_sdk::reqwest::Client::new()
                .get(url)
                .bearer_auth(token)
                .send()
                .await
                .and_then(|r| r.error_for_status())
                .map_err(|e| fail(&e))?
                .text()
                .await
                .map_err(|e| fail(&e))
                .and_then(|t| serde_json::from_str(&t).map_err(|e| fail(&e)))?;
            let user_id: OwnedUserId = who["user_id"]
                .as_str()
                .unwrap_or("")
                .try_into()
                .map_err(|e| fail(&e))?;
            let device_id = who["device_id"]
                .as_str()
                .ok_or_else(|| fail(&"the token has no device"))?;
            let session = MatrixSession {
                meta: SessionMeta {
                    user_id,
                    device_id: device_id.into(),
                },
                tokens: SessionTokens {
                    access_token: token.clone(),
                    refresh_token: None,
                },
            };
            client
                .restore_session(session)
                .await
                .map_err(|e| fail(&e))?;
        }
    }
    if let Some(session) = client.matrix_auth().session() {
        let json = serde_json::to_string(&session).map_err(|e| fail(&e))?;
        write_private(&session_path, &json).map_err(|e| fail(&e))?;
    }
    tracing::info!(user = ?client.user_id(), device = ?client.device_id(), "Matrix login");
    Ok(false)
}

/// Accepts an invite from a configured user; declines anyone else's.
async fn answer_invite(room: &Room, inviter: Option<&str>, allowed: &[String]) {
    if inviter.is_some_and(|i| allowed.iter().any(|a| a == i)) {
        tracing::info!(room = %room.room_id(), inviter = ?inviter, "accepting a Matrix invite");
        if let Err(e) = room.join().await {
            tracing::warn!(room = %room.room_id(), error = %e, "cannot join after an invite");
        }
    } else {
        tracing::info!(room = %room.room_id(), inviter = ?inviter, "declining a Matrix invite from someone not configured");
        let _ = room.leave().await;
    }
}

/// Writes a file only its owner can read (it holds the access token).
fn write_private(path: &std::path::Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(text.as_bytes())
}

/// With a recovery key, the device is verified through cross-signing; without, it stays
/// unverified (messages still flow; other users may see a warning on the bot's messages).
async fn verify_device(client: &Client, config: &MatrixConfig) {
    match &config.recovery_key {
        Some(key) => match client.encryption().recovery().recover(key).await {
            Ok(()) => tracing::info!("Matrix device verified with the recovery key"),
            Err(e) => tracing::error!(error = %e, "the recovery key did not verify the device; it stays unverified"),
        },
        None => tracing::info!(
            "no Matrix recovery key configured: the bot's device stays unverified (its messages work; \
             clients may mark them as from an unverified device)"
        ),
    }
}

/// At most this many events per room in one sync: what a restart after an outage can catch
/// up on in a room (the homeserver's default is 10; Synapse returned no more than 100 here
/// when asked for 200).
const TIMELINE_LIMIT: u32 = 100;

/// One sync; with `note`, rooms whose timeline came back cut short are counted and logged
/// (see [`MatrixStats::gaps`]). Rooms that were not yet synced before (just joined) are not:
/// their first timeline is history, never relayed.
async fn sync(
    client: &Client,
    settings: SyncSettings,
    stats: &MatrixStats,
    note: bool,
) -> matrix_sdk::Result<matrix_sdk::sync::SyncResponse> {
    let known: std::collections::HashSet<_> = client
        .joined_rooms()
        .into_iter()
        .filter(|r| r.is_state_fully_synced())
        .map(|r| r.room_id().to_owned())
        .collect();
    let response = client.sync_once(settings).await?;
    if note {
        for (room, update) in &response.rooms.joined {
            if update.timeline.limited && known.contains(room) {
                stats.gaps.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(%room, limit = TIMELINE_LIMIT, "more Matrix events arrived in a room than one sync returns: the older ones were not relayed or judged");
            }
        }
    }
    Ok(response)
}

/// What the bot asks the homeserver for. Every new event wakes every member's sync, and the
/// homeserver answers them one after the other: the bot's answer must cost as little as it
/// can, or it delays the Matrix users' own. So nothing the bridge never reads: no presence, no
/// typing or read receipts, no per-room account data (global account data stays: push rules,
/// ignored users, cross-signing secrets).
///
/// The bot's own messages do come back. Filtering them out (`not_senders`) saved ~4 ms per
/// IRC -> Matrix relay at 1 message/s here, but a sync whose events are all filtered out
/// returns nothing, so its `since` token stops advancing: under a stream of relays the
/// homeserver re-reads the growing range, paginating back through filtered-out events, on every
/// wakeup (seen: the bot's sends at 20/s slowed to a p99 of 58 ms from 32).
fn sync_settings(timeout: Duration) -> SyncSettings {
    use matrix_sdk::ruma::api::client::filter::{
        Filter, FilterDefinition, RoomEventFilter, RoomFilter,
    };
    use matrix_sdk::ruma::api::client::sync::sync_events::v3::Filter as SyncFilter;
    let mut room = RoomFilter::empty();
    room.ephemeral = RoomEventFilter::ignore_all();
    room.account_data = RoomEventFilter::ignore_all();
    room.timeline.limit = Some(TIMELINE_LIMIT.into());
    let mut filter = FilterDefinition::empty();
    filter.presence = Filter::ignore_all();
    filter.room = room;
    SyncSettings::default()
        .timeout(timeout)
        .filter(SyncFilter::FilterDefinition(filter))
}

async fn sync_loop(client: Client, config: Arc<MatrixConfig>, stats: Arc<MatrixStats>) {
    let mut backoff = Duration::from_millis(200);
    loop {
        // Resumes from the stored token: nothing is replayed; a backlog of more than
        // TIMELINE_LIMIT events in a room loses its oldest ones, counted as a gap.
        match sync(&client, sync_settings(config.sync_timeout), &stats, true).await {
            Ok(_) => {
                stats.syncs.fetch_add(1, Ordering::Relaxed);
                stats.syncing.store(true, Ordering::Relaxed);
                backoff = Duration::from_millis(200);
            }
            Err(e) => {
                stats.sync_errors.fetch_add(1, Ordering::Relaxed);
                stats.syncing.store(false, Ordering::Relaxed);
                tracing::warn!(error = %e, retry_in = ?backoff, "Matrix sync failed");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(30));
            }
        }
    }
}

fn install_handlers(
    client: &Client,
    config: &Arc<MatrixConfig>,
    tx: mpsc::UnboundedSender<ChatEvent>,
    stats: Arc<MatrixStats>,
) {
    let own = client.user_id().map(ToOwned::to_owned);
    let network = config.network.clone();

    let (t, n, o, s) = (tx.clone(), network.clone(), own.clone(), stats.clone());
    client.add_event_handler(move |ev: OriginalSyncRoomMessageEvent, room: Room| {
        let (t, n, o, s) = (t.clone(), n.clone(), o.clone(), s.clone());
        async move {
            // Our own relays coming back: the routing core would drop them; dropping them
            // here saves parsing their HTML and reading the store on every relay.
            if o.as_deref() == Some(&*ev.sender) {
                return;
            }
            if let Some(event) = message_event(&n, &room, &ev).await {
                s.events.fetch_add(1, Ordering::Relaxed);
                let _ = t.send(event);
            }
        }
    });

    let (t, n, o) = (tx.clone(), network.clone(), own.clone());
    client.add_event_handler(move |ev: OriginalSyncRoomRedactionEvent, room: Room| {
        let (t, n, o) = (t.clone(), n.clone(), o.clone());
        async move {
            let Some(redacts) = ev.redacts.clone().or_else(|| ev.content.redacts.clone()) else {
                return;
            };
            let sender = user(&room, &ev.sender).await;
            let event = ChatEvent {
                network: n,
                room: room.room_id().to_string(),
                own: o.as_deref() == Some(&*ev.sender),
                sender,
                kind: ChatEventKind::Redaction {
                    redacts: redacts.to_string(),
                    reason: ev.content.reason.clone(),
                },
                ts: i64::from(ev.origin_server_ts.0),
                id: Some(ev.event_id.to_string()),
                mentions: Vec::new(),
                reply_to: None,
            };
            let _ = t.send(event);
        }
    });

    let (t, n, o) = (tx.clone(), network.clone(), own.clone());
    client.add_event_handler(move |ev: OriginalSyncRoomMemberEvent, room: Room| {
        let (t, n, o) = (t.clone(), n.clone(), o.clone());
        async move {
            let target = ev.state_key.to_string();
            let kind = match ev.membership_change() {
                MembershipChange::Joined => ChatEventKind::Join,
                MembershipChange::Left => ChatEventKind::Part {
                    reason: ev.content.reason.clone(),
                },
                MembershipChange::Kicked
                | MembershipChange::Banned
                | MembershipChange::KickedAndBanned => ChatEventKind::Kick {
                    target: target.clone(),
                    reason: ev.content.reason.clone(),
                },
                MembershipChange::ProfileChanged {
                    displayname_change: Some(change),
                    ..
                } => ChatEventKind::Nick {
                    new: change
                        .new
                        .map(String::from)
                        .unwrap_or_else(|| target.clone()),
                },
                _ => return,
            };
            let sender = user(&room, &ev.sender).await;
            let event = ChatEvent {
                network: n,
                room: room.room_id().to_string(),
                own: o.as_deref() == Some(&*ev.sender),
                sender,
                kind,
                ts: i64::from(ev.origin_server_ts.0),
                id: Some(ev.event_id.to_string()),
                mentions: Vec::new(),
                reply_to: None,
            };
            let _ = t.send(event);
        }
    });

    // Invites: accepted only from configured users; others are declined.
    let allowed = config.invite_from.clone();
    let (o, c) = (own, client.clone());
    client.add_event_handler(move |ev: StrippedRoomMemberEvent, room: Room| {
        let (allowed, o, _c) = (allowed.clone(), o.clone(), c.clone());
        async move {
            if o.as_deref() != Some(&*ev.state_key) || room.state() != RoomState::Invited {
                return;
            }
            answer_invite(&room, Some(ev.sender.as_str()), &allowed).await;
        }
    });
}

/// The room's power levels, waiting for the room's state if it was joined a moment ago.
async fn power_levels(
    room: &Room,
) -> Result<matrix_sdk::ruma::events::room::power_levels::RoomPowerLevels, MatrixError> {
    match room.power_levels().await {
        Ok(pl) => Ok(pl),
        Err(_) => {
            room.sync_up().await;
            room.power_levels().await.map_err(refused)
        }
    }
}

/// Sets one user's power level. The event is rewritten whole, so it is read fresh from the
/// homeserver first: the local copy lags behind a change just made (ours, until the sync
/// brings it back, or a moderator's), and writing a stale copy would undo it, e.g. lift the
/// mute of the previous user in a raid.
async fn set_power_level(room: &Room, user: &UserId, level: i64) -> Result<(), MatrixError> {
    use matrix_sdk::ruma::api::client::state::get_state_event_for_key;
    use matrix_sdk::ruma::events::room::power_levels::RoomPowerLevelsEventContent;
    use matrix_sdk::ruma::events::StateEventType;
    let level = Int::try_from(level).map_err(refused)?;
    let request = get_state_event_for_key::v3::Request::new(
        room.room_id().to_owned(),
        StateEventType::RoomPowerLevels,
        String::new(),
    );
    let mut content: RoomPowerLevelsEventContent = room
        .client()
        .send(request)
        .await
        .map_err(refused)?
        .into_content()
        .deserialize_as_unchecked()
        .map_err(refused)?;
    if level == content.users_default {
        content.users.remove(user);
    } else {
        content.users.insert(user.to_owned(), level);
    }
    room.send_state_event(content).await.map_err(refused)?;
    Ok(())
}

/// The sender as the room knows them: display name and power level.
async fn user(room: &Room, id: &UserId) -> User {
    let member = room.get_member(id).await.ok().flatten();
    let name = member
        .as_ref()
        .and_then(|m| m.display_name().map(String::from))
        .unwrap_or_else(|| id.to_string());
    let power_level = member.as_ref().map(|m| match m.power_level() {
        matrix_sdk::ruma::events::room::power_levels::UserPowerLevel::Int(i) => i64::from(i),
        _ => i64::MAX,
    });
    User {
        id: id.to_string(),
        name,
        power_level,
        ..User::default()
    }
}

async fn message_event(
    network: &str,
    room: &Room,
    ev: &OriginalSyncRoomMessageEvent,
) -> Option<ChatEvent> {
    let content = &ev.content;
    let (mut text, mut mentions) = message_text(room, &content.msgtype);
    if let Some(m) = &content.mentions {
        for u in &m.user_ids {
            if !mentions.iter().any(|x| x == u.as_str()) {
                mentions.push(u.to_string());
            }
        }
        if m.room {
            mentions.push("@room".into());
        }
    }
    let mut reply_to = None;
    let kind_for = |t: RichText| match &content.msgtype {
        MessageType::Emote(_) => ChatEventKind::Emote { text: t },
        MessageType::Notice(_) => ChatEventKind::Notice { text: t },
        _ => ChatEventKind::Message { text: t },
    };
    let kind = match &content.relates_to {
        Some(Relation::Replacement(r)) => {
            let (new_text, new_mentions) = message_text(room, &r.new_content.msgtype);
            mentions = new_mentions;
            ChatEventKind::Edit {
                text: new_text,
                replaces: r.event_id.to_string(),
            }
        }
        Some(Relation::Reply(reply)) => {
            let quoted = reply.in_reply_to.event_id.clone();
            let sender = room
                .event(&quoted, None)
                .await
                .ok()
                .and_then(|e| e.kind.raw().get_field::<String>("sender").ok().flatten());
            reply_to = Some(Quote {
                event_id: quoted.to_string(),
                sender: sender.unwrap_or_default(),
            });
            // The plain fallback quote is not part of what was said.
            if !text.is_styled() {
                let stripped = html::strip_reply_fallback(&text.to_plain()).to_string();
                text = RichText::plain(&stripped);
            }
            kind_for(text)
        }
        _ => kind_for(text),
    };
    Some(ChatEvent {
        network: network.to_string(),
        room: room.room_id().to_string(),
        // The handler drops the bot's own messages before they get here.
        own: false,
        sender: user(room, &ev.sender).await,
        kind,
        ts: i64::from(ev.origin_server_ts.0),
        id: Some(ev.event_id.to_string()),
        mentions,
        reply_to,
    })
}

/// The text of a message: its HTML when it has some, else its body; media as a link.
fn message_text(room: &Room, msgtype: &MessageType) -> (RichText, Vec<String>) {
    let styled =
        |body: &str, formatted: Option<&matrix_sdk::ruma::events::room::message::FormattedBody>| {
            match formatted {
                Some(f) if f.format.as_str() == "org.matrix.custom.html" => {
                    let p = html::parse(&f.body);
                    (p.text, p.mentions)
                }
                _ => (RichText::plain(body), Vec::new()),
            }
        };
    let media = |what: &str, body: &str, filename: Option<&str>, source: &MediaSource| {
        let name = filename.unwrap_or(body);
        let link = match source {
            MediaSource::Plain(mxc) => media_url(&room.client(), mxc.as_str()),
            MediaSource::Encrypted(_) => "(encrypted: open it in a Matrix client)".to_string(),
        };
        (
            RichText::plain(&format!("[{what}: {name}] {link}")),
            Vec::new(),
        )
    };
    match msgtype {
        MessageType::Text(t) => styled(&t.body, t.formatted.as_ref()),
        MessageType::Emote(t) => styled(&t.body, t.formatted.as_ref()),
        MessageType::Notice(t) => styled(&t.body, t.formatted.as_ref()),
        MessageType::Image(m) => media("image", &m.body, m.filename.as_deref(), &m.source),
        MessageType::File(m) => media("file", &m.body, m.filename.as_deref(), &m.source),
        MessageType::Video(m) => media("video", &m.body, m.filename.as_deref(), &m.source),
        MessageType::Audio(m) => media("audio", &m.body, m.filename.as_deref(), &m.source),
        other => (RichText::plain(other.body()), Vec::new()),
    }
}

/// Where an IRC user could fetch media. Synapse serves new media only through the
/// authenticated endpoint, which needs a Matrix login: the link says so.
fn media_url(client: &Client, mxc: &str) -> String {
    let path = mxc.strip_prefix("mxc://").unwrap_or(mxc);
    format!(
        "{}/_matrix/client/v1/media/download/{path} (needs a Matrix login)",
        client.homeserver().as_str().trim_end_matches('/')
    )
}

impl MatrixHandle {
    pub fn network(&self) -> &str {
        &self.config.network
    }

    pub fn user_id(&self) -> Option<String> {
        self.client.user_id().map(|u| u.to_string())
    }

    pub fn device_id(&self) -> Option<String> {
        self.client.device_id().map(|d| d.to_string())
    }

    /// The underlying client (tests and the daemon's status reporting use it).
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Joins a room by id or alias; returns its id.
    pub async fn join(&self, room: &str) -> Result<String, MatrixError> {
        let id = <&RoomOrAliasId>::try_from(room).map_err(|_| MatrixError::Invalid {
            what: "room id or alias",
            value: room.into(),
        })?;
        let joined = self
            .client
            .join_room_by_id_or_alias(id, &[])
            .await
            .map_err(refused)?;
        Ok(joined.room_id().to_string())
    }

    fn room(&self, room: &str) -> Result<Room, MatrixError> {
        let id: matrix_sdk::ruma::OwnedRoomId =
            room.try_into().map_err(|_| MatrixError::Invalid {
                what: "room id",
                value: room.into(),
            })?;
        self.client
            .get_room(&id)
            .filter(|r| r.state() == RoomState::Joined)
            .ok_or_else(|| MatrixError::NotInRoom(room.into()))
    }

    /// A room member as the room knows them (power level), for authorisation.
    pub async fn member(&self, room: &str, user_id: &str) -> Result<Option<User>, MatrixError> {
        let r = self.room(room)?;
        let id = <&UserId>::try_from(user_id).map_err(|_| MatrixError::Invalid {
            what: "user id",
            value: user_id.into(),
        })?;
        Ok(match r.get_member(id).await.map_err(refused)? {
            Some(_) => Some(user(&r, id).await),
            None => None,
        })
    }

    /// Executes a command.
    pub async fn execute(&self, command: Command) -> Result<Done, MatrixError> {
        match command {
            Command::Send {
                room,
                text,
                kind,
                from,
            } => self.send(&room, &text, kind, from.as_deref()).await,
            Command::NoticeUser { room, user, text } => {
                // Matrix has no per-user notice: a notice in the room, addressed to them.
                let mut t = RichText::plain(&format!("{user}: "));
                t.push(&text, Default::default());
                self.send(&room, &t, SendKind::Notice, None).await
            }
            Command::Redact {
                room,
                event_id,
                reason,
            } => {
                let r = self.room(&room)?;
                let id: OwnedEventId =
                    event_id
                        .as_str()
                        .try_into()
                        .map_err(|_| MatrixError::Invalid {
                            what: "event id",
                            value: event_id.clone(),
                        })?;
                self.check_power(&r, "redact", |p| p.redact).await?;
                r.redact(&id, reason.as_deref(), None)
                    .await
                    .map_err(refused)?;
                Ok(Done::default())
            }
            Command::Kick {
                room,
                target,
                reason,
            } => {
                let (r, id) = self.room_and_user(&room, &target.id)?;
                self.check_power(&r, "kick", |p| p.kick).await?;
                r.kick_user(&id, Some(&reason)).await.map_err(refused)?;
                Ok(Done::default())
            }
            Command::Ban {
                room,
                target,
                reason,
            } => {
                let (r, id) = self.room_and_user(&room, &target.id)?;
                self.check_power(&r, "ban", |p| p.ban).await?;
                r.ban_user(&id, Some(&reason)).await.map_err(refused)?;
                Ok(Done {
                    detail: Some(id.to_string()),
                })
            }
            Command::Unban { room, target } => {
                let (r, id) = self.room_and_user(&room, &target.id)?;
                self.check_power(&r, "unban", |p| p.ban).await?;
                r.unban_user(&id, None).await.map_err(refused)?;
                Ok(Done::default())
            }
            Command::Mute { room, target } => self.mute(&room, &target.id).await,
            Command::Unmute { room, target } => {
                self.unmute(&room, &target.id, target.mask.as_deref()).await
            }
        }
    }

    fn room_and_user(&self, room: &str, user_id: &str) -> Result<(Room, OwnedUserId), MatrixError> {
        let r = self.room(room)?;
        let id: OwnedUserId = user_id.try_into().map_err(|_| MatrixError::Invalid {
            what: "user id",
            value: user_id.into(),
        })?;
        Ok((r, id))
    }

    /// Fails clearly when the bot's power level is below what `action` needs.
    async fn check_power(
        &self,
        room: &Room,
        action: &'static str,
        needed: impl Fn(&matrix_sdk::ruma::events::room::power_levels::RoomPowerLevels) -> Int,
    ) -> Result<(), MatrixError> {
        let pl = power_levels(room).await?;
        let me = self
            .client
            .user_id()
            .ok_or_else(|| MatrixError::Refused("not logged in".into()))?;
        let need = i64::from(needed(&pl));
        match pl.for_user(me) {
            matrix_sdk::ruma::events::room::power_levels::UserPowerLevel::Int(have)
                if i64::from(have) < need =>
            {
                Err(MatrixError::NoPower {
                    action,
                    room: room.room_id().to_string(),
                    have: i64::from(have).to_string(),
                    need,
                })
            }
            _ => Ok(()),
        }
    }

    /// Mutes by lowering the user's power level below `events_default`; the detail records
    /// their previous level so the unmute can restore it.
    async fn mute(&self, room: &str, user_id: &str) -> Result<Done, MatrixError> {
        let (r, id) = self.room_and_user(room, user_id)?;
        // For the checks; the change itself is made on a fresh copy (set_power_level).
        let pl = power_levels(&r).await?;
        let previous = match pl.for_user(&id) {
            matrix_sdk::ruma::events::room::power_levels::UserPowerLevel::Int(i) => i64::from(i),
            _ => {
                return Err(MatrixError::Refused(format!(
                    "{user_id} created the room and cannot be muted (room version 12)"
                )));
            }
        };
        self.check_power(&r, "mute (change power levels)", |p| {
            p.events
                .get(&"m.room.power_levels".into())
                .copied()
                .unwrap_or(p.state_default)
        })
        .await?;
        let me = self.client.user_id().map(ToOwned::to_owned);
        if let Some(me) = me {
            if let matrix_sdk::ruma::events::room::power_levels::UserPowerLevel::Int(mine) =
                pl.for_user(&me)
            {
                if i64::from(mine) <= previous {
                    return Err(MatrixError::NoPower {
                        action: "mute a user of equal or higher power",
                        room: room.into(),
                        have: i64::from(mine).to_string(),
                        need: previous + 1,
                    });
                }
            }
        }
        let muted = (i64::from(pl.events_default) - 1).min(-1);
        set_power_level(&r, &id, muted).await?;
        Ok(Done {
            detail: Some(format!("power_level:{previous}")),
        })
    }

    async fn unmute(
        &self,
        room: &str,
        user_id: &str,
        detail: Option<&str>,
    ) -> Result<Done, MatrixError> {
        let (r, id) = self.room_and_user(room, user_id)?;
        let pl = power_levels(&r).await?;
        let restore = detail
            .and_then(|d| d.strip_prefix("power_level:"))
            .and_then(|v| v.parse::<i64>().ok())
            .unwrap_or_else(|| i64::from(pl.users_default));
        self.check_power(&r, "unmute (change power levels)", |p| {
            p.events
                .get(&"m.room.power_levels".into())
                .copied()
                .unwrap_or(p.state_default)
        })
        .await?;
        set_power_level(&r, &id, restore).await?;
        Ok(Done::default())
    }

    async fn send(
        &self,
        room: &str,
        text: &RichText,
        kind: SendKind,
        from: Option<&str>,
    ) -> Result<Done, MatrixError> {
        let r = self.room(room)?;
        // The relayed sender's name goes in front, bold, as text (escaped like the rest).
        let mut full = RichText::default();
        if let Some(name) = from {
            match kind {
                SendKind::Emote => full.push(&format!("* {name} "), Default::default()),
                _ => full.push(&format!("<{name}> "), Default::default()),
            }
        }
        for span in &text.spans {
            full.push_link(&span.text, span.style, span.link.clone());
        }
        let (body, formatted) = html::render(&full, self.config.allow_room_ping);
        let formatted = formatted.unwrap_or_else(|| html::escape(&body).replace('\n', "<br>"));
        // A relayed emote with a name is a notice ("* alice waves"); our own emotes are m.emote.
        let content = match (kind, from) {
            (SendKind::Emote, None) => RoomMessageEventContent::emote_html(body, formatted),
            (SendKind::Notice, _) | (SendKind::Emote, Some(_)) => {
                RoomMessageEventContent::notice_html(body, formatted)
            }
            (SendKind::Message, _) => RoomMessageEventContent::text_html(body, formatted),
        };
        // No intentional mentions: relayed text never pings anyone by accident.
        let content = content.add_mentions(Mentions::new());
        let response = r.send(content).await.map_err(refused)?;
        Ok(Done {
            detail: Some(response.response.event_id.to_string()),
        })
    }
}
