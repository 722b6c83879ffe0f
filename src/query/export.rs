//! Export: every matching record (the records order, newest first) as CSV or NDJSON, written in
//! chunks to a sink, so memory stays constant however many records there are. Used by
//! `GET /api/v1/usage/export` (the sink is the response body) and `toki-sync admin export`
//! (standard output).

use std::io::Write;

use super::pricing::PriceTable;
use super::records::{Filter, Next, UsageRecord, scan};
use crate::store::{Store, StoreError};

/// Bytes collected before a chunk goes to the sink.
pub const CHUNK_BYTES: usize = 64 * 1024;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Csv,
    Ndjson,
}

impl Format {
    pub fn parse(s: &str) -> Result<Format, String> {
        match s {
            "csv" => Ok(Format::Csv),
            "ndjson" | "jsonl" => Ok(Format::Ndjson),
            other => Err(format!("format: must be csv or ndjson, got {other:?}")),
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Format::Csv => "text/csv; charset=utf-8",
            Format::Ndjson => "application/x-ndjson",
        }
    }

    pub fn extension(self) -> &'static str {
        match self {
            Format::Csv => "csv",
            Format::Ndjson => "ndjson",
        }
    }
}

/// The CSV columns. Token columns other than the six known ones go to `other_tokens` as
/// `name=count` pairs separated by `;`.
pub const CSV_HEADER: &str = "ts,provider,device_id,device_name,model,project,session,message_id,input,output,cache_create,cache_read,reasoning_output,cached_input,other_tokens,total,cost_usd\n";
const KNOWN: [&str; 6] =
    ["input", "output", "cache_create", "cache_read", "reasoning_output", "cached_input"];

/// A CSV text field: quoted when needed, and with a leading `'` when it would start a formula
/// in a spreadsheet (names come from clients).
fn csv_text(out: &mut Vec<u8>, s: &str) {
    let formula = s.starts_with(['=', '+', '-', '@', '\t', '\r']);
    if formula || s.contains([',', '"', '\n', '\r']) {
        out.push(b'"');
        if formula {
            out.push(b'\'');
        }
        for b in s.bytes() {
            if b == b'"' {
                out.push(b'"');
            }
            out.push(b);
        }
        out.push(b'"');
    } else {
        out.extend_from_slice(s.as_bytes());
    }
}

pub fn write_record(out: &mut Vec<u8>, format: Format, r: &UsageRecord) {
    match format {
        Format::Ndjson => {
            serde_json::to_writer(&mut *out, r).expect("serialising a record into memory cannot fail");
            out.push(b'\n');
        }
        Format::Csv => {
            for s in [&r.ts, &r.provider, &r.device_id, &r.device_name, &r.model] {
                csv_text(out, s);
                out.push(b',');
            }
            csv_text(out, r.project.as_deref().unwrap_or(""));
            out.push(b',');
            csv_text(out, &r.session);
            out.push(b',');
            out.extend_from_slice(r.message_id.as_bytes());
            for k in KNOWN {
                let _ = write!(out, ",{}", r.tokens.get(k).copied().unwrap_or(0));
            }
            out.push(b',');
            let other: Vec<String> = r
                .tokens
                .iter()
                .filter(|(k, _)| !KNOWN.contains(&k.as_str()))
                .map(|(k, n)| format!("{k}={n}"))
                .collect();
            csv_text(out, &other.join(";"));
            let _ = writeln!(out, ",{},{}", r.total, r.cost_usd);
        }
    }
}

/// Writes every matching record to `sink` in chunks of about [`CHUNK_BYTES`]; `sink` returns
/// false to stop (the client went away). Returns the number of records written.
pub fn run(
    store: &Store,
    prices: &PriceTable,
    users: &[u32],
    filter: &Filter,
    format: Format,
    mut sink: impl FnMut(Vec<u8>) -> bool,
) -> Result<u64, StoreError> {
    let mut buf = Vec::with_capacity(CHUNK_BYTES + 4096);
    if format == Format::Csv {
        buf.extend_from_slice(CSV_HEADER.as_bytes());
    }
    let mut count = 0u64;
    let mut open = true;
    scan(store, prices, users, filter, None, usize::MAX, |r| {
        write_record(&mut buf, format, &r);
        count += 1;
        if buf.len() >= CHUNK_BYTES {
            let chunk = std::mem::replace(&mut buf, Vec::with_capacity(CHUNK_BYTES + 4096));
            open = sink(chunk);
            if !open {
                return Next::Stop;
            }
        }
        Next::More
    })?;
    if open && !buf.is_empty() {
        sink(buf);
    }
    Ok(count)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_fields_are_quoted_and_defused() {
        let mut out = Vec::new();
        csv_text(&mut out, "plain");
        out.push(b'|');
        csv_text(&mut out, "a,\"b\"");
        out.push(b'|');
        csv_text(&mut out, "=cmd()");
        assert_eq!(String::from_utf8(out).unwrap(), "plain|\"a,\"\"b\"\"\"|\"'=cmd()\"");
        assert_eq!(Format::parse("csv"), Ok(Format::Csv));
        assert!(Format::parse("xml").unwrap_err().contains("csv or ndjson"));
    }
}
