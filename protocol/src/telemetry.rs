//! The telemetry report: the payload of a [`Kind::Telemetry`] envelope.
//!
//! Every `report_interval` a sentinel signs one report holding one sample per
//! `sample_interval` of
//! - its own host and node metrics, as given by its host ([`HostSample`]);
//! - its observations of each neighbour it had during the interval
//!   ([`Observation`]): traffic, invalid/malformed/duplicate/rate-limited
//!   messages, probes and their round-trip time, and which of the neighbour's
//!   own signed reports it last held — the neighbour's claims, against which
//!   the observations can be checked — and the signer's check of the
//!   neighbour's relays ([`Relays`]), so that committee members replay it
//!   from the signed report rather than take the accuser's word.
//!
//! Sampling at 1 s but signing every few seconds is the bandwidth decision
//! recorded in `ARCHITECTURE.md`: the 3.3 KB ML-DSA signature dominates a
//! report, so one signature carries several samples.
//!
//! The size is bounded whatever the host does: at most [`MAX_SAMPLES`]
//! samples and [`MAX_NEIGHBOURS`] observed neighbours (the node keeps its
//! current active view first). Every counter saturates instead of wrapping.
//!
//! [`Kind::Telemetry`]: crate::envelope::Kind::Telemetry

use crate::codec::{Codec, Reader};
use crate::error::InvalidMessage;
use crate::features::Relays;
use crate::identity::NodeId;

/// The report format this implementation writes and reads (2 added each
/// observation's relay check; format 1 is refused, since a report must
/// re-encode to the bytes that were signed).
pub const REPORT_FORMAT: u8 = 2;
/// At most this many samples per report.
pub const MAX_SAMPLES: usize = 60;
/// At most this many observed neighbours per report.
pub const MAX_NEIGHBOURS: usize = 32;

/// One sample of the sentinel's own host and guarded-node metrics, as
/// reported by its host. 16 bytes on the wire.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HostSample {
    /// CPU use, per mille of all cores.
    pub cpu_permille: u16,
    /// Memory use, per mille of the total.
    pub mem_permille: u16,
    /// Bytes the host received during the sample.
    pub net_in_bytes: u32,
    /// Bytes the host sent during the sample.
    pub net_out_bytes: u32,
    /// Peers of the guarded node.
    pub node_peers: u16,
    /// Errors the guarded node logged during the sample.
    pub node_errors: u16,
}

/// What one sentinel saw of one neighbour during one sample. 24 bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LinkSample {
    /// Messages received from the neighbour.
    pub messages_in: u16,
    /// Messages sent to the neighbour.
    pub messages_out: u16,
    /// Bytes received from the neighbour.
    pub bytes_in: u32,
    /// Bytes sent to the neighbour.
    pub bytes_out: u32,
    /// Frames whose signature or freshness check failed.
    pub invalid: u16,
    /// Bytes that did not decode.
    pub malformed: u16,
    /// Reports it relayed that were already held.
    pub duplicates: u16,
    /// Messages dropped by the per-peer rate limit.
    pub rate_limited: u16,
    /// Probes sent to it.
    pub probes_sent: u8,
    /// Probes it did not answer in time.
    pub probes_failed: u8,
    /// Smallest probe round-trip time in milliseconds; [`LinkSample::NO_RTT`]
    /// when no probe was answered.
    pub rtt_ms: u16,
}

impl LinkSample {
    /// The `rtt_ms` of a sample without an answered probe.
    pub const NO_RTT: u16 = u16::MAX;
}

/// A sentinel's observations of one neighbour over a report's samples.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observation {
    /// The neighbour.
    pub neighbour: NodeId,
    /// Epoch of the neighbour's latest signed report the observer held when
    /// it signed (0 with `claimed_sequence` 0 when none): the claims the
    /// neighbour made, to check these observations against.
    pub claimed_epoch: u64,
    /// Sequence of that report.
    pub claimed_sequence: u64,
    /// The signer's check of the neighbour's relays over its last
    /// [`crate::features::RELAY_HISTORY`] checked reports, as the signer's
    /// own scoring reads it (`relay_withheld`); `missing` is at most
    /// `claimed`.
    pub relays: Relays,
    /// One sample per report sample.
    pub samples: Vec<LinkSample>,
}

/// A telemetry report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// Start of the first sample, in the signer's Unix milliseconds.
    pub start_ms: u64,
    /// Length of one sample in milliseconds.
    pub sample_ms: u32,
    /// The signer's own metrics, one per sample (1..=[`MAX_SAMPLES`]).
    pub host: Vec<HostSample>,
    /// Observed neighbours, strictly ascending by id, each with as many
    /// samples as `host` (at most [`MAX_NEIGHBOURS`]).
    pub neighbours: Vec<Observation>,
}

