//! The device-code flow (RFC 8628) at the reference paths and at the toki client's paths
//! (compat.md rows 1-12): request a code, poll for tokens, look up and approve or deny a code
//! from the browser.

use std::sync::Arc;

use hyper::StatusCode;
use serde::Deserialize;
use serde_json::json;

use crate::app::App;
use crate::auth::device_flow::{
    LIMITS, MIN_POLL_GAP_MS, POLL_INTERVAL_SECS, SLOW_DOWN_INTERVAL_SECS, new_device_code, new_user_code,
    normalize_user_code,
};
use crate::auth::lockout::{Attempt, LockKey};
use crate::auth::tokens;
use crate::http::audit;
use crate::http::error::{ApiError, ErrorNote};
use crate::http::guard;
use crate::http::request::Request;
use crate::http::response::{HttpResponse, json, ok};
use crate::store::device_codes::{
    CodeStatus, CreateError, DecideError, DeviceCode, PollState, ip_bytes, redeem_in,
};
use crate::store::devices::{Device, MAX_KEY_BYTES, clean_name, register_in};
use crate::store::users::{User, UserStatus, user_in};
use crate::store::{now_ms, now_secs};

/// Which status a pending poll gets: the reference says 428, the toki client only keeps polling
/// on 400 (compat.md row 8). Everything else is the same on both paths.
#[derive(Clone, Copy)]
pub enum PendingStatus {
    Reference,
    Client,
}

impl PendingStatus {
    fn status(self) -> StatusCode {
        match self {
            PendingStatus::Reference => StatusCode::PRECONDITION_REQUIRED,
            PendingStatus::Client => StatusCode::BAD_REQUEST,
        }
    }
}

const UNKNOWN_CODE: &str = "invalid or expired code";

#[derive(Deserialize, Default)]
struct CodeBody {
    #[serde(default)]
    device_name: Option<String>,
}

/// A name as a client reported it, cleaned; empty means none.
fn reported_name(name: Option<&str>) -> Option<String> {
    name.map(clean_name).filter(|n| !n.is_empty())
}

/// `POST /device/code`, `POST /auth/device/code`. The toki client sends no body at all.
pub async fn code(app: &Arc<App>, req: Request) -> Result<HttpResponse, ApiError> {
    let body: CodeBody = req.json_or_default()?;
    let device_code = new_device_code();
    let now = now_secs();
    let ttl = app.config.auth.device_code_ttl_secs;
    let rec = DeviceCode {
        user_code: new_user_code(),
        device_name: reported_name(body.device_name.as_deref()),
        // The per-address limit counts by address group (IPv6 by /64).
        client_ip: ip_bytes(crate::net::address_group(req.client_ip)),
        created_at: now,
        expires_at: now + ttl as i64,
        last_poll_ms: None,
        status: CodeStatus::Pending,
    };
    let hash = tokens::hash(&device_code);
    let rec = match app
        .blocking(move |a| a.store.create_device_code(hash, rec, &LIMITS, new_user_code))
        .await?
    {
        Ok(rec) => rec,
        Err(CreateError::TooManyFromAddress) => {
            return Err(ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "too many device logins in progress from this address; finish one or wait until it expires",
            ));
        }
        Err(CreateError::TooMany) => {
            return Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "too many device logins in progress; try again later",
            ));
        }
        Err(CreateError::Store(e)) => return Err(e.into()),
    };
    // Both spellings, same value, never with a query: the client appends `?device=CODE` itself.
    let uri = format!("{}/device", app.config.server.external_url.as_deref().unwrap_or(""));
    Ok(ok(&json!({
        "device_code": device_code,
        "user_code": rec.user_code,
        "verification_uri": uri,
        "verification_url": uri,
        "verification_uri_complete": format!("{uri}?device={}", rec.user_code),
        "expires_in": ttl,
        "interval": POLL_INTERVAL_SECS,
    })))
}

