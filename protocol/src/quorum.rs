//! Voted quarantine: accusations, committees, votes and the certificates
//! they make.
//!
//! Most misbehaviour does not prove itself ([`crate::evidence`] covers what
//! does); it shows in the behaviour a model scores. One sentinel's score is
//! a subjective view, so it never quarantines anyone by itself:
//!
//! 1. **Accusation.** A sentinel whose local suspicion of a neighbour is
//!    raised signs an [`Accusation`]: the subject, the window, its quantised
//!    score, the hash of the model it scored with, its relay record of the
//!    subject (the one feature that is its own record, not a signed report)
//!    and a reference (signer, position, content hash) to every signed report
//!    its feature row was made from. The reports travel only on demand.
//! 2. **Committee.** Who votes on a subject in a committee epoch is a
//!    function of the roster, the subject and the epoch alone
//!    ([`Committee::of`]), so it is fixed before any accusation of that
//!    epoch exists and nobody can choose it. A roster of up to
//!    [`WHOLE_ROSTER_UP_TO`] members votes whole, with its weights;
//!    a larger one draws [`committee_seats`] seats, each a unit of roster
//!    weight drawn without replacement, as many as the bound needs: the
//!    probability that members holding under a third of the roster's weight
//!    draw two thirds of the seats of any subject's committee in one epoch
//!    is at most [`COMMITTEE_BOUND`] (hypergeometric tail, union over all
//!    subjects).
//! 3. **Vote.** A member pulls the reports it lacks, checks them, and
//!    replays the accuser's row: the replayed score must agree with the
//!    accused one within [`crate::features::Score::REPLAY_MARGIN`], or the
//!    vote says why not. It then forms **its own view** from the same signed
//!    reports: the subject's row as each of its reporters alone sees it
//!    (that reporter's signed report and the subject's, nobody else's; no
//!    relay record, which only the observer itself holds), scored with the
//!    pinned model; at least two thirds of those scores must reach the
//!    threshold for a yes ([`Verdict`]). So the accuser's report is one
//!    view among the subject's others, and a liar moves only its own view:
//!    liars need two thirds of a subject's reporters.
//! 4. **Certificate.** The accusation and the yes votes of members holding
//!    at least two thirds of the committee's seats ([`Votes`]) are a
//!    quarantine certificate ([`crate::evidence::Reason::Votes`]) that
//!    anyone with the roster checks offline. The subject's own seats count
//!    in the total and it cannot vote on itself.
//!
//! **Safety.** With a whole-roster committee and members holding less than a
//! third of the weight Byzantine, a certificate needs yes votes from honest
//! members holding more than a third of the committee's weight: two thirds
//! minus less than one third. With a sampled committee, Byzantine members
//! hold two thirds of one with probability at most [`COMMITTEE_BOUND`] per
//! epoch over all subjects, so a certificate needs at least one honest yes
//! except with that probability; each honest yes is that member's own
//! scoring of the signed evidence.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;
use std::sync::Arc;

use aws_lc_rs::digest;

use crate::codec::{Codec, Reader};
use crate::envelope::{Kind, MAX_FRAME_LEN};
use crate::error::{Error, InvalidMessage};
use crate::evidence::{Fault, Open, Proven, QuarantinePolicy};
use crate::features::{MAX_REPORTERS, Relays, Score};
use crate::identity::NodeId;
use crate::rng::Rng;
use crate::roster::Roster;

/// Version of the accusation and vote formats.
pub const QUORUM_VERSION: u8 = 1;
/// The stated bound: the probability, per committee epoch and over every
/// subject's committee, that members holding less than a third of the
/// roster's weight hold two thirds of a committee's seats.
pub const COMMITTEE_BOUND: f64 = 1e-9;
/// Rosters up to this many members vote whole.
pub const WHOLE_ROSTER_UP_TO: usize = 64;
/// Most seats a sampled committee has. The bound is met with 95 seats at
/// 1,000 members and 128 at 100,000; a roster needing more is refused.
pub const MAX_SEATS: u64 = 128;
/// Most members that vote on one subject (and most votes in a certificate).
pub const MAX_VOTERS: usize = 128;
const _: () = assert!(MAX_VOTERS as u64 >= MAX_SEATS && MAX_VOTERS >= WHOLE_ROSTER_UP_TO);
/// Most signed reports one accusation refers to: the subject's, the
/// accuser's and those of the subject's other reporters.
pub const MAX_EVIDENCE: usize = 2 + MAX_REPORTERS;
/// Bytes of one evidence reference.
const REF_LEN: usize = 32 + 8 + 8 + 32;
/// Largest accusation payload.
pub const MAX_ACCUSATION_LEN: usize = 1 + 32 + 8 + 2 + 32 + 4 + 1 + MAX_EVIDENCE * REF_LEN;
/// A vote payload's exact length.
pub const VOTE_LEN: usize = 1 + 32 + 32 + 1 + 2 + 2;
/// Largest encoded [`Votes`]: the accusation frame and one frame per voter.
pub const MAX_VOTES_LEN: usize = 4 + MAX_FRAME_LEN + 2 + MAX_VOTERS * (4 + MAX_VOTE_FRAME_LEN);
/// Largest vote frame (header, payload, signatures).
pub const MAX_VOTE_FRAME_LEN: usize =
    crate::envelope::HEADER_LEN + VOTE_LEN + crate::identity::Suite::Ed25519MlDsa65.signature_len();
