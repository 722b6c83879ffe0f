//! The PromQL proxy: checks a caller's query parameters and builds the request to
//! VictoriaMetrics with the caller's isolation attached.
//!
//! Isolation is enforced by VictoriaMetrics, never by editing the query text: every request
//! carries `extra_label=user=<uuid>` (one user) or `extra_filters[]={user=~"<uuid>|…"}` (a team),
//! which VictoriaMetrics adds to every series selector of the query, subqueries and function
//! arguments included. Only the parameters named here are forwarded, so a caller cannot add or
//! override filters of their own.
//!
//! Every request also carries `nocache=1`: VictoriaMetrics caches results for times older than a
//! few minutes, but toki-sync writes every bucket's samples into the past (at the bucket's hour),
//! so a cached result would miss later revisions and new series.

use uuid::Uuid;

use crate::query::time::{parse_duration, parse_instant};

/// Longest PromQL expression accepted.
pub const MAX_QUERY_BYTES: usize = 16 << 10;
/// Most points per series a range query may ask for (Prometheus' limit).
pub const MAX_POINTS: f64 = 11_000.0;

/// Whose data a query may see.
pub enum Scope {
    User(Uuid),
    /// A team's members (none at all for an empty team read by an admin).
    Users(Vec<Uuid>),
}

/// A checked request for VictoriaMetrics.
#[derive(Debug)]
pub struct Proxied {
    pub path: &'static str,
    pub params: Vec<(String, String)>,
}

/// `extra_label` for one user; one `extra_filters[]` regex over the team's user ids (UUIDs have
/// no regex metacharacters). Either way a series must carry one of the allowed `user` values.
fn isolation(scope: &Scope) -> (String, String) {
    match scope {
        Scope::User(u) => ("extra_label".into(), format!("user={u}")),
        // No user id is this, so an empty team sees nothing (an empty regex would match
        // series without a `user` label).
        Scope::Users(users) if users.is_empty() => {
            ("extra_filters[]".into(), "{user=\"(no members)\"}".into())
        }
        Scope::Users(users) => {
            let alternatives: Vec<String> = users.iter().map(Uuid::to_string).collect();
            ("extra_filters[]".into(), format!("{{user=~\"{}\"}}", alternatives.join("|")))
        }
    }
}

fn query_param(get: &impl Fn(&str) -> Option<String>) -> Result<String, String> {
    let q =
        get("query").filter(|q| !q.trim().is_empty()).ok_or("query: is required (a PromQL expression)")?;
    if q.len() > MAX_QUERY_BYTES {
        return Err(format!("query: is {} bytes; the limit is {MAX_QUERY_BYTES}", q.len()));
    }
    Ok(q)
}

/// Unix seconds with millisecond precision, as VictoriaMetrics reads them.
fn secs(ms: i64) -> String {
    if ms % 1000 == 0 { format!("{}", ms / 1000) } else { format!("{}.{:03}", ms / 1000, ms % 1000) }
}

fn instant_param(get: &impl Fn(&str) -> Option<String>, name: &str) -> Result<Option<i64>, String> {
    get(name).map(|v| parse_instant(&v).map_err(|e| format!("{name}: {e}"))).transpose()
}

/// A step: a duration (`60s`, `5m`, `1h`) or a number of seconds. Returns milliseconds.
fn step_param(s: &str) -> Result<i64, String> {
    let s = s.trim();
    if let Ok(v) = s.parse::<f64>() {
        if v.is_finite() && (0.001..=1e10).contains(&v) {
            return Ok((v * 1000.0).round() as i64);
        }
        return Err(format!("step: must be a positive duration such as 60s, 5m or 1h, got {s:?}"));
    }
    parse_duration(s).map_err(|e| format!("step: {e}"))
}

/// `/api/v1/query` (GET, or POST with a form body): `query`, optional `time`.
pub fn instant(get: impl Fn(&str) -> Option<String>, scope: &Scope) -> Result<Proxied, String> {
    let mut params = vec![("query".to_owned(), query_param(&get)?)];
    if let Some(t) = instant_param(&get, "time")? {
        params.push(("time".into(), secs(t)));
    }
    params.push(("nocache".into(), "1".into()));
    params.push(isolation(scope));
    Ok(Proxied { path: "/api/v1/query", params })
}

