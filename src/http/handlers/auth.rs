//! Public endpoints: health, password login, registration, token refresh, auth discovery.

use std::sync::Arc;

use hyper::StatusCode;
use serde::Deserialize;
use serde_json::json;

use crate::app::App;
use crate::auth::lockout::LockKey;
use crate::auth::rules::{self, MAX_PASSWORD_BYTES};
use crate::auth::tokens::RefreshError;
use crate::config::RegistrationMode;
use crate::http::audit;
use crate::http::error::ApiError;
use crate::http::request::Request;
use crate::http::response::{HttpResponse, json, ok};
use crate::store::users::{NewUser, Role, User, UserStatus};

const MAX_DEVICE_ID_CHARS: usize = 128;

pub fn health() -> Result<HttpResponse, ApiError> {
    Ok(ok(&json!({ "status": "ok" })))
}

fn check_device_id(device_id: &Option<String>) -> Result<(), ApiError> {
    match device_id {
        Some(d) if d.chars().count() > MAX_DEVICE_ID_CHARS => Err(ApiError::unprocessable(format!(
            "device_id must be at most {MAX_DEVICE_ID_CHARS} characters"
        ))),
        _ => Ok(()),
    }
}

/// With `oidc.password_login = false` only the break-glass admin signs in with a password.
fn password_login_allowed(app: &App, username: &str) -> bool {
    let o = &app.config.oidc;
    o.password_login || o.break_glass_admin.as_deref().is_some_and(|b| b.eq_ignore_ascii_case(username))
}

#[derive(Deserialize)]
pub(crate) struct LoginBody {
    username: String,
    password: String,
    #[serde(default)]
    device_id: Option<String>,
}

pub async fn login(app: &Arc<App>, req: Request) -> Result<HttpResponse, ApiError> {
    let body: LoginBody = req.json()?;
    check_device_id(&body.device_id)?;
    if !password_login_allowed(app, &body.username) {
        return Err(ApiError::unauthorized("password login is disabled on this server; sign in with SSO"));
    }
    // Counted before the password is checked (see auth::lockout); settled below.
    let attempt = app.lockout.begin(LockKey::login(req.client_ip, &body.username));
    if attempt.is_err() {
        audit::sign_in(app, &req, &body.username, "login.locked").await;
    }
    let attempt = attempt.map_err(ApiError::locked)?;

    let name = body.username.clone();
    let user = app.blocking(move |a| a.store.user_by_name(&name)).await??;
    let verified = if body.password.len() > MAX_PASSWORD_BYTES {
        false
    } else {
        let phc = user.as_ref().and_then(|u| u.password_hash.clone());
        app.passwords.verify(body.password, phc, Some(req.client_ip)).await?
    };
    let user = match user {
        Some(u) if verified => u,
        other => {
            attempt.fail();
            audit::sign_in(app, &req, &body.username, "login.failure").await;
            if other.is_some_and(|u| u.password_hash.is_none() && u.oidc_subject.is_some()) {
                return Err(ApiError::unauthorized("this account uses OIDC login"));
            }
            return Err(ApiError::unauthorized("invalid credentials"));
        }
    };
    attempt.succeed();
    match user.status {
        UserStatus::Active => {}
        UserStatus::Pending => return Err(ApiError::forbidden("account is pending admin approval")),
        UserStatus::Disabled => return Err(ApiError::forbidden("account is disabled")),
    }
    audit::sign_in(app, &req, &user.username, "login.success").await;
    let device_id = body.device_id;
    let pair = app.blocking(move |a| a.tokens.issue(&a.store, &user, device_id)).await??;
    Ok(ok(&pair))
}

/// Creates an account with a password, for registration and for admins: checks the name and
/// password rules (422), refuses a taken name (409) before spending a hash on it, then hashes off
/// the async threads and creates the user (the store checks the name again, atomically).
pub(super) async fn create_password_user(
    app: &Arc<App>,
    client: std::net::IpAddr,
    username: String,
    password: String,
    role: Role,
    status: UserStatus,
) -> Result<User, ApiError> {
    rules::check_username(&username)
        .and_then(|()| rules::check_password(&password))
        .map_err(ApiError::unprocessable)?;
    let name = username.clone();
    if app.blocking(move |a| a.store.user_by_name(&name)).await??.is_some() {
        return Err(ApiError::conflict("username already exists"));
    }
    let hash = app.passwords.hash(password, Some(client)).await?;
    let new = NewUser { username, role, status, password_hash: Some(hash), oidc_subject: None };
    Ok(app.blocking(move |a| a.store.create_user(new)).await??)
}

#[derive(Deserialize)]
pub(crate) struct RegisterBody {
    username: String,
    password: String,
}

