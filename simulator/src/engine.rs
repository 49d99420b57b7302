//! The discrete-event engine.
//!
//! One priority queue of events ordered by (time in µs, insertion number)
//! drives every node's [`Node`] — the same code the daemon runs — through
//! [`Node::handle_message`] and [`Node::handle_timeout`]. Each node's clock is
//! the simulated time plus its skew. Nothing iterates over a hash map and all
//! randomness comes from the scenario seed, so a run is a function of its
//! scenario and seed; [`Sim::trace_hash`] proves it.
//!
//! Network model, per message: it waits for the sender's uplink (queued
//! behind earlier messages at `uplink_mbps`), then takes the link's fixed
//! base latency (log-normal per pair of nodes) plus uniform jitter. Packet
//! loss drops a datagram; a stream message instead waits for its lost
//! packets to be resent, as QUIC does: one probe timeout (2 RTT + 25 ms) per
//! round of resends, doubling when a resent packet is lost again. Partitions
//! drop everything between groups; a crashed node receives nothing.
#![allow(
    clippy::cast_possible_truncation,
    reason = "node indices are below 100,000 (scenario validation) and float-to-integer casts are of bounded, non-negative times and counts"
)]

use std::cell::RefCell;
use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};
use std::rc::Rc;
use std::sync::Arc;

use aws_lc_rs::digest;
use sentinel_protocol::codec::{Codec, SharedBytes};
use sentinel_protocol::crypto::{Crypto, ModelledCrypto, RealCrypto, VerifyCache};
use sentinel_protocol::envelope::{self, Kind, Stamp, Verified};
use sentinel_protocol::evidence::Fault;
use sentinel_protocol::features::{self, Score};
use sentinel_protocol::identity::{ED25519_SIGNATURE_LEN, ML_DSA_65_SIGNATURE_LEN, SEED_LEN};
use sentinel_protocol::message::{self, Class, Message, TAG_REPORT};
use sentinel_protocol::node::{DownReason, Event};
use sentinel_protocol::quorum::open_vote;
use sentinel_protocol::rng::Rng;
use sentinel_protocol::telemetry::{HostSample, Report};
use sentinel_protocol::{Config, Error, Identity, MeshId, Node, NodeId, Roster, Transmit};

use crate::adversary::{Attack, AttackKind};
use crate::detect::{Detection, FALSE_RAISE_EXAMPLES, FalseRaise, Pending, PendingReplay, Truth};
use crate::metrics::Metrics;
use crate::scenario::{ActionKind, CryptoMode, Scenario};
use sentinel_datasets::{Dataset, EventRecord};
use sentinel_models::TractScorer;

/// Simulated Unix time at the start of every run (node clocks add skew).
pub const T0_MS: u64 = 1_700_000_000_000;

/// The crypto a simulated node uses.
#[derive(Debug)]
pub enum SimCrypto {
    /// Real signatures; verifications of identical bytes shared mesh-wide.
    Real {
        /// Signs.
        inner: Box<RealCrypto>,
        /// Shared by every node of the run.
        cache: Rc<RefCell<VerifyCache>>,
    },
    /// Cost-modelled signatures (see [`ModelledCrypto`]).
    Modelled(ModelledCrypto),
}

impl Crypto for SimCrypto {
    fn id(&self) -> NodeId {
        match self {
            SimCrypto::Real { inner, .. } => inner.id(),
            SimCrypto::Modelled(m) => m.id(),
        }
    }

    fn seal(
        &mut self,
        mesh: &MeshId,
        kind: Kind,
        stamp: Stamp,
        payload: &[u8],
    ) -> Result<Vec<u8>, Error> {
        match self {
            SimCrypto::Real { inner, .. } => inner.seal(mesh, kind, stamp, payload),
            SimCrypto::Modelled(m) => m.seal(mesh, kind, stamp, payload),
        }
    }

    fn open<'a>(&mut self, roster: &Roster, frame: &'a [u8]) -> Result<Verified<'a>, Error> {
        match self {
            SimCrypto::Real { cache, .. } => cache.borrow_mut().open(roster, frame),
            SimCrypto::Modelled(m) => m.open(roster, frame),
        }
    }
}

#[derive(Debug)]
enum EvKind {
    Boot(u32),
    Deliver {
        to: u32,
        from: u32,
        bytes: Arc<[u8]>,
    },
    Timer {
        node: u32,
        generation: u64,
    },
    Action(usize),
    StallStart(u32),
    ChurnCrash(u32),
    ChurnRestart(u32),
    Second,
    /// The hosts score what their nodes asked for since the last batch.
    Score,
}

#[derive(Debug)]
struct Ev {
    at: u64,
    seq: u64,
    kind: EvKind,
}

impl PartialEq for Ev {
    fn eq(&self, o: &Self) -> bool {
        (self.at, self.seq) == (o.at, o.seq)
    }
}
impl Eq for Ev {}
impl PartialOrd for Ev {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Ev {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        (self.at, self.seq).cmp(&(o.at, o.seq))
    }
}

#[derive(Debug, Default)]
struct Slot {
    node: Option<Node<SimCrypto>>,
    boots: u64,
    skew_ms: i64,
    overloaded: bool,
    churns: bool,
    left: bool,
    stall_until: u64,
    timer_generation: u64,
    timer_at: Option<u64>,
    uplink_free: u64,
    /// Crypto operations of earlier lives (stats restart with each boot).
    signs_before: u64,
    verifies_before: u64,
    events_handled: u64,
    cpu_from_us: u64,
    /// The epoch recorded in the node's (simulated) data directory, and the
    /// one recorded at its first boot (what a restored old copy holds).
    stored_epoch: u64,
    first_epoch: u64,
    /// The certificates its database holds: subject → (bytes, since, until).
    stored_certificates: BTreeMap<NodeId, (SharedBytes, u64, u64)>,
    /// Set when the node equivocates.
    twin: Option<Box<Twin>>,
    /// Set when the node is an adversary of the attack library.
    attack: Option<Box<Attack>>,
    /// Rewritten versions of a liar's or framer's own reports, by
    /// (epoch, sequence), so every copy of one report carries one content.
    rewrites: BTreeMap<(u64, u64), Arc<[u8]>>,
    /// Its host's normal CPU and memory use (per mille) and guarded-node
    /// peers.
    base_cpu: u16,
    base_mem: u16,
    node_peers: u16,
    /// Bytes in and out since the last host sample.
    bytes_in: u64,
    bytes_out: u64,
    /// A framer's victim.
    victim: bool,
    /// A degraded host: from this time (µs) it loses a share of its
    /// inbound packets.
    degraded_from: Option<u64>,
    /// Relays a mimic dropped since the last second, per neighbour.
    dropped_relays: BTreeMap<u32, u32>,
    /// An attacker's own signer for rewritten and forged reports, made
    /// once (a real-mode signer costs a key derivation).
    signer: Option<Box<SimCrypto>>,
}

/// The second signer of an equivocating node (as a second process with
/// the same key would be): a conflicting version of each of its reports.
#[derive(Debug)]
struct Twin {
    crypto: SimCrypto,
    /// (epoch, sequence) → the conflicting version and copies sent so far.
    versions: BTreeMap<(u64, u64), Version>,
}

/// A conflicting message and how many copies of that report went out.
type Version = (Arc<[u8]>, u64);

/// Conflicting versions kept per equivocator (its recent reports).
const TWIN_VERSIONS: usize = 64;

/// How long a host takes to score what its node asked for, µs: the model
/// call and the hand-back, with the requests of every node made meanwhile
/// in one batch.
const HOST_SCORING_US: u64 = 5_000;

/// Totals for the CPU estimate and the report.
#[derive(Debug, Default, Clone, Copy)]
pub struct Totals {
    /// Events the engine processed.
    pub events: u64,
    /// Messages delivered to a live node.
    pub deliveries: u64,
    /// Messages dropped (loss, partition, dead receiver).
    pub dropped: u64,
}

/// One simulation run.
pub struct Sim {
    pub(crate) sc: Scenario,
    cfg: Config,
    roster: Arc<Roster>,
    pub(crate) ids: Vec<NodeId>,
    index: BTreeMap<NodeId, u32>,
    seeds: Vec<[u8; SEED_LEN]>,
    cache: Rc<RefCell<VerifyCache>>,
    slots: Vec<Slot>,
    queue: BinaryHeap<Reverse<Ev>>,
    seq: u64,
    pub(crate) now: u64,
    end: u64,
    rng: Rng,
    groups: Option<Vec<u32>>,
    pub(crate) metrics: Metrics,
    trace: digest::Context,
    pub(crate) totals: Totals,
    pub(crate) cpu_us: Vec<f64>,
    /// Reused between calls of [`Sim::after`].
    scratch: (Vec<Transmit>, Vec<Event>),
    /// Scoring, labels and the dataset.
    pub(crate) detection: Detection,
    /// An [`EvKind::Score`] is queued.
    score_queued: bool,
    /// Randomness of the attack library and host metrics (its own stream,
    /// so runs without attackers keep their traces).
    arng: Rng,
}

