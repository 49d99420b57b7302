//! The node's side of voted quarantine (formats and rules: [`crate::quorum`]).
//!
//! As **accuser**, a node whose suspicion of a neighbour is raised and whose
//! latest score of it reaches the raise threshold first scores its own view
//! of the subject from the reports that window's row was made of, as a
//! member would; if that says yes, it signs an accusation from them, sends
//! it to every committee member, serves the reports they ask for, and
//! collects their votes; when yes votes hold two thirds of the seats it
//! makes the certificate and floods it like any other.
//!
//! As **voter**, a node on the subject's committee checks the accusation,
//! asks the accuser for the reports it does not hold, verifies each against
//! its reference, and asks its host to score rows
//! ([`Event::ReplayRequest`]): the accuser's, replayed, and the subject's
//! row as each of its reporters alone sees it (that reporter's signed
//! report and the subject's).
//! [`Node::handle_replay`] turns the scores into a signed vote for the
//! accuser: yes when the replay agrees and at least two thirds of the
//! reporters' scores reach the threshold.
//!
//! Once any certificate about a subject is held, this node's open
//! accusations of it close.
//!
//! Rate limits: a node accuses at most `accusations_per_hour` times and
//! one subject at most once per `accusation_spacing_ms`; a voter takes at
//! most `accusations_per_hour` accusations per accuser per hour, as many
//! per subject (so framers can try their victim only so often), and 3 per
//! accuser and subject (so that more than one Byzantine member is needed
//! to use up a subject's hour and shield it); at most `max_open_ballots`
//! at once, of them at most `max_active` about one subject and one per
//! accuser and subject; and it votes once per accusation.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;

use super::{Ctx, Event, Node};
use crate::codec::Codec;
use crate::crypto::Crypto;
use crate::envelope::{self, Kind, Stamp};
use crate::error::Error;
use crate::evidence::Certificate;
#[cfg(test)]
use crate::features::Row;
use crate::features::{Held as HeldReport, Inputs, Relays, Score};
use crate::identity::NodeId;
use crate::message::Message;
use crate::quorum::{
    Accusation, Committee, EvidenceRef, MAX_EVIDENCE, Seats, Verdict, Vote, Votes, committee_epoch,
    content_hash, open_accusation, open_vote,
};
use crate::telemetry::Report;

/// Voting settings of one node (the formats' rules are in
/// [`crate::evidence::QuarantinePolicy`], which every member shares).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuorumConfig {
    /// Accuse and vote. Default false: needs scoring on
    /// ([`crate::suspicion::SuspicionPolicy::enabled`]) and a pinned model
    /// ([`crate::evidence::QuarantinePolicy::model`]).
    pub enabled: bool,
    /// The own-row score at or above which a member votes yes, and the
    /// accused score an accusation needs. Default 0.95, the default
    /// raise threshold.
    pub vote_threshold: Score,
    /// Accusations this node makes, and accepts from one accuser, per
    /// hour. Default 12.
    pub accusations_per_hour: u16,
    /// Least time between two accusations of one subject by this node.
    /// Default 60,000.
    pub accusation_spacing_ms: u64,
    /// How long a voter waits for evidence, and (three times this) an
    /// accuser for votes. Default 10,000.
    pub vote_timeout_ms: u64,
    /// An accusation whose window is further than this from the voter's
    /// clock is stale. Default 60,000.
    pub max_window_skew_ms: u64,
    /// Ballots open at once. Default 64.
    pub max_open_ballots: usize,
}

impl Default for QuorumConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            vote_threshold: Score(9_500),
            accusations_per_hour: 12,
            accusation_spacing_ms: 60_000,
            vote_timeout_ms: 10_000,
            max_window_skew_ms: 60_000,
            max_open_ballots: 64,
        }
    }
}

const HOUR_MS: u64 = 3_600_000;

/// [`crate::features::own_link_loss`] of this node's own report of a
/// window, or of one of the few kept before it, at or above which it makes
/// no accusation from that window: with most of its own links failing
/// probes, the fault is most likely its own host's, and what it sees of
/// its neighbours (lost relays, failed probes) says more about itself than
/// about them. Other reporters of an attacker
/// still accuse it.
pub(crate) const DEGRADED_LINK_LOSS: f64 = 0.2;

/// Accusations remembered as voted on (a replay gets no second vote).
const MAX_DECIDED: usize = 4_096;

/// The reports one window's row of a subject was made from.
#[derive(Debug, Clone)]
pub(crate) struct Basis {
    window: u64,
    relays: Relays,
    /// Report link messages (tag byte and frame), ascending by signer;
    /// hashed only when an accusation is made from them.
    evidence: Vec<Arc<[u8]>>,
}

/// The reference an accusation makes to a held report link message.
fn reference(message: &[u8]) -> Option<EvidenceRef> {
    let (header, _) = envelope::verified_parts(message.get(1..)?).ok()?;
    let signed = envelope::signed_content_of(&message[1..]).ok()?;
    Some(EvidenceRef {
        signer: header.sender,
        position: (header.stamp.epoch, header.stamp.sequence),
        hash: content_hash(signed),
    })
}

/// An accusation this node made, collecting votes.
#[derive(Debug, Clone)]
struct Accusing {
    subject: NodeId,
    frame: Vec<u8>,
    evidence: Vec<(EvidenceRef, Arc<[u8]>)>,
    committee: Committee,
    yes: BTreeMap<NodeId, Vec<u8>>,
    no_seats: u64,
    answered: BTreeSet<NodeId>,
    served: BTreeSet<NodeId>,
    deadline: u64,
}

/// An accusation this node votes on.
#[derive(Debug, Clone)]
struct Ballot {
    accuser: NodeId,
    accusation: Accusation,
    /// Verified report frames, one per evidence reference.
    have: Vec<Option<Arc<[u8]>>>,
    deadline: u64,
    scoring: bool,
    /// Reporters the subject names whose reports this node could not get,
    /// whose reports do not name the subject, or whose links to it did not
    /// span its window: each counts in its own view as a reporter who saw
    /// nothing wrong.
    missing: usize,
    /// Reporters the subject names whose reports neither the evidence nor
    /// this node held, asked for theirs, until `asked_until`.
    asked: Vec<NodeId>,
    asked_until: Option<u64>,
    /// Their reports, as they came.
    named_reports: Vec<Arc<[u8]>>,
    /// An accusation this node has not made yet: its own view is scored
    /// first, and the accusation is signed and sent only if it says yes.
    own_check: bool,
}

impl Ballot {
    /// A ballot with nothing scored or asked for yet.
    fn open(
        accuser: NodeId,
        accusation: Accusation,
        have: Vec<Option<Arc<[u8]>>>,
        deadline: u64,
        own_check: bool,
    ) -> Self {
        Self {
            accuser,
            accusation,
            have,
            deadline,
            scoring: false,
            missing: 0,
            asked: Vec::new(),
            asked_until: None,
            named_reports: Vec::new(),
            own_check,
        }
    }
}

/// Voting state of a node.
#[derive(Debug, Clone, Default)]
pub(crate) struct Voting {
    seats: Option<Seats>,
    basis: BTreeMap<NodeId, Basis>,
    accusing: BTreeMap<[u8; 32], Accusing>,
    last_accused: BTreeMap<NodeId, u64>,
    made: VecDeque<u64>,
    ballots: BTreeMap<[u8; 32], Ballot>,
    taken: BTreeMap<NodeId, VecDeque<u64>>,
    /// Ballots opened per subject in the last hour.
    about: BTreeMap<NodeId, VecDeque<u64>>,
    /// And per (subject, accuser).
    about_by: BTreeMap<(NodeId, NodeId), VecDeque<u64>>,
    decided: BTreeSet<[u8; 32]>,
    decided_order: VecDeque<[u8; 32]>,
    /// This node's last few reports, for members who ask for the one of
    /// an accused window.
    own_reports: VecDeque<OwnReport>,
    /// When the hourly counts were last swept ([`SWEEP_MS`]).
    swept_at: u64,
}

/// One of this node's own reports, kept.
#[derive(Debug, Clone)]
struct OwnReport {
    /// When its window ends, ms.
    end: u64,
    /// [`crate::features::own_link_loss`] of it.
    link_loss: f64,
    /// It, as a [`Message::Report`].
    message: Arc<[u8]>,
}

impl Voting {
    pub(crate) fn new(seats: Option<Seats>) -> Self {
        Self {
            seats,
            ..Self::default()
        }
    }

    pub(crate) fn next_deadline(&self) -> Option<u64> {
        let a = self.accusing.values().map(|a| a.deadline);
        let b = self.ballots.values().map(|b| {
            b.asked_until
                .filter(|_| !b.scoring)
                .unwrap_or(b.deadline)
                .min(b.deadline)
        });
        a.chain(b).min()
    }

    fn decide(&mut self, hash: [u8; 32]) {
        if self.decided.insert(hash) {
            self.decided_order.push_back(hash);
            if self.decided_order.len() > MAX_DECIDED
                && let Some(old) = self.decided_order.pop_front()
            {
                self.decided.remove(&old);
            }
        }
    }
}

/// Keeps only times within the last hour; returns how many remain.
fn within_hour(times: &mut VecDeque<u64>, now: u64) -> usize {
    while times.front().is_some_and(|t| t + HOUR_MS <= now) {
        times.pop_front();
    }
    times.len()
}

