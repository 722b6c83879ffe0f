//! Refresh-token records: one per issued refresh token, keyed by (user id, SHA-256 of the token),
//! so the store never holds a usable token and all tokens of a user are one key range.

use redb::{ReadableTable, WriteTransaction};

use super::codec::{CodecError, Dec, Enc, Record};
use super::schema::REFRESH_TOKENS;
use super::{Store, StoreError};

/// How long a rotated (retired) record is kept to detect its reuse. Reuse after that is a plain
/// 401 for an unknown token rather than a family revocation.
pub const RETIRED_KEEP_SECS: i64 = 7 * 86400;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RefreshRecord {
    /// Every token descended from one login or device grant shares a family.
    pub family: u64,
    pub device_id: Option<String>,
    pub issued_at: i64,
    pub expires_at: i64,
    /// Set when the token was exchanged for a new pair.
    pub rotated_at: Option<i64>,
}

impl Record for RefreshRecord {
    const NAME: &'static str = "refresh token";
    const VERSION: u8 = 1;

    fn encode_fields(&self, e: &mut Enc) {
        e.fixed(&self.family.to_be_bytes());
        e.opt_str(self.device_id.as_deref());
        e.ivar(self.issued_at);
        e.ivar(self.expires_at);
        e.opt_ivar(self.rotated_at);
    }

    fn decode_fields(_version: u8, d: &mut Dec<'_>) -> Result<Self, CodecError> {
        Ok(RefreshRecord {
            family: u64::from_be_bytes(d.fixed()?),
            device_id: d.opt_string()?,
            issued_at: d.ivar()?,
            expires_at: d.ivar()?,
            rotated_at: d.opt_ivar()?,
        })
    }
}

pub type TokenHash = [u8; 32];

#[derive(Debug, PartialEq, Eq)]
pub enum Rotation {
    /// The presented token was live; it is now retired and the new one recorded.
    Rotated,
    /// The presented token was already retired at this time (family given for revocation).
    AlreadyRotated { rotated_at: i64, family: u64 },
    /// No record (revoked, pruned, or never issued here).
    Unknown,
}

/// Removes every refresh token of a user (password change, deletion).
pub fn revoke_user_in(txn: &WriteTransaction, user: u32) -> Result<usize, StoreError> {
    let mut table = txn.open_table(REFRESH_TOKENS)?;
    let removed = table.extract_from_if((user, [0u8; 32])..=(user, [0xffu8; 32]), |_, _| true)?.count();
    Ok(removed)
}

/// Removes every refresh token issued for one device (its deletion): the records whose
/// `device_id` is the device's UUID, which is what the device flow records. (A password login
/// that named the same id is revoked with it; it can only be the user's own.)
pub fn revoke_device_in(txn: &WriteTransaction, user: u32, device_uuid: &str) -> Result<usize, StoreError> {
    let mut table = txn.open_table(REFRESH_TOKENS)?;
    let mut decode_error = None;
    let removed = table
        .extract_from_if((user, [0u8; 32])..=(user, [0xffu8; 32]), |_, v| match RefreshRecord::decode(v) {
            Ok(r) => r.device_id.as_deref() == Some(device_uuid),
            Err(e) => {
                decode_error = Some(e);
                false
            }
        })?
        .count();
    match decode_error {
        Some(e) => Err(e.into()),
        None => Ok(removed),
    }
}

impl Store {
    /// Whether a record (live or retired) of this refresh token is still stored: revocation (a
    /// password change, a family revocation, the user's deletion) removes it.
    pub fn refresh_recorded(&self, user: u32, hash: TokenHash) -> Result<bool, StoreError> {
        Ok(self.read()?.open_table(REFRESH_TOKENS)?.get((user, hash))?.is_some())
    }

    pub fn insert_refresh(&self, user: u32, hash: TokenHash, rec: &RefreshRecord) -> Result<(), StoreError> {
        self.write(|txn| {
            txn.open_table(REFRESH_TOKENS)?.insert((user, hash), rec.encode().as_slice())?;
            Ok(())
        })
    }

