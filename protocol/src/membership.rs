//! Membership: who a node's neighbours are, and whether they are alive.
//!
//! Views follow HyParView (Leitão, Pereira, Rodrigues, DSN 2007): a small
//! symmetric *active view* of neighbours the node exchanges traffic with and
//! probes, and a larger *passive view* of candidates kept fresh by periodic
//! shuffles and used to replace neighbours that fail or leave. Joins spread by
//! random walks (`ForwardJoin`).
//!
//! Failure detection follows SWIM (Das, Gupta, Motivala, DSN 2002) with two
//! Lifeguard (Dadgar et al., 2018) ideas: every round a node pings each
//! active neighbour; an unanswered ping is retried through other neighbours
//! (`PingReq`), then the neighbour is *suspected*, and it is declared failed
//! only if nothing at all is heard from it for the suspicion timeout. Every
//! timeout is multiplied by `1 + local health`, where local health rises when
//! the node sees its own timers fire late (it is overloaded, so missing
//! answers are likely its own fault) and decays while it keeps up. A slow
//! node therefore waits longer before accusing anyone.
//!
//! Only rostered ids enter either view; anything else in a message is
//! ignored.

use std::collections::BTreeMap;

use crate::identity::NodeId;
use crate::message::Message;
use crate::node::{Config, Ctx, DownReason, Event};

/// The probe state of one active neighbour.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Probe {
    Idle,
    Direct {
        nonce: u64,
        sent_ms: u64,
        deadline: u64,
    },
    Indirect {
        nonce: u64,
        deadline: u64,
    },
}

#[derive(Debug, Clone)]
struct ActivePeer {
    probe: Probe,
    suspect_since: Option<u64>,
    /// When it joined the active view.
    since: u64,
}

/// A probe this node runs on behalf of a `PingReq` requester.
#[derive(Debug, Clone, Copy)]
struct Relay {
    requester: NodeId,
    target: NodeId,
    their_nonce: u64,
    deadline: u64,
}

/// At most this many relayed probes are outstanding (a flood of `PingReq`
/// cannot make a node probe the whole mesh).
const MAX_RELAYS: usize = 64;

/// A neighbour stays at least this long before a newcomer can displace it.
/// A full view displaces its youngest neighbour for a newcomer, so this
/// bounds how fast that slot turns over: someone who keeps joining a node
/// (from many identities) adds at most one transient neighbour to each of
/// its reports, and every neighbour in a report is one of its reporters.
const TENURE_MS: u64 = 5_000;

/// A node forwards at most one join per this interval. A join is a
/// newcomer's, so honest ones are rare; repeated joins (someone trying to
/// crowd a node's view) would otherwise walk on and displace neighbours all
/// over the mesh.
const FORWARD_JOIN_INTERVAL_MS: u64 = 10_000;

/// The membership state machine. Driven by [`crate::node::Node`].
#[derive(Debug)]
pub(crate) struct Membership {
    me: NodeId,
    active: BTreeMap<NodeId, ActivePeer>,
    passive: Vec<NodeId>,
    /// A `Neighbor` request in flight: (peer, deadline).
    pending: Option<(NodeId, u64)>,
    /// A `Join` in flight: (contact, deadline).
    joining: Option<(NodeId, u64)>,
    relays: BTreeMap<u64, Relay>,
    /// When this node last forwarded a join.
    forwarded_join_at: Option<u64>,
    /// Lifeguard's local health multiplier.
    health: u32,
    late_this_round: bool,
    next_probe: u64,
    next_shuffle: u64,
    left: bool,
}

impl Membership {
    pub(crate) fn new(me: NodeId, cfg: &Config, ctx: &mut Ctx<'_>, now: u64) -> Self {
        Self {
            me,
            active: BTreeMap::new(),
            passive: Vec::new(),
            pending: None,
            joining: None,
            relays: BTreeMap::new(),
            forwarded_join_at: None,
            health: 0,
            late_this_round: false,
            next_probe: now + ctx.rng.between(1, cfg.probe_interval_ms),
            next_shuffle: now + ctx.rng.between(1, cfg.shuffle_interval_ms),
            left: false,
        }
    }

