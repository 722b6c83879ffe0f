//! Usage records: single events, newest first, over every stream (device × provider) of the
//! users in scope, read from the raw events table with one reverse range per stream merged by
//! (ts, stream, message-id hash). A page starts right after its cursor in that order, so its
//! cost does not depend on how deep the cursor is; the export walks the same order to the end.
//!
//! The order is total and keys never change, so paging is stable while events arrive: events
//! newer than the cursor land before it (on earlier pages), and each older event is returned
//! once. A streaming Claude message replaced by a newer version moves to its new time: a page
//! walk sees it once, in whichever version is on the side of the cursor it has not passed yet,
//! or not at all if the new version lands on the side already passed (the walk then saw the
//! old version, or — when the old one was still ahead — it reappears at the top).

use std::collections::{BTreeMap, BinaryHeap};
use std::ops::Bound;

use base64::Engine;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::columns::Column;
use super::pricing::{Price, PriceTable};
use super::source::Names;
use crate::fasthash::FxHashMap;
use crate::store::codec::Record as _;
use crate::store::events::EventRecord;
use crate::store::schema::{DEVICE_KEYS, DEVICE_UUIDS, EVENTS, STREAMS, STRING_IDS};
use crate::store::{Store, StoreError};

pub const MAX_LIMIT: usize = 100;
pub const DEFAULT_LIMIT: usize = 50;
/// Events one page may read before it answers with what it has (selective filters over a long
/// history): the page is then shorter than `limit`, and `next_cursor` continues the scan.
pub const MAX_SCAN_PER_PAGE: usize = 200_000;

/// Filters of the records and export endpoints (all optional).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Filter {
    pub start_ms: i64,
    /// Exclusive.
    pub end_ms: i64,
    pub device: Option<Uuid>,
    pub provider: Option<String>,
    pub model: Option<String>,
    pub project: Option<String>,
    pub session: Option<String>,
}

impl Filter {
    /// Reads `start`, `end`, `device`, `provider`, `model`, `project`, `session`.
    pub fn parse(get: impl Fn(&str) -> Option<String>) -> Result<Filter, String> {
        let time = |name: &str| {
            get(name).map(|v| super::time::parse_instant(&v).map_err(|e| format!("{name}: {e}"))).transpose()
        };
        let start_ms = time("start")?.unwrap_or(0);
        let end_ms = time("end")?.unwrap_or(i64::MAX);
        if start_ms >= end_ms {
            return Err("start: must be before end".into());
        }
        let device = get("device")
            .map(|d| {
                Uuid::try_parse(&d).map_err(|_| format!("device: expected a device id (UUID), got {d:?}"))
            })
            .transpose()?;
        let text = |name: &str| get(name).filter(|v| !v.is_empty());
        Ok(Filter {
            start_ms,
            end_ms,
            device,
            provider: text("provider"),
            model: text("model"),
            project: text("project"),
            session: text("session"),
        })
    }

    /// Ties a cursor to the query it came from: the caller, the users in scope and the filters.
    fn fingerprint(&self, caller: Uuid, users: &[u32]) -> [u8; 8] {
        let mut h = Sha256::new();
        h.update(caller.as_bytes());
        for u in users {
            h.update(u.to_le_bytes());
        }
        h.update(self.start_ms.to_le_bytes());
        h.update(self.end_ms.to_le_bytes());
        h.update(self.device.map(|d| d.as_u128()).unwrap_or(0).to_le_bytes());
        for s in [&self.provider, &self.model, &self.project, &self.session] {
            h.update([u8::from(s.is_some())]);
            h.update(s.as_deref().unwrap_or("").as_bytes());
            h.update([0]);
        }
        let d = h.finalize();
        d[..8].try_into().expect("8 bytes")
    }
}

/// A position in the newest-first order: the last record a page returned.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Position {
    pub ts_ms: i64,
    pub stream: u32,
    pub hash: u64,
}

const CURSOR_VERSION: u8 = 1;

pub fn encode_cursor(p: Position, filter: &Filter, caller: Uuid, users: &[u32]) -> String {
    let mut raw = vec![CURSOR_VERSION];
    raw.extend_from_slice(&filter.fingerprint(caller, users));
    raw.extend_from_slice(&p.ts_ms.to_be_bytes());
    raw.extend_from_slice(&p.stream.to_be_bytes());
    raw.extend_from_slice(&p.hash.to_be_bytes());
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw)
}

