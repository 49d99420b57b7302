//! How a [`Node`](crate::node::Node) signs and verifies envelopes.
//!
//! The node is generic over [`Crypto`] so the same state machine runs with
//! - [`RealCrypto`]: hybrid signatures made and verified for every message
//!   (the daemon; the simulator's `real` mode, optionally with a
//!   [`VerifyCache`] shared by all simulated nodes);
//! - [`ModelledCrypto`]: frames of exactly the real size whose signature
//!   fields carry a keyless checksum, so that 10,000-node simulations fit on
//!   two cores. It offers **no security at all** and exists for the
//!   simulator only; the simulator charges the real signing and verification
//!   cost to each node's CPU estimate from the counts in
//!   [`NodeStats`](crate::node::NodeStats).
//!
//! All three go through one opening path (layout, limits, rostered sender,
//! suite binding), so only the signature check differs between them.

use std::collections::{BTreeSet, VecDeque};
use std::sync::Arc;

use aws_lc_rs::digest;

use crate::envelope::{self, Header, Kind, SignedParts, Stamp, Verified};
use crate::error::{Error, PeerMisbehaved};
use crate::identity::{ED25519_SIGNATURE_LEN, Identity, ML_DSA_65_SIGNATURE_LEN, NodeId, Suite};
use crate::roster::{MeshId, Roster};

/// Signing with one's own identity and verifying others' envelopes.
pub trait Crypto {
    /// The id of the identity that signs.
    fn id(&self) -> NodeId;

    /// Signs `payload` as a `kind` envelope (see [`envelope::seal`]).
    ///
    /// # Errors
    /// As [`envelope::seal`].
    fn seal(
        &mut self,
        mesh: &MeshId,
        kind: Kind,
        stamp: Stamp,
        payload: &[u8],
    ) -> Result<Vec<u8>, Error>;

    /// Verifies a received frame (see [`envelope::open`]).
    ///
    /// # Errors
    /// As [`envelope::open`].
    fn open<'a>(&mut self, roster: &Roster, frame: &'a [u8]) -> Result<Verified<'a>, Error>;
}

/// Real hybrid signatures.
#[derive(Debug)]
pub struct RealCrypto {
    identity: Arc<Identity>,
}

impl RealCrypto {
    /// Signs as `identity`.
    #[must_use]
    pub fn new(identity: impl Into<Arc<Identity>>) -> Self {
        Self {
            identity: identity.into(),
        }
    }
}

impl Crypto for RealCrypto {
    fn id(&self) -> NodeId {
        self.identity.id()
    }

    fn seal(
        &mut self,
        mesh: &MeshId,
        kind: Kind,
        stamp: Stamp,
        payload: &[u8],
    ) -> Result<Vec<u8>, Error> {
        envelope::seal(&self.identity, mesh, kind, stamp, payload)
    }

    fn open<'a>(&mut self, roster: &Roster, frame: &'a [u8]) -> Result<Verified<'a>, Error> {
        envelope::open(roster, frame)
    }
}

/// Remembers which exact frames verified, so that the same bytes verified by
/// many simulated nodes cost one verification. Keyed by SHA-256 over the mesh
/// id and the *whole* frame, signatures included: a cached success applies
/// only to identical bytes. Bounded; the oldest entries are forgotten first.
#[derive(Debug, Clone)]
pub struct VerifyCache {
    capacity: usize,
    set: BTreeSet<[u8; 32]>,
    order: VecDeque<[u8; 32]>,
    hits: u64,
    misses: u64,
}

impl VerifyCache {
    /// A cache holding at most `capacity` frame digests.
    #[must_use]
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity: capacity.max(1),
            set: BTreeSet::new(),
            order: VecDeque::new(),
            hits: 0,
            misses: 0,
        }
    }

    /// Verifies `frame` as [`envelope::open`] does, skipping the signature
    /// check when these exact bytes verified before under this mesh.
    ///
    /// # Errors
    /// As [`envelope::open`].
    pub fn open<'a>(&mut self, roster: &Roster, frame: &'a [u8]) -> Result<Verified<'a>, Error> {
        let mut ctx = digest::Context::new(&digest::SHA256);
        ctx.update(&roster.mesh_id().0);
        ctx.update(frame);
        let mut key = [0u8; 32];
        key.copy_from_slice(ctx.finish().as_ref());
        let known = self.set.contains(&key);
        let verified = envelope::open_checked_by(
            roster,
            frame,
            |_| Ok(()),
            |public, mesh, parts| {
                if known {
                    return Ok(());
                }
                public.verify_parts(
                    &envelope::signed_message(mesh, parts.body),
                    parts.ed25519,
                    parts.ml_dsa,
                )
            },
        )?;
        if known {
            self.hits += 1;
        } else {
            self.misses += 1;
            if self.order.len() >= self.capacity
                && let Some(old) = self.order.pop_front()
            {
                self.set.remove(&old);
            }
            self.set.insert(key);
            self.order.push_back(key);
        }
        Ok(verified)
    }

    /// (hits, misses) so far.
    #[must_use]
    pub fn stats(&self) -> (u64, u64) {
        (self.hits, self.misses)
    }
}

