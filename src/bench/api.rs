//! `toki-sync bench api`: the public API's costs against a running server (start it with the
//! rate limits off, `TOKI_SYNC_RATE_LIMIT__*_PER_MINUTE=0`, or the bench meets 429s):
//!
//! - authentication: the same request (`GET /me/devices`) with a JWT and with an API key,
//!   interleaved, p50/p99 of each;
//! - records: every page of the user's records (`limit=100`) followed by cursor to the end,
//!   p50/p99 per page, and p50 of the first and the last tenth of the walk (cursor depth);
//! - export: the whole NDJSON and CSV export, records/s and MB/s, and with `--server-pid` the
//!   server's resident memory before and at its peak during each export (sampled every 20 ms).
//!
//! It creates an API key for the run and revokes it at the end.

use std::io::Read;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use clap::Args;
use serde_json::{Value, json};

use super::progress::percentile;

#[derive(Args)]
pub struct ApiArgs {
    /// The server's HTTP base URL, e.g. http://127.0.0.1:9091.
    #[arg(long, value_name = "URL")]
    http: String,
    /// The user (e.g. seed-user-1); the password is read from TOKI_BENCH_PASSWORD.
    #[arg(long, value_name = "NAME")]
    user: String,
    /// Timed requests per credential kind in the authentication comparison.
    #[arg(long, default_value_t = 2000)]
    iterations: usize,
    /// Most record pages to walk (0: all).
    #[arg(long, default_value_t = 0)]
    pages: usize,
    /// The server's process id, to sample its resident memory during the exports.
    #[arg(long)]
    server_pid: Option<u32>,
    #[arg(long)]
    skip_export: bool,
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
}

fn check(status: u16, body: &[u8], what: &str) -> Result<(), String> {
    match status {
        200 | 201 => Ok(()),
        429 => Err(format!(
            "{what}: 429 rate limited; start the server with TOKI_SYNC_RATE_LIMIT__USAGE_PER_MINUTE=0 TOKI_SYNC_RATE_LIMIT__DEVICES_PER_MINUTE=0 TOKI_SYNC_RATE_LIMIT__ACCOUNT_PER_MINUTE=0"
        )),
        s => Err(format!("{what}: status {s}: {}", String::from_utf8_lossy(&body[..body.len().min(300)]))),
    }
}

pub fn run(args: ApiArgs) -> Result<(), String> {
    let base = args.http.trim_end_matches('/').to_owned();
    let password = std::env::var(super::query::PASSWORD_ENV)
        .map_err(|_| format!("--user needs the password in {}", super::query::PASSWORD_ENV))?;
    let jwt = super::http::login(&base, &args.user, &password)?;
    let agent = super::http::agent();
    let mut resp = agent
        .post(&format!("{base}/me/api-keys"))
        .header("Authorization", &format!("Bearer {jwt}"))
        .send_json(json!({"name": "bench api", "scopes": ["usage:read", "devices:read"]}))
        .map_err(|e| format!("creating an API key: {e}"))?;
    let status = resp.status().as_u16();
    let created: Value = resp.body_mut().read_json().map_err(|e| format!("creating an API key: {e}"))?;
    check(status, created.to_string().as_bytes(), "creating an API key")?;
    let key = created["key"].as_str().ok_or("no key in the answer")?.to_owned();
    let key_id = created["id"].as_str().unwrap_or_default().to_owned();
    let result = measure(&args, &base, &agent, &jwt, &key);
    let _ = agent
        .delete(&format!("{base}/me/api-keys/{key_id}"))
        .header("Authorization", &format!("Bearer {jwt}"))
        .call();
    result
}

