//! Detection in a run: the nodes' score requests are collected, scored in
//! one batched model call per simulated second, handed back, written to the
//! dataset with their ground-truth labels, and counted for the report.

use std::collections::BTreeMap;
use std::path::PathBuf;

use sentinel_datasets::{Dataset, FeatureRecord};
use sentinel_models::{Scorer, TractScorer};
use sentinel_protocol::NodeId;
use sentinel_protocol::features::{Row, Score};
use serde::{Deserialize, Serialize};

/// The `[detection]` section of a scenario.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DetectionSettings {
    /// Manifest of the model that scores (e.g. `models/mlp-classifier.json`);
    /// none: rows are extracted (for datasets) but not scored.
    pub model: Option<PathBuf>,
    /// Raise threshold, as a fraction.
    pub raise: f32,
    /// Clear threshold.
    pub clear: f32,
    /// Consecutive high windows that raise.
    pub raise_after: u8,
    /// Score at or above which one window raises.
    pub raise_at_once: f32,
    /// Consecutive low windows that clear.
    pub clear_after: u8,
    /// Voted quarantine: nodes accuse what they suspect and vote on each
    /// other's accusations with the model (which must be set).
    pub quorum: bool,
    /// Score flagrant neighbours every second and end a report early at
    /// their onset ([`sentinel_protocol::suspicion::Flagrant`]). Default
    /// true.
    pub flagrant: bool,
}

impl Default for DetectionSettings {
    fn default() -> Self {
        let p = sentinel_protocol::suspicion::SuspicionPolicy::default();
        Self {
            model: None,
            raise: p.raise.as_f32(),
            clear: p.clear.as_f32(),
            raise_after: p.raise_after,
            raise_at_once: p.raise_at_once.as_f32(),
            clear_after: p.clear_after,
            quorum: false,
            flagrant: p.flagrant.enabled,
        }
    }
}

impl DetectionSettings {
    /// The node policy these settings give (`enabled` when rows are
    /// wanted).
    #[must_use]
    pub fn policy(&self, enabled: bool) -> sentinel_protocol::suspicion::SuspicionPolicy {
        let mut p = sentinel_protocol::suspicion::SuspicionPolicy::from_fractions(
            enabled,
            self.raise,
            self.clear,
            self.raise_after,
            self.raise_at_once,
            self.clear_after,
        );
        p.flagrant.enabled = self.flagrant;
        p
    }
}

/// One node's request waiting for the next batch.
#[derive(Debug)]
pub(crate) struct Pending {
    pub(crate) node: u32,
    pub(crate) window: u64,
    pub(crate) time_us: u64,
    pub(crate) rows: Vec<(NodeId, Row)>,
}

/// A vote's rows waiting for the batched model call: the accuser's row
/// replayed, then one per reporter of the subject.
#[derive(Debug, Clone)]
pub(crate) struct PendingReplay {
    pub(crate) node: u32,
    pub(crate) accusation: [u8; 32],
    pub(crate) rows: Vec<Row>,
}

/// Ground truth about one subject in one window.
#[derive(Debug, Clone)]
pub(crate) struct Truth {
    pub(crate) attack: &'static str,
    pub(crate) fraction: f32,
    pub(crate) honest_case: &'static str,
}

impl Truth {
    pub(crate) fn malicious(&self) -> bool {
        self.fraction >= 1.0
    }
}

/// Counts for the report, per attack kind (`none` for honest subjects).
#[derive(Debug, Clone, Default, Serialize)]
pub struct KindCounts {
    /// Rows (observer, subject, window) with the subject under attack for
    /// the whole window.
    pub malicious_rows: u64,
    /// Of those, rows scored at or above the raise threshold.
    pub malicious_rows_high: u64,
    /// (subject, window) pairs under attack for the whole window.
    pub malicious_windows: u64,
    /// Of those, pairs that at least one observer scored at or above the
    /// raise threshold.
    pub malicious_windows_high: u64,
    /// Rows about honest subjects (or attackers before their start).
    pub benign_rows: u64,
    /// Of those, rows scored at or above the raise threshold.
    pub benign_rows_high: u64,
}

