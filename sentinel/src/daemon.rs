//! `sentinel run`: one driver task owns the protocol [`Node`] and everything
//! it decides; connection tasks only move bytes and report what happened.
//!
//! ```text
//!  accept task ──auth──┐                      ┌── writer task per link (uni stream)
//!  dial tasks ──auth───┼─► NetEvent channel ─► driver ─► Node ─► transmits
//!  reader tasks ───────┘        (bounded)       │  ▲
//!                                   1 s tick ───┤  └── host samples (procfs)
//!  scrape task (guarded node) ── readings ───────┘
//!                                   store thread ◄── telemetry, peers, incidents
//! ```
//!
//! Quarantine certificates are written to the database by the driver itself
//! (committed before it acts on them), restored into the node at start, and
//! enforced here too: links to and from the subject are closed and refused,
//! and the blocklist file and exec hook ([`crate::enforce`]) are told.

use std::collections::{BTreeMap, VecDeque};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sentinel_models::{Scorer, TractScorer};
use sentinel_protocol::codec::SharedBytes;
use sentinel_protocol::crypto::RealCrypto;
use sentinel_protocol::envelope::Stamp;
use sentinel_protocol::evidence::{Admitted, Entry};
use sentinel_protocol::features::{Row, Score};
use sentinel_protocol::message::Class;
use sentinel_protocol::node::{DownReason, Event};
use sentinel_protocol::telemetry::{HostSample, Report};
use sentinel_protocol::{Node, NodeId, Roster, envelope, keyfile};
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

use crate::collect::{HostCollector, HostExtra};
use crate::config::Config;
use crate::enforce::{self, Action, Blocked, Hook};
use crate::metrics::Metrics;
use crate::outbox::{self, Router};
use crate::scrape::{Reading, Scraper};
use crate::store::{
    AccusationRow, CertificateRow, DataDir, SEQUENCE_BLOCK, ScoreRow, Store, TelemetryRow, VoteRow,
};
use crate::transport::{self, Authenticator, LinkError, close};
use crate::webhook::Alert;
use crate::{AddressBook, now_ms};

/// Bound of the channel from connection tasks to the driver.
const NET_CHANNEL: usize = 4096;
/// Reserve the next sequence block when this close to the limit.
const RESERVE_MARGIN: u64 = 64;

/// What connection tasks tell the driver.
#[derive(Debug)]
enum NetEvent {
    /// An authenticated link.
    Up {
        peer: NodeId,
        conn: quinn::Connection,
        dialled_by: NodeId,
    },
    /// A message from an authenticated peer.
    Message { peer: NodeId, bytes: Arc<[u8]> },
    /// A link closed.
    Down { peer: NodeId, conn_id: usize },
    /// Dialling failed.
    DialFailed { peer: NodeId, error: String },
}

/// A live link to a peer.
#[derive(Debug)]
struct Link {
    conn: quinn::Connection,
    dialled_by: NodeId,
    tx: mpsc::Sender<Arc<[u8]>>,
}

/// Per-peer transport state.
#[derive(Debug, Default)]
struct PeerState {
    link: Option<Link>,
    queue: VecDeque<Arc<[u8]>>,
    dialling: bool,
    backoff_ms: u64,
    next_dial_ms: u64,
}

/// What the API shows; rebuilt by the driver every second.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Status {
    /// This sentinel's id (hex).
    pub id: String,
    /// The mesh name.
    pub mesh: String,
    /// Boot epoch.
    pub epoch: u64,
    /// Next report sequence.
    pub next_sequence: u64,
    /// Sequences reserved durably.
    pub sequences_reserved: u64,
    /// Seconds since start.
    pub uptime_s: u64,
    /// QUIC listen address.
    pub quic_addr: String,
    /// Active view (hex ids).
    pub active: Vec<String>,
    /// Passive view (hex ids).
    pub passive: Vec<String>,
    /// Neighbours currently suspected.
    pub suspected: Vec<String>,
    /// Peers with an authenticated link.
    pub connected: Vec<String>,
    /// Lifeguard local health (0 = fine).
    pub health: u32,
    /// Reports signed.
    pub reports_signed: u64,
    /// Reports received (verified, new).
    pub reports_received: u64,
    /// Distinct origins whose reports we hold.
    pub origins_heard: usize,
    /// Invalid or malformed messages received.
    pub invalid_messages: u64,
    /// Nodes under a quarantine enforced here (hex ids).
    pub quarantined: Vec<String>,
    /// Equivocations this sentinel detected itself.
    pub equivocations_detected: u64,
    /// Quarantine certificates verified and taken (detected or received).
    pub certificates_accepted: u64,
    /// Host extras.
    pub host: HostExtra,
    /// The guarded node's metrics endpoint, when one is configured.
    pub guarded: Option<GuardedStatus>,
    /// Model scoring since start.
    pub detection: DetectionStatus,
}

/// What the sentinel's model scored since it started.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct DetectionStatus {
    /// SHA-256 of the model scoring; none when detection is off.
    pub model: Option<String>,
    /// Feature rows scored.
    pub rows_scored: u64,
    /// Local suspicions raised.
    pub suspicions_raised: u64,
    /// Neighbours under local suspicion now (hex ids).
    pub locally_suspected: Vec<String>,
    /// The highest window score since start (0 to 1).
    pub highest_score: f32,
    /// Whom that score was about (hex id).
    pub highest_subject: Option<String>,
    /// Accusations not made since start because this sentinel's own links
    /// were failing probes (its host, not the subject, looked at fault).
    pub accusations_withheld_degraded: u64,
    /// Accusations not made since start because this sentinel's own view
    /// of the subject, scored as a committee member would, fell short (it
    /// tries again from its next window).
    pub accusations_withheld_own_view: u64,
}

/// What the sentinel knows of its guarded node's metrics endpoint.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct GuardedStatus {
    /// The URL scraped.
    pub url: String,
    /// The latest scrape succeeded.
    pub up: bool,
    /// Peers of the guarded node at the latest scrape (0 while down).
    pub peers: u16,
    /// The errors counter at the latest successful scrape.
    pub errors_total: f64,
    /// Successful scrapes.
    pub scrapes: u64,
    /// Failed scrapes.
    pub failures: u64,
    /// Why the latest scrape failed, while it is down.
    pub last_error: Option<String>,
}

/// Scrape results folded into the one-second samples.
#[derive(Debug)]
struct Guarded {
    status: GuardedStatus,
    /// Errors counted but not yet carried by a sample.
    pending_errors: u64,
}

impl Guarded {
    fn on_scrape(&mut self, result: Result<Reading, String>) {
        let s = &mut self.status;
        match result {
            Ok(r) => {
                if !s.up {
                    info!(url = %s.url, peers = r.peers, "guarded node metrics scraped");
                }
                s.up = true;
                s.peers = r.peers;
                s.errors_total = r.errors_total;
                s.scrapes += 1;
                s.last_error = None;
                self.pending_errors = self.pending_errors.saturating_add(r.new_errors);
            }
            Err(error) => {
                // Log the first failure of a run of them, not every one.
                if s.up || s.failures == 0 {
                    warn!(url = %s.url, %error, "scraping the guarded node failed");
                } else {
                    debug!(url = %s.url, %error, "scraping the guarded node failed");
                }
                s.up = false;
                s.peers = 0;
                s.failures += 1;
                s.last_error = Some(error);
            }
        }
    }

    /// Peers and errors for the next sample.
    fn fill(&mut self, sample: &mut HostSample) {
        let errors = self.pending_errors.min(u64::from(u16::MAX));
        self.pending_errors -= errors;
        sample.node_peers = self.status.peers;
        sample.node_errors = u16::try_from(errors).unwrap_or(u16::MAX);
    }
}

/// Scrapes the guarded node every `every` and hands the results over.
async fn scrape_loop(
    mut scraper: Scraper,
    every: Duration,
    tx: mpsc::Sender<Result<Reading, String>>,
) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let result = scraper.scrape(every.min(Duration::from_secs(10))).await;
        if tx.send(result).await.is_err() {
            return;
        }
    }
}

