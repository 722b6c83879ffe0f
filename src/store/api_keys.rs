//! API keys: records by SHA-256 of the key (the key itself is never stored), with an index by
//! external id and by owner. The tables are created on first use, so older data files need no
//! migration; a read before the first write sees no keys.

use redb::{ReadableTable, TableDefinition, TableError, WriteTransaction};
use uuid::Uuid;

use super::codec::{CodecError, Dec, Enc, Record};
use super::{Store, StoreError};
use crate::auth::scopes::Scopes;

pub type KeyHash = [u8; 32];

/// SHA-256 of the key -> record.
pub const API_KEYS: TableDefinition<KeyHash, &[u8]> = TableDefinition::new("api_keys");
/// (owner user id, key id) -> hash: a user's keys are one key range; the id finds the hash.
pub const USER_API_KEYS: TableDefinition<(u32, u128), KeyHash> = TableDefinition::new("user_api_keys");

/// `last_used_at` is written at most this often per key, so a busy script does not turn every
/// request into a durable commit.
pub const TOUCH_EVERY_SECS: i64 = 60;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiKey {
    pub id: Uuid,
    pub user: u32,
    pub name: String,
    /// The first characters of the key, for listings.
    pub prefix: String,
    pub scopes: Scopes,
    pub created_at: i64,
    pub expires_at: Option<i64>,
    pub last_used_at: Option<i64>,
    pub last_used_from: Option<String>,
}

impl Record for ApiKey {
    const NAME: &'static str = "api key";
    const VERSION: u8 = 1;

    fn encode_fields(&self, e: &mut Enc) {
        e.fixed(self.id.as_bytes());
        e.uvar(u64::from(self.user));
        e.str(&self.name);
        e.str(&self.prefix);
        e.u8(self.scopes.0);
        e.ivar(self.created_at);
        e.opt_ivar(self.expires_at);
        e.opt_ivar(self.last_used_at);
        e.opt_str(self.last_used_from.as_deref());
    }

    fn decode_fields(_version: u8, d: &mut Dec<'_>) -> Result<Self, CodecError> {
        Ok(ApiKey {
            id: Uuid::from_bytes(d.fixed()?),
            user: d.u32var()?,
            name: d.string()?,
            prefix: d.string()?,
            scopes: Scopes(d.u8()?),
            created_at: d.ivar()?,
            expires_at: d.opt_ivar()?,
            last_used_at: d.opt_ivar()?,
            last_used_from: d.opt_string()?,
        })
    }
}

impl ApiKey {
    pub fn expired(&self, now: i64) -> bool {
        self.expires_at.is_some_and(|t| t <= now)
    }
}

/// Runs `f` on a table of a read transaction, or returns `empty` when the table was never
/// created (no key was ever made in this file).
pub(crate) fn with_table<K: redb::Key + 'static, V: redb::Value + 'static, T>(
    store: &Store,
    def: TableDefinition<K, V>,
    empty: T,
    f: impl FnOnce(redb::ReadOnlyTable<K, V>) -> Result<T, StoreError>,
) -> Result<T, StoreError> {
    let txn = store.read()?;
    match txn.open_table(def) {
        Ok(t) => f(t),
        Err(TableError::TableDoesNotExist(_)) => Ok(empty),
        Err(e) => Err(e.into()),
    }
}

/// The records of a credential table (keys, clients) listed through its per-owner index
/// `(user, uuid) -> record key`: one user's, or everyone's (`None`), in index order. Tables
/// never created yet hold nothing.
pub(crate) fn list_by_owner<I: redb::Key + 'static, R: Record>(
    store: &Store,
    index: TableDefinition<(u32, u128), I>,
    records: TableDefinition<I, &[u8]>,
    user: Option<u32>,
) -> Result<Vec<R>, StoreError> {
    let txn = store.read()?;
    let (index, records) = match (txn.open_table(index), txn.open_table(records)) {
        (Ok(i), Ok(r)) => (i, r),
        (Err(TableError::TableDoesNotExist(_)), _) | (_, Err(TableError::TableDoesNotExist(_))) => {
            return Ok(Vec::new());
        }
        (Err(e), _) | (_, Err(e)) => return Err(e.into()),
    };
    let range = match user {
        Some(u) => index.range((u, 0)..=(u, u128::MAX))?,
        None => index.range::<(u32, u128)>(..)?,
    };
    let mut out = Vec::new();
    for row in range {
        let (_, key) = row?;
        if let Some(v) = records.get(key.value())? {
            out.push(R::decode(v.value())?);
        }
    }
    Ok(out)
}

