//! The audit log: an append-only record of security-relevant events, keyed by (time in ms, a
//! random tiebreak), so the newest entries are one reverse range and retention drops a prefix.
//! Entries are never changed; the only removal is the retention prune (at most
//! [`PRUNE_BATCH`] per append, so one append never turns into a long write). The table is
//! created on first use.

use redb::{ReadableTable, TableDefinition, TableError};

use super::codec::{CodecError, Dec, Enc, Record};
use super::{Store, StoreError};

/// (ts_ms, tiebreak) -> entry.
pub const AUDIT: TableDefinition<(i64, u64), &[u8]> = TableDefinition::new("audit");
const PRUNE_BATCH: usize = 1000;
/// Entries one page may read before it answers with what it has (see `next`).
pub const MAX_SCAN_PER_PAGE: usize = 100_000;

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct AuditEntry {
    /// Who acted: a username, or empty (an anonymous request, the system).
    pub actor: String,
    /// `session`, `api_key`, `client`, `cli`, `anonymous` or `system`.
    pub actor_kind: String,
    /// The client address, empty for the offline CLI.
    pub address: String,
    /// A dotted name such as `login.failure` or `api_key.create`.
    pub action: String,
    /// What the action was about (a username, a key id, a device id), or empty.
    pub target: String,
}

impl Record for AuditEntry {
    const NAME: &'static str = "audit entry";
    const VERSION: u8 = 1;

    fn encode_fields(&self, e: &mut Enc) {
        e.str(&self.actor);
        e.str(&self.actor_kind);
        e.str(&self.address);
        e.str(&self.action);
        e.str(&self.target);
    }

    fn decode_fields(_version: u8, d: &mut Dec<'_>) -> Result<Self, CodecError> {
        Ok(AuditEntry {
            actor: d.string()?,
            actor_kind: d.string()?,
            address: d.string()?,
            action: d.string()?,
            target: d.string()?,
        })
    }
}

/// Which entries a listing wants; empty fields match everything. An `action` ending in `.`
/// matches every action with that prefix (`api_key.`).
#[derive(Clone, Debug, Default)]
pub struct AuditFilter {
    pub actor: Option<String>,
    pub action: Option<String>,
}

impl AuditFilter {
    fn matches(&self, e: &AuditEntry) -> bool {
        self.actor.as_ref().is_none_or(|a| a.eq_ignore_ascii_case(&e.actor))
            && self.action.as_ref().is_none_or(|a| {
                if a.ends_with('.') { e.action.starts_with(a.as_str()) } else { e.action == *a }
            })
    }
}

pub type AuditKey = (i64, u64);
/// One page of entries and the key to continue before (`None` at the end).
pub type AuditPage = (Vec<(AuditKey, AuditEntry)>, Option<AuditKey>);

impl Store {
    /// Appends an entry at `ts_ms` and prunes entries older than `keep_from_ms`.
    pub fn append_audit(&self, ts_ms: i64, entry: &AuditEntry, keep_from_ms: i64) -> Result<(), StoreError> {
        self.write(|txn| {
            let mut t = txn.open_table(AUDIT)?;
            t.insert((ts_ms, crate::auth::random::u64()), entry.encode().as_slice())?;
            let old: Vec<AuditKey> = t
                .range::<AuditKey>(..(keep_from_ms, 0))?
                .take(PRUNE_BATCH)
                .map(|r| r.map(|(k, _)| k.value()))
                .collect::<Result<_, _>>()?;
            for k in old {
                t.remove(k)?;
            }
            Ok(())
        })
    }

    /// Up to `limit` entries newest first, strictly before `before`; and the key to continue
    /// from (`None` at the end).
    pub fn audit_page(
        &self,
        filter: &AuditFilter,
        before: Option<AuditKey>,
        limit: usize,
    ) -> Result<AuditPage, StoreError> {
        let txn = self.read()?;
        let t = match txn.open_table(AUDIT) {
            Ok(t) => t,
            Err(TableError::TableDoesNotExist(_)) => return Ok((Vec::new(), None)),
            Err(e) => return Err(e.into()),
        };
        let range = match before {
            Some(k) => t.range::<AuditKey>(..k)?,
            None => t.range::<AuditKey>(..)?,
        };
        let mut out = Vec::new();
        let mut scanned = 0;
        for row in range.rev() {
            let (k, v) = row?;
            let key = k.value();
            let e = AuditEntry::decode(v.value())?;
            if filter.matches(&e) {
                if out.len() == limit {
                    return Ok((out, Some(key_after(key))));
                }
                out.push((key, e));
            }
            scanned += 1;
            if scanned >= MAX_SCAN_PER_PAGE {
                return Ok((out, Some(key)));
            }
        }
        Ok((out, None))
    }
}

/// The exclusive upper bound that makes `key` itself the first entry of the next page.
fn key_after(key: AuditKey) -> AuditKey {
    match key.1.checked_add(1) {
        Some(n) => (key.0, n),
        None => (key.0 + 1, 0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn append_page_filter_prune() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(&dir.path().join("t.redb")).unwrap();
        assert!(s.audit_page(&AuditFilter::default(), None, 10).unwrap().0.is_empty());
        let e = |action: &str, actor: &str| AuditEntry {
            actor: actor.into(),
            actor_kind: "session".into(),
            address: "127.0.0.1".into(),
            action: action.into(),
            target: String::new(),
        };
        for i in 0..10 {
            s.append_audit(
                1000 + i,
                &e(if i % 2 == 0 { "api_key.create" } else { "login.failure" }, "ann"),
                0,
            )
            .unwrap();
        }
        let all = AuditFilter::default();
        let (p1, next) = s.audit_page(&all, None, 4).unwrap();
        assert_eq!(p1.iter().map(|(k, _)| k.0).collect::<Vec<_>>(), [1009, 1008, 1007, 1006]);
        let (p2, _) = s.audit_page(&all, next, 4).unwrap();
        assert_eq!(p2[0].0.0, 1005);
        let keys = AuditFilter { action: Some("api_key.".into()), actor: Some("ANN".into()) };
        assert_eq!(s.audit_page(&keys, None, 100).unwrap().0.len(), 5);
        // Retention: entries before 1005 go with the next append.
        s.append_audit(2000, &e("user.delete", "ann"), 1005).unwrap();
        let (left, _) = s.audit_page(&all, None, 100).unwrap();
        assert_eq!(left.len(), 6);
    }
}