/// A peer as the API shows it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PeerView {
    /// Node id (hex).
    pub id: String,
    /// Roster name.
    pub name: String,
    /// Address from the address book.
    pub addr: Option<String>,
    /// Active, passive or none.
    pub view: &'static str,
    /// A link is up.
    pub connected: bool,
    /// Suspected by our failure detector.
    pub suspected: bool,
    /// Newest report held from it: (epoch, sequence).
    pub latest_report: Option<(u64, u64)>,
    /// How it last left our active view, if it did.
    pub last_down: Option<String>,
}

/// State shared with the API.
#[derive(Debug)]
pub struct Shared {
    /// Latest status.
    pub status: Mutex<Status>,
    /// Latest peer list.
    pub peers: Mutex<Vec<PeerView>>,
    /// The database (API reads, store thread writes).
    pub store: Mutex<Store>,
    /// Prometheus metrics.
    pub metrics: Metrics,
    /// The mesh is joined and the store writable.
    pub ready: AtomicBool,
    /// The admin token.
    pub token: String,
    /// Latest model scores of neighbours.
    pub scores: Mutex<Scores>,
    /// Notified when alerts were committed to the outbox.
    pub alerts_wake: Arc<tokio::sync::Notify>,
}

/// What `/v1/scores` shows.
#[derive(Debug, Clone, Default)]
pub struct Scores {
    /// Name and SHA-256 of the model scoring, or none when detection is
    /// off.
    pub model: Option<String>,
    /// Latest score by neighbour.
    pub latest: BTreeMap<NodeId, ScoreView>,
}

/// One neighbour's latest score.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ScoreView {
    /// Hex id.
    pub node: String,
    /// Score, 0 to 1 (quantised to 1e-4).
    pub score: f32,
    /// Under local suspicion.
    pub suspected: bool,
    /// Window end, Unix ms.
    pub window_ms: u64,
}

/// Everything `run` needs, loaded and checked.
pub struct Daemon {
    cfg: Config,
    roster: Arc<Roster>,
    addresses: AddressBook,
    data: DataDir,
    shared: Arc<Shared>,
    epoch: u64,
    node: Node<RealCrypto>,
    auth: Arc<Authenticator>,
    endpoint: quinn::Endpoint,
    /// Certificates enforced at the last stop whose quarantine ended since.
    ended_while_down: Vec<CertificateRow>,
    /// The detection model (none when `[detection] enabled = false`).
    scorer: Option<TractScorer>,
    /// Where alerts go.
    router: Arc<Router>,
}

impl std::fmt::Debug for Daemon {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Daemon")
            .field("epoch", &self.epoch)
            .finish()
    }
}

/// Reads the API token of a data dir (for clients such as `sentinel
/// status`); never creates one.
///
/// # Errors
/// Missing or unreadable file.
pub fn read_api_token(data_dir: &Path) -> std::io::Result<String> {
    Ok(std::fs::read_to_string(data_dir.join("api-token"))?
        .trim()
        .to_owned())
}

/// Reads the API token, creating it (0600) on first use.
///
/// # Errors
/// Filesystem errors.
pub fn api_token(data_dir: &Path) -> std::io::Result<String> {
    let path = data_dir.join("api-token");
    match read_api_token(data_dir) {
        Ok(t) => return Ok(t),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let mut bytes = [0u8; 32];
    aws_lc_rs::rand::fill(&mut bytes).map_err(|_| std::io::Error::other("no randomness"))?;
    let token = hex::encode(bytes);
    create_private(&path, format!("{token}\n").as_bytes())?;
    Ok(token)
}

/// Creates a new file (never overwriting one) readable by its owner only,
/// writes `contents` and syncs it: the API token, webhook secrets.
pub(crate) fn create_private(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    std::io::Write::write_all(&mut f, contents)?;
    f.sync_all()
}

/// Why the daemon could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// Anything, with context.
    #[error("{0}")]
    Msg(String),
}

fn ctx<E: std::fmt::Display>(what: &str) -> impl FnOnce(E) -> StartError + '_ {
    move |e| StartError::Msg(format!("{what}: {e}"))
}

impl Daemon {
    /// Loads keys, roster, address book and data dir; starts a new epoch;
    /// binds the QUIC socket. Nothing is sent yet.
    ///
    /// # Errors
    /// A message naming what is wrong.
    pub fn start(cfg: Config) -> Result<Self, StartError> {
        let roster = Arc::new(Roster::load_genesis(&cfg.node.genesis).map_err(ctx("genesis"))?);
        let identity = Arc::new(keyfile::load(&cfg.node.key_file).map_err(ctx("key file"))?);
        let me = identity.id();
        if roster.get(&me).is_none() {
            return Err(StartError::Msg(format!(
                "this sentinel's id {} is not on the roster of mesh {:?} ({})",
                me.to_hex(),
                roster.mesh(),
                cfg.node.genesis.display()
            )));
        }
        let addresses = AddressBook::load(&cfg.node.address_book).map_err(ctx("address book"))?;
        let router = Arc::new(Router::load(&cfg.alerts).map_err(StartError::Msg)?);
        let data = DataDir::lock(&cfg.node.data_dir).map_err(ctx("data dir"))?;
        let mut store = Store::open(&data).map_err(ctx("database"))?;
        let epoch = store.begin_epoch(now_ms()).map_err(ctx("database"))?;
        store
            .reserve_sequences(SEQUENCE_BLOCK)
            .map_err(ctx("database"))?;
        let token = api_token(data.path()).map_err(ctx("api token"))?;
        let mut seed = [0u8; 8];
        aws_lc_rs::rand::fill(&mut seed).map_err(|_| StartError::Msg("no randomness".into()))?;
        let scorer = if cfg.detection.enabled {
            let s = cfg.detection.load_model().map_err(ctx("detection model"))?;
            info!(model = %s.manifest().name, sha256 = %s.manifest().sha256, "detection model loaded");
            Some(s)
        } else {
            None
        };
        let node_cfg = node_config(&cfg, scorer.as_ref());
        if cfg.quorum.enabled && !node_cfg.quorum.enabled {
            warn!("[quorum] is on but [detection] is off: this sentinel neither accuses nor votes");
        }
        let mut node = Node::new(
            node_cfg,
            roster.clone(),
            RealCrypto::new(identity.clone()),
            epoch,
            u64::from_le_bytes(seed),
            now_ms(),
        )
        .map_err(ctx("mesh node"))?;
        node.allow_sequences_through(SEQUENCE_BLOCK);
        let ended_while_down = restore_certificates(&mut node, &store)?;
        restore_votes(&mut node, &store)?;
        let endpoint = transport::endpoint(cfg.quic.listen, &cfg.quic, transport::pq_provider())
            .map_err(ctx("QUIC"))?;
        let metrics = Metrics::new();
        let shared = Arc::new(Shared {
            status: Mutex::new(Status::default()),
            peers: Mutex::new(Vec::new()),
            store: Mutex::new(store),
            metrics,
            ready: AtomicBool::new(false),
            token,
            scores: Mutex::new(Scores {
                model: scorer
                    .as_ref()
                    .map(|s| format!("{} {}", s.manifest().name, s.manifest().sha256)),
                latest: BTreeMap::new(),
            }),
            alerts_wake: Arc::new(tokio::sync::Notify::new()),
        });
        Ok(Self {
            auth: Arc::new(Authenticator {
                identity,
                roster: roster.clone(),
                epoch,
            }),
            cfg,
            roster,
            addresses,
            data,
            shared,
            epoch,
            node,
            endpoint,
            ended_while_down,
            scorer,
            router,
        })
    }

    /// The shared state (for the API).
    #[must_use]
    pub fn shared(&self) -> Arc<Shared> {
        self.shared.clone()
    }