/// Largest accusation frame.
pub const MAX_ACCUSATION_FRAME_LEN: usize = crate::envelope::HEADER_LEN
    + MAX_ACCUSATION_LEN
    + crate::identity::Suite::Ed25519MlDsa65.signature_len();

/// `ln(n!)`: exact sums below 32, Stirling's series above (error below
/// 1e-13 there).
fn ln_factorial(n: u64) -> f64 {
    if n < 32 {
        return (2..=n).map(|i| (i as f64).ln()).sum();
    }
    let x = n as f64;
    let inv = 1.0 / x;
    let inv2 = inv * inv;
    x * x.ln() - x
        + 0.5 * (2.0 * std::f64::consts::PI * x).ln()
        + inv * (1.0 / 12.0 - inv2 * (1.0 / 360.0 - inv2 / 1260.0))
}

fn ln_choose(n: u64, k: u64) -> f64 {
    ln_factorial(n) - ln_factorial(k) - ln_factorial(n - k)
}

/// The probability that drawing `seats` of `population` weight units
/// without replacement, `byzantine` of them Byzantine, gives the Byzantine
/// at least two thirds of the seats (hypergeometric upper tail).
#[must_use]
pub fn byzantine_quorum_probability(population: u64, byzantine: u64, seats: u64) -> f64 {
    if seats == 0 || seats > population {
        return 0.0;
    }
    let need = (2 * seats).div_ceil(3);
    let byzantine = byzantine.min(population);
    let honest = population - byzantine;
    let total = ln_choose(population, seats);
    (need..=seats.min(byzantine))
        .filter(|x| seats - x <= honest)
        .map(|x| (ln_choose(byzantine, x) + ln_choose(honest, seats - x) - total).exp())
        .sum()
}

/// The most weight that is "less than a third" of `total`.
#[must_use]
pub fn byzantine_weight_bound(total: u64) -> u64 {
    total.div_ceil(3).saturating_sub(1)
}

/// How a roster's committees are formed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seats {
    /// Every member votes with its roster weight.
    Whole,
    /// This many units of weight are drawn per subject and epoch.
    Sampled(u64),
}

/// The committee form for `roster`: whole up to [`WHOLE_ROSTER_UP_TO`]
/// members, otherwise the fewest seats for which
/// `members × P[Byzantine ≥ 2/3 of seats] ≤` [`COMMITTEE_BOUND`], with the
/// Byzantine holding the most weight under a third.
///
/// # Errors
/// [`Error::InvalidInput`] when no committee of at most [`MAX_SEATS`]
/// seats meets the bound.
pub fn committee_seats(roster: &Roster) -> Result<Seats, Error> {
    roster
        .seats
        .get_or_init(|| search_seats(roster))
        .clone()
        .map_err(Error::InvalidInput)
}

fn search_seats(roster: &Roster) -> Result<Seats, String> {
    if roster.len() <= WHOLE_ROSTER_UP_TO {
        return Ok(Seats::Whole);
    }
    let total = roster.total_weight();
    let byzantine = byzantine_weight_bound(total);
    let subjects = roster.len() as f64;
    (1..=MAX_SEATS)
        .find(|&k| subjects * byzantine_quorum_probability(total, byzantine, k) <= COMMITTEE_BOUND)
        .map(Seats::Sampled)
        .ok_or_else(|| {
            format!(
                "no committee of at most {MAX_SEATS} seats keeps {} members under the bound",
                roster.len()
            )
        })
}

/// The committee that votes on accusations against one subject in one
/// committee epoch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Committee {
    seats: BTreeMap<NodeId, u64>,
    total: u64,
}

impl Committee {
    /// The committee of `subject` in committee epoch `epoch` under `seats`
    /// (from [`committee_seats`]). A sampled committee draws weight units
    /// with a generator seeded from the mesh id, the subject and the epoch.
    #[must_use]
    pub fn of(roster: &Roster, seats: Seats, subject: &NodeId, epoch: u64) -> Self {
        let k = match seats {
            Seats::Sampled(k) if k < roster.total_weight() => k,
            _ => {
                let seats: BTreeMap<NodeId, u64> = roster
                    .members()
                    .map(|m| (m.public.id(), m.weight))
                    .collect();
                return Self {
                    total: seats.values().sum(),
                    seats,
                };
            }
        };
        let mut ctx = digest::Context::new(&digest::SHA256);
        ctx.update(b"sentinel-mesh/committee/v1\0");
        ctx.update(&roster.mesh_id().0);
        ctx.update(&subject.0);
        ctx.update(&epoch.to_be_bytes());
        let d = ctx.finish();
        let mut seed = [0u8; 8];
        seed.copy_from_slice(&d.as_ref()[..8]);
        let mut rng = Rng::from_seed(u64::from_be_bytes(seed));
        // Members in id order with the cumulative weight before each.
        let mut ends = Vec::with_capacity(roster.len());
        let mut sum = 0u64;
        for m in roster.members() {
            sum += m.weight;
            ends.push((sum, m.public.id()));
        }
        let mut drawn = BTreeSet::new();
        while (drawn.len() as u64) < k {
            drawn.insert(rng.below(sum));
        }
        let mut seats = BTreeMap::new();
        for t in drawn {
            let i = ends.partition_point(|(end, _)| *end <= t);
            *seats.entry(ends[i].1).or_insert(0) += 1;
        }
        Self { seats, total: k }
    }

