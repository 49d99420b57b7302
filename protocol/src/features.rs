//! Detection features: what one sentinel knows about one subject over one
//! window, as a fixed row of numbers a model scores.
//!
//! The schema is named and versioned ([`SCHEMA`]) and every column is
//! documented in `FEATURES.md` at the repository root. Extraction is a pure
//! function of **signed reports only** — the observer's own latest report,
//! the subject's latest report, and the latest reports of others that
//! observe the subject — so a committee member or an appeal can recompute an
//! accused row from the signed evidence alone.
//!
//! Three groups of columns:
//! - **peers**: what the subject's neighbours report about it, aggregated
//!   with robust statistics: the median, and a mean trimmed by a third at
//!   each end ([`trimmed_mean`]). Fewer than a third of lying reporters
//!   cannot move either outside the range of the honest reporters' values
//!   (tested below), so they cannot push an honest subject over a
//!   threshold the honest values stay under. A reporter counts only when
//!   the subject's own report names it as a neighbour (or it is the
//!   observer itself): a framer cannot add weight by claiming to observe a
//!   node it has no link to.
//! - **own**: the observer's direct observations of the subject.
//! - **claims**: the subject's own report — its host metrics, how far its
//!   claims about each link disagree with what the other end reports, and
//!   whether it relayed the reports it says it held.
//!
//! Rates are per second over the samples of the report that carries them;
//! heavy-tailed quantities are `ln(1 + x)`.

use crate::identity::NodeId;
use crate::telemetry::{LinkSample, Observation, Report};

/// Name and version of the feature schema. A model's manifest names the
/// schema it was trained on; a scorer refuses rows of another.
pub const SCHEMA: &str = "sentinel-features/4";
/// Messages from a neighbour in one sample that make a burst: its
/// messages-in rate is counted from that sample on (columns 3, 4 and 17),
/// and by default a sample at it is flagrant
/// ([`crate::suspicion::Flagrant`]). One more than any honest link-second
/// of `quorum-smoke`.
pub const BURST_MESSAGES: u16 = 17;
/// The schema's version number (the `/4` of [`SCHEMA`]).
pub const SCHEMA_VERSION: u32 = 4;

/// The columns, in order. `FEATURES.md` documents each.
pub const NAMES: [&str; COUNT] = [
    "reporters",
    "listed_unconfirmed",
    "subject_report_fresh",
    "peer_msgs_in_med",
    "peer_msgs_in_trim",
    "peer_bytes_in_med",
    "peer_invalid_med",
    "peer_invalid_trim",
    "peer_malformed_med",
    "peer_duplicates_med",
    "peer_duplicates_trim",
    "peer_rate_limited_med",
    "peer_rate_limited_trim",
    "peer_probe_fail_med",
    "peer_rtt_med",
    "peer_reciprocity_med",
    "own_neighbour",
    "own_msgs_in",
    "own_invalid",
    "own_duplicates",
    "own_rate_limited",
    "own_probe_fail",
    "own_reciprocity",
    "claim_cpu",
    "claim_mem",
    "claim_net_out",
    "claim_node_errors",
    "claim_out_mismatch",
    "claim_in_mismatch",
    "claim_rtt_mismatch",
    "claim_links_disagree",
    "claim_min_mismatch",
    "relay_withheld",
];

/// Number of columns.
pub const COUNT: usize = 33;

/// A mutual link *disagrees* (column `claim_links_disagree`) when its out,
/// in and RTT gaps all exceed this (`ln` units: about 35%).
pub const DISAGREE_GAP: f64 = 0.3;

/// Reporters counted at most (more are possible with a large report).
pub const MAX_REPORTERS: usize = 32;

/// `ln(1 + ms)` standing for "no probe answered" in the RTT columns.
const NO_RTT_MS: f64 = 5_000.0;

/// One row of features, in [`NAMES`] order.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Row(pub [f32; COUNT]);

impl Eq for Row {}

impl Row {
    /// The value of column `name`, if the schema has it.
    #[must_use]
    pub fn get(&self, name: &str) -> Option<f32> {
        NAMES.iter().position(|n| *n == name).map(|i| self.0[i])
    }

    /// Sets column `name`; false, changing nothing, if the schema has no
    /// such column.
    pub fn set(&mut self, name: &str, value: f32) -> bool {
        let Some(i) = NAMES.iter().position(|n| *n == name) else {
            return false;
        };
        self.0[i] = value;
        true
    }
}

/// A score in `[0, 1]` quantised to 1/10,000 (basis points), as carried in
/// events, stored, and — later — signed in accusations.
///
/// Replaying a model on another CPU may change the float result in its last
/// bits; quantising bounds the difference to [`Score::REPLAY_MARGIN`] steps
/// whenever the float results differ by less than one step (1e-4), which the
/// shipped models' tract-vs-onnxruntime test bounds at 1e-5.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Score(pub u16);

impl Score {
    /// Steps in 1.0.
    pub const SCALE: u16 = 10_000;
    /// A replayed score agrees when within this many steps of the original.
    pub const REPLAY_MARGIN: u16 = 1;