    /// Runs until `shutdown` resolves, then leaves the mesh and closes links.
    pub async fn run(self, shutdown: impl std::future::Future<Output = ()>) {
        let Daemon {
            cfg,
            roster,
            addresses,
            data,
            shared,
            epoch,
            mut node,
            auth,
            endpoint,
            ended_while_down,
            scorer,
            router,
        } = self;
        let me = node.id();
        let started = now_ms();
        let quic_addr = endpoint
            .local_addr()
            .map(|a| a.to_string())
            .unwrap_or_default();
        info!(id = %me, epoch, quic = %quic_addr, mesh = roster.mesh(), "sentinel started");
        let (net_tx, mut net_rx) = mpsc::channel::<NetEvent>(NET_CHANNEL);
        let connections = Arc::new(AtomicUsize::new(0));
        let accept = tokio::spawn(accept_loop(
            endpoint.clone(),
            auth.clone(),
            net_tx.clone(),
            connections.clone(),
            cfg.quic.max_connections,
            Duration::from_millis(cfg.quic.handshake_timeout_ms),
            shared.clone(),
        ));
        let stop_alerts = Arc::new(AtomicBool::new(false));
        let alerts = (!router.is_empty()).then(|| {
            tokio::spawn(outbox::run(
                shared.clone(),
                router.clone(),
                outbox::Policy::of(&cfg.alerts),
                shared.alerts_wake.clone(),
                stop_alerts.clone(),
            ))
        });
        let (store_tx, store_rx) = std::sync::mpsc::channel::<StoreOp>();
        let store_thread = {
            let shared = shared.clone();
            let retention_ms = cfg.storage.retention_hours * 3_600_000;
            let max_bytes = cfg.storage.max_db_mib * 1024 * 1024;
            std::thread::spawn(move || store_loop(&shared, &store_rx, retention_ms, max_bytes))
        };
        let mut d = Driver {
            cfg: &cfg,
            roster: &roster,
            addresses: &addresses,
            shared: &shared,
            endpoint: &endpoint,
            auth: &auth,
            net_tx: &net_tx,
            store_tx: &store_tx,
            peers: BTreeMap::new(),
            last_down: BTreeMap::new(),
            reserved: SEQUENCE_BLOCK,
            me,
            hook: cfg.enforce.exec_hook.clone().map(|program| {
                Hook::start(program, Duration::from_millis(cfg.enforce.hook_timeout_ms))
            }),
            detection: DetectionStatus {
                model: scorer.as_ref().map(|s| s.manifest().sha256.clone()),
                ..DetectionStatus::default()
            },
            outside: None,
            scorer,
            quarantine_bytes: (0, 0),
            router: router.clone(),
            withheld_degraded: 0,
        };
        d.lift_ended_while_down(&ended_while_down);
        d.realert_quarantines();
        d.sync_enforcement(&node);
        node.join(now_ms());
        d.flush(&mut node);
        shared.ready.store(true, Ordering::SeqCst);
        let mut host = HostCollector::new();
        let mut host_extra = HostExtra::default();
        let (guarded_tx, mut guarded_rx) = mpsc::channel(4);
        let mut guarded = None;
        let mut scraping = None;
        if let Some(url) = &cfg.collect.guarded_metrics_url {
            // The URL was checked when the config was loaded.
            match Scraper::new(url, &cfg.collect.peers_metric, &cfg.collect.errors_metric) {
                Ok(scraper) => {
                    let every = Duration::from_millis(cfg.collect.scrape_interval_ms);
                    scraping = Some(tokio::spawn(scrape_loop(scraper, every, guarded_tx)));
                    guarded = Some(Guarded {
                        status: GuardedStatus {
                            url: url.clone(),
                            ..GuardedStatus::default()
                        },
                        pending_errors: 0,
                    });
                }
                Err(error) => warn!(%error, "not scraping the guarded node"),
            }
        }
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        // `[testing] attack = "flooder"`: 6 pings per neighbour every 100 ms.
        let flooding = cfg.testing.attack.as_deref() == Some("flooder");
        if flooding {
            warn!("[testing] attack = \"flooder\": this sentinel floods its neighbours");
        }
        let mut flood = tokio::time::interval(Duration::from_millis(100));
        let mut nonce = 0u64;
        tokio::pin!(shutdown);
        loop {
            let wait = node.poll_timeout().map_or(Duration::from_secs(1), |t| {
                Duration::from_millis(t.saturating_sub(now_ms()))
            });
            tokio::select! {
                () = &mut shutdown => break,
                () = tokio::time::sleep(wait) => node.handle_timeout(now_ms()),
                Some(ev) = net_rx.recv() => d.on_net(&mut node, ev),
                _ = flood.tick(), if flooding => {
                    for peer in node.active_view() {
                        for _ in 0..6 {
                            nonce += 1;
                            let ping = sentinel_protocol::message::Message::Ping { nonce }.encode();
                            d.send(peer, Class::Datagram, ping.into());
                        }
                    }
                }
                Some(result) = guarded_rx.recv() => {
                    if let Some(g) = guarded.as_mut() {
                        g.on_scrape(result);
                    }
                }
                _ = tick.tick() => {
                    let mut sample = HostSample::default();
                    if cfg.collect.host {
                        (sample, host_extra) = host.sample();
                        let (rx, tx) = std::mem::take(&mut d.quarantine_bytes);
                        let less = |v: u32, by: u64| {
                            u32::try_from(u64::from(v).saturating_sub(by)).unwrap_or(v)
                        };
                        sample.net_in_bytes = less(sample.net_in_bytes, rx);
                        sample.net_out_bytes = less(sample.net_out_bytes, tx);
                    }
                    if let Some(g) = guarded.as_mut() {
                        g.fill(&mut sample);
                    }
                    node.set_host_sample(sample);
                    if !d.reserve_ahead(&mut node) {
                        shared.ready.store(false, Ordering::SeqCst);
                    }
                    let g = guarded.as_ref().map(|g| g.status.clone());
                    d.publish_status(&node, epoch, started, &quic_addr, host_extra, g);
                    d.check_degraded(node.stats().accusations_withheld_degraded, now_ms());
                }
            }
            d.flush(&mut node);
        }
        info!("shutting down: leaving the mesh");
        shared.ready.store(false, Ordering::SeqCst);
        node.leave();
        d.flush(&mut node);
        // Let writers push the Leave messages out.
        tokio::time::sleep(Duration::from_millis(200)).await;
        accept.abort();
        if let Some(task) = scraping {
            task.abort();
        }
        // An attempt in flight is abandoned; its alert stays pending and is
        // sent again (same webhook-id) at the next start.
        stop_alerts.store(true, Ordering::SeqCst);
        if let Some(task) = alerts {
            task.abort();
        }
        endpoint.close(close::SHUTDOWN.into(), b"shutdown");
        drop(d);
        drop(store_tx);
        let _ = store_thread.join();
        endpoint.wait_idle().await;
        drop(data);
        info!("stopped");
    }
}

/// The incident key of a quarantine: the subject and the position of the
/// fault its certificate proves, the same at every sentinel holding it.
fn quarantine_key(subject: &NodeId, epoch: u64, sequence: u64) -> String {
    format!("quarantine/{}/{epoch}/{sequence}", subject.to_hex())
}

enum StoreOp {
    Telemetry(TelemetryRow, Vec<u8>),
    Peer {
        id: String,
        addr: String,
        at_ms: u64,
    },
    Incident {
        kind: &'static str,
        subject: String,
        detail: String,
        at_ms: u64,
        /// Its alerts, one per endpoint that takes it.
        alerts: Vec<outbox::Queued>,
    },
    Scores(Vec<ScoreRow>),
    Accusation(AccusationRow),
    AccusationClosed {
        hash: String,
        state: &'static str,
        seats: (u64, u64, u64),
    },
    Vote(VoteRow),
}