    /// `id`'s seats (0 when not a member).
    #[must_use]
    pub fn seats(&self, id: &NodeId) -> u64 {
        self.seats.get(id).copied().unwrap_or(0)
    }

    /// All seats.
    #[must_use]
    pub fn total(&self) -> u64 {
        self.total
    }

    /// Members and their seats, by id.
    pub fn members(&self) -> impl Iterator<Item = (&NodeId, u64)> {
        self.seats.iter().map(|(id, s)| (id, *s))
    }

    /// Whether `yes` seats are at least two thirds of the committee.
    #[must_use]
    pub fn is_quorum(&self, yes: u64) -> bool {
        3 * yes >= 2 * self.total
    }
}

/// The committee epoch of a window ending at `window_ms`.
#[must_use]
pub fn committee_epoch(policy: &QuarantinePolicy, window_ms: u64) -> u64 {
    window_ms / policy.committee_epoch_ms.max(1)
}

/// SHA-256 of a frame's signed content: how accusations name reports and
/// votes name accusations (signatures are randomised, content is not).
#[must_use]
pub fn content_hash(signed_content: &[u8]) -> [u8; 32] {
    let d = digest::digest(&digest::SHA256, signed_content);
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

/// A signed report an accusation was made from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct EvidenceRef {
    /// Who signed it.
    pub signer: NodeId,
    /// Its (epoch, sequence).
    pub position: (u64, u64),
    /// [`content_hash`] of its signed content.
    pub hash: [u8; 32],
}

/// "My model scores `subject` this high over the window ending at
/// `window_ms`, from these reports": the payload of a [`Kind::Accusation`]
/// envelope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accusation {
    /// Who is accused.
    pub subject: NodeId,
    /// The accuser's clock at the window's end, Unix ms.
    pub window_ms: u64,
    /// The accuser's quantised score of its row.
    pub score: Score,
    /// SHA-256 of the model it scored with.
    pub model: [u8; 32],
    /// The accuser's relay record of the subject (`relay_withheld`).
    pub relays: Relays,
    /// The reports the row was made from, one per signer, ascending by
    /// signer; the subject's is among them.
    pub evidence: Vec<EvidenceRef>,
}

impl Accusation {
    /// The subject's report among the evidence.
    #[must_use]
    pub fn subject_report(&self) -> Option<&EvidenceRef> {
        self.evidence.iter().find(|e| e.signer == self.subject)
    }
}

fn invalid(field: &'static str, reason: &'static str) -> InvalidMessage {
    InvalidMessage::InvalidField { field, reason }
}

fn read_score(r: &mut Reader<'_>, field: &'static str) -> Result<Score, InvalidMessage> {
    let s = r.u16()?;
    if s > Score::SCALE {
        return Err(invalid(field, "above 1"));
    }
    Ok(Score(s))
}

impl Codec for Accusation {
    const NAME: &'static str = "accusation";

    fn encode(&self, out: &mut Vec<u8>) {
        out.push(QUORUM_VERSION);
        out.extend_from_slice(&self.subject.0);
        out.extend_from_slice(&self.window_ms.to_be_bytes());
        out.extend_from_slice(&self.score.0.to_be_bytes());
        out.extend_from_slice(&self.model);
        out.extend_from_slice(&self.relays.claimed.to_be_bytes());
        out.extend_from_slice(&self.relays.missing.to_be_bytes());
        out.push(u8::try_from(self.evidence.len()).unwrap_or(u8::MAX));
        for e in &self.evidence {
            out.extend_from_slice(&e.signer.0);
            out.extend_from_slice(&e.position.0.to_be_bytes());
            out.extend_from_slice(&e.position.1.to_be_bytes());
            out.extend_from_slice(&e.hash);
        }
    }

    fn read(r: &mut Reader<'_>) -> Result<Self, InvalidMessage> {
        let version = r.u8()?;
        if version != QUORUM_VERSION {
            return Err(InvalidMessage::UnsupportedVersion(version));
        }
        let subject = NodeId(r.array()?);
        let window_ms = r.u64()?;
        let score = read_score(r, "accusation.score")?;
        let model = r.array()?;
        let relays = Relays {
            claimed: r.u16()?,
            missing: r.u16()?,
        };
        if relays.missing > relays.claimed {
            return Err(invalid("accusation.relays", "more missing than claimed"));
        }
        let n = usize::from(r.u8()?);
        if n > MAX_EVIDENCE {
            return Err(InvalidMessage::Oversize {
                what: "accusation.evidence",
                len: n,
                limit: MAX_EVIDENCE,
            });
        }
        let mut evidence = Vec::with_capacity(n);
        for _ in 0..n {
            let e = EvidenceRef {
                signer: NodeId(r.array()?),
                position: (r.u64()?, r.u64()?),
                hash: r.array()?,
            };
            if evidence
                .last()
                .is_some_and(|p: &EvidenceRef| p.signer >= e.signer)
            {
                return Err(InvalidMessage::NonCanonical("accusation.evidence order"));
            }
            evidence.push(e);
        }
        let a = Self {
            subject,
            window_ms,
            score,
            model,
            relays,
            evidence,
        };
        if a.subject_report().is_none() {
            return Err(invalid("accusation.evidence", "lacks the subject's report"));
        }
        Ok(a)
    }
}