pub fn decode_cursor(s: &str, filter: &Filter, caller: Uuid, users: &[u32]) -> Result<Position, String> {
    const MALFORMED: &str = "cursor: malformed; pass next_cursor from the previous page unchanged";
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(s).map_err(|_| MALFORMED.to_owned())?;
    if raw.len() != 29 || raw[0] != CURSOR_VERSION {
        return Err(MALFORMED.into());
    }
    if raw[1..9] != filter.fingerprint(caller, users) {
        return Err(
            "cursor: belongs to another query (other filters, scope or user); start again without a cursor"
                .into(),
        );
    }
    Ok(Position {
        ts_ms: i64::from_be_bytes(raw[9..17].try_into().expect("8")),
        stream: u32::from_be_bytes(raw[17..21].try_into().expect("4")),
        hash: u64::from_be_bytes(raw[21..29].try_into().expect("8")),
    })
}

/// One record, with names resolved.
#[derive(Clone, Debug, serde::Serialize)]
pub struct UsageRecord {
    /// RFC 3339 (UTC, milliseconds).
    pub ts: String,
    pub ts_ms: i64,
    pub provider: String,
    pub device_id: String,
    pub device_name: String,
    pub model: String,
    pub project: Option<String>,
    pub session: String,
    /// The stable 64-bit hash of the client's message id, in hex (the server keeps the hash,
    /// not the id).
    pub message_id: String,
    pub tokens: BTreeMap<String, u64>,
    pub total: u64,
    pub cost_usd: f64,
    #[serde(skip)]
    pub position: Position,
}

/// Prices events, caching each model's price and each column's kind.
struct Coster<'p> {
    prices: &'p PriceTable,
    models: FxHashMap<u32, Option<Price>>,
    columns: FxHashMap<u32, Column>,
}

impl Coster<'_> {
    fn cost(&mut self, names: &mut Names, e: &EventRecord) -> Result<f64, StoreError> {
        if !self.models.contains_key(&e.model) {
            let p = self.prices.find(names.string(e.model)?);
            self.models.insert(e.model, p);
        }
        let Some(price) = self.models[&e.model] else { return Ok(0.0) };
        for (c, _) in &e.tokens {
            if !self.columns.contains_key(c) {
                let k = Column::from_name(names.string(*c)?);
                self.columns.insert(*c, k);
            }
        }
        let cached =
            e.tokens.iter().find(|(c, _)| self.columns[c] == Column::CachedInput).map_or(0, |(_, n)| *n);
        Ok(e.tokens.iter().map(|(c, n)| price.column_cost(self.columns[c], *n, cached)).sum())
    }
}

/// What a scan callback tells the scan.
pub enum Next {
    More,
    Stop,
}

