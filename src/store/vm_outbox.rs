//! The VictoriaMetrics outbox: what still has to reach VictoriaMetrics.
//!
//! Every change to an hourly rollup marks the rollup's key in [`VM_OUTBOX`] inside the
//! transaction that changes the rollup, so whatever is committed is also queued, and a
//! VictoriaMetrics outage loses nothing (the ingest writer never waits for it). The outbox is a
//! *set* of rollup keys: however often a bucket changes before it is sent, it waits once, and the
//! outbox can never hold more entries than there are rollup buckets. It is kept even when no
//! VictoriaMetrics is configured, so configuring one later backfills the whole history.
//!
//! The drainer (`query::vm::drain`) works in three steps:
//! 1. [`claim_in`] (one write transaction): for up to N marked buckets (not too far in the
//!    future, which VictoriaMetrics would drop), read the bucket's
//!    *current* sums and assign it the next revision number, stored in [`VM_REVISIONS`] before
//!    anything is sent, so a revision is never used twice with different values.
//! 2. Send one sample per series of each bucket (its current value, with a timestamp derived from
//!    the revision, see `query::vm::samples`); VictoriaMetrics keeps only the latest revision.
//! 3. [`ack_in`] (one write transaction): unmark each bucket whose sums are still what was sent.
//!    A bucket that changed meanwhile stays marked and goes out again with a newer revision.
//!
//! A failed send leaves everything marked; the retry uses new revisions, so whatever part of the
//! failed send arrived is superseded. Deleting a device queues the deletion of its series
//! ([`device_deleted_in`]) and drops its marks and revisions in the same transaction.

use redb::{ReadableTable, ReadableTableMetadata, Table, WriteTransaction};
use uuid::Uuid;

use super::codec::{CodecError, Dec, Enc, Record};
use super::events::{RollupKey, RollupRecord};
use super::names::WriteNames;
use super::schema::{ROLLUPS, VM_DELETIONS, VM_OUTBOX, VM_REVISIONS};
use super::{Store, StoreError};

/// Revisions are capped here: the sample timestamp is the bucket's hour plus the revision in
/// milliseconds, and must stay inside the hour (see `query::vm::samples`). A bucket would need
/// this many separate sends to reach it; past it, later sends reuse the cap and a tie with an
/// earlier value becomes possible, which is logged.
pub const MAX_REVISION: u32 = 3_600_000;

/// The last revision given to a bucket's samples, and every token column ever sent for it (a
/// column that drops to zero must be sent as 0, or its old value would stay the latest).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Revision {
    pub revision: u32,
    /// Column-name string ids, sorted.
    pub columns: Vec<u32>,
}

impl Record for Revision {
    const NAME: &'static str = "vm revision";
    const VERSION: u8 = 1;

    fn encode_fields(&self, e: &mut Enc) {
        e.uvar(u64::from(self.revision));
        e.uvar(self.columns.len() as u64);
        for c in &self.columns {
            e.uvar(u64::from(*c));
        }
    }

    fn decode_fields(_version: u8, d: &mut Dec<'_>) -> Result<Self, CodecError> {
        let revision = d.u32var()?;
        let n = d.uvar()?;
        if n > d.remaining() as u64 {
            return Err(CodecError(format!("column count {n} exceeds the value size")));
        }
        let columns = (0..n).map(|_| d.u32var()).collect::<Result<_, _>>()?;
        Ok(Revision { revision, columns })
    }
}

/// Marks rollup keys inside the ingest writer's transaction.
pub struct Marker<'t>(Table<'t, RollupKey, ()>);

impl<'t> Marker<'t> {
    pub fn open(txn: &'t WriteTransaction) -> Result<Self, StoreError> {
        Ok(Marker(txn.open_table(VM_OUTBOX)?))
    }

    /// Queues the bucket `key`, whose sums just changed.
    pub fn mark(&mut self, key: RollupKey) -> Result<(), StoreError> {
        self.0.insert(key, ())?;
        Ok(())
    }
}

/// Inside a device deletion: drop the device's queued buckets and revisions, and queue the
/// deletion of its series.
pub fn device_deleted_in(
    txn: &WriteTransaction,
    user: u32,
    device: u32,
    uuid: Uuid,
) -> Result<(), StoreError> {
    let range = (user, 0, 0, 0, 0, 0)..=(user, u32::MAX, u32::MAX, u32::MAX, u32::MAX, u32::MAX);
    txn.open_table(VM_OUTBOX)?
        .extract_from_if::<RollupKey, _>(range.clone(), |k, _| k.2 == device)?
        .for_each(drop);
    txn.open_table(VM_REVISIONS)?
        .extract_from_if::<RollupKey, _>(range, |k, _| k.2 == device)?
        .for_each(drop);
    txn.open_table(VM_DELETIONS)?.insert(uuid.as_u128(), ())?;
    Ok(())
}

