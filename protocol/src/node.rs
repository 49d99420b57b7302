//! The mesh node: membership, telemetry and dissemination behind one
//! sans-IO surface.
//!
//! The host (the daemon's driver task, the simulator's event loop, the test
//! harness) owns the sockets and the clock and calls:
//! - [`Node::handle_message`] for every message received on an authenticated
//!   link, [`Node::handle_timeout`] when [`Node::poll_timeout`] is reached;
//! - [`Node::poll_transmit`] and [`Node::poll_event`] until they return
//!   `None`, after each of those calls;
//! - [`Node::set_host_sample`] whenever it has fresh host metrics.
//!
//! Time is the host's clock in Unix milliseconds; randomness is a seed. Given
//! the same inputs in the same order a node produces the same outputs, which
//! is what makes simulator runs reproducible.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;

use crate::codec::{Codec, SharedBytes};
use crate::crypto::Crypto;
use crate::envelope::{self, Kind, Stamp};
use crate::error::Error;
use crate::evidence::{
    Admitted, Certificate, CertificateError, Evidence, Fault, Proven, Quarantine, QuarantinePolicy,
};
use crate::features::{Row, Score};
use crate::gossip::Gossip;
use crate::identity::NodeId;
use crate::membership::Membership;
use crate::message::{Class, Message};
use crate::replay::TimeWindow;
use crate::rng::Rng;
use crate::roster::Roster;
use crate::suspicion::{Change, SuspicionPolicy, Suspicions};
use crate::telemetry::{HostSample, LinkSample, MAX_NEIGHBOURS, MAX_SAMPLES, Observation, Report};
pub use voting::QuorumConfig;
use voting::Voting;

/// Every tunable of a node. Times are milliseconds.
///
/// The defaults are the ones the simulator's budget and measurements in
/// `ARCHITECTURE.md` were made with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Largest active view (neighbours). Default 5; 1 to 16.
    pub max_active: usize,
    /// Largest passive view. Default 30; at least `max_active`.
    pub max_passive: usize,
    /// Hops of a join's random walk (HyParView ARWL). Default 6.
    pub active_walk_len: u8,
    /// Hop at which a join walk leaves the joiner in passive views (PRWL).
    /// Default 3; at most `active_walk_len`.
    pub passive_walk_len: u8,
    /// Period of passive-view shuffles. Default 10,000.
    pub shuffle_interval_ms: u64,
    /// Active-view ids sent in a shuffle. Default 3.
    pub shuffle_active: usize,
    /// Passive-view ids sent in a shuffle. Default 4.
    pub shuffle_passive: usize,
    /// Period of probe rounds (every neighbour is pinged each round).
    /// Default 1,000.
    pub probe_interval_ms: u64,
    /// Wait for a direct ack before asking helpers. Default 300.
    pub ack_timeout_ms: u64,
    /// Wait for an indirect ack before suspecting. Default 500.
    pub indirect_timeout_ms: u64,
    /// Helpers asked for an indirect probe. Default 2.
    pub indirect_probes: usize,
    /// Silence from a suspect before it is declared failed. Default 2,500.
    pub suspicion_timeout_ms: u64,
    /// A timer this late counts against the node's own health. Default 200.
    pub late_threshold_ms: u64,
    /// Cap on the local health multiplier (timeouts scale by `1 + health`).
    /// Default 8.
    pub max_health: u32,
    /// Wait for a `Neighbor` reply. Default 1,000.
    pub neighbor_timeout_ms: u64,
    /// Wait for a join to be answered before trying another contact.
    /// Default 2,000.
    pub join_timeout_ms: u64,
    /// Length of one telemetry sample. Default 1,000.
    pub sample_interval_ms: u64,
    /// Samples per signed report. Default 5 (one signature per 5 s).
    pub samples_per_report: usize,
    /// Period of pull (anti-entropy) rounds, one neighbour per round.
    /// Default 2,000.
    pub pull_interval_ms: u64,
    /// A report younger than this is not re-sent on pull (it is probably
    /// still in flight by push). Default 500.
    pub pull_grace_ms: u64,
    /// Reports older than this are forgotten. Default 60,000.
    pub retention_ms: u64,
    /// Most origins whose latest report is kept. Default 1,024.
    pub max_stored_origins: usize,
    /// Burst of report messages accepted from one peer; refilled at
    /// `report_burst` per report interval. Default 24.
    pub report_burst: u32,
    /// Other messages accepted from one peer per second. Default 40.
    pub control_rate_per_s: u32,
    /// Burst of other messages from one peer. Default 80.
    pub control_burst: u32,
    /// Other neighbours named by a report told which version came
    /// first-hand ([`crate::message::Message::Seen`]). Default 2; at most 16.
    pub seen_fanout: usize,
    /// Accepted issued-at range of received reports.
    pub time_window: TimeWindow,
    /// Quarantine rules (certificate TTL, cap on the quarantined share).
    pub quarantine: QuarantinePolicy,
    /// Scoring neighbours and local suspicion (off by default).
    pub suspicion: SuspicionPolicy,
    /// Accusing and voting (off by default; see [`crate::quorum`]).
    pub quorum: QuorumConfig,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            max_active: 5,
            max_passive: 30,
            active_walk_len: 6,
            passive_walk_len: 3,
            shuffle_interval_ms: 10_000,
            shuffle_active: 3,
            shuffle_passive: 4,
            probe_interval_ms: 1_000,
            ack_timeout_ms: 300,
            indirect_timeout_ms: 500,
            indirect_probes: 2,
            suspicion_timeout_ms: 2_500,
            late_threshold_ms: 200,
            max_health: 8,
            neighbor_timeout_ms: 1_000,
            join_timeout_ms: 2_000,
            sample_interval_ms: 1_000,
            samples_per_report: 5,
            pull_interval_ms: 2_000,
            pull_grace_ms: 500,
            retention_ms: 60_000,
            max_stored_origins: 1_024,
            report_burst: 24,
            control_rate_per_s: 40,
            control_burst: 80,
            seen_fanout: 2,
            time_window: TimeWindow::default(),
            quarantine: QuarantinePolicy::default(),
            suspicion: SuspicionPolicy::default(),
            quorum: QuorumConfig::default(),
        }
    }
}

impl Config {
    /// The signed-report period.
    #[must_use]
    pub fn report_interval_ms(&self) -> u64 {
        self.sample_interval_ms
            .saturating_mul(u64::try_from(self.samples_per_report).unwrap_or(u64::MAX))
    }

