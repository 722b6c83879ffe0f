//! `POST /oauth/token`: the OAuth 2.0 client credentials grant (RFC 6749 §4.4). The body is a
//! form (`grant_type=client_credentials`, optional `scope`); the client authenticates with HTTP
//! Basic or `client_id` and `client_secret` in the body. Errors use the RFC's codes:
//! `invalid_request` / `unsupported_grant_type` / `invalid_scope` 400, `invalid_client` 401.
//! Failed secrets count in the lockout per address group and client id.

use std::sync::Arc;

use hyper::StatusCode;
use hyper::header::{HeaderValue, WWW_AUTHENTICATE};
use serde_json::json;

use crate::app::App;
use crate::auth::api_keys;
use crate::auth::client_tokens::{self, TOKEN_TTL_SECS};
use crate::auth::scopes::{Scope, Scopes};
use crate::http::error::ApiError;
use crate::http::guard;
use crate::http::request::{Request, percent_decode};
use crate::http::response::{HttpResponse, json};
use crate::store::now_secs;
use crate::store::users::UserStatus;

fn oauth_error(status: StatusCode, code: &str, description: &str) -> HttpResponse {
    let mut resp = json(status, &json!({ "error": code, "error_description": description }));
    if status == StatusCode::UNAUTHORIZED {
        resp.headers_mut().insert(WWW_AUTHENTICATE, HeaderValue::from_static("Basic realm=\"toki-sync\""));
    }
    resp.extensions_mut().insert(crate::http::error::ErrorNote(format!("{code}: {description}")));
    resp
}

fn form(body: &[u8]) -> Vec<(String, String)> {
    String::from_utf8_lossy(body)
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

pub async fn token(app: &Arc<App>, req: Request) -> Result<HttpResponse, ApiError> {
    let fields = form(&req.body);
    let get = |name: &str| {
        let mut values = fields.iter().filter(|(k, _)| k == name).map(|(_, v)| v.as_str());
        let first = values.next();
        // RFC 6749 §3.2: parameters must not be repeated.
        if values.next().is_some() { Err(name.to_owned()) } else { Ok(first) }
    };
    let bad = |m: &str| Ok(oauth_error(StatusCode::BAD_REQUEST, "invalid_request", m));
    let (grant, scope, body_id, body_secret) =
        match (get("grant_type"), get("scope"), get("client_id"), get("client_secret")) {
            (Ok(g), Ok(s), Ok(i), Ok(c)) => (g, s, i, c),
            _ => return bad("a parameter is repeated"),
        };
    match grant {
        None => return bad("grant_type is required"),
        Some("client_credentials") => {}
        Some(_) => {
            return Ok(oauth_error(
                StatusCode::BAD_REQUEST,
                "unsupported_grant_type",
                "only grant_type=client_credentials is supported",
            ));
        }
    }
    let basic = guard::basic_credentials(&req);
    let (client_id, secret) = match (basic, body_id, body_secret) {
        (Some(Err(())), _, _) => {
            return Ok(oauth_error(
                StatusCode::UNAUTHORIZED,
                "invalid_client",
                "malformed HTTP Basic credentials",
            ));
        }
        (Some(Ok(_)), Some(_), _) | (Some(Ok(_)), _, Some(_)) => {
            return bad("give the client credentials once: HTTP Basic or the body, not both");
        }
        (Some(Ok(pair)), None, None) => pair,
        (None, Some(id), Some(secret)) => (id.to_owned(), secret.to_owned()),
        (None, _, _) => {
            return Ok(oauth_error(
                StatusCode::UNAUTHORIZED,
                "invalid_client",
                "client authentication required: HTTP Basic, or client_id and client_secret in the body",
            ));
        }
    };
    let attempt =
        app.lockout.begin(guard::client_secret_lock_key(&req, &client_id)).map_err(ApiError::locked)?;
    let lookup_id = client_id.clone();
    let found = app
        .blocking(move |a| -> Result<_, crate::store::StoreError> {
            let Some(client) = a.store.oauth_client(&lookup_id)? else { return Ok(None) };
            let user = a.store.user(client.user)?;
            Ok(Some((client, user)))
        })
        .await??;
    let Some((client, Some(user))) =
        found.filter(|(c, _)| client_tokens::same(&c.secret_hash, &api_keys::hash(&secret)))
    else {
        attempt.fail();
        return Ok(oauth_error(StatusCode::UNAUTHORIZED, "invalid_client", "unknown client or wrong secret"));
    };
    drop(attempt);
    if user.status != UserStatus::Active {
        return Ok(oauth_error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "the client's owner account is not active",
        ));
    }
    let allowed = client.scopes.intersect(Scopes::of_role(user.role));
    let granted = match scope.map(str::trim).filter(|s| !s.is_empty()) {
        None => allowed,
        Some(list) => {
            let mut want = Scopes::default();
            for name in list.split(' ').filter(|s| !s.is_empty()) {
                match Scope::parse(name) {
                    Some(s) if allowed.contains(s) => want.insert(s),
                    _ => {
                        return Ok(oauth_error(
                            StatusCode::BAD_REQUEST,
                            "invalid_scope",
                            &format!(
                                "scope {name:?} is not granted to this client (it has: {})",
                                allowed.to_oauth()
                            ),
                        ));
                    }
                }
            }
            want
        }
    };
    if granted.is_empty() {
        return Ok(oauth_error(StatusCode::BAD_REQUEST, "invalid_scope", "the client has no usable scope"));
    }
    let token = client_tokens::new_token();
    let hash = api_keys::hash(&token);
    let now = now_secs();
    let id = client.client_id.clone();
    app.blocking(move |a| a.store.issue_client_token(&id, hash, now + TOKEN_TTL_SECS, now, granted))
        .await??;
    tracing::info!(client_id = %client.client_id, user = %user.username, "OAuth access token issued");
    Ok(json(
        StatusCode::OK,
        &json!({
            "access_token": token,
            "token_type": "Bearer",
            "expires_in": TOKEN_TTL_SECS,
            "scope": granted.to_oauth(),
        }),
    ))
}
