//! Alert webhooks per the Standard Webhooks spec: what an alert is, how it
//! is signed, where it may be sent, and one delivery attempt.
//!
//! The durable part (the outbox: every alert committed before delivery is
//! tried, retries, the dead-letter list) is [`crate::outbox`]; the task
//! that drains it is in [`crate::daemon`].
//!
//! An alert is sent as `POST` with the headers `webhook-id` (the same on
//! every retry, derived from the incident so that sentinels alerting on one
//! incident send one id), `webhook-timestamp` (Unix seconds of the attempt)
//! and `webhook-signature` (`v1,` and the base64 HMAC-SHA256 of
//! `id.timestamp.body` under each configured secret, space-separated, so a
//! receiver rotating its secret accepts either).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use serde::{Deserialize, Serialize};

/// The prefix of a Standard Webhooks secret.
pub const SECRET_PREFIX: &str = "whsec_";

/// A response body is read up to this many bytes (and then ignored).
const MAX_RESPONSE: usize = 64 * 1024;

/// A signing secret (`whsec_` and base64 of 24 to 64 random bytes).
#[derive(Clone)]
pub struct Secret(zeroize::Zeroizing<Vec<u8>>);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(..)")
    }
}

impl Secret {
    /// Parses `whsec_<base64>`.
    ///
    /// # Errors
    /// A missing prefix, bad base64 or a length outside 24 to 64 bytes
    /// (the message never contains the secret).
    pub fn parse(text: &str) -> Result<Self, String> {
        let b64 = text
            .trim()
            .strip_prefix(SECRET_PREFIX)
            .ok_or_else(|| format!("a webhook secret starts with {SECRET_PREFIX}"))?;
        let bytes = zeroize::Zeroizing::new(
            BASE64
                .decode(b64)
                .map_err(|_| "a webhook secret is whsec_ and standard base64".to_owned())?,
        );
        if !(24..=64).contains(&bytes.len()) {
            return Err(format!(
                "a webhook secret holds 24 to 64 bytes, this one {}",
                bytes.len()
            ));
        }
        Ok(Self(bytes))
    }

    /// A new random secret of 32 bytes.
    ///
    /// # Errors
    /// The system random generator failed.
    pub fn generate() -> Result<Self, String> {
        let mut bytes = zeroize::Zeroizing::new(vec![0u8; 32]);
        aws_lc_rs::rand::fill(&mut bytes).map_err(|_| "no system randomness".to_owned())?;
        Ok(Self(bytes))
    }

    /// `whsec_<base64>`, for writing to a secrets file.
    #[must_use]
    pub fn to_text(&self) -> zeroize::Zeroizing<String> {
        zeroize::Zeroizing::new(format!("{SECRET_PREFIX}{}", BASE64.encode(&*self.0)))
    }

    fn sign(&self, content: &[u8]) -> String {
        let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, &self.0);
        BASE64.encode(aws_lc_rs::hmac::sign(&key, content).as_ref())
    }
}

/// The `webhook-signature` header: `v1,<base64>` per secret, space-separated.
#[must_use]
pub fn signature(secrets: &[Secret], id: &str, timestamp_s: u64, body: &[u8]) -> String {
    let mut content = format!("{id}.{timestamp_s}.").into_bytes();
    content.extend_from_slice(body);
    secrets
        .iter()
        .map(|s| format!("v1,{}", s.sign(&content)))
        .collect::<Vec<_>>()
        .join(" ")
}

/// How bad an alert is, lowest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Something ended or changed as planned.
    Info,
    /// Worth a look.
    Warning,
    /// Act soon.
    High,
    /// A node is cut off.
    Critical,
}

impl Severity {
    /// The lowercase name.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::Info => "info",
            Self::Warning => "warning",
            Self::High => "high",
            Self::Critical => "critical",
        }
    }
}

