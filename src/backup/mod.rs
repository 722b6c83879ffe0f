//! Online backup and offline restore of the data file.
//!
//! A backup is a logical dump of every table taken from one redb read transaction, so it is
//! consistent (a batch is in it completely or not at all) while ingest goes on; see
//! [`format`] for the file layout. It is streamed by `GET /admin/backup`, fetched by
//! `toki-sync backup`, written on a schedule by [`schedule`], and turned back into a data file
//! by `toki-sync admin restore` ([`restore`]).

pub mod client;
pub mod format;
pub mod restore;
pub mod schedule;
pub mod tables;

use std::io::Write;

use redb::ReadTransaction;

use crate::store::schema::{META, META_SCHEMA_VERSION};
use crate::store::{Store, StoreError};
use format::{Header, Writer};
use tables::DumpError;

/// A read transaction and what it holds: the backup's contents are fixed from here on.
pub struct Snapshot {
    txn: ReadTransaction,
    /// Names the tables (and their sizes) that are dumped, in order.
    pub header: Header,
}

impl Snapshot {
    pub fn begin(store: &Store) -> Result<Snapshot, StoreError> {
        let txn = store.read()?;
        let tables = tables::inventory(&txn)?;
        let schema_version = schema_version(&txn)?;
        let header = Header::new(schema_version, tables);
        Ok(Snapshot { txn, header })
    }

    /// Writes the whole dump to `sink`; returns the sink.
    pub fn write<W: Write>(self, sink: W) -> Result<W, DumpError> {
        let mut out = Writer::new(sink, &self.header)?;
        tables::dump(&self.txn, &self.header.tables, &mut out)?;
        Ok(out.finish()?)
    }
}

fn schema_version(txn: &ReadTransaction) -> Result<u32, StoreError> {
    let meta = txn.open_table(META)?;
    let v = meta.get(META_SCHEMA_VERSION)?.ok_or_else(|| StoreError::Corrupt("no schema_version".into()))?;
    let bytes: [u8; 4] =
        v.value().try_into().map_err(|_| StoreError::Corrupt("schema_version is not 4 bytes".into()))?;
    Ok(u32::from_le_bytes(bytes))
}