/// The run's detection tallies.
#[derive(Debug, Default)]
pub(crate) struct Tally {
    pub(crate) by_kind: BTreeMap<&'static str, KindCounts>,
    /// Local suspicion raised by an honest observer against an honest
    /// subject, by honest case.
    pub(crate) false_raises: BTreeMap<&'static str, u64>,
    /// Raised by honest observers against attackers (during their
    /// attack), by kind.
    pub(crate) true_raises: BTreeMap<&'static str, u64>,
    /// Raised by attackers' own nodes, against anyone.
    pub(crate) raises_by_attackers: u64,
    /// Seconds honest subjects were live (after warm-up), by honest case.
    pub(crate) honest_seconds: BTreeMap<&'static str, u64>,
    /// Rows scored.
    pub(crate) rows_scored: u64,
    /// Rows extracted.
    pub(crate) rows: u64,
    /// Time spent in the model, seconds of wall time.
    pub(crate) model_s: f64,
    /// The first [`FALSE_RAISE_EXAMPLES`] false raises, with the row that
    /// completed each.
    pub(crate) false_raise_examples: Vec<FalseRaise>,
}

/// False raises kept with their row, for finding out why.
pub(crate) const FALSE_RAISE_EXAMPLES: usize = 50;

/// One suspicion raised against an honest subject, as the report shows it.
#[derive(Debug, Clone, Serialize)]
pub struct FalseRaise {
    /// Simulated seconds.
    pub time_s: f64,
    /// Observer and subject (node indices in the scenario).
    pub observer: u32,
    /// The honest subject.
    pub subject: u32,
    /// Its honest case (`none`, `churn`, `overloaded`, `victim`).
    pub case: &'static str,
    /// The score that raised it.
    pub score: f32,
    /// Attack kinds among the subject's neighbours (its active view).
    pub attacker_neighbours: Vec<&'static str>,
    /// The feature row that was scored, column name → value.
    pub row: BTreeMap<&'static str, f32>,
}

/// The scorer, the dataset writer and the pending batch of a run.
pub(crate) struct Detection {
    pub(crate) scorer: Option<TractScorer>,
    pub(crate) dataset: Option<Dataset>,
    pub(crate) pending: Vec<Pending>,
    pub(crate) replays: Vec<PendingReplay>,
    pub(crate) tally: Tally,
    pub(crate) raise: Score,
    /// (subject, window bucket) pairs seen high, per attack kind, for the
    /// window-level recall: (subject index, window end in report
    /// intervals) → high.
    pub(crate) windows: BTreeMap<(u32, u64), (&'static str, bool)>,
    pub(crate) error: Option<String>,
    /// The rows just handed back to one node, so a suspicion it raises on
    /// them can be reported with its row.
    pub(crate) last_rows: Vec<(NodeId, Row)>,
}

impl Detection {
    pub(crate) fn new(scorer: Option<TractScorer>, dataset: Option<Dataset>, raise: Score) -> Self {
        Self {
            scorer,
            dataset,
            pending: Vec::new(),
            replays: Vec::new(),
            tally: Tally::default(),
            raise,
            windows: BTreeMap::new(),
            error: None,
            last_rows: Vec::new(),
        }
    }

