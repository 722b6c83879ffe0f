//! Scheduled backups (`[backup] dir`, `interval_hours`, `keep`): a snapshot into
//! `dir/toki-sync-<UTC time>.tsbak` whenever the newest one there is older than the interval,
//! then the oldest beyond `keep` are deleted. Only files with that name pattern are touched.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use super::Snapshot;
use super::format::EXTENSION;
use crate::app::App;
use crate::shutdown::ShutdownSignal;

const PREFIX: &str = "toki-sync-";
/// After a failed backup (disk full, directory gone), the next attempt comes this much later.
const RETRY: Duration = Duration::from_secs(600);

pub async fn run(app: Arc<App>, mut shutdown: ShutdownSignal) {
    let Some(dir) = app.config.backup.dir.clone() else { return };
    let interval = Duration::from_secs(app.config.backup.interval_hours * 3600);
    let keep = app.config.backup.keep;
    tracing::info!(dir = %dir.display(), hours = interval.as_secs() / 3600, keep, "scheduled backups on");
    loop {
        let wait = {
            let d = dir.clone();
            tokio::task::spawn_blocking(move || until_due(&d, interval)).await.unwrap_or(RETRY)
        };
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = shutdown.wait() => return,
        }
        let d = dir.clone();
        let outcome = app.blocking(move |a| write_backup(a, &d, keep)).await;
        crate::metrics::backup("schedule", matches!(outcome, Ok(Ok(_))));
        let failed = match outcome {
            Ok(Ok((path, entries))) => {
                tracing::info!(path = %path.display(), entries, "scheduled backup written");
                false
            }
            Ok(Err(e)) => {
                tracing::error!(dir = %dir.display(), error = %e, "scheduled backup failed; retrying in 10 minutes");
                true
            }
            Err(e) => {
                tracing::error!(error = %e, "scheduled backup failed; retrying in 10 minutes");
                true
            }
        };
        if failed {
            tokio::select! {
                () = tokio::time::sleep(RETRY) => {}
                () = shutdown.wait() => return,
            }
        }
    }
}

/// Time until the next backup is due: now when `dir` has none, else when the newest turns
/// `interval` old.
fn until_due(dir: &Path, interval: Duration) -> Duration {
    let newest = backups(dir).last().and_then(|(secs, _)| u64::try_from(*secs).ok());
    let now = crate::store::now_secs().max(0) as u64;
    match newest {
        Some(t) => Duration::from_secs((t + interval.as_secs()).saturating_sub(now)),
        None => Duration::ZERO,
    }
}

/// Scheduled backups in `dir`, oldest first, with the time in their names.
pub fn backups(dir: &Path) -> Vec<(i64, PathBuf)> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    let mut out: Vec<(i64, PathBuf)> = entries
        .filter_map(Result::ok)
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let stamp = name.strip_prefix(PREFIX)?.strip_suffix(&format!(".{EXTENSION}"))?;
            Some((parse_stamp(stamp)?, e.path()))
        })
        .collect();
    out.sort();
    out
}

/// `20261201T173000Z` for a Unix time.
pub fn stamp(secs: i64) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp(secs).unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    let f = time::macros::format_description!("[year][month][day]T[hour][minute][second]Z");
    t.format(&f).unwrap_or_default()
}

fn parse_stamp(s: &str) -> Option<i64> {
    let f = time::macros::format_description!("[year][month][day]T[hour][minute][second]Z");
    time::PrimitiveDateTime::parse(s, &f).ok().map(|t| t.assume_utc().unix_timestamp())
}

/// Writes one backup into `dir` (via a hidden temporary name, so a half-written file never
/// looks like a backup) and deletes the oldest beyond `keep`. Returns the path and entry count.
pub fn write_backup(app: &App, dir: &Path, keep: usize) -> Result<(PathBuf, u64), String> {
    if !dir.exists() {
        crate::bootstrap::create_private_dir(dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    }
    let now = crate::store::now_secs();
    let path = dir.join(format!("{PREFIX}{}.{EXTENSION}", stamp(now)));
    let partial = dir.join(format!(".{PREFIX}{}.{EXTENSION}.partial", stamp(now)));
    let written = (|| {
        let file = create_private(&partial)?;
        let snapshot = Snapshot::begin(&app.store).map_err(|e| e.to_string())?;
        let entries = snapshot.header.entries;
        let file = snapshot.write(std::io::BufWriter::new(file)).map_err(|e| e.to_string())?;
        let file = file.into_inner().map_err(|e| e.to_string())?;
        file.sync_all().map_err(|e| e.to_string())?;
        std::fs::rename(&partial, &path).map_err(|e| e.to_string())?;
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
        Ok::<_, String>(entries)
    })();
    let entries = match written {
        Ok(n) => n,
        Err(e) => {
            let _ = std::fs::remove_file(&partial);
            return Err(e);
        }
    };
    let all = backups(dir);
    for (_, old) in all.iter().take(all.len().saturating_sub(keep)) {
        match std::fs::remove_file(old) {
            Ok(()) => tracing::info!(path = %old.display(), "removed old scheduled backup"),
            Err(e) => tracing::warn!(path = %old.display(), error = %e, "cannot remove old scheduled backup"),
        }
    }
    Ok((path, entries))
}

/// A new backup file only its owner can read (backups hold password hashes and the signing
/// secret).
pub fn create_private(path: &Path) -> Result<std::fs::File, String> {
    crate::bootstrap::create_private_file(path).map_err(|e| format!("cannot create {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamps_round_trip_and_sort() {
        let s = stamp(1_764_610_200);
        assert_eq!(s, "20251201T173000Z");
        assert_eq!(parse_stamp(&s), Some(1_764_610_200));
        assert_eq!(parse_stamp("2025-12-01"), None);
    }

    #[test]
    fn only_named_backups_count_and_due_time_follows_the_newest() {
        let dir = tempfile::tempdir().unwrap();
        let now = crate::store::now_secs();
        for (name, age) in [("a", 0), ("b", 3600)] {
            let _ = name;
            std::fs::write(dir.path().join(format!("{PREFIX}{}.{EXTENSION}", stamp(now - age))), b"x")
                .unwrap();
        }
        std::fs::write(dir.path().join("notes.txt"), b"x").unwrap();
        std::fs::write(dir.path().join(format!("{PREFIX}garbage.{EXTENSION}")), b"x").unwrap();
        assert_eq!(backups(dir.path()).len(), 2);
        let wait = until_due(dir.path(), Duration::from_secs(7200));
        assert!(wait > Duration::from_secs(7000) && wait <= Duration::from_secs(7200), "{wait:?}");
        assert_eq!(until_due(&dir.path().join("missing"), Duration::from_secs(60)), Duration::ZERO);
    }
}
