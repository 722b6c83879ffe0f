//! The HTTP core over real sockets: routing errors, body limits, connection cap, timeouts and
//! graceful shutdown.

mod common;

use std::time::Duration;

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[tokio::test(flavor = "multi_thread")]
async fn routing_errors_are_json() {
    let s = TestServer::start().await;
    let c = s.client();
    let r = c.get("/no/such/path").await;
    assert_eq!((r.status, r.error().as_str()), (404, "not found"));
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(r.header("x-frame-options"), Some("DENY"), "errors carry the security headers too");
    let r = c.get("/login/extra").await;
    assert_eq!(r.status, 404);
    let r = c.raw("DELETE", "/health", &[], None).await;
    assert_eq!((r.status, r.error().as_str()), (405, "method not allowed"));
    assert_eq!(r.header("allow"), Some("GET, HEAD"));
    let r = c.raw("PUT", "/token/refresh", &[], None).await;
    assert_eq!(r.header("allow"), Some("POST"));
}

#[tokio::test(flavor = "multi_thread")]
async fn oversized_bodies_get_413() {
    let s = TestServer::start_with(|c| c.http.max_body_bytes = 4096).await;
    let c = s.client();
    let big = vec![b'x'; 5000];
    let r = c.raw("POST", "/login", &[], Some(&big)).await;
    assert_eq!(r.status, 413);
    assert!(r.error().contains("too large"));

    // Chunked, with no declared length: cut off while reading.
    let mut stream = TcpStream::connect(s.addr).await.unwrap();
    let mut req =
        b"POST /login HTTP/1.1\r\nHost: x\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n"
            .to_vec();
    for _ in 0..3 {
        req.extend_from_slice(b"800\r\n");
        req.extend_from_slice(&[b'y'; 0x800]);
        req.extend_from_slice(b"\r\n");
    }
    req.extend_from_slice(b"0\r\n\r\n");
    stream.write_all(&req).await.unwrap();
    let mut buf = Vec::new();
    let _ = stream.read_to_end(&mut buf).await;
    assert_eq!(parse_response(&buf).status, 413);

    // Just under the limit is fine (and then a normal JSON error).
    let r = c.raw("POST", "/login", &[], Some(&vec![b' '; 4000])).await;
    assert_eq!(r.status, 400);
}

#[tokio::test(flavor = "multi_thread")]
async fn connection_cap_refuses_with_503() {
    let s = TestServer::start_with(|c| c.http.max_connections = 2).await;
    let held1 = TcpStream::connect(s.addr).await.unwrap();
    let held2 = TcpStream::connect(s.addr).await.unwrap();
    // Give the server a moment to accept both before the third arrives.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let r = s.client().get("/health").await;
    assert_eq!(r.status, 503);
    assert_eq!(r.error(), "server busy: too many connections");
    drop(held1);
    drop(held2);
    let mut ok = false;
    for _ in 0..50 {
        if s.client().get("/health").await.status == 200 {
            ok = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(ok, "slots are released when connections close");
}

#[tokio::test(flavor = "multi_thread")]
async fn slow_headers_are_cut_off() {
    let s = TestServer::start_with(|c| c.http.header_timeout_secs = 1).await;
    let mut stream = TcpStream::connect(s.addr).await.unwrap();
    stream.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n").await.unwrap();
    let mut buf = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut buf)).await;
    assert!(read.is_ok(), "the server closes a connection whose headers never finish");
    // The server is still fine.
    assert_eq!(s.client().get("/health").await.status, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn slow_body_gets_request_timeout() {
    let s = TestServer::start_with(|c| c.http.request_timeout_secs = 1).await;
    let mut stream = TcpStream::connect(s.addr).await.unwrap();
    stream
        .write_all(
            b"POST /login HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 100\r\n\r\n{\"user",
        )
        .await
        .unwrap();
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut buf)).await.unwrap().unwrap();
    let r = parse_response(&buf);
    assert_eq!((r.status, r.error().as_str()), (503, "request timed out"));
}

#[tokio::test(flavor = "multi_thread")]
async fn graceful_shutdown_finishes_in_flight_requests() {
    let mut s = TestServer::start().await;
    let addr = s.addr;
    // A request whose body is still on its way when shutdown starts.
    let body = format!("{{\"username\":\"admin\",\"password\":\"{ADMIN_PASSWORD}\"}}");
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "POST /login HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(&body.as_bytes()[..5]).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;

    let server = s.server.take().unwrap();
    server.shutdown();
    let waiter = tokio::spawn(server.wait());
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(TcpStream::connect(addr).await.is_err(), "no new connections after shutdown starts");

    stream.write_all(&body.as_bytes()[5..]).await.unwrap();
    let mut buf = Vec::new();
    stream.read_to_end(&mut buf).await.unwrap();
    assert_eq!(parse_response(&buf).status, 200, "the in-flight request completed");
    waiter.await.unwrap().expect("clean stop");
    // The data file was closed: it can be opened again at once.
    toki_sync::store::Store::open(&s.dir.path().join(toki_sync::store::DB_FILE_NAME))
        .expect("file closed cleanly and reopens");
}
