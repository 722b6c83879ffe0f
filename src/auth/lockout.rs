//! Brute-force lockout: `max_attempts` failures for one key within `window` lock that key for
//! `lockout`. A success clears the key. Memory is bounded: at most `capacity` keys are tracked,
//! and when the table is full the stalest entries are dropped in bulk (so a spray of new keys
//! costs amortised constant time per request).
//!
//! Handlers use [`Lockout::begin`]: it counts the attempt as a failure *before* the slow part
//! (a password hash, a store lookup) runs, so parallel requests cannot all pass a check before
//! the first failure is recorded; at most `max_attempts` attempts per key are ever in flight or
//! failed within a window. The returned [`Attempt`] is then settled: a failure stays counted, a
//! success clears the key, and an attempt that was neither (a malformed request, a code that
//! exists but cannot be approved any more) is taken back when it is dropped.
//!
//! Where the secret cannot be guessed (refresh tokens are signed), counting up front would only
//! turn a client's own parallel requests into failures, so [`Lockout::check`] counts nothing in
//! advance and its [`Check`] records a failure only when one completed.
//!
//! Keys that name an address use [`crate::net::address_group`] (IPv6 by /64): build them with the
//! constructors, never from a raw address.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::config::AuthConfig;
use crate::net::address_group;

const DEFAULT_CAPACITY: usize = 100_000;
/// Usernames are cut to this length in keys, so one entry has a bounded size.
const MAX_NAME_IN_KEY: usize = 64;

#[derive(Clone, Debug, Hash, PartialEq, Eq)]
pub enum LockKey {
    /// Password login: client address group and (lower-cased) username.
    Login(IpAddr, String),
    /// Failed registrations (bad or taken names) of an address group.
    Register(IpAddr),
    /// Successful registrations of an address group (a separate, slower limit).
    Registered(IpAddr),
    /// A refresh token that is signed by us: its token family, so one client's failures never
    /// lock out another's valid token.
    RefreshFamily(u64),
    /// A refresh token that does not parse (or has expired): the address group it came from.
    RefreshAddress(IpAddr),
    /// Device-code approval: the approving user.
    DeviceApprove(u32),
}

impl LockKey {
    pub fn login(ip: IpAddr, username: &str) -> LockKey {
        LockKey::Login(address_group(ip), username.to_lowercase().chars().take(MAX_NAME_IN_KEY).collect())
    }

    pub fn register(ip: IpAddr) -> LockKey {
        LockKey::Register(address_group(ip))
    }

    pub fn registered(ip: IpAddr) -> LockKey {
        LockKey::Registered(address_group(ip))
    }

    /// The family when the token is ours, the address group otherwise.
    pub fn refresh(family: Option<u64>, ip: IpAddr) -> LockKey {
        match family {
            Some(f) => LockKey::RefreshFamily(f),
            None => LockKey::RefreshAddress(address_group(ip)),
        }
    }
}

struct Entry {
    failures: VecDeque<Instant>,
    locked_until: Option<Instant>,
    last: Instant,
}

pub struct Lockout {
    max_attempts: usize,
    window: Duration,
    lockout: Duration,
    capacity: usize,
    entries: Mutex<HashMap<LockKey, Entry>>,
}

impl Lockout {
    pub fn new(cfg: &AuthConfig) -> Self {
        Self::with_capacity(cfg, DEFAULT_CAPACITY)
    }

    pub fn with_capacity(cfg: &AuthConfig, capacity: usize) -> Self {
        Self::with_limits(
            cfg.brute_force_max_attempts,
            Duration::from_secs(cfg.brute_force_window_secs),
            Duration::from_secs(cfg.brute_force_lockout_secs),
            capacity,
        )
    }

    /// `max_attempts` within `window` lock a key for `lockout` (for limits other than the
    /// configured brute-force one, such as successful registrations per address).
    pub fn with_limits(max_attempts: u32, window: Duration, lockout: Duration, capacity: usize) -> Self {
        Lockout {
            max_attempts: max_attempts.max(1) as usize,
            window,
            lockout,
            capacity: capacity.max(16),
            entries: Mutex::new(HashMap::new()),
        }
    }

    fn entries(&self) -> std::sync::MutexGuard<'_, HashMap<LockKey, Entry>> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// `Err(retry_after)` while the key is locked; counts nothing.
    fn locked(&self, key: &LockKey) -> Result<(), Duration> {
        let now = Instant::now();
        let mut entries = self.entries();
        let Some(entry) = entries.get_mut(key) else { return Ok(()) };
        match entry.locked_until {
            Some(until) if until > now => Err(until - now),
            Some(_) => {
                // The lock ran out: start over.
                entries.remove(key);
                Ok(())
            }
            None => Ok(()),
        }
    }

