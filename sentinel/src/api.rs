//! The admin HTTP API (axum), loopback by default.
//!
//! Open: `GET /healthz` (the process answers), `GET /readyz` (joined and the
//! database writable), `GET /metrics` (Prometheus text). Bearer token
//! (`data_dir/api-token`): `GET /v1/status`, `GET /v1/peers`,
//! `GET /v1/telemetry/{node}` (hex id; `?limit=N`, at most 1,000),
//! `GET /v1/quarantine` (certificates held, without their bytes),
//! `GET /v1/quarantine/{node}` (those about one node, with the certificate
//! bytes in hex for `sentinel verify-cert`), `GET /v1/scores`,
//! `GET /v1/accusations` (this sentinel's accusations and the votes it
//! cast; `?limit=N`, at most 1,000), `GET /v1/incidents` (`?since=` Unix
//! ms, `?limit=N`), `GET /v1/alerts` (the webhook outbox, newest first;
//! `?state=pending|delivered|dead`, `?limit=N`, at most 10,000),
//! `POST /v1/alerts/retry` (dead alerts back to pending, `?id=` one of
//! them; their endpoints enabled again).

use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::Router;
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Json, Response};
use axum::routing::{get, post};
use sentinel_protocol::NodeId;

use crate::daemon::Shared;
use crate::store::{CertificateRow, Store, StoreError};

/// The router.
pub fn router(shared: Arc<Shared>) -> Router {
    let v1 = Router::new()
        .route("/v1/status", get(status))
        .route("/v1/peers", get(peers))
        .route("/v1/telemetry/{node}", get(telemetry))
        .route("/v1/quarantine", get(quarantine))
        .route("/v1/scores", get(scores))
        .route("/v1/quarantine/{node}", get(quarantine_of))
        .route("/v1/accusations", get(accusations))
        .route("/v1/incidents", get(incidents))
        .route("/v1/alerts", get(alerts))
        .route("/v1/alerts/retry", post(retry_alerts))
        .route_layer(middleware::from_fn_with_state(
            shared.clone(),
            require_token,
        ));
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(ready))
        .route("/metrics", get(metrics))
        .merge(v1)
        .with_state(shared)
}

fn error(code: StatusCode, message: &str) -> Response {
    (code, Json(serde_json::json!({ "error": message }))).into_response()
}

async fn require_token(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    req: Request,
    next: Next,
) -> Response {
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    if aws_lc_rs::constant_time::verify_slices_are_equal(given.as_bytes(), shared.token.as_bytes())
        .is_err()
    {
        return error(
            StatusCode::UNAUTHORIZED,
            "missing or wrong bearer token (see data_dir/api-token)",
        );
    }
    next.run(req).await
}

async fn ready(State(shared): State<Arc<Shared>>) -> Response {
    if shared.ready.load(Ordering::SeqCst) {
        (StatusCode::OK, "ready\n").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready\n").into_response()
    }
}

async fn metrics(State(shared): State<Arc<Shared>>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        shared.metrics.encode(),
    )
        .into_response()
}

async fn status(State(shared): State<Arc<Shared>>) -> Response {
    match shared.status.lock() {
        Ok(s) => Json(s.clone()).into_response(),
        Err(_) => error(StatusCode::INTERNAL_SERVER_ERROR, "status unavailable"),
    }
}

async fn peers(State(shared): State<Arc<Shared>>) -> Response {
    match shared.peers.lock() {
        Ok(p) => Json(p.clone()).into_response(),
        Err(_) => error(StatusCode::INTERNAL_SERVER_ERROR, "peers unavailable"),
    }
}

/// The latest score of every neighbour scored, with its local suspicion.
async fn scores(State(shared): State<Arc<Shared>>) -> Response {
    match shared.scores.lock() {
        Ok(s) => Json(serde_json::json!({
            "model": s.model,
            "neighbours": s.latest.values().collect::<Vec<_>>(),
        }))
        .into_response(),
        Err(_) => error(StatusCode::INTERNAL_SERVER_ERROR, "scores unavailable"),
    }
}

#[derive(Debug, serde::Deserialize)]
struct Limit {
    limit: Option<usize>,
}

async fn telemetry(
    State(shared): State<Arc<Shared>>,
    Path(node): Path<String>,
    Query(q): Query<Limit>,
) -> Response {
    let id = match NodeId::from_hex(&node) {
        Ok(id) => id,
        Err(e) => return error(StatusCode::BAD_REQUEST, &e),
    };
    let limit = q.limit.unwrap_or(20).min(1000);
    query(shared, move |s| {
        let rows = s.telemetry(&id.to_hex(), limit)?;
        Ok(serde_json::json!({ "node": id.to_hex(), "reports": rows }))
    })
    .await
}