/// Writes in batches: everything queued is committed together, then the
/// retention policy runs once a minute.
fn store_loop(
    shared: &Shared,
    rx: &std::sync::mpsc::Receiver<StoreOp>,
    retention_ms: u64,
    max_bytes: u64,
) {
    let mut last_prune = 0u64;
    while let Ok(first) = rx.recv() {
        let mut ops = vec![first];
        while let Ok(op) = rx.try_recv() {
            ops.push(op);
        }
        let Ok(mut store) = shared.store.lock() else {
            return;
        };
        let mut telemetry = Vec::new();
        for op in ops {
            let r = match op {
                StoreOp::Telemetry(row, frame) => {
                    telemetry.push((row, frame));
                    Ok(())
                }
                StoreOp::Peer { id, addr, at_ms } => store.peer_connected(&id, &addr, at_ms),
                StoreOp::Incident {
                    kind,
                    subject,
                    detail,
                    at_ms,
                    alerts,
                } => store
                    .incident_with_alerts(at_ms, kind, &subject, &detail, &alerts)
                    .map(|new| {
                        if new > 0 {
                            shared.alerts_wake.notify_one();
                        }
                    }),
                StoreOp::Scores(rows) => store.insert_scores(&rows),
                StoreOp::Accusation(row) => store.save_accusation(&row),
                StoreOp::AccusationClosed { hash, state, seats } => {
                    store.close_accusation(&hash, state, seats)
                }
                StoreOp::Vote(row) => store.save_vote(&row),
            };
            if let Err(e) = r {
                warn!(error = %e, "database write failed");
            }
        }
        if let Err(e) = store.insert_telemetry(&telemetry) {
            warn!(error = %e, rows = telemetry.len(), "storing telemetry failed");
        }
        let now = now_ms();
        if now.saturating_sub(last_prune) > 60_000 {
            last_prune = now;
            match store.prune(now, retention_ms, max_bytes) {
                Ok(n) if n > 0 => debug!(rows = n, "pruned old telemetry"),
                Ok(_) => {}
                Err(e) => warn!(error = %e, "pruning failed"),
            }
        }
    }
}

struct Driver<'a> {
    cfg: &'a Config,
    roster: &'a Roster,
    addresses: &'a AddressBook,
    shared: &'a Arc<Shared>,
    endpoint: &'a quinn::Endpoint,
    auth: &'a Arc<Authenticator>,
    net_tx: &'a mpsc::Sender<NetEvent>,
    store_tx: &'a std::sync::mpsc::Sender<StoreOp>,
    peers: BTreeMap<NodeId, PeerState>,
    last_down: BTreeMap<NodeId, String>,
    reserved: u64,
    me: NodeId,
    hook: Option<Hook>,
    /// The quarantines the world outside has been told of (None before the
    /// first sync at start).
    outside: Option<BTreeMap<NodeId, Blocked>>,
    /// The detection model.
    scorer: Option<TractScorer>,
    /// Scoring since start, for the status.
    detection: DetectionStatus,
    /// Where alerts go.
    router: Arc<Router>,
    /// `accusations_withheld_degraded` at the last status.
    withheld_degraded: u64,
    /// Quarantine traffic (accusations, evidence, votes, certificates)
    /// received and sent since the last host sample, bytes: left out of
    /// the host's network counters (`message::is_quarantine_traffic`).
    quarantine_bytes: (u64, u64),
}

