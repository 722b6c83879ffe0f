//! The native usage API (`GET /api/v1/usage`): token sums, event counts and costs per time step
//! and group, read from the hourly rollups only (never a scan of raw events), so a month of a
//! busy user is a few thousand key reads.
//!
//! The window is widened to whole hours (rollups have no finer time). Day and week steps start
//! at local midnight (weeks on Monday) for the requested UTC offset; with an offset that is not a
//! whole number of hours, each hour counts in the day its start falls in.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use super::columns::{Column, STANDARD};
use super::pricing::{Price, PriceTable};
use super::source::{Names, Reader, Usage, UsageTables, hour_u32};
use super::time::{self, DAY_MS, HOUR_MS};
use crate::fasthash::FxHashMap;
use crate::store::day_rollups::{day_key_of_hour, first_hour_of_day_key};
use crate::store::{Store, StoreError};

/// Most points one series may have (a year of days; 208 days of hours).
pub const MAX_POINTS: i64 = 5000;
/// Most points in one response, over all series (bounds the response size).
pub const MAX_RESPONSE_POINTS: usize = 200_000;
/// Default window when `start` is not given.
pub const DEFAULT_WINDOW_MS: i64 = 30 * DAY_MS;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    Hour,
    Day,
    Week,
}

impl Step {
    fn parse(s: &str) -> Result<Option<Step>, String> {
        match s {
            "" => Ok(None),
            "1h" => Ok(Some(Step::Hour)),
            "1d" => Ok(Some(Step::Day)),
            "1w" => Ok(Some(Step::Week)),
            other => Err(format!("must be 1h, 1d or 1w (or left out for totals), got {other:?}")),
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Step::Hour => "1h",
            Step::Day => "1d",
            Step::Week => "1w",
        }
    }

    fn len_ms(self) -> i64 {
        match self {
            Step::Hour => HOUR_MS,
            Step::Day => DAY_MS,
            Step::Week => 7 * DAY_MS,
        }
    }

