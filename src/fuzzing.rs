//! Fuzz harnesses. The `cargo fuzz` targets in `fuzz/` call these, and so does the regression
//! test (`tests/fuzz_regressions.rs`) with every input kept under `fuzz/regressions/`, so a crash
//! found once stays fixed. Each harness must never panic, whatever the bytes.

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use hyper::header::{AUTHORIZATION, HeaderMap, HeaderValue};
use hyper::{Method, Uri};

use crate::app::App;
use crate::http::request::Request;
use crate::ingest::BatchJob;
use crate::store::devices::AuthDevice;
use crate::store::users::{NewUser, Role, UserStatus};
use crate::sync::frame::read_frame;
use crate::sync::wire::{self, AuthPayload, GetLastTsPayload, MsgType, SyncBatchPayload};

/// Decompressed batches are capped lower than in production so a fuzz run stays fast.
const FUZZ_DECOMPRESSED: usize = 4 << 20;

fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime"))
}

/// A byte stream as a connection would deliver it: frames are read one after another and each
/// payload is decoded as its type says, until the stream ends or a frame is refused.
pub fn sync_stream(data: &[u8]) {
    runtime().block_on(async {
        let mut input = data;
        while let Ok(frame) = read_frame(&mut input, wire::MAX_PAYLOAD).await {
            match frame.kind {
                MsgType::Auth => drop(wire::decode::<AuthPayload>(&frame.payload)),
                MsgType::GetLastTs => drop(wire::decode::<GetLastTsPayload>(&frame.payload)),
                MsgType::SyncBatch => drop(wire::decode::<SyncBatchPayload>(&frame.payload)),
                MsgType::SyncBatchZstd => drop(wire::decode_zstd_batch(&frame.payload, FUZZ_DECOMPRESSED)),
                _ => {}
            }
        }
    });
}

/// A SYNC_BATCH_ZSTD payload.
pub fn batch_zstd(data: &[u8]) {
    let _ = wire::decode_zstd_batch(data, FUZZ_DECOMPRESSED);
}

/// A SYNC_BATCH payload; whatever decodes is applied by the real ingest writer (tokens, ids,
/// timestamps and dicts of any shape), which must store what it can without panicking.
pub fn batch_raw(data: &[u8]) {
    let Ok(batch) = wire::decode::<SyncBatchPayload>(data) else {
        return;
    };
    let h = harness();
    let job = BatchJob { device: h.device, user: h.user, batch };
    let _ = runtime().block_on(h.app.ingest.submit(job));
}

/// The JSON API: the first byte picks an endpoint, the rest is its body (sent with an admin's
/// token, so the body is really parsed, or with a plain user's where the template says so);
/// with the top bit set, the rest is a request path and query string instead.
pub fn http_request(data: &[u8]) {
    let _ = http_status(data);
}

/// [`http_request`], returning the status of a request that went through a handler.
fn http_status(data: &[u8]) -> Option<u16> {
    let (&selector, rest) = data.split_first()?;
    let h = harness();
    let body = Bytes::copy_from_slice(rest);
    let (method, uri, token, body) = if selector & 0x80 != 0 {
        let text = std::str::from_utf8(rest).ok()?;
        let path = if text.starts_with('/') { text.to_owned() } else { format!("/{text}") };
        (Method::GET, path.parse::<Uri>().ok()?, &h.admin_token, Bytes::new())
    } else {
        let templates = h.templates();
        match &templates[usize::from(selector) % templates.len()] {
            Template::Handler { method, path, as_user } => {
                let token = if *as_user { &h.user_token } else { &h.admin_token };
                (method.clone(), path.parse::<Uri>().expect("template paths parse"), token, body)
            }
            Template::Body { parse, .. } => {
                parse(&request(Method::POST, Uri::from_static("/"), "", body));
                return None;
            }
        }
    };
    let endpoint = crate::http::router::route(&method, uri.path()).ok()?;
    let req = request(method, uri, token, body);
    Some(match runtime().block_on(crate::http::handlers::dispatch(&h.app, endpoint, req)) {
        Ok(resp) => resp.status().as_u16(),
        Err(e) => e.status.as_u16(),
    })
}

