//! QUIC links between sentinels.
//!
//! TLS 1.3 through rustls on aws-lc-rs, offering and accepting only the
//! hybrid post-quantum key exchange X25519MLKEM768; 0-RTT off. Certificates
//! are generated at every start and prove nothing: after the handshake each
//! side signs the connection's TLS exporter value with its roster identity
//! (`sentinel_protocol::link`), and a peer that is not on the roster or
//! whose signature does not bind this connection is closed with a logged
//! reason.
//!
//! On an authenticated link each side sends its stream-class messages as
//! length-prefixed frames on one unidirectional stream, and probes as QUIC
//! datagrams (falling back to the stream when a datagram does not fit).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, SignatureScheme};
use sentinel_protocol::link::{self, EXPORTER_LABEL, EXPORTER_LEN, Role};
use sentinel_protocol::{Identity, NodeId, Roster};
use tokio::io::AsyncWriteExt;

use crate::config::QuicSection;

/// ALPN protocol id.
pub const ALPN: &[u8] = b"sentinel-mesh/1";
/// Largest link-auth frame accepted.
const MAX_AUTH_FRAME: usize = 8 * 1024;

/// Application close codes.
pub mod close {
    /// Normal shutdown.
    pub const SHUTDOWN: u32 = 0;
    /// Link authentication failed.
    pub const AUTH: u32 = 1;
    /// A duplicate connection to the same peer was dropped.
    pub const DUPLICATE: u32 = 2;
    /// Protocol violation (oversize frame, garbage).
    pub const PROTOCOL: u32 = 3;
    /// Too many connections.
    pub const BUSY: u32 = 4;
    /// The peer is under a quarantine this sentinel enforces.
    pub const QUARANTINED: u32 = 5;
}

/// The crypto provider: aws-lc-rs with only X25519MLKEM768 for key exchange.
#[must_use]
pub fn pq_provider() -> CryptoProvider {
    CryptoProvider {
        kx_groups: vec![rustls::crypto::aws_lc_rs::kx_group::X25519MLKEM768],
        ..rustls::crypto::aws_lc_rs::default_provider()
    }
}

/// A provider offering only classical X25519 (for tests and benchmarks that
/// show the difference; never used by the daemon).
#[must_use]
pub fn classical_provider() -> CryptoProvider {
    CryptoProvider {
        kx_groups: vec![rustls::crypto::aws_lc_rs::kx_group::X25519],
        ..rustls::crypto::aws_lc_rs::default_provider()
    }
}

/// Accepts any certificate but checks that the peer holds its key (the
/// handshake signature); identity comes from link authentication.
#[derive(Debug)]
struct ThrowAwayCerts(WebPkiSupportedAlgorithms);

impl ServerCertVerifier for ThrowAwayCerts {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(rustls::Error::PeerIncompatible(
            rustls::PeerIncompatible::Tls12NotOffered,
        ))
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_schemes()
    }
}

impl ClientCertVerifier for ThrowAwayCerts {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        ServerCertVerifier::verify_tls12_signature(self, message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        ServerCertVerifier::verify_tls13_signature(self, message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_schemes()
    }
}

/// A fresh self-signed certificate and key.
fn throw_away_cert() -> Result<(CertificateDer<'static>, PrivateKeyDer<'static>), TransportError> {
    let ck = rcgen::generate_simple_self_signed(vec!["sentinel".to_owned()])
        .map_err(|e| TransportError::Tls(e.to_string()))?;
    let key = PrivateKeyDer::Pkcs8(ck.signing_key.serialize_der().into());
    Ok((ck.cert.der().clone(), key))
}

/// Why the transport could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// TLS configuration.
    #[error("TLS: {0}")]
    Tls(String),
    /// Socket.
    #[error("QUIC endpoint on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
}

fn transport_config(q: &QuicSection) -> quinn::TransportConfig {
    let mut t = quinn::TransportConfig::default();
    t.max_idle_timeout(Some(
        quinn::IdleTimeout::try_from(Duration::from_millis(q.idle_timeout_ms))
            .expect("validated idle timeout fits"),
    ));
    t.keep_alive_interval(Some(Duration::from_millis(q.keep_alive_ms)));
    // One bidirectional stream (link auth) and one unidirectional stream
    // per direction (messages); a little slack for reconnect races.
    t.max_concurrent_bidi_streams(2u8.into());
    t.max_concurrent_uni_streams(2u8.into());
    let window = u32::try_from(q.max_frame_bytes * 4).unwrap_or(u32::MAX);
    t.stream_receive_window(window.into());
    t.receive_window(
        (u64::from(window) * 2)
            .try_into()
            .unwrap_or(quinn::VarInt::MAX),
    );
    t.datagram_receive_buffer_size(Some(64 * 1024));
    t
}

