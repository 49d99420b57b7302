//! What the simulator measures, from ground truth.
//!
//! "Interested" nodes are computed from the nodes' actual active views (kept
//! here from every view change the nodes make) at the moment a report is
//! signed — never from the dissemination layer's idea of where to send. A
//! report's interested nodes are the live nodes, other than its signer, that
//! have the signer or one of the neighbours the report observes in their
//! active view.
#![allow(
    clippy::cast_possible_truncation,
    reason = "node indices are below 100,000 (scenario validation) and float-to-integer casts are of bounded, non-negative times and counts"
)]

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use serde::Serialize;

/// Latency histogram resolution: 1 ms buckets up to this many.
const HIST_MS: usize = 60_000;
/// Verdicts about a node within this long of its restart are attributed to
/// its previous incarnation (detection takes under 5 s; this is twice that).
const RESTART_GRACE_US: u64 = 10_000_000;
/// Bucket width of time series, seconds.
pub const SERIES_S: u64 = 5;

#[derive(Debug)]
struct Track {
    sent_us: u64,
    interested: Vec<u32>,
    /// Delivery latency per interested node, ms (`u32::MAX` = not yet).
    latency_ms: Vec<u32>,
}

/// One point of a time series (a `SERIES_S` bucket).
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct SeriesPoint {
    /// Bucket start, seconds from the start of the run.
    pub t_s: u64,
    /// (report, interested live node) pairs whose report was signed in the
    /// bucket.
    pub pairs: u64,
    /// Of those, delivered within the deadline.
    pub on_time: u64,
    /// Bytes sent and received by all nodes in the bucket (with overhead).
    pub bytes: u64,
    /// Live nodes at the end of the bucket.
    pub live: u64,
}

/// Ground-truth bookkeeping for one run.
#[derive(Debug)]
pub struct Metrics {
    n: usize,
    warmup_us: u64,
    deadline_ms: u32,
    horizon_us: u64,
    /// views[x] = x's active view.
    views: Vec<BTreeSet<u32>>,
    /// in_views[s] = nodes with s in their active view.
    in_views: Vec<BTreeSet<u32>>,
    pub(crate) live: Vec<bool>,
    /// When each node last (re)started.
    up_since_us: Vec<u64>,
    tracks: BTreeMap<(u32, u64, u64), Track>,
    order: VecDeque<(u32, u64, u64)>,
    hist: Vec<u64>,
    late_beyond_hist: u64,
    pub(crate) reports_tracked: u64,
    pub(crate) reports_on_time: u64,
    pub(crate) pairs: u64,
    pub(crate) pairs_on_time: u64,
    pub(crate) pairs_delivered: u64,
    pub(crate) series: Vec<SeriesPoint>,
    /// Crash detection: (crashed, neighbour) → crash time.
    pending_detect: BTreeMap<(u32, u32), u64>,
    pub(crate) detect_ms: Vec<u64>,
    pub(crate) removed_otherwise: u64,
    pub(crate) restarted_first: u64,
    pub(crate) previous_incarnation: u64,
    pub(crate) false_suspicions: u64,
    pub(crate) overloaded_suspicions: u64,
    pub(crate) false_deaths: u64,
    pub(crate) false_death_examples: Vec<(f64, u32, u32)>,
    pub(crate) bytes_in: Vec<u64>,
    pub(crate) bytes_out: Vec<u64>,
    pub(crate) msgs: Vec<u64>,
    /// Equivocators: when each first sent two versions of one report, and
    /// who was live then.
    pub(crate) equivocations: BTreeMap<u32, (u64, Vec<bool>)>,
    /// subject → node → when the node first held a certificate about it.
    pub(crate) held: BTreeMap<u32, BTreeMap<u32, u64>>,
    /// Quarantines of honest nodes (never equivocated, never attacked):
    /// (time s, node, subject).
    pub(crate) honest_quarantined: Vec<(f64, u32, u32)>,
    /// Attackers: index → (kind, attack start µs). A liar's attack starts
    /// with its first lying report ([`Metrics::lied`]).
    pub(crate) attackers: BTreeMap<u32, (&'static str, u64)>,
    /// Liars that have signed a lying report.
    lying: BTreeSet<u32>,
    /// Bytes of accusations, evidence requests and reports, and votes each
    /// node sent.
    pub(crate) quorum_bytes: Vec<u64>,
    /// Sizes of the voted certificates made (by their accusers).
    pub(crate) voted_certificate_bytes: Vec<usize>,
    /// Accusations made, and those certified.
    pub(crate) accusations: (u64, u64),
    /// The same, by degraded hosts.
    pub(crate) degraded_accusations: (u64, u64),
    /// Degraded hosts.
    pub(crate) degraded: BTreeSet<u32>,
    /// Honest subjects some node held a certificate against, with their
    /// honest case (none, victim, degraded, overloaded, churn).
    pub(crate) quarantined_case: BTreeMap<u32, &'static str>,
    /// Per attacker: when an honest node first raised suspicion of it, first
    /// accused it, and a voted certificate against it was first made, µs.
    pub(crate) stages: BTreeMap<u32, [Option<u64>; 3]>,
    /// Per attacker: the first accusation of it by an honest node.
    pub(crate) first_accusation: BTreeMap<u32, [u8; 32]>,
    /// Per attack kind: honest members' verdicts on those first
    /// accusations, and their seats (yes, no, all) when they closed.
    pub(crate) first_votes: BTreeMap<&'static str, (BTreeMap<&'static str, u64>, [u64; 3])>,
    /// Each second, for each framing or sybil victim under attack: the
    /// share of its neighbours that attack it.
    pub(crate) victim_share: Vec<f64>,
    /// Votes cast, by verdict name.
    pub(crate) votes: BTreeMap<&'static str, u64>,
    /// Voted certificates made against honest subjects, as their accusers
    /// made them.
    pub(crate) false_certificates: Vec<FalseCertificate>,
}

