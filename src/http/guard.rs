//! Who is calling: one guard turns a JWT access token, an API key (`tks_…`) or an OAuth client
//! access token (`tkt_…`) into a [`Principal`] with scopes, checks the scope the endpoint needs
//! ([`need`], one exhaustive table, so a new endpoint cannot forget to name one) and counts the
//! request against the principal's rate limit. Handlers call [`user`], [`admin`] or
//! [`principal`]; none reads `Authorization` itself (that is `Request::bearer`).
//!
//! Failed API-key and client-token attempts count in the brute-force lockout per address group,
//! like failed logins; an expired key proves knowledge of a real key and is no strike.

use std::sync::Arc;

use hyper::Method;
use uuid::Uuid;

use super::error::ApiError;
use super::ratelimit::{self, Class, Subject};
use super::request::Request;
use super::router::{Endpoint, route};
use crate::app::App;
use crate::auth::api_keys;
use crate::auth::lockout::LockKey;
use crate::auth::scopes::{Scope, Scopes};
use crate::net::address_group;
use crate::store::api_keys::TOUCH_EVERY_SECS;
use crate::store::now_secs;
use crate::store::users::{Role, User, UserStatus};

const INVALID: &str = "invalid or expired token";
/// The lockout key's name part for API credentials: no username can contain a NUL, so this
/// never shares a counter with a real account's logins.
const CREDENTIAL_LOCK_NAME: &str = "\0api-credential";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A JWT from a password, device-flow or SSO sign-in.
    Session,
    ApiKey(Uuid),
    Client(Uuid),
}

#[derive(Clone, Debug)]
pub struct Principal {
    pub user: User,
    pub scopes: Scopes,
    pub kind: Kind,
}

/// What an endpoint asks of its caller.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Need {
    /// No credential (sign-in, pages, health).
    Public,
    /// Any valid credential.
    Any,
    /// A sign-in session: changing the password, approving a device, managing credentials
    /// (a key must not mint keys or approve logins).
    Session,
    Scope(Scope),
}

/// The scope each endpoint needs.
pub fn need(method: &Method, endpoint: &Endpoint) -> Need {
    use Endpoint as E;
    let admin =
        if method == Method::GET || method == Method::HEAD { Scope::AdminRead } else { Scope::AdminWrite };
    match endpoint {
        E::Health
        | E::Login
        | E::Register
        | E::TokenRefresh
        | E::AuthMethod
        | E::AuthInfo
        | E::DeviceCode
        | E::DeviceTokenReference
        | E::DeviceTokenClient
        | E::OAuthToken
        | E::OidcAuthorize
        | E::OidcCallback
        | E::Root
        | E::LoginPage
        | E::DevicePage
        | E::DashboardPage
        | E::Asset(_) => Need::Public,
        E::Me => Need::Any,
        E::DeviceApprove | E::DeviceLookup | E::MyPassword | E::MySignOutEverywhere | E::MyTimezone => {
            Need::Session
        }
        E::MyApiKeys
        | E::MyApiKeyCreate
        | E::MyApiKeyDelete(_)
        | E::MyOAuthClients
        | E::MyOAuthClientCreate
        | E::MyOAuthClientDelete(_) => Need::Session,
        E::MyDevices => Need::Scope(Scope::DevicesRead),
        E::MyDeviceDelete(_) | E::MyDeviceRename(_) => Need::Scope(Scope::DevicesWrite),
        E::MyTeams
        | E::Usage
        | E::UsageBlocks
        | E::UsageRecords
        | E::UsageExport
        | E::TokiQuery
        | E::PromQuery
        | E::PromQueryRange
        | E::TeamQueryRange(_) => Need::Scope(Scope::UsageRead),
        E::AdminSettings
        | E::AdminSettingsUpdate
        | E::AdminSettingPut(_)
        | E::AdminPending
        | E::AdminPendingApprove(_)
        | E::AdminPendingReject(_)
        | E::AdminServerInfo
        | E::AdminActive
        | E::AdminUsers
        | E::AdminUserCreate
        | E::AdminUserDelete(_)
        | E::AdminUserRole(_)
        | E::AdminUserPassword(_)
        | E::AdminUserLinkOidc(_)
        | E::AdminDevices
        | E::AdminDeviceDelete(_)
        | E::AdminTeams
        | E::AdminTeamCreate
        | E::AdminTeamDelete(_)
        | E::AdminTeamMembers(_)
        | E::AdminTeamMemberAdd(_)
        | E::AdminTeamMemberRemove { .. }
        | E::AdminApiKeys
        | E::AdminApiKeyDelete(_)
        | E::AdminOAuthClients
        | E::AdminOAuthClientDelete(_)
        | E::AdminAudit => Need::Scope(admin),
        // A backup holds every password hash and the token signing secret: whoever has one can
        // act as any admin, so it needs the full admin scope even though it is a GET.
        E::AdminBackup => Need::Scope(Scope::AdminWrite),
    }
}