/// rustls client and server configs with `provider`.
///
/// # Errors
/// TLS set-up failures.
pub fn tls_configs(
    provider: CryptoProvider,
) -> Result<(rustls::ClientConfig, rustls::ServerConfig), TransportError> {
    let provider = Arc::new(provider);
    let algs = provider.signature_verification_algorithms;
    let verifier = Arc::new(ThrowAwayCerts(algs));
    let tls = |e: rustls::Error| TransportError::Tls(e.to_string());
    let (cert, key) = throw_away_cert()?;
    let mut server = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(tls)?
        .with_client_cert_verifier(verifier.clone())
        .with_single_cert(vec![cert.clone()], key.clone_key())
        .map_err(tls)?;
    server.alpn_protocols = vec![ALPN.to_vec()];
    server.max_early_data_size = 0;
    let mut client = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(tls)?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_client_auth_cert(vec![cert], key)
        .map_err(tls)?;
    client.alpn_protocols = vec![ALPN.to_vec()];
    client.enable_early_data = false;
    Ok((client, server))
}

/// A QUIC endpoint that both listens and dials, with the given provider.
///
/// # Errors
/// TLS or socket errors.
pub fn endpoint(
    listen: SocketAddr,
    q: &QuicSection,
    provider: CryptoProvider,
) -> Result<quinn::Endpoint, TransportError> {
    let (client, server) = tls_configs(provider)?;
    let transport = Arc::new(transport_config(q));
    let server =
        QuicServerConfig::try_from(server).map_err(|e| TransportError::Tls(e.to_string()))?;
    let mut server = quinn::ServerConfig::with_crypto(Arc::new(server));
    server.transport_config(transport.clone());
    // Address validation (retry) is left to quinn's defaults; connection
    // counts are limited when accepting.
    let client =
        QuicClientConfig::try_from(client).map_err(|e| TransportError::Tls(e.to_string()))?;
    let mut client = quinn::ClientConfig::new(Arc::new(client));
    client.transport_config(transport);
    let mut ep =
        quinn::Endpoint::server(server, listen).map_err(|source| TransportError::Bind {
            addr: listen,
            source,
        })?;
    ep.set_default_client_config(client);
    Ok(ep)
}

/// Why a link could not be established.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    /// QUIC or TLS failed (this includes a peer offering no common key
    /// exchange group).
    #[error("connection: {0}")]
    Connection(#[from] quinn::ConnectionError),
    /// Dialling could not start.
    #[error("connect: {0}")]
    Connect(#[from] quinn::ConnectError),
    /// The authentication exchange broke off or sent too much.
    #[error("link authentication exchange: {0}")]
    Exchange(String),
    /// The peer's authentication was refused.
    #[error("link authentication refused: {0}")]
    Refused(sentinel_protocol::Error),
    /// Authenticated, but not the member we dialled.
    #[error("dialled {expected} but {got} answered")]
    WrongPeer {
        /// Whom we wanted.
        expected: NodeId,
        /// Who answered.
        got: NodeId,
    },
    /// Did not finish in time.
    #[error("timed out")]
    Timeout,
}

impl LinkError {
    /// A short label for metrics.
    #[must_use]
    pub fn label(&self) -> &'static str {
        match self {
            LinkError::Connection(_) | LinkError::Connect(_) => "connection",
            LinkError::Exchange(_) => "exchange",
            LinkError::Refused(_) => "refused",
            LinkError::WrongPeer { .. } => "wrong_peer",
            LinkError::Timeout => "timeout",
        }
    }
}

/// What both ends need to authenticate a link.
#[derive(Debug)]
pub struct Authenticator {
    /// Our identity (signs the exporter), shared with the node's signer.
    pub identity: Arc<Identity>,
    /// The roster (checks the peer).
    pub roster: Arc<Roster>,
    /// Our boot epoch (stamped on link-auth frames).
    pub epoch: u64,
}

fn exporter(conn: &quinn::Connection) -> Result<[u8; EXPORTER_LEN], LinkError> {
    let mut out = [0u8; EXPORTER_LEN];
    conn.export_keying_material(&mut out, EXPORTER_LABEL, b"")
        .map_err(|_| LinkError::Exchange("TLS exporter unavailable".into()))?;
    Ok(out)
}

