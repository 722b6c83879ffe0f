//! The query endpoints: the toki CLI's remote query (`GET /api/v1/toki/query`, compat.md §6) and
//! the PromQL proxy to VictoriaMetrics (`GET` or form `POST` `/api/v1/query`,
//! `/api/v1/query_range`, `/api/v1/teams/:team_id/query_range`), isolated per user or team by
//! VictoriaMetrics itself.

use std::sync::Arc;

use hyper::header::CONTENT_TYPE;
use hyper::{Method, StatusCode};

use crate::app::App;
use crate::http::error::ApiError;
use crate::http::guard;
use crate::http::request::{Request, form_value};
use crate::http::response::{HttpResponse, json_bytes, ok};
use crate::query::time::parse_toki_time;
use crate::query::toki::{eval, parse};
use crate::query::vm::Vm;
use crate::query::vm::proxy::{self, Proxied, Scope};
use crate::store::users::Role;
use crate::store::{StoreError, now_ms};

const NOT_CONFIGURED: &str = "PromQL proxy not available: VictoriaMetrics not configured";

/// `GET /api/v1/toki/query?query=&start=&end=`: the caller's usage in Prometheus JSON.
pub async fn toki(app: &Arc<App>, req: Request) -> Result<HttpResponse, ApiError> {
    let caller = guard::user(app, &req).await?;
    let text = req
        .query("query")
        .filter(|q| !q.trim().is_empty())
        .ok_or_else(|| ApiError::bad_request("query: is required"))?;
    let time = |name: &str, end: bool| {
        req.query(name)
            .map(|v| parse_toki_time(&v, end).map_err(|e| ApiError::bad_request(format!("{name}: {e}"))))
            .transpose()
    };
    let start = time("start", false)?.unwrap_or(0);
    let end = time("end", true)?.unwrap_or_else(now_ms);
    if start >= end {
        return Err(ApiError::bad_request("start: must be before end"));
    }
    // Parsing (regex compilation) and evaluation (possibly a raw-event scan) are CPU work: in
    // the bounded queue on the blocking pool, where a flood is refused and the request timeout
    // still answers.
    let a = Arc::clone(app);
    let response = app
        .query_work
        .run(Some(req.client_ip), move || {
            let query = parse::parse(&text).map_err(|e| ApiError::bad_request(format!("query: {e}")))?;
            let value =
                eval::run(&a.store, &a.query.prices, caller.id, &query, start, end).map_err(toki_error)?;
            let response = ok(&value);
            drop(value);
            if eval::reads_raw_events(&query) {
                // A raw-event scan allocates and frees a lot at once; give it back now.
                crate::memory::release_free_memory();
            }
            Ok::<_, ApiError>(response)
        })
        .await??;
    Ok(response)
}

fn toki_error(e: eval::TokiError) -> ApiError {
    match e {
        eval::TokiError::TooManyRows => ApiError::bad_request(format!(
            "query: the answer would have more than {} rows; use a shorter window or a filter",
            eval::MAX_ROWS
        )),
        eval::TokiError::TooManyEvents(max) => ApiError::bad_request(format!(
            "query: it would read more than {max} raw events (queries about sessions read every event of the window); use a shorter window"
        )),
        eval::TokiError::Store(e) => e.into(),
    }
}

#[derive(Clone, Copy)]
pub enum PromKind {
    Instant,
    Range,
}

/// The PromQL parameters of a request: the URL query and, for `POST`, the
/// `application/x-www-form-urlencoded` body (Grafana's default), whose values win as they do in
/// Prometheus. Either way only the parameters `proxy` names are read.
fn prom_params(req: &Request) -> Result<impl Fn(&str) -> Option<String> + '_, ApiError> {
    let mut form = "";
    if req.method == Method::POST && !req.body.is_empty() {
        let content_type = req.headers.get(CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
        let essence = content_type.split(';').next().unwrap_or("").trim();
        if !essence.eq_ignore_ascii_case("application/x-www-form-urlencoded") {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "a POST body must be application/x-www-form-urlencoded (PromQL parameters)",
            ));
        }
        form = std::str::from_utf8(&req.body)
            .map_err(|_| ApiError::bad_request("the form body is not valid UTF-8"))?;
    }
    Ok(move |k: &str| form_value(form, k).or_else(|| req.query(k)))
}

