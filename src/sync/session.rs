//! One sync connection, as protocol.md §6 and §10 describe: AUTH first, answered with AUTH_OK or
//! AUTH_ERR (every AUTH is answered, refusals included); then GET_LAST_TS, SYNC_BATCH,
//! SYNC_BATCH_ZSTD and PING in any order until the peer leaves, goes idle, sends something
//! malformed (closed with a log line), or its device is deleted.

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, BufReader};
use tokio::sync::Semaphore;

use super::frame::{Frame, FrameError, discard, read_frame, write_frame};
use super::registry::SessionInfo;
use super::wire::{
    self, AuthErrPayload, AuthOkPayload, AuthPayload, GetLastTsPayload, LastTsPayload, MsgType,
    SyncAckPayload, SyncBatchPayload, SyncErrPayload, decode, decode_zstd_batch, empty_frame, encode_frame,
};
use crate::app::App;
use crate::auth::jwt::TokenError;
use crate::ingest::{BatchJob, IngestError};
use crate::shutdown::ShutdownSignal;
use crate::store::devices::{AuthDevice, Device, MAX_KEY_BYTES};
use crate::store::now_secs;
use crate::store::users::{User, UserStatus};

/// An AUTH payload is a token and a few short strings. A larger one (within the frame limit) is
/// read, discarded and answered `malformed AUTH payload`.
const MAX_AUTH_PAYLOAD: usize = 64 * 1024;
/// Raw (0x20) payloads up to this size are decoded on the connection's task; larger ones, and
/// every zstd (0x23) payload whatever its compressed size (it may expand to the decompression
/// cap), on the blocking pool, so one big batch cannot stall other connections.
const INLINE_DECODE_BYTES: usize = 256 * 1024;
/// Time a peer has to take one reply off the wire (the client's own write timeout is 30 s). A peer
/// that stops reading would otherwise hold its session, and its memory, forever.
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);

/// Blocking-pool decodes running at once, across all connections: each may hold a 16 MiB frame
/// and a 64 MiB decompressed buffer, so a thousand connections must not all decode together.
fn decode_permits() -> &'static Semaphore {
    static PERMITS: OnceLock<Semaphore> = OnceLock::new();
    PERMITS.get_or_init(|| Semaphore::new(std::thread::available_parallelism().map_or(2, |n| n.get()) * 2))
}

pub const PLAINTEXT_REFUSED: &str = "plaintext sync not allowed from this address; use TLS";
pub const SERVER_BUSY: &str = "server busy";
pub const DEVICE_REMOVED: &str =
    "device_removed: this device was removed from the account; run toki settings sync enable to re-add it";

/// Neither says `device_removed` (that switches sync off on the machine that presents its own
/// deleted key) nor `expired` (a refresh would not help).
pub const BOUND_DEVICE_GONE: &str = "this sign-in belongs to a device that was removed from the account; sign in again with toki settings sync enable";
pub const OTHER_DEVICE: &str =
    "this access token was issued to another device; sign in on this machine with toki settings sync enable";

pub struct Conn {
    pub peer: SocketAddr,
    pub tls: bool,
    /// Answer the AUTH with this reason and close (over capacity, plaintext not allowed).
    pub refusal: Option<&'static str>,
}

struct Authed {
    user: User,
    device: Device,
    provider: String,
}

enum AuthOutcome {
    Accepted(Box<Authed>),
    Refused { reason: String, reset_required: bool },
    Close(String),
}

fn refuse(reason: impl Into<String>) -> AuthOutcome {
    AuthOutcome::Refused { reason: reason.into(), reset_required: false }
}

