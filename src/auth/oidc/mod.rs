//! Sign-in through an OpenID Connect provider (authorization code flow with PKCE S256, state and
//! nonce). The `openidconnect` crate does discovery, the code exchange and the ID token checks
//! (signature against the provider's keys, issuer, audience, expiry, nonce); every request it
//! makes goes through [`crate::outbound::Outbound`].
//!
//! Discovery runs in the background: an unreachable provider does not stop start-up, it is
//! retried with back-off, and until it succeeds `/auth/oidc/authorize` answers 503. The key set
//! is fetched again when an ID token names a key it does not hold (key rotation).

pub mod accounts;
pub mod http;
pub mod pending;
pub mod redirect;

use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use openidconnect::core::{
    CoreAuthenticationFlow, CoreClient, CoreIdTokenVerifier, CoreJsonWebKeySet, CoreJwsSigningAlgorithm,
    CoreProviderMetadata,
};
use openidconnect::{
    AuthorizationCode, ClaimsVerificationError, ClientId, ClientSecret, CsrfToken, IssuerUrl, Nonce,
    OAuth2TokenResponse, PkceCodeChallenge, PkceCodeVerifier, RedirectUrl, Scope, SignatureVerificationError,
    TokenResponse,
};
use serde_json::Value;

use crate::config::Config;
use crate::outbound::Outbound;
use pending::{BeginError, Pending, PendingStates, ReturnTo, TakeError};

/// Discovery retries: the first after this, doubling up to [`RETRY_MAX`].
const RETRY_FIRST: Duration = Duration::from_secs(1);
const RETRY_MAX: Duration = Duration::from_secs(300);

/// ID token signatures accepted: the asymmetric algorithms (RS256 is most providers' default,
/// Kanidm and Pocket ID sign with ES256) and only these, whatever the discovery document
/// offers. Never `none`, and never HMAC keyed with the client secret (which the client holds too).
const SIGNING_ALGS: [CoreJwsSigningAlgorithm; 10] = [
    CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256,
    CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha384,
    CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha512,
    CoreJwsSigningAlgorithm::RsaSsaPssSha256,
    CoreJwsSigningAlgorithm::RsaSsaPssSha384,
    CoreJwsSigningAlgorithm::RsaSsaPssSha512,
    CoreJwsSigningAlgorithm::EcdsaP256Sha256,
    CoreJwsSigningAlgorithm::EcdsaP384Sha384,
    CoreJwsSigningAlgorithm::EcdsaP521Sha512,
    CoreJwsSigningAlgorithm::EdDsa,
];

/// What the provider says about the person who signed in, after the ID token was verified.
#[derive(Clone, Debug)]
pub struct Identity {
    pub issuer: String,
    pub subject: String,
    /// The configured username claim, if present and a string.
    pub username: Option<String>,
    pub email: Option<String>,
    /// The configured groups claim; `None` when no groups claim is configured.
    pub groups: Option<Vec<String>>,
}

struct Provider {
    metadata: CoreProviderMetadata,
    jwks: RwLock<CoreJsonWebKeySet>,
}

pub struct Oidc {
    issuer: IssuerUrl,
    client_id: ClientId,
    secret: Option<ClientSecret>,
    redirect: RedirectUrl,
    scopes: Vec<String>,
    username_claim: String,
    groups_claim: Option<String>,
    http: Outbound,
    provider: RwLock<Option<Arc<Provider>>>,
    /// Why discovery has not succeeded yet (for the 503 and the log).
    last_error: Mutex<String>,
    pub pending: PendingStates,
}

/// Why `/auth/oidc/authorize` cannot start a sign-in.
#[derive(Debug)]
pub enum AuthorizeError {
    /// Discovery has not succeeded yet.
    NotReady(String),
    Busy(BeginError),
}