/// [`within_hour`] for `key`'s times, dropping the key once none remain:
/// a refused accusation (any subject a rostered sender names) leaves no
/// entry behind.
fn recent<K: Ord>(map: &mut BTreeMap<K, VecDeque<u64>>, key: &K, now: u64) -> usize {
    let Some(times) = map.get_mut(key) else {
        return 0;
    };
    let n = within_hour(times, now);
    if n == 0 {
        map.remove(key);
    }
    n
}

/// How often a node drops the hourly counts whose times have all expired:
/// a lookup drops its own key, but the keys of accusers and subjects never
/// heard of again would otherwise stay for the node's lifetime.
const SWEEP_MS: u64 = 60_000;

/// Drops the keys of `map` with no time left in the hour.
fn sweep<K: Ord>(map: &mut BTreeMap<K, VecDeque<u64>>, now: u64) {
    map.retain(|_, times| within_hour(times, now) > 0);
}

/// Accusations of one subject by one accuser a member takes per hour: the
/// subject's hourly limit (`accusations_per_hour`) then takes more than
/// one Byzantine member to use up.
const PER_ACCUSER_AND_SUBJECT: usize = 3;

/// How long a member waits for the reports of the subject's reporters it
/// asked them for before it scores without them.
const NAMED_REPORTS_WAIT_MS: u64 = 1_500;

/// Own reports kept for members who ask for one of an accused window.
const OWN_REPORTS_KEPT: usize = 4;

/// Yes voters an accuser sends a new certificate to straight away, besides
/// offering it to its neighbours: they sit at random places in the mesh
/// (seats are drawn by hash), so the certificate spreads from that many
/// places at once. Eight at 229 KB each take the accuser's uplink about
/// 0.15 s at 100 Mbit/s; each voter would have fetched its copy anyway.
const CERTIFICATE_SEEDS: usize = 8;

/// The end of `report`'s last sample, in its signer's milliseconds.
fn report_end(report: &Report) -> u64 {
    report.start_ms + u64::from(report.sample_ms) * report.host.len() as u64
}

/// Whether a reporter's report belongs with an accused window ending at
/// `window_ms`: it ends within the two report intervals before, or at
/// most half an interval after (clocks and report phases differ). A later
/// report paired with the subject's of the window would set claims about
/// different seconds against each other, which looks like a lie.
fn aligned(report: &Report, window_ms: u64, interval_ms: u64) -> bool {
    let end = report_end(report);
    end.saturating_add(2 * interval_ms) >= window_ms && end <= window_ms + interval_ms / 2
}

/// Whether a report that this node or the accuser happened to hold is its
/// signer's report of the window: [`aligned`], and ending at most an
/// interval and a quarter (clock skew) before the window does. An older
/// one has a successor that ends within the window, so the signer is asked
/// for its report of the window instead, and its answer need only be
/// [`aligned`]. With every aligned report counted, a forger's views
/// included reports of the seconds before its attack began, and its
/// members voted no on a window its reporters had all seen it attack.
fn current(report: &Report, window_ms: u64, interval_ms: u64) -> bool {
    aligned(report, window_ms, interval_ms)
        && report_end(report).saturating_add(interval_ms + interval_ms / 4) >= window_ms
}

fn decode(frame: &[u8]) -> Option<(Stamp, Report)> {
    let (header, payload) = envelope::verified_parts(frame).ok()?;
    Some((header.stamp, Report::decode_exact(payload).ok()?))
}

impl<C: Crypto> Node<C> {
    fn quorum_on(&self) -> bool {
        self.cfg.quorum.enabled
            && self.cfg.suspicion.enabled
            && self.cfg.quarantine.model != [0; 32]
            && self.voting.seats.is_some()
    }

    /// Remembers the reports `subject`'s row of `window` was made from.
    pub(super) fn note_basis(&mut self, subject: NodeId, window: u64, relays: Relays) {
        if !self.quorum_on() {
            return;
        }
        let mut origins: BTreeSet<NodeId> = self.gossip.observers_of(&subject).collect();
        #[cfg(test)]
        if self.cite_only_own {
            origins.clear();
        }
        origins.insert(subject);
        origins.insert(self.me);
        let has_subject = self.gossip.message(&subject).is_some();
        let evidence: Vec<Arc<[u8]>> = origins
            .into_iter()
            .filter_map(|o| self.gossip.message(&o))
            .collect();
        if evidence.len() > MAX_EVIDENCE || !has_subject {
            self.voting.basis.remove(&subject);
            return;
        }
        self.voting.basis.insert(
            subject,
            Basis {
                window,
                relays,
                evidence,
            },
        );
    }

    /// After a window's scores: accuse `subject` if its suspicion is
    /// raised, this window scored at the threshold, the limits allow, and
    /// this node's own view of it says yes.
    ///
    /// The own view is scored first, as every member scores it (each
    /// reporter's view from its signed report of the window), before
    /// anything is signed or sent. The row can reach the threshold while a
    /// third of the reporters' views do not: at an attack's onset the
    /// reporters whose reports end soon after it saw a second or two of
    /// it (two of a forger's five reporters saw none in quorum-smoke).
    /// Members then vote no, and the accusation costs the spacing (a
    /// minute) and one of the three a member takes per accuser and
    /// subject an hour; withheld, it is tried again from the next window.
    pub(super) fn maybe_accuse(&mut self, subject: NodeId, score: Score, window: u64) {
        if !self.quorum_on()
            || score < self.cfg.quorum.vote_threshold
            || !self.suspicions.is_raised(&subject)
            || self.quarantine.is_enforced(&subject, window)
            || self.voting.accusing.values().any(|a| a.subject == subject)
            || self
                .voting
                .ballots
                .values()
                .any(|b| b.own_check && b.accusation.subject == subject)
            || self
                .voting
                .last_accused
                .get(&subject)
                .is_some_and(|t| t + self.cfg.quorum.accusation_spacing_ms > window)
            || within_hour(&mut self.voting.made, window)
                >= usize::from(self.cfg.quorum.accusations_per_hour)
            || self.next_sequence > self.sequence_limit
        {
            return;
        }
        if self.degraded_in(window) {
            self.stats.accusations_withheld_degraded += 1;
            return;
        }
        let Some(basis) = self
            .voting
            .basis
            .get(&subject)
            .filter(|b| b.window == window)
        else {
            return;
        };
        let Some(evidence) = basis
            .evidence
            .iter()
            .map(|m| reference(m))
            .collect::<Option<Vec<EvidenceRef>>>()
        else {
            return;
        };
        let accusation = Accusation {
            subject,
            window_ms: window,
            score,
            model: self.cfg.quarantine.model,
            relays: basis.relays,
            evidence,
        };
        // Keyed until signed by the hash of its bytes, which no signed
        // content can share.
        let key = content_hash(&accusation.to_bytes());
        let have = basis.evidence.iter().map(|m| Some(m.clone())).collect();
        self.voting.ballots.insert(
            key,
            Ballot::open(
                self.me,
                accusation,
                have,
                window + self.cfg.quorum.vote_timeout_ms,
                true,
            ),
        );
        self.request_replay(key, window);
    }

    /// This node's own view said yes: signs the accusation, sends it to the
    /// committee, and votes on it if it sits there.
    fn accuse(&mut self, ballot: Ballot, replayed: Score, own: Score, now_ms: u64) {
        let accusation = ballot.accusation;
        let (subject, window) = (accusation.subject, accusation.window_ms);
        if self.quarantine.is_enforced(&subject, now_ms)
            || self.voting.accusing.values().any(|a| a.subject == subject)
        {
            return;
        }
        let Some(evidence) = accusation
            .evidence
            .iter()
            .zip(ballot.have)
            .map(|(r, m)| Some((*r, m?)))
            .collect::<Option<Vec<(EvidenceRef, Arc<[u8]>)>>>()
        else {
            return;
        };
        let Ok(frame) = self.seal(Kind::Accusation, window, &accusation.to_bytes()) else {
            return;
        };
        let Ok(signed) = envelope::signed_content_of(&frame) else {
            return;
        };
        let hash = content_hash(signed);
        let committee = self.committee_for(&subject, window);
        self.voting.made.push_back(window);
        self.voting.last_accused.insert(subject, window);
        self.stats.accusations_made += 1;
        let message: Arc<[u8]> = Message::Accuse(&frame).encode().into();
        let members: Vec<NodeId> = committee.members().map(|(id, _)| *id).collect();
        for m in &members {
            if *m != self.me && *m != subject {
                ctx!(self).send_bytes(*m, crate::message::Class::Stream, message.clone());
            }
        }
        ctx!(self).event(Event::Accused {
            subject,
            accusation: hash,
            score: accusation.score,
            committee: members.len(),
            frame: frame.clone().into(),
        });
        let me_sits = committee.seats(&self.me) > 0;
        self.voting.accusing.insert(
            hash,
            Accusing {
                subject,
                frame,
                evidence,
                committee,
                yes: BTreeMap::new(),
                no_seats: 0,
                answered: BTreeSet::new(),
                served: BTreeSet::new(),
                deadline: window + 3 * self.cfg.quorum.vote_timeout_ms,
            },
        );
        if me_sits {
            // The accuser votes on its own accusation like any member, with
            // the view it just scored: its third-party view decides, not
            // the row it accused with.
            self.cast(hash, self.me, subject, Verdict::Yes, replayed, own, now_ms);
        }
    }