pub async fn run<S: AsyncRead + AsyncWrite + Unpin + Send>(
    app: Arc<App>,
    stream: S,
    conn: Conn,
    mut shutdown: ShutdownSignal,
) {
    let mut io = BufReader::new(stream);
    let peer = conn.peer;
    // One deadline for the whole AUTH frame, including an oversized one that is read to discard.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(app.config.sync.handshake_timeout_secs);
    let max_frame = app.config.sync.max_frame_bytes;

    let outcome = match tokio::time::timeout_at(deadline, read_frame(&mut io, MAX_AUTH_PAYLOAD)).await {
        Err(_) => return tracing::info!(%peer, "sync connection sent no AUTH in time; closing"),
        Ok(Err(FrameError::Closed)) => return tracing::debug!(%peer, "sync connection closed before AUTH"),
        // Too big to be a real AUTH but within the frame limit: still answered (a silent close
        // costs the client a refresh-token rotation), after reading past it without storing it.
        Ok(Err(FrameError::TooLarge { kind: MsgType::Auth, len, .. })) if len as usize <= max_frame => {
            match tokio::time::timeout_at(deadline, discard(&mut io, u64::from(len))).await {
                Ok(Ok(())) => {
                    crate::metrics::frame_rejected("oversized_auth");
                    tracing::warn!(%peer, len, "oversized AUTH payload");
                    refuse("malformed AUTH payload")
                }
                Ok(Err(e)) => return tracing::info!(%peer, error = %e, "oversized AUTH cut short; closing"),
                Err(_) => return tracing::info!(%peer, len, "oversized AUTH not received in time; closing"),
            }
        }
        Ok(Err(e)) => {
            reject_frame(&e);
            return tracing::warn!(%peer, error = %e, "bad frame before AUTH; closing");
        }
        Ok(Ok(f)) => authenticate(&app, f, &conn).await,
    };
    let authed = match outcome {
        AuthOutcome::Accepted(a) => a,
        AuthOutcome::Refused { reason, reset_required } => {
            crate::metrics::frame_rejected("auth_refused");
            tracing::info!(%peer, tls = conn.tls, %reason, "sync AUTH refused");
            let frame = encode_frame(MsgType::AuthErr, &AuthErrPayload { reason, reset_required });
            tokio::select! {
                r = send(&mut io, &frame, WRITE_TIMEOUT) => if let Err(e) = r {
                    tracing::info!(%peer, "AUTH_ERR not delivered: {e}");
                },
                () = shutdown.wait() => {}
            }
            return;
        }
        AuthOutcome::Close(why) => return tracing::warn!(%peer, "{why}; closing"),
    };
    let Authed { user, device, provider } = *authed;
    // Listed before the client sees AUTH_OK, with the stream's committed cursor (not 0 until the
    // first batch).
    let (device_id, cursor_provider) = (device.id, provider.clone());
    let cursor = match app.blocking(move |a| a.store.cursor(device_id, &cursor_provider)).await {
        Ok(Ok(ts)) => ts,
        _ => 0,
    };

    let now = now_secs();
    let guard = app.sessions.register(SessionInfo {
        user_id: user.id,
        user_uuid: user.uuid,
        username: user.username.clone(),
        device_id: device.id,
        device_uuid: device.uuid,
        device_name: device.name.clone(),
        provider: provider.clone(),
        peer,
        tls: conn.tls,
        connected_at: now,
        last_activity_at: now,
        last_batch_at: None,
        last_ts_ms: cursor,
        events_accepted: 0,
    });
    // A deletion (of the device or the user) or a password change that closed sessions between
    // the AUTH checks and the registration above would have missed this one: look again.
    let (uid, did, hash) = (user.id, device.id, user.password_hash.clone());
    let still = app
        .blocking(move |a| {
            let user = a.store.user(uid)?;
            let same_user = user.is_some_and(|u| u.status == UserStatus::Active && u.password_hash == hash);
            Ok::<_, crate::store::StoreError>(same_user && a.store.device(did)?.is_some())
        })
        .await;
    if !matches!(still, Ok(Ok(true))) {
        drop(guard);
        tracing::info!(%peer, user = %user.username, device = %device.uuid, "account or device changed during AUTH; refused");
        let reason = "account or device changed while signing in; sign in again".to_owned();
        let frame = encode_frame(MsgType::AuthErr, &AuthErrPayload { reason, reset_required: false });
        let _ = send(&mut io, &frame, WRITE_TIMEOUT).await;
        return;
    }
    let ok = encode_frame(MsgType::AuthOk, &AuthOkPayload { device_id: device.uuid.to_string() });
    let sent = tokio::select! {
        r = send(&mut io, &ok, WRITE_TIMEOUT) => r,
        () = shutdown.wait() => Err("server shutting down".to_owned()),
    };
    if let Err(e) = sent {
        return tracing::info!(%peer, device = %device.uuid, "AUTH_OK not delivered: {e}");
    }
    tracing::info!(%peer, tls = conn.tls, user = %user.username, device = %device.uuid, %provider, "sync session started");
    crate::metrics::session_started(&provider, conn.tls);

    let cfg = &app.config.sync;
    let idle = Duration::from_secs(cfg.idle_timeout_secs);
    let mut accepted: u64 = 0;
    let end = loop {
        let frame = tokio::select! {
            r = tokio::time::timeout(idle, read_frame(&mut io, cfg.max_frame_bytes)) => match r {
                Err(_) => break format!("idle for {}s", idle.as_secs()),
                Ok(Err(FrameError::Closed)) => break "closed by the client".to_owned(),
                Ok(Err(e)) => {
                    reject_frame(&e);
                    tracing::warn!(%peer, user = %user.username, device = %device.uuid, error = %e, "bad sync frame; closing");
                    break format!("bad frame: {e}");
                }
                Ok(Ok(f)) => f,
            },
            () = guard.killed() => break "closed: device or account deleted, or password changed".to_owned(),
            () = shutdown.wait() => break "server shutting down".to_owned(),
        };
        guard.update(|s| s.last_activity_at = now_secs());
        let reply = match frame.kind {
            MsgType::Ping => empty_frame(MsgType::Pong),
            MsgType::GetLastTs => {
                let Ok(req) = decode::<GetLastTsPayload>(&frame.payload) else {
                    crate::metrics::frame_rejected("malformed_get_last_ts");
                    tracing::warn!(%peer, device = %device.uuid, "malformed GET_LAST_TS; closing");
                    break "malformed GET_LAST_TS".to_owned();
                };
                let device_id = device.id;
                match app.blocking(move |a| a.store.cursor(device_id, &req.provider)).await {
                    Ok(Ok(ts)) => encode_frame(MsgType::LastTs, &LastTsPayload { ts_ms: ts }),
                    Ok(Err(e)) => {
                        tracing::error!(error = %e, "reading a cursor failed");
                        break "storage error".to_owned();
                    }
                    Err(_) => break "storage error".to_owned(),
                }
            }
            MsgType::SyncBatch | MsgType::SyncBatchZstd => {
                let batch = match decode_batch(&app, frame).await {
                    Ok(b) => b,
                    Err(e) => {
                        crate::metrics::frame_rejected("undecodable_batch");
                        tracing::warn!(%peer, user = %user.username, device = %device.uuid, error = %e, "undecodable batch; closing");
                        break format!("undecodable batch: {e}");
                    }
                };
                let items = batch.items.len() as u64;
                match app.ingest.submit(BatchJob { device: device.id, user: user.id, batch }).await {
                    Ok(outcome) => {
                        accepted += items;
                        guard.update(|s| {
                            s.last_batch_at = Some(now_secs());
                            s.last_ts_ms = outcome.cursor;
                            s.events_accepted += items;
                        });
                        tracing::debug!(device = %device.uuid, items, cursor = outcome.cursor, applied = ?outcome.applied, "batch committed");
                        encode_frame(MsgType::SyncAck, &SyncAckPayload { last_ts_ms: outcome.cursor })
                    }
                    Err(IngestError::DeviceGone) => break "device deleted".to_owned(),
                    Err(IngestError::Stopped) => break "server shutting down".to_owned(),
                    Err(e @ IngestError::Store(_)) => {
                        // Transient for the client, which reconnects and resends at once: slow it down.
                        tokio::time::sleep(Duration::from_secs(cfg.sync_err_delay_secs)).await;
                        encode_frame(
                            MsgType::SyncErr,
                            &SyncErrPayload { reason: format!("batch not stored: {e}; retry later") },
                        )
                    }
                }
            }
            other => {
                crate::metrics::frame_rejected("unexpected_message");
                tracing::warn!(%peer, device = %device.uuid, kind = ?other, "unexpected message after AUTH; closing");
                break format!("unexpected {other:?}");
            }
        };
        let sent = tokio::select! {
            r = send(&mut io, &reply, WRITE_TIMEOUT) => r,
            () = guard.killed() => Err("device deleted".to_owned()),
            () = shutdown.wait() => Err("server shutting down".to_owned()),
        };
        if let Err(e) = sent {
            break e;
        }
    };
    tracing::info!(%peer, user = %user.username, device = %device.uuid, %provider, events = accepted, reason = %end, "sync session ended");
}