#[derive(Deserialize)]
struct TokenBody {
    device_code: String,
    /// The toki client's machine key: on success the device is registered under the approver.
    #[serde(default)]
    device_key: Option<String>,
    #[serde(default)]
    device_name: Option<String>,
}

/// An RFC 8628 error answer. `slow_down` also carries the interval to wait.
fn flow_error(status: StatusCode, error: &'static str, interval: Option<u64>) -> HttpResponse {
    let mut body = json!({ "error": error });
    if let Some(secs) = interval {
        body["interval"] = json!(secs);
    }
    let mut resp = json(status, &body);
    resp.extensions_mut().insert(ErrorNote(error.to_owned()));
    resp
}

/// `POST /device/token`, `POST /auth/device/token`.
pub async fn token(app: &Arc<App>, req: Request, pending: PendingStatus) -> Result<HttpResponse, ApiError> {
    let body: TokenBody = req.json()?;
    if body.device_key.as_ref().is_some_and(|k| k.is_empty() || k.len() > MAX_KEY_BYTES) {
        return Err(ApiError::unprocessable(format!("device_key must be 1-{MAX_KEY_BYTES} bytes")));
    }
    let name = reported_name(body.device_name.as_deref());
    let hash = tokens::hash(&body.device_code);
    let now_ms = now_ms();
    let poll_name = name.clone();
    let state = app
        .blocking(move |a| a.store.poll_device_code(hash, now_ms, MIN_POLL_GAP_MS, poll_name.as_deref()))
        .await??;
    match state {
        PollState::Unknown => return Ok(flow_error(StatusCode::BAD_REQUEST, "expired_token", None)),
        PollState::SlowDown => {
            return Ok(flow_error(StatusCode::BAD_REQUEST, "slow_down", Some(SLOW_DOWN_INTERVAL_SECS)));
        }
        PollState::Pending => return Ok(flow_error(pending.status(), "authorization_pending", None)),
        PollState::Denied => return Ok(flow_error(StatusCode::BAD_REQUEST, "access_denied", None)),
        PollState::Approved { .. } => {}
    }

    // Redeem the code and register the device in one transaction, on the ingest writer so it is
    // ordered with deletions of the same device and of the approving user.
    let now = now_ms.div_euclid(1000);
    let key = body.device_key;
    let redeemed = app
        .ingest
        .exec(move |ctx| {
            let Some((user_id, rec)) = redeem_in(ctx.txn, hash, now)? else {
                return Ok(Redeemed::AlreadyUsed);
            };
            // The approver may have been deleted or disabled since approving.
            let Some(user) = user_in(ctx.txn, user_id)?.filter(|u| u.status == UserStatus::Active) else {
                return Ok(Redeemed::ApproverGone);
            };
            let device = match key {
                Some(key) => {
                    let name = name.or(rec.device_name).unwrap_or_default();
                    Some(register_in(ctx.txn, user.id, &key, &name, now)?)
                }
                None => None,
            };
            Ok(Redeemed::Granted(Box::new((user, device))))
        })
        .await?;
    let (user, device) = match redeemed {
        Redeemed::Granted(granted) => *granted,
        // Another poll redeemed it first: single use.
        Redeemed::AlreadyUsed => return Ok(flow_error(StatusCode::BAD_REQUEST, "expired_token", None)),
        Redeemed::ApproverGone => return Ok(flow_error(StatusCode::BAD_REQUEST, "access_denied", None)),
    };
    let device_id = device.as_ref().map(|d| d.uuid);
    tracing::info!(user = %user.username, device = ?device_id, "device login completed");
    // Tokens for a registered device are bound to it: deleting the device revokes them.
    let pair = app
        .blocking(move |a| match device_id {
            Some(d) => a.tokens.issue_for_device(&a.store, &user, d),
            None => a.tokens.issue(&a.store, &user, None),
        })
        .await??;
    Ok(ok(&pair))
}

enum Redeemed {
    Granted(Box<(User, Option<Device>)>),
    AlreadyUsed,
    ApproverGone,
}