    /// Records a failure; returns `Some(retry_after)` if the key is now locked. (Handlers use
    /// `begin`, which counts before the slow check; this is its shorthand for tests.)
    #[cfg(test)]
    pub fn fail(&self, key: LockKey) -> Option<Duration> {
        if let Ok(attempt) = self.begin(key.clone()) {
            attempt.fail();
        }
        self.locked(&key).err()
    }

    /// For secrets that cannot be guessed: `Err(retry_after)` while the key is locked, and
    /// nothing is counted until the returned [`Check`] is settled as a failure, so parallel
    /// requests of one client never lock it out.
    pub fn check(&self, key: LockKey) -> Result<Check<'_>, Duration> {
        self.locked(&key)?;
        Ok(Check { lockout: self, key })
    }

    /// Records one completed failure for `key`.
    fn record_failure(&self, key: LockKey) {
        if let Ok(attempt) = self.begin(key) {
            attempt.fail();
        }
    }

    /// Counts an attempt for `key` up front (see the module comment). `Err(retry_after)` while
    /// the key is locked; nothing is counted then. The attempt that reaches `max_attempts` still
    /// runs (its own answer is the real one) and locks the key for the ones after it.
    pub fn begin(&self, key: LockKey) -> Result<Attempt<'_>, Duration> {
        let now = Instant::now();
        let mut entries = self.entries();
        if !entries.contains_key(&key) && entries.len() >= self.capacity {
            self.evict(&mut entries, now);
        }
        let entry = entries.entry(key.clone()).or_insert_with(|| Entry {
            failures: VecDeque::new(),
            locked_until: None,
            last: now,
        });
        if let Some(until) = entry.locked_until {
            if until > now {
                return Err(until - now);
            }
            entry.locked_until = None;
            entry.failures.clear();
        }
        entry.last = now;
        while entry.failures.front().is_some_and(|t| now.duration_since(*t) >= self.window) {
            entry.failures.pop_front();
        }
        entry.failures.push_back(now);
        if entry.failures.len() >= self.max_attempts {
            if entry.locked_until.is_none() {
                crate::metrics::lockout();
            }
            entry.locked_until = Some(now + self.lockout);
        }
        Ok(Attempt { lockout: self, key: Some(key), at: now })
    }

    /// Takes back an attempt counted by `begin` that turned out to be no failure. A lock it
    /// caused is lifted again if the remaining failures are below the limit.
    fn refund(&self, key: &LockKey, at: Instant) {
        let mut entries = self.entries();
        let Some(entry) = entries.get_mut(key) else { return };
        let Some(i) = entry.failures.iter().rposition(|t| *t == at) else { return };
        entry.failures.remove(i);
        if entry.failures.len() < self.max_attempts {
            entry.locked_until = None;
        }
        if entry.failures.is_empty() && entry.locked_until.is_none() {
            entries.remove(key);
        }
    }

    pub fn succeed(&self, key: &LockKey) {
        self.entries().remove(key);
    }

    pub fn tracked(&self) -> usize {
        self.entries().len()
    }

    fn evict(&self, entries: &mut HashMap<LockKey, Entry>, now: Instant) {
        entries.retain(|_, e| match e.locked_until {
            Some(until) => until > now,
            None => now.duration_since(e.last) < self.window,
        });
        let target = self.capacity - self.capacity / 10;
        if entries.len() > target {
            // Still crowded with live entries: drop the least recently active tenth (and more if
            // needed), so that the next ~capacity/10 new keys need no eviction.
            // Locked keys go last: dropping one would lift its lock.
            let mut by_age: Vec<(bool, Instant, LockKey)> =
                entries.iter().map(|(k, e)| (e.locked_until.is_some(), e.last, k.clone())).collect();
            by_age.sort_by_key(|(locked, t, _)| (*locked, *t));
            for (_, _, k) in by_age.into_iter().take(entries.len() - target) {
                entries.remove(&k);
            }
        }
    }
}

/// One attempt counted by [`Lockout::begin`]. Settle it with [`Attempt::fail`] or
/// [`Attempt::succeed`]; dropped unsettled, it is taken back (not a failure, not a success).
#[must_use = "an unsettled attempt is taken back when dropped"]
pub struct Attempt<'a> {
    lockout: &'a Lockout,
    /// `None` once settled.
    key: Option<LockKey>,
    at: Instant,
}