    /// Quantises a model output (clamped to `[0, 1]`; NaN counts as 1, the
    /// suspicious end, so a broken model cannot hide anything).
    #[must_use]
    pub fn quantise(x: f32) -> Self {
        let x = if x.is_nan() { 1.0 } else { x.clamp(0.0, 1.0) };
        #[allow(
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss,
            reason = "x is in [0, 1], so the product is in [0, 10000]"
        )]
        Self((f64::from(x) * f64::from(Self::SCALE)).round() as u16)
    }

    /// As a fraction.
    #[must_use]
    pub fn as_f32(self) -> f32 {
        f32::from(self.0) / f32::from(Self::SCALE)
    }

    /// Whether `other` is an acceptable replay of `self`.
    #[must_use]
    pub fn agrees(self, other: Score) -> bool {
        self.0.abs_diff(other.0) <= Self::REPLAY_MARGIN
    }
}

impl std::fmt::Display for Score {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:.4}", self.as_f32())
    }
}

/// The median of `v` (mean of the middle two for an even count); 0 when
/// empty. Reorders `v`.
#[must_use]
pub fn median(v: &mut [f64]) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// The mean of `v` without its `⌊n/3⌋` smallest and `⌊n/3⌋` largest values;
/// 0 when empty. Reorders `v`.
///
/// With `k < n/3` arbitrary values among `n`, at least `k` are trimmed at
/// each end, so the result lies within the range of the other values.
#[must_use]
pub fn trimmed_mean(v: &mut [f64]) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(f64::total_cmp);
    let cut = v.len() / 3;
    let kept = &v[cut..v.len() - cut];
    kept.iter().sum::<f64>() / kept.len() as f64
}

fn ln1p(x: f64) -> f64 {
    x.max(0.0).ln_1p()
}

/// Totals of one observation: what one reporter saw of one neighbour over
/// one report.
#[derive(Debug, Clone, Copy, Default)]
struct Link {
    seconds: f64,
    /// Seconds from the first sample with an invalid or malformed frame to
    /// the end (all of them when there is none): what invalid and
    /// malformed frames are counted over.
    faulty_seconds: f64,
    /// Messages in from the first sample with at least [`BURST_MESSAGES`]
    /// to the end, and the seconds that spans (none without such a sample).
    burst: Option<(f64, f64)>,
    msgs_in: f64,
    msgs_out: f64,
    bytes_in: f64,
    invalid: f64,
    malformed: f64,
    duplicates: f64,
    rate_limited: f64,
    probes_sent: f64,
    probes_failed: f64,
    /// Smallest round-trip time seen, ms.
    rtt_ms: Option<f64>,
}

impl Link {
    fn of(samples: &[LinkSample], sample_ms: u32) -> Self {
        let seconds = |n: usize| (n as f64 * f64::from(sample_ms) / 1000.0).max(1e-3);
        let onset = samples
            .iter()
            .position(|s| s.invalid > 0 || s.malformed > 0)
            .unwrap_or(0);
        let burst = samples
            .iter()
            .position(|s| s.messages_in >= BURST_MESSAGES)
            .map(|i| {
                let msgs = samples[i..].iter().map(|s| f64::from(s.messages_in)).sum();
                (msgs, seconds(samples.len() - i))
            });
        let mut l = Link {
            seconds: seconds(samples.len()),
            faulty_seconds: seconds(samples.len() - onset),
            burst,
            ..Link::default()
        };
        for s in samples {
            l.msgs_in += f64::from(s.messages_in);
            l.msgs_out += f64::from(s.messages_out);
            l.bytes_in += f64::from(s.bytes_in);
            l.invalid += f64::from(s.invalid);
            l.malformed += f64::from(s.malformed);
            l.duplicates += f64::from(s.duplicates);
            l.rate_limited += f64::from(s.rate_limited);
            l.probes_sent += f64::from(s.probes_sent);
            l.probes_failed += f64::from(s.probes_failed);
            if s.rtt_ms != LinkSample::NO_RTT {
                let rtt = f64::from(s.rtt_ms);
                l.rtt_ms = Some(l.rtt_ms.map_or(rtt, |r| r.min(rtt)));
            }
        }
        l
    }

    fn rate(&self, x: f64) -> f64 {
        ln1p(x / self.seconds)
    }

    /// Invalid or malformed frames per second since the first of them: a
    /// report that ends at an attack's onset (a flagrant sample ends it
    /// early) or spans it does not dilute the frames over the quiet
    /// seconds before. Honest links show such a frame in about 1 sample in
    /// 20,000 (`quorum-smoke`: 32 of 598,369), so for them this is almost
    /// always `rate`.
    fn fault_rate(&self, x: f64) -> f64 {
        ln1p(x / self.faulty_seconds)
    }

    /// Messages in per second, since the first sample of a burst when
    /// there is one: the same onset rule for a flood.
    fn msgs_in_rate(&self) -> f64 {
        match self.burst {
            Some((msgs, seconds)) => ln1p(msgs / seconds),
            None => self.rate(self.msgs_in),
        }
    }

    fn probe_fail(&self) -> f64 {
        if self.probes_sent > 0.0 {
            (self.probes_failed / self.probes_sent).min(1.0)
        } else {
            0.0
        }
    }

    fn rtt(&self) -> f64 {
        ln1p(self.rtt_ms.unwrap_or(NO_RTT_MS))
    }

