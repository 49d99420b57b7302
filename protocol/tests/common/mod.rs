//! Shared fixtures for the integration tests.
#![allow(dead_code)] // each test binary uses a different subset

use sentinel_protocol::envelope::{self, Kind, Stamp};
use sentinel_protocol::identity::SEED_LEN;
use sentinel_protocol::{Identity, PublicIdentity, Roster};

/// A deterministic identity: seed bytes all `b`.
pub(crate) fn identity(b: u8) -> Identity {
    Identity::from_seed(&[b; SEED_LEN]).expect("fixed seeds are valid")
}

/// A roster of these public identities, weight 1 each.
pub(crate) fn roster_of(members: &[&PublicIdentity]) -> Roster {
    Roster::equal_weight("tests", members.iter().map(|p| (*p).clone()))
        .expect("test roster is valid")
}

/// A one-member roster and a telemetry frame its member signed.
pub(crate) fn one_member_frame(sequence: u64, payload: &[u8]) -> (Identity, Roster, Vec<u8>) {
    let a = identity(1);
    let roster = roster_of(&[a.public()]);
    let frame = envelope::seal(
        &a,
        roster.mesh_id(),
        Kind::Telemetry,
        stamp(1, sequence),
        payload,
    )
    .expect("payload within limits");
    (a, roster, frame)
}

/// A stamp at a fixed time.
pub(crate) fn stamp(epoch: u64, sequence: u64) -> Stamp {
    Stamp {
        epoch,
        sequence,
        issued_at_ms: NOW_MS,
    }
}

/// The fixed "now" of these tests, in Unix milliseconds.
pub(crate) const NOW_MS: u64 = 1_760_000_000_000;
