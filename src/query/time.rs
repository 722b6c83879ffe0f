//! Times, durations and UTC offsets as the query endpoints accept them. Every parser returns a
//! message that says what was expected; handlers prefix it with the parameter's name.
//!
//! Instants are Unix milliseconds (i64) throughout.

use time::format_description::well_known::Rfc3339;
use time::macros::format_description;
use time::{Date, OffsetDateTime, PrimitiveDateTime, UtcOffset};

pub const SECOND_MS: i64 = 1000;
pub const HOUR_MS: i64 = 3_600_000;
pub const DAY_MS: i64 = 86_400_000;

/// Latest instant accepted anywhere (the end of year 9999), so arithmetic on instants and
/// rollup hours (u32) never overflows.
pub const MAX_MS: i64 = 253_402_300_800_000;

/// Unix seconds below this are read as seconds, from it on as milliseconds (10^11 s is the year
/// 5138; 10^11 ms is 1973).
const MS_FROM: f64 = 1e11;

const TIME_FORMS: &str = "RFC 3339 (2026-03-28T10:30:00Z), Unix seconds or Unix milliseconds";

/// RFC 3339, Unix seconds (integer or fractional) or Unix milliseconds (the native usage API and
/// the PromQL proxy).
pub fn parse_instant(s: &str) -> Result<i64, String> {
    let s = s.trim();
    let ms = if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        let v: f64 = s.parse().map_err(|_| format!("expected {TIME_FORMS}, got {s:?}"))?;
        if !v.is_finite() || v > MAX_MS as f64 {
            return Err(format!("expected {TIME_FORMS}, got {s:?}"));
        }
        if v >= MS_FROM { v } else { v * 1000.0 }.round() as i64
    } else {
        parse_rfc3339(s).ok_or_else(|| format!("expected {TIME_FORMS}, got {s:?}"))?
    };
    check_range(ms)
}

fn check_range(ms: i64) -> Result<i64, String> {
    if (0..=MAX_MS).contains(&ms) { Ok(ms) } else { Err("must lie between 1970-01-01 and 9999-12-31".into()) }
}

/// RFC 3339, also when a query string turned the `+` of the offset into a space.
fn parse_rfc3339(s: &str) -> Option<i64> {
    let at = |t: OffsetDateTime| i64::try_from(t.unix_timestamp_nanos() / 1_000_000).ok();
    if let Ok(t) = OffsetDateTime::parse(s, &Rfc3339) {
        return at(t);
    }
    let (head, zone) = s.rsplit_once(' ')?;
    if zone.len() == 5 && zone.as_bytes()[2] == b':' && head.contains('T') {
        return OffsetDateTime::parse(&format!("{head}+{zone}"), &Rfc3339).ok().and_then(at);
    }
    None
}

const TOKI_FORMS: &str = "YYYYMMDD, YYYYMMDDhhmmss, Unix seconds, Unix milliseconds (13 digits), RFC 3339, \
     YYYY-MM-DDTHH:MM:SS, YYYY-MM-DD HH:MM:SS or YYYY-MM-DD";

/// The time forms of the toki CLI (compat.md §6.3). Values without a zone are UTC. A date
/// without a time means its midnight, or as an `end` (exclusive) the midnight after it, so the
/// whole day is included.
pub fn parse_toki_time(s: &str, end: bool) -> Result<i64, String> {
    let s = s.trim();
    let bad = || format!("expected {TOKI_FORMS}, got {s:?}");
    let day = |d: Date| {
        let midnight = d.midnight().assume_utc().unix_timestamp() * 1000;
        if end { midnight + DAY_MS } else { midnight }
    };
    let ms = if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
        match s.len() {
            8 => day(Date::parse(s, format_description!("[year][month][day]")).map_err(|_| bad())?),
            14 => {
                PrimitiveDateTime::parse(s, format_description!("[year][month][day][hour][minute][second]"))
                    .map_err(|_| bad())?
                    .assume_utc()
                    .unix_timestamp()
                    .saturating_mul(1000)
            }
            13 => s.parse().map_err(|_| bad())?,
            1..=10 => s.parse::<i64>().map_err(|_| bad())? * 1000,
            _ => return Err(bad()),
        }
    } else if let Some(ms) = parse_rfc3339(s) {
        ms
    } else if let Ok(d) = Date::parse(s, format_description!("[year]-[month]-[day]")) {
        day(d)
    } else {
        let t =
            PrimitiveDateTime::parse(s, format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]"))
                .or_else(|_| {
                    PrimitiveDateTime::parse(
                        s,
                        format_description!("[year]-[month]-[day] [hour]:[minute]:[second]"),
                    )
                })
                .map_err(|_| bad())?;
        t.assume_utc().unix_timestamp().saturating_mul(1000)
    };
    check_range(ms)
}

