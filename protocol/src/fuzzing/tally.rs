//! Counting a voted certificate's votes against an independent count.

use std::collections::BTreeSet;
use std::sync::OnceLock;

use super::NOW_MS;
use crate::codec::Codec;
use crate::crypto::{Crypto, ModelledCrypto};
use crate::envelope::{self, Kind, Stamp};
use crate::evidence::QuarantinePolicy;
use crate::features::{Relays, Score};
use crate::identity::{Identity, NodeId, PublicIdentity, SEED_LEN};
use crate::quorum::{
    Accusation, Committee, EvidenceRef, Verdict, Vote, Votes, committee_epoch, committee_seats,
    content_hash,
};
use crate::roster::{Member, Roster};

/// Members of the tally roster.
pub const MEMBERS: usize = 7;
/// Most votes one input casts.
pub const MAX_VOTES: usize = 16;

/// Bits of a vote's flag byte (see [`quorum_tally`]).
pub mod flag {
    /// Two low bits: 0 votes yes, 1 to 3 pick another verdict.
    pub const VERDICT: u8 = 0b11;
    /// The vote names another accusation.
    pub const OTHER_ACCUSATION: u8 = 1 << 2;
    /// The vote names another subject.
    pub const OTHER_SUBJECT: u8 = 1 << 3;
    /// One byte of the vote's signature is flipped.
    pub const CORRUPT: u8 = 1 << 4;
}

fn publics() -> &'static [PublicIdentity] {
    static P: OnceLock<Vec<PublicIdentity>> = OnceLock::new();
    P.get_or_init(|| {
        (0..MEMBERS)
            .map(|i| {
                let seed = [u8::try_from(i).unwrap_or(0) + 10; SEED_LEN];
                Identity::from_seed(&seed)
                    .expect("fixed seeds are valid")
                    .public()
                    .clone()
            })
            .collect()
    })
}

fn stamp(sequence: u64) -> Stamp {
    Stamp {
        epoch: 1,
        sequence,
        issued_at_ms: NOW_MS,
    }
}

