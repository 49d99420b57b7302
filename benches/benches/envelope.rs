//! Envelope sign/verify against the raw aws-lc-rs primitives, record-from-batch
//! and quarantine-certificate verification, and codec throughput. Every figure that matters is compared
//! with a reference measured in the same run; `cargo run -p sentinel-benches
//! --bin bench-report` prints the ratios.
//!
//! Inputs are ~4 KB payloads, and every iteration works on a different
//! envelope (cycling through [`DISTINCT`] of them), so nothing can be served
//! from a cache.
#![allow(missing_docs)] // criterion_main! generates an undocumented `main`
#![allow(clippy::unwrap_used)] // set-up failures in a benchmark should stop it loudly
#![allow(clippy::cast_possible_truncation)] // synthetic payload bytes and small indices

use std::hint::black_box;

use aws_lc_rs::signature::{
    ED25519, Ed25519KeyPair, ML_DSA_65, ML_DSA_65_SIGNING, ParsedPublicKey, PqdsaKeyPair,
    UnparsedPublicKey,
};
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use sentinel_protocol::batch::{RecordProof, SignedBatch};
use sentinel_protocol::codec::Codec;
use sentinel_protocol::envelope::{self, Kind, Stamp};
use sentinel_protocol::evidence::{Certificate, Evidence, QuarantinePolicy};
use sentinel_protocol::identity::{HybridSignature, ML_DSA_65_SIGNATURE_LEN, SEED_LEN};
use sentinel_protocol::{Identity, Roster};

const PAYLOAD: usize = 4096;
const DISTINCT: usize = 64;
const BATCH: usize = 100;

struct Fixture {
    identity: Identity,
    roster: Roster,
    /// Raw key pairs with the same seeds as `identity`.
    ed: Ed25519KeyPair,
    pq: PqdsaKeyPair,
    frames: Vec<Vec<u8>>,
    /// For each frame: the exact message both algorithms signed, and the two
    /// signatures, so the raw reference does the same cryptographic work.
    signed: Vec<(Vec<u8>, Vec<u8>, Vec<u8>)>,
    /// Encoded record proofs, as a receiver gets them.
    proofs: Vec<Vec<u8>>,
    /// Encoded equivocation certificates (two 4 KB frames each).
    certificates: Vec<Vec<u8>>,
}

fn payload(i: usize) -> Vec<u8> {
    (0..PAYLOAD)
        .map(|j| ((i * 31 + j * 7) % 251) as u8)
        .collect()
}

fn stamp(i: usize) -> Stamp {
    Stamp {
        epoch: 1,
        sequence: i as u64,
        issued_at_ms: 1_760_000_000_000 + i as u64,
    }
}

fn fixture() -> Fixture {
    let seed = [0x42u8; SEED_LEN];
    let identity = Identity::from_seed(&seed).unwrap();
    let ed = Ed25519KeyPair::from_seed_unchecked(&seed[..32]).unwrap();
    let pq = PqdsaKeyPair::from_seed(&ML_DSA_65_SIGNING, &seed[32..]).unwrap();
    let roster = Roster::equal_weight("bench", [identity.public().clone()]).unwrap();
    let mesh = *roster.mesh_id();
    let mut frames = Vec::new();
    let mut signed = Vec::new();
    for i in 0..DISTINCT {
        let p = payload(i);
        let frame = envelope::seal(&identity, &mesh, Kind::Telemetry, stamp(i), &p).unwrap();
        let v = envelope::open(&roster, &frame).unwrap();
        let msg = envelope::signing_message(&mesh, v.header(), v.payload()).unwrap();
        let sigs = &frame[frame.len() - 64 - ML_DSA_65_SIGNATURE_LEN..];
        signed.push((msg, sigs[..64].to_vec(), sigs[64..].to_vec()));
        frames.push(frame);
    }
    // One proof from each of DISTINCT batches of BATCH 4 KB records.
    let proofs = (0..DISTINCT)
        .map(|i| {
            let records = (0..BATCH).map(|r| payload(i * BATCH + r)).collect();
            let batch = SignedBatch::seal(
                &identity,
                &mesh,
                Kind::Telemetry,
                stamp(DISTINCT + i),
                records,
            )
            .unwrap();
            batch.prove((i * 37) % BATCH).unwrap().to_bytes()
        })
        .collect();
    // Each frame against a second version under its (epoch, sequence).
    let policy = QuarantinePolicy::default();
    let certificates = frames
        .iter()
        .enumerate()
        .map(|(i, frame)| {
            let mut other = payload(i);
            other[0] ^= 1;
            let twin = envelope::seal(&identity, &mesh, Kind::Telemetry, stamp(i), &other).unwrap();
            let evidence = Evidence::equivocation(&roster, frame, &twin).unwrap();
            Certificate::from_evidence(&roster, &policy, evidence)
                .unwrap()
                .to_bytes()
        })
        .collect();
    Fixture {
        certificates,
        identity,
        roster,
        ed,
        pq,
        frames,
        signed,
        proofs,
    }
}

