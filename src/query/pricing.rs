//! Model prices in USD per million tokens, compiled in for current Claude and OpenAI coding
//! models and overridable by a TOML file (`[pricing] file`). Costs are computed when usage is
//! read, so a price change applies to all history.
//!
//! A model is priced by its exact name (ignoring case), else by the longest table entry that is a
//! prefix of it ending at a `-`, `@` or `:`: `claude-sonnet-4-5` prices
//! `claude-sonnet-4-5-20250929`, and `claude-sonnet-4` prices `claude-sonnet-4-20250514` but not
//! `claude-sonnet-4-5-…`, which has its own entry. A `.` never ends a family: it is part of a
//! version number, so `gpt-5.3-codex` is unpriced rather than priced as `gpt-5` (a new version
//! often has new prices; list it in a pricing file). Variants that a family would misprice
//! (`o3-pro` under `o3`) have entries of their own. Unknown models cost nothing and are reported
//! as unpriced.
//!
//! Claude's cache writes are priced at the 5-minute cache-write price (toki does not tell the 1-hour
//! writes apart), and long-context surcharges are not modelled. OpenAI has no cache-write price;
//! its cached input is billed at the cache-read price.

use std::collections::HashMap;
use std::path::Path;

use super::columns::Column;

/// USD per million tokens.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Price {
    pub input: f64,
    pub output: f64,
    pub cache_write: f64,
    pub cache_read: f64,
}

const fn p(input: f64, output: f64, cache_write: f64, cache_read: f64) -> Price {
    Price { input, output, cache_write, cache_read }
}

/// The compiled-in table (list prices as published by Anthropic and OpenAI).
const BUILTIN: &[(&str, Price)] = &[
    // Anthropic: cache write = 1.25 x input (5-minute cache), cache read = 0.1 x input.
    ("claude-opus-4-6", p(5.0, 25.0, 6.25, 0.50)),
    ("claude-opus-4-5", p(5.0, 25.0, 6.25, 0.50)),
    ("claude-opus-4-1", p(15.0, 75.0, 18.75, 1.50)),
    ("claude-opus-4", p(15.0, 75.0, 18.75, 1.50)),
    ("claude-sonnet-4-5", p(3.0, 15.0, 3.75, 0.30)),
    ("claude-sonnet-4", p(3.0, 15.0, 3.75, 0.30)),
    ("claude-haiku-4-5", p(1.0, 5.0, 1.25, 0.10)),
    ("claude-haiku-4", p(1.0, 5.0, 1.25, 0.10)),
    ("claude-3-7-sonnet", p(3.0, 15.0, 3.75, 0.30)),
    ("claude-3-5-sonnet", p(3.0, 15.0, 3.75, 0.30)),
    ("claude-3-5-haiku", p(0.80, 4.0, 1.0, 0.08)),
    ("claude-3-opus", p(15.0, 75.0, 18.75, 1.50)),
    ("claude-3-haiku", p(0.25, 1.25, 0.30, 0.03)),
    // OpenAI: no cache-write price; cached input at the cached-input price.
    ("gpt-5", p(1.25, 10.0, 0.0, 0.125)),
    ("gpt-5-codex", p(1.25, 10.0, 0.0, 0.125)),
    ("gpt-5-codex-mini", p(0.25, 2.0, 0.0, 0.025)),
    ("gpt-5-mini", p(0.25, 2.0, 0.0, 0.025)),
    ("gpt-5-nano", p(0.05, 0.40, 0.0, 0.005)),
    ("gpt-5-pro", p(15.0, 120.0, 0.0, 15.0)),
    ("gpt-5.1", p(1.25, 10.0, 0.0, 0.125)),
    ("gpt-5.1-codex", p(1.25, 10.0, 0.0, 0.125)),
    ("gpt-5.1-codex-max", p(1.25, 10.0, 0.0, 0.125)),
    ("gpt-5.1-codex-mini", p(0.25, 2.0, 0.0, 0.025)),
    ("gpt-5.2", p(1.75, 14.0, 0.0, 0.175)),
    ("gpt-5.2-codex", p(1.75, 14.0, 0.0, 0.175)),
    ("codex-mini-latest", p(1.50, 6.0, 0.0, 0.375)),
    // The o-series variants are listed one by one: `o3` must not price `o3-pro` (ten times
    // dearer) by family. Models without a cached-input discount bill cached input as input.
    ("o3", p(2.0, 8.0, 0.0, 0.50)),
    ("o3-mini", p(1.10, 4.40, 0.0, 0.55)),
    ("o3-pro", p(20.0, 80.0, 0.0, 20.0)),
    ("o3-deep-research", p(10.0, 40.0, 0.0, 2.50)),
    ("o4-mini", p(1.10, 4.40, 0.0, 0.275)),
    ("o4-mini-deep-research", p(2.0, 8.0, 0.0, 0.50)),
    ("o1", p(15.0, 60.0, 0.0, 7.50)),
    ("o1-mini", p(1.10, 4.40, 0.0, 0.55)),
    ("o1-pro", p(150.0, 600.0, 0.0, 150.0)),
    ("gpt-4.1", p(2.0, 8.0, 0.0, 0.50)),
    ("gpt-4.1-mini", p(0.40, 1.60, 0.0, 0.10)),
    ("gpt-4.1-nano", p(0.10, 0.40, 0.0, 0.025)),
    ("gpt-4o", p(2.50, 10.0, 0.0, 1.25)),
    ("gpt-4o-mini", p(0.15, 0.60, 0.0, 0.075)),
];