fn node_seed(run_seed: u64, i: usize) -> [u8; SEED_LEN] {
    let mut r = Rng::derive(run_seed, 0x1D_0000 + i as u64);
    let mut seed = [0u8; SEED_LEN];
    for chunk in seed.chunks_mut(8) {
        chunk.copy_from_slice(&r.next_u64().to_be_bytes());
    }
    seed
}

/// A standard normal variate (Box–Muller).
fn normal(r: &mut Rng) -> f64 {
    let u1 = r.unit().max(f64::MIN_POSITIVE);
    let u2 = r.unit();
    (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
}

fn exponential(r: &mut Rng, mean_s: f64) -> u64 {
    let u = r.unit().max(f64::MIN_POSITIVE);
    (-u.ln() * mean_s * 1e6) as u64
}

impl Sim {
    /// Prepares a run: identities, roster, boot schedule.
    ///
    /// # Errors
    /// A roster or config error (a scenario that passed validation does not
    /// produce one).
    pub fn new(sc: Scenario) -> Result<Self, Error> {
        let n = sc.nodes;
        let seeds: Vec<[u8; SEED_LEN]> = (0..n).map(|i| node_seed(sc.seed, i)).collect();
        let publics = seeds
            .iter()
            .map(|s| Identity::from_seed(s).map(|id| id.public().clone()))
            .collect::<Result<Vec<_>, _>>()?;
        let roster = Arc::new(Roster::equal_weight(&sc.name, publics)?);
        let ids: Vec<NodeId> = roster.members().map(|m| m.public.id()).collect();
        // Members come back sorted by id; give node i the i-th seed's id.
        let ids: Vec<NodeId> = seeds
            .iter()
            .map(|s| Identity::from_seed(s).map(|id| id.id()))
            .collect::<Result<Vec<_>, _>>()
            .unwrap_or(ids);
        let index = ids
            .iter()
            .enumerate()
            .map(|(i, id)| (*id, u32::try_from(i).unwrap_or(u32::MAX)))
            .collect();
        let cfg = sc.protocol.config();
        let mut rng = Rng::derive(sc.seed, 0x5EED);
        let mut slots: Vec<Slot> = (0..n).map(|_| Slot::default()).collect();
        for s in &mut slots {
            let skew = sc.clock.skew_ms;
            s.skew_ms = i64::try_from(rng.between(0, 2 * skew)).unwrap_or(0)
                - i64::try_from(skew).unwrap_or(0);
        }
        let mut order: Vec<usize> = (0..n).collect();
        rng.shuffle(&mut order);
        for &i in order
            .iter()
            .take((sc.overload.fraction * n as f64).round() as usize)
        {
            slots[i].overloaded = true;
        }
        rng.shuffle(&mut order);
        for &i in order
            .iter()
            .take((sc.churn.fraction * n as f64).round() as usize)
        {
            slots[i].churns = true;
        }
        let mut arng = Rng::derive(sc.seed, 0xA77A);
        for s in &mut slots {
            s.base_cpu = u16::try_from(arng.between(40, 300)).unwrap_or(100);
            s.base_mem = u16::try_from(arng.between(200, 700)).unwrap_or(400);
            s.node_peers = u16::try_from(arng.between(8, 60)).unwrap_or(20);
        }
        // Attackers: distinct random nodes; a framers' entry shares one
        // honest victim.
        let mut free: Vec<usize> = (0..n).collect();
        arng.shuffle(&mut free);
        for a in &sc.attackers {
            let mut victim = None;
            if matches!(a.kind, AttackKind::Framer | AttackKind::Sybil)
                && let Some(v) = free.pop()
            {
                slots[v].victim = true;
                victim = Some(v);
            }
            for _ in 0..a.count {
                let Some(i) = free.pop() else { break };
                slots[i].attack = Some(Box::new(Attack {
                    kind: a.kind,
                    start_us: (a.start_s * 1e6) as u64,
                    intensity: a.intensity,
                    ramp_us: (a.ramp_s * 1e6) as u64,
                    victim: victim.map(|v| ids[v]),
                    eclipse: a.eclipse,
                    weakest: a.weakest,
                    old_reports: std::collections::VecDeque::new(),
                    forged: 0,
                }));
            }
        }
        for _ in 0..sc.degraded.count {
            let Some(i) = free.pop() else { break };
            slots[i].degraded_from = Some((sc.degraded.start_s * 1e6) as u64);
        }
        let end = sc.duration_s * 1_000_000;
        let mut metrics = Metrics::new(n, sc.warmup_s * 1_000_000, sc.deadline_ms, sc.duration_s);
        for (i, s) in slots.iter().enumerate() {
            if let Some(a) = &s.attack {
                metrics
                    .attackers
                    .insert(i as u32, (a.kind.name(), a.start_us));
            }
            if s.degraded_from.is_some() {
                metrics.degraded.insert(i as u32);
            }
        }
        let mut sim = Self {
            cfg,
            roster,
            ids,
            index,
            seeds,
            cache: Rc::new(RefCell::new(VerifyCache::new(1 << 16))),
            slots,
            queue: BinaryHeap::new(),
            seq: 0,
            now: 0,
            end,
            rng,
            groups: None,
            metrics,
            trace: digest::Context::new(&digest::SHA256),
            totals: Totals::default(),
            cpu_us: vec![0.0; n],
            scratch: (Vec::new(), Vec::new()),
            detection: Detection::new(None, None, Score(u16::MAX)),
            score_queued: false,
            arng,
            sc,
        };
        for i in 0..n {
            let at = i as u64 * sim.sc.boot_stagger_ms * 1000;
            sim.push(at, EvKind::Boot(i as u32));
        }
        for (k, a) in sim.sc.events.clone().iter().enumerate() {
            sim.push((a.at_s * 1e6) as u64, EvKind::Action(k));
        }
        for s in 1..=sim.sc.duration_s {
            sim.push(s * 1_000_000, EvKind::Second);
        }
        Ok(sim)
    }

    /// Turns on scoring (with a model) and dataset writing before the run.
    pub fn set_detection(&mut self, scorer: Option<TractScorer>, dataset: Option<Dataset>) {
        let enabled = scorer.is_some() || dataset.is_some();
        self.cfg.suspicion = self.sc.detection.policy(enabled);
        if self.sc.detection.quorum
            && let Some(s) = scorer.as_ref()
            && hex::decode_to_slice(
                &sentinel_models::Scorer::manifest(s).sha256,
                &mut self.cfg.quarantine.model,
            )
            .is_ok()
        {
            self.cfg.quorum.enabled = true;
            self.cfg.quorum.vote_threshold = self.cfg.suspicion.raise;
        }
        self.detection = Detection::new(scorer, dataset, self.cfg.suspicion.raise);
    }

    /// The dataset being written, to finish after the run.
    pub fn take_dataset(&mut self) -> Option<Dataset> {
        self.detection.dataset.take()
    }

    fn push(&mut self, at: u64, kind: EvKind) {
        self.seq += 1;
        self.queue.push(Reverse(Ev {
            at,
            seq: self.seq,
            kind,
        }));
    }

    fn node_ms(&self, i: usize) -> u64 {
        let t = T0_MS as i64 + (self.now / 1000) as i64 + self.slots[i].skew_ms;
        u64::try_from(t).unwrap_or(0)
    }

    /// Runs to the end, calling `on_second` with each simulated second.
    pub fn run(&mut self, mut on_second: impl FnMut(u64)) {
        while let Some(Reverse(ev)) = self.queue.pop() {
            if ev.at > self.end {
                break;
            }
            self.now = ev.at;
            self.totals.events += 1;
            match ev.kind {
                EvKind::Boot(i) => self.boot(i as usize),
                EvKind::Deliver { to, from, bytes } => self.deliver(ev.at, ev.seq, to, from, bytes),
                EvKind::Timer { node, generation } => self.timer(node, generation),
                EvKind::Action(k) => self.action(k),
                EvKind::StallStart(i) => self.stall(i as usize),
                EvKind::ChurnCrash(i) => {
                    let i = i as usize;
                    if self.slots[i].node.is_some() {
                        self.crash(i);
                        let d = exponential(&mut self.rng, self.sc.churn.mean_down_s);
                        self.push(self.now + d, EvKind::ChurnRestart(i as u32));
                    }
                }
                EvKind::ChurnRestart(i) => {
                    if self.slots[i as usize].node.is_none() && !self.slots[i as usize].left {
                        self.boot(i as usize);
                    }
                }
                EvKind::Score => {
                    self.score_queued = false;
                    self.flush_scores();
                }
                EvKind::Second => {
                    self.second();
                    self.metrics.finalize(self.now, false);
                    self.metrics.note_live(self.now);
                    on_second(self.now / 1_000_000);
                }
            }
        }
        self.now = self.end;
        self.flush_scores();
        self.metrics.finalize(self.now, true);
        for i in 0..self.slots.len() {
            self.account_cpu(i);
        }
    }

    fn boot(&mut self, i: usize) {
        let slot = &mut self.slots[i];
        if slot.node.is_some() {
            return;
        }
        slot.boots += 1;
        let boots = slot.boots;
        let Some(crypto) = self.crypto_of(i) else {
            return;
        };
        let seed = Rng::derive(self.sc.seed, (i as u64) << 20 | boots).next_u64();
        let now_ms = self.node_ms(i);
        // The daemon's rule (`Store::begin_epoch`): above every epoch the
        // data directory recorded and above the clock in ms.
        let slot = &mut self.slots[i];
        let epoch = (slot.stored_epoch + 1).max(now_ms);
        slot.stored_epoch = epoch;
        if slot.first_epoch == 0 {
            slot.first_epoch = epoch;
        }
        let Ok(mut node) = Node::new(
            self.cfg.clone(),
            self.roster.clone(),
            crypto,
            epoch,
            seed,
            now_ms,
        ) else {
            return;
        };
        node.set_host_sample(self.host_sample(i));
        // Certificates come back from the database before the node joins.
        for (bytes, since, until) in self.slots[i].stored_certificates.values() {
            let _ = node.restore_certificate(bytes, (*since, *until), now_ms);
        }
        node.join(now_ms);
        self.slots[i].node = Some(node);
        self.slots[i].cpu_from_us = self.now;
        self.metrics.up(self.now, i as u32);
        if self.slots[i].churns {
            let d = exponential(&mut self.rng, self.sc.churn.mean_up_s);
            self.push(self.now + d, EvKind::ChurnCrash(i as u32));
        }
        if self.slots[i].overloaded && self.slots[i].boots == 1 {
            let d = exponential(&mut self.rng, 1.0 / self.sc.overload.stalls_per_s);
            self.push(self.now + d, EvKind::StallStart(i as u32));
        }
        self.after(i);
    }

    /// Node `i`'s signer for the frames its attack makes, taken out of its
    /// slot (made once; hand it back with `self.slots[i].signer = ...`).
    fn take_signer(&mut self, i: usize) -> Option<Box<SimCrypto>> {
        match self.slots[i].signer.take() {
            Some(s) => Some(s),
            None => self.crypto_of(i).map(Box::new),
        }
    }

    /// A signer for node `i` in the scenario's crypto mode.
    fn crypto_of(&self, i: usize) -> Option<SimCrypto> {
        Some(match self.sc.crypto {
            CryptoMode::Modelled => SimCrypto::Modelled(ModelledCrypto::new(self.ids[i])),
            CryptoMode::Real => SimCrypto::Real {
                inner: Box::new(RealCrypto::new(Identity::from_seed(&self.seeds[i]).ok()?)),
                cache: self.cache.clone(),
            },
        })
    }

    /// Node `i`'s transmit, or the conflicting version of it when `i`
    /// equivocates and this is one of its own reports going to every other
    /// recipient.
    fn maybe_equivocate(&mut self, i: usize, bytes: Arc<[u8]>) -> Arc<[u8]> {
        let Some(twin) = self.slots[i].twin.as_mut() else {
            return bytes;
        };
        let Ok(Message::Report(frame)) = Message::decode(&bytes) else {
            return bytes;
        };
        let Ok(header) = envelope::peek_header(frame) else {
            return bytes;
        };
        if header.sender != self.ids[i] {
            return bytes;
        }
        let key = (header.stamp.epoch, header.stamp.sequence);
        if !twin.versions.contains_key(&key) {
            let Some(other) = conflicting(&mut twin.crypto, &self.roster, frame) else {
                return bytes;
            };
            if twin.versions.len() >= TWIN_VERSIONS
                && let Some(oldest) = twin.versions.keys().next().copied()
            {
                twin.versions.remove(&oldest);
            }
            twin.versions.insert(key, (other, 0));
        }
        let Some((other, sent)) = twin.versions.get_mut(&key) else {
            return bytes;
        };
        *sent += 1;
        if *sent % 2 == 1 {
            return bytes;
        }
        let other = other.clone();
        self.metrics.equivocated(self.now, i as u32);
        other
    }

    fn account_cpu(&mut self, i: usize) {
        let Some(node) = self.slots[i].node.as_ref() else {
            return;
        };
        let st = node.stats();
        let slot = &mut self.slots[i];
        slot.signs_before += st.signs;
        slot.verifies_before += st.verifies;
        let _ = slot.cpu_from_us;
        self.cpu_us[i] = slot.signs_before as f64 * self.sc.cost.sign_us
            + slot.verifies_before as f64 * self.sc.cost.verify_us
            + slot.events_handled as f64 * self.sc.cost.event_us;
    }

    fn crash(&mut self, i: usize) {
        self.account_cpu(i);
        let slot = &mut self.slots[i];
        slot.node = None;
        slot.timer_generation += 1;
        slot.timer_at = None;
        self.metrics.down(self.now, i as u32, true);
    }

    fn stall(&mut self, i: usize) {
        let o = &self.sc.overload;
        let len = self.rng.between(o.stall_min_ms, o.stall_max_ms) * 1000;
        self.slots[i].stall_until = self.now + len;
        let next = exponential(&mut self.rng, 1.0 / o.stalls_per_s);
        self.push(self.now + len + next, EvKind::StallStart(i as u32));
    }

    fn action(&mut self, k: usize) {
        let a = self.sc.events[k].clone();
        let mut live: Vec<usize> = (0..self.slots.len())
            .filter(|i| self.slots[*i].node.is_some())
            .collect();
        match a.action {
            ActionKind::Crash | ActionKind::Leave => {
                self.rng.shuffle(&mut live);
                let count = (a.fraction * live.len() as f64).round() as usize;
                for &i in live.iter().take(count) {
                    if a.action == ActionKind::Leave {
                        if let Some(node) = self.slots[i].node.as_mut() {
                            node.leave();
                        }
                        self.after(i);
                        self.slots[i].left = true;
                        self.account_cpu(i);
                        self.slots[i].node = None;
                        self.slots[i].timer_generation += 1;
                        self.metrics.down(self.now, i as u32, false);
                    } else {
                        self.crash(i);
                    }
                }
            }
            ActionKind::Restart => {
                for i in 0..self.slots.len() {
                    if self.slots[i].node.is_none() && !self.slots[i].left {
                        self.boot(i);
                    }
                }
            }
            ActionKind::Partition => {
                let n = self.slots.len();
                self.groups = Some((0..n).map(|i| (i * a.groups / n) as u32).collect());
            }
            ActionKind::Heal => self.groups = None,
            ActionKind::Equivocate => {
                live.retain(|i| self.slots[*i].twin.is_none());
                self.rng.shuffle(&mut live);
                for &i in live.iter().take(a.count) {
                    if let Some(crypto) = self.crypto_of(i) {
                        self.slots[i].twin = Some(Box::new(Twin {
                            crypto,
                            versions: BTreeMap::new(),
                        }));
                    }
                }
            }
            ActionKind::Restore => {
                self.rng.shuffle(&mut live);
                let count = (a.fraction * live.len() as f64).round() as usize;
                for &i in live.iter().take(count) {
                    self.crash(i);
                    let slot = &mut self.slots[i];
                    slot.stored_epoch = slot.first_epoch;
                    slot.stored_certificates.clear();
                    self.boot(i);
                }
            }
        }
    }

    fn timer(&mut self, i: u32, generation: u64) {
        let iu = i as usize;
        if self.slots[iu].timer_generation != generation {
            return;
        }
        if self.now < self.slots[iu].stall_until {
            let at = self.slots[iu].stall_until;
            self.push(
                at,
                EvKind::Timer {
                    node: i,
                    generation,
                },
            );
            return;
        }
        self.slots[iu].timer_at = None;
        let now_ms = self.node_ms(iu);
        if let Some(node) = self.slots[iu].node.as_mut() {
            node.handle_timeout(now_ms);
            self.slots[iu].events_handled += 1;
            self.after(iu);
        }
    }

    fn deliver(&mut self, at: u64, seq: u64, to: u32, from: u32, bytes: Arc<[u8]>) {
        let t = to as usize;
        if self.slots[t].node.is_none() {
            self.totals.dropped += 1;
            return;
        }
        if self.now < self.slots[t].stall_until {
            let until = self.slots[t].stall_until;
            self.push(until, EvKind::Deliver { to, from, bytes });
            return;
        }
        let _ = (at, seq);
        self.record_trace(from, to, &bytes);
        self.metrics
            .received(self.now, to, self.wire_len(bytes.len()));
        if !message::is_quarantine_traffic(&bytes) {
            self.slots[t].bytes_in += self.wire_len(bytes.len());
        }
        self.totals.deliveries += 1;
        let now_ms = self.node_ms(t);
        let from_id = self.ids[from as usize];
        if let Some(node) = self.slots[t].node.as_mut() {
            node.handle_message(now_ms, from_id, bytes);
            self.slots[t].events_handled += 1;
        }
        self.after(t);
    }

    /// Trace record: time, source, destination and a hash of the bytes. For
    /// a report, the hash covers the signed content only: ML-DSA signing is
    /// randomised, so real-crypto runs differ in signature bytes alone.
    fn record_trace(&mut self, from: u32, to: u32, bytes: &[u8]) {
        let sigs = ED25519_SIGNATURE_LEN + ML_DSA_65_SIGNATURE_LEN;
        let content = if bytes.first() == Some(&TAG_REPORT) && bytes.len() > sigs {
            &bytes[..bytes.len() - sigs]
        } else {
            bytes
        };
        let h = xxhash_rust::xxh3::xxh3_64(content);
        let mut rec = [0u8; 24];
        rec[..8].copy_from_slice(&self.now.to_be_bytes());
        rec[8..12].copy_from_slice(&from.to_be_bytes());
        rec[12..16].copy_from_slice(&to.to_be_bytes());
        rec[16..].copy_from_slice(&h.to_be_bytes());
        self.trace.update(&rec);
    }

    fn wire_len(&self, len: usize) -> u64 {
        let packets = len.div_ceil(self.sc.network.packet_payload).max(1);
        (len + packets * self.sc.network.packet_overhead) as u64
    }

    fn base_latency_us(&self, a: u32, b: u32) -> u64 {
        let (lo, hi) = if a < b { (a, b) } else { (b, a) };
        let mut r = Rng::derive(self.sc.seed, (u64::from(lo) << 32) | u64::from(hi));
        let z = normal(&mut r);
        let ms = self.sc.network.latency_median_ms * (self.sc.network.latency_sigma * z).exp();
        (ms.clamp(0.1, 10_000.0) * 1000.0) as u64
    }

    /// Drains a node's transmits and events, and re-arms its timer.
    fn after(&mut self, i: usize) {
        let Some(node) = self.slots[i].node.as_mut() else {
            return;
        };
        let (mut transmits, mut events) = std::mem::take(&mut self.scratch);
        while let Some(t) = node.poll_transmit() {
            transmits.push(t);
        }
        while let Some(e) = node.poll_event() {
            events.push(e);
        }
        let next = node.poll_timeout();
        let from = i as u32;
        for mut t in transmits.drain(..) {
            let Some(&to) = self.index.get(&t.to) else {
                continue;
            };
            if self.slots[i].twin.is_some() {
                t.bytes = self.maybe_equivocate(i, t.bytes);
            }
            if self.slots[i].attack.is_some() {
                match self.tamper(i, to, t.bytes) {
                    Some(b) => t.bytes = b,
                    None => continue,
                }
            }
            let quarantine = message::is_quarantine_traffic(&t.bytes);
            if quarantine {
                self.metrics.quorum_bytes[i] += t.bytes.len() as u64;
            }
            let wire = self.wire_len(t.bytes.len());
            self.send(i, to, t.class, t.bytes, 0);
            if quarantine {
                // Not the host's own traffic (see `is_quarantine_traffic`).
                self.slots[i].bytes_out = self.slots[i].bytes_out.saturating_sub(wire);
            }
        }
        for e in events.drain(..) {
            self.on_event(i, e);
        }
        self.scratch = (transmits, events);
        let at = next.map(|ms| {
            let sim_ms = ms as i64 - T0_MS as i64 - self.slots[i].skew_ms;
            (u64::try_from(sim_ms).unwrap_or(0) * 1000).max(self.now)
        });
        if at != self.slots[i].timer_at
            && let Some(at) = at
        {
            self.slots[i].timer_generation += 1;
            self.slots[i].timer_at = Some(at);
            let generation = self.slots[i].timer_generation;
            self.push(
                at,
                EvKind::Timer {
                    node: from,
                    generation,
                },
            );
        }
    }

    /// Puts one message from node `i` on the network to node `to`, at
    /// `offset_us` from now at the earliest: uplink queue, latency,
    /// jitter, loss, partitions.
    fn send(&mut self, i: usize, to: u32, class: Class, bytes: Arc<[u8]>, offset_us: u64) {
        let from = i as u32;
        let len = bytes.len();
        let wire = self.wire_len(len);
        self.metrics.sent(self.now, from, wire);
        self.slots[i].bytes_out += wire;
        let tx_us = (wire as f64 * 8.0 / self.sc.network.uplink_mbps) as u64;
        let start = (self.now + offset_us).max(self.slots[i].uplink_free);
        self.slots[i].uplink_free = start + tx_us;
        let base = self.base_latency_us(from, to);
        let jitter = self.rng.between(0, self.sc.network.jitter_ms * 1000);
        let inbound = if self.slots[to as usize]
            .degraded_from
            .is_some_and(|t| self.now >= t)
        {
            self.sc.degraded.inbound_loss
        } else {
            0.0
        };
        let loss = 1.0 - (1.0 - self.sc.network.loss) * (1.0 - inbound);
        let mut delay = base + jitter;
        if loss > 0.0 {
            let packets = len.div_ceil(self.sc.network.packet_payload).max(1);
            match class {
                Class::Datagram => {
                    let p_msg = 1.0 - (1.0 - loss).powi(i32::try_from(packets).unwrap_or(i32::MAX));
                    if self.rng.chance(p_msg) {
                        self.totals.dropped += 1;
                        return;
                    }
                }
                Class::Stream => {
                    // QUIC resends the lost packets, not the message: each
                    // round resends what the last one lost, one probe
                    // timeout later (backing off as the same packets keep
                    // being lost), and the message is whole when its last
                    // packet arrives.
                    let pto = 4 * base + 25_000;
                    let mut lost = packets;
                    let mut round = 0;
                    while round < 20 {
                        lost = (0..lost).filter(|_| self.rng.chance(loss)).count();
                        if lost == 0 {
                            break;
                        }
                        delay += pto << round.min(4);
                        round += 1;
                    }
                }
            }
        }
        if let Some(g) = &self.groups
            && g[i] != g[to as usize]
        {
            self.totals.dropped += 1;
            return;
        }
        self.push(
            self.slots[i].uplink_free + delay,
            EvKind::Deliver { to, from, bytes },
        );
    }

    /// An attacker's outgoing message: dropped (`None`), rewritten, or
    /// kept (and remembered, for a replayer).
    fn tamper(&mut self, i: usize, to: u32, bytes: Arc<[u8]>) -> Option<Arc<[u8]>> {
        let now = self.now;
        let attack = self.slots[i].attack.as_ref()?;
        let strength = attack.strength(now);
        let kind = attack.kind;
        // A replayer keeps its own reports from boot on (as anyone can
        // record their own traffic), so its replays begin with its attack.
        if strength <= 0.0 && kind != AttackKind::Replayer {
            return Some(bytes);
        }
        let Ok(Message::Report(frame)) = Message::decode(&bytes) else {
            return Some(bytes);
        };
        let Ok(header) = envelope::peek_header(frame) else {
            return Some(bytes);
        };
        let own = header.sender == self.ids[i];
        match kind {
            AttackKind::Freerider if !own => None,
            AttackKind::Mimic if !own => {
                if self.arng.chance(0.3 * strength) {
                    *self.slots[i].dropped_relays.entry(to).or_default() += 1;
                    None
                } else {
                    Some(bytes)
                }
            }
            AttackKind::Replayer if own => {
                let a = self.slots[i].attack.as_mut()?;
                if a.old_reports.back().is_none_or(|(_, b)| *b != bytes) {
                    a.old_reports.push_back((now, bytes.clone()));
                    if a.old_reports.len() > 32 {
                        a.old_reports.pop_front();
                    }
                }
                Some(bytes)
            }
            AttackKind::Liar | AttackKind::Framer if own => {
                let key = (header.stamp.epoch, header.stamp.sequence);
                if let Some(b) = self.slots[i].rewrites.get(&key) {
                    return Some(b.clone());
                }
                let mut crypto = self.take_signer(i)?;
                let sealed = self.slots[i].attack.as_ref().and_then(|a| {
                    let verified = crypto.open(&self.roster, frame).ok()?;
                    let mut report = Report::decode_exact(verified.payload()).ok()?;
                    let h = *verified.header();
                    crate::adversary::rewrite(a, strength, &mut report).then_some(())?;
                    crypto
                        .seal(self.roster.mesh_id(), h.kind, h.stamp, &report.to_bytes())
                        .ok()
                });
                self.slots[i].signer = Some(crypto);
                let Some(sealed) = sealed else {
                    return Some(bytes);
                };
                if kind == AttackKind::Liar {
                    self.metrics.lied(i as u32, now);
                }
                let slot = &mut self.slots[i];
                let msg: Arc<[u8]> = Message::Report(&sealed).encode().into();
                if slot.rewrites.len() >= TWIN_VERSIONS
                    && let Some(k) = slot.rewrites.keys().next().copied()
                {
                    slot.rewrites.remove(&k);
                }
                slot.rewrites.insert(key, msg.clone());
                Some(msg)
            }
            _ => Some(bytes),
        }
    }

    /// Once per simulated second: host metrics, attackers' injected
    /// traffic, and the batch of score requests.
    fn second(&mut self) {
        self.pick_weakest_victims();
        for i in 0..self.slots.len() {
            if self.slots[i].node.is_none() {
                continue;
            }
            let sample = self.host_sample(i);
            if let Some(node) = self.slots[i].node.as_mut() {
                node.set_host_sample(sample);
            }
            if self.slots[i].attack.is_some() {
                self.inject(i);
            }
            if self.slots[i].victim {
                self.sample_victim(i);
            }
        }
        self.flush_scores();
        // Honest subject-seconds for the false-positive rate.
        if self.now >= self.sc.warmup_s * 1_000_000 {
            for s in &self.slots {
                if s.node.is_some() && s.attack.is_none() && s.twin.is_none() {
                    *self
                        .detection
                        .tally
                        .honest_seconds
                        .entry(honest_case(s))
                        .or_default() += 1;
                }
            }
        }
    }

    /// Node `i`'s host metrics for the coming second.
    fn host_sample(&mut self, i: usize) -> HostSample {
        let now = self.now;
        let slot = &mut self.slots[i];
        let (bytes_in, bytes_out) = (
            std::mem::take(&mut slot.bytes_in),
            std::mem::take(&mut slot.bytes_out),
        );
        let noise = |r: &mut Rng, v: u16, spread: u64| {
            let x = u64::from(v) + r.between(0, 2 * spread);
            u16::try_from(x.saturating_sub(spread).min(1000)).unwrap_or(1000)
        };
        let compromised = slot
            .attack
            .as_ref()
            .is_some_and(|a| a.kind == AttackKind::Compromised && a.active(now));
        let strength = slot.attack.as_ref().map_or(0.0, |a| a.strength(now));
        let mut h = HostSample {
            cpu_permille: noise(&mut self.arng, slot.base_cpu, 30),
            mem_permille: noise(&mut self.arng, slot.base_mem, 10),
            net_in_bytes: u32::try_from(bytes_in).unwrap_or(u32::MAX),
            net_out_bytes: u32::try_from(bytes_out).unwrap_or(u32::MAX),
            node_peers: slot.node_peers,
            node_errors: u16::from(self.arng.chance(0.05)),
        };
        if slot.overloaded {
            h.cpu_permille = noise(&mut self.arng, 930, 60);
        }
        if compromised {
            let k = strength.clamp(0.0, 4.0);
            h.cpu_permille = noise(&mut self.arng, 900 + (25.0 * k) as u16, 40);
            h.mem_permille = noise(&mut self.arng, 850 + (30.0 * k) as u16, 40);
            h.node_errors = u16::try_from(self.arng.between(3, 3 + (15.0 * k) as u64)).unwrap_or(1);
            h.net_out_bytes = h.net_out_bytes.saturating_mul(1 + (9.0 * k) as u32);
        }
        h
    }

    /// An attacker's own traffic for the coming second: pings (flood,
    /// mimic padding), forged and replayed reports.
    fn inject(&mut self, i: usize) {
        let now = self.now;
        let Some(node) = self.slots[i].node.as_ref() else {
            return;
        };
        let view = node.active_view();
        let Some(a) = self.slots[i].attack.as_ref() else {
            return;
        };
        let strength = a.strength(now);
        if strength <= 0.0 {
            return;
        }
        let kind = a.kind;
        let floods = matches!(
            kind,
            AttackKind::Flooder | AttackKind::Drip | AttackKind::Flash
        );
        let forges = matches!(
            kind,
            AttackKind::Forger | AttackKind::Drip | AttackKind::Flash
        );
        if kind == AttackKind::Framer
            && a.eclipse
            && let Some(victim) = a.victim
            && !view.contains(&victim)
            && let Some(to) = self.idx(&victim)
        {
            // A join makes the victim take the framer in, displacing one of
            // its neighbours.
            self.send(i, to, Class::Stream, Message::Join.encode().into(), 0);
        }
        if kind == AttackKind::Sybil
            && let Some(frames) = self.sybil_frames(i, (8.0 * strength).round().max(1.0) as usize)
        {
            for peer in &view {
                let Some(to) = self.idx(peer) else { continue };
                for f in &frames {
                    self.send(i, to, Class::Stream, f.clone(), 0);
                }
            }
        }
        let count = |per_s: f64| (per_s * strength).round() as u64;
        let dropped = std::mem::take(&mut self.slots[i].dropped_relays);
        for peer in view {
            let Some(to) = self.idx(&peer) else { continue };
            let mut pings = if floods { count(60.0) } else { 0 };
            if kind == AttackKind::Mimic {
                pings += u64::from(dropped.get(&to).copied().unwrap_or(0));
            }
            for k in 0..pings {
                let nonce = self.arng.next_u64();
                let bytes: Arc<[u8]> = Message::Ping { nonce }.encode().into();
                self.send(i, to, Class::Datagram, bytes, k * 1_000_000 / pings.max(1));
            }
            if forges {
                let n = count(4.0);
                for k in 0..n {
                    if let Some(bytes) = self.forgery(i) {
                        self.send(i, to, Class::Stream, bytes, k * 1_000_000 / n.max(1));
                    }
                }
            }
            if kind == AttackKind::Replayer {
                let n = count(4.0);
                let old: Vec<Arc<[u8]>> = self.slots[i]
                    .attack
                    .as_ref()
                    .map(|a| {
                        a.old_reports
                            .iter()
                            .filter(|(t, _)| *t + 20_000_000 <= now)
                            .map(|(_, b)| b.clone())
                            .collect()
                    })
                    .unwrap_or_default();
                for k in 0..n {
                    if old.is_empty() {
                        break;
                    }
                    let b = old[self.arng.between(0, old.len() as u64 - 1) as usize].clone();
                    self.send(i, to, Class::Stream, b, k * 1_000_000 / n.max(1));
                }
            }
        }
    }

    /// Framers with `weakest` whose attack starts now move, as one entry
    /// (the victim they share), to the honest node with the most of them
    /// among its neighbours.
    fn pick_weakest_victims(&mut self) {
        let now = self.now;
        let due: Vec<NodeId> = self
            .slots
            .iter()
            .filter_map(|s| s.attack.as_ref())
            .filter(|a| a.weakest && a.active(now))
            .filter_map(|a| a.victim)
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        for old in due {
            let entry: Vec<usize> = (0..self.slots.len())
                .filter(|&j| {
                    self.slots[j]
                        .attack
                        .as_ref()
                        .is_some_and(|a| a.weakest && a.victim == Some(old))
                })
                .collect();
            let framers: std::collections::BTreeSet<NodeId> =
                entry.iter().map(|&j| self.ids[j]).collect();
            let best = (0..self.slots.len())
                .filter(|&h| {
                    let s = &self.slots[h];
                    s.attack.is_none() && s.twin.is_none() && !s.victim && s.degraded_from.is_none()
                })
                .filter_map(|h| {
                    let view = self.slots[h].node.as_ref()?.active_view();
                    let n = view.iter().filter(|p| framers.contains(p)).count();
                    Some((n, std::cmp::Reverse(h)))
                })
                .max()
                .map(|(_, std::cmp::Reverse(h))| h);
            let Some(new) = best else { continue };
            if let Some(v) = self.idx(&old) {
                self.slots[v as usize].victim = false;
            }
            self.slots[new].victim = true;
            for j in entry {
                if let Some(a) = self.slots[j].attack.as_mut() {
                    a.victim = Some(self.ids[new]);
                    a.weakest = false;
                }
            }
        }
    }

    /// Notes when an honest node first raised suspicion of attacker
    /// `subject` (stage 0), first accused it (1), or anyone first made a
    /// voted certificate against it (2).
    fn first_stage(&mut self, subject: &NodeId, stage: usize) {
        let Some(x) = self.idx(subject) else { return };
        if self.metrics.attackers.contains_key(&x) {
            let at = &mut self.metrics.stages.entry(x).or_default()[stage];
            at.get_or_insert(self.now);
        }
    }

    /// Node `x`'s attack intensity (0 for an honest node).
    pub(crate) fn intensity(&self, x: u32) -> f64 {
        self.slots[x as usize]
            .attack
            .as_ref()
            .map_or(0.0, |a| a.intensity)
    }

    /// The attack kind of `subject` when `accusation` is the first an honest
    /// node made of it.
    fn first_accusation_kind(
        &self,
        subject: &NodeId,
        accusation: &[u8; 32],
    ) -> Option<&'static str> {
        let x = self.idx(subject)?;
        (self.metrics.first_accusation.get(&x) == Some(accusation))
            .then(|| self.metrics.attackers.get(&x).map(|a| a.0))
            .flatten()
    }

    /// Records a voted certificate that accuser `i` made against an honest
    /// `subject`: who voted yes, and how many of the subject's neighbours
    /// attack.
    fn false_certificate(&mut self, i: usize, subject: &NodeId, certificate: &[u8]) {
        use sentinel_protocol::evidence::{Certificate, Reason};
        let Some(x) = self.idx(subject) else { return };
        let s = &self.slots[x as usize];
        if s.attack.is_some() || s.twin.is_some() {
            return;
        }
        let case = honest_case(s);
        let attacks = |j: u32| self.slots[j as usize].attack.is_some();
        let Some(Reason::Votes(votes)) = Certificate::decode_exact(certificate)
            .ok()
            .map(|c| c.reason)
        else {
            return;
        };
        let voters: Vec<u32> = votes
            .votes()
            .filter_map(|f| envelope::peek_header(f).ok())
            .filter_map(|h| self.idx(&h.sender))
            .collect();
        let yes_attackers = voters.iter().filter(|&&j| attacks(j)).count();
        let view = s.node.as_ref().map(|n| n.active_view()).unwrap_or_default();
        let around = view
            .iter()
            .filter(|p| self.idx(p).is_some_and(attacks))
            .count();
        let kind_of = |j: u32| {
            let n = &self.slots[j as usize];
            n.attack
                .as_ref()
                .map_or_else(|| honest_case(n), |a| a.kind.name())
        };
        let mut neighbours = BTreeMap::new();
        for j in view.iter().filter_map(|p| self.idx(p)) {
            *neighbours.entry(kind_of(j)).or_insert(0) += 1;
        }
        // The honest voters' own views, read off their signed votes.
        let honest_own = self.crypto_of(0).and_then(|mut open| {
            votes
                .votes()
                .filter_map(|f| open_vote(&self.roster, f, &mut open).ok())
                .filter(|(voter, _)| self.idx(voter).is_some_and(|j| !attacks(j)))
                .map(|(_, v)| f64::from(v.own.as_f32()))
                .fold(None, |range: Option<(f64, f64)>, x| {
                    Some(range.map_or((x, x), |(lo, hi)| (lo.min(x), hi.max(x))))
                })
        });
        #[allow(clippy::cast_precision_loss, reason = "view sizes")]
        let record = crate::metrics::FalseCertificate {
            time_s: self.now as f64 / 1e6,
            subject: x,
            case,
            accuser: i as u32,
            accuser_kind: self.slots[i]
                .attack
                .as_ref()
                .map_or("honest", |a| a.kind.name()),
            accuser_case: if self.slots[i].attack.is_some() {
                "attacker"
            } else {
                honest_case(&self.slots[i])
            },
            yes_attackers,
            yes_honest: voters.len() - yes_attackers,
            attacker_neighbours: around as f64 / view.len().max(1) as f64,
            neighbours,
            honest_own,
        };
        self.metrics.false_certificates.push(record);
    }

    /// The share of victim `i`'s neighbours that attack it (framers or
    /// sybils of its entry), once its attackers have started.
    fn sample_victim(&mut self, i: usize) {
        let Some(node) = self.slots[i].node.as_ref() else {
            return;
        };
        let (me, now) = (self.ids[i], self.now);
        let against_me = |s: &Slot| {
            s.attack
                .as_ref()
                .is_some_and(|a| a.victim == Some(me) && a.active(now))
        };
        let view = node.active_view();
        if view.is_empty() || !self.slots.iter().any(against_me) {
            return;
        }
        let attackers = view
            .iter()
            .filter(|p| {
                self.idx(p)
                    .is_some_and(|j| against_me(&self.slots[j as usize]))
            })
            .count();
        #[allow(clippy::cast_precision_loss, reason = "view sizes")]
        self.metrics
            .victim_share
            .push(attackers as f64 / view.len() as f64);
    }

    /// A sybil's messages for this second: a voted certificate against its
    /// victim whose accusation it signs itself and whose `keys` yes votes
    /// are signed by fresh keys no roster names, and an accusation signed
    /// by one of those keys.
    fn sybil_frames(&mut self, i: usize, keys: usize) -> Option<Vec<Arc<[u8]>>> {
        use sentinel_protocol::evidence::{Certificate, Reason};
        use sentinel_protocol::features::Relays;
        use sentinel_protocol::quorum::{Accusation, Verdict, Vote, Votes, content_hash};
        let subject = self.slots[i].attack.as_ref()?.victim?;
        let now_ms = self.node_ms(i);
        let accusation = Accusation {
            subject,
            window_ms: now_ms,
            score: Score(Score::SCALE),
            model: self.cfg.quarantine.model,
            relays: Relays::default(),
            evidence: Vec::new(),
        }
        .to_bytes();
        let a = self.slots[i].attack.as_mut()?;
        a.forged += 1;
        let stamp = Stamp {
            epoch: 1,
            sequence: 2_000_000 + a.forged,
            issued_at_ms: now_ms,
        };
        let mut crypto = self.take_signer(i)?;
        let frame = crypto.seal(self.roster.mesh_id(), Kind::Accusation, stamp, &accusation);
        self.slots[i].signer = Some(crypto);
        let frame = frame.ok()?;
        let hash = content_hash(envelope::signed_content_of(&frame).ok()?);
        let vote = Vote {
            accusation: hash,
            subject,
            verdict: Verdict::Yes,
            replayed: Score(Score::SCALE),
            own: Score(Score::SCALE),
        }
        .to_bytes();
        let mut votes: Vec<(NodeId, Vec<u8>)> = Vec::new();
        let mut sybil_accusation = None;
        for _ in 0..keys {
            let mut seed = [0u8; SEED_LEN];
            for chunk in seed.chunks_mut(8) {
                chunk.copy_from_slice(&self.arng.next_u64().to_be_bytes());
            }
            let mut sybil = match self.sc.crypto {
                CryptoMode::Modelled => SimCrypto::Modelled(ModelledCrypto::new(NodeId(
                    seed[..NodeId::LEN].try_into().ok()?,
                ))),
                CryptoMode::Real => SimCrypto::Real {
                    inner: Box::new(RealCrypto::new(Identity::from_seed(&seed).ok()?)),
                    cache: self.cache.clone(),
                },
            };
            let stamp = Stamp {
                epoch: 1,
                sequence: 1,
                issued_at_ms: now_ms,
            };
            let v = sybil
                .seal(self.roster.mesh_id(), Kind::Vote, stamp, &vote)
                .ok()?;
            if votes.is_empty() {
                let stamp = Stamp {
                    sequence: 2,
                    ..stamp
                };
                sybil_accusation = sybil
                    .seal(self.roster.mesh_id(), Kind::Accusation, stamp, &accusation)
                    .ok();
            }
            votes.push((sybil.id(), v));
        }
        votes.sort_by_key(|v| v.0);
        let certificate = Certificate {
            subject,
            epoch: 1,
            ttl_ms: self.cfg.quarantine.voted_ttl_ms,
            reason: Reason::Votes(
                Votes::new(frame, votes.into_iter().map(|v| v.1).collect()).ok()?,
            ),
        }
        .to_bytes();
        let mut out: Vec<Arc<[u8]>> = vec![Message::Certificate(&certificate).encode().into()];
        if let Some(f) = sybil_accusation {
            out.push(Message::Accuse(&f).encode().into());
        }
        Some(out)
    }

    /// A report under a fresh sequence whose signature does not verify.
    fn forgery(&mut self, i: usize) -> Option<Arc<[u8]>> {
        let node = self.slots[i].node.as_ref()?;
        let (stamp, report) = node.report_contents(&self.ids[i])?;
        let a = self.slots[i].attack.as_mut()?;
        a.forged += 1;
        let fake = envelope::Stamp {
            epoch: stamp.epoch,
            sequence: stamp.sequence + 1_000_000 + a.forged,
            issued_at_ms: self.node_ms(i),
        };
        let mut crypto = self.take_signer(i)?;
        let sealed = crypto.seal(
            self.roster.mesh_id(),
            Kind::Telemetry,
            fake,
            &report.to_bytes(),
        );
        self.slots[i].signer = Some(crypto);
        let mut frame = sealed.ok()?;
        let last = frame.len().checked_sub(1)?;
        frame[last] ^= 0x5a;
        Some(Message::Report(&frame).encode().into())
    }

    /// Scores the requests made in the next [`HOST_SCORING_US`] in one
    /// batch. A sentinel scores what its node asks at once (a few rows of
    /// an MLP take microseconds); batched once per simulated second
    /// instead, every scoring step of a quarantine (the accuser's window,
    /// its own view, each member's replay) waited half a second on
    /// average.
    fn queue_scoring(&mut self) {
        if !self.score_queued {
            self.score_queued = true;
            self.push(self.now + HOST_SCORING_US, EvKind::Score);
        }
    }

    /// Scores what the nodes asked for, hands the scores back, and records
    /// each row with its labels; then the rows of votes.
    fn flush_scores(&mut self) {
        self.flush_rows();
        self.flush_replays();
    }

    /// Scores the two rows of each pending vote and hands them back. A
    /// framer's host scores its own row 1: it votes yes on every
    /// accusation whose replay agrees (its fellow framers' included).
    fn flush_replays(&mut self) {
        for (p, mut scores) in self.detection.score_replays() {
            let i = p.node as usize;
            let framer = self.slots[i]
                .attack
                .as_ref()
                .is_some_and(|a| a.kind == AttackKind::Framer);
            if framer {
                // Every reporter's row scored 1: the own view is 1.
                for s in scores.iter_mut().skip(1) {
                    *s = Score(Score::SCALE);
                }
                if scores.len() == 1 {
                    scores.push(Score(Score::SCALE));
                }
            }
            let now = self.node_ms(i);
            if let Some(node) = self.slots[i].node.as_mut() {
                node.handle_replay(p.accusation, &scores, now);
                self.after(i);
            }
        }
    }

    fn flush_rows(&mut self) {
        if self.detection.pending.is_empty() {
            return;
        }
        let window_us = self.window_us();
        let warm = self.sc.warmup_s * 1_000_000;
        for (p, scores) in self.detection.score_pending() {
            let i = p.node as usize;
            let live = self.slots[i].node.is_some();
            let mut back = Vec::new();
            for ((subject, row), score) in p.rows.iter().zip(&scores) {
                let Some(x) = self.idx(subject) else { continue };
                let truth = self.truth(x as usize, p.time_us, window_us);
                let suspected = self.slots[i]
                    .node
                    .as_ref()
                    .and_then(|n| n.suspicions().get(subject))
                    .map(|s| s.raised);
                let observer = self.ids[i];
                let bucket = p.time_us / window_us.max(1);
                self.detection.record(
                    p.time_us,
                    p.window,
                    observer,
                    *subject,
                    x,
                    bucket,
                    row,
                    &truth,
                    *score,
                    suspected,
                    p.time_us >= warm && self.slots[i].attack.is_none(),
                );
                if let Some(s) = score {
                    back.push((*subject, *s));
                }
            }
            if live && !back.is_empty() {
                if let Some(node) = self.slots[i].node.as_mut() {
                    node.handle_scores(p.window, &back);
                }
                self.detection.last_rows = p.rows;
                self.after(i);
            }
        }
    }

    /// One report interval, µs: the window a row describes.
    fn window_us(&self) -> u64 {
        self.cfg.report_interval_ms() * 1000
    }

    /// Ground truth about node `x` for the window ending at `end_us`.
    fn truth(&self, x: usize, end_us: u64, len_us: u64) -> Truth {
        let s = &self.slots[x];
        match s.attack.as_ref() {
            Some(a) => Truth {
                attack: a.kind.name(),
                fraction: a.fraction(end_us, len_us),
                honest_case: honest_case(s),
            },
            None => Truth {
                attack: if s.twin.is_some() {
                    "equivocator"
                } else {
                    "none"
                },
                fraction: 0.0,
                honest_case: honest_case(s),
            },
        }
    }

    fn dataset_event(&mut self, i: usize, kind: &str, subject: Option<NodeId>, detail: String) {
        if let Some(d) = self.detection.dataset.as_mut() {
            let e = EventRecord {
                time_ms: self.now / 1000,
                node: self.ids[i],
                kind: kind.to_string(),
                subject,
                detail,
            };
            if let Err(e) = d.event(e) {
                self.detection.error.get_or_insert(e.to_string());
            }
        }
    }

    fn idx(&self, id: &NodeId) -> Option<u32> {
        self.index.get(id).copied()
    }

    fn on_event(&mut self, i: usize, e: Event) {
        let me = i as u32;
        // An equivocator is cut off on purpose: its verdicts about the
        // nodes that refuse it, and theirs about it, are not failure
        // detection.
        let cut_off = |sim: &Self, p: &NodeId| {
            sim.slots[i].twin.is_some()
                || sim
                    .idx(p)
                    .is_some_and(|p| sim.slots[p as usize].twin.is_some())
        };
        match &e {
            Event::NeighbourDown { peer: p, .. } | Event::Suspected(p) if cut_off(self, p) => {
                return;
            }
            // A certificate its accuser made from votes.
            Event::Quarantined {
                fault: Fault::Voted,
                from: None,
                certificate,
                subject,
                ..
            } => {
                self.metrics.voted_certificate_bytes.push(certificate.len());
                self.first_stage(subject, 2);
                self.false_certificate(i, subject, certificate);
            }
            Event::Accused {
                subject,
                accusation,
                ..
            } if self.slots[i].attack.is_none() => {
                self.first_stage(subject, 1);
                if let Some(x) = self.idx(subject)
                    && self.metrics.attackers.contains_key(&x)
                {
                    self.metrics
                        .first_accusation
                        .entry(x)
                        .or_insert(*accusation);
                }
            }
            Event::SuspicionRaised { subject, .. } if self.slots[i].attack.is_none() => {
                self.first_stage(subject, 0);
            }
            _ => {}
        }
        match e {
            Event::NeighbourUp(p) => {
                if let Some(p) = self.idx(&p) {
                    self.metrics.neighbour_up(me, p);
                }
            }
            Event::NeighbourDown { peer, reason } => {
                if let Some(p) = self.idx(&peer) {
                    self.metrics
                        .neighbour_down(self.now, me, p, reason == DownReason::Failed);
                }
            }
            Event::Suspected(p) => {
                self.dataset_event(i, "suspected", Some(p), String::new());
                if let Some(p) = self.idx(&p) {
                    let overloaded = self.slots[p as usize].overloaded;
                    self.metrics.suspected(self.now, p, overloaded);
                }
            }
            Event::Quarantined {
                subject,
                certificate,
                ..
            }
            | Event::CertificateReplaced {
                subject,
                certificate,
                ..
            } => {
                if let Some(x) = self.idx(&subject) {
                    self.metrics.certificate_held(self.now, me, x);
                    let s = &self.slots[x as usize];
                    if s.attack.is_none() && s.twin.is_none() {
                        self.metrics.quarantined_case.insert(x, honest_case(s));
                    }
                }
                let period = self.slots[i]
                    .node
                    .as_ref()
                    .and_then(|n| n.quarantine().get(&subject))
                    .map(|e| (e.since_ms, e.until_ms));
                if let Some((since, until)) = period {
                    self.slots[i]
                        .stored_certificates
                        .insert(subject, (certificate, since, until));
                }
            }
            Event::QuarantineLifted(subject) => {
                self.slots[i].stored_certificates.remove(&subject);
            }
            Event::Refuted(_) | Event::QuarantineEnforced(_) => {}
            Event::ReportReceived { origin, stamp, .. } => {
                if let Some(o) = self.idx(&origin) {
                    self.metrics
                        .report_received(self.now, me, o, stamp.epoch, stamp.sequence);
                }
            }
            Event::ReportSent {
                stamp, subjects, ..
            } => {
                // An equivocator's reports are not owed to anyone.
                if self.slots[i].twin.is_none() {
                    let subjects: Vec<u32> = subjects.iter().filter_map(|s| self.idx(s)).collect();
                    self.metrics
                        .report_sent(self.now, me, stamp.epoch, stamp.sequence, &subjects);
                }
                if let Some(d) = self.detection.dataset.as_mut()
                    && let Some((st, report)) = self.slots[i]
                        .node
                        .as_ref()
                        .and_then(|n| n.report_contents(&self.ids[i]))
                    && let Err(e) = d.report(self.ids[i], st.epoch, st.sequence, &report)
                {
                    self.detection.error.get_or_insert(e.to_string());
                }
            }
            Event::ReplayRequest {
                accusation, rows, ..
            } => {
                self.detection.replays.push(PendingReplay {
                    node: me,
                    accusation,
                    rows,
                });
                self.queue_scoring();
            }
            Event::Accused { .. } => {
                self.metrics.accusations.0 += 1;
                if self.slots[i].degraded_from.is_some() {
                    self.metrics.degraded_accusations.0 += 1;
                }
            }
            Event::VoteCast {
                verdict,
                subject,
                accusation,
                ..
            } => {
                *self.metrics.votes.entry(verdict.name()).or_default() += 1;
                if self.slots[i].attack.is_none()
                    && let Some(kind) = self.first_accusation_kind(&subject, &accusation)
                {
                    let e = self.metrics.first_votes.entry(kind).or_default();
                    *e.0.entry(verdict.name()).or_default() += 1;
                }
            }
            Event::AccusationClosed {
                certified,
                subject,
                accusation,
                seats,
            } => {
                if let Some(kind) = self.first_accusation_kind(&subject, &accusation) {
                    let e = &mut self.metrics.first_votes.entry(kind).or_default().1;
                    e[0] += seats.0;
                    e[1] += seats.1;
                    e[2] += seats.2;
                }
                self.metrics.accusations.1 += u64::from(certified);
                if self.slots[i].degraded_from.is_some() {
                    self.metrics.degraded_accusations.1 += u64::from(certified);
                }
            }
            Event::ScoreRequest { window, rows } => {
                self.detection.pending.push(Pending {
                    node: me,
                    window,
                    time_us: self.now,
                    rows,
                });
                self.queue_scoring();
            }
            Event::SuspicionRaised { subject, score, .. } => {
                if let Some(x) = self.idx(&subject) {
                    let truth = self.truth(x as usize, self.now, self.window_us());
                    let t = &mut self.detection.tally;
                    if self.slots[i].attack.is_some() {
                        // An attacker's own node suspects whom it likes (a
                        // flooder sees its victim fail the probes it
                        // floods): counted apart, never as a false positive.
                        t.raises_by_attackers += 1;
                    } else if truth.fraction > 0.0 {
                        *t.true_raises.entry(truth.attack).or_default() += 1;
                    } else if truth.attack == "none" && self.now >= self.sc.warmup_s * 1_000_000 {
                        *t.false_raises.entry(truth.honest_case).or_default() += 1;
                        self.false_raise(me, x, truth.honest_case, score);
                    }
                }
                self.dataset_event(i, "suspicion_raised", Some(subject), score.to_string());
            }
            Event::SuspicionCleared(subject) => {
                self.dataset_event(i, "suspicion_cleared", Some(subject), String::new());
            }
        }
    }

    /// Keeps the first false raises with the row behind them and the attack
    /// kinds next to the subject.
    fn false_raise(&mut self, observer: u32, subject: u32, case: &'static str, score: Score) {
        if self.detection.tally.false_raise_examples.len() >= FALSE_RAISE_EXAMPLES {
            return;
        }
        let id = self.ids[subject as usize];
        let row = self
            .detection
            .last_rows
            .iter()
            .find(|(s, _)| *s == id)
            .map(|(_, r)| features::NAMES.iter().copied().zip(r.0).collect())
            .unwrap_or_default();
        let attacker_neighbours = self.slots[subject as usize]
            .node
            .as_ref()
            .map(|n| n.active_view())
            .unwrap_or_default()
            .iter()
            .filter_map(|n| self.idx(n))
            .filter_map(|n| self.slots[n as usize].attack.as_ref())
            .map(|a| a.kind.name())
            .collect();
        #[allow(clippy::cast_precision_loss, reason = "simulated µs, well inside f64")]
        let time_s = self.now as f64 / 1e6;
        self.detection.tally.false_raise_examples.push(FalseRaise {
            time_s,
            observer,
            subject,
            case,
            score: score.as_f32(),
            attacker_neighbours,
            row,
        });
    }

    /// SHA-256 over every delivery so far (see [`Sim::record_trace`]).
    #[must_use]
    pub fn trace_hash(&self) -> String {
        hex_string(self.trace.clone().finish().as_ref())
    }

    /// Engine totals so far.
    #[must_use]
    pub fn totals(&self) -> Totals {
        self.totals
    }

    /// Cache hits and misses of real-mode verification.
    #[must_use]
    pub fn cache_stats(&self) -> (u64, u64) {
        self.cache.borrow().stats()
    }

    /// How many different certificates about node `x` the live nodes hold.
    #[must_use]
    pub fn distinct_certificates(&self, x: u32) -> usize {
        let subject = self.ids[x as usize];
        self.slots
            .iter()
            .filter_map(|s| s.node.as_ref()?.quarantine().get(&subject))
            .map(|e| e.certificate.to_bytes())
            .collect::<std::collections::BTreeSet<Vec<u8>>>()
            .len()
    }

    /// Nodes up at the end with an empty active view (equivocators, cut off
    /// on purpose, not counted).
    #[must_use]
    pub fn isolated(&self) -> usize {
        self.slots
            .iter()
            .filter(|s| s.twin.is_none())
            .filter(|s| s.node.as_ref().is_some_and(|n| n.active_view().is_empty()))
            .count()
    }

    /// Sum over live nodes of their protocol counters.
    #[must_use]
    pub fn node_stats(&self) -> sentinel_protocol::node::NodeStats {
        let mut t = sentinel_protocol::node::NodeStats::default();
        for n in self.slots.iter().filter_map(|s| s.node.as_ref()) {
            let s = n.stats();
            t.signs += s.signs;
            t.verifies += s.verifies;
            t.reports_received += s.reports_received;
            t.reports_relayed += s.reports_relayed;
            t.duplicates += s.duplicates;
            t.invalid += s.invalid;
            t.malformed += s.malformed;
            t.rate_limited += s.rate_limited;
        }
        t
    }
}

fn hex_string(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// A second signed version of `frame` (one of the signer's own reports):
/// the same (epoch, sequence), a report that differs in its start time.
fn conflicting(crypto: &mut SimCrypto, roster: &Roster, frame: &[u8]) -> Option<Arc<[u8]>> {
    let verified = crypto.open(roster, frame).ok()?;
    let mut report = Report::decode_exact(verified.payload()).ok()?;
    report.start_ms = report.start_ms.wrapping_add(1);
    let header = verified.header();
    let other = crypto
        .seal(
            roster.mesh_id(),
            header.kind,
            header.stamp,
            &report.to_bytes(),
        )
        .ok()?;
    Some(Message::Report(&other).encode().into())
}

fn honest_case(s: &Slot) -> &'static str {
    if s.victim {
        "victim"
    } else if s.degraded_from.is_some() {
        "degraded"
    } else if s.overloaded {
        "overloaded"
    } else if s.churns {
        "churn"
    } else {
        "none"
    }
}
