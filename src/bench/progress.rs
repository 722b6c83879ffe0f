//! A one-line progress bar on stderr, redrawn at most five times a second, only when stderr is a
//! terminal (so logs and CI output stay clean).

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

pub struct Progress {
    total: u64,
    what: &'static str,
    started: Instant,
    last_draw: Option<Instant>,
    enabled: bool,
}

impl Progress {
    pub fn new(total: u64, what: &'static str) -> Progress {
        Progress {
            total,
            what,
            started: Instant::now(),
            last_draw: None,
            enabled: std::io::stderr().is_terminal() && total > 0,
        }
    }

    pub fn update(&mut self, done: u64) {
        if !self.enabled
            || self.last_draw.is_some_and(|t| t.elapsed() < Duration::from_millis(200)) && done < self.total
        {
            return;
        }
        self.last_draw = Some(Instant::now());
        let frac = (done as f64 / self.total as f64).min(1.0);
        let width = 30;
        let filled = (frac * width as f64) as usize;
        let rate = done as f64 / self.started.elapsed().as_secs_f64().max(1e-9);
        let mut err = std::io::stderr().lock();
        let _ = write!(
            err,
            "\r[{}{}] {:>3.0}% {done}/{} {} ({rate:.0}/s)  ",
            "#".repeat(filled),
            ".".repeat(width - filled),
            frac * 100.0,
            self.total,
            self.what
        );
        let _ = err.flush();
    }

    pub fn finish(&mut self) {
        if self.enabled && self.last_draw.is_some() {
            let _ = writeln!(std::io::stderr());
        }
    }
}

/// p-th percentile (0-100) of a sorted slice.
pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}
