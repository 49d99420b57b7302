//! The guarded node's Prometheus endpoint: fetched every
//! `collect.scrape_interval_ms`, two of its series read — a gauge of peers
//! and a counter of errors — and carried in the sentinel's own signed
//! telemetry (`HostSample::node_peers`, `HostSample::node_errors`).
//!
//! The parser reads the Prometheus text exposition format (and the
//! OpenMetrics text that most exporters also serve): comment lines are
//! skipped, label values may hold any escaped text, and a metric with
//! several label sets is summed over them.

use std::net::SocketAddr;
use std::time::Duration;

/// Where to scrape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    host: String,
    port: u16,
    path: String,
}

impl Target {
    /// Parses an `http://host[:port]/path` URL.
    ///
    /// # Errors
    /// What is wrong with the URL.
    pub fn parse(url: &str) -> Result<Self, String> {
        // The URL is logged and shown in the status, and quoted in errors:
        // refuse credentials before anything can echo them.
        let authority = url.split_once("://").map_or(url, |(_, rest)| rest);
        if authority.split('/').next().is_some_and(|a| a.contains('@')) {
            return Err("credentials in the URL are not supported".into());
        }
        let uri: hyper::Uri = url.parse().map_err(|e| format!("{url:?}: {e}"))?;
        if uri.scheme_str() != Some("http") {
            return Err(format!("{url:?} must be an http:// URL"));
        }

        let host = uri
            .host()
            .ok_or_else(|| format!("{url:?} names no host"))?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let path = uri
            .path_and_query()
            .map_or("/", hyper::http::uri::PathAndQuery::as_str)
            .to_owned();
        Ok(Self {
            host,
            port: uri.port_u16().unwrap_or(80),
            path,
        })
    }

    async fn resolve(&self) -> Result<SocketAddr, String> {
        tokio::net::lookup_host((self.host.as_str(), self.port))
            .await
            .map_err(|e| format!("resolving {}: {e}", self.host))?
            .next()
            .ok_or_else(|| format!("{} resolves to no address", self.host))
    }
}

/// Why a line of exposition text could not be read.
fn line_error(n: usize, what: &str) -> String {
    format!("exposition line {}: {what}", n + 1)
}

/// The sum of every sample of `name` in exposition `text`, or `None` when
/// the metric is absent. Non-finite values are ignored.
///
/// # Errors
/// A malformed sample line, with its number.
pub fn metric_sum(text: &str, name: &str) -> Result<Option<f64>, String> {
    let mut found = None::<f64>;
    for (n, line) in text.lines().enumerate() {
        let line = line.trim_start();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let name_end = line
            .find(|c: char| c == '{' || c.is_ascii_whitespace())
            .ok_or_else(|| line_error(n, "a name without a value"))?;
        let rest = &line[name_end..];
        let rest = if rest.starts_with('{') {
            &rest[labels_end(rest).ok_or_else(|| line_error(n, "unterminated labels"))?..]
        } else {
            rest
        };
        if &line[..name_end] != name {
            continue;
        }
        let value = rest
            .split_ascii_whitespace()
            .next()
            .ok_or_else(|| line_error(n, "no value"))?;
        let value: f64 = value
            .parse()
            .map_err(|_| line_error(n, &format!("{value:?} is not a number")))?;
        if value.is_finite() {
            *found.get_or_insert(0.0) += value;
        }
    }
    Ok(found)
}

/// The index just past the `}` closing a label set that `s` starts with.
fn labels_end(s: &str) -> Option<usize> {
    let mut quoted = false;
    let mut escaped = false;
    for (i, c) in s.char_indices() {
        match (quoted, escaped, c) {
            (true, true, _) => escaped = false,
            (true, false, '\\') => escaped = true,
            (_, _, '"') => quoted = !quoted,
            (false, _, '}') => return Some(i + 1),
            _ => {}
        }
    }
    None
}

/// One successful scrape.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Reading {
    /// The peers gauge, clamped to `u16`.
    pub peers: u16,
    /// Errors counted since the previous scrape (0 on the first; after a
    /// counter reset, the new counter value).
    pub new_errors: u64,
    /// The errors counter as read.
    pub errors_total: f64,
}

/// Scrapes one target, remembering the errors counter between calls.
#[derive(Debug)]
pub struct Scraper {
    target: Target,
    peers_metric: String,
    errors_metric: String,
    last_errors: Option<f64>,
}

impl Scraper {
    /// A scraper for `url` reading the two named metrics.
    ///
    /// # Errors
    /// A bad URL.
    pub fn new(url: &str, peers_metric: &str, errors_metric: &str) -> Result<Self, String> {
        Ok(Self {
            target: Target::parse(url)?,
            peers_metric: peers_metric.to_owned(),
            errors_metric: errors_metric.to_owned(),
            last_errors: None,
        })
    }

