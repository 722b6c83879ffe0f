//! The day tier (`store::day_rollups`) answers exactly what the hourly tier answers: usage goes
//! in through the real sync port (new events, exact retransmissions, replaced Claude messages),
//! and for every window, step, grouping and offset the usage query over the day tier equals the
//! same query over hours only. The tier stays derivable from the hourly rows through offset
//! changes (`PUT /me/timezone` and its rebuild), device deletion and user deletion.

mod common;

use std::collections::BTreeMap;

use common::usage::*;
use common::*;
use redb::ReadableTable;
use serde_json::{Value, json};
use toki_sync::query::usage::{self, UsageParams};
use toki_sync::store::codec::Record;
use toki_sync::store::day_rollups::{DAY_ROLLUPS, USER_ZONES, day_key_of_hour, set_zone_in};
use toki_sync::store::events::{RollupKey, RollupRecord};
use toki_sync::store::schema::ROLLUPS;
use toki_sync::store::users::Role;

struct Lcg(u64);
impl Lcg {
    fn next(&mut self, n: u64) -> u64 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (self.0 >> 33) % n
    }
}

/// `n` events over the last 400 days for one device; some Claude ids repeat (a later version
/// replaces the stored one) and one batch is sent twice (exact retransmission).
async fn sync_random(s: &TestServer, token: &str, key: &str, provider: &str, seed: u64, n: usize) {
    let mut rng = Lcg(seed);
    let now = toki_sync::store::now_ms();
    let models = ["claude-sonnet-4-5-20250929", "claude-opus-4-1-20250805", "gpt-5-codex", "unpriced-model"];
    let projects = ["a", "b", "", "c"];
    let mut evs: Vec<(i64, String, &str, &str, [u64; 4])> = Vec::new();
    for i in 0..n {
        let ts = now - 60_000 - rng.next(400 * DAY as u64) as i64;
        // One in eight reuses an earlier id with a later time: a new version of that message.
        let (id, ts) = if i > 10 && rng.next(8) == 0 {
            let j = rng.next(i as u64) as usize;
            (evs[j].1.clone(), evs[j].0 + 1 + rng.next(600_000) as i64)
        } else {
            (format!("{key}-{seed}-{i}"), ts)
        };
        let mut tokens = [rng.next(3000), 1 + rng.next(2000), rng.next(9000), rng.next(90000)];
        if provider == "codex" {
            // Codex columns: input, output, reasoning (part of output), cached (part of input).
            tokens[2] = rng.next(tokens[1] + 1);
            tokens[3] = rng.next(tokens[0] + 1);
        }
        evs.push((ts, id, models[rng.next(4) as usize], projects[rng.next(4) as usize], tokens));
    }
    for chunk in evs.chunks(100) {
        let batch: Vec<Ev<'_>> = chunk
            .iter()
            .map(|(ts, id, model, project, tokens)| Ev {
                ts: *ts,
                id,
                model,
                session: "s",
                project,
                tokens: *tokens,
            })
            .collect();
        sync(s, token, key, key, provider, &batch).await;
    }
    let again: Vec<Ev<'_>> = evs[..50]
        .iter()
        .map(|(ts, id, model, project, tokens)| Ev {
            ts: *ts,
            id,
            model,
            session: "s",
            project,
            tokens: *tokens,
        })
        .collect();
    sync(s, token, key, key, provider, &again).await;
}

/// Equal JSON, costs within a micro-dollar (sums in another order may round differently).
fn same(a: &Value, b: &Value, path: &str) {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            assert_eq!(x.keys().collect::<Vec<_>>(), y.keys().collect::<Vec<_>>(), "{path}");
            for (k, v) in x {
                same(v, &y[k], &format!("{path}.{k}"));
            }
        }
        (Value::Array(x), Value::Array(y)) => {
            assert_eq!(x.len(), y.len(), "{path}: lengths");
            for (i, (v, w)) in x.iter().zip(y).enumerate() {
                same(v, w, &format!("{path}[{i}]"));
            }
        }
        (Value::Number(x), Value::Number(y)) if path.ends_with("cost_usd") => {
            assert!((x.as_f64().unwrap() - y.as_f64().unwrap()).abs() <= 2e-6, "{path}: {x} vs {y}")
        }
        _ => assert_eq!(a, b, "{path}"),
    }
}