/// The event types an alert can carry (`type` in the payload).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize, Serialize)]
pub enum EventType {
    /// This sentinel's model raised local suspicion of a neighbour.
    #[serde(rename = "peer.suspected")]
    PeerSuspected,
    /// This sentinel accused a neighbour before a committee.
    #[serde(rename = "accusation.raised")]
    AccusationRaised,
    /// A quarantine certificate against a node was verified here.
    #[serde(rename = "node.quarantined")]
    NodeQuarantined,
    /// A quarantine ended.
    #[serde(rename = "quarantine.lifted")]
    QuarantineLifted,
    /// A governance proposal passed (sent once governance exists).
    #[serde(rename = "proposal.passed")]
    ProposalPassed,
    /// The mesh's scoring model changed (sent once governance exists).
    #[serde(rename = "model.changed")]
    ModelChanged,
    /// This sentinel's own host or links are degraded: it withholds
    /// accusations until they recover.
    #[serde(rename = "sentinel.degraded")]
    SentinelDegraded,
}

impl EventType {
    /// Every type, in documentation order.
    pub const ALL: [Self; 7] = [
        Self::PeerSuspected,
        Self::AccusationRaised,
        Self::NodeQuarantined,
        Self::QuarantineLifted,
        Self::ProposalPassed,
        Self::ModelChanged,
        Self::SentinelDegraded,
    ];

    /// The wire name (`node.quarantined`).
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::PeerSuspected => "peer.suspected",
            Self::AccusationRaised => "accusation.raised",
            Self::NodeQuarantined => "node.quarantined",
            Self::QuarantineLifted => "quarantine.lifted",
            Self::ProposalPassed => "proposal.passed",
            Self::ModelChanged => "model.changed",
            Self::SentinelDegraded => "sentinel.degraded",
        }
    }

    /// Parses a wire name.
    #[must_use]
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.name() == name)
    }
}

/// One alert about one incident, before it is queued per endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Alert {
    /// The event type.
    pub event: EventType,
    /// How bad.
    pub severity: Severity,
    /// What the incident is about: a node id (hex), or this sentinel's id
    /// for `sentinel.degraded`.
    pub subject: String,
    /// The incident key: the same at every sentinel for one incident
    /// (`ARCHITECTURE.md`, "Alerts").
    pub incident: String,
    /// When it happened, Unix ms.
    pub at_ms: u64,
    /// Free text for people.
    pub detail: String,
    /// The sentinel that sends it (hex id).
    pub sentinel: String,
}

impl Alert {
    /// The `webhook-id`: `msg_` and the first 16 bytes of SHA-256 over
    /// the incident key, event type and severity, hex. Sentinels alerting
    /// on one incident at one severity send the same id, and a retry
    /// sends it again.
    #[must_use]
    pub fn id(&self) -> String {
        let mut h = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
        for part in [
            self.incident.as_bytes(),
            self.event.name().as_bytes(),
            self.severity.name().as_bytes(),
        ] {
            h.update(&u64::try_from(part.len()).unwrap_or(u64::MAX).to_be_bytes());
            h.update(part);
        }
        format!("msg_{}", hex::encode(&h.finish().as_ref()[..16]))
    }

    /// The request body in `template`.
    #[must_use]
    pub fn body(&self, template: Template) -> Vec<u8> {
        let timestamp = rfc3339(self.at_ms);
        let value = match template {
            Template::Standard => serde_json::json!({
                "type": self.event.name(),
                "timestamp": timestamp,
                "data": {
                    "severity": self.severity.name(),
                    "subject": self.subject,
                    "incident": self.incident,
                    "detail": self.detail,
                    "sentinel": self.sentinel,
                },
            }),
            Template::Slack => serde_json::json!({
                "text": format!(
                    "[{}] {} {}: {} (incident {}, from sentinel {}, {})",
                    self.severity.name(),
                    self.event.name(),
                    short(&self.subject),
                    self.detail,
                    self.incident,
                    short(&self.sentinel),
                    timestamp,
                ),
            }),
        };
        serde_json::to_vec(&value).unwrap_or_default()
    }
}