    /// Scores every pending row in one call; returns (node, window,
    /// scores) to hand back, or the rows with no scores when no model is
    /// loaded.
    pub(crate) fn score_pending(&mut self) -> Vec<(Pending, Vec<Option<Score>>)> {
        let pending = std::mem::take(&mut self.pending);
        let rows: Vec<Row> = pending
            .iter()
            .flat_map(|p| p.rows.iter().map(|r| r.1))
            .collect();
        self.tally.rows += rows.len() as u64;
        let mut scores: Vec<Option<Score>> = vec![None; rows.len()];
        if let Some(s) = self.scorer.as_mut()
            && !rows.is_empty()
        {
            let t = std::time::Instant::now();
            match s.score(&rows) {
                Ok(v) => {
                    self.tally.rows_scored += v.len() as u64;
                    scores = v.into_iter().map(Some).collect();
                }
                Err(e) => {
                    if self.error.is_none() {
                        self.error = Some(e.to_string());
                    }
                }
            }
            self.tally.model_s += t.elapsed().as_secs_f64();
        }
        let mut it = scores.into_iter();
        pending
            .into_iter()
            .map(|p| {
                let s: Vec<Option<Score>> = it.by_ref().take(p.rows.len()).collect();
                (p, s)
            })
            .collect()
    }

    /// Scores every pending vote's rows in one call; none without a model.
    pub(crate) fn score_replays(&mut self) -> Vec<(PendingReplay, Vec<Score>)> {
        let pending = std::mem::take(&mut self.replays);
        let Some(s) = self.scorer.as_mut() else {
            return Vec::new();
        };
        let rows: Vec<Row> = pending
            .iter()
            .flat_map(|p| p.rows.iter().copied())
            .collect();
        if rows.is_empty() {
            return Vec::new();
        }
        let t = std::time::Instant::now();
        let scores = match s.score(&rows) {
            Ok(v) => v,
            Err(e) => {
                self.error.get_or_insert(e.to_string());
                return Vec::new();
            }
        };
        self.tally.model_s += t.elapsed().as_secs_f64();
        let mut it = scores.into_iter();
        pending
            .into_iter()
            .map(|p| {
                let s: Vec<Score> = it.by_ref().take(p.rows.len()).collect();
                (p, s)
            })
            .collect()
    }

    /// Counts one row and writes it to the dataset.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn record(
        &mut self,
        time_us: u64,
        window_end_ms: u64,
        observer: NodeId,
        subject: NodeId,
        subject_index: u32,
        window_bucket: u64,
        row: &Row,
        truth: &Truth,
        score: Option<Score>,
        suspected: Option<bool>,
        counted: bool,
    ) {
        let high = score.is_some_and(|s| s >= self.raise);
        if counted {
            let c = self
                .tally
                .by_kind
                .entry(if truth.malicious() {
                    truth.attack
                } else {
                    "none"
                })
                .or_default();
            if truth.malicious() {
                c.malicious_rows += 1;
                c.malicious_rows_high += u64::from(high);
                let w = self
                    .windows
                    .entry((subject_index, window_bucket))
                    .or_insert((truth.attack, false));
                w.1 |= high;
            } else if truth.fraction == 0.0 {
                c.benign_rows += 1;
                c.benign_rows_high += u64::from(high);
            }
        }
        if let Some(d) = self.dataset.as_mut() {
            let rec = FeatureRecord {
                time_ms: time_us / 1000,
                window_end_ms,
                observer,
                subject,
                row: *row,
                malicious: Some(truth.malicious()),
                attack: Some(truth.attack.to_string()),
                attack_fraction: Some(truth.fraction),
                honest_case: Some(truth.honest_case.to_string()),
                score: score.map(Score::as_f32),
                suspected,
            };
            if let Err(e) = d.feature(rec)
                && self.error.is_none()
            {
                self.error = Some(e.to_string());
            }
        }
    }

    /// Window-level counts folded into the per-kind tallies.
    pub(crate) fn by_kind(&self) -> BTreeMap<&'static str, KindCounts> {
        let mut out = self.tally.by_kind.clone();
        for (kind, high) in self.windows.values() {
            let c = out.entry(kind).or_default();
            c.malicious_windows += 1;
            c.malicious_windows_high += u64::from(*high);
        }
        out
    }
}