/// The rate-limit class of an endpoint; `None` for what is not limited (pages, assets, health).
pub fn class(method: &Method, endpoint: &Endpoint) -> Option<Class> {
    use Endpoint as E;
    match (endpoint, need(method, endpoint)) {
        (E::Health | E::Root | E::LoginPage | E::DevicePage | E::DashboardPage | E::Asset(_), _) => None,
        (_, Need::Public) => Some(Class::Anonymous),
        (_, Need::Any | Need::Session) => Some(Class::Account),
        (_, Need::Scope(Scope::UsageRead)) => Some(Class::Usage),
        (_, Need::Scope(Scope::DevicesRead | Scope::DevicesWrite)) => Some(Class::Devices),
        (_, Need::Scope(Scope::AdminRead | Scope::AdminWrite)) => Some(Class::Admin),
    }
}

/// The principal behind the request, checked against what its endpoint needs and counted
/// against its rate limit.
pub async fn principal(app: &Arc<App>, req: &Request) -> Result<Principal, ApiError> {
    let (need, class) = match route(&req.method, req.uri.path()) {
        Ok(e) => (need(&req.method, &e), class(&req.method, &e)),
        Err(_) => (Need::Any, Some(Class::Account)),
    };
    let p = authenticate(app, req).await?;
    let subject = match p.kind {
        Kind::Session => Subject::User(p.user.id),
        Kind::ApiKey(id) => Subject::ApiKey(id.as_u128()),
        Kind::Client(id) => Subject::Client(id.as_u128()),
    };
    remember(&p);
    if let Some(class) = class {
        let status = app.ratelimit.hit(subject, class);
        ratelimit::record(status);
        if let Some(s) = status.filter(|s| s.exceeded) {
            return Err(ApiError::new(hyper::StatusCode::TOO_MANY_REQUESTS, s.message()));
        }
    }
    match need {
        Need::Public | Need::Any => {}
        Need::Session if p.kind != Kind::Session => {
            return Err(ApiError::forbidden(
                "this endpoint needs a sign-in session, not an API key or client token",
            ));
        }
        Need::Session => {}
        Need::Scope(s) => {
            if s.is_admin() && p.user.role != Role::Admin {
                return Err(ApiError::forbidden("admin role required"));
            }
            if !p.scopes.contains(s) {
                return Err(ApiError::forbidden(format!("insufficient scope: needs {s}")));
            }
        }
    }
    Ok(p)
}

/// The active user behind the request (401 without a valid credential, 403 without the scope).
pub async fn user(app: &Arc<App>, req: &Request) -> Result<User, ApiError> {
    Ok(principal(app, req).await?.user)
}

/// Like [`user`], and the user must have the admin role (403 otherwise).
pub async fn admin(app: &Arc<App>, req: &Request) -> Result<User, ApiError> {
    let user = user(app, req).await?;
    if user.role != Role::Admin {
        return Err(ApiError::forbidden("admin role required"));
    }
    Ok(user)
}