pub async fn register(app: &Arc<App>, req: Request) -> Result<HttpResponse, ApiError> {
    // Counted up front; a closed registration or a malformed body is taken back on return.
    let attempt = app.lockout.begin(LockKey::register(req.client_ip)).map_err(ApiError::locked)?;
    // Successes are limited too (a success clears the failure count, compat.md §5), counted up
    // front like failures so parallel registrations cannot outrun the limit; anything but a
    // success is taken back.
    let created = app.registrations.begin(LockKey::registered(req.client_ip)).map_err(|d| {
        ApiError::locked(d).with_message(format!(
            "too many registrations from this address; retry after {}s",
            crate::auth::lockout::retry_secs(d).max(1)
        ))
    })?;
    let mode = app.blocking(|a| a.registration_mode()).await??;
    if mode == RegistrationMode::Closed {
        return Err(ApiError::forbidden("registration is disabled"));
    }
    if !app.config.oidc.password_login {
        return Err(ApiError::forbidden(
            "registration is disabled: password sign-in is off on this server; sign in with SSO to register",
        ));
    }
    let body: RegisterBody = req.json()?;
    let status = if mode == RegistrationMode::Approval { UserStatus::Pending } else { UserStatus::Active };
    let user = match create_password_user(
        app,
        req.client_ip,
        body.username,
        body.password,
        Role::User,
        status,
    )
    .await
    {
        Ok(u) => u,
        Err(e) => {
            // Bad names and taken names count against the address (username enumeration).
            if matches!(e.status, StatusCode::CONFLICT | StatusCode::UNPROCESSABLE_ENTITY) {
                attempt.fail();
            }
            return Err(e);
        }
    };
    // A success clears the address's failure count (compat.md §5) and counts as a registration.
    attempt.succeed();
    created.fail();
    tracing::info!(user = %user.username, mode = %mode, "user registered");
    audit::record(app, &req, "user.register", &user.username).await;
    if status == UserStatus::Pending {
        Ok(json(
            StatusCode::ACCEPTED,
            &json!({
                "id": user.uuid.to_string(),
                "username": user.username,
                "status": "pending",
                "message": "registration pending admin approval",
            }),
        ))
    } else {
        Ok(json(StatusCode::CREATED, &json!({ "id": user.uuid.to_string(), "username": user.username })))
    }
}

/// `device_id` may also be sent (the reference allows it); the family keeps the one from login.
#[derive(Deserialize)]
struct RefreshBody {
    refresh_token: String,
}

/// Refresh tokens are signed and cannot be guessed, so only completed failures count (the toki
/// daemon refreshes from several threads at once), keyed by the token's family when it is ours
/// and by the address group only when it is not: garbage from one client behind a NAT never
/// locks out another client's valid token.
pub async fn refresh(app: &Arc<App>, req: Request) -> Result<HttpResponse, ApiError> {
    let body: RefreshBody = req.json()?;
    let key = LockKey::refresh(app.tokens.refresh_family(&body.refresh_token), req.client_ip);
    let attempt = app.lockout.check(key).map_err(ApiError::locked)?;
    match app.blocking(move |a| a.tokens.refresh(&a.store, &body.refresh_token)).await? {
        Ok(pair) => {
            attempt.succeed();
            Ok(ok(&pair))
        }
        Err(RefreshError::Invalid) => {
            attempt.fail();
            Err(ApiError::unauthorized("invalid or expired refresh token"))
        }
        Err(RefreshError::Store(e)) => Err(e.into()),
    }
}

#[derive(Deserialize)]
struct AuthMethodBody {
    username: String,
}

/// Which sign-in method to offer for a username. Without OIDC configured it is always
/// `password`. With OIDC: `oidc` for accounts linked to the provider, and for everyone (but the
/// break-glass admin) when password login is off.
pub async fn auth_method(app: &Arc<App>, req: Request) -> Result<HttpResponse, ApiError> {
    let body: AuthMethodBody = req.json()?;
    if body.username.trim().is_empty() {
        return Err(ApiError::bad_request("username is required"));
    }
    let oidc_answer = json!({ "method": "oidc", "auth_url": "/auth/oidc/authorize" });
    if app.oidc.is_none() {
        return Ok(ok(&json!({ "method": "password" })));
    }
    if !password_login_allowed(app, &body.username) {
        return Ok(ok(&oidc_answer));
    }
    let name = body.username;
    let user = app.blocking(move |a| a.store.user_by_name(&name)).await??;
    if user.is_some_and(|u| u.oidc_subject.is_some()) {
        return Ok(ok(&oidc_answer));
    }
    Ok(ok(&json!({ "method": "password" })))
}

pub async fn auth_info(app: &Arc<App>) -> Result<HttpResponse, ApiError> {
    let mode = app.blocking(|a| a.registration_mode()).await??;
    Ok(ok(&json!({
        "registration_mode": mode.as_str(),
        "oidc_enabled": app.oidc.is_some(),
        "oidc_ready": app.oidc.as_ref().is_some_and(|o| o.ready()),
        "oidc_label": app.config.oidc.button_label,
        "password_login": app.config.oidc.password_login,
        "server_version": env!("CARGO_PKG_VERSION"),
    })))
}