    /// Start (UTC ms) of the step bucket holding the hour starting at `ts_ms`.
    fn bucket(self, ts_ms: i64, offset_ms: i64) -> i64 {
        match self {
            Step::Hour => ts_ms.div_euclid(HOUR_MS) * HOUR_MS,
            Step::Day => (ts_ms + offset_ms).div_euclid(DAY_MS) * DAY_MS - offset_ms,
            Step::Week => {
                let day = (ts_ms + offset_ms).div_euclid(DAY_MS);
                // Day 0 (1970-01-01) was a Thursday; weeks start on Monday.
                (day - (day + 3).rem_euclid(7)) * DAY_MS - offset_ms
            }
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum GroupKey {
    User,
    Device,
    Provider,
    Model,
    Project,
    Type,
}

impl GroupKey {
    const NAMES: &'static str = "model, device, project, provider, type, user";

    fn parse(s: &str) -> Option<GroupKey> {
        Some(match s {
            "model" => GroupKey::Model,
            "device" => GroupKey::Device,
            "project" => GroupKey::Project,
            "provider" => GroupKey::Provider,
            "type" => GroupKey::Type,
            "user" => GroupKey::User,
            _ => return None,
        })
    }

    fn as_str(self) -> &'static str {
        match self {
            GroupKey::User => "user",
            GroupKey::Device => "device",
            GroupKey::Provider => "provider",
            GroupKey::Model => "model",
            GroupKey::Project => "project",
            GroupKey::Type => "type",
        }
    }
}

/// The query parameters other than the scope (which needs the caller and the store).
#[derive(Clone, Debug)]
pub struct UsageParams {
    pub start_ms: i64,
    pub end_ms: i64,
    pub step: Option<Step>,
    pub offset_secs: i32,
    pub group_by: Vec<GroupKey>,
    /// Read whole local days from the day tier where it is kept at `offset_secs` (false: the
    /// hourly tier only, for tests that compare the two).
    pub day_tier: bool,
}

/// A bad parameter: its name and what is wrong.
#[derive(Debug, PartialEq, Eq)]
pub struct ParamError(pub String);

fn param_err(name: &str, msg: impl std::fmt::Display) -> ParamError {
    ParamError(format!("{name}: {msg}"))
}

impl UsageParams {
    /// Reads `start`, `end`, `step`, `group_by` and `utc_offset` through `get`. `now_ms` is the
    /// default end.
    pub fn parse(get: impl Fn(&str) -> Option<String>, now_ms: i64) -> Result<UsageParams, ParamError> {
        let end_ms = match get("end") {
            Some(s) => time::parse_instant(&s).map_err(|e| param_err("end", e))?,
            None => now_ms,
        };
        let start_ms = match get("start") {
            Some(s) => time::parse_instant(&s).map_err(|e| param_err("start", e))?,
            None => (end_ms - DEFAULT_WINDOW_MS).max(0),
        };
        if start_ms >= end_ms {
            return Err(param_err("start", "must be before end"));
        }
        let step = Step::parse(get("step").as_deref().unwrap_or("")).map_err(|e| param_err("step", e))?;
        let offset_secs = match get("utc_offset") {
            Some(s) => time::parse_utc_offset(&s).map_err(|e| param_err("utc_offset", e))?,
            None => 0,
        };
        let mut group_by = Vec::new();
        for part in get("group_by").unwrap_or_default().split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let key = GroupKey::parse(part).ok_or_else(|| {
                param_err("group_by", format!("unknown key {part:?}; use any of {}", GroupKey::NAMES))
            })?;
            if !group_by.contains(&key) {
                group_by.push(key);
            }
        }
        let params = UsageParams { start_ms, end_ms, step, offset_secs, group_by, day_tier: true };
        if let Some(step) = step {
            let points = params.points(step);
            if points > MAX_POINTS {
                return Err(param_err(
                    "step",
                    format!(
                        "{} over this window gives {points} points (at most {MAX_POINTS}); use a coarser step or a shorter window",
                        step.as_str()
                    ),
                ));
            }
        }
        Ok(params)
    }

    fn first_hour(&self) -> i64 {
        self.start_ms.div_euclid(HOUR_MS)
    }

    /// Exclusive.
    fn end_hour(&self) -> i64 {
        (self.end_ms + HOUR_MS - 1).div_euclid(HOUR_MS)
    }

    fn offset_ms(&self) -> i64 {
        i64::from(self.offset_secs) * 1000
    }

    fn points(&self, step: Step) -> i64 {
        let first = step.bucket(self.first_hour() * HOUR_MS, self.offset_ms());
        let last = step.bucket((self.end_hour() - 1) * HOUR_MS, self.offset_ms());
        (last - first) / step.len_ms() + 1
    }
}

/// Token sums, event count and cost of a point, a series or the whole response.
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct Sums {
    /// Per column; the four standard columns always appear.
    pub tokens: BTreeMap<String, u64>,
    /// The clients' own totals (Claude: all four columns; Codex: input + output).
    pub total: u64,
    pub events: u64,
    pub cost_usd: f64,
}

#[derive(Clone, Debug, Serialize)]
pub struct Point {
    /// Start of the step bucket, RFC 3339 at the requested offset.
    pub start: String,
    /// The same instant in Unix seconds.
    pub ts: i64,
    #[serde(flatten)]
    pub sums: Sums,
}

#[derive(Clone, Debug, Serialize)]
pub struct Series {
    /// The group's labels (`device` and `user` come with `device_name` / `username`).
    pub group: BTreeMap<String, String>,
    pub totals: Sums,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub points: Option<Vec<Point>>,
}

#[derive(Clone, Debug, Serialize)]
pub struct UsageReport {
    /// The window actually read: whole hours, RFC 3339 at the requested offset.
    pub start: String,
    pub end: String,
    pub step: Option<&'static str>,
    pub utc_offset: String,
    pub group_by: Vec<&'static str>,
    pub series: Vec<Series>,
    pub totals: Sums,
    /// Models with usage in the window that have no price (they count 0 in cost_usd).
    pub unpriced_models: Vec<String>,
}

/// Why a usage query has no answer.
#[derive(Debug)]
pub enum UsageError {
    /// The response would exceed [`MAX_RESPONSE_POINTS`].
    TooManyPoints,
    Store(StoreError),
}

impl From<StoreError> for UsageError {
    fn from(e: StoreError) -> Self {
        UsageError::Store(e)
    }
}

/// Accumulator for one (group, bucket).
#[derive(Default)]
struct Acc {
    events: u64,
    total: u64,
    tokens: Vec<(u32, u64)>,
    cost: f64,
}

impl Acc {
    /// Adds usage; counts saturate (a client can send any token count).
    fn add(&mut self, events: u64, total: u64, cost: f64, tokens: &[(u32, u64)]) {
        self.events = self.events.saturating_add(events);
        self.total = self.total.saturating_add(total);
        self.cost += cost;
        for (col, n) in tokens {
            match self.tokens.iter_mut().find(|(c, _)| c == col) {
                Some(slot) => slot.1 = slot.1.saturating_add(*n),
                None => self.tokens.push((*col, *n)),
            }
        }
    }
}

/// Group identity: (user, device, provider, model, project, type column), 0 where not grouped.
type GroupIds = [u32; 6];

/// Runs a usage query for the rollups of `users`.
pub fn run(
    store: &Store,
    prices: &PriceTable,
    users: &[u32],
    p: &UsageParams,
) -> Result<UsageReport, UsageError> {
    run_on(Reader::new(store)?, prices, users, p)
}

/// [`run`] on a reader the caller already opened (one snapshot for several reads).
pub fn run_on(
    reader: Reader,
    prices: &PriceTable,
    users: &[u32],
    p: &UsageParams,
) -> Result<UsageReport, UsageError> {
    let Reader { usage, mut names } = reader;
    let mut columns: FxHashMap<u32, Column> = FxHashMap::default();
    let mut model_prices: FxHashMap<u32, Option<Price>> = FxHashMap::default();
    let mut unpriced: BTreeSet<u32> = BTreeSet::new();
    let mut cells: FxHashMap<(GroupIds, i64), Acc> = FxHashMap::default();
    let mut kinds: Vec<Column> = Vec::new();
    let mut grand = Acc::default();
    let by = |k: GroupKey| p.group_by.contains(&k);
    let by_type = by(GroupKey::Type);
    let (first_hour, end_hour) = (hour_u32(p.first_hour()), hour_u32(p.end_hour()));
    let offset_ms = p.offset_ms();

    for &user in users {
        let plan = plan(&usage, user, p)?;
        let mut add = |u: &Usage<'_>| -> Result<(), UsageError> {
            for (col, _) in u.tokens {
                if !columns.contains_key(col) {
                    columns.insert(*col, Column::from_name(names.string(*col)?));
                }
            }
            if let std::collections::hash_map::Entry::Vacant(e) = model_prices.entry(u.model) {
                e.insert(prices.find(names.string(u.model)?));
            }
            let price = model_prices[&u.model];
            // Each column's kind, looked up once per record.
            kinds.clear();
            kinds.extend(u.tokens.iter().map(|(c, _)| columns[c]));
            let cached_input = u
                .tokens
                .iter()
                .zip(&kinds)
                .find(|(_, k)| **k == Column::CachedInput)
                .map_or(0, |((_, n), _)| *n);
            if price.is_none() && !u.tokens.is_empty() {
                unpriced.insert(u.model);
            }
            let cost_of =
                |kind: Column, n: u64| price.map_or(0.0, |pr| pr.column_cost(kind, n, cached_input));
            let record_cost: f64 = u.tokens.iter().zip(&kinds).map(|((_, n), k)| cost_of(*k, *n)).sum();
            let ids: GroupIds = [
                if by(GroupKey::User) { u.user } else { 0 },
                if by(GroupKey::Device) { u.device } else { 0 },
                if by(GroupKey::Provider) { u.provider } else { 0 },
                if by(GroupKey::Model) { u.model } else { 0 },
                if by(GroupKey::Project) { u.project } else { 0 },
                0,
            ];
            let bucket = p.step.map_or(0, |s| s.bucket(u.ts_ms, offset_ms));

            grand.add(u.events, u.usage_total, record_cost, u.tokens);
            if by_type {
                // One series per column: its sum is the series' total, its cost the column's share.
                for ((c, n), k) in u.tokens.iter().zip(&kinds) {
                    let mut key = ids;
                    key[5] = *c;
                    cells.entry((key, bucket)).or_default().add(u.events, *n, cost_of(*k, *n), &[(*c, *n)]);
                }
            } else {
                cells.entry((ids, bucket)).or_default().add(u.events, u.usage_total, record_cost, u.tokens);
            }
            // Stop reading as soon as the answer is known to be too large.
            if cells.len() > MAX_RESPONSE_POINTS {
                return Err(UsageError::TooManyPoints);
            }
            Ok(())
        };
        match plan {
            Some((from_day, to_day, days_from_hour, days_end_hour)) => {
                usage.rollups(user, first_hour, hour_u32(days_from_hour), &mut add)?;
                usage.day_rollups(user, from_day, to_day, p.offset_secs, &mut add)?;
                usage.rollups(user, hour_u32(days_end_hour), end_hour, &mut add)?;
            }
            None => usage.rollups(user, first_hour, end_hour, &mut add)?,
        }
    }

