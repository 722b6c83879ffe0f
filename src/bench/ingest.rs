//! `toki-sync bench ingest`: N devices sync M batches of K events each, concurrently, against a
//! running server, waiting for every ACK. Frames are built (and zstd-compressed from 100 events,
//! like the real client) before the clock starts, so the figure is the server's.

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Args;
use serde::Serialize;
use tokio::sync::{Barrier, mpsc};

use super::client::{BenchClient, Transport, tls_config};
use super::progress::{Progress, percentile};
use super::workload::Stream;
use crate::sync::wire::{AuthPayload, MsgType, encode_frame};

#[derive(Args, Clone)]
pub struct IngestArgs {
    /// Sync address, HOST:PORT.
    #[arg(long, value_name = "HOST:PORT")]
    server: String,
    /// Use TLS (default: plaintext, which the server accepts from loopback).
    #[arg(long, conflicts_with = "plain")]
    tls: bool,
    /// Use plaintext (the default).
    #[arg(long)]
    plain: bool,
    /// With --tls: trust this PEM certificate (e.g. <data_dir>/tls/cert.pem).
    #[arg(long, value_name = "FILE")]
    tls_ca: Option<PathBuf>,
    /// With --tls: accept any certificate.
    #[arg(long)]
    tls_insecure: bool,
    /// Access token to sync with.
    #[arg(long, env = "TOKI_BENCH_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Instead of --token: the server's HTTP base URL; the bench signs in as --admin-user
    /// (password in TOKI_BENCH_ADMIN_PASSWORD), creates a user for this run and syncs as it.
    #[arg(long, value_name = "URL")]
    http: Option<String>,
    #[arg(long, default_value = "admin")]
    admin_user: String,
    /// With --http: sync as this existing user instead (password in TOKI_BENCH_PASSWORD), e.g.
    /// one of the `bench seed` users.
    #[arg(long, value_name = "NAME", requires = "http", conflicts_with = "token")]
    user: Option<String>,
    /// Concurrent devices (one connection each).
    #[arg(long, default_value_t = 1)]
    devices: usize,
    /// Batches per device.
    #[arg(long, default_value_t = 100)]
    batches: usize,
    /// Events per batch.
    #[arg(long, default_value_t = 1000)]
    batch_size: usize,
    /// claude_code or codex.
    #[arg(long, default_value = "claude_code")]
    provider: String,
    /// The events of each device are spread over this many days, ending now, like a daemon's
    /// first catch-up of its local history (0: one millisecond apart).
    #[arg(long, default_value_t = 30)]
    span_days: u32,
    /// With --http: keep what the run created (the bench user, or with --user the devices it
    /// added), e.g. for `bench query`. Default: removed, with their usage, when the run ends.
    #[arg(long)]
    keep: bool,
    /// Print the result as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Serialize)]
pub struct IngestReport {
    pub transport: &'static str,
    pub devices: usize,
    pub batches: usize,
    pub batch_size: usize,
    /// Events in acknowledged batches.
    pub events: u64,
    pub seconds: f64,
    pub events_per_sec: f64,
    pub ack_p50_ms: f64,
    pub ack_p99_ms: f64,
    pub ack_max_ms: f64,
    /// Batches that were not acknowledged: a device that could not connect or sign in counts
    /// all of its batches, one whose connection failed mid-run the rest of its batches.
    pub failed_batches: u64,
    /// Devices that did not get all of their batches acknowledged.
    pub failed_devices: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_error: Option<String>,
    /// With --http: the user this run synced as (created for it, or --user), and an access
    /// token for it (valid for the server's `auth.access_token_ttl_secs`), e.g. for
    /// `bench query --token`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub access_token: Option<String>,
    /// With --http: what was removed at the end ("user bench-…" or "N devices of NAME"), or
    /// "nothing (--keep)".
    #[serde(skip_serializing_if = "Option::is_none")]
    pub removed: Option<String>,
}

pub fn run(args: IngestArgs) -> Result<(), String> {
    let runtime =
        tokio::runtime::Builder::new_multi_thread().enable_all().build().map_err(|e| e.to_string())?;
    let (token, user) = match (&args.token, &args.http) {
        (Some(t), _) => (t.clone(), None),
        (None, Some(url)) => {
            let user = match &args.user {
                Some(name) => super::http::existing_user(url, name)?,
                None => super::http::bench_user(url, &args.admin_user)?,
            };
            (user.access_token.clone(), Some(user))
        }
        (None, None) => {
            return Err("give --token (or TOKI_BENCH_TOKEN), or --http with admin credentials".into());
        }
    };
    let run_id = crate::auth::random::u64();
    let result = runtime.block_on(ingest(args.clone(), token, run_id));
    // What the run created goes again unless --keep (also when the run itself failed): bench
    // users and devices left behind would show up in every list of a real server.
    let (removed, user) = match (user, &args.http) {
        (Some(u), Some(url)) => {
            let removed = match (&u.created_id, args.keep) {
                (_, true) => Ok("nothing (--keep)".to_owned()),
                (Some(id), false) => super::http::remove_user(url, &args.admin_user, id)
                    .map(|()| format!("user {} with its devices and usage", u.name)),
                (None, false) => super::http::remove_devices(url, &u.name, &device_key_prefix(run_id))
                    .map(|n| format!("{n} devices of {} with their usage", u.name)),
            };
            (Some(removed), Some(u))
        }
        _ => (None, None),
    };
    let cleanup_error = match &removed {
        Some(Err(e)) => Some(format!("could not remove what the run created: {e}")),
        _ => None,
    };
    let mut report = match result {
        Ok(r) => r,
        Err(e) => {
            return Err(match cleanup_error {
                Some(c) => format!("{e}; {c}"),
                None => e,
            });
        }
    };
    report.removed = removed.and_then(Result::ok);
    if let Some(u) = user {
        // The token is worth printing only while its user exists.
        if args.keep || u.created_id.is_none() {
            report.access_token = Some(u.access_token);
        }
        report.user = Some(u.name);
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report).map_err(|e| e.to_string())?);
    } else {
        match (&report.user, &report.access_token) {
            (Some(user), Some(token)) => println!("user {user}; access token {token}"),
            (Some(user), None) => println!("user {user}"),
            _ => {}
        }
        println!(
            "{} events ({} devices x {} batches x {}) over {} in {:.2} s: {:.0} events/s; ACK latency p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms; failed batches {} (devices {})",
            report.events,
            report.devices,
            report.batches,
            report.batch_size,
            report.transport,
            report.seconds,
            report.events_per_sec,
            report.ack_p50_ms,
            report.ack_p99_ms,
            report.ack_max_ms,
            report.failed_batches,
            report.failed_devices
        );
        if let Some(removed) = &report.removed {
            println!("removed {removed}");
        }
    }
    if let Some(e) = cleanup_error {
        return Err(e);
    }
    match &report.first_error {
        Some(e) => Err(format!(
            "{} of {} batches failed on {} devices; first error: {e}",
            report.failed_batches,
            report.devices * report.batches,
            report.failed_devices
        )),
        None => Ok(()),
    }
}