/// A duration: integers with units in descending order, e.g. `1d12h`, `90m`, `2w`, `500ms`
/// (units `y` = 365 d, `w`, `d`, `h`, `m`, `s`, `ms`). Returns milliseconds (at least 1).
pub fn parse_duration(s: &str) -> Result<i64, String> {
    const UNITS: &[(&str, i64)] = &[
        ("y", 365 * DAY_MS),
        ("w", 7 * DAY_MS),
        ("d", DAY_MS),
        ("h", HOUR_MS),
        ("ms", 1),
        ("m", 60_000),
        ("s", SECOND_MS),
    ];
    let bad = || format!("expected a duration such as 1h, 7d, 1d12h or 30m, got {s:?}");
    let mut rest = s.trim();
    if rest.is_empty() {
        return Err(bad());
    }
    let mut total: i64 = 0;
    let mut last_unit = i64::MAX;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 || digits > 12 {
            return Err(bad());
        }
        let n: i64 = rest[..digits].parse().map_err(|_| bad())?;
        rest = &rest[digits..];
        let (unit, size) = UNITS.iter().find(|(u, _)| rest.starts_with(u)).ok_or_else(bad)?;
        if *size >= last_unit {
            return Err(bad());
        }
        last_unit = *size;
        rest = &rest[unit.len()..];
        total = n
            .checked_mul(*size)
            .and_then(|v| total.checked_add(v))
            .filter(|t| *t <= MAX_MS)
            .ok_or_else(bad)?;
    }
    if total == 0 {
        return Err(format!("{s:?} is zero; a duration must be positive"));
    }
    Ok(total)
}

/// A UTC offset: `Z`, `UTC`, `+HH:MM`, `-HH:MM`, `+HHMM` or `+HH`, at most 14 hours. A leading
/// space is read as `+` (an unencoded `+` in a query string arrives as a space). Returns seconds.
pub fn parse_utc_offset(s: &str) -> Result<i32, String> {
    let bad = || format!("expected Z or an offset such as +02:00, -05:00 or +0530, got {s:?}");
    if s == "Z" || s == "z" || s.eq_ignore_ascii_case("UTC") {
        return Ok(0);
    }
    let (sign, rest) = match s.as_bytes().first() {
        Some(b'+' | b' ') => (1, &s[1..]),
        Some(b'-') => (-1, &s[1..]),
        _ => return Err(bad()),
    };
    let digits: String = rest.chars().filter(|c| *c != ':').collect();
    if !digits.bytes().all(|b| b.is_ascii_digit())
        || !(digits.len() == 2 || digits.len() == 4)
        || rest.matches(':').count() > 1
    {
        return Err(bad());
    }
    if rest.contains(':') && rest.find(':') != Some(2) {
        return Err(bad());
    }
    let hours: i32 = digits[..2].parse().map_err(|_| bad())?;
    let minutes: i32 = if digits.len() == 4 { digits[2..].parse().map_err(|_| bad())? } else { 0 };
    if minutes >= 60 {
        return Err(format!("the minutes of an offset must be below 60, got {s:?}"));
    }
    if hours * 60 + minutes > 14 * 60 {
        return Err(format!("an offset is at most 14 hours (-14:00 to +14:00), got {s:?}"));
    }
    Ok(sign * (hours * 3600 + minutes * 60))
}

/// `+02:00` style.
pub fn format_offset(secs: i32) -> String {
    let sign = if secs < 0 { '-' } else { '+' };
    let m = secs.abs() / 60;
    format!("{sign}{:02}:{:02}", m / 60, m % 60)
}

