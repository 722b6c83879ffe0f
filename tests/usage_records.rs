//! Usage records with cursor pagination and the streaming export, over real sockets: newest
//! first, every record exactly once while a device streams new and replacing events, filters,
//! bad and foreign cursors, per-user isolation, and export totals equal to the usage API's.

mod common;

use std::collections::HashMap;

use common::usage::*;
use common::*;
use serde_json::{Value, json};
use toki_sync::store::users::Role;

const SONNET: &str = "claude-sonnet-4-5-20250929";

fn hash_of(id: &str) -> String {
    format!("{:016x}", toki_sync::store::events::id_hash(id))
}

fn events(base: i64, n: usize, prefix: &str) -> Vec<(i64, String, &'static str)> {
    (0..n).map(|i| (base + i as i64 * 60_000, format!("{prefix}{i}"), "s1")).collect()
}

async fn sync_claude(
    s: &TestServer,
    token: &str,
    key: &str,
    model: &str,
    project: &str,
    evs: &[(i64, String, &str)],
) {
    let list: Vec<Ev<'_>> = evs
        .iter()
        .map(|(ts, id, session)| Ev { ts: *ts, id, model, session, project, tokens: [10, 20, 30, 40] })
        .collect();
    sync(s, token, key, key, "claude_code", &list).await;
}