/// Builds a certificate body from `data` and verifies it, asserting that
/// it verifies exactly when an independent count says it should: every
/// vote is a well-signed yes on this accusation and subject, from a
/// distinct committee member other than the subject, and the yes seats
/// reach two thirds of the committee. Returns whether it verified.
///
/// The input: 7 weights (each byte modulo 10, plus 1), the subject's and
/// the accuser's index, the committee epoch, then two bytes per vote: the
/// voter's index and its [`flag`]s. Missing bytes read as zero.
///
/// # Panics
/// When the verification and the count disagree.
#[must_use]
pub fn quorum_tally(data: &[u8]) -> bool {
    let at = |i: usize| data.get(i).copied().unwrap_or(0);
    let members: Vec<Member> = publics()
        .iter()
        .enumerate()
        .map(|(i, p)| Member {
            public: p.clone(),
            weight: u64::from(at(i) % 10) + 1,
            name: String::new(),
        })
        .collect();
    let roster = Roster::new("fuzz-quorum", members).expect("a valid roster");
    let ids: Vec<NodeId> = publics().iter().map(PublicIdentity::id).collect();
    let subject = ids[usize::from(at(MEMBERS)) % MEMBERS];
    let mut accuser = ids[usize::from(at(MEMBERS + 1)) % MEMBERS];
    if accuser == subject {
        accuser = ids[(usize::from(at(MEMBERS)) + 1) % MEMBERS];
    }
    let policy = QuarantinePolicy {
        model: [3; 32],
        ..QuarantinePolicy::default()
    };
    let window_ms = u64::from(at(MEMBERS + 2)) * policy.committee_epoch_ms;
    let committee = Committee::of(
        &roster,
        committee_seats(&roster).expect("a small roster has seats"),
        &subject,
        committee_epoch(&policy, window_ms),
    );
    let accusation = Accusation {
        subject,
        window_ms,
        score: Score(9_500),
        model: policy.model,
        relays: Relays::default(),
        evidence: vec![EvidenceRef {
            signer: subject,
            position: (1, 1),
            hash: [0; 32],
        }],
    };
    let frame = ModelledCrypto::new(accuser)
        .seal(
            roster.mesh_id(),
            Kind::Accusation,
            stamp(1),
            &accusation.to_bytes(),
        )
        .expect("within limits");
    let hash = content_hash(envelope::signed_content_of(&frame).expect("just sealed"));

    let mut frames = Vec::new();
    let mut voters = BTreeSet::new();
    let (mut yes_seats, mut counted) = (0u64, true);
    for pair in data[(MEMBERS + 3).min(data.len())..]
        .chunks_exact(2)
        .take(MAX_VOTES)
    {
        let voter = ids[usize::from(pair[0]) % MEMBERS];
        let flags = pair[1];
        let verdict = match flags & flag::VERDICT {
            0 => Verdict::Yes,
            k => Verdict::ALL
                .into_iter()
                .filter(|v| *v != Verdict::Yes)
                .nth(usize::from(k - 1) % (Verdict::ALL.len() - 1))
                .expect("more than one verdict"),
        };
        let vote = Vote {
            accusation: if flags & flag::OTHER_ACCUSATION == 0 {
                hash
            } else {
                [0xee; 32]
            },
            subject: if flags & flag::OTHER_SUBJECT == 0 {
                subject
            } else {
                accuser
            },
            verdict,
            replayed: Score(9_500),
            own: Score(9_500),
        };
        let mut signed = ModelledCrypto::new(voter)
            .seal(roster.mesh_id(), Kind::Vote, stamp(2), &vote.to_bytes())
            .expect("within limits");
        if flags & flag::CORRUPT != 0 {
            signed[envelope::HEADER_LEN] ^= 1;
        }
        let good = verdict == Verdict::Yes
            && flags & (flag::OTHER_ACCUSATION | flag::OTHER_SUBJECT | flag::CORRUPT) == 0
            && voter != subject
            && committee.seats(&voter) > 0
            && voters.insert(voter);
        counted &= good;
        yes_seats += committee.seats(&voter);
        frames.push(signed);
    }
    let expected = counted && 3 * yes_seats >= 2 * committee.total();
    let verified = Votes::new(frame, frames)
        .map_err(|e| e.to_string())
        .and_then(|votes| {
            votes
                .verify_by(&roster, &policy, &mut ModelledCrypto::new(accuser))
                .map_err(|e| e.to_string())
        });
    assert_eq!(
        verified.is_ok(),
        expected,
        "verification says {verified:?}; the count says {expected} ({yes_seats} of {} seats)",
        committee.total()
    );
    if let Ok((_, proven)) = verified {
        assert_eq!(proven.subject, subject);
    }
    expected
}

/// Seed inputs: equal weights, member 0 accused by member 1, and votes
/// that are enough, too few, repeated, the subject's own, not yes, or
/// badly signed.
#[must_use]
pub fn tally_seeds() -> Vec<(String, Vec<u8>)> {
    let head = [0u8; MEMBERS + 3];
    let with = |votes: &[(u8, u8)]| {
        let mut out = head.to_vec();
        for (voter, flags) in votes {
            out.extend_from_slice(&[*voter, *flags]);
        }
        out
    };
    let yes: Vec<(u8, u8)> = (1..7).map(|v| (v, 0)).collect();
    let mut repeated = yes.clone();
    repeated.push((1, 0));
    let mut subject = yes.clone();
    subject.push((0, 0));
    let mut no = yes.clone();
    no[2].1 = 1;
    let mut corrupt = yes.clone();
    corrupt[3].1 = flag::CORRUPT;
    let mut other = yes.clone();
    other[4].1 = flag::OTHER_ACCUSATION;
    vec![
        ("valid-all-yes".to_owned(), with(&yes)),
        ("valid-two-thirds".to_owned(), with(&yes[..5])),
        ("invalid-too-few".to_owned(), with(&yes[..4])),
        ("invalid-repeated".to_owned(), with(&repeated)),
        ("invalid-subject-votes".to_owned(), with(&subject)),
        ("invalid-not-yes".to_owned(), with(&no)),
        ("invalid-corrupt".to_owned(), with(&corrupt)),
        ("invalid-other-accusation".to_owned(), with(&other)),
    ]
}
