//! The toki CLI's query dialect (compat.md §6.3), parsed leniently:
//!
//! ```text
//! query    := AGG [by] "(" inner ")" [by]  |  inner [by]
//! inner    := WRAP "(" selector ")"  |  selector
//! selector := METRIC ["{" filter ("," filter)* [","] "}"] ["[" DURATION "]"] ["offset" DURATION]
//! by       := "by" "(" label ("," label)* ")"
//! filter   := label ("=" | "!=" | "=~" | "!~") STRING
//! ```
//!
//! AGG is `sum`, `avg` or `count`; WRAP is `increase` or `sum_over_time`. `[d]` is a bucket size
//! in toki's dialect and does not change the window; `offset d` moves the window back by d.
//! Regexes are fully anchored and compiled with size limits. A query has at most [`MAX_FILTERS`]
//! filters, of which at most [`MAX_REGEX_FILTERS`] are regexes, each compiled within
//! [`REGEX_SIZE_LIMIT`], so one query's regexes never take more than 8 × 64 KiB compiled (plus as
//! much lazy-DFA cache). The HTTP handler parses in a bounded work queue, off the async workers.

use super::super::time::parse_duration;

/// Longest query accepted.
pub const MAX_QUERY_BYTES: usize = 4096;
/// Filters one query may have.
pub const MAX_FILTERS: usize = 32;
/// Regex filters (`=~`, `!~`) one query may have.
pub const MAX_REGEX_FILTERS: usize = 8;
/// Compiled-size limit of one regex (and of its lazy-DFA cache).
pub const REGEX_SIZE_LIMIT: usize = 64 << 10;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Metric {
    /// `usage`, `toki_tokens_total`: token sums per column.
    Tokens,
    /// `toki_usage_total`: the clients' own totals.
    UsageTotal,
    Cost,
    /// `events`, `toki_events_total`.
    Events,
    Sessions,
    Projects,
}

