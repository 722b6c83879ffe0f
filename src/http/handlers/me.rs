//! Self-service (`/me/...`, any signed-in user): the account, its devices, password and teams.
//! A device id of another user is answered exactly like one that does not exist.

use std::sync::Arc;

use serde::Deserialize;
use serde_json::json;

use super::views;
use crate::app::App;
use crate::auth::lockout::LockKey;
use crate::auth::rules;
use crate::http::audit;
use crate::http::error::ApiError;
use crate::http::guard;
use crate::http::request::Request;
use crate::http::response::{HttpResponse, ok};
use crate::query::time::{format_offset, parse_utc_offset};
use crate::query::vm::drain::hour_rfc3339;
use crate::store::day_rollups;
use crate::store::devices::{Device, MAX_NAME_CHARS, delete_in};
use crate::store::users::User;
use crate::store::{StoreError, now_secs};

const NO_DEVICE: &str = "device not found";

/// The account, plus whether the PromQL endpoints are available (VictoriaMetrics configured)
/// and how much of the caller's own usage still waits to reach VictoriaMetrics: the number of
/// queued hourly buckets and the hour of the oldest (other users' backlog is not theirs to see).
pub async fn me(app: &Arc<App>, req: Request) -> Result<HttpResponse, ApiError> {
    let user = guard::user(app, &req).await?;
    let mut body = views::user(&user);
    let configured = app.query.vm.is_some();
    let id = user.id;
    let (backlog, zone) = app
        .blocking(move |a| Ok::<_, StoreError>((a.store.vm_user_backlog(id)?, a.store.user_zone(id)?)))
        .await??;
    body["utc_offset"] = json!(format_offset(zone.map_or(0, |z| z.0)));
    body["victoriametrics"] = json!({
        "configured": configured,
        "outbox_pending": backlog.buckets,
        "outbox_oldest_hour": backlog.oldest_hour.and_then(hour_rfc3339),
    });
    Ok(ok(&body))
}

/// The object form the toki client needs (compat.md row 16).
pub async fn devices(app: &Arc<App>, req: Request) -> Result<HttpResponse, ApiError> {
    let user = guard::user(app, &req).await?;
    let devices = app.blocking(move |a| a.store.devices(Some(user.id))).await??;
    let live = app.sessions.list();
    let list: Vec<_> = devices
        .iter()
        .map(|d| {
            let mut v = views::device(d);
            // The providers this device has a sync connection open for right now.
            let mut connected: Vec<&str> =
                live.iter().filter(|s| s.device_id == d.id).map(|s| s.provider.as_str()).collect();
            connected.sort_unstable();
            v["connected"] = json!(connected);
            v
        })
        .collect();
    Ok(ok(&json!({ "devices": list })))
}

/// The caller's device with this external id.
async fn own_device(app: &Arc<App>, user: &User, raw_id: &str) -> Result<Device, ApiError> {
    let uuid = views::path_uuid(raw_id, NO_DEVICE)?;
    let device = app.blocking(move |a| a.store.device_by_uuid(uuid)).await??;
    device.filter(|d| d.user == user.id).ok_or_else(|| ApiError::not_found(NO_DEVICE))
}

/// Deletes a device with its usage data, tombstones its key and closes its live sync
/// connections. Runs on the ingest writer so no batch for the device commits after it.
pub async fn delete_device(app: &Arc<App>, id: u32) -> Result<Option<Device>, ApiError> {
    let now = now_secs();
    let deleted = app
        .ingest
        .exec(move |ctx| {
            ctx.forget_device(id);
            delete_in(ctx.txn, id, now)
        })
        .await?;
    if let Some(d) = &deleted {
        let closed = app.sessions.disconnect(|s| s.device_id == d.id);
        tracing::info!(device = %d.uuid, user = d.user, closed, "device deleted");
    }
    Ok(deleted)
}

pub async fn delete(app: &Arc<App>, req: Request, raw_id: &str) -> Result<HttpResponse, ApiError> {
    let user = guard::user(app, &req).await?;
    let device = own_device(app, &user, raw_id).await?;
    delete_device(app, device.id).await?.ok_or_else(|| ApiError::not_found(NO_DEVICE))?;
    audit::record(app, &req, "device.delete", &device.uuid.to_string()).await;
    Ok(ok(&json!({ "deleted": true })))
}

#[derive(Deserialize)]
struct RenameBody {
    name: String,
}

pub async fn rename(app: &Arc<App>, req: Request, raw_id: &str) -> Result<HttpResponse, ApiError> {
    let user = guard::user(app, &req).await?;
    let body: RenameBody = req.json()?;
    let name = body.name.trim().to_owned();
    let chars = name.chars().count();
    if chars == 0 || chars > MAX_NAME_CHARS || name.chars().any(char::is_control) {
        return Err(ApiError::unprocessable(format!(
            "name must be 1-{MAX_NAME_CHARS} characters without control characters"
        )));
    }
    let device = own_device(app, &user, raw_id).await?;
    app.blocking(move |a| a.store.rename_device(device.id, &name))
        .await??
        .ok_or_else(|| ApiError::not_found(NO_DEVICE))?;
    Ok(ok(&json!({ "updated": true })))
}