/// One attacker's index, kind, and (time to quarantine, spread) in ms.
pub(crate) type Quarantine = (u32, &'static str, Option<(u64, u64)>);

/// A voted certificate against an honest node: who accused, and who voted
/// yes (so a report can tell framers' votes from honest voters' views).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FalseCertificate {
    /// When its accuser made it, seconds.
    pub time_s: f64,
    /// The honest node quarantined.
    pub subject: u32,
    /// Its honest case (none, victim, degraded, overloaded, churn).
    pub case: &'static str,
    /// Who accused it.
    pub accuser: u32,
    /// The accuser's attack kind, or `honest`.
    pub accuser_kind: &'static str,
    /// An honest accuser's case (none, victim, degraded, overloaded,
    /// churn); `attacker` for an attacker.
    pub accuser_case: &'static str,
    /// Yes votes signed by attackers.
    pub yes_attackers: usize,
    /// Yes votes signed by honest nodes.
    pub yes_honest: usize,
    /// The share of the subject's neighbours then that were attackers.
    pub attacker_neighbours: f64,
    /// The subject's neighbours then, by attack kind or honest case.
    pub neighbours: BTreeMap<&'static str, usize>,
    /// The lowest and highest own-view score of the honest yes votes
    /// (none without one).
    pub honest_own: Option<(f64, f64)>,
}

impl Metrics {
    pub(crate) fn new(n: usize, warmup_us: u64, deadline_ms: u64, duration_s: u64) -> Self {
        Self {
            n,
            warmup_us,
            deadline_ms: u32::try_from(deadline_ms).unwrap_or(u32::MAX),
            horizon_us: 10_000_000,
            views: vec![BTreeSet::new(); n],
            in_views: vec![BTreeSet::new(); n],
            live: vec![false; n],
            up_since_us: vec![0; n],
            tracks: BTreeMap::new(),
            order: VecDeque::new(),
            hist: vec![0; HIST_MS],
            late_beyond_hist: 0,
            reports_tracked: 0,
            reports_on_time: 0,
            pairs: 0,
            pairs_on_time: 0,
            pairs_delivered: 0,
            series: (0..duration_s.div_ceil(SERIES_S))
                .map(|b| SeriesPoint {
                    t_s: b * SERIES_S,
                    ..SeriesPoint::default()
                })
                .collect(),
            pending_detect: BTreeMap::new(),
            detect_ms: Vec::new(),
            removed_otherwise: 0,
            restarted_first: 0,
            previous_incarnation: 0,
            false_suspicions: 0,
            overloaded_suspicions: 0,
            false_deaths: 0,
            false_death_examples: Vec::new(),
            bytes_in: vec![0; n],
            bytes_out: vec![0; n],
            msgs: vec![0; n],
            equivocations: BTreeMap::new(),
            held: BTreeMap::new(),
            honest_quarantined: Vec::new(),
            attackers: BTreeMap::new(),
            lying: BTreeSet::new(),
            quorum_bytes: vec![0; n],
            voted_certificate_bytes: Vec::new(),
            accusations: (0, 0),
            degraded_accusations: (0, 0),
            degraded: BTreeSet::new(),
            victim_share: Vec::new(),
            stages: BTreeMap::new(),
            first_accusation: BTreeMap::new(),
            first_votes: BTreeMap::new(),
            quarantined_case: BTreeMap::new(),
            votes: BTreeMap::new(),
            false_certificates: Vec::new(),
        }
    }