/// Every query shape the dashboard uses, over the day tier and over hours only.
fn compare_all(s: &TestServer, users: &[u32], offsets: &[i32]) -> usize {
    let now = toki_sync::store::now_ms();
    let prices = &s.app().query.prices;
    let mut compared = 0;
    for &off in offsets {
        let midnight = (now + i64::from(off) * 1000).div_euclid(DAY) * DAY - i64::from(off) * 1000;
        let windows = [
            (midnight - 364 * DAY, now),
            (midnight - 89 * DAY, now),
            (midnight - 6 * DAY, now),
            (now - 30 * DAY + 7 * HOUR + 1234, now - 3 * DAY - 5 * HOUR),
            (midnight - 400 * DAY, midnight - 200 * DAY),
            (midnight - 2 * DAY + 30 * 60_000, midnight + HOUR),
        ];
        for (start_ms, end_ms) in windows {
            for (step, group) in [
                (Some("1d"), "model"),
                (Some("1w"), "project"),
                (None, "device"),
                (None, "provider"),
                (Some("1d"), "type"),
                (None, "project,model"),
                (Some("1w"), ""),
                (Some("1d"), "user"),
            ] {
                let map: BTreeMap<&str, String> = [
                    ("start", start_ms.to_string()),
                    ("end", end_ms.to_string()),
                    ("utc_offset", toki_sync::query::time::format_offset(off)),
                    ("group_by", group.to_owned()),
                ]
                .into_iter()
                .chain(step.map(|st| ("step", st.to_owned())))
                .collect();
                let tiered = UsageParams::parse(|k| map.get(k).cloned(), now).unwrap();
                assert!(tiered.day_tier);
                let hourly = UsageParams { day_tier: false, ..tiered.clone() };
                let a =
                    serde_json::to_value(usage::run(&s.app().store, prices, users, &tiered).ok().unwrap())
                        .unwrap();
                let b =
                    serde_json::to_value(usage::run(&s.app().store, prices, users, &hourly).ok().unwrap())
                        .unwrap();
                same(&a, &b, &format!("offset {off}, {start_ms}..{end_ms}, step {step:?}, group_by {group}"));
                compared += 1;
            }
        }
    }
    compared
}

/// (events, usage total, per column)
type DaySums = (u64, u64, BTreeMap<u32, u64>);

/// The day rows of `user` are exactly the sums of their hourly rows at the user's offset.
fn assert_derivable(s: &TestServer, user: u32) {
    let txn = s.app().store.read().unwrap();
    let zone = txn.open_table(USER_ZONES).unwrap().get(user).unwrap().map_or(0, |v| v.value().0);
    let range = (user, 0, 0, 0, 0, 0)..=(user, u32::MAX, u32::MAX, u32::MAX, u32::MAX, u32::MAX);
    let mut want: BTreeMap<RollupKey, DaySums> = BTreeMap::new();
    for row in txn.open_table(ROLLUPS).unwrap().range(range.clone()).unwrap() {
        let (k, v) = row.unwrap();
        let (u, hour, d, p, m, pr) = k.value();
        let r = RollupRecord::decode(v.value()).unwrap();
        let e = want.entry((u, day_key_of_hour(hour, zone), d, p, m, pr)).or_default();
        e.0 += r.events;
        e.1 += r.usage_total;
        for (c, n) in r.tokens {
            *e.2.entry(c).or_default() += n;
        }
    }
    let mut got = BTreeMap::new();
    for row in txn.open_table(DAY_ROLLUPS).unwrap().range(range).unwrap() {
        let (k, v) = row.unwrap();
        let r = RollupRecord::decode(v.value()).unwrap();
        got.insert(k.value(), (r.events, r.usage_total, r.tokens.into_iter().collect::<BTreeMap<_, _>>()));
    }
    assert_eq!(got.len(), want.len(), "user {user}: day rows");
    assert!(got == want, "user {user}: the day tier is not the sum of the hourly tier");
}

fn day_rows(s: &TestServer, pred: impl Fn(RollupKey) -> bool) -> usize {
    let txn = s.app().store.read().unwrap();
    let t = txn.open_table(DAY_ROLLUPS).unwrap();
    t.iter().unwrap().filter(|r| pred(r.as_ref().unwrap().0.value())).count()
}

