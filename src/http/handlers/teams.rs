//! Team administration (`/admin/teams/...`, admin role). Members see their teams at `/me/teams`.

use std::collections::HashMap;
use std::sync::Arc;

use hyper::StatusCode;
use serde::Deserialize;
use serde_json::json;

use super::views;
use crate::app::App;
use crate::http::audit;
use crate::http::error::ApiError;
use crate::http::guard;
use crate::http::request::Request;
use crate::http::response::{HttpResponse, json, ok};
use crate::store::teams::{Team, TeamRole, clean_name};
use crate::store::{StoreError, now_secs};

const NO_TEAM: &str = "team not found";

async fn team_by_path(app: &Arc<App>, raw_id: &str) -> Result<Team, ApiError> {
    let uuid = views::path_uuid(raw_id, NO_TEAM)?;
    app.blocking(move |a| a.store.team_by_uuid(uuid)).await??.ok_or_else(|| ApiError::not_found(NO_TEAM))
}

fn team_json(t: &Team) -> serde_json::Value {
    json!({ "id": t.uuid.to_string(), "name": t.name, "created_at": t.created_at })
}

pub async fn list(app: &Arc<App>, req: Request) -> Result<HttpResponse, ApiError> {
    guard::admin(app, &req).await?;
    let teams = app.blocking(|a| a.store.teams()).await??;
    let list: Vec<_> = teams
        .iter()
        .map(|(t, members)| {
            let mut v = team_json(t);
            v["member_count"] = json!(members);
            v
        })
        .collect();
    Ok(ok(&json!({ "teams": list })))
}

#[derive(Deserialize)]
struct CreateBody {
    name: String,
}

pub async fn create(app: &Arc<App>, req: Request) -> Result<HttpResponse, ApiError> {
    guard::admin(app, &req).await?;
    let body: CreateBody = req.json()?;
    let name = clean_name(&body.name).map_err(ApiError::unprocessable)?;
    let team = app.blocking(move |a| a.store.create_team(&name, now_secs())).await??;
    tracing::info!(team = %team.name, "team created");
    audit::record(app, &req, "team.create", &team.name).await;
    Ok(json(StatusCode::CREATED, &team_json(&team)))
}

pub async fn delete(app: &Arc<App>, req: Request, raw_id: &str) -> Result<HttpResponse, ApiError> {
    guard::admin(app, &req).await?;
    let team = team_by_path(app, raw_id).await?;
    let team = app.blocking(move |a| a.store.delete_team(team.id)).await??;
    tracing::info!(team = %team.name, "team deleted");
    audit::record(app, &req, "team.delete", &team.name).await;
    Ok(ok(&json!({ "deleted": true })))
}

pub async fn members(app: &Arc<App>, req: Request, raw_id: &str) -> Result<HttpResponse, ApiError> {
    guard::admin(app, &req).await?;
    let team = team_by_path(app, raw_id).await?;
    let (members, users) = app
        .blocking(move |a| Ok::<_, StoreError>((a.store.team_members(team.id)?, a.store.users()?)))
        .await??;
    let users: HashMap<u32, _> = users.iter().map(|u| (u.id, u)).collect();
    let list: Vec<_> = members
        .iter()
        .filter_map(|(id, m)| {
            let u = users.get(id)?;
            Some(json!({ "user_id": u.uuid.to_string(), "username": u.username, "role": m.role.as_str(), "added_at": m.added_at }))
        })
        .collect();
    Ok(ok(&json!({ "members": list })))
}

#[derive(Deserialize)]
struct AddMemberBody {
    user_id: String,
    #[serde(default)]
    role: Option<String>,
}

pub async fn add_member(app: &Arc<App>, req: Request, raw_id: &str) -> Result<HttpResponse, ApiError> {
    guard::admin(app, &req).await?;
    let body: AddMemberBody = req.json()?;
    let role = match body.role.as_deref() {
        None => TeamRole::Member,
        Some(r) => TeamRole::parse(r)
            .ok_or_else(|| ApiError::unprocessable(format!("role must be {}", TeamRole::NAMES)))?,
    };
    let team = team_by_path(app, raw_id).await?;
    let user_uuid = views::path_uuid(&body.user_id, "user not found")?;
    let user = app
        .blocking(move |a| a.store.user_by_uuid(user_uuid))
        .await??
        .ok_or_else(|| ApiError::not_found("user not found"))?;
    let (team_id, user_id) = (team.id, user.id);
    app.blocking(move |a| a.store.add_team_member(team_id, user_id, role, now_secs())).await??;
    tracing::info!(team = %team.name, user = %user.username, role = role.as_str(), "team member added");
    audit::record(app, &req, "team.member_add", &format!("{} {}", team.name, user.username)).await;
    Ok(json(
        StatusCode::CREATED,
        &json!({ "team_id": team.uuid.to_string(), "user_id": user.uuid.to_string(), "username": user.username, "role": role.as_str() }),
    ))
}

pub async fn remove_member(
    app: &Arc<App>,
    req: Request,
    raw_team: &str,
    raw_user: &str,
) -> Result<HttpResponse, ApiError> {
    guard::admin(app, &req).await?;
    let team = team_by_path(app, raw_team).await?;
    let user_uuid = views::path_uuid(raw_user, "user is not a member of this team")?;
    let user = app
        .blocking(move |a| a.store.user_by_uuid(user_uuid))
        .await??
        .ok_or_else(|| ApiError::not_found("user is not a member of this team"))?;
    let (team_id, user_id) = (team.id, user.id);
    app.blocking(move |a| a.store.remove_team_member(team_id, user_id)).await??;
    audit::record(app, &req, "team.member_remove", &format!("{} {}", team.name, user.username)).await;
    Ok(ok(&json!({ "removed": true })))
}
