//! Evaluating a toki query over the caller's usage and answering in the Prometheus JSON the toki
//! CLI parses (compat.md §6.2, §6.4): one instant vector whose samples carry the window's sums.
//!
//! The window `[start, end)` is read at millisecond precision: rollups for its whole hours and
//! raw events for the partial hours at its edges, as compat.md §6.4 asks. (The native usage API
//! widens its window to whole hours instead; the two agree for whole-hour windows.) Queries about
//! sessions (grouping, filtering or the `sessions` metric) read raw events for the whole window,
//! since rollups have no session, up to [`MAX_SCANNED_EVENTS`].

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};
use uuid::Uuid;

use super::parse::{Agg, Filter, Label, Matcher, Metric, TokiQuery};
use crate::fasthash::FxHashMap;
use crate::query::columns::{Column, STANDARD};
use crate::query::pricing::{Price, PriceTable};
use crate::query::source::{Names, Reader, Usage};
use crate::store::{Store, StoreError};

/// Sums of one group (one row of the client's table).
#[derive(Default)]
struct GroupSums {
    /// By the type the client shows (Codex columns mapped, compat.md §6.4).
    types: BTreeMap<String, u64>,
    events: u64,
    usage_total: u64,
    cost: f64,
}

/// Label values a filter or group looks at, resolved once per id.
struct Labels<'a> {
    names: &'a mut Names,
    filters: &'a [Filter],
    /// (label, id) -> whether every filter on that label passes.
    passes: FxHashMap<(Label, u32), bool>,
    /// (label, id) -> the value shown for a group.
    shown: FxHashMap<(Label, u32), String>,
}

impl Labels<'_> {
    /// The values a label has for an id: devices match by name or by id.
    fn values(&mut self, label: Label, id: u32) -> Result<Vec<String>, StoreError> {
        Ok(match label {
            Label::Device => match self.names.device(id)? {
                Some((uuid, name)) => vec![name.clone(), uuid.to_string()],
                None => vec![String::new(), Uuid::nil().to_string()],
            },
            _ => vec![self.names.string(id)?.to_owned()],
        })
    }

    fn passes(&mut self, label: Label, id: u32) -> Result<bool, StoreError> {
        if let Some(p) = self.passes.get(&(label, id)) {
            return Ok(*p);
        }
        let values = self.values(label, id)?;
        let ok = self.filters.iter().filter(|f| f.label == label).all(|f| matches_any(&f.matcher, &values));
        self.passes.insert((label, id), ok);
        Ok(ok)
    }

    fn shown(&mut self, label: Label, id: u32) -> Result<String, StoreError> {
        if let Some(s) = self.shown.get(&(label, id)) {
            return Ok(s.clone());
        }
        let s = self.values(label, id)?.swap_remove(0);
        self.shown.insert((label, id), s.clone());
        Ok(s)
    }
}

/// A value matches a label with several values (a device's name and id) if any value matches;
/// a negative matcher needs all of them not to match.
fn matches_any(m: &Matcher, values: &[String]) -> bool {
    match m {
        Matcher::Eq(_) | Matcher::Re(_) => values.iter().any(|v| m.matches(v)),
        Matcher::Ne(_) | Matcher::NotRe(_) => values.iter().all(|v| m.matches(v)),
    }
}

/// Most rows one answer may have (each row is up to four samples and more).
pub const MAX_ROWS: usize = 50_000;
/// Most raw events one query may read. Queries about sessions read every event of the window
/// (rollups have no session), which over a long window of a busy user would take a long time;
/// beyond this the query is refused with a hint to shorten the window.
pub const MAX_SCANNED_EVENTS: u64 = 5_000_000;

/// Why a query has no answer.
#[derive(Debug)]
pub enum TokiError {
    /// More than [`MAX_ROWS`] rows.
    TooManyRows,
    /// It would read more raw events than its limit (the limit is given).
    TooManyEvents(u64),
    Store(StoreError),
}

impl From<StoreError> for TokiError {
    fn from(e: StoreError) -> Self {
        TokiError::Store(e)
    }
}

/// Runs `q` over `user`'s usage in `[start_ms, end_ms)` (before `offset`).
pub fn run(
    store: &Store,
    prices: &PriceTable,
    user: u32,
    q: &TokiQuery,
    start_ms: i64,
    end_ms: i64,
) -> Result<Value, TokiError> {
    run_capped(store, prices, user, q, start_ms, end_ms, MAX_SCANNED_EVENTS)
}