/// Why a callback ends without tokens. Each is shown to the person on a page.
#[derive(Debug)]
pub enum CallbackError {
    State(TakeError),
    /// The provider could not be reached or answered the code exchange with an error.
    Exchange(String),
    /// The ID token failed a check.
    Verification(String),
    NotReady(String),
}

impl Oidc {
    /// `None` when OIDC is not configured. The configuration was checked at load.
    pub fn from_config(cfg: &Config) -> Result<Option<Oidc>, String> {
        let o = &cfg.oidc;
        let (Some(issuer), Some(client_id)) = (&o.issuer_url, &o.client_id) else { return Ok(None) };
        let redirect = crate::config::oidc_redirect_url(cfg).ok_or("`oidc.redirect_url` is unset")?;
        Ok(Some(Oidc {
            issuer: IssuerUrl::new(issuer.clone()).map_err(|e| format!("`oidc.issuer_url`: {e}"))?,
            client_id: ClientId::new(client_id.clone()),
            secret: cfg.secrets.oidc_client_secret.clone().map(ClientSecret::new),
            redirect: RedirectUrl::new(redirect).map_err(|e| format!("`oidc.redirect_url`: {e}"))?,
            scopes: o.scopes.clone(),
            username_claim: o.username_claim.clone(),
            groups_claim: o.groups_claim.clone(),
            http: Outbound::new(Duration::from_secs(o.http_timeout_secs), http::MAX_RESPONSE_BYTES, None)?,
            provider: RwLock::new(None),
            last_error: Mutex::new("the identity provider has not been contacted yet".into()),
            pending: PendingStates::default(),
        }))
    }

    pub fn issuer(&self) -> &str {
        self.issuer.as_str()
    }

    pub fn ready(&self) -> bool {
        self.provider.read().unwrap_or_else(|e| e.into_inner()).is_some()
    }

    fn provider(&self) -> Result<Arc<Provider>, String> {
        match &*self.provider.read().unwrap_or_else(|e| e.into_inner()) {
            Some(p) => Ok(Arc::clone(p)),
            None => Err(self.last_error.lock().unwrap_or_else(|e| e.into_inner()).clone()),
        }
    }

    /// One discovery attempt (document and key set). Blocking.
    pub fn discover(&self) -> Result<(), String> {
        match CoreProviderMetadata::discover(&self.issuer, &self.http) {
            Ok(metadata) => {
                let jwks = RwLock::new(metadata.jwks().clone());
                *self.provider.write().unwrap_or_else(|e| e.into_inner()) =
                    Some(Arc::new(Provider { metadata, jwks }));
                Ok(())
            }
            Err(e) => {
                let msg = format!("OIDC discovery at {} failed: {}", self.issuer.as_str(), error_chain(&e));
                *self.last_error.lock().unwrap_or_else(|e| e.into_inner()) = msg.clone();
                Err(msg)
            }
        }
    }