    /// Checks every field; the error names the field and the allowed range.
    ///
    /// # Errors
    /// [`Error::InvalidInput`].
    pub fn validate(&self) -> Result<(), Error> {
        fn bad(field: &str, rule: &str) -> Result<(), Error> {
            Err(Error::InvalidInput(format!("config field {field}: {rule}")))
        }
        if !(1..=16).contains(&self.max_active) {
            return bad("max_active", "must be 1 to 16");
        }
        if self.max_passive < self.max_active || self.max_passive > 1024 {
            return bad(
                "max_passive",
                "must be at least max_active and at most 1024",
            );
        }
        if self.passive_walk_len > self.active_walk_len || self.active_walk_len == 0 {
            return bad(
                "passive_walk_len",
                "must be at most active_walk_len (which is > 0)",
            );
        }
        if self.seen_fanout > 16 {
            return bad("seen_fanout", "must be at most 16");
        }
        if self.shuffle_active + self.shuffle_passive + 1 > crate::message::MAX_SHUFFLE {
            return bad("shuffle_active + shuffle_passive", "must be below 32");
        }
        for (name, v) in [
            ("shuffle_interval_ms", self.shuffle_interval_ms),
            ("probe_interval_ms", self.probe_interval_ms),
            ("ack_timeout_ms", self.ack_timeout_ms),
            ("indirect_timeout_ms", self.indirect_timeout_ms),
            ("suspicion_timeout_ms", self.suspicion_timeout_ms),
            ("neighbor_timeout_ms", self.neighbor_timeout_ms),
            ("join_timeout_ms", self.join_timeout_ms),
            ("sample_interval_ms", self.sample_interval_ms),
            ("pull_interval_ms", self.pull_interval_ms),
            ("retention_ms", self.retention_ms),
        ] {
            if !(1..=3_600_000).contains(&v) {
                return bad(name, "must be 1 ms to 1 hour");
            }
        }
        if self.ack_timeout_ms >= self.probe_interval_ms {
            return bad("ack_timeout_ms", "must be shorter than probe_interval_ms");
        }
        if !(1..=MAX_SAMPLES).contains(&self.samples_per_report) {
            return bad("samples_per_report", "must be 1 to 60");
        }
        if u32::try_from(self.sample_interval_ms).is_err() {
            return bad("sample_interval_ms", "must fit in 32 bits");
        }
        if self.max_stored_origins == 0 || self.report_burst == 0 || self.control_burst == 0 {
            return bad(
                "max_stored_origins/report_burst/control_burst",
                "must be positive",
            );
        }
        if self.control_rate_per_s == 0 {
            return bad("control_rate_per_s", "must be positive");
        }
        if self.quarantine.committee_epoch_ms == 0
            || self.quorum.vote_timeout_ms == 0
            || self.quorum.max_open_ballots == 0
        {
            return bad(
                "quarantine.committee_epoch_ms/quorum.vote_timeout_ms/quorum.max_open_ballots",
                "must be positive",
            );
        }
        self.suspicion.validate()
    }
}

/// Why a neighbour left the active view.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DownReason {
    /// Declared failed after suspicion.
    Failed,
    /// It disconnected from us (it stays a passive candidate).
    Disconnected,
    /// Evicted to make room for another neighbour.
    Replaced,
    /// It, or we, left the mesh.
    Left,
    /// It is quarantined by a certificate this node enforces.
    Quarantined,
}

/// Something the host may want to act on or record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A peer entered the active view.
    NeighbourUp(NodeId),
    /// A peer left the active view.
    NeighbourDown {
        /// The peer.
        peer: NodeId,
        /// Why.
        reason: DownReason,
    },
    /// A neighbour did not answer direct or indirect probes.
    Suspected(NodeId),
    /// A suspected neighbour was heard from again.
    Refuted(NodeId),
    /// A new report was verified and stored ([`Node::report`] returns it).
    ReportReceived {
        /// Its signer.
        origin: NodeId,
        /// Its stamp.
        stamp: Stamp,
        /// The link it arrived on.
        from: NodeId,
    },
    /// A quarantine certificate was verified and is now held (first seen
    /// here, or detected here from evidence when `from` is `None`).
    Quarantined {
        /// Who is quarantined.
        subject: NodeId,
        /// The proven fault.
        fault: Fault,
        /// The encoded certificate, for storing and showing; it shares
        /// the received message's bytes.
        certificate: SharedBytes,
        /// Enforced; false when held over the cap (alert, do not act).
        enforced: bool,
        /// The link it came on; `None` when this node found the evidence.
        from: Option<NodeId>,
    },
    /// A held quarantine's certificate was replaced by one that precedes it
    /// (see [`crate::evidence::Certificate::precedes`]); the quarantine's
    /// period and enforcement are unchanged.
    CertificateReplaced {
        /// Who is quarantined.
        subject: NodeId,
        /// The new encoded certificate.
        certificate: SharedBytes,
        /// The link it came on; `None` when this node found the evidence.
        from: Option<NodeId>,
    },
    /// A held certificate came under the cap and is now enforced.
    QuarantineEnforced(NodeId),
    /// A quarantine's time ran out.
    QuarantineLifted(NodeId),
    /// Feature rows for the host to score: one per neighbour, made after
    /// this node signed a report. Answer with [`Node::handle_scores`] and
    /// the same `window`. Only when [`SuspicionPolicy::enabled`].
    ScoreRequest {
        /// This node's clock when the rows were made (the window's end).
        window: u64,
        /// (subject, features), ascending by subject.
        rows: Vec<(NodeId, Row)>,
    },
    /// A neighbour's scores crossed the raise threshold for long enough.
    SuspicionRaised {
        /// Who.
        subject: NodeId,
        /// The score of the window that raised it.
        score: Score,
        /// That window.
        window: u64,
    },
    /// A suspected neighbour scored low for long enough, or left the view.
    SuspicionCleared(NodeId),
    /// This node accused a neighbour and sent the accusation to the
    /// subject's committee.
    Accused {
        /// Who.
        subject: NodeId,
        /// [`crate::quorum::content_hash`] of the accusation.
        accusation: [u8; 32],
        /// The score it accused with.
        score: Score,
        /// Members of the committee (this node and the subject included).
        committee: usize,
        /// The signed accusation, for storing.
        frame: Arc<[u8]>,
    },
    /// Rows for the host to score for a vote: the accuser's row replayed
    /// from the evidence, then the subject's row as each of its reporters
    /// sees it from the signed reports (this node's own view of it).
    /// Answer with [`Node::handle_replay`], one score per row.
    ReplayRequest {
        /// The accusation voted on.
        accusation: [u8; 32],
        /// Its subject.
        subject: NodeId,
        /// The replayed row, then one per reporter.
        rows: Vec<Row>,
    },
    /// This node voted on an accusation.
    VoteCast {
        /// Who accused.
        accuser: NodeId,
        /// Whom.
        subject: NodeId,
        /// The accusation.
        accusation: [u8; 32],
        /// The vote.
        verdict: crate::quorum::Verdict,
        /// The signed vote, for storing.
        frame: Arc<[u8]>,
    },
    /// One of this node's accusations ended: certified (the certificate is
    /// held and flooded, see [`Event::Quarantined`]), or refused or timed
    /// out.
    AccusationClosed {
        /// Whom it accused.
        subject: NodeId,
        /// The accusation.
        accusation: [u8; 32],
        /// Whether it made a certificate.
        certified: bool,
        /// Committee seats that voted yes, that voted no, and in all.
        seats: (u64, u64, u64),
    },
    /// This node signed and sent a report.
    ReportSent {
        /// Its stamp.
        stamp: Stamp,
        /// Frame size in bytes.
        bytes: usize,
        /// The neighbours it observes, ascending.
        subjects: Vec<NodeId>,
    },
}