    /// Messages from the neighbour against messages to it, `ln` of the
    /// ratio of per-second rates (+1 each).
    fn reciprocity(&self) -> f64 {
        ((self.msgs_in / self.seconds + 1.0) / (self.msgs_out / self.seconds + 1.0)).ln()
    }
}

fn observation_of<'a>(report: &'a Report, subject: &NodeId) -> Option<&'a Observation> {
    report
        .neighbours
        .binary_search_by(|o| o.neighbour.cmp(subject))
        .ok()
        .map(|i| &report.neighbours[i])
}

/// Whether `report` covers time up to at least `now_ms - horizon_ms`.
fn fresh(report: &Report, now_ms: u64, horizon_ms: u64) -> bool {
    let end = report
        .start_ms
        .saturating_add(report.host.len() as u64 * u64::from(report.sample_ms));
    end.saturating_add(horizon_ms) >= now_ms
}

/// The median, over the neighbours `report` observes, of the share of
/// probes to each that failed: how lossy its signer's own links were.
///
/// An attacker spoils its own link to an observer; only a fault at the
/// observer itself (or a majority of attacking neighbours) spoils most of
/// them. In `quorum-1k` (seed 9109) the ten hosts whose inbound network
/// loses 30% reach 0.2 in 97% of their reports after the loss starts, the
/// other nodes in 2%. 0 with no neighbour.
#[must_use]
pub fn own_link_loss(report: &Report) -> f64 {
    let mut fails: Vec<f64> = report
        .neighbours
        .iter()
        .map(|o| Link::of(&o.samples, report.sample_ms).probe_fail())
        .collect();
    median(&mut fails)
}

/// One report an observer holds: its signer's latest.
#[derive(Debug, Clone, Copy)]
pub struct Held<'a> {
    /// Who signed it.
    pub signer: NodeId,
    /// Its (epoch, sequence) in the signer's stream.
    pub position: (u64, u64),
    /// The decoded, verified content.
    pub report: &'a Report,
    /// What the observer found about the relays of the signer's last
    /// [`RELAY_HISTORY`] checked reports, summed (`relay_withheld`).
    pub relays: Relays,
}

/// The relay check an observer makes when a neighbour's report arrives
/// from that neighbour (column `relay_withheld`).
///
/// Each observation in a report names the position of the neighbour's
/// latest report its signer held (`claimed_epoch`, `claimed_sequence`). A
/// node relays a neighbour's report when it receives it, before it signs
/// its own, so an honest node's relays reach the observer before its
/// report, or just after when reordered in flight. A claim the observer
/// does not hold when the report arrives counts as missing unless the
/// claimer itself sends the claimed report within [`RELAY_GRACE_MS`] plus
/// four round trips to it (a copy from elsewhere is the mesh repairing the
/// gap, not a relay; the observer does not pull from a claimer while its
/// claims are pending, `gossip.rs`).
///
/// What counts:
/// - only reports that observe the observer (a node owes relays to its
///   neighbours only; views can be asymmetric for a while), from a signer
///   in the observer's active view for a whole report interval (checked by
///   the caller);
/// - only claims that are new since the signer's previous report (it
///   claims each neighbour's latest, so a repeated claim is no new relay,
///   and a missed one must not count again), about a neighbour that
///   report named too and whose link had traffic in the first sample (a
///   new link may carry a claim of a report that came before it);
/// - only neighbours whose reports already reach the observer through the
///   signer: the observer holds an older (or the claimed) report of theirs
///   that observes the signer and not the observer. Left out are
///   neighbours it holds nothing of (it may have joined the signer's view
///   after the relay), a newer report of (whether the claimed one came
///   cannot be told), or a report observing the observer (they send it
///   their reports themselves).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Relays {
    /// Claimed reports checked.
    pub claimed: u16,
    /// Of those, ones the observer did not hold within the grace.
    pub missing: u16,
}

/// How many of a subject's latest checked reports `relay_withheld` sums
/// over. One report's check is too small a sample: an honest node's one
/// relay lost to a quirk of timing is one of its two to four claims, as
/// large a share as a mimic's steady drops.
pub const RELAY_HISTORY: usize = 8;

/// Claims added to the denominator of `relay_withheld`, so that a subject
/// with few claims checked shows a miss at less than the share a long
/// record of misses would.
pub const RELAY_PRIOR_CLAIMS: u16 = 4;

/// Misses forgiven in the [`RELAY_HISTORY`]: a relay whose packet is lost
/// twice on the way comes after the grace (at 1% loss, about one claim in
/// 10,000), so one miss alone says nothing. Two within eight reports do.
pub const RELAY_FORGIVEN: u16 = 1;

/// How long after a report the reports it claims may still arrive from
/// its signer, on top of four round trips to it (`gossip.rs`: one lost
/// packet's retransmission on a far link takes two or more): reordering
/// and jitter.
pub const RELAY_GRACE_MS: u64 = 500;

impl Relays {
    /// Both counts summed (saturating).
    #[must_use]
    pub fn plus(self, other: Self) -> Self {
        Self {
            claimed: self.claimed.saturating_add(other.claimed),
            missing: self.missing.saturating_add(other.missing),
        }
    }

