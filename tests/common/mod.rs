//! Shared test helpers: an in-process server on 127.0.0.1:0, the real binary as a child process,
//! and a minimal HTTP/1.1 client that sends exactly the bytes a test asks for (no implicit
//! Content-Type or Content-Length, like the real toki client's body-less POSTs).
#![allow(dead_code)]

pub mod oidc;
pub mod pebble;
pub mod sync_client;
pub mod tls;
pub mod usage;
pub mod vm;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::Value;
use toki_sync::config::Config;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

pub const ADMIN_PASSWORD: &str = "admin-password-1";
/// The header every JSON body needs.
pub const JSON: (&str, &str) = ("Content-Type", "application/json");

pub struct TestServer {
    pub server: Option<toki_sync::Server>,
    pub addr: SocketAddr,
    pub sync: SocketAddr,
    pub dir: tempfile::TempDir,
}

/// A configuration for tests: loopback, ephemeral ports, a known admin password.
pub fn test_config(data_dir: &Path) -> Config {
    let mut c = Config::defaults();
    c.server.bind = "127.0.0.1".parse().unwrap();
    c.server.http_port = 0;
    c.server.sync_port = 0;
    c.server.shutdown_grace_secs = 5;
    c.storage.data_dir = data_dir.to_owned();
    c.secrets.admin_password = Some(ADMIN_PASSWORD.into());
    c
}

impl TestServer {
    pub async fn start() -> TestServer {
        Self::start_with(|_| {}).await
    }

    pub async fn start_with(adjust: impl FnOnce(&mut Config)) -> TestServer {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = test_config(dir.path());
        adjust(&mut cfg);
        Self::start_in(dir, cfg).await
    }

    pub async fn start_in(dir: tempfile::TempDir, cfg: Config) -> TestServer {
        let listeners = toki_sync::Listeners::bind(&cfg).expect("bind");
        let server = toki_sync::launch(cfg, listeners, std::future::pending()).await.expect("launch");
        TestServer { addr: server.http_addr, sync: server.sync_addr, server: Some(server), dir }
    }

    pub fn client(&self) -> Client {
        Client { addr: self.addr }
    }

    /// Stops the server and waits until the data file is closed.
    pub async fn stop(&mut self) {
        if let Some(s) = self.server.take() {
            s.shutdown();
            s.wait().await.expect("clean stop");
        }
    }

    pub fn app(&self) -> &std::sync::Arc<toki_sync::app::App> {
        &self.server.as_ref().unwrap().app
    }
}

/// Creates an active account with a password directly in the store; returns it.
pub fn create_user(
    app: &toki_sync::app::App,
    name: &str,
    password: &str,
    role: toki_sync::store::users::Role,
) -> toki_sync::store::users::User {
    app.store
        .create_user(toki_sync::store::users::NewUser {
            username: name.into(),
            role,
            status: toki_sync::store::users::UserStatus::Active,
            password_hash: Some(toki_sync::auth::password::hash_blocking(password)),
            oidc_subject: None,
        })
        .expect("create user")
}

/// A device as the sync AUTH path creates it (last seen = `now`); returns it.
pub fn sync_device(
    app: &toki_sync::app::App,
    user: u32,
    key: &str,
    name: &str,
    now: i64,
) -> toki_sync::store::devices::Device {
    match app.store.auth_device(user, key, name, now).expect("auth device") {
        toki_sync::store::devices::AuthDevice::Ready(d) => d,
        other => panic!("device {key}: {other:?}"),
    }
}

#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Resp {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("response is not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    pub fn error(&self) -> String {
        self.json()["error"]
            .as_str()
            .unwrap_or_else(|| panic!("no error field: {:?}", self.json()))
            .to_owned()
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

#[derive(Clone, Copy)]
pub struct Client {
    pub addr: SocketAddr,
}

impl Client {
    pub fn at(addr: SocketAddr) -> Client {
        Client { addr }
    }

