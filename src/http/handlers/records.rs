//! `GET /api/v1/usage/records` (one page of single events, newest first, with an opaque cursor)
//! and `GET /api/v1/usage/export` (every matching event as CSV or NDJSON, streamed). Both take
//! the usage API's scopes (`team`, `user`, `all`; the caller by default) and the filters of
//! `query::records::Filter`.

use std::sync::Arc;

use bytes::Bytes;
use hyper::StatusCode;
use hyper::header::{CONTENT_DISPOSITION, CONTENT_TYPE, HeaderValue};
use serde_json::json;

use crate::app::App;
use crate::http::error::ApiError;
use crate::http::guard;
use crate::http::request::Request;
use crate::http::response::{HttpResponse, ok};
use crate::http::stream;
use crate::query::export::{self, Format};
use crate::query::records::{self, DEFAULT_LIMIT, Filter, MAX_LIMIT, decode_cursor, encode_cursor};

pub async fn records(app: &Arc<App>, req: Request) -> Result<HttpResponse, ApiError> {
    let caller = guard::user(app, &req).await?;
    let filter = Filter::parse(|k| req.query(k)).map_err(ApiError::bad_request)?;
    let limit = match req.query("limit") {
        None => DEFAULT_LIMIT,
        Some(v) => v.parse::<usize>().ok().filter(|n| (1..=MAX_LIMIT).contains(n)).ok_or_else(|| {
            ApiError::bad_request(format!("limit: must be from 1 to {MAX_LIMIT}, got {v:?}"))
        })?,
    };
    let users = super::usage::scope(app, &req, &caller).await?;
    let after = match req.query("cursor").filter(|c| !c.is_empty()) {
        None => None,
        Some(c) => Some(decode_cursor(&c, &filter, caller.uuid, &users).map_err(ApiError::bad_request)?),
    };
    let (f, u) = (filter.clone(), users.clone());
    let (data, next) =
        app.blocking(move |a| records::page(&a.store, &a.query.prices, &u, &f, after, limit)).await??;
    let next_cursor = next.map(|p| encode_cursor(p, &filter, caller.uuid, &users));
    Ok(ok(&json!({ "data": data, "next_cursor": next_cursor })))
}

pub async fn export(app: &Arc<App>, req: Request) -> Result<HttpResponse, ApiError> {
    let caller = guard::user(app, &req).await?;
    let filter = Filter::parse(|k| req.query(k)).map_err(ApiError::bad_request)?;
    let format =
        Format::parse(req.query("format").as_deref().unwrap_or("csv")).map_err(ApiError::bad_request)?;
    let users = super::usage::scope(app, &req, &caller).await?;
    let (tx, body) = stream::channel();
    let producer = Arc::clone(app);
    let who = caller.username.clone();
    tokio::task::spawn_blocking(move || {
        let started = std::time::Instant::now();
        let result = export::run(&producer.store, &producer.query.prices, &users, &filter, format, |chunk| {
            tx.blocking_send(Ok(Bytes::from(chunk))).is_ok()
        });
        match result {
            Ok(n) => {
                tracing::info!(user = %who, records = n, ms = started.elapsed().as_millis() as u64, "usage export finished")
            }
            Err(e) => {
                tracing::error!(user = %who, error = %e, "usage export failed; response truncated");
                let _ = tx.blocking_send(Err(std::io::Error::other("export failed")));
            }
        }
    });
    let date = crate::store::rfc3339(crate::store::now_secs()).unwrap_or_default();
    let name = format!("toki-usage-{}.{}", date.get(..10).unwrap_or("export"), format.extension());
    let mut resp = hyper::Response::new(http_body_util::Full::new(Bytes::new()));
    *resp.status_mut() = StatusCode::OK;
    let h = resp.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static(format.content_type()));
    h.insert(
        CONTENT_DISPOSITION,
        HeaderValue::from_str(&format!("attachment; filename=\"{name}\"")).map_err(ApiError::internal)?,
    );
    resp.extensions_mut().insert(body);
    Ok(resp)
}
