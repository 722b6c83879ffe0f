//! Hostile clients: twice the connection limit on both ports, slow-loris connections that
//! dribble bytes, and 16 MiB garbage frames. Through all of it, well-behaved clients are served
//! (at the latest once the timeouts have cut the attackers off).

mod common;

use std::time::{Duration, Instant};

use common::sync_client::*;
use common::*;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

/// Retries `f` until it returns true or `limit` passes.
async fn eventually<F, Fut>(limit: Duration, mut f: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if f().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

/// A connection that sends one byte of `bytes` every `every` until they run out or it is cut.
fn slow_loris(addr: std::net::SocketAddr, bytes: Vec<u8>, every: Duration) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let Ok(mut s) = TcpStream::connect(addr).await else { return };
        for b in bytes {
            if s.write_all(&[b]).await.is_err() {
                return;
            }
            tokio::time::sleep(every).await;
        }
        tokio::time::sleep(Duration::from_secs(60)).await;
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn floods_slow_loris_and_garbage_do_not_stop_good_clients() {
    const CAP: usize = 16;
    let s = TestServer::start_with(|c| {
        c.http.max_connections = CAP;
        c.http.header_timeout_secs = 2;
        c.sync.max_connections = CAP;
        c.sync.handshake_timeout_secs = 2;
    })
    .await;
    let token = s.client().admin_token().await;

    // A healthy sync session opened before the attack keeps working throughout.
    let mut healthy = SyncClient::plain(s.sync).await;
    healthy.auth(&auth_payload(&token, "healthy", "claude_code")).await.device_id();

    // Twice the limit on both ports, each connection dribbling a request one byte at a time.
    let mut attackers = Vec::new();
    let http_req = b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n".to_vec();
    let auth = bincode::serialize(&auth_payload(&token, "loris", "claude_code")).unwrap();
    let mut auth_frame = AUTH.to_le_bytes().to_vec();
    auth_frame.extend_from_slice(&(auth.len() as u32).to_le_bytes());
    auth_frame.extend_from_slice(&auth);
    for _ in 0..2 * CAP {
        attackers.push(slow_loris(s.addr, http_req.clone(), Duration::from_millis(300)));
        attackers.push(slow_loris(s.sync, auth_frame.clone(), Duration::from_millis(300)));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;

    // 16 MiB garbage frames from authenticated sessions, several at once.
    let mut garbage = Vec::new();
    for i in 0..4 {
        let (addr, token) = (s.sync, token.clone());
        garbage.push(tokio::spawn(async move {
            let Ok(mut c) = SyncClient::try_plain(addr).await else { return };
            if !matches!(c.try_auth(&auth_payload(&token, &format!("garbage-{i}"), "claude_code")).await, Some(AuthReply::Ok(_))) {
                return; // refused as busy: fine, the server protected itself
            }
            let mut frame = SYNC_BATCH.to_le_bytes().to_vec();
            frame.extend_from_slice(&(16u32 << 20).to_le_bytes());
            frame.extend((0..16u32 << 20).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8));
            if c.try_send_raw(&frame).await {
                assert!(c.closed_by_server().await, "a garbage frame closes its connection");
            }
        }));
    }
    assert_eq!(healthy.batch(&batch("claude_code", vec![item(10, "during-attack", 0, [1, 0, 0, 0])])).await, Ok(10));
    healthy.ping().await;

    // New well-behaved clients get through once the timeouts cut the slow ones off.
    let http_ok = eventually(Duration::from_secs(20), || async { s.client().get("/health").await.status == 200 }).await;
    assert!(http_ok, "HTTP serves a well-behaved client despite the flood");
    let sync_ok = eventually(Duration::from_secs(20), || async {
        let Ok(mut c) = SyncClient::try_plain(s.sync).await else { return false };
        matches!(c.try_auth(&auth_payload(&token, "newcomer", "claude_code")).await, Some(AuthReply::Ok(_)))
    })
    .await;
    assert!(sync_ok, "sync accepts a well-behaved client despite the flood");

    for g in garbage {
        g.await.unwrap();
    }
    for a in attackers {
        a.abort();
    }
    assert_eq!(healthy.batch(&batch("claude_code", vec![item(11, "after-attack", 0, [1, 0, 0, 0])])).await, Ok(11));
    assert_eq!(event_count(&s.app().store), 2, "no garbage was stored");
}

#[tokio::test(flavor = "multi_thread")]
async fn connections_far_over_the_limit_are_shed_cheaply() {
    let s = TestServer::start_with(|c| c.sync.max_connections = 4).await;
    let token = s.client().admin_token().await;
    // Hold 3x the limit open without sending anything.
    let mut idle = Vec::new();
    for _ in 0..12 {
        idle.push(TcpStream::connect(s.sync).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    // A client now gets an answer (busy) or is dropped at once; never a hang.
    let mut c = SyncClient::plain(s.sync).await;
    match tokio::time::timeout(Duration::from_secs(10), c.try_auth(&auth_payload(&token, "k", "codex"))).await {
        Ok(Some(AuthReply::Err { reason, .. })) => assert_eq!(reason, "server busy"),
        Ok(None) => {}
        other => panic!("expected busy or a closed connection, got {other:?}"),
    }
    drop(idle);
    let ok = eventually(Duration::from_secs(10), || async {
        let Ok(mut c) = SyncClient::try_plain(s.sync).await else { return false };
        matches!(c.try_auth(&auth_payload(&token, "k", "codex")).await, Some(AuthReply::Ok(_)))
    })
    .await;
    assert!(ok, "capacity returns once the idle connections are gone");
}