    /// Sends one request on a new connection. `body = None` sends no body and no length headers.
    pub async fn raw(&self, method: &str, path: &str, headers: &[(&str, &str)], body: Option<&[u8]>) -> Resp {
        let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n", self.addr);
        for (k, v) in headers {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        if let Some(b) = body {
            req.push_str(&format!("Content-Length: {}\r\n", b.len()));
        }
        req.push_str("\r\n");
        let mut bytes = req.into_bytes();
        if let Some(b) = body {
            bytes.extend_from_slice(b);
        }
        let mut stream = TcpStream::connect(self.addr).await.expect("connect");
        stream.write_all(&bytes).await.expect("write");
        let mut buf = Vec::new();
        tokio::time::timeout(Duration::from_secs(30), stream.read_to_end(&mut buf))
            .await
            .expect("response within 30 s")
            .expect("read");
        parse_response(&buf)
    }

    pub async fn get(&self, path: &str) -> Resp {
        self.raw("GET", path, &[], None).await
    }

    pub async fn get_auth(&self, path: &str, token: &str) -> Resp {
        let h = format!("Bearer {token}");
        self.raw("GET", path, &[("Authorization", &h)], None).await
    }

    pub async fn post(&self, path: &str, body: &Value) -> Resp {
        let b = serde_json::to_vec(body).unwrap();
        self.raw("POST", path, &[("Content-Type", "application/json")], Some(&b)).await
    }

    pub async fn send_auth(&self, method: &str, path: &str, token: &str, body: Option<&Value>) -> Resp {
        let h = format!("Bearer {token}");
        match body {
            Some(b) => {
                let b = serde_json::to_vec(b).unwrap();
                self.raw(
                    method,
                    path,
                    &[("Authorization", &h), ("Content-Type", "application/json")],
                    Some(&b),
                )
                .await
            }
            None => self.raw(method, path, &[("Authorization", &h)], None).await,
        }
    }

    /// Password login; panics unless it succeeds. Returns the token pair.
    pub async fn login(&self, username: &str, password: &str) -> Value {
        let r = self.post("/login", &serde_json::json!({"username": username, "password": password})).await;
        assert_eq!(r.status, 200, "login as {username}: {}", r.text());
        r.json()
    }

    pub async fn admin_token(&self) -> String {
        self.login("admin", ADMIN_PASSWORD).await["access_token"].as_str().unwrap().to_owned()
    }
}

pub fn parse_response(buf: &[u8]) -> Resp {
    let end = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("incomplete response: {:?}", String::from_utf8_lossy(buf)));
    let head = std::str::from_utf8(&buf[..end]).expect("ascii head");
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap();
    let status: u16 = status_line.split(' ').nth(1).unwrap().parse().unwrap();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect();
    let mut body = buf[end + 4..].to_vec();
    if let Some((_, len)) = headers.iter().find(|(k, _)| k.eq_ignore_ascii_case("content-length")) {
        body.truncate(len.parse().unwrap());
    }
    Resp { status, headers, body }
}

/// Retries `f` until it returns true or `limit` passes.
pub async fn eventually<F, Fut>(limit: Duration, mut f: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = std::time::Instant::now() + limit;
    while std::time::Instant::now() < deadline {
        if f().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

/// A TCP connection to `addr` from the loopback address `from` (127.0.0.2 and so on: the whole
/// 127.0.0.0/8 is loopback), for per-address limits.
pub async fn connect_from(addr: SocketAddr, from: std::net::IpAddr) -> TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::new(from, 0)).unwrap();
    socket.connect(addr).await.expect("connect")
}

/// The real binary, started as a child process with its own data directory.
pub struct BinServer {
    pub child: Child,
    pub http: SocketAddr,
    pub sync: SocketAddr,
    pub data_dir: PathBuf,
    stderr_lines: mpsc::Receiver<String>,
}

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_toki-sync")
}

impl BinServer {
    /// Starts `toki-sync serve` on ephemeral loopback ports and waits until it serves.
    pub fn start(data_dir: &Path, envs: &[(&str, &str)]) -> BinServer {
        Self::start_binary(Path::new(bin()), data_dir, envs)
    }

