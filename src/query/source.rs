//! Reading usage for queries, inside one read transaction (a consistent snapshot): hourly rollups
//! for whole hours, raw events where a query needs finer times or sessions, and id-to-name
//! lookups that load only the ids a query meets (never the whole string table).

use std::ops::Bound;

use redb::ReadOnlyTable;

use super::time::HOUR_MS;
use crate::store::codec::Record;
use crate::store::day_rollups::{DAY_ROLLUPS, USER_ZONES, day_key_start_ms};
use crate::store::events::{EventKey, EventRecord, RollupKey, RollupRecord};
use crate::store::schema::{DEVICE_KEYS, EVENTS, ROLLUPS, STREAMS};
use crate::store::{Store, StoreError};

/// Id-to-name lookups in the query's read transaction.
pub type Names = crate::store::names::ReadNames;

/// One piece of usage: an hourly rollup bucket or a single event.
pub struct Usage<'a> {
    pub user: u32,
    pub device: u32,
    pub provider: u32,
    pub model: u32,
    /// 0 = no project.
    pub project: u32,
    /// Only events carry their session.
    pub session: Option<u32>,
    /// The bucket's hour start, or the event's time.
    pub ts_ms: i64,
    pub events: u64,
    pub usage_total: u64,
    /// (column-name string id, count)
    pub tokens: &'a [(u32, u64)],
}

/// The tables a query reads (`usage`) and the name lookups (`names`), as separate fields so a
/// query can resolve names while it iterates.
pub struct Reader {
    pub usage: UsageTables,
    pub names: Names,
}

