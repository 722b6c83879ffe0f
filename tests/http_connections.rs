//! Connections on both ports over real sockets: what hyper would answer on its own (a malformed
//! request head, one too large, a header timeout) carries the same security headers and JSON
//! error body as every other response, and the per-address connection caps.

mod common;

use std::net::IpAddr;
use std::time::Duration;

use common::sync_client::*;
use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Sends `bytes` on a fresh connection and reads until the server closes it.
async fn exchange(mut stream: TcpStream, bytes: &[u8]) -> Vec<u8> {
    stream.write_all(bytes).await.unwrap();
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut buf))
        .await
        .expect("the server answers and closes within 10 s")
        .expect("read");
    buf
}

/// What every response carries (README, HTTP API).
fn assert_our_form(r: &Resp, status: u16, error: &str) {
    assert_eq!((r.status, r.error().as_str()), (status, error), "{r:?}");
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(r.header("x-content-type-options"), Some("nosniff"));
    assert_eq!(r.header("x-frame-options"), Some("DENY"));
    assert_eq!(r.header("referrer-policy"), Some("no-referrer"));
    assert_eq!(r.header("cache-control"), Some("no-store"));
    assert_eq!(r.header("content-security-policy"), Some("default-src 'none'; frame-ancestors 'none'"));
}