/// [`run`], reading at most `max_events` raw events.
pub fn run_capped(
    store: &Store,
    prices: &PriceTable,
    user: u32,
    q: &TokiQuery,
    start_ms: i64,
    end_ms: i64,
    max_events: u64,
) -> Result<Value, TokiError> {
    let (start_ms, end_ms) = ((start_ms - q.offset_ms).max(0), (end_ms - q.offset_ms).max(0));
    let group = match q.metric {
        Metric::Sessions => Some(Label::Session),
        Metric::Projects => Some(Label::Project),
        _ => q.group(),
    };
    let needs_events = reads_raw_events(q);
    let type_filters: Vec<&Filter> = q.filters.iter().filter(|f| f.label == Label::Type).collect();
    let row_filters: Vec<Filter> = q.filters.iter().filter(|f| f.label != Label::Type).cloned().collect();

    let Reader { usage, mut names } = Reader::new(store)?;
    let mut labels = Labels {
        names: &mut names,
        filters: &row_filters,
        passes: FxHashMap::default(),
        shown: FxHashMap::default(),
    };
    // Column id -> (the type it is shown as, whether the type filters let it through, its kind).
    let mut columns: FxHashMap<u32, (String, bool, Column)> = FxHashMap::default();
    let mut model_prices: FxHashMap<u32, Option<Price>> = FxHashMap::default();
    let mut groups: BTreeMap<String, GroupSums> = BTreeMap::new();
    let mut scanned: u64 = 0;

    let mut add = |u: &Usage<'_>| -> Result<(), TokiError> {
        // Only raw events carry a session; every one read counts, filtered out or not.
        if u.session.is_some() {
            scanned += 1;
            if scanned > max_events {
                return Err(TokiError::TooManyEvents(max_events));
            }
        }
        let session = u.session.unwrap_or(0);
        let ids = [
            (Label::Model, u.model),
            (Label::Project, u.project),
            (Label::Provider, u.provider),
            (Label::Device, u.device),
            (Label::Session, session),
        ];
        for (label, id) in ids {
            if row_filters.iter().any(|f| f.label == label) && !labels.passes(label, id)? {
                return Ok(());
            }
        }
        let key = match group {
            None => String::new(),
            Some(label) => {
                let id = ids.iter().find(|(l, _)| *l == label).map_or(0, |(_, id)| *id);
                labels.shown(label, id)?
            }
        };
        for (col, _) in u.tokens {
            if !columns.contains_key(col) {
                let name = labels.names.string(*col)?.to_owned();
                let kind = Column::from_name(&name);
                let shown = kind.toki_type().map_or(name, str::to_owned);
                let pass = type_filters.iter().all(|f| f.matcher.matches(&shown));
                columns.insert(*col, (shown, pass, kind));
            }
        }
        if let std::collections::hash_map::Entry::Vacant(e) = model_prices.entry(u.model) {
            e.insert(prices.find(labels.names.string(u.model)?));
        }
        let price = model_prices[&u.model];
        let cached_input =
            u.tokens.iter().find(|(c, _)| columns[c].2 == Column::CachedInput).map_or(0, |(_, n)| *n);
        if groups.len() >= MAX_ROWS && !groups.contains_key(&key) {
            return Err(TokiError::TooManyRows);
        }
        let g = groups.entry(key).or_default();
        // Counts saturate: a client can send any token count.
        g.events = g.events.saturating_add(u.events);
        g.usage_total = g.usage_total.saturating_add(u.usage_total);
        for (col, n) in u.tokens {
            let (shown, pass, kind) = &columns[col];
            if *pass {
                let sum = g.types.entry(shown.clone()).or_insert(0);
                *sum = sum.saturating_add(*n);
                g.cost += price.map_or(0.0, |p| p.column_cost(*kind, *n, cached_input));
            }
        }
        Ok(())
    };
    if needs_events {
        usage.events(user, start_ms, end_ms, &mut add)?;
    } else {
        usage.window(user, start_ms, end_ms, &mut add)?;
    }

    let at = if end_ms % 1000 == 0 { json!(end_ms / 1000) } else { json!(end_ms as f64 / 1000.0) };
    let metric = if q.agg == Some(Agg::Count)
        && matches!(q.metric, Metric::Tokens | Metric::UsageTotal | Metric::Cost)
    {
        // `count` counts events (the usage records behind the sums).
        Metric::Events
    } else {
        q.metric
    };
    let mut result = Vec::new();
    for (key, sums) in &groups {
        let base = group_labels(group, key);
        let mut sample = |extra: &[(&str, &str)], value: String| {
            let mut m = base.clone();
            for (k, v) in extra {
                m.insert((*k).to_owned(), json!(v));
            }
            result.push(json!({ "metric": m, "value": [at, value] }));
        };
        match metric {
            Metric::Tokens => {
                let standard = STANDARD.iter().filter(|t| type_filters.iter().all(|f| f.matcher.matches(t)));
                for t in standard {
                    sample(&[("type", t)], sums.types.get(*t).copied().unwrap_or(0).to_string());
                }
                // Columns the client has no place for (other providers' own) would be warned
                // about and counted as input (compat.md §6.2): only sent when asked for by name.
                for (t, n) in sums
                    .types
                    .iter()
                    .filter(|(t, _)| !STANDARD.contains(&t.as_str()) && asked_for(&type_filters, t))
                {
                    sample(&[("type", t)], n.to_string());
                }
            }
            Metric::UsageTotal => sample(&[], sums.usage_total.to_string()),
            Metric::Cost => sample(&[("__toki_metric__", "cost")], format!("{:.6}", sums.cost)),
            Metric::Events | Metric::Sessions | Metric::Projects => sample(&[], sums.events.to_string()),
        }
    }
    Ok(json!({ "status": "success", "data": { "resultType": "vector", "result": result } }))
}