pub struct UsageTables {
    rollups: ReadOnlyTable<RollupKey, &'static [u8]>,
    days: ReadOnlyTable<RollupKey, &'static [u8]>,
    zones: ReadOnlyTable<u32, (i32, i64)>,
    events: ReadOnlyTable<EventKey, &'static [u8]>,
    device_keys: ReadOnlyTable<(u32, &'static str), u32>,
    streams: ReadOnlyTable<(u32, u32), u32>,
}

impl Reader {
    pub fn new(store: &Store) -> Result<Reader, StoreError> {
        let txn = store.read()?;
        Ok(Reader {
            usage: UsageTables {
                rollups: txn.open_table(ROLLUPS)?,
                days: txn.open_table(DAY_ROLLUPS)?,
                zones: txn.open_table(USER_ZONES)?,
                events: txn.open_table(EVENTS)?,
                device_keys: txn.open_table(DEVICE_KEYS)?,
                streams: txn.open_table(STREAMS)?,
            },
            names: Names::read(&txn)?,
        })
    }
}

impl UsageTables {
    /// Every rollup bucket of `user` with an hour in `[from_hour, to_hour)`, in key order.
    pub fn rollups<E: From<StoreError>>(
        &self,
        user: u32,
        from_hour: u32,
        to_hour: u32,
        f: impl FnMut(&Usage<'_>) -> Result<(), E>,
    ) -> Result<(), E> {
        scan_tier(&self.rollups, user, from_hour, to_hour, |hour| i64::from(hour) * HOUR_MS, f)
    }

    /// The UTC offset (seconds) the user's day tier is kept in.
    pub fn zone(&self, user: u32) -> Result<i32, StoreError> {
        Ok(self.zones.get(user)?.map_or(0, |v| v.value().0))
    }

    /// Every day-tier row of `user` with a day key in `[from_key, to_key)`, stamped with the
    /// local day's start at `offset_secs` (the tier's offset).
    pub fn day_rollups<E: From<StoreError>>(
        &self,
        user: u32,
        from_key: u32,
        to_key: u32,
        offset_secs: i32,
        f: impl FnMut(&Usage<'_>) -> Result<(), E>,
    ) -> Result<(), E> {
        scan_tier(&self.days, user, from_key, to_key, |day| day_key_start_ms(day, offset_secs), f)
    }

    /// The (hour, provider) of every rollup bucket of `user` with an hour in `[from_hour,
    /// to_hour)`, newest hour first, keys only (values are not decoded); `f` returns false to stop.
    pub fn rollup_hours_rev(
        &self,
        user: u32,
        from_hour: u32,
        to_hour: u32,
        mut f: impl FnMut(u32, u32) -> bool,
    ) -> Result<(), StoreError> {
        if from_hour >= to_hour {
            return Ok(());
        }
        let range = (user, from_hour, 0, 0, 0, 0)..(user, to_hour, 0, 0, 0, 0);
        for row in self.rollups.range(range)?.rev() {
            let (k, _) = row?;
            let (_, hour, _, provider, _, _) = k.value();
            if !f(hour, provider) {
                break;
            }
        }
        Ok(())
    }

    /// Every event of `user` (all devices and providers) with `from_ms <= ts < to_ms`.
    pub fn events<E: From<StoreError>>(
        &self,
        user: u32,
        from_ms: i64,
        to_ms: i64,
        mut f: impl FnMut(&Usage<'_>) -> Result<(), E>,
    ) -> Result<(), E> {
        if from_ms >= to_ms {
            return Ok(());
        }
        let next_user = user.checked_add(1).map_or(Bound::Unbounded, |n| Bound::Excluded((n, "")));
        let mut devices = Vec::new();
        for row in self
            .device_keys
            .range::<(u32, &str)>((Bound::Included((user, "")), next_user))
            .map_err(StoreError::from)?
        {
            devices.push(row.map_err(StoreError::from)?.1.value());
        }
        for device in devices {
            let streams: Vec<(u32, u32)> = self
                .streams
                .range((device, 0)..=(device, u32::MAX))
                .map_err(StoreError::from)?
                .map(|row| row.map(|(k, v)| (k.value().1, v.value())))
                .collect::<Result<_, _>>()
                .map_err(StoreError::from)?;
            for (provider, stream) in streams {
                for row in
                    self.events.range((stream, from_ms, 0)..(stream, to_ms, 0)).map_err(StoreError::from)?
                {
                    let (k, v) = row.map_err(StoreError::from)?;
                    let e = EventRecord::decode(v.value()).map_err(StoreError::from)?;
                    f(&Usage {
                        user,
                        device,
                        provider,
                        model: e.model,
                        project: e.project,
                        session: Some(e.session),
                        ts_ms: k.value().1,
                        events: 1,
                        usage_total: e.usage_total,
                        tokens: &e.tokens,
                    })?;
                }
            }
        }
        Ok(())
    }

    /// Usage of `user` in `[from_ms, to_ms)` at millisecond precision: rollups for the whole
    /// hours inside the window, events for the partial hours at its edges.
    pub fn window<E: From<StoreError>>(
        &self,
        user: u32,
        from_ms: i64,
        to_ms: i64,
        mut f: impl FnMut(&Usage<'_>) -> Result<(), E>,
    ) -> Result<(), E> {
        if from_ms >= to_ms {
            return Ok(());
        }
        let first_whole = from_ms.div_euclid(HOUR_MS) + i64::from(from_ms.rem_euclid(HOUR_MS) != 0);
        let end_whole = to_ms.div_euclid(HOUR_MS);
        if first_whole >= end_whole {
            return self.events(user, from_ms, to_ms, f);
        }
        self.events(user, from_ms, first_whole * HOUR_MS, &mut f)?;
        self.rollups(user, hour_u32(first_whole), hour_u32(end_whole), &mut f)?;
        self.events(user, end_whole * HOUR_MS, to_ms, &mut f)
    }
}

/// An hour number as rollup keys store it (instants are checked to lie within 1970..9999).
pub fn hour_u32(hour: i64) -> u32 {
    hour.clamp(0, i64::from(u32::MAX)) as u32
}

/// The rows of one rollup tier (hourly or daily: the same key and value layout) for `user` with
/// a period key in `[from, to)`, in key order; `start_ms` turns a period key into its start.
fn scan_tier<E: From<StoreError>>(
    table: &ReadOnlyTable<RollupKey, &'static [u8]>,
    user: u32,
    from: u32,
    to: u32,
    start_ms: impl Fn(u32) -> i64,
    mut f: impl FnMut(&Usage<'_>) -> Result<(), E>,
) -> Result<(), E> {
    if from >= to {
        return Ok(());
    }
    let range = (user, from, 0, 0, 0, 0)..(user, to, 0, 0, 0, 0);
    for row in table.range(range).map_err(StoreError::from)? {
        let (k, v) = row.map_err(StoreError::from)?;
        let (user, period, device, provider, model, project) = k.value();
        let r = RollupRecord::decode(v.value()).map_err(StoreError::from)?;
        f(&Usage {
            user,
            device,
            provider,
            model,
            project,
            session: None,
            ts_ms: start_ms(period),
            events: r.events,
            usage_total: r.usage_total,
            tokens: &r.tokens,
        })?;
    }
    Ok(())
}