impl Attempt<'_> {
    /// The attempt failed: it stays counted.
    pub fn fail(mut self) {
        self.key = None;
    }

    /// The attempt succeeded: the key is cleared.
    pub fn succeed(mut self) {
        if let Some(key) = self.key.take() {
            self.lockout.succeed(&key);
        }
    }
}

impl Drop for Attempt<'_> {
    fn drop(&mut self) {
        if let Some(key) = self.key.take() {
            self.lockout.refund(&key, self.at);
        }
    }
}

/// A lock check made by [`Lockout::check`]: nothing was counted yet.
pub struct Check<'a> {
    lockout: &'a Lockout,
    key: LockKey,
}

impl Check<'_> {
    /// The request failed: count it now.
    pub fn fail(self) {
        self.lockout.record_failure(self.key);
    }

    /// The request succeeded: the key is cleared.
    pub fn succeed(self) {
        self.lockout.succeed(&self.key);
    }
}

/// Seconds for a `Retry-After` header and the error message, rounded up.
pub fn retry_secs(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(max: u32, window: u64, lockout: u64) -> AuthConfig {
        let mut c = crate::config::Config::defaults().auth;
        c.brute_force_max_attempts = max;
        c.brute_force_window_secs = window;
        c.brute_force_lockout_secs = lockout;
        c
    }

    #[test]
    fn locks_after_max_failures_and_success_clears() {
        let l = Lockout::new(&cfg(3, 60, 60));
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        let k = LockKey::login(ip, "Bob");
        assert!(l.fail(k.clone()).is_none());
        assert!(l.fail(LockKey::login(ip, "bob")).is_none(), "same key, case folded");
        assert!(l.locked(&k).is_ok());
        let d = l.fail(k.clone()).expect("third failure locks");
        assert_eq!(retry_secs(d), 60);
        assert!(l.locked(&k).is_err());
        assert!(l.locked(&LockKey::login(ip, "alice")).is_ok(), "other usernames unaffected");
        assert!(
            l.locked(&LockKey::login("10.0.0.2".parse().unwrap(), "bob")).is_ok(),
            "other IPs unaffected"
        );
        l.succeed(&k);
        assert!(l.locked(&k).is_ok());
    }

    #[test]
    fn lock_expires() {
        let l = Lockout::new(&cfg(1, 60, 1));
        let k = LockKey::register("::1".parse().unwrap());
        assert!(l.fail(k.clone()).is_some());
        assert!(l.locked(&k).is_err());
        std::thread::sleep(Duration::from_millis(1100));
        assert!(l.locked(&k).is_ok());
    }

    #[test]
    fn memory_is_bounded() {
        let l = Lockout::with_capacity(&cfg(5, 300, 900), 1000);
        for i in 0..50_000u32 {
            l.fail(LockKey::refresh(None, IpAddr::from(i.to_be_bytes())));
        }
        assert!(l.tracked() <= 1000, "{}", l.tracked());
        // A locked key survives a flood of new keys as long as younger ones can be dropped.
        let locked = LockKey::DeviceApprove(1);
        for _ in 0..5 {
            l.fail(locked.clone());
        }
        for i in 0..500u32 {
            l.fail(LockKey::refresh(None, IpAddr::from((i + 1_000_000).to_be_bytes())));
        }
        assert!(l.locked(&locked).is_err());

        // Attempts counted up front are bounded the same way.
        let l = Lockout::with_capacity(&cfg(5, 300, 900), 100);
        for i in 0..10_000u32 {
            l.begin(LockKey::register(IpAddr::from(i.to_be_bytes()))).unwrap().fail();
        }
        assert!(l.tracked() <= 100, "{}", l.tracked());
    }

    #[test]
    fn begin_counts_up_front_so_parallel_attempts_are_bounded() {
        let l = Lockout::new(&cfg(3, 60, 60));
        let k = LockKey::DeviceApprove(7);
        // Three attempts in flight at once: all allowed, none settled yet; the fourth is refused.
        let a: Vec<Attempt<'_>> = (0..3).map(|_| l.begin(k.clone()).expect("below the limit")).collect();
        assert!(l.begin(k.clone()).is_err(), "the limit counts attempts still in flight");
        for attempt in a {
            attempt.fail();
        }
        assert!(l.locked(&k).is_err());
        assert!(l.begin(k.clone()).is_err());
    }

    #[test]
    fn unsettled_attempts_are_taken_back_and_success_clears() {
        let l = Lockout::new(&cfg(3, 60, 60));
        let k = LockKey::DeviceApprove(8);
        l.begin(k.clone()).unwrap().fail();
        l.begin(k.clone()).unwrap().fail();
        // Neither failure nor success (e.g. looking up one's own code): not counted, not cleared.
        for _ in 0..10 {
            drop(l.begin(k.clone()).expect("taken-back attempts do not accumulate"));
        }
        assert!(l.locked(&k).is_ok());
        // The third attempt reaches the limit; taken back, it lifts the lock it set.
        let third = l.begin(k.clone()).unwrap();
        assert!(l.locked(&k).is_err(), "locked while the attempt that reached the limit runs");
        drop(third);
        assert!(l.locked(&k).is_ok());
        l.begin(k.clone()).unwrap().fail();
        assert!(l.begin(k.clone()).is_err(), "two kept failures plus one: locked");

        let k2 = LockKey::DeviceApprove(9);
        l.begin(k2.clone()).unwrap().fail();
        l.begin(k2.clone()).unwrap().fail();
        l.begin(k2.clone()).unwrap().succeed();
        assert_eq!(l.tracked(), 1, "a success removes the key");
        // A refund lifts a lock only if the failures that stay counted are below the limit.
        let k3 = LockKey::DeviceApprove(10);
        let late = l.begin(k3.clone()).unwrap();
        for _ in 0..2 {
            l.begin(k3.clone()).unwrap().fail();
        }
        assert!(l.locked(&k3).is_err());
        drop(late);
        assert!(l.locked(&k3).is_ok(), "only two failures remain");
        assert!(l.fail(k3.clone()).is_some());
        assert!(l.locked(&k3).is_err());
    }

    #[test]
    fn old_failures_leave_the_window() {
        let l = Lockout::new(&cfg(2, 1, 60));
        let k = LockKey::refresh(None, "::1".parse().unwrap());
        l.begin(k.clone()).unwrap().fail();
        std::thread::sleep(Duration::from_millis(1100));
        l.begin(k.clone()).unwrap().fail();
        assert!(l.locked(&k).is_ok(), "the first failure is outside the window");
        assert!(l.fail(k.clone()).is_some());
    }
}