    /// The `relay_withheld` column of a subject whose last checked reports
    /// sum to `self`: (missing − [`RELAY_FORGIVEN`]) / (claimed +
    /// [`RELAY_PRIOR_CLAIMS`]), at least 0.
    #[must_use]
    pub fn withheld(self) -> f64 {
        f64::from(self.missing.saturating_sub(RELAY_FORGIVEN))
            / (f64::from(self.claimed) + f64::from(RELAY_PRIOR_CLAIMS))
    }

    /// The claims of `report` (signed by `signer`, arriving from it at
    /// `observer`) that count, and of those the ones not held yet.
    /// `prior` is what the signer's previous report claimed
    /// ([`Relays::claims`]); `held(n)` is the position and subjects of the
    /// latest report of `n` the observer holds.
    pub fn due<'a>(
        observer: &NodeId,
        signer: &NodeId,
        report: &Report,
        prior: &[(NodeId, (u64, u64))],
        held: impl Fn(&NodeId) -> Option<((u64, u64), &'a [NodeId])>,
    ) -> Due {
        let mut claimed = 0u16;
        let mut missing = Vec::new();
        if observation_of(report, observer).is_none() {
            return Due { claimed, missing };
        }
        for obs in &report.neighbours {
            let position = (obs.claimed_epoch, obs.claimed_sequence);
            // Claims already made, or first made with a new link (the
            // report may have come before the link), are not checked.
            let new_claim = prior
                .binary_search_by(|(n, _)| n.cmp(&obs.neighbour))
                .is_ok_and(|i| prior[i].1 < position);
            if obs.neighbour == *observer
                || position == (0, 0)
                || !new_claim
                || !linked_from_start(obs)
            {
                continue;
            }
            let Some((at, subjects)) = held(&obs.neighbour) else {
                continue;
            };
            if at > position
                || subjects.binary_search(observer).is_ok()
                || subjects.binary_search(signer).is_err()
            {
                continue;
            }
            claimed = claimed.saturating_add(1);
            if at < position {
                missing.push((obs.neighbour, position));
            }
        }
        Due { claimed, missing }
    }

    /// The claimed positions of `report`, by neighbour (sorted), to pass
    /// as `prior` when the signer's next report arrives.
    #[must_use]
    pub fn claims(report: &Report) -> Vec<(NodeId, (u64, u64))> {
        report
            .neighbours
            .iter()
            .map(|o| (o.neighbour, (o.claimed_epoch, o.claimed_sequence)))
            .collect()
    }
}

/// The link had traffic in the report's first sample: it existed when the
/// interval began, so everything the signer received during it from the
/// neighbour, or owed the neighbour, fell under the relay rule. A link
/// that began mid-interval may carry claims of reports received before it.
fn linked_from_start(obs: &Observation) -> bool {
    obs.samples
        .first()
        .is_some_and(|s| s.messages_in > 0 || s.messages_out > 0)
}

/// What [`Relays::due`] found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Due {
    /// Claims that count.
    pub claimed: u16,
    /// Those not held yet: (neighbour, claimed position).
    pub missing: Vec<(NodeId, (u64, u64))>,
}

/// What extraction reads: the reports an observer holds, by signer.
#[derive(Debug, Clone, Copy)]
pub struct Inputs<'a> {
    /// Who is scored.
    pub subject: NodeId,
    /// Who scores (its own report is among `reports`, if it has one).
    pub observer: NodeId,
    /// The observer's clock, Unix ms.
    pub now_ms: u64,
    /// Reports ending more than this long before `now_ms` are ignored
    /// (two report intervals is the usual choice).
    pub horizon_ms: u64,
    /// Latest report of each signer: the subject's, the observer's, and
    /// any others (those that do not observe the subject are skipped).
    pub reports: &'a [Held<'a>],
}