    /// Like [`BinServer::start`], with another build of the binary (the static musl one).
    pub fn start_binary(binary: &Path, data_dir: &Path, envs: &[(&str, &str)]) -> BinServer {
        let mut cmd = Command::new(binary);
        cmd.args(["serve", "--bind", "127.0.0.1", "--http-port", "0", "--sync-port", "0", "--data-dir"])
            .arg(data_dir)
            .env_remove("RUST_LOG")
            .env_remove("TOKI_ADMIN_PASSWORD")
            .env_remove("JWT_SECRET")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in envs {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn toki-sync");
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                eprintln!("[toki-sync] {line}");
                if tx.send(line).is_err() {
                    // Keep draining so the child never blocks on a full pipe.
                }
            }
        });
        let mut server = BinServer {
            child,
            http: "0.0.0.0:0".parse().unwrap(),
            sync: "0.0.0.0:0".parse().unwrap(),
            data_dir: data_dir.to_owned(),
            stderr_lines: rx,
        };
        let line = server.wait_for_log("toki-sync is serving", Duration::from_secs(30));
        server.http = field(&line, "http").parse().expect("http address in the ready line");
        server.sync = field(&line, "sync").parse().expect("sync address in the ready line");
        server
    }

    /// Waits for a stderr line containing `needle`.
    pub fn wait_for_log(&mut self, needle: &str, timeout: Duration) -> String {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match self.stderr_lines.recv_timeout(left) {
                Ok(line) if line.contains(needle) => return line,
                Ok(_) => {}
                Err(_) => {
                    let status = self.child.try_wait().ok().flatten();
                    panic!("no log line containing {needle:?} within {timeout:?} (exit status: {status:?})");
                }
            }
        }
    }

    pub fn signal(&self, sig: i32) {
        // SAFETY: kill(2) on our own child's pid has no memory-safety preconditions.
        let rc = unsafe { libc::kill(self.child.id() as i32, sig) };
        assert_eq!(rc, 0, "kill({sig}) failed");
    }

    /// Sends SIGTERM and waits for the exit; returns (success, stdout).
    pub fn stop(self) -> (bool, String) {
        self.signal(libc::SIGTERM);
        let out = self.child.wait_with_output().expect("wait");
        (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned())
    }

    pub fn kill9(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `key=value` from a log line.
pub fn field(line: &str, key: &str) -> String {
    let pat = format!("{key}=");
    let start = line.find(&pat).unwrap_or_else(|| panic!("no {key}= in {line:?}")) + pat.len();
    line[start..].split_whitespace().next().unwrap().trim_matches('"').to_owned()
}

/// Runs the admin CLI; returns (exit code, stdout, stderr).
pub fn admin(data_dir: &Path, args: &[&str], stdin: Option<&str>) -> (i32, String, String) {
    use std::io::Write;
    let mut cmd = Command::new(bin());
    cmd.arg("admin").arg("--data-dir").arg(data_dir).args(args);
    cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn admin");
    {
        let mut input = child.stdin.take().unwrap();
        if let Some(s) = stdin {
            // A command that fails before reading (a usage error) closes the pipe first.
            let _ = input.write_all(s.as_bytes());
        }
    }
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Sums over every rollup of a user: (events, usage_total, column name -> tokens).
pub fn usage_totals(
    store: &toki_sync::store::Store,
    user: u32,
) -> (u64, u64, std::collections::HashMap<String, u64>) {
    use toki_sync::store::codec::Record;
    let txn = store.read().unwrap();
    let table = txn.open_table(toki_sync::store::schema::ROLLUPS).unwrap();
    let names = store.strings().unwrap();
    let (mut events, mut total, mut cols) = (0, 0, std::collections::HashMap::new());
    for row in
        table.range((user, 0, 0, 0, 0, 0)..=(user, u32::MAX, u32::MAX, u32::MAX, u32::MAX, u32::MAX)).unwrap()
    {
        let (_, v) = row.unwrap();
        let r = toki_sync::store::events::RollupRecord::decode(v.value()).unwrap();
        events += r.events;
        total += r.usage_total;
        for (c, n) in r.tokens {
            *cols.entry(names[&c].clone()).or_insert(0) += n;
        }
    }
    (events, total, cols)
}

/// Number of stored events.
pub fn event_count(store: &toki_sync::store::Store) -> u64 {
    use redb::ReadableTableMetadata;
    store.read().unwrap().open_table(toki_sync::store::schema::EVENTS).unwrap().len().unwrap()
}

/// Sends the requests on one connection each, all at (nearly) the same moment: every request
/// is written but its last byte first, then the last bytes go out back to back, so the server
/// handles them concurrently. Returns the answers in order.
pub async fn simultaneously(addr: std::net::SocketAddr, requests: Vec<Vec<u8>>) -> Vec<Resp> {
    let mut streams = Vec::new();
    for req in &requests {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(&req[..req.len() - 1]).await.unwrap();
        streams.push(s);
    }
    for (s, req) in streams.iter_mut().zip(&requests) {
        s.write_all(&req[req.len() - 1..]).await.unwrap();
    }
    let mut out = Vec::new();
    for mut s in streams {
        let mut buf = Vec::new();
        tokio::time::timeout(Duration::from_secs(30), s.read_to_end(&mut buf)).await.unwrap().unwrap();
        out.push(parse_response(&buf));
    }
    out
}

/// The bytes of a JSON POST on a `Connection: close` request, optionally with a Bearer token.
pub fn post_bytes(path: &str, token: Option<&str>, body: &Value) -> Vec<u8> {
    let body = body.to_string();
    let auth = token.map(|t| format!("Authorization: Bearer {t}\r\n")).unwrap_or_default();
    format!(
        "POST {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// Stores `n` usage events (15 tokens each: 10 input, 5 output) for a device through the real
/// ingest writer.
pub async fn ingest_events(s: &TestServer, user: u32, device: u32, n: i64) {
    use toki_sync::sync::wire::{StoredEvent, SyncBatchPayload, SyncItem};
    let items = (0..n)
        .map(|i| SyncItem {
            ts_ms: 1_700_000_000_000 + i * 60_000,
            message_id: format!("msg-{device}-{i}"),
            event: StoredEvent {
                model_id: 0,
                session_id: 1,
                source_file_id: 2,
                project_name_id: 3,
                tokens: vec![10, 5, 0, 0],
            },
            usage_total: 15,
            is_correction: false,
        })
        .collect();
    let batch = SyncBatchPayload {
        items,
        dict: std::collections::HashMap::from([
            (0, "model-a".into()),
            (1, "session-1".into()),
            (3, "proj".into()),
        ]),
        provider: "claude_code".into(),
        token_columns: ["input", "output", "cache_create", "cache_read"].map(String::from).to_vec(),
    };
    s.app().ingest.submit(toki_sync::ingest::BatchJob { device, user, batch }).await.expect("batch accepted");
}