    // Group the cells into series.
    let mut series_cells: FxHashMap<GroupIds, Vec<(i64, Acc)>> = FxHashMap::default();
    for ((ids, bucket), acc) in cells {
        series_cells.entry(ids).or_default().push((bucket, acc));
    }
    let mut series = Vec::with_capacity(series_cells.len());
    // Unrounded costs of each series and of its points, rounded together below.
    let mut raw_costs: Vec<(f64, Vec<f64>)> = Vec::with_capacity(series_cells.len());
    for (ids, mut buckets) in series_cells {
        buckets.sort_by_key(|(b, _)| *b);
        let mut group = BTreeMap::new();
        if by(GroupKey::User) {
            let (uuid, name) = names.user(ids[0])?.cloned().unwrap_or_default();
            group.insert("user".to_owned(), uuid.to_string());
            group.insert("username".to_owned(), name);
        }
        if by(GroupKey::Device) {
            let (uuid, name) = names.device(ids[1])?.cloned().unwrap_or_default();
            group.insert("device".to_owned(), uuid.to_string());
            group.insert("device_name".to_owned(), name);
        }
        for (key, i) in
            [(GroupKey::Provider, 2), (GroupKey::Model, 3), (GroupKey::Project, 4), (GroupKey::Type, 5)]
        {
            if by(key) {
                group.insert(key.as_str().to_owned(), names.string(ids[i])?.to_owned());
            }
        }
        let mut totals = Acc::default();
        let mut points = Vec::with_capacity(buckets.len());
        let mut point_costs = Vec::with_capacity(buckets.len());
        for (bucket, acc) in buckets {
            totals.add(acc.events, acc.total, acc.cost, &acc.tokens);
            point_costs.push(acc.cost);
            if p.step.is_some() {
                points.push(Point {
                    start: time::rfc3339_at(bucket, p.offset_secs),
                    ts: bucket.div_euclid(1000),
                    sums: sums(&mut names, &acc, !by_type)?,
                });
            }
        }
        raw_costs.push((totals.cost, point_costs));
        series.push(Series {
            group,
            totals: sums(&mut names, &totals, !by_type)?,
            points: p.step.map(|_| points),
        });
    }
    // Round once: the series' costs add up exactly to the total's, and each series' points to
    // the series' (rounding each figure on its own can miss by a few micro-dollars).
    let series_costs = apportion_usd(raw_costs.iter().map(|(c, _)| *c), grand.cost);
    for ((s, (_, point_costs)), cost) in series.iter_mut().zip(&raw_costs).zip(series_costs) {
        s.totals.cost_usd = cost;
        if let Some(points) = &mut s.points {
            for (point, c) in points.iter_mut().zip(apportion_usd(point_costs.iter().copied(), cost)) {
                point.sums.cost_usd = c;
            }
        }
    }
    // Largest first (what a dashboard shows on top), then by labels for a stable order.
    series.sort_by(|a, b| b.totals.total.cmp(&a.totals.total).then_with(|| a.group.cmp(&b.group)));