impl Driver<'_> {
    /// Keeps the durable sequence reservation ahead of use. False if the
    /// database refused (the node then stops signing at the old limit).
    fn reserve_ahead(&mut self, node: &mut Node<RealCrypto>) -> bool {
        if node.next_sequence() + RESERVE_MARGIN < self.reserved {
            return true;
        }
        let next = self.reserved + SEQUENCE_BLOCK;
        let result = self
            .shared
            .store
            .lock()
            .map_err(|_| "store lock poisoned".to_owned())
            .and_then(|mut s| s.reserve_sequences(next).map_err(|e| e.to_string()));
        match result {
            Ok(()) => {
                self.reserved = next;
                node.allow_sequences_through(next);
                true
            }
            Err(e) => {
                warn!(error = %e, "cannot reserve sequence numbers; not signing past {}", self.reserved);
                false
            }
        }
    }

    fn on_net(&mut self, node: &mut Node<RealCrypto>, ev: NetEvent) {
        match ev {
            NetEvent::Message { peer, bytes } => {
                self.shared.metrics.messages_in.inc();
                if sentinel_protocol::message::is_quarantine_traffic(&bytes) {
                    self.quarantine_bytes.0 += bytes.len() as u64;
                }
                node.handle_message(now_ms(), peer, bytes);
            }
            NetEvent::Up {
                peer,
                conn,
                dialled_by,
            } => {
                if node.is_quarantined(&peer) {
                    debug!(peer = %peer, "link refused: quarantined");
                    self.shared.metrics.quarantine_links_closed.inc();
                    conn.close(close::QUARANTINED.into(), b"quarantined");
                    if let Some(state) = self.peers.get_mut(&peer) {
                        state.dialling = false;
                    }
                } else {
                    self.link_up(peer, conn, dialled_by);
                }
            }
            NetEvent::Down { peer, conn_id } => {
                let state = self.peers.entry(peer).or_default();
                if state
                    .link
                    .as_ref()
                    .is_some_and(|l| l.conn.stable_id() == conn_id)
                {
                    debug!(peer = %peer, "link closed");
                    state.link = None;
                }
            }
            NetEvent::DialFailed { peer, error } => {
                let state = self.peers.entry(peer).or_default();
                state.dialling = false;
                state.backoff_ms = (state.backoff_ms * 2).clamp(
                    self.cfg.quic.reconnect_min_ms,
                    self.cfg.quic.reconnect_max_ms,
                );
                state.next_dial_ms = now_ms() + state.backoff_ms;
                state.queue.clear();
                self.shared.metrics.dial_failures.inc();
                debug!(peer = %peer, error, retry_in_ms = state.backoff_ms, "dial failed");
            }
        }
    }

    fn link_up(&mut self, peer: NodeId, conn: quinn::Connection, dialled_by: NodeId) {
        let state = self.peers.entry(peer).or_default();
        if dialled_by == self.me {
            state.dialling = false;
        }
        state.backoff_ms = 0;
        // One link per pair: a reconnect from the same side replaces the old
        // link; of two crossing dials, both ends keep the one dialled by the
        // smaller id.
        if let Some(old) = &state.link
            && old.dialled_by != dialled_by
            && old.dialled_by < dialled_by
        {
            conn.close(close::DUPLICATE.into(), b"duplicate link");
            return;
        }
        if let Some(old) = state.link.take() {
            old.conn
                .close(close::DUPLICATE.into(), b"replaced by a newer link");
        }
        let (tx, rx) = mpsc::channel::<Arc<[u8]>>(self.cfg.quic.queue_per_peer);
        tokio::spawn(writer(conn.clone(), rx));
        tokio::spawn(reader(
            conn.clone(),
            peer,
            self.net_tx.clone(),
            self.cfg.quic.max_frame_bytes,
            self.shared.clone(),
        ));
        for bytes in state.queue.drain(..) {
            let _ = tx.try_send(bytes);
        }
        let addr = conn.remote_address().to_string();
        info!(peer = %peer, %addr, "link up");
        let _ = self.store_tx.send(StoreOp::Peer {
            id: peer.to_hex(),
            addr,
            at_ms: now_ms(),
        });
        state.link = Some(Link {
            conn,
            dialled_by,
            tx,
        });
    }

    /// Sends what the node wants sent and handles its events; scores what
    /// it asks scored and hands the scores back.
    fn flush(&mut self, node: &mut Node<RealCrypto>) {
        loop {
            while let Some(t) = node.poll_transmit() {
                self.send(t.to, t.class, t.bytes);
            }
            let mut quarantine_changed = false;
            let mut requests = Vec::new();
            let mut replays = Vec::new();
            while let Some(e) = node.poll_event() {
                quarantine_changed |= matches!(
                    e,
                    Event::Quarantined { .. }
                        | Event::QuarantineEnforced(_)
                        | Event::QuarantineLifted(_)
                );
                match e {
                    Event::ScoreRequest { window, rows } => requests.push((window, rows)),
                    Event::ReplayRequest {
                        accusation, rows, ..
                    } => replays.push((accusation, rows)),
                    e => self.on_event(node, e),
                }
            }
            if quarantine_changed {
                self.sync_enforcement(node);
            }
            if requests.is_empty() && replays.is_empty() {
                return;
            }
            for (window, rows) in requests {
                self.score(node, window, &rows);
            }
            for (accusation, rows) in replays {
                self.replay(node, accusation, &rows);
            }
        }
    }

    /// Scores the two rows of a vote (the accuser's, replayed, and this
    /// sentinel's own) and hands the scores to the node, which signs the
    /// vote.
    fn replay(&mut self, node: &mut Node<RealCrypto>, accusation: [u8; 32], rows: &[Row]) {
        let Some(scorer) = self.scorer.as_mut() else {
            return;
        };
        match scorer.score(rows) {
            Ok(s) if s.len() == rows.len() => node.handle_replay(accusation, &s, now_ms()),
            Ok(_) => warn!("the scorer returned the wrong number of scores; no vote"),
            Err(e) => warn!(error = %e, "scoring a vote failed; no vote"),
        }
    }

    /// Scores one window's rows, hands the scores to the node, stores the
    /// rows and publishes them for `/v1/scores`.
    fn score(&mut self, node: &mut Node<RealCrypto>, window: u64, rows: &[(NodeId, Row)]) {
        let Some(scorer) = self.scorer.as_mut() else {
            return;
        };
        let features: Vec<Row> = rows.iter().map(|r| r.1).collect();
        let scores = match scorer.score(&features) {
            Ok(s) => s,
            Err(e) => {
                warn!(error = %e, "scoring failed; this window is not scored");
                return;
            }
        };
        let model = scorer.manifest().sha256.clone();
        self.shared.metrics.rows_scored.inc_by(rows.len() as u64);
        let pairs: Vec<(NodeId, Score)> = rows.iter().map(|r| r.0).zip(scores).collect();
        node.handle_scores(window, &pairs);
        self.detection.rows_scored += pairs.len() as u64;
        if let Some((id, top)) = pairs.iter().max_by_key(|p| p.1)
            && (self.detection.highest_subject.is_none()
                || top.as_f32() > self.detection.highest_score)
        {
            self.detection.highest_score = top.as_f32();
            self.detection.highest_subject = Some(id.to_hex());
        }
        let suspected = |id: &NodeId| node.suspicions().get(id).is_some_and(|s| s.raised);
        let stored: Vec<ScoreRow> = rows
            .iter()
            .zip(&pairs)
            .map(|((id, row), (_, score))| ScoreRow {
                window_ms: window,
                subject: id.to_hex(),
                model: model.clone(),
                score: score.0,
                suspected: suspected(id),
                features: *row,
            })
            .collect();
        if let Ok(mut s) = self.shared.scores.lock() {
            // Neighbours no longer scored leave the view.
            s.latest.retain(|id, _| pairs.iter().any(|p| p.0 == *id));
            for (id, score) in &pairs {
                s.latest.insert(
                    *id,
                    ScoreView {
                        node: id.to_hex(),
                        score: score.as_f32(),
                        suspected: suspected(id),
                        window_ms: window,
                    },
                );
            }
            let n = s.latest.values().filter(|v| v.suspected).count();
            self.shared
                .metrics
                .locally_suspected
                .set(i64::try_from(n).unwrap_or(i64::MAX));
        }
        let _ = self.store_tx.send(StoreOp::Scores(stored));
    }

    /// Brings links, the blocklist file and the hook in line with the
    /// quarantines the node enforces.
    fn sync_enforcement(&mut self, node: &Node<RealCrypto>) {
        let now = now_ms();
        let current: BTreeMap<NodeId, Blocked> = node
            .quarantine()
            .entries()
            .filter(|e| e.enforced && e.until_ms > now)
            .map(|e| {
                let b = self.blocked(
                    e.proven.subject,
                    e.proven.fault.name(),
                    (e.since_ms, e.until_ms),
                );
                (e.proven.subject, b)
            })
            .collect();
        let first = self.outside.is_none();
        let before = self.outside.take().unwrap_or_default();
        for (id, b) in &current {
            if !before.contains_key(id) {
                self.cut(*id);
                if let Some(h) = &self.hook {
                    h.call(Action::Quarantine, b.clone());
                }
            }
        }
        for (id, b) in &before {
            if !current.contains_key(id)
                && let Some(h) = &self.hook
            {
                h.call(Action::Lift, b.clone());
            }
        }
        if (first || before != current)
            && let Some(path) = &self.cfg.enforce.blocklist_file
        {
            let list: Vec<Blocked> = current.values().cloned().collect();
            match enforce::write_blocklist(path, self.roster.mesh(), now, &list) {
                Ok(()) => info!(path = %path.display(), entries = list.len(), "blocklist written"),
                Err(error) => warn!(%error, "cannot write the blocklist file"),
            }
        }
        self.outside = Some(current);
    }

    /// Calls the hook's `lift` for quarantines that ended while this
    /// sentinel was down, and records that they are over.
    fn lift_ended_while_down(&mut self, rows: &[CertificateRow]) {
        for row in rows {
            if let (Some(h), Ok(id)) = (&self.hook, NodeId::from_hex(&row.subject)) {
                h.call(
                    Action::Lift,
                    self.blocked(id, &row.fault, (row.since_ms, row.until_ms)),
                );
            }
            self.store_write(|s| s.set_enforced(&row.subject, false));
            if let Ok(id) = NodeId::from_hex(&row.subject) {
                self.incident(
                    "quarantine_lifted",
                    row.subject.clone(),
                    "quarantine ended while this sentinel was down".into(),
                    row.until_ms,
                    Some(quarantine_key(&id, row.epoch, row.sequence)),
                );
            }
        }
    }

    /// At start: queues (again, if a crash lost it between the
    /// certificate's commit and the incident's) the `node.quarantined`
    /// alert of every quarantine still running; one already queued is left
    /// alone, so nothing is sent twice.
    fn realert_quarantines(&self) {
        let now = now_ms();
        let rows = match self.shared.store.lock().map(|s| s.certificates()) {
            Ok(Ok(rows)) => rows,
            _ => return,
        };
        let mut queued = Vec::new();
        for row in rows.iter().filter(|r| r.until_ms > now) {
            let Ok(id) = NodeId::from_hex(&row.subject) else {
                continue;
            };
            let kind = if row.enforced {
                "quarantined"
            } else {
                "quarantine_over_cap"
            };
            let Some((event, severity)) = outbox::event_of(kind) else {
                continue;
            };
            queued.extend(self.router.route(&Alert {
                event,
                severity,
                subject: row.subject.clone(),
                incident: quarantine_key(&id, row.epoch, row.sequence),
                at_ms: row.since_ms,
                detail: format!("{} certificate held since {}", row.fault, row.since_ms),
                sentinel: self.me.to_hex(),
            }));
        }
        if queued.is_empty() {
            return;
        }
        match self
            .shared
            .store
            .lock()
            .map(|mut s| s.queue_alerts(now, &queued))
        {
            Ok(Ok(n)) if n > 0 => {
                info!(alerts = n, "queued quarantine alerts a crash had lost");
                self.shared.alerts_wake.notify_one();
            }
            Ok(Err(e)) => warn!(error = %e, "queueing quarantine alerts at start failed"),
            _ => {}
        }
    }

    /// The database row for a held quarantine.
    fn certificate_row(
        &self,
        e: &Entry,
        certificate: &[u8],
        from: Option<NodeId>,
    ) -> CertificateRow {
        CertificateRow {
            subject: e.proven.subject.to_hex(),
            epoch: e.proven.epoch,
            sequence: e.proven.sequence,
            fault: e.proven.fault.name().to_owned(),
            since_ms: e.since_ms,
            until_ms: e.until_ms,
            enforced: e.enforced,
            source: from.map_or_else(|| "detected".to_owned(), |f| f.to_hex()),
            certificate: certificate.to_vec(),
        }
    }

    /// What the world outside is told about a quarantine of `id`.
    fn blocked(&self, id: NodeId, fault: &str, (since_ms, until_ms): (u64, u64)) -> Blocked {
        Blocked {
            id: id.to_hex(),
            name: self
                .roster
                .get(&id)
                .map(|m| m.name.clone())
                .unwrap_or_default(),
            address: self.addresses.get(&id).map(|a| a.to_string()),
            fault: fault.to_owned(),
            since_ms,
            until_ms,
        }
    }

    /// Closes the link to a newly quarantined node and drops what was
    /// queued for it.
    fn cut(&mut self, id: NodeId) {
        if let Some(state) = self.peers.get_mut(&id) {
            state.queue.clear();
            if let Some(link) = state.link.take() {
                link.conn.close(close::QUARANTINED.into(), b"quarantined");
                self.shared.metrics.quarantine_links_closed.inc();
            }
        }
    }

    /// A write the driver makes itself (certificates): committed before it
    /// goes on.
    fn store_write(&self, f: impl FnOnce(&mut Store) -> Result<(), crate::store::StoreError>) {
        let result = self
            .shared
            .store
            .lock()
            .map_err(|_| "store lock poisoned".to_owned())
            .and_then(|mut s| f(&mut s).map_err(|e| e.to_string()));
        if let Err(error) = result {
            warn!(%error, "database write failed");
        }
    }

    fn send(&mut self, to: NodeId, class: Class, bytes: Arc<[u8]>) {
        if sentinel_protocol::message::is_quarantine_traffic(&bytes) {
            self.quarantine_bytes.1 += bytes.len() as u64;
        }
        let m = &self.shared.metrics;
        let state = self.peers.entry(to).or_default();
        if let Some(link) = &state.link {
            if class == Class::Datagram
                && link
                    .conn
                    .max_datagram_size()
                    .is_some_and(|max| bytes.len() <= max)
            {
                if link.conn.send_datagram(bytes.to_vec().into()).is_ok() {
                    m.messages_out.inc();
                }
                return;
            }
            match link.tx.try_send(bytes) {
                Ok(()) => {
                    m.messages_out.inc();
                }
                Err(_) => {
                    m.messages_dropped.inc();
                }
            }
            return;
        }
        if state.queue.len() >= self.cfg.quic.queue_per_peer {
            state.queue.pop_front();
            m.messages_dropped.inc();
        }
        state.queue.push_back(bytes);
        let now = now_ms();
        if state.dialling || now < state.next_dial_ms {
            return;
        }
        let Some(addr) = self.addresses.get(&to) else {
            state.queue.clear();
            m.messages_dropped.inc();
            debug!(peer = %to, "no address for peer");
            return;
        };
        state.dialling = true;
        let ep = self.endpoint.clone();
        let auth = self.auth.clone();
        let tx = self.net_tx.clone();
        let me = self.me;
        let timeout = Duration::from_millis(self.cfg.quic.handshake_timeout_ms);
        let shared = self.shared.clone();
        tokio::spawn(async move {
            let ev = match auth.dial(&ep, addr, to, timeout).await {
                Ok(conn) => {
                    shared.metrics.handshakes.inc();
                    NetEvent::Up {
                        peer: to,
                        conn,
                        dialled_by: me,
                    }
                }
                Err(e) => {
                    if matches!(e, LinkError::Refused(_) | LinkError::WrongPeer { .. }) {
                        warn!(peer = %to, %addr, error = %e, "peer failed link authentication");
                        shared.metrics.auth_failure(e.label());
                    }
                    NetEvent::DialFailed {
                        peer: to,
                        error: e.to_string(),
                    }
                }
            };
            let _ = tx.send(ev).await;
        });
    }

    fn on_event(&mut self, node: &Node<RealCrypto>, e: Event) {
        let m = &self.shared.metrics;
        let now = now_ms();
        match e {
            Event::NeighbourUp(p) => {
                info!(peer = %p, "neighbour up");
                self.last_down.remove(&p);
            }
            Event::NeighbourDown { peer, reason } => {
                let why = match reason {
                    DownReason::Failed => "failed",
                    DownReason::Disconnected => "disconnected",
                    DownReason::Replaced => "replaced",
                    DownReason::Left => "left",
                    DownReason::Quarantined => "quarantined",
                };
                info!(peer = %peer, reason = why, "neighbour down");
                self.last_down.insert(peer, why.to_owned());
                if reason == DownReason::Failed {
                    m.peers_failed.inc();
                    self.incident(
                        "peer_failed",
                        peer.to_hex(),
                        "declared failed by the failure detector".into(),
                        now,
                        None,
                    );
                }
            }
            Event::Suspected(p) => {
                m.suspicions.inc();
                info!(peer = %p, "neighbour suspected");
            }
            Event::Refuted(p) => debug!(peer = %p, "suspicion refuted"),
            // Collected and answered by `flush`.
            Event::ScoreRequest { .. } => {}
            // Collected and answered by `flush`.
            Event::ReplayRequest { .. } => {}
            Event::Accused {
                subject,
                accusation,
                score,
                committee,
                frame,
            } => {
                m.accusations_made.inc();
                let hash = hex::encode(accusation);
                warn!(peer = %subject, %score, committee, accusation = %hash, "accused before the committee");
                let _ = self.store_tx.send(StoreOp::Accusation(AccusationRow {
                    hash: hash.clone(),
                    at_ms: now,
                    subject: subject.to_hex(),
                    score: score.0,
                    committee: committee as u64,
                    state: "open".into(),
                    seats: (0, 0, 0),
                    frame: frame.to_vec(),
                }));
                self.incident(
                    "accused",
                    subject.to_hex(),
                    format!("score {score}, committee of {committee}, accusation {hash}"),
                    now,
                    Some(format!("accusation/{hash}")),
                );
            }
            Event::VoteCast {
                accuser,
                subject,
                accusation,
                verdict,
                frame,
            } => {
                m.votes_cast.inc();
                let hash = hex::encode(accusation);
                info!(peer = %subject, accuser = %accuser, verdict = verdict.name(), accusation = %hash, "voted");
                let _ = self.store_tx.send(StoreOp::Vote(VoteRow {
                    accusation: hash,
                    at_ms: now,
                    accuser: accuser.to_hex(),
                    subject: subject.to_hex(),
                    verdict: verdict.name().into(),
                    frame: frame.to_vec(),
                }));
            }
            Event::AccusationClosed {
                subject,
                accusation,
                certified,
                seats,
            } => {
                let hash = hex::encode(accusation);
                let state = if certified { "certified" } else { "refused" };
                info!(peer = %subject, state, yes = seats.0, no = seats.1, of = seats.2, accusation = %hash, "accusation closed");
                let _ = self.store_tx.send(StoreOp::AccusationClosed {
                    hash: hash.clone(),
                    state,
                    seats,
                });
                self.incident(
                    if certified {
                        "accusation_certified"
                    } else {
                        "accusation_refused"
                    },
                    subject.to_hex(),
                    format!(
                        "{} of {} seats yes, {} no; accusation {hash}",
                        seats.0, seats.2, seats.1
                    ),
                    now,
                    None,
                );
            }
            Event::SuspicionRaised {
                subject,
                score,
                window,
            } => {
                m.suspicion_raised.inc();
                self.detection.suspicions_raised += 1;
                warn!(peer = %subject, %score, window, "local suspicion raised by model scores");
                // One incident per subject and hour, whichever sentinel
                // raises it: the mesh's neighbours of a subject send one id.
                self.incident(
                    "suspicion_raised",
                    subject.to_hex(),
                    format!("score {score} in the window ending at {window}"),
                    now,
                    Some(format!(
                        "suspected/{}/{}",
                        subject.to_hex(),
                        now / 3_600_000
                    )),
                );
            }
            Event::SuspicionCleared(subject) => {
                info!(peer = %subject, "local suspicion cleared");
                self.incident(
                    "suspicion_cleared",
                    subject.to_hex(),
                    String::new(),
                    now,
                    None,
                );
            }
            Event::ReportReceived { origin, stamp, .. } => {
                m.reports_received.inc();
                if let (Some(frame), Some((stamp, report))) =
                    (node.report(&origin), node.report_contents(&origin))
                {
                    let row = derive_row(origin, stamp, &report, now);
                    let _ = self.store_tx.send(StoreOp::Telemetry(row, frame.to_vec()));
                }
                debug!(origin = %origin, epoch = stamp.epoch, sequence = stamp.sequence, "report received");
            }
            Event::ReportSent { stamp, bytes, .. } => {
                m.reports_signed.inc();
                debug!(sequence = stamp.sequence, bytes, "report signed");
            }
            Event::Quarantined {
                subject,
                fault,
                certificate,
                enforced,
                from,
            } => {
                let source = from.map_or_else(|| "detected here".to_owned(), |f| f.to_string());
                let key = node
                    .quarantine()
                    .get(&subject)
                    .map(|e| quarantine_key(&subject, e.proven.epoch, e.proven.sequence));
                if let Some(e) = node.quarantine().get(&subject) {
                    let row = self.certificate_row(e, &certificate, from);
                    self.store_write(|s| s.save_certificate(&row));
                }
                if enforced {
                    warn!(subject = %subject, fault = fault.name(), source, bytes = certificate.len(), "quarantine certificate verified: enforcing");
                } else {
                    warn!(subject = %subject, fault = fault.name(), source, "quarantine certificate verified but over the quarantine cap: NOT enforced");
                }
                self.incident(
                    if enforced {
                        "quarantined"
                    } else {
                        "quarantine_over_cap"
                    },
                    subject.to_hex(),
                    format!(
                        "{} certificate, {} bytes, from {source}",
                        fault.name(),
                        certificate.len()
                    ),
                    now,
                    key,
                );
            }
            Event::CertificateReplaced {
                subject,
                certificate,
                from,
            } => {
                debug!(subject = %subject, "quarantine certificate replaced by a preceding one");
                if let Some(e) = node.quarantine().get(&subject) {
                    let row = self.certificate_row(e, &certificate, from);
                    self.store_write(|s| s.replace_certificate(&row));
                }
            }
            Event::QuarantineEnforced(subject) => {
                warn!(subject = %subject, "held quarantine certificate now under the cap: enforcing");
                self.store_write(|s| s.set_enforced(&subject.to_hex(), true));
                let key = self.held_quarantine_key(&subject);
                self.incident(
                    "quarantined",
                    subject.to_hex(),
                    "held certificate now under the quarantine cap: enforced".into(),
                    now,
                    key,
                );
            }
            Event::QuarantineLifted(subject) => {
                info!(subject = %subject, "quarantine expired");
                self.store_write(|s| s.set_enforced(&subject.to_hex(), false));
                let key = self.held_quarantine_key(&subject);
                self.incident(
                    "quarantine_lifted",
                    subject.to_hex(),
                    "quarantine expired".into(),
                    now,
                    key,
                );
            }
        }
    }

    /// Records an incident; if its kind alerts (`outbox::event_of`) and
    /// it has an incident key, its alert is queued for every endpoint that
    /// takes it, committed with the incident.
    fn incident(
        &self,
        kind: &'static str,
        subject: String,
        detail: String,
        at_ms: u64,
        incident: Option<String>,
    ) {
        let alerts = match (outbox::event_of(kind), incident) {
            (Some((event, severity)), Some(incident)) => self.router.route(&Alert {
                event,
                severity,
                subject: subject.clone(),
                incident,
                at_ms,
                detail: detail.clone(),
                sentinel: self.me.to_hex(),
            }),
            _ => Vec::new(),
        };
        let _ = self.store_tx.send(StoreOp::Incident {
            kind,
            subject,
            detail,
            at_ms,
            alerts,
        });
    }

    /// The incident key of the quarantine of `subject` held in the
    /// database (the certificate's proven position).
    fn held_quarantine_key(&self, subject: &NodeId) -> Option<String> {
        let rows = self
            .shared
            .store
            .lock()
            .ok()?
            .certificates_of(&subject.to_hex())
            .ok()?;
        rows.last()
            .map(|r| quarantine_key(subject, r.epoch, r.sequence))
    }

    /// A `sentinel.degraded` alert (one per hour) when this sentinel
    /// withheld accusations because its own links are failing.
    fn check_degraded(&mut self, withheld: u64, now: u64) {
        if withheld > self.withheld_degraded {
            self.incident(
                "degraded",
                self.me.to_hex(),
                format!(
                    "{} accusations withheld since start: this sentinel's own links are failing probes",
                    withheld
                ),
                now,
                Some(format!("degraded/{}/{}", self.me.to_hex(), now / 3_600_000)),
            );
        }
        self.withheld_degraded = withheld;
    }

    fn publish_status(
        &self,
        node: &Node<RealCrypto>,
        epoch: u64,
        started: u64,
        quic_addr: &str,
        host: HostExtra,
        guarded: Option<GuardedStatus>,
    ) {
        let active = node.active_view();
        let passive = node.passive_view();
        let hex = |v: &[NodeId]| v.iter().map(NodeId::to_hex).collect::<Vec<_>>();
        let connected: Vec<NodeId> = self
            .peers
            .iter()
            .filter(|(_, s)| s.link.is_some())
            .map(|(id, _)| *id)
            .collect();
        let suspected: Vec<NodeId> = active
            .iter()
            .filter(|p| node.is_suspected(p))
            .copied()
            .collect();
        let stats = node.stats();
        let origins: Vec<NodeId> = self
            .roster
            .members()
            .map(|m| m.public.id())
            .filter(|id| node.report(id).is_some())
            .collect();
        let status = Status {
            id: self.me.to_hex(),
            mesh: self.roster.mesh().to_owned(),
            epoch,
            next_sequence: node.next_sequence(),
            sequences_reserved: self.reserved,
            uptime_s: now_ms().saturating_sub(started) / 1000,
            quic_addr: quic_addr.to_owned(),
            active: hex(&active),
            passive: hex(passive),
            suspected: hex(&suspected),
            connected: hex(&connected),
            health: node.health(),
            reports_signed: stats.signs,
            reports_received: stats.reports_received,
            origins_heard: origins.len(),
            invalid_messages: stats.invalid + stats.malformed,
            quarantined: node
                .quarantine()
                .entries()
                .filter(|e| e.enforced)
                .map(|e| e.proven.subject.to_hex())
                .collect(),
            equivocations_detected: stats.equivocations_detected,
            certificates_accepted: stats.certificates_accepted,
            host,
            guarded,
            detection: DetectionStatus {
                locally_suspected: node
                    .suspicions()
                    .iter()
                    .filter(|(_, s)| s.raised)
                    .map(|(id, _)| id.to_hex())
                    .collect(),
                accusations_withheld_degraded: stats.accusations_withheld_degraded,
                accusations_withheld_own_view: stats.accusations_withheld_own_view,
                ..self.detection.clone()
            },
        };
        let m = &self.shared.metrics;
        m.set_gauges(&status, stats.rate_limited);
        let peers = self
            .roster
            .members()
            .filter(|mb| mb.public.id() != self.me)
            .map(|mb| {
                let id = mb.public.id();
                let view = if active.contains(&id) {
                    "active"
                } else if passive.contains(&id) {
                    "passive"
                } else {
                    "none"
                };
                PeerView {
                    id: id.to_hex(),
                    name: mb.name.clone(),
                    addr: self.addresses.get(&id).map(|a| a.to_string()),
                    view,
                    connected: connected.contains(&id),
                    suspected: node.is_suspected(&id),
                    latest_report: node.report(&id).and_then(|f| {
                        envelope::peek_header(f)
                            .ok()
                            .map(|h| (h.stamp.epoch, h.stamp.sequence))
                    }),
                    last_down: self.last_down.get(&id).cloned(),
                }
            })
            .collect();
        if let Ok(mut s) = self.shared.status.lock() {
            *s = status;
        }
        if let Ok(mut p) = self.shared.peers.lock() {
            *p = peers;
        }
    }
}

