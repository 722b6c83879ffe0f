//! instant-acme's HTTP goes through our outbound client (ureq over rustls with ring, no
//! redirects, a size cap) on the blocking pool, so the one TLS stack and its roots (public, or
//! `acme.ca_file` for a private CA) serve this too.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use instant_acme::{BodyWrapper, BytesResponse, HttpClient};

use crate::config::AcmeConfig;
use crate::outbound::Outbound;

/// Directory, nonce, order and certificate answers are a few KiB.
const MAX_RESPONSE_BYTES: u64 = 1 << 20;
const TIMEOUT: Duration = Duration::from_secs(30);

pub struct AcmeHttp(Outbound);

impl AcmeHttp {
    pub fn new(config: &AcmeConfig) -> Result<AcmeHttp, String> {
        Ok(AcmeHttp(Outbound::new(TIMEOUT, MAX_RESPONSE_BYTES, config.ca_file.as_deref())?))
    }
}

impl HttpClient for AcmeHttp {
    fn request(
        &self,
        req: ureq::http::Request<BodyWrapper<Bytes>>,
    ) -> Pin<Box<dyn Future<Output = Result<BytesResponse, instant_acme::Error>> + Send>> {
        let out = self.0.clone();
        Box::pin(async move {
            let (parts, body) = req.into_parts();
            let body = match body.collect().await {
                Ok(b) => b.to_bytes().to_vec(),
                Err(never) => match never {},
            };
            let request = ureq::http::Request::from_parts(parts, body);
            let answer = tokio::task::spawn_blocking(move || out.send(request))
                .await
                .map_err(|e| instant_acme::Error::Other(Box::new(e)))?
                .map_err(|e| instant_acme::Error::Other(Box::new(e)))?;
            let (parts, body) = answer.into_parts();
            Ok(BytesResponse::from(ureq::http::Response::from_parts(parts, Full::new(Bytes::from(body)))))
        })
    }
}
