//! `toki-sync bench seed`: fills a data file (offline; the server must be stopped) with realistic
//! usage from several users and devices over months, through the real ingest writer, for query
//! benchmarks and size measurements.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use clap::Args;
use serde::Serialize;

use super::progress::Progress;
use super::workload::Stream;
use crate::ingest::{BatchJob, Ingest};
use crate::store::devices::AuthDevice;
use crate::store::users::{NewUser, Role, UserStatus};

#[derive(Args)]
pub struct SeedArgs {
    /// Data directory (created if missing).
    #[arg(long, value_name = "DIR")]
    data_dir: PathBuf,
    /// Events to add.
    #[arg(long)]
    events: u64,
    #[arg(long, default_value_t = 5)]
    users: u32,
    #[arg(long, default_value_t = 2)]
    devices_per_user: u32,
    /// The events spread evenly over this many days, ending now.
    #[arg(long, default_value_t = 180)]
    days: u32,
    /// Password of the seeded users (`seed-user-1` …), for `bench query`.
    #[arg(long, default_value = "seed-password")]
    password: String,
    /// Add to an existing data file too. Without it an existing file is refused: the seeded
    /// accounts have a known password and do not belong in a real server's data.
    #[arg(long)]
    force: bool,
    #[arg(long)]
    json: bool,
}

#[derive(Serialize)]
struct SeedReport {
    events: u64,
    users: u32,
    devices: u32,
    seconds: f64,
    events_per_sec: f64,
    file_bytes: u64,
    bytes_per_event: f64,
    /// Accounts this run created (existing `seed-user-N` accounts are reused), all with the
    /// `--password` password.
    created_users: Vec<String>,
}

const BATCH: usize = 1000;
const IN_FLIGHT: usize = 8;

pub fn run(args: SeedArgs) -> Result<(), String> {
    crate::auth::rules::check_password(&args.password).map_err(|e| format!("--password: {e}"))?;
    if args.users == 0 || args.devices_per_user == 0 || args.days == 0 {
        return Err("--users, --devices-per-user and --days must be at least 1".into());
    }
    let mut config = crate::config::Config::defaults();
    config.storage.data_dir = args.data_dir.clone();
    if config.db_path().exists() && !args.force {
        return Err(format!(
            "{} already exists; bench seed would add accounts seed-user-1 … with the password {:?} to it. Seed a fresh --data-dir, or give --force to add them anyway",
            config.db_path().display(),
            args.password
        ));
    }
    let store = Arc::new(crate::bootstrap::open_store(&config).map_err(|e| e.to_string())?);
    let hash = crate::auth::password::hash_blocking(&args.password);
    let now = crate::store::now_secs();
    // Each device syncs Claude Code and Codex, as a real machine would.
    let mut streams = Vec::new();
    let mut created_users = Vec::new();
    for u in 1..=args.users {
        let name = format!("seed-user-{u}");
        let user = match store.user_by_name(&name).map_err(|e| e.to_string())? {
            Some(user) => user,
            None => {
                created_users.push(name.clone());
                store
                    .create_user(NewUser {
                        username: name,
                        role: Role::User,
                        status: UserStatus::Active,
                        password_hash: Some(hash.clone()),
                        oidc_subject: None,
                    })
                    .map_err(|e| e.to_string())?
            }
        };
        for d in 1..=args.devices_per_user {
            let key = format!("seed-device-{u}-{d}");
            let AuthDevice::Ready(device) =
                store.auth_device(user.id, &key, &format!("seed-{u}-{d}"), now).map_err(|e| e.to_string())?
            else {
                return Err(format!("device {key} was deleted; use a fresh data dir"));
            };
            for provider in ["claude_code", "codex"] {
                streams.push((user.id, device.id, Stream::new(provider, u64::from(device.id), 7)));
            }
        }
    }
    let per_stream = args.events.div_ceil(streams.len() as u64);
    let span_ms = i64::from(args.days) * 86_400_000;
    let step_ms = (span_ms / per_stream.max(1) as i64).max(1);
    let start_ms = now * 1000 - span_ms;

    let (ingest, writer) = Ingest::start(Arc::clone(&store)).map_err(|e| e.to_string())?;
    let runtime =
        tokio::runtime::Builder::new_multi_thread().enable_all().build().map_err(|e| e.to_string())?;
    let started = Instant::now();
    let mut progress = Progress::new(args.events, "events");
    let mut done = 0u64;
    runtime.block_on(async {
        let mut pending = tokio::task::JoinSet::new();
        let mut sent = vec![0u64; streams.len()];
        let mut next = 0usize;
        while done < args.events {
            // Round-robin over the streams, a batch at a time, a few batches in flight.
            let i = next % streams.len();
            next += 1;
            if sent[i] >= per_stream {
                continue;
            }
            let n = (per_stream - sent[i]).min(BATCH as u64).min(args.events - done) as usize;
            let (user, device, stream) = &mut streams[i];
            let batch = stream.batch(n, start_ms + sent[i] as i64 * step_ms, step_ms);
            sent[i] += n as u64;
            done += n as u64;
            let (ingest, user, device) = (ingest.clone(), *user, *device);
            pending.spawn(
                async move { ingest.submit(BatchJob { device, user, batch }).await.map(|_| n as u64) },
            );
            while pending.len() >= IN_FLIGHT {
                if let Some(r) = pending.join_next().await {
                    r.map_err(|e| e.to_string())?.map_err(|e| e.to_string())?;
                }
            }
            progress.update(done);
        }
        while let Some(r) = pending.join_next().await {
            r.map_err(|e| e.to_string())?.map_err(|e| e.to_string())?;
        }
        Ok::<_, String>(())
    })?;
    progress.finish();
    drop(ingest);
    writer.join().map_err(|_| "ingest writer panicked".to_owned())?;
    let seconds = started.elapsed().as_secs_f64();
    let stats = store.stats().map_err(|e| e.to_string())?;
    let report = SeedReport {
        events: done,
        users: args.users,
        devices: args.users * args.devices_per_user,
        seconds,
        events_per_sec: done as f64 / seconds.max(1e-9),
        file_bytes: stats.file_bytes,
        bytes_per_event: stats.file_bytes as f64 / stats.events.max(1) as f64,
        created_users,
    };
    Arc::try_unwrap(store)
        .map_err(|_| "store still in use".to_owned())?
        .close()
        .map_err(|e| e.to_string())?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report).map_err(|e| e.to_string())?);
    } else {
        println!(
            "seeded {} events ({} users, {} devices, {} days) in {:.1} s ({:.0} events/s); file {} bytes, {:.1} bytes/event",
            report.events,
            report.users,
            report.devices,
            args.days,
            report.seconds,
            report.events_per_sec,
            report.file_bytes,
            report.bytes_per_event
        );
        match report.created_users.as_slice() {
            [] => println!("created no accounts (the seed-user accounts existed)"),
            names => println!(
                "created {} accounts ({}) with the password {:?}, and their devices",
                names.len(),
                names.join(", "),
                args.password
            ),
        }
    }
    Ok(())
}
