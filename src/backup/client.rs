//! `toki-sync backup --server URL --out FILE`: fetches `GET /admin/backup` from a running server.
//!
//! The download is checked while it arrives (the same reader `admin restore` uses), written to
//! `FILE.partial` and renamed to FILE only when it is complete and its checksum matches, so
//! FILE is never a half backup.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

use super::format;
use crate::bench::progress::Progress;

/// An access token of an admin account.
pub const TOKEN_ENV: &str = "TOKI_SYNC_TOKEN";
/// Or the admin's password, to sign in as `--user`.
pub const PASSWORD_ENV: &str = "TOKI_ADMIN_PASSWORD";

#[derive(Args)]
pub struct BackupArgs {
    /// Base URL of the server's HTTP side, e.g. https://toki.example.com or http://127.0.0.1:9091.
    #[arg(long, value_name = "URL")]
    server: String,
    /// Where to write the backup.
    #[arg(long, value_name = "FILE")]
    out: PathBuf,
    /// Admin account to sign in as with the password from TOKI_ADMIN_PASSWORD (when
    /// TOKI_SYNC_TOKEN is not set).
    #[arg(long, value_name = "NAME", default_value = "admin")]
    user: String,
    /// Trust this PEM CA certificate (for a server with a private or self-signed certificate).
    #[arg(long, value_name = "FILE")]
    ca_file: Option<PathBuf>,
    /// Replace FILE if it exists.
    #[arg(long)]
    force: bool,
}

pub fn run(args: BackupArgs) -> ExitCode {
    match fetch(&args) {
        Ok(header) => {
            println!(
                "backup written to {}: {} entries in {} tables, schema version {}, taken {}",
                args.out.display(),
                header.entries,
                header.tables.len(),
                header.schema_version,
                header.created_at
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("toki-sync backup: {e}");
            ExitCode::FAILURE
        }
    }
}

fn agent(ca_file: Option<&PathBuf>) -> Result<ureq::Agent, String> {
    let mut config = ureq::Agent::config_builder().http_status_as_error(false).max_redirects(0);
    if let Some(path) = ca_file {
        config = config.tls_config(crate::outbound::trusting(path)?);
    }
    Ok(config.build().into())
}

fn token(agent: &ureq::Agent, base: &str, user: &str) -> Result<String, String> {
    if let Ok(t) = std::env::var(TOKEN_ENV) {
        if !t.trim().is_empty() {
            return Ok(t.trim().to_owned());
        }
    }
    let password = std::env::var(PASSWORD_ENV).map_err(|_| {
        format!(
            "set {TOKEN_ENV} to an admin's access token, or {PASSWORD_ENV} to the password of --user ({user})"
        )
    })?;
    let mut resp = agent
        .post(&format!("{base}/login"))
        .send_json(serde_json::json!({ "username": user, "password": password }))
        .map_err(|e| format!("signing in at {base}: {e}"))?;
    let status = resp.status().as_u16();
    let body: serde_json::Value = resp.body_mut().read_json().unwrap_or_default();
    match (status, body["access_token"].as_str()) {
        (200, Some(t)) => Ok(t.to_owned()),
        _ => Err(format!(
            "signing in as {user} failed ({status}): {}",
            body["error"].as_str().unwrap_or("no token in the reply")
        )),
    }
}

/// Writes what is read through it to `out`.
struct Tee<R, W> {
    inner: R,
    out: W,
}

impl<R: Read, W: Write> Read for Tee<R, W> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.out.write_all(&buf[..n])?;
        Ok(n)
    }
}

fn fetch(args: &BackupArgs) -> Result<format::Header, String> {
    if args.out.exists() && !args.force {
        return Err(format!("{} exists; pass --force to replace it", args.out.display()));
    }
    let base = args.server.trim_end_matches('/');
    let agent = agent(args.ca_file.as_ref())?;
    let token = token(&agent, base, &args.user)?;
    let url = format!("{base}/admin/backup");
    let mut resp = agent
        .get(&url)
        .header("Authorization", &format!("Bearer {token}"))
        .call()
        .map_err(|e| format!("GET {url}: {e}"))?;
    let status = resp.status().as_u16();
    if status != 200 {
        let body: serde_json::Value = resp.body_mut().read_json().unwrap_or_default();
        return Err(format!("GET {url}: {status}: {}", body["error"].as_str().unwrap_or("unexpected reply")));
    }
    let total: u64 =
        resp.headers().get("x-backup-entries").and_then(|v| v.to_str().ok()?.parse().ok()).unwrap_or(0);
    let partial = PathBuf::from(format!("{}.partial", args.out.display()));
    let _ = std::fs::remove_file(&partial);
    let file = super::schedule::create_private(&partial)?;
    let mut tee = Tee { inner: resp.body_mut().with_config().reader(), out: std::io::BufWriter::new(file) };
    let mut progress = Progress::new(total, "entries");
    let checked = format::verify(&mut tee, |n| progress.update(n));
    progress.finish();
    let finished = checked.map_err(|e| e.to_string()).and_then(|header| {
        let file = tee.out.into_inner().map_err(|e| e.to_string())?;
        file.sync_all().map_err(|e| e.to_string())?;
        std::fs::rename(&partial, &args.out)
            .map_err(|e| format!("cannot rename to {}: {e}", args.out.display()))?;
        Ok(header)
    });
    if finished.is_err() {
        let _ = std::fs::remove_file(&partial);
    }
    finished.map_err(|e| format!("{url}: {e}; nothing was written to {}", args.out.display()))
}
