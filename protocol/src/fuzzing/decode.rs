//! Every decoder of received bytes, on the same input.

use std::collections::BTreeSet;
use std::sync::Arc;

use crate::batch::{BatchRoot, RecordProof};
use crate::codec::Codec;
use crate::crypto::{Crypto, ModelledCrypto};
use crate::envelope::{self, Kind, Stamp};
use crate::evidence::{Certificate, Evidence, QuarantinePolicy};
use crate::features::{Relays, Score};
use crate::identity::HybridSignature;
use crate::identity::NodeId;
use crate::message::{MAX_MESSAGE_LEN, Message};
use crate::quorum::{Accusation, EvidenceRef, Verdict, Vote, Votes};
use crate::telemetry::Report;

/// The names [`decode_all`] reports, one per decoder.
pub const DECODERS: [&str; 10] = [
    "message",
    "report",
    "accusation",
    "vote",
    "votes",
    "certificate",
    "evidence",
    "record-proof",
    "batch-root",
    "signature",
];

fn exact<T: Codec>(data: &[u8], name: &'static str, accepted: &mut Vec<&'static str>) {
    if let Ok(value) = T::decode_exact(data) {
        // `decode_exact` compares the re-encoding itself; this checks that
        // the comparison cannot be skipped by a type overriding it.
        assert_eq!(
            value.to_bytes(),
            data,
            "{name} accepted non-canonical bytes"
        );
        accepted.push(name);
    }
}

/// Runs `data` through every decoder of bytes that come off the wire: the
/// link message, every payload and certificate format, batch proofs and
/// signatures. Whatever a decoder accepts
/// must encode back to exactly `data`. (Link authentication's payload is
/// read only after its signature verifies: `envelope_decode` covers that.) Returns the names (from
/// [`DECODERS`]) of the decoders that accepted it. Panics only if an
/// invariant breaks.
#[must_use]
pub fn decode_all(data: &[u8]) -> Vec<&'static str> {
    let mut accepted = Vec::new();
    if let Ok(m) = Message::decode(data) {
        assert!(data.len() <= MAX_MESSAGE_LEN, "oversize message decoded");
        assert_eq!(m.encode(), data, "a decoded message is not canonical");
        assert_eq!(Message::decode(&m.encode()).as_ref(), Ok(&m));
        accepted.push("message");
    }
    exact::<Report>(data, "report", &mut accepted);
    exact::<Accusation>(data, "accusation", &mut accepted);
    exact::<Vote>(data, "vote", &mut accepted);
    exact::<Votes>(data, "votes", &mut accepted);
    exact::<Certificate>(data, "certificate", &mut accepted);
    let shared = Certificate::decode_shared(&Arc::from(data), 0);
    assert_eq!(
        shared.is_ok(),
        accepted.last() == Some(&"certificate"),
        "decode_shared and decode_exact disagree"
    );
    exact::<Evidence>(data, "evidence", &mut accepted);
    exact::<RecordProof>(data, "record-proof", &mut accepted);
    exact::<BatchRoot>(data, "batch-root", &mut accepted);
    exact::<HybridSignature>(data, "signature", &mut accepted);
    accepted
}

