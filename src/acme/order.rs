//! One certificate order: account, authorizations answered by our own listeners (TLS-ALPN-01 on
//! the HTTPS port, HTTP-01 on the HTTP port), finalization with a fresh key, the chain.

use std::sync::Arc;
use std::time::Duration;

use instant_acme::{
    Account, AuthorizationStatus, ChallengeType, Identifier, NewAccount, NewOrder, OrderStatus, RetryPolicy,
};
use rustls::sign::CertifiedKey;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

use super::client::AcmeHttp;
use super::storage::AcmeFiles;
use crate::config::AcmeConfig;
use crate::tls::{CertInfo, Certs};

/// How long the CA may take to validate, and then to issue.
const VALIDATION_TIMEOUT: Duration = Duration::from_secs(120);

/// A new certificate, stored and ready to serve.
pub struct Issued {
    pub key: Arc<CertifiedKey>,
    pub info: CertInfo,
}

fn fail(what: &str) -> impl Fn(instant_acme::Error) -> String + '_ {
    move |e| format!("{what}: {e}")
}

async fn account(config: &AcmeConfig, files: &AcmeFiles) -> Result<Account, String> {
    let directory = config.directory();
    let path = files.account_path(directory);
    let http = || AcmeHttp::new(config).map(|h| Account::builder_with_http(Box::new(h)));
    if let Ok(stored) = std::fs::read(&path) {
        match serde_json::from_slice(&stored) {
            Ok(credentials) => {
                return http()?
                    .from_credentials(credentials)
                    .await
                    .map_err(fail("restoring the ACME account"));
            }
            Err(e) => {
                tracing::warn!(file = %path.display(), error = %e, "the stored ACME account does not load; creating a new one")
            }
        }
    }
    let contact = config.email.as_ref().map(|e| format!("mailto:{e}"));
    let contacts: Vec<&str> = contact.iter().map(String::as_str).collect();
    let new = NewAccount { contact: &contacts, terms_of_service_agreed: true, only_return_existing: false };
    let (account, credentials) =
        http()?.create(&new, directory.to_owned(), None).await.map_err(fail("creating the ACME account"))?;
    let json = serde_json::to_vec(&credentials).map_err(|e| format!("storing the ACME account: {e}"))?;
    files.write(&path, &json)?;
    tracing::info!(directory, id = account.id(), "created an ACME account");
    Ok(account)
}

/// The self-signed certificate a TLS-ALPN-01 validation is answered with (RFC 8737): the domain
/// as its only name and the key authorization's digest in the critical acmeIdentifier extension.
fn alpn_certificate(domain: &str, digest: &[u8]) -> Result<Arc<CertifiedKey>, String> {
    let mut params = rcgen::CertificateParams::new(vec![domain.to_owned()]).map_err(|e| e.to_string())?;
    params.custom_extensions = vec![rcgen::CustomExtension::new_acme_identifier(digest)];
    let key = rcgen::KeyPair::generate().map_err(|e| e.to_string())?;
    let cert = params.self_signed(&key).map_err(|e| e.to_string())?;
    let der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
    // Not `CertifiedKey::from_der`: its key check parses the certificate with webpki, which
    // refuses the critical acmeIdentifier extension. The key is the one it was made with.
    let signer = rustls::crypto::ring::default_provider()
        .key_provider
        .load_private_key(der)
        .map_err(|e| e.to_string())?;
    Ok(Arc::new(CertifiedKey::new(vec![CertificateDer::from(cert.der().to_vec())], signer)))
}

/// Orders a certificate for `config.domains`, proving control with `challenge`.
pub async fn obtain(
    config: &AcmeConfig,
    challenge: ChallengeType,
    files: &AcmeFiles,
    certs: &Certs,
) -> Result<Issued, String> {
    let account = account(config, files).await?;
    let identifiers: Vec<Identifier> = config.domains.iter().map(|d| Identifier::Dns(d.clone())).collect();
    let mut order =
        account.new_order(&NewOrder::new(&identifiers)).await.map_err(fail("creating the ACME order"))?;
    let mut authorizations = order.authorizations();
    while let Some(result) = authorizations.next().await {
        let mut authz = result.map_err(fail("reading an authorization"))?;
        let domain = authz.identifier().to_string();
        match authz.status {
            AuthorizationStatus::Pending => {}
            AuthorizationStatus::Valid => continue,
            other => return Err(format!("the authorization for {domain} is {other:?}")),
        }
        let mut ch = authz
            .challenge(challenge.clone())
            .ok_or_else(|| format!("the CA offers no {challenge:?} challenge for {domain}"))?;
        let key_authorization = ch.key_authorization();
        match challenge {
            ChallengeType::TlsAlpn01 => certs
                .set_alpn_challenge(&domain, alpn_certificate(&domain, key_authorization.digest().as_ref())?),
            _ => certs.set_http_challenge(&ch.token, key_authorization.as_str().to_owned()),
        }
        ch.set_ready().await.map_err(|e| format!("the {challenge:?} challenge for {domain}: {e}"))?;
    }
    let retries = RetryPolicy::new().initial_delay(Duration::from_millis(250)).timeout(VALIDATION_TIMEOUT);
    let status = order.poll_ready(&retries).await.map_err(fail("waiting for validation"))?;
    if status != OrderStatus::Ready {
        return Err(format!("validation failed ({status:?}): {}", why_invalid(&mut order).await));
    }
    let key = rcgen::KeyPair::generate().map_err(|e| format!("generating the certificate key: {e}"))?;
    let mut params = rcgen::CertificateParams::new(config.domains.clone()).map_err(|e| e.to_string())?;
    params.distinguished_name = rcgen::DistinguishedName::new();
    let csr = params.serialize_request(&key).map_err(|e| format!("making the certificate request: {e}"))?;
    order.finalize_csr(csr.der()).await.map_err(fail("finalizing the order"))?;
    let chain = order.poll_certificate(&retries).await.map_err(fail("downloading the certificate"))?;
    let key_pem = key.serialize_pem();
    let (certified, info) = crate::tls::certified_key(chain.as_bytes(), key_pem.as_bytes())
        .map_err(|e| format!("the issued certificate: {e}"))?;
    files.store_cert(&chain, &key_pem)?;
    Ok(Issued { key: certified, info })
}

/// The CA's reasons for an invalid order, from the order and its challenges.
async fn why_invalid(order: &mut instant_acme::Order) -> String {
    let mut reasons = Vec::new();
    if let Some(e) = &order.state().error {
        reasons.push(e.to_string());
    }
    let mut authorizations = order.authorizations();
    while let Some(Ok(authz)) = authorizations.next().await {
        for c in &authz.challenges {
            if let Some(e) = &c.error {
                reasons.push(format!("{}: {e}", authz.identifier()));
            }
        }
    }
    if reasons.is_empty() { "no reason given".into() } else { reasons.join("; ") }
}
