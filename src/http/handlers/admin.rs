//! Administration (`/admin/...`, admin role): settings, pending registrations, server info, live
//! sync sessions, users and all devices. Teams are in `teams.rs`.

use std::collections::HashMap;
use std::sync::Arc;

use hyper::StatusCode;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::{me, views};
use crate::app::App;
use crate::auth::rules;
use crate::config::RegistrationMode;
use crate::http::audit;
use crate::http::error::ApiError;
use crate::http::guard;
use crate::http::request::Request;
use crate::http::response::{HttpResponse, json, ok};
use crate::query::vm::drain::hour_rfc3339;
use crate::store::settings::REGISTRATION_MODE;
use crate::store::users::{Role, User, UserError, UserStatus, delete_user_in, user_in};
use crate::store::{StoreError, now_secs};

const NO_USER: &str = "user not found";
const NO_PENDING: &str = "pending user not found";

// ---- settings ----

async fn settings_json(app: &Arc<App>) -> Result<HttpResponse, ApiError> {
    let mode = app.blocking(|a| a.registration_mode()).await??;
    Ok(ok(&json!({ "registration_mode": mode.as_str() })))
}

/// Checks and stores one setting. `Ok(false)` for a key that is not a setting.
async fn set_setting(app: &Arc<App>, key: &str, value: &Value) -> Result<bool, ApiError> {
    match key {
        REGISTRATION_MODE => {
            let mode = value.as_str().and_then(RegistrationMode::parse).ok_or_else(|| {
                ApiError::unprocessable("registration_mode must be \"open\", \"approval\" or \"closed\"")
            })?;
            app.blocking(move |a| a.store.set_setting(REGISTRATION_MODE, mode.as_str())).await??;
            tracing::info!(registration_mode = %mode, "setting changed");
            Ok(true)
        }
        _ => Ok(false),
    }
}

pub async fn settings(app: &Arc<App>, req: Request) -> Result<HttpResponse, ApiError> {
    guard::admin(app, &req).await?;
    settings_json(app).await
}

/// `PATCH /admin/settings` with an object of settings to change; all are checked first.
pub async fn update_settings(app: &Arc<App>, req: Request) -> Result<HttpResponse, ApiError> {
    guard::admin(app, &req).await?;
    let body: Map<String, Value> = req.json()?;
    if let Some(unknown) = body.keys().find(|k| k.as_str() != REGISTRATION_MODE) {
        return Err(ApiError::bad_request(format!(
            "unknown setting `{unknown}`; settings are: {REGISTRATION_MODE}"
        )));
    }
    for (key, value) in &body {
        set_setting(app, key, value).await?;
        audit::record(app, &req, "setting.change", &format!("{key}={value}")).await;
    }
    settings_json(app).await
}

#[derive(Deserialize)]
struct SettingBody {
    value: Value,
}

/// `PUT /admin/settings/:key` with `{"value": …}`.
pub async fn put_setting(app: &Arc<App>, req: Request, key: &str) -> Result<HttpResponse, ApiError> {
    guard::admin(app, &req).await?;
    let body: SettingBody = req.json()?;
    if !set_setting(app, key, &body.value).await? {
        return Err(ApiError::not_found(format!(
            "unknown setting `{key}`; settings are: {REGISTRATION_MODE}"
        )));
    }
    audit::record(app, &req, "setting.change", &format!("{key}={}", body.value)).await;
    settings_json(app).await
}

// ---- users ----

/// The user named by a path id.
pub(super) async fn user_by_path(
    app: &Arc<App>,
    raw_id: &str,
    missing: &'static str,
) -> Result<User, ApiError> {
    let uuid = views::path_uuid(raw_id, missing)?;
    app.blocking(move |a| a.store.user_by_uuid(uuid)).await??.ok_or_else(|| ApiError::not_found(missing))
}

/// Deletes a user and everything they own, on the ingest writer, and closes their live sync
/// connections. `only_pending` refuses (inside the same transaction) users that are not pending.
async fn remove_user(app: &Arc<App>, id: u32, only_pending: bool) -> Result<User, ApiError> {
    let now = now_secs();
    let deleted = app
        .ingest
        .exec(move |ctx| {
            if only_pending && user_in(ctx.txn, id)?.is_none_or(|u| u.status != UserStatus::Pending) {
                return Ok(Err(UserError::NotFound));
            }
            match delete_user_in(ctx.txn, id, now) {
                Ok(gone) => {
                    for device in &gone.devices {
                        ctx.forget_device(*device);
                    }
                    Ok(Ok(gone))
                }
                Err(UserError::Store(e)) => Err(e),
                // Refusals happen before any write, so committing the empty transaction is fine.
                Err(refused) => Ok(Err(refused)),
            }
        })
        .await?;
    let gone = match deleted {
        Ok(gone) => gone,
        Err(UserError::NotFound) if only_pending => return Err(ApiError::not_found(NO_PENDING)),
        Err(e) => return Err(e.into()),
    };
    let closed = app.sessions.disconnect_user(id);
    tracing::info!(user = %gone.user.username, devices = gone.devices.len(), closed, "user deleted");
    Ok(gone.user)
}

