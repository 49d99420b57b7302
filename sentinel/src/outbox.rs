//! The alert outbox: every alert is a row in the database, committed in the
//! same transaction as the incident it reports, before any delivery is
//! tried; a task delivers the due rows and records each attempt's outcome
//! before the next. A crash at any point leaves each alert pending (tried
//! again at the next start, with the same `webhook-id`), delivered, or in
//! the dead-letter list.
//!
//! One row per (`webhook-id`, endpoint): an alert whose id is already there
//! (the same incident at the same severity) is not queued again, so an
//! incident's updates do not alert twice.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rusqlite::{OptionalExtension, params};
use tracing::{debug, info, warn};

use crate::config::{AlertsSection, EndpointConfig};
use crate::daemon::Shared;
use crate::store::{Store, StoreError, to_i64, to_u64};
use crate::webhook::{self, Alert, Destination, EventType, Outcome, Secret, Target};

/// Rows delivered at once (concurrently) per round.
const BATCH: usize = 16;
/// Longest `last_error` kept, bytes.
const MAX_ERROR: usize = 512;

/// One alert row.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct AlertRow {
    /// `webhook-id`.
    pub id: String,
    /// Endpoint name.
    pub endpoint: String,
    /// Event type.
    pub event: String,
    /// Severity.
    pub severity: String,
    /// Subject (hex node id).
    pub subject: String,
    /// Incident key.
    pub incident: String,
    /// When it was queued, Unix ms.
    pub created_ms: u64,
    /// The request body.
    #[serde(skip)]
    pub body: Vec<u8>,
    /// `pending`, `delivered` or `dead`.
    pub state: String,
    /// Delivery attempts made.
    pub attempts: u32,
    /// When the next attempt is due (pending), Unix ms.
    pub next_ms: u64,
    /// The last HTTP status answered, if any.
    pub last_status: Option<u16>,
    /// Why the last attempt failed, if it did.
    pub last_error: Option<String>,
    /// When it was delivered or given up, Unix ms.
    pub done_ms: Option<u64>,
}

const COLUMNS: &str = "id, endpoint, event, severity, subject, incident, created_ms, body, state, \
                       attempts, next_ms, last_status, last_error, done_ms";

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<AlertRow> {
    Ok(AlertRow {
        id: r.get(0)?,
        endpoint: r.get(1)?,
        event: r.get(2)?,
        severity: r.get(3)?,
        subject: r.get(4)?,
        incident: r.get(5)?,
        created_ms: to_u64(r.get(6)?),
        body: r.get(7)?,
        state: r.get(8)?,
        attempts: u32::try_from(r.get::<_, i64>(9)?).unwrap_or(u32::MAX),
        next_ms: to_u64(r.get(10)?),
        last_status: r
            .get::<_, Option<i64>>(11)?
            .and_then(|s| u16::try_from(s).ok()),
        last_error: r.get(12)?,
        done_ms: r.get::<_, Option<i64>>(13)?.map(to_u64),
    })
}

fn clip(error: &str) -> &str {
    let mut end = error.len().min(MAX_ERROR);
    while !error.is_char_boundary(end) {
        end -= 1;
    }
    &error[..end]
}

/// An alert ready for one endpoint.
#[derive(Debug, Clone)]
pub struct Queued {
    /// Endpoint name.
    pub endpoint: String,
    /// The alert.
    pub alert: Alert,
    /// Its body in the endpoint's template.
    pub body: Vec<u8>,
}

fn insert_alerts(
    tx: &rusqlite::Transaction<'_>,
    at_ms: u64,
    alerts: &[Queued],
) -> Result<usize, StoreError> {
    let mut new = 0;
    for q in alerts {
        new += tx.execute(
            "INSERT OR IGNORE INTO alerts (id, endpoint, event, severity, subject, incident,
                 created_ms, body, state, next_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, 'pending', ?7)",
            params![
                q.alert.id(),
                q.endpoint,
                q.alert.event.name(),
                q.alert.severity.name(),
                q.alert.subject,
                q.alert.incident,
                to_i64(at_ms),
                q.body,
            ],
        )?;
    }
    Ok(new)
}