/// Counts a frame the reader refused (a closed or failing connection is not a refused frame).
fn reject_frame(e: &FrameError) {
    match e {
        FrameError::UnknownType(_) => crate::metrics::frame_rejected("unknown_type"),
        FrameError::TooLarge { .. } => crate::metrics::frame_rejected("too_large"),
        FrameError::Truncated { .. } => crate::metrics::frame_rejected("truncated"),
        FrameError::Closed | FrameError::Io(_) => {}
    }
}

/// Writes one frame, giving up after `limit`.
async fn send<W: AsyncWrite + Unpin>(io: &mut W, frame: &[u8], limit: Duration) -> Result<(), String> {
    match tokio::time::timeout(limit, write_frame(io, frame)).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(format!("write failed: {e}")),
        Err(_) => Err(format!("the peer did not take a reply within {}s", limit.as_secs())),
    }
}

async fn decode_batch(app: &Arc<App>, frame: Frame) -> Result<SyncBatchPayload, wire::DecodeError> {
    let zstd = frame.kind == MsgType::SyncBatchZstd;
    if !zstd && frame.payload.len() <= INLINE_DECODE_BYTES {
        return decode(&frame.payload);
    }
    let max = app.config.sync.max_decompressed_bytes;
    let permit =
        decode_permits().acquire().await.map_err(|_| wire::DecodeError("decoder unavailable".into()))?;
    let payload = frame.payload;
    tokio::task::spawn_blocking(move || {
        let _permit = permit;
        if zstd { decode_zstd_batch(&payload, max) } else { decode(&payload) }
    })
    .await
    .map_err(|e| wire::DecodeError(format!("decoder failed: {e}")))?
}