/// A committee member's answer to an accusation. Only [`Verdict::Yes`]
/// counts towards a certificate; every other verdict is a no that says why.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Verdict {
    /// The replay agrees and the member's own row scores at or above the
    /// threshold.
    Yes,
    /// The replay agrees, but the member's own row scores below the
    /// threshold.
    OwnViewBelow,
    /// Replaying the accuser's row from the evidence gives another score.
    ReplayDisagrees,
    /// The accused score itself is below the threshold.
    ScoreBelowThreshold,
    /// The evidence could not be had, or a report did not verify or match
    /// its reference.
    EvidenceUnavailable,
    /// The accusation names a model other than the pinned one.
    ModelMismatch,
    /// The window is too far from the member's clock.
    Stale,
}

impl Verdict {
    /// Every verdict, in wire order.
    pub const ALL: [Verdict; 7] = [
        Verdict::Yes,
        Verdict::OwnViewBelow,
        Verdict::ReplayDisagrees,
        Verdict::ScoreBelowThreshold,
        Verdict::EvidenceUnavailable,
        Verdict::ModelMismatch,
        Verdict::Stale,
    ];

    /// The wire byte.
    #[must_use]
    pub const fn to_u8(self) -> u8 {
        match self {
            Verdict::Yes => 1,
            Verdict::OwnViewBelow => 2,
            Verdict::ReplayDisagrees => 3,
            Verdict::ScoreBelowThreshold => 4,
            Verdict::EvidenceUnavailable => 5,
            Verdict::ModelMismatch => 6,
            Verdict::Stale => 7,
        }
    }

    /// The verdict for a wire byte.
    ///
    /// # Errors
    /// [`InvalidMessage::InvalidField`] for a byte not on the list.
    pub fn from_u8(b: u8) -> Result<Self, InvalidMessage> {
        Self::ALL
            .into_iter()
            .find(|v| v.to_u8() == b)
            .ok_or(invalid("vote.verdict", "not on the list"))
    }

    /// A stable name for logs and APIs.
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Verdict::Yes => "yes",
            Verdict::OwnViewBelow => "own-view-below",
            Verdict::ReplayDisagrees => "replay-disagrees",
            Verdict::ScoreBelowThreshold => "score-below-threshold",
            Verdict::EvidenceUnavailable => "evidence-unavailable",
            Verdict::ModelMismatch => "model-mismatch",
            Verdict::Stale => "stale",
        }
    }
}

/// The payload of a [`Kind::Vote`] envelope.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Vote {
    /// [`content_hash`] of the accusation's signed content.
    pub accusation: [u8; 32],
    /// Its subject.
    pub subject: NodeId,
    /// The answer.
    pub verdict: Verdict,
    /// The member's replay of the accuser's row (0 when not replayed).
    pub replayed: Score,
    /// The member's own row's score (0 when not scored).
    pub own: Score,
}

impl Codec for Vote {
    const NAME: &'static str = "vote";

    fn encode(&self, out: &mut Vec<u8>) {
        out.push(QUORUM_VERSION);
        out.extend_from_slice(&self.accusation);
        out.extend_from_slice(&self.subject.0);
        out.push(self.verdict.to_u8());
        out.extend_from_slice(&self.replayed.0.to_be_bytes());
        out.extend_from_slice(&self.own.0.to_be_bytes());
    }

    fn read(r: &mut Reader<'_>) -> Result<Self, InvalidMessage> {
        let version = r.u8()?;
        if version != QUORUM_VERSION {
            return Err(InvalidMessage::UnsupportedVersion(version));
        }
        Ok(Self {
            accusation: r.array()?,
            subject: NodeId(r.array()?),
            verdict: Verdict::from_u8(r.u8()?)?,
            replayed: read_score(r, "vote.replayed")?,
            own: read_score(r, "vote.own")?,
        })
    }
}

/// The body of a voted certificate: the signed accusation and the signed
/// yes votes, ascending by voter.
///
/// It keeps its encoding (`buf[start..end]`) and where each frame lies in
/// it, so that a certificate decoded from a received message can share
/// that message's bytes ([`Votes::share`]) instead of holding a copy of
/// them (a voted certificate is up to half a megabyte, and every node holds
/// one per quarantined subject).
#[derive(Debug, Clone)]
pub struct Votes {
    buf: Arc<[u8]>,
    start: usize,
    end: usize,
    accusation: Range<usize>,
    votes: Vec<Range<usize>>,
}

impl PartialEq for Votes {
    fn eq(&self, other: &Self) -> bool {
        self.encoded() == other.encoded()
    }
}

impl Eq for Votes {}

/// What a verified accusation frame says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accused {
    /// Who signed it.
    pub accuser: NodeId,
    /// [`content_hash`] of its signed content.
    pub hash: [u8; 32],
    /// Its content.
    pub accusation: Accusation,
}

