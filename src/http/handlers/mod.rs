//! One file per area of the API; `dispatch` maps each endpoint to its handler.

mod admin;
mod audit;
mod auth;
mod backup;
mod credentials;
mod device;
mod me;
mod oauth;
mod oidc;
mod pages;
mod query;
mod records;
mod teams;
mod usage;
pub mod views;

/// For the fuzz harness (`src/fuzzing.rs`): the bodies of the handlers that hash a password.
pub(crate) use self::{
    admin::CreateUserBody,
    auth::{LoginBody, RegisterBody},
};

use std::sync::Arc;

use super::error::ApiError;
use super::guard;
use super::ratelimit::{self, Class, Subject};
use super::request::Request;
use super::response::HttpResponse;
use super::router::Endpoint;
use crate::app::App;
use device::PendingStatus;

/// Handles a request, with the rate-limit headers on every API answer (see `http::ratelimit`):
/// the guard counts requests with a principal; the rest count under their address group.
pub async fn dispatch(app: &Arc<App>, endpoint: Endpoint, req: Request) -> Result<HttpResponse, ApiError> {
    guard::with_caller(limited(app, endpoint, req)).await
}

async fn limited(app: &Arc<App>, endpoint: Endpoint, req: Request) -> Result<HttpResponse, ApiError> {
    let Some(class) = guard::class(&req.method, &endpoint) else { return handle(app, endpoint, req).await };
    let address = Subject::Address(crate::net::address_group(req.client_ip));
    let (result, counted) = ratelimit::counting(async {
        if class == Class::Anonymous {
            let status = app.ratelimit.hit(address.clone(), Class::Anonymous);
            ratelimit::record(status);
            if let Some(s) = status.filter(|s| s.exceeded) {
                return Err(ApiError::new(hyper::StatusCode::TOO_MANY_REQUESTS, s.message()));
            }
        }
        handle(app, endpoint, req).await
    })
    .await;
    // No principal was established (the credential failed): count it under the address.
    let counted = counted.or_else(|| app.ratelimit.hit(address, Class::Anonymous));
    let mut resp = result.unwrap_or_else(ApiError::into_response);
    if let Some(status) = counted {
        status.apply(&mut resp);
    }
    Ok(resp)
}

async fn handle(app: &Arc<App>, endpoint: Endpoint, req: Request) -> Result<HttpResponse, ApiError> {
    use Endpoint as E;
    match endpoint {
        E::Health => auth::health(),
        E::Login => auth::login(app, req).await,
        E::Register => auth::register(app, req).await,
        E::TokenRefresh => auth::refresh(app, req).await,
        E::AuthMethod => auth::auth_method(app, req).await,
        E::AuthInfo => auth::auth_info(app).await,
        E::OidcAuthorize => oidc::authorize(app, req).await,
        E::OidcCallback => oidc::callback(app, req).await,

        E::DeviceCode => device::code(app, req).await,
        E::DeviceTokenReference => device::token(app, req, PendingStatus::Reference).await,
        E::DeviceTokenClient => device::token(app, req, PendingStatus::Client).await,
        E::DeviceApprove => device::approve(app, req).await,
        E::DeviceLookup => device::lookup(app, req).await,

        E::Root => pages::root(),
        E::LoginPage => pages::login(&req),
        E::DevicePage => pages::device(&req),
        E::DashboardPage => pages::dashboard(&req),
        E::Asset(name) => pages::asset(&name, &req),

        E::Me => me::me(app, req).await,
        E::MyDevices => me::devices(app, req).await,
        E::MyDeviceDelete(id) => me::delete(app, req, &id).await,
        E::MyDeviceRename(id) => me::rename(app, req, &id).await,
        E::MyPassword => me::password(app, req).await,
        E::MySignOutEverywhere => me::sign_out_everywhere(app, req).await,
        E::MyTimezone => me::set_timezone(app, req).await,
        E::MyTeams => me::teams(app, req).await,
        E::MyApiKeys => credentials::my_keys(app, req).await,
        E::MyApiKeyCreate => credentials::create_key(app, req).await,
        E::MyApiKeyDelete(id) => credentials::delete_my_key(app, req, &id).await,
        E::MyOAuthClients => credentials::my_clients(app, req).await,
        E::MyOAuthClientCreate => credentials::create_client(app, req).await,
        E::MyOAuthClientDelete(id) => credentials::delete_my_client(app, req, &id).await,
        E::OAuthToken => oauth::token(app, req).await,

        E::AdminSettings => admin::settings(app, req).await,
        E::AdminSettingsUpdate => admin::update_settings(app, req).await,
        E::AdminSettingPut(key) => admin::put_setting(app, req, &key).await,
        E::AdminPending => admin::pending(app, req).await,
        E::AdminPendingApprove(id) => admin::approve_pending(app, req, &id).await,
        E::AdminPendingReject(id) => admin::reject_pending(app, req, &id).await,
        E::AdminBackup => backup::backup(app, req).await,
        E::AdminServerInfo => admin::server_info(app, req).await,
        E::AdminActive => admin::active(app, req).await,
        E::AdminUsers => admin::users(app, req).await,
        E::AdminUserCreate => admin::create_user(app, req).await,
        E::AdminUserDelete(id) => admin::delete_user(app, req, &id).await,
        E::AdminUserRole(id) => admin::user_role(app, req, &id).await,
        E::AdminUserPassword(id) => admin::user_password(app, req, &id).await,
        E::AdminUserLinkOidc(id) => oidc::link(app, req, &id).await,
        E::AdminDevices => admin::devices(app, req).await,
        E::AdminDeviceDelete(id) => admin::delete_device(app, req, &id).await,
        E::AdminTeams => teams::list(app, req).await,
        E::AdminTeamCreate => teams::create(app, req).await,
        E::AdminTeamDelete(id) => teams::delete(app, req, &id).await,
        E::AdminTeamMembers(id) => teams::members(app, req, &id).await,
        E::AdminTeamMemberAdd(id) => teams::add_member(app, req, &id).await,
        E::AdminTeamMemberRemove { team, user } => teams::remove_member(app, req, &team, &user).await,
        E::AdminApiKeys => credentials::all_keys(app, req).await,
        E::AdminApiKeyDelete(id) => credentials::admin_delete_key(app, req, &id).await,
        E::AdminOAuthClients => credentials::all_clients(app, req).await,
        E::AdminOAuthClientDelete(id) => credentials::admin_delete_client(app, req, &id).await,
        E::AdminAudit => audit::list(app, req).await,

        E::Usage => usage::usage(app, req).await,
        E::UsageBlocks => usage::blocks(app, req).await,
        E::UsageRecords => records::records(app, req).await,
        E::UsageExport => records::export(app, req).await,
        E::TokiQuery => query::toki(app, req).await,
        E::PromQuery => query::promql(app, req, query::PromKind::Instant).await,
        E::PromQueryRange => query::promql(app, req, query::PromKind::Range).await,
        E::TeamQueryRange(team) => query::team_range(app, req, &team).await,
    }
}