/// Seed inputs: one link message of each kind node 0 received in the
/// fuzz mesh, a report, an accusation, a vote, a certificate body of
/// votes, equivocation evidence and its certificate, a record proof, a
/// batch root and a signature, each named `valid-<decoder>-…`; and a few
/// near misses named `invalid-…`.
///
/// # Panics
/// Never with the fixed fixture.
#[must_use]
pub fn decode_seeds() -> Vec<(String, Vec<u8>)> {
    let f = super::fixture();
    let ids: Vec<NodeId> = f.members.iter().map(crate::Identity::id).collect();
    let traffic = super::node::traffic();
    let mut out = Vec::new();
    let mut tags = BTreeSet::new();
    let mut reports = Vec::new();
    for (_, m) in traffic {
        if tags.insert(m[0]) {
            out.push((format!("valid-message-tag{}", m[0]), m.to_vec()));
        }
        if let Ok(Message::Report(frame)) = Message::decode(m) {
            reports.push(frame.to_vec());
        }
    }
    let (_, payload) = envelope::verified_parts(&reports[0]).expect("a sealed frame");
    out.push(("valid-report-0".to_owned(), payload.to_vec()));

    // The equivocation at the end of the traffic, as evidence and as a
    // certificate.
    let (a, b) = (&reports[reports.len() - 2], &reports[reports.len() - 1]);
    let mut open = ModelledCrypto::new(ids[0]);
    let evidence = Evidence::equivocation_by(&f.roster, a, b, &mut open).expect("an equivocation");
    out.push(("valid-evidence-0".to_owned(), evidence.to_bytes()));
    let cert =
        Certificate::from_evidence_by(&f.roster, &QuarantinePolicy::default(), evidence, &mut open)
            .expect("the evidence verifies");
    let cert_bytes = cert.to_bytes();
    out.push(("valid-certificate-0".to_owned(), cert_bytes.clone()));

    let accusation = Accusation {
        subject: ids[2],
        window_ms: super::NOW_MS,
        score: Score(9_500),
        model: [3; 32],
        relays: Relays {
            claimed: 8,
            missing: 3,
        },
        evidence: vec![EvidenceRef {
            signer: ids[2],
            position: (1, 4),
            hash: [7; 32],
        }],
    };
    out.push(("valid-accusation-0".to_owned(), accusation.to_bytes()));
    let stamp = |sequence| Stamp {
        epoch: 1,
        sequence,
        issued_at_ms: super::NOW_MS,
    };
    let accused = ModelledCrypto::new(ids[0])
        .seal(
            f.roster.mesh_id(),
            Kind::Accusation,
            stamp(9),
            &accusation.to_bytes(),
        )
        .expect("within limits");
    let vote = Vote {
        accusation: [5; 32],
        subject: ids[2],
        verdict: Verdict::Yes,
        replayed: Score(9_100),
        own: Score(9_900),
    };
    out.push(("valid-vote-0".to_owned(), vote.to_bytes()));
    let voted = ModelledCrypto::new(ids[1])
        .seal(f.roster.mesh_id(), Kind::Vote, stamp(10), &vote.to_bytes())
        .expect("within limits");
    let votes = Votes::new(accused.clone(), vec![voted.clone()]).expect("within limits");
    out.push(("valid-votes-0".to_owned(), votes.to_bytes()));
    for (name, m) in [
        ("certificate", Message::Certificate(&cert_bytes)),
        ("accuse", Message::Accuse(&accused)),
        ("vote", Message::Vote(&voted)),
    ] {
        out.push((format!("valid-message-{name}"), m.encode()));
    }

    for (name, bytes) in super::seed_corpus() {
        if name == "valid-record-proof" {
            out.push(("valid-record-proof-0".to_owned(), bytes));
        } else if name == "valid-batch-envelope" {
            let (_, root) = envelope::verified_parts(&bytes).expect("a sealed frame");
            out.push(("valid-batch-root-0".to_owned(), root.to_vec()));
        } else if name == "valid-small" {
            let split = bytes.len() - crate::Suite::Ed25519MlDsa65.signature_len();
            out.push(("valid-signature-0".to_owned(), bytes[split..].to_vec()));
        }
    }

    let report = &out
        .iter()
        .find(|(n, _)| n == "valid-report-0")
        .expect("made above")
        .1;
    let mut trailing = report.clone();
    trailing.push(0);
    out.push(("invalid-trailing-report".to_owned(), trailing));
    out.push(("invalid-empty".to_owned(), Vec::new()));
    out.push(("invalid-unknown-tag".to_owned(), vec![0xff]));
    out.push((
        "invalid-truncated-certificate".to_owned(),
        out.iter()
            .find(|(n, _)| n == "valid-certificate-0")
            .expect("made above")
            .1[..100]
            .to_vec(),
    ));
    out
}
