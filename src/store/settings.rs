//! Run-time settings changed by admins, and secrets kept in the file.

use std::collections::BTreeMap;

use redb::ReadableTable;

use super::schema::{META, META_JWT_SECRET, SETTINGS};
use super::{Store, StoreError};

pub const REGISTRATION_MODE: &str = "registration_mode";

impl Store {
    pub fn setting(&self, key: &str) -> Result<Option<String>, StoreError> {
        let txn = self.read()?;
        Ok(txn.open_table(SETTINGS)?.get(key)?.map(|v| v.value().to_owned()))
    }

    pub fn settings(&self) -> Result<BTreeMap<String, String>, StoreError> {
        let txn = self.read()?;
        let table = txn.open_table(SETTINGS)?;
        let mut out = BTreeMap::new();
        for row in table.iter()? {
            let (k, v) = row?;
            out.insert(k.value().to_owned(), v.value().to_owned());
        }
        Ok(out)
    }

    pub fn set_setting(&self, key: &str, value: &str) -> Result<(), StoreError> {
        self.write(|txn| {
            txn.open_table(SETTINGS)?.insert(key, value)?;
            Ok(())
        })
    }

    /// The token signing secret kept in the file, created on first use.
    pub fn jwt_secret(&self) -> Result<Vec<u8>, StoreError> {
        if let Some(v) = self.read()?.open_table(META)?.get(META_JWT_SECRET)? {
            return Ok(v.value().to_vec());
        }
        self.write(|txn| {
            let mut meta = txn.open_table(META)?;
            // Checked again inside the write transaction: another writer may have won the race.
            if let Some(v) = meta.get(META_JWT_SECRET)? {
                return Ok(v.value().to_vec());
            }
            let secret = crate::auth::random::bytes::<64>().to_vec();
            meta.insert(META_JWT_SECRET, secret.as_slice())?;
            Ok(secret)
        })
    }
}
