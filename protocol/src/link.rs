//! Link authentication by channel binding.
//!
//! A link is a QUIC connection whose TLS certificates are throw-away: they
//! prove nothing about who is on the other end. After the handshake both
//! sides export the same secret value from the TLS session (RFC 5705/8446
//! exporter, [`EXPORTER_LABEL`]) and each signs it with its roster identity in
//! a [`Kind::LinkAuth`] envelope. The exporter is unique to the connection,
//! so a signature over it can be neither replayed on another connection nor
//! relayed by a machine in the middle (whose two sessions export different
//! values); the role byte stops a server from reflecting the client's own
//! signature back.
//!
//! Link-auth envelopes use sequence 0, outside the numbered stream of a
//! sender's reports: they are bound to one connection, never relayed, and
//! never evidence.

use aws_lc_rs::constant_time;

use crate::codec::{Codec, Reader};
use crate::envelope::{self, Kind, Stamp};
use crate::error::{Error, InvalidMessage, PeerMisbehaved};
use crate::identity::{Identity, NodeId};
use crate::roster::Roster;

/// The TLS exporter label both sides use.
pub const EXPORTER_LABEL: &[u8] = b"EXPORTER-sentinel-mesh-link-auth-v1";
/// Bytes exported from the TLS session.
pub const EXPORTER_LEN: usize = 32;
/// Payload format version.
const VERSION: u8 = 1;

/// Which end of the connection signed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The side that dialled.
    Client,
    /// The side that accepted.
    Server,
}

impl Role {
    fn to_u8(self) -> u8 {
        match self {
            Role::Client => 1,
            Role::Server => 2,
        }
    }
}

/// The signed payload: format version, role, exported value. 34 bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
struct LinkAuth {
    role: u8,
    exporter: [u8; EXPORTER_LEN],
}

impl Codec for LinkAuth {
    const NAME: &'static str = "link auth";

    fn encode(&self, out: &mut Vec<u8>) {
        out.push(VERSION);
        out.push(self.role);
        out.extend_from_slice(&self.exporter);
    }

    fn read(r: &mut Reader<'_>) -> Result<Self, InvalidMessage> {
        let version = r.u8()?;
        if version != VERSION {
            return Err(InvalidMessage::UnsupportedVersion(version));
        }
        let role = r.u8()?;
        let mut exporter = [0u8; EXPORTER_LEN];
        exporter.copy_from_slice(r.take(EXPORTER_LEN)?);
        Ok(Self { role, exporter })
    }
}

/// Signs this side's link authentication for a connection.
///
/// # Errors
/// Only if signing fails.
pub fn seal(
    identity: &Identity,
    roster: &Roster,
    role: Role,
    exporter: &[u8; EXPORTER_LEN],
    epoch: u64,
    now_ms: u64,
) -> Result<Vec<u8>, Error> {
    let payload = LinkAuth {
        role: role.to_u8(),
        exporter: *exporter,
    }
    .to_bytes();
    let stamp = Stamp {
        epoch,
        sequence: 0,
        issued_at_ms: now_ms,
    };
    envelope::seal(identity, roster.mesh_id(), Kind::LinkAuth, stamp, &payload)
}

/// Checks the other side's link authentication: a rostered sender's valid
/// signature, over this connection's exporter value, in the role the other
/// side has. Returns who it is.
///
/// # Errors
/// Every way the frame can be wrong: malformed, another kind, unrostered
/// sender, bad signature, or signed for another connection or role.
pub fn open(
    roster: &Roster,
    frame: &[u8],
    peer_role: Role,
    exporter: &[u8; EXPORTER_LEN],
) -> Result<NodeId, Error> {
    let env = envelope::open(roster, frame)?;
    let header = *env.header();
    if header.kind != Kind::LinkAuth {
        return Err(InvalidMessage::WrongKind {
            expected: Kind::LinkAuth,
            got: header.kind,
        }
        .into());
    }
    let auth = LinkAuth::decode_exact(env.payload())?;
    let bound = auth.role == peer_role.to_u8()
        && constant_time::verify_slices_are_equal(&auth.exporter, exporter).is_ok();
    if !bound {
        return Err(PeerMisbehaved::LinkNotBound(header.sender).into());
    }
    Ok(header.sender)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::SEED_LEN;

    fn setup() -> (Identity, Identity, Roster) {
        let a = Identity::from_seed(&[1; SEED_LEN]).unwrap();
        let b = Identity::from_seed(&[2; SEED_LEN]).unwrap();
        let roster =
            Roster::equal_weight("link", [a.public().clone(), b.public().clone()]).unwrap();
        (a, b, roster)
    }

    #[test]
    fn binds_identity_connection_and_role() {
        let (a, _, roster) = setup();
        let x = [7u8; EXPORTER_LEN];
        let frame = seal(&a, &roster, Role::Client, &x, 5, 1_000).unwrap();
        assert_eq!(open(&roster, &frame, Role::Client, &x).unwrap(), a.id());

        // Another connection's exporter, or the signature reflected back
        // in the other role, is refused.
        let other = [8u8; EXPORTER_LEN];
        assert!(matches!(
            open(&roster, &frame, Role::Client, &other),
            Err(Error::PeerMisbehaved(PeerMisbehaved::LinkNotBound(id))) if id == a.id()
        ));
        assert!(matches!(
            open(&roster, &frame, Role::Server, &x),
            Err(Error::PeerMisbehaved(PeerMisbehaved::LinkNotBound(_)))
        ));
    }

    #[test]
    fn unrostered_and_tampered_and_wrong_kind_are_refused() {
        let (a, _, roster) = setup();
        let stranger = Identity::from_seed(&[9; SEED_LEN]).unwrap();
        let x = [7u8; EXPORTER_LEN];
        let frame = seal(&stranger, &roster, Role::Client, &x, 1, 1).unwrap();
        assert!(matches!(
            open(&roster, &frame, Role::Client, &x),
            Err(Error::PeerMisbehaved(PeerMisbehaved::UnknownSender(_)))
        ));

        let mut frame = seal(&a, &roster, Role::Client, &x, 1, 1).unwrap();
        let last = frame.len() - 1;
        frame[last] ^= 1;
        assert!(open(&roster, &frame, Role::Client, &x).is_err());

        let stamp = Stamp {
            epoch: 1,
            sequence: 1,
            issued_at_ms: 1,
        };
        let telemetry =
            envelope::seal(&a, roster.mesh_id(), Kind::Telemetry, stamp, &[0; 34]).unwrap();
        assert!(matches!(
            open(&roster, &telemetry, Role::Client, &x),
            Err(Error::InvalidMessage(InvalidMessage::WrongKind { .. }))
        ));
    }
}
