//! Signed envelopes: the one frame every signed message travels in.
//!
//! Wire format, version 1 (all integers big-endian, fixed width, so every
//! header has exactly one encoding):
//!
//! | offset | bytes | field |
//! |---|---|---|
//! | 0 | 4 | magic `SMSH` |
//! | 4 | 1 | version (1) |
//! | 5 | 1 | suite (1 = Ed25519 + ML-DSA-65) |
//! | 6 | 1 | kind |
//! | 7 | 32 | sender node id |
//! | 39 | 8 | epoch |
//! | 47 | 8 | sequence |
//! | 55 | 8 | issued-at, Unix milliseconds (the sender's clock) |
//! | 63 | 4 | payload length *n* (at most the kind's limit) |
//! | 67 | *n* | payload |
//! | 67+*n* | 64 + 3309 | Ed25519 signature, then ML-DSA-65 signature |
//!
//! Both algorithms sign the same message: bytes 0..7 of the frame (magic,
//! version, suite, kind — the domain-separation prefix), then the 32-byte
//! [`MeshId`], then bytes 7..67+*n*. The mesh id is not sent; the receiver
//! takes it from its roster, so a frame signed for another mesh fails.
//!
//! [`open`] checks the exact received bytes before the payload is handed to
//! any decoder: length limits, known version/suite/kind, exact total length
//! (no truncation, no trailing bytes), a rostered sender whose roster suite
//! matches the frame, then both signatures.

use std::fmt;

use crate::codec::Reader;
use crate::error::{Error, InvalidMessage, PeerMisbehaved};
use crate::identity::{HybridSignature, Identity, NodeId, PublicIdentity, Suite};
use crate::roster::{MeshId, Roster};

/// Frame magic number.
pub const MAGIC: [u8; 4] = *b"SMSH";
/// The envelope format version this crate reads and writes.
pub const VERSION: u8 = 1;
/// Length of the fixed header before the payload.
pub const HEADER_LEN: usize = 67;
/// Offset of the kind byte; the signed prefix is `frame[..PREFIX_LEN]`.
const PREFIX_LEN: usize = 7;
/// Largest payload of any kind.
pub const MAX_PAYLOAD_LEN: usize = 64 * 1024;
/// Largest frame of any kind and suite; transports may refuse anything longer
/// before reading it.
pub const MAX_FRAME_LEN: usize =
    HEADER_LEN + MAX_PAYLOAD_LEN + Suite::Ed25519MlDsa65.signature_len();

/// What an envelope's payload is. The list is closed and versioned: a kind not
/// on it is an [`InvalidMessage::UnknownKind`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Kind {
    /// A sentinel's periodic telemetry report.
    Telemetry,
    /// A batch root: one signature over a Merkle root of records of another
    /// kind (see [`crate::batch`]).
    Batch,
    /// A signature over a connection's TLS exporter value (see
    /// [`crate::link`]).
    LinkAuth,
    /// An accusation put to a committee (see [`crate::quorum`]).
    Accusation,
    /// A committee member's vote on an accusation.
    Vote,
}

impl Kind {
    /// Every kind, in wire order.
    pub const ALL: [Kind; 5] = [
        Kind::Telemetry,
        Kind::Batch,
        Kind::LinkAuth,
        Kind::Accusation,
        Kind::Vote,
    ];

    /// The kind's wire byte.
    #[must_use]
    pub const fn to_u8(self) -> u8 {
        match self {
            Kind::Telemetry => 1,
            Kind::Batch => 2,
            Kind::LinkAuth => 3,
            Kind::Accusation => 4,
            Kind::Vote => 5,
        }
    }

    /// The kind for a wire byte.
    ///
    /// # Errors
    /// [`InvalidMessage::UnknownKind`].
    pub const fn from_u8(b: u8) -> Result<Self, InvalidMessage> {
        match b {
            1 => Ok(Kind::Telemetry),
            2 => Ok(Kind::Batch),
            3 => Ok(Kind::LinkAuth),
            4 => Ok(Kind::Accusation),
            5 => Ok(Kind::Vote),
            other => Err(InvalidMessage::UnknownKind(other)),
        }
    }

