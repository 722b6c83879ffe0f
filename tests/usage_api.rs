//! The native usage API (`GET /api/v1/usage`) over real sockets: events go in through the sync
//! port, sums come out of the rollups. Grouping, steps, UTC offsets, scopes and their
//! authorization, cost math, the price override file, bad parameters; and what the server says
//! about VictoriaMetrics when none is configured.

mod common;

use common::usage::*;
use common::*;
use serde_json::{Value, json};
use toki_sync::store::teams::TeamRole;
use toki_sync::store::users::Role;

const LOCAL: &str = "my-local-model";

/// Alice's usage, relative to the UTC midnight `d`: three Claude events on a laptop, two Codex
/// events on a desktop (one of an unpriced model).
async fn alice_usage(s: &TestServer, token: &str, d: i64) {
    let claude = alice_claude(d);
    sync(s, token, "k-laptop", "laptop", "claude_code", &claude).await;
    let codex = [
        Ev {
            ts: d + 5 * HOUR,
            id: "codex",
            model: CODEX,
            session: "s3",
            project: "beta",
            tokens: [1000, 500, 100, 400],
        },
        Ev {
            ts: d + 5 * HOUR + 1000,
            id: "codex",
            model: LOCAL,
            session: "s3",
            project: "beta",
            tokens: [10, 10, 0, 0],
        },
    ];
    sync(s, token, "k-desktop", "desktop", "codex", &codex).await;
}

fn window(d: i64, from: i64, to: i64) -> String {
    format!("start={}&end={}", (d + from) / 1000, (d + to) / 1000)
}

/// `series[].group[key]` -> series, for one grouping key.
fn by<'a>(report: &'a Value, key: &str) -> std::collections::HashMap<String, &'a Value> {
    report["series"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["group"][key].as_str().unwrap().to_owned(), s))
        .collect()
}

fn close(a: &Value, b: f64) -> bool {
    (a.as_f64().unwrap() - b).abs() < 1e-9
}

