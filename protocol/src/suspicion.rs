//! Local suspicion: per-subject hysteresis over model scores.
//!
//! After signing each report the node extracts a feature row
//! ([`crate::features`]) for every neighbour in its active view and asks its
//! host to score them ([`crate::node::Event::ScoreRequest`]); the host runs
//! the model (batched across nodes in the simulator) and hands the quantised
//! scores back ([`crate::node::Node::handle_scores`]). A subject becomes
//! suspected after `raise_after` consecutive windows at or above `raise`,
//! and stops being suspected after `clear_after` consecutive windows below
//! `clear` (`clear` ≤ `raise`), so one noisy window neither raises nor
//! clears anything.

use std::collections::BTreeMap;

use crate::error::Error;
use crate::features::Score;
use crate::identity::NodeId;
use crate::telemetry::LinkSample;

/// What one second of a neighbour's link must show to be flagrant: a
/// fault no honest sentinel makes at that rate. A flagrant neighbour is
/// scored again at the end of every sample it stays so, and the first
/// flagrant sample in four report intervals ends the node's report early,
/// so its signed observation of the onset reaches the mesh within a
/// second instead of at the end of a 5 s window. The model still decides:
/// this only says when to look. In `quorum-smoke` (seed 7007, 601,550
/// samples of honest links) 34 samples held an invalid frame (never 2),
/// none a rate-limited message, and none more than 16 messages; a
/// flooder at 0.25x sends 15 pings a second on top of the ~5 of every
/// link (17 to 24 in 46 of its 49 link-seconds there).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Flagrant {
    /// Look at all. Default true (it takes effect only with scoring on).
    pub enabled: bool,
    /// Frames that failed the signature or freshness check, plus frames
    /// that did not decode, in one sample. Default 1.
    pub invalid: u16,
    /// Messages dropped by the per-peer rate limit in one sample.
    /// Default 1.
    pub rate_limited: u16,
    /// Messages received in one sample. Default
    /// [`crate::features::BURST_MESSAGES`] (17), one more than any honest
    /// link-second of `quorum-smoke`, where features count a flood's rate
    /// from (at 20, a third of a 0.25x flooder's link-seconds reached it
    /// and two of its three at `quorum-1k` 9109 waited for full reports).
    pub messages_in: u16,
}

impl Default for Flagrant {
    fn default() -> Self {
        Self {
            enabled: true,
            invalid: 1,
            rate_limited: 1,
            messages_in: crate::features::BURST_MESSAGES,
        }
    }
}

impl Flagrant {
    /// Whether one sample of a link shows a flagrant fault.
    #[must_use]
    pub fn shows(&self, s: &LinkSample) -> bool {
        self.enabled
            && (s.invalid.saturating_add(s.malformed) >= self.invalid
                || s.rate_limited >= self.rate_limited
                || s.messages_in >= self.messages_in)
    }
}

/// Scoring and hysteresis settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SuspicionPolicy {
    /// Ask the host to score neighbours at all. Default false: a host
    /// without a model leaves it off.
    pub enabled: bool,
    /// Score at or above which a window counts towards raising.
    /// Default 0.95 (at 0.9, quorum-1k voted out 5 honest nodes whose
    /// neighbours had just been attacked).
    pub raise: Score,
    /// Score below which a window counts towards clearing. Default 0.5.
    pub clear: Score,
    /// Consecutive high windows that raise suspicion. Default 2.
    pub raise_after: u8,
    /// Score at or above which one window raises suspicion at once (a
    /// flagrant attacker need not be watched for `raise_after` windows);
    /// at least `raise`. Default 1.0: only a score the model saturates
    /// at. (At 0.99, honest nodes perturbed for one window by a
    /// neighbour's attack or quarantine were accused at once, their
    /// quarantines perturbed their neighbours in turn, and quorum-1k
    /// voted out 611 honest nodes.)
    pub raise_at_once: Score,
    /// Consecutive low windows that clear it. Default 3.
    pub clear_after: u8,
    /// When a neighbour is scored between reports and reports end early.
    pub flagrant: Flagrant,
}