#[derive(Deserialize)]
struct ApproveBody {
    user_code: String,
    /// `true` denies the request instead.
    #[serde(default)]
    deny: bool,
}

/// Counts a try of a user code against the approver's lockout before the code is looked at, so
/// parallel guesses cannot all get past the limit (see `auth::lockout`). Wrong codes stay
/// counted; only a successful approve or deny clears the count; a code that exists but cannot be
/// decided (expired, already decided, or just looked up) is neither and is taken back.
fn begin_try<'a>(app: &'a App, user: &User) -> Result<Attempt<'a>, ApiError> {
    app.lockout.begin(LockKey::DeviceApprove(user.id)).map_err(ApiError::locked)
}

fn wrong_code(attempt: Attempt<'_>) -> ApiError {
    attempt.fail();
    ApiError::not_found(UNKNOWN_CODE)
}

/// `POST /device/approve`, `POST /auth/device/verify` (Bearer): approve, or deny with `"deny": true`.
pub async fn approve(app: &Arc<App>, req: Request) -> Result<HttpResponse, ApiError> {
    let user = guard::user(app, &req).await?;
    let body: ApproveBody = req.json()?;
    let attempt = begin_try(app, &user)?;
    let Some(code) = normalize_user_code(&body.user_code) else { return Err(wrong_code(attempt)) };
    let approve = !body.deny;
    let (uid, now) = (user.id, now_secs());
    let decided = app.blocking(move |a| a.store.decide_device_code(&code, uid, approve, now)).await?;
    match decided {
        Ok(rec) => {
            attempt.succeed();
            let status = if approve { "approved" } else { "denied" };
            tracing::info!(user = %user.username, user_code = %rec.user_code, status, "device login decided");
            audit::record(app, &req, if approve { "device_login.approve" } else { "device_login.deny" }, "")
                .await;
            Ok(ok(&json!({ "verified": true, "status": status })))
        }
        Err(DecideError::Unknown) => Err(wrong_code(attempt)),
        Err(DecideError::Expired) => Err(ApiError::new(StatusCode::GONE, "code expired")),
        Err(DecideError::AlreadyApproved) => Err(ApiError::conflict("code already approved")),
        Err(DecideError::AlreadyDenied) => Err(ApiError::conflict("code already denied")),
        Err(DecideError::Store(e)) => Err(e.into()),
    }
}

#[derive(Deserialize)]
struct LookupBody {
    user_code: String,
}

/// `POST /device/lookup` (Bearer): what the approval page shows before the user decides (and
/// polls while the device's name is not known yet).
pub async fn lookup(app: &Arc<App>, req: Request) -> Result<HttpResponse, ApiError> {
    let user = guard::user(app, &req).await?;
    let body: LookupBody = req.json()?;
    let attempt = begin_try(app, &user)?;
    let Some(code) = normalize_user_code(&body.user_code) else { return Err(wrong_code(attempt)) };
    let lookup_code = code.clone();
    let Some(rec) = app.blocking(move |a| a.store.device_code_by_user_code(&lookup_code)).await?? else {
        return Err(wrong_code(attempt));
    };
    // The code exists: not a failed guess, but no decision either, so the count is neither
    // cleared nor raised (the page looks a code up repeatedly while it waits for the name).
    drop(attempt);
    let now = now_secs();
    // A redeemed code too: the approver may reload the page after the client signed in.
    if rec.is_approved(now) {
        return Err(ApiError::conflict("code already approved"));
    }
    if rec.is_expired(now) {
        return Err(ApiError::new(StatusCode::GONE, "code expired"));
    }
    match rec.status {
        CodeStatus::Approved { .. } | CodeStatus::Redeemed { .. } => {
            Err(ApiError::conflict("code already approved"))
        }
        CodeStatus::Denied => Err(ApiError::conflict("code already denied")),
        CodeStatus::Pending => Ok(ok(&json!({
            "user_code": code,
            "device_name": rec.device_name,
            "expires_in": rec.expires_at - now,
        }))),
    }
}