    let unpriced_models =
        unpriced.into_iter().map(|m| names.string(m).map(str::to_owned)).collect::<Result<_, _>>()?;
    Ok(UsageReport {
        start: time::rfc3339_at(p.first_hour() * HOUR_MS, p.offset_secs),
        end: time::rfc3339_at(p.end_hour() * HOUR_MS, p.offset_secs),
        step: p.step.map(Step::as_str),
        utc_offset: time::format_offset(p.offset_secs),
        group_by: p.group_by.iter().map(|k| k.as_str()).collect(),
        series,
        totals: sums(&mut names, &grand, true)?,
        unpriced_models,
    })
}

/// Which whole local days of the window the day tier can answer for `user`: (first day key,
/// end day key, first hour they cover, end hour they cover), or None to read hours only. The
/// tier serves day and week steps and totals, when it is kept at the query's offset. Not for
/// `group_by=type`: a type series counts the events of the buckets holding its column, which
/// depends on the bucket size, so those keep the hourly buckets' answer.
fn plan(usage: &UsageTables, user: u32, p: &UsageParams) -> Result<Option<(u32, u32, i64, i64)>, StoreError> {
    if !p.day_tier
        || p.step == Some(Step::Hour)
        || p.group_by.contains(&GroupKey::Type)
        || usage.zone(user)? != p.offset_secs
    {
        return Ok(None);
    }
    let (a, b) = (p.first_hour(), p.end_hour());
    let off = p.offset_secs;
    let first_key = day_key_of_hour(hour_u32(a), off);
    let from_day = if first_hour_of_day_key(first_key, off) == a { first_key } else { first_key + 1 };
    let to_day = day_key_of_hour(hour_u32(b), off);
    if from_day >= to_day {
        return Ok(None);
    }
    Ok(Some((from_day, to_day, first_hour_of_day_key(from_day, off), first_hour_of_day_key(to_day, off))))
}