/// `GET`/`POST /api/v1/query` and `/api/v1/query_range` over the caller's own series.
pub async fn promql(app: &Arc<App>, req: Request, kind: PromKind) -> Result<HttpResponse, ApiError> {
    let caller = guard::user(app, &req).await?;
    let vm = configured(app)?;
    let scope = Scope::User(caller.uuid);
    let params = prom_params(&req)?;
    let proxied = match kind {
        PromKind::Instant => proxy::instant(params, &scope),
        PromKind::Range => proxy::range(params, &scope),
    };
    forward(vm, proxied).await
}

/// `GET`/`POST /api/v1/teams/:team_id/query_range`: over the series of the team's members; for
/// members and admins.
pub async fn team_range(app: &Arc<App>, req: Request, raw_team: &str) -> Result<HttpResponse, ApiError> {
    let caller = guard::user(app, &req).await?;
    let vm = configured(app)?;
    let team = uuid::Uuid::try_parse(raw_team).map_err(|_| ApiError::not_found("team not found"))?;
    let members = app
        .blocking(move |a| -> Result<Option<Vec<(u32, uuid::Uuid)>>, StoreError> {
            let Some(team) = a.store.team_by_uuid(team)? else { return Ok(None) };
            let mut members = Vec::new();
            for id in a.store.team_member_ids(team.id)? {
                if let Some(user) = a.store.user(id)? {
                    members.push((id, user.uuid));
                }
            }
            Ok(Some(members))
        })
        .await??
        .ok_or_else(|| ApiError::not_found("team not found"))?;
    // Admins may read any team, as they may read all usage (`/api/v1/usage?team=` agrees).
    if caller.role != Role::Admin && !members.iter().any(|(id, _)| *id == caller.id) {
        return Err(ApiError::forbidden("you are not a member of this team"));
    }
    let scope = Scope::Users(members.into_iter().map(|(_, uuid)| uuid).collect());
    forward(vm, proxy::range(prom_params(&req)?, &scope)).await
}

/// The configured VictoriaMetrics; 503 without one (checked right after authentication).
fn configured(app: &App) -> Result<&Vm, ApiError> {
    app.query.vm.as_ref().ok_or_else(|| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, NOT_CONFIGURED))
}

/// Sends a checked request to VictoriaMetrics and passes its JSON answer on (errors in the
/// query are VictoriaMetrics' own 4xx JSON).
async fn forward(vm: &Vm, proxied: Result<Proxied, String>) -> Result<HttpResponse, ApiError> {
    let proxied = proxied.map_err(ApiError::bad_request)?;
    let client = vm.client.clone();
    let reply = tokio::task::spawn_blocking(move || client.query(proxied.path, &proxied.params))
        .await?
        .map_err(|e| {
            tracing::warn!(error = %e, "PromQL proxy: VictoriaMetrics unreachable");
            ApiError::new(StatusCode::BAD_GATEWAY, "VictoriaMetrics is unavailable")
        })?;
    let status = StatusCode::from_u16(reply.status).unwrap_or(StatusCode::BAD_GATEWAY);
    if status.is_server_error() || !status.is_client_error() && !status.is_success() {
        tracing::warn!(status = reply.status, body = %String::from_utf8_lossy(&reply.body[..reply.body.len().min(300)]), "PromQL proxy: VictoriaMetrics failed");
        return Err(ApiError::new(
            StatusCode::BAD_GATEWAY,
            format!("VictoriaMetrics failed to answer (status {})", reply.status),
        ));
    }
    Ok(json_bytes(status, reply.body))
}