/// A message for the host to send.
#[derive(Debug, Clone)]
pub struct Transmit {
    /// The destination.
    pub to: NodeId,
    /// How it should travel.
    pub class: Class,
    /// The encoded link message (shared: a relayed report is not copied).
    pub bytes: Arc<[u8]>,
}

/// Counters for the host's metrics and the simulator's cost model.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NodeStats {
    /// Envelopes signed.
    pub signs: u64,
    /// Envelopes whose signatures were checked.
    pub verifies: u64,
    /// New reports stored.
    pub reports_received: u64,
    /// Report copies sent on (push and pull).
    pub reports_relayed: u64,
    /// Reports already held (dropped before verification).
    pub duplicates: u64,
    /// Frames that failed verification or freshness.
    pub invalid: u64,
    /// Messages that did not decode.
    pub malformed: u64,
    /// Messages dropped by per-peer rate limits.
    pub rate_limited: u64,
    /// Messages from peers not on the roster (dropped).
    pub unknown_peer: u64,
    /// Events dropped because the host did not poll them.
    pub events_dropped: u64,
    /// Reports not signed because their sequence was not reserved yet.
    pub unreserved_skips: u64,
    /// Reports ended early because a neighbour was flagrant.
    pub early_reports: u64,
    /// Messages dropped because their sender is quarantined.
    pub quarantined_dropped: u64,
    /// Equivocations this node detected itself.
    pub equivocations_detected: u64,
    /// Certificates offered by new neighbours (entries of `Quarantines`).
    pub certificates_offered: u64,
    /// `Seen` cross-checks sent.
    pub seen_sent: u64,
    /// Reports sent to a node whose `Seen` named another version.
    pub seen_conflicts: u64,
    /// New certificates verified (found here or received).
    pub certificates_accepted: u64,
    /// Certificates received for a subject already held.
    pub certificates_duplicate: u64,
    /// Accusations this node made.
    pub accusations_made: u64,
    /// Of those, ones that made a certificate.
    pub accusations_certified: u64,
    /// Accusations not made because this node's own links were failing
    /// probes in the window (`voting::DEGRADED_LINK_LOSS`).
    pub accusations_withheld_degraded: u64,
    /// Accusations not made because this node's own view of the subject,
    /// scored as a member would score it, fell short.
    pub accusations_withheld_own_view: u64,
    /// Accusations received and not voted on (not on the committee, over a
    /// rate limit, already voted on).
    pub accusations_refused: u64,
    /// Accusations received and voted on.
    pub ballots_opened: u64,
    /// Votes this node signed.
    pub votes_cast: u64,
    /// Votes received on this node's accusations.
    pub votes_received: u64,
}

/// Per-link counters for the current report interval.
#[derive(Debug, Clone)]
pub(crate) struct LinkAcc {
    pub(crate) cur: LinkSample,
    samples: Vec<LinkSample>,
    was_active: bool,
}

impl LinkAcc {
    fn new() -> Self {
        Self {
            cur: fresh_sample(),
            samples: Vec::new(),
            was_active: false,
        }
    }

    /// The smallest probe round trip seen over the samples held, ms.
    pub(crate) fn rtt_ms(&self) -> Option<u64> {
        self.samples
            .iter()
            .chain(std::iter::once(&self.cur))
            .map(|s| s.rtt_ms)
            .filter(|r| *r != LinkSample::NO_RTT)
            .min()
            .map(u64::from)
    }

    pub(crate) fn note_rtt(&mut self, ms: u64) {
        let ms = u16::try_from(ms).unwrap_or(LinkSample::NO_RTT - 1);
        self.cur.rtt_ms = self.cur.rtt_ms.min(ms);
    }

    pub(crate) fn probe_sent(&mut self) {
        self.cur.probes_sent = self.cur.probes_sent.saturating_add(1);
    }

    pub(crate) fn probe_failed(&mut self) {
        self.cur.probes_failed = self.cur.probes_failed.saturating_add(1);
    }
}

fn fresh_sample() -> LinkSample {
    LinkSample {
        rtt_ms: LinkSample::NO_RTT,
        ..LinkSample::default()
    }
}

fn add16(v: &mut u16) {
    *v = v.saturating_add(1);
}

fn add_bytes(v: &mut u32, n: usize) {
    *v = v.saturating_add(u32::try_from(n).unwrap_or(u32::MAX));
}

/// Bounded queue of host-facing events.
const MAX_EVENTS: usize = 65_536;

/// What sub-machines need from the node while handling one input.
pub(crate) struct Ctx<'a> {
    pub(crate) rng: &'a mut Rng,
    pub(crate) roster: &'a Roster,
    /// Subjects of enforced quarantines.
    pub(crate) blocked: &'a BTreeSet<NodeId>,
    /// The certificates held, by subject.
    held: &'a BTreeMap<NodeId, Held>,
    /// Subjects offered to each peer and not yet asked for.
    offered: &'a mut BTreeMap<NodeId, BTreeSet<NodeId>>,
    transmits: &'a mut VecDeque<Transmit>,
    events: &'a mut VecDeque<Event>,
    links: &'a mut BTreeMap<NodeId, LinkAcc>,
    stats: &'a mut NodeStats,
}

impl Ctx<'_> {
    /// May `id` be in a view or send us anything: rostered and not
    /// quarantined.
    pub(crate) fn admissible(&self, id: &NodeId) -> bool {
        self.roster.get(id).is_some() && !self.blocked.contains(id)
    }

    /// Offers a new neighbour the certificates held (except one about
    /// itself) as (subject, position) entries, so that a node that was away
    /// when a certificate was flooded learns it from its first neighbours;
    /// it asks for the ones it lacks ([`Message::Wanted`]).
    pub(crate) fn share_certificates(&mut self, to: NodeId) {
        let entries: Vec<crate::message::Offer> = self
            .held
            .iter()
            .filter(|(subject, _)| **subject != to)
            .map(|(subject, h)| crate::message::Offer {
                subject: *subject,
                epoch: h.position.0,
                sequence: h.position.1,
                rank: h.rank,
            })
            .collect();
        if entries.is_empty() {
            return;
        }
        if !self.offered.contains_key(&to) && self.offered.len() >= MAX_OFFERS {
            let first = self.offered.keys().next().copied();
            if let Some(first) = first {
                self.offered.remove(&first);
            }
        }
        self.offered
            .insert(to, entries.iter().map(|e| e.subject).collect());
        for chunk in entries.chunks(crate::message::MAX_DIGEST) {
            self.send(
                to,
                &Message::Quarantines {
                    entries: chunk.to_vec(),
                },
            );
        }
    }

    pub(crate) fn send(&mut self, to: NodeId, msg: &Message<'_>) {
        self.send_bytes(to, msg.class(), msg.encode().into());
    }

    /// Quarantine traffic ([`crate::message::is_quarantine_traffic`]) is
    /// left out of the link's counters, as it is out of the host's: see
    /// [`Node::handle_message`].
    pub(crate) fn send_bytes(&mut self, to: NodeId, class: Class, bytes: Arc<[u8]>) {
        if !crate::message::is_quarantine_traffic(&bytes) {
            let link = self.link(to);
            add16(&mut link.cur.messages_out);
            add_bytes(&mut link.cur.bytes_out, bytes.len());
        }
        self.transmits.push_back(Transmit { to, class, bytes });
    }

    pub(crate) fn event(&mut self, e: Event) {
        if self.events.len() >= MAX_EVENTS {
            self.events.pop_front();
            self.stats.events_dropped += 1;
        }
        self.events.push_back(e);
    }

    /// Peers that were in the active view at one of this interval's
    /// samples, so the next report names them, and have since left it for
    /// the passive view (they are alive). The report will claim what this
    /// node relayed in the interval, so they are still owed those relays.
    pub(crate) fn departed(&self, membership: &Membership) -> Vec<NodeId> {
        self.links
            .iter()
            .filter(|(id, l)| {
                l.was_active && !membership.is_active(id) && membership.passive().contains(id)
            })
            .map(|(id, _)| *id)
            .collect()
    }

    /// This node's next report will name `id` (it was in the active view
    /// at one of this interval's samples).
    pub(crate) fn named_in_next_report(&self, id: &NodeId) -> bool {
        self.links.get(id).is_some_and(|l| l.was_active)
    }

    pub(crate) fn link(&mut self, id: NodeId) -> &mut LinkAcc {
        self.links.entry(id).or_insert_with(LinkAcc::new)
    }

    pub(crate) fn stats(&mut self) -> &mut NodeStats {
        self.stats
    }
}

