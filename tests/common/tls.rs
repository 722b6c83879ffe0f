//! TLS for tests: a throwaway CA issuing certificates (rcgen), and clients that verify the
//! server against given roots and speak HTTP/1.1 or HTTP/2 (hyper's client) or just handshake
//! (the sync port).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

pub struct TestCa {
    params: rcgen::CertificateParams,
    key: rcgen::KeyPair,
    pub pem: String,
}

/// A certificate and its key, PEM.
pub struct Leaf {
    pub cert_pem: String,
    pub key_pem: String,
    pub fingerprint: String,
}

impl TestCa {
    pub fn new(name: &str) -> TestCa {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.distinguished_name.push(rcgen::DnType::CommonName, name);
        params.key_usages = vec![rcgen::KeyUsagePurpose::KeyCertSign, rcgen::KeyUsagePurpose::CrlSign];
        let pem = params.self_signed(&key).unwrap().pem();
        TestCa { params, key, pem }
    }

    /// A leaf for `names`, valid from `since` days ago until `days` days from now.
    pub fn issue(&self, names: &[&str], since: i64, days: i64) -> Leaf {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params =
            rcgen::CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>()).unwrap();
        let now = time::OffsetDateTime::now_utc();
        params.not_before = now - time::Duration::days(since);
        params.not_after = now + time::Duration::days(days);
        let issuer = rcgen::Issuer::from_params(&self.params, &self.key);
        let cert = params.signed_by(&key, &issuer).unwrap();
        Leaf {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            fingerprint: toki_sync::tls::fingerprint(cert.der()),
        }
    }
}

pub fn roots(pem: &str) -> rustls::RootCertStore {
    use rustls::pki_types::pem::PemObject;
    let mut store = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(pem.as_bytes()) {
        store.add(c.unwrap()).unwrap();
    }
    store
}

fn connector(roots: &rustls::RootCertStore, alpn: &[&[u8]]) -> TlsConnector {
    toki_sync::tls::install_crypto_provider();
    let mut config =
        rustls::ClientConfig::builder().with_root_certificates(roots.clone()).with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    TlsConnector::from(Arc::new(config))
}

/// A verified TLS connection to `addr` for `name`; the fingerprint of the leaf it presented.
pub async fn handshake(
    addr: SocketAddr,
    name: &str,
    roots: &rustls::RootCertStore,
    alpn: &[&[u8]],
) -> Result<(tokio_rustls::client::TlsStream<TcpStream>, String), String> {
    let tcp = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    let server_name = ServerName::try_from(name.to_owned()).unwrap();
    let tls = tokio::time::timeout(Duration::from_secs(10), connector(roots, alpn).connect(server_name, tcp))
        .await
        .map_err(|_| "handshake timed out".to_owned())?
        .map_err(|e| e.to_string())?;
    let leaf = tls.get_ref().1.peer_certificates().and_then(|c| c.first()).ok_or("no certificate")?.clone();
    Ok((tls, toki_sync::tls::fingerprint(&leaf)))
}

/// The fingerprint `addr` presents for `name`, checked against `roots`.
pub async fn served_fingerprint(
    addr: SocketAddr,
    name: &str,
    roots: &rustls::RootCertStore,
) -> Result<String, String> {
    handshake(addr, name, roots, &[]).await.map(|(_, f)| f)
}

pub struct HttpsResp {
    pub status: u16,
    pub headers: hyper::HeaderMap,
    pub body: Vec<u8>,
    pub alpn: Option<Vec<u8>>,
}

impl HttpsResp {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", String::from_utf8_lossy(&self.body)))
    }
}

/// A server's HTTPS listener, reached by name and verified against `roots`.
pub struct Https<'a> {
    pub addr: SocketAddr,
    pub name: &'a str,
    pub roots: &'a rustls::RootCertStore,
}

impl<'a> Https<'a> {
    pub fn at(addr: SocketAddr, name: &'a str, roots: &'a rustls::RootCertStore) -> Https<'a> {
        Https { addr, name, roots }
    }

    /// One request on a new connection; `http2` picks the protocol offered by ALPN.
    pub async fn request(
        &self,
        http2: bool,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> HttpsResp {
        let (addr, name, roots) = (self.addr, self.name, self.roots);
        let alpn: &[&[u8]] = if http2 { &[b"h2"] } else { &[b"http/1.1"] };
        let (tls, _) = handshake(addr, name, roots, alpn).await.expect("TLS handshake");
        let negotiated = tls.get_ref().1.alpn_protocol().map(<[u8]>::to_vec);
        let io = hyper_util::rt::TokioIo::new(tls);
        let mut req = hyper::Request::builder().method(method).uri(format!("https://{name}{path}"));
        if !http2 {
            req = req.header("host", name);
        }
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let req = req.body(Full::new(Bytes::copy_from_slice(body))).unwrap();
        let resp = if http2 {
            let (mut send, conn) =
                hyper::client::conn::http2::handshake(hyper_util::rt::TokioExecutor::new(), io)
                    .await
                    .expect("h2 handshake");
            tokio::spawn(conn);
            send.send_request(req).await.expect("h2 request")
        } else {
            let (mut send, conn) = hyper::client::conn::http1::handshake(io).await.expect("h1 handshake");
            tokio::spawn(conn);
            send.send_request(req).await.expect("h1 request")
        };
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let body = resp.into_body().collect().await.expect("body").to_bytes().to_vec();
        HttpsResp { status, headers, body, alpn: negotiated }
    }
}