/// Verifies an accusation frame and decodes it.
///
/// # Errors
/// A frame that does not verify, is not an accusation, or does not decode.
pub fn open_accusation(
    roster: &Roster,
    frame: &[u8],
    open: &mut impl Open,
) -> Result<Accused, Error> {
    let v = open.open(roster, frame)?;
    if v.header().kind != Kind::Accusation {
        return Err(invalid("accusation", "not an accusation envelope").into());
    }
    let accusation = Accusation::decode_exact(v.payload())?;
    Ok(Accused {
        accuser: v.header().sender,
        hash: content_hash(v.signed_content()),
        accusation,
    })
}

/// Verifies a vote frame and decodes it; returns the voter and the vote.
///
/// # Errors
/// A frame that does not verify, is not a vote, or does not decode.
pub fn open_vote(
    roster: &Roster,
    frame: &[u8],
    open: &mut impl Open,
) -> Result<(NodeId, Vote), Error> {
    let v = open.open(roster, frame)?;
    if v.header().kind != Kind::Vote {
        return Err(invalid("vote", "not a vote envelope").into());
    }
    Ok((v.header().sender, Vote::decode_exact(v.payload())?))
}

fn not_quorate(reason: &'static str) -> Error {
    invalid("votes", reason).into()
}

impl Votes {
    /// A certificate body from an accusation frame and yes-vote frames
    /// (any order; sorted here by voter). Only sizes are checked here: see
    /// [`Votes::verify_by`].
    ///
    /// # Errors
    /// A vote frame whose header does not parse, or frames beyond the size
    /// and count limits.
    pub fn new(accusation: Vec<u8>, votes: Vec<Vec<u8>>) -> Result<Self, Error> {
        let mut keyed = votes
            .into_iter()
            .map(|f| Ok((crate::envelope::peek_header(&f)?.sender, f)))
            .collect::<Result<Vec<_>, Error>>()?;
        keyed.sort_by_key(|a| a.0);
        let mut out = Vec::new();
        crate::codec::put_bytes_u32(&mut out, &accusation);
        out.extend_from_slice(&u16::try_from(keyed.len()).unwrap_or(u16::MAX).to_be_bytes());
        for (_, f) in &keyed {
            crate::codec::put_bytes_u32(&mut out, f);
        }
        Ok(Self::decode_exact(&out)?)
    }

    /// The accusation frame.
    #[must_use]
    pub fn accusation(&self) -> &[u8] {
        &self.buf[self.accusation.clone()]
    }

    /// The vote frames, ascending by voter.
    pub fn votes(&self) -> impl ExactSizeIterator<Item = &[u8]> + '_ {
        self.votes.iter().map(|r| &self.buf[r.clone()])
    }

    fn encoded(&self) -> &[u8] {
        &self.buf[self.start..self.end]
    }

    /// Points at the same bytes inside `message` (where `self` was decoded
    /// from, the encoding starting at `offset`) and drops its own copy.
    /// Does nothing if those bytes differ.
    pub fn share(&mut self, message: &Arc<[u8]>, offset: usize) {
        let len = self.end - self.start;
        if message.get(offset..offset + len) != Some(self.encoded()) {
            return;
        }
        let from = self.start;
        let shift = |r: &Range<usize>| r.start - from + offset..r.end - from + offset;
        let accusation = shift(&self.accusation);
        let votes = self.votes.iter().map(shift).collect();
        (self.accusation, self.votes) = (accusation, votes);
        (self.buf, self.start, self.end) = (message.clone(), offset, offset + len);
    }

    /// Checks every signature, that each voter sits on the subject's
    /// committee for the accusation's epoch, votes yes on this accusation
    /// and appears once, that the subject does not vote, that the yes seats
    /// reach two thirds, and that the accusation names the policy's model.
    /// Returns the accusation and what the certificate proves: the subject,
    /// [`Fault::Voted`], and the position of the subject's accused report.
    ///
    /// # Errors
    /// The first check that fails.
    pub fn verify_by(
        &self,
        roster: &Roster,
        policy: &QuarantinePolicy,
        open: &mut impl Open,
    ) -> Result<(Accused, Proven), Error> {
        let accused = open_accusation(roster, self.accusation(), open)?;
        let a = &accused.accusation;
        if a.model != policy.model {
            return Err(not_quorate(
                "the accusation names a model other than the policy's",
            ));
        }
        let seats = committee_seats(roster)?;
        let committee = Committee::of(
            roster,
            seats,
            &a.subject,
            committee_epoch(policy, a.window_ms),
        );
        if self.votes.len() > MAX_VOTERS {
            return Err(not_quorate("more votes than any committee has members"));
        }
        let mut yes = 0u64;
        let mut last: Option<NodeId> = None;
        for frame in self.votes() {
            let (voter, vote) = open_vote(roster, frame, open)?;
            if last.is_some_and(|l| l >= voter) {
                return Err(InvalidMessage::NonCanonical("votes order").into());
            }
            last = Some(voter);
            if voter == a.subject {
                return Err(not_quorate("the subject votes on itself"));
            }
            if vote.accusation != accused.hash || vote.subject != a.subject {
                return Err(not_quorate("a vote on another accusation"));
            }
            if vote.verdict != Verdict::Yes {
                return Err(not_quorate("a vote that is not yes"));
            }
            let s = committee.seats(&voter);
            if s == 0 {
                return Err(not_quorate("a voter not on the committee"));
            }
            yes += s;
        }
        if !committee.is_quorum(yes) {
            return Err(not_quorate(
                "yes votes hold less than two thirds of the seats",
            ));
        }
        let Some(report) = a.subject_report() else {
            return Err(not_quorate("the accusation lacks the subject's report"));
        };
        let proven = Proven {
            subject: a.subject,
            fault: Fault::Voted,
            epoch: report.position.0,
            sequence: report.position.1,
        };
        Ok((accused, proven))
    }
}