fn resolve(server: &str) -> Result<(SocketAddr, String), String> {
    let addr = server
        .to_socket_addrs()
        .map_err(|e| format!("--server {server}: {e}"))?
        .next()
        .ok_or_else(|| format!("--server {server}: no address"))?;
    let host = server.rsplit_once(':').map(|(h, _)| h.trim_matches(['[', ']'])).unwrap_or(server).to_owned();
    Ok((addr, host))
}

/// What a device task reports: one ACKed batch (with its latency), or the end of the device
/// with the number of its batches that will never be acknowledged.
enum Outcome {
    Acked(Duration),
    Failed { batches: u64, error: String },
}

/// The device keys of one run start with this.
fn device_key_prefix(run_id: u64) -> String {
    format!("bench-{run_id:016x}-")
}

async fn ingest(args: IngestArgs, token: String, run_id: u64) -> Result<IngestReport, String> {
    if args.devices == 0 || args.batches == 0 || args.batch_size == 0 {
        return Err("--devices, --batches and --batch-size must be at least 1".into());
    }
    let provider: &'static str = match args.provider.as_str() {
        "claude_code" => "claude_code",
        "codex" => "codex",
        other => return Err(format!("--provider {other}: use claude_code or codex")),
    };
    let (addr, host) = resolve(&args.server)?;
    let transport = if args.tls {
        if args.tls_ca.is_none() && !args.tls_insecure {
            return Err("--tls needs --tls-ca FILE or --tls-insecure".into());
        }
        crate::tls::install_crypto_provider();
        Transport::Tls(tls_config(args.tls_ca.as_deref())?)
    } else {
        Transport::Plain
    };

    // Build every frame first.
    let events_per_device = (args.batches * args.batch_size) as i64;
    let now_ms = crate::store::now_secs() * 1000;
    let span_ms = (i64::from(args.span_days) * 86_400_000).max(events_per_device);
    let step_ms = span_ms / events_per_device;
    let mut frames: Vec<Vec<Vec<u8>>> = Vec::with_capacity(args.devices);
    for d in 0..args.devices {
        let mut stream = Stream::new(provider, d as u64, run_id);
        let start = now_ms - span_ms;
        let device_frames = (0..args.batches)
            .map(|b| {
                let batch =
                    stream.batch(args.batch_size, start + (b * args.batch_size) as i64 * step_ms, step_ms);
                let plain = encode_frame(MsgType::SyncBatch, &batch);
                if args.batch_size >= 100 {
                    let z = zstd::encode_all(&plain[8..], 3).expect("zstd in memory");
                    let mut f = Vec::with_capacity(8 + z.len());
                    f.extend_from_slice(&(MsgType::SyncBatchZstd as u32).to_le_bytes());
                    f.extend_from_slice(&(z.len() as u32).to_le_bytes());
                    f.extend_from_slice(&z);
                    f
                } else {
                    plain
                }
            })
            .collect();
        frames.push(device_frames);
    }

    let barrier = Arc::new(Barrier::new(args.devices + 1));
    let (tx, mut rx) = mpsc::unbounded_channel::<Outcome>();
    let mut tasks = Vec::new();
    for (d, device_frames) in frames.into_iter().enumerate() {
        let (barrier, tx, token, transport, host) =
            (Arc::clone(&barrier), tx.clone(), token.clone(), transport.clone(), host.clone());
        tasks.push(tokio::spawn(async move {
            let connected = async {
                let mut c = BenchClient::connect(addr, &host, &transport).await?;
                c.auth(&AuthPayload {
                    jwt: token,
                    device_name: format!("bench-{d}"),
                    schema_version: crate::sync::wire::SCHEMA_VERSION,
                    provider: provider.to_owned(),
                    device_key: format!("{}{d}", device_key_prefix(run_id)),
                    protocol_version: crate::sync::wire::PROTOCOL_VERSION,
                })
                .await?;
                Ok::<_, String>(c)
            }
            .await;
            barrier.wait().await;
            let total = device_frames.len() as u64;
            let mut client = match connected {
                Ok(c) => c,
                Err(error) => {
                    let _ = tx.send(Outcome::Failed { batches: total, error });
                    return;
                }
            };
            for (i, frame) in device_frames.iter().enumerate() {
                let t0 = Instant::now();
                match client.batch(frame).await {
                    Ok(_) => {
                        let _ = tx.send(Outcome::Acked(t0.elapsed()));
                    }
                    Err(error) => {
                        // This batch and every one after it on this device are lost.
                        let _ = tx.send(Outcome::Failed { batches: total - i as u64, error });
                        return;
                    }
                }
            }
        }));
    }
    drop(tx);
    barrier.wait().await;
    let started = Instant::now();
    let total_batches = (args.devices * args.batches) as u64;
    let mut progress = Progress::new(total_batches * args.batch_size as u64, "events");
    let mut latencies = Vec::with_capacity(total_batches as usize);
    let (mut failed_batches, mut failed_devices) = (0u64, 0usize);
    let mut first_error = None;
    while let Some(outcome) = rx.recv().await {
        match outcome {
            Outcome::Acked(d) => latencies.push(d),
            Outcome::Failed { batches, error } => {
                failed_batches += batches;
                failed_devices += 1;
                first_error.get_or_insert(error);
            }
        }
        progress.update(latencies.len() as u64 * args.batch_size as u64);
    }
    let elapsed = started.elapsed().as_secs_f64();
    progress.finish();
    for t in tasks {
        t.await.map_err(|e| format!("a device task failed: {e}"))?;
    }
    latencies.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let events = latencies.len() as u64 * args.batch_size as u64;
    Ok(IngestReport {
        transport: if args.tls { "TLS" } else { "plaintext" },
        devices: args.devices,
        batches: args.batches,
        batch_size: args.batch_size,
        events,
        seconds: elapsed,
        events_per_sec: events as f64 / elapsed.max(1e-9),
        ack_p50_ms: ms(percentile(&latencies, 50.0)),
        ack_p99_ms: ms(percentile(&latencies, 99.0)),
        ack_max_ms: ms(latencies.last().copied().unwrap_or_default()),
        failed_batches,
        failed_devices,
        first_error,
        user: None,
        access_token: None,
        removed: None,
    })
}
