//! Turns (method, path) into an [`Endpoint`]. Unknown paths are 404, known paths with another
//! method are 405 with an `Allow` header. HEAD is served as GET (hyper leaves out the body).
//!
//! Path parameters (`:device_id`, `:user_id`, `:team_id`, `:key`, asset names) are passed on as
//! they appear; handlers parse them and answer 404 for ids that cannot exist.

use hyper::Method;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Endpoint {
    Health,
    Login,
    Register,
    TokenRefresh,
    AuthMethod,
    AuthInfo,
    /// `GET /auth/oidc/authorize`: off to the identity provider.
    OidcAuthorize,
    /// `GET /auth/callback`, `GET /auth/oidc/callback`: back from it.
    OidcCallback,

    // Device-code flow: the reference paths (`/auth/device/...`) and the toki client's.
    DeviceCode,
    /// `POST /auth/device/token`: pending is 428, as in the reference.
    DeviceTokenReference,
    /// `POST /device/token`: pending is 400, the only status the toki client keeps polling on.
    DeviceTokenClient,
    /// `POST /auth/device/verify` and `POST /device/approve`.
    DeviceApprove,
    /// `POST /device/lookup`: what the approval page shows before the user decides.
    DeviceLookup,

    // Browser pages and their files.
    Root,
    LoginPage,
    DevicePage,
    DashboardPage,
    Asset(String),

    // Self-service.
    Me,
    MyDevices,
    MyDeviceDelete(String),
    MyDeviceRename(String),
    MyPassword,
    MySignOutEverywhere,
    MyTimezone,
    MyTeams,
    MyApiKeys,
    MyApiKeyCreate,
    MyApiKeyDelete(String),
    MyOAuthClients,
    MyOAuthClientCreate,
    MyOAuthClientDelete(String),
    /// `POST /oauth/token` (client credentials grant).
    OAuthToken,

    // Administration.
    AdminSettings,
    AdminSettingsUpdate,
    AdminSettingPut(String),
    AdminPending,
    AdminPendingApprove(String),
    AdminPendingReject(String),
    AdminServerInfo,
    AdminBackup,
    AdminActive,
    AdminUsers,
    AdminUserCreate,
    AdminUserDelete(String),
    AdminUserRole(String),
    AdminUserPassword(String),
    AdminUserLinkOidc(String),
    AdminDevices,
    AdminDeviceDelete(String),
    AdminTeams,
    AdminTeamCreate,
    AdminTeamDelete(String),
    AdminTeamMembers(String),
    AdminTeamMemberAdd(String),
    AdminTeamMemberRemove {
        team: String,
        user: String,
    },
    AdminApiKeys,
    AdminApiKeyDelete(String),
    AdminOAuthClients,
    AdminOAuthClientDelete(String),
    AdminAudit,

    // Usage queries.
    Usage,
    UsageBlocks,
    UsageRecords,
    UsageExport,
    TokiQuery,
    PromQuery,
    PromQueryRange,
    TeamQueryRange(String),
}

