//! Prometheus metrics (`/metrics`), in the text exposition format.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::daemon::Status;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Reason {
    reason: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AttemptResult {
    result: &'static str,
}

/// Every metric the daemon exports.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// Messages received from peers.
    pub messages_in: Counter,
    /// Messages sent to peers.
    pub messages_out: Counter,
    /// Messages dropped (queue full, no address, unreachable).
    pub messages_dropped: Counter,
    /// Reports this sentinel signed.
    pub reports_signed: Counter,
    /// New verified reports received.
    pub reports_received: Counter,
    /// Links authenticated.
    pub handshakes: Counter,
    /// Dials that failed.
    pub dial_failures: Counter,
    /// Links closed for bad frames.
    pub protocol_errors: Counter,
    /// Neighbours suspected.
    pub suspicions: Counter,
    /// Neighbours declared failed.
    pub peers_failed: Counter,
    /// Links from or to quarantined nodes closed.
    pub quarantine_links_closed: Counter,
    /// Neighbour feature rows scored by the model.
    pub rows_scored: Counter,
    /// Local suspicion raised against a neighbour (model scores).
    pub suspicion_raised: Counter,
    /// Neighbours under local suspicion now.
    pub locally_suspected: Gauge,
    /// Accusations this sentinel put to a committee.
    pub accusations_made: Counter,
    /// Votes this sentinel signed.
    pub votes_cast: Counter,
    auth_failures: Family<Reason, Counter>,
    alert_attempts: Family<AttemptResult, Counter>,
    active: Gauge,
    passive: Gauge,
    connected: Gauge,
    suspected: Gauge,
    origins: Gauge,
    health: Gauge,
    epoch: Gauge,
    invalid: Gauge,
    withheld: Family<Reason, Gauge>,
    rate_limited: Gauge,
    tcp_established: Gauge,
    guarded_up: Gauge,
    guarded_peers: Gauge,
    guarded_failures: Gauge,
    quarantined: Gauge,
}

