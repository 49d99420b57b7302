//! Wire-level properties of signed envelopes: exact lengths, and rejection of
//! every single-bit flip, truncation, extension and reordering.

mod common;

use common::{NOW_MS, identity, one_member_frame, roster_of, stamp};
use proptest::prelude::*;
use sentinel_protocol::envelope::{self, HEADER_LEN, Kind};
use sentinel_protocol::replay::{Receiver, TimeWindow};
use sentinel_protocol::{Error, PeerMisbehaved, Suite};

const SIG_LEN: usize = Suite::Ed25519MlDsa65.signature_len();

#[test]
fn encoded_length_is_exact() {
    let a = identity(1);
    let roster = roster_of(&[a.public()]);
    for n in [0usize, 1, 100, 4096, envelope::MAX_PAYLOAD_LEN] {
        let frame = envelope::seal(
            &a,
            roster.mesh_id(),
            Kind::Telemetry,
            stamp(1, 1),
            &vec![3; n],
        )
        .unwrap();
        assert_eq!(frame.len(), HEADER_LEN + n + 64 + 3309, "payload {n}");
        assert_eq!(envelope::open(&roster, &frame).unwrap().payload().len(), n);
    }
}

/// Every one of the frame's 28,000-odd bit positions, flipped alone, makes
/// the frame fail: header bits fail the layout checks or the signature, and
/// signature bits fail verification.
#[test]
fn every_single_bit_flip_is_rejected() {
    let (_, roster, frame) = one_member_frame(7, b"thirty-two bytes of telemetry!!!");
    envelope::open(&roster, &frame).unwrap();
    let mut flipped = frame.clone();
    for bit in 0..frame.len() * 8 {
        flipped[bit / 8] ^= 1 << (bit % 8);
        assert!(
            envelope::open(&roster, &flipped).is_err(),
            "flip of bit {bit} was accepted"
        );
        flipped[bit / 8] ^= 1 << (bit % 8);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Random payloads round-trip with exact lengths; a random bit flip of the
    /// result is rejected.
    #[test]
    fn random_frames_round_trip_and_flips_fail(
        payload in prop::collection::vec(any::<u8>(), 0..4096),
        seq in any::<u64>(),
        bit in any::<prop::sample::Index>(),
    ) {
        let a = identity(2);
        let roster = roster_of(&[a.public()]);
        let frame = envelope::seal(&a, roster.mesh_id(), Kind::Telemetry, stamp(9, seq), &payload).unwrap();
        prop_assert_eq!(frame.len(), HEADER_LEN + payload.len() + SIG_LEN);
        let v = envelope::open(&roster, &frame).unwrap();
        prop_assert_eq!(v.payload(), &payload[..]);
        prop_assert_eq!(v.header().stamp.sequence, seq);
        let bit = bit.index(frame.len() * 8);
        let mut bad = frame.clone();
        bad[bit / 8] ^= 1 << (bit % 8);
        prop_assert!(envelope::open(&roster, &bad).is_err());
    }
}

#[test]
fn truncated_and_extended_frames_are_rejected() {
    let (_, roster, frame) = one_member_frame(1, b"payload");
    for len in 0..frame.len() {
        assert!(
            matches!(
                envelope::open(&roster, &frame[..len]),
                Err(Error::InvalidMessage(_))
            ),
            "truncated to {len}"
        );
    }
    for extra in [1usize, 2, 64, 3309] {
        let mut long = frame.clone();
        long.extend(std::iter::repeat_n(0u8, extra));
        assert!(matches!(
            envelope::open(&roster, &long),
            Err(Error::InvalidMessage(sentinel_protocol::InvalidMessage::TrailingBytes { count })) if count == extra
        ));
    }
    // Two valid frames back to back are not one frame.
    let mut two = frame.clone();
    two.extend_from_slice(&frame);
    assert!(envelope::open(&roster, &two).is_err());
}

#[test]
fn reordered_frames_are_rejected() {
    let payload = b"0123456789abcdef";
    // Epoch 1 and sequence 6 differ, so swapping them changes the frame.
    let (_, roster, frame) = one_member_frame(6, payload);
    let body = HEADER_LEN + payload.len();
    let (ed, pq) = (body..body + 64, body + 64..frame.len());

    let swap = |first: std::ops::Range<usize>, second: std::ops::Range<usize>| {
        let mut f = frame[..first.start].to_vec();
        f.extend_from_slice(&frame[second.clone()]);
        f.extend_from_slice(&frame[first.end..second.start]);
        f.extend_from_slice(&frame[first]);
        f.extend_from_slice(&frame[second.end..]);
        f
    };
    let variants = [
        // The two signatures in the other order.
        swap(ed.clone(), pq.clone()),
        // Epoch and sequence swapped (both 8 bytes).
        swap(39..47, 47..55),
        // Sender and payload halves.
        swap(HEADER_LEN..HEADER_LEN + 8, HEADER_LEN + 8..HEADER_LEN + 16),
        // Signatures before the payload.
        [
            &frame[..HEADER_LEN],
            &frame[body..],
            &frame[HEADER_LEN..body],
        ]
        .concat(),
        // Rotations.
        [&frame[1..], &frame[..1]].concat(),
        [&frame[frame.len() - 1..], &frame[..frame.len() - 1]].concat(),
    ];
    for (i, v) in variants.iter().enumerate() {
        assert_eq!(v.len(), frame.len());
        assert_ne!(v, &frame);
        assert!(envelope::open(&roster, v).is_err(), "variant {i} accepted");
    }
}

#[test]
fn unrostered_keys_are_refused_even_with_valid_signatures() {
    let member = identity(1);
    let outsider = identity(2);
    let roster = roster_of(&[member.public()]);
    let frame = envelope::seal(
        &outsider,
        roster.mesh_id(),
        Kind::Telemetry,
        stamp(1, 1),
        b"hi",
    )
    .unwrap();
    assert!(matches!(
        envelope::open(&roster, &frame),
        Err(Error::PeerMisbehaved(PeerMisbehaved::UnknownSender(id))) if id == outsider.id()
    ));
    // Claiming to be the member, signed with the outsider's keys, fails too.
    let mut forged = frame.clone();
    forged[7..39].copy_from_slice(&member.id().0);
    assert!(matches!(
        envelope::open(&roster, &forged),
        Err(Error::PeerMisbehaved(PeerMisbehaved::BadEd25519Signature(id))) if id == member.id()
    ));
}

#[test]
fn receiver_accepts_once_and_rejects_replays_stale_epochs_and_bad_times() {
    let a = identity(1);
    let roster = roster_of(&[a.public()]);
    let mut rx = Receiver::new(TimeWindow::default());
    let seal = |epoch, seq, t| {
        let mut s = stamp(epoch, seq);
        s.issued_at_ms = t;
        envelope::seal(&a, roster.mesh_id(), Kind::Telemetry, s, b"report").unwrap()
    };

    let f1 = seal(2, 10, NOW_MS);
    rx.accept(&roster, &f1, NOW_MS).unwrap();
    assert!(matches!(
        rx.accept(&roster, &f1, NOW_MS),
        Err(Error::PeerMisbehaved(PeerMisbehaved::Replay {
            epoch: 2,
            sequence: 10,
            ..
        }))
    ));
    // Same (epoch, sequence) re-signed: still a replay (ML-DSA signatures
    // differ every time, so the window keys on the stamp, not the bytes).
    let f1_again = seal(2, 10, NOW_MS);
    assert_ne!(f1, f1_again);
    assert!(matches!(
        rx.accept(&roster, &f1_again, NOW_MS),
        Err(Error::PeerMisbehaved(PeerMisbehaved::Replay { .. }))
    ));
    // Reordered delivery within the window is fine, once.
    rx.accept(&roster, &seal(2, 12, NOW_MS), NOW_MS).unwrap();
    rx.accept(&roster, &seal(2, 11, NOW_MS), NOW_MS).unwrap();
    // An older epoch is over.
    assert!(matches!(
        rx.accept(&roster, &seal(1, 99, NOW_MS), NOW_MS),
        Err(Error::PeerMisbehaved(PeerMisbehaved::StaleEpoch {
            epoch: 1,
            current: 2,
            ..
        }))
    ));
    // Outside the time window, either way.
    let w = TimeWindow::default();
    assert!(matches!(
        rx.accept(&roster, &seal(2, 20, NOW_MS - w.max_age_ms - 1), NOW_MS),
        Err(Error::PeerMisbehaved(
            PeerMisbehaved::OutsideTimeWindow { .. }
        ))
    ));
    assert!(matches!(
        rx.accept(&roster, &seal(2, 21, NOW_MS + w.max_future_ms + 1), NOW_MS),
        Err(Error::PeerMisbehaved(
            PeerMisbehaved::OutsideTimeWindow { .. }
        ))
    ));
    // A forged frame naming a fresh sequence does not burn that sequence.
    let mut forged = seal(2, 30, NOW_MS);
    let last = forged.len() - 1;
    forged[last] ^= 1;
    assert!(rx.accept(&roster, &forged, NOW_MS).is_err());
    rx.accept(&roster, &seal(2, 30, NOW_MS), NOW_MS).unwrap();
    assert_eq!(rx.senders(), 1);
}
