//! The sync protocol over real sockets against the real server: AUTH outcomes, cursors, raw and
//! zstd batches, dedup rules, TLS (self-signed and provided PEM, 1.2 and 1.3), plaintext policy,
//! connection cap, many devices at once, malformed input, and restarts.

mod common;

use common::sync_client::*;
use common::*;
use toki_sync::auth::jwt::{Jwt, TokenType};
use toki_sync::config::PlaintextPolicy;
use toki_sync::store::users::UserStatus;
use toki_sync::sync::wire::AuthPayload;

async fn access_token(c: &Client) -> String {
    c.admin_token().await
}

/// An authenticated plaintext session for `key`/`provider`.
async fn session(s: &TestServer, token: &str, key: &str, provider: &str) -> SyncClient {
    let mut c = SyncClient::plain(s.sync).await;
    c.auth(&auth_payload(token, key, provider)).await.device_id();
    c
}

fn admin_id(s: &TestServer) -> u32 {
    s.app().store.user_by_name("admin").unwrap().unwrap().id
}

#[tokio::test(flavor = "multi_thread")]
async fn plaintext_session_cursor_batches_and_dedup() {
    let s = TestServer::start().await;
    let token = access_token(&s.client()).await;
    let mut c = SyncClient::plain(s.sync).await;
    let reply = c.auth(&auth_payload(&token, "key-1", "claude_code")).await;
    let device_id = reply.device_id().to_owned();
    let device = s
        .app()
        .store
        .device_by_uuid(device_id.parse().unwrap())
        .unwrap()
        .expect("AUTH_OK id is the device's id");
    assert_eq!(device.name, "test-machine");

    assert_eq!(c.last_ts("claude_code").await, 0);
    c.ping().await;
    let first = batch(
        "claude_code",
        vec![item(1_000, "msg_a:1", 0, [100, 10, 0, 0]), item(2_000, "msg_b", 0, [5, 5, 1, 1])],
    );
    assert_eq!(c.batch(&first).await, Ok(2_000));
    assert_eq!(c.last_ts("claude_code").await, 2_000);

    // The same batch again, raw and as zstd: nothing is counted twice.
    assert_eq!(c.batch_as(&first, false).await, Ok(2_000));
    assert_eq!(c.batch_as(&first, true).await, Ok(2_000));
    let user = admin_id(&s);
    let (events, total, cols) = usage_totals(&s.app().store, user);
    assert_eq!((events, total, cols["input"], cols["cache_read"]), (2, 122, 105, 1));

    // A later version of msg_a replaces the first; an earlier one is ignored.
    let later = batch("claude_code", vec![item(3_000, "msg_a", 4, [100, 90, 0, 0])]);
    assert_eq!(c.batch(&later).await, Ok(3_000));
    let earlier = batch("claude_code", vec![item(1_500, "msg_a", 0, [1, 1, 1, 1])]);
    assert_eq!(c.batch(&earlier).await, Ok(3_000), "the cursor never goes back");
    let (events, total, cols) = usage_totals(&s.app().store, user);
    assert_eq!((events, total, cols["output"]), (2, 202, 95));
    assert_eq!(event_count(&s.app().store), 2);

    // 150 items: zstd like the real client; an empty batch gets the current cursor.
    let many: Vec<_> = (0..150).map(|i| item(10_000 + i, &format!("msg_m{i}"), 0, [1, 1, 0, 0])).collect();
    assert_eq!(c.batch(&batch("claude_code", many)).await, Ok(10_149));
    assert_eq!(c.batch(&batch("claude_code", vec![])).await, Ok(10_149));
    assert_eq!(usage_totals(&s.app().store, user).0, 152);
    c.ping().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn codex_events_sharing_an_id_are_all_kept() {
    let s = TestServer::start().await;
    let token = access_token(&s.client()).await;
    let mut c = session(&s, &token, "key-1", "codex").await;
    let items: Vec<_> = (0..5).map(|i| item(1_000 + i, "codex", 0, [10, 3, 1, 4])).collect();
    assert_eq!(c.batch(&batch("codex", items.clone())).await, Ok(1_004));
    assert_eq!(c.batch(&batch("codex", items)).await, Ok(1_004));
    let (events, _, cols) = usage_totals(&s.app().store, admin_id(&s));
    assert_eq!(events, 5);
    assert_eq!((cols["input"], cols["reasoning_output"], cols["cached_input"]), (50, 5, 20));
    // The cursor is per provider.
    assert_eq!(c.last_ts("codex").await, 1_004);
    assert_eq!(c.last_ts("claude_code").await, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn auth_refusals_say_expired_only_when_a_refresh_would_help() {
    let s = TestServer::start().await;
    let http = s.client();
    let pair = http.login("admin", ADMIN_PASSWORD).await;
    let access = pair["access_token"].as_str().unwrap();
    let refresh = pair["refresh_token"].as_str().unwrap();
    let secret = s.app().store.jwt_secret().unwrap();
    let admin = s.app().store.user_by_name("admin").unwrap().unwrap();
    let now = toki_sync::store::now_secs();
    let mut expired = Jwt::claims(TokenType::Access, admin.uuid.to_string(), now - 7200, 60, None, None);
    expired.exp = now - 10;
    let expired = Jwt::new(&secret).sign(&expired);
    let forged = Jwt::new(b"some-other-secret-that-is-32-bytes!!").sign(&Jwt::claims(
        TokenType::Access,
        admin.uuid.to_string(),
        now,
        3600,
        None,
        None,
    ));

    async fn refusal(s: &TestServer, p: toki_sync::sync::wire::AuthPayload) -> (String, bool) {
        let mut c = SyncClient::plain(s.sync).await;
        let reply = c.auth(&p).await;
        assert!(c.closed_by_server().await, "the server closes after AUTH_ERR");
        match reply {
            AuthReply::Err { reason, reset_required } => (reason, reset_required),
            other => panic!("expected AUTH_ERR, got {other:?}"),
        }
    }

    let (r, _) = refusal(&s, auth_payload(&expired, "k", "claude_code")).await;
    assert!(r.contains("expired"), "{r}");
    for bad in [forged.as_str(), refresh, "garbage", ""] {
        let (r, _) = refusal(&s, auth_payload(bad, "k", "claude_code")).await;
        assert!(!r.contains("expired") && !r.contains("Expired"), "{bad:.20}: {r}");
    }
    let mut p = auth_payload(access, "k", "claude_code");
    p.protocol_version = 2;
    assert_eq!(refusal(&s, p).await, ("unsupported protocol version: client=2, server=1".into(), false));
    let mut p = auth_payload(access, "k", "claude_code");
    p.schema_version = 2;
    assert_eq!(refusal(&s, p).await, ("schema version mismatch: client=2, server=3".into(), true));
    let (r, _) = refusal(&s, auth_payload(access, "", "claude_code")).await;
    assert!(r.contains("device key"), "{r}");

    // Undecodable AUTH: answered, not dropped.
    let mut c = SyncClient::plain(s.sync).await;
    c.send(AUTH, b"\x05\x00\x00").await;
    let (kind, payload) = c.recv().await.expect("AUTH_ERR");
    assert_eq!(kind, AUTH_ERR);
    let e: toki_sync::sync::wire::AuthErrPayload = bincode::deserialize(&payload).unwrap();
    assert_eq!(e.reason, "malformed AUTH payload");

    // A disabled account: no `expired`, even with an expired token.
    s.app()
        .store
        .create_user(toki_sync::store::users::NewUser {
            username: "bob".into(),
            role: toki_sync::store::users::Role::User,
            status: UserStatus::Active,
            password_hash: Some(toki_sync::auth::password::hash_blocking("bob-password")),
            oidc_subject: None,
        })
        .unwrap();
    let bob = s.app().store.user_by_name("bob").unwrap().unwrap();
    let bob_token = http.login("bob", "bob-password").await["access_token"].as_str().unwrap().to_owned();
    let mut bob_expired = Jwt::claims(TokenType::Access, bob.uuid.to_string(), now - 7200, 60, None, None);
    bob_expired.exp = now - 10;
    let bob_expired = Jwt::new(&secret).sign(&bob_expired);
    s.app().store.update_user(bob.id, |u| u.status = UserStatus::Disabled).unwrap();
    for t in [bob_token.as_str(), bob_expired.as_str()] {
        let (r, _) = refusal(&s, auth_payload(t, "bk", "claude_code")).await;
        assert!(r.contains("disabled") && !r.contains("expired"), "{r}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn deleted_device_gets_device_removed_and_its_session_closes() {
    let s = TestServer::start().await;
    let token = access_token(&s.client()).await;
    let mut live = session(&s, &token, "doomed", "claude_code").await;
    let mut other = session(&s, &token, "kept", "claude_code").await;
    live.batch(&batch("claude_code", vec![item(5, "m", 0, [1, 0, 0, 0])])).await.unwrap();
    let device = s.app().store.devices(None).unwrap().into_iter().find(|d| d.key == "doomed").unwrap();
    let id = device.id;
    s.app()
        .ingest
        .exec(move |ctx| {
            ctx.forget_device(id);
            toki_sync::store::devices::delete_in(ctx.txn, id, 1)
        })
        .await
        .unwrap();
    assert_eq!(s.app().sessions.disconnect(|x| x.device_id == id), 1);
    assert!(live.closed_by_server().await, "the deleted device's session is closed");

    let mut again = SyncClient::plain(s.sync).await;
    let reply = again.auth(&auth_payload(&token, "doomed", "claude_code")).await;
    assert!(reply.reason().starts_with("device_removed"), "{reply:?}");
    assert_eq!(other.last_ts("claude_code").await, 0, "other devices are unaffected");
    assert_eq!(event_count(&s.app().store), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn tls_with_the_generated_certificate_both_versions() {
    let s = TestServer::start().await;
    let token = access_token(&s.client()).await;
    let cert = s.dir.path().join("tls/cert.pem");
    assert!(cert.exists(), "a self-signed certificate is generated into the data dir");
    let fingerprint = s.server.as_ref().unwrap().tls_fingerprint.clone();
    assert_eq!(fingerprint.len(), 32 * 3 - 1);
    for versions in [&[&rustls::version::TLS13][..], &[&rustls::version::TLS12][..]] {
        let mut c = SyncClient::tls(s.sync, &cert, versions).await;
        c.auth(&auth_payload(&token, "tls-key", "claude_code")).await.device_id();
        assert_eq!(c.batch(&batch("claude_code", vec![item(7, "t", 0, [1, 0, 0, 0])])).await, Ok(7));
        c.ping().await;
    }
    // Reused on the next start.
    let before = std::fs::read(&cert).unwrap();
    let mut s = s;
    let dir = std::mem::replace(&mut s.dir, tempfile::tempdir().unwrap());
    s.stop().await;
    let cfg = test_config(dir.path());
    let s2 = TestServer::start_in(dir, cfg).await;
    assert_eq!(std::fs::read(s2.dir.path().join("tls/cert.pem")).unwrap(), before);
    assert_eq!(s2.server.as_ref().unwrap().tls_fingerprint, fingerprint);
}

#[tokio::test(flavor = "multi_thread")]
async fn tls_with_a_provided_certificate() {
    let pem_dir = tempfile::tempdir().unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["127.0.0.1".into()]).unwrap().self_signed(&key).unwrap();
    let (cert_path, key_path) = (pem_dir.path().join("c.pem"), pem_dir.path().join("k.pem"));
    std::fs::write(&cert_path, cert.pem()).unwrap();
    std::fs::write(&key_path, key.serialize_pem()).unwrap();
    let s = TestServer::start_with(|c| {
        c.tls.cert_file = Some(cert_path.clone());
        c.tls.key_file = Some(key_path.clone());
    })
    .await;
    assert!(!s.dir.path().join("tls").exists(), "nothing is generated when a certificate is configured");
    let token = access_token(&s.client()).await;
    let mut c = SyncClient::tls(s.sync, &cert_path, &[&rustls::version::TLS13]).await;
    c.auth(&auth_payload(&token, "k", "codex")).await.device_id();
    assert_eq!(c.last_ts("codex").await, 0);

    // A broken key stops start-up with a message naming the file.
    std::fs::write(&key_path, "not a key").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = test_config(dir.path());
    cfg.tls.cert_file = Some(cert_path.clone());
    cfg.tls.key_file = Some(key_path.clone());
    let listeners = toki_sync::Listeners::bind(&cfg).unwrap();
    let err = toki_sync::launch(cfg, listeners, std::future::pending()).await.err().expect("must fail");
    assert!(err.contains("k.pem"), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn plaintext_refused_when_not_allowed() {
    let s = TestServer::start_with(|c| c.sync.plaintext = PlaintextPolicy::Never).await;
    let token = access_token(&s.client()).await;
    let mut c = SyncClient::plain(s.sync).await;
    let reply = c.auth(&auth_payload(&token, "k", "claude_code")).await;
    assert_eq!(reply.reason(), "plaintext sync not allowed from this address; use TLS");
    assert!(c.closed_by_server().await);
    // TLS still works.
    let mut t = SyncClient::tls(s.sync, &s.dir.path().join("tls/cert.pem"), &[&rustls::version::TLS13]).await;
    t.auth(&auth_payload(&token, "k", "claude_code")).await.device_id();
}

#[tokio::test(flavor = "multi_thread")]
async fn over_capacity_clients_are_told_server_busy() {
    let s = TestServer::start_with(|c| c.sync.max_connections = 1).await;
    let token = access_token(&s.client()).await;
    let mut first = session(&s, &token, "a", "claude_code").await;
    let mut second = SyncClient::plain(s.sync).await;
    assert_eq!(second.auth(&auth_payload(&token, "b", "claude_code")).await.reason(), "server busy");
    first.ping().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn fifty_devices_sync_at_once() {
    let s = TestServer::start().await;
    let token = access_token(&s.client()).await;
    let mut tasks = Vec::new();
    for d in 0..50 {
        let (addr, token) = (s.sync, token.clone());
        tasks.push(tokio::spawn(async move {
            let provider = if d % 2 == 0 { "claude_code" } else { "codex" };
            let mut c = SyncClient::plain(addr).await;
            c.auth(&auth_payload(&token, &format!("dev-{d}"), provider)).await.device_id();
            assert_eq!(c.last_ts(provider).await, 0);
            for b in 0..5i64 {
                let items = (0..200)
                    .map(|i| item(1 + b * 1000 + i, &format!("m-{d}-{b}-{i}"), 0, [1, 2, 0, 0]))
                    .collect();
                assert_eq!(c.batch(&batch(provider, items)).await, Ok(b * 1000 + 200));
            }
            assert_eq!(c.last_ts(provider).await, 4200);
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(event_count(&s.app().store), 50 * 5 * 200);
    let (events, total, _) = usage_totals(&s.app().store, admin_id(&s));
    assert_eq!((events, total), (50_000, 150_000));
    let (commits, batches, _) = s.app().ingest.stats.snapshot();
    assert_eq!(batches, 250);
    assert!(commits <= batches);
}

#[tokio::test(flavor = "multi_thread")]
async fn malformed_frames_close_only_their_connection() {
    let s = TestServer::start_with(|c| c.sync.max_decompressed_bytes = 1 << 20).await;
    let token = access_token(&s.client()).await;
    let mut healthy = session(&s, &token, "healthy", "claude_code").await;
    let good = batch("claude_code", vec![item(1, "x", 0, [1, 0, 0, 0])]);
    let raw = bincode::serialize(&good).unwrap();

    // Frames before AUTH.
    let mut c = SyncClient::plain(s.sync).await;
    c.send(PING, &[]).await;
    assert!(c.closed_by_server().await, "PING before AUTH");
    let mut c = SyncClient::plain(s.sync).await;
    c.send(SYNC_BATCH, &raw).await;
    assert!(c.closed_by_server().await, "batch before AUTH");
    // An AUTH announcing more than the 16 MiB frame limit: closed at once, nothing read.
    let mut c = SyncClient::plain(s.sync).await;
    c.send_raw(&[1, 0, 0, 0, 1, 0, 0, 1]).await;
    assert!(c.closed_by_server().await, "AUTH over 16 MiB");

    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("unknown type", frame(0x99, b"")),
        ("server-to-client code", frame(SYNC_ACK, &[0; 8])),
        (
            "second AUTH",
            frame(AUTH, &bincode::serialize(&auth_payload(&token, "healthy", "claude_code")).unwrap()),
        ),
        ("oversize length", vec![0x20, 0, 0, 0, 0x01, 0, 0, 0x01]),
        ("truncated payload", frame(SYNC_BATCH, &raw)[..20].to_vec()),
        ("bad UTF-8", {
            let mut bad = raw.clone();
            let at = raw.windows(1).position(|w| w == b"x").unwrap();
            bad[at] = 0xff;
            frame(SYNC_BATCH, &bad)
        }),
        ("bad bool", {
            let mut bad = raw.clone();
            let at = 8 + 8 + 9 + 16 + 8 + 32 + 8;
            bad[at] = 2;
            frame(SYNC_BATCH, &bad)
        }),
        ("garbage zstd", frame(SYNC_BATCH_ZSTD, b"definitely not zstd")),
        ("zstd bomb", {
            let mut zeros = vec![0u8; 8 << 20];
            zeros[..8].copy_from_slice(&50_000u64.to_le_bytes());
            frame(SYNC_BATCH_ZSTD, &zstd::encode_all(&zeros[..], 3).unwrap())
        }),
        ("malformed GET_LAST_TS", frame(GET_LAST_TS, &[9, 0, 0])),
    ];
    for (name, bytes) in cases {
        let mut c = session(&s, &token, "victim", "claude_code").await;
        c.send_raw(&bytes).await;
        if name == "truncated payload" {
            // Half a frame, then silence: the server waits, so end the stream from our side.
            drop(c);
        } else {
            assert!(c.closed_by_server().await, "{name}: the server closes the connection");
        }
        assert_eq!(healthy.batch(&good).await, Ok(1), "{name}: other sessions keep working");
    }
    healthy.ping().await;
    assert_eq!(event_count(&s.app().store), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn idle_sessions_are_closed() {
    let s = TestServer::start_with(|c| c.sync.idle_timeout_secs = 1).await;
    let token = access_token(&s.client()).await;
    let mut c = session(&s, &token, "k", "claude_code").await;
    assert!(c.closed_by_server().await);
}

#[tokio::test(flavor = "multi_thread")]
async fn device_names_follow_reports_and_renames() {
    let s = TestServer::start().await;
    let token = access_token(&s.client()).await;
    let mut p = auth_payload(&token, "k", "claude_code");
    p.device_name = "first-name".into();
    let id = SyncClient::plain(s.sync).await.auth(&p).await.device_id().to_owned();
    let uuid = id.parse().unwrap();
    let device = s.app().store.device_by_uuid(uuid).unwrap().unwrap();
    s.app().store.rename_device(device.id, "renamed-on-web").unwrap();
    // Same report: the rename stays. A new report (toki sync rename): it wins, cut to 64 chars.
    SyncClient::plain(s.sync).await.auth(&p).await.device_id();
    assert_eq!(s.app().store.device(device.id).unwrap().unwrap().name, "renamed-on-web");
    p.device_name = "n".repeat(100);
    let again = SyncClient::plain(s.sync).await.auth(&p).await.device_id().to_owned();
    assert_eq!(again, id, "the same (user, key) is the same device");
    assert_eq!(s.app().store.device(device.id).unwrap().unwrap().name, "n".repeat(64));
    // The live registry reports the session.
    let mut live = SyncClient::plain(s.sync).await;
    live.auth(&p).await.device_id();
    live.ping().await;
    let active = s.app().sessions.list();
    assert_eq!(active.len(), 1);
    assert_eq!((active[0].provider.as_str(), active[0].tls), ("claude_code", false));
    assert_eq!(s.app().sessions.connected_devices(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn restart_keeps_cursors_and_events() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = test_config(dir.path());
    let mut s = TestServer::start_in(tempfile::tempdir().unwrap(), cfg.clone()).await;
    let token = access_token(&s.client()).await;
    let mut c = session(&s, &token, "k", "claude_code").await;
    c.batch(&batch("claude_code", vec![item(42, "m1", 0, [1, 0, 0, 0]), item(43, "m2", 0, [1, 0, 0, 0])]))
        .await
        .unwrap();
    drop(c);
    s.stop().await;
    let s = TestServer::start_in(tempfile::tempdir().unwrap(), cfg).await;
    let mut c = session(&s, &token, "k", "claude_code").await;
    assert_eq!(c.last_ts("claude_code").await, 43);
    // A later version after the restart still replaces (the recent index was rebuilt).
    c.batch(&batch("claude_code", vec![item(50, "m1", 0, [9, 0, 0, 0])])).await.unwrap();
    assert_eq!(event_count(&s.app().store), 2);
    assert_eq!(usage_totals(&s.app().store, admin_id(&s)).2["input"], 10);
}

#[test]
fn acked_batches_survive_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let server = BinServer::start(dir.path(), &[("TOKI_ADMIN_PASSWORD", "kill-nine-pw")]);
    let (http, sync) = (server.http, server.sync);
    let token = rt.block_on(async {
        Client::at(http).login("admin", "kill-nine-pw").await["access_token"].as_str().unwrap().to_owned()
    });
    rt.block_on(async {
        let mut c = SyncClient::plain(sync).await;
        c.auth(&auth_payload(&token, "k9", "claude_code")).await.device_id();
        let items = (0..500).map(|i| item(1_000 + i, &format!("k9-{i}"), 0, [1, 1, 0, 0])).collect();
        assert_eq!(c.batch(&batch("claude_code", items)).await, Ok(1_499));
    });
    server.kill9();
    let server = BinServer::start(dir.path(), &[]);
    rt.block_on(async {
        let mut c = SyncClient::plain(server.sync).await;
        c.auth(&auth_payload(&token, "k9", "claude_code")).await.device_id();
        assert_eq!(c.last_ts("claude_code").await, 1_499, "the ACKed batch and its cursor survived");
    });
    let (clean, stdout) = server.stop();
    assert!(clean);
    assert!(stdout.contains("SHA-256 fingerprint"), "the TLS fingerprint is printed at start-up: {stdout}");
    let (code, out, err) = admin(dir.path(), &["stats", "--json"], None);
    assert_eq!(code, 0, "{err}");
    let stats: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(stats["events"], 500);
}

fn hex(s: &str) -> Vec<u8> {
    s.split_whitespace().map(|b| u8::from_str_radix(b, 16).unwrap()).collect()
}

/// protocol.md §13, byte for byte: the test client's encoder against the hex written in the
/// protocol (not against the server's encoder), and its decoder on the server's replies.
#[test]
fn test_client_matches_the_protocol_vectors() {
    use toki_sync::sync::wire::{
        AuthErrPayload, AuthOkPayload, GetLastTsPayload, LastTsPayload, SyncAckPayload, SyncErrPayload,
    };
    let auth = AuthPayload {
        jwt: "J".into(),
        device_name: "mb".into(),
        schema_version: 3,
        provider: "codex".into(),
        device_key: "K".into(),
        protocol_version: 1,
    };
    assert_eq!(
        frame(AUTH, &encode(&auth)),
        hex("01 00 00 00 2f 00 00 00
             01 00 00 00 00 00 00 00 4a
             02 00 00 00 00 00 00 00 6d 62
             03 00 00 00
             05 00 00 00 00 00 00 00 63 6f 64 65 78
             01 00 00 00 00 00 00 00 4b
             01 00")
    );
    assert_eq!(
        frame(GET_LAST_TS, &encode(&GetLastTsPayload { provider: "codex".into() })),
        hex("10 00 00 00 0d 00 00 00 05 00 00 00 00 00 00 00 63 6f 64 65 78")
    );
    assert_eq!(frame(PING, &[]), hex("30 00 00 00 00 00 00 00"));

    // Server replies: split the header, decode the payload with the client's decoder.
    let reply = |bytes: Vec<u8>| -> (u32, Vec<u8>) {
        let len = u32::from_le_bytes(bytes[4..8].try_into().unwrap()) as usize;
        assert_eq!(len, bytes.len() - 8);
        (u32::from_le_bytes(bytes[..4].try_into().unwrap()), bytes[8..].to_vec())
    };
    let (k, p) = reply(hex("02 00 00 00 09 00 00 00 01 00 00 00 00 00 00 00 4b"));
    assert_eq!((k, decode::<AuthOkPayload>(&p).unwrap().device_id), (AUTH_OK, "K".to_owned()));
    let (k, p) = reply(hex("03 00 00 00 0a 00 00 00 01 00 00 00 00 00 00 00 78 01"));
    let e = decode::<AuthErrPayload>(&p).unwrap();
    assert_eq!((k, e.reason.as_str(), e.reset_required), (AUTH_ERR, "x", true));
    let (k, p) = reply(hex("11 00 00 00 08 00 00 00 00 68 e5 cf 8b 01 00 00"));
    assert_eq!((k, decode::<LastTsPayload>(&p).unwrap().ts_ms), (LAST_TS, 1_700_000_000_000));
    let (k, p) = reply(hex("21 00 00 00 08 00 00 00 ff ff ff ff ff ff ff ff"));
    assert_eq!((k, decode::<SyncAckPayload>(&p).unwrap().last_ts_ms), (SYNC_ACK, -1));
    let (k, p) = reply(hex("22 00 00 00 09 00 00 00 01 00 00 00 00 00 00 00 65"));
    assert_eq!((k, decode::<SyncErrPayload>(&p).unwrap().reason), (SYNC_ERR, "e".to_owned()));
    assert_eq!(reply(hex("31 00 00 00 00 00 00 00")), (PONG, vec![]));

    // The SYNC_BATCH vector (137 bytes), field by field as the protocol's table lists them.
    let b = toki_sync::sync::wire::SyncBatchPayload {
        items: vec![toki_sync::sync::wire::SyncItem {
            ts_ms: 1,
            message_id: "a".into(),
            event: toki_sync::sync::wire::StoredEvent {
                model_id: 0,
                session_id: 0,
                source_file_id: 0,
                project_name_id: 0,
                tokens: vec![1, 2, 3, 4],
            },
            usage_total: 10,
            is_correction: false,
        }],
        dict: [(0, "m".to_owned())].into_iter().collect(),
        provider: "x".into(),
        token_columns: vec!["i".into()],
    };
    let payload = hex("01 00 00 00 00 00 00 00
                       01 00 00 00 00 00 00 00
                       01 00 00 00 00 00 00 00 61
                       00 00 00 00  00 00 00 00  00 00 00 00  00 00 00 00
                       04 00 00 00 00 00 00 00
                       01 00 00 00 00 00 00 00  02 00 00 00 00 00 00 00  03 00 00 00 00 00 00 00  04 00 00 00 00 00 00 00
                       0a 00 00 00 00 00 00 00
                       00
                       01 00 00 00 00 00 00 00
                       00 00 00 00  01 00 00 00 00 00 00 00 6d
                       01 00 00 00 00 00 00 00 78
                       01 00 00 00 00 00 00 00  01 00 00 00 00 00 00 00 69");
    assert_eq!(payload.len(), 137);
    let batch_frame = frame(SYNC_BATCH, &encode(&b));
    assert_eq!(&batch_frame[..8], &hex("20 00 00 00 89 00 00 00")[..]);
    assert_eq!(&batch_frame[8..], &payload[..]);
    let z = compress(&payload);
    assert_eq!(&z[..4], &hex("28 b5 2f fd")[..]);
    assert_eq!(zstd::decode_all(&z[..]).unwrap(), payload);

    // Decoding checks: a trailing byte is ignored; a SyncItem without its last byte and a bool
    // byte 02 fail.
    assert_eq!(decode::<LastTsPayload>(&hex("00 68 e5 cf 8b 01 00 00 aa")).unwrap().ts_ms, 1_700_000_000_000);
    let err = decode::<toki_sync::sync::wire::SyncItem>(&payload[8..89]).unwrap_err();
    assert!(err.contains("unexpected end of file") || err.contains("UnexpectedEof"), "{err}");
    let mut bad_bool = payload.clone();
    bad_bool[89] = 2;
    assert!(decode::<toki_sync::sync::wire::SyncBatchPayload>(&bad_bool).is_err());
}

/// Token counts near u64::MAX in one rollup bucket: the server neither panics (debug build: the
/// writer thread would die) nor wraps; sums are clamped and later batches are still ACKed.
#[tokio::test(flavor = "multi_thread")]
async fn huge_token_values_saturate_and_the_server_keeps_acking() {
    let s = TestServer::start().await;
    let token = access_token(&s.client()).await;
    let mut c = session(&s, &token, "huge", "codex").await;
    let max = u64::MAX;
    let huge = |ts: i64, tokens: [u64; 4]| {
        let mut it = item(ts, "codex", 0, [0; 4]);
        it.event.tokens = tokens.to_vec();
        it.usage_total = max;
        it
    };
    let items: Vec<_> = (0..3).map(|i| huge(1_000 + i, [max, 1 << 62, max - 1, 1])).collect();
    assert_eq!(c.batch(&batch("codex", items.clone())).await, Ok(1_002));
    // The same bucket again, a retransmission (subtracting saturated sums) and new events.
    assert_eq!(c.batch(&batch("codex", items)).await, Ok(1_002));
    let more: Vec<_> = (0..3).map(|i| huge(2_000 + i, [max, 1 << 62, 0, 0])).collect();
    assert_eq!(c.batch(&batch("codex", more)).await, Ok(2_002));
    c.ping().await;
    // Another device is served as usual.
    let mut other = session(&s, &token, "normal", "codex").await;
    assert_eq!(other.batch(&batch("codex", vec![item(5, "codex", 0, [1, 2, 3, 4])])).await, Ok(5));

    let user = admin_id(&s);
    let store = &s.app().store;
    let names = store.strings().unwrap();
    let txn = store.read().unwrap();
    let table = txn.open_table(toki_sync::store::schema::ROLLUPS).unwrap();
    let mut huge_bucket = None;
    for row in
        table.range((user, 0, 0, 0, 0, 0)..=(user, u32::MAX, u32::MAX, u32::MAX, u32::MAX, u32::MAX)).unwrap()
    {
        let (_, v) = row.unwrap();
        let r =
            <toki_sync::store::events::RollupRecord as toki_sync::store::codec::Record>::decode(v.value())
                .unwrap();
        if r.events == 6 {
            huge_bucket = Some(r);
        }
    }
    let r = huge_bucket.expect("the six huge events share one bucket");
    let col = |name: &str| r.tokens.iter().find(|(c, _)| names[c] == name).map(|t| t.1);
    assert_eq!(r.usage_total, max, "clamped, not wrapped");
    assert_eq!(col("input"), Some(max));
    assert_eq!(col("output"), Some(max), "6 x 2^62 > u64::MAX: clamped");
    assert_eq!(col("reasoning_output"), Some(max));
    assert_eq!(col("cached_input"), Some(3));
}

/// A batch with 100,000 token columns and as many token values per item: only the first 64
/// columns are read, the batch is ACKed promptly, and the server keeps serving.
#[tokio::test(flavor = "multi_thread")]
async fn a_batch_with_huge_column_lists_is_capped_and_acked() {
    let s = TestServer::start().await;
    let token = access_token(&s.client()).await;
    let mut c = session(&s, &token, "cols", "claude_code").await;
    let mut b =
        batch("claude_code", (0..100).map(|i| item(100 + i, &format!("msg-{i}"), 0, [1, 1, 1, 1])).collect());
    // Repeated names count once (first position wins); then distinct names up to the cap.
    b.token_columns = ["input", "input", "output"]
        .iter()
        .map(|c| c.to_string())
        .chain((0..100_000).map(|i| format!("col-{i}")))
        .collect();
    // The first five items carry 100,003 token values (the decompressed batch must stay under
    // the 64 MiB cap); every item has 1..=64 in the positions that are read.
    for (i, it) in b.items.iter_mut().enumerate() {
        let len = if i < 5 { 100_003 } else { 70 };
        it.event.tokens = (1..=64u64).chain(std::iter::repeat_n(1, len - 64)).collect();
    }
    let started = std::time::Instant::now();
    let healthy_task = {
        let (addr, token) = (s.sync, token.clone());
        tokio::spawn(async move {
            let mut h = SyncClient::plain(addr).await;
            h.auth(&auth_payload(&token, "bystander", "codex")).await.device_id();
            h.batch(&batch("codex", vec![item(9, "codex", 0, [1, 0, 0, 0])])).await
        })
    };
    assert_eq!(c.batch(&b).await, Ok(199), "zstd batch of 100 items ACKed");
    assert!(started.elapsed() < std::time::Duration::from_secs(60), "sanity bound only");
    assert_eq!(healthy_task.await.unwrap(), Ok(9));
    // Raw too, still answered.
    b.items.truncate(10);
    for it in &mut b.items {
        it.ts_ms += 1_000;
        it.message_id = format!("raw-{}", it.ts_ms);
    }
    assert_eq!(c.batch_as(&b, false).await, Ok(1_109));
    c.ping().await;

    let (events, _, cols) = usage_totals(&s.app().store, admin_id(&s));
    assert_eq!(events, 110 + 1);
    assert_eq!(cols["input"], 110 + 1, "the first 'input' position");
    assert_eq!(cols["output"], 110 * 3);
    assert_eq!(cols["col-60"], 110 * 64, "position 63 is the last one read");
    assert!(!cols.contains_key("col-61"), "columns past the 64th are ignored");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_oversized_auth_within_the_frame_limit_is_answered() {
    let s = TestServer::start().await;
    let token = access_token(&s.client()).await;
    let mut p = auth_payload(&token, "k", "claude_code");
    p.device_name = "n".repeat(64 * 1024);
    let mut c = SyncClient::plain(s.sync).await;
    c.send(AUTH, &encode(&p)).await;
    let (kind, payload) = c.recv().await.expect("AUTH_ERR, not a silent close");
    assert_eq!(kind, AUTH_ERR);
    assert_eq!(
        decode::<toki_sync::sync::wire::AuthErrPayload>(&payload).unwrap().reason,
        "malformed AUTH payload"
    );
    assert!(c.closed_by_server().await);
    // 8 MiB of garbage announced as AUTH: read to the end and answered too.
    let mut c = SyncClient::plain(s.sync).await;
    c.send(AUTH, &vec![0xab; 8 << 20]).await;
    assert_eq!(c.recv().await.map(|f| f.0), Some(AUTH_ERR));
    // The normal one still works.
    p.device_name = "fine".into();
    SyncClient::plain(s.sync).await.auth(&p).await.device_id();
}

#[tokio::test(flavor = "multi_thread")]
async fn admin_active_shows_the_cursor_and_the_last_batch_time() {
    let s = TestServer::start().await;
    let http = s.client();
    let token = access_token(&http).await;
    let mut c = session(&s, &token, "act", "claude_code").await;
    let before = http.get_auth("/admin/active", &token).await.json();
    assert_eq!(before["active"][0]["last_batch_at"], serde_json::Value::Null);
    assert_eq!(before["active"][0]["last_ts_ms"], 0);
    c.batch(&batch("claude_code", vec![item(4_242, "m", 0, [1, 0, 0, 0])])).await.unwrap();
    let after = http.get_auth("/admin/active", &token).await.json();
    let a = &after["active"][0];
    let at = a["last_batch_at"].as_i64().expect("unix seconds after a batch");
    assert!(at >= a["connected_at"].as_i64().unwrap());
    assert_eq!(a["last_ts_ms"], 4_242);
    drop(c);
    // A new session shows the stored cursor from the start.
    let _c = session(&s, &token, "act", "claude_code").await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let list = http.get_auth("/admin/active", &token).await.json()["active"].as_array().unwrap().clone();
        if list.len() == 1 {
            assert_eq!(list[0]["last_ts_ms"], 4_242);
            assert_eq!(list[0]["last_batch_at"], serde_json::Value::Null);
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the old session did not end: {list:?}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}