impl Report {
    /// The encoded size of a report with `samples` samples and `neighbours`
    /// observed neighbours (for budgets).
    #[must_use]
    pub const fn encoded_len(samples: usize, neighbours: usize) -> usize {
        HEAD_LEN
            + samples * HOST_SAMPLE_LEN
            + neighbours * (NodeId::LEN + 16 + RELAYS_LEN + samples * LINK_SAMPLE_LEN)
    }

    /// The neighbours the report describes, in ascending order.
    pub fn subjects(&self) -> impl Iterator<Item = NodeId> + '_ {
        self.neighbours.iter().map(|o| o.neighbour)
    }
}

const HEAD_LEN: usize = 1 + 8 + 4 + 1 + 1;
const HOST_SAMPLE_LEN: usize = 16;
const LINK_SAMPLE_LEN: usize = 24;
const RELAYS_LEN: usize = 4;

impl HostSample {
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.cpu_permille.to_be_bytes());
        out.extend_from_slice(&self.mem_permille.to_be_bytes());
        out.extend_from_slice(&self.net_in_bytes.to_be_bytes());
        out.extend_from_slice(&self.net_out_bytes.to_be_bytes());
        out.extend_from_slice(&self.node_peers.to_be_bytes());
        out.extend_from_slice(&self.node_errors.to_be_bytes());
    }

    fn read(r: &mut Reader<'_>) -> Result<Self, InvalidMessage> {
        Ok(Self {
            cpu_permille: r.u16()?,
            mem_permille: r.u16()?,
            net_in_bytes: r.u32()?,
            net_out_bytes: r.u32()?,
            node_peers: r.u16()?,
            node_errors: r.u16()?,
        })
    }
}

impl LinkSample {
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.messages_in.to_be_bytes());
        out.extend_from_slice(&self.messages_out.to_be_bytes());
        out.extend_from_slice(&self.bytes_in.to_be_bytes());
        out.extend_from_slice(&self.bytes_out.to_be_bytes());
        out.extend_from_slice(&self.invalid.to_be_bytes());
        out.extend_from_slice(&self.malformed.to_be_bytes());
        out.extend_from_slice(&self.duplicates.to_be_bytes());
        out.extend_from_slice(&self.rate_limited.to_be_bytes());
        out.push(self.probes_sent);
        out.push(self.probes_failed);
        out.extend_from_slice(&self.rtt_ms.to_be_bytes());
    }

    fn read(r: &mut Reader<'_>) -> Result<Self, InvalidMessage> {
        Ok(Self {
            messages_in: r.u16()?,
            messages_out: r.u16()?,
            bytes_in: r.u32()?,
            bytes_out: r.u32()?,
            invalid: r.u16()?,
            malformed: r.u16()?,
            duplicates: r.u16()?,
            rate_limited: r.u16()?,
            probes_sent: r.u8()?,
            probes_failed: r.u8()?,
            rtt_ms: r.u16()?,
        })
    }
}

impl Codec for Report {
    const NAME: &'static str = "telemetry report";

    /// Callers build reports within the limits (the node does); an
    /// out-of-limit report would fail its own [`Codec::decode_exact`].
    fn encode(&self, out: &mut Vec<u8>) {
        out.push(REPORT_FORMAT);
        out.extend_from_slice(&self.start_ms.to_be_bytes());
        out.extend_from_slice(&self.sample_ms.to_be_bytes());
        out.push(u8::try_from(self.host.len()).unwrap_or(u8::MAX));
        out.push(u8::try_from(self.neighbours.len()).unwrap_or(u8::MAX));
        for s in &self.host {
            s.encode(out);
        }
        for o in &self.neighbours {
            out.extend_from_slice(&o.neighbour.0);
            out.extend_from_slice(&o.claimed_epoch.to_be_bytes());
            out.extend_from_slice(&o.claimed_sequence.to_be_bytes());
            out.extend_from_slice(&o.relays.claimed.to_be_bytes());
            out.extend_from_slice(&o.relays.missing.to_be_bytes());
            for s in &o.samples {
                s.encode(out);
            }
        }
    }