    /// Atomically retires `old` and records `new`, unless `old` is unknown or already retired.
    pub fn rotate_refresh(
        &self,
        user: u32,
        old: TokenHash,
        new: TokenHash,
        new_rec: &RefreshRecord,
        now: i64,
    ) -> Result<Rotation, StoreError> {
        self.write(|txn| {
            let mut table = txn.open_table(REFRESH_TOKENS)?;
            let Some(mut rec) =
                table.get((user, old))?.map(|v| RefreshRecord::decode(v.value())).transpose()?
            else {
                return Ok(Rotation::Unknown);
            };
            if let Some(rotated_at) = rec.rotated_at {
                return Ok(Rotation::AlreadyRotated { rotated_at, family: rec.family });
            }
            if rec.expires_at <= now {
                return Ok(Rotation::Unknown);
            }
            rec.rotated_at = Some(now);
            table.insert((user, old), rec.encode().as_slice())?;
            table.insert((user, new), new_rec.encode().as_slice())?;
            Ok(Rotation::Rotated)
        })
    }

    /// Removes every token of one family (reuse of a retired token: likely theft).
    pub fn revoke_family(&self, user: u32, family: u64) -> Result<usize, StoreError> {
        self.write(|txn| {
            let mut table = txn.open_table(REFRESH_TOKENS)?;
            let mut decode_error = None;
            let removed = table
                .extract_from_if(
                    (user, [0u8; 32])..=(user, [0xffu8; 32]),
                    |_, v| match RefreshRecord::decode(v) {
                        Ok(r) => r.family == family,
                        Err(e) => {
                            decode_error = Some(e);
                            false
                        }
                    },
                )?
                .count();
            match decode_error {
                Some(e) => Err(e.into()),
                None => Ok(removed),
            }
        })
    }

    /// Drops expired records and retired ones older than [`RETIRED_KEEP_SECS`].
    pub fn prune_refresh(&self, now: i64) -> Result<usize, StoreError> {
        self.write(|txn| {
            let mut table = txn.open_table(REFRESH_TOKENS)?;
            let removed = table
                .extract_from_if::<(u32, [u8; 32]), _>(.., |_, v| match RefreshRecord::decode(v) {
                    Ok(r) => {
                        r.expires_at <= now || r.rotated_at.is_some_and(|t| t + RETIRED_KEEP_SECS <= now)
                    }
                    // An unreadable record is useless: no token can match it.
                    Err(_) => true,
                })?
                .count();
            Ok(removed)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(family: u64, exp: i64) -> RefreshRecord {
        RefreshRecord {
            family,
            device_id: Some("dev".into()),
            issued_at: 0,
            expires_at: exp,
            rotated_at: None,
        }
    }

    #[test]
    fn rotation_family_revocation_and_pruning() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(&dir.path().join("t.redb")).unwrap();
        let (a, b, c, d) = ([1u8; 32], [2u8; 32], [3u8; 32], [4u8; 32]);
        s.insert_refresh(5, a, &rec(10, 1000)).unwrap();
        s.insert_refresh(5, d, &rec(11, 1000)).unwrap();
        s.insert_refresh(6, a, &rec(10, 1000)).unwrap();
        assert_eq!(s.rotate_refresh(5, a, b, &rec(10, 1000), 100).unwrap(), Rotation::Rotated);
        assert_eq!(
            s.rotate_refresh(5, a, c, &rec(10, 1000), 101).unwrap(),
            Rotation::AlreadyRotated { rotated_at: 100, family: 10 }
        );
        assert_eq!(s.rotate_refresh(5, c, d, &rec(10, 1000), 101).unwrap(), Rotation::Unknown);
        assert_eq!(s.rotate_refresh(5, d, c, &rec(11, 1000), 2000).unwrap(), Rotation::Unknown, "expired");
        // Family 10 of user 5: a (retired) and b. User 6's token of the same family number stays.
        assert_eq!(s.revoke_family(5, 10).unwrap(), 2);
        assert_eq!(s.stats().unwrap().refresh_tokens, 2);
        assert_eq!(s.prune_refresh(5000).unwrap(), 2);
        assert_eq!(s.stats().unwrap().refresh_tokens, 0);
    }
}