    /// Fetches and reads the target once.
    ///
    /// # Errors
    /// Unreachable target, a status other than 200, malformed text, or a
    /// metric missing from it.
    pub async fn scrape(&mut self, timeout: Duration) -> Result<Reading, String> {
        let addr = self.target.resolve().await?;
        let authority = if self.target.host.contains(':') {
            format!("[{}]:{}", self.target.host, self.target.port)
        } else {
            format!("{}:{}", self.target.host, self.target.port)
        };
        let (code, body) =
            crate::http::get(addr, &authority, &self.target.path, None, timeout).await?;
        if code != 200 {
            return Err(format!("HTTP status {code}"));
        }
        let read = |name: &str| {
            metric_sum(&body, name)?.ok_or_else(|| format!("metric {name:?} is not in the scrape"))
        };
        let peers = read(&self.peers_metric)?;
        let errors = read(&self.errors_metric)?;
        let new_errors = match self.last_errors {
            None => 0.0,
            Some(last) if errors >= last => errors - last,
            // A restarted node starts its counter again.
            Some(_) => errors,
        };
        self.last_errors = Some(errors);
        // Float to integer casts saturate; the values are finite.
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        Ok(Reading {
            peers: peers.round().clamp(0.0, f64::from(u16::MAX)) as u16,
            new_errors: new_errors.round().max(0.0) as u64,
            errors_total: errors,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = r#"# HELP p2p_peers Connected peers.
# TYPE p2p_peers gauge
p2p_peers{direction="in"} 3
p2p_peers{direction="out",note="a } and a \" inside"} 4 1700000000000
errors_total 12
errors_total_created 1.7e9
other{x="errors_total 99"} 1
weird NaN
"#;

    #[test]
    fn sums_label_sets_and_ignores_lookalikes() {
        assert_eq!(metric_sum(TEXT, "p2p_peers").unwrap(), Some(7.0));
        assert_eq!(metric_sum(TEXT, "errors_total").unwrap(), Some(12.0));
        assert_eq!(metric_sum(TEXT, "errors").unwrap(), None);
        assert_eq!(metric_sum(TEXT, "weird").unwrap(), None);
    }

    #[test]
    fn malformed_lines_are_errors_with_their_number() {
        let e = metric_sum("a 1\nb{x=\"1\" 2\n", "a").unwrap_err();
        assert!(e.contains("line 2") && e.contains("unterminated"), "{e}");
        let e = metric_sum("a one\n", "a").unwrap_err();
        assert!(e.contains("\"one\" is not a number"), "{e}");
        assert!(metric_sum("lonely\n", "a").is_err());
    }

    #[test]
    fn urls() {
        let t = Target::parse("http://127.0.0.1:9100/metrics?x=1").unwrap();
        assert_eq!(
            (t.host.as_str(), t.port, t.path.as_str()),
            ("127.0.0.1", 9100, "/metrics?x=1")
        );
        assert_eq!(Target::parse("http://node").unwrap().port, 80);
        assert_eq!(Target::parse("http://[::1]:1/").unwrap().host, "::1");
        assert!(Target::parse("https://node/").is_err());
        assert!(Target::parse("not a url").is_err());
        for with_secret in ["http://me:secret@node/metrics", "https://me:secret@n"] {
            let e = Target::parse(with_secret).unwrap_err();
            assert!(!e.contains("secret"), "{e}");
        }
    }

    /// A real HTTP server on loopback serving a counter that grows, then
    /// restarts, then a page without the metric, then a 500.
    #[test]
    fn scrapes_a_real_server_and_tracks_the_counter() {
        use axum::http::StatusCode;
        use std::sync::atomic::{AtomicUsize, Ordering};
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let calls = std::sync::Arc::new(AtomicUsize::new(0));
            let app = axum::Router::new().route(
                "/metrics",
                axum::routing::get(move || {
                    let n = calls.fetch_add(1, Ordering::SeqCst);
                    async move {
                        match n {
                            0 => (StatusCode::OK, "p2p_peers 5\nerrors_total 10\n".to_owned()),
                            1 => (StatusCode::OK, "p2p_peers 70000\nerrors_total 14\n".into()),
                            2 => (StatusCode::OK, "p2p_peers 2\nerrors_total 3\n".into()),
                            3 => (StatusCode::OK, "p2p_peers 2\n".into()),
                            _ => (StatusCode::INTERNAL_SERVER_ERROR, String::new()),
                        }
                    }
                }),
            );
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            let server = tokio::spawn(async move { axum::serve(listener, app).await });
            let url = format!("http://{addr}/metrics");
            let mut s = Scraper::new(&url, "p2p_peers", "errors_total").unwrap();
            let t = Duration::from_secs(5);
            let r = s.scrape(t).await.unwrap();
            assert_eq!((r.peers, r.new_errors), (5, 0));
            let r = s.scrape(t).await.unwrap();
            assert_eq!((r.peers, r.new_errors), (u16::MAX, 4));
            let r = s.scrape(t).await.unwrap();
            assert_eq!((r.peers, r.new_errors), (2, 3), "counter reset");
            let e = s.scrape(t).await.unwrap_err();
            assert!(e.contains("\"errors_total\" is not in the scrape"), "{e}");
            let e = s.scrape(t).await.unwrap_err();
            assert!(e.contains("500"), "{e}");
            server.abort();
            let e = s.scrape(Duration::from_secs(2)).await.unwrap_err();
            assert!(!e.is_empty());
        });
    }
}