/// An instant in RFC 3339 at a UTC offset (`Z` for 0).
pub fn rfc3339_at(ms: i64, offset_secs: i32) -> String {
    let offset = UtcOffset::from_whole_seconds(offset_secs).unwrap_or(UtcOffset::UTC);
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .map(|t| t.to_offset(offset))
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: i64 = 1_774_693_800_000; // 2026-03-28T10:30:00Z

    #[test]
    fn instants() {
        assert_eq!(parse_instant("2026-03-28T10:30:00Z"), Ok(T));
        assert_eq!(parse_instant("2026-03-28T12:30:00+02:00"), Ok(T));
        assert_eq!(parse_instant("2026-03-28T12:30:00 02:00"), Ok(T), "a + that became a space");
        assert_eq!(parse_instant("1774693800"), Ok(T));
        assert_eq!(parse_instant("1774693800.5"), Ok(T + 500));
        assert_eq!(parse_instant("1774693800000"), Ok(T));
        assert_eq!(parse_instant("0"), Ok(0));
        for bad in
            ["", "yesterday", "2026-13-01T00:00:00Z", "-5", "1e400", "nan", "99999999999999999999", "1-2"]
        {
            assert!(parse_instant(bad).is_err(), "{bad}");
        }
        assert!(parse_instant("abc").unwrap_err().contains("RFC 3339"));
    }

    #[test]
    fn toki_times() {
        let day = 1_774_656_000_000; // 2026-03-28T00:00:00Z
        assert_eq!(parse_toki_time("20260328", false), Ok(day));
        assert_eq!(parse_toki_time("20260328", true), Ok(day + DAY_MS));
        assert_eq!(parse_toki_time("20260328103000", false), Ok(T));
        assert_eq!(parse_toki_time("1774693800", false), Ok(T));
        assert_eq!(parse_toki_time("1774693800000", true), Ok(T));
        assert_eq!(parse_toki_time("2026-03-28T10:30:00Z", false), Ok(T));
        assert_eq!(parse_toki_time("2026-03-28T10:30:00", false), Ok(T));
        assert_eq!(parse_toki_time("2026-03-28 10:30:00", false), Ok(T));
        assert_eq!(parse_toki_time("2026-03-28", false), Ok(day));
        assert_eq!(parse_toki_time("2026-03-28", true), Ok(day + DAY_MS));
        assert_eq!(parse_toki_time("5", false), Ok(5000));
        assert_eq!(parse_toki_time("2026032", false), Ok(2_026_032_000), "7 digits are Unix seconds");
        for bad in ["", "20261328", "177469380000", "123456789012345", "2026/03/28", "now"] {
            assert!(parse_toki_time(bad, false).is_err(), "{bad}");
        }
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("1h"), Ok(HOUR_MS));
        assert_eq!(parse_duration("1d12h"), Ok(DAY_MS + 12 * HOUR_MS));
        assert_eq!(parse_duration("2w"), Ok(14 * DAY_MS));
        assert_eq!(parse_duration("90m"), Ok(90 * 60_000));
        assert_eq!(parse_duration("1m30s"), Ok(90_000));
        assert_eq!(parse_duration("250ms"), Ok(250));
        for bad in ["", "h", "1", "1x", "1h1d", "1h1h", "0s", "-1h", "1.5h", "99999999999999w"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn offsets() {
        assert_eq!(parse_utc_offset("Z"), Ok(0));
        assert_eq!(parse_utc_offset("+02:00"), Ok(7200));
        assert_eq!(parse_utc_offset(" 02:00"), Ok(7200));
        assert_eq!(parse_utc_offset("-05:00"), Ok(-18000));
        assert_eq!(parse_utc_offset("+0530"), Ok(19800));
        assert_eq!(parse_utc_offset("+14"), Ok(14 * 3600));
        for bad in ["", "2", "+15:00", "+02:60", "+2:00", "02:00", "+02:0", "+0:200"] {
            assert!(parse_utc_offset(bad).is_err(), "{bad}");
        }
        assert!(parse_utc_offset("+15:00").unwrap_err().contains("at most 14 hours"));
        assert!(parse_utc_offset("-14:01").unwrap_err().contains("at most 14 hours"));
        assert!(parse_utc_offset("+02:60").unwrap_err().contains("below 60"));
        assert!(parse_utc_offset("+2:00").unwrap_err().contains("such as +02:00"));
        assert_eq!(format_offset(-19800), "-05:30");
        assert_eq!(rfc3339_at(T, 7200), "2026-03-28T12:30:00+02:00");
        assert_eq!(rfc3339_at(T, 0), "2026-03-28T10:30:00Z");
    }
}
