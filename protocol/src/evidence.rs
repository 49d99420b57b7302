//! Self-proving faults, the evidence that proves them, quarantine
//! certificates, and the quarantine state a node enforces.
//!
//! **Faults.** The list is closed and versioned ([`FAULTS_VERSION`]); a fault
//! is on it only if the signed messages alone prove it, so that anyone
//! holding the roster can check it without trusting whoever passed it on:
//! - [`Fault::Equivocation`]: two envelopes from one sender, both verifying,
//!   both in the sender's numbered stream ([`Kind::Telemetry`],
//!   [`Kind::Batch`]), under the same (epoch, sequence) with different
//!   *signed content* (header and payload). Signature bytes are not compared:
//!   ML-DSA signing is randomised, so one message signed twice is not a fault.
//!   Link authentications (sequence 0, bound to one connection) are never
//!   evidence.
//!
//! What is *not* evidence: an invalid signature or a replay seen on a link.
//! Anyone can write any sender id into a frame or relay an old one, so those
//! count only as local signals against the link's peer (see
//! [`crate::node`]), never against the sender they name.
//!
//! **Certificates.** A [`Certificate`] names the subject, the reason
//! (evidence, or a committee's votes: [`crate::quorum`]), the epoch of the
//! fault and the quarantine's time to live. It carries no signature of its
//! own: the evidence is signed by the subject (the votes by their voters),
//! and every other field is checked against it or against the verifier's
//! [`QuarantinePolicy`], so a relay that alters a certificate makes it fail.
//! Anyone can check one offline with [`Certificate::verify`] and the roster.
//!
//! **Quarantine.** [`Quarantine`] holds the certificates a node has verified.
//! A quarantine lasts `ttl_ms` from when this node first held it. At most
//! `max_quarantined_permille` of the roster's weight is enforced at once: a
//! mesh that quarantines beyond that is more likely under attack than full of
//! faulty members, so further certificates are held and reported, not
//! enforced (no self-eclipse); they are enforced as earlier ones expire.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use crate::codec::{Codec, Reader};
use crate::crypto::Crypto;
use crate::envelope::{self, Kind, MAX_FRAME_LEN, Verified};
use crate::error::{Error, InvalidMessage};
use crate::identity::NodeId;
use crate::quorum::{MAX_VOTES_LEN, Votes};
use crate::roster::Roster;

/// Version of the fault list and the evidence format.
pub const FAULTS_VERSION: u8 = 1;
/// Version of the certificate format.
pub const CERTIFICATE_VERSION: u8 = 1;
/// Largest encoded evidence: two frames and their framing.
pub const MAX_EVIDENCE_LEN: usize = 2 + 2 * (4 + MAX_FRAME_LEN);
/// Largest encoded certificate (a voted one; evidence is smaller).
pub const MAX_CERTIFICATE_LEN: usize = 1
    + 32
    + 8
    + 8
    + 1
    + 4
    + if MAX_VOTES_LEN > MAX_EVIDENCE_LEN {
        MAX_VOTES_LEN
    } else {
        MAX_EVIDENCE_LEN
    };
/// How many times one quarantine's certificate may be replaced by a
/// preceding one (see [`Certificate::precedes`]). Bounds the floods a
/// subject can cause by releasing certificates against itself in
/// descending order.
pub const MAX_REPLACEMENTS: u8 = 8;

/// A misbehaviour that signed messages prove on their own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Fault {
    /// Two different contents signed under one (epoch, sequence).
    Equivocation,
    /// Not self-proving: a committee voted that the subject's scored
    /// behaviour over one window warrants quarantine ([`crate::quorum`]).
    /// The position is that of the subject's accused report.
    Voted,
}

impl Fault {
    /// Every fault, in wire order.
    pub const ALL: [Fault; 2] = [Fault::Equivocation, Fault::Voted];

    /// The wire byte.
    #[must_use]
    pub const fn to_u8(self) -> u8 {
        match self {
            Fault::Equivocation => 1,
            Fault::Voted => 2,
        }
    }

    /// The fault for a wire byte.
    ///
    /// # Errors
    /// [`InvalidMessage::InvalidField`] for a byte not on the list.
    pub const fn from_u8(b: u8) -> Result<Self, InvalidMessage> {
        match b {
            1 => Ok(Fault::Equivocation),
            2 => Ok(Fault::Voted),
            _ => Err(InvalidMessage::InvalidField {
                field: "fault",
                reason: "not on the fault list",
            }),
        }
    }

    /// A stable name for logs, APIs and metrics.
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Fault::Equivocation => "equivocation",
            Fault::Voted => "voted",
        }
    }
}

/// Kinds whose (epoch, sequence) come from the sender's numbered stream.
const fn numbered(kind: Kind) -> bool {
    matches!(
        kind,
        Kind::Telemetry | Kind::Batch | Kind::Accusation | Kind::Vote
    )
}

fn not_proven(reason: &'static str) -> Error {
    InvalidMessage::InvalidField {
        field: "evidence",
        reason,
    }
    .into()
}

/// What a piece of evidence proves, once verified.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Proven {
    /// Who misbehaved.
    pub subject: NodeId,
    /// How.
    pub fault: Fault,
    /// The subject's epoch where it happened.
    pub epoch: u64,
    /// The sequence it was signed under.
    pub sequence: u64,
}

/// The signed messages that prove a fault, exactly as their signer sent
/// them. The encoding is canonical: the two frames are ordered by their
/// signed content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Evidence {
    fault: Fault,
    frames: [Vec<u8>; 2],
}

/// How the frames inside evidence are verified: [`Envelopes`] checks the
/// signatures (what a third party runs), and any [`Crypto`] verifies its
/// own way (the simulator's modelled signatures, a verification cache).
pub trait Open {
    /// Verifies `frame` against `roster` (see [`envelope::open`]).
    ///
    /// # Errors
    /// As [`envelope::open`].
    fn open<'a>(&mut self, roster: &Roster, frame: &'a [u8]) -> Result<Verified<'a>, Error>;
}

/// Plain signature verification with [`envelope::open`].
#[derive(Debug, Clone, Copy, Default)]
pub struct Envelopes;