/// Limits on an override file.
const MAX_FILE_BYTES: u64 = 1 << 20;
const MAX_ENTRIES: usize = 10_000;
const MAX_NAME_CHARS: usize = 256;
/// No real price comes near this; a larger value is a typo (per token instead of per million?).
const MAX_USD_PER_MTOK: f64 = 100_000.0;

#[derive(Clone, Debug)]
pub struct PriceTable {
    /// Lower-cased model name or family -> price.
    by_name: HashMap<String, Price>,
    /// What a pricing file contributed, for the start-up log and `config check`.
    source: Option<FileSource>,
}

#[derive(Clone, Debug)]
struct FileSource {
    path: std::path::PathBuf,
    entries: usize,
    replaced: usize,
}

impl Default for PriceTable {
    fn default() -> Self {
        PriceTable::builtin()
    }
}

impl PriceTable {
    pub fn builtin() -> PriceTable {
        PriceTable { by_name: BUILTIN.iter().map(|(n, p)| ((*n).to_owned(), *p)).collect(), source: None }
    }

    /// The built-in table, with the entries of `file` (when given) replacing or adding to it.
    pub fn load(file: Option<&Path>) -> Result<PriceTable, String> {
        let mut table = PriceTable::builtin();
        let Some(path) = file else { return Ok(table) };
        let context = |m: String| format!("pricing file {}: {m}", path.display());
        let size = std::fs::metadata(path).map_err(|e| context(format!("cannot read it: {e}")))?.len();
        if size > MAX_FILE_BYTES {
            return Err(context(format!("it is {size} bytes; the limit is {MAX_FILE_BYTES}")));
        }
        let text = std::fs::read_to_string(path).map_err(|e| context(format!("cannot read it: {e}")))?;
        // Entry by entry: a file's `claude-opus-4` replaces that one entry and leaves
        // `claude-opus-4-1` (an entry of its own) as built in.
        let entries = parse_overrides(&text).map_err(context)?;
        let mut source = FileSource { path: path.to_owned(), entries: entries.len(), replaced: 0 };
        for (name, price) in entries {
            source.replaced += usize::from(table.by_name.insert(name, price).is_some());
        }
        table.source = Some(source);
        Ok(table)
    }