impl Store {
    /// Records an incident and queues its alerts, in one transaction.
    /// Returns how many alerts were new (an id already queued for an
    /// endpoint is not queued again).
    ///
    /// # Errors
    /// Database errors (then nothing is recorded).
    pub fn incident_with_alerts(
        &mut self,
        at_ms: u64,
        kind: &str,
        subject: &str,
        detail: &str,
        alerts: &[Queued],
    ) -> Result<usize, StoreError> {
        let tx = self.db.transaction()?;
        tx.execute(
            "INSERT INTO incidents (at_ms, kind, subject, detail) VALUES (?1, ?2, ?3, ?4)",
            params![to_i64(at_ms), kind, subject, detail],
        )?;
        let new = insert_alerts(&tx, at_ms, alerts)?;
        tx.commit()?;
        Ok(new)
    }

    /// Queues alerts without an incident row: the repair at start for
    /// incidents whose alert a crash may have caught between the state
    /// change (a certificate stored) and the incident's commit. An alert
    /// already queued is not queued again. Returns how many were new.
    ///
    /// # Errors
    /// Database errors.
    pub fn queue_alerts(&mut self, at_ms: u64, alerts: &[Queued]) -> Result<usize, StoreError> {
        let tx = self.db.transaction()?;
        let new = insert_alerts(&tx, at_ms, alerts)?;
        tx.commit()?;
        Ok(new)
    }

    /// Pending alerts due at `now`, oldest first.
    ///
    /// # Errors
    /// Database errors.
    pub fn due_alerts(&self, now: u64, limit: usize) -> Result<Vec<AlertRow>, StoreError> {
        let mut stmt = self.db.prepare(&format!(
            "SELECT {COLUMNS} FROM alerts WHERE state = 'pending' AND next_ms <= ?1
             ORDER BY next_ms, created_ms LIMIT ?2"
        ))?;
        let rows = stmt
            .query_map(
                params![to_i64(now), i64::try_from(limit).unwrap_or(i64::MAX)],
                row,
            )?
            .collect::<Result<_, _>>()?;
        Ok(rows)
    }

    /// When the next pending alert is due.
    ///
    /// # Errors
    /// Database errors.
    pub fn next_alert_ms(&self) -> Result<Option<u64>, StoreError> {
        Ok(self
            .db
            .query_row(
                "SELECT MIN(next_ms) FROM alerts WHERE state = 'pending'",
                [],
                |r| r.get::<_, Option<i64>>(0),
            )?
            .map(to_u64))
    }

    /// Alerts, newest first; only those in `state` if given.
    ///
    /// # Errors
    /// Database errors.
    pub fn alerts(&self, state: Option<&str>, limit: usize) -> Result<Vec<AlertRow>, StoreError> {
        let mut stmt = self.db.prepare(&format!(
            "SELECT {COLUMNS} FROM alerts WHERE ?1 IS NULL OR state = ?1
             ORDER BY created_ms DESC, id LIMIT ?2"
        ))?;
        let rows = stmt
            .query_map(
                params![state, i64::try_from(limit).unwrap_or(i64::MAX)],
                row,
            )?
            .collect::<Result<_, _>>()?;
        Ok(rows)
    }

    /// Records one attempt's outcome.
    ///
    /// # Errors
    /// Database errors.
    pub fn record_attempt(
        &mut self,
        id: &str,
        endpoint: &str,
        decision: &Decision,
        now: u64,
    ) -> Result<(), StoreError> {
        let (state, next, status, error, done) = match decision {
            Decision::Delivered(status) => ("delivered", 0, Some(*status), None, Some(now)),
            Decision::Retry {
                next_ms,
                status,
                error,
            } => ("pending", *next_ms, *status, Some(error.as_str()), None),
            Decision::Dead { status, error } => {
                ("dead", 0, *status, Some(error.as_str()), Some(now))
            }
        };
        self.db.execute(
            "UPDATE alerts SET state = ?3, attempts = attempts + 1, next_ms = ?4,
                 last_status = ?5, last_error = ?6, done_ms = ?7
             WHERE id = ?1 AND endpoint = ?2",
            params![
                id,
                endpoint,
                state,
                to_i64(next),
                status,
                error.map(clip),
                done.map(to_i64)
            ],
        )?;
        Ok(())
    }