/// A token bucket counted in millionths of a token.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    micro: u64,
    last_ms: u64,
}

impl Bucket {
    fn full(burst: u32, now: u64) -> Self {
        Self {
            micro: u64::from(burst) * 1_000_000,
            last_ms: now,
        }
    }

    /// Takes one token; `rate_milli_per_s` is thousandths of a token per
    /// second.
    fn take(&mut self, now: u64, rate_milli_per_s: u64, burst: u32) -> bool {
        let elapsed = now.saturating_sub(self.last_ms);
        self.last_ms = self.last_ms.max(now);
        self.micro = self
            .micro
            .saturating_add(elapsed.saturating_mul(rate_milli_per_s))
            .min(u64::from(burst) * 1_000_000);
        if self.micro >= 1_000_000 {
            self.micro -= 1_000_000;
            true
        } else {
            false
        }
    }
}

/// A mesh node. See the module documentation for how a host drives it.
#[derive(Debug)]
pub struct Node<C: Crypto> {
    cfg: Config,
    roster: Arc<Roster>,
    crypto: C,
    me: NodeId,
    epoch: u64,
    next_sequence: u64,
    /// The host has made sequences up to this one durable (reserved).
    sequence_limit: u64,
    rng: Rng,
    transmits: VecDeque<Transmit>,
    events: VecDeque<Event>,
    links: BTreeMap<NodeId, LinkAcc>,
    buckets: BTreeMap<NodeId, (Bucket, Bucket, Bucket)>,
    stats: NodeStats,
    membership: Membership,
    gossip: Gossip,
    host_current: HostSample,
    host_samples: Vec<HostSample>,
    next_sample: u64,
    quarantine: Quarantine,
    /// Subjects of enforced quarantines (kept with `quarantine`).
    blocked: BTreeSet<NodeId>,
    /// The certificates in `quarantine` as link messages, to hand to new
    /// neighbours.
    held: BTreeMap<NodeId, Held>,
    /// Subjects offered to each new neighbour and not yet asked for.
    offered: BTreeMap<NodeId, BTreeSet<NodeId>>,
    /// Local suspicion of neighbours.
    suspicions: Suspicions,
    /// The window of the latest [`Event::ScoreRequest`].
    score_window: Option<u64>,
    /// When this node last ended a report early for a flagrant neighbour.
    early_report_at: Option<u64>,
    /// Neighbours flagrant in the latest sample
    /// ([`crate::suspicion::Flagrant`]).
    flagrant: Vec<NodeId>,
    /// Accusations and votes.
    voting: Voting,
    /// Tests: sign false observations of this node (a framer).
    #[cfg(test)]
    pub(crate) lie_about: Option<NodeId>,
    /// Tests: cite only the subject's report and this node's own in
    /// accusations (an accuser choosing its evidence).
    #[cfg(test)]
    pub(crate) cite_only_own: bool,
}

/// A certificate held, ready to send.
#[derive(Debug, Clone)]
pub(crate) struct Held {
    /// (epoch, sequence) of the fault it proves.
    position: (u64, u64),
    /// Its [`Certificate::rank`] among certificates of that fault.
    rank: [u8; 8],
    /// The link message.
    message: Arc<[u8]>,
}

/// Peers with an outstanding certificate offer remembered at once.
const MAX_OFFERS: usize = 256;
/// Burst of accusations, votes and evidence reports accepted from one
/// peer: one accusation's whole evidence and then some.
#[allow(clippy::cast_possible_truncation, reason = "MAX_EVIDENCE is 34")]
const QUORUM_BURST: u32 = 2 * crate::quorum::MAX_EVIDENCE as u32;
/// Their refill: one burst a minute, in thousandths of a token per second.
const QUORUM_RATE_MILLI_PER_S: u64 = QUORUM_BURST as u64 * 1000 / 60;

macro_rules! ctx {
    ($self:ident) => {
        Ctx {
            rng: &mut $self.rng,
            roster: &$self.roster,
            blocked: &$self.blocked,
            held: &$self.held,
            offered: &mut $self.offered,
            transmits: &mut $self.transmits,
            events: &mut $self.events,
            links: &mut $self.links,
            stats: &mut $self.stats,
        }
    };
}

#[path = "voting.rs"]
mod voting;