    /// Where the prices come from, for the start-up log and `config check`.
    pub fn describe(&self) -> String {
        match &self.source {
            None => format!("built-in price table ({} entries)", self.by_name.len()),
            Some(f) => format!(
                "pricing file {}: {} entries ({} replacing a built-in entry, {} new), merged with the built-in table ({} entries in all)",
                f.path.display(),
                f.entries,
                f.replaced,
                f.entries - f.replaced,
                self.by_name.len()
            ),
        }
    }

    /// The price of a model (see the module documentation for the matching rule).
    pub fn find(&self, model: &str) -> Option<Price> {
        let model = model.trim().to_lowercase();
        if let Some(p) = self.by_name.get(&model) {
            return Some(*p);
        }
        model
            .char_indices()
            .rev()
            .filter(|(_, c)| matches!(c, '-' | '@' | ':'))
            .find_map(|(i, _)| self.by_name.get(&model[..i]).copied())
    }

    pub fn len(&self) -> usize {
        self.by_name.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }
}

/// `[models."name"]` tables with `input`, `output`, `cache_write` and `cache_read`, all required.
fn parse_overrides(text: &str) -> Result<Vec<(String, Price)>, String> {
    let doc: toml::Table = text.parse().map_err(|e: toml::de::Error| format!("not valid TOML: {e}"))?;
    if let Some(other) = doc.keys().find(|k| k.as_str() != "models") {
        return Err(format!("unknown top-level key `{other}`; prices go in [models.\"<model>\"] tables"));
    }
    let Some(models) = doc.get("models") else { return Ok(Vec::new()) };
    let models = models.as_table().ok_or("`models` must be a table of [models.\"<model>\"] tables")?;
    if models.len() > MAX_ENTRIES {
        return Err(format!("{} models; the limit is {MAX_ENTRIES}", models.len()));
    }
    let mut out = Vec::with_capacity(models.len());
    for (name, value) in models {
        let name_ok = !name.trim().is_empty()
            && name.chars().count() <= MAX_NAME_CHARS
            && !name.chars().any(char::is_control);
        if !name_ok {
            return Err(format!(
                "model name {name:?} must be 1-{MAX_NAME_CHARS} characters without control characters"
            ));
        }
        let entry = value.as_table().ok_or_else(|| {
            format!("models.\"{name}\" must be a table with input, output, cache_write and cache_read")
        })?;
        const FIELDS: [&str; 4] = ["input", "output", "cache_write", "cache_read"];
        if let Some(k) = entry.keys().find(|k| !FIELDS.contains(&k.as_str())) {
            return Err(format!(
                "models.\"{name}\": unknown key `{k}`; the keys are input, output, cache_write, cache_read (USD per million tokens)"
            ));
        }
        let field = |k: &str| -> Result<f64, String> {
            let v = entry.get(k).ok_or_else(|| format!("models.\"{name}\": `{k}` is missing (USD per million tokens; write 0 if there is no such price)"))?;
            let n = match v {
                toml::Value::Float(f) => *f,
                toml::Value::Integer(i) => *i as f64,
                _ => return Err(format!("models.\"{name}\".{k} must be a number, got {v}")),
            };
            if !n.is_finite() || !(0.0..=MAX_USD_PER_MTOK).contains(&n) {
                return Err(format!(
                    "models.\"{name}\".{k} must be from 0 to {MAX_USD_PER_MTOK} (USD per million tokens), got {n}"
                ));
            }
            Ok(n)
        };
        out.push((
            name.trim().to_lowercase(),
            p(field("input")?, field("output")?, field("cache_write")?, field("cache_read")?),
        ));
    }
    Ok(out)
}

