//! `GET /api/v1/usage`: the native usage API (see `query::usage` for the response). The scope is
//! the caller by default; `team=<id>` reads that team's members (for members and admins),
//! `user=<id>` another user and `all` everyone (admins only).

use std::sync::Arc;

use crate::app::App;
use crate::http::error::ApiError;
use crate::http::guard;
use crate::http::request::Request;
use crate::http::response::{HttpResponse, ok};
use crate::query::blocks::{self, BlockParams};
use crate::query::usage::{self, MAX_RESPONSE_POINTS, UsageError, UsageParams};
use crate::store::now_ms;
use crate::store::users::{Role, User};

pub async fn usage(app: &Arc<App>, req: Request) -> Result<HttpResponse, ApiError> {
    let caller = guard::user(app, &req).await?;
    let params = UsageParams::parse(|k| req.query(k), now_ms()).map_err(|e| ApiError::bad_request(e.0))?;
    let users = scope(app, &req, &caller).await?;
    let report = app.blocking(move |a| usage::run(&a.store, &a.query.prices, &users, &params)).await?.map_err(|e| match e {
        UsageError::TooManyPoints => ApiError::bad_request(format!(
            "step, group_by: the response would have more than {MAX_RESPONSE_POINTS} points; use a coarser step, a shorter window or fewer group_by keys"
        )),
        UsageError::Store(e) => e.into(),
    })?;
    Ok(ok(&report))
}

/// `GET /api/v1/usage/blocks`: the caller's 5-hour blocks per provider (see `query::blocks`).
pub async fn blocks(app: &Arc<App>, req: Request) -> Result<HttpResponse, ApiError> {
    let caller = guard::user(app, &req).await?;
    let params = BlockParams::parse(|k| req.query(k), now_ms()).map_err(|e| ApiError::bad_request(e.0))?;
    let user = caller.id;
    let report = app
        .blocking(move |a| blocks::run(&a.store, &a.query.prices, user, &params))
        .await?
        .map_err(|e| match e {
            UsageError::TooManyPoints => ApiError::bad_request("start, end: the window holds too many hours"),
            UsageError::Store(e) => e.into(),
        })?;
    Ok(ok(&report))
}

/// The user ids whose usage the request may read.
pub(super) async fn scope(app: &Arc<App>, req: &Request, caller: &User) -> Result<Vec<u32>, ApiError> {
    let (team, user, all) = (req.query("team"), req.query("user"), req.query("all"));
    let all = match all.as_deref() {
        None | Some("false" | "0") => false,
        Some("" | "true" | "1") => true,
        Some(other) => {
            return Err(ApiError::bad_request(format!("all: expected true or false, got {other:?}")));
        }
    };
    if [team.is_some(), user.is_some(), all].iter().filter(|x| **x).count() > 1 {
        return Err(ApiError::bad_request("team, user, all: give at most one scope"));
    }
    let is_admin = caller.role == Role::Admin;
    if let Some(raw) = team {
        let uuid = uuid::Uuid::try_parse(&raw)
            .map_err(|_| ApiError::bad_request(format!("team: expected a team id (UUID), got {raw:?}")))?;
        let caller_id = caller.id;
        let members = app
            .blocking(move |a| -> Result<Option<Vec<u32>>, crate::store::StoreError> {
                let Some(team) = a.store.team_by_uuid(uuid)? else { return Ok(None) };
                a.store.team_member_ids(team.id).map(Some)
            })
            .await??
            .ok_or_else(|| ApiError::not_found("team not found"))?;
        if !is_admin && !members.contains(&caller_id) {
            return Err(ApiError::forbidden("team: you are not a member of this team"));
        }
        return Ok(members);
    }
    if let Some(raw) = user {
        let uuid = uuid::Uuid::try_parse(&raw)
            .map_err(|_| ApiError::bad_request(format!("user: expected a user id (UUID), got {raw:?}")))?;
        if uuid == caller.uuid {
            return Ok(vec![caller.id]);
        }
        if !is_admin {
            return Err(ApiError::forbidden("user: only admins can read another user's usage"));
        }
        let other = app
            .blocking(move |a| a.store.user_by_uuid(uuid))
            .await??
            .ok_or_else(|| ApiError::not_found("user not found"))?;
        return Ok(vec![other.id]);
    }
    if all {
        if !is_admin {
            return Err(ApiError::forbidden("all: only admins can read everyone's usage"));
        }
        return Ok(app.blocking(|a| a.store.users()).await??.into_iter().map(|u| u.id).collect());
    }
    Ok(vec![caller.id])
}
