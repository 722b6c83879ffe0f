//! Issuing token pairs and rotating refresh tokens.
//!
//! Each refresh retires the presented token and returns a new pair. Two refreshes with the same
//! token can legitimately arrive milliseconds apart (the toki daemon's provider threads share one
//! stored token), so a retired token presented again within the grace time gets the very pair its
//! rotation issued. Presented later, it is treated as stolen: the whole family (every token
//! descended from the same login or device grant) is revoked. The issued pairs are kept only in
//! memory; after a restart a reuse inside the grace time is a plain 401.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::Serialize;
use sha2::{Digest, Sha256};

use super::jwt::{Claims, Jwt, TokenError, TokenType};
use crate::config::AuthConfig;
use crate::store::tokens::{RefreshRecord, Rotation, TokenHash};
use crate::store::users::{User, UserStatus};
use crate::store::{Store, StoreError, now_secs};

/// Upper bound on remembered rotations; entries also expire after the grace time.
const MAX_REMEMBERED_ROTATIONS: usize = 100_000;

#[derive(Clone, Debug, Serialize)]
pub struct TokenPair {
    pub access_token: String,
    pub refresh_token: String,
    pub token_type: &'static str,
    pub expires_in: u64,
}

#[derive(Debug)]
pub enum RefreshError {
    /// Expired, unknown, revoked, reused, or the account is gone or disabled.
    Invalid,
    Store(StoreError),
}

impl From<StoreError> for RefreshError {
    fn from(e: StoreError) -> Self {
        RefreshError::Store(e)
    }
}

pub struct Tokens {
    jwt: Jwt,
    access_ttl: u64,
    refresh_ttl: u64,
    grace: Duration,
    /// Retired token hash -> (the pair its rotation issued, when). Also serialises rotations.
    rotations: Mutex<HashMap<TokenHash, (TokenPair, Instant)>>,
}

pub fn hash(token: &str) -> TokenHash {
    Sha256::digest(token.as_bytes()).into()
}

impl Tokens {
    pub fn new(secret: &[u8], cfg: &AuthConfig) -> Tokens {
        Tokens {
            jwt: Jwt::new(secret),
            access_ttl: cfg.access_token_ttl_secs,
            refresh_ttl: cfg.refresh_token_ttl_secs,
            grace: Duration::from_secs(cfg.refresh_reuse_grace_secs),
            rotations: Mutex::new(HashMap::new()),
        }
    }

    pub fn verify_access(&self, token: &str) -> Result<Claims, TokenError> {
        self.jwt.verify(token, TokenType::Access, now_secs())
    }

    /// The family of a refresh token we signed and that has not expired (the lockout key for
    /// refreshes); `None` for anything else.
    pub fn refresh_family(&self, token: &str) -> Option<u64> {
        self.jwt.verify(token, TokenType::Refresh, now_secs()).ok()?.fam
    }

    fn make_pair(
        &self,
        user: &User,
        family: u64,
        device_id: Option<String>,
        bound: Option<String>,
        now: i64,
    ) -> (TokenPair, TokenHash, RefreshRecord) {
        let sub = user.uuid.to_string();
        let mut access_claims = Jwt::claims(TokenType::Access, sub.clone(), now, self.access_ttl, None, None);
        access_claims.dev = bound.clone();
        let access = self.jwt.sign(&access_claims);
        let mut refresh_claims =
            Jwt::claims(TokenType::Refresh, sub, now, self.refresh_ttl, Some(family), device_id.clone());
        refresh_claims.dev = bound;
        let refresh = self.jwt.sign(&refresh_claims);
        let h = hash(&refresh);
        let rec = RefreshRecord {
            family,
            device_id,
            issued_at: now,
            expires_at: refresh_claims.exp,
            rotated_at: None,
        };
        let pair = TokenPair {
            access_token: access,
            refresh_token: refresh,
            token_type: "Bearer",
            expires_in: self.access_ttl,
        };
        (pair, h, rec)
    }