impl<C: Crypto> Node<C> {
    /// A node that signs with `crypto` in `roster`'s mesh, in boot `epoch`
    /// (which must be new at every start: see `ARCHITECTURE.md`, sequences
    /// and crashes). It does nothing until [`Node::join`].
    ///
    /// # Errors
    /// [`Error::InvalidInput`] for a bad config or an identity that is not on
    /// the roster.
    pub fn new(
        cfg: Config,
        roster: Arc<Roster>,
        crypto: C,
        epoch: u64,
        seed: u64,
        now_ms: u64,
    ) -> Result<Self, Error> {
        cfg.validate()?;
        let me = crypto.id();
        if roster.get(&me).is_none() {
            return Err(Error::InvalidInput(format!(
                "this node's id {me} is not on the roster of mesh {}",
                roster.mesh()
            )));
        }
        let seats = if cfg.quorum.enabled {
            Some(crate::quorum::committee_seats(&roster)?)
        } else {
            None
        };
        let mut rng = Rng::from_seed(seed);
        let mut transmits = VecDeque::new();
        let mut events = VecDeque::new();
        let mut links = BTreeMap::new();
        let mut stats = NodeStats::default();
        let blocked = BTreeSet::new();
        let held = BTreeMap::new();
        let mut offered = BTreeMap::new();
        let mut ctx = Ctx {
            rng: &mut rng,
            roster: &roster,
            blocked: &blocked,
            held: &held,
            offered: &mut offered,
            transmits: &mut transmits,
            events: &mut events,
            links: &mut links,
            stats: &mut stats,
        };
        let membership = Membership::new(me, &cfg, &mut ctx, now_ms);
        let phase = ctx.rng.between(1, cfg.sample_interval_ms);
        let gossip = Gossip::new(&cfg, ctx.rng, now_ms);
        let first_sample = now_ms + phase + cfg.sample_interval_ms;
        Ok(Self {
            cfg,
            roster,
            crypto,
            me,
            epoch,
            next_sequence: 1,
            sequence_limit: u64::MAX,
            rng,
            transmits,
            events,
            links,
            buckets: BTreeMap::new(),
            stats,
            membership,
            gossip,
            host_current: HostSample::default(),
            host_samples: Vec::new(),
            next_sample: first_sample,
            quarantine: Quarantine::new(),
            blocked,
            held,
            offered,
            suspicions: Suspicions::default(),
            score_window: None,
            early_report_at: None,
            flagrant: Vec::new(),
            voting: Voting::new(seats),
            #[cfg(test)]
            lie_about: None,
            #[cfg(test)]
            cite_only_own: false,
        })
    }

    /// This node's id.
    #[must_use]
    pub fn id(&self) -> NodeId {
        self.me
    }

    /// The config it runs with.
    #[must_use]
    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// Starts joining the mesh through a random rostered member (rejoining
    /// after a restart is the same call with a new node and epoch).
    pub fn join(&mut self, now_ms: u64) {
        let cfg = &self.cfg;
        self.membership.join(cfg, &mut ctx!(self), now_ms);
    }

    /// Leaves the mesh: neighbours are told, and the node goes quiet.
    pub fn leave(&mut self) {
        self.membership.leave(&mut ctx!(self));
    }

    /// The host's newest metrics; sampled at each sample tick.
    pub fn set_host_sample(&mut self, sample: HostSample) {
        self.host_current = sample;
    }

    /// The active view, ascending.
    #[must_use]
    pub fn active_view(&self) -> Vec<NodeId> {
        self.membership.active().collect()
    }

    /// The passive view.
    #[must_use]
    pub fn passive_view(&self) -> &[NodeId] {
        self.membership.passive()
    }

    /// Whether `peer` is an active neighbour currently under suspicion.
    #[must_use]
    pub fn is_suspected(&self, peer: &NodeId) -> bool {
        self.membership.is_suspected(peer)
    }

    /// The local health multiplier (0 when the node keeps up with its
    /// timers).
    #[must_use]
    pub fn health(&self) -> u32 {
        self.membership.health()
    }

    /// The sequence the next report will be signed with.
    #[must_use]
    pub fn next_sequence(&self) -> u64 {
        self.next_sequence
    }

    /// Lets the node sign sequences up to `limit` (inclusive), once the host
    /// has recorded durably that they are used. Until the first call there
    /// is no limit (the simulator's case); a host that persists sequences
    /// calls this before [`Node::join`] and raises it ahead of use.
    pub fn allow_sequences_through(&mut self, limit: u64) {
        self.sequence_limit = limit;
    }

    /// Counters.
    #[must_use]
    pub fn stats(&self) -> NodeStats {
        self.stats
    }

    /// The newest verified report from `origin` (this node's own included),
    /// as the signed frame.
    #[must_use]
    pub fn report(&self, origin: &NodeId) -> Option<&[u8]> {
        self.gossip.frame(origin)
    }

    /// The newest verified report from `origin`, decoded (no second
    /// signature check: it was verified before it was stored).
    #[must_use]
    pub fn report_contents(&self, origin: &NodeId) -> Option<(Stamp, Report)> {
        let (header, payload) = envelope::verified_parts(self.report(origin)?).ok()?;
        let report = crate::codec::Codec::decode_exact(payload).ok()?;
        Some((header.stamp, report))
    }