    /// The hard limit on this kind's payload (or, for kinds carried inside a
    /// batch, on one record).
    #[must_use]
    pub const fn max_payload_len(self) -> usize {
        match self {
            Kind::Telemetry => MAX_PAYLOAD_LEN,
            Kind::Batch => crate::batch::BatchRoot::LEN,
            Kind::LinkAuth => 2 + crate::link::EXPORTER_LEN,
            Kind::Accusation => crate::quorum::MAX_ACCUSATION_LEN,
            Kind::Vote => crate::quorum::VOTE_LEN,
        }
    }
}

/// Where a message sits in its sender's stream, and when it was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Stamp {
    /// The sender's boot epoch; a new one at every start.
    pub epoch: u64,
    /// Sequence number within the epoch; never reused.
    pub sequence: u64,
    /// When the sender made it, in Unix milliseconds of the sender's clock.
    pub issued_at_ms: u64,
}

/// An envelope's header fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Header {
    /// The signature suite.
    pub suite: Suite,
    /// What the payload is.
    pub kind: Kind,
    /// Who signed it.
    pub sender: NodeId,
    /// Stream position and time.
    pub stamp: Stamp,
}

impl Header {
    /// Appends the header bytes (with `payload_len`) to `out`.
    fn encode(&self, payload_len: u32, out: &mut Vec<u8>) {
        out.extend_from_slice(&MAGIC);
        out.push(VERSION);
        out.push(self.suite.to_u8());
        out.push(self.kind.to_u8());
        out.extend_from_slice(&self.sender.0);
        out.extend_from_slice(&self.stamp.epoch.to_be_bytes());
        out.extend_from_slice(&self.stamp.sequence.to_be_bytes());
        out.extend_from_slice(&self.stamp.issued_at_ms.to_be_bytes());
        out.extend_from_slice(&payload_len.to_be_bytes());
    }
}

/// A frame whose layout is valid; signatures not yet checked.
struct Parsed<'a> {
    header: Header,
    /// Everything the signatures cover, as received (header and payload).
    body: &'a [u8],
    payload: &'a [u8],
    ed25519: &'a [u8],
    ml_dsa: &'a [u8],
}

/// Header and payload of a frame this crate has verified already (held in
/// a node's store); never for bytes straight off the wire.
pub(crate) fn verified_parts(frame: &[u8]) -> Result<(Header, &[u8]), InvalidMessage> {
    parse(frame).map(|p| (p.header, p.payload))
}

fn parse(frame: &[u8]) -> Result<Parsed<'_>, InvalidMessage> {
    if frame.len() > MAX_FRAME_LEN {
        return Err(InvalidMessage::Oversize {
            what: "frame",
            len: frame.len(),
            limit: MAX_FRAME_LEN,
        });
    }
    let mut r = Reader::new(frame);
    if r.array::<4>()? != MAGIC {
        return Err(InvalidMessage::BadMagic);
    }
    match r.u8()? {
        VERSION => {}
        other => return Err(InvalidMessage::UnsupportedVersion(other)),
    }
    let suite = Suite::from_u8(r.u8()?)?;
    let kind = Kind::from_u8(r.u8()?)?;
    let sender = NodeId(r.array()?);
    let stamp = Stamp {
        epoch: r.u64()?,
        sequence: r.u64()?,
        issued_at_ms: r.u64()?,
    };
    let payload = r.bytes_u32("payload", kind.max_payload_len())?;
    let body = &frame[..r.position()];
    let Suite::Ed25519MlDsa65 = suite;
    let ed25519 = r.take(crate::identity::ED25519_SIGNATURE_LEN)?;
    let ml_dsa = r.take(crate::identity::ML_DSA_65_SIGNATURE_LEN)?;
    r.finish()?;
    Ok(Parsed {
        header: Header {
            suite,
            kind,
            sender,
            stamp,
        },
        body,
        payload,
        ed25519,
        ml_dsa,
    })
}