/// Extracts the feature row of [`Inputs::subject`] (see the module
/// documentation and `FEATURES.md`).
#[must_use]
pub fn extract(inputs: &Inputs<'_>) -> Row {
    let Inputs {
        subject,
        observer,
        now_ms,
        horizon_ms,
        reports,
    } = *inputs;
    let subject_report = reports
        .iter()
        .find(|h| h.signer == subject && fresh(h.report, now_ms, horizon_ms))
        .map(|h| h.report);
    let listed = |o: &NodeId| subject_report.is_none_or(|r| observation_of(r, o).is_some());
    // Reporters: fresh reports, other than the subject's, that observe it
    // and that the subject names too (or that are the observer's own).
    let mut peers: Vec<(NodeId, Link)> = reports
        .iter()
        .filter(|h| h.signer != subject && fresh(h.report, now_ms, horizon_ms))
        .filter(|h| h.signer == observer || listed(&h.signer))
        .filter_map(|h| {
            observation_of(h.report, &subject)
                .map(|obs| (h.signer, Link::of(&obs.samples, h.report.sample_ms)))
        })
        .collect();
    peers.sort_by_key(|p| p.0);
    peers.truncate(MAX_REPORTERS);

    let mut f = [0f64; COUNT];
    f[0] = peers.len() as f64;
    f[2] = f64::from(u8::from(subject_report.is_some()));
    let column = |g: &dyn Fn(&Link) -> f64| -> Vec<f64> { peers.iter().map(|p| g(&p.1)).collect() };
    let med = |g: &dyn Fn(&Link) -> f64| median(&mut column(g));
    let trim = |g: &dyn Fn(&Link) -> f64| trimmed_mean(&mut column(g));
    f[3] = med(&|l| l.msgs_in_rate());
    f[4] = trim(&|l| l.msgs_in_rate());
    f[5] = med(&|l| l.rate(l.bytes_in));
    f[6] = med(&|l| l.fault_rate(l.invalid));
    f[7] = trim(&|l| l.fault_rate(l.invalid));
    f[8] = med(&|l| l.fault_rate(l.malformed));
    f[9] = med(&|l| l.rate(l.duplicates));
    f[10] = trim(&|l| l.rate(l.duplicates));
    f[11] = med(&|l| l.rate(l.rate_limited));
    f[12] = trim(&|l| l.rate(l.rate_limited));
    f[13] = med(&Link::probe_fail);
    f[14] = med(&Link::rtt);
    f[15] = med(&Link::reciprocity);

    if let Some((_, own)) = peers.iter().find(|p| p.0 == observer) {
        f[16] = 1.0;
        f[17] = own.msgs_in_rate();
        f[18] = own.fault_rate(own.invalid);
        f[19] = own.rate(own.duplicates);
        f[20] = own.rate(own.rate_limited);
        f[21] = own.probe_fail();
        f[22] = own.reciprocity();
    }

    if let Some(r) = subject_report {
        claims(r, inputs, &peers, &mut f);
    }
    #[allow(
        clippy::cast_possible_truncation,
        reason = "features are small, bounded magnitudes; f32 is the models' input type"
    )]
    Row(f.map(|x| if x.is_finite() { x as f32 } else { 0.0 }))
}

