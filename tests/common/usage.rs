//! Helpers for the usage-query tests: signed-in users, syncing known events through the real
//! sync port, and reading JSON endpoints.

use serde_json::Value;
use toki_sync::store::users::{Role, User};
use toki_sync::sync::wire::{StoredEvent, SyncBatchPayload, SyncItem};

use super::sync_client::{SyncClient, auth_payload};
use super::{Client, TestServer, create_user};

pub const HOUR: i64 = 3_600_000;
pub const DAY: i64 = 24 * HOUR;

pub const SONNET: &str = "claude-sonnet-4-5-20250929";
pub const OPUS: &str = "claude-opus-4-1-20250805";
pub const CODEX: &str = "gpt-5-codex";

/// Alice's three Claude events, relative to the UTC midnight `d`: two on the first day (two
/// models, one project), one on the next without a project. Query and usage tests check their
/// sums.
pub fn alice_claude(d: i64) -> [Ev<'static>; 3] {
    [
        Ev {
            ts: d + HOUR + 10 * 60_000,
            id: "msg_1",
            model: SONNET,
            session: "s1",
            project: "alpha",
            tokens: [1000, 200, 3000, 40000],
        },
        Ev {
            ts: d + 23 * HOUR + 30 * 60_000,
            id: "msg_2",
            model: OPUS,
            session: "s1",
            project: "alpha",
            tokens: [10, 20, 0, 0],
        },
        Ev {
            ts: d + DAY + 2 * HOUR,
            id: "msg_3",
            model: SONNET,
            session: "s2",
            project: "",
            tokens: [1, 2, 3, 4],
        },
    ]
}

/// UTC midnight `days` days ago (ms): a base far enough back for every query window.
pub fn midnight_days_ago(days: i64) -> i64 {
    let now = toki_sync::store::now_ms();
    (now.div_euclid(DAY) - days) * DAY
}

/// Creates an active user and signs in; returns the user and an access token.
pub async fn signed_in(s: &TestServer, name: &str, role: Role) -> (User, String) {
    let user = create_user(s.app(), name, "password-123", role);
    let token = s.client().login(name, "password-123").await["access_token"].as_str().unwrap().to_owned();
    (user, token)
}

/// One event: (ts, message id, model, session, project, tokens in the batch's column order).
pub struct Ev<'a> {
    pub ts: i64,
    pub id: &'a str,
    pub model: &'a str,
    pub session: &'a str,
    pub project: &'a str,
    pub tokens: [u64; 4],
}

/// A batch with the provider's real columns and a dict built from the events' strings.
pub fn batch_of(provider: &str, events: &[Ev<'_>]) -> SyncBatchPayload {
    let mut dict: Vec<String> = vec!["(first model)".into()];
    let mut id = |s: &str| -> u32 {
        match dict.iter().position(|d| d == s) {
            Some(i) => i as u32,
            None => {
                dict.push(s.to_owned());
                (dict.len() - 1) as u32
            }
        }
    };
    let codex = provider == "codex";
    let items = events
        .iter()
        .map(|e| SyncItem {
            ts_ms: e.ts,
            message_id: e.id.into(),
            event: StoredEvent {
                model_id: id(e.model),
                session_id: id(e.session),
                source_file_id: 0,
                // Dict id 0 means "no project".
                project_name_id: if e.project.is_empty() { 0 } else { id(e.project) },
                tokens: e.tokens.to_vec(),
            },
            usage_total: if codex { e.tokens[0] + e.tokens[1] } else { e.tokens.iter().sum() },
            is_correction: false,
        })
        .collect();
    let columns: &[&str] = if codex {
        &["input", "output", "reasoning_output", "cached_input"]
    } else {
        &["input", "output", "cache_create", "cache_read"]
    };
    SyncBatchPayload {
        items,
        dict: dict.into_iter().enumerate().map(|(i, s)| (i as u32, s)).collect(),
        provider: provider.into(),
        token_columns: columns.iter().map(|c| c.to_string()).collect(),
    }
}

/// Syncs `events` as `token` from the device `device_key` (named `device_name`); returns the
/// device id from AUTH_OK.
pub async fn sync(
    s: &TestServer,
    token: &str,
    device_key: &str,
    device_name: &str,
    provider: &str,
    events: &[Ev<'_>],
) -> String {
    sync_batch(s, token, device_key, device_name, &batch_of(provider, events)).await
}

/// Syncs one prepared batch (e.g. with other token columns); returns the device id.
pub async fn sync_batch(
    s: &TestServer,
    token: &str,
    device_key: &str,
    device_name: &str,
    batch: &SyncBatchPayload,
) -> String {
    let mut c = SyncClient::plain(s.sync).await;
    let mut auth = auth_payload(token, device_key, &batch.provider);
    auth.device_name = device_name.into();
    let id = c.auth(&auth).await.device_id().to_owned();
    c.batch(batch).await.expect("batch acknowledged");
    id
}

/// GET with a bearer token; asserts 200 and returns the JSON.
pub async fn get_ok(c: &Client, path: &str, token: &str) -> Value {
    let r = c.get_auth(path, token).await;
    assert_eq!(r.status, 200, "GET {path}: {}", r.text());
    r.json()
}

/// Percent-encodes a query-string value.
pub fn enc(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
