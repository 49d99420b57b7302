//! Dissemination of signed telemetry reports.
//!
//! Who needs a report: every node that has one of the report's *subjects*
//! (its signer and the neighbours it observed) in its active view, because
//! those nodes score the subjects. With symmetric active views that is the
//! signer's neighbours and their neighbours, so a report travels two hops:
//! 1. **push**: the signer sends it to its active view;
//! 2. **relay**: a neighbour of the signer (it has the signer in its active
//!    view now or had it at a sample of this interval, or the report
//!    observes it) sends it on to its own active view and to the peers that
//!    left that view during the interval but are alive (its next report
//!    names them and claims what it relays now), except the signer, the
//!    link it came from and the signer's observed neighbours (the signer
//!    sends to those directly, including ones that left its active view
//!    during the interval but are alive);
//! 3. **pull** (anti-entropy): every `pull_interval` a node sends one
//!    neighbour, in turn, a digest of the newest reports it holds from the
//!    origins that neighbour serves (the neighbour itself, its neighbours
//!    and whoever observed it); the neighbour answers with any newer report it has held
//!    for longer than `pull_grace` (younger ones are probably still in
//!    flight). This repairs what view changes, crashes and partitions lose.
//!    A neighbour whose relay check (5) is pending is passed over.
//!
//! 4. **cross-check** (equivocation): a neighbour that got a report from its
//!    signer directly sends [`Message::Seen`] (origin, position, content
//!    digest) to `seen_fanout` random other neighbours the report names.
//!    One that holds another version under that position (or receives one
//!    later) answers with its version, and the first node detects the
//!    equivocation. Signer's neighbours rarely neighbour each other, so
//!    without this the two versions of a split report seldom meet.
//!
//! 5. **relay check**: when a neighbour's report arrives from it, the
//!    reports it claims to hold that it should have relayed here are
//!    checked; those that are not here and do not come from it within
//!    [`RELAY_GRACE_MS`] plus four round trips count against it
//!    (`features::Relays`; the `relay_withheld` feature sums its last
//!    [`RELAY_HISTORY`] reports' checks).
//!
//! Duplicates are dropped on the unauthenticated header (origin, epoch,
//! sequence) *before* paying for verification; only verified reports are
//! stored, so a forged header cannot shadow a real report. The bandwidth
//! budget this shape gives is worked out in `ARCHITECTURE.md`.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::codec::Codec;
use crate::crypto::Crypto;
use crate::envelope::{self, Kind, Stamp};
use crate::evidence::{Evidence, Proven};
use crate::features::{RELAY_GRACE_MS, RELAY_HISTORY, Relays};
use crate::identity::NodeId;
use crate::membership::Membership;
use crate::message::{
    Class, DigestEntry, MAX_DIGEST, Message, SEEN_DIGEST_LEN, TAG_REPORT, content_digest,
};
use crate::node::{Config, Ctx, Event};
use crate::rng::Rng;
use crate::telemetry::Report;

#[derive(Debug, Clone)]
struct Stored {
    epoch: u64,
    sequence: u64,
    /// The link message (tag byte and frame), shared with every copy sent.
    message: Arc<[u8]>,
    /// When its origin signed it (its clock).
    issued_ms: u64,
    received_ms: u64,
    subjects: Vec<NodeId>,
    /// [`content_digest`] of the signed content.
    digest: [u8; SEEN_DIGEST_LEN],
    /// Nodes this version was sent to because their `Seen` differed (each
    /// at most once).
    answered: Vec<NodeId>,
    /// The relay check made when it arrived from its origin.
    relays: Relays,
    /// What it claims to hold of each neighbour ([`Relays::claims`]).
    claims: Vec<(NodeId, (u64, u64))>,
    /// The relay check went into a feature row already.
    relays_taken: bool,
    /// The checks of the origin's previous reports that went into rows,
    /// newest last (carried from report to report).
    history: RelayHistory,
    /// When its relay check is complete (its claims' grace has passed).
    relays_ready_ms: u64,
}