impl Open for Envelopes {
    fn open<'a>(&mut self, roster: &Roster, frame: &'a [u8]) -> Result<Verified<'a>, Error> {
        envelope::open(roster, frame)
    }
}

impl<C: Crypto> Open for C {
    fn open<'a>(&mut self, roster: &Roster, frame: &'a [u8]) -> Result<Verified<'a>, Error> {
        Crypto::open(self, roster, frame)
    }
}

impl Evidence {
    /// Equivocation evidence from two frames; verifies both and checks that
    /// they prove the fault.
    ///
    /// # Errors
    /// A frame that does not verify, or frames that prove nothing.
    pub fn equivocation(roster: &Roster, a: &[u8], b: &[u8]) -> Result<Self, Error> {
        Self::equivocation_by(roster, a, b, &mut Envelopes)
    }

    /// As [`Evidence::equivocation`], verifying with `open`.
    ///
    /// # Errors
    /// As [`Evidence::equivocation`].
    pub fn equivocation_by(
        roster: &Roster,
        a: &[u8],
        b: &[u8],
        open: &mut impl Open,
    ) -> Result<Self, Error> {
        Ok(Self::equivocation_proven(roster, a, b, open)?.0)
    }

    /// As [`Evidence::equivocation_by`], also returning what it proves.
    pub(crate) fn equivocation_proven(
        roster: &Roster,
        a: &[u8],
        b: &[u8],
        open: &mut impl Open,
    ) -> Result<(Self, Proven), Error> {
        let mut frames = [a.to_vec(), b.to_vec()];
        if envelope::signed_content_of(a)? > envelope::signed_content_of(b)? {
            frames.swap(0, 1);
        }
        let e = Self {
            fault: Fault::Equivocation,
            frames,
        };
        let proven = e.verify_by(roster, open)?;
        Ok((e, proven))
    }

    /// The fault claimed.
    #[must_use]
    pub fn fault(&self) -> Fault {
        self.fault
    }

    /// The frames, in canonical order.
    #[must_use]
    pub fn frames(&self) -> [&[u8]; 2] {
        [&self.frames[0], &self.frames[1]]
    }

    /// Checks the evidence against the roster: every frame verifies and
    /// together they prove the fault.
    ///
    /// # Errors
    /// [`Error::PeerMisbehaved`] for a frame that fails verification,
    /// [`Error::InvalidMessage`] for frames that prove nothing.
    pub fn verify(&self, roster: &Roster) -> Result<Proven, Error> {
        self.verify_by(roster, &mut Envelopes)
    }

    /// As [`Evidence::verify`], verifying frames with `open`.
    ///
    /// # Errors
    /// As [`Evidence::verify`].
    pub fn verify_by(&self, roster: &Roster, open: &mut impl Open) -> Result<Proven, Error> {
        match self.fault {
            Fault::Equivocation => {
                let a = open.open(roster, &self.frames[0])?;
                let b = open.open(roster, &self.frames[1])?;
                let (ha, hb) = (a.header(), b.header());
                if ha.sender != hb.sender {
                    return Err(not_proven("frames from different senders"));
                }
                if !numbered(ha.kind) || !numbered(hb.kind) {
                    return Err(not_proven("a frame outside the numbered stream"));
                }
                if (ha.stamp.epoch, ha.stamp.sequence) != (hb.stamp.epoch, hb.stamp.sequence) {
                    return Err(not_proven("frames under different (epoch, sequence)"));
                }
                match a.signed_content().cmp(b.signed_content()) {
                    std::cmp::Ordering::Less => {}
                    std::cmp::Ordering::Equal => {
                        return Err(not_proven("the same signed content twice"));
                    }
                    std::cmp::Ordering::Greater => {
                        return Err(InvalidMessage::NonCanonical(Self::NAME).into());
                    }
                }
                Ok(Proven {
                    subject: ha.sender,
                    fault: self.fault,
                    epoch: ha.stamp.epoch,
                    sequence: ha.stamp.sequence,
                })
            }
            Fault::Voted => Err(not_proven("a vote is not self-proving evidence")),
        }
    }
}

impl Codec for Evidence {
    const NAME: &'static str = "evidence";

    fn encode(&self, out: &mut Vec<u8>) {
        out.push(FAULTS_VERSION);
        out.push(self.fault.to_u8());
        for f in &self.frames {
            // Frames are at most MAX_FRAME_LEN, far below u32::MAX.
            out.extend_from_slice(&u32::try_from(f.len()).unwrap_or(u32::MAX).to_be_bytes());
            out.extend_from_slice(f);
        }
    }

    fn read(r: &mut Reader<'_>) -> Result<Self, InvalidMessage> {
        let version = r.u8()?;
        if version != FAULTS_VERSION {
            return Err(InvalidMessage::UnsupportedVersion(version));
        }
        let fault = Fault::from_u8(r.u8()?)?;
        if fault == Fault::Voted {
            return Err(InvalidMessage::InvalidField {
                field: "evidence.fault",
                reason: "not self-proving",
            });
        }
        let a = r.bytes_u32("evidence frame", MAX_FRAME_LEN)?.to_vec();
        let b = r.bytes_u32("evidence frame", MAX_FRAME_LEN)?.to_vec();
        Ok(Self {
            fault,
            frames: [a, b],
        })
    }
}

/// Why a certificate quarantines its subject.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Reason {
    /// Signed messages that prove a fault.
    Evidence(Evidence),
    /// A committee's signed yes votes on a signed accusation.
    Votes(Votes),
}

impl Reason {
    const fn tag(&self) -> u8 {
        match self {
            Reason::Evidence(_) => 1,
            Reason::Votes(_) => 2,
        }
    }
}

/// The rules a node applies to certificates; the same for every member (a
/// later issue puts them under governance).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuarantinePolicy {
    /// How long an evidence quarantine lasts, ms.
    pub evidence_ttl_ms: u64,
    /// How long a voted quarantine lasts, ms.
    pub voted_ttl_ms: u64,
    /// Most of the roster's weight quarantined at once, per mille.
    pub max_quarantined_permille: u16,
    /// Length of a committee epoch, ms: a subject's committee changes at
    /// each multiple of it (see [`crate::quorum::Committee::of`]).
    pub committee_epoch_ms: u64,
    /// SHA-256 of the pinned model: accusations must name it. All zeros
    /// (the default) pins none, and no voted certificate verifies.
    pub model: [u8; 32],
}

