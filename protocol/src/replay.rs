//! Replay protection and freshness.
//!
//! Each sender numbers its messages within an epoch (a new epoch at every
//! boot). A receiver remembers, per sender, the newest epoch, the highest
//! sequence seen in it and which of the [`WINDOW`] sequences below that have
//! been seen, so messages reordered by the network are still accepted once.
//! Memory is bounded: 48 bytes per sender, and only senders whose signature
//! verified are remembered, so an attacker cannot grow the table with forged
//! sender fields.

use std::collections::BTreeMap;

use crate::envelope::{self, Header, Verified};
use crate::error::{Error, PeerMisbehaved};
use crate::identity::NodeId;
use crate::roster::Roster;

/// How many sequence numbers below the highest one are remembered.
pub const WINDOW: u64 = 256;
const WORDS: usize = (WINDOW / 64) as usize;

/// One sender's replay state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplayWindow {
    epoch: u64,
    top: u64,
    /// Bit `d` is set when sequence `top - d` has been seen.
    seen: [u64; WORDS],
}

impl ReplayWindow {
    /// A window that has seen exactly (`epoch`, `sequence`).
    #[must_use]
    pub fn starting_at(epoch: u64, sequence: u64) -> Self {
        let mut seen = [0; WORDS];
        seen[0] = 1;
        Self {
            epoch,
            top: sequence,
            seen,
        }
    }

    fn bit(&self, d: u64) -> bool {
        self.seen[(d / 64) as usize] >> (d % 64) & 1 == 1
    }

    /// Whether (`epoch`, `sequence`) would be accepted. Changes nothing.
    ///
    /// # Errors
    /// [`PeerMisbehaved::StaleEpoch`], [`PeerMisbehaved::TooOld`] or
    /// [`PeerMisbehaved::Replay`].
    pub fn check(&self, sender: NodeId, epoch: u64, sequence: u64) -> Result<(), PeerMisbehaved> {
        if epoch < self.epoch {
            return Err(PeerMisbehaved::StaleEpoch {
                sender,
                epoch,
                current: self.epoch,
            });
        }
        if epoch > self.epoch || sequence > self.top {
            return Ok(());
        }
        let d = self.top - sequence;
        if d >= WINDOW {
            return Err(PeerMisbehaved::TooOld { sender, sequence });
        }
        if self.bit(d) {
            return Err(PeerMisbehaved::Replay {
                sender,
                epoch,
                sequence,
            });
        }
        Ok(())
    }

    /// Records (`epoch`, `sequence`) as seen. Call only after [`Self::check`]
    /// succeeded and the message's signature verified.
    pub fn record(&mut self, epoch: u64, sequence: u64) {
        if epoch > self.epoch {
            *self = Self::starting_at(epoch, sequence);
            return;
        }
        if sequence > self.top {
            self.shift(sequence - self.top);
            self.top = sequence;
            self.seen[0] |= 1;
        } else {
            let d = self.top - sequence;
            if d < WINDOW {
                self.seen[(d / 64) as usize] |= 1 << (d % 64);
            }
        }
    }

    /// Moves every remembered bit `by` places towards older sequences.
    fn shift(&mut self, by: u64) {
        if by >= WINDOW {
            self.seen = [0; WORDS];
            return;
        }
        let words = (by / 64) as usize;
        let bits = (by % 64) as u32;
        for i in (0..WORDS).rev() {
            let src = i.checked_sub(words);
            let hi = src.map_or(0, |s| self.seen[s] << bits);
            let lo = match src.and_then(|s| s.checked_sub(1)) {
                Some(s) if bits > 0 => self.seen[s] >> (64 - bits),
                _ => 0,
            };
            self.seen[i] = hi | lo;
        }
    }
}

/// The accepted range of issued-at times around the receiver's clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeWindow {
    /// How far in the past an issued-at may be, in milliseconds.
    pub max_age_ms: u64,
    /// How far in the future (sender clock ahead) it may be, in milliseconds.
    pub max_future_ms: u64,
}

impl Default for TimeWindow {
    /// Two minutes back (relay delay plus skew), 30 seconds ahead (skew).
    fn default() -> Self {
        Self {
            max_age_ms: 120_000,
            max_future_ms: 30_000,
        }
    }
}

impl TimeWindow {
    /// Whether `issued_at_ms` is acceptable at `now_ms`.
    ///
    /// # Errors
    /// [`PeerMisbehaved::OutsideTimeWindow`].
    pub fn check(&self, issued_at_ms: u64, now_ms: u64) -> Result<(), PeerMisbehaved> {
        let too_old = issued_at_ms < now_ms.saturating_sub(self.max_age_ms);
        let too_new = issued_at_ms > now_ms.saturating_add(self.max_future_ms);
        if too_old || too_new {
            return Err(PeerMisbehaved::OutsideTimeWindow {
                issued_at_ms,
                now_ms,
            });
        }
        Ok(())
    }
}

