//! Fuzz harnesses. The `cargo fuzz` targets in `fuzz/` call these, and so does the regression
//! test (`tests/fuzz_regressions.rs`) with every input kept under `fuzz/regressions/`, so a crash
//! found once stays fixed. Each harness must never panic, whatever the bytes.

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use hyper::header::{HeaderMap, HeaderValue, AUTHORIZATION};
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
    let Ok(batch) = wire::decode::<SyncBatchPayload>(data) else { return };
    let h = harness();
    let job = BatchJob { device: h.device, user: h.user, batch };
    let _ = runtime().block_on(h.app.ingest.submit(job));
}

/// The JSON API: the first byte picks an endpoint, the rest is its body (sent with an admin's
/// token, so the body is really parsed); with the top bit set, the rest is a request path and
/// query string instead.
pub fn http_request(data: &[u8]) {
    let Some((&selector, rest)) = data.split_first() else { return };
    let h = harness();
    let (method, uri, body) = if selector & 0x80 != 0 {
        let Ok(text) = std::str::from_utf8(rest) else { return };
        let path = if text.starts_with('/') { text.to_owned() } else { format!("/{text}") };
        let Ok(uri) = path.parse::<Uri>() else { return };
        (Method::GET, uri, Bytes::new())
    } else {
        let templates = h.templates();
        let (method, path) = &templates[usize::from(selector) % templates.len()];
        (method.clone(), path.parse::<Uri>().expect("template paths parse"), Bytes::copy_from_slice(rest))
    };
    let Ok(endpoint) = crate::http::router::route(&method, uri.path()) else { return };
    let mut headers = HeaderMap::new();
    headers.insert(AUTHORIZATION, HeaderValue::from_str(&format!("Bearer {}", h.admin_token)).expect("token is ASCII"));
    let req = Request { method, uri, headers, body, client_ip: IpAddr::from([127, 0, 0, 1]) };
    let _ = runtime().block_on(crate::http::handlers::dispatch(&h.app, endpoint, req));
}

struct Harness {
    app: Arc<App>,
    admin_token: String,
    user: u32,
    device: u32,
    other_user: uuid::Uuid,
    device_uuid: uuid::Uuid,
    team: uuid::Uuid,
}

impl Harness {
    /// Endpoints that take a JSON body. Those that hash passwords (login, registration, password
    /// changes) are left out: a hash per input would slow fuzzing a thousandfold, and their JSON
    /// is parsed before any hashing, by the same code the others use.
    fn templates(&self) -> Vec<(Method, String)> {
        vec![
            (Method::POST, "/auth-method".into()),
            (Method::POST, "/token/refresh".into()),
            (Method::POST, "/device/code".into()),
            (Method::POST, "/auth/device/token".into()),
            (Method::POST, "/device/token".into()),
            (Method::POST, "/device/approve".into()),
            (Method::POST, "/device/lookup".into()),
            (Method::PATCH, format!("/me/devices/{}/name", self.device_uuid)),
            (Method::PATCH, "/admin/settings".into()),
            (Method::PUT, "/admin/settings/registration_mode".into()),
            (Method::PATCH, format!("/admin/users/{}/role", self.other_user)),
            (Method::POST, "/admin/teams".into()),
            (Method::POST, format!("/admin/teams/{}/members", self.team)),
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
        let started = App::start(config, |_| {}).expect("fuzz harness app starts");
        let app = started.app;
        // The writer thread lives as long as the process.
        std::mem::forget(started.writer_thread);
        let admin = app.store.user_by_name("admin").expect("store").expect("first admin");
        let other = app
            .store
            .create_user(NewUser { username: "fuzz-user".into(), role: Role::User, status: UserStatus::Active, password_hash: None, oidc_subject: None })
            .expect("second user");
        let AuthDevice::Ready(device) = app.store.auth_device(admin.id, "fuzz-device", "fuzz", 1).expect("device") else {
            unreachable!("a fresh store has no tombstones")
        };
        let team = app.store.create_team("fuzzers", 1).expect("team");
        let admin_token = app.tokens.issue(&app.store, &admin, None).expect("token").access_token;
        Harness { user: admin.id, device: device.id, other_user: other.uuid, device_uuid: device.uuid, team: team.uuid, admin_token, app }
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