    /// Handles one message received from `from` on an authenticated link.
    /// Nothing a peer sends can make this panic or grow state without bound:
    /// bad input is counted against the link and dropped.
    pub fn handle_message(&mut self, now_ms: u64, from: NodeId, message: Arc<[u8]>) {
        if self.roster.get(&from).is_none() || from == self.me {
            self.stats.unknown_peer += 1;
            return;
        }
        if self.blocked.contains(&from) {
            self.stats.quarantined_dropped += 1;
            return;
        }
        let cfg = &self.cfg;
        let mut ctx = ctx!(self);
        let link = ctx.link(from);
        // Quarantine traffic (votes, certificates of up to half a megabyte
        // and their offers) comes in bursts when the mesh votes and is not
        // the link's own traffic: counted, a node that answered its
        // neighbours' requests for certificates looked to them like a host
        // sending 48 KB/s in few messages, and 51 honest members voted it
        // out (`quorum-1k` seed 9108, once offers carried ranks). Invalid,
        // malformed and rate-limited messages of every kind still count.
        if !crate::message::is_quarantine_traffic(&message) {
            add16(&mut link.cur.messages_in);
            add_bytes(&mut link.cur.bytes_in, message.len());
        }
        // Reports and certificates (signed, verified at a cost) share one
        // bucket, accusations, votes and their evidence another; everything
        // else the third.
        let is_report = matches!(
            message.first(),
            Some(&crate::message::TAG_REPORT | &crate::message::TAG_CERTIFICATE)
        );
        let is_quorum = matches!(
            message.first(),
            Some(
                &crate::message::TAG_ACCUSE
                    | &crate::message::TAG_VOTE
                    | &crate::message::TAG_EVIDENCE_REPORT
                    | &crate::message::TAG_REPORT_WANTED
            )
        );
        let (report_bucket, control_bucket, quorum_bucket) =
            self.buckets.entry(from).or_insert_with(|| {
                (
                    Bucket::full(cfg.report_burst, now_ms),
                    Bucket::full(cfg.control_burst, now_ms),
                    Bucket::full(QUORUM_BURST, now_ms),
                )
            });
        let allowed = if is_quorum {
            quorum_bucket.take(now_ms, QUORUM_RATE_MILLI_PER_S, QUORUM_BURST)
        } else if is_report {
            let per_s_milli =
                u64::from(cfg.report_burst) * 1_000_000 / cfg.report_interval_ms().max(1);
            report_bucket.take(now_ms, per_s_milli, cfg.report_burst)
        } else {
            control_bucket.take(
                now_ms,
                u64::from(cfg.control_rate_per_s) * 1000,
                cfg.control_burst,
            )
        };
        if !allowed {
            add16(&mut ctx.link(from).cur.rate_limited);
            ctx.stats.rate_limited += 1;
            return;
        }
        let msg = match Message::decode(&message) {
            Ok(m) => m,
            Err(_) => {
                add16(&mut ctx.link(from).cur.malformed);
                ctx.stats.malformed += 1;
                return;
            }
        };
        self.membership.heard_from(from, &mut ctx);
        let mut evidence = None;
        let mut certificate = false;
        let mut stored = u64::MAX;
        match msg {
            Message::Accuse(frame) => self.on_accuse(from, frame, now_ms),
            Message::EvidenceWanted { accusation, wanted } => {
                self.on_evidence_wanted(from, accusation, wanted);
            }
            Message::EvidenceReport { accusation, frame } => {
                self.on_evidence_report(from, accusation, frame, now_ms);
            }
            Message::ReportWanted {
                accusation,
                window_ms,
            } => self.on_report_wanted(from, accusation, window_ms),
            Message::Vote(frame) => self.on_vote(from, frame, now_ms),
            Message::Report(_) => {
                stored = ctx.stats.reports_received;
                evidence = self.gossip.on_report(
                    cfg,
                    &mut ctx,
                    &mut self.crypto,
                    &self.membership,
                    self.me,
                    from,
                    &message,
                    now_ms,
                );
            }
            Message::Certificate(_) => certificate = true,
            Message::Digest { .. } if !self.membership.is_active(&from) => {
                // Only neighbours pull; a peer that thinks we are one holds
                // a one-sided link. Tell it.
                ctx.send(from, &Message::Disconnect { alive: true });
            }
            Message::Seen {
                origin,
                epoch,
                sequence,
                digest,
            } => {
                self.gossip.on_seen(
                    cfg,
                    &mut ctx,
                    self.me,
                    from,
                    origin,
                    (epoch, sequence),
                    digest,
                    now_ms,
                );
            }
            Message::Quarantines { entries } => {
                ctx.stats.certificates_offered += entries.len() as u64;
                let wanted: Vec<NodeId> = entries
                    .iter()
                    .filter(|e| {
                        e.subject != self.me
                            && self.quarantine.wants(
                                &e.subject,
                                (e.epoch, e.sequence),
                                e.rank,
                                now_ms,
                            )
                    })
                    .map(|e| e.subject)
                    .collect();
                for chunk in wanted.chunks(crate::message::MAX_SHUFFLE) {
                    ctx.send(
                        from,
                        &Message::Wanted {
                            subjects: chunk.to_vec(),
                        },
                    );
                }
            }
            Message::Wanted { subjects } => {
                let mut send = Vec::new();
                if let Some(offer) = ctx.offered.get_mut(&from) {
                    send = subjects.into_iter().filter(|s| offer.remove(s)).collect();
                    if offer.is_empty() {
                        ctx.offered.remove(&from);
                    }
                }
                for s in send {
                    if let Some(h) = ctx.held.get(&s) {
                        ctx.send_bytes(from, Class::Stream, h.message.clone());
                    }
                }
            }
            Message::Digest { entries } => {
                self.gossip.on_digest(
                    cfg,
                    &mut ctx,
                    &self.membership,
                    self.me,
                    from,
                    &entries,
                    now_ms,
                );
            }
            other => self.membership.handle(cfg, &mut ctx, from, &other, now_ms),
        }
        if let Some(e) = evidence {
            self.on_evidence(e, now_ms);
        }
        if certificate {
            self.on_certificate(&message, from, now_ms);
        }
        if self.stats.reports_received > stored && !self.flagrant.is_empty() {
            self.rescore_flagrant(&message, now_ms);
        }
    }

    /// A new report arrived while neighbours are flagrant: scores those it
    /// observes (or that signed it) again at once, so a flagrant
    /// neighbour's score follows its other reporters' reports of the
    /// onset as they come instead of at the next sample.
    fn rescore_flagrant(&mut self, message: &[u8], now_ms: u64) {
        let Ok(header) = envelope::peek_header(&message[1..]) else {
            return;
        };
        let origin = header.sender;
        let subjects: Vec<NodeId> = self
            .flagrant
            .iter()
            .filter(|s| **s == origin || self.gossip.observes(&origin, s))
            .copied()
            .collect();
        if !subjects.is_empty() {
            self.request_scores(now_ms, Some(&subjects));
        }
    }

    /// This node found (verified) evidence: certify, hold and flood it.
    fn on_evidence(&mut self, (evidence, proven): (Evidence, Proven), now_ms: u64) {
        self.stats.equivocations_detected += 1;
        let cert = Certificate::certify(&self.cfg.quarantine, evidence, &proven);
        let message: Arc<[u8]> = Message::Certificate(&cert.to_bytes()).encode().into();
        self.hold(cert, proven, message, None, now_ms);
    }

    /// A certificate arrived on the link from `from`.
    fn on_certificate(&mut self, message: &Arc<[u8]>, from: NodeId, now_ms: u64) {
        let Ok(cert) = Certificate::decode_shared(message, 1) else {
            add16(&mut ctx!(self).link(from).cur.malformed);
            self.stats.malformed += 1;
            return;
        };
        if self.quarantine.recognise(&cert, now_ms).is_some() {
            // Held already, or ended: judged on the header, not verified.
            self.stats.certificates_duplicate += 1;
            return;
        }
        let Ok(proven) = cert.verify_by(&self.roster, &self.cfg.quarantine, &mut self.crypto)
        else {
            add16(&mut ctx!(self).link(from).cur.invalid);
            self.stats.invalid += 1;
            return;
        };
        self.hold(cert, proven, message.clone(), Some(from), now_ms);
    }

    /// Holds a verified certificate, enforces it if under the cap, and
    /// floods it to the active view.
    fn hold(
        &mut self,
        cert: Certificate,
        proven: Proven,
        message: Arc<[u8]>,
        from: Option<NodeId>,
        now_ms: u64,
    ) {
        let (subject, fault) = (proven.subject, proven.fault);
        let position = (proven.epoch, proven.sequence);
        let rank = cert.rank();
        let admitted = self.quarantine.insert_verified(
            &self.roster,
            &self.cfg.quarantine,
            cert,
            proven,
            now_ms,
        );
        if matches!(admitted, Admitted::Known | Admitted::Expired) {
            return;
        }
        self.stats.certificates_accepted += 1;
        self.held.insert(
            subject,
            Held {
                position,
                rank,
                message: message.clone(),
            },
        );
        let enforced = admitted == Admitted::Enforced;
        if enforced {
            self.enforce(subject);
        }
        self.subject_certified(&subject);
        let mut ctx = ctx!(self);
        let neighbours: Vec<NodeId> = self
            .membership
            .active()
            .filter(|q| Some(*q) != from && *q != subject)
            .collect();
        if fault == Fault::Voted {
            // A voted certificate is large (up to half a megabyte): offer
            // it, and send it to the neighbours that ask.
            for q in neighbours {
                if !ctx.offered.contains_key(&q)
                    && ctx.offered.len() >= MAX_OFFERS
                    && let Some(first) = ctx.offered.keys().next().copied()
                {
                    ctx.offered.remove(&first);
                }
                ctx.offered.entry(q).or_default().insert(subject);
                ctx.send(
                    q,
                    &Message::Quarantines {
                        entries: vec![crate::message::Offer {
                            subject,
                            epoch: position.0,
                            sequence: position.1,
                            rank,
                        }],
                    },
                );
            }
        } else {
            for q in neighbours {
                ctx.send_bytes(q, Class::Stream, message.clone());
            }
        }
        let certificate = SharedBytes::new(message.clone(), 1..message.len())
            .expect("a message has its tag byte");
        ctx.event(if admitted == Admitted::Replaced {
            Event::CertificateReplaced {
                subject,
                certificate,
                from,
            }
        } else {
            Event::Quarantined {
                subject,
                fault,
                certificate,
                enforced,
                from,
            }
        });
    }

