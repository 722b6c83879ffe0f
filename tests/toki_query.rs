//! `GET /api/v1/toki/query` (compat.md §6): the toki CLI's dialect, time formats and the
//! Prometheus JSON it parses, checked against numbers worked out by hand from known events.

mod common;

use std::collections::BTreeMap;

use common::usage::*;
use common::*;
use serde_json::Value;
use toki_sync::store::users::Role;

struct World {
    s: TestServer,
    token: String,
    /// UTC midnight of the first day with usage.
    d: i64,
    laptop_id: String,
}

/// Alice: three Claude events on "macbook-pro", one Codex event on "desktop". Bob has usage
/// too, which must never show up in Alice's answers.
async fn world() -> World {
    let s = TestServer::start().await;
    let (_, token) = signed_in(&s, "alice", Role::User).await;
    let d = midnight_days_ago(10);
    let claude = alice_claude(d);
    let laptop_id = sync(&s, &token, "k-laptop", "macbook-pro", "claude_code", &claude).await;
    let codex = [Ev {
        ts: d + 5 * HOUR,
        id: "codex",
        model: CODEX,
        session: "s3",
        project: "beta",
        tokens: [1000, 500, 100, 400],
    }];
    sync(&s, &token, "k-desktop", "desktop", "codex", &codex).await;
    let (_, bob) = signed_in(&s, "bob", Role::User).await;
    let noise = [Ev {
        ts: d + HOUR,
        id: "msg_b",
        model: SONNET,
        session: "s1",
        project: "alpha",
        tokens: [777_777, 0, 0, 0],
    }];
    sync(&s, &bob, "k-bob", "macbook-pro", "claude_code", &noise).await;
    World { s, token, d, laptop_id }
}

fn date(ms: i64) -> time::OffsetDateTime {
    time::OffsetDateTime::from_unix_timestamp(ms / 1000).unwrap()
}

/// `YYYYMMDD` of a UTC instant.
fn yyyymmdd(ms: i64) -> String {
    let t = date(ms);
    format!("{:04}{:02}{:02}", t.year(), u8::from(t.month()), t.day())
}

impl World {
    /// The whole usage: the first day through the second (YYYYMMDD as end includes that day).
    fn all(&self) -> String {
        format!("start={}&end={}", yyyymmdd(self.d), yyyymmdd(self.d + DAY))
    }

    async fn query(&self, q: &str, window: &str) -> Value {
        let r = self
            .s
            .client()
            .get_auth(&format!("/api/v1/toki/query?query={}&{window}", enc(q)), &self.token)
            .await;
        assert_eq!(r.status, 200, "{q} {window}: {}", r.text());
        let v = r.json();
        assert_eq!(v["status"], "success");
        assert_eq!(v["data"]["resultType"], "vector");
        v
    }

    async fn error(&self, path: &str) -> (u16, String) {
        let r = self.s.client().get_auth(path, &self.token).await;
        (r.status, r.error())
    }
}

/// (model label or "(total)", type or __toki_metric__ or "") -> value, as the client reads them.
fn table(v: &Value) -> BTreeMap<(String, String), String> {
    let mut out = BTreeMap::new();
    for s in v["data"]["result"].as_array().unwrap() {
        let m = &s["metric"];
        let model = m["model"].as_str().unwrap_or("(total)").to_owned();
        let kind = m["type"].as_str().or(m["__toki_metric__"].as_str()).unwrap_or("").to_owned();
        let value = s["value"][1].as_str().unwrap().to_owned();
        assert!(out.insert((model, kind), value).is_none(), "duplicate series in {v}");
    }
    out
}

fn row(model: &str, values: [u64; 4]) -> Vec<((String, String), String)> {
    ["input", "output", "cache_create", "cache_read"]
        .iter()
        .zip(values)
        .map(|(t, n)| ((model.into(), (*t).into()), n.to_string()))
        .collect()
}

