//! Sign-ins in progress: what `/auth/oidc/authorize` started and the callback must finish. A
//! state is single use (taken out when the callback arrives), expires after [`STATE_TTL`], and
//! the number in progress is bounded in all and per client address.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub const STATE_TTL: Duration = Duration::from_secs(600);
/// Sign-ins in progress at once, in all.
pub const MAX_PENDING: usize = 10_000;
/// Sign-ins in progress at once from one address group (`crate::net::address_group`).
pub const MAX_PENDING_PER_ADDRESS: usize = 50;

/// Where the callback sends the tokens.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReturnTo {
    /// The CLI's loopback URL: tokens in the query.
    Cli(String),
    /// A page of this server (`/dashboard`, `/device`): tokens in the fragment.
    Page(String),
}

#[derive(Debug)]
pub struct Pending {
    pub nonce: String,
    pub pkce_verifier: String,
    pub return_to: ReturnTo,
    /// The page's `client_state`, echoed in the fragment (see AREAS.md's sign-in contract).
    pub client_state: Option<String>,
    address: String,
    created: Instant,
}

#[derive(Debug, PartialEq, Eq)]
pub enum TakeError {
    /// Never issued, already used, or forged.
    Unknown,
    Expired,
}

#[derive(Debug, PartialEq, Eq)]
pub enum BeginError {
    TooManyFromAddress,
    TooMany,
}

#[derive(Default)]
pub struct PendingStates {
    map: Mutex<HashMap<String, Pending>>,
}

impl PendingStates {
    pub fn insert(
        &self,
        state: String,
        nonce: String,
        pkce_verifier: String,
        return_to: ReturnTo,
        client_state: Option<String>,
        address: String,
    ) -> Result<(), BeginError> {
        let now = Instant::now();
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        map.retain(|_, p| now.duration_since(p.created) < STATE_TTL);
        if map.len() >= MAX_PENDING {
            return Err(BeginError::TooMany);
        }
        if map.values().filter(|p| p.address == address).count() >= MAX_PENDING_PER_ADDRESS {
            return Err(BeginError::TooManyFromAddress);
        }
        map.insert(state, Pending { nonce, pkce_verifier, return_to, client_state, address, created: now });
        Ok(())
    }

    /// Takes a state out (so it can never be used again).
    pub fn take(&self, state: &str) -> Result<Pending, TakeError> {
        let pending =
            self.map.lock().unwrap_or_else(|e| e.into_inner()).remove(state).ok_or(TakeError::Unknown)?;
        if pending.created.elapsed() >= STATE_TTL {
            return Err(TakeError::Expired);
        }
        Ok(pending)
    }

    pub fn len(&self) -> usize {
        self.map.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    #[cfg(test)]
    fn age(&self, state: &str, by: Duration) {
        if let Some(p) = self.map.lock().unwrap().get_mut(state) {
            p.created = p.created.checked_sub(by).unwrap();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn begin(p: &PendingStates, state: &str, addr: &str) -> Result<(), BeginError> {
        p.insert(state.into(), "n".into(), "v".into(), ReturnTo::Page("/dashboard".into()), None, addr.into())
    }

    #[test]
    fn single_use_and_expiry() {
        let p = PendingStates::default();
        begin(&p, "s1", "a").unwrap();
        assert!(p.take("s1").is_ok());
        assert_eq!(p.take("s1").unwrap_err(), TakeError::Unknown, "a state is used once");
        assert_eq!(p.take("forged").unwrap_err(), TakeError::Unknown);
        begin(&p, "s2", "a").unwrap();
        p.age("s2", STATE_TTL);
        assert_eq!(p.take("s2").unwrap_err(), TakeError::Expired);
    }

    #[test]
    fn bounded_per_address() {
        let p = PendingStates::default();
        for i in 0..MAX_PENDING_PER_ADDRESS {
            begin(&p, &format!("s{i}"), "a").unwrap();
        }
        assert_eq!(begin(&p, "one-more", "a").unwrap_err(), BeginError::TooManyFromAddress);
        begin(&p, "other", "b").unwrap();
        assert_eq!(p.len(), MAX_PENDING_PER_ADDRESS + 1);
        p.age("s0", STATE_TTL);
        begin(&p, "after-expiry", "a").unwrap();
    }
}