/// The series labels of a bucket, resolved to what VictoriaMetrics stores.
#[derive(Clone, Debug)]
pub struct Labels {
    pub user: Uuid,
    pub device: Uuid,
    pub provider: String,
    pub model: String,
    /// "" for no project.
    pub project: String,
}

/// A claimed bucket: what to send for it.
#[derive(Clone, Debug)]
pub struct ClaimedBucket {
    pub key: RollupKey,
    pub hour: u32,
    pub revision: u32,
    pub labels: Labels,
    pub events: u64,
    pub usage_total: u64,
    /// Every column ever sent for this bucket with its current sum (0 when gone).
    pub tokens: Vec<(String, u64)>,
    /// The sums the values came from (`None`: the bucket no longer exists), compared at ack.
    pub record: Option<RollupRecord>,
}

#[derive(Debug, Default)]
pub struct Claim {
    pub buckets: Vec<ClaimedBucket>,
    /// Some revision reached [`MAX_REVISION`].
    pub revision_capped: bool,
}

/// Up to `max` queued keys whose hour is at most `last_hour`, in key order. Keys sort by user
/// and then hour, so a user's due keys are the start of its range and its later ones are
/// skipped with one seek per user: buckets far in the future never hold back the rest.
fn due_keys(
    outbox: &impl ReadableTable<RollupKey, ()>,
    last_hour: u32,
    max: usize,
) -> Result<Vec<RollupKey>, StoreError> {
    let mut keys = Vec::new();
    let mut from: RollupKey = (0, 0, 0, 0, 0, 0);
    while keys.len() < max {
        let Some(first) = outbox.range(from..)?.next() else { break };
        let user = first?.0.value().0;
        let due = (user, 0, 0, 0, 0, 0)..=(user, last_hour, u32::MAX, u32::MAX, u32::MAX, u32::MAX);
        for row in outbox.range(due)?.take(max - keys.len()) {
            keys.push(row?.0.value());
        }
        let Some(next) = user.checked_add(1) else { break };
        from = (next, 0, 0, 0, 0, 0);
    }
    Ok(keys)
}

/// Claims up to `max` queued buckets (in key order) whose hour is at most `last_hour`: assigns
/// each its next revision (stored now) and reads its current sums and labels. Later buckets stay
/// queued until their time comes (VictoriaMetrics drops samples too far in the future).
pub fn claim_in(txn: &WriteTransaction, max: usize, last_hour: u32) -> Result<Claim, StoreError> {
    let mut claim = Claim::default();
    let keys = due_keys(&txn.open_table(VM_OUTBOX)?, last_hour, max)?;
    let rollups = txn.open_table(ROLLUPS)?;
    let mut revisions = txn.open_table(VM_REVISIONS)?;
    let mut names = WriteNames::write(txn)?;
    let mut orphans = Vec::new();
    for key in keys {
        let (user, hour, device, provider, model, project) = key;
        let (Some(user_uuid), Some(device_uuid)) =
            (names.user(user)?.map(|u| u.0), names.device(device)?.map(|d| d.0))
        else {
            // Deleting a user or device removes its marks in the same transaction, so this is a
            // leftover; there is nothing left to label it with.
            orphans.push(key);
            continue;
        };
        let record = rollups.get(key)?.map(|v| RollupRecord::decode(v.value())).transpose()?;
        let mut rev =
            revisions.get(key)?.map(|v| Revision::decode(v.value())).transpose()?.unwrap_or_default();
        if rev.revision >= MAX_REVISION {
            claim.revision_capped = true;
        }
        rev.revision = rev.revision.saturating_add(1).min(MAX_REVISION);
        if let Some(r) = &record {
            for (col, _) in &r.tokens {
                if let Err(i) = rev.columns.binary_search(col) {
                    rev.columns.insert(i, *col);
                }
            }
        }
        revisions.insert(key, rev.encode().as_slice())?;
        let current = |col: u32| {
            record.as_ref().and_then(|r| r.tokens.iter().find(|(c, _)| *c == col)).map_or(0, |(_, n)| *n)
        };
        let mut tokens = Vec::with_capacity(rev.columns.len());
        for col in &rev.columns {
            tokens.push((names.string(*col)?.to_owned(), current(*col)));
        }
        claim.buckets.push(ClaimedBucket {
            key,
            hour,
            revision: rev.revision,
            labels: Labels {
                user: user_uuid,
                device: device_uuid,
                provider: names.string(provider)?.to_owned(),
                model: names.string(model)?.to_owned(),
                project: names.string(project)?.to_owned(),
            },
            events: record.as_ref().map_or(0, |r| r.events),
            usage_total: record.as_ref().map_or(0, |r| r.usage_total),
            tokens,
            record,
        });
    }
    if !orphans.is_empty() {
        tracing::warn!(
            buckets = orphans.len(),
            "dropping VictoriaMetrics outbox entries of deleted users or devices"
        );
        let mut outbox = txn.open_table(VM_OUTBOX)?;
        for key in orphans {
            outbox.remove(key)?;
        }
    }
    Ok(claim)
}

