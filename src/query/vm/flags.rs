//! Checks that VictoriaMetrics runs with the flags the write path relies on, from the text it
//! serves at `/flags` (one `-name="value"` line per flag set on its command line; flags left at
//! their defaults are not listed).
//!
//! - `-dedup.minScrapeInterval` must be exactly 1h: samples are stamped `hour + revision` ms and
//!   only deduplication by the hour makes the newest revision replace the older ones (see
//!   `samples`). Without it every revision is counted; with a longer interval several hours
//!   collapse into one.
//! - `-retentionPeriod` must be at least [`MIN_RETENTION_MS`]: VictoriaMetrics drops samples
//!   older than its retention while still answering 2xx, so older usage would be acknowledged
//!   and lost (the default is one month).

use crate::query::time::{DAY_MS, HOUR_MS};

pub const DEDUP: &str = "dedup.minScrapeInterval";
pub const RETENTION: &str = "retentionPeriod";
/// The shortest retention accepted.
pub const MIN_RETENTION_MS: i64 = 365 * DAY_MS;
/// VictoriaMetrics counts a retention without unit in months of 31 days.
const MONTH_MS: f64 = 31.0 * DAY_MS as f64;

/// The value of `-name` in a `/flags` text, unquoted.
fn flag<'a>(text: &'a str, name: &str) -> Option<&'a str> {
    text.lines().find_map(|line| {
        let (n, v) = line.trim().strip_prefix('-')?.split_once('=')?;
        (n == name).then(|| v.trim().trim_matches('"'))
    })
}

/// A duration like Go's (`1h0m0s`, `90m`, `1.5h`, `500ms`) or VictoriaMetrics' (`100y`, `2w`,
/// `1d12h`), in milliseconds. `None` if it is neither.
fn duration_ms(s: &str) -> Option<f64> {
    const UNITS: &[(&str, f64)] = &[
        ("ns", 1e-6),
        ("us", 1e-3),
        ("µs", 1e-3),
        ("μs", 1e-3),
        ("ms", 1.0),
        ("s", 1e3),
        ("m", 60e3),
        ("h", HOUR_MS as f64),
        ("d", DAY_MS as f64),
        ("w", 7.0 * DAY_MS as f64),
        ("y", 365.0 * DAY_MS as f64),
    ];
    let mut rest = s.trim();
    match rest {
        "" => return None,
        "0" => return Some(0.0),
        _ => {}
    }
    let mut total = 0.0;
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(rest.len());
        let n: f64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let letters = rest.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(rest.len());
        let factor = UNITS.iter().find(|(u, _)| *u == &rest[..letters])?.1;
        total += n * factor;
        rest = &rest[letters..];
    }
    (total.is_finite() && total >= 0.0).then_some(total)
}

/// Days, for messages.
fn days(ms: f64) -> String {
    format!("{:.0} days", ms / DAY_MS as f64)
}

/// What is wrong with the flags in `text` (a `/flags` answer), if anything: one message naming
/// each flag and the fix.
pub fn problems(text: &str) -> Option<String> {
    let mut out = Vec::new();
    match flag(text, DEDUP) {
        None => out.push(format!(
            "-{DEDUP} is not set, so deduplication is off and every revision of an hourly value would be counted; restart VictoriaMetrics with -{DEDUP}=1h"
        )),
        Some(v) => match duration_ms(v) {
            Some(ms) if ms == HOUR_MS as f64 => {}
            Some(_) => out.push(format!(
                "-{DEDUP} is {v:?}, but toki-sync's hourly samples need exactly 1h (revisions of an hour would be counted separately or hours merged); restart VictoriaMetrics with -{DEDUP}=1h"
            )),
            None => out.push(format!("-{DEDUP} is {v:?}, which toki-sync cannot read; restart VictoriaMetrics with -{DEDUP}=1h")),
        },
    }
    let retention = match flag(text, RETENTION) {
        None => Err("is not set (the default is 1 month)".to_owned()),
        Some(v) => {
            // A plain number counts months; anything else is a duration with units.
            let ms = v
                .parse::<f64>()
                .ok()
                .filter(|m| m.is_finite() && *m >= 0.0)
                .map(|m| m * MONTH_MS)
                .or_else(|| duration_ms(v));
            match ms {
                Some(ms) if ms >= MIN_RETENTION_MS as f64 => Ok(()),
                Some(ms) => Err(format!("is {v:?} ({})", days(ms))),
                None => Err(format!("is {v:?}, which toki-sync cannot read")),
            }
        }
    };
    if let Err(what) = retention {
        out.push(format!(
            "-{RETENTION} {what}: VictoriaMetrics silently drops samples older than its retention, so older usage would be lost; restart it with -{RETENTION}=100y (at least 1y)"
        ));
    }
    if out.is_empty() { None } else { Some(out.join("; ")) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(duration_ms("1h0m0s"), Some(3_600_000.0));
        assert_eq!(duration_ms("60m"), Some(3_600_000.0));
        assert_eq!(duration_ms("1.5h"), Some(5_400_000.0));
        assert_eq!(duration_ms("500ms"), Some(500.0));
        assert_eq!(duration_ms("0s"), Some(0.0));
        assert_eq!(duration_ms("0"), Some(0.0));
        assert_eq!(duration_ms("1d12h"), Some(1.5 * DAY_MS as f64));
        assert_eq!(duration_ms("100y"), Some(36_500.0 * DAY_MS as f64));
        for bad in ["", "h", "1x", "1h-", "abc", "1..2h"] {
            assert_eq!(duration_ms(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn flag_texts() {
        // As VictoriaMetrics 1.79 serves them.
        let good = "-dedup.minScrapeInterval=\"1h0m0s\"\n-httpListenAddr=\"127.0.0.1:8428\"\n-retentionPeriod=\"100y\"\n";
        assert_eq!(problems(good), None);
        assert_eq!(problems("-dedup.minScrapeInterval=\"1h\"\n-retentionPeriod=\"12\"\n"), None, "12 months");
        assert_eq!(problems("-retentionPeriod=\"400d\"\n-dedup.minScrapeInterval=\"60m0s\"\n"), None);

        let none = problems("-httpListenAddr=\"127.0.0.1:8428\"\n").unwrap();
        assert!(
            none.contains("-dedup.minScrapeInterval is not set")
                && none.contains("-dedup.minScrapeInterval=1h"),
            "{none}"
        );
        assert!(
            none.contains("-retentionPeriod is not set") && none.contains("-retentionPeriod=100y"),
            "{none}"
        );
        for (dedup, needle) in [
            ("2h0m0s", "is \"2h0m0s\""),
            ("1m0s", "is \"1m0s\""),
            ("0s", "is \"0s\""),
            ("soon", "cannot read"),
        ] {
            let p = problems(&format!("-dedup.minScrapeInterval=\"{dedup}\"\n-retentionPeriod=\"100y\"\n"))
                .unwrap();
            assert!(
                p.contains(needle) && p.contains("restart VictoriaMetrics with -dedup.minScrapeInterval=1h"),
                "{p}"
            );
            assert!(!p.contains("retentionPeriod"), "{p}");
        }
        for (retention, needle) in
            [("1", "(31 days)"), ("30d", "(30 days)"), ("11", "(341 days)"), ("forever", "cannot read")]
        {
            let p =
                problems(&format!("-dedup.minScrapeInterval=\"1h0m0s\"\n-retentionPeriod=\"{retention}\"\n"))
                    .unwrap();
            assert!(p.starts_with("-retentionPeriod is") && p.contains(needle), "{p}");
        }
    }
}