#[tokio::test(flavor = "multi_thread")]
async fn day_tier_answers_equal_the_hourly_path() {
    let s = TestServer::start().await;
    let c = s.client();
    let (alice, a_token) = signed_in(&s, "alice", Role::User).await;
    let (bob, b_token) = signed_in(&s, "bob", Role::User).await;
    sync_random(&s, &a_token, "laptop", "claude_code", 1, 900).await;
    sync_random(&s, &a_token, "desktop", "codex", 2, 500).await;
    sync_random(&s, &b_token, "box", "claude_code", 3, 600).await;
    assert_derivable(&s, alice.id);
    assert_derivable(&s, bob.id);
    // UTC by default: the tier serves Z; other offsets fall back to hours.
    assert!(compare_all(&s, &[alice.id], &[0, 19800]) > 90);
    // The tier is what a 1-year daily query reads: a day row that is not in the hourly tier
    // shows up in its answer (and only there).
    let year = |tier: bool| {
        let now = toki_sync::store::now_ms();
        let map: BTreeMap<&str, String> =
            [("start", (now - 365 * DAY).to_string()), ("step", "1d".to_owned())].into_iter().collect();
        let p = UsageParams { day_tier: tier, ..UsageParams::parse(|k| map.get(k).cloned(), now).unwrap() };
        usage::run(&s.app().store, &s.app().query.prices, &[alice.id], &p).ok().unwrap().totals.events
    };
    let stray =
        (alice.id, day_key_of_hour(((toki_sync::store::now_ms() - 100 * DAY) / HOUR) as u32, 0), 1, 1, 1, 0);
    let put = |add: bool| {
        s.app()
            .store
            .write(|txn| {
                let mut t = txn.open_table(DAY_ROLLUPS)?;
                if add {
                    let rec = RollupRecord { events: 1000, usage_total: 5, tokens: vec![] };
                    t.insert(stray, rec.encode().as_slice())?;
                } else {
                    t.remove(stray)?;
                }
                Ok::<_, toki_sync::store::StoreError>(())
            })
            .unwrap()
    };
    let before = year(true);
    put(true);
    assert_eq!((year(true), year(false)), (before + 1000, before), "the daily query reads the day tier");
    put(false);

    // The browser's offset: the days are rebuilt there.
    let r = c.send_auth("PUT", "/me/timezone", &a_token, Some(&json!({"utc_offset": "+05:30"}))).await;
    assert_eq!((r.status, r.json()), (200, json!({"utc_offset": "+05:30", "rebuilt": true})));
    assert_eq!(get_ok(&c, "/me", &a_token).await["utc_offset"], "+05:30");
    let r = c.send_auth("PUT", "/me/timezone", &a_token, Some(&json!({"utc_offset": "+05:30"}))).await;
    assert_eq!(r.json()["rebuilt"], false, "the same offset again changes nothing");
    let r = c.send_auth("PUT", "/me/timezone", &a_token, Some(&json!({"utc_offset": "-08:00"}))).await;
    assert_eq!(r.status, 429, "one rebuild a minute");
    assert!(r.header("retry-after").is_some());
    let r = c.send_auth("PUT", "/me/timezone", &a_token, Some(&json!({"utc_offset": "+25:00"}))).await;
    assert_eq!(r.status, 422);
    assert!(r.error().starts_with("utc_offset:"), "{}", r.error());
    assert_derivable(&s, alice.id);
    // New events, retransmissions and replacements at the new offset go into the right days.
    sync_random(&s, &a_token, "laptop", "claude_code", 4, 400).await;
    assert_derivable(&s, alice.id);
    compare_all(&s, &[alice.id], &[19800, 0]);
    // A team of users kept at different offsets: each user's days where they fit.
    compare_all(&s, &[alice.id, bob.id], &[19800, 0, -28800]);

    for off in [-28800, 14 * 3600, -34200] {
        s.app().ingest.exec(move |ctx| set_zone_in(ctx.txn, alice.id, off, 0)).await.unwrap();
        sync_random(&s, &a_token, "desktop", "codex", 5 + off.unsigned_abs() as u64, 150).await;
        assert_derivable(&s, alice.id);
        compare_all(&s, &[alice.id], &[off]);
    }

    // Device deletion removes its days with its hours.
    let laptop =
        s.app().store.devices(Some(alice.id)).unwrap().into_iter().find(|d| d.key == "laptop").unwrap();
    assert!(day_rows(&s, |k| k.2 == laptop.id) > 0);
    let r = c.send_auth("DELETE", &format!("/me/devices/{}", laptop.uuid), &a_token, None).await;
    assert_eq!(r.status, 200);
    assert_eq!(day_rows(&s, |k| k.2 == laptop.id), 0);
    assert_derivable(&s, alice.id);
    compare_all(&s, &[alice.id], &[-34200]);

    // User deletion removes their days and their offset.
    let admin = c.admin_token().await;
    assert!(day_rows(&s, |k| k.0 == alice.id) > 0);
    let r = c.send_auth("DELETE", &format!("/admin/users/{}", alice.uuid), &admin, None).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(day_rows(&s, |k| k.0 == alice.id), 0);
    assert!(s.app().store.user_zone(alice.id).unwrap().is_none());
    assert_derivable(&s, bob.id);

    // The schema-3 migration builds the tier of a file that has only hourly rows.
    let rows = day_rows(&s, |k| k.0 == bob.id);
    s.app()
        .ingest
        .exec(|ctx| {
            ctx.txn
                .delete_table(DAY_ROLLUPS)
                .map_err(redb::Error::from)
                .map_err(toki_sync::store::StoreError::Db)?;
            toki_sync::store::day_rollups::migrate_v3(ctx.txn)
        })
        .await
        .unwrap();
    assert_eq!(day_rows(&s, |k| k.0 == bob.id), rows);
    assert_derivable(&s, bob.id);
}
