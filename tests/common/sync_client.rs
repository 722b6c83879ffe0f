//! A toki sync client for tests, speaking protocol.md byte for byte. It encodes with bincode
//! 1.3's free functions (exactly the real client's configuration) and zstd level 3, so it checks
//! the server's decoder independently of the server's own encoder.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use toki_sync::sync::wire::{
    AuthErrPayload, AuthOkPayload, AuthPayload, GetLastTsPayload, LastTsPayload, StoredEvent, SyncAckPayload,
    SyncBatchPayload, SyncErrPayload, SyncItem,
};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

pub trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

pub const AUTH: u32 = 0x01;
pub const AUTH_OK: u32 = 0x02;
pub const AUTH_ERR: u32 = 0x03;
pub const GET_LAST_TS: u32 = 0x10;
pub const LAST_TS: u32 = 0x11;
pub const SYNC_BATCH: u32 = 0x20;
pub const SYNC_ACK: u32 = 0x21;
pub const SYNC_ERR: u32 = 0x22;
pub const SYNC_BATCH_ZSTD: u32 = 0x23;
pub const PING: u32 = 0x30;
pub const PONG: u32 = 0x31;

/// A whole frame as the client writes it: type and length (u32 LE), then the payload.
pub fn frame(kind: u32, payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(8 + payload.len());
    f.extend_from_slice(&kind.to_le_bytes());
    f.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    f.extend_from_slice(payload);
    f
}

/// A payload as the client encodes it: bincode 1.3's free function (fixint, u64 lengths).
pub fn encode<T: serde::Serialize>(payload: &T) -> Vec<u8> {
    bincode::serialize(payload).unwrap()
}

/// A reply payload as the client decodes it (trailing bytes ignored, like bincode::deserialize).
pub fn decode<T: serde::de::DeserializeOwned>(payload: &[u8]) -> Result<T, String> {
    bincode::deserialize(payload).map_err(|e| e.to_string())
}

/// zstd as the client compresses batches of 100 items or more.
pub fn compress(payload: &[u8]) -> Vec<u8> {
    zstd::encode_all(payload, 3).unwrap()
}

pub struct SyncClient {
    io: Box<dyn Io>,
}

#[derive(Debug, PartialEq)]
pub enum AuthReply {
    Ok(String),
    Err { reason: String, reset_required: bool },
}

impl AuthReply {
    pub fn device_id(&self) -> &str {
        match self {
            AuthReply::Ok(id) => id,
            other => panic!("expected AUTH_OK, got {other:?}"),
        }
    }

    pub fn reason(&self) -> &str {
        match self {
            AuthReply::Err { reason, .. } => reason,
            other => panic!("expected AUTH_ERR, got {other:?}"),
        }
    }
}