#[tokio::test(flavor = "multi_thread")]
async fn totals_grouping_and_costs() {
    let s = TestServer::start().await;
    let c = s.client();
    let (_, alice) = signed_in(&s, "alice", Role::User).await;
    let d = midnight_days_ago(10);
    alice_usage(&s, &alice, d).await;

    let r = get_ok(&c, &format!("/api/v1/usage?{}", window(d, 0, 2 * DAY)), &alice).await;
    assert_eq!(
        r["totals"]["tokens"],
        json!({"input": 2021, "output": 732, "cache_create": 3003, "cache_read": 40004, "reasoning_output": 100, "cached_input": 400})
    );
    assert_eq!((r["totals"]["total"].as_u64(), r["totals"]["events"].as_u64()), (Some(45760), Some(5)));
    // sonnet 0.02925 + 0.00004545, opus 0.00165, gpt-5-codex (600 uncached + 500 out + 400 cached) 0.0058
    assert!(close(&r["totals"]["cost_usd"], 0.036745), "{}", r["totals"]);
    assert_eq!(r["unpriced_models"], json!([LOCAL]));
    assert_eq!(r["series"].as_array().unwrap().len(), 1, "no grouping: one series");
    assert!(r["series"][0].get("points").is_none(), "no step: totals only");
    assert_eq!(r["start"], rfc(d));
    assert_eq!(r["step"], Value::Null);

    let r = get_ok(&c, &format!("/api/v1/usage?{}&group_by=model", window(d, 0, 2 * DAY)), &alice).await;
    let m = by(&r, "model");
    assert_eq!(m.len(), 4);
    assert_eq!(m[SONNET]["totals"]["tokens"]["cache_read"], 40004);
    assert_eq!(
        (m[SONNET]["totals"]["events"].as_u64(), m[SONNET]["totals"]["total"].as_u64()),
        (Some(2), Some(44210))
    );
    assert!(close(&m[OPUS]["totals"]["cost_usd"], 0.00165));
    assert!(close(&m[CODEX]["totals"]["cost_usd"], 0.0058));
    assert!(close(&m[LOCAL]["totals"]["cost_usd"], 0.0));
    assert_eq!(r["series"][0]["group"]["model"], SONNET, "largest first");

    // Per column: each series' total is its column; costs split by column and add up.
    let r = get_ok(&c, &format!("/api/v1/usage?{}&group_by=type", window(d, 0, 2 * DAY)), &alice).await;
    let t = by(&r, "type");
    assert_eq!(t["input"]["totals"]["total"], 2021);
    assert_eq!(t["input"]["totals"]["tokens"], json!({"input": 2021}));
    assert!(close(&t["input"]["totals"]["cost_usd"], 0.003903), "{}", t["input"]["totals"]);
    assert!(close(&t["cached_input"]["totals"]["cost_usd"], 0.00005));
    assert!(close(&t["reasoning_output"]["totals"]["cost_usd"], 0.0));
    // Exactly, to the micro-dollar: the costs are rounded once, together.
    let micro = |v: &Value| (v.as_f64().unwrap() * 1e6).round() as i64;
    let sum: i64 = t.values().map(|s| micro(&s["totals"]["cost_usd"])).sum();
    assert_eq!(sum, micro(&r["totals"]["cost_usd"]), "{}", r["series"]);
    assert_eq!(sum, 36745);

    let r = get_ok(&c, &format!("/api/v1/usage?{}&group_by=device,provider", window(d, 0, 2 * DAY)), &alice)
        .await;
    let dev = by(&r, "device_name");
    assert_eq!(
        (dev["laptop"]["group"]["provider"].as_str(), dev["laptop"]["totals"]["events"].as_u64()),
        (Some("claude_code"), Some(3))
    );
    assert_eq!(dev["desktop"]["totals"]["tokens"]["cached_input"], 400);
    let devices = get_ok(&c, "/me/devices", &alice).await;
    let laptop_id =
        devices["devices"].as_array().unwrap().iter().find(|d| d["name"] == "laptop").unwrap()["id"].clone();
    assert_eq!(dev["laptop"]["group"]["device"], laptop_id);

    let r =
        get_ok(&c, &format!("/api/v1/usage?{}&group_by=project,model", window(d, 0, 2 * DAY)), &alice).await;
    let rows: Vec<(String, String, u64)> = r["series"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["group"]["project"].as_str().unwrap().into(),
                s["group"]["model"].as_str().unwrap().into(),
                s["totals"]["events"].as_u64().unwrap(),
            )
        })
        .collect();
    for want in
        [("alpha", SONNET, 1), ("alpha", OPUS, 1), ("", SONNET, 1), ("beta", CODEX, 1), ("beta", LOCAL, 1)]
    {
        assert!(rows.contains(&(want.0.into(), want.1.into(), want.2)), "{want:?} in {rows:?}");
    }

    // A window not on hour boundaries is widened to whole hours.
    let r = get_ok(&c, &format!("/api/v1/usage?{}", window(d, HOUR + 30 * 60_000, 2 * HOUR - 1000)), &alice)
        .await;
    assert_eq!(
        (r["start"].clone(), r["end"].clone(), r["totals"]["events"].as_u64()),
        (rfc(d + HOUR), rfc(d + 2 * HOUR), Some(1))
    );
    // RFC 3339 and milliseconds work as well.
    let q = format!("start={}&end={}", enc(rfc(d + 23 * HOUR).as_str().unwrap()), d + DAY);
    assert_eq!(get_ok(&c, &format!("/api/v1/usage?{q}"), &alice).await["totals"]["tokens"]["output"], 20);
}

fn rfc(ms: i64) -> Value {
    json!(
        time::OffsetDateTime::from_unix_timestamp(ms / 1000)
            .unwrap()
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap()
    )
}

