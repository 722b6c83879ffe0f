//! Prometheus metrics (`prometheus-client`), served by [`server`] on `metrics.bind`.
//!
//! The counters and histograms are process-wide (one server per process in production; the
//! code that counts calls the small functions below). Gauges that describe the data file (its
//! size, the VictoriaMetrics outbox) and the live sessions are read when scraped.
//!
//! Label values come from closed sets (endpoint names from the router, frame rejection reasons,
//! providers the server accepted, two transports), so the series count stays bounded.

pub mod server;

use std::sync::LazyLock;
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};

use crate::app::App;

type Labels = Vec<(&'static str, String)>;
type HistogramFamily = Family<Labels, Histogram, fn() -> Histogram>;

struct Metrics {
    registry: Registry,
    events: Counter,
    events_by_outcome: Family<Labels, Counter>,
    batches: Counter,
    commit_seconds: Histogram,
    group_batches: Histogram,
    rejected_frames: Family<Labels, Counter>,
    sessions: Family<Labels, Counter>,
    http_requests: Family<Labels, Counter>,
    http_seconds: HistogramFamily,
    lockouts: Counter,
    refresh_reuse: Counter,
    backups: Family<Labels, Counter>,
    // Read at scrape time.
    sessions_active: Gauge,
    devices_connected: Gauge,
    file_bytes: Gauge,
    outbox_buckets: Gauge,
    outbox_deletions: Gauge,
    outbox_oldest_age: Gauge,
    uptime: Gauge,
    tls_not_after: Gauge,
    acme_failures: Gauge,
}

fn latency_histogram() -> Histogram {
    // 0.5 ms .. ~16 s
    Histogram::new(exponential_buckets(0.0005, 2.0, 16))
}

static METRICS: LazyLock<Metrics> = LazyLock::new(|| {
    let mut root = Registry::default();
    let r = root.sub_registry_with_prefix("toki_sync");
    let m = Metrics {
        registry: Registry::default(),
        events: Counter::default(),
        events_by_outcome: Family::default(),
        batches: Counter::default(),
        commit_seconds: latency_histogram(),
        group_batches: Histogram::new(exponential_buckets(1.0, 2.0, 9)),
        rejected_frames: Family::default(),
        sessions: Family::default(),
        http_requests: Family::default(),
        http_seconds: Family::new_with_constructor(latency_histogram as fn() -> Histogram),
        lockouts: Counter::default(),
        refresh_reuse: Counter::default(),
        backups: Family::default(),
        sessions_active: Gauge::default(),
        devices_connected: Gauge::default(),
        file_bytes: Gauge::default(),
        outbox_buckets: Gauge::default(),
        outbox_deletions: Gauge::default(),
        outbox_oldest_age: Gauge::default(),
        uptime: Gauge::default(),
        tls_not_after: Gauge::default(),
        acme_failures: Gauge::default(),
    };
    r.register("ingest_events", "Usage events in committed sync batches", m.events.clone());
    r.register(
        "ingest_stored_events",
        "Committed events by what the writer did with them (inserted, duplicate, replaced, stale)",
        m.events_by_outcome.clone(),
    );
    r.register("ingest_batches", "Sync batches committed", m.batches.clone());
    r.register_with_unit(
        "ingest_commit_duration",
        "Time to apply and durably commit one group of batches",
        Unit::Seconds,
        m.commit_seconds.clone(),
    );
    r.register("ingest_group_batches", "Batches per group commit", m.group_batches.clone());
    r.register(
        "sync_rejected_frames",
        "Sync frames refused, by reason (the connection is closed or the AUTH refused)",
        m.rejected_frames.clone(),
    );
    r.register(
        "sync_sessions",
        "Sync sessions started (AUTH_OK sent), by provider and transport",
        m.sessions.clone(),
    );
    r.register("sync_sessions_active", "Sync sessions connected now", m.sessions_active.clone());
    r.register(
        "sync_devices_connected",
        "Devices with at least one sync session now",
        m.devices_connected.clone(),
    );
    r.register("http_requests", "HTTP requests answered, by endpoint and status", m.http_requests.clone());
    r.register_with_unit(
        "http_request_duration",
        "Time from request headers to response headers, by endpoint",
        Unit::Seconds,
        m.http_seconds.clone(),
    );
    r.register(
        "auth_lockouts",
        "Keys (address and user, address, or user) that reached the failure limit and were locked",
        m.lockouts.clone(),
    );
    r.register(
        "auth_refresh_token_reuse",
        "Retired refresh tokens presented again after the grace time (their token family was revoked)",
        m.refresh_reuse.clone(),
    );
    r.register("backups", "Backups by trigger (http, schedule) and result (ok, failed)", m.backups.clone());
    r.register_with_unit("data_file", "Size of the redb data file", Unit::Bytes, m.file_bytes.clone());
    r.register(
        "vm_outbox_buckets",
        "Hourly buckets waiting to be written to VictoriaMetrics",
        m.outbox_buckets.clone(),
    );
    r.register(
        "vm_outbox_deletions",
        "Deleted devices whose VictoriaMetrics series are still to be deleted",
        m.outbox_deletions.clone(),
    );
    r.register_with_unit(
        "vm_outbox_oldest_age",
        "Age of the oldest hour waiting in the VictoriaMetrics outbox (0 when empty)",
        Unit::Seconds,
        m.outbox_oldest_age.clone(),
    );
    r.register_with_unit("uptime", "Time since the server started", Unit::Seconds, m.uptime.clone());
    r.register(
        "tls_certificate_expiry_timestamp_seconds",
        "When the certificate served on the sync port and the HTTPS listener expires (Unix time)",
        m.tls_not_after.clone(),
    );
    r.register(
        "acme_renewal_failures",
        "ACME orders that failed in a row since the last success (0 without ACME)",
        m.acme_failures.clone(),
    );
    let build: Family<Labels, Gauge> = Family::default();
    build.get_or_create(&vec![("version", env!("CARGO_PKG_VERSION").to_owned())]).set(1);
    r.register("build_info", "Always 1; the version is in the label", build);
    Metrics { registry: root, ..m }
});

fn m() -> &'static Metrics {
    &METRICS
}

