//! Who is calling: bearer-token authentication and role checks for handlers.

use std::sync::Arc;

use super::error::ApiError;
use super::request::Request;
use crate::app::App;
use crate::store::users::{Role, User, UserStatus};

const INVALID: &str = "invalid or expired token";

/// The active user behind the request's access token (401 otherwise).
pub async fn user(app: &Arc<App>, req: &Request) -> Result<User, ApiError> {
    let token = req.bearer()?;
    let claims = app.tokens.verify_access(token).map_err(|_| ApiError::unauthorized(INVALID))?;
    let uuid = uuid::Uuid::parse_str(&claims.sub).map_err(|_| ApiError::unauthorized(INVALID))?;
    // A token the device flow issued is good only while its device exists.
    let bound = match claims.dev.as_deref().map(uuid::Uuid::parse_str) {
        Some(Ok(d)) => Some(d),
        Some(Err(_)) => return Err(ApiError::unauthorized(INVALID)),
        None => None,
    };
    let (user, bound_ok) = app
        .blocking(move |a| {
            let user = a.store.user_by_uuid(uuid)?;
            let bound_ok = match (&user, bound) {
                (Some(u), Some(d)) => a.store.bound_device_exists(u.id, d)?,
                _ => true,
            };
            Ok::<_, crate::store::StoreError>((user, bound_ok))
        })
        .await??;
    let user = user.ok_or_else(|| ApiError::unauthorized(INVALID))?;
    if !bound_ok {
        return Err(ApiError::unauthorized("this device was removed from the account; sign in again"));
    }
    match user.status {
        UserStatus::Active => Ok(user),
        UserStatus::Pending => Err(ApiError::forbidden("account is pending admin approval")),
        UserStatus::Disabled => Err(ApiError::forbidden("account is disabled")),
    }
}

/// Like [`user`], and the user must have the admin role (403 otherwise).
pub async fn admin(app: &Arc<App>, req: &Request) -> Result<User, ApiError> {
    let user = user(app, req).await?;
    if user.role != Role::Admin {
        return Err(ApiError::forbidden("admin role required"));
    }
    Ok(user)
}