    /// For each attacker, (index, kind, ms from its attack start until 99%
    /// of the honest nodes live then and at the end held a certificate
    /// about it, if within the run, and ms from the first node holding one
    /// until then). Attackers whose attack had not started are left out.
    pub(crate) fn time_to_quarantine(&self, end_us: u64) -> Vec<Quarantine> {
        let empty = BTreeMap::new();
        self.attackers
            .iter()
            .filter(|(_, (_, start))| *start < end_us)
            .map(|(&x, &(kind, start))| {
                let held = self.held.get(&x).unwrap_or(&empty);
                // Degraded hosts are left out: their inbound loss delays
                // every certificate sent to them, whoever made it.
                let eligible: Vec<u32> = (0..self.n as u32)
                    .filter(|i| {
                        self.live[*i as usize]
                            && !self.attackers.contains_key(i)
                            && !self.degraded.contains(i)
                    })
                    .collect();
                let mut times: Vec<u64> = eligible
                    .iter()
                    .filter_map(|i| held.get(i).map(|t| t.saturating_sub(start) / 1000))
                    .collect();
                times.sort_unstable();
                let need = (eligible.len() as f64 * 0.99).ceil() as usize;
                let at = (need > 0).then(|| times.get(need - 1).copied()).flatten();
                let first = held.values().min().map(|t| t.saturating_sub(start) / 1000);
                (
                    x,
                    kind,
                    at.map(|at| (at, at.saturating_sub(first.unwrap_or(at)))),
                )
            })
            .collect()
    }

    /// Liar `x` signed a lying report at `now_us`. Its attack is its
    /// signed reports, so it starts with the first: until then it did
    /// nothing anyone could see, and the time from its scheduled start to
    /// its next report (up to one report interval) is not detection time.
    pub(crate) fn lied(&mut self, x: u32, now_us: u64) {
        if let Some(a) = self.attackers.get_mut(&x)
            && self.lying.insert(x)
        {
            a.1 = a.1.max(now_us);
        }
    }

    fn measuring(&self, now_us: u64) -> bool {
        now_us >= self.warmup_us
    }

    fn bucket(&mut self, now_us: u64) -> Option<&mut SeriesPoint> {
        let b = usize::try_from(now_us / 1_000_000 / SERIES_S).ok()?;
        self.series.get_mut(b)
    }

    pub(crate) fn sent(&mut self, now_us: u64, from: u32, wire: u64) {
        if let Some(p) = self.bucket(now_us) {
            p.bytes += wire;
        }
        if self.measuring(now_us) {
            self.bytes_out[from as usize] += wire;
            self.msgs[from as usize] += 1;
        }
    }

    pub(crate) fn received(&mut self, now_us: u64, to: u32, wire: u64) {
        if let Some(p) = self.bucket(now_us) {
            p.bytes += wire;
        }
        if self.measuring(now_us) {
            self.bytes_in[to as usize] += wire;
            self.msgs[to as usize] += 1;
        }
    }

    pub(crate) fn up(&mut self, now_us: u64, x: u32) {
        self.live[x as usize] = true;
        self.up_since_us[x as usize] = now_us;
        let before = self.pending_detect.len();
        self.pending_detect.retain(|(c, _), _| *c != x);
        self.restarted_first += (before - self.pending_detect.len()) as u64;
    }

    /// A verdict about `peer` that may concern the incarnation before its
    /// last restart: neighbours cannot tell a crash followed by a quick
    /// restart from a live node until the new incarnation speaks.
    fn fresh_restart(&self, now_us: u64, peer: u32) -> bool {
        now_us.saturating_sub(self.up_since_us[peer as usize]) < RESTART_GRACE_US
    }

