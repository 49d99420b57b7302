//! Link messages: what neighbours say to each other.
//!
//! A link is an authenticated connection to one rostered peer (in the daemon
//! a QUIC connection whose TLS exporter both sides signed; in the simulator a
//! delivery with a known source), so membership and probe messages are not
//! signed one by one. Only telemetry reports, which are relayed and must be
//! attributable to their origin, travel as signed envelopes inside
//! [`Message::Report`].
//!
//! Encoding: one tag byte, then fixed-width fields; lists carry a one-byte
//! count and have hard limits. Decoding is strict (exact length, canonical
//! booleans, limits checked before allocating).

use crate::codec::Reader;
use crate::error::InvalidMessage;
use crate::evidence::MAX_CERTIFICATE_LEN;
use crate::identity::NodeId;

/// At most this many node ids in a shuffle or shuffle reply.
pub const MAX_SHUFFLE: usize = 32;
/// At most this many entries in a pull digest.
pub const MAX_DIGEST: usize = 64;
/// The largest link message (a certificate carrying two envelopes).
pub const MAX_MESSAGE_LEN: usize = 1 + MAX_CERTIFICATE_LEN;

/// How a message should travel: `Stream` messages are delivered reliably
/// and in order per link (a QUIC stream, retransmitted on loss); `Datagram`
/// messages may be lost (QUIC datagrams), which is what failure detection
/// must see.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Class {
    /// Reliable, ordered.
    Stream,
    /// Unreliable.
    Datagram,
}

/// A pull digest entry: the newest report held from `origin`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DigestEntry {
    /// The report's signer.
    pub origin: NodeId,
    /// Its epoch.
    pub epoch: u64,
    /// Its sequence.
    pub sequence: u64,
}

/// A certificate offer entry: the subject, the (epoch, sequence) of the
/// fault certified, and the certificate's
/// [`crate::evidence::Certificate::rank`] among certificates of that fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Offer {
    /// Whom the certificate quarantines.
    pub subject: NodeId,
    /// The fault's epoch.
    pub epoch: u64,
    /// The fault's sequence.
    pub sequence: u64,
    /// Its rank among the certificates of one fault.
    pub rank: [u8; 8],
}

