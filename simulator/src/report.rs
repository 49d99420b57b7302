//! The run report: JSON for machines, Markdown for people, SVG plots.
#![allow(
    clippy::cast_possible_truncation,
    reason = "node indices are below 100,000 (scenario validation) and float-to-integer casts are of bounded, non-negative times and counts"
)]

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use plotters::prelude::*;
use serde::Serialize;

use crate::engine::Sim;
use crate::metrics::{FalseCertificate, SERIES_S, SeriesPoint};
use crate::scenario::{ActionKind, Scenario};

/// Percentiles of a distribution.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Dist {
    /// Mean.
    pub mean: f64,
    /// Median.
    pub p50: f64,
    /// 95th percentile.
    pub p95: f64,
    /// 99th percentile.
    pub p99: f64,
    /// Largest.
    pub max: f64,
}

impl Dist {
    fn of(mut v: Vec<f64>) -> Self {
        if v.is_empty() {
            return Self::default();
        }
        v.sort_by(f64::total_cmp);
        let q = |p: f64| v[((p * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1];
        Self {
            mean: v.iter().sum::<f64>() / v.len() as f64,
            p50: q(0.5),
            p95: q(0.95),
            p99: q(0.99),
            max: v[v.len() - 1],
        }
    }
}

/// Delivery of reports to interested nodes.
#[derive(Debug, Clone, Serialize)]
pub struct Delivery {
    /// Reports signed after warm-up.
    pub reports: u64,
    /// Fraction of them that reached ≥ 99% of their interested live nodes
    /// within the deadline.
    pub reports_reaching_99pct_on_time: f64,
    /// (report, interested live node) pairs.
    pub pairs: u64,
    /// Fraction of pairs delivered within the deadline.
    pub on_time_ratio: f64,
    /// Fraction of pairs delivered at all (within 10 s).
    pub delivered_ratio: f64,
    /// Dissemination latency over delivered pairs, ms.
    pub latency_ms: Dist,
    /// The deadline, ms.
    pub deadline_ms: u64,
}

/// Crash detection by the crashed node's live neighbours.
#[derive(Debug, Clone, Serialize)]
pub struct Detection {
    /// (crashed node, live neighbour) pairs detected as failed.
    pub detected: usize,
    /// Time from crash to the neighbour declaring it failed, ms.
    pub time_ms: Dist,
    /// Pairs where the neighbour dropped the crashed node for another
    /// reason first (e.g. replaced it in a view change).
    pub removed_otherwise: u64,
    /// Pairs where the crashed node restarted before the neighbour
    /// declared it failed.
    pub restarted_first: u64,
    /// Pairs unresolved 10 s or more after the crash at the end of the run.
    pub undetected: usize,
    /// Suspicions or failure verdicts about a node within 10 s of its
    /// restart: they concern the crashed incarnation, so they are counted
    /// here rather than as false.
    pub previous_incarnation: u64,
    /// Suspicions of healthy live nodes up for 10 s or more (refuted later
    /// or not).
    pub false_suspicions: u64,
    /// Suspicions of live overloaded nodes (they stall longer than the
    /// probe timeouts, so suspecting them is expected; declaring them dead
    /// is not).
    pub overloaded_suspicions: u64,
    /// Live nodes declared failed by a neighbour.
    pub false_deaths: u64,
    /// Up to ten (time s, accuser, accused) examples.
    pub false_death_examples: Vec<(f64, u32, u32)>,
}

/// Equivocators and their quarantine certificates.
#[derive(Debug, Clone, Serialize)]
pub struct Equivocation {
    /// Nodes that equivocated.
    pub equivocators: usize,
    /// Of those, certified at ≥ 99% of the honest nodes live both at the
    /// first equivocation and at the end, within the run.
    pub certified_at_99pct: usize,
    /// Time from an equivocator's first conflicting report to a
    /// certificate held by 99% of those nodes, ms, over the certified ones.
    pub time_to_99pct_ms: Dist,
    /// The same to 100%, ms, over equivocators that got there.
    pub time_to_all_ms: Dist,
    /// Lowest fraction of those nodes holding a certificate at the end,
    /// over equivocators.
    pub min_holding_at_end: f64,
    /// Most distinct certificates held about one equivocator by live nodes
    /// at the end (1: the mesh converged on one certificate per incident).
    pub max_distinct_certificates: usize,
    /// Certificates held about nodes that never equivocated (must be 0).
    pub honest_quarantined: usize,
    /// Up to ten (time s, holder, subject) examples.
    pub honest_quarantined_examples: Vec<(f64, u32, u32)>,
}

/// Voted quarantine: how fast attackers were voted out, and whether
/// anyone honest was.
#[derive(Debug, Clone, Serialize)]
pub struct Quorum {
    /// Per attack kind: attackers whose attack started, those quarantined
    /// at ≥ 99% of the honest nodes live at the end, and the time from
    /// attack start to that, ms.
    pub by_kind: BTreeMap<&'static str, QuarantineTimes>,
    /// Each attacker whose attack started: its stages and time to
    /// quarantine (what sets a kind's p95).
    pub attackers: Vec<AttackerTimes>,
    /// Honest nodes (never attacking, never equivocating) that some node
    /// held a certificate against (must be 0).
    pub honest_quarantined: usize,
    /// Up to ten (time s, holder, subject) examples.
    pub honest_quarantined_examples: Vec<(f64, u32, u32)>,
    /// The honest nodes quarantined by case (none, victim, degraded,
    /// overloaded, churn).
    pub honest_quarantined_by_case: BTreeMap<&'static str, usize>,
    /// Accusations made, and those that made a certificate.
    pub accusations: u64,
    /// Of those, certified.
    pub certified: u64,
    /// Votes cast, by verdict.
    pub votes: BTreeMap<&'static str, u64>,
    /// Sizes of the voted certificates made, bytes.
    pub certificate_bytes: Dist,
    /// Accusations, evidence and votes sent per node, bytes/s over the
    /// measured window.
    pub vote_traffic_bytes_per_s: Dist,
    /// Degraded hosts (honest), if the scenario has any.
    pub degraded: Option<DegradedHosts>,
    /// Share of a victim's neighbours that are its attackers, sampled
    /// every second while they attack (an eclipse would take it to 1).
    pub victim_neighbours_attacking: Option<Dist>,
    /// Voted certificates made against honest nodes, by the accuser's
    /// attack kind (`honest` for an honest accuser).
    pub false_certificates_by_accuser: BTreeMap<&'static str, usize>,
    /// The first twenty of them: who accused, who voted yes, and how
    /// many of the subject's neighbours attacked it.
    pub false_certificate_examples: Vec<FalseCertificate>,
}

/// What the honest nodes with degraded networks did and suffered.
#[derive(Debug, Clone, Serialize)]
pub struct DegradedHosts {
    /// How many.
    pub nodes: usize,
    /// Accusations they made.
    pub accusations: u64,
    /// Of those, certified.
    pub certified: u64,
    /// Degraded hosts that some node held a certificate against (counted
    /// among the honest nodes quarantined too).
    pub quarantined: usize,
}

/// One attacker's way to quarantine.
#[derive(Debug, Clone, Serialize)]
pub struct AttackerTimes {
    /// Its node index.
    pub node: u32,
    /// Its kind.
    pub kind: &'static str,
    /// Its intensity.
    pub intensity: f64,
    /// When its attack started, s (a liar's: when it sent its first lying
    /// report, since its attack is its signed reports).
    pub start_s: f64,
    /// Attack start → first honest raise, first honest accusation, first
    /// voted certificate, ms.
    pub stages_ms: [Option<f64>; 3],
    /// Attack start → a certificate at 99% of honest nodes, ms.
    pub quarantined_ms: Option<f64>,
}

/// Time to quarantine for one attack kind.
#[derive(Debug, Clone, Default, Serialize)]
pub struct QuarantineTimes {
    /// Attackers whose attack started within the run.
    pub attackers: usize,
    /// Of those, quarantined at ≥ 99% of the honest nodes.
    pub quarantined: usize,
    /// Attack start → an honest node first raised suspicion of it, first
    /// accused it, a voted certificate was first made, ms (medians over
    /// the attackers that got there; none when none did).
    pub stages_p50_ms: [Option<f64>; 3],
    /// Attack start → certificate at 99%, ms.
    pub time_ms: Dist,
    /// The first node holding a certificate → 99% holding one, ms (how
    /// long a certificate takes to spread).
    pub spread_ms: Dist,
    /// Honest members' verdicts on each attacker's first accusation by an
    /// honest node (why a first vote fell short).
    pub first_votes: BTreeMap<&'static str, u64>,
    /// Committee seats of those accusations when they closed: yes, no, all.
    pub first_seats: [u64; 3],
}

/// Recovery after a scheduled action.
#[derive(Debug, Clone, Serialize)]
pub struct Recovery {
    /// The action.
    pub action: ActionKind,
    /// When, s.
    pub at_s: f64,
    /// Seconds until on-time delivery to live nodes was back at ≥ 99% (for
    /// reports signed from then on), if it came back.
    pub recovered_after_s: Option<f64>,
}

/// Engine figures.
#[derive(Debug, Clone, Serialize)]
pub struct Engine {
    /// Events processed.
    pub events: u64,
    /// Messages delivered.
    pub deliveries: u64,
    /// Messages dropped (loss, partitions, dead receivers).
    pub dropped: u64,
    /// Wall-clock seconds the run took.
    pub wall_s: f64,
    /// Simulated seconds per wall second.
    pub speedup: f64,
    /// Events per wall second.
    pub events_per_s: f64,
    /// Peak resident memory of the process, MiB (Linux `VmHWM`).
    pub peak_rss_mib: Option<f64>,
    /// Real-mode verification cache (hits, misses).
    pub verify_cache: (u64, u64),
}

/// Everything a run reports.
#[derive(Debug, Clone, Serialize)]
pub struct RunReport {
    /// The scenario as run (after command-line overrides).
    pub scenario: Scenario,
    /// SHA-256 over every delivery (time, source, destination, content
    /// hash).
    pub trace_hash: String,
    /// Report delivery.
    pub delivery: Delivery,
    /// Per-node bandwidth, all traffic in and out with packet overhead,
    /// bytes/s, over the measured window.
    pub bandwidth_bytes_per_s: Dist,
    /// Messages sent and received per node per second.
    pub messages_per_node_per_s: Dist,
    /// Estimated CPU per node from the cost model, fraction of one core.
    pub cpu_core_fraction: Dist,
    /// Failure detection and false positives.
    pub detection: Detection,
    /// Equivocation certificates.
    pub equivocation: Equivocation,
    /// Voted quarantine (when the scenario votes).
    pub quorum: Option<Quorum>,
    /// Model scoring and local suspicion (when rows were extracted).
    pub scoring: Option<Scoring>,
    /// Recovery after each scheduled action.
    pub recovery: Vec<Recovery>,
    /// Live nodes with an empty active view at the end.
    pub isolated_at_end: usize,
    /// Engine speed.
    pub engine: Engine,
    /// Time series (5 s buckets).
    pub series: Vec<SeriesPoint>,
    /// Latency CDF points (ms, fraction), for the plot.
    #[serde(skip)]
    pub latency_cdf: Vec<(u64, f64)>,
}

/// Model scoring against the attack library's ground truth.
#[derive(Debug, Clone, Serialize)]
pub struct Scoring {
    /// The model (manifest name and sha256), if one scored.
    pub model: Option<String>,
    /// Raise threshold.
    pub raise: f32,
    /// Rows extracted / scored.
    pub rows: u64,
    /// Rows scored.
    pub rows_scored: u64,
    /// Wall seconds inside the model.
    pub model_s: f64,
    /// Per attack kind (`none`: honest subjects and attackers before their
    /// start), after warm-up, rows from honest observers.
    pub by_kind: std::collections::BTreeMap<&'static str, crate::detect::KindCounts>,
    /// Local suspicion raised by honest observers against honest subjects,
    /// by honest case.
    pub false_raises: std::collections::BTreeMap<&'static str, u64>,
    /// Raised by honest observers against attackers during their attack,
    /// by kind.
    pub true_raises: std::collections::BTreeMap<&'static str, u64>,
    /// Raised by attackers' own nodes (not counted as false positives: an
    /// attacker suspects whom it likes).
    pub raises_by_attackers: u64,
    /// Honest subject-hours observed (after warm-up), by honest case.
    pub honest_hours: std::collections::BTreeMap<&'static str, f64>,
    /// False raises per honest subject-hour.
    pub false_raises_per_subject_hour: f64,
    /// The first false raises with the row that raised each.
    pub false_raise_examples: Vec<crate::detect::FalseRaise>,
    /// First error writing the dataset or scoring, if any.
    pub error: Option<String>,
}

fn scoring(sim: &Sim) -> Option<Scoring> {
    let d = &sim.detection;
    if d.tally.rows == 0 && d.scorer.is_none() {
        return None;
    }
    let hours: std::collections::BTreeMap<&'static str, f64> = d
        .tally
        .honest_seconds
        .iter()
        .map(|(k, v)| (*k, *v as f64 / 3600.0))
        .collect();
    let total_hours: f64 = hours.values().sum();
    let false_raises: u64 = d.tally.false_raises.values().sum();
    Some(Scoring {
        model: d.scorer.as_ref().map(|s| {
            use sentinel_models::Scorer;
            format!("{} {}", s.manifest().name, s.manifest().sha256)
        }),
        raise: d.raise.as_f32(),
        rows: d.tally.rows,
        rows_scored: d.tally.rows_scored,
        model_s: d.tally.model_s,
        by_kind: d.by_kind(),
        false_raises: d.tally.false_raises.clone(),
        true_raises: d.tally.true_raises.clone(),
        raises_by_attackers: d.tally.raises_by_attackers,
        honest_hours: hours,
        false_raises_per_subject_hour: false_raises as f64 / total_hours.max(1e-9),
        false_raise_examples: d.tally.false_raise_examples.clone(),
        error: d.error.clone(),
    })
}

fn quorum(sim: &Sim) -> Option<Quorum> {
    if !sim.sc.detection.quorum {
        return None;
    }
    let m = &sim.metrics;
    let mut by_kind: BTreeMap<&'static str, (QuarantineTimes, Vec<f64>, Vec<f64>)> =
        BTreeMap::new();
    let mut stages: BTreeMap<&'static str, [Vec<f64>; 3]> = BTreeMap::new();
    for (x, (kind, start)) in &m.attackers {
        let e = stages.entry(kind).or_default();
        for (k, at) in m.stages.get(x).into_iter().flatten().enumerate() {
            if let Some(at) = at {
                e[k].push(at.saturating_sub(*start) as f64 / 1000.0);
            }
        }
    }
    let mut attackers = Vec::new();
    for (x, kind, t) in m.time_to_quarantine(sim.now) {
        let start = m.attackers.get(&x).map_or(0, |a| a.1);
        attackers.push(AttackerTimes {
            node: x,
            kind,
            intensity: sim.intensity(x),
            start_s: start as f64 / 1e6,
            stages_ms: m
                .stages
                .get(&x)
                .copied()
                .unwrap_or_default()
                .map(|at| at.map(|at| at.saturating_sub(start) as f64 / 1000.0)),
            quarantined_ms: t.map(|(ms, _)| ms as f64),
        });
        let e = by_kind.entry(kind).or_default();
        e.0.attackers += 1;
        if let Some((ms, spread)) = t {
            e.0.quarantined += 1;
            e.1.push(ms as f64);
            e.2.push(spread as f64);
        }
    }
    let window_s = (sim.sc.duration_s - sim.sc.warmup_s).max(1) as f64;
    Some(Quorum {
        by_kind: by_kind
            .into_iter()
            .map(|(k, (mut q, v, spread))| {
                q.time_ms = Dist::of(v);
                q.spread_ms = Dist::of(spread);
                if let Some(st) = stages.remove(k) {
                    q.stages_p50_ms = st.map(|v| (!v.is_empty()).then(|| Dist::of(v).p50));
                }
                if let Some((votes, seats)) = m.first_votes.get(k) {
                    q.first_votes.clone_from(votes);
                    q.first_seats = *seats;
                }
                (k, q)
            })
            .collect(),
        attackers,
        honest_quarantined: m
            .honest_quarantined
            .iter()
            .map(|x| x.2)
            .collect::<std::collections::BTreeSet<_>>()
            .len(),
        honest_quarantined_examples: m.honest_quarantined.iter().take(10).copied().collect(),
        honest_quarantined_by_case: m.quarantined_case.values().fold(
            BTreeMap::new(),
            |mut c, k| {
                *c.entry(*k).or_default() += 1;
                c
            },
        ),
        accusations: m.accusations.0,
        certified: m.accusations.1,
        votes: m.votes.clone(),
        certificate_bytes: Dist::of(
            m.voted_certificate_bytes
                .iter()
                .map(|b| *b as f64)
                .collect(),
        ),
        victim_neighbours_attacking: (!m.victim_share.is_empty())
            .then(|| Dist::of(m.victim_share.clone())),
        false_certificates_by_accuser: m.false_certificates.iter().fold(
            BTreeMap::new(),
            |mut c, f| {
                *c.entry(f.accuser_kind).or_default() += 1;
                c
            },
        ),
        false_certificate_examples: m.false_certificates.iter().take(20).cloned().collect(),
        degraded: (!m.degraded.is_empty()).then(|| DegradedHosts {
            nodes: m.degraded.len(),
            accusations: m.degraded_accusations.0,
            certified: m.degraded_accusations.1,
            quarantined: m
                .honest_quarantined
                .iter()
                .map(|x| x.2)
                .filter(|x| m.degraded.contains(x))
                .collect::<std::collections::BTreeSet<_>>()
                .len(),
        }),
        vote_traffic_bytes_per_s: Dist::of(
            m.quorum_bytes
                .iter()
                .map(|b| *b as f64 / window_s)
                .collect(),
        ),
    })
}

fn equivocation(sim: &Sim) -> Equivocation {
    let m = &sim.metrics;
    let spread = m.certificate_spread();
    let ms = |v: Vec<u64>| Dist::of(v.into_iter().map(|x| x as f64).collect());
    Equivocation {
        equivocators: spread.len(),
        certified_at_99pct: spread.iter().filter(|s| s.1.is_some()).count(),
        time_to_99pct_ms: ms(spread.iter().filter_map(|s| s.1).collect()),
        time_to_all_ms: ms(spread.iter().filter_map(|s| s.2).collect()),
        min_holding_at_end: spread.iter().map(|s| s.3).fold(1.0, f64::min),
        max_distinct_certificates: spread
            .iter()
            .map(|s| sim.distinct_certificates(s.0))
            .max()
            .unwrap_or(0),
        honest_quarantined: m.honest_quarantined.len(),
        honest_quarantined_examples: m.honest_quarantined.iter().take(10).copied().collect(),
    }
}

/// Peak resident set size from `/proc/self/status`, MiB.
#[must_use]
pub fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

impl RunReport {
    /// Builds the report of a finished run that took `wall_s`.
    #[must_use]
    pub fn build(sim: &Sim, wall_s: f64) -> Self {
        let m = &sim.metrics;
        let sc = &sim.sc;
        let window_s = (sc.duration_s - sc.warmup_s) as f64;
        let n = m.nodes();
        let bw: Vec<f64> = (0..n)
            .map(|i| (m.bytes_in[i] + m.bytes_out[i]) as f64 / window_s)
            .collect();
        let msgs: Vec<f64> = m.msgs.iter().map(|c| *c as f64 / window_s).collect();
        let cpu: Vec<f64> = sim
            .cpu_us
            .iter()
            .map(|us| us / 1e6 / sc.duration_s as f64)
            .collect();
        let ratio = |a: u64, b: u64| if b == 0 { 1.0 } else { a as f64 / b as f64 };
        let recovery = sc
            .events
            .iter()
            .map(|a| Recovery {
                action: a.action,
                at_s: a.at_s,
                recovered_after_s: recovered_after(&m.series, a.at_s, sc.duration_s),
            })
            .collect();
        let t = sim.totals;
        Self {
            scenario: sc.clone(),
            trace_hash: sim.trace_hash(),
            delivery: Delivery {
                reports: m.reports_tracked,
                reports_reaching_99pct_on_time: ratio(m.reports_on_time, m.reports_tracked),
                pairs: m.pairs,
                on_time_ratio: ratio(m.pairs_on_time, m.pairs),
                delivered_ratio: ratio(m.pairs_delivered, m.pairs),
                latency_ms: Dist {
                    mean: f64::NAN,
                    p50: m.latency_percentile(0.5).unwrap_or(0) as f64,
                    p95: m.latency_percentile(0.95).unwrap_or(0) as f64,
                    p99: m.latency_percentile(0.99).unwrap_or(0) as f64,
                    max: m.latency_percentile(1.0).unwrap_or(0) as f64,
                },
                deadline_ms: sc.deadline_ms,
            },
            bandwidth_bytes_per_s: Dist::of(bw),
            messages_per_node_per_s: Dist::of(msgs),
            cpu_core_fraction: Dist::of(cpu),
            detection: Detection {
                detected: m.detect_ms.len(),
                time_ms: Dist::of(m.detect_ms.iter().map(|x| *x as f64).collect()),
                removed_otherwise: m.removed_otherwise,
                restarted_first: m.restarted_first,
                undetected: m.undetected(sim.now),
                previous_incarnation: m.previous_incarnation,
                false_suspicions: m.false_suspicions,
                overloaded_suspicions: m.overloaded_suspicions,
                false_deaths: m.false_deaths,
                false_death_examples: m.false_death_examples.clone(),
            },
            equivocation: equivocation(sim),
            quorum: quorum(sim),
            scoring: scoring(sim),
            recovery,
            isolated_at_end: sim.isolated(),
            engine: Engine {
                events: t.events,
                deliveries: t.deliveries,
                dropped: t.dropped,
                wall_s,
                speedup: sc.duration_s as f64 / wall_s.max(1e-9),
                events_per_s: t.events as f64 / wall_s.max(1e-9),
                peak_rss_mib: peak_rss_mib(),
                verify_cache: sim.cache_stats(),
            },
            series: m.series.clone(),
            latency_cdf: m.latency_cdf(),
        }
    }

    /// The report as Markdown.
    #[must_use]
    pub fn markdown(&self) -> String {
        let sc = &self.scenario;
        let d = &self.delivery;
        let det = &self.detection;
        let mut s = String::new();
        let _ = writeln!(s, "# Simulation report: {}\n", sc.name);
        let _ = writeln!(
            s,
            "{} nodes, {:?} crypto, {} s simulated ({} s warm-up excluded), seed {}, median link latency {} ms, loss {}, {}% overloaded, {}% churning.\n",
            sc.nodes,
            sc.crypto,
            sc.duration_s,
            sc.warmup_s,
            sc.seed,
            sc.network.latency_median_ms,
            sc.network.loss,
            sc.overload.fraction * 100.0,
            sc.churn.fraction * 100.0
        );
        let _ = writeln!(s, "Trace hash: `{}`\n", self.trace_hash);
        let _ = writeln!(s, "| metric | value |\n|---|---|");
        let rows = [
            ("reports tracked", format!("{}", d.reports)),
            (
                "reports reaching ≥ 99% of interested live nodes on time",
                format!("{:.3}%", d.reports_reaching_99pct_on_time * 100.0),
            ),
            (
                "(report, interested node) pairs on time",
                format!("{:.3}%", d.on_time_ratio * 100.0),
            ),
            (
                "pairs delivered within 10 s",
                format!("{:.3}%", d.delivered_ratio * 100.0),
            ),
            (
                "dissemination latency p50 / p95 / p99 / max",
                format!(
                    "{} / {} / {} / {} ms",
                    d.latency_ms.p50, d.latency_ms.p95, d.latency_ms.p99, d.latency_ms.max
                ),
            ),
            (
                "bandwidth per node mean / p99 (in+out)",
                format!(
                    "{:.1} / {:.1} KB/s",
                    self.bandwidth_bytes_per_s.mean / 1000.0,
                    self.bandwidth_bytes_per_s.p99 / 1000.0
                ),
            ),
            (
                "messages per node mean / p99",
                format!(
                    "{:.1} / {:.1} per s",
                    self.messages_per_node_per_s.mean, self.messages_per_node_per_s.p99
                ),
            ),
            (
                "CPU estimate per node mean / p99",
                format!(
                    "{:.2}% / {:.2}% of a core",
                    self.cpu_core_fraction.mean * 100.0,
                    self.cpu_core_fraction.p99 * 100.0
                ),
            ),
            (
                "crash detection by live neighbours p50 / p99 / max",
                format!(
                    "{} pairs: {:.0} / {:.0} / {:.0} ms",
                    det.detected, det.time_ms.p50, det.time_ms.p99, det.time_ms.max
                ),
            ),
            (
                "crashed neighbours removed otherwise / restarted first / never resolved",
                format!(
                    "{} / {} / {}",
                    det.removed_otherwise, det.restarted_first, det.undetected
                ),
            ),
            (
                "verdicts about a node restarted < 10 s ago",
                format!("{}", det.previous_incarnation),
            ),
            (
                "live nodes suspected: healthy / overloaded",
                format!("{} / {}", det.false_suspicions, det.overloaded_suspicions),
            ),
            ("live nodes declared dead", format!("{}", det.false_deaths)),
            (
                "isolated live nodes at end",
                format!("{}", self.isolated_at_end),
            ),
            (
                "nodes holding a certificate against an honest node",
                format!("{}", self.equivocation.honest_quarantined),
            ),
        ];
        for (k, v) in rows {
            let _ = writeln!(s, "| {k} | {v} |");
        }
        let eq = &self.equivocation;
        if eq.equivocators > 0 {
            let _ = writeln!(
                s,
                "\n| equivocation | value |\n|---|---|\n| equivocators / certified at ≥ 99% of honest nodes | {} / {} |\n| first equivocation → certificate at 99% p50 / p95 / max | {:.0} / {:.0} / {:.0} ms |\n| → at 100% p50 / p95 / max | {:.0} / {:.0} / {:.0} ms |\n| lowest share holding it at the end | {:.2}% |\n| most distinct certificates about one equivocator | {} |",
                eq.equivocators,
                eq.certified_at_99pct,
                eq.time_to_99pct_ms.p50,
                eq.time_to_99pct_ms.p95,
                eq.time_to_99pct_ms.max,
                eq.time_to_all_ms.p50,
                eq.time_to_all_ms.p95,
                eq.time_to_all_ms.max,
                eq.min_holding_at_end * 100.0,
                eq.max_distinct_certificates
            );
        }
        if let Some(q) = &self.quorum {
            let _ = writeln!(
                s,
                "\n| voted quarantine | attackers | quarantined at ≥ 99% | attack start → 99% p50 / p95 / max | → first raise / accusation / certificate p50 | first held → 99% p50 / max |\n|---|---|---|---|---|---|"
            );
            for (kind, t) in &q.by_kind {
                let [r, a, c] = t
                    .stages_p50_ms
                    .map(|v| v.map_or("-".into(), |v| format!("{v:.0}")));
                let _ = writeln!(
                    s,
                    "| {kind} | {} | {} | {:.0} / {:.0} / {:.0} ms | {r} / {a} / {c} ms | {:.0} / {:.0} ms |",
                    t.attackers,
                    t.quarantined,
                    t.time_ms.p50,
                    t.time_ms.p95,
                    t.time_ms.max,
                    t.spread_ms.p50,
                    t.spread_ms.max
                );
            }
            let _ = writeln!(
                s,
                "\nA liar's attack starts when it sends its first lying report: its attack is its signed reports."
            );
            let _ = writeln!(
                s,
                "\n| first accusation of each attacker | honest members' verdicts | seats yes / no / all |\n|---|---|---|"
            );
            for (kind, t) in &q.by_kind {
                let votes: Vec<String> = t
                    .first_votes
                    .iter()
                    .map(|(k, v)| format!("{k} {v}"))
                    .collect();
                let [y, n, all] = t.first_seats;
                let _ = writeln!(s, "| {kind} | {} | {y} / {n} / {all} |", votes.join(", "));
            }
            let votes: Vec<String> = q.votes.iter().map(|(k, v)| format!("{k} {v}")).collect();
            let _ = writeln!(
                s,
                "\n| voting | value |\n|---|---|\n| honest nodes quarantined | {}{} |\n| accusations / certified | {} / {} |\n| votes | {} |\n| voted certificate bytes mean / max | {:.0} / {:.0} |\n| vote traffic per node, bytes/s mean / p95 / max | {:.1} / {:.1} / {:.1} |",
                q.honest_quarantined,
                if q.honest_quarantined_by_case.is_empty() {
                    String::new()
                } else {
                    format!(" ({:?})", q.honest_quarantined_by_case)
                },
                q.accusations,
                q.certified,
                votes.join(", "),
                q.certificate_bytes.mean,
                q.certificate_bytes.max,
                q.vote_traffic_bytes_per_s.mean,
                q.vote_traffic_bytes_per_s.p95,
                q.vote_traffic_bytes_per_s.max,
            );
            if let Some(v) = &q.victim_neighbours_attacking {
                let _ = writeln!(
                    s,
                    "| victims' neighbours that attack them, share mean / p95 / max | {:.2} / {:.2} / {:.2} |",
                    v.mean, v.p95, v.max
                );
            }
            if !q.false_certificates_by_accuser.is_empty() {
                let (attackers, honest) = q
                    .false_certificate_examples
                    .iter()
                    .fold((0, 0), |(a, h), f| (a + f.yes_attackers, h + f.yes_honest));
                let _ = writeln!(
                    s,
                    "| voted certificates against honest nodes, by accuser | {:?} |\n| their yes votes by attackers / honest (first {}) | {attackers} / {honest} |",
                    q.false_certificates_by_accuser,
                    q.false_certificate_examples.len(),
                );
            }
            if let Some(d) = &q.degraded {
                let _ = writeln!(
                    s,
                    "| degraded hosts: nodes / their accusations / certified / quarantined | {} / {} / {} / {} |",
                    d.nodes, d.accusations, d.certified, d.quarantined
                );
            }
        }
        if let Some(sc) = &self.scoring
            && sc.rows_scored > 0
        {
            let _ = writeln!(
                s,
                "\n| scoring ({}) | malicious windows | recall (window) | recall (row) | benign rows ≥ raise | suspicion raised |\n|---|---|---|---|---|---|",
                sc.model.as_deref().unwrap_or("-")
            );
            for (kind, c) in &sc.by_kind {
                let ratio = |a: u64, b: u64| {
                    if b == 0 {
                        "-".to_string()
                    } else {
                        format!("{:.4}", a as f64 / b as f64)
                    }
                };
                let raised = if *kind == "none" {
                    sc.false_raises.values().sum::<u64>()
                } else {
                    sc.true_raises.get(kind).copied().unwrap_or(0)
                };
                let _ = writeln!(
                    s,
                    "| {kind} | {} | {} | {} | {} of {} | {raised} |",
                    c.malicious_windows,
                    ratio(c.malicious_windows_high, c.malicious_windows),
                    ratio(c.malicious_rows_high, c.malicious_rows),
                    c.benign_rows_high,
                    c.benign_rows
                );
            }
            let hours: f64 = sc.honest_hours.values().sum();
            let _ = writeln!(
                s,
                "\nfalse suspicion: {} raises by honest observers against honest subjects in {hours:.1} honest subject-hours = {:.2e} per subject-hour ({:?}); {} raises by attackers' own nodes not counted",
                sc.false_raises.values().sum::<u64>(),
                sc.false_raises_per_subject_hour,
                sc.false_raises,
                sc.raises_by_attackers
            );
        }
        if !self.recovery.is_empty() {
            let _ = writeln!(
                s,
                "\n| action | at | delivery back to ≥ 99% after |\n|---|---|---|"
            );
            for r in &self.recovery {
                let after = r
                    .recovered_after_s
                    .map_or_else(|| "not within the run".to_string(), |v| format!("{v:.0} s"));
                let _ = writeln!(s, "| {:?} | {:.0} s | {after} |", r.action, r.at_s);
            }
        }
        let e = &self.engine;
        let _ = writeln!(
            s,
            "\nEngine: {} events, {} deliveries, {} dropped; {:.1} s wall, {:.1}x real time, {:.0} events/s, peak memory {}.",
            e.events,
            e.deliveries,
            e.dropped,
            e.wall_s,
            e.speedup,
            e.events_per_s,
            e.peak_rss_mib
                .map_or("unknown".into(), |m| format!("{m:.0} MiB"))
        );
        let _ = writeln!(
            s,
            "\nPlots: `delivery_over_time.svg`, `latency_cdf.svg`, `bandwidth_over_time.svg`."
        );
        s
    }

    /// Writes `report.json`, `report.md` and the SVG plots into `dir`.
    ///
    /// # Errors
    /// I/O or plotting errors, with the file named.
    pub fn write(&self, dir: &Path) -> Result<(), String> {
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        let json = serde_json::to_string_pretty(self).map_err(|e| e.to_string())?;
        write_file(&dir.join("report.json"), &json)?;
        write_file(&dir.join("report.md"), &self.markdown())?;
        self.plot_series(
            &dir.join("delivery_over_time.svg"),
            "on-time delivery ratio",
            |p| (p.pairs > 0).then(|| p.on_time as f64 / p.pairs as f64),
        )?;
        self.plot_series(
            &dir.join("bandwidth_over_time.svg"),
            "mean KB/s per live node",
            |p| (p.live > 0).then(|| p.bytes as f64 / p.live as f64 / SERIES_S as f64 / 1000.0),
        )?;
        plot_cdf(&dir.join("latency_cdf.svg"), &self.latency_cdf)
    }

    fn plot_series(
        &self,
        path: &Path,
        label: &str,
        y: impl Fn(&SeriesPoint) -> Option<f64>,
    ) -> Result<(), String> {
        let pts: Vec<(f64, f64)> = self
            .series
            .iter()
            .filter_map(|p| y(p).map(|v| (p.t_s as f64, v)))
            .collect();
        let ymax = pts.iter().map(|p| p.1).fold(0.0f64, f64::max).max(1e-9) * 1.1;
        let ymin = pts
            .iter()
            .map(|p| p.1)
            .fold(f64::INFINITY, f64::min)
            .min(ymax * 0.9)
            .max(0.0);
        let root = SVGBackend::new(path, (900, 420)).into_drawing_area();
        let err = |e: &dyn std::fmt::Display| format!("plot {}: {e}", path.display());
        root.fill(&WHITE).map_err(|e| err(&e))?;
        let mut chart = ChartBuilder::on(&root)
            .caption(
                format!("{} — {}", self.scenario.name, label),
                ("sans-serif", 18),
            )
            .margin(10)
            .x_label_area_size(35)
            .y_label_area_size(60)
            .build_cartesian_2d(0.0..self.scenario.duration_s as f64, ymin..ymax)
            .map_err(|e| err(&e))?;
        chart
            .configure_mesh()
            .x_desc("simulated time (s)")
            .y_desc(label)
            .draw()
            .map_err(|e| err(&e))?;
        chart
            .draw_series(LineSeries::new(pts, &BLUE))
            .map_err(|e| err(&e))?;
        for a in &self.scenario.events {
            chart
                .draw_series(LineSeries::new([(a.at_s, ymin), (a.at_s, ymax)], &RED))
                .map_err(|e| err(&e))?;
        }
        root.present().map_err(|e| err(&e))
    }
}

fn plot_cdf(path: &Path, cdf: &[(u64, f64)]) -> Result<(), String> {
    let xmax = cdf.last().map_or(1.0, |p| p.0 as f64).max(1.0);
    let root = SVGBackend::new(path, (900, 420)).into_drawing_area();
    let err = |e: &dyn std::fmt::Display| format!("plot {}: {e}", path.display());
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let mut chart = ChartBuilder::on(&root)
        .caption("dissemination latency CDF", ("sans-serif", 18))
        .margin(10)
        .x_label_area_size(35)
        .y_label_area_size(60)
        .build_cartesian_2d(0.0..xmax, 0.0..1.0)
        .map_err(|e| err(&e))?;
    chart
        .configure_mesh()
        .x_desc("latency (ms)")
        .y_desc("fraction of deliveries")
        .draw()
        .map_err(|e| err(&e))?;
    chart
        .draw_series(LineSeries::new(
            cdf.iter().map(|(x, y)| (*x as f64, *y)),
            &BLUE,
        ))
        .map_err(|e| err(&e))?;
    root.present().map_err(|e| err(&e))
}

fn write_file(path: &Path, text: &str) -> Result<(), String> {
    std::fs::write(path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))
}

/// Seconds after `at_s` until every later bucket with traffic has on-time
/// delivery ≥ 99%.
fn recovered_after(series: &[SeriesPoint], at_s: f64, duration_s: u64) -> Option<f64> {
    let mut candidate: Option<f64> = None;
    for p in series {
        let t = p.t_s as f64;
        // The last buckets hold reports too young to be judged fully.
        if t < at_s || p.t_s + 2 * SERIES_S > duration_s || p.pairs == 0 {
            continue;
        }
        let ok = p.on_time as f64 >= 0.99 * p.pairs as f64;
        match (ok, candidate) {
            (true, None) => candidate = Some((t - at_s).max(0.0)),
            (false, _) => candidate = None,
            _ => {}
        }
    }
    candidate
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_and_recovery() {
        let d = Dist::of((1..=100).map(f64::from).collect());
        assert_eq!((d.p50, d.p99, d.max), (50.0, 99.0, 100.0));
        let pt = |t, pairs, on_time| SeriesPoint {
            t_s: t,
            pairs,
            on_time,
            bytes: 0,
            live: 1,
        };
        let series = vec![
            pt(0, 100, 100),
            pt(5, 100, 50),
            pt(10, 100, 98),
            pt(15, 100, 100),
            pt(20, 100, 100),
            pt(25, 0, 0),
            pt(30, 1, 1),
        ];
        assert_eq!(recovered_after(&series, 4.0, 40), Some(11.0));
        let series = vec![pt(0, 100, 100), pt(5, 100, 50), pt(10, 100, 50)];
        assert_eq!(recovered_after(&series, 4.0, 30), None);
    }
}