/// Unmarks the sent buckets whose sums are unchanged since [`claim_in`] read them, and the sent
/// deletions. Returns how many buckets stay queued because they changed meanwhile.
pub fn ack_in(
    txn: &WriteTransaction,
    sent: &[(RollupKey, Option<RollupRecord>)],
    deletions: &[Uuid],
) -> Result<usize, StoreError> {
    let rollups = txn.open_table(ROLLUPS)?;
    let mut outbox = txn.open_table(VM_OUTBOX)?;
    let mut changed = 0;
    for (key, record) in sent {
        let now = rollups.get(*key)?.map(|v| RollupRecord::decode(v.value())).transpose()?;
        if now == *record {
            outbox.remove(*key)?;
        } else {
            changed += 1;
        }
    }
    let mut pending = txn.open_table(VM_DELETIONS)?;
    for d in deletions {
        pending.remove(d.as_u128())?;
    }
    Ok(changed)
}

/// Queues every rollup bucket again (for a VictoriaMetrics instance that lost its data or
/// replaces another). Returns how many were queued.
pub fn requeue_all_in(txn: &WriteTransaction) -> Result<u64, StoreError> {
    let rollups = txn.open_table(ROLLUPS)?;
    let mut outbox = txn.open_table(VM_OUTBOX)?;
    let mut n = 0;
    for row in rollups.iter()? {
        outbox.insert(row?.0.value(), ())?;
        n += 1;
    }
    Ok(n)
}

/// What waits in the outbox.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Backlog {
    pub buckets: u64,
    pub deletions: u64,
}

impl Backlog {
    pub fn is_empty(&self) -> bool {
        self.buckets == 0 && self.deletions == 0
    }
}

impl Store {
    /// Up to `max` deleted devices whose series are still to be deleted.
    pub fn vm_pending_deletions(&self, max: usize) -> Result<Vec<Uuid>, StoreError> {
        let txn = self.read()?;
        let table = txn.open_table(VM_DELETIONS)?;
        table.iter()?.take(max).map(|row| Ok(Uuid::from_u128(row?.0.value()))).collect()
    }

    /// The outbox size (redb keeps table lengths, so this does not scan).
    pub fn vm_backlog(&self) -> Result<Backlog, StoreError> {
        let txn = self.read()?;
        Ok(Backlog {
            buckets: txn.open_table(VM_OUTBOX)?.len()?,
            deletions: txn.open_table(VM_DELETIONS)?.len()?,
        })
    }

    /// Whether some queued bucket has an hour of at most `last_hour` (a read transaction, so
    /// the drainer does not take the ingest writer's time when only future buckets wait).
    pub fn vm_due(&self, last_hour: u32) -> Result<bool, StoreError> {
        let txn = self.read()?;
        Ok(!due_keys(&txn.open_table(VM_OUTBOX)?, last_hour, 1)?.is_empty())
    }

    /// The hour of the oldest usage still waiting in the outbox (one seek per user with queued
    /// buckets, since keys sort by user and then hour).
    pub fn vm_oldest_hour(&self) -> Result<Option<u32>, StoreError> {
        let txn = self.read()?;
        let outbox = txn.open_table(VM_OUTBOX)?;
        let mut oldest: Option<u32> = None;
        let mut from: RollupKey = (0, 0, 0, 0, 0, 0);
        while let Some(first) = outbox.range(from..)?.next() {
            let (user, hour, ..) = first?.0.value();
            oldest = Some(oldest.map_or(hour, |o| o.min(hour)));
            let Some(next) = user.checked_add(1) else { break };
            from = (next, 0, 0, 0, 0, 0);
        }
        Ok(oldest)
    }

