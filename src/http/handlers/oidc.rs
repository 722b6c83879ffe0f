//! OpenID Connect sign-in: `GET /auth/oidc/authorize` sends the browser to the provider,
//! `GET /auth/callback` (and `/auth/oidc/callback`) brings it back with tokens. A callback that
//! cannot sign anyone in ends on a small page saying why, never with tokens. Also the admin API
//! that links an account to a provider identity.

use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, HeaderValue, LOCATION};
use hyper::{Response, StatusCode};
use serde::Deserialize;

use crate::app::App;
use crate::auth::oidc::accounts::{self, SignInError};
use crate::auth::oidc::pending::{BeginError, ReturnTo, TakeError};
use crate::auth::oidc::{AuthorizeError, CallbackError, Oidc, redirect};
use crate::http::error::ApiError;
use crate::http::guard;
use crate::http::request::Request;
use crate::http::response::{HttpResponse, ok};
use crate::store::users::oidc_key;

/// Pages of this module: one stylesheet, no scripts, nothing from elsewhere.
const PAGE_CSP: &str = "default-src 'none'; style-src 'self'; img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

fn oidc(app: &App) -> Result<&Arc<Oidc>, ApiError> {
    app.oidc.as_ref().ok_or_else(|| ApiError::not_found("OIDC sign-in is not configured on this server"))
}

fn temporary_redirect(location: &str) -> Result<HttpResponse, ApiError> {
    let mut resp = Response::new(Full::new(Bytes::new()));
    *resp.status_mut() = StatusCode::TEMPORARY_REDIRECT;
    let value = HeaderValue::from_str(location)
        .map_err(|e| ApiError::internal(format!("bad redirect target: {e}")))?;
    resp.headers_mut().insert(LOCATION, value);
    Ok(resp)
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

/// A page that says why the sign-in ended, with a way back.
fn failure_page(status: StatusCode, title: &str, detail: &str) -> HttpResponse {
    let html = format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{t} · toki-sync</title><link rel=\"stylesheet\" href=\"/assets/app.css\"></head>\
         <body><header class=\"top\"><span class=\"brand\">toki-sync</span></header>\
         <main class=\"narrow\"><section class=\"card\" id=\"signin-failed\"><h1>{t}</h1>\
         <p id=\"reason\">{d}</p><p><a href=\"/login\">Back to sign-in</a></p></section></main></body></html>\n",
        t = escape(title),
        d = escape(detail),
    );
    let mut resp = Response::new(Full::new(Bytes::from(html)));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
    h.insert(CONTENT_SECURITY_POLICY, HeaderValue::from_static(PAGE_CSP));
    h.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

/// `GET /auth/oidc/authorize[?redirect_uri=…][&client_state=…][&return_to=/device]`
pub async fn authorize(app: &Arc<App>, req: Request) -> Result<HttpResponse, ApiError> {
    let oidc = oidc(app)?;
    let return_to = match req.query("redirect_uri") {
        Some(uri) => {
            redirect::check_loopback_redirect(&uri).map_err(ApiError::bad_request)?;
            ReturnTo::Cli(uri)
        }
        None => ReturnTo::Page(redirect::page_for(req.query("return_to").as_deref()).to_owned()),
    };
    let client_state = req.query("client_state");
    if let Some(cs) = &client_state {
        redirect::check_client_state(cs).map_err(ApiError::bad_request)?;
    }
    let address = crate::net::address_group(req.client_ip).to_string();
    match oidc.authorize(return_to, client_state, address) {
        Ok(url) => temporary_redirect(&url),
        Err(AuthorizeError::NotReady(why)) => {
            tracing::warn!("{why}");
            Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "SSO sign-in is not available yet: the identity provider cannot be reached; try again shortly",
            ))
        }
        Err(AuthorizeError::Busy(BeginError::TooManyFromAddress)) => Err(ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "too many sign-ins in progress from this address; finish one or wait 10 minutes",
        )),
        Err(AuthorizeError::Busy(BeginError::TooMany)) => Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "too many sign-ins in progress; try again in a few minutes",
        )),
    }
}