    /// Holds a certificate this node stored earlier (at boot): verified
    /// again, kept over the times it was first held, enforced if under the
    /// cap, and not flooded (neighbours get it when they connect). One
    /// whose quarantine has ended is remembered so that it is not taken
    /// again.
    ///
    /// # Errors
    /// The bytes are not a certificate, or it does not verify against this
    /// node's roster and policy.
    pub fn restore_certificate(
        &mut self,
        certificate: &SharedBytes,
        (since_ms, until_ms): (u64, u64),
        now_ms: u64,
    ) -> Result<Admitted, CertificateError> {
        // Held as the message it floods in; one that an event handed out
        // is that message already, and is kept without a copy.
        let message: Arc<[u8]> = match certificate.parts() {
            (whole, 1)
                if whole.len() == certificate.len() + 1
                    && whole[0] == crate::message::TAG_CERTIFICATE =>
            {
                whole.clone()
            }
            _ => Message::Certificate(certificate).encode().into(),
        };
        let cert = Certificate::decode_shared(&message, 1).map_err(Error::from)?;
        let proven = cert.verify_by(&self.roster, &self.cfg.quarantine, &mut self.crypto)?;
        let (subject, position) = (proven.subject, (proven.epoch, proven.sequence));
        let rank = cert.rank();
        let admitted = self.quarantine.insert_at(
            &self.roster,
            &self.cfg.quarantine,
            cert,
            proven,
            (since_ms, until_ms),
            now_ms,
        );
        if matches!(
            admitted,
            Admitted::Enforced | Admitted::OverCap | Admitted::Replaced
        ) {
            self.held.insert(
                subject,
                Held {
                    position,
                    rank,
                    message,
                },
            );
        }
        if admitted == Admitted::Enforced {
            self.enforce(subject);
        }
        Ok(admitted)
    }

    /// Stops talking to `subject`: out of the views, its reports forgotten.
    fn enforce(&mut self, subject: NodeId) {
        self.blocked.insert(subject);
        self.gossip.forget(&subject);
        self.membership.evict(&mut ctx!(self), subject);
    }

    /// Whether `id` is under an enforced quarantine.
    #[must_use]
    pub fn is_quarantined(&self, id: &NodeId) -> bool {
        self.blocked.contains(id)
    }

    /// The quarantines this node holds.
    #[must_use]
    pub fn quarantine(&self) -> &Quarantine {
        &self.quarantine
    }

    /// Runs every timer due at `now_ms`. Calling it early or repeatedly is
    /// harmless.
    pub fn handle_timeout(&mut self, now_ms: u64) {
        if let Some(due) = self.poll_timeout()
            && due <= now_ms
        {
            self.membership.note_lateness(&self.cfg, now_ms - due);
        }
        let cfg = &self.cfg;
        self.membership.tick(cfg, &mut ctx!(self), now_ms);
        while now_ms >= self.next_sample {
            self.sample(now_ms);
        }
        let cfg = &self.cfg;
        self.gossip
            .tick(cfg, &mut ctx!(self), &self.membership, self.me, now_ms);
        if self.quarantine.next_expiry().is_some_and(|t| t <= now_ms) {
            let (lifted, promoted) =
                self.quarantine
                    .expire(&self.roster, &self.cfg.quarantine, now_ms);
            for id in lifted {
                self.blocked.remove(&id);
                self.held.remove(&id);
                ctx!(self).event(Event::QuarantineLifted(id));
            }
            for id in promoted {
                self.enforce(id);
                ctx!(self).event(Event::QuarantineEnforced(id));
            }
        }
        if self.voting.next_deadline().is_some_and(|t| t <= now_ms) {
            self.voting_tick(now_ms);
        }
    }