    fn committee_for(&self, subject: &NodeId, window: u64) -> Committee {
        let seats = self.voting.seats.unwrap_or(Seats::Whole);
        Committee::of(
            &self.roster,
            seats,
            subject,
            committee_epoch(&self.cfg.quarantine, window),
        )
    }

    /// Signs `payload` as `kind` with the next reserved sequence.
    fn seal(&mut self, kind: Kind, now_ms: u64, payload: &[u8]) -> Result<Vec<u8>, Error> {
        if self.next_sequence > self.sequence_limit {
            self.stats.unreserved_skips += 1;
            return Err(Error::InvalidInput("no reserved sequence".into()));
        }
        let stamp = Stamp {
            epoch: self.epoch,
            sequence: self.next_sequence,
            issued_at_ms: now_ms,
        };
        let frame = self
            .crypto
            .seal(self.roster.mesh_id(), kind, stamp, payload)?;
        self.next_sequence += 1;
        self.stats.signs += 1;
        Ok(frame)
    }

    /// An accusation arrived from `from`.
    pub(super) fn on_accuse(&mut self, from: NodeId, frame: &[u8], now_ms: u64) {
        if !self.quorum_on() {
            return;
        }
        self.stats.verifies += 1;
        let Ok(accused) = open_accusation(&self.roster, frame, &mut self.crypto) else {
            self.count_invalid(from);
            return;
        };
        let a = accused.accusation;
        let hash = accused.hash;
        if accused.accuser != from || a.subject == self.me {
            self.count_invalid(from);
            return;
        }
        if self.voting.decided.contains(&hash) || self.voting.ballots.contains_key(&hash) {
            self.stats.accusations_refused += 1;
            return;
        }
        // As many ballots per subject at a time as it has neighbours to
        // accuse it, one of them per accuser; the hourly limits per
        // accuser, per subject, and per accuser and subject. (With one
        // ballot per subject, the neighbours that see an attack and accuse
        // it in the same second split the committee between them, none
        // reaches two thirds, and they all try again together a minute
        // later: one compromised node was never voted out in
        // quorum-smoke. The subject's hourly limit bounds how often
        // framers can try their victim: without it one was voted out in
        // quorum-smoke. The limit per accuser and subject keeps one
        // Byzantine member from using the subject's up and shielding it.)
        let limit = usize::from(self.cfg.quorum.accusations_per_hour);
        let (mut open, mut mine) = (0, false);
        for b in self.voting.ballots.values() {
            if b.accusation.subject == a.subject {
                open += 1;
                mine |= b.accuser == from;
            }
        }
        let pair = (a.subject, from);
        let subject_full = recent(&mut self.voting.about, &a.subject, now_ms) >= limit
            || recent(&mut self.voting.about_by, &pair, now_ms) >= PER_ACCUSER_AND_SUBJECT;
        let refused = self.committee_for(&a.subject, a.window_ms).seats(&self.me) == 0
            || self.quarantine.is_enforced(&a.subject, now_ms)
            || self.voting.ballots.len() >= self.cfg.quorum.max_open_ballots
            || open >= self.cfg.max_active
            || mine
            || subject_full
            || recent(&mut self.voting.taken, &from, now_ms) >= limit;
        if refused {
            self.stats.accusations_refused += 1;
            return;
        }
        self.voting.taken.entry(from).or_default().push_back(now_ms);
        self.voting
            .about
            .entry(a.subject)
            .or_default()
            .push_back(now_ms);
        self.voting
            .about_by
            .entry(pair)
            .or_default()
            .push_back(now_ms);
        let q = self.cfg.quorum;
        let early = if a.model != self.cfg.quarantine.model {
            Some(Verdict::ModelMismatch)
        } else if a.window_ms.abs_diff(now_ms) > q.max_window_skew_ms {
            Some(Verdict::Stale)
        } else if a.score < q.vote_threshold {
            Some(Verdict::ScoreBelowThreshold)
        } else {
            None
        };
        if let Some(verdict) = early {
            self.cast(hash, from, a.subject, verdict, Score(0), Score(0), now_ms);
            return;
        }
        // What this node holds already counts; the rest is asked for.
        let have: Vec<Option<Arc<[u8]>>> = a
            .evidence
            .iter()
            .map(|r| {
                let m = self.gossip.message(&r.signer)?;
                let signed = envelope::signed_content_of(&m[1..]).ok()?;
                let header = envelope::peek_header(&m[1..]).ok()?;
                ((header.stamp.epoch, header.stamp.sequence) == r.position
                    && content_hash(signed) == r.hash)
                    .then_some(m)
            })
            .collect();
        let wanted = have
            .iter()
            .enumerate()
            .filter(|(_, h)| h.is_none())
            .fold(0u64, |m, (i, _)| m | (1 << i));
        self.stats.ballots_opened += 1;
        self.voting.ballots.insert(
            hash,
            Ballot::open(from, a, have, now_ms + q.vote_timeout_ms, false),
        );
        if wanted == 0 {
            self.request_replay(hash, now_ms);
        } else {
            ctx!(self).send(
                from,
                &Message::EvidenceWanted {
                    accusation: hash,
                    wanted,
                },
            );
        }
    }

    fn count_invalid(&mut self, from: NodeId) {
        super::add16(&mut ctx!(self).link(from).cur.invalid);
        self.stats.invalid += 1;
    }

    /// A committee member asks for the reports of one of our accusations.
    pub(super) fn on_evidence_wanted(&mut self, from: NodeId, hash: [u8; 32], wanted: u64) {
        let Some(acc) = self.voting.accusing.get_mut(&hash) else {
            return;
        };
        if acc.committee.seats(&from) == 0 || !acc.served.insert(from) {
            return;
        }
        let send: Vec<Vec<u8>> = acc
            .evidence
            .iter()
            .enumerate()
            .filter(|(i, _)| wanted & (1 << i) != 0)
            .map(|(_, (_, m))| {
                Message::EvidenceReport {
                    accusation: hash,
                    frame: &m[1..],
                }
                .encode()
            })
            .collect();
        for m in send {
            ctx!(self).send_bytes(from, crate::message::Class::Stream, m.into());
        }
    }

    /// Keeps this node's report just signed, for members who ask for it.
    pub(super) fn keep_own_report(&mut self, report: &Report, frame: &[u8]) {
        let own = &mut self.voting.own_reports;
        if own.len() >= OWN_REPORTS_KEPT {
            own.pop_front();
        }
        own.push_back(OwnReport {
            end: report_end(report),
            link_loss: crate::features::own_link_loss(report),
            message: Message::Report(frame).encode().into(),
        });
    }

    /// Whether this node's own report of `window_ms`, or one of the few
    /// kept before it, shows most of its links failing probes
    /// ([`DEGRADED_LINK_LOSS`]). With five probes a link in a report, a
    /// host losing 30% of its inbound traffic fell under the line in about
    /// one window in thirty, and accused from such windows (19 to 46
    /// accusations a run in `quorum-smoke` and `quorum-1k`); looking back
    /// four reports, none.
    fn degraded_in(&self, window_ms: u64) -> bool {
        let late = window_ms + self.cfg.report_interval_ms() / 2;
        self.voting
            .own_reports
            .iter()
            .filter(|o| o.end <= late)
            .any(|o| o.link_loss >= DEGRADED_LINK_LOSS)
    }

    /// The latest report this node kept that ends by half an interval
    /// after `window_ms`.
    fn own_report_of(&self, window_ms: u64) -> Option<Arc<[u8]>> {
        let late = window_ms + self.cfg.report_interval_ms() / 2;
        self.voting
            .own_reports
            .iter()
            .rev()
            .find(|o| o.end <= late)
            .map(|o| o.message.clone())
    }

    /// A committee member asks for this node's report of an accused window
    /// (its subject names this node as a neighbour): answered with the
    /// latest kept that ends by then, if any; the quorum bucket bounds how
    /// often.
    pub(super) fn on_report_wanted(&mut self, from: NodeId, hash: [u8; 32], window_ms: u64) {
        if !self.quorum_on() {
            return;
        }
        let Some(m) = self.own_report_of(window_ms) else {
            return;
        };
        let bytes = Message::EvidenceReport {
            accusation: hash,
            frame: &m[1..],
        }
        .encode();
        ctx!(self).send_bytes(from, crate::message::Class::Stream, bytes.into());
    }

    /// A report we asked the accuser for.
    pub(super) fn on_evidence_report(
        &mut self,
        from: NodeId,
        hash: [u8; 32],
        frame: &[u8],
        now_ms: u64,
    ) {
        let Some(ballot) = self.voting.ballots.get(&hash) else {
            return;
        };
        let asked = ballot.asked.contains(&from);
        if ballot.accuser != from && !asked {
            return;
        }
        let Ok(header) = envelope::peek_header(frame) else {
            self.count_invalid(from);
            return;
        };
        if asked && header.sender == from {
            self.on_named_report(from, hash, frame, now_ms);
            return;
        }
        let Some(i) = ballot
            .accusation
            .evidence
            .iter()
            .position(|r| r.signer == header.sender)
        else {
            self.count_invalid(from);
            return;
        };
        let r = ballot.accusation.evidence[i];
        if ballot.have[i].is_some() {
            return;
        }
        self.stats.verifies += 1;
        let verified = match self.crypto.open(&self.roster, frame) {
            Ok(v) => {
                v.header().kind == Kind::Telemetry
                    && (v.header().stamp.epoch, v.header().stamp.sequence) == r.position
                    && content_hash(v.signed_content()) == r.hash
                    && Report::decode_exact(v.payload()).is_ok()
            }
            Err(_) => false,
        };
        if !verified {
            self.count_invalid(from);
            return;
        }
        let message: Arc<[u8]> = Message::Report(frame).encode().into();
        let Some(ballot) = self.voting.ballots.get_mut(&hash) else {
            return;
        };
        ballot.have[i] = Some(message);
        if ballot.have.iter().all(Option::is_some) {
            self.request_replay(hash, now_ms);
        }
    }