async fn read_frame(recv: &mut quinn::RecvStream, limit: usize) -> Result<Vec<u8>, LinkError> {
    let mut len = [0u8; 4];
    recv.read_exact(&mut len)
        .await
        .map_err(|e| LinkError::Exchange(e.to_string()))?;
    let len = u32::from_be_bytes(len) as usize;
    if len > limit {
        return Err(LinkError::Exchange(format!(
            "frame of {len} bytes is over the limit of {limit}"
        )));
    }
    let mut buf = vec![0u8; len];
    recv.read_exact(&mut buf)
        .await
        .map_err(|e| LinkError::Exchange(e.to_string()))?;
    Ok(buf)
}

async fn write_frame(send: &mut quinn::SendStream, bytes: &[u8]) -> Result<(), std::io::Error> {
    let len = u32::try_from(bytes.len()).map_err(|_| std::io::Error::other("frame too large"))?;
    send.write_all(&len.to_be_bytes()).await?;
    send.write_all(bytes).await?;
    Ok(())
}

impl Authenticator {
    fn seal(&self, role: Role, x: &[u8; EXPORTER_LEN]) -> Result<Vec<u8>, LinkError> {
        link::seal(
            &self.identity,
            &self.roster,
            role,
            x,
            self.epoch,
            crate::now_ms(),
        )
        .map_err(|e| LinkError::Exchange(format!("signing: {e}")))
    }

    /// Dials `peer` at `addr` and authenticates both ways.
    ///
    /// # Errors
    /// Any [`LinkError`].
    pub async fn dial(
        &self,
        ep: &quinn::Endpoint,
        addr: SocketAddr,
        peer: NodeId,
        timeout: Duration,
    ) -> Result<quinn::Connection, LinkError> {
        tokio::time::timeout(timeout, async {
            let conn = ep.connect(addr, "sentinel")?.await?;
            let x = exporter(&conn)?;
            let (mut send, mut recv) = conn.open_bi().await?;
            write_frame(&mut send, &self.seal(Role::Client, &x)?)
                .await
                .map_err(|e| LinkError::Exchange(e.to_string()))?;
            let theirs = read_frame(&mut recv, MAX_AUTH_FRAME).await?;
            let got =
                link::open(&self.roster, &theirs, Role::Server, &x).map_err(LinkError::Refused)?;
            if got != peer {
                return Err(LinkError::WrongPeer {
                    expected: peer,
                    got,
                });
            }
            let _ = send.finish();
            Ok(conn)
        })
        .await
        .map_err(|_| LinkError::Timeout)?
    }

    /// Completes an incoming connection and authenticates both ways;
    /// returns the peer's id.
    ///
    /// # Errors
    /// Any [`LinkError`].
    pub async fn accept(
        &self,
        incoming: quinn::Incoming,
        timeout: Duration,
    ) -> Result<(quinn::Connection, NodeId), LinkError> {
        tokio::time::timeout(timeout, async {
            let conn = incoming.await?;
            let x = exporter(&conn)?;
            let (mut send, mut recv) = conn.accept_bi().await?;
            let theirs = read_frame(&mut recv, MAX_AUTH_FRAME).await?;
            let peer = match link::open(&self.roster, &theirs, Role::Client, &x) {
                Ok(p) => p,
                Err(e) => {
                    conn.close(close::AUTH.into(), b"link authentication refused");
                    return Err(LinkError::Refused(e));
                }
            };
            write_frame(&mut send, &self.seal(Role::Server, &x)?)
                .await
                .map_err(|e| LinkError::Exchange(e.to_string()))?;
            let _ = send.finish();
            Ok((conn, peer))
        })
        .await
        .map_err(|_| LinkError::Timeout)?
    }
}

/// Sends one message frame on a link's message stream.
///
/// # Errors
/// The stream failed (the connection is gone).
pub async fn send_message(
    send: &mut quinn::SendStream,
    bytes: &[u8],
) -> Result<(), std::io::Error> {
    write_frame(send, bytes).await?;
    send.flush().await
}

/// Reads the next message frame, `None` at the end of the stream.
///
/// # Errors
/// Oversize frames and stream errors.
pub async fn recv_message(
    recv: &mut quinn::RecvStream,
    limit: usize,
) -> Result<Option<Vec<u8>>, LinkError> {
    let mut len = [0u8; 4];
    match recv.read_exact(&mut len).await {
        Ok(()) => {}
        Err(quinn::ReadExactError::FinishedEarly(0)) => return Ok(None),
        Err(e) => return Err(LinkError::Exchange(e.to_string())),
    }
    let len = u32::from_be_bytes(len) as usize;
    if len > limit {
        return Err(LinkError::Exchange(format!(
            "frame of {len} bytes is over the limit of {limit}"
        )));
    }
    let mut buf = vec![0u8; len];
    recv.read_exact(&mut buf)
        .await
        .map_err(|e| LinkError::Exchange(e.to_string()))?;
    Ok(Some(buf))
}
