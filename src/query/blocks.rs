//! `GET /api/v1/usage/blocks`: usage in 5-hour blocks per provider, the unit Claude Code's and
//! Codex's usage limits are counted in.
//!
//! A block starts at the hour of the first event after the previous block ended and lasts 5
//! hours. Since blocks start on whole hours, the hourly rollups give them exactly. Where a chain
//! of blocks begins depends on history: an hour with usage that follows 4 hours without any
//! (of the same provider) always starts a block, so the query walks the rollup keys backwards
//! from the window's end until it has found such an hour at or before the window for every
//! provider, at most [`LOOKBACK_MS`] before the window. A provider that had usage in every
//! 5-hour stretch of that whole look-back is counted from the first hour of it (`exact: false`).

use std::collections::BTreeMap;

use serde::Serialize;

use super::pricing::PriceTable;
use super::source::{Reader, hour_u32};
use super::time::{self, DAY_MS, HOUR_MS};
use super::usage::{self, GroupKey, ParamError, Step, Sums, UsageError, UsageParams};
use crate::fasthash::FxHashMap;
use crate::store::Store;

pub const BLOCK_HOURS: u32 = 5;
const BLOCK_MS: i64 = BLOCK_HOURS as i64 * HOUR_MS;
/// Default window: the last day.
pub const DEFAULT_WINDOW_MS: i64 = DAY_MS;
/// Longest window one request may ask for.
pub const MAX_WINDOW_MS: i64 = 31 * DAY_MS;
/// How far before the window the start of a chain of blocks is looked for.
pub const LOOKBACK_MS: i64 = 7 * DAY_MS;

#[derive(Clone, Debug)]
pub struct BlockParams {
    pub start_ms: i64,
    pub end_ms: i64,
    pub offset_secs: i32,
    /// The instant the current block and the projections are computed for.
    pub now_ms: i64,
}