/// The last [`RELAY_HISTORY`] relay checks of one origin's reports.
#[derive(Debug, Clone, Default)]
struct RelayHistory {
    checks: std::collections::VecDeque<Relays>,
}

impl RelayHistory {
    fn push(&mut self, check: Relays) {
        if self.checks.len() == RELAY_HISTORY {
            self.checks.pop_front();
        }
        self.checks.push_back(check);
    }

    fn total(&self) -> Relays {
        self.checks
            .iter()
            .fold(Relays::default(), |a, c| a.plus(*c))
    }
}

/// A `Seen` about a report position this node did not hold yet.
#[derive(Debug, Clone, Copy)]
struct Echo {
    position: (u64, u64),
    digest: [u8; SEEN_DIGEST_LEN],
    from: NodeId,
}

/// Whether a report signed at `issued_ms` may still be sent on at `now`:
/// it must arrive inside the receiver's time window, or the receiver counts
/// an invalid frame against the honest sender. Reports that travel through
/// pull answers are stored anew at each hop, so without this an old report
/// could be passed along until it lands outside the window.
fn sendable(cfg: &Config, issued_ms: u64, now: u64) -> bool {
    now.saturating_sub(issued_ms).saturating_add(SEND_MARGIN_MS) <= cfg.time_window.max_age_ms
}

/// Transit and clock skew allowed for when sending a report on
/// ([`sendable`]), ms.
const SEND_MARGIN_MS: u64 = 10_000;

/// How late a signer's own report may arrive behind its next one and still
/// be a held-up copy rather than a replay, ms. Two reports can arrive out of
/// order: QUIC resends losses with backing-off timeouts, a reconnect opens a
/// new stream while the old one drains, and the simulator's links deliver
/// each message on its own.
const LATE_COPY_MS: u64 = 15_000;

impl Stored {
    fn position(&self) -> (u64, u64) {
        (self.epoch, self.sequence)
    }

    /// `from` holds a version with `digest` at this position: if it is
    /// another one and `from` is a neighbour the report names, send it ours
    /// (once), so that it holds both.
    fn answer(
        &mut self,
        cfg: &Config,
        ctx: &mut Ctx<'_>,
        from: NodeId,
        digest: &[u8; SEEN_DIGEST_LEN],
        now: u64,
    ) {
        if *digest == self.digest
            || !sendable(cfg, self.issued_ms, now)
            || self.subjects.binary_search(&from).is_err()
            || self.answered.contains(&from)
        {
            return;
        }
        self.answered.push(from);
        ctx.stats().seen_conflicts += 1;
        ctx.send_bytes(from, Class::Stream, self.message.clone());
    }
}

/// A report a neighbour's report claims and the observer does not hold
/// yet ([`Relays`]).
#[derive(Debug, Clone, Copy)]
struct Awaited {
    /// The claiming report: origin and position.
    claimer: NodeId,
    claimer_position: (u64, u64),
    /// The claimed report.
    origin: NodeId,
    position: (u64, u64),
    /// When it counts as missing.
    due_ms: u64,
}

/// Round trips to the claimer added to [`RELAY_GRACE_MS`].
const RELAY_GRACE_RTTS: u64 = 4;
/// The round trip assumed before a probe has measured one, ms.
const UNKNOWN_RTT_MS: u64 = 1_000;

/// Claims awaited at most.
const MAX_AWAITED: usize = 4096;

/// The dissemination state machine. Driven by [`crate::node::Node`].
#[derive(Debug)]
pub(crate) struct Gossip {
    store: BTreeMap<NodeId, Stored>,
    /// Claimed reports not held yet, oldest first.
    awaited: std::collections::VecDeque<Awaited>,
    /// The latest `Seen` per origin ahead of what is held (bounded by
    /// `max_stored_origins`).
    echoes: BTreeMap<NodeId, Echo>,
    /// For each origin whose report was dropped from `store` (retention or
    /// capacity): the position it was at. A report at or before it is a
    /// duplicate, not news, whatever its issue time: without this, a report
    /// forgotten after `retention_ms` was taken, stored and relayed again
    /// until its window closed, and another report at a forgotten position
    /// (an equivocation) was stored as new (both found by the
    /// `node_messages` fuzz target). One entry per rostered origin at most.
    forgotten: BTreeMap<NodeId, (u64, u64)>,
    next_pull: u64,
    cursor: usize,
}