impl Default for QuarantinePolicy {
    fn default() -> Self {
        Self {
            evidence_ttl_ms: 24 * 3_600_000,
            voted_ttl_ms: 3_600_000,
            max_quarantined_permille: 300,
            committee_epoch_ms: 3_600_000,
            model: [0; 32],
        }
    }
}

impl QuarantinePolicy {
    /// The time to live a certificate for `fault` must name.
    #[must_use]
    pub fn ttl_ms(&self, fault: Fault) -> u64 {
        match fault {
            Fault::Equivocation => self.evidence_ttl_ms,
            Fault::Voted => self.voted_ttl_ms,
        }
    }
}

/// A quarantine certificate: anyone holding the roster can check it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Certificate {
    /// Who is quarantined.
    pub subject: NodeId,
    /// The subject's epoch where the fault happened.
    pub epoch: u64,
    /// How long the quarantine lasts, ms, from when a node first holds it.
    pub ttl_ms: u64,
    /// Why.
    pub reason: Reason,
}

/// Why a certificate was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CertificateError {
    /// The evidence does not verify or proves nothing.
    #[error("evidence: {0}")]
    Evidence(#[from] Error),
    /// The evidence proves a fault of someone other than the subject named.
    #[error("the evidence is against {proven}, the certificate names {named}")]
    WrongSubject {
        /// Named in the certificate.
        named: NodeId,
        /// Proven by the evidence.
        proven: NodeId,
    },
    /// The epoch named differs from the evidence's.
    #[error("the certificate names epoch {named}, the evidence epoch {proven}")]
    WrongEpoch {
        /// Named.
        named: u64,
        /// Proven.
        proven: u64,
    },
    /// The time to live is not the policy's.
    #[error("time to live {named} ms differs from the policy's {policy} ms")]
    WrongTtl {
        /// Named.
        named: u64,
        /// The policy's.
        policy: u64,
    },
}

impl Certificate {
    /// A certificate from verified evidence under `policy`.
    ///
    /// # Errors
    /// The evidence does not verify.
    pub fn from_evidence(
        roster: &Roster,
        policy: &QuarantinePolicy,
        evidence: Evidence,
    ) -> Result<Self, CertificateError> {
        Self::from_evidence_by(roster, policy, evidence, &mut Envelopes)
    }

    /// As [`Certificate::from_evidence`], verifying frames with `open`.
    ///
    /// # Errors
    /// As [`Certificate::from_evidence`].
    pub fn from_evidence_by(
        roster: &Roster,
        policy: &QuarantinePolicy,
        evidence: Evidence,
        open: &mut impl Open,
    ) -> Result<Self, CertificateError> {
        let proven = evidence.verify_by(roster, open)?;
        Ok(Self::certify(policy, evidence, &proven))
    }

    /// The certificate for evidence already verified to prove `proven`.
    pub(crate) fn certify(policy: &QuarantinePolicy, evidence: Evidence, proven: &Proven) -> Self {
        Self {
            subject: proven.subject,
            epoch: proven.epoch,
            ttl_ms: policy.evidence_ttl_ms,
            reason: Reason::Evidence(evidence),
        }
    }

    /// The certificate for votes already verified to prove `proven`.
    pub(crate) fn certify_votes(policy: &QuarantinePolicy, votes: Votes, proven: &Proven) -> Self {
        Self {
            subject: proven.subject,
            epoch: proven.epoch,
            ttl_ms: policy.voted_ttl_ms,
            reason: Reason::Votes(votes),
        }
    }

    /// Checks the certificate against the roster and policy.
    ///
    /// # Errors
    /// [`CertificateError`].
    pub fn verify(
        &self,
        roster: &Roster,
        policy: &QuarantinePolicy,
    ) -> Result<Proven, CertificateError> {
        self.verify_by(roster, policy, &mut Envelopes)
    }

    /// As [`Certificate::verify`], verifying frames with `open`.
    ///
    /// # Errors
    /// As [`Certificate::verify`].
    pub fn verify_by(
        &self,
        roster: &Roster,
        policy: &QuarantinePolicy,
        open: &mut impl Open,
    ) -> Result<Proven, CertificateError> {
        let proven = match &self.reason {
            Reason::Evidence(evidence) => evidence.verify_by(roster, open)?,
            Reason::Votes(votes) => votes.verify_by(roster, policy, open)?.1,
        };
        if proven.subject != self.subject {
            return Err(CertificateError::WrongSubject {
                named: self.subject,
                proven: proven.subject,
            });
        }
        if proven.epoch != self.epoch {
            return Err(CertificateError::WrongEpoch {
                named: self.epoch,
                proven: proven.epoch,
            });
        }
        if self.ttl_ms != policy.ttl_ms(proven.fault) {
            return Err(CertificateError::WrongTtl {
                named: self.ttl_ms,
                policy: policy.ttl_ms(proven.fault),
            });
        }
        Ok(proven)
    }
}

/// The bytes of a certificate's encoding before its reason's body:
/// version, subject, epoch, TTL, reason tag, body length.
const CERTIFICATE_HEADER_LEN: usize = 1 + 32 + 8 + 8 + 1 + 4;

impl Certificate {
    /// [`Codec::decode_exact`] of `message[offset..]`, with a voted
    /// certificate's frames left in `message` rather than copied out of
    /// it (see [`Votes::share`]).
    ///
    /// # Errors
    /// As [`Codec::decode_exact`].
    pub fn decode_shared(message: &Arc<[u8]>, offset: usize) -> Result<Self, InvalidMessage> {
        let bytes = message
            .get(offset..)
            .ok_or(InvalidMessage::Truncated { needed: offset })?;
        let mut cert = Self::decode_exact(bytes)?;
        if let Reason::Votes(v) = &mut cert.reason {
            v.share(message, offset + CERTIFICATE_HEADER_LEN);
        }
        Ok(cert)
    }