    /// Disables an endpoint (it answered 410 Gone): its pending alerts go
    /// to the dead-letter list. Returns how many.
    ///
    /// # Errors
    /// Database errors.
    pub fn disable_endpoint(
        &mut self,
        name: &str,
        now: u64,
        reason: &str,
    ) -> Result<usize, StoreError> {
        let tx = self.db.transaction()?;
        tx.execute(
            "INSERT OR REPLACE INTO alert_endpoints (name, disabled_ms, reason) VALUES (?1, ?2, ?3)",
            params![name, to_i64(now), clip(reason)],
        )?;
        let n = tx.execute(
            "UPDATE alerts SET state = 'dead', last_error = ?2, done_ms = ?3
             WHERE endpoint = ?1 AND state = 'pending'",
            params![name, clip(reason), to_i64(now)],
        )?;
        tx.commit()?;
        Ok(n)
    }

    /// Why an endpoint is disabled, if it is.
    ///
    /// # Errors
    /// Database errors.
    pub fn endpoint_disabled(&self, name: &str) -> Result<Option<String>, StoreError> {
        Ok(self
            .db
            .query_row(
                "SELECT reason FROM alert_endpoints WHERE name = ?1",
                [name],
                |r| r.get(0),
            )
            .optional()?)
    }

    /// Moves dead alerts (all, or the one with webhook-id `id`) back to
    /// pending, due now, and enables their endpoints again. Returns how
    /// many.
    ///
    /// # Errors
    /// Database errors.
    pub fn retry_alerts(&mut self, id: Option<&str>, now: u64) -> Result<usize, StoreError> {
        let tx = self.db.transaction()?;
        tx.execute(
            "DELETE FROM alert_endpoints WHERE name IN
                 (SELECT endpoint FROM alerts WHERE state = 'dead' AND (?1 IS NULL OR id = ?1))",
            params![id],
        )?;
        let n = tx.execute(
            "UPDATE alerts SET state = 'pending', attempts = 0, next_ms = ?2, done_ms = NULL
             WHERE state = 'dead' AND (?1 IS NULL OR id = ?1)",
            params![id, to_i64(now)],
        )?;
        tx.commit()?;
        Ok(n)
    }
}

/// What to do with an alert after an attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// It arrived (2xx).
    Delivered(u16),
    /// Try again at `next_ms`.
    Retry {
        /// When.
        next_ms: u64,
        /// The status answered, if any.
        status: Option<u16>,
        /// Why it did not arrive.
        error: String,
    },
    /// Give up: the dead-letter list.
    Dead {
        /// The status answered, if any.
        status: Option<u16>,
        /// Why.
        error: String,
    },
}

/// Retry policy (`[alerts]`).
#[derive(Debug, Clone, Copy)]
pub struct Policy {
    /// One attempt's deadline.
    pub timeout: Duration,
    /// First retry delay, ms.
    pub base_ms: u64,
    /// Longest delay, ms.
    pub max_ms: u64,
    /// Attempts before dead.
    pub max_attempts: u32,
    /// Age before dead, ms.
    pub max_age_ms: u64,
}

impl Policy {
    /// From the config section.
    #[must_use]
    pub fn of(cfg: &AlertsSection) -> Self {
        Self {
            timeout: Duration::from_millis(cfg.timeout_ms),
            base_ms: cfg.retry_base_ms,
            max_ms: cfg.retry_max_ms,
            max_attempts: cfg.max_attempts,
            max_age_ms: cfg.max_age_hours.saturating_mul(3_600_000),
        }
    }