/// The claims columns: the subject's host metrics, how its link claims
/// compare with the other ends' observations, and whether it relayed the
/// reports it says it held.
fn claims(r: &Report, inputs: &Inputs<'_>, peers: &[(NodeId, Link)], f: &mut [f64; COUNT]) {
    let Inputs {
        subject,
        now_ms,
        horizon_ms,
        reports,
        ..
    } = *inputs;
    let held = |o: &NodeId| reports.iter().find(|h| h.signer == *o);
    let n = r.host.len().max(1) as f64;
    let seconds = (r.host.len() as f64 * f64::from(r.sample_ms) / 1000.0).max(1e-3);
    let sum = |g: &dyn Fn(&crate::telemetry::HostSample) -> f64| r.host.iter().map(g).sum::<f64>();
    f[23] = sum(&|h| f64::from(h.cpu_permille)) / n / 1000.0;
    f[24] = sum(&|h| f64::from(h.mem_permille)) / n / 1000.0;
    f[25] = ln1p(sum(&|h| f64::from(h.net_out_bytes)) / seconds);
    f[26] = ln1p(sum(&|h| f64::from(h.node_errors)) / seconds);

    // Listed neighbours whose fresh report the observer holds: does each
    // name the subject back?
    let mut fresh_held = 0usize;
    let mut unconfirmed = 0usize;
    for obs in &r.neighbours {
        let Some(theirs) = held(&obs.neighbour).filter(|h| fresh(h.report, now_ms, horizon_ms))
        else {
            continue;
        };
        fresh_held += 1;
        if observation_of(theirs.report, &subject).is_none() {
            unconfirmed += 1;
        }
    }
    if fresh_held > 0 {
        f[1] = unconfirmed as f64 / fresh_held as f64;
    }
    if let Some(h) = held(&subject) {
        f[32] = h.relays.withheld();
    }

    // Mutual links: the subject's claim about the link against the other
    // end's observation of it.
    let mut out_gap = Vec::new();
    let mut in_gap = Vec::new();
    let mut rtt_gap = Vec::new();
    let mut min_gap = Vec::new();
    for (o, theirs) in peers {
        let Some(mine) = observation_of(r, o) else {
            continue;
        };
        let mine = Link::of(&mine.samples, r.sample_ms);
        let gap = |a: f64, b: f64| (a - b).abs();
        let gaps = [
            gap(mine.rate(mine.msgs_out), theirs.rate(theirs.msgs_in)),
            gap(mine.rate(mine.msgs_in), theirs.rate(theirs.msgs_out)),
            gap(mine.rtt(), theirs.rtt()),
        ];
        out_gap.push(gaps[0]);
        in_gap.push(gaps[1]);
        rtt_gap.push(gaps[2]);
        min_gap.push(gaps.into_iter().fold(f64::INFINITY, f64::min));
    }
    if !min_gap.is_empty() {
        let disagree = min_gap.iter().filter(|g| **g > DISAGREE_GAP).count();
        f[30] = disagree as f64 / min_gap.len() as f64;
    }
    f[27] = median(&mut out_gap);
    f[28] = median(&mut in_gap);
    f[29] = median(&mut rtt_gap);
    f[31] = median(&mut min_gap);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::telemetry::HostSample;
    use proptest::prelude::*;

    fn id(b: u8) -> NodeId {
        NodeId([b; NodeId::LEN])
    }

    fn sample(msgs: u16, invalid: u16, rtt: u16) -> LinkSample {
        LinkSample {
            messages_in: msgs,
            messages_out: msgs,
            bytes_in: u32::from(msgs) * 900,
            bytes_out: u32::from(msgs) * 900,
            invalid,
            probes_sent: 1,
            rtt_ms: rtt,
            ..LinkSample::default()
        }
    }

    /// A report by a node that observes each of `links` with the given
    /// per-sample (messages, invalid).
    fn report(start_ms: u64, links: &[(NodeId, u16, u16)]) -> Report {
        let mut links = links.to_vec();
        links.sort_by_key(|l| l.0);
        Report {
            start_ms,
            sample_ms: 1000,
            host: vec![
                HostSample {
                    cpu_permille: 200,
                    mem_permille: 400,
                    ..HostSample::default()
                };
                5
            ],
            neighbours: links
                .iter()
                .map(|(n, m, inv)| Observation {
                    neighbour: *n,
                    claimed_epoch: 1,
                    claimed_sequence: 1,
                    relays: Default::default(),
                    samples: vec![sample(*m, *inv, 40); 5],
                })
                .collect(),
        }
    }

    const NOW: u64 = 1_000_000;

    /// `report` as held at position (1, 1), the position the test reports
    /// claim for each other.
    fn held(signer: NodeId, report: &Report) -> Held<'_> {
        Held {
            signer,
            position: (1, 1),
            report,
            relays: Relays::default(),
        }
    }

    /// The subject's report naming `reporters`, and each reporter's report
    /// observing the subject with `seen(i)` = (messages, invalid) a sample.
    fn neighbourhood(
        s: NodeId,
        reporters: &[NodeId],
        seen: impl Fn(usize) -> (u16, u16),
    ) -> (Report, Vec<Report>) {
        let subject = report(
            NOW - 5_000,
            &reporters.iter().map(|r| (*r, 10, 0)).collect::<Vec<_>>(),
        );
        let theirs = (0..reporters.len())
            .map(|i| {
                let (m, inv) = seen(i);
                report(NOW - 5_000, &[(s, m, inv)])
            })
            .collect();
        (subject, theirs)
    }

    /// The row `observer` extracts about `s` from those reports.
    fn row_of(
        s: NodeId,
        observer: NodeId,
        subject: &Report,
        reporters: &[NodeId],
        theirs: &[Report],
    ) -> Row {
        let mut all = vec![held(s, subject)];
        all.extend(reporters.iter().zip(theirs).map(|(r, t)| held(*r, t)));
        extract(&Inputs {
            subject: s,
            observer,
            now_ms: NOW,
            horizon_ms: 10_000,
            reports: &all,
        })
    }

    #[test]
    fn own_link_loss_is_the_median_share_of_failed_probes_over_the_links() {
        let failing = |r: &mut Report, k: usize| {
            for s in &mut r.neighbours[k].samples {
                s.probes_failed = s.probes_sent;
            }
        };
        let mut r = report(NOW, &[(id(1), 5, 0), (id(2), 5, 0), (id(3), 5, 0)]);
        assert_eq!(own_link_loss(&r), 0.0);
        failing(&mut r, 0);
        assert_eq!(own_link_loss(&r), 0.0, "one bad link is that neighbour's");
        failing(&mut r, 2);
        assert_eq!(own_link_loss(&r), 1.0, "most bad links are this host's");
        assert_eq!(own_link_loss(&report(NOW, &[])), 0.0);
    }

    #[test]
    fn schema_names_are_unique_and_counted() {
        let mut names = NAMES.to_vec();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), COUNT);
    }

    #[test]
    fn honest_neighbourhood_gives_quiet_features_and_the_observer_counts_as_own() {
        let s = id(1);
        let reporters: Vec<NodeId> = (2..7).map(id).collect();
        let (subject, theirs) = neighbourhood(s, &reporters, |_| (10, 0));
        let row = row_of(s, reporters[0], &subject, &reporters, &theirs);
        assert_eq!(row.get("reporters"), Some(5.0));
        assert_eq!(row.get("subject_report_fresh"), Some(1.0));
        assert_eq!(row.get("own_neighbour"), Some(1.0));
        assert_eq!(row.get("peer_invalid_med"), Some(0.0));
        assert_eq!(row.get("listed_unconfirmed"), Some(0.0));
        assert_eq!(row.get("claim_out_mismatch"), Some(0.0));
        let msgs = row.get("peer_msgs_in_med").unwrap();
        assert!((msgs - 11f32.ln()).abs() < 1e-6, "{msgs}");
        assert!((row.get("claim_cpu").unwrap() - 0.2).abs() < 1e-6);
    }

    #[test]
    fn stale_reports_and_unnamed_reporters_are_ignored() {
        let s = id(1);
        let subject = report(NOW - 5_000, &[(id(2), 10, 0)]);
        let named = report(NOW - 5_000, &[(s, 10, 0)]);
        let stale = report(NOW - 60_000, &[(s, 10, 9)]);
        // A framer with no link to the subject claims it sent garbage.
        let framer = report(NOW - 5_000, &[(s, 10, 9)]);
        let all = [
            held(s, &subject),
            held(id(2), &named),
            held(id(3), &stale),
            held(id(4), &framer),
        ];
        let row = extract(&Inputs {
            subject: s,
            observer: id(9),
            now_ms: NOW,
            horizon_ms: 10_000,
            reports: &all,
        });
        assert_eq!(row.get("reporters"), Some(1.0));
        assert_eq!(row.get("peer_invalid_med"), Some(0.0));
        assert_eq!(row.get("own_neighbour"), Some(0.0));
    }

    #[test]
    fn relays_the_observer_lacks_count_as_withheld() {
        let s = id(1);
        let reporters: Vec<NodeId> = (2..7).map(id).collect();
        let (subject, theirs) = neighbourhood(s, &reporters, |_| (10, 0));
        let observer = reporters[0];
        let subjects: Vec<Vec<NodeId>> = theirs.iter().map(|r| r.subjects().collect()).collect();
        // The subject claims position (1, 1) of each neighbour. The
        // observer holds one at (1, 1), one older, one newer and none of
        // the fourth (those two are left out); its own report never
        // counts.
        let positions = [(1, 1), (1, 1), (1, 0), (2, 0)];
        let lookup = |n: &NodeId| {
            let i = reporters.iter().position(|r| r == n)?;
            Some((*positions.get(i)?, subjects[i].as_slice()))
        };
        // Its previous report claimed (1, 0) of each.
        let before: Vec<(NodeId, (u64, u64))> = reporters.iter().map(|r| (*r, (1, 0))).collect();
        let due = Relays::due(&observer, &s, &subject, &before, lookup);
        assert_eq!(
            due,
            Due {
                claimed: 2,
                missing: vec![(reporters[2], (1, 1))]
            }
        );
        // The same claims again in the next report are nothing new.
        let again = Relays::due(&observer, &s, &subject, &Relays::claims(&subject), lookup);
        assert_eq!((again.claimed, again.missing.len()), (0, 0));
        // Nor is a claim about a neighbour its previous report did not
        // name (the claimed report may have come before the link), or one
        // whose link was quiet in the first sample (it began mid-interval).
        let new_link = Relays::due(&observer, &s, &subject, &before[..2], lookup);
        assert_eq!((new_link.claimed, new_link.missing.len()), (1, 0));
        let mut late_link = subject.clone();
        late_link.neighbours[2].samples[0] = LinkSample::default();
        let late = Relays::due(&observer, &s, &late_link, &before, lookup);
        assert_eq!((late.claimed, late.missing.len()), (1, 0));
        // A subject whose report does not observe the observer owes it
        // nothing.
        let stranger = Relays::due(&id(99), &s, &subject, &before, lookup);
        assert_eq!((stranger.claimed, stranger.missing.len()), (0, 0));
        // A neighbour that observes the observer sends it its reports
        // itself: not the subject's to relay.
        let mut knows_observer = subjects[2].clone();
        knows_observer.push(observer);
        knows_observer.sort_unstable();
        let due = Relays::due(&observer, &s, &subject, &before, |n| {
            let i = reporters.iter().position(|r| r == n)?;
            let subjects = if i == 2 {
                &knows_observer
            } else {
                &subjects[i]
            };
            Some((*positions.get(i)?, subjects.as_slice()))
        });
        assert_eq!((due.claimed, due.missing.len()), (1, 0));

        let mut all = vec![Held {
            relays: Relays {
                claimed: 3,
                missing: 2,
            },
            ..held(s, &subject)
        }];
        all.extend(reporters.iter().zip(&theirs).map(|(r, t)| held(*r, t)));
        let row = extract(&Inputs {
            subject: s,
            observer,
            now_ms: NOW,
            horizon_ms: 10_000,
            reports: &all,
        });
        let withheld = row.get("relay_withheld").unwrap();
        assert!((withheld - 1.0 / 7.0).abs() < 1e-6, "{withheld}");
        let none_checked = row_of(s, observer, &subject, &reporters, &theirs);
        assert_eq!(none_checked.get("relay_withheld"), Some(0.0));
    }

    #[test]
    fn a_lying_subject_disagrees_on_every_mutual_link() {
        let s = id(1);
        let reporters: Vec<NodeId> = (2..7).map(id).collect();
        let (mut subject, theirs) = neighbourhood(s, &reporters, |_| (10, 0));
        let honest = row_of(s, id(9), &subject, &reporters, &theirs);
        assert_eq!(honest.get("claim_links_disagree"), Some(0.0));
        assert_eq!(honest.get("claim_min_mismatch"), Some(0.0));
        // It claims twice the traffic and half the RTT on every link.
        for o in &mut subject.neighbours {
            for x in &mut o.samples {
                x.messages_in *= 2;
                x.messages_out *= 2;
                x.rtt_ms /= 2;
            }
        }
        let lying = row_of(s, id(9), &subject, &reporters, &theirs);
        assert_eq!(lying.get("claim_links_disagree"), Some(1.0));
        let gap = lying.get("claim_min_mismatch").unwrap();
        assert!((gap - (21f32 / 11.0).ln()).abs() < 1e-5, "{gap}");
    }

    #[test]
    fn a_flooding_subject_shows_in_peer_columns() {
        let s = id(1);
        let reporters: Vec<NodeId> = (2..6).map(id).collect();
        let (subject, theirs) = neighbourhood(s, &reporters, |_| (400, 50));
        let row = row_of(s, id(9), &subject, &reporters, &theirs);
        assert!(row.get("peer_invalid_med").unwrap() > 3.9);
        // It claims 10 messages a second where the other ends count 400.
        assert!(row.get("claim_in_mismatch").unwrap() > 3.0);
    }

    #[test]
    fn faults_and_bursts_are_counted_from_their_onset_not_over_the_quiet_seconds_before() {
        let s = id(1);
        let reporters: Vec<NodeId> = (2..5).map(id).collect();
        let (subject, mut theirs) = neighbourhood(s, &reporters, |_| (3, 0));
        let quiet = row_of(s, id(2), &subject, &reporters, &theirs);
        assert_eq!(quiet.get("own_invalid"), Some(0.0));
        assert!((quiet.get("own_msgs_in").unwrap() - 4f32.ln()).abs() < 1e-6);
        // Each reporter's last two seconds of five: one invalid frame and
        // 17 messages a second. Over all five seconds that reads 0.4 and
        // 8.6 a second; from the onset, 1 and 17.
        for t in &mut theirs {
            for x in &mut t.neighbours[0].samples[3..] {
                x.invalid = 1;
                x.messages_in = BURST_MESSAGES;
            }
        }
        let row = row_of(s, id(2), &subject, &reporters, &theirs);
        for name in ["own_invalid", "peer_invalid_med", "peer_invalid_trim"] {
            assert!((row.get(name).unwrap() - 2f32.ln()).abs() < 1e-6, "{name}");
        }
        for name in ["own_msgs_in", "peer_msgs_in_med", "peer_msgs_in_trim"] {
            assert!((row.get(name).unwrap() - 18f32.ln()).abs() < 1e-6, "{name}");
        }
        // One second short of a burst counts over the whole report.
        for t in &mut theirs {
            for x in &mut t.neighbours[0].samples[3..] {
                x.messages_in = BURST_MESSAGES - 1;
            }
        }
        let row = row_of(s, id(2), &subject, &reporters, &theirs);
        let whole = (3.0 * 3.0 + 2.0 * f64::from(BURST_MESSAGES - 1)) / 5.0;
        assert!((f64::from(row.get("own_msgs_in").unwrap()) - (1.0 + whole).ln()).abs() < 1e-6);
    }

    #[test]
    fn empty_and_nan_inputs_are_safe() {
        assert_eq!(median(&mut []), 0.0);
        assert_eq!(trimmed_mean(&mut []), 0.0);
        assert_eq!(Score::quantise(f32::NAN), Score(10_000));
        assert_eq!(Score::quantise(-3.0), Score(0));
        assert_eq!(Score::quantise(0.12345), Score(1235));
        assert!(Score(1235).agrees(Score(1234)));
        assert!(!Score(1235).agrees(Score(1233)));
        let row = extract(&Inputs {
            subject: id(1),
            observer: id(2),
            now_ms: NOW,
            horizon_ms: 10_000,
            reports: &[],
        });
        assert_eq!(row, Row([0.0; COUNT]));
    }

    proptest! {
        /// Fewer than a third of arbitrary values cannot move the median or
        /// the trimmed mean outside the honest values' range.
        #[test]
        fn robust_aggregates_stay_within_the_honest_range(
            honest in proptest::collection::vec(0.0f64..10.0, 1..20),
            liars in proptest::collection::vec(-1e9f64..1e9, 0..10),
        ) {
            let n = honest.len() + liars.len();
            prop_assume!(3 * liars.len() < n);
            let lo = honest.iter().copied().fold(f64::INFINITY, f64::min);
            let hi = honest.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let mut all: Vec<f64> = honest.iter().chain(liars.iter()).copied().collect();
            let m = median(&mut all);
            let t = trimmed_mean(&mut all);
            prop_assert!(m >= lo - 1e-9 && m <= hi + 1e-9, "median {} outside {}..{}", m, lo, hi);
            prop_assert!(t >= lo - 1e-9 && t <= hi + 1e-9, "trimmed {} outside {}..{}", t, lo, hi);
        }

        /// The same for whole feature rows: an honest subject with n
        /// honest reporters and fewer than n/2 framers among its named
        /// neighbours (so under a third of all reporters) keeps its peer
        /// columns within what the honest reporters alone give.
        #[test]
        fn framers_under_a_third_cannot_raise_an_honest_subjects_peer_columns(
            honest in 3usize..10,
            framers in 0usize..5,
            garbage in 1u16..2000,
        ) {
            prop_assume!(3 * framers < honest + framers);
            let s = id(1);
            let ids: Vec<NodeId> = (0..honest + framers).map(|i| id(10 + u8::try_from(i).unwrap())).collect();
            let (subject, theirs) = neighbourhood(s, &ids, |i| if i < honest { (10, 0) } else { (garbage, garbage) });
            let row = row_of(s, id(9), &subject, &ids, &theirs);
            for name in ["peer_invalid_med", "peer_invalid_trim", "peer_msgs_in_med", "peer_msgs_in_trim"] {
                let v = row.get(name).unwrap();
                let honest_value = if name.contains("invalid") { 0.0 } else { 11f32.ln() };
                prop_assert!((v - honest_value).abs() < 1e-5, "{} = {}", name, v);
            }
        }
    }
}