/// The message both algorithms sign: domain prefix, mesh id, rest of the body.
pub(crate) fn signed_message(mesh: &MeshId, body: &[u8]) -> Vec<u8> {
    let mut msg = Vec::with_capacity(body.len() + mesh.0.len());
    for_each_signed_part(mesh, body, |part| msg.extend_from_slice(part));
    msg
}

/// The pieces of [`signed_message`] in order, for hashing without a copy.
pub(crate) fn for_each_signed_part(mesh: &MeshId, body: &[u8], mut f: impl FnMut(&[u8])) {
    f(&body[..PREFIX_LEN]);
    f(&mesh.0);
    f(&body[PREFIX_LEN..]);
}

pub(crate) fn body(header: &Header, payload: &[u8]) -> Result<Vec<u8>, Error> {
    let limit = header.kind.max_payload_len();
    let len = u32::try_from(payload.len())
        .ok()
        .filter(|&n| n as usize <= limit)
        .ok_or_else(|| {
            Error::InvalidInput(format!(
                "{:?} payload of {} bytes is over the limit of {limit}",
                header.kind,
                payload.len()
            ))
        })?;
    let mut out = Vec::with_capacity(HEADER_LEN + payload.len() + header.suite.signature_len());
    header.encode(len, &mut out);
    out.extend_from_slice(payload);
    Ok(out)
}

/// The exact bytes a signer must sign for `header` and `payload` in `mesh`.
/// [`seal`] uses it; it is public so that other signers (a hardware key, an
/// independent implementation in tests) can produce envelopes.
///
/// # Errors
/// [`Error::InvalidInput`] if the payload is over its kind's limit.
pub fn signing_message(mesh: &MeshId, header: &Header, payload: &[u8]) -> Result<Vec<u8>, Error> {
    Ok(signed_message(mesh, &body(header, payload)?))
}

/// Builds a frame from a header, payload and a signature made elsewhere over
/// [`signing_message`].
///
/// # Errors
/// [`Error::InvalidInput`] if the payload is over its kind's limit.
pub fn assemble(
    header: &Header,
    payload: &[u8],
    signature: &HybridSignature,
) -> Result<Vec<u8>, Error> {
    let mut frame = body(header, payload)?;
    frame.extend_from_slice(&signature.ed25519);
    frame.extend_from_slice(&signature.ml_dsa[..]);
    Ok(frame)
}

/// Signs `payload` as a `kind` envelope from `identity`, bound to `mesh`.
///
/// The caller owns sequence discipline: a (sender, epoch, sequence) must never
/// be signed twice with different content, even across crashes.
///
/// # Errors
/// [`Error::InvalidInput`] if the payload is over its kind's limit;
/// [`Error::Crypto`] if signing fails.
pub fn seal(
    identity: &Identity,
    mesh: &MeshId,
    kind: Kind,
    stamp: Stamp,
    payload: &[u8],
) -> Result<Vec<u8>, Error> {
    let header = Header {
        suite: identity.public().suite(),
        kind,
        sender: identity.id(),
        stamp,
    };
    let mut frame = body(&header, payload)?;
    let sig = identity.sign(&signed_message(mesh, &frame))?;
    frame.extend_from_slice(&sig.ed25519);
    frame.extend_from_slice(&sig.ml_dsa[..]);
    Ok(frame)
}

/// An envelope whose signatures verified against a rostered sender.
#[derive(Clone, Copy)]
pub struct Verified<'a> {
    header: Header,
    frame: &'a [u8],
    body_len: usize,
    payload: &'a [u8],
}

impl fmt::Debug for Verified<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Verified")
            .field("header", &self.header)
            .field("payload_len", &self.payload.len())
            .finish()
    }
}

impl<'a> Verified<'a> {
    /// The header.
    #[must_use]
    pub fn header(&self) -> &Header {
        &self.header
    }