#[derive(Deserialize)]
struct PasswordBody {
    current_password: String,
    new_password: String,
}

/// Changes the caller's password after checking the current one (failures count like failed
/// logins), revokes all their refresh tokens and closes their live sync connections. Access
/// tokens already issued stay valid until they expire.
pub async fn password(app: &Arc<App>, req: Request) -> Result<HttpResponse, ApiError> {
    let user = guard::user(app, &req).await?;
    let body: PasswordBody = req.json()?;
    // Counted before the password is checked (see auth::lockout); an early return takes it back.
    let attempt =
        app.lockout.begin(LockKey::login(req.client_ip, &user.username)).map_err(ApiError::locked)?;
    let Some(phc) = user.password_hash.clone() else {
        return Err(ApiError::bad_request("this account uses OIDC login"));
    };
    rules::check_password(&body.new_password).map_err(ApiError::unprocessable)?;
    if body.current_password.len() > rules::MAX_PASSWORD_BYTES
        || !app.passwords.verify(body.current_password, Some(phc), Some(req.client_ip)).await?
    {
        attempt.fail();
        return Err(ApiError::forbidden("current password is incorrect"));
    }
    attempt.succeed();
    let hash = app.passwords.hash(body.new_password, Some(req.client_ip)).await?;
    let id = user.id;
    app.blocking(move |a| a.store.set_password(id, hash)).await??;
    let closed = app.sessions.disconnect_user(id);
    tracing::info!(user = %user.username, closed, "password changed; refresh tokens revoked, sync sessions closed");
    audit::record(app, &req, "password.change", &user.username).await;
    Ok(ok(&json!({ "updated": true })))
}

/// Least time between two changes of a user's offset: each change rebuilds their day tier on
/// the ingest writer.
const ZONE_CHANGE_INTERVAL_SECS: i64 = 60;

#[derive(Deserialize)]
struct ZoneBody {
    utc_offset: String,
}

/// `PUT /me/timezone`: the UTC offset the caller's day tier is kept in (the dashboard sends the
/// browser's). Changing it rebuilds the caller's days from their hourly rollups, on the ingest
/// writer so no batch commits in between.
pub async fn set_timezone(app: &Arc<App>, req: Request) -> Result<HttpResponse, ApiError> {
    let user = guard::user(app, &req).await?;
    let body: ZoneBody = req.json()?;
    let offset = parse_utc_offset(&body.utc_offset)
        .map_err(|e| ApiError::unprocessable(format!("utc_offset: {e}")))?;
    let id = user.id;
    let now = now_secs();
    let (old, changed_at) = app.blocking(move |a| a.store.user_zone(id)).await??.unwrap_or((0, i64::MIN / 2));
    if old == offset {
        return Ok(ok(&json!({ "utc_offset": format_offset(offset), "rebuilt": false })));
    }
    {
        let wait = changed_at + ZONE_CHANGE_INTERVAL_SECS - now;
        if wait > 0 {
            return Err(ApiError::locked(std::time::Duration::from_secs(wait as u64)));
        }
    }
    let rows = app.ingest.exec(move |ctx| day_rollups::set_zone_in(ctx.txn, id, offset, now)).await?;
    tracing::info!(user = %user.username, offset = %format_offset(offset), day_rows = rows.unwrap_or(0), "day tier rebuilt for a new UTC offset");
    Ok(ok(&json!({ "utc_offset": format_offset(offset), "rebuilt": rows.is_some() })))
}

/// Signs the caller out everywhere: every refresh token of theirs is revoked, so each browser
/// and each toki device must sign in again once its access token expires.
pub async fn sign_out_everywhere(app: &Arc<App>, req: Request) -> Result<HttpResponse, ApiError> {
    let user = guard::user(app, &req).await?;
    let id = user.id;
    let revoked =
        app.blocking(move |a| a.store.write(|txn| crate::store::tokens::revoke_user_in(txn, id))).await??;
    tracing::info!(user = %user.username, revoked, "signed out everywhere; refresh tokens revoked");
    Ok(ok(&json!({ "revoked": revoked })))
}

/// The reference's bare array, plus the member's role in each team (compat.md row 20).
pub async fn teams(app: &Arc<App>, req: Request) -> Result<HttpResponse, ApiError> {
    let user = guard::user(app, &req).await?;
    let teams = app.blocking(move |a| a.store.user_teams(user.id)).await??;
    let list: Vec<_> = teams
        .iter()
        .map(|(t, m)| json!({ "team_id": t.uuid.to_string(), "team_name": t.name, "role": m.role.as_str() }))
        .collect();
    Ok(ok(&list))
}