/// Removes every key of a user (the user is deleted). Returns how many.
pub fn revoke_user_in(txn: &WriteTransaction, user: u32) -> Result<usize, StoreError> {
    let mut index = txn.open_table(USER_API_KEYS)?;
    let hashes: Vec<KeyHash> = index
        .extract_from_if::<(u32, u128), _>((user, 0)..=(user, u128::MAX), |_, _| true)?
        .map(|row| row.map(|(_, v)| v.value()))
        .collect::<Result<_, _>>()?;
    let mut keys = txn.open_table(API_KEYS)?;
    for h in &hashes {
        keys.remove(h)?;
    }
    Ok(hashes.len())
}

impl Store {
    pub fn insert_api_key(&self, hash: KeyHash, key: &ApiKey) -> Result<(), StoreError> {
        self.write(|txn| {
            txn.open_table(API_KEYS)?.insert(hash, key.encode().as_slice())?;
            txn.open_table(USER_API_KEYS)?.insert((key.user, key.id.as_u128()), hash)?;
            Ok(())
        })
    }

    pub fn api_key_by_hash(&self, hash: KeyHash) -> Result<Option<ApiKey>, StoreError> {
        with_table(self, API_KEYS, None, |t| match t.get(hash)? {
            Some(v) => Ok(Some(ApiKey::decode(v.value())?)),
            None => Ok(None),
        })
    }

    /// Keys of one user, or of everyone (`None`), oldest first per user.
    pub fn api_keys(&self, user: Option<u32>) -> Result<Vec<ApiKey>, StoreError> {
        let mut keys: Vec<ApiKey> = list_by_owner(self, USER_API_KEYS, API_KEYS, user)?;
        keys.sort_by_key(|k| (k.user, k.created_at));
        Ok(keys)
    }

    /// Deletes the key with this id; `owner` restricts it to one user's keys (a key of another
    /// user is then "not found"). Returns the deleted key.
    pub fn revoke_api_key(&self, id: Uuid, owner: Option<u32>) -> Result<Option<ApiKey>, StoreError> {
        self.write(|txn| {
            let mut index = txn.open_table(USER_API_KEYS)?;
            let mut keys = txn.open_table(API_KEYS)?;
            // The index is keyed by owner first; without an owner, find the key among all.
            let found = match owner {
                Some(u) => index.get((u, id.as_u128()))?.map(|h| (u, h.value())),
                None => {
                    let mut hit = None;
                    for row in index.range::<(u32, u128)>(..)? {
                        let (k, h) = row?;
                        if k.value().1 == id.as_u128() {
                            hit = Some((k.value().0, h.value()));
                            break;
                        }
                    }
                    hit
                }
            };
            let Some((user, hash)) = found else { return Ok(None) };
            index.remove((user, id.as_u128()))?;
            let key = match keys.remove(hash)? {
                Some(v) => Some(ApiKey::decode(v.value())?),
                None => None,
            };
            Ok(key)
        })
    }

    /// Records a use of the key (at most every [`TOUCH_EVERY_SECS`]).
    pub fn touch_api_key(&self, hash: KeyHash, now: i64, from: &str) -> Result<(), StoreError> {
        self.write(|txn| {
            let mut keys = txn.open_table(API_KEYS)?;
            let Some(mut key) = keys.get(hash)?.map(|v| ApiKey::decode(v.value())).transpose()? else {
                return Ok(());
            };
            key.last_used_at = Some(now);
            key.last_used_from = Some(from.to_owned());
            keys.insert(hash, key.encode().as_slice())?;
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn insert_find_list_revoke() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(&dir.path().join("t.redb")).unwrap();
        assert!(s.api_keys(None).unwrap().is_empty(), "no table yet is no keys");
        assert!(s.api_key_by_hash([1; 32]).unwrap().is_none());
        let key = |user, n: u8| ApiKey {
            id: Uuid::from_u128(u128::from(n)),
            user,
            name: format!("k{n}"),
            prefix: "tks_abc".into(),
            scopes: Scopes(1),
            created_at: i64::from(n),
            expires_at: None,
            last_used_at: None,
            last_used_from: None,
        };
        s.insert_api_key([1; 32], &key(1, 1)).unwrap();
        s.insert_api_key([2; 32], &key(1, 2)).unwrap();
        s.insert_api_key([3; 32], &key(2, 3)).unwrap();
        assert_eq!(s.api_keys(Some(1)).unwrap().len(), 2);
        assert_eq!(s.api_keys(None).unwrap().len(), 3);
        s.touch_api_key([1; 32], 99, "127.0.0.1").unwrap();
        assert_eq!(s.api_key_by_hash([1; 32]).unwrap().unwrap().last_used_at, Some(99));
        assert!(s.revoke_api_key(Uuid::from_u128(3), Some(1)).unwrap().is_none(), "another user's key");
        assert!(s.revoke_api_key(Uuid::from_u128(3), None).unwrap().is_some());
        assert!(s.api_key_by_hash([3; 32]).unwrap().is_none());
        assert_eq!(s.write(|t| revoke_user_in(t, 1)).unwrap(), 2);
        assert!(s.api_keys(None).unwrap().is_empty());
    }
}