    /// The decision after attempt number `attempts` (1 for the first) of an
    /// alert queued at `created_ms` came to `outcome`; `rand` is the
    /// jitter draw. A 410 answer is handled by the caller (the endpoint
    /// is disabled).
    #[must_use]
    pub fn decide(
        &self,
        outcome: &Outcome,
        attempts: u32,
        created_ms: u64,
        now: u64,
        rand: u64,
    ) -> Decision {
        let (status, error, retry_after_s) = match outcome {
            Outcome::Delivered(s) => return Decision::Delivered(*s),
            Outcome::Refused {
                status,
                retry_after_s,
            } => (Some(*status), format!("answered {status}"), *retry_after_s),
            Outcome::Failed(e) => (None, e.clone(), None),
        };
        if attempts >= self.max_attempts {
            return Decision::Dead {
                status,
                error: format!("{error}; gave up after {attempts} attempts"),
            };
        }
        let delay = match retry_after_s {
            Some(s) => s.saturating_mul(1000).min(self.max_ms),
            None => webhook::backoff_ms(attempts, self.base_ms, self.max_ms, rand),
        };
        let next_ms = now.saturating_add(delay);
        if next_ms.saturating_sub(created_ms) > self.max_age_ms {
            return Decision::Dead {
                status,
                error: format!(
                    "{error}; gave up: undelivered for {} h",
                    self.max_age_ms / 3_600_000
                ),
            };
        }
        Decision::Retry {
            next_ms,
            status,
            error,
        }
    }
}

/// One configured endpoint, its secrets read.
#[derive(Debug, Clone)]
pub struct Endpoint {
    /// The config block.
    pub cfg: EndpointConfig,
    /// Where and how it is reached.
    pub dest: Destination,
    /// The signing secrets.
    pub secrets: Vec<Secret>,
}

/// Which endpoints an alert goes to.
#[derive(Debug, Clone, Default)]
pub struct Router {
    endpoints: Vec<Endpoint>,
    never_alert: BTreeSet<String>,
}

/// Reads a secrets file: mode 0600 or stricter, one `whsec_` secret per
/// non-empty line that is not a `#` comment, at least one.
///
/// # Errors
/// Unreadable, too open, empty, or a bad line (named by number, never
/// shown).
pub fn read_secrets(path: &Path) -> Result<Vec<Secret>, String> {
    let meta = std::fs::metadata(path).map_err(|e| format!("{}: {e}", path.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = meta.permissions().mode() & 0o7777;
        if mode & 0o077 != 0 {
            return Err(format!(
                "{}: mode {mode:o} lets others read the webhook secrets; chmod 600 it",
                path.display()
            ));
        }
    }
    #[cfg(not(unix))]
    let _ = meta;
    let text = zeroize::Zeroizing::new(
        std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?,
    );
    let mut secrets = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        secrets.push(
            Secret::parse(line).map_err(|e| format!("{} line {}: {e}", path.display(), i + 1))?,
        );
    }
    if secrets.is_empty() {
        return Err(format!("{}: no whsec_ secret in it", path.display()));
    }
    Ok(secrets)
}

/// Writes a new secrets file with one fresh secret, mode 0600; refuses to
/// overwrite.
///
/// # Errors
/// The file exists or cannot be written.
pub fn write_new_secret(path: &Path) -> Result<(), String> {
    let secret = Secret::generate()?;
    crate::daemon::create_private(path, format!("{}\n", &*secret.to_text()).as_bytes())
        .map_err(|e| format!("{}: {e}", path.display()))
}

impl Router {
    /// Reads every endpoint's secrets.
    ///
    /// # Errors
    /// The first endpoint whose URL or secrets file is bad, named.
    pub fn load(cfg: &AlertsSection) -> Result<Self, String> {
        let endpoints = cfg
            .endpoint
            .iter()
            .map(|e| {
                let ctx = |m: String| format!("alert endpoint {}: {m}", e.name);
                let target = Target::parse(&e.url).map_err(ctx)?;
                let tls = if target.tls {
                    Some(webhook::tls_config(e.ca_file.as_deref()).map_err(ctx)?)
                } else {
                    None
                };
                Ok(Endpoint {
                    cfg: e.clone(),
                    dest: Destination {
                        target,
                        allow_private: e.allow_private,
                        tls,
                    },
                    secrets: read_secrets(&e.secrets_file).map_err(ctx)?,
                })
            })
            .collect::<Result<_, String>>()?;
        Ok(Self {
            endpoints,
            never_alert: cfg.never_alert.iter().map(|s| s.to_lowercase()).collect(),
        })
    }