/// Costs are reported to the micro-dollar.
fn round_usd(x: f64) -> f64 {
    (x * 1e6).round() / 1e6
}

/// Rounds `parts` to micro-dollars so that they add up exactly to `total` rounded: each part is
/// rounded down, and the micro-dollars still missing go to the parts with the largest remainders
/// (or, when float error overshoots, are taken from those with the smallest).
fn apportion_usd(parts: impl Iterator<Item = f64>, total: f64) -> Vec<f64> {
    let scaled: Vec<f64> = parts.map(|p| p * 1e6).collect();
    let mut units: Vec<i64> = scaled.iter().map(|x| x.floor() as i64).collect();
    let mut missing = (total * 1e6).round() as i64 - units.iter().sum::<i64>();
    let mut order: Vec<usize> = (0..units.len()).collect();
    order.sort_by(|&a, &b| (scaled[b] - scaled[b].floor()).total_cmp(&(scaled[a] - scaled[a].floor())));
    while missing > 0 && !order.is_empty() {
        for &i in order.iter().take(missing as usize) {
            units[i] += 1;
            missing -= 1;
        }
    }
    while missing < 0 {
        let Some(&i) = order.iter().rev().find(|&&i| units[i] > 0) else { break };
        units[i] -= 1;
        missing += 1;
    }
    units.into_iter().map(|u| u as f64 / 1e6).collect()
}