    /// The payload, still undecoded; decode it with a strict decoder.
    #[must_use]
    pub fn payload(&self) -> &'a [u8] {
        self.payload
    }

    /// The whole frame as received (for relaying or keeping as evidence).
    #[must_use]
    pub fn frame(&self) -> &'a [u8] {
        self.frame
    }

    /// The signed content (header and payload, without signatures). Two
    /// frames with equal signed content are the same message even though
    /// their signature bytes differ (ML-DSA signing is randomised).
    #[must_use]
    pub fn signed_content(&self) -> &'a [u8] {
        &self.frame[..self.body_len]
    }
}

/// The signed content (header and payload, no signatures) of a well-formed
/// frame, unverified: for comparing two frames' contents cheaply.
///
/// # Errors
/// [`Error::InvalidMessage`].
pub fn signed_content_of(frame: &[u8]) -> Result<&[u8], Error> {
    Ok(parse(frame)?.body)
}

/// Parses a frame's layout and header without verifying signatures: for
/// routing and cheap pre-checks (replay windows) before paying for
/// verification. Nothing it returns is authenticated.
///
/// # Errors
/// [`Error::InvalidMessage`].
pub fn peek_header(frame: &[u8]) -> Result<Header, Error> {
    Ok(parse(frame)?.header)
}

/// Verifies a received frame against the roster: layout, limits, a rostered
/// sender with a matching suite, and both signatures over the exact bytes.
///
/// Stateless; replay and freshness checks are [`crate::replay::Receiver`]'s.
///
/// # Errors
/// [`Error::InvalidMessage`] for a malformed frame, [`Error::PeerMisbehaved`]
/// for an unknown sender, a suite mismatch or a bad signature.
pub fn open<'a>(roster: &Roster, frame: &'a [u8]) -> Result<Verified<'a>, Error> {
    open_with(roster, frame, |_| Ok(()))
}

/// As [`open`], running `precheck` on the parsed (unauthenticated) header
/// before paying for signature verification.
pub(crate) fn open_with<'a>(
    roster: &Roster,
    frame: &'a [u8],
    precheck: impl FnOnce(&Header) -> Result<(), PeerMisbehaved>,
) -> Result<Verified<'a>, Error> {
    open_checked_by(roster, frame, precheck, |public, mesh, sigs| {
        public.verify_parts(&signed_message(mesh, sigs.body), sigs.ed25519, sigs.ml_dsa)
    })
}

/// The signed bytes and signature fields of a parsed frame, for a
/// signature check other than the default one (a verification cache, the
/// simulator's cost model).
pub(crate) struct SignedParts<'a> {
    /// Header and payload as received.
    pub(crate) body: &'a [u8],
    /// The Ed25519 signature field.
    pub(crate) ed25519: &'a [u8],
    /// The ML-DSA-65 signature field.
    pub(crate) ml_dsa: &'a [u8],
}