    /// Whether any endpoint is configured.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.endpoints.is_empty()
    }

    /// The endpoint named `name`.
    #[must_use]
    pub fn endpoint(&self, name: &str) -> Option<&Endpoint> {
        self.endpoints.iter().find(|e| e.cfg.name == name)
    }

    /// The endpoints `alert` goes to, each with its body: not for an
    /// allow-listed subject, and only where the event type and severity
    /// pass the endpoint's filters.
    #[must_use]
    pub fn route(&self, alert: &Alert) -> Vec<Queued> {
        let subject = alert.subject.to_lowercase();
        if self.never_alert.contains(&subject) {
            return Vec::new();
        }
        self.endpoints
            .iter()
            .filter(|e| {
                alert.severity >= e.cfg.min_severity
                    && (e.cfg.events.is_empty()
                        || e.cfg.events.iter().any(|t| t == alert.event.name()))
                    && !e
                        .cfg
                        .never_alert
                        .iter()
                        .any(|s| s.eq_ignore_ascii_case(&subject))
            })
            .map(|e| Queued {
                endpoint: e.cfg.name.clone(),
                alert: alert.clone(),
                body: alert.body(e.cfg.template),
            })
            .collect()
    }
}

/// A jitter draw.
fn jitter() -> u64 {
    let mut b = [0u8; 8];
    let _ = aws_lc_rs::rand::fill(&mut b);
    u64::from_le_bytes(b)
}