impl Default for SuspicionPolicy {
    fn default() -> Self {
        Self {
            enabled: false,
            raise: Score(9_500),
            clear: Score(5_000),
            raise_after: 2,
            raise_at_once: Score(Score::SCALE),
            clear_after: 3,
            flagrant: Flagrant::default(),
        }
    }
}

impl SuspicionPolicy {
    /// A policy from thresholds given as fractions (config files and
    /// scenarios write 0.9, not 9,000).
    #[must_use]
    pub fn from_fractions(
        enabled: bool,
        raise: f32,
        clear: f32,
        raise_after: u8,
        raise_at_once: f32,
        clear_after: u8,
    ) -> Self {
        Self {
            enabled,
            raise: Score::quantise(raise),
            clear: Score::quantise(clear),
            raise_after,
            raise_at_once: Score::quantise(raise_at_once),
            clear_after,
            flagrant: Flagrant::default(),
        }
    }

    /// Checks the fields.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] naming the field.
    pub fn validate(&self) -> Result<(), Error> {
        let bad = |m: &str| Err(Error::InvalidInput(format!("suspicion policy: {m}")));
        if self.raise.0 > Score::SCALE || self.raise.0 == 0 {
            return bad("raise must be above 0 and at most 1");
        }
        if self.clear > self.raise {
            return bad("clear must not exceed raise");
        }
        if self.raise_at_once < self.raise || self.raise_at_once.0 > Score::SCALE {
            return bad("raise_at_once must be at least raise and at most 1");
        }
        if self.raise_after == 0 || self.clear_after == 0 {
            return bad("raise_after and clear_after must be at least 1");
        }
        let f = &self.flagrant;
        if f.invalid == 0 || f.rate_limited == 0 || f.messages_in == 0 {
            return bad(
                "flagrant thresholds must be at least 1 (0 would make every sample flagrant)",
            );
        }
        Ok(())
    }
}

/// One subject's hysteresis state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Suspicion {
    /// Latest score.
    pub score: Score,
    /// Consecutive windows at or above `raise`.
    pub high: u8,
    /// Consecutive windows below `clear`.
    pub low: u8,
    /// Currently suspected.
    pub raised: bool,
}

/// What a new score did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// Nothing visible.
    None,
    /// The subject is now suspected.
    Raised,
    /// The subject is no longer suspected.
    Cleared,
}

/// Hysteresis state of every scored subject.
#[derive(Debug, Clone, Default)]
pub struct Suspicions {
    subjects: BTreeMap<NodeId, Suspicion>,
}

impl Suspicions {
    /// Applies one window's score for `subject`.
    pub fn update(&mut self, policy: &SuspicionPolicy, subject: NodeId, score: Score) -> Change {
        let s = self.subjects.entry(subject).or_default();
        s.score = score;
        if score >= policy.raise {
            s.high = s.high.saturating_add(1);
        } else {
            s.high = 0;
        }
        if score < policy.clear {
            s.low = s.low.saturating_add(1);
        } else {
            s.low = 0;
        }
        if !s.raised && (s.high >= policy.raise_after || score >= policy.raise_at_once) {
            s.raised = true;
            Change::Raised
        } else if s.raised && s.low >= policy.clear_after {
            s.raised = false;
            Change::Cleared
        } else {
            Change::None
        }
    }

    /// Forgets `subject` (it left the view); true when it was suspected.
    pub fn forget(&mut self, subject: &NodeId) -> bool {
        self.subjects.remove(subject).is_some_and(|s| s.raised)
    }

    /// Whether `subject` is suspected now.
    #[must_use]
    pub fn is_raised(&self, subject: &NodeId) -> bool {
        self.subjects.get(subject).is_some_and(|s| s.raised)
    }

    /// The state of `subject`.
    #[must_use]
    pub fn get(&self, subject: &NodeId) -> Option<&Suspicion> {
        self.subjects.get(subject)
    }