/// One link message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message<'a> {
    /// A newcomer asks a contact to take it into the mesh (HyParView JOIN).
    Join,
    /// A random walk introducing `joiner` to the mesh.
    ForwardJoin {
        /// The node joining.
        joiner: NodeId,
        /// Remaining hops.
        ttl: u8,
    },
    /// "I have put you in my active view; put me in yours."
    Connect,
    /// A request to become active neighbours. A high-priority request (the
    /// sender has no active neighbour left) must be accepted.
    Neighbor {
        /// Whether the receiver must accept.
        high_priority: bool,
    },
    /// The answer to [`Message::Neighbor`].
    NeighborReply {
        /// Whether the receiver is now an active neighbour.
        accepted: bool,
    },
    /// "You are no longer in my active view."
    Disconnect {
        /// False when the sender is leaving the mesh for good.
        alive: bool,
    },
    /// A passive-view exchange walking the mesh.
    Shuffle {
        /// Who started it (the reply goes there).
        origin: NodeId,
        /// Remaining hops.
        ttl: u8,
        /// Sample of the origin's views.
        nodes: Vec<NodeId>,
    },
    /// The answer to a shuffle: a sample of the receiver's passive view.
    ShuffleReply {
        /// The sample.
        nodes: Vec<NodeId>,
    },
    /// A liveness probe.
    Ping {
        /// Echoed in the acknowledgement.
        nonce: u64,
    },
    /// The answer to a ping.
    Ack {
        /// The ping's nonce.
        nonce: u64,
    },
    /// "Please probe `target` for me" (SWIM indirect probe).
    PingReq {
        /// The node to probe.
        target: NodeId,
        /// The requester's nonce, echoed in [`Message::IndirectAck`].
        nonce: u64,
    },
    /// "`target` answered the probe you asked for."
    IndirectAck {
        /// The node that answered.
        target: NodeId,
        /// The requester's nonce.
        nonce: u64,
    },
    /// A signed telemetry envelope, relayed as received.
    Report(&'a [u8]),
    /// "These are the newest reports I hold; send me newer ones you have."
    Digest {
        /// One entry per origin.
        entries: Vec<DigestEntry>,
    },
    /// An encoded quarantine certificate ([`crate::evidence::Certificate`]),
    /// flooded to every member; verify it before acting on it.
    Certificate(&'a [u8]),
    /// "These are the quarantines I hold: subject, the (epoch, sequence)
    /// of the fault certified and the certificate's rank." Sent to a new
    /// neighbour instead of the certificates themselves; it asks for the
    /// ones it lacks.
    Quarantines {
        /// One entry per subject.
        entries: Vec<Offer>,
    },
    /// "Send me your certificates about these subjects" (answering
    /// [`Message::Quarantines`]; only subjects offered are sent, once).
    Wanted {
        /// The subjects.
        subjects: Vec<NodeId>,
    },
    /// "I received `origin`'s report at (epoch, sequence) from it directly;
    /// its signed content hashes to `digest`." Sent to a few of the other
    /// neighbours the report names, so that two versions of one report
    /// meet: one holding another version answers with it.
    Seen {
        /// The report's signer.
        origin: NodeId,
        /// Its epoch.
        epoch: u64,
        /// Its sequence.
        sequence: u64,
        /// [`content_digest`] of the report's signed content.
        digest: [u8; SEEN_DIGEST_LEN],
    },
    /// A signed accusation ([`crate::quorum::Accusation`] envelope), sent
    /// by the accuser to each member of the subject's committee.
    Accuse(&'a [u8]),
    /// "Send me these reports of your accusation": bit `i` asks for its
    /// `i`-th evidence reference.
    EvidenceWanted {
        /// [`crate::quorum::content_hash`] of the accusation.
        accusation: [u8; 32],
        /// The references wanted, as a bit set.
        wanted: u64,
    },
    /// One signed report an accusation refers to, or the sender's own
    /// latest report, as asked for.
    EvidenceReport {
        /// [`crate::quorum::content_hash`] of the accusation.
        accusation: [u8; 32],
        /// The report's frame.
        frame: &'a [u8],
    },
    /// "Send me your report of this window": a committee member voting on
    /// this accusation asks a reporter its subject names whose report of
    /// the accused window neither the evidence nor the member holds.
    ReportWanted {
        /// [`crate::quorum::content_hash`] of the accusation.
        accusation: [u8; 32],
        /// The accused window's end (the accusation's `window_ms`).
        window_ms: u64,
    },
    /// A signed vote ([`crate::quorum::Vote`] envelope), sent to the
    /// accuser.
    Vote(&'a [u8]),
}

/// Bytes of the content digest in [`Message::Seen`].
pub const SEEN_DIGEST_LEN: usize = 16;

/// The digest [`Message::Seen`] carries: SHA-256 over a frame's signed
/// content (header and payload, not the randomised signatures), truncated.
#[must_use]
pub fn content_digest(signed_content: &[u8]) -> [u8; SEEN_DIGEST_LEN] {
    let full = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, signed_content);
    let mut out = [0u8; SEEN_DIGEST_LEN];
    out.copy_from_slice(&full.as_ref()[..SEEN_DIGEST_LEN]);
    out
}

const TAG_JOIN: u8 = 1;
const TAG_FORWARD_JOIN: u8 = 2;
const TAG_CONNECT: u8 = 3;
const TAG_NEIGHBOR: u8 = 4;
const TAG_NEIGHBOR_REPLY: u8 = 5;
const TAG_DISCONNECT: u8 = 6;
const TAG_SHUFFLE: u8 = 7;
const TAG_SHUFFLE_REPLY: u8 = 8;
const TAG_PING: u8 = 9;
const TAG_ACK: u8 = 10;
const TAG_PING_REQ: u8 = 11;
const TAG_INDIRECT_ACK: u8 = 12;
/// The tag of [`Message::Report`]; a report message is this byte followed by
/// the envelope.
pub const TAG_REPORT: u8 = 13;
const TAG_DIGEST: u8 = 14;
/// The tag of [`Message::Certificate`].
pub const TAG_CERTIFICATE: u8 = 15;
const TAG_SEEN: u8 = 16;
/// The tag of [`Message::Quarantines`].
pub const TAG_QUARANTINES: u8 = 17;
/// The tag of [`Message::Wanted`].
pub const TAG_WANTED: u8 = 18;
/// The tag of [`Message::Accuse`].
pub const TAG_ACCUSE: u8 = 19;
/// The tag of [`Message::EvidenceWanted`].
pub const TAG_EVIDENCE_WANTED: u8 = 20;
/// The tag of [`Message::EvidenceReport`].
pub const TAG_EVIDENCE_REPORT: u8 = 21;
/// The tag of [`Message::Vote`].
pub const TAG_VOTE: u8 = 22;
/// The tag of [`Message::ReportWanted`].
pub const TAG_REPORT_WANTED: u8 = 23;

fn put_ids(out: &mut Vec<u8>, ids: &[NodeId]) {
    out.push(u8::try_from(ids.len()).unwrap_or(u8::MAX));
    for id in ids {
        out.extend_from_slice(&id.0);
    }
}

fn read_bool(r: &mut Reader<'_>, what: &'static str) -> Result<bool, InvalidMessage> {
    match r.u8()? {
        0 => Ok(false),
        1 => Ok(true),
        _ => Err(InvalidMessage::NonCanonical(what)),
    }
}

/// A list of at most `limit` items behind a one-byte count.
fn read_list<T>(
    r: &mut Reader<'_>,
    what: &'static str,
    limit: usize,
    mut item: impl FnMut(&mut Reader<'_>) -> Result<T, InvalidMessage>,
) -> Result<Vec<T>, InvalidMessage> {
    let n = usize::from(r.u8()?);
    if n > limit {
        return Err(InvalidMessage::Oversize {
            what,
            len: n,
            limit,
        });
    }
    (0..n).map(|_| item(r)).collect()
}

fn read_ids(r: &mut Reader<'_>, what: &'static str) -> Result<Vec<NodeId>, InvalidMessage> {
    read_list(r, what, MAX_SHUFFLE, |r| Ok(NodeId(r.array()?)))
}

fn read_entries(
    r: &mut Reader<'_>,
    what: &'static str,
) -> Result<Vec<DigestEntry>, InvalidMessage> {
    read_list(r, what, MAX_DIGEST, |r| {
        Ok(DigestEntry {
            origin: NodeId(r.array()?),
            epoch: r.u64()?,
            sequence: r.u64()?,
        })
    })
}

fn read_offers(r: &mut Reader<'_>) -> Result<Vec<Offer>, InvalidMessage> {
    read_list(r, "quarantines.entries", MAX_DIGEST, |r| {
        Ok(Offer {
            subject: NodeId(r.array()?),
            epoch: r.u64()?,
            sequence: r.u64()?,
            rank: r.array()?,
        })
    })
}

/// Whether a link message is quarantine traffic: accusations, evidence,
/// votes, certificates and their offers. It comes in bursts when the mesh
/// votes (a voted certificate is up to half a megabyte), so hosts leave it
/// out of the network counters they report as their own host's, which
/// would otherwise make every voter look like a host gone wrong.
#[must_use]
pub fn is_quarantine_traffic(bytes: &[u8]) -> bool {
    matches!(
        bytes.first(),
        Some(
            &(TAG_ACCUSE
                | TAG_VOTE
                | TAG_EVIDENCE_REPORT
                | TAG_EVIDENCE_WANTED
                | TAG_REPORT_WANTED
                | TAG_CERTIFICATE
                | TAG_QUARANTINES
                | TAG_WANTED)
        )
    )
}

fn read_frame<'a>(
    r: &mut Reader<'a>,
    what: &'static str,
    limit: usize,
) -> Result<&'a [u8], InvalidMessage> {
    let frame = r.take(r.remaining())?;
    if frame.len() > limit {
        return Err(InvalidMessage::Oversize {
            what,
            len: frame.len(),
            limit,
        });
    }
    Ok(frame)
}

impl<'a> Message<'a> {
    /// How the message should travel.
    #[must_use]
    pub fn class(&self) -> Class {
        match self {
            Message::Ping { .. } | Message::Ack { .. } => Class::Datagram,
            _ => Class::Stream,
        }
    }

    /// The wire bytes. Lists longer than their limits are the caller's bug;
    /// they encode a count the decoder refuses.
    #[must_use]
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(48);
        match self {
            Message::Join => out.push(TAG_JOIN),
            Message::ForwardJoin { joiner, ttl } => {
                out.push(TAG_FORWARD_JOIN);
                out.extend_from_slice(&joiner.0);
                out.push(*ttl);
            }
            Message::Connect => out.push(TAG_CONNECT),
            Message::Neighbor { high_priority } => {
                out.extend_from_slice(&[TAG_NEIGHBOR, u8::from(*high_priority)]);
            }
            Message::NeighborReply { accepted } => {
                out.extend_from_slice(&[TAG_NEIGHBOR_REPLY, u8::from(*accepted)]);
            }
            Message::Disconnect { alive } => {
                out.extend_from_slice(&[TAG_DISCONNECT, u8::from(*alive)]);
            }
            Message::Shuffle { origin, ttl, nodes } => {
                out.push(TAG_SHUFFLE);
                out.extend_from_slice(&origin.0);
                out.push(*ttl);
                put_ids(&mut out, nodes);
            }
            Message::ShuffleReply { nodes } => {
                out.push(TAG_SHUFFLE_REPLY);
                put_ids(&mut out, nodes);
            }
            Message::Ping { nonce } => {
                out.push(TAG_PING);
                out.extend_from_slice(&nonce.to_be_bytes());
            }
            Message::Ack { nonce } => {
                out.push(TAG_ACK);
                out.extend_from_slice(&nonce.to_be_bytes());
            }
            Message::PingReq { target, nonce } | Message::IndirectAck { target, nonce } => {
                out.push(if matches!(self, Message::PingReq { .. }) {
                    TAG_PING_REQ
                } else {
                    TAG_INDIRECT_ACK
                });
                out.extend_from_slice(&target.0);
                out.extend_from_slice(&nonce.to_be_bytes());
            }
            Message::Report(frame) => {
                out.reserve(frame.len());
                out.push(TAG_REPORT);
                out.extend_from_slice(frame);
            }
            Message::Certificate(cert) => {
                out.reserve(cert.len());
                out.push(TAG_CERTIFICATE);
                out.extend_from_slice(cert);
            }
            Message::Seen {
                origin,
                epoch,
                sequence,
                digest,
            } => {
                out.push(TAG_SEEN);
                out.extend_from_slice(&origin.0);
                out.extend_from_slice(&epoch.to_be_bytes());
                out.extend_from_slice(&sequence.to_be_bytes());
                out.extend_from_slice(digest);
            }
            Message::Quarantines { entries } => {
                out.push(TAG_QUARANTINES);
                out.push(u8::try_from(entries.len()).unwrap_or(u8::MAX));
                for e in entries {
                    out.extend_from_slice(&e.subject.0);
                    out.extend_from_slice(&e.epoch.to_be_bytes());
                    out.extend_from_slice(&e.sequence.to_be_bytes());
                    out.extend_from_slice(&e.rank);
                }
            }
            Message::Digest { entries } => {
                out.push(TAG_DIGEST);
                out.push(u8::try_from(entries.len()).unwrap_or(u8::MAX));
                for e in entries {
                    out.extend_from_slice(&e.origin.0);
                    out.extend_from_slice(&e.epoch.to_be_bytes());
                    out.extend_from_slice(&e.sequence.to_be_bytes());
                }
            }
            Message::Wanted { subjects } => {
                out.push(TAG_WANTED);
                put_ids(&mut out, subjects);
            }
            Message::Accuse(frame) | Message::Vote(frame) => {
                out.reserve(frame.len());
                out.push(if matches!(self, Message::Accuse(_)) {
                    TAG_ACCUSE
                } else {
                    TAG_VOTE
                });
                out.extend_from_slice(frame);
            }
            Message::EvidenceWanted { accusation, wanted } => {
                out.push(TAG_EVIDENCE_WANTED);
                out.extend_from_slice(accusation);
                out.extend_from_slice(&wanted.to_be_bytes());
            }
            Message::EvidenceReport { accusation, frame } => {
                out.reserve(32 + frame.len());
                out.push(TAG_EVIDENCE_REPORT);
                out.extend_from_slice(accusation);
                out.extend_from_slice(frame);
            }
            Message::ReportWanted {
                accusation,
                window_ms,
            } => {
                out.push(TAG_REPORT_WANTED);
                out.extend_from_slice(accusation);
                out.extend_from_slice(&window_ms.to_be_bytes());
            }
        }
        out
    }

    /// Decodes one message from exactly `bytes`. A report's envelope is
    /// returned unverified and undecoded: verify it before reading it.
    ///
    /// # Errors
    /// [`InvalidMessage`] for anything but one canonical message.
    pub fn decode(bytes: &'a [u8]) -> Result<Self, InvalidMessage> {
        if bytes.len() > MAX_MESSAGE_LEN {
            return Err(InvalidMessage::Oversize {
                what: "link message",
                len: bytes.len(),
                limit: MAX_MESSAGE_LEN,
            });
        }
        let mut r = Reader::new(bytes);
        let msg = match r.u8()? {
            TAG_JOIN => Message::Join,
            TAG_FORWARD_JOIN => Message::ForwardJoin {
                joiner: NodeId(r.array()?),
                ttl: r.u8()?,
            },
            TAG_CONNECT => Message::Connect,
            TAG_NEIGHBOR => Message::Neighbor {
                high_priority: read_bool(&mut r, "neighbor.high_priority")?,
            },
            TAG_NEIGHBOR_REPLY => Message::NeighborReply {
                accepted: read_bool(&mut r, "neighbor_reply.accepted")?,
            },
            TAG_DISCONNECT => Message::Disconnect {
                alive: read_bool(&mut r, "disconnect.alive")?,
            },
            TAG_SHUFFLE => Message::Shuffle {
                origin: NodeId(r.array()?),
                ttl: r.u8()?,
                nodes: read_ids(&mut r, "shuffle.nodes")?,
            },
            TAG_SHUFFLE_REPLY => Message::ShuffleReply {
                nodes: read_ids(&mut r, "shuffle_reply.nodes")?,
            },
            TAG_PING => Message::Ping { nonce: r.u64()? },
            TAG_ACK => Message::Ack { nonce: r.u64()? },
            TAG_PING_REQ => Message::PingReq {
                target: NodeId(r.array()?),
                nonce: r.u64()?,
            },
            TAG_INDIRECT_ACK => Message::IndirectAck {
                target: NodeId(r.array()?),
                nonce: r.u64()?,
            },
            TAG_REPORT => Message::Report(read_frame(
                &mut r,
                "report",
                crate::envelope::MAX_FRAME_LEN,
            )?),
            TAG_CERTIFICATE => Message::Certificate(r.take(r.remaining())?),
            TAG_SEEN => Message::Seen {
                origin: NodeId(r.array()?),
                epoch: r.u64()?,
                sequence: r.u64()?,
                digest: r.array()?,
            },
            TAG_DIGEST => Message::Digest {
                entries: read_entries(&mut r, "digest.entries")?,
            },
            TAG_QUARANTINES => Message::Quarantines {
                entries: read_offers(&mut r)?,
            },
            TAG_WANTED => Message::Wanted {
                subjects: read_ids(&mut r, "wanted.subjects")?,
            },
            TAG_ACCUSE => Message::Accuse(read_frame(
                &mut r,
                "accusation",
                crate::quorum::MAX_ACCUSATION_FRAME_LEN,
            )?),
            TAG_VOTE => Message::Vote(read_frame(
                &mut r,
                "vote",
                crate::quorum::MAX_VOTE_FRAME_LEN,
            )?),
            TAG_EVIDENCE_WANTED => {
                let accusation = r.array()?;
                let wanted = r.u64()?;
                if wanted >> crate::quorum::MAX_EVIDENCE != 0 || wanted == 0 {
                    return Err(InvalidMessage::InvalidField {
                        field: "evidence_wanted.wanted",
                        reason: "empty, or names a reference past the last",
                    });
                }
                Message::EvidenceWanted { accusation, wanted }
            }
            TAG_EVIDENCE_REPORT => Message::EvidenceReport {
                accusation: r.array()?,
                frame: read_frame(&mut r, "evidence report", crate::envelope::MAX_FRAME_LEN)?,
            },
            TAG_REPORT_WANTED => Message::ReportWanted {
                accusation: r.array()?,
                window_ms: r.u64()?,
            },
            _ => {
                return Err(InvalidMessage::InvalidField {
                    field: "message.tag",
                    reason: "unknown link message",
                });
            }
        };
        r.finish()?;
        Ok(msg)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn all() -> Vec<Message<'static>> {
        let a = NodeId([1; 32]);
        vec![
            Message::Join,
            Message::ForwardJoin { joiner: a, ttl: 6 },
            Message::Connect,
            Message::Neighbor {
                high_priority: true,
            },
            Message::NeighborReply { accepted: false },
            Message::Disconnect { alive: true },
            Message::Shuffle {
                origin: a,
                ttl: 3,
                nodes: vec![a, NodeId([2; 32])],
            },
            Message::ShuffleReply { nodes: vec![] },
            Message::Ping { nonce: 9 },
            Message::Ack { nonce: 9 },
            Message::PingReq {
                target: a,
                nonce: 1,
            },
            Message::IndirectAck {
                target: a,
                nonce: 1,
            },
            Message::Report(b"frame bytes"),
            Message::Certificate(b"certificate bytes"),
            Message::Seen {
                origin: a,
                epoch: 4,
                sequence: 5,
                digest: [7; SEEN_DIGEST_LEN],
            },
            Message::Quarantines {
                entries: vec![Offer {
                    subject: a,
                    epoch: 6,
                    sequence: 7,
                    rank: [2, 1, 2, 3, 4, 5, 6, 7],
                }],
            },
            Message::Wanted {
                subjects: vec![a, NodeId([3; 32])],
            },
            Message::Accuse(b"accusation frame"),
            Message::Vote(b"vote frame"),
            Message::EvidenceWanted {
                accusation: [4; 32],
                wanted: 0b101,
            },
            Message::EvidenceReport {
                accusation: [4; 32],
                frame: b"report frame",
            },
            Message::ReportWanted {
                accusation: [5; 32],
                window_ms: 6,
            },
            Message::Digest {
                entries: vec![DigestEntry {
                    origin: a,
                    epoch: 2,
                    sequence: 3,
                }],
            },
        ]
    }

    #[test]
    fn every_message_round_trips_and_rejects_trailing_bytes() {
        for m in all() {
            let bytes = m.encode();
            assert_eq!(Message::decode(&bytes).unwrap(), m);
            if !matches!(
                m,
                Message::Report(_)
                    | Message::Certificate(_)
                    | Message::Accuse(_)
                    | Message::Vote(_)
                    | Message::EvidenceReport { .. }
            ) {
                let mut long = bytes.clone();
                long.push(0);
                assert!(Message::decode(&long).is_err(), "{m:?}");
                assert!(Message::decode(&bytes[..bytes.len() - 1]).is_err(), "{m:?}");
            }
        }
    }

    #[test]
    fn rejects_non_canonical_booleans_and_oversized_lists() {
        assert_eq!(
            Message::decode(&[TAG_DISCONNECT, 2]),
            Err(InvalidMessage::NonCanonical("disconnect.alive"))
        );
        let mut shuffle = vec![TAG_SHUFFLE_REPLY, 33];
        shuffle.extend(std::iter::repeat_n(0u8, 33 * 32));
        assert!(matches!(
            Message::decode(&shuffle),
            Err(InvalidMessage::Oversize { .. })
        ));
        assert!(Message::decode(&[]).is_err());
        assert!(Message::decode(&[0]).is_err());
        let mut report = vec![TAG_REPORT];
        report.resize(2 + crate::envelope::MAX_FRAME_LEN, 0);
        assert!(matches!(
            Message::decode(&report),
            Err(InvalidMessage::Oversize { .. })
        ));
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            if let Ok(m) = Message::decode(&bytes) {
                prop_assert_eq!(m.encode(), bytes);
            }
        }
    }
}