fn short(id: &str) -> &str {
    id.get(..16).unwrap_or(id)
}

/// `YYYY-MM-DDTHH:MM:SS.mmmZ` for Unix ms (proleptic Gregorian, UTC).
#[must_use]
pub fn rfc3339(ms: u64) -> String {
    let secs = ms / 1000;
    let days = i64::try_from(secs / 86_400).unwrap_or(0);
    let rem = secs % 86_400;
    // Howard Hinnant's days-to-civil.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        ms % 1000
    )
}

/// The body's shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Template {
    /// `{type, timestamp, data}` (Standard Webhooks' recommended payload).
    #[default]
    Standard,
    /// `{text}`, what a Slack incoming webhook takes.
    Slack,
}

/// Where an endpoint is: `http[s]://host[:port]/path`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// `https`: TLS 1.3, the server's certificate checked against the
    /// trusted CAs for `host`.
    pub tls: bool,
    /// Host name or address literal (no brackets).
    pub host: String,
    /// Port.
    pub port: u16,
    /// Path and query.
    pub path: String,
    /// The `Host` header.
    pub authority: String,
}

impl Target {
    /// Parses an endpoint URL.
    ///
    /// # Errors
    /// Not an absolute `http://` or `https://` URL, user info in it, or a
    /// bad port.
    pub fn parse(url: &str) -> Result<Self, String> {
        let uri: hyper::Uri = url
            .parse()
            .map_err(|e| format!("{url:?} is not an http:// or https:// URL ({e})"))?;
        let tls = match uri.scheme_str() {
            Some("http") => false,
            Some("https") => true,
            _ => return Err(format!("{url:?} is not an http:// or https:// URL")),
        };
        let authority = uri
            .authority()
            .ok_or_else(|| format!("{url:?} has no host"))?;
        if authority.as_str().contains('@') {
            return Err(format!("{url:?}: user info in a webhook URL is refused"));
        }
        let host = authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        if host.is_empty() {
            return Err(format!("{url:?} has no host"));
        }
        Ok(Self {
            tls,
            host,
            port: authority.port_u16().unwrap_or(if tls { 443 } else { 80 }),
            path: uri
                .path_and_query()
                .map_or("/", hyper::http::uri::PathAndQuery::as_str)
                .to_owned(),
            authority: authority.as_str().to_owned(),
        })
    }
}

/// Whether an address may receive webhooks without `allow_private`: not
/// loopback, private (RFC 1918, unique local), link-local, shared
/// (100.64/10), unspecified, multicast or broadcast, also when written as
/// an IPv4-mapped IPv6 address.
#[must_use]
pub fn public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => public_v4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => public_v4(v4),
            None => public_v6(v6),
        },
    }
}

fn public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, ..] = ip.octets();
    !(ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_unspecified()
        || ip.is_multicast()
        || ip.is_broadcast()
        || a == 0
        || (a == 100 && (64..128).contains(&b)))
}

fn public_v6(ip: Ipv6Addr) -> bool {
    let first = ip.segments()[0];
    !(ip.is_loopback()
        || ip.is_unspecified()
        || ip.is_multicast()
        || (first & 0xfe00) == 0xfc00
        || (first & 0xffc0) == 0xfe80)
}