    /// The report of the accused window of a reporter the subject names,
    /// asked of that reporter (verified here; aligned when scored).
    fn on_named_report(&mut self, from: NodeId, hash: [u8; 32], frame: &[u8], now_ms: u64) {
        let Some(ballot) = self.voting.ballots.get(&hash) else {
            return;
        };
        let known = ballot
            .named_reports
            .iter()
            .any(|m| envelope::peek_header(&m[1..]).is_ok_and(|h| h.sender == from));
        if known || ballot.scoring {
            return;
        }
        self.stats.verifies += 1;
        let verified = self.crypto.open(&self.roster, frame).is_ok_and(|v| {
            v.header().kind == Kind::Telemetry && Report::decode_exact(v.payload()).is_ok()
        });
        if !verified {
            self.count_invalid(from);
            return;
        }
        let Some(ballot) = self.voting.ballots.get_mut(&hash) else {
            return;
        };
        ballot
            .named_reports
            .push(Message::Report(frame).encode().into());
        if ballot.named_reports.len() == ballot.asked.len() {
            self.request_replay(hash, now_ms);
        }
    }

    /// Asks the host to score the accuser's row, replayed, and this node's
    /// own row of the subject from the same reports.
    fn request_replay(&mut self, hash: [u8; 32], now_ms: u64) {
        let Some(ballot) = self.voting.ballots.get_mut(&hash) else {
            return;
        };
        if ballot.scoring {
            return;
        }
        let a = &ballot.accusation;
        let decoded: Vec<(NodeId, (u64, u64), Report)> = ballot
            .have
            .iter()
            .flatten()
            .filter_map(|m| {
                let (stamp, report) = decode(&m[1..])?;
                let header = envelope::peek_header(&m[1..]).ok()?;
                Some((header.sender, (stamp.epoch, stamp.sequence), report))
            })
            .collect();
        let (subject, accuser, window) = (a.subject, ballot.accuser, a.window_ms);
        let relays = a.relays;
        let asked_before = ballot.asked_until.is_some();
        let interval = self.cfg.report_interval_ms();
        let fetched: Vec<(NodeId, (u64, u64), Report)> = ballot
            .named_reports
            .iter()
            .filter_map(|m| {
                let (stamp, report) = decode(&m[1..])?;
                let header = envelope::peek_header(&m[1..]).ok()?;
                aligned(&report, a.window_ms, interval).then_some((
                    header.sender,
                    (stamp.epoch, stamp.sequence),
                    report,
                ))
            })
            .collect();
        let horizon_ms = 2 * self.cfg.report_interval_ms();
        fn held<'r>(
            subject: NodeId,
            relay_of_subject: Relays,
            reports: impl Iterator<Item = &'r (NodeId, (u64, u64), Report)>,
        ) -> Vec<HeldReport<'r>> {
            reports
                .map(|(signer, position, report)| HeldReport {
                    signer: *signer,
                    position: *position,
                    report,
                    relays: if *signer == subject {
                        relay_of_subject
                    } else {
                        Relays::default()
                    },
                })
                .collect()
        }
        let replay = crate::features::extract(&Inputs {
            subject,
            observer: accuser,
            now_ms: window,
            horizon_ms,
            reports: &held(subject, relays, decoded.iter()),
        });
        // This node's own report of the window joins when the evidence
        // lacks it.
        let mine: Vec<(NodeId, (u64, u64), Report)> = if decoded.iter().any(|d| d.0 == self.me) {
            Vec::new()
        } else {
            self.own_report_of(window)
                .and_then(|m| decode(&m[1..]))
                .filter(|(_, r)| aligned(r, window, interval))
                .map(|(s, r)| (self.me, (s.epoch, s.sequence), r))
                .into_iter()
                .collect()
        };
        // Its own view: the subject as each of its reporters sees it, from
        // their signed reports alone (a reporter is a signer that observes
        // the subject and that the subject's own report names). Every
        // reporter the subject names counts, not only those whose reports
        // the accuser chose to reference: this node adds the ones it holds
        // or can get, and those it cannot, or whose reports do not name the
        // subject (yet), count as seeing nothing wrong. So does a neighbour
        // linked to the subject for only part of its window (the subject
        // probes every neighbour every sample, so a sample without a probe
        // is one the link did not span): otherwise whoever keeps joining
        // the subject would be named, briefly, in every report it signs.
        let (mut named, mut brief) = (BTreeSet::new(), 0usize);
        if let Some(d) = decoded.iter().chain(&mine).find(|d| d.0 == subject) {
            for o in &d.2.neighbours {
                if o.samples.iter().all(|s| s.probes_sent > 0) {
                    named.insert(o.neighbour);
                } else if o.neighbour != subject {
                    brief += 1;
                }
            }
        }
        // A cited report that is not its signer's report of the window
        // ([`current`]) does not count for its signer's view: this node's
        // own copy, or the signer's answer, may be. An accuser cites the
        // latest reports it holds, and a neighbour that floods its links'
        // report streams crowds out the reports relayed through it, its
        // neighbours': a 3x forger's or replayer's accusers held only old
        // ones, every member's views of it were empty rows, and its first
        // certificate came a minute or more after the attack began.
        let of_window =
            |d: &&(NodeId, (u64, u64), Report)| d.0 == subject || current(&d.2, window, interval);
        let signers: BTreeSet<NodeId> = decoded
            .iter()
            .filter(of_window)
            .chain(&mine)
            .chain(&fetched)
            .map(|d| d.0)
            .collect();
        let extra: Vec<(NodeId, (u64, u64), Report)> = named
            .iter()
            .filter(|r| **r != subject && !signers.contains(r))
            .filter_map(|r| {
                let m = self.gossip.message(r)?;
                let (stamp, report) = decode(&m[1..])?;
                current(&report, window, interval).then_some((
                    *r,
                    (stamp.epoch, stamp.sequence),
                    report,
                ))
            })
            .collect();
        let all: Vec<&(NodeId, (u64, u64), Report)> = decoded
            .iter()
            .filter(of_window)
            .chain(&mine)
            .chain(&fetched)
            .chain(&extra)
            .collect();
        // Reporters whose reports neither the evidence nor this node holds
        // (the subject may not relay them, as a free-rider does not): ask
        // each for its report of the window, once, and score when they come
        // or after a while.
        let absent: Vec<NodeId> = named
            .iter()
            .filter(|r| **r != subject && !all.iter().any(|d| d.0 == **r))
            .copied()
            .collect();
        if !absent.is_empty() && !asked_before {
            for r in &absent {
                ctx!(self).send(
                    *r,
                    &Message::ReportWanted {
                        accusation: hash,
                        window_ms: window,
                    },
                );
            }
            if let Some(b) = self.voting.ballots.get_mut(&hash) {
                b.asked = absent;
                b.asked_until = Some(now_ms + NAMED_REPORTS_WAIT_MS);
            }
            return;
        }
        let observes = |r: &NodeId| {
            all.iter()
                .any(|d| d.0 == *r && d.2.neighbours.iter().any(|o| o.neighbour == subject))
        };
        let missing = brief
            + named
                .iter()
                .filter(|r| **r != subject && !observes(r))
                .count();
        // Each reporter's view stands alone: its own report and the
        // subject's, nobody else's, so that liars among the reporters move
        // only their own views (shared aggregates over all reporters would
        // carry their lies into every view). Its relay check of the subject
        // is the one it signed in that report: a mimic, whose only harm is
        // the relays it drops, looked honest in every view without it and
        // was never voted out.
        let mut rows = vec![replay];
        let subject_report = all.iter().copied().filter(|d| d.0 == subject);
        for r in &all {
            let (signer, _, report) = r;
            let Some(seen) = report.neighbours.iter().find(|o| o.neighbour == subject) else {
                continue;
            };
            if *signer == subject || !named.contains(signer) {
                continue;
            }
            let pair = subject_report.clone().chain(std::iter::once(*r));
            rows.push(crate::features::extract(&Inputs {
                subject,
                observer: *signer,
                now_ms: window,
                horizon_ms,
                reports: &held(subject, seen.relays, pair),
            }));
        }
        // Every view counts all the subject's reporters, not its one: the
        // model reads a row with a lone reporter as a subject nobody else
        // can vouch for (an eclipsed or Sybil node), and scored four of an
        // honest node's five views at 0.96 to 0.99 (quorum-1k, seed 9108)
        // where the same views with its five reporters score 0.00 to 0.04. The
        // count is the subject's (views made, plus the reporters counted
        // as seeing nothing wrong), or the replayed row's when larger: an
        // accuser can add only signed reports that count.
        #[allow(clippy::cast_precision_loss, reason = "a few dozen reporters")]
        let reporters = ((rows.len() - 1 + missing).min(crate::features::MAX_REPORTERS) as f32)
            .max(rows[0].get("reporters").unwrap_or_default());
        for view in &mut rows[1..] {
            view.set("reporters", reporters);
        }
        if let Some(b) = self.voting.ballots.get_mut(&hash) {
            b.missing = missing;
            b.scoring = true;
        }
        ctx!(self).event(Event::ReplayRequest {
            accusation: hash,
            subject,
            rows,
        });
    }

    /// The own-view score from the scores of the subject's reporters'
    /// views: the highest score that at least two thirds of them reach, so
    /// that liars must be two thirds of a subject's reporters to carry it
    /// (0 with no reporter).
    fn own_view(scores: &[Score]) -> Score {
        let mut s = scores.to_vec();
        s.sort_unstable();
        let need = (2 * s.len()).div_ceil(3);
        s.get(s.len() - need).copied().unwrap_or_default()
    }

    /// Takes back the host's scores for an [`Event::ReplayRequest`], one
    /// per row in order: the replayed row's, then the reporters' rows'.
    /// Signs the vote and sends it to the accuser.
    pub fn handle_replay(&mut self, accusation: [u8; 32], scores: &[Score], now_ms: u64) {
        let Some(ballot) = self.voting.ballots.get(&accusation) else {
            return;
        };
        let Some((&replayed, reporters)) = scores.split_first() else {
            return;
        };
        if !ballot.scoring {
            return;
        }
        let mut reporters = reporters.to_vec();
        reporters.resize(reporters.len() + ballot.missing, Score(0));
        let own = Self::own_view(&reporters);
        let a = &ballot.accusation;
        let verdict = if !a.score.agrees(replayed) {
            Verdict::ReplayDisagrees
        } else if own >= self.cfg.quorum.vote_threshold {
            Verdict::Yes
        } else {
            Verdict::OwnViewBelow
        };
        if ballot.own_check {
            let Some(ballot) = self.voting.ballots.remove(&accusation) else {
                return;
            };
            if verdict == Verdict::Yes {
                self.accuse(ballot, replayed, own, now_ms);
            } else {
                self.stats.accusations_withheld_own_view += 1;
            }
            return;
        }
        let (accuser, subject) = (ballot.accuser, a.subject);
        self.cast(accusation, accuser, subject, verdict, replayed, own, now_ms);
    }

    #[allow(clippy::too_many_arguments, reason = "one vote's fields")]
    fn cast(
        &mut self,
        hash: [u8; 32],
        accuser: NodeId,
        subject: NodeId,
        verdict: Verdict,
        replayed: Score,
        own: Score,
        now_ms: u64,
    ) {
        self.voting.ballots.remove(&hash);
        self.voting.decide(hash);
        let vote = Vote {
            accusation: hash,
            subject,
            verdict,
            replayed,
            own,
        };
        let Ok(frame) = self.seal(Kind::Vote, now_ms, &vote.to_bytes()) else {
            return;
        };
        self.stats.votes_cast += 1;
        ctx!(self).event(Event::VoteCast {
            accuser,
            subject,
            accusation: hash,
            verdict,
            frame: frame.clone().into(),
        });
        if accuser == self.me {
            self.on_vote(self.me, &frame, now_ms);
        } else {
            ctx!(self).send(accuser, &Message::Vote(&frame));
        }
    }

    /// A vote on one of our accusations.
    pub(super) fn on_vote(&mut self, from: NodeId, frame: &[u8], now_ms: u64) {
        self.stats.verifies += 1;
        let Ok((voter, vote)) = open_vote(&self.roster, frame, &mut self.crypto) else {
            self.count_invalid(from);
            return;
        };
        if voter != from {
            self.count_invalid(from);
            return;
        }
        let Some(acc) = self.voting.accusing.get_mut(&vote.accusation) else {
            return;
        };
        let seats = acc.committee.seats(&voter);
        if seats == 0 || vote.subject != acc.subject || voter == acc.subject {
            return;
        }
        if !acc.answered.insert(voter) {
            return;
        }
        self.stats.votes_received += 1;
        if vote.verdict == Verdict::Yes {
            acc.yes.insert(voter, frame.to_vec());
        } else {
            acc.no_seats += seats;
        }
        let yes: u64 = acc.yes.keys().map(|v| acc.committee.seats(v)).sum();
        if acc.committee.is_quorum(yes) {
            self.certify(vote.accusation, now_ms);
        } else if !acc
            .committee
            .is_quorum(acc.committee.total() - acc.no_seats)
        {
            self.close(vote.accusation, false);
        }
    }

    /// Yes votes reached two thirds: make the certificate and hold it.
    fn certify(&mut self, hash: [u8; 32], now_ms: u64) {
        let Some(acc) = self.voting.accusing.remove(&hash) else {
            return;
        };
        let yes = acc.yes.clone().into_values().collect();
        let Ok(votes) = Votes::new(acc.frame.clone(), yes) else {
            return;
        };
        let subject = acc.subject;
        let seats = Self::seats_of(&acc);
        // Everything in it was verified on arrival; verifying the whole
        // once more is what every receiver does, and catches a bug here.
        let checked = votes.verify_by(&self.roster, &self.cfg.quarantine, &mut self.crypto);
        let Ok((_, proven)) = checked else {
            return;
        };
        let cert = Certificate::certify_votes(&self.cfg.quarantine, votes, &proven);
        self.stats.accusations_certified += 1;
        ctx!(self).event(Event::AccusationClosed {
            subject,
            accusation: hash,
            certified: true,
            seats,
        });
        let message: Arc<[u8]> = Message::Certificate(&cert.to_bytes()).encode().into();
        self.hold(cert, proven, message.clone(), None, now_ms);
        let seeds: Vec<NodeId> = acc
            .yes
            .keys()
            .filter(|v| **v != self.me && **v != subject && !self.membership.is_active(v))
            .take(CERTIFICATE_SEEDS)
            .copied()
            .collect();
        for v in seeds {
            ctx!(self).send_bytes(v, crate::message::Class::Stream, message.clone());
        }
    }

    fn close(&mut self, hash: [u8; 32], certified: bool) {
        if let Some(acc) = self.voting.accusing.remove(&hash) {
            let seats = Self::seats_of(&acc);
            ctx!(self).event(Event::AccusationClosed {
                subject: acc.subject,
                accusation: hash,
                certified,
                seats,
            });
        }
    }

    /// (yes, no, total) seats of an accusation's votes so far.
    fn seats_of(acc: &Accusing) -> (u64, u64, u64) {
        let yes = acc.yes.keys().map(|v| acc.committee.seats(v)).sum();
        (yes, acc.no_seats, acc.committee.total())
    }

    /// A certificate about `subject` is held: this node's open
    /// accusations of it have nothing left to do.
    pub(super) fn subject_certified(&mut self, subject: &NodeId) {
        let done: Vec<[u8; 32]> = self
            .voting
            .accusing
            .iter()
            .filter(|(_, a)| a.subject == *subject)
            .map(|(h, _)| *h)
            .collect();
        for hash in done {
            self.close(hash, false);
        }
    }

    /// Accusations this node voted on before a restart (from the host's
    /// store): it does not vote on them again.
    pub fn restore_votes(&mut self, accusations: impl IntoIterator<Item = [u8; 32]>) {
        for hash in accusations {
            self.voting.decide(hash);
        }
    }

    /// Votes "evidence unavailable" on ballots whose evidence did not come,
    /// drops ballots the host never scored, and closes accusations whose
    /// votes did not come.
    pub(super) fn voting_tick(&mut self, now_ms: u64) {
        let waited: Vec<[u8; 32]> = self
            .voting
            .ballots
            .iter()
            .filter(|(_, b)| !b.scoring && b.asked_until.is_some_and(|t| t <= now_ms))
            .map(|(h, _)| *h)
            .collect();
        for hash in waited {
            self.request_replay(hash, now_ms);
        }
        let due: Vec<([u8; 32], NodeId, NodeId, bool)> = self
            .voting
            .ballots
            .iter()
            .filter(|(_, b)| b.deadline <= now_ms)
            .map(|(h, b)| {
                (
                    *h,
                    b.accuser,
                    b.accusation.subject,
                    b.scoring || b.own_check,
                )
            })
            .collect();
        for (hash, accuser, subject, unvoted) in due {
            if unvoted {
                self.voting.ballots.remove(&hash);
            } else {
                self.cast(
                    hash,
                    accuser,
                    subject,
                    Verdict::EvidenceUnavailable,
                    Score(0),
                    Score(0),
                    now_ms,
                );
            }
        }
        let late: Vec<[u8; 32]> = self
            .voting
            .accusing
            .iter()
            .filter(|(_, a)| a.deadline <= now_ms)
            .map(|(h, _)| *h)
            .collect();
        for hash in late {
            self.close(hash, false);
        }
        // Bases of subjects no longer neighbours go.
        let active: BTreeSet<NodeId> = self.membership.active().collect();
        self.voting.basis.retain(|s, _| active.contains(s));
        if now_ms >= self.voting.swept_at + SWEEP_MS {
            let v = &mut self.voting;
            v.swept_at = now_ms;
            sweep(&mut v.taken, now_ms);
            sweep(&mut v.about, now_ms);
            sweep(&mut v.about_by, now_ms);
            // Windows are checked against the spacing a little behind the
            // clock; an hour on, none can be.
            v.last_accused.retain(|_, t| *t + HOUR_MS > now_ms);
        }
    }
}