/// One group commit of the ingest writer.
pub fn group_committed(batches: usize, events: u64, took: Duration) {
    let m = m();
    m.batches.inc_by(batches as u64);
    m.events.inc_by(events);
    m.commit_seconds.observe(took.as_secs_f64());
    m.group_batches.observe(batches as f64);
}

/// What the writer did with the events of one committed batch.
pub fn events_stored(inserted: u32, duplicates: u32, replaced: u32, stale: u32) {
    let f = &m().events_by_outcome;
    for (outcome, n) in
        [("inserted", inserted), ("duplicate", duplicates), ("replaced", replaced), ("stale", stale)]
    {
        if n > 0 {
            f.get_or_create(&vec![("outcome", outcome.to_owned())]).inc_by(u64::from(n));
        }
    }
}

/// A sync frame refused; `reason` is one of a fixed set of snake_case words.
pub fn frame_rejected(reason: &'static str) {
    m().rejected_frames.get_or_create(&vec![("reason", reason.to_owned())]).inc();
}

/// A sync session started (AUTH accepted). `provider` passed the AUTH checks.
pub fn session_started(provider: &str, tls: bool) {
    let transport = if tls { "tls" } else { "plaintext" };
    m().sessions
        .get_or_create(&vec![("provider", provider.to_owned()), ("transport", transport.to_owned())])
        .inc();
}

/// An HTTP response; the endpoint label is the router's name for the path.
pub fn http_request(method: &hyper::Method, path: &str, status: u16, took: Duration) {
    let endpoint = endpoint_label(method, path);
    let m = m();
    m.http_requests
        .get_or_create(&vec![("endpoint", endpoint.clone()), ("status", status.to_string())])
        .inc();
    m.http_seconds.get_or_create(&vec![("endpoint", endpoint)]).observe(took.as_secs_f64());
}

pub fn lockout() {
    m().lockouts.inc();
}

pub fn refresh_reuse() {
    m().refresh_reuse.inc();
}

pub fn backup(trigger: &'static str, ok: bool) {
    let result = if ok { "ok" } else { "failed" };
    m().backups.get_or_create(&vec![("trigger", trigger.to_owned()), ("result", result.to_owned())]).inc();
}

/// `MyDeviceDelete("…")` → `my_device_delete`; paths the router does not know are `not_found`.
fn endpoint_label(method: &hyper::Method, path: &str) -> String {
    use crate::http::router::{RouteError, route};
    match route(method, path) {
        Ok(e) => {
            let debug = format!("{e:?}");
            let name = debug.split(['(', ' ', '{']).next().unwrap_or("");
            let mut out = String::with_capacity(name.len() + 4);
            for (i, c) in name.chars().enumerate() {
                if c.is_ascii_uppercase() {
                    if i > 0 {
                        out.push('_');
                    }
                    out.push(c.to_ascii_lowercase());
                } else {
                    out.push(c);
                }
            }
            out
        }
        Err(RouteError::NotFound) => "not_found".into(),
        Err(RouteError::MethodNotAllowed(_)) => "method_not_allowed".into(),
    }
}

/// The exposition (Prometheus text format 0.0.4), with the scrape-time gauges read first.
/// Blocking (reads the data file's table lengths).
pub fn render(app: &App) -> String {
    let m = m();
    m.sessions_active.set(app.sessions.count() as i64);
    m.devices_connected.set(app.sessions.connected_devices() as i64);
    m.file_bytes.set(app.store.file_size() as i64);
    match app.store.vm_backlog() {
        Ok(b) => {
            m.outbox_buckets.set(b.buckets as i64);
            m.outbox_deletions.set(b.deletions as i64);
        }
        Err(e) => tracing::warn!(error = %e, "metrics: reading the outbox size failed"),
    }
    match app.store.vm_oldest_hour() {
        Ok(Some(hour)) => {
            let age = crate::store::now_secs() - i64::from(hour) * 3600;
            m.outbox_oldest_age.set(age.max(0));
        }
        Ok(None) => {
            m.outbox_oldest_age.set(0);
        }
        Err(e) => tracing::warn!(error = %e, "metrics: reading the outbox age failed"),
    }
    m.uptime.set(app.started_at.elapsed().as_secs() as i64);
    if let Some(certs) = &app.certs {
        m.tls_not_after.set(certs.current().info.not_after);
        m.acme_failures.set(certs.renewal().map_or(0, |r| i64::from(r.failures)));
    }
    let mut out = String::new();
    if let Err(e) = prometheus_client::encoding::prometheus_text::encode(&mut out, &m.registry) {
        tracing::error!(error = %e, "metrics: encoding failed");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_labels_are_route_names() {
        let get = hyper::Method::GET;
        assert_eq!(endpoint_label(&get, "/health"), "health");
        assert_eq!(endpoint_label(&hyper::Method::DELETE, "/me/devices/x"), "my_device_delete");
        assert_eq!(
            endpoint_label(&hyper::Method::DELETE, "/admin/teams/t/members/u"),
            "admin_team_member_remove"
        );
        assert_eq!(endpoint_label(&get, "/nope/1234"), "not_found");
        assert_eq!(endpoint_label(&hyper::Method::POST, "/health"), "method_not_allowed");
    }
}