/// Follows next_cursor to the end; returns every record.
async fn all_pages(c: &Client, query: &str, token: &str, limit: usize) -> Vec<Value> {
    let mut out = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut path = format!("/api/v1/usage/records?limit={limit}{query}");
        if let Some(cur) = &cursor {
            path.push_str(&format!("&cursor={cur}"));
        }
        let page = get_ok(c, &path, token).await;
        let data = page["data"].as_array().unwrap();
        assert!(data.len() <= limit);
        out.extend(data.iter().cloned());
        match page["next_cursor"].as_str() {
            Some(n) => cursor = Some(n.to_owned()),
            None => return out,
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn pages_are_newest_first_filtered_and_isolated() {
    let s = TestServer::start().await;
    let c = s.client();
    let (_alice, alice) = signed_in(&s, "alice", Role::User).await;
    let (bob_user, bob) = signed_in(&s, "bob", Role::User).await;
    let d = midnight_days_ago(3);
    sync_claude(&s, &alice, "laptop", SONNET, "alpha", &events(d, 12, "a")).await;
    sync_claude(&s, &alice, "desktop", "claude-opus-4-1-20250805", "", &events(d + 30_000, 5, "b")).await;
    sync(
        &s,
        &alice,
        "desktop",
        "desktop",
        "codex",
        &[Ev {
            ts: d + 1,
            id: "cx",
            model: "gpt-5-codex",
            session: "s9",
            project: "beta",
            tokens: [100, 50, 0, 40],
        }],
    )
    .await;
    sync_claude(&s, &bob, "bobs", SONNET, "alpha", &events(d, 4, "z")).await;

    let all = all_pages(&c, "", &alice, 5).await;
    assert_eq!(all.len(), 18);
    let ts: Vec<i64> = all.iter().map(|r| r["ts_ms"].as_i64().unwrap()).collect();
    assert!(ts.windows(2).all(|w| w[0] >= w[1]), "newest first: {ts:?}");
    let first = &all[0];
    assert_eq!(first["message_id"], hash_of("a11"));
    assert_eq!(first["device_name"], "laptop");
    assert_eq!(first["provider"], "claude_code");
    assert_eq!(first["model"], SONNET);
    assert_eq!(first["project"], "alpha");
    assert_eq!(first["session"], "s1");
    assert_eq!(first["tokens"], json!({"input": 10, "output": 20, "cache_create": 30, "cache_read": 40}));
    assert_eq!(first["total"], 100);
    // Sonnet: 10*3 + 20*15 + 30*3.75 + 40*0.3 per million.
    assert!((first["cost_usd"].as_f64().unwrap() - 0.0004545).abs() < 1e-9, "{first}");
    let codex = all.iter().find(|r| r["provider"] == "codex").unwrap();
    assert_eq!(codex["tokens"]["cached_input"], 40);
    assert_eq!(all.last().unwrap()["message_id"], hash_of("a0"), "oldest last");
    // Bob's events never show up in Alice's records.
    assert!(!all.iter().any(|r| r["message_id"].as_str().unwrap() == hash_of("z0")));

    // Filters.
    assert_eq!(all_pages(&c, "&provider=codex", &alice, 100).await.len(), 1);
    assert_eq!(all_pages(&c, "&project=alpha", &alice, 100).await.len(), 12);
    assert_eq!(all_pages(&c, &format!("&model={}", enc(SONNET)), &alice, 100).await.len(), 12);
    assert_eq!(all_pages(&c, "&session=s9", &alice, 100).await.len(), 1);
    assert_eq!(all_pages(&c, "&model=never-seen", &alice, 100).await.len(), 0);
    let desktop =
        all.iter().find(|r| r["device_name"] == "desktop").unwrap()["device_id"].as_str().unwrap().to_owned();
    assert_eq!(all_pages(&c, &format!("&device={desktop}"), &alice, 100).await.len(), 6);
    // Alice's device id in Bob's query matches none of Bob's events.
    assert_eq!(all_pages(&c, &format!("&device={desktop}"), &bob, 100).await.len(), 0);
    let window = format!("&start={}&end={}", d + 60_000, d + 3 * 60_000);
    assert_eq!(all_pages(&c, &window, &alice, 100).await.len(), 4, "a1, a2, b1, b2");

    // Bad parameters and cursors.
    let page = get_ok(&c, "/api/v1/usage/records?limit=2", &alice).await;
    let cursor = page["next_cursor"].as_str().unwrap().to_owned();
    for (path, token, needle) in [
        ("/api/v1/usage/records?limit=0".to_owned(), &alice, "limit: must be from 1 to 100"),
        ("/api/v1/usage/records?limit=101".to_owned(), &alice, "limit: must be from 1 to 100"),
        ("/api/v1/usage/records?cursor=%%%".to_owned(), &alice, "cursor: malformed"),
        ("/api/v1/usage/records?cursor=AAAA".to_owned(), &alice, "cursor: malformed"),
        (format!("/api/v1/usage/records?cursor={cursor}"), &bob, "cursor: belongs to another query"),
        (
            format!("/api/v1/usage/records?cursor={cursor}&provider=codex"),
            &alice,
            "cursor: belongs to another query",
        ),
        ("/api/v1/usage/records?start=nope".to_owned(), &alice, "start:"),
        ("/api/v1/usage/records?device=xyz".to_owned(), &alice, "device: expected a device id"),
        (format!("/api/v1/usage/records?user={}", bob_user.uuid), &alice, "only admins"),
    ] {
        let r = c.get_auth(&path, token).await;
        assert!(r.status == 400 || r.status == 403, "{path}: {} {}", r.status, r.text());
        assert!(r.error().contains(needle), "{path}: {}", r.error());
    }
    // An admin may read another user's records; an API key of Alice reads only hers.
    let admin = c.admin_token().await;
    assert_eq!(all_pages(&c, &format!("&user={}", bob_user.uuid), &admin, 100).await.len(), 4);
    assert_eq!(all_pages(&c, "&all=true", &admin, 100).await.len(), 22);
    let key = c
        .send_auth("POST", "/me/api-keys", &alice, Some(&json!({"name": "r", "scopes": ["usage:read"]})))
        .await
        .json()["key"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(all_pages(&c, "", &key, 100).await.len(), 18);
    let r = c.get_auth(&format!("/api/v1/usage/records?user={}", bob_user.uuid), &key).await;
    assert_eq!(r.status, 403);
}

#[tokio::test(flavor = "multi_thread")]
async fn cursor_is_stable_while_a_device_streams_new_and_replacing_events() {
    let s = TestServer::start().await;
    let c = s.client();
    let (_u, token) = signed_in(&s, "carol", Role::User).await;
    let d = midnight_days_ago(2);
    let seeded = events(d, 60, "m");
    sync_claude(&s, &token, "laptop", SONNET, "p", &seeded).await;
    let mut seen: Vec<String> = Vec::new();
    let mut cursor: Option<String> = None;
    let mut round = 0i64;
    loop {
        let mut path = "/api/v1/usage/records?limit=7".to_owned();
        if let Some(cur) = &cursor {
            path.push_str(&format!("&cursor={cur}"));
        }
        let page = get_ok(&c, &path, &token).await;
        seen.extend(
            page["data"].as_array().unwrap().iter().map(|r| r["message_id"].as_str().unwrap().to_owned()),
        );
        // Between pages the device streams: a new message, a newer version of it, and a newer
        // version of a message already returned on the first page (Claude's streaming updates).
        let now = midnight_days_ago(0) + round * 10_000;
        let fresh = format!("live{round}");
        sync_claude(&s, &token, "laptop", SONNET, "p", &[(now, fresh.clone(), "s1")]).await;
        sync_claude(&s, &token, "laptop", SONNET, "p", &[(now + 5_000, fresh, "s1")]).await;
        sync_claude(&s, &token, "laptop", SONNET, "p", &[(now + 6_000, "m59".into(), "s1")]).await;
        round += 1;
        match page["next_cursor"].as_str() {
            Some(n) => cursor = Some(n.to_owned()),
            None => break,
        }
    }
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for id in &seen {
        *counts.entry(id.as_str()).or_default() += 1;
    }
    assert!(counts.values().all(|n| *n == 1), "duplicates: {counts:?}");
    for (_, id, _) in &seeded {
        assert!(counts.contains_key(hash_of(id).as_str()), "{id} missing");
    }
    assert_eq!(seen.len(), 60, "only the seeded records lie behind the first page's start");
}

/// Decodes a chunked HTTP/1.1 body.
fn dechunk(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut rest = body;
    loop {
        let line_end = rest.windows(2).position(|w| w == b"\r\n").expect("chunk size line");
        let size = usize::from_str_radix(std::str::from_utf8(&rest[..line_end]).unwrap().trim(), 16).unwrap();
        rest = &rest[line_end + 2..];
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&rest[..size]);
        rest = &rest[size + 2..];
    }
}

fn body_of(r: &Resp) -> String {
    let chunked = r.header("transfer-encoding").is_some_and(|v| v.contains("chunked"));
    String::from_utf8(if chunked { dechunk(&r.body) } else { r.body.clone() }).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn export_streams_every_record_and_matches_the_usage_totals() {
    let s = TestServer::start().await;
    let c = s.client();
    let (_u, token) = signed_in(&s, "dana", Role::User).await;
    let (_b, bob) = signed_in(&s, "bob", Role::User).await;
    let d = midnight_days_ago(4);
    sync_claude(&s, &token, "laptop", SONNET, "=formula", &events(d, 300, "e")).await;
    sync(
        &s,
        &token,
        "desktop",
        "desktop",
        "codex",
        &[Ev {
            ts: d + 7,
            id: "cx",
            model: "gpt-5-codex",
            session: "s,9",
            project: "beta",
            tokens: [100, 50, 7, 40],
        }],
    )
    .await;
    sync_claude(&s, &bob, "bobs", SONNET, "x", &events(d, 9, "z")).await;

    let r = c.get_auth("/api/v1/usage/export?format=ndjson", &token).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("application/x-ndjson"));
    assert!(r.header("content-disposition").unwrap().starts_with("attachment; filename=\"toki-usage-"));
    assert!(r.header("x-ratelimit-limit").is_some());
    let lines: Vec<Value> = body_of(&r).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 301);
    let usage = get_ok(&c, &format!("/api/v1/usage?start={}", d / 1000), &token).await;
    let mut tokens: HashMap<String, u64> = HashMap::new();
    let (mut total, mut cost) = (0u64, 0f64);
    for l in &lines {
        for (k, v) in l["tokens"].as_object().unwrap() {
            *tokens.entry(k.clone()).or_default() += v.as_u64().unwrap();
        }
        total += l["total"].as_u64().unwrap();
        cost += l["cost_usd"].as_f64().unwrap();
    }
    assert_eq!(usage["totals"]["events"], 301);
    assert_eq!(usage["totals"]["total"].as_u64().unwrap(), total);
    for (k, v) in usage["totals"]["tokens"].as_object().unwrap() {
        assert_eq!(tokens.get(k).copied().unwrap_or(0), v.as_u64().unwrap(), "{k}");
    }
    assert!(
        (usage["totals"]["cost_usd"].as_f64().unwrap() - cost).abs() < 1e-5,
        "{cost} vs {}",
        usage["totals"]
    );

    let r = c.get_auth("/api/v1/usage/export?format=csv&provider=codex", &token).await;
    assert_eq!(r.header("content-type"), Some("text/csv; charset=utf-8"));
    let csv = body_of(&r);
    let rows: Vec<&str> = csv.lines().collect();
    assert_eq!(rows[0], toki_sync::query::export::CSV_HEADER.trim_end());
    assert_eq!(rows.len(), 2);
    assert!(rows[1].contains(",\"s,9\","), "{}", rows[1]);
    assert!(rows[1].contains(",100,50,0,0,7,40,,150,"), "{}", rows[1]);
    let csv = body_of(&c.get_auth("/api/v1/usage/export", &token).await);
    assert_eq!(csv.lines().count(), 302, "csv is the default");
    assert!(csv.contains(",\"'=formula\","), "spreadsheet formulas are defused");

    let r = c.get_auth("/api/v1/usage/export?format=xml", &token).await;
    assert_eq!((r.status, r.error().contains("csv or ndjson")), (400, true));
    assert_eq!(c.get("/api/v1/usage/export").await.status, 401);
}