/// A receiver's state: per-sender replay windows and its time window.
///
/// [`Receiver::accept`] is the one entry point for frames from the network:
/// cheap read-only checks first (layout, time, replay), then the signature,
/// and only then is the sequence recorded.
#[derive(Debug, Clone, Default)]
pub struct Receiver {
    window: TimeWindow,
    senders: BTreeMap<NodeId, ReplayWindow>,
}

impl Receiver {
    /// A receiver with no history.
    #[must_use]
    pub fn new(window: TimeWindow) -> Self {
        Self {
            window,
            senders: BTreeMap::new(),
        }
    }

    /// Verifies `frame` and accepts it once.
    ///
    /// On success the frame's (sender, epoch, sequence) is recorded; on any
    /// error nothing changes.
    ///
    /// # Errors
    /// As [`envelope::open`], plus [`PeerMisbehaved::OutsideTimeWindow`],
    /// [`PeerMisbehaved::StaleEpoch`], [`PeerMisbehaved::TooOld`] and
    /// [`PeerMisbehaved::Replay`].
    pub fn accept<'a>(
        &mut self,
        roster: &Roster,
        frame: &'a [u8],
        now_ms: u64,
    ) -> Result<Verified<'a>, Error> {
        let verified = envelope::open_with(roster, frame, |h| self.precheck(h, now_ms))?;
        let Header { sender, stamp, .. } = *verified.header();
        self.senders
            .entry(sender)
            .and_modify(|w| w.record(stamp.epoch, stamp.sequence))
            .or_insert_with(|| ReplayWindow::starting_at(stamp.epoch, stamp.sequence));
        Ok(verified)
    }

    fn precheck(&self, header: &Header, now_ms: u64) -> Result<(), PeerMisbehaved> {
        self.window.check(header.stamp.issued_at_ms, now_ms)?;
        match self.senders.get(&header.sender) {
            Some(w) => w.check(header.sender, header.stamp.epoch, header.stamp.sequence),
            None => Ok(()),
        }
    }

    /// How many senders are remembered.
    #[must_use]
    pub fn senders(&self) -> usize {
        self.senders.len()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use proptest::prelude::*;

    use super::*;

    const S: NodeId = NodeId([1; 32]);

    #[test]
    fn accepts_reordering_once_and_rejects_replays() {
        let mut w = ReplayWindow::starting_at(1, 10);
        assert!(matches!(
            w.check(S, 1, 10),
            Err(PeerMisbehaved::Replay { .. })
        ));
        for seq in [12, 11, 15, 13] {
            w.check(S, 1, seq).unwrap();
            w.record(1, seq);
            assert!(matches!(
                w.check(S, 1, seq),
                Err(PeerMisbehaved::Replay { .. })
            ));
        }
        w.check(S, 1, 14).unwrap();
        // Jump far ahead: the old ones fall out of the window.
        w.record(1, 10 + WINDOW + 5);
        assert!(matches!(
            w.check(S, 1, 12),
            Err(PeerMisbehaved::TooOld { .. })
        ));
        // A new epoch starts afresh; the old epoch is over.
        w.check(S, 2, 0).unwrap();
        w.record(2, 0);
        assert!(matches!(
            w.check(S, 1, 10_000),
            Err(PeerMisbehaved::StaleEpoch { .. })
        ));
        assert!(matches!(
            w.check(S, 2, 0),
            Err(PeerMisbehaved::Replay { .. })
        ));
    }

    #[test]
    fn time_window_edges() {
        let t = TimeWindow {
            max_age_ms: 100,
            max_future_ms: 10,
        };
        t.check(900, 1000).unwrap();
        t.check(1010, 1000).unwrap();
        assert!(t.check(899, 1000).is_err());
        assert!(t.check(1011, 1000).is_err());
        // No underflow or overflow at the ends of the clock.
        t.check(0, 50).unwrap();
        t.check(u64::MAX, u64::MAX - 5).unwrap();
    }

    proptest! {
        /// The window agrees with a set that remembers everything, wherever
        /// the set's answer is within the window.
        #[test]
        fn window_matches_a_model(start in 0u64..1000, steps in prop::collection::vec(0u64..600, 1..200)) {
            let mut w = ReplayWindow::starting_at(0, start);
            let mut seen = BTreeSet::from([start]);
            let mut top = start;
            for s in steps {
                let seq = s + start.saturating_sub(300);
                let got = w.check(S, 0, seq);
                if seen.contains(&seq) {
                    prop_assert!(got.is_err());
                } else if seq + WINDOW <= top {
                    let too_old = matches!(got, Err(PeerMisbehaved::TooOld { .. }));
                    prop_assert!(too_old, "expected TooOld, got {:?}", got);
                } else {
                    prop_assert!(got.is_ok());
                    w.record(0, seq);
                    seen.insert(seq);
                    top = top.max(seq);
                }
            }
        }
    }
}