fn measure(args: &ApiArgs, base: &str, agent: &ureq::Agent, jwt: &str, key: &str) -> Result<(), String> {
    // Authentication: interleaved so drift on the shared machine hits both alike.
    let url = format!("{base}/me/devices");
    let (mut with_jwt, mut with_key) = (Vec::new(), Vec::new());
    for i in 0..args.iterations + 50 {
        for (token, times) in [(jwt, &mut with_jwt), (key, &mut with_key)] {
            let t = Instant::now();
            let (status, body) = super::http::get(agent, &url, token)?;
            let elapsed = t.elapsed();
            check(status, &body, "GET /me/devices")?;
            if i >= 50 {
                times.push(elapsed);
            }
        }
    }
    with_jwt.sort();
    with_key.sort();
    println!("authentication, GET /me/devices, {} requests each:", args.iterations);
    for (name, t) in [("JWT", &with_jwt), ("API key", &with_key)] {
        println!("  {name:<8} p50 {:.3} ms  p99 {:.3} ms", ms(percentile(t, 50.0)), ms(percentile(t, 99.0)));
    }

    // Records: the whole walk by cursor.
    let mut pages = Vec::new();
    let mut cursor: Option<String> = None;
    let mut records = 0u64;
    let walk = Instant::now();
    loop {
        let mut url = format!("{base}/api/v1/usage/records?limit=100");
        if let Some(c) = &cursor {
            url.push_str(&format!("&cursor={c}"));
        }
        let t = Instant::now();
        let (status, body) = super::http::get(agent, &url, key)?;
        pages.push(t.elapsed());
        check(status, &body, "GET /api/v1/usage/records")?;
        let page: Value = serde_json::from_slice(&body).map_err(|e| format!("records page: {e}"))?;
        records += page["data"].as_array().map_or(0, |d| d.len() as u64);
        match page["next_cursor"].as_str() {
            Some(n) if args.pages == 0 || pages.len() < args.pages => cursor = Some(n.to_owned()),
            _ => break,
        }
    }
    let tenth = (pages.len() / 10).max(1);
    let mut first: Vec<Duration> = pages[..tenth.min(pages.len())].to_vec();
    let mut last: Vec<Duration> = pages[pages.len().saturating_sub(tenth)..].to_vec();
    first.sort();
    last.sort();
    let n_pages = pages.len();
    pages.sort();
    println!(
        "records: {n_pages} pages, {records} records in {:.1} s; page p50 {:.3} ms  p99 {:.3} ms; first tenth p50 {:.3} ms, last tenth p50 {:.3} ms",
        walk.elapsed().as_secs_f64(),
        ms(percentile(&pages, 50.0)),
        ms(percentile(&pages, 99.0)),
        ms(percentile(&first, 50.0)),
        ms(percentile(&last, 50.0)),
    );
    if args.skip_export {
        return Ok(());
    }

    for format in ["ndjson", "csv"] {
        let before = args.server_pid.and_then(rss_kib);
        let peak = Arc::new(AtomicU64::new(before.unwrap_or(0)));
        let done = Arc::new(AtomicBool::new(false));
        let sampler = args.server_pid.map(|pid| {
            let (peak, done) = (Arc::clone(&peak), Arc::clone(&done));
            std::thread::spawn(move || {
                while !done.load(Ordering::Relaxed) {
                    if let Some(kib) = rss_kib(pid) {
                        peak.fetch_max(kib, Ordering::Relaxed);
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
            })
        });
        let url = format!("{base}/api/v1/usage/export?format={format}");
        let t = Instant::now();
        let mut resp = agent
            .get(&url)
            .header("Authorization", &format!("Bearer {key}"))
            .call()
            .map_err(|e| format!("GET {url}: {e}"))?;
        if resp.status().as_u16() != 200 {
            return Err(format!("GET {url}: status {}", resp.status()));
        }
        let mut reader = resp.body_mut().with_config().limit(u64::MAX).reader();
        let mut buf = vec![0u8; 256 * 1024];
        let (mut bytes, mut lines) = (0u64, 0u64);
        loop {
            let n = reader.read(&mut buf).map_err(|e| format!("reading the export: {e}"))?;
            if n == 0 {
                break;
            }
            bytes += n as u64;
            lines += buf[..n].iter().filter(|b| **b == b'\n').count() as u64;
        }
        let secs = t.elapsed().as_secs_f64();
        done.store(true, Ordering::Relaxed);
        if let Some(s) = sampler {
            let _ = s.join();
        }
        let rows = if format == "csv" { lines.saturating_sub(1) } else { lines };
        print!(
            "export {format}: {rows} records, {:.1} MB in {secs:.2} s: {:.0} records/s, {:.1} MB/s",
            bytes as f64 / 1e6,
            rows as f64 / secs,
            bytes as f64 / 1e6 / secs
        );
        match before {
            Some(b) => {
                let p = peak.load(Ordering::Relaxed);
                println!(
                    "; server RSS {:.1} MiB before, {:.1} MiB peak (+{:.1} MiB)",
                    b as f64 / 1024.0,
                    p as f64 / 1024.0,
                    (p.saturating_sub(b)) as f64 / 1024.0
                );
            }
            None => println!(),
        }
    }
    Ok(())
}