async fn authenticate(app: &Arc<App>, frame: Frame, conn: &Conn) -> AuthOutcome {
    if frame.kind != MsgType::Auth {
        return AuthOutcome::Close(format!("first frame is {:?}, not AUTH", frame.kind));
    }
    let auth: AuthPayload = match decode(&frame.payload) {
        Ok(a) => a,
        Err(e) => {
            tracing::warn!(peer = %conn.peer, error = %e, "malformed AUTH payload");
            return refuse("malformed AUTH payload");
        }
    };
    if let Some(reason) = conn.refusal {
        return refuse(reason);
    }
    if auth.protocol_version != wire::PROTOCOL_VERSION {
        return refuse(format!(
            "unsupported protocol version: client={}, server={}",
            auth.protocol_version,
            wire::PROTOCOL_VERSION
        ));
    }
    // `expired` only when a fresh token for the same user would be accepted: the client then
    // refreshes and retries at once, so any other problem must not say it.
    let (sub, expired, bound) = match app.tokens.verify_access(&auth.jwt) {
        Ok(claims) => (claims.sub, false, claims.dev),
        Err(TokenError::Expired { sub }) => (sub, true, None),
        Err(TokenError::WrongType) => {
            return refuse("invalid access token: this is a refresh token; sign in again");
        }
        Err(TokenError::Invalid) => {
            return refuse("invalid access token; sign in again with toki settings sync enable");
        }
    };
    let user = match lookup_user(app, &sub).await {
        Ok(u) => u,
        Err(outcome) => return outcome,
    };
    match user.status {
        UserStatus::Active => {}
        UserStatus::Disabled => return refuse("account is disabled"),
        UserStatus::Pending => return refuse("account is pending admin approval"),
    }
    if expired {
        return refuse("access token expired");
    }
    if auth.device_key.is_empty() || auth.device_key.len() > MAX_KEY_BYTES {
        return refuse(format!("invalid device key (1 to {MAX_KEY_BYTES} bytes)"));
    }
    let (user_id, key) = (user.id, auth.device_key.clone());
    match app.blocking(move |a| a.store.is_tombstoned(user_id, &key)).await {
        Ok(Ok(true)) => return refuse(DEVICE_REMOVED),
        Ok(Ok(false)) => {}
        Ok(Err(e)) => {
            tracing::error!(error = %e, "reading device tombstones failed");
            return refuse("server storage error; retry later");
        }
        Err(_) => return refuse("server storage error; retry later"),
    }
    if auth.schema_version != wire::SCHEMA_VERSION {
        return AuthOutcome::Refused {
            reason: format!(
                "schema version mismatch: client={}, server={}",
                auth.schema_version,
                wire::SCHEMA_VERSION
            ),
            reset_required: true,
        };
    }
    // A token the device flow issued names its device: it is refused once that device is gone
    // (its own key is tombstoned and was told `device_removed` above) and with any other key.
    let bound = match bound.as_deref().map(uuid::Uuid::parse_str) {
        Some(Ok(d)) => Some(d),
        Some(Err(_)) => return refuse("invalid access token; sign in again with toki settings sync enable"),
        None => None,
    };
    let (key, name) = (auth.device_key, auth.device_name);
    match app.blocking(move |a| a.store.auth_bound_device(user_id, &key, &name, now_secs(), bound)).await {
        Ok(Ok(AuthDevice::Ready(device))) => {
            AuthOutcome::Accepted(Box::new(Authed { user, device, provider: auth.provider }))
        }
        Ok(Ok(AuthDevice::Removed)) => refuse(DEVICE_REMOVED),
        Ok(Ok(AuthDevice::BoundDeviceGone)) => refuse(BOUND_DEVICE_GONE),
        Ok(Ok(AuthDevice::OtherDevice)) => refuse(OTHER_DEVICE),
        Ok(Err(e)) => {
            tracing::error!(error = %e, "registering a device failed");
            refuse("server storage error; retry later")
        }
        Err(_) => refuse("server storage error; retry later"),
    }
}