#[cfg(test)]
mod issue16 {
    use super::*;

    fn cfg(max: u32) -> AuthConfig {
        let mut c = crate::config::Config::defaults().auth;
        c.brute_force_max_attempts = max;
        c
    }

    #[test]
    fn checks_count_only_completed_failures() {
        let l = Lockout::new(&cfg(3));
        let k = LockKey::refresh(Some(42), "10.0.0.1".parse().unwrap());
        // Ten checks in flight at once (parallel refreshes of one client): none counts.
        let checks: Vec<Check<'_>> = (0..10).map(|_| l.check(k.clone()).expect("not locked")).collect();
        assert_eq!(l.tracked(), 0);
        for c in checks {
            c.succeed();
        }
        for _ in 0..3 {
            l.check(k.clone()).unwrap().fail();
        }
        assert!(l.check(k.clone()).is_err(), "three completed failures lock the family");
        assert!(l.check(LockKey::refresh(Some(43), "10.0.0.1".parse().unwrap())).is_ok(), "other families");
        assert!(l.check(LockKey::refresh(None, "10.0.0.1".parse().unwrap())).is_ok(), "the address");
    }

    #[test]
    fn address_keys_group_ipv6_by_64() {
        let a: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:ffff:1:2:3".parse().unwrap();
        let other: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(LockKey::login(a, "bob"), LockKey::login(b, "BOB"));
        assert_eq!(LockKey::register(a), LockKey::register(b));
        assert_eq!(LockKey::registered(a), LockKey::registered(b));
        assert_eq!(LockKey::refresh(None, a), LockKey::refresh(None, b));
        assert_ne!(LockKey::register(a), LockKey::register(other));
        let v4: IpAddr = "10.0.0.1".parse().unwrap();
        assert_ne!(LockKey::register(v4), LockKey::register("10.0.0.2".parse().unwrap()));
        assert_eq!(LockKey::register(v4), LockKey::register("::ffff:10.0.0.1".parse().unwrap()));
        // A spray over one /64 is one key: it locks after max attempts.
        let l = Lockout::new(&cfg(3));
        for i in 0..3u16 {
            let ip = IpAddr::V6(std::net::Ipv6Addr::new(0x2001, 0xdb8, 1, 2, i, 0, 0, 1));
            l.begin(LockKey::login(ip, "bob")).unwrap().fail();
        }
        assert!(l.begin(LockKey::login(a, "bob")).is_err());
    }
}
