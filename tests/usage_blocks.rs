//! `GET /api/v1/usage/blocks` over real sockets: events go in through the sync port, and the
//! 5-hour blocks that come out equal an independent computation from the raw events in this
//! test (a block starts at the hour of the first event after the previous block ended). Costs
//! equal the usage API's for the block's hours; the active block has a projection; windows,
//! isolation and bad parameters.

mod common;

use common::usage::*;
use common::*;
use serde_json::Value;
use toki_sync::store::users::Role;

const BLOCK: i64 = 5 * HOUR;

struct Raw {
    ts: i64,
    total: u64,
    input: u64,
}

/// Blocks from raw events: (start ms, total tokens, events, input tokens), oldest first.
fn expected_blocks(mut events: Vec<&Raw>) -> Vec<(i64, u64, u64, u64)> {
    events.sort_by_key(|e| e.ts);
    let mut out: Vec<(i64, u64, u64, u64)> = Vec::new();
    for e in events {
        match out.last_mut() {
            Some(b) if e.ts < b.0 + BLOCK => {
                b.1 += e.total;
                b.2 += 1;
                b.3 += e.input;
            }
            _ => out.push((e.ts.div_euclid(HOUR) * HOUR, e.total, 1, e.input)),
        }
    }
    out
}

/// A small deterministic generator (no dependency, same events every run).
struct Lcg(u64);
impl Lcg {
    fn next(&mut self, n: u64) -> u64 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (self.0 >> 33) % n
    }
}

/// Five days of a person's usage: busy daytime hours with irregular pauses, quiet nights (so a
/// 4-hour gap comes at least once a day), ending with events minutes ago. Returns the events
/// with their (ts, tokens) for the batch.
fn workday_events(seed: u64, now: i64, codex: bool) -> Vec<(i64, [u64; 4])> {
    let mut rng = Lcg(seed);
    let first_hour = (now - 5 * DAY).div_euclid(HOUR);
    let last_hour = now.div_euclid(HOUR);
    let mut out = Vec::new();
    for h in first_hour..=last_hour {
        let local = h.rem_euclid(24);
        let recent = h >= last_hour - 1;
        if !recent && (!(7..21).contains(&local) || rng.next(4) == 0) {
            continue;
        }
        for _ in 0..1 + rng.next(3) {
            let ts = h * HOUR + rng.next(3_600_000) as i64;
            if ts >= now - 60_000 {
                continue;
            }
            let tokens = if codex {
                [100 + rng.next(900), 10 + rng.next(300), rng.next(50), rng.next(100)]
            } else {
                [rng.next(500), 10 + rng.next(900), rng.next(3000), rng.next(40000)]
            };
            out.push((ts, tokens));
        }
    }
    out.push((now - 2 * 60_000, [5, 6, 7, 8]));
    out
}

async fn sync_events(
    s: &TestServer,
    token: &str,
    provider: &str,
    key: &str,
    evs: &[(i64, [u64; 4])],
) -> Vec<Raw> {
    let ids: Vec<String> = (0..evs.len()).map(|i| format!("{provider}-msg-{i}")).collect();
    let batch: Vec<Ev<'_>> = evs
        .iter()
        .zip(&ids)
        .map(|((ts, tokens), id)| Ev {
            ts: *ts,
            id,
            model: if provider == "codex" { "gpt-5-codex" } else { "claude-sonnet-4-5-20250929" },
            session: "s",
            project: "p",
            tokens: *tokens,
        })
        .collect();
    sync(s, token, key, key, provider, &batch).await;
    evs.iter()
        .map(|(ts, t)| Raw {
            ts: *ts,
            total: if provider == "codex" { t[0] + t[1] } else { t.iter().sum() },
            input: t[0],
        })
        .collect()
}

fn provider<'a>(r: &'a Value, name: &str) -> &'a Value {
    r["providers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["provider"] == name)
        .unwrap_or_else(|| panic!("{name}: {r}"))
}