    /// Whether this certificate comes before `other` in the canonical order
    /// of certificates about one subject: self-proving evidence before
    /// votes, then the earlier (epoch, sequence) of the fault, then the
    /// frames' bytes. Nodes that detect one equivocator
    /// at different places keep the first in this order, so the whole mesh
    /// ends up holding one and the same certificate per incident.
    ///
    /// Judged from the frames' unverified headers: verify before acting.
    #[must_use]
    pub fn precedes(&self, other: &Certificate) -> bool {
        self.order_key() < other.order_key()
    }

    /// (kind, epoch, sequence, SHA-256 of the frames that tell two
    /// certificates of one fault apart).
    fn order_key(&self) -> (u8, u64, u64, [u8; 32]) {
        let hash = |frames: [&[u8]; 2]| {
            let mut ctx = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
            for f in frames {
                ctx.update(&(f.len() as u64).to_be_bytes());
                ctx.update(f);
            }
            let mut out = [0u8; 32];
            out.copy_from_slice(ctx.finish().as_ref());
            out
        };
        match &self.reason {
            Reason::Evidence(e) => {
                let sequence =
                    envelope::peek_header(&e.frames[0]).map_or(u64::MAX, |h| h.stamp.sequence);
                (1, self.epoch, sequence, hash(e.frames()))
            }
            Reason::Votes(v) => {
                let sequence = self.voted_position().map_or(u64::MAX, |p| p.1);
                let first = v.votes().next().unwrap_or(&[]);
                (2, self.epoch, sequence, hash([v.accusation(), first]))
            }
        }
    }

    /// Where this certificate stands among those of the same fault (same
    /// position): its kind, then the first 7 bytes of the hash that
    /// [`Self::precedes`] orders by. Offers carry it
    /// ([`crate::message::Offer`]), so that a node holding one of two
    /// certificates of one fault (two accusers certified the same window
    /// at once) fetches the other only if it comes first.
    #[must_use]
    pub fn rank(&self) -> [u8; 8] {
        let (kind, _, _, hash) = self.order_key();
        let mut out = [0u8; 8];
        out[0] = kind;
        out[1..].copy_from_slice(&hash[..7]);
        out
    }

    /// The (epoch, sequence) of the fault, read from the unverified
    /// frames (verify before acting).
    #[must_use]
    pub fn position(&self) -> Option<(u64, u64)> {
        match &self.reason {
            Reason::Evidence(e) => envelope::peek_header(&e.frames[0])
                .ok()
                .map(|h| (h.stamp.epoch, h.stamp.sequence)),
            Reason::Votes(_) => self.voted_position(),
        }
    }

    fn voted_position(&self) -> Option<(u64, u64)> {
        let Reason::Votes(v) = &self.reason else {
            return None;
        };
        let (_, payload) = envelope::verified_parts(v.accusation()).ok()?;
        let a = crate::quorum::Accusation::decode_exact(payload).ok()?;
        a.subject_report().map(|r| r.position)
    }
}

impl Codec for Certificate {
    const NAME: &'static str = "certificate";

    fn encode(&self, out: &mut Vec<u8>) {
        out.push(CERTIFICATE_VERSION);
        out.extend_from_slice(&self.subject.0);
        out.extend_from_slice(&self.epoch.to_be_bytes());
        out.extend_from_slice(&self.ttl_ms.to_be_bytes());
        out.push(self.reason.tag());
        let body = match &self.reason {
            Reason::Evidence(e) => e.to_bytes(),
            Reason::Votes(v) => v.to_bytes(),
        };
        out.extend_from_slice(&u32::try_from(body.len()).unwrap_or(u32::MAX).to_be_bytes());
        out.extend_from_slice(&body);
    }

    fn read(r: &mut Reader<'_>) -> Result<Self, InvalidMessage> {
        let version = r.u8()?;
        if version != CERTIFICATE_VERSION {
            return Err(InvalidMessage::UnsupportedVersion(version));
        }
        let subject = NodeId(r.array()?);
        let epoch = r.u64()?;
        let ttl_ms = r.u64()?;
        let reason = match r.u8()? {
            1 => Reason::Evidence(Evidence::decode_exact(
                r.bytes_u32("certificate evidence", MAX_EVIDENCE_LEN)?,
            )?),
            2 => Reason::Votes(Votes::decode_exact(
                r.bytes_u32("certificate votes", MAX_VOTES_LEN)?,
            )?),
            _ => {
                return Err(InvalidMessage::InvalidField {
                    field: "certificate reason",
                    reason: "unknown",
                });
            }
        };
        Ok(Self {
            subject,
            epoch,
            ttl_ms,
            reason,
        })
    }
}

/// One quarantine a node holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The certificate, verified.
    pub certificate: Certificate,
    /// The fault it proves.
    pub proven: Proven,
    /// When this node first held it, ms.
    pub since_ms: u64,
    /// When it ends, ms.
    pub until_ms: u64,
    /// Enforced (false: held over the cap).
    pub enforced: bool,
    /// How many times a preceding certificate replaced the first one held.
    pub replacements: u8,
}

impl Entry {
    fn replaceable_by(&self, certificate: &Certificate) -> bool {
        self.replacements < MAX_REPLACEMENTS && certificate.precedes(&self.certificate)
    }
}

/// What [`Quarantine::admit`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admitted {
    /// New, and enforced.
    Enforced,
    /// New, but enforcing it would pass the cap: held, not enforced.
    OverCap,
    /// The subject is already quarantined; nothing changed.
    Known,
    /// The subject was already quarantined under a certificate this one
    /// precedes: it replaced that one (same period, same enforcement).
    Replaced,
    /// This very fault's quarantine has ended here (or ended before it was
    /// restored): remembered, so that a copy still travelling the mesh
    /// does not start it again. A new fault starts a new quarantine.
    Expired,
}