/// What each selector byte of [`http_request`] fuzzes, as "METHOD /path" (for the regression
/// test, which wants a seed input for every one).
pub fn http_request_templates() -> Vec<String> {
    harness()
        .templates()
        .iter()
        .map(|t| match t {
            Template::Handler { method, path, .. } => format!("{method} {path}"),
            Template::Body { endpoint, .. } => format!("{endpoint} (body)"),
        })
        .collect()
}

fn request(method: Method, uri: Uri, token: &str, body: Bytes) -> Request {
    let mut headers = HeaderMap::new();
    // The fuzzed bytes are the JSON body: declare it so, as real clients must.
    headers.insert(hyper::header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    if !token.is_empty() {
        headers.insert(
            AUTHORIZATION,
            HeaderValue::from_str(&format!("Bearer {token}")).expect("token is ASCII"),
        );
    }
    Request { method, uri, headers, body, client_ip: IpAddr::from([127, 0, 0, 1]) }
}

enum Template {
    /// The request goes through the router and the real handler.
    Handler { method: Method, path: String, as_user: bool },
    /// Only the body is parsed, as its handler parses it: these handlers hash a password
    /// (argon2id, tens of milliseconds) for most well-formed bodies, which would slow fuzzing a
    /// thousandfold. What comes after the parse is name and password rules (plain functions
    /// with their own tests) and the store.
    Body { endpoint: &'static str, parse: fn(&Request) },
}

struct Harness {
    app: Arc<App>,
    admin_token: String,
    /// A user without a password (like an OIDC account): `PATCH /me/password` answers before
    /// hashing anything.
    user_token: String,
    user: u32,
    device: u32,
    other_user: uuid::Uuid,
    device_uuid: uuid::Uuid,
    team: uuid::Uuid,
}

/// No user has this id: `PATCH /admin/users/<it>/password` checks the body and the password
/// rules, then answers 404 before hashing.
const MISSING_USER: uuid::Uuid = uuid::Uuid::from_u128(0x0bad_f00d_0000_4000_8000_0000_0000_0001);

impl Harness {
    /// Every endpoint that takes a JSON body. New ones go at the end, so that the selector of
    /// the kept inputs (`fuzz/regressions/http_request/body-N`) keeps its meaning.
    fn templates(&self) -> Vec<Template> {
        let handler = |method: Method, path: String| Template::Handler { method, path, as_user: false };
        vec![
            handler(Method::POST, "/auth-method".into()),
            handler(Method::POST, "/token/refresh".into()),
            handler(Method::POST, "/device/code".into()),
            handler(Method::POST, "/auth/device/token".into()),
            handler(Method::POST, "/device/token".into()),
            handler(Method::POST, "/device/approve".into()),
            handler(Method::POST, "/device/lookup".into()),
            handler(Method::PATCH, format!("/me/devices/{}/name", self.device_uuid)),
            handler(Method::PATCH, "/admin/settings".into()),
            handler(Method::PUT, "/admin/settings/registration_mode".into()),
            handler(Method::PATCH, format!("/admin/users/{}/role", self.other_user)),
            handler(Method::POST, "/admin/teams".into()),
            handler(Method::POST, format!("/admin/teams/{}/members", self.team)),
            Template::Handler { method: Method::PATCH, path: "/me/password".into(), as_user: true },
            handler(Method::PATCH, format!("/admin/users/{MISSING_USER}/password")),
            Template::Body {
                endpoint: "POST /login",
                parse: |r| drop(r.json::<crate::http::handlers::LoginBody>()),
            },
            Template::Body {
                endpoint: "POST /register",
                parse: |r| drop(r.json::<crate::http::handlers::RegisterBody>()),
            },
            Template::Body {
                endpoint: "POST /admin/users",
                parse: |r| drop(r.json::<crate::http::handlers::CreateUserBody>()),
            },
            handler(Method::POST, format!("/admin/users/{MISSING_USER}/oidc")),
        ]
    }
}

fn harness() -> &'static Harness {
    static H: OnceLock<Harness> = OnceLock::new();
    H.get_or_init(|| {
        let dir = scratch_dir();
        let mut config = crate::config::Config::defaults();
        config.storage.data_dir = dir;
        config.secrets.admin_password = Some("fuzz-admin-password".into());
        let started = App::start(config, None, |_| {}).expect("fuzz harness app starts");
        let app = started.app;
        // The writer thread lives as long as the process.
        std::mem::forget(started.writer_thread);
        let admin = app.store.user_by_name("admin").expect("store").expect("first admin");
        let other = app
            .store
            .create_user(NewUser {
                username: "fuzz-user".into(),
                role: Role::User,
                status: UserStatus::Active,
                password_hash: None,
                oidc_subject: None,
            })
            .expect("second user");
        let AuthDevice::Ready(device) =
            app.store.auth_device(admin.id, "fuzz-device", "fuzz", 1).expect("device")
        else {
            unreachable!("a fresh store has no tombstones")
        };
        let team = app.store.create_team("fuzzers", 1).expect("team");
        let admin_token = app.tokens.issue(&app.store, &admin, None).expect("token").access_token;
        let user_token = app.tokens.issue(&app.store, &other, None).expect("token").access_token;
        Harness {
            user: admin.id,
            device: device.id,
            other_user: other.uuid,
            device_uuid: device.uuid,
            team: team.uuid,
            admin_token,
            user_token,
            app,
        }
    })
}

/// A fresh directory for the harness's data file. Fuzzers end with `exit`, so directories left
/// by earlier runs (whose process is gone) are removed here, at the next start.
fn scratch_dir() -> PathBuf {
    let base = std::env::temp_dir().join("toki-sync-fuzz");
    if let Ok(entries) = std::fs::read_dir(&base) {
        for e in entries.flatten() {
            let pid = e.file_name().to_string_lossy().into_owned();
            if !std::path::Path::new("/proc").join(&pid).exists() {
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
    }
    let dir = base.join(std::process::id().to_string());
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("fuzz scratch directory");
    dir
}

#[cfg(test)]
mod tests {
    use super::*;

    fn selector(endpoint: &str) -> u8 {
        let i = http_request_templates()
            .iter()
            .position(|t| t == endpoint)
            .unwrap_or_else(|| panic!("no template {endpoint}"));
        u8::try_from(i).expect("fewer than 128 templates")
    }

    fn status(endpoint: &str, body: &str) -> Option<u16> {
        let mut data = vec![selector(endpoint)];
        data.extend_from_slice(body.as_bytes());
        http_status(&data)
    }

    /// The password endpoints that go through their handler must answer before hashing (or
    /// fuzzing crawls): a user without a password, an unknown user id.
    #[test]
    fn password_handlers_answer_before_hashing() {
        let good = r#"{"current_password": "old-password-1", "new_password": "new-password-1"}"#;
        assert_eq!(status("PATCH /me/password", good), Some(400), "no password to check");
        assert_eq!(status("PATCH /me/password", "{"), Some(400), "bad JSON");
        let missing = format!("PATCH /admin/users/{MISSING_USER}/password");
        assert_eq!(status(&missing, r#"{"password": "new-password-1"}"#), Some(404));
        assert_eq!(status(&missing, r#"{"password": "short"}"#), Some(422), "the rules run first");
        assert_eq!(status(&missing, r#"{"pass": 1}"#), Some(400));
        // The body-only templates parse and return no status.
        assert_eq!(status("POST /login (body)", r#"{"username": "a", "password": "b"}"#), None);
        assert_eq!(status("POST /auth-method", r#"{"username": "admin"}"#), Some(200));
    }
}