    /// Runs discovery until it succeeds, with back-off; returns when it has (or on shutdown).
    pub async fn discover_until_ready(self: Arc<Self>, mut stop: crate::shutdown::ShutdownSignal) {
        let mut delay = RETRY_FIRST;
        loop {
            let me = Arc::clone(&self);
            match tokio::task::spawn_blocking(move || me.discover()).await {
                Ok(Ok(())) => {
                    tracing::info!(
                        issuer = self.issuer.as_str(),
                        "OIDC provider discovered; SSO sign-in is available"
                    );
                    return;
                }
                Ok(Err(msg)) => {
                    tracing::warn!(
                        retry_in_secs = delay.as_secs(),
                        "{msg}; SSO sign-in answers 503 until it succeeds"
                    )
                }
                Err(e) => tracing::warn!(error = %e, "OIDC discovery task failed"),
            }
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = stop.wait() => return,
            }
            delay = (delay * 2).min(RETRY_MAX);
        }
    }

    fn client(
        &self,
        provider: &Provider,
    ) -> openidconnect::core::CoreClient<
        openidconnect::EndpointSet,
        openidconnect::EndpointNotSet,
        openidconnect::EndpointNotSet,
        openidconnect::EndpointNotSet,
        openidconnect::EndpointMaybeSet,
        openidconnect::EndpointMaybeSet,
    > {
        let jwks = provider.jwks.read().unwrap_or_else(|e| e.into_inner()).clone();
        CoreClient::from_provider_metadata(
            provider.metadata.clone().set_jwks(jwks),
            self.client_id.clone(),
            self.secret.clone(),
        )
        .set_redirect_uri(self.redirect.clone())
    }

    /// Starts a sign-in: records state, nonce and PKCE verifier, and returns the provider URL to
    /// send the browser to.
    pub fn authorize(
        &self,
        return_to: ReturnTo,
        client_state: Option<String>,
        address: String,
    ) -> Result<String, AuthorizeError> {
        let provider = self.provider().map_err(AuthorizeError::NotReady)?;
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let client = self.client(&provider);
        let mut request = client
            .authorize_url(
                CoreAuthenticationFlow::AuthorizationCode,
                CsrfToken::new_random,
                Nonce::new_random,
            )
            .set_pkce_challenge(challenge);
        for scope in self.scopes.iter().filter(|s| s.as_str() != "openid") {
            request = request.add_scope(Scope::new(scope.clone()));
        }
        let (url, state, nonce) = request.url();
        self.pending
            .insert(
                state.secret().clone(),
                nonce.secret().clone(),
                verifier.secret().clone(),
                return_to,
                client_state,
                address,
            )
            .map_err(AuthorizeError::Busy)?;
        Ok(url.to_string())
    }

    /// Finishes a sign-in: exchanges the code and verifies the ID token. Blocking. The pending
    /// state was already taken out by the caller (it is single use whatever happens next).
    pub fn finish(&self, pending: &Pending, code: &str) -> Result<Identity, CallbackError> {
        let provider = self.provider().map_err(CallbackError::NotReady)?;
        let client = self.client(&provider);
        let response = client
            .exchange_code(AuthorizationCode::new(code.to_owned()))
            .map_err(|e| CallbackError::Exchange(e.to_string()))?
            .set_pkce_verifier(PkceCodeVerifier::new(pending.pkce_verifier.clone()))
            .request(&self.http)
            .map_err(|e| CallbackError::Exchange(error_chain(&e)))?;
        let id_token = response
            .id_token()
            .ok_or_else(|| CallbackError::Verification("the provider sent no ID token".into()))?;
        let nonce = Nonce::new(pending.nonce.clone());
        let verify = |client: &CoreClient<_, _, _, _, _, _>| -> Result<(), ClaimsVerificationError> {
            let verifier: CoreIdTokenVerifier = client.id_token_verifier().set_allowed_algs(SIGNING_ALGS);
            id_token.claims(&verifier, &nonce).map(drop)
        };
        match verify(&client) {
            Ok(()) => {}
            Err(ClaimsVerificationError::SignatureVerification(
                SignatureVerificationError::NoMatchingKey,
            )) => {
                // The provider may have rotated its keys since discovery: fetch them again, once.
                let fresh =
                    CoreJsonWebKeySet::fetch(provider.metadata.jwks_uri(), &self.http).map_err(|e| {
                        CallbackError::Exchange(format!("fetching the provider's keys: {}", error_chain(&e)))
                    })?;
                *provider.jwks.write().unwrap_or_else(|e| e.into_inner()) = fresh;
                tracing::info!("OIDC: fetched the provider's signing keys again (unknown key id)");
                verify(&self.client(&provider)).map_err(|e| CallbackError::Verification(e.to_string()))?;
            }
            Err(e) => return Err(CallbackError::Verification(e.to_string())),
        }
        // Verified: read the claims (standard and configured ones) from the token's payload.
        let claims = payload(&id_token.to_string()).map_err(CallbackError::Verification)?;
        let mut identity = self.identity_from(&claims)?;
        if self.needs_userinfo(&identity) {
            if let Some(info) = self.userinfo(&provider, response.access_token().secret(), &identity.subject)
            {
                self.fill_from(&mut identity, &info);
            }
        }
        Ok(identity)
    }

    fn identity_from(&self, claims: &Value) -> Result<Identity, CallbackError> {
        let subject = claims
            .get("sub")
            .and_then(Value::as_str)
            .ok_or_else(|| CallbackError::Verification("the ID token has no subject".into()))?;
        let mut identity = Identity {
            issuer: self.issuer.as_str().to_owned(),
            subject: subject.to_owned(),
            username: None,
            email: None,
            groups: None,
        };
        self.fill_from(&mut identity, claims);
        Ok(identity)
    }

    fn fill_from(&self, identity: &mut Identity, claims: &Value) {
        if identity.username.is_none() {
            identity.username = claims.get(&self.username_claim).and_then(Value::as_str).map(str::to_owned);
        }
        if identity.email.is_none() {
            identity.email = claims.get("email").and_then(Value::as_str).map(str::to_owned);
        }
        if let (None, Some(claim)) = (&identity.groups, &self.groups_claim) {
            identity.groups = match claims.get(claim) {
                Some(Value::Array(items)) => {
                    Some(items.iter().filter_map(Value::as_str).map(str::to_owned).collect())
                }
                Some(Value::String(one)) => Some(vec![one.clone()]),
                _ => None,
            };
        }
    }

    /// Some providers (Authelia by default) put profile and group claims only in userinfo.
    fn needs_userinfo(&self, identity: &Identity) -> bool {
        identity.username.is_none()
            || identity.email.is_none()
            || (self.groups_claim.is_some() && identity.groups.is_none())
    }

    /// The userinfo claims, when the provider has the endpoint and they are about the same
    /// subject; `None` otherwise (the ID token's claims are then all there is).
    fn userinfo(&self, provider: &Provider, access_token: &str, subject: &str) -> Option<Value> {
        let url = provider.metadata.userinfo_endpoint()?.url().clone();
        let request = ureq::http::Request::get(url.as_str())
            .header("Authorization", format!("Bearer {access_token}"))
            .header("Accept", "application/json")
            .body(Vec::new())
            .ok()?;
        let resp = match self.http.send(request) {
            Ok(r) if r.status().is_success() => r,
            Ok(r) => {
                tracing::warn!(
                    status = r.status().as_u16(),
                    "OIDC userinfo answered an error; using the ID token's claims"
                );
                return None;
            }
            Err(e) => {
                tracing::warn!(error = %e, "OIDC userinfo failed; using the ID token's claims");
                return None;
            }
        };
        // A signed (JWT) userinfo answer is not used; JSON is what providers send by default.
        let info: Value = serde_json::from_slice(resp.body()).ok()?;
        (info.get("sub").and_then(Value::as_str) == Some(subject)).then_some(info)
    }

    /// Takes the pending state of a callback out (single use).
    pub fn take_state(&self, state: &str) -> Result<Pending, CallbackError> {
        self.pending.take(state).map_err(CallbackError::State)
    }
}

/// The JSON payload of a JWT (already verified by the caller).
fn payload(jwt: &str) -> Result<Value, String> {
    use base64::Engine;
    let part = jwt.split('.').nth(1).ok_or("the ID token is not a JWT")?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(part.trim_end_matches('='))
        .map_err(|_| "the ID token payload is not base64url")?;
    serde_json::from_slice(&bytes).map_err(|_| "the ID token payload is not JSON".into())
}

/// An error with its sources, for messages that say what went wrong.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut msg = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !msg.contains(&text) {
            msg.push_str(": ");
            msg.push_str(&text);
        }
        source = s.source();
    }
    msg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_is_read() {
        let jwt = "e30.eyJzdWIiOiJhIn0.sig";
        assert_eq!(payload(jwt).unwrap()["sub"], "a");
        assert!(payload("nope").is_err());
    }
}