    /// Every scored subject, ascending by id.
    pub fn iter(&self) -> impl Iterator<Item = (&NodeId, &Suspicion)> {
        self.subjects.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_high_window_does_not_raise_and_one_low_does_not_clear() {
        let p = SuspicionPolicy::default();
        let mut s = Suspicions::default();
        let x = NodeId([1; 32]);
        assert_eq!(s.update(&p, x, Score(9_700)), Change::None);
        assert_eq!(s.update(&p, x, Score(100)), Change::None);
        assert_eq!(s.update(&p, x, Score(9_700)), Change::None);
        assert_eq!(s.update(&p, x, Score(9_500)), Change::Raised);
        // Between clear and raise: stays raised, resets nothing useful.
        assert_eq!(s.update(&p, x, Score(7_000)), Change::None);
        assert_eq!(s.update(&p, x, Score(100)), Change::None);
        assert_eq!(s.update(&p, x, Score(100)), Change::None);
        assert_eq!(s.update(&p, x, Score(100)), Change::Cleared);
        assert!(!s.get(&x).unwrap().raised);
        assert_eq!(s.update(&p, x, Score(9_800)), Change::None);
        assert_eq!(s.update(&p, x, Score(9_800)), Change::Raised);
        assert!(s.forget(&x));
        assert!(!s.forget(&x));
    }

    #[test]
    fn one_window_at_or_above_raise_at_once_raises() {
        let p = SuspicionPolicy {
            raise_at_once: Score(9_900),
            ..SuspicionPolicy::default()
        };
        let mut s = Suspicions::default();
        let (x, y) = (NodeId([1; 32]), NodeId([2; 32]));
        assert_eq!(s.update(&p, x, Score(9_899)), Change::None);
        assert_eq!(s.update(&p, y, Score(9_900)), Change::Raised);
        assert_eq!(s.update(&p, y, Score(10_000)), Change::None);
        let strict = SuspicionPolicy {
            raise_at_once: Score(10_000),
            ..p
        };
        let mut s = Suspicions::default();
        assert_eq!(s.update(&strict, y, Score(9_999)), Change::None);
        assert_eq!(s.update(&strict, y, Score(9_999)), Change::Raised);
    }

    #[test]
    fn a_sample_is_flagrant_on_any_one_threshold() {
        let f = Flagrant::default();
        let quiet = LinkSample {
            messages_in: 16,
            messages_out: 5,
            bytes_in: 9_000,
            bytes_out: 9_000,
            invalid: 0,
            malformed: 0,
            duplicates: 40,
            rate_limited: 0,
            probes_sent: 1,
            probes_failed: 1,
            rtt_ms: 90,
        };
        assert!(!f.shows(&quiet));
        for loud in [
            LinkSample {
                invalid: 1,
                ..quiet
            },
            LinkSample {
                malformed: 1,
                ..quiet
            },
            LinkSample {
                rate_limited: 1,
                ..quiet
            },
            LinkSample {
                messages_in: 17,
                ..quiet
            },
        ] {
            assert!(f.shows(&loud), "{loud:?}");
            assert!(
                !Flagrant {
                    enabled: false,
                    ..f
                }
                .shows(&loud)
            );
        }
        let p = SuspicionPolicy {
            flagrant: Flagrant {
                messages_in: 0,
                ..f
            },
            ..SuspicionPolicy::default()
        };
        assert!(p.validate().unwrap_err().to_string().contains("flagrant"));
    }

    #[test]
    fn bad_policies_are_named() {
        let mut p = SuspicionPolicy {
            clear: Score(9_600),
            ..SuspicionPolicy::default()
        };
        assert!(p.validate().unwrap_err().to_string().contains("clear"));
        p.clear = Score(1);
        p.raise_at_once = Score(8_000);
        assert!(
            p.validate()
                .unwrap_err()
                .to_string()
                .contains("raise_at_once")
        );
        p.raise_at_once = Score(9_900);
        p.raise_after = 0;
        assert!(
            p.validate()
                .unwrap_err()
                .to_string()
                .contains("raise_after")
        );
    }
}