/// The quarantines a node holds, by subject.
#[derive(Debug, Clone, Default)]
pub struct Quarantine {
    entries: BTreeMap<NodeId, Entry>,
    /// The entries' ends, soonest first: a node asks for the next one
    /// after every event.
    ends: BTreeSet<(u64, NodeId)>,
    /// The (epoch, sequence) of each subject's last ended quarantine.
    ended: BTreeMap<NodeId, (u64, u64)>,
}

impl Quarantine {
    /// No quarantines.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Verifies `certificate` and, if its subject is not already
    /// quarantined, starts a quarantine at `now_ms`.
    ///
    /// # Errors
    /// The certificate does not verify.
    pub fn admit(
        &mut self,
        roster: &Roster,
        policy: &QuarantinePolicy,
        certificate: Certificate,
        now_ms: u64,
    ) -> Result<Admitted, CertificateError> {
        self.admit_by(roster, policy, certificate, now_ms, &mut Envelopes)
    }

    /// As [`Quarantine::admit`], verifying frames with `open`.
    ///
    /// # Errors
    /// As [`Quarantine::admit`].
    pub fn admit_by(
        &mut self,
        roster: &Roster,
        policy: &QuarantinePolicy,
        certificate: Certificate,
        now_ms: u64,
        open: &mut impl Open,
    ) -> Result<Admitted, CertificateError> {
        if let Some(known) = self.recognise(&certificate, now_ms) {
            return Ok(known);
        }
        let proven = certificate.verify_by(roster, policy, open)?;
        Ok(self.insert_verified(roster, policy, certificate, proven, now_ms))
    }

    /// Whether `certificate` changes nothing here, judged from its unverified
    /// header and stamp alone (cheap: no signature is checked): its subject
    /// is quarantined already under a certificate that it does not precede
    /// (or that was replaced [`MAX_REPLACEMENTS`] times), or this very
    /// fault's quarantine has ended.
    #[must_use]
    pub fn recognise(&self, certificate: &Certificate, now_ms: u64) -> Option<Admitted> {
        if let Some(e) = self
            .entries
            .get(&certificate.subject)
            .filter(|e| e.until_ms > now_ms)
        {
            return (!e.replaceable_by(certificate)).then_some(Admitted::Known);
        }
        let position = certificate.position()?;
        (self.ended.get(&certificate.subject) == Some(&position)).then_some(Admitted::Expired)
    }

    /// Whether a certificate about `subject` proving a fault at `position`,
    /// offered by a neighbour, would change anything here (judged on the
    /// position alone, before fetching it; at the held certificate's own
    /// position, on the offer's [`Certificate::rank`]).
    #[must_use]
    pub fn wants(
        &self,
        subject: &NodeId,
        position: (u64, u64),
        rank: [u8; 8],
        now_ms: u64,
    ) -> bool {
        if let Some(e) = self.entries.get(subject).filter(|e| e.until_ms > now_ms) {
            return e.replacements < MAX_REPLACEMENTS
                && (position, rank) < ((e.proven.epoch, e.proven.sequence), e.certificate.rank());
        }
        self.ended.get(subject) != Some(&position)
    }

    /// Holds a certificate already verified to prove `proven`.
    pub(crate) fn insert_verified(
        &mut self,
        roster: &Roster,
        policy: &QuarantinePolicy,
        certificate: Certificate,
        proven: Proven,
        now_ms: u64,
    ) -> Admitted {
        let until_ms = now_ms.saturating_add(certificate.ttl_ms);
        self.insert_at(
            roster,
            policy,
            certificate,
            proven,
            (now_ms, until_ms),
            now_ms,
        )
    }

    /// Holds a verified certificate over `since_ms..until_ms` (a restored
    /// one keeps the times it was first held with).
    pub(crate) fn insert_at(
        &mut self,
        roster: &Roster,
        policy: &QuarantinePolicy,
        certificate: Certificate,
        proven: Proven,
        (since_ms, until_ms): (u64, u64),
        now_ms: u64,
    ) -> Admitted {
        let position = (proven.epoch, proven.sequence);
        if self.ended.get(&proven.subject) == Some(&position) {
            return Admitted::Expired;
        }
        if until_ms <= now_ms {
            self.ended.insert(proven.subject, position);
            return Admitted::Expired;
        }
        if let Some(e) = self
            .entries
            .get_mut(&proven.subject)
            .filter(|e| e.until_ms > now_ms)
        {
            if !e.replaceable_by(&certificate) {
                return Admitted::Known;
            }
            e.certificate = certificate;
            e.proven = proven;
            e.replacements += 1;
            return Admitted::Replaced;
        }
        let enforced = self.fits_under_cap(roster, policy, &proven.subject);
        self.ends.insert((until_ms, proven.subject));
        if let Some(old) = self.entries.insert(
            proven.subject,
            Entry {
                until_ms,
                certificate,
                proven,
                since_ms,
                enforced,
                replacements: 0,
            },
        ) && old.until_ms != until_ms
        {
            self.ends.remove(&(old.until_ms, proven.subject));
        }
        if enforced {
            Admitted::Enforced
        } else {
            Admitted::OverCap
        }
    }

    /// When the next quarantine ends, if any is held.
    #[must_use]
    pub fn next_expiry(&self) -> Option<u64> {
        self.ends.first().map(|(t, _)| *t)
    }

    /// Would enforcing `subject` keep the enforced weight within the cap?
    fn fits_under_cap(&self, roster: &Roster, policy: &QuarantinePolicy, subject: &NodeId) -> bool {
        let weight = |id: &NodeId| roster.get(id).map_or(0, |m| m.weight);
        let enforced: u64 = self
            .entries
            .values()
            .filter(|e| e.enforced)
            .map(|e| weight(&e.proven.subject))
            .sum();
        let after = u128::from(enforced + weight(subject));
        after * 1000
            <= u128::from(roster.total_weight()) * u128::from(policy.max_quarantined_permille)
    }