    /// `x` crashed or left: its view is gone; its neighbours should notice.
    pub(crate) fn down(&mut self, now_us: u64, x: u32, crashed: bool) {
        self.live[x as usize] = false;
        for s in std::mem::take(&mut self.views[x as usize]) {
            self.in_views[s as usize].remove(&x);
        }
        // Pending detections by x are moot.
        self.pending_detect.retain(|(_, by), _| *by != x);
        self.pending_detect.retain(|(c, _), _| *c != x);
        if crashed && self.measuring(now_us) {
            for &nb in &self.in_views[x as usize] {
                if self.live[nb as usize] {
                    self.pending_detect.insert((x, nb), now_us);
                }
            }
        }
    }

    pub(crate) fn neighbour_up(&mut self, x: u32, peer: u32) {
        self.views[x as usize].insert(peer);
        self.in_views[peer as usize].insert(x);
    }

    pub(crate) fn neighbour_down(&mut self, now_us: u64, x: u32, peer: u32, failed: bool) {
        self.views[x as usize].remove(&peer);
        self.in_views[peer as usize].remove(&x);
        if let Some(t) = self.pending_detect.remove(&(peer, x)) {
            if failed {
                self.detect_ms.push((now_us - t) / 1000);
            } else {
                self.removed_otherwise += 1;
            }
        } else if failed && self.live[peer as usize] && self.measuring(now_us) {
            if self.fresh_restart(now_us, peer) {
                self.previous_incarnation += 1;
                return;
            }
            self.false_deaths += 1;
            if self.false_death_examples.len() < 10 {
                self.false_death_examples
                    .push((now_us as f64 / 1e6, x, peer));
            }
        }
    }

    /// `peer` was suspected; `overloaded` says whether its host stalls.
    pub(crate) fn suspected(&mut self, now_us: u64, peer: u32, overloaded: bool) {
        if self.live[peer as usize] && self.measuring(now_us) {
            if self.fresh_restart(now_us, peer) {
                self.previous_incarnation += 1;
            } else if overloaded {
                self.overloaded_suspicions += 1;
            } else {
                self.false_suspicions += 1;
            }
        }
    }

    /// `origin` signed a report observing `subjects`.
    pub(crate) fn report_sent(
        &mut self,
        now_us: u64,
        origin: u32,
        epoch: u64,
        sequence: u64,
        subjects: &[u32],
    ) {
        if !self.measuring(now_us) {
            return;
        }
        let mut interested: BTreeSet<u32> = self.in_views[origin as usize].clone();
        for s in subjects {
            interested.extend(self.in_views[*s as usize].iter().copied());
        }
        interested.remove(&origin);
        let interested: Vec<u32> = interested
            .into_iter()
            // Equivocators are cut off on purpose: nothing is owed to them.
            .filter(|x| self.live[*x as usize] && !self.equivocations.contains_key(x))
            .collect();
        let k = interested.len();
        let key = (origin, epoch, sequence);
        self.tracks.insert(
            key,
            Track {
                sent_us: now_us,
                interested,
                latency_ms: vec![u32::MAX; k],
            },
        );
        self.order.push_back(key);
    }

    pub(crate) fn report_received(
        &mut self,
        now_us: u64,
        at: u32,
        origin: u32,
        epoch: u64,
        sequence: u64,
    ) {
        if let Some(t) = self.tracks.get_mut(&(origin, epoch, sequence))
            && let Ok(i) = t.interested.binary_search(&at)
            && t.latency_ms[i] == u32::MAX
        {
            t.latency_ms[i] = u32::try_from((now_us - t.sent_us) / 1000).unwrap_or(u32::MAX - 1);
        }
    }

    /// Closes the books on reports older than the horizon (all of them with
    /// `all`).
    pub(crate) fn finalize(&mut self, now_us: u64, all: bool) {
        while let Some(key) = self.order.front().copied() {
            let Some(t) = self.tracks.get(&key) else {
                self.order.pop_front();
                continue;
            };
            if !all && t.sent_us + self.horizon_us > now_us {
                break;
            }
            self.order.pop_front();
            let Some(t) = self.tracks.remove(&key) else {
                continue;
            };
            let mut pairs = 0u64;
            let mut on_time = 0u64;
            for (x, lat) in t.interested.iter().zip(&t.latency_ms) {
                // Delivery to live nodes: a receiver that crashed since is
                // not counted.
                if !self.live[*x as usize] {
                    continue;
                }
                pairs += 1;
                if *lat != u32::MAX {
                    self.pairs_delivered += 1;
                    match self.hist.get_mut(*lat as usize) {
                        Some(h) => *h += 1,
                        None => self.late_beyond_hist += 1,
                    }
                    if *lat <= self.deadline_ms {
                        on_time += 1;
                    }
                }
            }
            self.pairs += pairs;
            self.pairs_on_time += on_time;
            self.reports_tracked += 1;
            // A report with no live interested node counts as delivered.
            if on_time as f64 >= 0.99 * pairs as f64 {
                self.reports_on_time += 1;
            }
            if let Some(p) = self.bucket(t.sent_us) {
                p.pairs += pairs;
                p.on_time += on_time;
            }
        }
    }

