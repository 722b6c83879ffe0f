//! Configured certificate files are loaded again when they change on disk (a renewal by certbot
//! or another ACME client, a new certificate copied in), without a restart.
//!
//! The files are polled (two `stat` calls) rather than watched with inotify: that works the same
//! for files replaced by rename, edited in place, on network file systems and in containers.
//! A pair that does not load (the certificate written, the key not yet) keeps the old one served
//! and is tried again at the next change.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use super::{Certs, Served};
use crate::shutdown::ShutdownSignal;

/// How often the files are looked at.
pub const POLL: Duration = Duration::from_secs(2);

/// What the file system says of a file: a different answer means it changed.
type Stamp = Option<(SystemTime, u64, u64)>;

fn stamp(path: &Path) -> Stamp {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path).ok()?;
    Some((m.modified().ok()?, m.len(), m.ino()))
}

pub async fn watch(certs: Arc<Certs>, cert_path: PathBuf, key_path: PathBuf, mut stop: ShutdownSignal) {
    let mut seen = (stamp(&cert_path), stamp(&key_path));
    loop {
        tokio::select! {
            () = tokio::time::sleep(POLL) => {}
            () = stop.wait() => return,
        }
        let now = (stamp(&cert_path), stamp(&key_path));
        if now == seen {
            continue;
        }
        seen = now;
        let (c, k) = (cert_path.clone(), key_path.clone());
        match tokio::task::spawn_blocking(move || super::files::load_pair(&c, &k)).await {
            Ok(Ok((key, info))) if info.fingerprint != certs.current().info.fingerprint => {
                certs.replace(Served { key, info, source: "files" });
            }
            Ok(Ok(_)) => {}
            Ok(Err(e)) => tracing::warn!(
                error = %e,
                "the TLS certificate files changed but do not load; still serving the previous certificate"
            ),
            Err(e) => tracing::warn!(error = %e, "reloading the TLS certificate failed"),
        }
    }
}