/// Puts the stored certificates back into the node (verified again) and
/// returns the ones enforced when the sentinel stopped whose quarantine has
/// ended since.
/// The node's config: detection's suspicion policy, and voting with the
/// loaded model's hash pinned.
fn node_config(
    cfg: &Config,
    scorer: Option<&sentinel_models::TractScorer>,
) -> sentinel_protocol::Config {
    let mut c = sentinel_protocol::Config {
        suspicion: cfg.detection.policy(),
        ..sentinel_protocol::Config::default()
    };
    c.quarantine.voted_ttl_ms = cfg.quorum.quarantine_minutes * 60_000;
    let mut model = [0u8; 32];
    if let Some(s) = scorer
        && hex::decode_to_slice(&s.manifest().sha256, &mut model).is_ok()
        && cfg.quorum_on()
    {
        c.quarantine.model = model;
        c.quorum.enabled = true;
        c.quorum.vote_threshold = Score::quantise(cfg.quorum.vote_threshold);
        c.quorum.accusations_per_hour = cfg.quorum.accusations_per_hour;
    }
    c
}

/// Marks the accusations this sentinel voted on within the last day as
/// decided, so that a restart never votes on one twice.
fn restore_votes(node: &mut Node<RealCrypto>, store: &Store) -> Result<(), StartError> {
    let since = now_ms().saturating_sub(24 * 3_600_000);
    let hashes = store.voted_since(since).map_err(ctx("database"))?;
    node.restore_votes(hashes.iter().filter_map(|h| {
        let mut b = [0u8; 32];
        hex::decode_to_slice(h, &mut b).ok().map(|()| b)
    }));
    Ok(())
}

