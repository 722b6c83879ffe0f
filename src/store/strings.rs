//! Interned strings: providers, models, projects, sessions and token column names are stored
//! once and referred to by u32 ids. Id 0 is the empty string ("no project", unknown values).

use std::collections::HashMap;

use redb::{ReadableTable, WriteTransaction};

use super::schema::{META_NEXT_STRING_ID, STRING_IDS, STRINGS, next_id};
use super::{Store, StoreError};

/// Strings longer than this are cut (at a character boundary) before interning: they come from
/// clients and a model or project name has no business being longer.
pub const MAX_STRING_BYTES: usize = 1024;

pub fn clip(s: &str) -> &str {
    if s.len() <= MAX_STRING_BYTES {
        return s;
    }
    let mut end = MAX_STRING_BYTES;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// The id of `s`, interning it if new.
pub fn intern_in(txn: &WriteTransaction, s: &str) -> Result<u32, StoreError> {
    let s = clip(s);
    if let Some(id) = txn.open_table(STRING_IDS)?.get(s)?.map(|v| v.value()) {
        return Ok(id);
    }
    let id = next_id(txn, META_NEXT_STRING_ID, 1)?;
    txn.open_table(STRING_IDS)?.insert(s, id)?;
    txn.open_table(STRINGS)?.insert(id, s)?;
    Ok(id)
}

/// Looks a string up without interning it (`None` if it was never stored).
pub fn lookup_in(table: &impl ReadableTable<&'static str, u32>, s: &str) -> Result<Option<u32>, StoreError> {
    Ok(table.get(clip(s))?.map(|v| v.value()))
}

impl Store {
    pub fn string(&self, id: u32) -> Result<Option<String>, StoreError> {
        Ok(self.read()?.open_table(STRINGS)?.get(id)?.map(|v| v.value().to_owned()))
    }

    pub fn string_id(&self, s: &str) -> Result<Option<u32>, StoreError> {
        lookup_in(&self.read()?.open_table(STRING_IDS)?, s)
    }

    /// Every interned string by id (for resolving many ids at once).
    pub fn strings(&self) -> Result<HashMap<u32, String>, StoreError> {
        let txn = self.read()?;
        let table = txn.open_table(STRINGS)?;
        let mut out = HashMap::new();
        for row in table.iter()? {
            let (k, v) = row?;
            out.insert(k.value(), v.value().to_owned());
        }
        Ok(out)
    }
}