fn verify(c: &mut Criterion, f: &Fixture) {
    let ed_parsed = ParsedPublicKey::new(&ED25519, f.identity.public().ed25519_bytes()).unwrap();
    let pq_parsed = ParsedPublicKey::new(&ML_DSA_65, f.identity.public().ml_dsa_bytes()).unwrap();
    let ed_bytes = f.identity.public().ed25519_bytes().to_vec();
    let pq_bytes = f.identity.public().ml_dsa_bytes().to_vec();

    let mut g = c.benchmark_group("verify");
    g.throughput(Throughput::Elements(1));
    let mut i = 0;
    g.bench_function("raw_hybrid_parsed_keys", |b| {
        b.iter(|| {
            i = (i + 1) % DISTINCT;
            let (msg, ed_sig, pq_sig) = &f.signed[i];
            ed_parsed.verify_sig(black_box(msg), ed_sig).unwrap();
            pq_parsed.verify_sig(black_box(msg), pq_sig).unwrap();
        });
    });
    g.bench_function("raw_hybrid_unparsed_keys", |b| {
        b.iter(|| {
            i = (i + 1) % DISTINCT;
            let (msg, ed_sig, pq_sig) = &f.signed[i];
            UnparsedPublicKey::new(&ED25519, &ed_bytes)
                .verify(black_box(msg), ed_sig)
                .unwrap();
            UnparsedPublicKey::new(&ML_DSA_65, &pq_bytes)
                .verify(black_box(msg), pq_sig)
                .unwrap();
        });
    });
    g.bench_function("envelope_open", |b| {
        b.iter(|| {
            i = (i + 1) % DISTINCT;
            envelope::open(&f.roster, black_box(&f.frames[i])).unwrap();
        });
    });
    let policy = QuarantinePolicy::default();
    g.bench_function("certificate_decode_and_verify", |b| {
        b.iter(|| {
            i = (i + 1) % DISTINCT;
            let cert = Certificate::decode_exact(black_box(&f.certificates[i])).unwrap();
            cert.verify(&f.roster, &policy).unwrap();
        });
    });
    g.bench_function("record_from_batch_of_100", |b| {
        b.iter(|| {
            i = (i + 1) % DISTINCT;
            let proof = RecordProof::decode_exact(black_box(&f.proofs[i])).unwrap();
            proof.verify(&f.roster).unwrap();
        });
    });
    g.finish();
}

fn sign(c: &mut Criterion, f: &Fixture) {
    let mesh = *f.roster.mesh_id();
    let mut g = c.benchmark_group("sign");
    g.throughput(Throughput::Elements(1));
    let mut i = 0;
    g.bench_function("raw_hybrid", |b| {
        let mut sig = vec![0u8; ML_DSA_65_SIGNATURE_LEN];
        b.iter(|| {
            i = (i + 1) % DISTINCT;
            let msg = &f.signed[i].0;
            black_box(f.ed.sign(black_box(msg)));
            f.pq.sign(black_box(msg), &mut sig).unwrap();
        });
    });
    g.bench_function("envelope_seal", |b| {
        let payloads: Vec<_> = (0..DISTINCT).map(payload).collect();
        b.iter(|| {
            i = (i + 1) % DISTINCT;
            envelope::seal(
                &f.identity,
                &mesh,
                Kind::Telemetry,
                stamp(i),
                black_box(&payloads[i]),
            )
            .unwrap()
        });
    });
    g.throughput(Throughput::Elements(BATCH as u64));
    g.bench_function("batch_seal_100_records", |b| {
        b.iter_batched(
            || (0..BATCH).map(payload).collect::<Vec<_>>(),
            |records| {
                SignedBatch::seal(&f.identity, &mesh, Kind::Telemetry, stamp(0), records).unwrap()
            },
            BatchSize::SmallInput,
        );
    });
    g.finish();
}

fn codec(c: &mut Criterion, f: &Fixture) {
    let v = envelope::open(&f.roster, &f.frames[0]).unwrap();
    let (header, body) = (*v.header(), v.payload().to_vec());
    let sig = HybridSignature::decode_exact(
        &f.frames[0][f.frames[0].len() - 64 - ML_DSA_65_SIGNATURE_LEN..],
    )
    .unwrap();
    let proof_bytes = &f.proofs[0];

    let mut g = c.benchmark_group("codec");
    g.throughput(Throughput::Bytes(f.frames[0].len() as u64));
    g.bench_function("envelope_encode", |b| {
        b.iter(|| envelope::assemble(black_box(&header), black_box(&body), &sig).unwrap());
    });
    let mut i = 0;
    g.bench_function("envelope_parse_header", |b| {
        b.iter(|| {
            i = (i + 1) % DISTINCT;
            envelope::peek_header(black_box(&f.frames[i])).unwrap()
        });
    });
    g.throughput(Throughput::Bytes(proof_bytes.len() as u64));
    g.bench_function("record_proof_decode", |b| {
        b.iter(|| RecordProof::decode_exact(black_box(proof_bytes)).unwrap());
    });
    g.finish();
}

fn benches(c: &mut Criterion) {
    let f = fixture();
    eprintln!(
        "quarantine certificate: {} bytes (two {}-byte frames)",
        f.certificates[0].len(),
        f.frames[0].len()
    );
    verify(c, &f);
    sign(c, &f);
    codec(c, &f);
}

criterion_group!(envelope_benches, benches);
criterion_main!(envelope_benches);