async fn authenticate(app: &Arc<App>, req: &Request) -> Result<Principal, ApiError> {
    let token = req.bearer()?;
    if api_keys::looks_like_key(token) {
        return api_key(app, req, token).await;
    }
    if crate::auth::client_tokens::looks_like_token(token) {
        return client_token(app, req, token).await;
    }
    let claims = app.tokens.verify_access(token).map_err(|_| ApiError::unauthorized(INVALID))?;
    let uuid = Uuid::parse_str(&claims.sub).map_err(|_| ApiError::unauthorized(INVALID))?;
    // A token the device flow issued is good only while its device exists.
    let bound = match claims.dev.as_deref().map(Uuid::parse_str) {
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
    if user.is_some() && !bound_ok {
        return Err(ApiError::unauthorized("this device was removed from the account; sign in again"));
    }
    let user = active(user)?;
    Ok(Principal { scopes: Scopes::of_role(user.role), user, kind: Kind::Session })
}

fn active(user: Option<User>) -> Result<User, ApiError> {
    let user = user.ok_or_else(|| ApiError::unauthorized(INVALID))?;
    match user.status {
        UserStatus::Active => Ok(user),
        UserStatus::Pending => Err(ApiError::forbidden("account is pending admin approval")),
        UserStatus::Disabled => Err(ApiError::forbidden("account is disabled")),
    }
}

/// The lockout key failed API keys and client tokens count under: the address group. (They
/// arrive in `Authorization`, which a cross-origin page cannot set without a CORS preflight we
/// never answer, so another site cannot burn a visitor's attempts.)
pub fn credential_lock_key(req: &Request) -> LockKey {
    LockKey::login(address_group(req.client_ip), CREDENTIAL_LOCK_NAME)
}

/// The lockout key failed client secrets at `POST /oauth/token` count under: the address group
/// and the client id. A form post is a simple cross-origin request, so keying on the address
/// alone would let any web page lock a visitor's services out; it must know the client id.
pub fn client_secret_lock_key(req: &Request, client_id: &str) -> LockKey {
    let id: String = client_id.chars().take(40).collect();
    LockKey::login(address_group(req.client_ip), &format!("{CREDENTIAL_LOCK_NAME}:{id}"))
}

async fn api_key(app: &Arc<App>, req: &Request, token: &str) -> Result<Principal, ApiError> {
    let attempt = app.lockout.begin(credential_lock_key(req)).map_err(ApiError::locked)?;
    if let Err(e) = api_keys::check(token) {
        attempt.fail();
        return Err(ApiError::unauthorized(e.message()));
    }
    let hash = api_keys::hash(token);
    let found = app
        .blocking(move |a| -> Result<_, crate::store::StoreError> {
            let Some(key) = a.store.api_key_by_hash(hash)? else { return Ok(None) };
            let user = a.store.user(key.user)?;
            Ok(Some((key, user)))
        })
        .await??;
    let Some((key, user)) = found else {
        attempt.fail();
        return Err(ApiError::unauthorized("API key revoked or unknown"));
    };
    let now = now_secs();
    if key.expired(now) {
        drop(attempt);
        return Err(ApiError::unauthorized("API key expired"));
    }
    drop(attempt);
    let user = active(user)?;
    let from = req.client_ip.to_string();
    if key.last_used_at.is_none_or(|t| now - t >= TOUCH_EVERY_SECS)
        || key.last_used_from.as_deref() != Some(from.as_str())
    {
        // Not awaited: recording the use must not delay the request.
        let app = Arc::clone(app);
        tokio::task::spawn_blocking(move || {
            if let Err(e) = app.store.touch_api_key(hash, now, &from) {
                tracing::warn!(error = %e, "could not record an API key's last use");
            }
        });
    }
    Ok(Principal {
        scopes: key.scopes.intersect(Scopes::of_role(user.role)),
        user,
        kind: Kind::ApiKey(key.id),
    })
}

async fn client_token(app: &Arc<App>, req: &Request, token: &str) -> Result<Principal, ApiError> {
    let attempt = app.lockout.begin(credential_lock_key(req)).map_err(ApiError::locked)?;
    let hash = api_keys::hash(token);
    let now = now_secs();
    let found = app
        .blocking(move |a| -> Result<_, crate::store::StoreError> {
            let Some((client, expires, granted)) = a.store.client_token(hash)? else { return Ok(None) };
            let user = a.store.user(client.user)?;
            Ok(Some((client, expires, granted, user)))
        })
        .await??;
    let Some((client, expires, granted, user)) = found else {
        attempt.fail();
        return Err(ApiError::unauthorized("access token revoked or unknown"));
    };
    drop(attempt);
    if expires <= now {
        return Err(ApiError::unauthorized("access token expired"));
    }
    let user = active(user)?;
    Ok(Principal {
        scopes: granted.intersect(client.scopes).intersect(Scopes::of_role(user.role)),
        user,
        kind: Kind::Client(client.id),
    })
}

/// `Authorization: Basic` client credentials (RFC 6749 §2.3.1: both parts form-encoded).
/// `None` without a Basic header, `Some(Err(()))` for a malformed one.
pub fn basic_credentials(req: &Request) -> Option<Result<(String, String), ()>> {
    use base64::Engine;
    let value = req.headers.get(hyper::header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, rest) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD.decode(rest.trim()).map_err(|_| ());
    Some(decoded.and_then(|raw| {
        let text = String::from_utf8(raw).map_err(|_| ())?;
        let (id, secret) = text.split_once(':').ok_or(())?;
        Ok((super::request::percent_decode(id), super::request::percent_decode(secret)))
    }))
}

tokio::task_local! {
    /// The request's principal (username, kind), for the audit log.
    static CALLER: std::cell::RefCell<Option<(String, &'static str)>>;
}

/// Runs a request's handling with a slot for the principal the guard establishes.
pub async fn with_caller<T>(f: impl Future<Output = T>) -> T {
    CALLER.scope(std::cell::RefCell::new(None), f).await
}

fn remember(p: &Principal) {
    let kind = match p.kind {
        Kind::Session => "session",
        Kind::ApiKey(_) => "api_key",
        Kind::Client(_) => "client",
    };
    let _ = CALLER.try_with(|c| *c.borrow_mut() = Some((p.user.username.clone(), kind)));
}

/// The principal the guard established for this request, if any.
pub fn caller() -> Option<(String, &'static str)> {
    CALLER.try_with(|c| c.borrow().clone()).ok().flatten()
}