/// Delivers due alerts until `stop` is set: a round takes up to [`BATCH`]
/// due rows, sends them concurrently, and commits each outcome; between
/// rounds it sleeps until the next row is due, at most a second, or until
/// `wake` is notified (a new alert was committed).
pub async fn run(
    shared: Arc<Shared>,
    router: Arc<Router>,
    policy: Policy,
    wake: Arc<tokio::sync::Notify>,
    stop: Arc<std::sync::atomic::AtomicBool>,
) {
    use std::sync::atomic::Ordering;
    while !stop.load(Ordering::SeqCst) {
        let now = crate::now_ms();
        let (due, next) = match shared.store.lock() {
            Ok(s) => (
                s.due_alerts(now, BATCH).unwrap_or_default(),
                s.next_alert_ms().ok().flatten(),
            ),
            Err(_) => return,
        };
        if due.is_empty() {
            let wait = next.map_or(1_000, |t| t.saturating_sub(now).clamp(10, 1_000));
            tokio::select! {
                () = wake.notified() => {}
                () = tokio::time::sleep(Duration::from_millis(wait)) => {}
            }
            continue;
        }
        let mut set = tokio::task::JoinSet::new();
        for a in due {
            let disabled = shared
                .store
                .lock()
                .ok()
                .and_then(|s| s.endpoint_disabled(&a.endpoint).ok().flatten());
            if let Some(reason) = disabled {
                // Disabled by a 410 after this alert was queued: straight to
                // the dead-letter list (`sentinel alerts retry` enables it).
                let dead = Decision::Dead {
                    status: None,
                    error: format!("not sent: {reason}"),
                };
                if let Ok(mut s) = shared.store.lock()
                    && let Err(e) = s.record_attempt(&a.id, &a.endpoint, &dead, now)
                {
                    warn!(error = %e, "recording an alert attempt failed");
                }
                continue;
            }
            let router = router.clone();
            set.spawn(async move {
                let outcome = match router.endpoint(&a.endpoint) {
                    Some(e) => {
                        webhook::deliver(&e.dest, &e.secrets, &a.id, &a.body, policy.timeout).await
                    }
                    None => {
                        Outcome::Failed(format!("endpoint {} is no longer configured", a.endpoint))
                    }
                };
                (a, outcome)
            });
        }
        let mut unrecorded = false;
        while let Some(done) = set.join_next().await {
            let Ok((a, outcome)) = done else { continue };
            unrecorded |= !settle(&shared, &router, &policy, &a, &outcome);
        }
        if unrecorded {
            // The database refused an outcome: those alerts are still due;
            // pause rather than send them again at once.
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
}

/// Commits one attempt's outcome (and logs it, without secrets); false if
/// the database refused it.
fn settle(
    shared: &Shared,
    router: &Router,
    policy: &Policy,
    a: &AlertRow,
    outcome: &Outcome,
) -> bool {
    let now = crate::now_ms();
    let Ok(mut store) = shared.store.lock() else {
        return false;
    };
    let m = &shared.metrics;
    if matches!(outcome, Outcome::Refused { status: 410, .. }) {
        let reason = format!("endpoint {} answered 410 Gone: disabled", a.endpoint);
        warn!(endpoint = %a.endpoint, id = %a.id, "{reason}");
        m.alert_attempt("gone");
        let r = store
            .record_attempt(
                &a.id,
                &a.endpoint,
                &Decision::Dead {
                    status: Some(410),
                    error: reason.clone(),
                },
                now,
            )
            .and_then(|()| store.disable_endpoint(&a.endpoint, now, &reason));
        if let Err(e) = &r {
            warn!(error = %e, "recording an alert attempt failed");
        }
        return r.is_ok();
    }
    let decision = if router.endpoint(&a.endpoint).is_none() {
        Decision::Dead {
            status: None,
            error: format!("endpoint {} is no longer configured", a.endpoint),
        }
    } else {
        policy.decide(outcome, a.attempts + 1, a.created_ms, now, jitter())
    };
    let result = match &decision {
        Decision::Delivered(status) => {
            debug!(endpoint = %a.endpoint, id = %a.id, status, "alert delivered");
            "delivered"
        }
        Decision::Retry { next_ms, error, .. } => {
            info!(endpoint = %a.endpoint, id = %a.id, attempt = a.attempts + 1, in_ms = next_ms.saturating_sub(now), %error, "alert not delivered; will retry");
            "retry"
        }
        Decision::Dead { error, .. } => {
            warn!(endpoint = %a.endpoint, id = %a.id, %error, "alert moved to the dead-letter list");
            "dead"
        }
    };
    m.alert_attempt(result);
    match store.record_attempt(&a.id, &a.endpoint, &decision, now) {
        Ok(()) => true,
        Err(e) => {
            warn!(error = %e, "recording an alert attempt failed");
            false
        }
    }
}

/// The alert an incident of `kind` raises, if any (`ARCHITECTURE.md`,
/// "Alerts" gives each type's incident key).
#[must_use]
pub fn event_of(kind: &str) -> Option<(EventType, webhook::Severity)> {
    use webhook::Severity::{Critical, High, Info, Warning};
    Some(match kind {
        "suspicion_raised" => (EventType::PeerSuspected, Warning),
        "accused" => (EventType::AccusationRaised, High),
        "quarantined" => (EventType::NodeQuarantined, Critical),
        "quarantine_over_cap" => (EventType::NodeQuarantined, High),
        "quarantine_lifted" => (EventType::QuarantineLifted, Info),
        "degraded" => (EventType::SentinelDegraded, Warning),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::DataDir;
    use crate::webhook::{Severity, Template};

    fn alert(incident: &str, severity: Severity) -> Alert {
        Alert {
            event: EventType::NodeQuarantined,
            severity,
            subject: "ab".repeat(32),
            incident: incident.into(),
            at_ms: 1_000,
            detail: String::new(),
            sentinel: "cd".repeat(32),
        }
    }

    fn queued(endpoint: &str, a: &Alert) -> Queued {
        Queued {
            endpoint: endpoint.into(),
            alert: a.clone(),
            body: a.body(Template::Standard),
        }
    }

    fn policy() -> Policy {
        Policy {
            timeout: Duration::from_secs(1),
            base_ms: 1_000,
            max_ms: 60_000,
            max_attempts: 5,
            max_age_ms: 3_600_000,
        }
    }

    #[test]
    fn one_row_per_incident_severity_and_endpoint_survives_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let a = alert("quarantine/x/1/2", Severity::Critical);
        {
            let data = DataDir::lock(dir.path()).unwrap();
            let mut s = Store::open(&data).unwrap();
            let q = [queued("ops", &a), queued("siem", &a)];
            assert_eq!(
                s.incident_with_alerts(1_000, "quarantined", "x", "", &q)
                    .unwrap(),
                2
            );
            // The same incident seen again (another certificate copy, a
            // restart): nothing new.
            assert_eq!(
                s.incident_with_alerts(2_000, "quarantined", "x", "", &q)
                    .unwrap(),
                0
            );
            let high = alert("quarantine/x/1/2", Severity::High);
            assert_eq!(
                s.incident_with_alerts(
                    3_000,
                    "quarantine_over_cap",
                    "x",
                    "",
                    &[queued("ops", &high)]
                )
                .unwrap(),
                1
            );
        }
        let data = DataDir::lock(dir.path()).unwrap();
        let s = Store::open(&data).unwrap();
        let due = s.due_alerts(10_000, 10).unwrap();
        assert_eq!(due.len(), 3);
        assert!(due.iter().all(|r| r.state == "pending" && r.attempts == 0));
        assert_eq!(s.due_alerts(999, 10).unwrap().len(), 0);
        assert_eq!(s.next_alert_ms().unwrap(), Some(1_000));
    }

    #[test]
    fn attempts_retry_die_and_come_back_on_request() {
        let dir = tempfile::tempdir().unwrap();
        let data = DataDir::lock(dir.path()).unwrap();
        let mut s = Store::open(&data).unwrap();
        let a = alert("i", Severity::Critical);
        let id = a.id();
        s.incident_with_alerts(1_000, "quarantined", "x", "", &[queued("ops", &a)])
            .unwrap();
        let p = policy();
        let d = p.decide(&Outcome::Failed("refused".into()), 1, 1_000, 2_000, 0);
        assert_eq!(
            d,
            Decision::Retry {
                next_ms: 2_500,
                status: None,
                error: "refused".into()
            }
        );
        s.record_attempt(&id, "ops", &d, 2_000).unwrap();
        assert!(s.due_alerts(2_499, 10).unwrap().is_empty());
        let r = &s.due_alerts(2_500, 10).unwrap()[0];
        assert_eq!((r.attempts, r.last_error.as_deref()), (1, Some("refused")));
        let dead = p.decide(
            &Outcome::Refused {
                status: 500,
                retry_after_s: None,
            },
            5,
            1_000,
            3_000,
            0,
        );
        assert!(
            matches!(
                dead,
                Decision::Dead {
                    status: Some(500),
                    ..
                }
            ),
            "{dead:?}"
        );
        s.record_attempt(&id, "ops", &dead, 3_000).unwrap();
        assert!(s.due_alerts(u64::MAX / 2, 10).unwrap().is_empty());
        assert_eq!(s.alerts(Some("dead"), 10).unwrap()[0].id, id);
        assert_eq!(s.retry_alerts(Some(&id), 4_000).unwrap(), 1);
        let back = &s.due_alerts(4_000, 10).unwrap()[0];
        assert_eq!((back.state.as_str(), back.attempts), ("pending", 0));
        let delivered = p.decide(&Outcome::Delivered(204), 1, 1_000, 4_100, 3);
        s.record_attempt(&id, "ops", &delivered, 4_100).unwrap();
        let row = &s.alerts(None, 10).unwrap()[0];
        assert_eq!(
            (row.state.as_str(), row.last_status, row.done_ms),
            ("delivered", Some(204), Some(4_100))
        );
    }

    #[test]
    fn retry_after_is_honoured_up_to_the_cap_and_age_kills() {
        let p = policy();
        let refused = |s| Outcome::Refused {
            status: 429,
            retry_after_s: Some(s),
        };
        assert!(matches!(
            p.decide(&refused(30), 1, 0, 10_000, 9),
            Decision::Retry {
                next_ms: 40_000,
                ..
            }
        ));
        assert!(matches!(
            p.decide(&refused(9_999), 1, 0, 10_000, 9),
            Decision::Retry {
                next_ms: 70_000,
                ..
            }
        ));
        let old = p.decide(&Outcome::Failed("x".into()), 2, 0, 3_599_500, 0);
        assert!(matches!(old, Decision::Dead { .. }), "{old:?}");
    }

    #[test]
    fn a_gone_endpoint_takes_its_pending_alerts_to_the_dead_letter_list() {
        let dir = tempfile::tempdir().unwrap();
        let data = DataDir::lock(dir.path()).unwrap();
        let mut s = Store::open(&data).unwrap();
        for (i, e) in [("a", "ops"), ("b", "ops"), ("c", "siem")] {
            let a = alert(i, Severity::Critical);
            s.incident_with_alerts(1_000, "quarantined", "x", "", &[queued(e, &a)])
                .unwrap();
        }
        assert_eq!(s.disable_endpoint("ops", 2_000, "410").unwrap(), 2);
        assert_eq!(s.endpoint_disabled("ops").unwrap().as_deref(), Some("410"));
        assert_eq!(s.due_alerts(5_000, 10).unwrap().len(), 1);
        assert_eq!(s.retry_alerts(None, 6_000).unwrap(), 2);
        assert_eq!(s.endpoint_disabled("ops").unwrap(), None);
        // Retention takes finished alerts, never pending ones.
        let gone = alert("a", Severity::Critical).id();
        s.record_attempt(&gone, "ops", &Decision::Delivered(200), 7_000)
            .unwrap();
        s.prune(7_000 + 3_600_000 + 1, 3_600_000, u64::MAX).unwrap();
        let left: Vec<String> = s
            .alerts(None, 10)
            .unwrap()
            .into_iter()
            .map(|r| r.id)
            .collect();
        assert_eq!(left.len(), 2);
        assert!(!left.contains(&gone));
    }

    #[test]
    fn routing_filters_by_type_severity_and_allowlists() {
        let dir = tempfile::tempdir().unwrap();
        let secret = dir.path().join("ops.secret");
        write_new_secret(&secret).unwrap();
        assert!(write_new_secret(&secret).is_err(), "never overwrites");
        let endpoint =
            |name: &str, events: &[&str], min: Severity, never: &[String]| EndpointConfig {
                name: name.into(),
                url: "http://hooks.example/x".into(),
                secrets_file: secret.clone(),
                events: events.iter().map(|s| (*s).to_owned()).collect(),
                min_severity: min,
                template: Template::Slack,
                allow_private: false,
                ca_file: None,
                never_alert: never.to_vec(),
            };
        let quiet = "ef".repeat(32);
        let cfg = AlertsSection {
            never_alert: vec![quiet.clone()],
            endpoint: vec![
                endpoint("all", &[], Severity::Info, &[]),
                endpoint("critical", &[], Severity::Critical, &[]),
                endpoint(
                    "lifts",
                    &["quarantine.lifted"],
                    Severity::Info,
                    &["AB".repeat(32)],
                ),
            ],
            ..AlertsSection::default()
        };
        let r = Router::load(&cfg).unwrap();
        let names = |a: &Alert| {
            r.route(a)
                .into_iter()
                .map(|q| q.endpoint)
                .collect::<Vec<_>>()
        };
        assert_eq!(names(&alert("i", Severity::Critical)), ["all", "critical"]);
        assert_eq!(names(&alert("i", Severity::High)), ["all"]);
        let mut lifted = alert("i", Severity::Info);
        lifted.event = EventType::QuarantineLifted;
        assert_eq!(names(&lifted), ["all"], "lifts allow-lists this subject");
        lifted.subject = "12".repeat(32);
        assert_eq!(names(&lifted), ["all", "lifts"]);
        lifted.subject = quiet;
        assert!(names(&lifted).is_empty());
    }

    #[cfg(unix)]
    #[test]
    fn secrets_files_must_be_private_and_hold_secrets() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s");
        write_new_secret(&path).unwrap();
        assert_eq!(read_secrets(&path).unwrap().len(), 1);
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(read_secrets(&path).unwrap_err().contains("chmod 600"));
        std::fs::write(&path, "# only a comment\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert!(read_secrets(&path).unwrap_err().contains("no whsec_"));
        std::fs::write(&path, "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\nwhsec_!!\n").unwrap();
        let e = read_secrets(&path).unwrap_err();
        assert!(e.contains("line 2") && !e.contains("MfKQ"), "{e}");
    }
}