    /// Ends quarantines whose time is up and enforces held ones that now fit
    /// under the cap (oldest first). Returns (lifted, newly enforced).
    pub fn expire(
        &mut self,
        roster: &Roster,
        policy: &QuarantinePolicy,
        now_ms: u64,
    ) -> (Vec<NodeId>, Vec<NodeId>) {
        let mut lifted = Vec::new();
        while let Some(&(until, id)) = self.ends.first()
            && until <= now_ms
        {
            self.ends.pop_first();
            lifted.push(id);
        }
        lifted.sort_unstable();
        for id in &lifted {
            if let Some(e) = self.entries.remove(id) {
                self.ended.insert(*id, (e.proven.epoch, e.proven.sequence));
            }
        }
        let mut held: Vec<(u64, NodeId)> = self
            .entries
            .iter()
            .filter(|(_, e)| !e.enforced)
            .map(|(id, e)| (e.since_ms, *id))
            .collect();
        held.sort_unstable();
        let mut promoted = Vec::new();
        for (_, id) in held {
            if self.fits_under_cap(roster, policy, &id) {
                if let Some(e) = self.entries.get_mut(&id) {
                    e.enforced = true;
                }
                promoted.push(id);
            }
        }
        (lifted, promoted)
    }

    /// Is `id` quarantined and enforced at `now_ms`?
    #[must_use]
    pub fn is_enforced(&self, id: &NodeId, now_ms: u64) -> bool {
        self.entries
            .get(id)
            .is_some_and(|e| e.enforced && e.until_ms > now_ms)
    }

    /// The entry for `id`, if any.
    #[must_use]
    pub fn get(&self, id: &NodeId) -> Option<&Entry> {
        self.entries.get(id)
    }

