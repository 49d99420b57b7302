//! Entry points for fuzz targets (`protocol/fuzz`) and for the test that
//! replays their committed corpora on stable. Not part of the API.
//!
//! - [`envelope_decode`]: envelope and record-proof verification;
//! - [`decode_all`]: every decoder of wire bytes;
//! - [`node_messages`]: a node's state machine on scripted traffic;
//! - [`quorum_tally`]: a voted certificate's count.
//!
//! Each has seeds (`*_seeds`, written by the `fuzz_seed_corpus` example)
//! named `valid-…` or `invalid-…` for what the replay test expects of
//! them.

mod decode;
mod node;
mod tally;

pub use decode::{DECODERS, decode_all, decode_seeds};
pub use node::{MAX_STEPS, Outcome as NodeOutcome, Step, node_messages, node_seeds, traffic};
pub use tally::{MAX_VOTES, MEMBERS, flag, quorum_tally, tally_seeds};

use std::sync::OnceLock;

use crate::batch::{RecordProof, SignedBatch};
use crate::codec::Codec;
use crate::envelope::{self, Kind, Stamp};
use crate::identity::{Identity, SEED_LEN};
use crate::replay::{Receiver, TimeWindow};
use crate::roster::Roster;

/// The fixed time fuzz inputs are judged at (Unix milliseconds).
pub const NOW_MS: u64 = 1_750_000_000_000;

struct Fixture {
    members: Vec<Identity>,
    roster: Roster,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let members: Vec<Identity> = (1..=3u8)
            .map(|i| Identity::from_seed(&[i; SEED_LEN]).expect("fixed seeds are valid"))
            .collect();
        let roster = Roster::equal_weight("fuzz", members.iter().map(|m| m.public().clone()))
            .expect("fixed roster is valid");
        Fixture { members, roster }
    })
}

/// What the decoders made of an input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// A valid envelope from a fuzz-roster member.
    Envelope,
    /// A valid record proof.
    Record,
    /// Rejected by both decoders.
    Rejected,
}

/// Runs `data` through envelope verification (stateless and through a fresh
/// [`Receiver`]) and record-proof decoding, checking that whatever is accepted
/// is canonical. Panics only if an invariant breaks.
pub fn envelope_decode(data: &[u8]) -> Outcome {
    let f = fixture();
    let opened = envelope::open(&f.roster, data);
    let accepted = Receiver::new(TimeWindow::default()).accept(&f.roster, data, NOW_MS);
    if let Ok(v) = &opened {
        // Accepted frames re-encode to exactly the received bytes.
        let split = data.len() - v.header().suite.signature_len();
        let sig = crate::identity::HybridSignature::decode_exact(&data[split..])
            .expect("a verified frame carries a well-formed signature");
        let again = envelope::assemble(v.header(), v.payload(), &sig)
            .expect("verified payloads are within limits");
        assert_eq!(again, data, "verified frame is not canonical");
        assert_eq!(envelope::peek_header(data).ok().as_ref(), Some(v.header()));
    } else {
        assert!(accepted.is_err(), "receiver accepted what open refused");
    }
    if opened.is_ok() {
        return Outcome::Envelope;
    }
    match RecordProof::decode_exact(data) {
        Ok(p) if p.verify(&f.roster).is_ok() => Outcome::Record,
        _ => Outcome::Rejected,
    }
}

/// Seed inputs for the corpus: valid envelopes, a valid record proof, and
/// near misses. ML-DSA signing is randomised, so the bytes differ per call.
///
/// # Panics
/// Never with the fixed fixture.
#[must_use]
pub fn seed_corpus() -> Vec<(String, Vec<u8>)> {
    let f = fixture();
    let mesh = f.roster.mesh_id();
    let stamp = |sequence| Stamp {
        epoch: 1,
        sequence,
        issued_at_ms: NOW_MS,
    };
    let seal = |m: usize, seq, payload: &[u8]| {
        envelope::seal(&f.members[m], mesh, Kind::Telemetry, stamp(seq), payload)
            .expect("within limits")
    };
    let mut out = vec![
        ("valid-empty".to_owned(), seal(0, 1, b"")),
        ("valid-small".to_owned(), seal(1, 2, b"telemetry")),
        ("valid-1k".to_owned(), seal(2, 3, &[0xa5; 1024])),
    ];
    let batch = SignedBatch::seal(
        &f.members[0],
        mesh,
        Kind::Telemetry,
        stamp(4),
        (0..5u8).map(|i| vec![i; 16]).collect(),
    )
    .expect("within limits");
    out.push(("valid-batch-envelope".to_owned(), batch.envelope().to_vec()));
    out.push((
        "valid-record-proof".to_owned(),
        batch.prove(2).expect("index in range").to_bytes(),
    ));
    let small = seal(1, 5, b"x");
    let mut trailing = small.clone();
    trailing.push(0);
    out.push(("invalid-trailing".to_owned(), trailing));
    out.push((
        "invalid-truncated".to_owned(),
        small[..small.len() - 1].to_vec(),
    ));
    let mut flipped = small.clone();
    flipped[70] ^= 0x10;
    out.push(("invalid-bitflip".to_owned(), flipped));
    out.push((
        "invalid-header-only".to_owned(),
        small[..envelope::HEADER_LEN].to_vec(),
    ));
    out
}
