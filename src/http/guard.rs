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
    let user = app
        .blocking(move |a| a.store.user_by_uuid(uuid))
        .await??
        .ok_or_else(|| ApiError::unauthorized(INVALID))?;
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