fn points(series: &Value) -> Vec<(i64, u64)> {
    series["points"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["ts"].as_i64().unwrap() * 1000, p["events"].as_u64().unwrap()))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn steps_and_utc_offsets() {
    let s = TestServer::start().await;
    let c = s.client();
    let (_, alice) = signed_in(&s, "alice", Role::User).await;
    let d = midnight_days_ago(10);
    alice_usage(&s, &alice, d).await;
    let w = window(d, 0, 2 * DAY);

    let r = get_ok(&c, &format!("/api/v1/usage?{w}&step=1d"), &alice).await;
    assert_eq!(points(&r["series"][0]), vec![(d, 4), (d + DAY, 1)]);
    assert_eq!(r["series"][0]["points"][0]["start"], rfc(d));
    assert_eq!(r["series"][0]["points"][1]["tokens"]["cache_read"], 4);

    // At +02:00, 23:30Z is the next local day; local days start at 22:00Z.
    let r = get_ok(&c, &format!("/api/v1/usage?{w}&step=1d&utc_offset=%2B02:00"), &alice).await;
    assert_eq!(points(&r["series"][0]), vec![(d - 2 * HOUR, 3), (d + DAY - 2 * HOUR, 2)]);
    let start = r["series"][0]["points"][0]["start"].as_str().unwrap();
    assert!(start.ends_with("T00:00:00+02:00"), "{start}");
    assert_eq!(r["utc_offset"], "+02:00");
    // An unencoded + arrives as a space and still means +.
    let same = get_ok(&c, &format!("/api/v1/usage?{w}&step=1d&utc_offset=+02:00"), &alice).await;
    assert_eq!(points(&same["series"][0]), points(&r["series"][0]));
    // At -05:00, 01:10Z belongs to the previous local day.
    let r = get_ok(&c, &format!("/api/v1/usage?{w}&step=1d&utc_offset=-05:00"), &alice).await;
    assert_eq!(points(&r["series"][0]), vec![(d - DAY + 5 * HOUR, 1), (d + 5 * HOUR, 4)]);

    let r = get_ok(&c, &format!("/api/v1/usage?{w}&step=1h&group_by=model"), &alice).await;
    assert_eq!(points(by(&r, "model")[SONNET]), vec![(d + HOUR, 1), (d + DAY + 2 * HOUR, 1)]);
    assert_eq!(points(by(&r, "model")[CODEX]), vec![(d + 5 * HOUR, 1)]);

    // Weeks start on Monday (day 0 of the epoch was a Thursday).
    let monday = |ms: i64| {
        let day = ms.div_euclid(DAY);
        (day - (day + 3).rem_euclid(7)) * DAY
    };
    let mut want: Vec<(i64, u64)> = Vec::new();
    for ts in [d + HOUR, d + 5 * HOUR, d + 5 * HOUR, d + 23 * HOUR, d + DAY + 2 * HOUR] {
        match want.iter_mut().find(|(w, _)| *w == monday(ts)) {
            Some(slot) => slot.1 += 1,
            None => want.push((monday(ts), 1)),
        }
    }
    let r = get_ok(&c, &format!("/api/v1/usage?{w}&step=1w"), &alice).await;
    assert_eq!(points(&r["series"][0]), want);
    let when = r["series"][0]["points"][0]["start"].as_str().unwrap();
    let parsed = time::OffsetDateTime::parse(when, &time::format_description::well_known::Rfc3339).unwrap();
    assert_eq!(parsed.weekday(), time::Weekday::Monday);
}