    /// A new pair starting a new family (password login, device grant). Blocking.
    pub fn issue(
        &self,
        store: &Store,
        user: &User,
        device_id: Option<String>,
    ) -> Result<TokenPair, StoreError> {
        let (pair, h, rec) = self.make_pair(user, super::random::u64(), device_id, None, now_secs());
        store.insert_refresh(user.id, h, &rec)?;
        Ok(pair)
    }

    /// A new family for a device the device flow registered: both tokens are bound to it, and
    /// its record names it, so deleting the device revokes the family
    /// (`store::tokens::revoke_device_in`). Blocking.
    pub fn issue_for_device(
        &self,
        store: &Store,
        user: &User,
        device: uuid::Uuid,
    ) -> Result<TokenPair, StoreError> {
        let id = device.to_string();
        let (pair, h, rec) =
            self.make_pair(user, super::random::u64(), Some(id.clone()), Some(id), now_secs());
        store.insert_refresh(user.id, h, &rec)?;
        Ok(pair)
    }

    /// Exchanges a refresh token for a new pair. Blocking.
    pub fn refresh(&self, store: &Store, token: &str) -> Result<TokenPair, RefreshError> {
        let now = now_secs();
        let claims = self.jwt.verify(token, TokenType::Refresh, now).map_err(|_| RefreshError::Invalid)?;
        let uuid = uuid::Uuid::parse_str(&claims.sub).map_err(|_| RefreshError::Invalid)?;
        let user = store.user_by_uuid(uuid)?.ok_or(RefreshError::Invalid)?;
        if user.status != UserStatus::Active {
            return Err(RefreshError::Invalid);
        }
        let old = hash(token);
        let mut rotations = self.rotations.lock().unwrap_or_else(|p| p.into_inner());
        let instant = Instant::now();
        if let Some((pair, at)) = rotations.get(&old) {
            if instant.duration_since(*at) <= self.grace {
                // The cached pair is only as good as its refresh token: a password change, a
                // family revocation or a deletion since the rotation removed its record, and
                // then the retired token must not earn tokens either.
                if !store.refresh_recorded(user.id, hash(&pair.refresh_token))? {
                    return Err(RefreshError::Invalid);
                }
                return Ok(pair.clone());
            }
        }
        let family = claims.fam.ok_or(RefreshError::Invalid)?;
        // Families the device flow started before tokens carried `dev` name their device only in
        // `did`: bind them from their next rotation on, as their revocation already is.
        let bound = match &claims.dev {
            Some(d) => Some(d.clone()),
            None => match claims.did.as_deref().map(uuid::Uuid::parse_str) {
                Some(Ok(d)) if store.bound_device_exists(user.id, d)? => Some(d.to_string()),
                _ => None,
            },
        };
        let (pair, new, rec) = self.make_pair(&user, family, claims.did.clone(), bound, now);
        match store.rotate_refresh(user.id, old, new, &rec, now)? {
            Rotation::Rotated => {
                let grace = self.grace;
                rotations.retain(|_, (_, at)| instant.duration_since(*at) <= grace);
                if rotations.len() >= MAX_REMEMBERED_ROTATIONS {
                    rotations.clear();
                }
                rotations.insert(old, (pair.clone(), instant));
                Ok(pair)
            }
            Rotation::AlreadyRotated { rotated_at, family } => {
                if now - rotated_at > self.grace.as_secs() as i64 {
                    let revoked = store.revoke_family(user.id, family)?;
                    crate::http::audit::token_reuse(store, &user.username);
                    crate::metrics::refresh_reuse();
                    tracing::warn!(
                        user = %user.username,
                        revoked,
                        "a retired refresh token was used again after the grace time; revoked its whole token family"
                    );
                }
                Err(RefreshError::Invalid)
            }
            Rotation::Unknown => Err(RefreshError::Invalid),
        }
    }
}