/// Compares one provider's answer with the blocks computed from its raw events.
fn check_provider(r: &Value, name: &str, raw: &[Raw], start: i64, end: i64, t0: i64, t1: i64) {
    let p = provider(r, name);
    assert_eq!(p["exact"], true, "{name}: nights give gaps of 4 hours");
    let want: Vec<_> = expected_blocks(raw.iter().collect())
        .into_iter()
        .filter(|b| b.0 + BLOCK > start && b.0 < end)
        .rev()
        .collect();
    let got = p["blocks"].as_array().unwrap();
    assert!(!want.is_empty());
    assert_eq!(got.len(), want.len(), "{name} [{start}, {end}): {got:?}\nwanted {want:?}");
    for (g, w) in got.iter().zip(&want) {
        assert_eq!(g["start_ts"].as_i64().unwrap() * 1000, w.0, "{name}: block start");
        assert_eq!(g["end_ts"].as_i64().unwrap() * 1000, w.0 + BLOCK);
        assert_eq!(
            (
                g["total"].as_u64().unwrap(),
                g["events"].as_u64().unwrap(),
                g["tokens"]["input"].as_u64().unwrap()
            ),
            (w.1, w.2, w.3),
            "{name}: sums of the block at {}",
            g["start"]
        );
        let block_end = w.0 + BLOCK;
        if !(t0..=t1).contains(&block_end) {
            assert_eq!(g["active"], w.0 <= t0 && t1 < block_end, "{name}: active flag of {}", g["start"]);
        }
    }
    match p["current"].as_object() {
        Some(cur) => {
            assert_eq!(Value::Object(cur.clone()), got[0], "the current block is the newest");
            let proj = &got[0]["projection"];
            assert!(proj["projected_total"].as_u64().unwrap() >= got[0]["total"].as_u64().unwrap());
            assert!(proj["remaining_secs"].as_i64().unwrap() <= 5 * 3600);
            assert!(proj["tokens_per_minute"].as_f64().unwrap() > 0.0);
        }
        None => assert!(
            got[0]["active"] == false
                && got.iter().all(|b| b["active"] == false && b.get("projection").is_none())
        ),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn blocks_equal_a_computation_from_the_raw_events() {
    let s = TestServer::start().await;
    let c = s.client();
    let (_, alice) = signed_in(&s, "alice", Role::User).await;
    let (_, bob) = signed_in(&s, "bob", Role::User).await;
    let now = toki_sync::store::now_ms();
    let claude = sync_events(&s, &alice, "claude_code", "laptop", &workday_events(1, now, false)).await;
    let codex = sync_events(&s, &alice, "codex", "desktop", &workday_events(2, now, true)).await;
    // Bob's usage is his own.
    sync_events(&s, &bob, "claude_code", "bob-laptop", &workday_events(3, now, false)).await;

    // The default window (the last day), then windows that begin inside a block and days back.
    let t0 = toki_sync::store::now_ms();
    let r = get_ok(&c, "/api/v1/usage/blocks", &alice).await;
    let t1 = toki_sync::store::now_ms();
    assert_eq!(r["block_hours"], 5);
    assert_eq!(r["providers"].as_array().unwrap().len(), 2, "{r}");
    check_provider(&r, "claude_code", &claude, t0 - DAY, t0, t0, t1);
    check_provider(&r, "codex", &codex, t0 - DAY, t0, t0, t1);
    // Events a minute ago: the newest block ends after them, and is active unless it just ended.
    let newest = &provider(&r, "claude_code")["blocks"][0];
    assert!(newest["end_ts"].as_i64().unwrap() * 1000 >= now - 2 * 60_000);

    for (from, to) in [(3 * DAY + 90 * 60_000, DAY), (4 * DAY + 17 * 60_000, 2 * DAY), (2 * DAY, 0)] {
        let (start, end) = ((now - from) / 1000 * 1000, (now - to) / 1000 * 1000);
        let path =
            format!("/api/v1/usage/blocks?start={}&end={}&utc_offset=%2B05:30", start / 1000, end / 1000);
        let r = get_ok(&c, &path, &alice).await;
        assert_eq!(r["utc_offset"], "+05:30");
        check_provider(&r, "claude_code", &claude, start, end, t0, t1);
        check_provider(&r, "codex", &codex, start, end, t0, t1);
        if to > 0 {
            assert!(
                provider(&r, "claude_code")["current"].is_null(),
                "a window in the past has no active block"
            );
        }
    }

    // A block's cost is the usage API's for its hours.
    let b = &provider(&r, "claude_code")["blocks"][1];
    let u = get_ok(
        &c,
        &format!(
            "/api/v1/usage?start={}&end={}&group_by=provider",
            b["start_ts"].as_i64().unwrap(),
            b["end_ts"].as_i64().unwrap()
        ),
        &alice,
    )
    .await;
    let series =
        u["series"].as_array().unwrap().iter().find(|s| s["group"]["provider"] == "claude_code").unwrap();
    assert_eq!(series["totals"]["total"], b["total"]);
    assert!((series["totals"]["cost_usd"].as_f64().unwrap() - b["cost_usd"].as_f64().unwrap()).abs() < 1e-5);

    // Nobody else's usage; a user without usage gets no providers.
    let (_, carol) = signed_in(&s, "carol", Role::User).await;
    assert_eq!(get_ok(&c, "/api/v1/usage/blocks", &carol).await["providers"], serde_json::json!([]));
    assert_eq!(c.get("/api/v1/usage/blocks").await.status, 401);
    for (query, needle) in [
        ("start=2026-03-02T00:00:00Z&end=2026-03-01T00:00:00Z", "start: must be before end"),
        ("start=2026-01-01T00:00:00Z&end=2026-03-01T00:00:00Z", "start: the window is at most 31 days"),
        ("start=yesterday", "start: expected RFC 3339"),
        ("utc_offset=%2B99:00", "utc_offset:"),
    ] {
        let r = c.get_auth(&format!("/api/v1/usage/blocks?{query}"), &alice).await;
        assert_eq!(r.status, 400, "{query}");
        assert!(r.error().starts_with(needle), "{query}: {}", r.error());
    }
}

/// Usage in every 5-hour stretch of the whole look-back: the blocks cannot be exact, and say so.
#[tokio::test(flavor = "multi_thread")]
async fn unbroken_usage_is_marked_inexact() {
    let s = TestServer::start().await;
    let c = s.client();
    let (_, dave) = signed_in(&s, "dave", Role::User).await;
    let now = toki_sync::store::now_ms();
    let evs: Vec<(i64, [u64; 4])> = (1..9 * 12).map(|i| (now - i * 2 * HOUR, [1, 2, 3, 4])).collect();
    sync_events(&s, &dave, "claude_code", "box", &evs).await;
    let r = get_ok(&c, "/api/v1/usage/blocks", &dave).await;
    let p = provider(&r, "claude_code");
    assert_eq!(p["exact"], false, "{p}");
    assert!(p["blocks"].as_array().unwrap().len() >= 4);
}
