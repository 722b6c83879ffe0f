//! `toki-sync bench query`: latency of the read side against a running server. Runs the usage
//! API and the toki query endpoint for the windows a dashboard asks for (today by hour, 7 days by
//! day, 30 days by day and model, 90 days by week, …), each query `--warmup` times untimed and
//! then `--iterations` times timed, one after another over one kept-alive connection, and prints
//! p50/p99 per query. Every window ends at the same instant, taken when the run starts. The
//! dashboard's own queries follow (`dashboard: …`): what its overview asks for each range, at
//! the offset given with `--utc-offset`, which the run first makes the user's own (as the
//! dashboard does), timing the rebuild of the user's day tier.

use std::time::{Duration, Instant};

use clap::Args;
use serde::Serialize;

use super::progress::{Progress, percentile};
use crate::query::time::{DAY_MS, HOUR_MS};

pub const PASSWORD_ENV: &str = "TOKI_BENCH_PASSWORD";

#[derive(Args)]
pub struct QueryArgs {
    /// The server's HTTP base URL, e.g. http://127.0.0.1:9091.
    #[arg(long, value_name = "URL")]
    http: String,
    /// Access token of the user whose usage is queried.
    #[arg(long, env = "TOKI_BENCH_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Instead of --token: sign in as this user (e.g. seed-user-1) with the password in
    /// TOKI_BENCH_PASSWORD.
    #[arg(long, value_name = "NAME", conflicts_with = "token")]
    user: Option<String>,
    /// Timed runs per query.
    #[arg(long, default_value_t = 200)]
    iterations: usize,
    /// Untimed runs per query before the timed ones.
    #[arg(long, default_value_t = 5)]
    warmup: usize,
    /// The browser offset the dashboard queries use (e.g. +01:00); it is made the user's own
    /// first (PUT /me/timezone).
    #[arg(long, value_name = "OFFSET", default_value = "Z", allow_hyphen_values = true)]
    utc_offset: String,
    /// Leave the user's own offset as it is: dashboard queries at another offset then read the
    /// hourly tier (what a browser in another time zone would get before it moves the tier).
    #[arg(long)]
    keep_timezone: bool,
    /// Print the result as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Serialize)]
struct QueryReport {
    name: &'static str,
    path: String,
    iterations: usize,
    p50_ms: f64,
    p99_ms: f64,
    max_ms: f64,
    response_bytes: usize,
}

/// The queries, as (name, path) for a window ending at `end_ms`.
fn queries(end_ms: i64) -> Vec<(&'static str, String)> {
    let (end_s, ago) = (end_ms / 1000, |ms: i64| (end_ms - ms) / 1000);
    let today = end_ms.div_euclid(DAY_MS) * DAY_MS / 1000;
    let usage = |start: i64, rest: &str| format!("/api/v1/usage?start={start}&end={end_s}{rest}");
    let toki = |query: &str, start: i64| {
        let q: String = query
            .bytes()
            .map(|b| if b.is_ascii_alphanumeric() { (b as char).to_string() } else { format!("%{b:02X}") })
            .collect();
        format!("/api/v1/toki/query?query={q}&start={start}&end={end_s}")
    };
    vec![
        ("usage: today by hour", usage(today, "&step=1h")),
        ("usage: 24 hours by hour, by model", usage(ago(24 * HOUR_MS), "&step=1h&group_by=model")),
        ("usage: 7 days by day", usage(ago(7 * DAY_MS), "&step=1d")),
        ("usage: 30 days by day, by model", usage(ago(30 * DAY_MS), "&step=1d&group_by=model")),
        ("usage: 30 days by day, by type", usage(ago(30 * DAY_MS), "&step=1d&group_by=type")),
        ("usage: 30 days, by project and model", usage(ago(30 * DAY_MS), "&group_by=project,model")),
        ("usage: 90 days by week", usage(ago(90 * DAY_MS), "&step=1w")),
        ("usage: 90 days by day, by device", usage(ago(90 * DAY_MS), "&step=1d&group_by=device")),
        ("toki query: 30 days by model", toki("sum by (model) (usage)", ago(30 * DAY_MS))),
        ("toki query: 30 days cost by model", toki("sum by (model) (cost)", ago(30 * DAY_MS))),
        ("toki query: 7 days by session (raw events)", toki("sum by (session) (usage)", ago(7 * DAY_MS))),
    ]
}

/// The dashboard's queries for its ranges, as (name, path), at `offset_secs`: per range the
/// chart (by model), the previous period (by device), the other breakdowns, and once the
/// activity calendar (a year by day) and the 5-hour blocks.
fn dashboard_queries(end_ms: i64, offset_secs: i32) -> Vec<(&'static str, String)> {
    let off = i64::from(offset_secs) * 1000;
    let midnight = (end_ms + off).div_euclid(DAY_MS) * DAY_MS - off;
    let enc = crate::query::time::format_offset(offset_secs).replace('+', "%2B");
    let end_s = end_ms / 1000;
    let q = |start_ms: i64, end: i64, rest: &str| {
        format!("/api/v1/usage?start={}&end={end}&utc_offset={enc}{rest}", start_ms / 1000)
    };
    let mut out = vec![
        ("dashboard: today by hour, by model", q(midnight, end_s, "&step=1h&group_by=model")),
        ("dashboard: yesterday, by device", q(midnight - DAY_MS, midnight / 1000, "&group_by=device")),
    ];
    for (days, step, chart, prev, other) in [
        (
            7,
            "1d",
            "dashboard: 7 days by day, by model",
            "dashboard: previous 7 days, by device",
            "dashboard: 7 days, by project",
        ),
        (
            30,
            "1d",
            "dashboard: 30 days by day, by model",
            "dashboard: previous 30 days, by device",
            "dashboard: 30 days, by project",
        ),
        (
            90,
            "1d",
            "dashboard: 90 days by day, by model",
            "dashboard: previous 90 days, by device",
            "dashboard: 90 days, by project",
        ),
        (
            365,
            "1w",
            "dashboard: 1 year by week, by model",
            "dashboard: previous year, by device",
            "dashboard: 1 year, by project",
        ),
    ] {
        let start = midnight - (days - 1) * DAY_MS;
        out.push((chart, q(start, end_s, &format!("&step={step}&group_by=model"))));
        out.push((prev, q(start - (end_ms - start), start / 1000, "&group_by=device")));
        out.push((other, q(start, end_s, "&group_by=project")));
    }
    out.push(("dashboard: 90 days, by provider", q(midnight - 89 * DAY_MS, end_s, "&group_by=provider")));
    out.push(("dashboard: calendar, 1 year by day", q(midnight - 364 * DAY_MS, end_s, "&step=1d")));
    out.push((
        "dashboard: 5-hour blocks, 2 days",
        format!("/api/v1/usage/blocks?start={}&utc_offset={enc}", end_s - 2 * 86_400),
    ));
    out
}

pub fn run(args: QueryArgs) -> Result<(), String> {
    if args.iterations == 0 {
        return Err("--iterations must be at least 1".into());
    }
    let base = args.http.trim_end_matches('/').to_owned();
    let token = match (&args.token, &args.user) {
        (Some(t), _) => t.clone(),
        (None, Some(user)) => {
            let password = std::env::var(PASSWORD_ENV)
                .map_err(|_| format!("--user needs the password in {PASSWORD_ENV}"))?;
            super::http::login(&base, user, &password)?
        }
        (None, None) => {
            return Err(
                "give --token (or TOKI_BENCH_TOKEN), or --user with the password in TOKI_BENCH_PASSWORD"
                    .into(),
            );
        }
    };
    let offset_secs =
        crate::query::time::parse_utc_offset(&args.utc_offset).map_err(|e| format!("--utc-offset: {e}"))?;
    let started = Instant::now();
    let (status, answer) = if args.keep_timezone {
        (200, serde_json::Value::Null)
    } else {
        super::http::put(
            &format!("{base}/me/timezone"),
            &token,
            &serde_json::json!({ "utc_offset": crate::query::time::format_offset(offset_secs) }),
        )?
    };
    if status != 200 {
        return Err(format!("PUT /me/timezone answered {status}: {answer}"));
    }
    if answer["rebuilt"] == true {
        eprintln!(
            "day tier rebuilt at {} in {:.0} ms",
            args.utc_offset,
            started.elapsed().as_secs_f64() * 1000.0
        );
    }
    let agent = super::http::agent();
    let end_ms = crate::store::now_ms() / 1000 * 1000;
    let mut list = queries(end_ms);
    list.extend(dashboard_queries(end_ms, offset_secs));
    let mut progress = Progress::new((list.len() * (args.iterations + args.warmup)) as u64, "queries");
    let mut done = 0u64;
    let mut reports = Vec::with_capacity(list.len());
    for (name, path) in list {
        let url = format!("{base}{path}");
        let mut bytes = 0;
        let mut times = Vec::with_capacity(args.iterations);
        for i in 0..args.warmup + args.iterations {
            let started = Instant::now();
            let (status, body) = super::http::get(&agent, &url, &token)?;
            let elapsed = started.elapsed();
            if status != 200 {
                return Err(format!(
                    "{name}: GET {path} answered {status}: {}",
                    String::from_utf8_lossy(&body)
                ));
            }
            if i >= args.warmup {
                times.push(elapsed);
            }
            bytes = body.len();
            done += 1;
            progress.update(done);
        }
        times.sort();
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        reports.push(QueryReport {
            name,
            path,
            iterations: args.iterations,
            p50_ms: ms(percentile(&times, 50.0)),
            p99_ms: ms(percentile(&times, 99.0)),
            max_ms: ms(times.last().copied().unwrap_or_default()),
            response_bytes: bytes,
        });
    }
    progress.finish();
    if args.json {
        println!("{}", serde_json::to_string_pretty(&reports).map_err(|e| e.to_string())?);
    } else {
        println!("{:<46} {:>9} {:>9} {:>9} {:>10}", "query", "p50 ms", "p99 ms", "max ms", "bytes");
        for r in &reports {
            println!(
                "{:<46} {:>9.2} {:>9.2} {:>9.2} {:>10}",
                r.name, r.p50_ms, r.p99_ms, r.max_ms, r.response_bytes
            );
        }
    }
    Ok(())
}