#[tokio::test(flavor = "multi_thread")]
async fn responses_hyper_would_write_itself_are_ours() {
    let s = TestServer::start().await;
    let connect = || TcpStream::connect(s.addr);

    let r = parse_response(&exchange(connect().await.unwrap(), b"NOT A REQUEST\r\n\r\n").await);
    assert_our_form(&r, 400, "malformed request");
    let r = parse_response(
        &exchange(connect().await.unwrap(), b"GET /health HTTP/1.1\r\nHo st: x\r\n\r\n").await,
    );
    assert_our_form(&r, 400, "malformed request");

    let mut many = b"GET /health HTTP/1.1\r\nHost: x\r\n".to_vec();
    for i in 0..200 {
        many.extend_from_slice(format!("x-filler-{i}: {i}\r\n").as_bytes());
    }
    many.extend_from_slice(b"\r\n");
    let r = parse_response(&exchange(connect().await.unwrap(), &many).await);
    assert_our_form(&r, 431, "request headers too large");

    let mut huge = b"GET /health HTTP/1.1\r\nHost: x\r\nx-big: ".to_vec();
    huge.extend(std::iter::repeat_n(b'a', 1 << 20));
    huge.extend_from_slice(b"\r\n\r\n");
    let r = parse_response(&exchange(connect().await.unwrap(), &huge).await);
    assert_our_form(&r, 431, "request headers too large");

    let long = format!("GET /{} HTTP/1.1\r\nHost: x\r\n\r\n", "a".repeat(70_000));
    let r = parse_response(&exchange(connect().await.unwrap(), long.as_bytes()).await);
    assert_our_form(&r, 414, "request URI too long");

    // After a good request on the same connection (keep-alive), a bad one is still answered
    // in our form, and the good one's response is untouched.
    let both = b"GET /health HTTP/1.1\r\nHost: x\r\n\r\nGARBAGE\x01\r\n\r\n";
    let buf = exchange(connect().await.unwrap(), both).await;
    let first = parse_response(&buf);
    assert_eq!((first.status, first.json()), (200, serde_json::json!({"status": "ok"})));
    let end = buf.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4 + first.body.len();
    assert_our_form(&parse_response(&buf[end..]), 400, "malformed request");

    // The server is fine.
    assert_eq!(s.client().get("/health").await.status, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_header_timeout_is_answered_408_and_an_idle_connection_just_closed() {
    let s = TestServer::start_with(|c| c.http.header_timeout_secs = 1).await;
    // Headers that never finish.
    let r = parse_response(
        &exchange(TcpStream::connect(s.addr).await.unwrap(), b"GET /health HTTP/1.1\r\nHost: x\r\n").await,
    );
    assert_our_form(&r, 408, "timed out reading the request headers");
    // The same after a first request on the connection.
    let buf = exchange(
        TcpStream::connect(s.addr).await.unwrap(),
        b"GET /health HTTP/1.1\r\nHost: x\r\n\r\nGET /health HTTP/1.1\r\n",
    )
    .await;
    let first = parse_response(&buf);
    assert_eq!(first.status, 200);
    let end = buf.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4 + first.body.len();
    assert_our_form(&parse_response(&buf[end..]), 408, "timed out reading the request headers");
    // A keep-alive connection with nothing on its way is closed without a word (a response
    // there would be taken as the answer to the client's next request), and so is one that
    // never sent anything.
    let buf =
        exchange(TcpStream::connect(s.addr).await.unwrap(), b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n").await;
    let first = parse_response(&buf);
    let end = buf.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4 + first.body.len();
    assert_eq!((first.status, &buf[end..]), (200, &b""[..]));
    assert_eq!(exchange(TcpStream::connect(s.addr).await.unwrap(), b"").await, b"");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_global_cap_answers_in_our_form_too() {
    let s = TestServer::start_with(|c| c.http.max_connections = 1).await;
    let _held = TcpStream::connect(s.addr).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let r = s.client().get("/health").await;
    assert_our_form(&r, 503, "server busy: too many connections");
    assert_eq!(r.header("retry-after"), Some("1"));
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn http_connections_are_capped_per_address() {
    let s = TestServer::start_with(|c| {
        c.http.max_connections_per_ip = 2;
        c.server.trusted_proxies = vec!["127.0.0.3".parse().unwrap()];
    })
    .await;
    let held = [connect_from(s.addr, ip("127.0.0.1")).await, connect_from(s.addr, ip("127.0.0.1")).await];
    tokio::time::sleep(Duration::from_millis(200)).await;
    let request = b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    let r = parse_response(&exchange(connect_from(s.addr, ip("127.0.0.1")).await, request).await);
    assert_our_form(&r, 503, "server busy: too many connections from your address");
    assert_eq!(r.header("retry-after"), Some("1"));
    // Another address is served, and a trusted proxy is not capped per address.
    let r = parse_response(&exchange(connect_from(s.addr, ip("127.0.0.2")).await, request).await);
    assert_eq!(r.status, 200);
    let proxy = [connect_from(s.addr, ip("127.0.0.3")).await, connect_from(s.addr, ip("127.0.0.3")).await];
    tokio::time::sleep(Duration::from_millis(200)).await;
    let r = parse_response(&exchange(connect_from(s.addr, ip("127.0.0.3")).await, request).await);
    assert_eq!(r.status, 200, "trusted proxies carry many clients");
    drop(proxy);
    // The slots come back when the connections close.
    drop(held);
    let ok = eventually(Duration::from_secs(10), || async {
        parse_response(&exchange(connect_from(s.addr, ip("127.0.0.1")).await, request).await).status == 200
    })
    .await;
    assert!(ok, "slots are released when connections close");
}

#[tokio::test(flavor = "multi_thread")]
async fn sync_connections_are_capped_per_address() {
    let s = TestServer::start_with(|c| c.sync.max_connections_per_ip = 1).await;
    let token = s.client().admin_token().await;
    let mut first = SyncClient::plain_from(s.sync, ip("127.0.0.1")).await;
    first.auth(&auth_payload(&token, "a", "claude_code")).await.device_id();
    // Over the cap from the same address: answered "server busy", like the global cap.
    let mut second = SyncClient::plain_from(s.sync, ip("127.0.0.1")).await;
    assert_eq!(second.auth(&auth_payload(&token, "b", "claude_code")).await.reason(), "server busy");
    // Another address gets through, and the first session is unaffected.
    let mut other = SyncClient::plain_from(s.sync, ip("127.0.0.2")).await;
    other.auth(&auth_payload(&token, "c", "claude_code")).await.device_id();
    first.ping().await;
    // Far over the cap (beyond twice), connections are dropped unanswered, as for the global
    // cap: one idle connection waits for its AUTH (and holds its slot), the next is shed.
    drop(second);
    let idle = connect_from(s.sync, ip("127.0.0.1")).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut shed = SyncClient::plain_from(s.sync, ip("127.0.0.1")).await;
    let reply =
        tokio::time::timeout(Duration::from_secs(10), shed.try_auth(&auth_payload(&token, "d", "codex")))
            .await
            .expect("shed at once, not left hanging");
    assert!(reply.is_none(), "closed without an answer: {reply:?}");
    drop((idle, first));
    let ok = eventually(Duration::from_secs(10), || async {
        let mut c = SyncClient::plain_from(s.sync, ip("127.0.0.1")).await;
        matches!(c.try_auth(&auth_payload(&token, "a", "claude_code")).await, Some(AuthReply::Ok(_)))
    })
    .await;
    assert!(ok, "the address's slot comes back");
}