#[derive(Debug, PartialEq, Eq)]
pub enum RouteError {
    NotFound,
    MethodNotAllowed(&'static str),
}

/// Picks the endpoint for `method` among those a path offers.
fn pick(
    method: &Method,
    allow: &'static str,
    options: Vec<(Method, Endpoint)>,
) -> Result<Endpoint, RouteError> {
    let method = if method == Method::HEAD { &Method::GET } else { method };
    options.into_iter().find(|(m, _)| m == method).map(|(_, e)| e).ok_or(RouteError::MethodNotAllowed(allow))
}

pub fn route(method: &Method, path: &str) -> Result<Endpoint, RouteError> {
    use Endpoint as E;
    let trimmed = path.strip_prefix('/').unwrap_or(path);
    let trimmed = trimmed.strip_suffix('/').unwrap_or(trimmed);
    let segments: Vec<&str> = trimmed.split('/').collect();
    let get = Method::GET;
    let post = Method::POST;
    let patch = Method::PATCH;
    let put = Method::PUT;
    let delete = Method::DELETE;
    let s = |x: &str| x.to_owned();
    match segments.as_slice() {
        [""] => pick(method, "GET, HEAD", vec![(get, E::Root)]),
        ["health"] => pick(method, "GET, HEAD", vec![(get, E::Health)]),
        ["login"] => pick(method, "GET, HEAD, POST", vec![(get, E::LoginPage), (post, E::Login)]),
        ["register"] => pick(method, "POST", vec![(post, E::Register)]),
        ["token", "refresh"] => pick(method, "POST", vec![(post, E::TokenRefresh)]),
        ["auth-method"] => pick(method, "POST", vec![(post, E::AuthMethod)]),
        ["auth", "info"] => pick(method, "GET, HEAD", vec![(get, E::AuthInfo)]),
        ["auth", "oidc", "authorize"] => pick(method, "GET, HEAD", vec![(get, E::OidcAuthorize)]),
        ["auth", "callback"] | ["auth", "oidc", "callback"] => {
            pick(method, "GET, HEAD", vec![(get, E::OidcCallback)])
        }

        ["auth", "device", "code"] | ["device", "code"] => pick(method, "POST", vec![(post, E::DeviceCode)]),
        ["auth", "device", "token"] => pick(method, "POST", vec![(post, E::DeviceTokenReference)]),
        ["device", "token"] => pick(method, "POST", vec![(post, E::DeviceTokenClient)]),
        ["auth", "device", "verify"] | ["device", "approve"] => {
            pick(method, "POST", vec![(post, E::DeviceApprove)])
        }
        ["device", "lookup"] => pick(method, "POST", vec![(post, E::DeviceLookup)]),

        ["device"] | ["login", "device"] => pick(method, "GET, HEAD", vec![(get, E::DevicePage)]),
        ["dashboard"] => pick(method, "GET, HEAD", vec![(get, E::DashboardPage)]),
        ["assets", name] => pick(method, "GET, HEAD", vec![(get, E::Asset(s(name)))]),

        ["me"] => pick(method, "GET, HEAD", vec![(get, E::Me)]),
        ["me", "devices"] => pick(method, "GET, HEAD", vec![(get, E::MyDevices)]),
        ["me", "devices", id] => pick(method, "DELETE", vec![(delete, E::MyDeviceDelete(s(id)))]),
        ["me", "devices", id, "name"] => pick(method, "PATCH", vec![(patch, E::MyDeviceRename(s(id)))]),
        ["me", "password"] => pick(method, "PATCH", vec![(patch, E::MyPassword)]),
        ["me", "timezone"] => pick(method, "PUT", vec![(Method::PUT, E::MyTimezone)]),
        ["me", "sign-out-everywhere"] => pick(method, "POST", vec![(post, E::MySignOutEverywhere)]),
        ["me", "teams"] => pick(method, "GET, HEAD", vec![(get, E::MyTeams)]),
        ["me", "api-keys"] => {
            pick(method, "GET, HEAD, POST", vec![(get, E::MyApiKeys), (post, E::MyApiKeyCreate)])
        }
        ["me", "api-keys", id] => pick(method, "DELETE", vec![(delete, E::MyApiKeyDelete(s(id)))]),
        ["me", "oauth-clients"] => {
            pick(method, "GET, HEAD, POST", vec![(get, E::MyOAuthClients), (post, E::MyOAuthClientCreate)])
        }
        ["me", "oauth-clients", id] => pick(method, "DELETE", vec![(delete, E::MyOAuthClientDelete(s(id)))]),
        ["oauth", "token"] => pick(method, "POST", vec![(post, E::OAuthToken)]),

        ["admin", "settings"] => {
            pick(method, "GET, HEAD, PATCH", vec![(get, E::AdminSettings), (patch, E::AdminSettingsUpdate)])
        }
        ["admin", "settings", key] => pick(method, "PUT", vec![(put, E::AdminSettingPut(s(key)))]),
        ["admin", "pending"] => pick(method, "GET, HEAD", vec![(get, E::AdminPending)]),
        ["admin", "pending", id] => pick(method, "DELETE", vec![(delete, E::AdminPendingReject(s(id)))]),
        ["admin", "pending", id, "approve"] => {
            pick(method, "POST", vec![(post, E::AdminPendingApprove(s(id)))])
        }
        ["admin", "pending", id, "reject"] => {
            pick(method, "POST", vec![(post, E::AdminPendingReject(s(id)))])
        }
        ["admin", "backup"] => pick(method, "GET, HEAD", vec![(get, E::AdminBackup)]),
        ["admin", "server-info"] => pick(method, "GET, HEAD", vec![(get, E::AdminServerInfo)]),
        ["admin", "active"] => pick(method, "GET, HEAD", vec![(get, E::AdminActive)]),
        ["admin", "users"] => {
            pick(method, "GET, HEAD, POST", vec![(get, E::AdminUsers), (post, E::AdminUserCreate)])
        }
        ["admin", "users", id] => pick(method, "DELETE", vec![(delete, E::AdminUserDelete(s(id)))]),
        ["admin", "users", id, "role"] => pick(method, "PATCH", vec![(patch, E::AdminUserRole(s(id)))]),
        ["admin", "users", id, "password"] => {
            pick(method, "PATCH", vec![(patch, E::AdminUserPassword(s(id)))])
        }
        ["admin", "users", id, "oidc"] => pick(method, "POST", vec![(post, E::AdminUserLinkOidc(s(id)))]),
        ["admin", "devices"] => pick(method, "GET, HEAD", vec![(get, E::AdminDevices)]),
        ["admin", "devices", id] => pick(method, "DELETE", vec![(delete, E::AdminDeviceDelete(s(id)))]),
        ["admin", "teams"] => {
            pick(method, "GET, HEAD, POST", vec![(get, E::AdminTeams), (post, E::AdminTeamCreate)])
        }
        ["admin", "teams", id] => pick(method, "DELETE", vec![(delete, E::AdminTeamDelete(s(id)))]),
        ["admin", "teams", id, "members"] => pick(
            method,
            "GET, HEAD, POST",
            vec![(get, E::AdminTeamMembers(s(id))), (post, E::AdminTeamMemberAdd(s(id)))],
        ),
        ["admin", "teams", team, "members", user] => {
            pick(method, "DELETE", vec![(delete, E::AdminTeamMemberRemove { team: s(team), user: s(user) })])
        }

        ["api", "v1", "usage"] => pick(method, "GET, HEAD", vec![(get, E::Usage)]),
        ["api", "v1", "usage", "blocks"] => pick(method, "GET, HEAD", vec![(get, E::UsageBlocks)]),
        ["api", "v1", "usage", "records"] => pick(method, "GET, HEAD", vec![(get, E::UsageRecords)]),
        ["api", "v1", "usage", "export"] => pick(method, "GET, HEAD", vec![(get, E::UsageExport)]),
        ["admin", "api-keys"] => pick(method, "GET, HEAD", vec![(get, E::AdminApiKeys)]),
        ["admin", "api-keys", id] => pick(method, "DELETE", vec![(delete, E::AdminApiKeyDelete(s(id)))]),
        ["admin", "oauth-clients"] => pick(method, "GET, HEAD", vec![(get, E::AdminOAuthClients)]),
        ["admin", "oauth-clients", id] => {
            pick(method, "DELETE", vec![(delete, E::AdminOAuthClientDelete(s(id)))])
        }
        ["admin", "audit"] => pick(method, "GET, HEAD", vec![(get, E::AdminAudit)]),
        ["api", "v1", "toki", "query"] => pick(method, "GET, HEAD", vec![(get, E::TokiQuery)]),
        // PromQL: POST with a form body too, as Grafana and Prometheus clients send by default.
        ["api", "v1", "query"] => {
            pick(method, "GET, HEAD, POST", vec![(get, E::PromQuery), (post, E::PromQuery)])
        }
        ["api", "v1", "query_range"] => {
            pick(method, "GET, HEAD, POST", vec![(get, E::PromQueryRange), (post, E::PromQueryRange)])
        }
        ["api", "v1", "teams", team, "query_range"] => pick(
            method,
            "GET, HEAD, POST",
            vec![(get, E::TeamQueryRange(s(team))), (post, E::TeamQueryRange(s(team)))],
        ),
        _ => Err(RouteError::NotFound),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes() {
        assert_eq!(route(&Method::GET, "/health"), Ok(Endpoint::Health));
        assert_eq!(route(&Method::HEAD, "/health"), Ok(Endpoint::Health));
        assert_eq!(route(&Method::GET, "/health/"), Ok(Endpoint::Health));
        assert_eq!(route(&Method::POST, "/health"), Err(RouteError::MethodNotAllowed("GET, HEAD")));
        assert_eq!(route(&Method::DELETE, "/login"), Err(RouteError::MethodNotAllowed("GET, HEAD, POST")));
        assert_eq!(route(&Method::GET, "/nope"), Err(RouteError::NotFound));
        assert_eq!(route(&Method::GET, "//health"), Err(RouteError::NotFound));
        assert_eq!(route(&Method::POST, "/token/refresh"), Ok(Endpoint::TokenRefresh));
        assert_eq!(route(&Method::GET, "/auth/oidc/authorize"), Ok(Endpoint::OidcAuthorize));
        assert_eq!(route(&Method::GET, "/auth/callback"), Ok(Endpoint::OidcCallback));
        assert_eq!(route(&Method::GET, "/auth/oidc/callback"), Ok(Endpoint::OidcCallback));
        assert_eq!(route(&Method::POST, "/admin/users/u/oidc"), Ok(Endpoint::AdminUserLinkOidc("u".into())));
    }

    #[test]
    fn both_device_flow_path_families() {
        assert_eq!(route(&Method::POST, "/device/code"), Ok(Endpoint::DeviceCode));
        assert_eq!(route(&Method::POST, "/auth/device/code"), Ok(Endpoint::DeviceCode));
        assert_eq!(route(&Method::POST, "/device/token"), Ok(Endpoint::DeviceTokenClient));
        assert_eq!(route(&Method::POST, "/auth/device/token"), Ok(Endpoint::DeviceTokenReference));
        assert_eq!(route(&Method::POST, "/device/approve"), Ok(Endpoint::DeviceApprove));
        assert_eq!(route(&Method::POST, "/auth/device/verify"), Ok(Endpoint::DeviceApprove));
        assert_eq!(route(&Method::GET, "/device"), Ok(Endpoint::DevicePage));
        assert_eq!(route(&Method::GET, "/login/device"), Ok(Endpoint::DevicePage));
        assert_eq!(route(&Method::GET, "/login"), Ok(Endpoint::LoginPage));
        assert_eq!(route(&Method::POST, "/login"), Ok(Endpoint::Login));
        assert_eq!(route(&Method::GET, "/"), Ok(Endpoint::Root));
    }

    #[test]
    fn parameters_and_methods() {
        assert_eq!(route(&Method::DELETE, "/me/devices/abc"), Ok(Endpoint::MyDeviceDelete("abc".into())));
        assert_eq!(route(&Method::PATCH, "/me/devices/abc/name"), Ok(Endpoint::MyDeviceRename("abc".into())));
        assert_eq!(route(&Method::GET, "/me/devices/abc"), Err(RouteError::MethodNotAllowed("DELETE")));
        assert_eq!(
            route(&Method::DELETE, "/admin/pending/u1"),
            Ok(Endpoint::AdminPendingReject("u1".into()))
        );
        assert_eq!(
            route(&Method::POST, "/admin/pending/u1/reject"),
            Ok(Endpoint::AdminPendingReject("u1".into()))
        );
        assert_eq!(
            route(&Method::PUT, "/admin/settings/registration_mode"),
            Ok(Endpoint::AdminSettingPut("registration_mode".into()))
        );
        assert_eq!(
            route(&Method::DELETE, "/admin/teams/t/members/u"),
            Ok(Endpoint::AdminTeamMemberRemove { team: "t".into(), user: "u".into() })
        );
        assert_eq!(route(&Method::GET, "/assets/app.css"), Ok(Endpoint::Asset("app.css".into())));
        assert_eq!(route(&Method::GET, "/assets/a/b.css"), Err(RouteError::NotFound));
        assert_eq!(route(&Method::GET, "/api/v1/usage"), Ok(Endpoint::Usage));
        assert_eq!(route(&Method::GET, "/api/v1/usage/blocks"), Ok(Endpoint::UsageBlocks));
        assert_eq!(route(&Method::GET, "/api/v1/toki/query"), Ok(Endpoint::TokiQuery));
        assert_eq!(route(&Method::GET, "/api/v1/query"), Ok(Endpoint::PromQuery));
        assert_eq!(route(&Method::POST, "/api/v1/query_range"), Ok(Endpoint::PromQueryRange));
        assert_eq!(route(&Method::POST, "/api/v1/query"), Ok(Endpoint::PromQuery));
        assert_eq!(
            route(&Method::PUT, "/api/v1/query"),
            Err(RouteError::MethodNotAllowed("GET, HEAD, POST"))
        );
        assert_eq!(
            route(&Method::POST, "/api/v1/teams/t1/query_range"),
            Ok(Endpoint::TeamQueryRange("t1".into()))
        );
        assert_eq!(
            route(&Method::GET, "/api/v1/teams/t1/query_range"),
            Ok(Endpoint::TeamQueryRange("t1".into()))
        );
    }
}