    /// When [`Node::handle_timeout`] should next be called.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<u64> {
        let m = self.membership.poll_timeout(&self.cfg).unwrap_or(u64::MAX);
        let q = self
            .quarantine
            .next_expiry()
            .unwrap_or(u64::MAX)
            .min(self.voting.next_deadline().unwrap_or(u64::MAX));
        Some(
            m.min(self.next_sample)
                .min(self.gossip.poll_timeout())
                .min(q),
        )
    }

    /// The next message to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    fn sample(&mut self, now_ms: u64) {
        let sample_end = self.next_sample;
        self.next_sample += self.cfg.sample_interval_ms;
        if self.next_sample <= now_ms {
            // Far behind (a paused process): skip missed samples rather than
            // inventing them; the report's start time stays honest.
            self.next_sample = now_ms + self.cfg.sample_interval_ms;
        }
        let index = self.host_samples.len();
        self.host_samples.push(self.host_current);
        for (id, link) in &mut self.links {
            if self.membership.is_active(id) {
                link.was_active = true;
            }
            if link.samples.len() < index {
                link.samples.resize(index, fresh_sample());
            }
            link.samples
                .push(std::mem::replace(&mut link.cur, fresh_sample()));
        }
        let policy = self.cfg.suspicion;
        self.flagrant = if policy.enabled {
            self.links
                .iter()
                .filter(|(id, l)| {
                    self.membership.is_active(id)
                        && l.samples.last().is_some_and(|s| policy.flagrant.shows(s))
                })
                .map(|(id, _)| *id)
                .collect()
        } else {
            Vec::new()
        };
        if self.host_samples.len() >= self.cfg.samples_per_report {
            if self.publish(now_ms, sample_end) && policy.enabled {
                self.request_scores(now_ms, None);
            }
        } else if !self.flagrant.is_empty() {
            // A flagrant neighbour: its onset goes into a signed report now
            // (at most once in four intervals, so a long attack costs at most
            // one extra report in four), and it is scored from what is held.
            let gap = 4 * self.cfg.report_interval_ms();
            if self.early_report_at.is_none_or(|t| t + gap <= sample_end)
                && self.publish(now_ms, sample_end)
            {
                self.early_report_at = Some(sample_end);
                self.stats.early_reports += 1;
            }
            let flagrant = self.flagrant.clone();
            self.request_scores(now_ms, Some(&flagrant));
        }
    }

    /// Signs and sends a report of the samples taken since the last one;
    /// false when none was signed.
    fn publish(&mut self, now_ms: u64, end: u64) -> bool {
        let host = std::mem::take(&mut self.host_samples);
        let n = host.len();
        let links = std::mem::take(&mut self.links);
        let mut observed: Vec<(bool, u64, NodeId, Vec<LinkSample>)> = Vec::new();
        for (id, mut link) in links {
            let active = self.membership.is_active(&id);
            if link.was_active {
                link.samples.resize(n, fresh_sample());
                let traffic = link.samples.iter().map(|s| u64::from(s.bytes_in)).sum();
                observed.push((active, traffic, id, link.samples));
            }
            if active {
                self.links.insert(id, LinkAcc::new());
            }
        }
        // Current neighbours first, then the busiest, within the size cap.
        observed.sort_by(|a, b| b.0.cmp(&a.0).then(b.1.cmp(&a.1)).then(a.2.cmp(&b.2)));
        observed.truncate(MAX_NEIGHBOURS);
        observed.sort_by_key(|o| o.2);
        // Each neighbour's relay check goes into the report as this node's
        // own scoring reads it, so members replay it from signed bytes.
        self.gossip.settle(now_ms);
        let gossip = &mut self.gossip;
        let neighbours = observed
            .into_iter()
            .map(|(_, _, neighbour, samples)| {
                let (claimed_epoch, claimed_sequence) = gossip.latest(&neighbour).unwrap_or((0, 0));
                Observation {
                    neighbour,
                    claimed_epoch,
                    claimed_sequence,
                    relays: gossip.take_relays(&neighbour, now_ms),
                    samples,
                }
            })
            .collect();
        #[allow(unused_mut, reason = "tests edit it")]
        let mut report = Report {
            start_ms: end.saturating_sub(self.cfg.sample_interval_ms * n as u64),
            sample_ms: u32::try_from(self.cfg.sample_interval_ms).unwrap_or(u32::MAX),
            host,
            neighbours,
        };
        #[cfg(test)]
        if let Some(victim) = self.lie_about {
            // A Byzantine node's modified code: it signs that `victim`
            // sent it invalid and malformed messages and withheld every
            // relay it owed.
            for o in report
                .neighbours
                .iter_mut()
                .filter(|o| o.neighbour == victim)
            {
                let claimed = o.relays.claimed.max(24);
                o.relays = crate::features::Relays {
                    claimed,
                    missing: claimed,
                };
                for s in &mut o.samples {
                    s.invalid = s.invalid.max(50);
                    s.malformed = s.malformed.max(50);
                }
            }
        }
        if self.next_sequence > self.sequence_limit {
            // The host has not reserved this sequence durably yet; signing it
            // could repeat it after a crash. Skip the report.
            self.stats.unreserved_skips += 1;
            return false;
        }
        let stamp = Stamp {
            epoch: self.epoch,
            sequence: self.next_sequence,
            issued_at_ms: now_ms,
        };
        let payload = crate::codec::Codec::to_bytes(&report);
        let frame = match self
            .crypto
            .seal(self.roster.mesh_id(), Kind::Telemetry, stamp, &payload)
        {
            Ok(f) => f,
            // Signing failures are transient library errors; the next
            // interval tries again with a fresh sequence.
            Err(_) => return false,
        };
        self.next_sequence += 1;
        self.stats.signs += 1;
        self.keep_own_report(&report, &frame);
        let bytes = frame.len();
        let cfg = &self.cfg;
        let mut ctx = ctx!(self);
        self.gossip.publish(
            cfg,
            &mut ctx,
            &self.membership,
            self.me,
            stamp,
            &report,
            &frame,
            now_ms,
        );
        ctx.event(Event::ReportSent {
            stamp,
            bytes,
            subjects: report.subjects().collect(),
        });
        true
    }

    /// Extracts a feature row for every neighbour (or only those in
    /// `only`) from the reports held and asks the host to score them.
    fn request_scores(&mut self, now_ms: u64, only: Option<&[NodeId]>) {
        let mut subjects: Vec<NodeId> = self.membership.active().collect();
        if let Some(only) = only {
            subjects.retain(|s| only.contains(s));
        } else {
            // Forget neighbours that left the view.
            let gone: Vec<NodeId> = self
                .suspicions
                .iter()
                .map(|(id, _)| *id)
                .filter(|id| subjects.binary_search(id).is_err())
                .collect();
            for id in gone {
                if self.suspicions.forget(&id) {
                    ctx!(self).event(Event::SuspicionCleared(id));
                }
            }
        }
        if subjects.is_empty() {
            return;
        }
        self.gossip.settle(now_ms);
        // Decode each report needed once: the subjects', ours and those
        // of everyone observing a subject.
        let mut origins: BTreeSet<NodeId> = subjects.iter().copied().collect();
        origins.insert(self.me);
        for s in &subjects {
            origins.extend(self.gossip.observers_of(s));
        }
        let decoded: Vec<(NodeId, Stamp, Report)> = origins
            .into_iter()
            .filter_map(|o| {
                let (stamp, report) = self.report_contents(&o)?;
                Some((o, stamp, report))
            })
            .collect();
        let reports: Vec<crate::features::Held<'_>> = decoded
            .iter()
            .map(|(o, stamp, report)| crate::features::Held {
                signer: *o,
                position: (stamp.epoch, stamp.sequence),
                report,
                relays: if subjects.contains(o) {
                    self.gossip.take_relays(o, now_ms)
                } else {
                    crate::features::Relays::default()
                },
            })
            .collect();
        let horizon_ms = 2 * self.cfg.report_interval_ms();
        let rows = subjects
            .into_iter()
            .map(|subject| {
                let row = crate::features::extract(&crate::features::Inputs {
                    subject,
                    observer: self.me,
                    now_ms,
                    horizon_ms,
                    reports: &reports,
                });
                (subject, row)
            })
            .collect::<Vec<(NodeId, Row)>>();
        let relays: Vec<(NodeId, crate::features::Relays)> = reports
            .iter()
            .filter(|h| rows.iter().any(|(s, _)| *s == h.signer))
            .map(|h| (h.signer, h.relays))
            .collect();
        for (subject, _) in &rows {
            let r = relays
                .iter()
                .find(|(s, _)| s == subject)
                .map(|(_, r)| *r)
                .unwrap_or_default();
            self.note_basis(*subject, now_ms, r);
        }
        self.score_window = Some(now_ms);
        ctx!(self).event(Event::ScoreRequest {
            window: now_ms,
            rows,
        });
    }

    /// Takes back the host's scores for the rows of the
    /// [`Event::ScoreRequest`] with this `window`; scores for an older
    /// window, or for subjects no longer in the active view, are ignored.
    pub fn handle_scores(&mut self, window: u64, scores: &[(NodeId, Score)]) {
        if self.score_window != Some(window) {
            return;
        }
        let policy = self.cfg.suspicion;
        for (subject, score) in scores {
            if !self.membership.is_active(subject) {
                continue;
            }
            match self.suspicions.update(&policy, *subject, *score) {
                Change::Raised => ctx!(self).event(Event::SuspicionRaised {
                    subject: *subject,
                    score: *score,
                    window,
                }),
                Change::Cleared => ctx!(self).event(Event::SuspicionCleared(*subject)),
                Change::None => {}
            }
            self.maybe_accuse(*subject, *score, window);
        }
    }

    /// Local suspicion of neighbours scored so far.
    #[must_use]
    pub fn suspicions(&self) -> &Suspicions {
        &self.suspicions
    }
}