impl Metrics {
    /// Registers everything under the `sentinel_` prefix.
    #[must_use]
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("sentinel");
        macro_rules! reg {
            ($name:literal, $help:literal, $metric:expr) => {{
                let m = $metric;
                registry.register($name, $help, m.clone());
                m
            }};
        }
        Self {
            messages_in: reg!(
                "messages_received",
                "Messages received from peers",
                Counter::default()
            ),
            messages_out: reg!(
                "messages_sent",
                "Messages sent to peers",
                Counter::default()
            ),
            messages_dropped: reg!(
                "messages_dropped",
                "Messages dropped: queue full, peer unreachable or without address",
                Counter::default()
            ),
            reports_signed: reg!(
                "reports_signed",
                "Telemetry reports signed",
                Counter::default()
            ),
            reports_received: reg!(
                "reports_received",
                "New verified telemetry reports received",
                Counter::default()
            ),
            handshakes: reg!(
                "links_authenticated",
                "QUIC links authenticated",
                Counter::default()
            ),
            dial_failures: reg!("dial_failures", "Dials that failed", Counter::default()),
            protocol_errors: reg!(
                "link_protocol_errors",
                "Links closed for malformed or oversize frames",
                Counter::default()
            ),
            suspicions: reg!("suspicions", "Neighbours suspected", Counter::default()),
            peers_failed: reg!(
                "peers_failed",
                "Neighbours declared failed",
                Counter::default()
            ),
            quarantine_links_closed: reg!(
                "quarantine_links_closed",
                "Links from or to quarantined nodes closed or refused",
                Counter::default()
            ),
            rows_scored: reg!(
                "rows_scored",
                "Neighbour feature rows scored by the detection model",
                Counter::default()
            ),
            suspicion_raised: reg!(
                "suspicion_raised",
                "Times local suspicion of a neighbour was raised by model scores",
                Counter::default()
            ),
            accusations_made: reg!(
                "accusations_made",
                "Accusations this sentinel put to a committee",
                Counter::default()
            ),
            votes_cast: reg!(
                "votes_cast",
                "Votes this sentinel signed on others' accusations and its own",
                Counter::default()
            ),
            locally_suspected: reg!(
                "locally_suspected_peers",
                "Neighbours under local suspicion from model scores",
                Gauge::default()
            ),
            quarantined: reg!(
                "quarantined_nodes",
                "Nodes under a quarantine enforced here",
                Gauge::default()
            ),
            alert_attempts: reg!(
                "alert_attempts",
                "Webhook delivery attempts, by result: delivered, retry, dead (gave up), gone (410: endpoint disabled)",
                Family::<AttemptResult, Counter>::default()
            ),
            auth_failures: reg!(
                "link_auth_failures",
                "Connections refused during link authentication, by reason",
                Family::<Reason, Counter>::default()
            ),
            active: reg!("active_peers", "Peers in the active view", Gauge::default()),
            passive: reg!(
                "passive_peers",
                "Peers in the passive view",
                Gauge::default()
            ),
            connected: reg!(
                "connected_peers",
                "Peers with an authenticated link",
                Gauge::default()
            ),
            suspected: reg!(
                "suspected_peers",
                "Active peers currently suspected",
                Gauge::default()
            ),
            origins: reg!(
                "report_origins",
                "Origins whose reports are held",
                Gauge::default()
            ),
            health: reg!(
                "local_health",
                "Lifeguard local health (0 = fine)",
                Gauge::default()
            ),
            epoch: reg!("epoch", "Boot epoch", Gauge::default()),
            invalid: reg!(
                "invalid_messages",
                "Invalid or malformed messages received since start",
                Gauge::default()
            ),
            withheld: reg!(
                "accusations_withheld",
                "Accusations not made since start, by reason: degraded (own links failing probes) or own_view (own view of the subject below the vote threshold)",
                Family::<Reason, Gauge>::default()
            ),
            rate_limited: reg!(
                "rate_limited_messages",
                "Messages dropped by per-peer rate limits since start",
                Gauge::default()
            ),
            tcp_established: reg!(
                "host_tcp_established",
                "Established TCP connections on the host",
                Gauge::default()
            ),
            guarded_up: reg!(
                "guarded_up",
                "1 if the latest scrape of the guarded node succeeded",
                Gauge::default()
            ),
            guarded_peers: reg!(
                "guarded_peers",
                "Peers of the guarded node at the latest scrape",
                Gauge::default()
            ),
            guarded_failures: reg!(
                "guarded_scrape_failures",
                "Failed scrapes of the guarded node since start",
                Gauge::default()
            ),
            registry,
        }
    }

    /// Counts a webhook delivery attempt by result.
    pub fn alert_attempt(&self, result: &'static str) {
        self.alert_attempts
            .get_or_create(&AttemptResult { result })
            .inc();
    }

    /// Counts a refused link.
    pub fn auth_failure(&self, reason: &'static str) {
        self.auth_failures.get_or_create(&Reason { reason }).inc();
    }

    /// Updates the gauges from a status snapshot.
    pub fn set_gauges(&self, s: &Status, rate_limited: u64) {
        let g = |v: usize| i64::try_from(v).unwrap_or(i64::MAX);
        let u = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        self.active.set(g(s.active.len()));
        self.passive.set(g(s.passive.len()));
        self.connected.set(g(s.connected.len()));
        self.suspected.set(g(s.suspected.len()));
        self.origins.set(g(s.origins_heard));
        self.health.set(i64::from(s.health));
        self.epoch.set(u(s.epoch));
        self.invalid.set(u(s.invalid_messages));
        for (reason, n) in [
            ("degraded", s.detection.accusations_withheld_degraded),
            ("own_view", s.detection.accusations_withheld_own_view),
        ] {
            self.withheld.get_or_create(&Reason { reason }).set(u(n));
        }
        self.rate_limited.set(u(rate_limited));
        self.tcp_established.set(u(s.host.tcp_established));
        self.quarantined.set(g(s.quarantined.len()));
        if let Some(g) = &s.guarded {
            self.guarded_up.set(i64::from(g.up));
            self.guarded_peers.set(i64::from(g.peers));
            self.guarded_failures.set(u(g.failures));
        }
    }

    /// The exposition text.
    #[must_use]
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
