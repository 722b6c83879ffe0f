//! The sync port: TLS and plaintext on one listener, told apart by the first byte (0x16 starts a
//! TLS handshake; a plaintext session starts with an AUTH frame, 01 00 00 00). Plaintext is
//! allowed per `[sync] plaintext`; a refused or over-capacity client (over `max_connections`, or
//! over `max_connections_per_ip` from its address) still gets its AUTH answered (AUTH_ERR) before
//! the close, because a silent close makes the client rotate its refresh token and retry at once.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;

use super::session::{self, Conn, PLAINTEXT_REFUSED, SERVER_BUSY};
use crate::address_slots::AddressSlots;
use crate::app::App;
use crate::config::{PlaintextPolicy, SyncConfig};
use crate::net::is_loopback;
use crate::shutdown::Shutdown;

const TLS_HANDSHAKE_BYTE: u8 = 0x16;

pub fn plaintext_allowed(cfg: &SyncConfig, ip: IpAddr) -> bool {
    match cfg.plaintext {
        PlaintextPolicy::Always => true,
        PlaintextPolicy::Never => false,
        PlaintextPolicy::Loopback => is_loopback(ip) || cfg.plaintext_allow.iter().any(|c| c.contains(ip)),
    }
}

/// Decrements the live-connection count when a connection task ends.
struct Slot(Arc<AtomicUsize>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

pub async fn serve(listener: TcpListener, app: Arc<App>, tls: TlsAcceptor, shutdown: Shutdown) {
    let live = Arc::new(AtomicUsize::new(0));
    let cap = app.config.sync.max_connections;
    let per_ip = app.config.sync.max_connections_per_ip;
    let by_address = AddressSlots::new();
    let mut stop = shutdown.signal();
    while let Some((stream, peer)) = crate::net::accept(&listener, &mut stop, "sync").await {
        let count = live.fetch_add(1, Ordering::AcqRel) + 1;
        let slot = Slot(Arc::clone(&live));
        // Trusted proxies carry many clients' connections; only the global cap applies to them.
        let (address_slot, mut from_address) = by_address.take(peer.ip());
        if app.config.server.is_trusted_proxy(peer.ip()) {
            from_address = 0;
        }
        // Over capacity, clients are still answered "server busy"; far over it (a flood), the
        // connection is dropped at once so refusing costs nothing. The same per address.
        if count > cap.saturating_mul(2) {
            tracing::warn!(%peer, live = count, "sync connection flood; dropping connection");
            continue;
        }
        if from_address > per_ip.saturating_mul(2) {
            tracing::warn!(%peer, live = from_address, "sync connection flood from one address; dropping connection");
            continue;
        }
        let busy = count > cap || from_address > per_ip;
        if count > cap {
            tracing::warn!(%peer, limit = cap, "sync connection limit reached; answering server busy");
        } else if busy {
            tracing::warn!(%peer, limit = per_ip, "sync connection limit per address reached; answering server busy");
        }
        let app = Arc::clone(&app);
        let tls = tls.clone();
        let signal = shutdown.signal();
        tokio::spawn(async move {
            let _slots = (slot, address_slot);
            handle(app, stream, peer, tls, busy, signal).await;
        });
    }
    drop(listener);
    // Sessions see the same shutdown signal and end after the request they are serving.
    let grace = Duration::from_secs(app.config.server.shutdown_grace_secs);
    let deadline = tokio::time::Instant::now() + grace;
    while live.load(Ordering::Acquire) > 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tracing::info!(open = live.load(Ordering::Acquire), "sync listener stopped");
}

async fn handle(
    app: Arc<App>,
    stream: TcpStream,
    peer: SocketAddr,
    tls: TlsAcceptor,
    busy: bool,
    signal: crate::shutdown::ShutdownSignal,
) {
    let _ = stream.set_nodelay(true);
    let handshake = Duration::from_secs(app.config.sync.handshake_timeout_secs);
    let mut first = [0u8; 1];
    match tokio::time::timeout(handshake, stream.peek(&mut first)).await {
        Ok(Ok(1)) => {}
        Ok(Ok(_)) => return tracing::debug!(%peer, "sync connection closed without data"),
        Ok(Err(e)) => return tracing::debug!(%peer, error = %e, "sync connection failed"),
        Err(_) => return tracing::info!(%peer, "sync connection sent nothing in time; closing"),
    }
    let busy_reason = busy.then_some(SERVER_BUSY);
    if first[0] == TLS_HANDSHAKE_BYTE {
        match tokio::time::timeout(handshake, tls.accept(stream)).await {
            Ok(Ok(tls_stream)) => {
                session::run(app, tls_stream, Conn { peer, tls: true, refusal: busy_reason }, signal).await;
            }
            Ok(Err(e)) => tracing::info!(%peer, error = %e, "TLS handshake failed"),
            Err(_) => tracing::info!(%peer, "TLS handshake timed out"),
        }
    } else {
        let refusal = busy_reason.or_else(|| {
            (!plaintext_allowed(&app.config.sync, peer.ip())).then(|| {
                tracing::warn!(%peer, policy = ?app.config.sync.plaintext, "plaintext sync refused; the client must use TLS");
                PLAINTEXT_REFUSED
            })
        });
        session::run(app, stream, Conn { peer, tls: false, refusal }, signal).await;
    }
}