fn restore_certificates(
    node: &mut Node<RealCrypto>,
    store: &Store,
) -> Result<Vec<CertificateRow>, StartError> {
    let now = now_ms();
    let mut ended = Vec::new();
    let (mut enforced, mut held) = (0, 0);
    for row in store.certificates().map_err(ctx("database"))? {
        let certificate = SharedBytes::from(row.certificate.clone());
        match node.restore_certificate(&certificate, (row.since_ms, row.until_ms), now) {
            Ok(Admitted::Enforced) => enforced += 1,
            Ok(Admitted::OverCap) => held += 1,
            Ok(Admitted::Expired) if row.enforced => ended.push(row),
            Ok(Admitted::Expired | Admitted::Known | Admitted::Replaced) => {}
            Err(error) => {
                warn!(subject = %row.subject, %error, "stored quarantine certificate does not verify against this roster: not restored");
            }
        }
    }
    if enforced + held + ended.len() > 0 {
        info!(
            enforced,
            over_cap = held,
            ended = ended.len(),
            "quarantine certificates restored"
        );
    }
    Ok(ended)
}

/// Features of one verified report for the database.
fn derive_row(origin: NodeId, stamp: Stamp, report: &Report, now: u64) -> TelemetryRow {
    let n = report.host.len().max(1) as u64;
    let sum = |f: fn(&sentinel_protocol::telemetry::HostSample) -> u64| -> u64 {
        report.host.iter().map(f).sum()
    };
    let links = report.neighbours.iter().flat_map(|o| o.samples.iter());
    let (invalid, failed) = links.fold((0u64, 0u64), |(i, f), s| {
        (
            i + u64::from(s.invalid) + u64::from(s.malformed),
            f + u64::from(s.probes_failed),
        )
    });
    TelemetryRow {
        origin: origin.to_hex(),
        epoch: stamp.epoch,
        sequence: stamp.sequence,
        received_ms: now,
        start_ms: report.start_ms,
        samples: report.host.len() as u64,
        neighbours: report.neighbours.len() as u64,
        cpu_permille_mean: sum(|s| u64::from(s.cpu_permille)) / n,
        mem_permille_mean: sum(|s| u64::from(s.mem_permille)) / n,
        net_in_bytes: sum(|s| u64::from(s.net_in_bytes)),
        net_out_bytes: sum(|s| u64::from(s.net_out_bytes)),
        node_peers_mean: sum(|s| u64::from(s.node_peers)) / n,
        node_errors: sum(|s| u64::from(s.node_errors)),
        invalid_messages: invalid,
        probes_failed: failed,
    }
}