    fn read(r: &mut Reader<'_>) -> Result<Self, InvalidMessage> {
        let format = r.u8()?;
        if format != REPORT_FORMAT {
            return Err(InvalidMessage::InvalidField {
                field: "report.format",
                reason: "unsupported report format",
            });
        }
        let start_ms = r.u64()?;
        let sample_ms = r.u32()?;
        if sample_ms == 0 {
            return Err(InvalidMessage::InvalidField {
                field: "report.sample_ms",
                reason: "must be positive",
            });
        }
        let samples = usize::from(r.u8()?);
        let neighbours = usize::from(r.u8()?);
        if samples == 0 || samples > MAX_SAMPLES {
            return Err(InvalidMessage::InvalidField {
                field: "report.samples",
                reason: "must be 1 to 60",
            });
        }
        if neighbours > MAX_NEIGHBOURS {
            return Err(InvalidMessage::Oversize {
                what: "report.neighbours",
                len: neighbours,
                limit: MAX_NEIGHBOURS,
            });
        }
        // Check the whole length up front so nothing is allocated for a
        // truncated report.
        let rest = Report::encoded_len(samples, neighbours) - HEAD_LEN;
        if r.remaining() < rest {
            return Err(InvalidMessage::Truncated {
                needed: rest - r.remaining(),
            });
        }
        let host = (0..samples)
            .map(|_| HostSample::read(r))
            .collect::<Result<Vec<_>, _>>()?;
        let mut list: Vec<Observation> = Vec::with_capacity(neighbours);
        for _ in 0..neighbours {
            let neighbour = NodeId(r.array()?);
            if list.last().is_some_and(|prev| prev.neighbour >= neighbour) {
                return Err(InvalidMessage::InvalidField {
                    field: "report.neighbours",
                    reason: "must be strictly ascending by id",
                });
            }
            let claimed_epoch = r.u64()?;
            let claimed_sequence = r.u64()?;
            let relays = Relays {
                claimed: r.u16()?,
                missing: r.u16()?,
            };
            if relays.missing > relays.claimed {
                return Err(InvalidMessage::InvalidField {
                    field: "report.relays",
                    reason: "more relays missing than checked",
                });
            }
            let samples = (0..samples)
                .map(|_| LinkSample::read(r))
                .collect::<Result<Vec<_>, _>>()?;
            list.push(Observation {
                neighbour,
                claimed_epoch,
                claimed_sequence,
                relays,
                samples,
            });
        }
        Ok(Self {
            start_ms,
            sample_ms,
            host,
            neighbours: list,
        })
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn report(samples: usize, neighbours: u8) -> Report {
        Report {
            start_ms: 1_700_000_000_000,
            sample_ms: 1000,
            host: vec![
                HostSample {
                    cpu_permille: 120,
                    mem_permille: 400,
                    net_in_bytes: 9_000,
                    net_out_bytes: 8_000,
                    node_peers: 40,
                    node_errors: 0,
                };
                samples
            ],
            neighbours: (0..neighbours)
                .map(|i| Observation {
                    neighbour: NodeId([i; 32]),
                    claimed_epoch: 1,
                    claimed_sequence: u64::from(i),
                    relays: Relays {
                        claimed: 6,
                        missing: u16::from(i % 3),
                    },
                    samples: vec![
                        LinkSample {
                            messages_in: 7,
                            rtt_ms: 51,
                            ..LinkSample::default()
                        };
                        samples
                    ],
                })
                .collect(),
        }
    }

    #[test]
    fn round_trips_at_the_stated_size() {
        let r = report(5, 5);
        let bytes = r.to_bytes();
        assert_eq!(bytes.len(), Report::encoded_len(5, 5));
        assert_eq!(Report::decode_exact(&bytes).unwrap(), r);
        // The figure ARCHITECTURE.md's budget uses.
        assert_eq!(Report::encoded_len(5, 5), 955);
    }

    #[test]
    fn rejects_more_relays_missing_than_checked_and_unknown_formats() {
        let mut r = report(2, 2);
        r.neighbours[1].relays = Relays {
            claimed: 2,
            missing: 3,
        };
        assert!(matches!(
            Report::decode_exact(&r.to_bytes()),
            Err(InvalidMessage::InvalidField {
                field: "report.relays",
                ..
            })
        ));
        // Format 1 (no relay checks) and unknown formats are refused.
        for format in [1, REPORT_FORMAT + 1] {
            let mut bytes = report(2, 2).to_bytes();
            bytes[0] = format;
            assert!(matches!(
                Report::decode_exact(&bytes),
                Err(InvalidMessage::InvalidField {
                    field: "report.format",
                    ..
                })
            ));
        }
    }

    #[test]
    fn rejects_unsorted_duplicate_and_oversized_lists() {
        let mut r = report(2, 3);
        r.neighbours.swap(0, 1);
        assert!(matches!(
            Report::decode_exact(&r.to_bytes()),
            Err(InvalidMessage::InvalidField {
                field: "report.neighbours",
                ..
            })
        ));
        let mut r = report(2, 3);
        r.neighbours[1].neighbour = r.neighbours[0].neighbour;
        assert!(Report::decode_exact(&r.to_bytes()).is_err());
        let r = report(1, 33);
        assert!(matches!(
            Report::decode_exact(&r.to_bytes()),
            Err(InvalidMessage::Oversize { .. })
        ));
        assert!(Report::decode_exact(&report(61, 0).to_bytes()).is_err());
        assert!(Report::decode_exact(&report(0, 0).to_bytes()).is_err());
    }

    #[test]
    fn rejects_truncation_and_trailing_bytes() {
        let bytes = report(3, 4).to_bytes();
        for cut in 0..bytes.len() {
            assert!(Report::decode_exact(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        let mut long = bytes.clone();
        long.push(0);
        assert!(matches!(
            Report::decode_exact(&long),
            Err(InvalidMessage::TrailingBytes { count: 1 })
        ));
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            let _ = Report::decode_exact(&bytes);
        }
    }
}