fn sums(names: &mut Names, acc: &Acc, standard_columns: bool) -> Result<Sums, StoreError> {
    let mut tokens = BTreeMap::new();
    if standard_columns {
        for c in STANDARD {
            tokens.insert(c.to_owned(), 0);
        }
    }
    for (c, n) in &acc.tokens {
        let sum: &mut u64 = tokens.entry(names.string(*c)?.to_owned()).or_insert(0);
        *sum = sum.saturating_add(*n);
    }
    Ok(Sums { tokens, total: acc.total, events: acc.events, cost_usd: round_usd(acc.cost) })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(pairs: &[(&str, &str)]) -> Result<UsageParams, ParamError> {
        let map: std::collections::HashMap<String, String> =
            pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        UsageParams::parse(|k| map.get(k).cloned(), 1_774_693_800_000)
    }

    #[test]
    fn buckets_follow_the_offset() {
        let h = 1_774_656_000_000; // 2026-03-28T00:00Z, a Saturday
        assert_eq!(Step::Day.bucket(h + 23 * HOUR_MS, 0), h);
        assert_eq!(
            Step::Day.bucket(h + 23 * HOUR_MS, 2 * HOUR_MS),
            h + DAY_MS - 2 * HOUR_MS,
            "23:00Z is the next day at +02:00"
        );
        assert_eq!(Step::Day.bucket(h, -5 * HOUR_MS), h - DAY_MS + 5 * HOUR_MS);
        assert_eq!(Step::Week.bucket(h, 0), h - 5 * DAY_MS, "Monday 2026-03-23");
        assert_eq!(Step::Week.bucket(0, 0), -3 * DAY_MS);
        assert_eq!(Step::Hour.bucket(h + 3 * HOUR_MS, 1800 * 1000), h + 3 * HOUR_MS);
    }

    #[test]
    fn rounded_costs_add_up_to_the_rounded_total() {
        // Three parts of 0.0000004 each round to 0 alone, but their total to 0.000001.
        let parts = [0.000_000_4, 0.000_000_4, 0.000_000_4];
        let total: f64 = parts.iter().sum();
        assert_eq!(apportion_usd(parts.into_iter(), total), vec![0.000_001, 0.0, 0.0]);
        // Six parts ending in .5 micro-dollars: each alone rounds up (+3 over the total).
        let parts: Vec<f64> = (1..=6).map(|i| i as f64 * 1e-6 + 0.000_000_5).collect();
        let total: f64 = parts.iter().sum();
        let rounded = apportion_usd(parts.iter().copied(), total);
        let units = |v: &[f64]| v.iter().map(|x| (x * 1e6).round() as i64).sum::<i64>();
        assert_eq!(units(&rounded), (total * 1e6).round() as i64);
        for (r, p) in rounded.iter().zip(&parts) {
            assert!((r - p).abs() < 1e-6, "{r} vs {p}");
        }
        assert!(apportion_usd(std::iter::empty(), 0.0).is_empty());
        assert_eq!(apportion_usd([0.0292501].into_iter(), 0.0292501), vec![0.02925]);
    }

    #[test]
    fn parameters() {
        let p = params(&[
            ("start", "2026-03-01T00:00:00Z"),
            ("end", "1774656000"),
            ("step", "1d"),
            ("group_by", "model, type,model"),
            ("utc_offset", "+02:00"),
        ])
        .unwrap();
        assert_eq!(p.group_by, vec![GroupKey::Model, GroupKey::Type]);
        assert_eq!((p.step, p.offset_secs), (Some(Step::Day), 7200));
        assert_eq!(p.points(Step::Day), 28, "27 whole days plus the partial local day at the start");
        let d = params(&[]).unwrap();
        assert_eq!(d.end_ms - d.start_ms, DEFAULT_WINDOW_MS);
        for (pairs, needle) in [
            (vec![("start", "nope")], "start: expected RFC 3339"),
            (vec![("end", "x")], "end:"),
            (vec![("start", "1774693800"), ("end", "1774693800")], "start: must be before end"),
            (vec![("step", "5m")], "step: must be 1h, 1d or 1w"),
            (vec![("group_by", "model,colour")], "group_by: unknown key \"colour\""),
            (vec![("utc_offset", "+25:00")], "utc_offset:"),
            (
                vec![("start", "2000-01-01T00:00:00Z"), ("step", "1h")],
                "step: 1h over this window gives 230003 points (at most 5000)",
            ),
        ] {
            let e = params(&pairs).unwrap_err().0;
            assert!(e.starts_with(needle.split(':').next().unwrap()) && e.contains(needle), "{pairs:?}: {e}");
        }
        assert!(params(&[("start", "2000-01-01T00:00:00Z"), ("step", "1w")]).is_ok());
    }
}
