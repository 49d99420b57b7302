//! Our ML-DSA-65 keys and signatures against an independent implementation
//! (PQClean's, via `pqcrypto-mldsa`): each verifies the other's, over the exact
//! bytes our envelopes sign, and the key encodings are interchangeable.

mod common;

use aws_lc_rs::encoding::AsRawBytes;
use aws_lc_rs::signature::{
    ED25519, Ed25519KeyPair, KeyPair, ML_DSA_65, ML_DSA_65_SIGNING, PqdsaKeyPair, UnparsedPublicKey,
};
use common::{one_member_frame, roster_of, stamp};
use pqcrypto_mldsa::mldsa65;
use pqcrypto_traits::sign::{DetachedSignature as _, PublicKey as _, SecretKey as _};
use sentinel_protocol::envelope::{self, Header, Kind};
use sentinel_protocol::identity::{HybridSignature, ML_DSA_65_SIGNATURE_LEN};
use sentinel_protocol::{PublicIdentity, Suite};

#[test]
fn our_envelope_signatures_verify_under_pqclean() {
    let (a, roster, frame) = one_member_frame(2, b"cross-check");
    let v = envelope::open(&roster, &frame).unwrap();

    let pk = mldsa65::PublicKey::from_bytes(a.public().ml_dsa_bytes())
        .expect("our public key encoding is FIPS 204 pkEncode");
    let msg = envelope::signing_message(roster.mesh_id(), v.header(), v.payload()).unwrap();
    let sig =
        mldsa65::DetachedSignature::from_bytes(&frame[frame.len() - ML_DSA_65_SIGNATURE_LEN..])
            .unwrap();
    mldsa65::verify_detached_signature(&sig, &msg, &pk)
        .expect("PQClean verifies our ML-DSA-65 signature");
    // And it is bound to the message: PQClean rejects it over other bytes.
    let mut other = msg.clone();
    other[0] ^= 1;
    assert!(mldsa65::verify_detached_signature(&sig, &other, &pk).is_err());
}

#[test]
fn pqclean_signed_envelopes_verify_under_ours() {
    // A hybrid identity whose ML-DSA half lives in PQClean.
    let (pq_pk, pq_sk) = mldsa65::keypair();
    let ed = Ed25519KeyPair::from_seed_unchecked(&[9; 32]).unwrap();
    let public = PublicIdentity::from_keys(
        Suite::Ed25519MlDsa65,
        ed.public_key().as_ref(),
        pq_pk.as_bytes(),
    )
    .expect("PQClean's public key parses as ours");
    let roster = roster_of(&[&public]);

    let header = Header {
        suite: Suite::Ed25519MlDsa65,
        kind: Kind::Telemetry,
        sender: public.id(),
        stamp: stamp(3, 4),
    };
    let payload = b"signed elsewhere";
    let msg = envelope::signing_message(roster.mesh_id(), &header, payload).unwrap();
    let pq_sig = mldsa65::detached_sign(&msg, &pq_sk);
    let mut sig = HybridSignature {
        ed25519: [0; 64],
        ml_dsa: Box::new([0; ML_DSA_65_SIGNATURE_LEN]),
    };
    sig.ed25519.copy_from_slice(ed.sign(&msg).as_ref());
    sig.ml_dsa.copy_from_slice(pq_sig.as_bytes());
    let frame = envelope::assemble(&header, payload, &sig).unwrap();

    let v = envelope::open(&roster, &frame).expect("our verifier accepts PQClean's signature");
    assert_eq!(v.payload(), payload);
    // A PQClean signature over other bytes is refused.
    let other = mldsa65::detached_sign(b"something else", &pq_sk);
    sig.ml_dsa.copy_from_slice(other.as_bytes());
    assert!(
        envelope::open(
            &roster,
            &envelope::assemble(&header, payload, &sig).unwrap()
        )
        .is_err()
    );
}

#[test]
fn secret_and_public_key_encodings_are_interchangeable() {
    // PQClean secret key (FIPS 204 skEncode) into aws-lc-rs.
    let (pq_pk, pq_sk) = mldsa65::keypair();
    let ours = PqdsaKeyPair::from_raw_private_key(&ML_DSA_65_SIGNING, pq_sk.as_bytes()).unwrap();
    assert_eq!(ours.public_key().as_ref(), pq_pk.as_bytes());
    let mut sig = vec![0; ML_DSA_65_SIGNATURE_LEN];
    ours.sign(b"m", &mut sig).unwrap();
    mldsa65::verify_detached_signature(
        &mldsa65::DetachedSignature::from_bytes(&sig).unwrap(),
        b"m",
        &pq_pk,
    )
    .unwrap();

    // aws-lc-rs secret key (seed-derived, as our key files make them) into PQClean.
    let seeded = PqdsaKeyPair::from_seed(&ML_DSA_65_SIGNING, &[7; 32]).unwrap();
    let sk = mldsa65::SecretKey::from_bytes(seeded.private_key().as_raw_bytes().unwrap().as_ref())
        .unwrap();
    let pq_sig = mldsa65::detached_sign(b"m", &sk);
    UnparsedPublicKey::new(&ML_DSA_65, seeded.public_key().as_ref())
        .verify(b"m", pq_sig.as_bytes())
        .expect("aws-lc-rs verifies PQClean's signature from our exported key");
    // Sanity: the Ed25519 half is independent of this.
    let ed = Ed25519KeyPair::from_seed_unchecked(&[1; 32]).unwrap();
    UnparsedPublicKey::new(&ED25519, ed.public_key().as_ref())
        .verify(b"m", ed.sign(b"m").as_ref())
        .unwrap();
}