#[cfg(test)]
pub(crate) fn basis_rows_match(
    node: &Node<impl Crypto>,
    subject: &NodeId,
    row: &Row,
    cfg: &super::Config,
) -> Option<bool> {
    let basis = node.voting.basis.get(subject)?;
    let decoded: Vec<(NodeId, (u64, u64), Report)> = basis
        .evidence
        .iter()
        .filter_map(|m| {
            let r = reference(m)?;
            Some((r.signer, r.position, decode(&m[1..])?.1))
        })
        .collect();
    let held: Vec<HeldReport<'_>> = decoded
        .iter()
        .map(|(signer, position, report)| HeldReport {
            signer: *signer,
            position: *position,
            report,
            relays: if signer == subject {
                basis.relays
            } else {
                Relays::default()
            },
        })
        .collect();
    let replay = crate::features::extract(&Inputs {
        subject: *subject,
        observer: node.me,
        now_ms: basis.window,
        horizon_ms: 2 * cfg.report_interval_ms(),
        reports: &held,
    });
    Some(replay == *row)
}

#[cfg(test)]
mod tests {
    use std::rc::Rc;

    use super::*;
    use crate::crypto::ModelledCrypto;
    use crate::evidence::{Fault, Reason};
    use crate::harness::{Harness, Scorer, T0};