impl Gossip {
    pub(crate) fn new(cfg: &Config, rng: &mut Rng, now: u64) -> Self {
        Self {
            store: BTreeMap::new(),
            awaited: std::collections::VecDeque::new(),
            echoes: BTreeMap::new(),
            forgotten: BTreeMap::new(),
            next_pull: now + rng.between(1, cfg.pull_interval_ms),
            cursor: 0,
        }
    }

    pub(crate) fn frame(&self, origin: &NodeId) -> Option<&[u8]> {
        self.store.get(origin).map(|s| &s.message[1..])
    }

    /// The latest report from `origin` as its link message (tag byte and
    /// frame), shared.
    pub(crate) fn message(&self, origin: &NodeId) -> Option<Arc<[u8]>> {
        self.store.get(origin).map(|s| s.message.clone())
    }

    /// Origins whose latest report observes `subject`.
    pub(crate) fn observers_of<'a>(
        &'a self,
        subject: &'a NodeId,
    ) -> impl Iterator<Item = NodeId> + 'a {
        self.store
            .iter()
            .filter(|(_, s)| s.subjects.binary_search(subject).is_ok())
            .map(|(o, _)| *o)
    }

    /// Whether `origin`'s stored report observes `subject`.
    pub(crate) fn observes(&self, origin: &NodeId, subject: &NodeId) -> bool {
        self.store
            .get(origin)
            .is_some_and(|s| s.subjects.binary_search(subject).is_ok())
    }

    /// Drops what is held from a quarantined origin.
    pub(crate) fn forget(&mut self, origin: &NodeId) {
        self.store.remove(origin);
    }

    pub(crate) fn latest(&self, origin: &NodeId) -> Option<(u64, u64)> {
        self.store.get(origin).map(Stored::position)
    }

    /// The relay checks of `origin`'s last [`RELAY_HISTORY`] reports,
    /// summed. The latest report's check joins them once its grace has
    /// passed (call [`Gossip::settle`] first); each check joins once.
    pub(crate) fn take_relays(&mut self, origin: &NodeId, now: u64) -> Relays {
        let Some(s) = self.store.get_mut(origin) else {
            return Relays::default();
        };
        if !s.relays_taken && now >= s.relays_ready_ms {
            s.relays_taken = true;
            s.history.push(s.relays);
        }
        s.history.total()
    }

    /// `from` relayed `origin`'s report at `position`: the claims of
    /// `from`'s report that this covers are met. Only the claimer's own
    /// copy meets its claim (a copy from elsewhere is the mesh repairing
    /// what it left out).
    fn delivered(&mut self, from: NodeId, origin: NodeId, position: (u64, u64)) {
        if !self.awaited.is_empty() {
            self.awaited
                .retain(|a| a.claimer != from || a.origin != origin || a.position > position);
        }
    }

    /// `origin`'s report at `position`, observing `subjects`, arrived: a
    /// claimer had to relay it here only if it observes the claimer and
    /// not this node (which the origin then sends it to itself).
    fn void_claims(
        &mut self,
        me: NodeId,
        origin: NodeId,
        position: (u64, u64),
        subjects: &[NodeId],
    ) {
        if self.awaited.is_empty() {
            return;
        }
        let observes_me = subjects.binary_search(&me).is_ok();
        self.awaited.retain(|a| {
            a.origin != origin
                || a.position != position
                || !(observes_me || subjects.binary_search(&a.claimer).is_err())
        });
    }

    /// Counts every awaited claim of `claimer`'s latest report as missing
    /// now (older reports' claims are dropped with them).
    fn settle_claims_of(&mut self, claimer: NodeId) {
        let current = self.store.get(&claimer).map(Stored::position);
        let mut missed = 0u16;
        self.awaited.retain(|a| {
            if a.claimer != claimer {
                return true;
            }
            if Some(a.claimer_position) == current {
                missed = missed.saturating_add(1);
            }
            false
        });
        if let Some(s) = self.store.get_mut(&claimer) {
            s.relays.missing = s.relays.missing.saturating_add(missed);
        }
    }

    /// Counts the awaited claims that are due as missing against the report
    /// that made them. Past [`MAX_AWAITED`] the oldest are dropped
    /// uncounted: no one is blamed for what was not checked.
    pub(crate) fn settle(&mut self, now: u64) {
        while self.awaited.len() > MAX_AWAITED {
            self.awaited.pop_front();
        }
        while let Some(a) = self.awaited.front().copied() {
            if a.due_ms > now {
                break;
            }
            self.awaited.pop_front();
            if let Some(s) = self.store.get_mut(&a.claimer)
                && s.position() == a.claimer_position
            {
                s.relays.missing = s.relays.missing.saturating_add(1);
            }
        }
    }

    pub(crate) fn poll_timeout(&self) -> u64 {
        self.next_pull
    }

    fn insert(&mut self, cfg: &Config, me: NodeId, origin: NodeId, stored: Stored) {
        if !self.store.contains_key(&origin) && self.store.len() >= cfg.max_stored_origins {
            let oldest = self
                .store
                .iter()
                .filter(|(o, _)| **o != me)
                .min_by_key(|(o, s)| (s.received_ms, **o))
                .map(|(o, _)| *o);
            if let Some(o) = oldest
                && let Some(dropped) = self.store.remove(&o)
            {
                self.forgotten.insert(o, dropped.position());
            }
        }
        self.forgotten.remove(&origin);
        self.store.insert(origin, stored);
    }

    /// Stores this node's own new report and pushes it to the active view.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn publish(
        &mut self,
        cfg: &Config,
        ctx: &mut Ctx<'_>,
        membership: &Membership,
        me: NodeId,
        stamp: Stamp,
        report: &Report,
        frame: &[u8],
        now: u64,
    ) {
        let message: Arc<[u8]> = Message::Report(frame).encode().into();
        self.insert(
            cfg,
            me,
            me,
            Stored {
                epoch: stamp.epoch,
                sequence: stamp.sequence,
                message: message.clone(),
                issued_ms: stamp.issued_at_ms,
                received_ms: now,
                subjects: report.subjects().collect(),
                digest: content_digest(envelope::signed_content_of(frame).unwrap_or(frame)),
                answered: Vec::new(),
                relays: Relays::default(),
                claims: Vec::new(),
                relays_taken: false,
                relays_ready_ms: now,
                history: RelayHistory::default(),
            },
        );
        // Neighbours that left the active view during the interval but are
        // alive (they went to the passive view) are subjects too and get it
        // directly; failed ones are gone from both views.
        let departed = report
            .subjects()
            .filter(|s| !membership.is_active(s) && membership.passive().contains(s));
        let targets: Vec<NodeId> = membership.active().chain(departed).collect();
        for peer in targets {
            ctx.send_bytes(peer, Class::Stream, message.clone());
        }
    }

    /// Handles a `Report` link message from `from`. Returns verified
    /// evidence when the report and the one held from its origin are two
    /// contents under one (epoch, sequence).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn on_report<C: Crypto>(
        &mut self,
        cfg: &Config,
        ctx: &mut Ctx<'_>,
        crypto: &mut C,
        membership: &Membership,
        me: NodeId,
        from: NodeId,
        message: &Arc<[u8]>,
        now: u64,
    ) -> Option<(Evidence, Proven)> {
        debug_assert_eq!(message.first(), Some(&TAG_REPORT));
        let frame = &message[1..];
        let malformed = |ctx: &mut Ctx<'_>| {
            let link = ctx.link(from);
            link.cur.malformed = link.cur.malformed.saturating_add(1);
            ctx.stats().malformed += 1;
        };
        let invalid = |ctx: &mut Ctx<'_>| {
            let link = ctx.link(from);
            link.cur.invalid = link.cur.invalid.saturating_add(1);
            ctx.stats().invalid += 1;
        };
        let duplicate = |ctx: &mut Ctx<'_>| {
            let link = ctx.link(from);
            link.cur.duplicates = link.cur.duplicates.saturating_add(1);
            ctx.stats().duplicates += 1;
        };
        let Ok(header) = envelope::peek_header(frame) else {
            malformed(ctx);
            return None;
        };
        if header.kind != Kind::Telemetry {
            malformed(ctx);
            return None;
        }
        let origin = header.sender;
        if ctx.blocked.contains(&origin) {
            ctx.stats().quarantined_dropped += 1;
            return None;
        }
        let position = (header.stamp.epoch, header.stamp.sequence);
        if self
            .forgotten
            .get(&origin)
            .is_some_and(|at| position <= *at)
        {
            duplicate(ctx);
            return None;
        }
        let held = self.store.get(&origin);
        if origin == me || held.is_some_and(|s| position <= s.position()) {
            // The same position with other signed content is either a
            // forgery (its signature fails: counted against the link) or
            // an equivocation by the origin (evidence). Same content is a
            // plain duplicate, found without verifying anything.
            if let Some(s) = held.filter(|s| position == s.position()) {
                let stored = &s.message[1..];
                let differs = envelope::signed_content_of(frame).ok()
                    != envelope::signed_content_of(stored).ok();
                if differs {
                    ctx.stats().verifies += 2;
                    let found = Evidence::equivocation_proven(ctx.roster, stored, frame, crypto);
                    if found.is_err() {
                        invalid(ctx);
                    }
                    return found.ok();
                }
            }
            let replayed = from == origin
                && held.is_some_and(|s| position < s.position())
                && now.saturating_sub(header.stamp.issued_at_ms) > LATE_COPY_MS;
            self.delivered(from, origin, position);
            if replayed {
                // The signer itself re-sent a report older than one held,
                // later than any held-up copy arrives: a replay (what a
                // replay window refuses), not gossip redundancy.
                invalid(ctx);
                return None;
            }
            duplicate(ctx);
            return None;
        }
        if cfg
            .time_window
            .check(header.stamp.issued_at_ms, now)
            .is_err()
        {
            invalid(ctx);
            return None;
        }
        ctx.stats().verifies += 1;
        let Ok(verified) = crypto.open(ctx.roster, frame) else {
            invalid(ctx);
            return None;
        };
        let Ok(report) = Report::decode_exact(verified.payload()) else {
            malformed(ctx);
            return None;
        };
        if report.subjects().any(|s| s == origin) {
            malformed(ctx);
            return None;
        }
        let subjects: Vec<NodeId> = report.subjects().collect();
        // First hop: relay when the origin is a neighbour (now or earlier
        // in this interval, which the next report names) or observed us,
        // to the active view and to the peers that left it during this
        // interval (this node's next report names them and claims the
        // reports it relays now).
        if sendable(cfg, header.stamp.issued_at_ms, now)
            && (membership.is_active(&origin)
                || subjects.binary_search(&me).is_ok()
                || ctx.named_in_next_report(&origin))
        {
            let departed = ctx.departed(membership);
            for q in membership.active().chain(departed) {
                if q != origin && q != from && subjects.binary_search(&q).is_err() {
                    ctx.send_bytes(q, Class::Stream, message.clone());
                    ctx.stats().reports_relayed += 1;
                }
            }
        }
        let digest = content_digest(verified.signed_content());
        // This report may be one that `from`'s report claimed, or one a
        // claimer did not have to relay here after all.
        self.settle(now);
        self.delivered(from, origin, position);
        self.void_claims(me, origin, position, &subjects);
        let mut relays = Relays::default();
        // A relay lost on the way is resent after about two round trips
        // (one with QUIC's probe timeout on a quiet link): allow one.
        let grace =
            RELAY_GRACE_MS + RELAY_GRACE_RTTS * ctx.link(from).rtt_ms().unwrap_or(UNKNOWN_RTT_MS);
        if from == origin {
            self.cross_check(cfg, ctx, me, origin, header.stamp, digest, &subjects);
            // Only a neighbour linked to this node for its whole report
            // interval owed it every relay its report claims.
            let linked = membership.active_since(&origin).is_some_and(|t| {
                t.saturating_add(cfg.report_interval_ms() + RELAY_GRACE_MS) <= now
            });
            let prior = self.store.get(&origin).map_or(&[][..], |s| &s.claims);
            let due = if !linked {
                crate::features::Due::default()
            } else {
                Relays::due(&me, &origin, &report, prior, |n| {
                    self.store
                        .get(n)
                        .map(|s| (s.position(), s.subjects.as_slice()))
                })
            };
            relays.claimed = due.claimed;
            self.awaited
                .extend(due.missing.into_iter().map(|(n, at)| Awaited {
                    claimer: origin,
                    claimer_position: position,
                    origin: n,
                    position: at,
                    due_ms: now + grace,
                }));
        }
        let mut stored = Stored {
            epoch: header.stamp.epoch,
            sequence: header.stamp.sequence,
            message: message.clone(),
            issued_ms: header.stamp.issued_at_ms,
            received_ms: now,
            subjects,
            digest,
            answered: Vec::new(),
            relays,
            claims: Relays::claims(&report),
            relays_taken: false,
            relays_ready_ms: now + grace,
            history: self
                .store
                .get_mut(&origin)
                .map(|s| std::mem::take(&mut s.history))
                .unwrap_or_default(),
        };
        // A `Seen` of another version may have come first (one about a
        // later position stays for when that one arrives).
        if self
            .echoes
            .get(&origin)
            .is_some_and(|e| e.position <= stored.position())
            && let Some(echo) = self.echoes.remove(&origin)
            && echo.position == stored.position()
        {
            stored.answer(cfg, ctx, echo.from, &echo.digest, now);
        }
        self.insert(cfg, me, origin, stored);
        ctx.stats().reports_received += 1;
        ctx.event(Event::ReportReceived {
            origin,
            stamp: header.stamp,
            from,
        });
        None
    }

    /// Tells `seen_fanout` random other neighbours named by `origin`'s
    /// report which version of it came from `origin` directly.
    #[allow(clippy::too_many_arguments)]
    fn cross_check(
        &self,
        cfg: &Config,
        ctx: &mut Ctx<'_>,
        me: NodeId,
        origin: NodeId,
        stamp: Stamp,
        digest: [u8; SEEN_DIGEST_LEN],
        subjects: &[NodeId],
    ) {
        let mut others: Vec<NodeId> = subjects
            .iter()
            .copied()
            .filter(|s| *s != me && ctx.admissible(s))
            .collect();
        ctx.rng.shuffle(&mut others);
        let seen = Message::Seen {
            origin,
            epoch: stamp.epoch,
            sequence: stamp.sequence,
            digest,
        };
        for q in others.into_iter().take(cfg.seen_fanout) {
            ctx.send(q, &seen);
            ctx.stats().seen_sent += 1;
        }
    }

    /// `from` got `origin`'s report at `position` with content `digest`.
    /// If this node holds another version there, it sends it to `from`
    /// (once per node, and only to nodes the report names: the origin's
    /// neighbours, who legitimately received it first-hand); if it holds
    /// nothing that recent yet, it remembers the claim for when it does.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn on_seen(
        &mut self,
        cfg: &Config,
        ctx: &mut Ctx<'_>,
        me: NodeId,
        from: NodeId,
        origin: NodeId,
        position: (u64, u64),
        digest: [u8; SEEN_DIGEST_LEN],
        now: u64,
    ) {
        if origin == me || origin == from || ctx.blocked.contains(&origin) {
            return;
        }
        match self.store.get_mut(&origin) {
            Some(s) if s.position() == position => s.answer(cfg, ctx, from, &digest, now),
            Some(s) if s.position() > position => {}
            _ => {
                if !self.echoes.contains_key(&origin)
                    && self.echoes.len() >= cfg.max_stored_origins
                    && let Some(first) = self.echoes.keys().next().copied()
                {
                    self.echoes.remove(&first);
                }
                self.echoes.insert(
                    origin,
                    Echo {
                        position,
                        digest,
                        from,
                    },
                );
            }
        }
    }

    /// Answers a pull digest from `from` with the newer reports this node
    /// serves it: its own and its active neighbours'.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn on_digest(
        &mut self,
        cfg: &Config,
        ctx: &mut Ctx<'_>,
        membership: &Membership,
        me: NodeId,
        from: NodeId,
        entries: &[DigestEntry],
        now: u64,
    ) {
        let held: BTreeMap<NodeId, (u64, u64)> = entries
            .iter()
            .map(|e| (e.origin, (e.epoch, e.sequence)))
            .collect();
        let observed_me: Vec<NodeId> = self
            .store
            .iter()
            .filter(|(_, s)| s.subjects.binary_search(&me).is_ok())
            .map(|(o, _)| *o)
            .collect();
        let mut serves: Vec<NodeId> = std::iter::once(me)
            .chain(membership.active())
            .chain(observed_me)
            .collect();
        serves.sort_unstable();
        serves.dedup();
        for origin in serves {
            if origin == from {
                continue;
            }
            let Some(s) = self.store.get(&origin) else {
                continue;
            };
            if now.saturating_sub(s.received_ms) < cfg.pull_grace_ms
                || !sendable(cfg, s.issued_ms, now)
                || held.get(&origin).is_some_and(|p| *p >= s.position())
            {
                continue;
            }
            ctx.send_bytes(from, Class::Stream, s.message.clone());
            ctx.stats().reports_relayed += 1;
        }
    }

    /// Pull round and retention.
    pub(crate) fn tick(
        &mut self,
        cfg: &Config,
        ctx: &mut Ctx<'_>,
        membership: &Membership,
        me: NodeId,
        now: u64,
    ) {
        if now < self.next_pull {
            return;
        }
        self.next_pull = if self.next_pull + cfg.pull_interval_ms > now {
            self.next_pull + cfg.pull_interval_ms
        } else {
            now + cfg.pull_interval_ms
        };
        let forgotten = &mut self.forgotten;
        self.store.retain(|o, s| {
            let keep = *o == me || now.saturating_sub(s.received_ms) < cfg.retention_ms;
            if !keep {
                forgotten.insert(*o, s.position());
            }
            keep
        });
        let active: Vec<NodeId> = membership.active().collect();
        if active.is_empty() {
            return;
        }
        // A peer whose report's claims are still awaited is passed over
        // (it comes round again next time): what it sent in answer to a
        // pull could not be told from a relay. With every peer waiting,
        // the next in turn is pulled and its claims are decided now.
        let waiting = |p: &NodeId| self.awaited.iter().any(|a| a.claimer == *p);
        let turn = self.cursor % active.len();
        let skip = (0..active.len())
            .find(|i| !waiting(&active[(turn + i) % active.len()]))
            .unwrap_or(0);
        let peer = active[(turn + skip) % active.len()];
        self.cursor = self.cursor.wrapping_add(1 + skip);
        let peer_subjects: &[NodeId] = self.store.get(&peer).map_or(&[], |p| &p.subjects);
        let serves_peer = |origin: &NodeId, s: &Stored| {
            *origin == peer
                || s.subjects.binary_search(&peer).is_ok()
                || peer_subjects.binary_search(origin).is_ok()
        };
        let entries: Vec<DigestEntry> = self
            .store
            .iter()
            .filter(|(o, s)| **o != me && serves_peer(o, s))
            .take(MAX_DIGEST)
            .map(|(o, s)| DigestEntry {
                origin: *o,
                epoch: s.epoch,
                sequence: s.sequence,
            })
            .collect();
        // What the peer sends from now on may answer this pull rather
        // than relay: its pending claims (if every peer had some) are
        // decided now.
        self.settle_claims_of(peer);
        ctx.send(peer, &Message::Digest { entries });
    }
}