/// `/api/v1/query_range` (GET, or POST with a form body): `query`, `start`, `end`, `step`, all
/// required.
pub fn range(get: impl Fn(&str) -> Option<String>, scope: &Scope) -> Result<Proxied, String> {
    let query = query_param(&get)?;
    let start = instant_param(&get, "start")?.ok_or("start: is required (RFC 3339 or Unix seconds)")?;
    let end = instant_param(&get, "end")?.ok_or("end: is required (RFC 3339 or Unix seconds)")?;
    if end < start {
        return Err("end: must not be before start".into());
    }
    let step = step_param(&get("step").ok_or("step: is required (e.g. 60s, 5m, 1h)")?)?;
    let points = (end - start) as f64 / step as f64;
    if points > MAX_POINTS {
        return Err(format!(
            "step: gives {points:.0} points per series (at most {MAX_POINTS}); use a larger step or a shorter range"
        ));
    }
    let params = vec![
        ("query".to_owned(), query),
        ("start".into(), secs(start)),
        ("end".into(), secs(end)),
        ("step".into(), format!("{}ms", step)),
        ("nocache".into(), "1".into()),
        isolation(scope),
    ];
    Ok(Proxied { path: "/api/v1/query_range", params })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn get(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs.iter().map(|(k, v)| ((*k).into(), (*v).into())).collect();
        move |k| map.get(k).cloned()
    }

    #[test]
    fn isolation_is_always_attached_and_only_known_parameters_pass() {
        let u = Uuid::from_u128(7);
        let p = instant(
            get(&[("query", "up"), ("time", "2026-03-28T10:30:00.5Z"), ("extra_label", "user=x")]),
            &Scope::User(u),
        )
        .unwrap();
        assert_eq!(
            p.params,
            vec![
                ("query".into(), "up".into()),
                ("time".into(), "1774693800.500".into()),
                ("nocache".into(), "1".into()),
                ("extra_label".into(), format!("user={u}"))
            ]
        );
        let v = Uuid::from_u128(8);
        let p = range(
            get(&[("query", "up"), ("start", "0"), ("end", "3600"), ("step", "1m")]),
            &Scope::Users(vec![u, v]),
        )
        .unwrap();
        assert_eq!(
            p.params.last().unwrap(),
            &("extra_filters[]".to_owned(), format!("{{user=~\"{u}|{v}\"}}"))
        );
        assert_eq!(p.params[3], ("step".to_owned(), "60000ms".to_owned()));
        let p = range(
            get(&[("query", "up"), ("start", "0"), ("end", "3600"), ("step", "1m")]),
            &Scope::Users(vec![]),
        )
        .unwrap();
        assert_eq!(
            p.params.last().unwrap(),
            &("extra_filters[]".to_owned(), "{user=\"(no members)\"}".to_owned())
        );
    }

    #[test]
    fn bad_parameters_name_themselves() {
        let u = Scope::User(Uuid::nil());
        for (pairs, needle) in [
            (vec![], "query: is required"),
            (vec![("query", " ")], "query: is required"),
            (vec![("query", "up"), ("time", "soon")], "time:"),
        ] {
            assert!(instant(get(&pairs), &u).unwrap_err().starts_with(needle), "{pairs:?}");
        }
        for (pairs, needle) in [
            (vec![("query", "up"), ("end", "10"), ("step", "1s")], "start: is required"),
            (vec![("query", "up"), ("start", "10"), ("step", "1s")], "end: is required"),
            (vec![("query", "up"), ("start", "10"), ("end", "20")], "step: is required"),
            (
                vec![("query", "up"), ("start", "20"), ("end", "10"), ("step", "1s")],
                "end: must not be before start",
            ),
            (
                vec![("query", "up"), ("start", "0"), ("end", "86400"), ("step", "1s")],
                "step: gives 86400 points",
            ),
            (vec![("query", "up"), ("start", "0"), ("end", "10"), ("step", "0")], "step: must be a positive"),
            (vec![("query", "up"), ("start", "0"), ("end", "10"), ("step", "fast")], "step:"),
        ] {
            let e = range(get(&pairs), &u).unwrap_err();
            assert!(e.starts_with(needle), "{pairs:?}: {e}");
        }
        assert!(range(get(&[("query", "up"), ("start", "0"), ("end", "10"), ("step", "2.5")]), &u).is_ok());
    }
}
