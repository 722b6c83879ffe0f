//! Against a real VictoriaMetrics (started by each test on a loopback port, with the flags the
//! README requires): PromQL sums equal the native API's after retransmissions, replaced Claude
//! messages (also across hours and models) and device deletion; a VictoriaMetrics outage during
//! ingest ends with complete data; one user cannot see another's data through crafted queries;
//! team queries see exactly the team; a VictoriaMetrics without hourly deduplication gets nothing
//! until it is fixed; buckets far in the future wait.

mod common;

use std::collections::BTreeMap;
use std::future::Future;
use std::time::{Duration, Instant};

use common::usage::*;
use common::vm::{REQUIRED_FLAGS, VictoriaMetrics, available};
use common::*;
use serde_json::{Value, json};
use toki_sync::store::teams::TeamRole;
use toki_sync::store::users::Role;

/// A Sonnet event `i` hours after `d`, with `10 * i` input tokens.
fn hourly(d: i64, i: i64, id: &'static str) -> Ev<'static> {
    Ev { ts: d + i * HOUR, id, model: SONNET, session: "s", project: "p", tokens: [10 * i as u64, 1, 2, 3] }
}

async fn server_for(vm: &VictoriaMetrics) -> TestServer {
    let url = vm.url();
    TestServer::start_with(move |cfg| cfg.backend.vm_url = Some(url)).await
}

/// Retries `check` until it passes; fails with its last complaint after `secs` seconds.
async fn eventually<F, Fut>(what: &str, secs: u64, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<(), String>>,
{
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        match check().await {
            Ok(()) => return,
            Err(e) if Instant::now() > deadline => panic!("{what}: still not true after {secs} s: {e}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(250)).await,
        }
    }
}

async fn drained(s: &TestServer) {
    let app = s.app().clone();
    eventually("outbox drained", 120, || {
        let app = app.clone();
        async move {
            let b = app.store.vm_backlog().map_err(|e| e.to_string())?;
            if b.is_empty() { Ok(()) } else { Err(format!("{b:?} waiting")) }
        }
    })
    .await;
}

/// A PromQL request as Grafana sends it: `POST` with the parameters in a form body.
async fn post_form(c: &Client, path: &str, token: &str, form: &str) -> Resp {
    let auth = format!("Bearer {token}");
    let headers = [("Authorization", auth.as_str()), ("Content-Type", "application/x-www-form-urlencoded")];
    c.raw("POST", path, &headers, Some(form.as_bytes())).await
}

async fn promql(c: &Client, token: &str, query: &str, time_ms: i64) -> Value {
    let r = c.get_auth(&format!("/api/v1/query?query={}&time={}", enc(query), time_ms / 1000), token).await;
    assert_eq!(r.status, 200, "{query}: {}", r.text());
    r.json()
}

/// Labels (`keys`, joined by '/') -> value, leaving out zeros (a value that dropped to zero is
/// still a series in VictoriaMetrics, and absent from the native API).
fn promql_map(v: &Value, keys: &[&str]) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    for s in v["data"]["result"].as_array().unwrap() {
        let key = keys
            .iter()
            .map(|k| s["metric"][*k].as_str().unwrap_or("").to_owned())
            .collect::<Vec<_>>()
            .join("/");
        let n: f64 = s["value"][1].as_str().unwrap().parse().unwrap();
        if n != 0.0 {
            out.insert(key, n as u64);
        }
    }
    out
}

/// The native API's view of the same: (model/type -> tokens, model -> events, model -> total).
async fn native(
    c: &Client,
    token: &str,
    start: i64,
    end: i64,
) -> (BTreeMap<String, u64>, BTreeMap<String, u64>, BTreeMap<String, u64>) {
    let path = format!("/api/v1/usage?start={}&end={}&group_by=model", start / 1000, end / 1000);
    let r = get_ok(c, &path, token).await;
    let (mut tokens, mut events, mut totals) = (BTreeMap::new(), BTreeMap::new(), BTreeMap::new());
    for s in r["series"].as_array().unwrap() {
        let model = s["group"]["model"].as_str().unwrap();
        for (col, n) in s["totals"]["tokens"].as_object().unwrap() {
            if n.as_u64().unwrap() != 0 {
                tokens.insert(format!("{model}/{col}"), n.as_u64().unwrap());
            }
        }
        events.insert(model.to_owned(), s["totals"]["events"].as_u64().unwrap());
        totals.insert(model.to_owned(), s["totals"]["total"].as_u64().unwrap());
    }
    (tokens, events, totals)
}

/// PromQL (through the proxy) and the native API agree on [start, end) (whole hours), in total
/// and day by day.
async fn agree(c: &Client, token: &str, start: i64, end: i64) -> Result<(), String> {
    let window = format!("{}s", (end - start) / 1000);
    let (tokens, events, totals) = native(c, token, start, end).await;
    let q = |m: &str, by: &str| format!("sum by ({by}) (sum_over_time({m}[{window}]))");
    let got =
        promql_map(&promql(c, token, &q("toki_tokens_total", "model, type"), end).await, &["model", "type"]);
    if got != tokens {
        return Err(format!("tokens: PromQL {got:?} != native {tokens:?}"));
    }
    let got = promql_map(&promql(c, token, &q("toki_events_total", "model"), end).await, &["model"]);
    if got != events {
        return Err(format!("events: PromQL {got:?} != native {events:?}"));
    }
    let got = promql_map(&promql(c, token, &q("toki_usage_total", "model"), end).await, &["model"]);
    if got != totals {
        return Err(format!("usage totals: PromQL {got:?} != native {totals:?}"));
    }
    // Day by day: the point at t covers (t - 1d, t], the native day [t - 1d, t).
    let r = c
        .get_auth(
            &format!(
                "/api/v1/query_range?query={}&start={}&end={}&step=1d",
                enc("sum by (model) (sum_over_time(toki_tokens_total{type=\"input\"}[1d]))"),
                (start + DAY) / 1000,
                end / 1000
            ),
            token,
        )
        .await;
    let mut got = BTreeMap::new();
    for s in r.json()["data"]["result"].as_array().unwrap() {
        for p in s["values"].as_array().unwrap() {
            let n: f64 = p[1].as_str().unwrap().parse().unwrap();
            if n != 0.0 {
                got.insert(
                    format!(
                        "{}@{}",
                        s["metric"]["model"].as_str().unwrap(),
                        p[0].as_i64().unwrap() * 1000 - DAY
                    ),
                    n as u64,
                );
            }
        }
    }
    let daily = get_ok(
        c,
        &format!("/api/v1/usage?start={}&end={}&group_by=model&step=1d", start / 1000, end / 1000),
        token,
    )
    .await;
    let mut want = BTreeMap::new();
    for s in daily["series"].as_array().unwrap() {
        for p in s["points"].as_array().unwrap() {
            let n = p["tokens"]["input"].as_u64().unwrap();
            if n != 0 {
                want.insert(
                    format!("{}@{}", s["group"]["model"].as_str().unwrap(), p["ts"].as_i64().unwrap() * 1000),
                    n,
                );
            }
        }
    }
    if got != want {
        return Err(format!("daily input: PromQL {got:?} != native {want:?}"));
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn promql_equals_native_after_resends_replacements_and_deletion() {
    if !available("promql_equals_native_after_resends_replacements_and_deletion") {
        return;
    }
    let vm = VictoriaMetrics::start();
    let s = server_for(&vm).await;
    let c = s.client();
    let (_, alice) = signed_in(&s, "alice", Role::User).await;
    let d = midnight_days_ago(5);
    let (start, end) = (d, d + 3 * DAY);

    let first = [
        Ev {
            ts: d + 10 * 60_000,
            id: "msg_1",
            model: SONNET,
            session: "s1",
            project: "alpha",
            tokens: [100, 50, 10, 1000],
        },
        Ev {
            ts: d + HOUR + 5 * 60_000,
            id: "msg_2",
            model: OPUS,
            session: "s1",
            project: "alpha",
            tokens: [200, 20, 0, 500],
        },
        Ev {
            ts: d + 59 * 60_000,
            id: "msg_4",
            model: SONNET,
            session: "s1",
            project: "alpha",
            tokens: [7, 7, 7, 7],
        },
        Ev {
            ts: d + 2 * HOUR + 10 * 60_000,
            id: "msg_5",
            model: SONNET,
            session: "s1",
            project: "",
            tokens: [5, 5, 5, 5],
        },
        Ev {
            ts: d + DAY + HOUR,
            id: "msg_3",
            model: SONNET,
            session: "s2",
            project: "beta",
            tokens: [1, 2, 3, 4],
        },
    ];
    sync(&s, &alice, "laptop", "laptop", "claude_code", &first).await;
    // Retransmitted, twice: nothing changes.
    sync(&s, &alice, "laptop", "laptop", "claude_code", &first).await;
    sync(&s, &alice, "laptop", "laptop", "claude_code", &first[1..3]).await;
    let codex = [
        Ev {
            ts: d + 3 * HOUR,
            id: "codex",
            model: "gpt-5-codex",
            session: "s3",
            project: "alpha",
            tokens: [1000, 300, 100, 600],
        },
        Ev {
            ts: d + 3 * HOUR + 1,
            id: "codex",
            model: "gpt-5-codex",
            session: "s3",
            project: "alpha",
            tokens: [10, 3, 1, 6],
        },
    ];
    let desktop = sync(&s, &alice, "desktop", "desktop", "codex", &codex).await;
    sync(&s, &alice, "desktop", "desktop", "codex", &codex).await;
    drained(&s).await;
    eventually("PromQL agrees with the native API after resends", 60, || agree(&c, &alice, start, end)).await;
    let (tokens, ..) = native(&c, &alice, start, end).await;
    assert_eq!(tokens[&format!("{SONNET}/input")], 113, "resends counted once");

    // Later versions replace earlier ones: msg_4 moves to the next hour and to another model
    // (its old bucket keeps msg_1 only); msg_5 moves out of its hour entirely, so that bucket
    // and all its columns drop to zero; msg_1 shrinks in place.
    let later = [
        Ev {
            ts: d + HOUR + 2 * 60_000,
            id: "msg_4",
            model: OPUS,
            session: "s1",
            project: "alpha",
            tokens: [70, 70, 0, 0],
        },
        Ev { ts: d + 4 * HOUR, id: "msg_5", model: OPUS, session: "s1", project: "", tokens: [50, 0, 0, 0] },
        Ev {
            ts: d + 20 * 60_000,
            id: "msg_1",
            model: SONNET,
            session: "s1",
            project: "alpha",
            tokens: [100, 60, 0, 0],
        },
    ];
    sync(&s, &alice, "laptop", "laptop", "claude_code", &later).await;
    drained(&s).await;
    eventually("PromQL agrees with the native API after replacements", 60, || agree(&c, &alice, start, end))
        .await;
    let (tokens, events, _) = native(&c, &alice, start, end).await;
    assert_eq!(
        (tokens[&format!("{SONNET}/input")], tokens[&format!("{OPUS}/input")], events[SONNET]),
        (101, 320, 2)
    );
    assert_eq!(tokens[&format!("{SONNET}/cache_create")], 3, "msg_4 and msg_5 took theirs to Opus");

    // Deleting a device deletes its series.
    let r = c.send_auth("DELETE", &format!("/me/devices/{desktop}"), &alice, None).await;
    assert_eq!(r.status, 200, "{}", r.text());
    drained(&s).await;
    eventually("PromQL agrees with the native API after a device deletion", 60, || {
        agree(&c, &alice, start, end)
    })
    .await;
    let direct = vm.query(&format!("count(last_over_time({{device=\"{desktop}\"}}[30d]))"), end / 1000);
    assert_eq!(direct["data"]["result"], json!([]), "no series of the deleted device remain");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_outage_during_ingest_loses_nothing() {
    if !available("an_outage_during_ingest_loses_nothing") {
        return;
    }
    let mut vm = VictoriaMetrics::start();
    let s = server_for(&vm).await;
    let c = s.client();
    let (_, alice) = signed_in(&s, "alice", Role::User).await;
    let admin = c.admin_token().await;
    let d = midnight_days_ago(4);
    let ev = |i, id| hourly(d, i, id);
    sync(&s, &alice, "laptop", "laptop", "claude_code", &[ev(1, "msg_1"), ev(2, "msg_2")]).await;
    drained(&s).await;

    vm.stop();
    // Ingest goes on (every batch is acknowledged) while VictoriaMetrics is down.
    sync(&s, &alice, "laptop", "laptop", "claude_code", &[ev(3, "msg_3"), ev(30, "msg_4")]).await;
    sync(
        &s,
        &alice,
        "laptop",
        "laptop",
        "claude_code",
        &[Ev { tokens: [99, 9, 9, 9], ..ev(2, "msg_2") }, ev(40, "msg_6")],
    )
    .await;
    let app = s.app().clone();
    eventually("the failure is reported", 30, || {
        let (c, admin, app) = (c, admin.clone(), app.clone());
        async move {
            let info = get_ok(&c, "/admin/server-info", &admin).await["victoriametrics"].clone();
            let backlog = app.store.vm_backlog().map_err(|e| e.to_string())?;
            if info["configured"] == true
                && info["last_error"].is_string()
                && info["failing_since"].is_string()
                && backlog.buckets > 0
            {
                Ok(())
            } else {
                Err(format!("{info} {backlog:?}"))
            }
        }
    })
    .await;
    assert!(get_ok(&c, "/me", &alice).await["victoriametrics"]["outbox_pending"].as_u64().unwrap() > 0);

    vm.restart();
    drained(&s).await;
    eventually("PromQL agrees with the native API after the outage", 60, || {
        agree(&c, &alice, d, d + 2 * DAY)
    })
    .await;
    let info = get_ok(&c, "/admin/server-info", &admin).await["victoriametrics"].clone();
    assert_eq!(
        (info["failing_since"].clone(), info["outbox"].clone()),
        (Value::Null, json!({"buckets": 0, "deletions": 0}))
    );
    assert!(info["last_push_at"].is_string() && info["buckets_sent"].as_u64().unwrap() >= 6, "{info}");
}

/// Every sample of a result: (labels, value).
fn samples(v: &Value) -> Vec<(Value, f64)> {
    let mut out = Vec::new();
    for s in v["data"]["result"].as_array().unwrap() {
        let values = match s.get("values") {
            Some(vals) => vals.as_array().unwrap().clone(),
            None => vec![s["value"].clone()],
        };
        for p in values {
            out.push((s["metric"].clone(), p[1].as_str().unwrap().parse().unwrap()));
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn users_are_isolated_and_teams_see_exactly_the_team() {
    if !available("users_are_isolated_and_teams_see_exactly_the_team") {
        return;
    }
    let vm = VictoriaMetrics::start();
    let s = server_for(&vm).await;
    let c = s.client();
    let (alice_user, alice) = signed_in(&s, "alice", Role::User).await;
    let (bob_user, bob) = signed_in(&s, "bob", Role::User).await;
    let (carol_user, carol) = signed_in(&s, "carol", Role::User).await;
    let d = midnight_days_ago(3);
    // Alice's numbers are huge and Bob's small, so any leak is visible in the values.
    let one = |id: &'static str, n: u64| {
        [Ev { ts: d + HOUR, id, model: SONNET, session: "s", project: "p", tokens: [n, n, 0, 0] }]
    };
    let alice_device = sync(&s, &alice, "a", "a", "claude_code", &one("msg_a", 1_000_000_007)).await;
    sync(&s, &bob, "b", "b", "claude_code", &one("msg_b", 5)).await;
    sync(&s, &carol, "c", "c", "claude_code", &one("msg_c", 300)).await;
    drained(&s).await;
    let t = d + 2 * DAY;
    let (a, b) = (alice_user.uuid.to_string(), bob_user.uuid.to_string());
    // The data is there: Alice sees hers, and VictoriaMetrics holds all three users.
    eventually("everyone's samples are visible", 60, || {
        let (c, alice) = (c, alice.clone());
        let direct = vm.query("count(last_over_time(toki_events_total[30d]))", t / 1000);
        async move {
            let mine =
                promql(&c, &alice, "sum(sum_over_time(toki_tokens_total{type=\"input\"}[30d]))", t).await;
            let all = direct["data"]["result"][0]["value"][1].as_str().unwrap_or("0").to_owned();
            if samples(&mine).first().map(|s| s.1) == Some(1_000_000_007.0) && all == "3" {
                Ok(())
            } else {
                Err(format!("{mine} {all}"))
            }
        }
    })
    .await;

    let crafted = [
        format!("sum(sum_over_time(toki_tokens_total{{user=\"{a}\"}}[30d])) or vector(1)"),
        "last_over_time({__name__=~\".+\"}[30d])".into(),
        "{__name__=~\".+\"}".into(),
        format!("{{user=\"{a}\"}}"),
        "sum by (user) (sum_over_time(toki_tokens_total{user=~\".*\"}[30d]))".into(),
        format!("sum by (user) (sum_over_time(toki_tokens_total{{user=~\"{a}|{b}\"}}[30d]))"),
        format!("sum_over_time(toki_tokens_total{{user!=\"{b}\"}}[30d])"),
        format!("label_replace(sum_over_time(toki_tokens_total[30d]), \"user\", \"{a}\", \"user\", \".*\")"),
        format!("max_over_time(sum(sum_over_time(toki_tokens_total{{user=\"{a}\"}}[1h]))[30d:1h])"),
        "max_over_time(sum by (user) (sum_over_time({__name__=~\"toki_.*\"}[1h]))[30d:1h])".into(),
        format!("absent(toki_tokens_total{{user=\"{a}\"}})"),
        format!("absent_over_time(toki_tokens_total{{user=\"{a}\"}}[30d])"),
        format!(
            "sum_over_time(toki_tokens_total[30d]) or sum_over_time(toki_tokens_total{{user=\"{a}\"}}[30d])"
        ),
        format!("sum_over_time(toki_tokens_total{{user=\"{a}\"}}[30d]) and on() vector(1)"),
        format!("vector(1) unless on() sum_over_time(toki_tokens_total{{user=\"{a}\"}}[30d])"),
        format!("topk(100, sum_over_time({{device=\"{alice_device}\"}}[30d]))"),
        "count(last_over_time({__name__!=\"\"}[30d]))".into(),
    ];
    for q in &crafted {
        let v = promql(&c, &bob, q, t).await;
        // The same query as a form POST (Grafana's default) is isolated the same way.
        let form = format!("query={}&time={}", enc(q), t / 1000);
        let posted = post_form(&c, "/api/v1/query", &bob, &form).await;
        assert_eq!(posted.status, 200, "{q}: {}", posted.text());
        assert_eq!(samples(&posted.json()), samples(&v), "{q}: POST answers as GET");
        for (labels, value) in samples(&v) {
            assert!(value < 1e6, "{q}: Bob sees {value} ({labels})");
            assert_ne!(labels["device"], json!(alice_device), "{q}: {labels}");
            if !q.starts_with("label_replace") && !q.starts_with("absent") {
                assert_ne!(labels["user"], json!(a), "{q}: {labels}");
            }
        }
        if q.contains(&format!("user=\"{a}\"")) && !q.starts_with("sum_over_time(toki_tokens_total[30d]) or")
        {
            // Alice's selectors find nothing: only constants survive.
            assert!(samples(&v).iter().all(|(_, value)| *value == 1.0), "{q}: {v}");
        }
    }
    let count = promql(&c, &bob, "count(last_over_time({__name__=~\".+\"}[30d]))", t).await;
    let bobs = vm.query(&format!("count(last_over_time({{user=\"{b}\"}}[30d]))"), t / 1000);
    assert_eq!(samples(&count)[0].1, samples(&bobs)[0].1, "Bob's own series only");
    assert_eq!(samples(&count)[0].1, 4.0, "events, usage, input and output tokens");
    // Isolation parameters of the caller's own are not forwarded.
    let r = c
        .get_auth(&format!("/api/v1/query?query={}&time={}&extra_label=user%3D{a}&extra_filters%5B%5D=%7Buser%3D%22{a}%22%7D", enc("sum(sum_over_time(toki_tokens_total[30d]))"), t / 1000), &bob)
        .await;
    assert_eq!(samples(&r.json()), vec![(json!({}), 10.0)]);
    // Nor in a form body, which wins over the URL's parameters as in Prometheus.
    let form = format!(
        "query={}&time={}&extra_label=user%3D{a}&extra_filters%5B%5D=%7Buser%3D%22{a}%22%7D",
        enc("sum(sum_over_time(toki_tokens_total[30d]))"),
        t / 1000
    );
    let r = post_form(&c, &format!("/api/v1/query?query={}", enc("vector(99)")), &bob, &form).await;
    assert_eq!(samples(&r.json()), vec![(json!({}), 10.0)], "{}", r.text());
    let r =
        post_form(&c, &format!("/api/v1/query?query={}&time={}", enc("vector(7)"), t / 1000), &bob, "").await;
    assert_eq!(samples(&r.json()), vec![(json!({}), 7.0)], "an empty POST body: the URL's parameters");
    let r = c
        .raw(
            "POST",
            "/api/v1/query",
            &[("Authorization", &format!("Bearer {bob}")), ("Content-Type", "application/json")],
            Some(br#"{"query":"up"}"#),
        )
        .await;
    assert_eq!(r.status, 415, "{}", r.text());
    // Range queries too.
    let range_form = format!(
        "query={}&start={}&end={}&step=1h",
        enc("sum by (user) (sum_over_time(toki_tokens_total{user=~\".+\"}[1d]))"),
        d / 1000,
        t / 1000
    );
    let r = post_form(&c, "/api/v1/query_range", &bob, &range_form).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(!samples(&r.json()).is_empty());
    assert!(samples(&r.json()).iter().all(|(l, v)| l["user"] == json!(b) && *v <= 10.0));
    let r = post_form(&c, "/api/v1/query_range", &bob, "query=up&start=0&end=86400&step=1").await;
    assert_eq!(r.status, 400, "the same limits: {}", r.text());
    assert!(r.error().starts_with("step: gives 86400 points"), "{}", r.text());
    let r = c
        .get_auth(
            &format!(
                "/api/v1/query_range?query={}&start={}&end={}&step=1h",
                enc("sum by (user) (sum_over_time(toki_tokens_total{user=~\".+\"}[1d]))"),
                d / 1000,
                t / 1000
            ),
            &bob,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(samples(&r.json()).iter().all(|(l, v)| l["user"] == json!(b) && *v <= 10.0));

    // Teams: Bob sees Alice and himself, never Carol; Carol is not a member.
    let team = s.app().store.create_team("eng", 1).unwrap();
    s.app().store.add_team_member(team.id, alice_user.id, TeamRole::Member, 1).unwrap();
    s.app().store.add_team_member(team.id, bob_user.id, TeamRole::Member, 1).unwrap();
    let path = |q: &str| {
        format!(
            "/api/v1/teams/{}/query_range?query={}&start={}&end={}&step=1h",
            team.uuid,
            enc(q),
            d / 1000,
            t / 1000
        )
    };
    let r =
        c.get_auth(&path("sum by (user) (sum_over_time(toki_tokens_total{type=\"input\"}[1d]))"), &bob).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let mut seen: BTreeMap<String, f64> = BTreeMap::new();
    for (labels, value) in samples(&r.json()) {
        let user = labels["user"].as_str().unwrap().to_owned();
        seen.entry(user).and_modify(|m| *m = m.max(value)).or_insert(value);
    }
    assert_eq!(seen, [(a.clone(), 1_000_000_007.0), (b.clone(), 5.0)].into_iter().collect());
    let team_path = format!("/api/v1/teams/{}/query_range", team.uuid);
    let team_form = |q: &str| format!("query={}&start={}&end={}&step=1h", enc(q), d / 1000, t / 1000);
    let posted = post_form(
        &c,
        &team_path,
        &bob,
        &team_form("sum by (user) (sum_over_time(toki_tokens_total{type=\"input\"}[1d]))"),
    )
    .await;
    assert_eq!((posted.status, samples(&posted.json())), (200, samples(&r.json())), "{}", posted.text());
    let posted = post_form(&c, &team_path, &carol, &team_form("up")).await;
    assert_eq!((posted.status, posted.error().as_str()), (403, "you are not a member of this team"));
    let r = c
        .get_auth(
            &path(&format!(
                "sum(sum_over_time(toki_tokens_total{{user=\"{}\"}}[1d])) or vector(0)",
                carol_user.uuid
            )),
            &bob,
        )
        .await;
    assert!(samples(&r.json()).iter().all(|(_, v)| *v == 0.0), "Carol is outside the team");
    let r = c.get_auth(&path("up"), &carol).await;
    assert_eq!((r.status, r.error().as_str()), (403, "you are not a member of this team"));
    // Admins read any team, as `/api/v1/usage?team=` lets them; they still see only the team.
    let admin = c.admin_token().await;
    let r = c
        .get_auth(&path("sum by (user) (sum_over_time(toki_tokens_total{type=\"input\"}[1d]))"), &admin)
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let users: std::collections::BTreeSet<String> =
        samples(&r.json()).iter().map(|(l, _)| l["user"].as_str().unwrap().to_owned()).collect();
    assert_eq!(users, [a.clone(), b.clone()].into_iter().collect());
    // An empty team, read by an admin, sees nothing at all.
    let empty = s.app().store.create_team("empty", 1).unwrap();
    let r = c
        .get_auth(
            &format!(
                "/api/v1/teams/{}/query_range?query={}&start={}&end={}&step=1h",
                empty.uuid,
                enc("count(last_over_time({__name__=~\".+\"}[30d]))"),
                d / 1000,
                t / 1000
            ),
            &admin,
        )
        .await;
    assert_eq!((r.status, samples(&r.json()).len()), (200, 0), "{}", r.text());
    let r = c
        .get_auth(
            &format!("/api/v1/teams/{}/query_range?query=up&start=0&end=1&step=1", uuid::Uuid::new_v4()),
            &bob,
        )
        .await;
    assert_eq!((r.status, r.error().as_str()), (404, "team not found"));

    // Errors: ours name the parameter, VictoriaMetrics' come back as its JSON.
    let r = c.get_auth("/api/v1/query_range?query=up&start=0&end=1", &bob).await;
    assert_eq!((r.status, r.error().as_str()), (400, "step: is required (e.g. 60s, 5m, 1h)"));
    let r = c.get_auth("/api/v1/query?query=sum(", &bob).await;
    assert!((400..500).contains(&r.status), "{}", r.text());
    assert_eq!(r.json()["status"], "error");
    assert!(r.json()["error"].is_string());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_victoriametrics_without_hourly_dedup_gets_nothing_until_fixed() {
    if !available("a_victoriametrics_without_hourly_dedup_gets_nothing_until_fixed") {
        return;
    }
    // Retention is right, deduplication is off: revisions would add up.
    let mut vm = VictoriaMetrics::start_with_flags(&["-retentionPeriod=100y"]);
    let s = server_for(&vm).await;
    let c = s.client();
    let (_, alice) = signed_in(&s, "alice", Role::User).await;
    let (_, bob) = signed_in(&s, "bob", Role::User).await;
    let admin = c.admin_token().await;
    let d = midnight_days_ago(3);
    let ev = |i, id| hourly(d, i, id);
    sync(&s, &alice, "laptop", "laptop", "claude_code", &[ev(1, "msg_1"), ev(2, "msg_2")]).await;
    sync(&s, &alice, "laptop", "laptop", "claude_code", &[Ev { tokens: [99, 9, 9, 9], ..ev(2, "msg_2") }])
        .await;
    eventually("the problem is reported", 30, || {
        let (c, admin) = (c, admin.clone());
        async move {
            let info = get_ok(&c, "/admin/server-info", &admin).await["victoriametrics"].clone();
            let problem = info["config_problem"].as_str().unwrap_or("");
            if problem.contains("-dedup.minScrapeInterval is not set")
                && problem.contains("-dedup.minScrapeInterval=1h")
            {
                Ok(())
            } else {
                Err(info.to_string())
            }
        }
    })
    .await;
    // Give the drainer time for a few more rounds: still nothing goes out, nothing is dropped.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let info = get_ok(&c, "/admin/server-info", &admin).await["victoriametrics"].clone();
    assert_eq!(
        (info["buckets_sent"].clone(), info["last_push_at"].clone(), info["failing_since"].clone()),
        (json!(0), Value::Null, Value::Null),
        "{info}"
    );
    assert_eq!(info["outbox"], json!({"buckets": 2, "deletions": 0}));
    let first_hour = |ms: i64| {
        time::OffsetDateTime::from_unix_timestamp(ms / 1000)
            .unwrap()
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap()
    };
    assert_eq!(info["outbox_oldest_hour"], json!(first_hour(d + HOUR)));
    let direct = vm.query("count(last_over_time({__name__=~\".+\"}[30d]))", (d + 2 * DAY) / 1000);
    assert_eq!(direct["data"]["result"], json!([]), "VictoriaMetrics received nothing");
    // /me counts the caller's own backlog only.
    let me = get_ok(&c, "/me", &alice).await["victoriametrics"].clone();
    assert_eq!(
        (me["outbox_pending"].clone(), me["outbox_oldest_hour"].clone()),
        (json!(2), json!(first_hour(d + HOUR)))
    );
    let me = get_ok(&c, "/me", &bob).await["victoriametrics"].clone();
    assert_eq!((me["outbox_pending"].clone(), me["outbox_oldest_hour"].clone()), (json!(0), Value::Null));

    // Restarted with the right flags, everything arrives, counted once.
    vm.stop();
    vm.restart_with_flags(REQUIRED_FLAGS);
    drained(&s).await;
    eventually("PromQL agrees with the native API once fixed", 60, || agree(&c, &alice, d, d + 2 * DAY))
        .await;
    let info = get_ok(&c, "/admin/server-info", &admin).await["victoriametrics"].clone();
    assert_eq!(
        (info["config_problem"].clone(), info["outbox_oldest_hour"].clone()),
        (Value::Null, Value::Null),
        "{info}"
    );

    // A bucket more than a day ahead waits for its time (VictoriaMetrics would drop it while
    // answering 2xx); it holds back nothing queued after it.
    let now_hour = toki_sync::store::now_ms() / HOUR * HOUR;
    let sent_before = info["buckets_sent"].as_u64().unwrap();
    let future = Ev {
        ts: now_hour + 3 * DAY,
        id: "msg_future",
        model: SONNET,
        session: "s",
        project: "p",
        tokens: [5, 5, 5, 5],
    };
    sync(&s, &alice, "laptop", "laptop", "claude_code", &[future, ev(3, "msg_3")]).await;
    sync(&s, &bob, "desk", "desk", "claude_code", &[Ev { id: "msg_b", ..ev(4, "msg_b") }]).await;
    let app = s.app().clone();
    eventually("everything but the future bucket is sent", 60, || {
        let (c, admin, app) = (c, admin.clone(), app.clone());
        async move {
            let info = get_ok(&c, "/admin/server-info", &admin).await["victoriametrics"].clone();
            let backlog = app.store.vm_backlog().map_err(|e| e.to_string())?;
            let sent = info["buckets_sent"].as_u64().unwrap_or(0);
            if backlog.buckets == 1 && sent >= sent_before + 2 {
                Ok(())
            } else {
                Err(format!("{info} {backlog:?}"))
            }
        }
    })
    .await;
    let me = get_ok(&c, "/me", &alice).await["victoriametrics"].clone();
    assert_eq!(
        (me["outbox_pending"].clone(), me["outbox_oldest_hour"].clone()),
        (json!(1), json!(first_hour(now_hour + 3 * DAY)))
    );
    assert_eq!(get_ok(&c, "/me", &bob).await["victoriametrics"]["outbox_pending"], 0);
    eventually("the sent buckets agree", 60, || agree(&c, &bob, d, d + 2 * DAY)).await;
}

/// What a Grafana Prometheus data source does with an API key in its `Authorization` header:
/// instant and range queries through the proxy see the key owner's series only; a key without
/// `usage:read` is refused; a revoked key stops at once.
#[tokio::test(flavor = "multi_thread")]
async fn promql_with_an_api_key_as_grafana_uses_it() {
    if !available("promql_with_an_api_key_as_grafana_uses_it") {
        return;
    }
    let vm = VictoriaMetrics::start();
    let s = server_for(&vm).await;
    let c = s.client();
    let (_a, alice) = signed_in(&s, "alice", Role::User).await;
    let (_b, bob) = signed_in(&s, "bob", Role::User).await;
    let d = midnight_days_ago(3);
    let one = |id: &'static str, n: u64| {
        [Ev { ts: d + HOUR, id, model: SONNET, session: "s", project: "p", tokens: [n, n, 0, 0] }]
    };
    sync(&s, &alice, "a", "a", "claude_code", &one("msg_a", 4242)).await;
    sync(&s, &bob, "b", "b", "claude_code", &one("msg_b", 7)).await;
    drained(&s).await;
    let new_key = |token: String, scopes: Vec<&'static str>| async move {
        let r = c
            .send_auth("POST", "/me/api-keys", &token, Some(&json!({"name": "grafana", "scopes": scopes})))
            .await;
        assert_eq!(r.status, 201, "{}", r.text());
        r.json()
    };
    let key = new_key(alice.clone(), vec!["usage:read"]).await;
    let k = key["key"].as_str().unwrap().to_owned();
    let t = d + 2 * DAY;
    let q = "sum(sum_over_time(toki_tokens_total{type=\"input\"}[30d]))";
    eventually("the key reads its owner's series", 60, || {
        let k = k.clone();
        async move {
            let v = promql(&c, &k, q, t).await;
            if samples(&v).first().map(|s| s.1) == Some(4242.0) { Ok(()) } else { Err(v.to_string()) }
        }
    })
    .await;
    let range = format!(
        "/api/v1/query_range?query={}&start={}&end={}&step=1h",
        enc("sum(toki_tokens_total{type=\"input\"})"),
        d / 1000,
        (d + 3 * HOUR) / 1000
    );
    let r = c.get_auth(&range, &k).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.text().contains("4242") && !r.text().contains("\"7\""), "{}", r.text());
    // Bob's key sees only Bob's.
    let bob_key = new_key(bob.clone(), vec!["usage:read"]).await;
    let v = promql(&c, bob_key["key"].as_str().unwrap(), q, t).await;
    assert_eq!(samples(&v).first().map(|s| s.1), Some(7.0));
    // Without usage:read: 403; revoked: 401 at once.
    let devices_only = new_key(alice.clone(), vec!["devices:read"]).await;
    let r = c.get_auth(&range, devices_only["key"].as_str().unwrap()).await;
    assert_eq!((r.status, r.error()), (403, "insufficient scope: needs usage:read".to_owned()));
    let id = key["id"].as_str().unwrap();
    assert_eq!(c.send_auth("DELETE", &format!("/me/api-keys/{id}"), &alice, None).await.status, 200);
    assert_eq!(c.get_auth(&range, &k).await.status, 401);
}