async fn lookup_user(app: &Arc<App>, sub: &str) -> Result<User, AuthOutcome> {
    let Ok(uuid) = uuid::Uuid::parse_str(sub) else {
        return Err(refuse("invalid access token"));
    };
    match app.blocking(move |a| a.store.user_by_uuid(uuid)).await {
        Ok(Ok(Some(u))) => Ok(u),
        Ok(Ok(None)) => Err(refuse("account not found")),
        Ok(Err(e)) => {
            tracing::error!(error = %e, "reading the account failed");
            Err(refuse("server storage error; retry later"))
        }
        Err(_) => Err(refuse("server storage error; retry later")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_peer_that_never_reads_times_out_the_write() {
        // A 16-byte pipe nobody reads from: a 64-byte frame can never be written.
        let (mut ours, _theirs) = tokio::io::duplex(16);
        let err = send(&mut ours, &[0u8; 64], Duration::from_millis(200)).await.unwrap_err();
        assert!(err.contains("did not take a reply"), "{err}");
        let (mut ours, mut theirs) = tokio::io::duplex(1024);
        send(&mut ours, &[7u8; 64], Duration::from_millis(200)).await.unwrap();
        let mut got = [0u8; 64];
        tokio::io::AsyncReadExt::read_exact(&mut theirs, &mut got).await.unwrap();
        assert_eq!(got, [7u8; 64]);
    }
}
