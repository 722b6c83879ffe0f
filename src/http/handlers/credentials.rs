//! Long-lived credentials: API keys (`/me/api-keys`, `/admin/api-keys`) and OAuth clients
//! (`/me/oauth-clients`, `/admin/oauth-clients`). Secrets are shown once, in the 201 answer,
//! and stored as hashes. Only a sign-in session manages them (see `guard::need`), and a key or
//! client never gets a scope its owner's role lacks.

use std::sync::Arc;

use hyper::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};

use super::views;
use crate::app::App;
use crate::auth::scopes::Scopes;
use crate::auth::{api_keys, client_tokens};
use crate::http::audit;
use crate::http::error::ApiError;
use crate::http::guard;
use crate::http::request::Request;
use crate::http::response::{HttpResponse, json as json_response, ok};
use crate::store::api_keys::ApiKey;
use crate::store::oauth_clients::OAuthClient;
use crate::store::{now_secs, rfc3339};

const NO_KEY: &str = "API key not found";
const NO_CLIENT: &str = "OAuth client not found";
const MAX_NAME_CHARS: usize = 100;
const MAX_EXPIRY_DAYS: u64 = 3650;
/// Most live keys (and, separately, clients) one user may hold.
const MAX_PER_USER: usize = 100;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateBody {
    name: String,
    scopes: Vec<String>,
    #[serde(default)]
    expires_in_days: Option<u64>,
}

fn clean_name(name: &str) -> Result<String, ApiError> {
    let name = name.trim().to_owned();
    let n = name.chars().count();
    if n == 0 || n > MAX_NAME_CHARS || name.chars().any(char::is_control) {
        return Err(ApiError::unprocessable(format!(
            "name must be 1-{MAX_NAME_CHARS} characters without control characters"
        )));
    }
    Ok(name)
}

fn time(t: Option<i64>) -> Value {
    t.and_then(rfc3339).map_or(Value::Null, Value::String)
}

async fn owner_name(app: &Arc<App>, user: u32) -> Result<String, ApiError> {
    Ok(app.blocking(move |a| a.store.user(user)).await??.map(|u| u.username).unwrap_or_default())
}

fn key_view(k: &ApiKey) -> Value {
    json!({
        "id": k.id.to_string(),
        "name": k.name,
        "prefix": k.prefix,
        "scopes": k.scopes.names(),
        "created_at": time(Some(k.created_at)),
        "expires_at": time(k.expires_at),
        "last_used_at": time(k.last_used_at),
        "last_used_from": k.last_used_from,
    })
}

fn client_view(c: &OAuthClient) -> Value {
    json!({
        "id": c.id.to_string(),
        "client_id": c.client_id,
        "name": c.name,
        "scopes": c.scopes.names(),
        "created_at": time(Some(c.created_at)),
        "last_used_at": time(c.last_used_at),
    })
}

/// `POST /me/api-keys {name, scopes, expires_in_days?}` → 201 with the key, shown this once.
pub async fn create_key(app: &Arc<App>, req: Request) -> Result<HttpResponse, ApiError> {
    let user = guard::user(app, &req).await?;
    let body: CreateBody = req.json()?;
    let name = clean_name(&body.name)?;
    let scopes = Scopes::parse_for(&body.scopes, user.role).map_err(ApiError::unprocessable)?;
    let now = now_secs();
    let expires_at = match body.expires_in_days {
        None => None,
        Some(d) if (1..=MAX_EXPIRY_DAYS).contains(&d) => Some(now + d as i64 * 86400),
        Some(_) => {
            return Err(ApiError::unprocessable(format!(
                "expires_in_days must be from 1 to {MAX_EXPIRY_DAYS}"
            )));
        }
    };
    let (secret, hash) = api_keys::generate();
    let key = ApiKey {
        id: uuid::Uuid::new_v4(),
        user: user.id,
        name,
        prefix: api_keys::shown_prefix(&secret),
        scopes,
        created_at: now,
        expires_at,
        last_used_at: None,
        last_used_from: None,
    };
    let stored = key.clone();
    let uid = user.id;
    app.blocking(move |a| -> Result<(), ApiError> {
        if a.store.api_keys(Some(uid))?.len() >= MAX_PER_USER {
            return Err(ApiError::conflict(format!(
                "at most {MAX_PER_USER} API keys per user; revoke one first"
            )));
        }
        Ok(a.store.insert_api_key(hash, &stored)?)
    })
    .await??;
    tracing::info!(user = %user.username, key = %key.id, prefix = %key.prefix, "API key created");
    audit::record(app, &req, "api_key.create", &key.id.to_string()).await;
    let mut view = key_view(&key);
    view["key"] = Value::String(secret);
    Ok(json_response(StatusCode::CREATED, &view))
}

pub async fn my_keys(app: &Arc<App>, req: Request) -> Result<HttpResponse, ApiError> {
    let user = guard::user(app, &req).await?;
    let keys = app.blocking(move |a| a.store.api_keys(Some(user.id))).await??;
    Ok(ok(&json!({ "data": keys.iter().map(key_view).collect::<Vec<_>>() })))
}

