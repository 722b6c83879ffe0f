//! A minimal sync client for the load generator, built on the server's own wire module (whose
//! encoding is checked byte for byte against protocol.md's test vectors).

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncWrite, BufReader};
use tokio::net::TcpStream;

use crate::sync::frame::{read_frame, write_frame};
use crate::sync::wire::{
    AuthErrPayload, AuthOkPayload, AuthPayload, MAX_PAYLOAD, MsgType, SyncAckPayload, SyncErrPayload, decode,
    encode_frame,
};

pub trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

pub struct BenchClient {
    io: BufReader<Box<dyn Io>>,
}

#[derive(Clone)]
pub enum Transport {
    Plain,
    Tls(Arc<rustls::ClientConfig>),
}

/// Accepts any server certificate (`--tls-insecure`): for benchmarking a server with a
/// self-signed certificate only.
#[derive(Debug)]
struct AcceptAny(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AcceptAny {
    fn verify_server_cert(
        &self,
        _: &rustls_pki_types::CertificateDer<'_>,
        _: &[rustls_pki_types::CertificateDer<'_>],
        _: &rustls_pki_types::ServerName<'_>,
        _: &[u8],
        _: rustls_pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls_pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls_pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// TLS client settings: trust the PEM file `ca`, or anything when `ca` is `None`.
pub fn tls_config(ca: Option<&std::path::Path>) -> Result<Arc<rustls::ClientConfig>, String> {
    use rustls_pki_types::pem::PemObject;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?;
    let config = match ca {
        Some(path) => {
            let mut roots = rustls::RootCertStore::empty();
            for cert in rustls_pki_types::CertificateDer::pem_file_iter(path)
                .map_err(|e| format!("{}: {e}", path.display()))?
            {
                roots
                    .add(cert.map_err(|e| format!("{}: {e}", path.display()))?)
                    .map_err(|e| e.to_string())?;
            }
            builder.with_root_certificates(roots).with_no_client_auth()
        }
        None => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAny(provider)))
            .with_no_client_auth(),
    };
    Ok(Arc::new(config))
}

impl BenchClient {
    pub async fn connect(addr: SocketAddr, host: &str, transport: &Transport) -> Result<BenchClient, String> {
        let tcp = TcpStream::connect(addr).await.map_err(|e| format!("connect {addr}: {e}"))?;
        let _ = tcp.set_nodelay(true);
        let io: Box<dyn Io> = match transport {
            Transport::Plain => Box::new(tcp),
            Transport::Tls(config) => {
                let name = rustls_pki_types::ServerName::try_from(host.to_owned())
                    .map_err(|e| format!("server name {host}: {e}"))?;
                Box::new(
                    tokio_rustls::TlsConnector::from(Arc::clone(config))
                        .connect(name, tcp)
                        .await
                        .map_err(|e| format!("TLS: {e}"))?,
                )
            }
        };
        Ok(BenchClient { io: BufReader::new(io) })
    }

    async fn round_trip(&mut self, frame: &[u8]) -> Result<(MsgType, Vec<u8>), String> {
        write_frame(&mut self.io, frame).await.map_err(|e| format!("write: {e}"))?;
        let reply = read_frame(&mut self.io, MAX_PAYLOAD).await.map_err(|e| format!("read: {e}"))?;
        Ok((reply.kind, reply.payload))
    }

    pub async fn auth(&mut self, payload: &AuthPayload) -> Result<String, String> {
        match self.round_trip(&encode_frame(MsgType::Auth, payload)).await? {
            (MsgType::AuthOk, p) => Ok(decode::<AuthOkPayload>(&p).map_err(|e| e.to_string())?.device_id),
            (MsgType::AuthErr, p) => Err(format!(
                "AUTH refused: {}",
                decode::<AuthErrPayload>(&p).map_err(|e| e.to_string())?.reason
            )),
            (other, _) => Err(format!("unexpected reply to AUTH: {other:?}")),
        }
    }

    /// Sends a pre-encoded batch frame and waits for its ACK.
    pub async fn batch(&mut self, frame: &[u8]) -> Result<i64, String> {
        match self.round_trip(frame).await? {
            (MsgType::SyncAck, p) => Ok(decode::<SyncAckPayload>(&p).map_err(|e| e.to_string())?.last_ts_ms),
            (MsgType::SyncErr, p) => {
                Err(format!("SYNC_ERR: {}", decode::<SyncErrPayload>(&p).map_err(|e| e.to_string())?.reason))
            }
            (other, _) => Err(format!("unexpected reply to a batch: {other:?}")),
        }
    }
}