async fn accept_loop(
    ep: quinn::Endpoint,
    auth: Arc<Authenticator>,
    tx: mpsc::Sender<NetEvent>,
    connections: Arc<AtomicUsize>,
    max: usize,
    timeout: Duration,
    shared: Arc<Shared>,
) {
    while let Some(incoming) = ep.accept().await {
        if connections.load(Ordering::SeqCst) >= max {
            warn!(remote = %incoming.remote_address(), max, "connection refused: at the connection limit");
            incoming.refuse();
            continue;
        }
        let auth = auth.clone();
        let tx = tx.clone();
        let shared = shared.clone();
        let connections = connections.clone();
        tokio::spawn(async move {
            let remote = incoming.remote_address();
            match auth.accept(incoming, timeout).await {
                Ok((conn, peer)) => {
                    shared.metrics.handshakes.inc();
                    connections.fetch_add(1, Ordering::SeqCst);
                    let closed = conn.clone();
                    let _ = tx
                        .send(NetEvent::Up {
                            peer,
                            conn,
                            dialled_by: peer,
                        })
                        .await;
                    closed.closed().await;
                    connections.fetch_sub(1, Ordering::SeqCst);
                }
                Err(e) => {
                    shared.metrics.auth_failure(e.label());
                    warn!(%remote, error = %e, "incoming connection refused");
                }
            }
        });
    }
}

async fn writer(conn: quinn::Connection, mut rx: mpsc::Receiver<Arc<[u8]>>) {
    let Ok(mut send) = conn.open_uni().await else {
        return;
    };
    while let Some(bytes) = rx.recv().await {
        if transport::send_message(&mut send, &bytes).await.is_err() {
            return;
        }
    }
    let _ = send.finish();
}

async fn reader(
    conn: quinn::Connection,
    peer: NodeId,
    tx: mpsc::Sender<NetEvent>,
    limit: usize,
    shared: Arc<Shared>,
) {
    let datagrams = {
        let conn = conn.clone();
        let tx = tx.clone();
        tokio::spawn(async move {
            while let Ok(d) = conn.read_datagram().await {
                if tx
                    .send(NetEvent::Message {
                        peer,
                        bytes: Arc::from(&d[..]),
                    })
                    .await
                    .is_err()
                {
                    return;
                }
            }
        })
    };
    if let Ok(mut recv) = conn.accept_uni().await {
        loop {
            match transport::recv_message(&mut recv, limit).await {
                Ok(Some(bytes)) => {
                    if tx
                        .send(NetEvent::Message {
                            peer,
                            bytes: bytes.into(),
                        })
                        .await
                        .is_err()
                    {
                        break;
                    }
                }
                Ok(None) => break,
                Err(_) if conn.close_reason().is_some() => break,
                Err(e) => {
                    warn!(peer = %peer, error = %e, "closing link: bad frame");
                    shared.metrics.protocol_errors.inc();
                    conn.close(close::PROTOCOL.into(), b"bad frame");
                    break;
                }
            }
        }
    }
    datagrams.abort();
    // A link is its one message stream: once that has ended the connection
    // is closed too, or a peer that finishes its stream would keep the
    // connection (and one of `max_connections` slots) with no link.
    if conn.close_reason().is_none() {
        conn.close(close::SHUTDOWN.into(), b"message stream ended");
    }
    let _ = tx
        .send(NetEvent::Down {
            peer,
            conn_id: conn.stable_id(),
        })
        .await;
}