    /// The active view, ascending.
    pub(crate) fn active(&self) -> impl Iterator<Item = NodeId> + '_ {
        self.active.keys().copied()
    }

    pub(crate) fn is_active(&self, id: &NodeId) -> bool {
        self.active.contains_key(id)
    }

    /// When `id` joined the active view (it is in it).
    pub(crate) fn active_since(&self, id: &NodeId) -> Option<u64> {
        self.active.get(id).map(|p| p.since)
    }

    pub(crate) fn passive(&self) -> &[NodeId] {
        &self.passive
    }

    pub(crate) fn health(&self) -> u32 {
        self.health
    }

    pub(crate) fn is_suspected(&self, id: &NodeId) -> bool {
        self.active
            .get(id)
            .is_some_and(|p| p.suspect_since.is_some())
    }

    fn scale(&self, ms: u64) -> u64 {
        ms.saturating_mul(1 + u64::from(self.health))
    }

    /// Asks a random rostered member to take this node in.
    pub(crate) fn join(&mut self, cfg: &Config, ctx: &mut Ctx<'_>, now: u64) {
        self.left = false;
        let n = ctx.roster.len();
        if n < 2 {
            return;
        }
        // Rejection sampling over the roster: another member that is not
        // quarantined. Bounded, in case every other member is.
        let mut contact = None;
        for _ in 0..4 * n {
            let i = ctx.rng.index(n);
            let Some(m) = ctx.roster.members().nth(i) else {
                continue;
            };
            let id = m.public.id();
            if id != self.me && ctx.admissible(&id) {
                contact = Some(id);
                break;
            }
        }
        let Some(contact) = contact else {
            return;
        };
        self.joining = Some((contact, now + cfg.join_timeout_ms));
        ctx.send(contact, &Message::Join);
    }

    /// Leaves the mesh: tells every neighbour, forgets the views.
    pub(crate) fn leave(&mut self, ctx: &mut Ctx<'_>) {
        for peer in std::mem::take(&mut self.active).into_keys() {
            ctx.send(peer, &Message::Disconnect { alive: false });
            ctx.event(Event::NeighbourDown {
                peer,
                reason: DownReason::Left,
            });
        }
        self.passive.clear();
        self.pending = None;
        self.joining = None;
        self.left = true;
    }

    /// Drops a quarantined peer from both views and any request in flight.
    /// It is not told: nothing more is sent to it.
    pub(crate) fn evict(&mut self, ctx: &mut Ctx<'_>, id: NodeId) {
        if self.active.remove(&id).is_some() {
            ctx.event(Event::NeighbourDown {
                peer: id,
                reason: DownReason::Quarantined,
            });
        }
        self.passive.retain(|p| *p != id);
        if self.pending.is_some_and(|(p, _)| p == id) {
            self.pending = None;
        }
        if self.joining.is_some_and(|(p, _)| p == id) {
            self.joining = None;
        }
    }

    /// Any authenticated message from `from` is evidence that it is alive.
    pub(crate) fn heard_from(&mut self, from: NodeId, ctx: &mut Ctx<'_>) {
        if let Some(p) = self.active.get_mut(&from)
            && p.suspect_since.take().is_some()
        {
            ctx.event(Event::Refuted(from));
        }
    }

    fn add_passive(&mut self, cfg: &Config, ctx: &mut Ctx<'_>, id: NodeId) {
        if id == self.me
            || self.active.contains_key(&id)
            || self.passive.contains(&id)
            || !ctx.admissible(&id)
        {
            return;
        }
        if self.passive.len() >= cfg.max_passive {
            let i = ctx.rng.index(self.passive.len());
            self.passive.swap_remove(i);
        }
        self.passive.push(id);
    }

    /// Puts `peer` in the active view. A full view makes room by evicting
    /// its youngest neighbour if that one has been there [`TENURE_MS`], and
    /// otherwise refuses `peer` and tells it so (`Disconnect`), in case it
    /// counts this node as its neighbour. HyParView evicts a random
    /// neighbour, so anyone who keeps joining a node soon holds its whole
    /// view (an eclipse, which would make its accusers its only reporters);
    /// evicting the youngest, repeated joins only displace each other and
    /// the settled neighbours stay. With `notify`, tells `peer` to add this
    /// node too (`Connect`). Returns whether `peer` is in the view.
    fn add_active(
        &mut self,
        cfg: &Config,
        ctx: &mut Ctx<'_>,
        peer: NodeId,
        notify: bool,
        now: u64,
    ) -> bool {
        if peer == self.me || !ctx.admissible(&peer) || self.left {
            return false;
        }
        if self.active.contains_key(&peer) {
            if notify {
                ctx.send(peer, &Message::Connect);
            }
            return true;
        }
        if self.active.len() >= cfg.max_active {
            // The youngest; among equals the highest id (deterministic).
            let youngest = self
                .active
                .iter()
                .max_by_key(|(id, p)| (p.since, **id))
                .map(|(id, p)| (*id, p.since));
            let Some((victim, _)) =
                youngest.filter(|(_, since)| now >= since.saturating_add(TENURE_MS))
            else {
                ctx.send(peer, &Message::Disconnect { alive: true });
                return false;
            };
            self.active.remove(&victim);
            ctx.send(victim, &Message::Disconnect { alive: true });
            ctx.event(Event::NeighbourDown {
                peer: victim,
                reason: DownReason::Replaced,
            });
            self.add_passive(cfg, ctx, victim);
        }
        self.passive.retain(|p| *p != peer);
        self.active.insert(
            peer,
            ActivePeer {
                probe: Probe::Idle,
                suspect_since: None,
                since: now,
            },
        );
        if notify {
            ctx.send(peer, &Message::Connect);
        }
        ctx.event(Event::NeighbourUp(peer));
        ctx.share_certificates(peer);
        true
    }

    fn random_active_except(&self, ctx: &mut Ctx<'_>, except: &[NodeId]) -> Option<NodeId> {
        let candidates: Vec<NodeId> = self
            .active
            .keys()
            .filter(|id| !except.contains(id))
            .copied()
            .collect();
        ctx.rng.choose(&candidates).copied()
    }

    /// Handles a membership or probe message from an authenticated,
    /// rostered peer.
    pub(crate) fn handle(
        &mut self,
        cfg: &Config,
        ctx: &mut Ctx<'_>,
        from: NodeId,
        msg: &Message<'_>,
        now: u64,
    ) {
        match msg {
            Message::Join => {
                // A refused join goes no further.
                if self.left || !self.add_active(cfg, ctx, from, true, now) {
                    return;
                }
                if self
                    .forwarded_join_at
                    .is_some_and(|t| now < t.saturating_add(FORWARD_JOIN_INTERVAL_MS))
                {
                    return;
                }
                self.forwarded_join_at = Some(now);
                let others: Vec<NodeId> = self
                    .active
                    .keys()
                    .filter(|p| **p != from)
                    .copied()
                    .collect();
                for q in others {
                    ctx.send(
                        q,
                        &Message::ForwardJoin {
                            joiner: from,
                            ttl: cfg.active_walk_len,
                        },
                    );
                }
            }
            Message::ForwardJoin { joiner, ttl } => {
                let joiner = *joiner;
                // A walk for a stranger goes no further than here.
                if joiner == self.me || self.left || !ctx.admissible(&joiner) {
                    return;
                }
                if *ttl == 0 || self.active.len() <= 1 {
                    self.add_active(cfg, ctx, joiner, true, now);
                    return;
                }
                if *ttl == cfg.passive_walk_len {
                    self.add_passive(cfg, ctx, joiner);
                }
                match self.random_active_except(ctx, &[from, joiner]) {
                    Some(next) => ctx.send(
                        next,
                        &Message::ForwardJoin {
                            joiner,
                            ttl: ttl - 1,
                        },
                    ),
                    None => {
                        self.add_active(cfg, ctx, joiner, true, now);
                    }
                }
            }
            Message::Connect => {
                if self.joining.is_some_and(|(c, _)| c == from) {
                    self.joining = None;
                }
                self.add_active(cfg, ctx, from, false, now);
            }
            Message::Neighbor { high_priority } => {
                let accepted = !self.left
                    && (*high_priority || self.active.len() < cfg.max_active)
                    && self.add_active(cfg, ctx, from, false, now);
                ctx.send(from, &Message::NeighborReply { accepted });
            }
            Message::NeighborReply { accepted } => {
                if self.pending.is_some_and(|(p, _)| p == from) {
                    self.pending = None;
                    if *accepted {
                        self.add_active(cfg, ctx, from, false, now);
                    }
                }
            }
            Message::Disconnect { alive } => {
                if self.active.remove(&from).is_some() {
                    ctx.event(Event::NeighbourDown {
                        peer: from,
                        reason: if *alive {
                            DownReason::Disconnected
                        } else {
                            DownReason::Left
                        },
                    });
                }
                if *alive {
                    self.add_passive(cfg, ctx, from);
                } else {
                    self.passive.retain(|p| *p != from);
                }
                // The contact of a join refused it (its view was full and
                // settled): try another one at once.
                if self.joining.is_some_and(|(c, _)| c == from) {
                    self.joining = None;
                    if self.active.is_empty() {
                        self.join(cfg, ctx, now);
                        return;
                    }
                }
                self.refill(cfg, ctx, now);
            }
            Message::Shuffle { origin, ttl, nodes } => {
                let origin = *origin;
                // Answered (and passed on) only for a member: a shuffle
                // naming a stranger as its origin would have this node
                // send its passive view to an id on no roster.
                if origin == self.me || !ctx.admissible(&origin) {
                    return;
                }
                if *ttl > 1
                    && self.active.len() > 1
                    && let Some(next) = self.random_active_except(ctx, &[from, origin])
                {
                    ctx.send(
                        next,
                        &Message::Shuffle {
                            origin,
                            ttl: ttl - 1,
                            nodes: nodes.clone(),
                        },
                    );
                    return;
                }
                let mut sample = self.passive.clone();
                ctx.rng.shuffle(&mut sample);
                sample.truncate(nodes.len());
                ctx.send(origin, &Message::ShuffleReply { nodes: sample });
                for id in nodes {
                    self.add_passive(cfg, ctx, *id);
                }
            }
            Message::ShuffleReply { nodes } => {
                for id in nodes {
                    self.add_passive(cfg, ctx, *id);
                }
            }
            Message::Ping { nonce } => ctx.send(from, &Message::Ack { nonce: *nonce }),
            Message::Ack { nonce } => self.on_ack(ctx, from, *nonce, now),
            Message::PingReq { target, nonce } => {
                if self.relays.len() >= MAX_RELAYS || !ctx.admissible(target) {
                    return;
                }
                let mine = ctx.rng.next_u64();
                self.relays.insert(
                    mine,
                    Relay {
                        requester: from,
                        target: *target,
                        their_nonce: *nonce,
                        deadline: now + self.scale(cfg.indirect_timeout_ms),
                    },
                );
                ctx.send(*target, &Message::Ping { nonce: mine });
            }
            Message::IndirectAck { target, nonce } => {
                if let Some(p) = self.active.get_mut(target)
                    && matches!(p.probe, Probe::Indirect { nonce: n, .. } if n == *nonce)
                {
                    p.probe = Probe::Idle;
                    if p.suspect_since.take().is_some() {
                        ctx.event(Event::Refuted(*target));
                    }
                }
            }
            Message::Report(_)
            | Message::Digest { .. }
            | Message::Certificate(_)
            | Message::Seen { .. }
            | Message::Quarantines { .. }
            | Message::Wanted { .. }
            | Message::Accuse(_)
            | Message::EvidenceWanted { .. }
            | Message::ReportWanted { .. }
            | Message::EvidenceReport { .. }
            | Message::Vote(_) => {}
        }
    }

    fn on_ack(&mut self, ctx: &mut Ctx<'_>, from: NodeId, nonce: u64, now: u64) {
        if let Some(p) = self.active.get_mut(&from)
            && let Probe::Direct {
                nonce: n, sent_ms, ..
            } = p.probe
            && n == nonce
        {
            p.probe = Probe::Idle;
            ctx.link(from).note_rtt(now.saturating_sub(sent_ms));
            return;
        }
        if let Some(relay) = self.relays.get(&nonce)
            && relay.target == from
        {
            let relay = *relay;
            self.relays.remove(&nonce);
            ctx.send(
                relay.requester,
                &Message::IndirectAck {
                    target: from,
                    nonce: relay.their_nonce,
                },
            );
        }
    }

    /// Called when a timer fired `late_ms` after it was due.
    pub(crate) fn note_lateness(&mut self, cfg: &Config, late_ms: u64) {
        if late_ms > cfg.late_threshold_ms {
            self.health = (self.health + 1).min(cfg.max_health);
            self.late_this_round = true;
        }
    }

    /// Asks a passive peer to become a neighbour when the active view has
    /// room and no request is in flight.
    fn refill(&mut self, cfg: &Config, ctx: &mut Ctx<'_>, now: u64) {
        if self.left || self.pending.is_some() || self.active.len() >= cfg.max_active {
            return;
        }
        let Some(&peer) = ctx.rng.choose(&self.passive) else {
            if self.active.is_empty() && self.joining.is_none() {
                self.join(cfg, ctx, now);
            }
            return;
        };
        self.pending = Some((peer, now + cfg.neighbor_timeout_ms));
        // Under half full, it asks to be taken in even by a full node (which
        // displaces its youngest neighbour): otherwise a
        // node left with one neighbour among full ones stays that way.
        ctx.send(
            peer,
            &Message::Neighbor {
                high_priority: 2 * self.active.len() < cfg.max_active,
            },
        );
    }

    /// Runs every timer that is due at `now`.
    pub(crate) fn tick(&mut self, cfg: &Config, ctx: &mut Ctx<'_>, now: u64) {
        if self.left {
            return;
        }
        if let Some((_, deadline)) = self.joining
            && now >= deadline
        {
            self.joining = None;
            if self.active.is_empty() {
                self.join(cfg, ctx, now);
            }
        }
        if let Some((peer, deadline)) = self.pending
            && now >= deadline
        {
            // No answer: presume it gone.
            self.pending = None;
            self.passive.retain(|p| *p != peer);
        }
        self.relays.retain(|_, r| r.deadline > now);

        let ids: Vec<NodeId> = self.active.keys().copied().collect();
        let mut failed = Vec::new();
        for id in &ids {
            let Some(p) = self.active.get(id).cloned() else {
                continue;
            };
            match p.probe {
                Probe::Direct { deadline, .. } if now >= deadline => {
                    ctx.link(*id).probe_failed();
                    let nonce = ctx.rng.next_u64();
                    let mut helpers: Vec<NodeId> =
                        ids.iter().filter(|h| *h != id).copied().collect();
                    ctx.rng.shuffle(&mut helpers);
                    helpers.truncate(cfg.indirect_probes);
                    for h in helpers {
                        ctx.send(h, &Message::PingReq { target: *id, nonce });
                    }
                    self.set_probe(
                        id,
                        Probe::Indirect {
                            nonce,
                            deadline: now + self.scale(cfg.indirect_timeout_ms),
                        },
                    );
                }
                Probe::Indirect { deadline, .. } if now >= deadline => {
                    self.set_probe(id, Probe::Idle);
                    if let Some(a) = self.active.get_mut(id)
                        && a.suspect_since.is_none()
                    {
                        a.suspect_since = Some(now);
                        ctx.event(Event::Suspected(*id));
                    }
                }
                _ => {}
            }
            if let Some(since) = self.active.get(id).and_then(|a| a.suspect_since)
                && now >= since + self.scale(cfg.suspicion_timeout_ms)
            {
                failed.push(*id);
            }
        }
        for id in failed {
            self.active.remove(&id);
            self.passive.retain(|p| *p != id);
            // If it is alive after all (a long pause), it must drop us too,
            // or it would keep a one-sided link.
            ctx.send(id, &Message::Disconnect { alive: true });
            ctx.event(Event::NeighbourDown {
                peer: id,
                reason: DownReason::Failed,
            });
        }

        if now >= self.next_probe {
            if !self.late_this_round {
                self.health = self.health.saturating_sub(1);
            }
            self.late_this_round = false;
            for id in self.active.keys().copied().collect::<Vec<_>>() {
                if self.active.get(&id).is_some_and(|p| p.probe == Probe::Idle) {
                    let nonce = ctx.rng.next_u64();
                    ctx.send(id, &Message::Ping { nonce });
                    ctx.link(id).probe_sent();
                    let deadline = now + self.scale(cfg.ack_timeout_ms);
                    self.set_probe(
                        &id,
                        Probe::Direct {
                            nonce,
                            sent_ms: now,
                            deadline,
                        },
                    );
                }
            }
            self.next_probe = next_after(self.next_probe, cfg.probe_interval_ms, now);
            self.refill(cfg, ctx, now);
            // A node that knows few others may sit on an island (two
            // newcomers that joined through each other). The roster names
            // every member, so it joins again through a random one until
            // its views are healthy; islands merge this way.
            let known = self.active.len() + self.passive.len();
            let enough = (2 * cfg.max_active).min(ctx.roster.len().saturating_sub(1));
            if known < enough && self.joining.is_none() {
                self.join(cfg, ctx, now);
            }
        }

        if now >= self.next_shuffle {
            self.next_shuffle = next_after(self.next_shuffle, cfg.shuffle_interval_ms, now);
            if let Some(to) = self.random_active_except(ctx, &[]) {
                let mut nodes = vec![self.me];
                let mut a: Vec<NodeId> =
                    self.active.keys().filter(|p| **p != to).copied().collect();
                ctx.rng.shuffle(&mut a);
                a.truncate(cfg.shuffle_active);
                let mut p = self.passive.clone();
                ctx.rng.shuffle(&mut p);
                p.truncate(cfg.shuffle_passive);
                nodes.extend(a);
                nodes.extend(p);
                ctx.send(
                    to,
                    &Message::Shuffle {
                        origin: self.me,
                        ttl: cfg.active_walk_len,
                        nodes,
                    },
                );
            }
        }
    }

    fn set_probe(&mut self, id: &NodeId, probe: Probe) {
        if let Some(p) = self.active.get_mut(id) {
            p.probe = probe;
        }
    }

    /// The earliest time [`Membership::tick`] has something to do.
    pub(crate) fn poll_timeout(&self, cfg: &Config) -> Option<u64> {
        if self.left {
            return None;
        }
        let mut t = self.next_probe.min(self.next_shuffle);
        for p in self.active.values() {
            match p.probe {
                Probe::Direct { deadline, .. } | Probe::Indirect { deadline, .. } => {
                    t = t.min(deadline);
                }
                Probe::Idle => {}
            }
            if let Some(since) = p.suspect_since {
                t = t.min(since + self.scale(cfg.suspicion_timeout_ms));
            }
        }
        for (_, d) in self.pending.iter().chain(self.joining.iter()) {
            t = t.min(*d);
        }
        Some(t)
    }
}

/// The next multiple of `interval` after `prev` that is later than `now`
/// (a node that fell behind skips rounds instead of bursting).
fn next_after(prev: u64, interval: u64, now: u64) -> u64 {
    let next = prev + interval;
    if next > now { next } else { now + interval }
}