    const MODEL: [u8; 32] = [1; 32];

    /// The rule the honest hosts score with: a subject whose reporters see
    /// it send malformed or rate-limited messages, that sends this
    /// observer invalid ones, or that withholds relays from it.
    fn honest() -> Scorer {
        Rc::new(|_, row: &Row| {
            let worst = [
                "peer_malformed_med",
                "peer_rate_limited_med",
                "own_invalid",
                "own_rate_limited",
            ]
            .iter()
            .map(|c| row.get(c).unwrap_or(0.0))
            .fold(0.0f32, f32::max);
            if worst > 1.0 || row.get("relay_withheld").unwrap_or(0.0) > 0.05 {
                Score(9_500)
            } else {
                Score(200)
            }
        })
    }

    /// A Byzantine host's rule: `victim` scores high whatever its row.
    fn framing(victim: NodeId) -> Scorer {
        let honest = honest();
        Rc::new(move |s, row| {
            if *s == victim {
                Score(9_900)
            } else {
                honest(s, row)
            }
        })
    }

    fn voting_mesh(n: usize, seed: u64) -> Harness<ModelledCrypto> {
        let mut h = Harness::modelled(n, seed);
        h.cfg.suspicion.enabled = true;
        h.cfg.quorum.enabled = true;
        h.cfg.quarantine.model = MODEL;
        h.scorers = (0..n).map(|_| Some(honest())).collect();
        h
    }

    /// Runs to `until`, node `flooder` (if any) sending 5 malformed
    /// messages to each neighbour every 100 ms.
    fn run(h: &mut Harness<ModelledCrypto>, until: u64, flooder: Option<usize>) {
        while h.now < until {
            if let Some(f) = flooder
                && h.is_up(f)
            {
                for j in h.active(f) {
                    for _ in 0..5 {
                        h.inject(h.ids[f], j, &[0xee, 1, 2, 3]);
                    }
                }
            }
            let t = h.now + 100;
            h.run_until(t);
        }
    }

    /// Every voted certificate any node holds: (holder, subject, voters).
    fn voted(h: &Harness<ModelledCrypto>) -> Vec<(usize, usize, Vec<usize>)> {
        let mut out = Vec::new();
        for i in 0..h.ids.len() {
            if !h.is_up(i) {
                continue;
            }
            for e in h.node(i).quarantine().entries() {
                let Reason::Votes(v) = &e.certificate.reason else {
                    continue;
                };
                let voters = v
                    .votes()
                    .map(|f| h.idx(&envelope::peek_header(f).unwrap().sender))
                    .collect();
                out.push((i, h.idx(&e.proven.subject), voters));
            }
        }
        out
    }

    #[test]
    fn a_flooder_is_quarantined_by_a_committee_vote_everywhere() {
        let mut h = voting_mesh(7, 11);
        h.boot_all(50);
        run(&mut h, T0 + 10_000, None);
        assert!(voted(&h).is_empty());
        run(&mut h, T0 + 60_000, Some(6));
        let flooder = h.ids[6];
        for i in 0..6 {
            let e = h
                .node(i)
                .quarantine()
                .get(&flooder)
                .unwrap_or_else(|| panic!("node {i} holds no certificate against the flooder"));
            assert_eq!(e.proven.fault, Fault::Voted);
            assert!(e.enforced);
            assert!(!h.node(i).active_view().contains(&flooder));
            // A third party checks it offline with the roster and policy.
            let mut open = ModelledCrypto::new(h.ids[i]);
            e.certificate
                .verify_by(&h.roster, &h.cfg.quarantine, &mut open)
                .unwrap();
        }
        assert!(voted(&h).iter().all(|(_, s, _)| *s == 6));
        // Honest members replayed every accusation to the accused score.
        for (_, i, e) in &h.log {
            if let Event::VoteCast { verdict, .. } = e {
                assert_ne!(*verdict, Verdict::ReplayDisagrees, "node {i}");
            }
        }
        let accused: u64 = (0..6).map(|i| h.node(i).stats().accusations_made).sum();
        assert!(accused >= 1);
        // Each reporter's view counts all the subject's reporters, as the
        // accuser's row does, not itself alone.
        let mut views = 0;
        for (_, _, e) in &h.log {
            if let Event::ReplayRequest { rows, .. } = e {
                let all = rows[0].get("reporters").unwrap();
                assert!(all > 1.0, "{rows:?}");
                for view in &rows[1..] {
                    assert_eq!(view.get("reporters"), Some(all), "{rows:?}");
                    views += 1;
                }
            }
        }
        assert!(views >= 5, "{views} views scored");
        // What an accusation names is enough to replay its row exactly.
        let mut replayed = 0;
        for i in 0..6 {
            let last = h.log.iter().rev().find_map(|(_, j, e)| match e {
                Event::ScoreRequest { rows, .. } if *j == i => Some(rows.clone()),
                _ => None,
            });
            for (subject, row) in last.unwrap() {
                let same = basis_rows_match(h.node(i), &subject, &row, &h.cfg);
                assert_ne!(same, Some(false), "node {i}, subject {subject}");
                replayed += usize::from(same == Some(true));
            }
        }
        assert!(replayed >= 6);
    }

    #[test]
    fn a_node_that_withholds_relays_is_voted_out_on_the_relay_checks_its_reporters_signed() {
        // The honest rule reads `relay_withheld`: the only column a
        // relay-dropping node (a mimic) moves.
        let n = 40;
        let mut h = voting_mesh(n, 4);
        h.boot_all(100);
        run(&mut h, T0 + 30_000, None);
        assert!(voted(&h).is_empty());
        let dropper = 7;
        h.drop_relays[dropper] = true;
        run(&mut h, T0 + 90_000, None);
        let id = h.ids[dropper];
        let holders = (0..n)
            .filter(|i| *i != dropper && h.node(*i).quarantine().get(&id).is_some())
            .count();
        assert_eq!(holders, n - 1, "{:?}", voted(&h));
        assert!(voted(&h).iter().all(|(_, s, _)| *s == dropper));
        // Members' views of the dropper read each reporter's signed check.
        let (mut views, mut withheld) = (0, 0);
        for (_, _, e) in &h.log {
            if let Event::ReplayRequest { subject, rows, .. } = e
                && *subject == id
            {
                for view in &rows[1..] {
                    views += 1;
                    withheld += usize::from(view.get("relay_withheld").unwrap() > 0.05);
                }
            }
        }
        assert!(withheld * 3 >= views * 2, "{withheld} of {views} views");
        // The accuser sends its certificate to yes voters beyond its
        // neighbours ([`CERTIFICATE_SEEDS`]), so more nodes get it
        // straight from the accuser than the accuser has neighbours.
        let accusers: BTreeSet<usize> = h
            .log
            .iter()
            .filter_map(|(_, i, e)| match e {
                Event::AccusationClosed {
                    subject,
                    certified: true,
                    ..
                } if *subject == id => Some(*i),
                _ => None,
            })
            .collect();
        let straight = accusers
            .iter()
            .map(|a| {
                h.log
                    .iter()
                    .filter(|(_, _, e)| {
                        matches!(e, Event::Quarantined { subject, from: Some(f), .. }
                            if *subject == id && *f == h.ids[*a])
                    })
                    .count()
            })
            .max()
            .unwrap();
        assert!(straight > h.cfg.max_active, "{straight}");
    }

    #[test]
    fn hourly_counts_forget_old_times_and_leave_no_empty_entries() {
        let (a, b) = (NodeId([1; NodeId::LEN]), NodeId([2; NodeId::LEN]));
        let mut map: BTreeMap<NodeId, VecDeque<u64>> = BTreeMap::new();
        // A lookup of a key never stored (a refused accusation) stores none.
        assert_eq!(recent(&mut map, &a, T0), 0);
        assert!(map.is_empty());
        map.insert(b, VecDeque::from([T0, T0 + 1_000]));
        assert_eq!(recent(&mut map, &b, T0 + HOUR_MS), 1);
        assert_eq!(map[&b], VecDeque::from([T0 + 1_000]));
        assert_eq!(recent(&mut map, &b, T0 + 1_000 + HOUR_MS), 0);
        assert!(map.is_empty(), "a key with no time left is dropped");
    }