/// The TLS client settings of https endpoints: TLS 1.3 on aws-lc-rs, the
/// system's trusted CAs (`/etc/ssl/certs` and the like) and the PEM
/// certificates in `ca_file` if given (a private CA).
///
/// # Errors
/// An unreadable or empty `ca_file`, or no trusted CA at all.
pub fn tls_config(ca_file: Option<&Path>) -> Result<Arc<rustls::ClientConfig>, String> {
    use rustls_pki_types::pem::PemObject as _;
    let mut roots = rustls::RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    let (added, _) = roots.add_parsable_certificates(native.certs);
    if let Some(path) = ca_file {
        let certs = rustls_pki_types::CertificateDer::pem_file_iter(path)
            .map_err(|e| format!("{}: {e}", path.display()))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("{}: {e}", path.display()))?;
        if certs.is_empty() {
            return Err(format!("{}: no PEM certificate in it", path.display()));
        }
        for c in certs {
            roots
                .add(c)
                .map_err(|e| format!("{}: {e}", path.display()))?;
        }
    } else if added == 0 {
        return Err(
            "no trusted CA certificates on this system (install ca-certificates, or set \
             ca_file for this endpoint)"
                .into(),
        );
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// Where and how one endpoint is reached.
#[derive(Debug, Clone)]
pub struct Destination {
    /// The URL.
    pub target: Target,
    /// Loopback, private and link-local addresses allowed.
    pub allow_private: bool,
    /// TLS settings (https endpoints).
    pub tls: Option<Arc<rustls::ClientConfig>>,
}

/// What one delivery attempt came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// A 2xx answer.
    Delivered(u16),
    /// Any other answer: the status and the `Retry-After` it gave, seconds.
    Refused {
        /// HTTP status.
        status: u16,
        /// `Retry-After` in seconds, if given as a number.
        retry_after_s: Option<u64>,
    },
    /// No answer: resolving, the address guard, connecting, or a timeout.
    Failed(String),
}

/// Resolves `target`, keeps the addresses the guard allows, and connects to
/// the first that answers: the check is on the address connected to, not on
/// the name, so a name that resolves to a private address at send time (DNS
/// rebinding) is refused.
async fn connect(
    target: &Target,
    allow_private: bool,
) -> Result<(tokio::net::TcpStream, SocketAddr), String> {
    let resolved: Vec<SocketAddr> = tokio::net::lookup_host((target.host.as_str(), target.port))
        .await
        .map_err(|e| format!("resolving {}: {e}", target.host))?
        .collect();
    let (allowed, refused): (Vec<SocketAddr>, Vec<SocketAddr>) = resolved
        .into_iter()
        .partition(|a| allow_private || public(a.ip()));
    if allowed.is_empty() {
        let list = refused
            .iter()
            .map(|a| a.ip().to_string())
            .collect::<Vec<_>>()
            .join(", ");
        return Err(format!(
            "{} resolves only to loopback, private or link-local addresses ({list}): refused \
             (set allow_private = true for this endpoint to allow them)",
            target.host
        ));
    }
    let mut last = String::new();
    for addr in allowed {
        match tokio::net::TcpStream::connect(addr).await {
            Ok(s) => return Ok((s, addr)),
            Err(e) => last = format!("connecting to {addr}: {e}"),
        }
    }
    Err(last)
}

