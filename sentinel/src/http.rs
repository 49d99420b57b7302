//! A small HTTP/1.1 client on hyper: the CLI's calls to the admin API and
//! the scrape of the guarded node's metrics (webhooks: [`crate::webhook`]).

use std::net::SocketAddr;
use std::time::Duration;

use http_body_util::{BodyExt, Empty, Limited};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;

/// Largest response body read.
const MAX_BODY: usize = 4 * 1024 * 1024;

/// GETs `path` from `addr` with an optional bearer token; returns the status
/// code and body.
///
/// # Errors
/// Connection, protocol, timeout or oversize-body errors, as text.
pub async fn get(
    addr: SocketAddr,
    host: &str,
    path: &str,
    token: Option<&str>,
    timeout: Duration,
) -> Result<(u16, String), String> {
    request(addr, host, hyper::Method::GET, path, token, timeout).await
}

/// Sends a bodiless `method` request for `path` to `addr` with an optional
/// bearer token; returns the status code and body.
///
/// # Errors
/// Connection, protocol, timeout or oversize-body errors, as text.
pub async fn request(
    addr: SocketAddr,
    host: &str,
    method: hyper::Method,
    path: &str,
    token: Option<&str>,
    timeout: Duration,
) -> Result<(u16, String), String> {
    tokio::time::timeout(timeout, async {
        let stream = tokio::net::TcpStream::connect(addr)
            .await
            .map_err(|e| format!("connecting to {addr}: {e}"))?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| e.to_string())?;
        let driver = tokio::spawn(conn);
        let mut req = hyper::Request::builder()
            .method(method)
            .uri(path)
            .header(hyper::header::HOST, host);
        if let Some(t) = token {
            req = req.header(hyper::header::AUTHORIZATION, format!("Bearer {t}"));
        }
        let req = req.body(Empty::<Bytes>::new()).map_err(|e| e.to_string())?;
        let resp = sender.send_request(req).await.map_err(|e| e.to_string())?;
        let status = resp.status().as_u16();
        let body = Limited::new(resp.into_body(), MAX_BODY)
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        driver.abort();
        Ok((status, String::from_utf8_lossy(&body).into_owned()))
    })
    .await
    .map_err(|_| format!("no answer from {addr} within {timeout:?}"))?
}
