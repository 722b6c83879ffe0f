//! The ingest writer's cache of interned string ids. New ids are staged until the transaction
//! that created them commits; on rollback they are forgotten, so the cache never holds an id the
//! file does not.

use std::collections::HashMap;

use redb::WriteTransaction;

use crate::store::StoreError;
use crate::store::strings::{clip, intern_in};

/// The cache is dropped and refilled from the file when it grows past this many strings
/// (session ids are many and mostly used for a short time).
const MAX_CACHED: usize = 200_000;

#[derive(Default)]
pub struct Interner {
    cache: HashMap<String, u32>,
    staged: Vec<String>,
}

impl Interner {
    pub fn id(&mut self, txn: &WriteTransaction, s: &str) -> Result<u32, StoreError> {
        let s = clip(s);
        if let Some(id) = self.cache.get(s) {
            return Ok(*id);
        }
        let id = intern_in(txn, s)?;
        self.cache.insert(s.to_owned(), id);
        self.staged.push(s.to_owned());
        Ok(id)
    }

    pub fn commit(&mut self) {
        self.staged.clear();
        if self.cache.len() > MAX_CACHED {
            self.cache.clear();
        }
    }

    pub fn rollback(&mut self) {
        for s in self.staged.drain(..) {
            self.cache.remove(&s);
        }
    }
}