fn rows(parts: &[Vec<((String, String), String)>]) -> BTreeMap<(String, String), String> {
    parts.iter().flatten().cloned().collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn token_sums_by_model_and_total() {
    let w = world().await;
    let v = w.query("sum by (model) (increase(toki_tokens_total[1d]))", &w.all()).await;
    // Codex: reasoning under cache_create, cached input under cache_read.
    let want = rows(&[
        row(SONNET, [1001, 202, 3003, 40004]),
        row(OPUS, [10, 20, 0, 0]),
        row(CODEX, [1000, 500, 100, 400]),
    ]);
    assert_eq!(table(&v), want);
    // The sample time is the end of the window, in Unix seconds.
    assert_eq!(v["data"]["result"][0]["value"][0].as_i64(), Some((w.d + 2 * DAY) / 1000));

    // The older toki form, with and without aggregation, gives the same rows.
    assert_eq!(table(&w.query("usage", &w.all()).await), want);
    assert_eq!(table(&w.query("sum(usage[1d]) by (model)", &w.all()).await), want);
    assert_eq!(
        table(&w.query("avg by (model, type) (usage)", &w.all()).await),
        want,
        "one bucket: avg = sum"
    );
    // sum without by: no model label, so the client shows (total).
    let total = w.query("sum(increase(toki_tokens_total[1h]))", &w.all()).await;
    assert!(total["data"]["result"].as_array().unwrap().iter().all(|s| s["metric"].get("model").is_none()));
    assert_eq!(table(&total), rows(&[row("(total)", [2011, 722, 3103, 40404])]));
}

#[tokio::test(flavor = "multi_thread")]
async fn filters_and_groupings() {
    let w = world().await;
    let all = w.all();
    assert_eq!(
        table(&w.query("sum by (model) (usage{model=~\"claude-.*\"})", &all).await),
        rows(&[row(SONNET, [1001, 202, 3003, 40004]), row(OPUS, [10, 20, 0, 0])])
    );
    assert_eq!(
        table(&w.query("usage{model!=\"gpt-5-codex\", model!~\".*opus.*\"}", &all).await),
        rows(&[row(SONNET, [1001, 202, 3003, 40004])])
    );
    // Devices by name (documented remote example) or by id.
    let by_name = table(&w.query("toki_tokens_total{device=\"macbook-pro\"}", &all).await);
    assert_eq!(by_name, rows(&[row(SONNET, [1001, 202, 3003, 40004]), row(OPUS, [10, 20, 0, 0])]));
    assert_eq!(table(&w.query(&format!("usage{{device=\"{}\"}}", w.laptop_id), &all).await), by_name);
    assert_eq!(
        table(&w.query("usage{provider=\"codex\"}", &all).await),
        rows(&[row(CODEX, [1000, 500, 100, 400])])
    );
    // A type filter keeps those columns only (Codex cached input is shown as cache_read).
    let cache_read = table(&w.query("sum by (model) (usage{type=\"cache_read\"})", &all).await);
    assert_eq!(cache_read.len(), 3, "{cache_read:?}");
    assert!(cache_read.keys().all(|(_, t)| t == "cache_read"));
    assert_eq!(cache_read[&(SONNET.into(), "cache_read".into())], "40004");
    assert_eq!(cache_read[&(OPUS.into(), "cache_read".into())], "0");
    assert_eq!(cache_read[&(CODEX.into(), "cache_read".into())], "400");

    // Grouped by project: the value is in `model` (what the client shows) and in `project`.
    let v = w.query("sum by (project) (usage)", &all).await;
    assert_eq!(
        table(&v),
        rows(&[
            row("alpha", [1010, 220, 3000, 40000]),
            row("(no project)", [1, 2, 3, 4]),
            row("beta", [1000, 500, 100, 400])
        ])
    );
    let first = v["data"]["result"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["metric"]["model"] == "(no project)")
        .unwrap();
    assert_eq!(first["metric"]["project"], "");
    // Grouped by session (read from raw events).
    let v = w.query("usage by (session)", &all).await;
    assert_eq!(
        table(&v),
        rows(&[
            row("s1", [1010, 220, 3000, 40000]),
            row("s2", [1, 2, 3, 4]),
            row("s3", [1000, 500, 100, 400])
        ])
    );
    assert_eq!(
        table(&w.query("sum by (model) (usage{session=\"s1\"})", &all).await),
        rows(&[row(SONNET, [1000, 200, 3000, 40000]), row(OPUS, [10, 20, 0, 0])])
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn cost_events_sessions_and_projects() {
    let w = world().await;
    let all = w.all();
    let cost = w.query("sum by (model) (cost)", &all).await;
    for s in cost["data"]["result"].as_array().unwrap() {
        assert_eq!(s["metric"]["__toki_metric__"], "cost");
        assert!(s["metric"].get("type").is_none());
    }
    let t = table(&cost);
    let usd = |m: &str| t[&(m.to_owned(), "cost".to_owned())].parse::<f64>().unwrap();
    // sonnet: 1001 in, 202 out, 3003 cache write, 40004 cache read at 3 / 15 / 3.75 / 0.30
    assert!((usd(SONNET) - 0.02929545).abs() < 1e-6, "{t:?}");
    assert!((usd(OPUS) - 0.00165).abs() < 1e-9);
    // gpt-5-codex: 600 uncached in, 500 out, 400 cached at 1.25 / 10 / 0.125
    assert!((usd(CODEX) - 0.0058).abs() < 1e-9);

    let events = table(&w.query("events", &all).await);
    assert_eq!(
        events,
        [
            ((SONNET.into(), String::new()), "2".into()),
            ((OPUS.into(), String::new()), "1".into()),
            ((CODEX.into(), String::new()), "1".into())
        ]
        .into_iter()
        .collect()
    );
    assert_eq!(table(&w.query("sum by (model) (increase(toki_events_total[1d]))", &all).await), events);
    assert_eq!(table(&w.query("count by (model) (usage)", &all).await), events, "count counts events");
    let usage_total = table(&w.query("sum by (model) (toki_usage_total)", &all).await);
    assert_eq!(usage_total[&(SONNET.into(), String::new())], "44210");
    assert_eq!(usage_total[&(CODEX.into(), String::new())], "1500", "Codex: input + output");

    let sessions = w.query("sessions", &all).await;
    assert_eq!(
        table(&sessions),
        [
            (("s1".into(), String::new()), "2".into()),
            (("s2".into(), String::new()), "1".into()),
            (("s3".into(), String::new()), "1".into())
        ]
        .into_iter()
        .collect()
    );
    assert_eq!(sessions["data"]["result"][0]["metric"]["session"], "s1");
    assert_eq!(
        table(&w.query("projects", &all).await),
        [
            (("alpha".into(), String::new()), "2".into()),
            (("(no project)".into(), String::new()), "1".into()),
            (("beta".into(), String::new()), "1".into())
        ]
        .into_iter()
        .collect()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn time_formats_and_exact_windows() {
    let w = world().await;
    let d = w.d;
    let q = "sum by (model) (usage)";
    let models =
        |v: &Value| table(v).keys().map(|(m, _)| m.clone()).collect::<std::collections::BTreeSet<_>>();
    let set = |m: &[&str]| m.iter().map(|s| s.to_string()).collect::<std::collections::BTreeSet<_>>();

    // YYYYMMDD as end includes that whole day; as start it is midnight.
    assert_eq!(
        models(&w.query(q, &format!("start={}&end={}", yyyymmdd(d), yyyymmdd(d))).await),
        set(&[SONNET, OPUS, CODEX])
    );
    let v = w.query(q, &format!("start={}&end={}", yyyymmdd(d + DAY), yyyymmdd(d + DAY))).await;
    assert_eq!(table(&v), rows(&[row(SONNET, [1, 2, 3, 4])]));
    // Windows inside an hour are exact (raw events at the edges): 01:05-01:11 holds msg_1 only.
    let v =
        w.query(q, &format!("start={}&end={}", (d + HOUR + 5 * 60_000) / 1000, d + HOUR + 11 * 60_000)).await;
    assert_eq!(table(&v), rows(&[row(SONNET, [1000, 200, 3000, 40000])]));
    let t = date(d + HOUR + 15 * 60_000);
    let fourteen = format!("{}{:02}{:02}{:02}", yyyymmdd(d), t.hour(), t.minute(), t.second());
    let v = w.query(q, &format!("start={fourteen}&end={}", yyyymmdd(d))).await;
    assert_eq!(models(&v), set(&[OPUS, CODEX]), "01:15 onwards leaves msg_1 out");
    let rfc = |ms: i64| date(ms).format(&time::format_description::well_known::Rfc3339).unwrap();
    let v = w
        .query(q, &format!("start={}&end={}", enc(&rfc(d + 5 * HOUR)), enc(&rfc(d + 5 * HOUR + 1000))))
        .await;
    assert_eq!(models(&v), set(&[CODEX]));
    let iso = |ms: i64, sep: char| {
        let t = date(ms);
        format!(
            "{:04}-{:02}-{:02}{sep}{:02}:{:02}:{:02}",
            t.year(),
            u8::from(t.month()),
            t.day(),
            t.hour(),
            t.minute(),
            t.second()
        )
    };
    let v =
        w.query(q, &format!("start={}&end={}", enc(&iso(d + 23 * HOUR, 'T')), enc(&iso(d + DAY, ' ')))).await;
    assert_eq!(models(&v), set(&[OPUS]));
    let day_dash = &iso(d + DAY, 'T')[..10];
    assert_eq!(
        models(&w.query(q, &format!("start={day_dash}&end={day_dash}")).await),
        set(&[SONNET]),
        "a YYYY-MM-DD end covers the day"
    );
    // `offset` moves the window back: the second day, one day earlier, is the first day.
    let v = w
        .query(
            "sum by (model) (usage offset 1d)",
            &format!("start={}&end={}", yyyymmdd(d + DAY), yyyymmdd(d + DAY)),
        )
        .await;
    assert_eq!(models(&v), set(&[SONNET, OPUS, CODEX]));
    assert_eq!(table(&v)[&(SONNET.into(), "input".into())], "1000");
    // Defaults: from the beginning until now.
    assert_eq!(models(&w.query(q, "").await), set(&[SONNET, OPUS, CODEX]));
}

#[tokio::test(flavor = "multi_thread")]
async fn columns_the_client_cannot_show_are_sent_only_when_asked_for() {
    let w = world().await;
    // Another provider with two columns of its own besides input and output.
    let ev = [Ev {
        ts: w.d + 3 * HOUR,
        id: "g1",
        model: "gemini-2.5-pro",
        session: "s9",
        project: "",
        tokens: [7, 8, 9, 10],
    }];
    let mut batch = batch_of("gemini", &ev);
    batch.token_columns = ["input", "output", "thoughts", "tool_use"].map(String::from).to_vec();
    sync_batch(&w.s, &w.token, "k-gemini", "workstation", &batch).await;
    let all = w.all();
    // The client would warn about `thoughts` and count it as input: left out.
    let v = w.query("sum by (model) (usage)", &all).await;
    let types: std::collections::BTreeSet<String> = table(&v).keys().map(|(_, t)| t.clone()).collect();
    assert_eq!(
        types,
        ["cache_create", "cache_read", "input", "output"].map(String::from).into_iter().collect()
    );
    assert_eq!(table(&v)[&("gemini-2.5-pro".into(), "input".into())], "7");
    let v = w.query("sum(usage{type!=\"input\"})", &all).await;
    assert!(
        table(&v).keys().all(|(_, t)| ["output", "cache_create", "cache_read"].contains(&t.as_str())),
        "{v}"
    );
    // Asked for by name or by a regex, it is sent.
    let v = w.query("sum by (model) (usage{type=\"thoughts\"})", &all).await;
    assert_eq!(
        table(&v),
        [(("gemini-2.5-pro".to_owned(), "thoughts".to_owned()), "9".to_owned())].into_iter().collect()
    );
    let v = w.query("sum(usage{type=~\"tool_.*|input\"})", &all).await;
    assert_eq!(
        table(&v),
        [
            (("(total)".to_owned(), "input".to_owned()), "2018".to_owned()),
            (("(total)".to_owned(), "tool_use".to_owned()), "10".to_owned())
        ]
        .into_iter()
        .collect()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn errors_are_json_the_client_prints() {
    let w = world().await;
    let (status, msg) = w.error("/api/v1/toki/query").await;
    assert_eq!((status, msg.as_str()), (400, "query: is required"));
    let (status, msg) =
        w.error(&format!("/api/v1/toki/query?query={}", enc("sum by (model) (tokens)"))).await;
    assert_eq!(status, 400);
    assert!(msg.starts_with("query: unknown metric `tokens`"), "{msg}");
    let (status, msg) = w.error(&format!("/api/v1/toki/query?query={}", enc("usage{model=~\"(\"}"))).await;
    assert!(status == 400 && msg.contains("invalid regex"), "{msg}");
    let (status, msg) = w.error("/api/v1/toki/query?query=usage&start=yesterday").await;
    assert!(status == 400 && msg.starts_with("start: expected YYYYMMDD"), "{msg}");
    let (status, msg) = w.error("/api/v1/toki/query?query=usage&start=20260102&end=20260101").await;
    assert_eq!((status, msg.as_str()), (400, "start: must be before end"));
    assert_eq!(w.s.client().get("/api/v1/toki/query?query=usage").await.status, 401);
    let r = w.s.client().get_auth("/api/v1/toki/query?query=usage", "not-a-token").await;
    assert_eq!((r.status, r.error().as_str()), (401, "invalid or expired token"));
}