    #[test]
    fn the_tick_sweeps_hourly_counts_nobody_looks_up_again() {
        let mut h = voting_mesh(3, 5);
        h.boot_all(50);
        let (a, b) = (h.ids[1], h.ids[2]);
        let node = h.nodes[0].as_mut().unwrap();
        let now = T0 + 10 * SWEEP_MS;
        let v = &mut node.voting;
        v.taken
            .insert(a, VecDeque::from([now - HOUR_MS, now - 1_000]));
        v.about.insert(b, VecDeque::from([now - HOUR_MS]));
        v.about_by
            .insert((b, a), VecDeque::from([now - HOUR_MS - 1]));
        v.last_accused.insert(a, now);
        v.last_accused.insert(b, now - HOUR_MS);
        v.swept_at = now - SWEEP_MS / 2;
        node.voting_tick(now);
        assert!(
            !node.voting.about.is_empty(),
            "not yet a minute since the last sweep"
        );
        node.voting_tick(now + SWEEP_MS / 2);
        let v = &node.voting;
        assert_eq!(v.taken[&a], VecDeque::from([now - 1_000]));
        assert!(v.about.is_empty() && v.about_by.is_empty());
        assert_eq!(v.last_accused.keys().collect::<Vec<_>>(), [&a]);
    }

    #[test]
    fn a_lossy_window_among_the_last_kept_reports_marks_the_node_degraded() {
        use crate::telemetry::{HostSample, LinkSample, Observation};
        let mut h = voting_mesh(3, 5);
        h.boot_all(50);
        let node = h.nodes[0].as_mut().unwrap();
        let (interval, sample_ms) = (node.cfg.report_interval_ms(), 1_000);
        // A report ending at `end` whose three links each failed `failed`
        // of their five probes.
        let report = |end: u64, failed: u8| Report {
            start_ms: end - interval,
            sample_ms,
            host: vec![HostSample::default(); 5],
            neighbours: (1..=3)
                .map(|b| Observation {
                    neighbour: NodeId([b; NodeId::LEN]),
                    claimed_epoch: 0,
                    claimed_sequence: 0,
                    relays: Default::default(),
                    samples: (0..5)
                        .map(|k| LinkSample {
                            probes_sent: 1,
                            probes_failed: u8::from(k < failed),
                            ..LinkSample::default()
                        })
                        .collect(),
                })
                .collect(),
        };
        let end = |k: u64| T0 + k * interval;
        node.keep_own_report(&report(end(1), 2), b"one");
        assert!(node.degraded_in(end(1)), "two of five probes failed");
        node.keep_own_report(&report(end(2), 0), b"two");
        assert!(node.degraded_in(end(2)), "the window before was lossy");
        assert!(!node.degraded_in(end(1) - interval), "no report that early");
        for k in 3..=5 {
            node.keep_own_report(&report(end(k), 0), b"healthy");
        }
        // The lossy report is no longer among the kept.
        assert!(!node.degraded_in(end(5)));
    }

    #[test]
    fn quarantine_traffic_is_left_out_of_the_links_counters() {
        // Node 1 sends node 0 thirty messages a second for ten seconds:
        // pings, or certificate requests (quarantine traffic).
        let received = |quarantine: bool| {
            let mut h = voting_mesh(3, 5);
            h.boot_all(50);
            run(&mut h, T0 + 10_000, None);
            let message = if quarantine {
                Message::Wanted {
                    subjects: vec![h.ids[2]],
                }
            } else {
                Message::Ping { nonce: 7 }
            }
            .encode();
            while h.now < T0 + 20_000 {
                for _ in 0..3 {
                    h.inject(h.ids[1], 0, &message);
                }
                let t = h.now + 100;
                h.run_until(t);
            }
            let (_, report) = h.node(0).report_contents(&h.ids[0]).unwrap();
            let link = report
                .neighbours
                .iter()
                .find(|o| o.neighbour == h.ids[1])
                .expect("node 0 observes node 1");
            link.samples
                .iter()
                .map(|s| (u32::from(s.messages_in), s.bytes_in, s.rate_limited))
                .fold((0, 0, 0), |a, s| (a.0 + s.0, a.1 + s.1, a.2 + s.2))
        };
        let (pings, quarantine) = (received(false), received(true));
        assert_eq!((pings.2, quarantine.2), (0, 0), "{pings:?} {quarantine:?}");
        // Five seconds of the report: 150 pings more than the link's own
        // traffic, and no certificate request.
        assert!(pings.0 >= quarantine.0 + 140, "{pings:?} {quarantine:?}");
        assert!(quarantine.0 < 60, "{quarantine:?}");
    }

    #[test]
    fn a_held_report_counts_for_a_window_only_if_no_later_one_ends_in_it() {
        use crate::telemetry::HostSample;
        // Five 1 s samples a report, every 5 s; the window ends at 100 s.
        let ending = |end_ms: u64| Report {
            start_ms: end_ms - 5_000,
            sample_ms: 1_000,
            host: vec![HostSample::default(); 5],
            neighbours: Vec::new(),
        };
        let (window, interval) = (100_000, 5_000);
        // Ends in the window, or a little after (clocks, phases): both.
        for end in [95_001, 100_000, 102_500] {
            assert!(aligned(&ending(end), window, interval), "{end}");
            assert!(current(&ending(end), window, interval), "{end}");
        }
        // Ends up to an interval and a quarter before: a skewed clock's
        // report of the window.
        assert!(current(&ending(93_750), window, interval));
        // Older: a later report ends in the window, so the signer is asked
        // for it; its own answer may still be this one.
        for end in [93_749, 90_000] {
            assert!(aligned(&ending(end), window, interval), "{end}");
            assert!(!current(&ending(end), window, interval), "{end}");
        }
        for end in [89_999, 102_501] {
            assert!(!aligned(&ending(end), window, interval), "{end}");
            assert!(!current(&ending(end), window, interval), "{end}");
        }
    }

    #[test]
    fn an_accuser_whose_own_view_falls_short_withholds_the_accusation() {
        let mut h = voting_mesh(7, 11);
        h.boot_all(50);
        run(&mut h, T0 + 10_000, None);
        // Node 6 sends node 0 alone ten frames a second with broken
        // signatures: node 0's row of it reaches the threshold on node 0's
        // own link, but the other reporters' views of it do not.
        let (odd, target) = (h.ids[6], 0);
        let mut forged = 0u64;
        while h.now < T0 + 60_000 {
            for _ in 0..10 {
                forged += 1;
                let stamp = Stamp {
                    epoch: 1 << 40,
                    sequence: forged,
                    issued_at_ms: h.now,
                };
                let mut frame = envelope::seal(
                    &h.identities[6],
                    h.roster.mesh_id(),
                    Kind::Telemetry,
                    stamp,
                    &[0; 8],
                )
                .unwrap();
                let last = frame.len() - 1;
                frame[last] ^= 1;
                h.inject(odd, target, &Message::Report(&frame).encode());
            }
            let t = h.now + 1_000;
            h.run_until(t);
        }
        let raised = h.log.iter().any(|(_, i, e)| {
            *i == target && matches!(e, Event::SuspicionRaised { subject, .. } if *subject == odd)
        });
        assert!(raised, "node 0 never suspected node 6");
        let stats = h.node(target).stats();
        assert!(stats.accusations_withheld_own_view > 0);
        // Nothing was signed, sent or voted on.
        let accused: u64 = (0..7).map(|i| h.node(i).stats().accusations_made).sum();
        assert_eq!(accused, 0);
        assert!(
            !h.log
                .iter()
                .any(|(_, _, e)| matches!(e, Event::Accused { .. } | Event::VoteCast { .. }))
        );
        assert!(voted(&h).is_empty());
    }

    #[test]
    fn a_node_whose_own_links_fail_probes_accuses_nobody_and_the_others_still_do() {
        let mut h = voting_mesh(7, 11);
        // Node 0's host loses most datagrams sent to it: probe answers too.
        h.inbound_loss[0] = 0.8;
        h.boot_all(50);
        run(&mut h, T0 + 60_000, Some(6));
        let degraded = h.node(0).stats();
        assert_eq!(degraded.accusations_made, 0);
        assert!(degraded.accusations_withheld_degraded > 0);
        let flooder = h.ids[6];
        for i in 1..6 {
            assert!(
                h.node(i).quarantine().get(&flooder).is_some(),
                "node {i} holds no certificate against the flooder"
            );
        }
        assert!(voted(&h).iter().all(|(_, s, _)| *s == 6));
    }