pub async fn users(app: &Arc<App>, req: Request) -> Result<HttpResponse, ApiError> {
    guard::admin(app, &req).await?;
    let users = app.blocking(|a| a.store.users()).await??;
    Ok(ok(&json!({ "users": users.iter().map(views::user).collect::<Vec<_>>() })))
}

#[derive(Deserialize)]
pub(crate) struct CreateUserBody {
    username: String,
    password: String,
    #[serde(default)]
    role: Option<String>,
}

fn parse_role(role: &str) -> Result<Role, ApiError> {
    Role::parse(role).ok_or_else(|| ApiError::unprocessable("role must be \"admin\" or \"user\""))
}

pub async fn create_user(app: &Arc<App>, req: Request) -> Result<HttpResponse, ApiError> {
    guard::admin(app, &req).await?;
    let body: CreateUserBody = req.json()?;
    let role = body.role.as_deref().map(parse_role).transpose()?.unwrap_or(Role::User);
    let user = super::auth::create_password_user(
        app,
        req.client_ip,
        body.username,
        body.password,
        role,
        UserStatus::Active,
    )
    .await?;
    tracing::info!(user = %user.username, role = user.role.as_str(), "user created by an admin");
    audit::record(app, &req, "user.create", &user.username).await;
    Ok(json(
        StatusCode::CREATED,
        &json!({ "id": user.uuid.to_string(), "username": user.username, "role": user.role.as_str() }),
    ))
}

pub async fn delete_user(app: &Arc<App>, req: Request, raw_id: &str) -> Result<HttpResponse, ApiError> {
    guard::admin(app, &req).await?;
    let user = user_by_path(app, raw_id, NO_USER).await?;
    remove_user(app, user.id, false).await?;
    audit::record(app, &req, "user.delete", &user.username).await;
    Ok(ok(&json!({ "deleted": true })))
}

#[derive(Deserialize)]
struct RoleBody {
    role: String,
}

pub async fn user_role(app: &Arc<App>, req: Request, raw_id: &str) -> Result<HttpResponse, ApiError> {
    guard::admin(app, &req).await?;
    let body: RoleBody = req.json()?;
    let role = parse_role(&body.role)?;
    let user = user_by_path(app, raw_id, NO_USER).await?;
    let updated = app.blocking(move |a| a.store.update_user(user.id, |u| u.role = role)).await??;
    tracing::info!(user = %updated.username, role = role.as_str(), "role changed");
    audit::record(app, &req, "user.role", &format!("{} {}", updated.username, role.as_str())).await;
    Ok(ok(&views::user(&updated)))
}

#[derive(Deserialize)]
struct PasswordBody {
    password: String,
}

/// Sets a user's password; their refresh tokens are revoked and their sync connections closed.
pub async fn user_password(app: &Arc<App>, req: Request, raw_id: &str) -> Result<HttpResponse, ApiError> {
    guard::admin(app, &req).await?;
    let body: PasswordBody = req.json()?;
    rules::check_password(&body.password).map_err(ApiError::unprocessable)?;
    let user = user_by_path(app, raw_id, NO_USER).await?;
    let hash = app.passwords.hash(body.password, Some(req.client_ip)).await?;
    let id = user.id;
    app.blocking(move |a| a.store.set_password(id, hash)).await??;
    let closed = app.sessions.disconnect_user(id);
    tracing::info!(user = %user.username, closed, "password reset by an admin; refresh tokens revoked, sync sessions closed");
    audit::record(app, &req, "user.password", &user.username).await;
    Ok(ok(&json!({ "updated": true })))
}

// ---- pending registrations ----

pub async fn pending(app: &Arc<App>, req: Request) -> Result<HttpResponse, ApiError> {
    guard::admin(app, &req).await?;
    let users = app.blocking(|a| a.store.users()).await??;
    let list: Vec<_> = users.iter().filter(|u| u.status == UserStatus::Pending).map(views::user).collect();
    Ok(ok(&json!({ "pending": list })))
}

pub async fn approve_pending(app: &Arc<App>, req: Request, raw_id: &str) -> Result<HttpResponse, ApiError> {
    guard::admin(app, &req).await?;
    let user = user_by_path(app, raw_id, NO_PENDING).await?;
    if user.status != UserStatus::Pending {
        return Err(ApiError::not_found(NO_PENDING));
    }
    let approved = app
        .blocking(move |a| {
            a.store.update_user(user.id, |u| {
                // Decided on the state inside the transaction: a concurrent disable stays.
                if u.status == UserStatus::Pending {
                    u.status = UserStatus::Active;
                }
            })
        })
        .await??;
    if approved.status != UserStatus::Active {
        return Err(ApiError::not_found(NO_PENDING));
    }
    tracing::info!(user = %approved.username, "pending user approved");
    audit::record(app, &req, "user.approve", &approved.username).await;
    Ok(ok(&views::user(&approved)))
}