pub fn tls_client_config(
    trusted_pem: &Path,
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> Arc<rustls::ClientConfig> {
    use rustls_pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pki_types::CertificateDer::pem_file_iter(trusted_pem).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Arc::new(
        rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(versions)
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth(),
    )
}

impl SyncClient {
    pub async fn plain(addr: SocketAddr) -> SyncClient {
        Self::try_plain(addr).await.expect("connect to the sync port")
    }

    /// Plaintext from another loopback address (see `connect_from`).
    pub async fn plain_from(addr: SocketAddr, from: std::net::IpAddr) -> SyncClient {
        let s = super::connect_from(addr, from).await;
        s.set_nodelay(true).unwrap();
        SyncClient { io: Box::new(s) }
    }

    pub async fn try_plain(addr: SocketAddr) -> std::io::Result<SyncClient> {
        let s = TcpStream::connect(addr).await?;
        s.set_nodelay(true)?;
        Ok(SyncClient { io: Box::new(s) })
    }

    /// TLS to 127.0.0.1, trusting the certificate(s) in `trusted_pem`.
    pub async fn tls(
        addr: SocketAddr,
        trusted_pem: &Path,
        versions: &[&'static rustls::SupportedProtocolVersion],
    ) -> SyncClient {
        let config = tls_client_config(trusted_pem, versions);
        let s = TcpStream::connect(addr).await.expect("connect to the sync port");
        s.set_nodelay(true).unwrap();
        let name = rustls_pki_types::ServerName::try_from("127.0.0.1").unwrap();
        let tls = tokio_rustls::TlsConnector::from(config).connect(name, s).await.expect("TLS handshake");
        SyncClient { io: Box::new(tls) }
    }

    pub async fn send_raw(&mut self, bytes: &[u8]) {
        assert!(self.try_send_raw(bytes).await, "write to the sync port failed");
    }

    pub async fn try_send_raw(&mut self, bytes: &[u8]) -> bool {
        self.io.write_all(bytes).await.is_ok() && self.io.flush().await.is_ok()
    }

    pub async fn send(&mut self, kind: u32, payload: &[u8]) {
        assert!(self.try_send(kind, payload).await, "write to the sync port failed");
    }

    pub async fn try_send(&mut self, kind: u32, payload: &[u8]) -> bool {
        self.try_send_raw(&frame(kind, payload)).await
    }

    /// The next frame, or `None` if the server closed the connection.
    pub async fn recv(&mut self) -> Option<(u32, Vec<u8>)> {
        let mut header = [0u8; 8];
        let read = tokio::time::timeout(Duration::from_secs(60), self.io.read_exact(&mut header))
            .await
            .expect("reply within 60 s");
        if read.is_err() {
            return None;
        }
        let kind = u32::from_le_bytes(header[..4].try_into().unwrap());
        let len = u32::from_le_bytes(header[4..].try_into().unwrap()) as usize;
        assert!(len <= 16 << 20, "server sent an oversized frame");
        let mut payload = vec![0u8; len];
        self.io.read_exact(&mut payload).await.ok()?;
        Some((kind, payload))
    }

    /// AUTH, or `None` if the connection failed (server killed).
    pub async fn try_auth(&mut self, p: &AuthPayload) -> Option<AuthReply> {
        if !self.try_send(AUTH, &encode(p)).await {
            return None;
        }
        match self.recv().await? {
            (AUTH_OK, b) => Some(AuthReply::Ok(decode::<AuthOkPayload>(&b).unwrap().device_id)),
            (AUTH_ERR, b) => {
                let e: AuthErrPayload = decode(&b).unwrap();
                Some(AuthReply::Err { reason: e.reason, reset_required: e.reset_required })
            }
            other => panic!("unexpected reply to AUTH: {other:?}"),
        }
    }

    pub async fn try_last_ts(&mut self, provider: &str) -> Option<i64> {
        if !self.try_send(GET_LAST_TS, &encode(&GetLastTsPayload { provider: provider.into() })).await {
            return None;
        }
        match self.recv().await? {
            (LAST_TS, b) => Some(decode::<LastTsPayload>(&b).unwrap().ts_ms),
            other => panic!("unexpected reply to GET_LAST_TS: {other:?}"),
        }
    }

    /// A batch; `None` if the connection failed before the reply.
    pub async fn try_batch(&mut self, b: &SyncBatchPayload) -> Option<Result<i64, String>> {
        let raw = encode(b);
        let sent = if b.items.len() >= 100 {
            self.try_send(SYNC_BATCH_ZSTD, &compress(&raw)).await
        } else {
            self.try_send(SYNC_BATCH, &raw).await
        };
        if !sent {
            return None;
        }
        match self.recv().await? {
            (SYNC_ACK, p) => Some(Ok(decode::<SyncAckPayload>(&p).unwrap().last_ts_ms)),
            (SYNC_ERR, p) => Some(Err(decode::<SyncErrPayload>(&p).unwrap().reason)),
            other => panic!("unexpected reply to a batch: {other:?}"),
        }
    }

    /// True if the server closes the connection (within 10 s) without sending anything else.
    pub async fn closed_by_server(&mut self) -> bool {
        let mut b = [0u8; 1];
        matches!(
            tokio::time::timeout(Duration::from_secs(10), self.io.read(&mut b)).await,
            Ok(Ok(0)) | Ok(Err(_))
        )
    }

    pub async fn auth(&mut self, p: &AuthPayload) -> AuthReply {
        self.send(AUTH, &encode(p)).await;
        match self.recv().await {
            Some((AUTH_OK, b)) => AuthReply::Ok(decode::<AuthOkPayload>(&b).unwrap().device_id),
            Some((AUTH_ERR, b)) => {
                let e: AuthErrPayload = decode(&b).unwrap();
                AuthReply::Err { reason: e.reason, reset_required: e.reset_required }
            }
            other => panic!("unexpected reply to AUTH: {other:?}"),
        }
    }

    pub async fn last_ts(&mut self, provider: &str) -> i64 {
        self.send(GET_LAST_TS, &encode(&GetLastTsPayload { provider: provider.into() })).await;
        match self.recv().await {
            Some((LAST_TS, b)) => decode::<LastTsPayload>(&b).unwrap().ts_ms,
            other => panic!("unexpected reply to GET_LAST_TS: {other:?}"),
        }
    }

    /// Sends a batch the way the client does (zstd at >= 100 items unless forced); returns the
    /// ACKed cursor or the SYNC_ERR reason.
    pub async fn batch_as(&mut self, b: &SyncBatchPayload, zstd: bool) -> Result<i64, String> {
        let raw = encode(b);
        if zstd {
            self.send(SYNC_BATCH_ZSTD, &compress(&raw)).await;
        } else {
            self.send(SYNC_BATCH, &raw).await;
        }
        match self.recv().await {
            Some((SYNC_ACK, p)) => Ok(decode::<SyncAckPayload>(&p).unwrap().last_ts_ms),
            Some((SYNC_ERR, p)) => Err(decode::<SyncErrPayload>(&p).unwrap().reason),
            other => panic!("unexpected reply to a batch: {other:?}"),
        }
    }

    pub async fn batch(&mut self, b: &SyncBatchPayload) -> Result<i64, String> {
        self.batch_as(b, b.items.len() >= 100).await
    }

    pub async fn ping(&mut self) {
        self.send(PING, &[]).await;
        let (kind, payload) = self.recv().await.expect("PONG");
        assert_eq!((kind, payload.len()), (PONG, 0));
    }
}

pub fn auth_payload(jwt: &str, device_key: &str, provider: &str) -> AuthPayload {
    AuthPayload {
        jwt: jwt.into(),
        device_name: "test-machine".into(),
        schema_version: 3,
        provider: provider.into(),
        device_key: device_key.into(),
        protocol_version: 1,
    }
}

/// An item with the claude column order: input, output, cache_create, cache_read.
pub fn item(ts_ms: i64, message_id: &str, model_id: u32, tokens: [u64; 4]) -> SyncItem {
    SyncItem {
        ts_ms,
        message_id: message_id.into(),
        event: StoredEvent {
            model_id,
            session_id: 1,
            source_file_id: 2,
            project_name_id: 3,
            tokens: tokens.to_vec(),
        },
        usage_total: tokens.iter().sum(),
        is_correction: false,
    }
}

pub fn batch(provider: &str, items: Vec<SyncItem>) -> SyncBatchPayload {
    let columns: &[&str] = if provider == "codex" {
        &["input", "output", "reasoning_output", "cached_input"]
    } else {
        &["input", "output", "cache_create", "cache_read"]
    };
    SyncBatchPayload {
        items,
        dict: [
            (0, "claude-sonnet-4-5"),
            (1, "session-1"),
            (2, "/home/u/.claude/x.jsonl"),
            (3, "toki-sync"),
            (4, "claude-opus-4-1"),
        ]
        .into_iter()
        .map(|(k, v)| (k, v.to_owned()))
        .collect(),
        provider: provider.into(),
        token_columns: columns.iter().map(|c| c.to_string()).collect(),
    }
}