    /// One user's queued buckets: how many, and the hour of the oldest. Counting walks the
    /// user's keys (there are at most as many as the user has rollup buckets).
    pub fn vm_user_backlog(&self, user: u32) -> Result<UserBacklog, StoreError> {
        let txn = self.read()?;
        let outbox = txn.open_table(VM_OUTBOX)?;
        let mut backlog = UserBacklog::default();
        for row in
            outbox.range((user, 0, 0, 0, 0, 0)..=(user, u32::MAX, u32::MAX, u32::MAX, u32::MAX, u32::MAX))?
        {
            let hour = row?.0.value().1;
            backlog.oldest_hour.get_or_insert(hour);
            backlog.buckets += 1;
        }
        Ok(backlog)
    }
}

/// What waits in the outbox for one user.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct UserBacklog {
    pub buckets: u64,
    /// The hour (hours since the epoch) of the oldest queued bucket.
    pub oldest_hour: Option<u32>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::devices::{AuthDevice, Device};
    use crate::store::events::RollupDelta;
    use crate::store::strings::intern_in;
    use crate::store::users::{NewUser, Role, UserStatus};

    fn setup() -> (tempfile::TempDir, Store, u32, Device) {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(&dir.path().join("t.redb")).unwrap();
        let u = s
            .create_user(NewUser {
                username: "u".into(),
                role: Role::User,
                status: UserStatus::Active,
                password_hash: None,
                oidc_subject: None,
            })
            .unwrap();
        let AuthDevice::Ready(d) = s.auth_device(u.id, "k", "laptop", 1).unwrap() else { panic!() };
        (dir, s, u.id, d)
    }

    fn put_rollup(s: &Store, key: RollupKey, tokens: &[(&str, i64)]) {
        s.write(|txn| {
            let usage_total = tokens.iter().map(|t| i128::from(t.1)).sum();
            let mut delta = RollupDelta { events: 1, usage_total, tokens: Default::default() };
            for (name, n) in tokens {
                delta.tokens.insert(intern_in(txn, name)?, i128::from(*n));
            }
            let mut rollups = txn.open_table(ROLLUPS)?;
            let mut rec =
                rollups.get(key)?.map(|v| RollupRecord::decode(v.value())).transpose()?.unwrap_or_default();
            rec.merge(&delta);
            if rec.is_empty() {
                rollups.remove(key)?;
            } else {
                rollups.insert(key, rec.encode().as_slice())?;
            }
            Marker::open(txn)?.mark(key)?;
            Ok::<_, StoreError>(())
        })
        .unwrap();
    }

    #[test]
    fn claims_assign_rising_revisions_and_keep_dropped_columns() {
        let (_d, s, user, dev) = setup();
        let key = (user, 10, dev.id, 0, 0, 0);
        put_rollup(&s, key, &[("input", 5), ("output", 7)]);
        let c = s.write(|t| claim_in(t, 10, u32::MAX)).unwrap();
        assert_eq!(c.buckets.len(), 1);
        let b = &c.buckets[0];
        assert_eq!((b.revision, b.events, b.labels.device), (1, 1, dev.uuid));
        assert_eq!(b.tokens, vec![("input".into(), 5), ("output".into(), 7)]);
        // The bucket changes before the ack: it stays queued.
        put_rollup(&s, key, &[("output", -7)]);
        let sent = vec![(b.key, b.record.clone())];
        assert_eq!(s.write(|t| ack_in(t, &sent, &[])).unwrap(), 1);
        assert_eq!(s.vm_backlog().unwrap().buckets, 1);
        let c = s.write(|t| claim_in(t, 10, u32::MAX)).unwrap();
        let b = &c.buckets[0];
        assert_eq!(b.revision, 2);
        assert_eq!(
            b.tokens,
            vec![("input".into(), 5), ("output".into(), 0)],
            "a column that went to zero is sent as 0"
        );
        let sent = vec![(b.key, b.record.clone())];
        assert_eq!(s.write(|t| ack_in(t, &sent, &[])).unwrap(), 0);
        assert!(s.vm_backlog().unwrap().is_empty());
    }

    #[test]
    fn device_deletion_replaces_marks_by_a_series_deletion() {
        let (_d, s, user, dev) = setup();
        put_rollup(&s, (user, 10, dev.id, 0, 0, 0), &[("input", 5)]);
        s.write(|t| claim_in(t, 10, u32::MAX)).unwrap();
        put_rollup(&s, (user, 11, dev.id, 0, 0, 0), &[("input", 5)]);
        s.write(|t| crate::store::devices::delete_in(t, dev.id, 2)).unwrap();
        assert_eq!(s.vm_backlog().unwrap(), Backlog { buckets: 0, deletions: 1 });
        let c = s.write(|t| claim_in(t, 10, u32::MAX)).unwrap();
        assert!(c.buckets.is_empty());
        let deletions = s.vm_pending_deletions(10).unwrap();
        assert_eq!(deletions, vec![dev.uuid]);
        assert_eq!(s.read().unwrap().open_table(VM_REVISIONS).unwrap().len().unwrap(), 0);
        s.write(|t| ack_in(t, &[], &deletions)).unwrap();
        assert!(s.vm_backlog().unwrap().is_empty());
    }

    #[test]
    fn future_buckets_wait_without_holding_back_the_rest() {
        let (_d, s, user, dev) = setup();
        let other = s
            .create_user(NewUser {
                username: "v".into(),
                role: Role::User,
                status: UserStatus::Active,
                password_hash: None,
                oidc_subject: None,
            })
            .unwrap();
        let AuthDevice::Ready(dev2) = s.auth_device(other.id, "k2", "desktop", 1).unwrap() else { panic!() };
        // The first user's future hours sort before everything of the second user.
        for hour in [500, 900, 901] {
            put_rollup(&s, (user, hour, dev.id, 0, 0, 0), &[("input", 1)]);
        }
        put_rollup(&s, (user, 10, dev.id, 0, 0, 0), &[("input", 1)]);
        put_rollup(&s, (other.id, 20, dev2.id, 0, 0, 0), &[("input", 1)]);
        put_rollup(&s, (other.id, 950, dev2.id, 0, 0, 0), &[("input", 1)]);
        assert_eq!(s.vm_oldest_hour().unwrap(), Some(10));
        assert_eq!(s.vm_user_backlog(user).unwrap(), UserBacklog { buckets: 4, oldest_hour: Some(10) });
        assert_eq!(s.vm_user_backlog(other.id).unwrap(), UserBacklog { buckets: 2, oldest_hour: Some(20) });
        assert_eq!(s.vm_user_backlog(other.id + 1).unwrap(), UserBacklog::default());
        assert!(s.vm_due(10).unwrap() && !s.vm_due(9).unwrap());

        let hours = |c: &Claim| c.buckets.iter().map(|b| (b.key.0, b.hour)).collect::<Vec<_>>();
        let c = s.write(|t| claim_in(t, 10, 500)).unwrap();
        assert_eq!(hours(&c), vec![(user, 10), (user, 500), (other.id, 20)]);
        // `max` counts across users.
        assert_eq!(hours(&s.write(|t| claim_in(t, 2, 500)).unwrap()), vec![(user, 10), (user, 500)]);
        let sent: Vec<_> = c.buckets.iter().map(|b| (b.key, b.record.clone())).collect();
        s.write(|t| ack_in(t, &sent, &[])).unwrap();
        // Only future buckets wait: nothing is due, nothing is claimed, nothing is lost.
        assert!(!s.vm_due(500).unwrap());
        assert!(s.write(|t| claim_in(t, 10, 500)).unwrap().buckets.is_empty());
        assert_eq!(s.vm_backlog().unwrap().buckets, 3);
        assert_eq!(s.vm_oldest_hour().unwrap(), Some(900));
        // Their time comes.
        assert_eq!(
            hours(&s.write(|t| claim_in(t, 10, 950)).unwrap()),
            vec![(user, 900), (user, 901), (other.id, 950)]
        );
    }

    #[test]
    fn revision_round_trip_and_requeue() {
        let r = Revision { revision: 3_599_999, columns: vec![1, 4, 9] };
        assert_eq!(Revision::decode(&r.encode()).unwrap(), r);
        assert!(Revision::decode(&[1, 5, 200]).is_err());
        let (_d, s, user, dev) = setup();
        put_rollup(&s, (user, 1, dev.id, 0, 0, 0), &[("input", 1)]);
        put_rollup(&s, (user, 2, dev.id, 0, 0, 0), &[("input", 1)]);
        let c = s.write(|t| claim_in(t, 10, u32::MAX)).unwrap();
        let sent: Vec<_> = c.buckets.iter().map(|b| (b.key, b.record.clone())).collect();
        s.write(|t| ack_in(t, &sent, &[])).unwrap();
        assert_eq!(s.write(requeue_all_in).unwrap(), 2);
        assert_eq!(s.vm_backlog().unwrap().buckets, 2);
    }
}
