//! Request rate limits per principal (per address for requests without one), in fixed one-minute
//! windows per scope class, with the `X-RateLimit-*` headers on every API response.
//!
//! The guard counts a request once it knows who is calling; requests without a principal (the
//! sign-in endpoints, and requests whose credential failed) count under their address group.
//! What was counted travels to the response in a task-local, so handlers need no changes.
//!
//! Memory is bounded: at most `max_tracked` (subject, class) counters. When the table is full,
//! counters of past windows are dropped; if it is still full (a flood of distinct addresses
//! within one minute), new subjects share one overflow counter per class, so the flood limits
//! itself instead of growing the table.

use std::cell::Cell;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Instant;

use hyper::header::{HeaderName, HeaderValue, RETRY_AFTER};

use super::response::HttpResponse;
use crate::config::RateLimitConfig;

const WINDOW_SECS: u64 = 60;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Class {
    Usage,
    Devices,
    Admin,
    /// `/me`, API keys and clients, device approval.
    Account,
    /// Requests without a principal.
    Anonymous,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Subject {
    /// A password or SSO session: all of a user's sessions share one counter.
    User(u32),
    ApiKey(u128),
    Client(u128),
    Address(IpAddr),
    /// New subjects while the table is full.
    Overflow,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Status {
    pub limit: u32,
    pub remaining: u32,
    /// Seconds until the window resets.
    pub reset_secs: u64,
    pub exceeded: bool,
}

impl Status {
    pub fn message(&self) -> String {
        format!("rate limit exceeded, retry after {}s", self.reset_secs)
    }

    /// The three headers, and `Retry-After` on a refusal.
    pub fn apply(&self, resp: &mut HttpResponse) {
        let h = resp.headers_mut();
        h.insert(HeaderName::from_static("x-ratelimit-limit"), HeaderValue::from(self.limit));
        h.insert(HeaderName::from_static("x-ratelimit-remaining"), HeaderValue::from(self.remaining));
        h.insert(HeaderName::from_static("x-ratelimit-reset"), HeaderValue::from(self.reset_secs));
        if self.exceeded {
            h.insert(RETRY_AFTER, HeaderValue::from(self.reset_secs));
        }
    }
}

pub struct RateLimiter {
    usage: u32,
    devices: u32,
    admin: u32,
    account: u32,
    anonymous: u32,
    capacity: usize,
    start: Instant,
    /// (subject, class) -> (window number, requests in it).
    counters: Mutex<HashMap<(Subject, Class), (u64, u32)>>,
    /// One more than the window of the last sweep of a full table (0: never). Entries only ever
    /// get the current window, so a second sweep in the same window could remove nothing; a
    /// flood of new subjects then costs no scan per request. Changed under `counters`' lock.
    swept: std::sync::atomic::AtomicU64,
}

impl RateLimiter {
    pub fn new(cfg: &RateLimitConfig) -> RateLimiter {
        RateLimiter {
            usage: cfg.usage_per_minute,
            devices: cfg.devices_per_minute,
            admin: cfg.admin_per_minute,
            account: cfg.account_per_minute,
            anonymous: cfg.anonymous_per_minute,
            capacity: cfg.max_tracked.max(16),
            start: Instant::now(),
            counters: Mutex::new(HashMap::new()),
            swept: std::sync::atomic::AtomicU64::new(0),
        }
    }

    fn limit(&self, class: Class) -> u32 {
        match class {
            Class::Usage => self.usage,
            Class::Devices => self.devices,
            Class::Admin => self.admin,
            Class::Account => self.account,
            Class::Anonymous => self.anonymous,
        }
    }

    /// Counts one request. `None` when the class is not limited (limit 0).
    pub fn hit(&self, subject: Subject, class: Class) -> Option<Status> {
        let limit = self.limit(class);
        if limit == 0 {
            return None;
        }
        let elapsed = self.start.elapsed().as_secs();
        let window = elapsed / WINDOW_SECS;
        let reset_secs = WINDOW_SECS - elapsed % WINDOW_SECS;
        let mut counters = self.counters.lock().unwrap_or_else(|p| p.into_inner());
        let mut key = (subject, class);
        if !counters.contains_key(&key) && counters.len() >= self.capacity {
            use std::sync::atomic::Ordering::Relaxed;
            if self.swept.load(Relaxed) != window + 1 {
                counters.retain(|_, (w, _)| *w == window);
                self.swept.store(window + 1, Relaxed);
            }
            if counters.len() >= self.capacity {
                key = (Subject::Overflow, class);
            }
        }
        let slot = counters.entry(key).or_insert((window, 0));
        if slot.0 != window {
            *slot = (window, 0);
        }
        let exceeded = slot.1 >= limit;
        if !exceeded {
            slot.1 += 1;
        }
        Some(Status { limit, remaining: limit - slot.1, reset_secs, exceeded })
    }

    pub fn tracked(&self) -> usize {
        self.counters.lock().unwrap_or_else(|p| p.into_inner()).len()
    }
}

tokio::task_local! {
    static COUNTED: Cell<Option<Status>>;
}

/// Runs a request's handling with a slot for what the guard counts; returns it with the result.
pub async fn counting<T>(f: impl Future<Output = T>) -> (T, Option<Status>) {
    COUNTED
        .scope(Cell::new(None), async move {
            let out = f.await;
            (out, COUNTED.with(Cell::get))
        })
        .await
}

/// Called by the guard (or the dispatcher) once it counted the request.
pub fn record(status: Option<Status>) {
    let _ = COUNTED.try_with(|c| c.set(status.or(c.get())));
}

pub fn recorded() -> bool {
    COUNTED.try_with(|c| c.get().is_some()).unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(limit: u32, max_tracked: usize) -> RateLimitConfig {
        RateLimitConfig {
            usage_per_minute: limit,
            devices_per_minute: limit,
            admin_per_minute: limit,
            account_per_minute: limit,
            anonymous_per_minute: limit,
            max_tracked,
        }
    }

    #[test]
    fn counts_down_and_refuses() {
        let r = RateLimiter::new(&cfg(3, 100));
        let s = |r: &RateLimiter| r.hit(Subject::User(1), Class::Usage).unwrap();
        assert_eq!(s(&r).remaining, 2);
        assert_eq!(s(&r).remaining, 1);
        assert_eq!(s(&r).remaining, 0);
        let refused = s(&r);
        assert!(refused.exceeded && refused.reset_secs >= 1 && refused.reset_secs <= 60);
        // Another class and another subject have their own counters.
        assert!(!r.hit(Subject::User(1), Class::Admin).unwrap().exceeded);
        assert!(!r.hit(Subject::User(2), Class::Usage).unwrap().exceeded);
        assert!(RateLimiter::new(&cfg(0, 100)).hit(Subject::User(1), Class::Usage).is_none());
    }

    #[test]
    fn a_flood_of_distinct_subjects_stays_bounded() {
        let r = RateLimiter::new(&cfg(1000, 1000));
        for i in 0..200_000u32 {
            r.hit(Subject::Address(IpAddr::from(i.to_be_bytes())), Class::Anonymous);
        }
        assert!(r.tracked() <= 1001, "{} counters", r.tracked());
        // The flood shares the overflow counter, which is soon exhausted.
        assert!(r.hit(Subject::Address("203.0.113.1".parse().unwrap()), Class::Anonymous).unwrap().exceeded);
        // Subjects tracked before the flood keep their own counters.
        assert!(
            !r.hit(Subject::Address(IpAddr::from(5u32.to_be_bytes())), Class::Anonymous).unwrap().exceeded
        );
    }
}