/// Layout, limits, `precheck`, rostered sender and suite binding, then
/// `check` over the signature fields. Every public way of opening a frame goes
/// through here, so only the signature check itself differs between them.
pub(crate) fn open_checked_by<'a>(
    roster: &Roster,
    frame: &'a [u8],
    precheck: impl FnOnce(&Header) -> Result<(), PeerMisbehaved>,
    check: impl FnOnce(&PublicIdentity, &MeshId, &SignedParts<'a>) -> Result<(), PeerMisbehaved>,
) -> Result<Verified<'a>, Error> {
    let p = parse(frame)?;
    precheck(&p.header)?;
    let member = roster
        .get(&p.header.sender)
        .ok_or(PeerMisbehaved::UnknownSender(p.header.sender))?;
    let public = &member.public;
    if public.suite() != p.header.suite {
        return Err(PeerMisbehaved::SuiteMismatch {
            sender: p.header.sender,
            rostered: public.suite().to_u8(),
            used: p.header.suite.to_u8(),
        }
        .into());
    }
    let parts = SignedParts {
        body: p.body,
        ed25519: p.ed25519,
        ml_dsa: p.ml_dsa,
    };
    check(public, roster.mesh_id(), &parts)?;
    Ok(Verified {
        header: p.header,
        frame,
        body_len: p.body.len(),
        payload: p.payload,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::SEED_LEN;

    fn identity(b: u8) -> Identity {
        Identity::from_seed(&[b; SEED_LEN]).unwrap()
    }

    fn roster_of(ids: &[&Identity]) -> Roster {
        Roster::equal_weight("unit", ids.iter().map(|i| i.public().clone())).unwrap()
    }

    const STAMP: Stamp = Stamp {
        epoch: 3,
        sequence: 9,
        issued_at_ms: 1_700_000_000_000,
    };

    #[test]
    fn round_trip_with_exact_length() {
        let a = identity(1);
        let roster = roster_of(&[&a]);
        let frame = seal(&a, roster.mesh_id(), Kind::Telemetry, STAMP, b"hello").unwrap();
        assert_eq!(frame.len(), HEADER_LEN + 5 + 64 + 3309);
        let v = open(&roster, &frame).unwrap();
        assert_eq!(v.payload(), b"hello");
        assert_eq!(v.header().sender, a.id());
        assert_eq!(v.header().stamp, STAMP);
        assert_eq!(v.header().kind, Kind::Telemetry);
        assert_eq!(v.frame(), &frame[..]);
        assert_eq!(v.signed_content(), &frame[..HEADER_LEN + 5]);
        assert_eq!(peek_header(&frame).unwrap(), *v.header());
    }

    #[test]
    fn empty_and_maximal_payloads() {
        let a = identity(1);
        let roster = roster_of(&[&a]);
        let empty = seal(&a, roster.mesh_id(), Kind::Telemetry, STAMP, b"").unwrap();
        assert_eq!(open(&roster, &empty).unwrap().payload(), b"");
        let max = vec![7u8; MAX_PAYLOAD_LEN];
        let frame = seal(&a, roster.mesh_id(), Kind::Telemetry, STAMP, &max).unwrap();
        assert_eq!(frame.len(), MAX_FRAME_LEN);
        open(&roster, &frame).unwrap();
        let over = vec![7u8; MAX_PAYLOAD_LEN + 1];
        assert!(matches!(
            seal(&a, roster.mesh_id(), Kind::Telemetry, STAMP, &over),
            Err(Error::InvalidInput(_))
        ));
    }

    #[test]
    fn unrostered_sender_and_other_mesh_are_refused() {
        let a = identity(1);
        let b = identity(2);
        let roster = roster_of(&[&a]);
        let frame = seal(&b, roster.mesh_id(), Kind::Telemetry, STAMP, b"x").unwrap();
        assert!(matches!(
            open(&roster, &frame),
            Err(Error::PeerMisbehaved(PeerMisbehaved::UnknownSender(id))) if id == b.id()
        ));
        // Same member key, different mesh: the signature does not carry over.
        let other = Roster::equal_weight("other", [a.public().clone()]).unwrap();
        let frame = seal(&a, other.mesh_id(), Kind::Telemetry, STAMP, b"x").unwrap();
        assert!(matches!(
            open(&roster, &frame),
            Err(Error::PeerMisbehaved(PeerMisbehaved::BadEd25519Signature(
                _
            )))
        ));
    }

    #[test]
    fn kind_limits_apply_before_verification() {
        let a = identity(1);
        let roster = roster_of(&[&a]);
        let mut frame = seal(&a, roster.mesh_id(), Kind::Telemetry, STAMP, &[0u8; 100]).unwrap();
        // Relabel as a Batch: its payload limit is 37 bytes.
        frame[6] = Kind::Batch.to_u8();
        assert!(matches!(
            open(&roster, &frame),
            Err(Error::InvalidMessage(InvalidMessage::Oversize {
                what: "payload",
                ..
            }))
        ));
        frame[6] = 0xee;
        assert!(matches!(
            open(&roster, &frame),
            Err(Error::InvalidMessage(InvalidMessage::UnknownKind(0xee)))
        ));
    }
}