/// Whether `q` reads raw events (it is about sessions, which rollups do not have) rather than
/// hourly rollups.
pub fn reads_raw_events(q: &TokiQuery) -> bool {
    matches!(q.metric, Metric::Sessions)
        || q.group() == Some(Label::Session)
        || q.filters.iter().any(|f| f.label == Label::Session)
}

/// Whether the query asks for the type `t` explicitly: a `type="…"` or `type=~"…"` filter
/// matches it (every filter passing it is checked when summing).
fn asked_for(type_filters: &[&Filter], t: &str) -> bool {
    type_filters.iter().any(|f| matches!(f.matcher, Matcher::Eq(_) | Matcher::Re(_)) && f.matcher.matches(t))
}

/// The labels of a group's samples: its value in `model` (the client builds rows from it; "no
/// project" and "no session" get a readable name there) and, when grouping by another label,
/// that label with its real value too. A total has no `model`, so the client shows `(total)`.
fn group_labels(group: Option<Label>, key: &str) -> Map<String, Value> {
    let mut m = Map::new();
    let Some(label) = group else { return m };
    let shown = match (label, key) {
        (Label::Project, "") => "(no project)",
        (Label::Session, "") => "(no session)",
        (_, k) => k,
    };
    m.insert("model".into(), json!(shown));
    if label != Label::Model {
        m.insert(label.as_str().into(), json!(key));
    }
    m
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap as Map;
    use std::sync::Arc;

    use super::*;
    use crate::ingest::{BatchJob, Ingest};
    use crate::query::time::HOUR_MS;
    use crate::query::toki::parse::parse;
    use crate::store::devices::AuthDevice;
    use crate::sync::wire::{StoredEvent, SyncBatchPayload, SyncItem};

    /// Ten Claude events in one hour (two sessions) and a store to query them in.
    async fn ten_events() -> (tempfile::TempDir, Arc<Store>, u32, i64) {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(&dir.path().join("t.redb")).unwrap());
        let (ingest, thread) = Ingest::start(Arc::clone(&store)).unwrap();
        let user = 1;
        let AuthDevice::Ready(device) = store.auth_device(user, "k", "laptop", 1).unwrap() else { panic!() };
        let hour = 490_000 * HOUR_MS;
        let items = (0..10)
            .map(|i| SyncItem {
                ts_ms: hour + i * 1000,
                message_id: format!("msg_{i}"),
                event: StoredEvent {
                    model_id: 0,
                    session_id: 1 + (i % 2) as u32,
                    source_file_id: 0,
                    project_name_id: 0,
                    tokens: vec![1, 2, 3, 4],
                },
                usage_total: 10,
                is_correction: false,
            })
            .collect();
        let batch = SyncBatchPayload {
            items,
            dict: Map::from([(0, "claude-sonnet-4-5".into()), (1, "s1".into()), (2, "s2".into())]),
            provider: "claude_code".into(),
            token_columns: ["input", "output", "cache_create", "cache_read"].map(String::from).to_vec(),
        };
        ingest.submit(BatchJob { device: device.id, user, batch }).await.unwrap();
        drop(ingest);
        thread.join().unwrap();
        (dir, store, user, hour)
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn raw_event_scans_are_capped() {
        let (_dir, store, user, hour) = ten_events().await;
        let prices = PriceTable::builtin();
        let run = |q: &str, start: i64, end: i64, cap: u64| {
            run_capped(&store, &prices, user, &parse(q).unwrap(), start, end, cap)
        };
        let sessions = "sum by (session) (usage)";
        assert!(matches!(run(sessions, hour, hour + HOUR_MS, 9), Err(TokiError::TooManyEvents(9))));
        assert!(matches!(run("sessions", 0, hour + HOUR_MS, 5), Err(TokiError::TooManyEvents(5))));
        assert!(
            matches!(run("usage{session=\"s1\"}", 0, hour + HOUR_MS, 5), Err(TokiError::TooManyEvents(5))),
            "filtered-out events count"
        );
        let v = run(sessions, hour, hour + HOUR_MS, 10).unwrap();
        assert_eq!(v["data"]["result"].as_array().unwrap().len(), 8, "two sessions, four types");
        // A shorter window reads fewer events.
        assert!(run(sessions, hour, hour + 5000, 5).is_ok());
        // Whole hours come from the rollups and read no raw events.
        assert!(run("sum by (model) (usage)", hour, hour + HOUR_MS, 0).is_ok());
        assert!(
            matches!(
                run("sum by (model) (usage)", hour + 1, hour + HOUR_MS, 5),
                Err(TokiError::TooManyEvents(5))
            ),
            "a partial hour reads events"
        );
    }
}
