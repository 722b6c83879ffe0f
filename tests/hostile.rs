//! Hostile clients: 16 MiB garbage frames (and a length prefix one byte over the limit), then
//! twice the connection limit on both ports as slow-loris connections that dribble bytes.
//! Through all of it, well-behaved clients are served (at the latest once the timeouts have cut
//! the attackers off).

mod common;

use std::time::Duration;

use common::sync_client::*;
use common::*;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

/// A connection that sends one byte of `bytes` every `every` until they run out or it is cut.
fn slow_loris(addr: std::net::SocketAddr, bytes: Vec<u8>, every: Duration) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let Ok(mut s) = TcpStream::connect(addr).await else {
            return;
        };
        for b in bytes {
            if s.write_all(&[b]).await.is_err() {
                return;
            }
            tokio::time::sleep(every).await;
        }
        tokio::time::sleep(Duration::from_secs(60)).await;
    })
}

/// 16 MiB of bytes that decode as nothing in particular.
fn garbage(len: usize) -> Vec<u8> {
    (0..len as u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect()
}

/// An authenticated sync session on its own device.
async fn session(addr: std::net::SocketAddr, token: &str, key: &str) -> SyncClient {
    let mut c = SyncClient::plain(addr).await;
    c.auth(&auth_payload(token, key, "claude_code")).await.device_id();
    c
}

#[tokio::test(flavor = "multi_thread")]
async fn garbage_frames_floods_and_slow_loris_do_not_stop_good_clients() {
    const CAP: usize = 16;
    const MAX: usize = 16 << 20;
    let s = TestServer::start_with(|c| {
        c.http.max_connections = CAP;
        c.http.header_timeout_secs = 2;
        c.sync.max_connections = CAP;
        c.sync.handshake_timeout_secs = 2;
    })
    .await;
    let token = s.client().admin_token().await;

    // A healthy sync session opened before the attacks keeps working throughout.
    let mut healthy = session(s.sync, &token, "healthy").await;

    // Phase 1: full 16 MiB frames of garbage, several at once, as SYNC_BATCH and SYNC_BATCH_ZSTD
    // from authenticated sessions (the connection count is far below the limit, so each one is
    // accepted). The server reads every byte, cannot decode it, and closes the connection
    // without answering.
    let body = std::sync::Arc::new(garbage(MAX));
    let mut attackers = Vec::new();
    for (i, kind) in [SYNC_BATCH, SYNC_BATCH_ZSTD, SYNC_BATCH, SYNC_BATCH_ZSTD].into_iter().enumerate() {
        let mut c = session(s.sync, &token, &format!("garbage-{i}")).await;
        let body = std::sync::Arc::clone(&body);
        attackers.push(tokio::spawn(async move {
            let mut frame = Vec::with_capacity(8 + MAX);
            frame.extend_from_slice(&kind.to_le_bytes());
            frame.extend_from_slice(&(MAX as u32).to_le_bytes());
            frame.extend_from_slice(&body);
            assert!(
                c.try_send_raw(&frame).await,
                "garbage frame {i} was written in full (the server read all 16 MiB)"
            );
            assert!(
                c.closed_by_server().await,
                "garbage frame {i}: the server closes the connection without a reply"
            );
        }));
    }
    for a in attackers.drain(..) {
        a.await.unwrap();
    }
    // One byte over the limit: refused from the header alone, before any payload is read.
    let mut c = session(s.sync, &token, "oversize").await;
    let mut header = SYNC_BATCH.to_le_bytes().to_vec();
    header.extend_from_slice(&(MAX as u32 + 1).to_le_bytes());
    assert!(c.try_send_raw(&header).await);
    assert!(c.closed_by_server().await, "a 16 MiB + 1 length prefix closes the connection");
    assert_eq!(
        healthy.batch(&batch("claude_code", vec![item(10, "after-garbage", 0, [1, 0, 0, 0])])).await,
        Ok(10)
    );
    let mut newcomer = session(s.sync, &token, "after-garbage").await;
    assert_eq!(
        newcomer.batch(&batch("claude_code", vec![item(20, "newcomer", 0, [1, 0, 0, 0])])).await,
        Ok(20)
    );
    drop(newcomer);

    // Phase 2: twice the limit on both ports, each connection dribbling a request one byte at
    // a time.
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
    assert_eq!(
        healthy.batch(&batch("claude_code", vec![item(11, "during-flood", 0, [1, 0, 0, 0])])).await,
        Ok(11)
    );
    healthy.ping().await;

    // New well-behaved clients get through once the timeouts cut the slow ones off.
    let http_ok =
        eventually(Duration::from_secs(20), || async { s.client().get("/health").await.status == 200 }).await;
    assert!(http_ok, "HTTP serves a well-behaved client despite the flood");
    let sync_ok = eventually(Duration::from_secs(20), || async {
        let Ok(mut c) = SyncClient::try_plain(s.sync).await else {
            return false;
        };
        matches!(c.try_auth(&auth_payload(&token, "newcomer", "claude_code")).await, Some(AuthReply::Ok(_)))
    })
    .await;
    assert!(sync_ok, "sync accepts a well-behaved client despite the flood");

    for a in attackers {
        a.abort();
    }
    assert_eq!(
        healthy.batch(&batch("claude_code", vec![item(12, "after-flood", 0, [1, 0, 0, 0])])).await,
        Ok(12)
    );
    assert_eq!(event_count(&s.app().store), 4, "no garbage was stored");
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
    match tokio::time::timeout(Duration::from_secs(10), c.try_auth(&auth_payload(&token, "k", "codex"))).await
    {
        Ok(Some(AuthReply::Err { reason, .. })) => assert_eq!(reason, "server busy"),
        Ok(None) => {}
        other => panic!("expected busy or a closed connection, got {other:?}"),
    }
    drop(idle);
    let ok = eventually(Duration::from_secs(10), || async {
        let Ok(mut c) = SyncClient::try_plain(s.sync).await else {
            return false;
        };
        matches!(c.try_auth(&auth_payload(&token, "k", "codex")).await, Some(AuthReply::Ok(_)))
    })
    .await;
    assert!(ok, "capacity returns once the idle connections are gone");
}
