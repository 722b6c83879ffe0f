//! One file per area of the API; `dispatch` maps each endpoint to its handler.

mod auth;

use std::sync::Arc;

use super::error::ApiError;
use super::request::Request;
use super::response::HttpResponse;
use super::router::Endpoint;
use crate::app::App;

pub async fn dispatch(app: &Arc<App>, endpoint: Endpoint, req: Request) -> Result<HttpResponse, ApiError> {
    match endpoint {
        Endpoint::Health => auth::health(),
        Endpoint::Login => auth::login(app, req).await,
        Endpoint::Register => auth::register(app, req).await,
        Endpoint::TokenRefresh => auth::refresh(app, req).await,
        Endpoint::AuthMethod => auth::auth_method(app, req).await,
        Endpoint::AuthInfo => auth::auth_info(app).await,
    }
}