    #[test]
    fn a_member_takes_every_accusation_of_one_moment_against_a_subject() {
        // Several neighbours see the flood in the same window and accuse
        // together. A member still scoring one of their accusations (node 0
        // never gets its host's scores here) takes the others too: with
        // one ballot per subject it refused them, the committee split
        // between the accusers and none reached two thirds.
        let mut h = voting_mesh(7, 12);
        h.scorers[0] = None;
        h.boot_all(0);
        run(&mut h, T0 + 10_000, None);
        run(&mut h, T0 + 40_000, Some(6));
        let accused: Vec<(u64, [u8; 32])> = h
            .log
            .iter()
            .filter_map(|(t, _, e)| match e {
                Event::Accused { accusation, .. } => Some((*t, *accusation)),
                _ => None,
            })
            .collect();
        let first = accused.first().expect("the flooder was accused").0;
        let together: BTreeSet<[u8; 32]> = accused
            .iter()
            .filter(|(t, _)| *t < first + 1_000)
            .map(|(_, a)| *a)
            .collect();
        assert!(together.len() >= 2, "accusations {accused:?}");
        let scoring: BTreeSet<[u8; 32]> = h
            .log
            .iter()
            .filter_map(|(_, i, e)| match e {
                Event::ReplayRequest { accusation, .. } if *i == 0 => Some(*accusation),
                _ => None,
            })
            .collect();
        assert!(
            together.is_subset(&scoring),
            "node 0 scored {} of the {} accusations made together",
            together.intersection(&scoring).count(),
            together.len()
        );
        assert_eq!(h.node(0).stats().accusations_refused, 0);
        // The others' votes certify.
        let flooder = h.ids[6];
        for i in 0..6 {
            assert!(h.node(i).quarantine().get(&flooder).is_some(), "node {i}");
        }
    }

    #[test]
    fn one_members_repeated_accusations_do_not_shield_a_subject() {
        // Node 5 scores the flooder-to-be high from the start and sends
        // every accusation of it 11 more times under fresh sequences. A
        // member that counted accusations only per subject and hour
        // refused the honest accusers once these had used up the
        // subject's hour, and one Byzantine member kept any node from
        // being voted out.
        let mut h = voting_mesh(7, 13);
        h.scorers[5] = Some(framing(h.ids[6]));
        h.byzantine[5].repeat_accusations = 11;
        h.boot_all(50);
        run(&mut h, T0 + 200_000, None);
        let spam = |h: &Harness<ModelledCrypto>| {
            h.log
                .iter()
                .filter(|(_, i, e)| *i == 5 && matches!(e, Event::Accused { .. }))
                .count()
        };
        assert!(spam(&h) >= 3, "node 5 accused {} times", spam(&h));
        let flooder = h.ids[6];
        assert!((0..5).all(|i| h.node(i).quarantine().get(&flooder).is_none()));
        run(&mut h, T0 + 260_000, Some(6));
        for i in 0..5 {
            assert!(h.node(i).quarantine().get(&flooder).is_some(), "node {i}");
        }
        // A member took at most 3 of the spammer's accusations of the
        // subject in the hour.
        let (spammer, sent) = (h.ids[5], 12 * spam(&h));
        let limit = PER_ACCUSER_AND_SUBJECT;
        assert!(sent > limit);
        for i in 0..5 {
            let votes = h
                .log
                .iter()
                .filter(|(_, j, e)| {
                    *j == i && matches!(e, Event::VoteCast { accuser, .. } if *accuser == spammer)
                })
                .count();
            assert!(
                votes <= limit,
                "node {i}: {votes} votes on {sent} accusations"
            );
        }
    }

    /// The Byzantine strategies of the safety test.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum Strategy {
        /// Report that the victim sends malformed messages.
        LieInReports,
        /// Score the victim high: accuse it citing only its report and
        /// the accuser's own, and vote yes against it.
        Accuse,
        /// Score everyone high: accuse every neighbour, vote yes on
        /// everything.
        VoteYes,
        /// Send no accusation, vote, evidence or certificate.
        Withhold,
        /// Accuse the victim and send every vote twice, as made and as a
        /// yes, under one sequence.
        Equivocate,
        /// Lie, accuse citing only its own report and the subject's, vote
        /// yes on everything and equivocate.
        All,
    }

    const STRATEGIES: [Strategy; 6] = [
        Strategy::LieInReports,
        Strategy::Accuse,
        Strategy::VoteYes,
        Strategy::Withhold,
        Strategy::Equivocate,
        Strategy::All,
    ];

    /// What one run of the safety test saw.
    #[derive(Debug, Default)]
    struct Seen {
        /// Certificates held by honest nodes against honest subjects.
        framed: usize,
        /// Honest yes votes against honest subjects.
        honest_yes: usize,
        /// Whether the victim's neighbours within every report interval
        /// (its reporters) were less than two thirds Byzantine.
        few_liars: bool,
    }

    fn safety_run(n: usize, byzantine: &[usize], strategy: Strategy) -> Seen {
        let seed = (n as u64) << 16 | byzantine.iter().fold(0, |m, b| m | 1 << b);
        let mut h = voting_mesh(n, seed);
        let victim = (0..n).find(|i| !byzantine.contains(i)).unwrap();
        let victim_id = h.ids[victim];
        let everyone: Scorer = Rc::new(|_, _| Score(9_900));
        for &b in byzantine {
            let lie = matches!(strategy, Strategy::LieInReports | Strategy::All);
            h.byzantine[b].lie_about = lie.then_some(victim_id);
            h.byzantine[b].withhold = strategy == Strategy::Withhold;
            h.byzantine[b].equivocate_votes =
                matches!(strategy, Strategy::Equivocate | Strategy::All);
            h.byzantine[b].cite_only_own = matches!(strategy, Strategy::Accuse | Strategy::All);
            h.scorers[b] = Some(match strategy {
                Strategy::Accuse | Strategy::Equivocate => framing(victim_id),
                Strategy::VoteYes | Strategy::All => everyone.clone(),
                Strategy::LieInReports | Strategy::Withhold => honest(),
            });
        }
        h.boot_all(50);
        // The victim's reporters: everyone its view held within a report
        // interval (a report names every neighbour of its window), from its
        // first scored windows on, until a quarantine empties its view.
        let mut few_liars = true;
        let mut recent: std::collections::VecDeque<(u64, Vec<usize>)> = Default::default();
        while h.now < T0 + 45_000 {
            let t = h.now + 100;
            h.run_until(t);
            recent.push_back((h.now, h.active(victim)));
            while recent.front().is_some_and(|(at, _)| at + 5_000 < h.now) {
                recent.pop_front();
            }
            let named: BTreeSet<usize> =
                recent.iter().flat_map(|(_, v)| v.iter().copied()).collect();
            let liars = named.iter().filter(|i| byzantine.contains(i)).count();
            if h.now >= T0 + 10_000 && !voted(&h).iter().any(|v| v.1 == victim) {
                few_liars &= 3 * liars < 2 * named.len();
            }
        }
        let honest_node = |i: &usize| !byzantine.contains(i);
        let mut seen = Seen {
            few_liars,
            ..Seen::default()
        };
        for (holder, subject, voters) in voted(&h) {
            if !honest_node(&holder) || !honest_node(&subject) {
                continue;
            }
            seen.framed += 1;
            // The invariant: honest members holding more than a third of
            // the committee's weight voted yes (whole roster, equal
            // weights: the committee is all n members).
            let honest_yes = voters.iter().filter(|v| honest_node(v)).count();
            assert!(
                3 * honest_yes > n,
                "n = {n}, Byzantine {byzantine:?}, {strategy:?}: node {holder} holds a \
                 certificate against honest node {subject} with honest yes votes {honest_yes}"
            );
        }
        for (_, i, e) in &h.log {
            if let Event::VoteCast {
                subject,
                verdict: Verdict::Yes,
                ..
            } = e
                && honest_node(i)
                && honest_node(&h.idx(subject))
            {
                seen.honest_yes += 1;
            }
        }
        seen
    }

    /// Every roster of 4 to 7 equal members, every Byzantine subset holding
    /// less than a third of the weight, every strategy: an honest node is
    /// quarantined only with honest yes votes of more than a third of the
    /// committee; and never at all while honest members' views are clean
    /// (nobody lies in reports) or the liars are under two thirds of the
    /// victim's reporters (each reporter's view stands alone).
    #[test]
    fn honest_nodes_are_quarantined_only_on_honest_members_own_views() {
        let mut runs = 0;
        let mut framed_by_lies = 0;
        for n in 4..=7usize {
            let subsets: Vec<Vec<usize>> = (0u32..1 << n)
                .filter(|m| 3 * m.count_ones() < u32::try_from(n).unwrap())
                .map(|m| (0..n).filter(|i| m & (1 << i) != 0).collect())
                .collect();
            for b in &subsets {
                let strategies: &[Strategy] = if b.is_empty() {
                    &STRATEGIES[..1]
                } else {
                    &STRATEGIES
                };
                for &strategy in strategies {
                    let seen = safety_run(n, b, strategy);
                    runs += 1;
                    let lies =
                        !b.is_empty() && matches!(strategy, Strategy::LieInReports | Strategy::All);
                    if lies && !seen.few_liars {
                        framed_by_lies += usize::from(seen.framed > 0);
                    } else {
                        assert_eq!(
                            (seen.framed, seen.honest_yes),
                            (0, 0),
                            "n = {n}, Byzantine {b:?}, {strategy:?}"
                        );
                    }
                }
            }
        }
        // n = 4, 5, 6: no one or one Byzantine; n = 7: up to two.
        assert_eq!(runs, (1 + 4 * 6) + (1 + 5 * 6) + (1 + 6 * 6) + (1 + 28 * 6));
        eprintln!(
            "{runs} runs; liars holding two thirds or more of the victim's reporters got \
             honest members to vote it out in {framed_by_lies}"
        );
    }
}