pub async fn delete_my_key(app: &Arc<App>, req: Request, raw: &str) -> Result<HttpResponse, ApiError> {
    let user = guard::user(app, &req).await?;
    let id = views::path_uuid(raw, NO_KEY)?;
    let uid = user.id;
    let key = app
        .blocking(move |a| a.store.revoke_api_key(id, Some(uid)))
        .await??
        .ok_or_else(|| ApiError::not_found(NO_KEY))?;
    tracing::info!(user = %user.username, key = %key.id, "API key revoked");
    audit::record(app, &req, "api_key.revoke", &key.id.to_string()).await;
    Ok(ok(&json!({ "deleted": true })))
}

/// `GET /admin/api-keys`: every user's keys, with the owner.
pub async fn all_keys(app: &Arc<App>, req: Request) -> Result<HttpResponse, ApiError> {
    guard::admin(app, &req).await?;
    let keys = app.blocking(|a| a.store.api_keys(None)).await??;
    let mut out = Vec::with_capacity(keys.len());
    for k in &keys {
        let mut v = key_view(k);
        v["username"] = Value::String(owner_name(app, k.user).await?);
        out.push(v);
    }
    Ok(ok(&json!({ "data": out })))
}

pub async fn admin_delete_key(app: &Arc<App>, req: Request, raw: &str) -> Result<HttpResponse, ApiError> {
    let admin = guard::admin(app, &req).await?;
    let id = views::path_uuid(raw, NO_KEY)?;
    let key = app
        .blocking(move |a| a.store.revoke_api_key(id, None))
        .await??
        .ok_or_else(|| ApiError::not_found(NO_KEY))?;
    tracing::info!(admin = %admin.username, key = %key.id, owner = key.user, "API key revoked by an admin");
    audit::record(app, &req, "api_key.revoke", &key.id.to_string()).await;
    Ok(ok(&json!({ "deleted": true })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ClientBody {
    name: String,
    scopes: Vec<String>,
}

/// `POST /me/oauth-clients {name, scopes}` → 201 with `client_secret`, shown this once.
pub async fn create_client(app: &Arc<App>, req: Request) -> Result<HttpResponse, ApiError> {
    let user = guard::user(app, &req).await?;
    let body: ClientBody = req.json()?;
    let name = clean_name(&body.name)?;
    let scopes = Scopes::parse_for(&body.scopes, user.role).map_err(ApiError::unprocessable)?;
    let secret = client_tokens::new_secret();
    let client = OAuthClient {
        id: uuid::Uuid::new_v4(),
        client_id: client_tokens::new_client_id(),
        user: user.id,
        name,
        scopes,
        secret_hash: api_keys::hash(&secret),
        created_at: now_secs(),
        last_used_at: None,
    };
    let stored = client.clone();
    let uid = user.id;
    app.blocking(move |a| -> Result<(), ApiError> {
        if a.store.oauth_clients(Some(uid))?.len() >= MAX_PER_USER {
            return Err(ApiError::conflict(format!(
                "at most {MAX_PER_USER} OAuth clients per user; revoke one first"
            )));
        }
        Ok(a.store.insert_oauth_client(&stored)?)
    })
    .await??;
    tracing::info!(user = %user.username, client_id = %client.client_id, "OAuth client created");
    audit::record(app, &req, "oauth_client.create", &client.client_id).await;
    let mut view = client_view(&client);
    view["client_secret"] = Value::String(secret);
    Ok(json_response(StatusCode::CREATED, &view))
}

pub async fn my_clients(app: &Arc<App>, req: Request) -> Result<HttpResponse, ApiError> {
    let user = guard::user(app, &req).await?;
    let clients = app.blocking(move |a| a.store.oauth_clients(Some(user.id))).await??;
    Ok(ok(&json!({ "data": clients.iter().map(client_view).collect::<Vec<_>>() })))
}

pub async fn delete_my_client(app: &Arc<App>, req: Request, raw: &str) -> Result<HttpResponse, ApiError> {
    let user = guard::user(app, &req).await?;
    let id = views::path_uuid(raw, NO_CLIENT)?;
    let uid = user.id;
    let c = app
        .blocking(move |a| a.store.revoke_oauth_client(id, Some(uid)))
        .await??
        .ok_or_else(|| ApiError::not_found(NO_CLIENT))?;
    tracing::info!(user = %user.username, client_id = %c.client_id, "OAuth client revoked");
    audit::record(app, &req, "oauth_client.revoke", &c.client_id).await;
    Ok(ok(&json!({ "deleted": true })))
}

pub async fn all_clients(app: &Arc<App>, req: Request) -> Result<HttpResponse, ApiError> {
    guard::admin(app, &req).await?;
    let clients = app.blocking(|a| a.store.oauth_clients(None)).await??;
    let mut out = Vec::with_capacity(clients.len());
    for c in &clients {
        let mut v = client_view(c);
        v["username"] = Value::String(owner_name(app, c.user).await?);
        out.push(v);
    }
    Ok(ok(&json!({ "data": out })))
}

pub async fn admin_delete_client(app: &Arc<App>, req: Request, raw: &str) -> Result<HttpResponse, ApiError> {
    let admin = guard::admin(app, &req).await?;
    let id = views::path_uuid(raw, NO_CLIENT)?;
    let c = app
        .blocking(move |a| a.store.revoke_oauth_client(id, None))
        .await??
        .ok_or_else(|| ApiError::not_found(NO_CLIENT))?;
    tracing::info!(admin = %admin.username, client_id = %c.client_id, "OAuth client revoked by an admin");
    audit::record(app, &req, "oauth_client.revoke", &c.client_id).await;
    Ok(ok(&json!({ "deleted": true })))
}
