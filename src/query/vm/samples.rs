//! The series toki-sync writes to VictoriaMetrics, and the rule that keeps them exact.
//!
//! Each hourly rollup bucket (user, hour, device, provider, model, project) becomes one sample
//! per series, carrying the bucket's **current** value (not a delta):
//!
//! | Series | Value in the hour |
//! |---|---|
//! | `toki_tokens_total{type="<column>"}` | tokens of that column |
//! | `toki_events_total` | events |
//! | `toki_usage_total` | the clients' own totals |
//!
//! all labelled `user` (user UUID), `device` (device UUID), `provider`, `model` and `project`
//! (absent for no project). The values are per-hour amounts, so a window's sum is
//! `sum_over_time(toki_tokens_total[…])`.
//!
//! A bucket changes when events are resent (no change), when a Claude message is replaced by a
//! later version (its tokens, model and even its hour may change: two buckets change), or when a
//! device is deleted. Every send of a bucket gets a new **revision** r (1, 2, …, stored before the
//! send), and its samples are stamped `hour start + r` milliseconds. VictoriaMetrics runs with
//! `-dedup.minScrapeInterval=1h` (the drainer checks, see `flags`), which keeps only the sample with the largest timestamp in each
//! hour `(k·1h, (k+1)·1h]` of a series; since `1 <= r <= 3,600,000`, all revisions of a bucket
//! share one such interval and the newest revision wins. Re-sending a revision (a retried
//! request) repeats the same value at the same timestamp, which deduplication also collapses.
//! Without deduplication, VictoriaMetrics would add every revision up.

use serde::Serialize;
use uuid::Uuid;

use crate::query::time::HOUR_MS;
use crate::store::vm_outbox::ClaimedBucket;

pub const TOKENS: &str = "toki_tokens_total";
pub const EVENTS: &str = "toki_events_total";
pub const USAGE: &str = "toki_usage_total";

/// The timestamp of a bucket's samples: its hour plus the revision in milliseconds.
pub fn timestamp_ms(hour: u32, revision: u32) -> i64 {
    i64::from(hour) * HOUR_MS + i64::from(revision)
}

/// Matches every toki series of a device (for deletion).
pub fn device_selector(device: Uuid) -> String {
    format!("{{__name__=~\"{TOKENS}|{EVENTS}|{USAGE}\",device=\"{device}\"}}")
}

#[derive(Serialize)]
struct Line<'a> {
    metric: Labels<'a>,
    values: [u64; 1],
    timestamps: [i64; 1],
}

#[derive(Serialize)]
struct Labels<'a> {
    #[serde(rename = "__name__")]
    name: &'a str,
    user: &'a str,
    device: &'a str,
    provider: &'a str,
    model: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    project: &'a str,
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    column: Option<&'a str>,
}

/// The samples of claimed buckets in VictoriaMetrics' JSON line import format.
pub fn encode(buckets: &[ClaimedBucket]) -> Vec<u8> {
    let mut out = Vec::with_capacity(buckets.len() * 6 * 256);
    for b in buckets {
        let (user, device) = (b.labels.user.to_string(), b.labels.device.to_string());
        let ts = timestamp_ms(b.hour, b.revision);
        let mut line = |name: &str, column: Option<&str>, value: u64| {
            let labels = Labels {
                name,
                user: &user,
                device: &device,
                provider: &b.labels.provider,
                model: &b.labels.model,
                project: &b.labels.project,
                column,
            };
            // Serializing plain strings and integers cannot fail.
            let _ =
                serde_json::to_writer(&mut out, &Line { metric: labels, values: [value], timestamps: [ts] });
            out.push(b'\n');
        };
        line(EVENTS, None, b.events);
        line(USAGE, None, b.usage_total);
        for (column, n) in &b.tokens {
            line(TOKENS, Some(column), *n);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::vm_outbox::{Labels as BucketLabels, MAX_REVISION};

    #[test]
    fn revisions_stay_inside_their_dedup_hour() {
        // VictoriaMetrics' dedup intervals are (k·1h, (k+1)·1h].
        let interval = |ts: i64| (ts + HOUR_MS - 1).div_euclid(HOUR_MS);
        assert_eq!(interval(timestamp_ms(10, 1)), interval(timestamp_ms(10, MAX_REVISION)));
        assert_ne!(interval(timestamp_ms(10, MAX_REVISION)), interval(timestamp_ms(11, 1)));
        assert_ne!(interval(timestamp_ms(9, MAX_REVISION)), interval(timestamp_ms(10, 1)));
    }

    #[test]
    fn lines() {
        let b = ClaimedBucket {
            key: (1, 5, 2, 3, 4, 0),
            hour: 5,
            revision: 2,
            labels: BucketLabels {
                user: Uuid::nil(),
                device: Uuid::nil(),
                provider: "codex".into(),
                model: "gpt-5\"x".into(),
                project: String::new(),
            },
            events: 3,
            usage_total: 30,
            tokens: vec![("input".into(), 20), ("output".into(), 0)],
            record: None,
        };
        let text = String::from_utf8(encode(&[b])).unwrap();
        let lines: Vec<serde_json::Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert_eq!(lines.len(), 4);
        assert_eq!(lines[0]["metric"]["__name__"], EVENTS);
        assert_eq!(lines[0]["timestamps"][0], 5 * HOUR_MS + 2);
        assert_eq!(lines[2]["metric"]["type"], "input");
        assert_eq!(lines[2]["metric"]["model"], "gpt-5\"x");
        assert!(lines[2]["metric"].get("project").is_none());
        assert_eq!(lines[3]["values"][0], 0);
    }
}
