//! Id-to-name lookups with a cache, over the tables of one transaction (read or write): a query
//! or an outbox claim meets the same few ids many times and loads each once, never a whole table.

use redb::{ReadOnlyTable, ReadTransaction, ReadableTable, Table, WriteTransaction};
use uuid::Uuid;

use super::StoreError;
use super::codec::Record;
use super::devices::Device;
use super::schema::{DEVICES, STRINGS, USERS};
use super::users::User;
use crate::fasthash::FxHashMap;

pub struct Names<S, B> {
    strings: S,
    users: B,
    devices: B,
    string_cache: FxHashMap<u32, String>,
    device_cache: FxHashMap<u32, Option<(Uuid, String)>>,
    user_cache: FxHashMap<u32, Option<(Uuid, String)>>,
}

/// Names in a read transaction (queries).
pub type ReadNames = Names<ReadOnlyTable<u32, &'static str>, ReadOnlyTable<u32, &'static [u8]>>;
/// Names in a write transaction (the outbox claim on the ingest writer).
pub type WriteNames<'t> = Names<Table<'t, u32, &'static str>, Table<'t, u32, &'static [u8]>>;

impl ReadNames {
    pub fn read(txn: &ReadTransaction) -> Result<ReadNames, StoreError> {
        Ok(Names::over(txn.open_table(STRINGS)?, txn.open_table(USERS)?, txn.open_table(DEVICES)?))
    }
}

impl<'t> WriteNames<'t> {
    pub fn write(txn: &'t WriteTransaction) -> Result<WriteNames<'t>, StoreError> {
        Ok(Names::over(txn.open_table(STRINGS)?, txn.open_table(USERS)?, txn.open_table(DEVICES)?))
    }
}

impl<S: ReadableTable<u32, &'static str>, B: ReadableTable<u32, &'static [u8]>> Names<S, B> {
    fn over(strings: S, users: B, devices: B) -> Self {
        Names {
            strings,
            users,
            devices,
            string_cache: FxHashMap::default(),
            device_cache: FxHashMap::default(),
            user_cache: FxHashMap::default(),
        }
    }

    /// The interned string `id` ("" if unknown).
    pub fn string(&mut self, id: u32) -> Result<&str, StoreError> {
        if !self.string_cache.contains_key(&id) {
            let s = self.strings.get(id)?.map(|v| v.value().to_owned()).unwrap_or_default();
            self.string_cache.insert(id, s);
        }
        Ok(self.string_cache.get(&id).map(String::as_str).unwrap_or(""))
    }

    /// A device's external id and name.
    pub fn device(&mut self, id: u32) -> Result<Option<&(Uuid, String)>, StoreError> {
        if !self.device_cache.contains_key(&id) {
            let d = self
                .devices
                .get(id)?
                .map(|v| Device::decode(v.value()))
                .transpose()?
                .map(|d| (d.uuid, d.name));
            self.device_cache.insert(id, d);
        }
        Ok(self.device_cache.get(&id).and_then(Option::as_ref))
    }

    /// A user's external id and username.
    pub fn user(&mut self, id: u32) -> Result<Option<&(Uuid, String)>, StoreError> {
        if !self.user_cache.contains_key(&id) {
            let u = self
                .users
                .get(id)?
                .map(|v| User::decode(v.value()))
                .transpose()?
                .map(|u| (u.uuid, u.username));
            self.user_cache.insert(id, u);
        }
        Ok(self.user_cache.get(&id).and_then(Option::as_ref))
    }
}