impl BlockParams {
    /// Reads `start`, `end` and `utc_offset` through `get`.
    pub fn parse(get: impl Fn(&str) -> Option<String>, now_ms: i64) -> Result<BlockParams, ParamError> {
        let err = |name: &str, msg: String| ParamError(format!("{name}: {msg}"));
        let end_ms = match get("end") {
            Some(s) => time::parse_instant(&s).map_err(|e| err("end", e))?,
            None => now_ms,
        };
        let start_ms = match get("start") {
            Some(s) => time::parse_instant(&s).map_err(|e| err("start", e))?,
            None => (end_ms - DEFAULT_WINDOW_MS).max(0),
        };
        if start_ms >= end_ms {
            return Err(err("start", "must be before end".into()));
        }
        if end_ms - start_ms > MAX_WINDOW_MS {
            return Err(err("start", format!("the window is at most {} days", MAX_WINDOW_MS / DAY_MS)));
        }
        let offset_secs = match get("utc_offset") {
            Some(s) => time::parse_utc_offset(&s).map_err(|e| err("utc_offset", e))?,
            None => 0,
        };
        Ok(BlockParams { start_ms, end_ms, offset_secs, now_ms })
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct Projection {
    pub elapsed_secs: i64,
    pub remaining_secs: i64,
    /// Tokens (the clients' totals) per minute since the block started.
    pub tokens_per_minute: f64,
    pub cost_per_hour_usd: f64,
    /// At this rate, at the block's end.
    pub projected_total: u64,
    pub projected_cost_usd: f64,
}

#[derive(Clone, Debug, Serialize)]
pub struct Block {
    pub start: String,
    pub end: String,
    pub start_ts: i64,
    pub end_ts: i64,
    /// `now` lies inside the block.
    pub active: bool,
    #[serde(flatten)]
    pub sums: Sums,
    /// Only for the active block.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub projection: Option<Projection>,
}

#[derive(Clone, Debug, Serialize)]
pub struct ProviderBlocks {
    pub provider: String,
    /// False when the provider had usage in every 5-hour stretch of the whole look-back, so the
    /// chain's true start is older than it (the blocks are then counted from its first hour).
    pub exact: bool,
    /// The active block, also the first of `blocks`; null when none is running.
    pub current: Option<Block>,
    /// Blocks that overlap the window, newest first.
    pub blocks: Vec<Block>,
}

#[derive(Clone, Debug, Serialize)]
pub struct BlocksReport {
    pub start: String,
    pub end: String,
    pub now: String,
    pub utc_offset: String,
    pub block_hours: u32,
    pub providers: Vec<ProviderBlocks>,
}

/// Where the chain of one provider's blocks begins, found walking backwards.
struct Chain {
    /// The earliest hour with usage seen so far.
    min_usage: u32,
    /// A hour known to start a block from which the window's blocks follow.
    origin: Option<u32>,
}

/// Walks the rollup keys backwards from the window's end; returns each provider's chain origin
/// and whether it is exact.
fn chain_origins(
    reader: &Reader,
    user: u32,
    p: &BlockParams,
) -> Result<FxHashMap<u32, (u32, bool)>, UsageError> {
    let start_hour = hour_u32(p.start_ms.div_euclid(HOUR_MS));
    let end_hour = hour_u32((p.end_ms + HOUR_MS - 1).div_euclid(HOUR_MS));
    let floor = hour_u32((p.start_ms - LOOKBACK_MS).div_euclid(HOUR_MS));
    let mut chains: FxHashMap<u32, Chain> = FxHashMap::default();
    let mut current: Option<u32> = None;
    // Before reading hour `h`, everything above it is known: an earliest hour L with nothing in
    // the 4 hours before it starts a block. It serves as origin when it is at or before the window
    // start, or when nothing of the provider lies between the reading position and the window
    // (then no earlier block can reach into the window).
    let settle = |chains: &mut FxHashMap<u32, Chain>, h: i64| {
        for c in chains.values_mut().filter(|c| c.origin.is_none()) {
            let l = i64::from(c.min_usage);
            if l - h > i64::from(BLOCK_HOURS - 1)
                && (c.min_usage <= start_hour || h + 4 < i64::from(start_hour))
            {
                c.origin = Some(c.min_usage);
            }
        }
    };
    reader.usage.rollup_hours_rev(user, floor, end_hour, |hour, provider| {
        if current != Some(hour) {
            settle(&mut chains, i64::from(hour));
            current = Some(hour);
            if i64::from(hour) + 4 < i64::from(start_hour) && chains.values().all(|c| c.origin.is_some()) {
                return false;
            }
        }
        let c = chains.entry(provider).or_insert(Chain { min_usage: hour, origin: None });
        if c.origin.is_none() {
            c.min_usage = c.min_usage.min(hour);
        }
        true
    })?;
    // Past the look-back (or the user's first data).
    settle(&mut chains, i64::from(floor) - 1);
    Ok(chains.into_iter().map(|(p, c)| (p, c.origin.map_or((c.min_usage, false), |o| (o, true)))).collect())
}

/// The blocks of `user` that overlap the window.
pub fn run(
    store: &Store,
    prices: &PriceTable,
    user: u32,
    p: &BlockParams,
) -> Result<BlocksReport, UsageError> {
    let mut reader = Reader::new(store)?;
    let mut origins: BTreeMap<String, (u32, bool)> = BTreeMap::new();
    for (provider, origin) in chain_origins(&reader, user, p)? {
        origins.insert(reader.names.string(provider)?.to_owned(), origin);
    }
    let mut providers = Vec::new();
    if let Some(first) = origins.values().map(|(h, _)| *h).min() {
        let params = UsageParams {
            start_ms: i64::from(first) * HOUR_MS,
            // A block that starts inside the window counts whole, even where it reaches past it.
            end_ms: p.end_ms + BLOCK_MS,
            step: Some(Step::Hour),
            offset_secs: 0,
            group_by: vec![GroupKey::Provider],
            day_tier: false,
        };
        let report = usage::run_on(reader, prices, &[user], &params)?;
        for series in report.series {
            let name = series.group.get("provider").cloned().unwrap_or_default();
            let Some(&(origin, exact)) = origins.get(&name) else { continue };
            let mut blocks: Vec<(i64, Sums)> = Vec::new();
            for point in series.points.unwrap_or_default() {
                let ts = point.ts * 1000;
                if ts < i64::from(origin) * HOUR_MS {
                    continue;
                }
                match blocks.last_mut() {
                    Some((start, sums)) if ts < *start + BLOCK_MS => add(sums, &point.sums),
                    _ => blocks.push((ts, point.sums)),
                }
            }
            let mut out: Vec<Block> = blocks
                .into_iter()
                .filter(|(start, _)| *start + BLOCK_MS > p.start_ms && *start < p.end_ms)
                .map(|(start, sums)| block(start, sums, p))
                .collect();
            if out.is_empty() {
                continue;
            }
            out.reverse();
            let current = out.first().filter(|b| b.active).cloned();
            providers.push(ProviderBlocks { provider: name, exact, current, blocks: out });
        }
    }
    Ok(BlocksReport {
        start: time::rfc3339_at(p.start_ms, p.offset_secs),
        end: time::rfc3339_at(p.end_ms, p.offset_secs),
        now: time::rfc3339_at(p.now_ms, p.offset_secs),
        utc_offset: time::format_offset(p.offset_secs),
        block_hours: BLOCK_HOURS,
        providers,
    })
}

fn add(into: &mut Sums, s: &Sums) {
    for (k, v) in &s.tokens {
        let slot = into.tokens.entry(k.clone()).or_insert(0);
        *slot = slot.saturating_add(*v);
    }
    into.total = into.total.saturating_add(s.total);
    into.events = into.events.saturating_add(s.events);
    into.cost_usd = round_usd(into.cost_usd + s.cost_usd);
}

fn round_usd(x: f64) -> f64 {
    (x * 1e6).round() / 1e6
}

fn block(start: i64, sums: Sums, p: &BlockParams) -> Block {
    let end = start + BLOCK_MS;
    let active = start <= p.now_ms && p.now_ms < end;
    let projection = active.then(|| {
        // At least a minute, so a block that just began does not project from a zero interval.
        let elapsed_ms = (p.now_ms - start).max(60_000);
        let remaining_ms = end - p.now_ms;
        let per_ms = sums.total as f64 / elapsed_ms as f64;
        let cost_per_ms = sums.cost_usd / elapsed_ms as f64;
        Projection {
            elapsed_secs: (p.now_ms - start) / 1000,
            remaining_secs: remaining_ms / 1000,
            tokens_per_minute: (per_ms * 60_000.0 * 10.0).round() / 10.0,
            cost_per_hour_usd: round_usd(cost_per_ms * HOUR_MS as f64),
            projected_total: sums.total.saturating_add((per_ms * remaining_ms as f64).round() as u64),
            projected_cost_usd: round_usd(sums.cost_usd + cost_per_ms * remaining_ms as f64),
        }
    });
    Block {
        start: time::rfc3339_at(start, p.offset_secs),
        end: time::rfc3339_at(end, p.offset_secs),
        start_ts: start / 1000,
        end_ts: end / 1000,
        active,
        sums,
        projection,
    }
}