/// Walks the matching records of `users` newest first, strictly after `after`, calling `f` for
/// each; stops when `f` says so, after `max_scan` events (returning the last position read), or
/// at the end (`None`).
pub fn scan(
    store: &Store,
    prices: &PriceTable,
    users: &[u32],
    filter: &Filter,
    after: Option<Position>,
    max_scan: usize,
    mut f: impl FnMut(UsageRecord) -> Next,
) -> Result<Option<Position>, StoreError> {
    let txn = store.read()?;
    let events = txn.open_table(EVENTS)?;
    let device_keys = txn.open_table(DEVICE_KEYS)?;
    let streams_t = txn.open_table(STREAMS)?;
    let string_ids = txn.open_table(STRING_IDS)?;
    let mut names = Names::read(&txn)?;
    // A text filter naming a string the file has never seen matches nothing.
    let lookup = |v: &Option<String>| -> Result<Option<Option<u32>>, StoreError> {
        match v {
            None => Ok(Some(None)),
            Some(s) => Ok(string_ids.get(s.as_str())?.map(|id| Some(id.value()))),
        }
    };
    let (Some(provider), Some(model), Some(project), Some(session)) = (
        lookup(&filter.provider)?,
        lookup(&filter.model)?,
        lookup(&filter.project)?,
        lookup(&filter.session)?,
    ) else {
        return Ok(None);
    };
    let device = match filter.device {
        None => None,
        Some(uuid) => match txn.open_table(DEVICE_UUIDS)?.get(uuid.as_u128())? {
            Some(id) => Some(id.value()),
            None => return Ok(None),
        },
    };

    // Every stream of the users' devices that passes the device and provider filters.
    let mut streams: Vec<(u32, u32, u32)> = Vec::new(); // (stream, device, provider)
    for &user in users {
        let next = user.checked_add(1).map_or(Bound::Unbounded, |n| Bound::Excluded((n, "")));
        for row in device_keys.range::<(u32, &str)>((Bound::Included((user, "")), next))? {
            let d = row?.1.value();
            if device.is_some_and(|want| want != d) {
                continue;
            }
            for s in streams_t.range((d, 0)..=(d, u32::MAX))? {
                let (k, v) = s?;
                let p = k.value().1;
                if provider.is_none_or(|want| want == p) {
                    streams.push((v.value(), d, p));
                }
            }
        }
    }

    // One reverse range per stream, bounded above by the cursor.
    let mut ranges = Vec::with_capacity(streams.len());
    for &(stream, _, _) in &streams {
        let end = match after {
            None => Bound::Excluded((stream, filter.end_ms, 0)),
            Some(c) => {
                let at_cursor = match stream.cmp(&c.stream) {
                    std::cmp::Ordering::Less => Bound::Included((stream, c.ts_ms, u64::MAX)),
                    std::cmp::Ordering::Equal => Bound::Excluded((stream, c.ts_ms, c.hash)),
                    std::cmp::Ordering::Greater => Bound::Excluded((stream, c.ts_ms, 0)),
                };
                if c.ts_ms >= filter.end_ms { Bound::Excluded((stream, filter.end_ms, 0)) } else { at_cursor }
            }
        };
        let start = Bound::Included((stream, filter.start_ms, 0));
        ranges.push(events.range::<(u32, i64, u64)>((start, end))?.rev());
    }
    let mut heap = BinaryHeap::with_capacity(ranges.len());
    let mut heads = Vec::with_capacity(ranges.len());
    for (i, r) in ranges.iter_mut().enumerate() {
        match r.next().transpose()? {
            Some((k, v)) => {
                let (_, ts, hash) = k.value();
                heap.push((Position { ts_ms: ts, stream: streams[i].0, hash }, i));
                heads.push(Some(v));
            }
            None => heads.push(None),
        }
    }
    let mut coster = Coster { prices, models: FxHashMap::default(), columns: FxHashMap::default() };
    let mut scanned = 0usize;
    while let Some((pos, i)) = heap.pop() {
        let value = heads[i].take().expect("a head for every heap entry");
        let e = EventRecord::decode(value.value())?;
        if let Some((k, v)) = ranges[i].next().transpose()? {
            let (_, ts, hash) = k.value();
            heap.push((Position { ts_ms: ts, stream: pos.stream, hash }, i));
            heads[i] = Some(v);
        }
        scanned += 1;
        let (_, d, p) = streams[i];
        let matches = model.is_none_or(|m| m == e.model)
            && project.is_none_or(|x| x == e.project)
            && session.is_none_or(|x| x == e.session);
        if matches {
            let record = build(&mut names, &mut coster, pos, d, p, &e)?;
            if let Next::Stop = f(record) {
                return Ok(Some(pos));
            }
        }
        if scanned >= max_scan {
            return Ok(heap.peek().map(|_| pos));
        }
    }
    Ok(None)
}

fn build(
    names: &mut Names,
    coster: &mut Coster<'_>,
    pos: Position,
    device: u32,
    provider: u32,
    e: &EventRecord,
) -> Result<UsageRecord, StoreError> {
    let cost = coster.cost(names, e)?;
    let mut tokens = BTreeMap::new();
    for (c, n) in &e.tokens {
        tokens.insert(names.string(*c)?.to_owned(), *n);
    }
    let (device_id, device_name) =
        names.device(device)?.map(|(u, n)| (u.to_string(), n.clone())).unwrap_or_default();
    Ok(UsageRecord {
        ts: super::time::rfc3339_at(pos.ts_ms, 0),
        ts_ms: pos.ts_ms,
        provider: names.string(provider)?.to_owned(),
        device_id,
        device_name,
        model: names.string(e.model)?.to_owned(),
        project: if e.project == 0 { None } else { Some(names.string(e.project)?.to_owned()) },
        session: names.string(e.session)?.to_owned(),
        message_id: format!("{:016x}", pos.hash),
        tokens,
        total: e.usage_total,
        // Nano-dollars: sums of many records stay within a micro-dollar of the usage API.
        cost_usd: (cost * 1e9).round() / 1e9,
        position: pos,
    })
}

/// One page: up to `limit` records after `after`, and where the next page starts.
pub fn page(
    store: &Store,
    prices: &PriceTable,
    users: &[u32],
    filter: &Filter,
    after: Option<Position>,
    limit: usize,
) -> Result<(Vec<UsageRecord>, Option<Position>), StoreError> {
    let mut out = Vec::with_capacity(limit);
    // Read one record past the page to know whether there is a next page.
    let mut extra = false;
    let stopped = scan(store, prices, users, filter, after, MAX_SCAN_PER_PAGE, |r| {
        if out.len() == limit {
            extra = true;
            return Next::Stop;
        }
        out.push(r);
        Next::More
    })?;
    let next = if extra {
        out.last().map(|r| r.position)
    } else if stopped.is_some() {
        // The scan budget ran out before the page filled: continue from where it stopped.
        stopped
    } else {
        None
    };
    Ok((out, next))
}