    pub(crate) fn note_live(&mut self, now_us: u64) {
        let live = self.live.iter().filter(|l| **l).count() as u64;
        if let Some(p) = self.bucket(now_us.saturating_sub(1)) {
            p.live = live;
        }
    }

    /// Latency percentile over every delivered pair, ms.
    pub(crate) fn latency_percentile(&self, q: f64) -> Option<u64> {
        let total: u64 = self.hist.iter().sum::<u64>() + self.late_beyond_hist;
        if total == 0 {
            return None;
        }
        let rank = ((q * total as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (ms, c) in self.hist.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return Some(ms as u64);
            }
        }
        Some(HIST_MS as u64)
    }

    /// The latency CDF as (ms, fraction) points, for plotting.
    pub(crate) fn latency_cdf(&self) -> Vec<(u64, f64)> {
        let total: u64 = self.hist.iter().sum::<u64>() + self.late_beyond_hist;
        let mut out = Vec::new();
        let mut seen = 0u64;
        for (ms, c) in self.hist.iter().enumerate() {
            if *c == 0 {
                continue;
            }
            seen += c;
            out.push((ms as u64, seen as f64 / total.max(1) as f64));
        }
        out
    }

    /// Crashed-neighbour pairs still waiting for detection.
    /// Pairs still unresolved 10 s or more after the crash (younger ones
    /// at the end of the run are left out: their time had not come).
    pub(crate) fn undetected(&self, now_us: u64) -> usize {
        self.pending_detect
            .values()
            .filter(|&&t| now_us.saturating_sub(t) >= RESTART_GRACE_US)
            .count()
    }

    /// `x` sent two versions of one signed report for the first time.
    pub(crate) fn equivocated(&mut self, now_us: u64, x: u32) {
        if !self.equivocations.contains_key(&x) {
            self.equivocations.insert(x, (now_us, self.live.clone()));
        }
    }

    /// `node` holds a certificate quarantining `subject` (first time counts).
    pub(crate) fn certificate_held(&mut self, now_us: u64, node: u32, subject: u32) {
        if !self.equivocations.contains_key(&subject) && !self.attackers.contains_key(&subject) {
            self.honest_quarantined
                .push((now_us as f64 / 1e6, node, subject));
        }
        self.held
            .entry(subject)
            .or_default()
            .entry(node)
            .or_insert(now_us);
    }

    /// For each equivocator, ms from its first equivocation until 99% (and
    /// all) of the honest nodes live both then and at the end held a
    /// certificate about it (`None`: not within the run), and the fraction
    /// of those nodes holding one at the end.
    pub(crate) fn certificate_spread(&self) -> Vec<(u32, Option<u64>, Option<u64>, f64)> {
        let empty = BTreeMap::new();
        self.equivocations
            .iter()
            .map(|(&x, (t0, live_then))| {
                let held = self.held.get(&x).unwrap_or(&empty);
                let eligible: Vec<u32> = (0..self.n as u32)
                    .filter(|&i| {
                        live_then[i as usize]
                            && self.live[i as usize]
                            && !self.equivocations.contains_key(&i)
                    })
                    .collect();
                let mut times: Vec<u64> = eligible
                    .iter()
                    .filter_map(|i| held.get(i).map(|t| t.saturating_sub(*t0) / 1000))
                    .collect();
                times.sort_unstable();
                let need = (eligible.len() as f64 * 0.99).ceil() as usize;
                let at = |k: usize| (k > 0).then(|| times.get(k - 1).copied()).flatten();
                let ratio = if eligible.is_empty() {
                    1.0
                } else {
                    times.len() as f64 / eligible.len() as f64
                };
                (x, at(need), at(eligible.len()), ratio)
            })
            .collect()
    }

    pub(crate) fn nodes(&self) -> usize {
        self.n
    }
}