#[tokio::test(flavor = "multi_thread")]
async fn scopes_and_their_authorization() {
    let s = TestServer::start().await;
    let c = s.client();
    let (alice_user, alice) = signed_in(&s, "alice", Role::User).await;
    let (bob_user, bob) = signed_in(&s, "bob", Role::User).await;
    let (_, carol) = signed_in(&s, "carol", Role::User).await;
    let admin = c.admin_token().await;
    let d = midnight_days_ago(3);
    let one = |id: &'static str, n: u64| {
        [Ev { ts: d + HOUR, id, model: SONNET, session: "s", project: "p", tokens: [n, 0, 0, 0] }]
    };
    sync(&s, &alice, "a", "a", "claude_code", &one("msg_a", 1)).await;
    sync(&s, &bob, "b", "b", "claude_code", &one("msg_b", 10)).await;
    sync(&s, &carol, "c", "c", "claude_code", &one("msg_c", 100)).await;
    let team = s.app().store.create_team("eng", 1).unwrap();
    s.app().store.add_team_member(team.id, alice_user.id, TeamRole::Member, 1).unwrap();
    s.app().store.add_team_member(team.id, bob_user.id, TeamRole::Member, 1).unwrap();
    let w = window(d, 0, DAY);
    let input = |r: &Value| r["totals"]["tokens"]["input"].as_u64().unwrap();

    assert_eq!(input(&get_ok(&c, &format!("/api/v1/usage?{w}"), &alice).await), 1);
    assert_eq!(input(&get_ok(&c, &format!("/api/v1/usage?{w}&user={}", alice_user.uuid), &alice).await), 1);
    assert_eq!(input(&get_ok(&c, &format!("/api/v1/usage?{w}&team={}", team.uuid), &alice).await), 11);
    let per_user = get_ok(&c, &format!("/api/v1/usage?{w}&team={}&group_by=user", team.uuid), &bob).await;
    let users = by(&per_user, "username");
    assert_eq!(
        (users.len(), users["alice"]["group"]["user"].as_str()),
        (2, Some(alice_user.uuid.to_string().as_str()))
    );
    assert_eq!(
        input(&get_ok(&c, &format!("/api/v1/usage?{w}&team={}", team.uuid), &admin).await),
        11,
        "admins may read any team"
    );
    assert_eq!(input(&get_ok(&c, &format!("/api/v1/usage?{w}&all=true"), &admin).await), 111);
    assert_eq!(input(&get_ok(&c, &format!("/api/v1/usage?{w}&all"), &admin).await), 111);
    assert_eq!(input(&get_ok(&c, &format!("/api/v1/usage?{w}&user={}", bob_user.uuid), &admin).await), 10);

    for (token, query, status, message) in [
        (&carol, format!("team={}", team.uuid), 403, "team: you are not a member of this team"),
        (&alice, format!("user={}", bob_user.uuid), 403, "user: only admins can read another user's usage"),
        (&alice, "all=true".to_owned(), 403, "all: only admins can read everyone's usage"),
        (&admin, format!("team={}", uuid::Uuid::new_v4()), 404, "team not found"),
        (&admin, format!("user={}", uuid::Uuid::new_v4()), 404, "user not found"),
        (&alice, "team=eng".to_owned(), 400, "team: expected a team id (UUID), got \"eng\""),
        (&alice, "user=alice".to_owned(), 400, "user: expected a user id (UUID), got \"alice\""),
        (&admin, format!("all=true&team={}", team.uuid), 400, "team, user, all: give at most one scope"),
        (&admin, "all=maybe".to_owned(), 400, "all: expected true or false, got \"maybe\""),
    ] {
        let r = c.get_auth(&format!("/api/v1/usage?{w}&{query}"), token).await;
        assert_eq!((r.status, r.error().as_str()), (status, message), "{query}");
    }
    assert_eq!(c.get("/api/v1/usage").await.status, 401);
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_parameters_are_400_naming_the_parameter() {
    let s = TestServer::start().await;
    let c = s.client();
    let (_, alice) = signed_in(&s, "alice", Role::User).await;
    for (query, starts) in [
        ("start=yesterday", "start: expected RFC 3339"),
        ("end=-1", "end: expected"),
        ("start=1700000000&end=1600000000", "start: must be before end"),
        ("step=5m", "step: must be 1h, 1d or 1w"),
        ("step=1h&start=2020-01-01T00:00:00Z", "step: 1h over this window gives"),
        ("group_by=model,colour", "group_by: unknown key \"colour\""),
        ("utc_offset=Europe/Paris", "utc_offset: expected Z or an offset"),
        ("start=99999999999999999999", "start: expected"),
    ] {
        let r = c.get_auth(&format!("/api/v1/usage?{query}"), &alice).await;
        assert_eq!(r.status, 400, "{query}: {}", r.text());
        assert!(r.error().starts_with(starts), "{query}: {}", r.error());
    }
    // A year of days is fine, as are unknown parameters (cache busters).
    get_ok(&c, "/api/v1/usage?start=2025-01-01T00:00:00Z&end=2026-01-01T00:00:00Z&step=1d&_=123", &alice)
        .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn price_override_file_applies_to_history() {
    let dir = tempfile::tempdir().unwrap();
    let prices = dir.path().join("prices.toml");
    std::fs::write(
        &prices,
        "[models.\"claude-sonnet-4-5\"]\ninput = 100000\noutput = 0\ncache_write = 0\ncache_read = 0\n\
         [models.\"my-local\"]\ninput = 2\noutput = 4\ncache_write = 0\ncache_read = 0\n",
    )
    .unwrap();
    let file = prices.clone();
    let s = TestServer::start_with(move |cfg| cfg.pricing.file = Some(file)).await;
    let c = s.client();
    let (_, alice) = signed_in(&s, "alice", Role::User).await;
    let d = midnight_days_ago(10);
    alice_usage(&s, &alice, d).await;
    let r = get_ok(&c, &format!("/api/v1/usage?{}&group_by=model", window(d, 0, 2 * DAY)), &alice).await;
    let m = by(&r, "model");
    // 1001 input tokens at 100,000 USD per million; my-local-model at 2 and 4 USD per million.
    assert!(close(&m[SONNET]["totals"]["cost_usd"], 100.1), "{}", m[SONNET]["totals"]);
    assert!(close(&m[LOCAL]["totals"]["cost_usd"], 0.00006));
    assert!(close(&m[OPUS]["totals"]["cost_usd"], 0.00165), "built-in prices stay");
    assert_eq!(r["unpriced_models"], json!([]));

    // A bad file stops start-up with a message naming it.
    std::fs::write(&prices, "[models.x]\ninput = -1\n").unwrap();
    let mut cfg = test_config(dir.path());
    cfg.pricing.file = Some(prices);
    let listeners = toki_sync::Listeners::bind(&cfg).unwrap();
    let err = toki_sync::launch(cfg, listeners, std::future::pending()).await.err().expect("refused");
    assert!(err.contains("prices.toml") && err.contains("models.\"x\""), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn without_victoriametrics_the_proxy_is_503_and_the_outbox_keeps_history() {
    let s = TestServer::start().await;
    let c = s.client();
    let (_, alice) = signed_in(&s, "alice", Role::User).await;
    alice_usage(&s, &alice, midnight_days_ago(10)).await;
    let team = s.app().store.create_team("t", 1).unwrap();
    for path in [
        "/api/v1/query?query=up".to_owned(),
        "/api/v1/query_range?query=up&start=0&end=1&step=1".into(),
        format!("/api/v1/teams/{}/query_range?query=up", team.uuid),
    ] {
        let r = c.get_auth(&path, &alice).await;
        assert_eq!(r.status, 503, "{path}");
        assert_eq!(r.json(), json!({"error": "PromQL proxy not available: VictoriaMetrics not configured"}));
        assert_eq!(c.get(&path).await.status, 401, "authentication comes first");
    }
    let me = get_ok(&c, "/me", &alice).await;
    assert_eq!(me["victoriametrics"]["configured"], false);
    // Every bucket waits, so configuring VictoriaMetrics later backfills all of it.
    let info = get_ok(&c, "/admin/server-info", &c.admin_token().await).await;
    let oldest = rfc(midnight_days_ago(10) + HOUR);
    assert_eq!(
        info["victoriametrics"],
        json!({"configured": false, "outbox": {"buckets": 5, "deletions": 0}, "outbox_oldest_hour": oldest})
    );
    assert_eq!(
        (
            me["victoriametrics"]["outbox_pending"].clone(),
            me["victoriametrics"]["outbox_oldest_hour"].clone()
        ),
        (json!(5), oldest.clone())
    );
    // /me shows the caller's own backlog, not the server's.
    let (_, bob) = signed_in(&s, "bob", Role::User).await;
    assert_eq!(
        get_ok(&c, "/me", &bob).await["victoriametrics"],
        json!({"configured": false, "outbox_pending": 0, "outbox_oldest_hour": null})
    );
    let d = midnight_days_ago(2);
    sync(
        &s,
        &bob,
        "b",
        "b",
        "claude_code",
        &[Ev {
            ts: d + 5 * HOUR,
            id: "msg_b",
            model: SONNET,
            session: "s",
            project: "",
            tokens: [1, 1, 1, 1],
        }],
    )
    .await;
    assert_eq!(
        get_ok(&c, "/me", &bob).await["victoriametrics"],
        json!({"configured": false, "outbox_pending": 1, "outbox_oldest_hour": rfc(d + 5 * HOUR)})
    );
    assert_eq!(get_ok(&c, "/me", &alice).await["victoriametrics"]["outbox_pending"], 5);
    let info = get_ok(&c, "/admin/server-info", &c.admin_token().await).await;
    assert_eq!(info["victoriametrics"]["outbox"]["buckets"], 6);
    assert_eq!(info["victoriametrics"]["outbox_oldest_hour"], oldest, "the oldest over all users");
}