/// `GET /auth/callback?code=…&state=…` or `?error=…&state=…`
pub async fn callback(app: &Arc<App>, req: Request) -> Result<HttpResponse, ApiError> {
    let oidc = Arc::clone(oidc(app)?);
    let bad = StatusCode::BAD_REQUEST;
    let state = req.query("state").filter(|s| !s.is_empty());
    // The state is taken out first, whatever else the callback says: it is single use.
    let pending = match state.as_deref().map(|s| oidc.take_state(s)) {
        None => {
            tracing::warn!("OIDC callback without state");
            return Ok(failure_page(
                bad,
                "Sign-in failed",
                "The sign-in response has no state. Start again from the sign-in page.",
            ));
        }
        Some(Err(CallbackError::State(TakeError::Expired))) => {
            tracing::warn!("OIDC callback with an expired state");
            return Ok(failure_page(
                bad,
                "Sign-in expired",
                "This sign-in took longer than 10 minutes. Start again from the sign-in page.",
            ));
        }
        Some(Err(_)) => {
            tracing::warn!("OIDC callback with an unknown or already used state");
            return Ok(failure_page(
                bad,
                "Sign-in failed",
                "This sign-in response is unknown or was already used. Start again from the sign-in page.",
            ));
        }
        Some(Ok(p)) => p,
    };
    if let Some(error) = req.query("error") {
        let description = req.query("error_description").unwrap_or_default();
        tracing::warn!(%error, %description, "the identity provider refused the sign-in");
        let detail: String = format!(
            "The identity provider refused the sign-in: {error}{}{description}",
            if description.is_empty() { "" } else { ": " }
        )
        .chars()
        .take(500)
        .collect();
        return Ok(failure_page(bad, "Sign-in refused", &detail));
    }
    let Some(code) = req.query("code").filter(|c| !c.is_empty() && c.len() <= 4096) else {
        return Ok(failure_page(
            bad,
            "Sign-in failed",
            "The sign-in response has no code. Start again from the sign-in page.",
        ));
    };
    let finished = {
        let oidc = Arc::clone(&oidc);
        tokio::task::spawn_blocking(move || oidc.finish(&pending, &code).map(|id| (pending, id)))
            .await
            .map_err(|e| ApiError::internal(format!("OIDC task failed: {e}")))?
    };
    let (pending, identity) = match finished {
        Ok(v) => v,
        Err(CallbackError::Verification(why)) => {
            tracing::warn!(reason = %why, "OIDC ID token refused");
            return Ok(failure_page(
                bad,
                "Sign-in failed",
                &format!("The identity provider's answer failed verification: {why}"),
            ));
        }
        Err(CallbackError::Exchange(why)) | Err(CallbackError::NotReady(why)) => {
            tracing::warn!(reason = %why, "OIDC code exchange failed");
            return Ok(failure_page(
                StatusCode::BAD_GATEWAY,
                "Sign-in failed",
                "The sign-in could not be completed with the identity provider. Start again from the sign-in page.",
            ));
        }
        Err(CallbackError::State(_)) => unreachable!("the state was taken before"),
    };
    let signed_in = app
        .blocking(move |a| {
            let mode = a.registration_mode()?;
            let user = match accounts::sign_in(&a.store, &a.config.oidc, mode, &identity) {
                Ok(u) => u,
                Err(e) => return Ok(Err(e)),
            };
            let pair = a.tokens.issue(&a.store, &user, None)?;
            Ok::<_, crate::store::StoreError>(Ok((user, pair)))
        })
        .await??;
    let (user, pair) = match signed_in {
        Ok(v) => v,
        Err(SignInError::Refused(r)) => {
            tracing::info!(reason = ?r, "OIDC sign-in refused");
            return Ok(failure_page(StatusCode::FORBIDDEN, "Sign-in refused", r.message()));
        }
        Err(SignInError::Store(e)) => return Err(e.into()),
    };
    tracing::info!(user = %user.username, "signed in through OIDC");
    let location = match &pending.return_to {
        ReturnTo::Cli(uri) => redirect::cli_location(uri, &pair),
        ReturnTo::Page(page) => redirect::page_location(page, &pair, pending.client_state.as_deref()),
    };
    temporary_redirect(&location)
}

#[derive(Deserialize)]
struct LinkBody {
    subject: String,
    #[serde(default)]
    issuer: Option<String>,
}

/// `POST /admin/users/:id/oidc` `{subject, issuer?}`: links an account to a provider identity.
pub async fn link(app: &Arc<App>, req: Request, raw_id: &str) -> Result<HttpResponse, ApiError> {
    guard::admin(app, &req).await?;
    let body: LinkBody = req.json()?;
    let subject = body.subject.trim().to_owned();
    if subject.is_empty() || subject.len() > 255 || subject.chars().any(char::is_control) {
        return Err(ApiError::unprocessable("subject must be 1-255 characters without control characters"));
    }
    let issuer = match body.issuer.or_else(|| app.config.oidc.issuer_url.clone()) {
        Some(i) if !i.is_empty() && !i.contains('|') => i,
        Some(_) => return Err(ApiError::unprocessable("issuer must be the provider's issuer URL")),
        None => {
            return Err(ApiError::unprocessable("issuer is required: OIDC is not configured on this server"));
        }
    };
    let user = super::admin::user_by_path(app, raw_id, "user not found").await?;
    let key = oidc_key(&issuer, &subject);
    let linked = app.blocking(move |a| a.store.link_oidc(user.id, &key)).await??;
    tracing::info!(user = %linked.username, "account linked to an OIDC identity");
    Ok(ok(&super::views::user(&linked)))
}
