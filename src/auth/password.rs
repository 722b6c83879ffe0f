//! argon2id password hashing, off the async threads.
//!
//! Hashing is deliberately expensive (19 MiB, 2 passes), so it runs on the blocking pool in a
//! bounded [`WorkQueue`]: at most twice the cores hash at once, [`QUEUE`] more wait, and one
//! address group has at most [`PER_ADDRESS`] checks running or waiting. A flood of logins is
//! refused (503 / 429 with `Retry-After`) instead of delaying every real login behind it. A login for an unknown user is
//! verified against a dummy hash so it costs the same as a real one and does not reveal which
//! usernames exist.

use std::net::IpAddr;
use std::sync::{Arc, OnceLock};

use crate::work_queue::{WorkError, WorkQueue};
use argon2::password_hash::{PasswordHash, PasswordHasher as _, PasswordVerifier as _, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};

/// Password checks waiting for a hasher, beyond those running.
pub const QUEUE: usize = 32;
/// Password checks one address group may have running or waiting.
pub const PER_ADDRESS: usize = 4;

/// OWASP's first recommended argon2id configuration: m = 19 MiB, t = 2, p = 1.
const MEMORY_KIB: u32 = 19 * 1024;
const PASSES: u32 = 2;

fn argon2() -> Argon2<'static> {
    let params = Params::new(MEMORY_KIB, PASSES, 1, None).expect("argon2 parameters are valid");
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

/// Hashes a password to a PHC string (blocking; for the admin CLI and the hasher below).
pub fn hash_blocking(password: &str) -> String {
    let salt = SaltString::encode_b64(&super::random::bytes::<16>()).expect("16-byte salt encodes");
    argon2()
        .hash_password(password.as_bytes(), &salt)
        .expect("argon2id hashing with valid parameters cannot fail")
        .to_string()
}

/// Checks a password against a PHC string in constant time (blocking).
pub fn verify_blocking(password: &str, phc: &str) -> bool {
    match PasswordHash::new(phc) {
        // The parameters come from the stored hash, so hashes made with other costs still verify.
        Ok(parsed) => argon2().verify_password(password.as_bytes(), &parsed).is_ok(),
        Err(_) => {
            tracing::error!("a stored password hash is not a valid PHC string");
            false
        }
    }
}

fn dummy_hash() -> String {
    hash_blocking(&super::random::token::<16>())
}

#[derive(Clone)]
pub struct Passwords {
    /// Hashed in the background at start-up (so start-up does not wait for it); a login that
    /// comes before it is ready waits for it.
    dummy: Arc<OnceLock<String>>,
    queue: Arc<WorkQueue>,
}

impl Passwords {
    pub fn new() -> Self {
        Self::with_queue(WorkQueue::new("password", WorkQueue::default_parallel(), QUEUE, PER_ADDRESS))
    }

    pub fn with_queue(queue: Arc<WorkQueue>) -> Self {
        let dummy = Arc::new(OnceLock::new());
        let warm = Arc::clone(&dummy);
        std::thread::spawn(move || {
            warm.get_or_init(dummy_hash);
        });
        Passwords { dummy, queue }
    }

    /// Hashes a new password for the request from `client`.
    pub async fn hash(&self, password: String, client: Option<IpAddr>) -> Result<String, WorkError> {
        self.queue.run(client, move || hash_blocking(&password)).await
    }

    /// Verifies `password` against `phc`, or against the dummy hash when there is none, so that
    /// both paths cost the same; the dummy never matches.
    pub async fn verify(
        &self,
        password: String,
        phc: Option<String>,
        client: Option<IpAddr>,
    ) -> Result<bool, WorkError> {
        let real = phc.is_some();
        let dummy = Arc::clone(&self.dummy);
        let ok = self
            .queue
            .run(client, move || {
                let phc = phc.unwrap_or_else(|| dummy.get_or_init(dummy_hash).clone());
                verify_blocking(&password, &phc)
            })
            .await?;
        Ok(ok && real)
    }
}

impl Default for Passwords {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_and_verify() {
        let h = hash_blocking("correct horse battery");
        assert!(h.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{h}");
        assert!(verify_blocking("correct horse battery", &h));
        assert!(!verify_blocking("correct horse batterY", &h));
        assert!(!verify_blocking("x", "not a phc string"));
    }

    #[tokio::test]
    async fn unknown_user_path_never_matches() {
        let p = Passwords::new();
        assert!(!p.verify("anything".into(), None, None).await.unwrap());
        let h = p.hash("secret-pass".into(), None).await.unwrap();
        assert!(p.verify("secret-pass".into(), Some(h), None).await.unwrap());
    }
}