/// One signed delivery attempt of `body` with `id`, within `timeout`.
pub async fn deliver(
    dest: &Destination,
    secrets: &[Secret],
    id: &str,
    body: &[u8],
    timeout: Duration,
) -> Outcome {
    let target = &dest.target;
    let attempt = async {
        let (stream, addr) = connect(target, dest.allow_private).await?;
        let timestamp = crate::now_ms() / 1000;
        let req = hyper::Request::post(target.path.as_str())
            .header(hyper::header::HOST, target.authority.as_str())
            .header(hyper::header::CONTENT_TYPE, "application/json")
            .header(hyper::header::USER_AGENT, "sentinel-mesh")
            .header("webhook-id", id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", signature(secrets, id, timestamp, body))
            .body(Full::new(Bytes::copy_from_slice(body)))
            .map_err(|e| e.to_string())?;
        if !target.tls {
            return exchange(stream, req)
                .await
                .map_err(|e| format!("{addr}: {e}"));
        }
        let config = dest
            .tls
            .clone()
            .ok_or_else(|| "https endpoint without TLS settings".to_owned())?;
        let name = rustls_pki_types::ServerName::try_from(target.host.clone())
            .map_err(|e| format!("{}: {e}", target.host))?;
        let tls = tokio_rustls::TlsConnector::from(config)
            .connect(name, stream)
            .await
            .map_err(|e| format!("TLS with {addr} ({}): {e}", target.host))?;
        exchange(tls, req).await.map_err(|e| format!("{addr}: {e}"))
    };
    match tokio::time::timeout(timeout, attempt).await {
        Ok(Ok(o)) => o,
        Ok(Err(e)) => Outcome::Failed(e),
        Err(_) => Outcome::Failed(format!(
            "no answer from {} within {timeout:?}",
            target.authority
        )),
    }
}

/// One HTTP/1.1 request and its answer over `stream`.
async fn exchange<S>(stream: S, req: hyper::Request<Full<Bytes>>) -> Result<Outcome, String>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| e.to_string())?;
    let driver = tokio::spawn(conn);
    let resp = sender.send_request(req).await.map_err(|e| e.to_string())?;
    let status = resp.status().as_u16();
    let retry_after_s = resp
        .headers()
        .get(hyper::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    // Read (a bounded part of) the answer so the exchange completes.
    let _ = Limited::new(resp.into_body(), MAX_RESPONSE).collect().await;
    driver.abort();
    Ok(if (200..300).contains(&status) {
        Outcome::Delivered(status)
    } else {
        Outcome::Refused {
            status,
            retry_after_s,
        }
    })
}