    /// Every entry, by subject.
    pub fn entries(&self) -> impl Iterator<Item = &Entry> {
        self.entries.values()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::envelope::Stamp;
    use crate::identity::{Identity, SEED_LEN};

    fn identity(n: u8) -> Identity {
        Identity::from_seed(&[n; SEED_LEN]).unwrap()
    }

    fn setup(n: u8) -> (Vec<Identity>, Roster) {
        let ids: Vec<Identity> = (1..=n).map(identity).collect();
        let roster = Roster::equal_weight("ev", ids.iter().map(|i| i.public().clone())).unwrap();
        (ids, roster)
    }

    fn stamp(epoch: u64, sequence: u64, at: u64) -> Stamp {
        Stamp {
            epoch,
            sequence,
            issued_at_ms: at,
        }
    }

    fn seal(id: &Identity, roster: &Roster, kind: Kind, s: Stamp, payload: &[u8]) -> Vec<u8> {
        envelope::seal(id, roster.mesh_id(), kind, s, payload).unwrap()
    }

    #[test]
    fn two_contents_under_one_sequence_prove_equivocation() {
        let (ids, roster) = setup(3);
        let a = seal(&ids[0], &roster, Kind::Telemetry, stamp(7, 3, 100), b"one");
        let b = seal(&ids[0], &roster, Kind::Telemetry, stamp(7, 3, 100), b"two");
        let e = Evidence::equivocation(&roster, &a, &b).unwrap();
        // Either order gives the same canonical evidence.
        assert_eq!(e, Evidence::equivocation(&roster, &b, &a).unwrap());
        let p = e.verify(&roster).unwrap();
        assert_eq!(
            p,
            Proven {
                subject: ids[0].id(),
                fault: Fault::Equivocation,
                epoch: 7,
                sequence: 3
            }
        );
        let bytes = e.to_bytes();
        assert_eq!(Evidence::decode_exact(&bytes).unwrap(), e);
        // Another issued-at is other content too: the stamp is signed.
        let c = seal(&ids[0], &roster, Kind::Telemetry, stamp(7, 3, 101), b"one");
        assert!(Evidence::equivocation(&roster, &a, &c).is_ok());
    }

    #[test]
    fn what_proves_nothing_is_refused() {
        let (ids, roster) = setup(3);
        let t = |id: &Identity, s, p: &[u8]| seal(id, &roster, Kind::Telemetry, s, p);
        let a = t(&ids[0], stamp(7, 3, 100), b"one");
        // The same content signed twice: signatures differ, content does not.
        let again = t(&ids[0], stamp(7, 3, 100), b"one");
        assert_ne!(a, again);
        assert!(Evidence::equivocation(&roster, &a, &again).is_err());
        // Other sequence, other epoch, other sender.
        for other in [
            t(&ids[0], stamp(7, 4, 100), b"two"),
            t(&ids[0], stamp(8, 3, 100), b"two"),
            t(&ids[1], stamp(7, 3, 100), b"two"),
        ] {
            assert!(Evidence::equivocation(&roster, &a, &other).is_err());
        }
        // Link authentications are outside the numbered stream.
        let l1 = seal(&ids[0], &roster, Kind::LinkAuth, stamp(7, 0, 1), &[1; 34]);
        let l2 = seal(&ids[0], &roster, Kind::LinkAuth, stamp(7, 0, 1), &[2; 34]);
        let e = Evidence::equivocation(&roster, &l1, &l2).unwrap_err();
        assert!(e.to_string().contains("numbered stream"), "{e}");
        // A forged frame naming the sender: its signature fails.
        let mut forged = t(&ids[0], stamp(7, 3, 100), b"two");
        let last = forged.len() - 1;
        forged[last] ^= 1;
        assert!(matches!(
            Evidence::equivocation(&roster, &a, &forged),
            Err(Error::PeerMisbehaved(_))
        ));
        // A sender not on the roster.
        let (outsiders, _) = setup(5);
        let o1 = t(&outsiders[4], stamp(7, 3, 100), b"one");
        let o2 = t(&outsiders[4], stamp(7, 3, 100), b"two");
        assert!(Evidence::equivocation(&roster, &o1, &o2).is_err());
    }

    #[test]
    fn encodings_are_strict() {
        let (ids, roster) = setup(3);
        let a = seal(&ids[0], &roster, Kind::Telemetry, stamp(7, 3, 100), b"one");
        let b = seal(&ids[0], &roster, Kind::Telemetry, stamp(7, 3, 100), b"two");
        let policy = QuarantinePolicy::default();
        let e = Evidence::equivocation(&roster, &a, &b).unwrap();
        let cert = Certificate::from_evidence(&roster, &policy, e.clone()).unwrap();
        let bytes = cert.to_bytes();
        assert!(bytes.len() <= MAX_CERTIFICATE_LEN);
        assert_eq!(Certificate::decode_exact(&bytes).unwrap(), cert);
        // Trailing bytes and every truncation are refused.
        let mut long = bytes.clone();
        long.push(0);
        assert!(Certificate::decode_exact(&long).is_err());
        for n in 0..bytes.len() {
            assert!(Certificate::decode_exact(&bytes[..n]).is_err(), "{n}");
        }
        // Frames out of canonical order decode but do not verify.
        let swapped = Evidence {
            fault: Fault::Equivocation,
            frames: [e.frames[1].clone(), e.frames[0].clone()],
        };
        let swapped = Evidence::decode_exact(&swapped.to_bytes()).unwrap();
        assert!(matches!(
            swapped.verify(&roster),
            Err(Error::InvalidMessage(InvalidMessage::NonCanonical(_)))
        ));
        // Unknown versions, faults and reasons.
        let mut v = e.to_bytes();
        v[0] = 9;
        assert!(Evidence::decode_exact(&v).is_err());
        v[0] = FAULTS_VERSION;
        v[1] = 0;
        assert!(Evidence::decode_exact(&v).is_err());
        let mut c = bytes.clone();
        c[1 + 32 + 8 + 8] = 2;
        assert!(Certificate::decode_exact(&c).is_err());
    }

    #[test]
    fn altered_certificates_fail_verification() {
        let (ids, roster) = setup(3);
        let a = seal(&ids[0], &roster, Kind::Telemetry, stamp(7, 3, 100), b"one");
        let b = seal(&ids[0], &roster, Kind::Telemetry, stamp(7, 3, 100), b"two");
        let policy = QuarantinePolicy::default();
        let e = Evidence::equivocation(&roster, &a, &b).unwrap();
        let cert = Certificate::from_evidence(&roster, &policy, e).unwrap();
        assert!(cert.verify(&roster, &policy).is_ok());
        let mut c = cert.clone();
        c.subject = ids[1].id();
        assert!(matches!(
            c.verify(&roster, &policy),
            Err(CertificateError::WrongSubject { .. })
        ));
        let mut c = cert.clone();
        c.epoch = 8;
        assert!(matches!(
            c.verify(&roster, &policy),
            Err(CertificateError::WrongEpoch { .. })
        ));
        let mut c = cert.clone();
        c.ttl_ms = 1;
        assert!(matches!(
            c.verify(&roster, &policy),
            Err(CertificateError::WrongTtl { .. })
        ));
        // Every single-byte change of the encoding is refused somewhere:
        // when decoding or when verifying.
        let bytes = cert.to_bytes();
        for i in (0..bytes.len()).step_by(97) {
            let mut t = bytes.clone();
            t[i] ^= 0x40;
            let ok = Certificate::decode_exact(&t)
                .ok()
                .is_some_and(|c| c.verify(&roster, &policy).is_ok());
            assert!(!ok, "byte {i} altered and still accepted");
        }
        // Another mesh's roster (same keys, other name) refuses it.
        let other = Roster::equal_weight("other", ids.iter().map(|i| i.public().clone())).unwrap();
        assert!(cert.verify(&other, &policy).is_err());
    }

    fn cert_against(id: &Identity, roster: &Roster, policy: &QuarantinePolicy) -> Certificate {
        let a = seal(id, roster, Kind::Telemetry, stamp(1, 1, 1), b"a");
        let b = seal(id, roster, Kind::Telemetry, stamp(1, 1, 1), b"b");
        let e = Evidence::equivocation(roster, &a, &b).unwrap();
        Certificate::from_evidence(roster, policy, e).unwrap()
    }

    fn cert_at(id: &Identity, roster: &Roster, (epoch, sequence): (u64, u64)) -> Certificate {
        let a = seal(id, roster, Kind::Telemetry, stamp(epoch, sequence, 1), b"a");
        let b = seal(id, roster, Kind::Telemetry, stamp(epoch, sequence, 1), b"b");
        let e = Evidence::equivocation(roster, &a, &b).unwrap();
        Certificate::from_evidence(roster, &QuarantinePolicy::default(), e).unwrap()
    }

    #[test]
    fn one_incident_converges_on_its_first_certificate() {
        let (ids, roster) = setup(4);
        let policy = QuarantinePolicy::default();
        let late = cert_at(&ids[0], &roster, (5, 3));
        let early = cert_at(&ids[0], &roster, (5, 2));
        let older_epoch = cert_at(&ids[0], &roster, (4, 9));
        assert!(early.precedes(&late) && older_epoch.precedes(&early));
        assert!(!late.precedes(&early) && !late.precedes(&late));

        // Whatever order two nodes learn them in, both end with the first
        // in the canonical order, over the period they first began.
        let orders = [
            [&late, &early, &older_epoch],
            [&older_epoch, &early, &late],
            [&early, &late, &older_epoch],
        ];
        for order in orders {
            let mut q = Quarantine::new();
            let got: Vec<Admitted> = order
                .iter()
                .enumerate()
                .map(|(i, c)| {
                    q.admit(&roster, &policy, (*c).clone(), 100 + i as u64)
                        .unwrap()
                })
                .collect();
            assert_eq!(got[0], Admitted::Enforced);
            assert!(
                got[1..]
                    .iter()
                    .all(|a| matches!(a, Admitted::Known | Admitted::Replaced))
            );
            let e = q.get(&ids[0].id()).unwrap();
            assert_eq!(e.certificate, older_epoch);
            assert_eq!((e.since_ms, e.enforced), (100, true));
            assert_eq!(q.recognise(&late, 200), Some(Admitted::Known));
        }

        // A subject releasing certificates against itself in descending
        // order causes at most MAX_REPLACEMENTS replacements.
        let mut q = Quarantine::new();
        let n = u64::from(MAX_REPLACEMENTS) + 3;
        let mut replaced = 0;
        for s in (1..=n).rev() {
            let c = cert_at(&ids[1], &roster, (1, s));
            if q.admit(&roster, &policy, c, 0).unwrap() == Admitted::Replaced {
                replaced += 1;
            }
        }
        assert_eq!(replaced, MAX_REPLACEMENTS);
        assert_eq!(q.get(&ids[1].id()).unwrap().replacements, MAX_REPLACEMENTS);
        assert_eq!(
            q.recognise(&cert_at(&ids[1], &roster, (1, 0)), 1),
            Some(Admitted::Known)
        );
    }

    #[test]
    fn an_offer_of_another_certificate_of_the_same_fault_is_wanted_only_if_it_comes_first() {
        let (ids, roster) = setup(4);
        let policy = QuarantinePolicy::default();
        let signed =
            |content: &[u8]| seal(&ids[0], &roster, Kind::Telemetry, stamp(5, 2, 1), content);
        let (a, b, c) = (signed(b"a"), signed(b"b"), signed(b"c"));
        let certify = |x: &[u8], y: &[u8]| {
            let e = Evidence::equivocation(&roster, x, y).unwrap();
            Certificate::from_evidence(&roster, &policy, e).unwrap()
        };
        let (one, other) = (certify(&a, &b), certify(&a, &c));
        assert_eq!(one.position(), other.position());
        let (first, second) = if one.precedes(&other) {
            (one, other)
        } else {
            (other, one)
        };
        assert!(!second.precedes(&first));
        assert!(first.rank() < second.rank());
        let subject = ids[0].id();
        let position = first.position().unwrap();
        // Holding the second, a node wants the first when offered it, and
        // replaces; holding the first, it does not want the second.
        let mut q = Quarantine::new();
        q.admit(&roster, &policy, second.clone(), 10).unwrap();
        assert!(!q.wants(&subject, position, second.rank(), 11));
        assert!(q.wants(&subject, position, first.rank(), 11));
        assert_eq!(
            q.admit(&roster, &policy, first.clone(), 12).unwrap(),
            Admitted::Replaced
        );
        assert!(!q.wants(&subject, position, first.rank(), 13));
        assert!(!q.wants(&subject, position, second.rank(), 13));
        assert_eq!(q.get(&subject).unwrap().certificate, first);
    }

    #[test]
    fn quarantine_has_a_ttl_and_a_cap() {
        let (ids, roster) = setup(10);
        let policy = QuarantinePolicy {
            evidence_ttl_ms: 1_000,
            max_quarantined_permille: 250,
            ..QuarantinePolicy::default()
        };
        let mut q = Quarantine::new();
        let certs: Vec<Certificate> = ids[..4]
            .iter()
            .map(|i| cert_against(i, &roster, &policy))
            .collect();
        // 2 of 10 fit under 25%; the third is held, not enforced.
        assert_eq!(
            q.admit(&roster, &policy, certs[0].clone(), 0).unwrap(),
            Admitted::Enforced
        );
        assert_eq!(
            q.admit(&roster, &policy, certs[0].clone(), 10).unwrap(),
            Admitted::Known
        );
        assert_eq!(
            q.admit(&roster, &policy, certs[1].clone(), 500).unwrap(),
            Admitted::Enforced
        );
        assert_eq!(
            q.admit(&roster, &policy, certs[2].clone(), 600).unwrap(),
            Admitted::OverCap
        );
        assert!(q.is_enforced(&ids[0].id(), 999));
        assert!(!q.is_enforced(&ids[2].id(), 999));
        assert_eq!(q.next_expiry(), Some(1_000));
        // The first expires: the held one takes its place.
        let (lifted, promoted) = q.expire(&roster, &policy, 1_000);
        assert_eq!(lifted, vec![ids[0].id()]);
        assert_eq!(promoted, vec![ids[2].id()]);
        assert!(!q.is_enforced(&ids[0].id(), 1_000));
        assert!(q.is_enforced(&ids[2].id(), 1_000));
        assert_eq!(q.next_expiry(), Some(1_500));
        // A copy of the ended one still travelling the mesh does not start
        // it again; a new fault by the same subject does.
        assert_eq!(q.recognise(&certs[0], 1_001), Some(Admitted::Expired));
        assert_eq!(
            q.admit(&roster, &policy, certs[0].clone(), 1_001).unwrap(),
            Admitted::Expired
        );
        let again = {
            let a = seal(&ids[0], &roster, Kind::Telemetry, stamp(1, 2, 1), b"a");
            let b = seal(&ids[0], &roster, Kind::Telemetry, stamp(1, 2, 1), b"b");
            let e = Evidence::equivocation(&roster, &a, &b).unwrap();
            Certificate::from_evidence(&roster, &policy, e).unwrap()
        };
        assert_eq!(q.recognise(&again, 1_001), None);
        assert_eq!(
            q.admit(&roster, &policy, again, 1_001).unwrap(),
            Admitted::OverCap
        );
        // A tampered certificate is refused and changes nothing.
        let mut bad = certs[3].clone();
        bad.ttl_ms = u64::MAX;
        assert!(q.admit(&roster, &policy, bad, 1_000).is_err());
        assert!(q.get(&ids[3].id()).is_none());
        // A new fault of a subject whose quarantine has ended but not yet
        // been expired takes its entry, and the old end lifts nothing.
        let later = {
            let a = seal(&ids[2], &roster, Kind::Telemetry, stamp(1, 9, 1), b"a");
            let b = seal(&ids[2], &roster, Kind::Telemetry, stamp(1, 9, 1), b"b");
            let e = Evidence::equivocation(&roster, &a, &b).unwrap();
            Certificate::from_evidence(&roster, &policy, e).unwrap()
        };
        q.admit(&roster, &policy, later, 1_700).unwrap();
        let (lifted, _) = q.expire(&roster, &policy, 2_000);
        assert_eq!(lifted, vec![ids[1].id()]);
        assert_eq!(q.get(&ids[2].id()).map(|e| e.until_ms), Some(2_700));
        assert_eq!(q.next_expiry(), Some(2_001));
        // After every TTL, nothing is left.
        let (lifted, _) = q.expire(&roster, &policy, 10_000);
        assert_eq!(lifted.len(), 2);
        assert_eq!(q.entries().count(), 0);
        assert_eq!(q.next_expiry(), None);
    }
}