/// Simulation-only stand-in for signatures: same frame layout and size, the
/// signature field holds SHA-256 over the signed message and zeros.
///
/// Anyone can compute the checksum, so it authenticates nothing; what it
/// keeps is the *outcome* of verification as data: a frame altered in flight
/// or made by a simulated forger fails to open exactly where a real one would.
#[derive(Debug, Clone)]
pub struct ModelledCrypto {
    id: NodeId,
}

impl ModelledCrypto {
    /// Seals as `id` (which must be on the roster for others to open).
    #[must_use]
    pub fn new(id: NodeId) -> Self {
        Self { id }
    }
}

fn modelled_tag(mesh: &MeshId, body: &[u8]) -> digest::Digest {
    let mut ctx = digest::Context::new(&digest::SHA256);
    envelope::for_each_signed_part(mesh, body, |part| ctx.update(part));
    ctx.finish()
}

impl Crypto for ModelledCrypto {
    fn id(&self) -> NodeId {
        self.id
    }

    fn seal(
        &mut self,
        mesh: &MeshId,
        kind: Kind,
        stamp: Stamp,
        payload: &[u8],
    ) -> Result<Vec<u8>, Error> {
        let header = Header {
            suite: Suite::Ed25519MlDsa65,
            kind,
            sender: self.id,
            stamp,
        };
        let mut frame = envelope::body(&header, payload)?;
        let tag = modelled_tag(mesh, &frame);
        frame.extend_from_slice(tag.as_ref());
        frame.resize(
            frame.len() + ED25519_SIGNATURE_LEN + ML_DSA_65_SIGNATURE_LEN - tag.as_ref().len(),
            0,
        );
        Ok(frame)
    }

    fn open<'a>(&mut self, roster: &Roster, frame: &'a [u8]) -> Result<Verified<'a>, Error> {
        envelope::open_checked_by(
            roster,
            frame,
            |_| Ok(()),
            |public, mesh, parts: &SignedParts<'a>| {
                let tag = modelled_tag(mesh, parts.body);
                let (head, tail) = parts.ed25519.split_at(tag.as_ref().len());
                let zeros = tail.iter().all(|&b| b == 0) && parts.ml_dsa.iter().all(|&b| b == 0);
                if head == tag.as_ref() && zeros {
                    Ok(())
                } else {
                    Err(PeerMisbehaved::BadEd25519Signature(public.id()))
                }
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::SEED_LEN;

    const STAMP: Stamp = Stamp {
        epoch: 1,
        sequence: 1,
        issued_at_ms: 1_700_000_000_000,
    };

    fn setup() -> (Identity, Roster) {
        let id = Identity::from_seed(&[4; SEED_LEN]).unwrap();
        let roster = Roster::equal_weight("crypto", [id.public().clone()]).unwrap();
        (id, roster)
    }

    #[test]
    fn modelled_frames_have_real_sizes_and_fail_where_real_ones_would() {
        let (id, roster) = setup();
        let mesh = *roster.mesh_id();
        let real = RealCrypto::new(Identity::from_seed(&[4; SEED_LEN]).unwrap())
            .seal(&mesh, Kind::Telemetry, STAMP, b"abc")
            .unwrap();
        let mut m = ModelledCrypto::new(id.id());
        let modelled = m.seal(&mesh, Kind::Telemetry, STAMP, b"abc").unwrap();
        assert_eq!(real.len(), modelled.len());
        assert_eq!(real[..HEADER_BODY], modelled[..HEADER_BODY]);
        assert_eq!(m.open(&roster, &modelled).unwrap().payload(), b"abc");
        for i in [0, 20, HEADER_BODY, HEADER_BODY + 40, modelled.len() - 1] {
            let mut bad = modelled.clone();
            bad[i] ^= 1;
            assert!(m.open(&roster, &bad).is_err(), "flip at {i}");
        }
        // A modelled frame is not a real signature, and the other way round.
        assert!(RealCrypto::new(id).open(&roster, &modelled).is_err());
        assert!(m.open(&roster, &real).is_err());
    }

    const HEADER_BODY: usize = envelope::HEADER_LEN + 3;

    #[test]
    fn cache_skips_only_identical_bytes() {
        let (id, roster) = setup();
        let frame = envelope::seal(&id, roster.mesh_id(), Kind::Telemetry, STAMP, b"x").unwrap();
        let mut cache = VerifyCache::new(2);
        cache.open(&roster, &frame).unwrap();
        cache.open(&roster, &frame).unwrap();
        assert_eq!(cache.stats(), (1, 1));
        let mut bad = frame.clone();
        let last = bad.len() - 1;
        bad[last] ^= 1;
        assert!(cache.open(&roster, &bad).is_err());
        // A failure is never cached as a success.
        assert!(cache.open(&roster, &bad).is_err());
        assert_eq!(cache.stats(), (1, 1));
    }
}