impl Price {
    /// USD for `n` tokens of one column. `cached_input` is the bucket's Codex cached input, which
    /// is part of its `input` and billed at the cache-read price instead. Reasoning output is part
    /// of output, so it costs nothing by itself; other columns are not priced.
    pub fn column_cost(&self, column: Column, n: u64, cached_input: u64) -> f64 {
        let per_token = |usd_per_mtok: f64| usd_per_mtok / 1_000_000.0;
        match column {
            Column::Input => n.saturating_sub(cached_input) as f64 * per_token(self.input),
            Column::Output => n as f64 * per_token(self.output),
            Column::CacheCreate => n as f64 * per_token(self.cache_write),
            Column::CacheRead | Column::CachedInput => n as f64 * per_token(self.cache_read),
            Column::ReasoningOutput | Column::Other => 0.0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matching_exact_then_longest_family() {
        let t = PriceTable::builtin();
        assert_eq!(t.find("claude-sonnet-4-5-20250929"), Some(p(3.0, 15.0, 3.75, 0.30)));
        assert_eq!(t.find("claude-opus-4-1-20250805").unwrap().input, 15.0);
        assert_eq!(t.find("claude-opus-4-5-20251101").unwrap().input, 5.0);
        assert_eq!(t.find("claude-opus-4-20250514").unwrap().input, 15.0);
        assert_eq!(t.find("Claude-Haiku-4-5-20251001").unwrap().input, 1.0);
        assert_eq!(t.find("claude-3-5-haiku-20241022").unwrap().input, 0.80);
        assert_eq!(t.find("gpt-5-codex").unwrap().output, 10.0);
        assert_eq!(t.find("gpt-5-mini-2025-08-07").unwrap().input, 0.25);
        assert_eq!(t.find("gpt-5-2025-08-07").unwrap().input, 1.25);
        assert_eq!(t.find("o4-mini-2025-04-16").unwrap().cache_read, 0.275);
        assert_eq!(t.find("gpt-4.1-2025-04-14").unwrap().input, 2.0);
        assert_eq!(t.find("claude-sonnet-4-5@20250929").unwrap().input, 3.0);
        assert_eq!(t.find("my-local-llama"), None);
        assert_eq!(t.find("claude-sonnet-45"), None, "a prefix must end at a separator");
        assert_eq!(t.find("gpt-50"), None);
        // Variants that their family would misprice have their own entries.
        for (model, price) in [
            ("o1-mini", p(1.10, 4.40, 0.0, 0.55)),
            ("o1-mini-2024-09-12", p(1.10, 4.40, 0.0, 0.55)),
            ("o1-pro", p(150.0, 600.0, 0.0, 150.0)),
            ("o1-pro-2025-03-19", p(150.0, 600.0, 0.0, 150.0)),
            ("o1-2024-12-17", p(15.0, 60.0, 0.0, 7.50)),
            ("o3-pro", p(20.0, 80.0, 0.0, 20.0)),
            ("o3-pro-2025-06-10", p(20.0, 80.0, 0.0, 20.0)),
            ("o3-deep-research", p(10.0, 40.0, 0.0, 2.50)),
            ("o3-deep-research-2025-06-26", p(10.0, 40.0, 0.0, 2.50)),
            ("o3-2025-04-16", p(2.0, 8.0, 0.0, 0.50)),
            ("o4-mini-deep-research", p(2.0, 8.0, 0.0, 0.50)),
            ("o4-mini-deep-research-2025-06-26", p(2.0, 8.0, 0.0, 0.50)),
            ("gpt-5.2", p(1.75, 14.0, 0.0, 0.175)),
            ("gpt-5.2-codex", p(1.75, 14.0, 0.0, 0.175)),
            ("gpt-5.2-2025-12-11", p(1.75, 14.0, 0.0, 0.175)),
            ("gpt-5.1-codex-max", p(1.25, 10.0, 0.0, 0.125)),
        ] {
            assert_eq!(t.find(model), Some(price), "{model}");
        }
        // A dot is part of a version, never the end of a family: an unlisted version is unpriced
        // rather than priced as its major version.
        for model in ["gpt-5.3-codex", "gpt-5.3", "gpt-5.10", "gpt-4.5-preview", "o3.5", "claude-sonnet-4.7"]
        {
            assert_eq!(t.find(model), None, "{model}");
        }
        assert_eq!(t.find(""), None);
    }

    #[test]
    fn column_costs() {
        let sonnet = p(3.0, 15.0, 3.75, 0.30);
        assert!((sonnet.column_cost(Column::Input, 1_000_000, 0) - 3.0).abs() < 1e-12);
        assert!((sonnet.column_cost(Column::CacheCreate, 2_000_000, 0) - 7.5).abs() < 1e-12);
        let gpt5 = p(1.25, 10.0, 0.0, 0.125);
        // Codex: 1M input of which 400k cached; reasoning is inside output.
        let input = gpt5.column_cost(Column::Input, 1_000_000, 400_000);
        let cached = gpt5.column_cost(Column::CachedInput, 400_000, 0);
        assert!((input - 0.75).abs() < 1e-12 && (cached - 0.05).abs() < 1e-12);
        assert_eq!(gpt5.column_cost(Column::ReasoningOutput, 1_000_000, 0), 0.0);
        assert_eq!(gpt5.column_cost(Column::Other, 1_000_000, 0), 0.0);
    }

    #[test]
    fn override_files_are_validated() {
        let dir = tempfile::tempdir().unwrap();
        let load = |text: &str| {
            let path = dir.path().join("prices.toml");
            std::fs::write(&path, text).unwrap();
            PriceTable::load(Some(&path))
        };
        let t = load("[models.\"claude-sonnet-4-5\"]\ninput = 1\noutput = 2.5\ncache_write = 0\ncache_read = 0.1\n[models.\"my-llama\"]\ninput = 0.5\noutput = 0.5\ncache_write = 0\ncache_read = 0\n").unwrap();
        assert_eq!(t.find("claude-sonnet-4-5-20250929"), Some(p(1.0, 2.5, 0.0, 0.1)));
        assert_eq!(t.find("my-llama-8b").unwrap().input, 0.5);
        assert_eq!(t.find("claude-opus-4-1").unwrap().input, 15.0, "other built-ins stay");
        let d = t.describe();
        assert!(d.contains("prices.toml: 2 entries (1 replacing a built-in entry, 1 new)"), "{d}");
        // Entries merge one by one: a family entry does not reprice a longer entry of its own.
        let t = load("[models.\"claude-opus-4\"]\ninput = 1\noutput = 2\ncache_write = 0\ncache_read = 0\n")
            .unwrap();
        assert_eq!(t.find("claude-opus-4-20250514").unwrap().input, 1.0);
        assert_eq!(t.find("claude-opus-4-1-20250805").unwrap().input, 15.0);
        assert!(PriceTable::builtin().describe().starts_with("built-in price table ("));
        for (text, needle) in [
            ("[models.x]\ninput = 1\noutput = 1\ncache_write = 0\n", "`cache_read` is missing"),
            (
                "[models.x]\ninput = 1\noutput = 1\ncache_write = 0\ncache_read = 0\ncache = 1\n",
                "unknown key `cache`",
            ),
            (
                "[models.x]\ninput = -1\noutput = 1\ncache_write = 0\ncache_read = 0\n",
                "models.\"x\".input must be from 0",
            ),
            ("[models.x]\ninput = \"1\"\noutput = 1\ncache_write = 0\ncache_read = 0\n", "must be a number"),
            ("[model.x]\ninput = 1\n", "unknown top-level key `model`"),
            ("[models\n", "not valid TOML"),
            ("models = 3\n", "`models` must be a table"),
            ("[models]\nx = 1\n", "models.\"x\" must be a table"),
        ] {
            let e = load(text).unwrap_err();
            assert!(e.contains(needle) && e.contains("prices.toml"), "{text:?}: {e}");
        }
        let missing = PriceTable::load(Some(&dir.path().join("nope.toml"))).unwrap_err();
        assert!(missing.contains("cannot read"), "{missing}");
    }
}