impl Codec for Votes {
    const NAME: &'static str = "votes";

    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self.encoded());
    }

    fn read(r: &mut Reader<'_>) -> Result<Self, InvalidMessage> {
        let start = r.position();
        let frame = |r: &mut Reader<'_>, what, limit| {
            let len = r.bytes_u32(what, limit)?.len();
            Ok::<_, InvalidMessage>(r.position() - len - start..r.position() - start)
        };
        let accusation = frame(r, "votes.accusation", MAX_ACCUSATION_FRAME_LEN)?;
        let n = usize::from(r.u16()?);
        if n > MAX_VOTERS {
            return Err(InvalidMessage::Oversize {
                what: "votes",
                len: n,
                limit: MAX_VOTERS,
            });
        }
        let votes = (0..n)
            .map(|_| frame(r, "votes.vote", MAX_VOTE_FRAME_LEN))
            .collect::<Result<Vec<_>, InvalidMessage>>()?;
        let buf: Arc<[u8]> = Arc::from(r.read_since(start));
        Ok(Self {
            end: buf.len(),
            buf,
            start: 0,
            accusation,
            votes,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roster(n: usize) -> Roster {
        Roster::equal_weight(
            "quorum",
            (0..n).map(|i| {
                let mut seed = [0u8; crate::identity::SEED_LEN];
                seed[..8].copy_from_slice(&(i as u64 + 1).to_be_bytes());
                crate::identity::Identity::from_seed(&seed)
                    .unwrap()
                    .public()
                    .clone()
            }),
        )
        .unwrap()
    }

    #[test]
    fn the_tail_matches_the_brief_and_an_exact_sum() {
        // DESIGN.md: N = 1,000 with 333 Byzantine; k = 20 gives 7.7e-4 per
        // committee, k = 100 gives 3.5e-13.
        let p20 = byzantine_quorum_probability(1000, 333, 20);
        let p100 = byzantine_quorum_probability(1000, 333, 100);
        assert!((p20 / 7.7356e-4 - 1.0).abs() < 1e-3, "{p20}");
        assert!((p100 / 3.5046e-13 - 1.0).abs() < 1e-3, "{p100}");
        // A small case by exact counting: 9 units, 2 Byzantine, 3 seats:
        // two thirds is 2 seats; C(2,2)·C(7,1) / C(9,3) = 7/84.
        let p = byzantine_quorum_probability(9, 2, 3);
        assert!((p - 7.0 / 84.0).abs() < 1e-12, "{p}");
        assert_eq!(byzantine_quorum_probability(9, 1, 3), 0.0);
    }

    #[test]
    fn committee_size_meets_the_bound_and_no_smaller_one_does() {
        assert_eq!(committee_seats(&roster(7)).unwrap(), Seats::Whole);
        let r = roster(200);
        let Seats::Sampled(k) = committee_seats(&r).unwrap() else {
            panic!("200 members are sampled");
        };
        let (w, b) = (r.total_weight(), byzantine_weight_bound(r.total_weight()));
        assert_eq!(b, 66);
        assert!(200.0 * byzantine_quorum_probability(w, b, k) <= COMMITTEE_BOUND);
        assert!(200.0 * byzantine_quorum_probability(w, b, k - 1) > COMMITTEE_BOUND);
        assert_eq!(k, 64);
    }

    #[test]
    fn committees_are_fixed_by_roster_subject_and_epoch() {
        let r = roster(200);
        let seats = committee_seats(&r).unwrap();
        let ids: Vec<NodeId> = r.members().map(|m| m.public.id()).collect();
        let a = Committee::of(&r, seats, &ids[0], 7);
        assert_eq!(a, Committee::of(&r, seats, &ids[0], 7));
        assert_ne!(a, Committee::of(&r, seats, &ids[0], 8));
        assert_ne!(a, Committee::of(&r, seats, &ids[1], 7));
        assert_eq!(a.total(), 64);
        assert_eq!(a.members().map(|(_, s)| s).sum::<u64>(), 64);
        // Every member sits on about k/N of the committees.
        let mut sat = BTreeMap::<NodeId, u32>::new();
        for e in 0..500 {
            for (id, _) in Committee::of(&r, seats, &ids[3], e).members() {
                *sat.entry(*id).or_default() += 1;
            }
        }
        let (lo, hi) = (sat.values().min().unwrap(), sat.values().max().unwrap());
        assert!(*lo > 100 && *hi < 220, "{lo}..{hi} of 500 (expected 160)");
        let whole = Committee::of(&roster(5), Seats::Whole, &ids[0], 1);
        assert_eq!(whole.total(), 5);
        assert!(whole.is_quorum(4) && !whole.is_quorum(3));
    }

    fn accusation() -> Accusation {
        Accusation {
            subject: NodeId([5; 32]),
            window_ms: 1_700_000_000_000,
            score: Score(9_500),
            model: [7; 32],
            relays: Relays {
                claimed: 4,
                missing: 1,
            },
            evidence: vec![
                EvidenceRef {
                    signer: NodeId([1; 32]),
                    position: (3, 4),
                    hash: [9; 32],
                },
                EvidenceRef {
                    signer: NodeId([5; 32]),
                    position: (6, 7),
                    hash: [8; 32],
                },
            ],
        }
    }

    #[test]
    fn accusations_and_votes_encode_strictly() {
        let a = accusation();
        let bytes = a.to_bytes();
        assert_eq!(Accusation::decode_exact(&bytes).unwrap(), a);
        let mut long = bytes.clone();
        long.push(0);
        assert!(Accusation::decode_exact(&long).is_err());
        assert!(Accusation::decode_exact(&bytes[..bytes.len() - 1]).is_err());
        let mut swapped = a.clone();
        swapped.evidence.reverse();
        assert!(Accusation::decode_exact(&swapped.to_bytes()).is_err());
        let mut no_subject = a.clone();
        no_subject.evidence.remove(1);
        assert!(Accusation::decode_exact(&no_subject.to_bytes()).is_err());
        let mut over = a.clone();
        over.score = Score(10_001);
        assert!(Accusation::decode_exact(&over.to_bytes()).is_err());
        assert!(bytes.len() <= MAX_ACCUSATION_LEN);

        let v = Vote {
            accusation: [3; 32],
            subject: NodeId([5; 32]),
            verdict: Verdict::ReplayDisagrees,
            replayed: Score(100),
            own: Score(0),
        };
        let bytes = v.to_bytes();
        assert_eq!(bytes.len(), VOTE_LEN);
        assert_eq!(Vote::decode_exact(&bytes).unwrap(), v);
        let mut bad = bytes.clone();
        bad[65] = 0;
        assert!(Vote::decode_exact(&bad).is_err());
        for verdict in Verdict::ALL {
            assert_eq!(Verdict::from_u8(verdict.to_u8()).unwrap(), verdict);
        }
    }

    /// Public keys of 200 members, made once.
    fn publics() -> &'static [crate::identity::PublicIdentity] {
        static KEYS: std::sync::OnceLock<Vec<crate::identity::PublicIdentity>> =
            std::sync::OnceLock::new();
        KEYS.get_or_init(|| roster(200).members().map(|m| m.public.clone()).collect())
    }

    fn seal(id: NodeId, roster: &Roster, kind: Kind, sequence: u64, payload: &[u8]) -> Vec<u8> {
        use crate::crypto::Crypto;
        let stamp = crate::envelope::Stamp {
            epoch: 1,
            sequence,
            issued_at_ms: 1_700_000_000_000,
        };
        crate::crypto::ModelledCrypto::new(id)
            .seal(roster.mesh_id(), kind, stamp, payload)
            .unwrap()
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(48))]

        /// Rosters of 4 to 200 members with weights 1 to 10, a Byzantine
        /// set holding less than a third of the weight voting yes, honest
        /// members voting yes at random: a certificate verifies exactly
        /// when its yes seats reach two thirds; a whole-roster one always
        /// holds honest yes seats of more than a third; a sampled one holds
        /// some unless the Byzantine drew two thirds of the seats.
        #[test]
        fn certificates_need_two_thirds_and_honest_votes(
            n in 4usize..=200,
            weights in proptest::collection::vec(1u64..=10, 200),
            order in proptest::collection::vec(proptest::prelude::any::<u32>(), 200),
            honest_yes in proptest::collection::vec(proptest::prelude::any::<bool>(), 200),
            epoch in 0u64..1_000,
        ) {
            let members: Vec<crate::roster::Member> = publics()[..n]
                .iter()
                .zip(&weights)
                .map(|(p, w)| crate::roster::Member { public: p.clone(), weight: *w, name: String::new() })
                .collect();
            let r = Roster::new("quorum-prop", members).unwrap();
            let ids: Vec<NodeId> = r.members().map(|m| m.public.id()).collect();
            // The Byzantine: members in a random order, taken while their
            // weight stays under a third.
            let mut by_order: Vec<usize> = (0..n).collect();
            by_order.sort_by_key(|i| order[*i]);
            let bound = byzantine_weight_bound(r.total_weight());
            let mut byzantine = BTreeSet::new();
            let mut weight = 0;
            for i in by_order {
                let w = r.get(&ids[i]).unwrap().weight;
                if weight + w <= bound {
                    weight += w;
                    byzantine.insert(ids[i]);
                }
            }
            let subject = ids[0];
            let seats = committee_seats(&r).unwrap();
            let policy = QuarantinePolicy { model: [3; 32], ..QuarantinePolicy::default() };
            let window_ms = epoch * policy.committee_epoch_ms;
            let committee = Committee::of(&r, seats, &subject, committee_epoch(&policy, window_ms));
            let accuser = ids[1];
            let accusation = Accusation {
                subject,
                window_ms,
                score: Score(9_500),
                model: policy.model,
                relays: Relays::default(),
                evidence: vec![EvidenceRef { signer: subject, position: (1, 1), hash: [0; 32] }],
            };
            let frame = seal(accuser, &r, Kind::Accusation, 1, &accusation.to_bytes());
            let hash = content_hash(crate::envelope::signed_content_of(&frame).unwrap());
            let mut yes_frames = Vec::new();
            let (mut yes, mut honest) = (0u64, 0u64);
            for (i, id) in ids.iter().enumerate() {
                let s = committee.seats(id);
                if s == 0 || *id == subject || !(byzantine.contains(id) || honest_yes[i]) {
                    continue;
                }
                let vote = Vote { accusation: hash, subject, verdict: Verdict::Yes, replayed: Score(9_500), own: Score(9_500) };
                yes_frames.push(seal(*id, &r, Kind::Vote, 2, &vote.to_bytes()));
                yes += s;
                if !byzantine.contains(id) {
                    honest += s;
                }
            }
            let byzantine_seats: u64 = byzantine.iter().map(|b| committee.seats(b)).sum();
            let votes = Votes::new(frame, yes_frames).unwrap();
            let mut open = crate::crypto::ModelledCrypto::new(accuser);
            let verified = votes.verify_by(&r, &policy, &mut open);
            proptest::prop_assert_eq!(verified.is_ok(), 3 * yes >= 2 * committee.total());
            if verified.is_ok() {
                match seats {
                    Seats::Whole => proptest::prop_assert!(3 * honest > committee.total()),
                    Seats::Sampled(_) => proptest::prop_assert!(
                        honest > 0 || 3 * byzantine_seats >= 2 * committee.total()
                    ),
                }
            }
            // The Byzantine alone never make a whole-roster certificate.
            if seats == Seats::Whole {
                proptest::prop_assert!(3 * byzantine_seats < committee.total());
            }
        }
    }

    /// The byte budget: a voted certificate at N = 1,000 (real frame sizes:
    /// modelled signatures are as long as real ones), with the most
    /// evidence references an accusation can carry.
    #[test]
    fn a_certificate_at_a_thousand_members_is_under_300_kb() {
        let r = roster(1000);
        let ids: Vec<NodeId> = r.members().map(|m| m.public.id()).collect();
        let seats = committee_seats(&r).unwrap();
        assert_eq!(seats, Seats::Sampled(95));
        let policy = QuarantinePolicy {
            model: [3; 32],
            ..QuarantinePolicy::default()
        };
        let subject = ids[0];
        let committee = Committee::of(&r, seats, &subject, 0);
        let mut evidence: Vec<EvidenceRef> = ids[..MAX_EVIDENCE]
            .iter()
            .map(|id| EvidenceRef {
                signer: *id,
                position: (1, 1),
                hash: [0; 32],
            })
            .collect();
        evidence.sort();
        let accusation = Accusation {
            subject,
            window_ms: 0,
            score: Score(9_500),
            model: policy.model,
            relays: Relays::default(),
            evidence,
        };
        let frame = seal(ids[1], &r, Kind::Accusation, 1, &accusation.to_bytes());
        assert!(frame.len() <= MAX_ACCUSATION_FRAME_LEN);
        let hash = content_hash(crate::envelope::signed_content_of(&frame).unwrap());
        let mut votes = Vec::new();
        let mut yes = 0;
        for (id, s) in committee.members() {
            if committee.is_quorum(yes) {
                break;
            }
            if *id == subject {
                continue;
            }
            let vote = Vote {
                accusation: hash,
                subject,
                verdict: Verdict::Yes,
                replayed: Score(9_500),
                own: Score(9_500),
            };
            votes.push(seal(*id, &r, Kind::Vote, 2, &vote.to_bytes()));
            yes += s;
        }
        let votes = Votes::new(frame, votes).unwrap();
        let mut open = crate::crypto::ModelledCrypto::new(ids[1]);
        let (_, proven) = votes.verify_by(&r, &policy, &mut open).unwrap();
        let cert = crate::evidence::Certificate::certify_votes(&policy, votes, &proven);
        let len = cert.to_bytes().len();
        eprintln!("voted certificate at N = 1,000: {len} bytes");
        assert!(len <= 300 * 1024, "{len} bytes");
        assert!(
            crate::message::Message::decode(
                &crate::message::Message::Certificate(&cert.to_bytes()).encode()
            )
            .is_ok()
        );
        // Decoded from a received message, it holds that message's bytes
        // instead of a copy, and is the same certificate.
        let message: Arc<[u8]> = crate::message::Message::Certificate(&cert.to_bytes())
            .encode()
            .into();
        let shared = crate::evidence::Certificate::decode_shared(&message, 1).unwrap();
        assert_eq!(Arc::strong_count(&message), 2);
        assert_eq!(shared, cert);
        assert_eq!(shared.to_bytes(), cert.to_bytes());
        let crate::evidence::Reason::Votes(v) = &shared.reason else {
            panic!("not voted");
        };
        assert!(v.verify_by(&r, &policy, &mut open).is_ok());
        drop(shared);
        assert_eq!(Arc::strong_count(&message), 1);
        assert!(crate::evidence::Certificate::decode_shared(&message, message.len() + 1).is_err());
        assert!(crate::evidence::Certificate::decode_shared(&message, 2).is_err());
    }
}