/// `DELETE /admin/pending/:id` and `POST /admin/pending/:id/reject`: the registration is deleted.
pub async fn reject_pending(app: &Arc<App>, req: Request, raw_id: &str) -> Result<HttpResponse, ApiError> {
    guard::admin(app, &req).await?;
    let user = user_by_path(app, raw_id, NO_PENDING).await?;
    remove_user(app, user.id, true).await?;
    audit::record(app, &req, "user.reject", &user.username).await;
    Ok(ok(&json!({ "rejected": true })))
}

// ---- devices ----

pub async fn devices(app: &Arc<App>, req: Request) -> Result<HttpResponse, ApiError> {
    guard::admin(app, &req).await?;
    let (devices, users) =
        app.blocking(|a| Ok::<_, StoreError>((a.store.devices(None)?, a.store.users()?))).await??;
    let owners: HashMap<u32, &User> = users.iter().map(|u| (u.id, u)).collect();
    let list: Vec<_> = devices
        .iter()
        .map(|d| {
            let mut v = views::device(d);
            let owner = owners.get(&d.user);
            v["user_id"] = json!(owner.map(|u| u.uuid.to_string()));
            v["username"] = json!(owner.map(|u| u.username.as_str()));
            v
        })
        .collect();
    Ok(ok(&json!({ "devices": list })))
}

pub async fn delete_device(app: &Arc<App>, req: Request, raw_id: &str) -> Result<HttpResponse, ApiError> {
    guard::admin(app, &req).await?;
    let uuid = views::path_uuid(raw_id, "device not found")?;
    let device = app
        .blocking(move |a| a.store.device_by_uuid(uuid))
        .await??
        .ok_or_else(|| ApiError::not_found("device not found"))?;
    me::delete_device(app, device.id).await?.ok_or_else(|| ApiError::not_found("device not found"))?;
    audit::record(app, &req, "device.delete", &device.uuid.to_string()).await;
    Ok(ok(&json!({ "deleted": true })))
}

// ---- server ----

pub async fn server_info(app: &Arc<App>, req: Request) -> Result<HttpResponse, ApiError> {
    guard::admin(app, &req).await?;
    let (stats, mode, backlog, oldest) = app
        .blocking(|a| {
            Ok::<_, StoreError>((
                a.store.stats()?,
                a.registration_mode()?,
                a.store.vm_backlog()?,
                a.store.vm_oldest_hour()?,
            ))
        })
        .await??;
    let victoriametrics = match &app.query.vm {
        Some(vm) => json!(vm.status.view(backlog, oldest)),
        None => {
            json!({ "configured": false, "outbox": backlog, "outbox_oldest_hour": oldest.and_then(hour_rfc3339) })
        }
    };
    Ok(ok(&json!({
        "version": env!("CARGO_PKG_VERSION"),
        "uptime_secs": app.started_at.elapsed().as_secs(),
        "connected_devices": app.sessions.connected_devices(),
        "active_sessions": app.sessions.count(),
        "registration_mode": mode.as_str(),
        "oidc_enabled": app.oidc.is_some(),
        "storage_backend": "redb",
        "database": {
            "file_bytes": stats.file_bytes,
            "users": stats.users,
            "devices": stats.devices,
            "events": stats.events,
            "rollup_buckets": stats.rollup_buckets,
            "teams": stats.teams,
        },
        "victoriametrics": victoriametrics,
        "tls": tls_view(app),
    })))
}

/// The certificate served on the sync port and the HTTPS listener, and how its renewal goes.
fn tls_view(app: &App) -> Value {
    let Some(certs) = &app.certs else { return Value::Null };
    let served = certs.current();
    let time = crate::store::rfc3339;
    let renewal = certs.renewal().map(|r| {
        json!({
            "state": r.state,
            "next_attempt": r.next_attempt.and_then(time),
            "last_attempt": r.last_attempt.and_then(time),
            "last_success": r.last_success.and_then(time),
            "last_error": r.last_error,
            "failures": r.failures,
        })
    });
    json!({
        "https_port": app.config.server.https_port,
        "source": served.source,
        "fingerprint": served.info.fingerprint,
        "names": served.info.names,
        "issuer": served.info.issuer,
        "not_after": time(served.info.not_after),
        "acme": renewal,
    })
}

/// Live sync sessions (compat.md row 26).
pub async fn active(app: &Arc<App>, req: Request) -> Result<HttpResponse, ApiError> {
    guard::admin(app, &req).await?;
    let list: Vec<_> = app
        .sessions
        .list()
        .iter()
        .map(|s| {
            json!({
                "device_id": s.device_uuid.to_string(),
                "device_name": s.device_name,
                "user_id": s.user_uuid.to_string(),
                "username": s.username,
                "provider": s.provider,
                "peer": s.peer.to_string(),
                "tls": s.tls,
                "connected_at": s.connected_at,
                "last_activity_at": s.last_activity_at,
                // Unix seconds like the two fields above; null until the session's first batch.
                "last_batch_at": s.last_batch_at,
                "last_ts_ms": s.last_ts_ms,
                "events_accepted": s.events_accepted,
            })
        })
        .collect();
    Ok(ok(&json!({ "active": list })))
}