async fn accusations(State(shared): State<Arc<Shared>>, Query(q): Query<Limit>) -> Response {
    let limit = q.limit.unwrap_or(100).min(1000);
    query(shared, move |s| {
        Ok(serde_json::json!({
            "accusations": s.accusations(limit)?,
            "votes": s.votes(limit)?,
        }))
    })
    .await
}

#[derive(Debug, serde::Deserialize)]
struct Since {
    since: Option<u64>,
    limit: Option<usize>,
}

async fn incidents(State(shared): State<Arc<Shared>>, Query(q): Query<Since>) -> Response {
    let limit = q.limit.unwrap_or(1000).min(10_000);
    let since = q.since.unwrap_or(0);
    query(shared, move |s| {
        let mut rows = s.incidents_since(since)?;
        let skip = rows.len().saturating_sub(limit);
        rows.drain(..skip);
        Ok(serde_json::json!({ "incidents": rows }))
    })
    .await
}

#[derive(Debug, serde::Deserialize)]
struct AlertQuery {
    state: Option<String>,
    limit: Option<usize>,
}

async fn alerts(State(shared): State<Arc<Shared>>, Query(q): Query<AlertQuery>) -> Response {
    if let Some(s) = &q.state
        && !["pending", "delivered", "dead"].contains(&s.as_str())
    {
        return error(
            StatusCode::BAD_REQUEST,
            "state is one of pending, delivered, dead",
        );
    }
    let limit = q.limit.unwrap_or(1000).min(10_000);
    query(shared, move |s| {
        Ok(serde_json::json!({ "alerts": s.alerts(q.state.as_deref(), limit)? }))
    })
    .await
}

#[derive(Debug, serde::Deserialize)]
struct RetryQuery {
    id: Option<String>,
}

async fn retry_alerts(State(shared): State<Arc<Shared>>, Query(q): Query<RetryQuery>) -> Response {
    let wake = shared.alerts_wake.clone();
    let result = tokio::task::spawn_blocking(move || {
        let mut store = shared
            .store
            .lock()
            .map_err(|_| "database unavailable".to_owned())?;
        store
            .retry_alerts(q.id.as_deref(), crate::now_ms())
            .map_err(|e| e.to_string())
    })
    .await;
    match result {
        Ok(Ok(n)) => {
            wake.notify_one();
            Json(serde_json::json!({ "requeued": n })).into_response()
        }
        Ok(Err(e)) => error(StatusCode::INTERNAL_SERVER_ERROR, &e),
        Err(_) => error(StatusCode::INTERNAL_SERVER_ERROR, "retry failed"),
    }
}

async fn quarantine(State(shared): State<Arc<Shared>>) -> Response {
    query(shared, |s| {
        let now = crate::now_ms();
        let rows: Vec<serde_json::Value> = s
            .certificates()?
            .iter()
            .map(|r| certificate_json(r, now, false))
            .collect();
        Ok(serde_json::json!({ "certificates": rows }))
    })
    .await
}

async fn quarantine_of(State(shared): State<Arc<Shared>>, Path(node): Path<String>) -> Response {
    let id = match NodeId::from_hex(&node) {
        Ok(id) => id,
        Err(e) => return error(StatusCode::BAD_REQUEST, &e),
    };
    query(shared, move |s| {
        let now = crate::now_ms();
        let rows: Vec<serde_json::Value> = s
            .certificates_of(&id.to_hex())?
            .iter()
            .map(|r| certificate_json(r, now, true))
            .collect();
        Ok(serde_json::json!({ "node": id.to_hex(), "certificates": rows }))
    })
    .await
}

/// A stored certificate for the API; `active` is whether its quarantine
/// is still running.
fn certificate_json(r: &CertificateRow, now_ms: u64, with_bytes: bool) -> serde_json::Value {
    let mut v = serde_json::json!({
        "subject": r.subject,
        "fault": r.fault,
        "epoch": r.epoch,
        "sequence": r.sequence,
        "since_ms": r.since_ms,
        "until_ms": r.until_ms,
        "active": r.until_ms > now_ms,
        "enforced": r.enforced && r.until_ms > now_ms,
        "source": r.source,
        "certificate_bytes": r.certificate.len(),
    });
    if with_bytes {
        v["certificate"] = hex::encode(&r.certificate).into();
    }
    v
}

/// Runs a database read off the async threads.
async fn query(
    shared: Arc<Shared>,
    f: impl FnOnce(&Store) -> Result<serde_json::Value, StoreError> + Send + 'static,
) -> Response {
    let result = tokio::task::spawn_blocking(move || {
        let store = shared
            .store
            .lock()
            .map_err(|_| "database unavailable".to_owned())?;
        f(&store).map_err(|e| e.to_string())
    })
    .await;
    match result {
        Ok(Ok(v)) => Json(v).into_response(),
        Ok(Err(e)) => error(StatusCode::INTERNAL_SERVER_ERROR, &e),
        Err(_) => error(StatusCode::INTERNAL_SERVER_ERROR, "query failed"),
    }
}
