//! `GET /admin/audit?cursor&limit&actor&action`: the audit log, newest first, for admins.
//! `action` ending in `.` matches a family (`api_key.`). The cursor is opaque.

use std::sync::Arc;

use base64::Engine;
use serde_json::json;

use crate::app::App;
use crate::http::error::ApiError;
use crate::http::guard;
use crate::http::request::Request;
use crate::http::response::{HttpResponse, ok};
use crate::query::time::rfc3339_at;
use crate::store::audit::{AuditFilter, AuditKey};

const MAX_LIMIT: usize = 100;

fn encode(k: AuditKey) -> String {
    let mut raw = Vec::with_capacity(17);
    raw.push(1u8);
    raw.extend_from_slice(&k.0.to_be_bytes());
    raw.extend_from_slice(&k.1.to_be_bytes());
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw)
}

fn decode(s: &str) -> Result<AuditKey, ApiError> {
    let bad =
        || ApiError::bad_request("cursor: malformed; pass next_cursor from the previous page unchanged");
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(s).map_err(|_| bad())?;
    if raw.len() != 17 || raw[0] != 1 {
        return Err(bad());
    }
    Ok((
        i64::from_be_bytes(raw[1..9].try_into().map_err(|_| bad())?),
        u64::from_be_bytes(raw[9..17].try_into().map_err(|_| bad())?),
    ))
}

pub async fn list(app: &Arc<App>, req: Request) -> Result<HttpResponse, ApiError> {
    guard::admin(app, &req).await?;
    let limit = match req.query("limit") {
        None => 50,
        Some(v) => v.parse::<usize>().ok().filter(|n| (1..=MAX_LIMIT).contains(n)).ok_or_else(|| {
            ApiError::bad_request(format!("limit: must be from 1 to {MAX_LIMIT}, got {v:?}"))
        })?,
    };
    let before = req.query("cursor").filter(|c| !c.is_empty()).map(|c| decode(&c)).transpose()?;
    let text = |k: &str| req.query(k).map(|v| v.trim().to_owned()).filter(|v| !v.is_empty());
    let filter = AuditFilter { actor: text("actor"), action: text("action") };
    let (entries, next) = app.blocking(move |a| a.store.audit_page(&filter, before, limit)).await??;
    let data: Vec<_> = entries
        .iter()
        .map(|(k, e)| {
            json!({
                "time": rfc3339_at(k.0, 0),
                "ts_ms": k.0,
                "actor": e.actor,
                "actor_kind": e.actor_kind,
                "address": e.address,
                "action": e.action,
                "target": e.target,
            })
        })
        .collect();
    Ok(ok(&json!({ "data": data, "next_cursor": next.map(encode) })))
}