impl Metric {
    fn parse(name: &str) -> Option<Metric> {
        Some(match name {
            "usage" | "toki_tokens_total" => Metric::Tokens,
            "toki_usage_total" => Metric::UsageTotal,
            "cost" => Metric::Cost,
            "events" | "toki_events_total" => Metric::Events,
            "sessions" => Metric::Sessions,
            "projects" => Metric::Projects,
            _ => return None,
        })
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Agg {
    Sum,
    Avg,
    Count,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Label {
    Model,
    Session,
    Project,
    Provider,
    Device,
    Type,
}

impl Label {
    fn parse(name: &str) -> Option<Label> {
        Some(match name {
            "model" => Label::Model,
            "session" => Label::Session,
            "project" => Label::Project,
            "provider" => Label::Provider,
            "device" => Label::Device,
            "type" => Label::Type,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Label::Model => "model",
            Label::Session => "session",
            Label::Project => "project",
            Label::Provider => "provider",
            Label::Device => "device",
            Label::Type => "type",
        }
    }
}

#[derive(Clone, Debug)]
pub enum Matcher {
    Eq(String),
    Ne(String),
    Re(regex::Regex),
    NotRe(regex::Regex),
}

impl Matcher {
    fn is_regex(&self) -> bool {
        matches!(self, Matcher::Re(_) | Matcher::NotRe(_))
    }

    pub fn matches(&self, value: &str) -> bool {
        match self {
            Matcher::Eq(s) => value == s,
            Matcher::Ne(s) => value != s,
            Matcher::Re(r) => r.is_match(value),
            Matcher::NotRe(r) => !r.is_match(value),
        }
    }
}

#[derive(Clone, Debug)]
pub struct Filter {
    pub label: Label,
    pub matcher: Matcher,
}

#[derive(Clone, Debug)]
pub struct TokiQuery {
    pub metric: Metric,
    pub agg: Option<Agg>,
    /// The labels of `by (…)`, if the query has a `by` clause.
    pub by: Option<Vec<Label>>,
    pub filters: Vec<Filter>,
    /// `offset d` in milliseconds (0 without).
    pub offset_ms: i64,
}

impl TokiQuery {
    /// What rows are named by: the first label of `by` that is not `type` (default `model`);
    /// `None` for one total (an aggregation without `by`).
    pub fn group(&self) -> Option<Label> {
        match &self.by {
            Some(labels) => Some(labels.iter().copied().find(|l| *l != Label::Type).unwrap_or(Label::Model)),
            None if self.agg.is_some() => None,
            None => Some(Label::Model),
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
enum Tok {
    Ident(String),
    Str(String),
    /// A number or duration such as `1d12h` (inside `[…]` and after `offset`).
    Dur(String),
    Punct(&'static str),
}

fn describe(t: Option<&Tok>) -> String {
    match t {
        None => "the end of the query".into(),
        Some(Tok::Ident(s)) => format!("`{s}`"),
        Some(Tok::Str(s)) => format!("the string {s:?}"),
        Some(Tok::Dur(s)) => format!("`{s}`"),
        Some(Tok::Punct(p)) => format!("`{p}`"),
    }
}

fn tokenize(q: &str) -> Result<Vec<Tok>, String> {
    const PUNCT: [&str; 11] = ["=~", "!~", "!=", "=", "(", ")", "{", "}", "[", "]", ","];
    let mut out = Vec::new();
    let mut rest = q;
    loop {
        rest = rest.trim_start();
        let Some(c) = rest.chars().next() else { return Ok(out) };
        if let Some(p) = PUNCT.iter().find(|p| rest.starts_with(**p)) {
            out.push(Tok::Punct(p));
            rest = &rest[p.len()..];
        } else if c.is_ascii_alphabetic() || c == '_' {
            let n = rest
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
                .unwrap_or(rest.len());
            out.push(Tok::Ident(rest[..n].to_owned()));
            rest = &rest[n..];
        } else if c.is_ascii_digit() {
            let n = rest.find(|c: char| !c.is_ascii_alphanumeric()).unwrap_or(rest.len());
            out.push(Tok::Dur(rest[..n].to_owned()));
            rest = &rest[n..];
        } else if c == '"' || c == '\'' || c == '`' {
            let (s, used) = string_literal(rest, c)?;
            out.push(Tok::Str(s));
            rest = &rest[used..];
        } else {
            return Err(format!("unexpected character {c:?}"));
        }
    }
}

/// A quoted string starting at `s[0]`; returns the value and the bytes used. Backquoted strings
/// have no escapes, as in PromQL.
fn string_literal(s: &str, quote: char) -> Result<(String, usize), String> {
    let mut out = String::new();
    let mut chars = s.char_indices().skip(1);
    while let Some((i, c)) = chars.next() {
        match c {
            c if c == quote => return Ok((out, i + c.len_utf8())),
            '\\' if quote != '`' => {
                let (_, e) = chars.next().ok_or("unterminated string")?;
                out.push(match e {
                    'n' => '\n',
                    't' => '\t',
                    other => other,
                });
            }
            c => out.push(c),
        }
    }
    Err("unterminated string".into())
}

struct Parser {
    toks: Vec<Tok>,
    pos: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos)
    }

    fn next(&mut self) -> Option<Tok> {
        let t = self.toks.get(self.pos).cloned();
        self.pos += 1;
        t
    }

    fn eat(&mut self, p: &str) -> bool {
        if self.peek() == Some(&Tok::Punct(punct(p))) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn expect(&mut self, p: &str, what: &str) -> Result<(), String> {
        if self.eat(p) {
            Ok(())
        } else {
            Err(format!("expected `{p}` {what}, found {}", describe(self.peek())))
        }
    }

    fn peek_ident(&self) -> Option<&str> {
        match self.peek() {
            Some(Tok::Ident(s)) => Some(s),
            _ => None,
        }
    }

    fn followed_by_paren(&self) -> bool {
        self.toks.get(self.pos + 1) == Some(&Tok::Punct("("))
    }

    fn by_clause(&mut self) -> Result<Option<Vec<Label>>, String> {
        match self.peek_ident() {
            Some("by") => {}
            Some("without") => return Err("`without (…)` is not supported; use `by (…)`".into()),
            _ => return Ok(None),
        }
        self.pos += 1;
        self.expect("(", "after `by`")?;
        let mut labels = Vec::new();
        loop {
            match self.next() {
                Some(Tok::Ident(name)) => labels.push(
                    Label::parse(&name)
                        .ok_or_else(|| format!("unknown label `{name}` in by (…); labels are model, session, project, provider, device, type"))?,
                ),
                Some(Tok::Punct(")")) if labels.is_empty() => return Err("`by ()` needs at least one label".into()),
                other => return Err(format!("expected a label in by (…), found {}", describe(other.as_ref()))),
            }
            if self.eat(")") {
                return Ok(Some(labels));
            }
            self.expect(",", "or `)` in by (…)")?;
        }
    }

    fn selector(&mut self, q: &mut TokiQuery) -> Result<(), String> {
        let name = match self.next() {
            Some(Tok::Ident(name)) => name,
            other => return Err(format!("expected a metric, found {}", describe(other.as_ref()))),
        };
        q.metric = Metric::parse(&name).ok_or_else(|| {
            format!("unknown metric `{name}`; metrics are usage, toki_tokens_total, toki_usage_total, toki_events_total, cost, events, sessions, projects")
        })?;
        if self.eat("{") {
            while !self.eat("}") {
                if q.filters.len() == MAX_FILTERS {
                    return Err(format!("too many filters; a query may have at most {MAX_FILTERS}"));
                }
                let regexes = q.filters.iter().filter(|f| f.matcher.is_regex()).count();
                let filter = self.filter(regexes < MAX_REGEX_FILTERS)?;
                q.filters.push(filter);
                if !self.eat(",") {
                    self.expect("}", "to close the filters")?;
                    break;
                }
            }
        }
        if self.eat("[") {
            // toki's bucket size: checked, but it does not change the window.
            match self.next() {
                Some(Tok::Dur(d)) => parse_duration(&d).map_err(|e| format!("[{d}]: {e}"))?,
                other => {
                    return Err(format!("expected a duration in […], found {}", describe(other.as_ref())));
                }
            };
            self.expect("]", "after the duration")?;
        }
        if self.peek_ident() == Some("offset") {
            self.pos += 1;
            q.offset_ms = match self.next() {
                Some(Tok::Dur(d)) => parse_duration(&d).map_err(|e| format!("offset {d}: {e}"))?,
                other => {
                    return Err(format!(
                        "expected a duration after `offset`, found {}",
                        describe(other.as_ref())
                    ));
                }
            };
        }
        Ok(())
    }

    /// `regex_allowed` is false once the query has its share of regex filters.
    fn filter(&mut self, regex_allowed: bool) -> Result<Filter, String> {
        let name = match self.next() {
            Some(Tok::Ident(name)) => name,
            other => return Err(format!("expected a label in {{…}}, found {}", describe(other.as_ref()))),
        };
        let label = Label::parse(&name).ok_or_else(|| {
            format!(
                "unknown filter label `{name}`; labels are model, session, project, provider, device, type"
            )
        })?;
        let op = match self.next() {
            Some(Tok::Punct(p @ ("=" | "!=" | "=~" | "!~"))) => p,
            other => {
                return Err(format!(
                    "expected =, !=, =~ or !~ after `{name}`, found {}",
                    describe(other.as_ref())
                ));
            }
        };
        let value = match self.next() {
            Some(Tok::Str(s)) => s,
            other => {
                return Err(format!(
                    "expected a quoted value after `{name}{op}`, found {}",
                    describe(other.as_ref())
                ));
            }
        };
        if matches!(op, "=~" | "!~") && !regex_allowed {
            return Err(format!(
                "too many regex filters; a query may have at most {MAX_REGEX_FILTERS} (=~ or !~)"
            ));
        }
        let regex = |v: &str| {
            regex::RegexBuilder::new(&format!("^(?:{v})$"))
                .size_limit(REGEX_SIZE_LIMIT)
                .dfa_size_limit(REGEX_SIZE_LIMIT)
                .build()
                .map_err(|e| format!("invalid regex {v:?} for `{name}`: {e}"))
        };
        let matcher = match op {
            "=" => Matcher::Eq(value),
            "!=" => Matcher::Ne(value),
            "=~" => Matcher::Re(regex(&value)?),
            _ => Matcher::NotRe(regex(&value)?),
        };
        Ok(Filter { label, matcher })
    }
}

/// The tokenizer hands out `&'static str` punctuation; map a pattern to it for comparisons.
fn punct(p: &str) -> &'static str {
    ["=~", "!~", "!=", "=", "(", ")", "{", "}", "[", "]", ","].into_iter().find(|x| *x == p).unwrap_or("")
}

/// Parses a query of the toki dialect; errors say what was expected where.
pub fn parse(query: &str) -> Result<TokiQuery, String> {
    if query.len() > MAX_QUERY_BYTES {
        return Err(format!("query is {} bytes; the limit is {MAX_QUERY_BYTES}", query.len()));
    }
    let toks = tokenize(query)?;
    if toks.is_empty() {
        return Err("query is empty".into());
    }
    let mut p = Parser { toks, pos: 0 };
    let mut q = TokiQuery { metric: Metric::Tokens, agg: None, by: None, filters: Vec::new(), offset_ms: 0 };
    let agg = match p.peek_ident() {
        Some("sum") => Some(Agg::Sum),
        Some("avg") => Some(Agg::Avg),
        Some("count") => Some(Agg::Count),
        _ => None,
    };
    let next_is = |word: &str| p.toks.get(p.pos + 1) == Some(&Tok::Ident(word.into()));
    if agg.is_some() && (p.followed_by_paren() || next_is("by") || next_is("without")) {
        p.pos += 1;
        q.agg = agg;
        q.by = p.by_clause()?;
        p.expect("(", "after the aggregation")?;
        inner(&mut p, &mut q)?;
        p.expect(")", "to close the aggregation")?;
    } else {
        inner(&mut p, &mut q)?;
    }
    if let Some(by) = p.by_clause()? {
        if q.by.is_some() {
            return Err("`by (…)` given twice".into());
        }
        q.by = Some(by);
    }
    if p.pos < p.toks.len() {
        return Err(format!("unexpected {} after the query", describe(p.peek())));
    }
    Ok(q)
}

fn inner(p: &mut Parser, q: &mut TokiQuery) -> Result<(), String> {
    match p.peek_ident() {
        Some("increase" | "sum_over_time") if p.followed_by_paren() => {
            p.pos += 2;
            p.selector(q)?;
            p.expect(")", "to close the function")
        }
        Some(f) if p.followed_by_paren() && Metric::parse(f).is_none() => {
            Err(format!("function `{f}` is not supported; use increase(…) or sum_over_time(…)"))
        }
        _ => p.selector(q),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn promql_and_toki_forms() {
        let q = parse("sum by (model) (increase(toki_tokens_total[1d]))").unwrap();
        assert_eq!((q.metric, q.agg, q.group()), (Metric::Tokens, Some(Agg::Sum), Some(Label::Model)));
        let q = parse("sum(increase(usage{model=~\"claude.*\", device=\"macbook-pro\"}[1d12h] offset 1w)) by (project, model)").unwrap();
        assert_eq!(q.group(), Some(Label::Project));
        assert_eq!(q.offset_ms, 7 * 86_400_000);
        assert_eq!(q.filters.len(), 2);
        assert!(
            q.filters[0].matcher.matches("claude-sonnet-4-5") && !q.filters[0].matcher.matches("xclaude")
        );
        let q = parse("usage by (session)").unwrap();
        assert_eq!((q.agg, q.group()), (None, Some(Label::Session)));
        assert_eq!(parse("sum(usage)").unwrap().group(), None, "no by: one total");
        assert_eq!(parse("usage").unwrap().group(), Some(Label::Model));
        assert_eq!(parse("sum by (type) (usage)").unwrap().group(), Some(Label::Model));
        assert_eq!(parse("sum by (type, project) (usage)").unwrap().group(), Some(Label::Project));
        assert_eq!(parse("cost").unwrap().metric, Metric::Cost);
        assert_eq!(parse("count(sum_over_time(toki_events_total[1h]))").unwrap().metric, Metric::Events);
        assert_eq!(parse("avg by (model) (usage{})").unwrap().agg, Some(Agg::Avg));
        let q = parse("usage{type!='output', model!~`gpt-.*`,}").unwrap();
        assert!(q.filters[0].matcher.matches("input") && !q.filters[0].matcher.matches("output"));
        assert!(!q.filters[1].matcher.matches("gpt-5"));
        assert_eq!(parse("sessions").unwrap().metric, Metric::Sessions);
        assert_eq!(parse("sum by(model)(toki_usage_total)").unwrap().metric, Metric::UsageTotal);
    }

    #[test]
    fn errors_say_what_is_wrong() {
        for (q, needle) in [
            ("", "empty"),
            ("tokens", "unknown metric `tokens`"),
            ("sum by (colour) (usage)", "unknown label `colour`"),
            ("usage{model=\"x\"", "expected `}`"),
            ("usage{model=x}", "quoted value"),
            ("usage{model=\"x}", "unterminated string"),
            ("usage{model=~\"(\"}", "invalid regex"),
            ("usage[1x]", "[1x]"),
            ("usage offset", "duration after `offset`"),
            ("rate(usage[1d])", "function `rate` is not supported"),
            ("sum by (model) (usage) by (model)", "given twice"),
            ("usage usage", "unexpected `usage`"),
            ("sum without (model) (usage)", "without"),
            ("usage{model=\"a\"} $", "unexpected character"),
            ("sum(usage", "to close the aggregation"),
            ("usage{colour=\"x\"}", "unknown filter label"),
        ] {
            let e = parse(q).unwrap_err();
            assert!(e.contains(needle), "{q:?}: {e}");
        }
        assert!(parse(&"u".repeat(MAX_QUERY_BYTES + 1)).unwrap_err().contains("limit"));
        // A regex that would compile to something huge is refused, not built.
        assert!(parse("usage{model=~\"(a{1000}){1000}\"}").unwrap_err().contains("invalid regex"));
    }

    /// The probe of issue 16: 240 regex filters in 4,086 bytes took 1.9 s and 270 MB to parse.
    #[test]
    fn filter_and_regex_counts_are_capped() {
        let probe = format!("usage{{{}}}", vec![r#"model=~"\\w{20}""#; 240].join(","));
        assert!(probe.len() <= MAX_QUERY_BYTES, "{}", probe.len());
        // Its very first `\w{20}` (a Unicode class, repeated) is over the per-regex limit now.
        let e = parse(&probe).unwrap_err();
        assert!(e.contains("size limit"), "{e}");
        // The same shape with a small regex stops at the regex-filter cap.
        let e = parse(&format!("usage{{{}}}", vec![r#"model=~"a.*""#; 240].join(","))).unwrap_err();
        assert!(e.contains("too many regex filters"), "{e}");
        let many = format!("usage{{{}}}", vec![r#"model="a""#; MAX_FILTERS + 1].join(","));
        assert!(parse(&many).unwrap_err().contains("at most 32"));
        let ok = format!("usage{{{}}}", vec![r#"model="a""#; MAX_FILTERS].join(","));
        assert_eq!(parse(&ok).unwrap().filters.len(), MAX_FILTERS);
        let re = format!("usage{{{}}}", [r#"model=~"a.*""#; MAX_REGEX_FILTERS].join(","));
        assert_eq!(parse(&re).unwrap().filters.len(), MAX_REGEX_FILTERS);
        let re = format!("usage{{{}, model!~\"b\"}}", [r#"model=~"a.*""#; MAX_REGEX_FILTERS].join(","));
        assert!(parse(&re).unwrap_err().contains("too many regex filters"));
        // The per-regex limit is far smaller than before: a Unicode class repeated many times
        // no longer compiles.
        let e = parse(r#"usage{model=~"\\w{200}"}"#).unwrap_err();
        assert!(e.contains("invalid regex"), "{e}");
        assert!(parse(r#"usage{model=~"claude-(sonnet|opus)-4.*"}"#).is_ok());
    }
}