/// Delay before retry number `attempt` (1 for the first retry), ms:
/// exponential from `base_ms`, capped at `max_ms`, with jitter from the
/// random draw `rand`: the delay is uniform in [d/2, d).
#[must_use]
pub fn backoff_ms(attempt: u32, base_ms: u64, max_ms: u64, rand: u64) -> u64 {
    let d = base_ms
        .saturating_mul(1u64 << attempt.saturating_sub(1).min(40))
        .min(max_ms);
    let half = d / 2;
    half + rand % (d - half).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_parse_refuse_bad_ones_and_never_show() {
        let s = Secret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        assert_eq!(format!("{s:?}"), "Secret(..)");
        assert_eq!(&*s.to_text(), "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw");
        for bad in [
            "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            "whsec_not base64!",
            "whsec_c2hvcnQ=",
        ] {
            let e = Secret::parse(bad).unwrap_err();
            assert!(!e.contains("MfKQ"), "{e}");
        }
        let g = Secret::generate().unwrap();
        assert_eq!(Secret::parse(&g.to_text()).unwrap().0.len(), 32);
    }

    /// The example of the Standard Webhooks reference libraries.
    #[test]
    fn signs_the_reference_example() {
        let s = Secret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let sig = signature(
            &[s],
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1_614_265_330,
            br#"{"test": 2432232314}"#,
        );
        assert_eq!(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }

    #[test]
    fn every_secret_signs_during_a_rotation() {
        let a = Secret::generate().unwrap();
        let b = Secret::generate().unwrap();
        let both = signature(&[a.clone(), b.clone()], "msg_1", 5, b"{}");
        let parts: Vec<&str> = both.split(' ').collect();
        assert_eq!(
            parts,
            [
                signature(&[a], "msg_1", 5, b"{}"),
                signature(&[b], "msg_1", 5, b"{}")
            ]
        );
    }

    fn alert(severity: Severity) -> Alert {
        Alert {
            event: EventType::NodeQuarantined,
            severity,
            subject: "ab".repeat(32),
            incident: format!("quarantine/{}/7/9", "ab".repeat(32)),
            at_ms: 1_765_000_000_123,
            detail: "equivocation certificate".into(),
            sentinel: "cd".repeat(32),
        }
    }

    #[test]
    fn ids_follow_the_incident_and_its_severity_not_the_sender_or_time() {
        let a = alert(Severity::Critical);
        let mut from_elsewhere = a.clone();
        from_elsewhere.sentinel = "ef".repeat(32);
        from_elsewhere.at_ms += 1_500;
        from_elsewhere.detail = "seen later".into();
        assert_eq!(a.id(), from_elsewhere.id());
        assert_ne!(a.id(), alert(Severity::High).id());
        let mut other = a.clone();
        other.incident.push('0');
        assert_ne!(a.id(), other.id());
        assert!(a.id().starts_with("msg_") && a.id().len() == 36);
    }

    #[test]
    fn bodies_in_both_templates() {
        let a = alert(Severity::Critical);
        let v: serde_json::Value = serde_json::from_slice(&a.body(Template::Standard)).unwrap();
        assert_eq!(v["type"], "node.quarantined");
        assert_eq!(v["timestamp"], "2025-12-06T05:46:40.123Z");
        assert_eq!(v["data"]["severity"], "critical");
        assert_eq!(v["data"]["subject"], "ab".repeat(32));
        let s: serde_json::Value = serde_json::from_slice(&a.body(Template::Slack)).unwrap();
        let text = s["text"].as_str().unwrap();
        assert!(
            text.starts_with("[critical] node.quarantined abababababababab:"),
            "{text}"
        );
    }

    #[test]
    fn rfc3339_matches_known_dates() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(951_782_400_000), "2000-02-29T00:00:00.000Z");
        assert_eq!(rfc3339(4_102_444_799_999), "2099-12-31T23:59:59.999Z");
    }

    #[test]
    fn urls_parse_and_bad_ones_say_why() {
        let t = Target::parse("http://hooks.example:8080/a/b?c=d").unwrap();
        assert_eq!(
            (t.host.as_str(), t.port, t.path.as_str()),
            ("hooks.example", 8080, "/a/b?c=d")
        );
        assert_eq!(Target::parse("http://[::1]/x").unwrap().host, "::1");
        let t = Target::parse("https://hooks.example/x").unwrap();
        assert_eq!((t.tls, t.port), (true, 443));
        assert!(!Target::parse("http://hooks.example/x").unwrap().tls);
        for (bad, says) in [
            ("ftp://x/", "not an http"),
            ("http://user:pw@x/", "user info"),
            ("hooks.example/x", "not an http"),
        ] {
            let e = Target::parse(bad).unwrap_err();
            assert!(e.contains(says), "{bad}: {e}");
        }
    }

    #[test]
    fn the_guard_refuses_internal_addresses_in_every_spelling() {
        for internal in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "::1",
            "::",
            "fe80::1",
            "fd00::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "224.0.0.1",
        ] {
            assert!(!public(internal.parse().unwrap()), "{internal}");
        }
        for external in [
            "93.184.216.34",
            "2606:2800:220:1::1",
            "8.8.8.8",
            "::ffff:8.8.8.8",
        ] {
            assert!(public(external.parse().unwrap()), "{external}");
        }
    }

    /// The guard is checked on the resolved address at send time: a name
    /// that resolves to loopback (here `localhost`) is refused like the
    /// literal, and nothing connects, unless the endpoint allows it.
    #[tokio::test]
    async fn delivery_to_internal_addresses_is_refused_unless_allowed() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let secret = [Secret::generate().unwrap()];
        for host in ["127.0.0.1", "localhost"] {
            let t = Target::parse(&format!("http://{host}:{port}/x")).unwrap();
            let d = Destination {
                target: t,
                allow_private: false,
                tls: None,
            };
            let o = deliver(&d, &secret, "msg_1", b"{}", Duration::from_secs(2)).await;
            let Outcome::Failed(e) = o else {
                panic!("{host}: {o:?}")
            };
            assert!(e.contains("refused") && e.contains("allow_private"), "{e}");
        }
        let accepted = tokio::time::timeout(Duration::from_millis(200), listener.accept()).await;
        assert!(accepted.is_err(), "the guard let a connection through");
        // Allowed: a real request arrives, with the three headers.
        let server = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut buf = vec![0u8; 4096];
            let n = tokio::io::AsyncReadExt::read(&mut s, &mut buf)
                .await
                .unwrap();
            tokio::io::AsyncWriteExt::write_all(
                &mut s,
                b"HTTP/1.1 429 Too Many Requests\r\nRetry-After: 7\r\ncontent-length: 0\r\n\r\n",
            )
            .await
            .unwrap();
            String::from_utf8_lossy(&buf[..n]).into_owned()
        });
        let t = Target::parse(&format!("http://127.0.0.1:{port}/x")).unwrap();
        let d = Destination {
            target: t,
            allow_private: true,
            tls: None,
        };
        let o = deliver(&d, &secret, "msg_1", b"{}", Duration::from_secs(2)).await;
        assert_eq!(
            o,
            Outcome::Refused {
                status: 429,
                retry_after_s: Some(7)
            }
        );
        let request = server.await.unwrap().to_lowercase();
        for h in [
            "webhook-id: msg_1",
            "webhook-timestamp: ",
            "webhook-signature: v1,",
        ] {
            assert!(request.contains(h), "{request}");
        }
    }

    /// An https endpoint signed by a private CA: delivered with that CA in
    /// `ca_file`; refused by the TLS check with the system's CAs alone.
    #[tokio::test]
    async fn https_endpoints_are_checked_against_the_trusted_cas() {
        use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
        let ca_key = KeyPair::generate().unwrap();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca = CertifiedIssuer::self_signed(ca_params, ca_key).unwrap();
        let key = KeyPair::generate().unwrap();
        let cert = CertificateParams::new(vec!["localhost".to_owned()])
            .unwrap()
            .signed_by(&key, &ca)
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let ca_file = dir.path().join("ca.pem");
        std::fs::write(&ca_file, ca.pem()).unwrap();
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let server = rustls::ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(
                vec![cert.der().clone()],
                rustls_pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
            )
            .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            loop {
                let (tcp, _) = listener.accept().await.unwrap();
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    use tokio::io::{AsyncReadExt, AsyncWriteExt};
                    let Ok(mut tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let mut buf = vec![0u8; 4096];
                    let _ = tls.read(&mut buf).await;
                    let _ = tls
                        .write_all(b"HTTP/1.1 204 No Content\r\nconnection: close\r\n\r\n")
                        .await;
                    let _ = tls.shutdown().await;
                });
            }
        });
        let target = Target::parse(&format!("https://localhost:{port}/hook")).unwrap();
        let secret = [Secret::generate().unwrap()];
        let dest = |tls| Destination {
            target: target.clone(),
            allow_private: true,
            tls: Some(tls),
        };
        let trusted = dest(tls_config(Some(&ca_file)).unwrap());
        let o = deliver(&trusted, &secret, "msg_1", b"{}", Duration::from_secs(5)).await;
        assert_eq!(o, Outcome::Delivered(204));
        if let Ok(system) = tls_config(None) {
            let o = deliver(
                &dest(system),
                &secret,
                "msg_1",
                b"{}",
                Duration::from_secs(5),
            )
            .await;
            let Outcome::Failed(e) = o else {
                panic!("{o:?}")
            };
            assert!(
                e.contains("TLS") && e.to_lowercase().contains("certificate"),
                "{e}"
            );
        }
        assert!(tls_config(Some(&dir.path().join("missing.pem"))).is_err());
    }

    #[test]
    fn backoff_grows_caps_and_jitters_within_half() {
        assert_eq!(backoff_ms(1, 1_000, 3_600_000, 0), 500);
        assert_eq!(backoff_ms(1, 1_000, 3_600_000, 499), 999);
        assert_eq!(backoff_ms(1, 1_000, 3_600_000, 500), 500);
        assert_eq!(backoff_ms(4, 1_000, 3_600_000, 0), 4_000);
        assert_eq!(backoff_ms(40, 1_000, 3_600_000, 0), 1_800_000);
        assert_eq!(backoff_ms(u32::MAX, 1_000, 3_600_000, 900_000), 2_700_000);
    }
}
