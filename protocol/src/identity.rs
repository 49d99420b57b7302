//! Hybrid Ed25519 + ML-DSA-65 identities.
//!
//! A node is a pair of key pairs, one classical (Ed25519) and one
//! post-quantum (ML-DSA-65, FIPS 204). A signature is valid only if **both**
//! signatures verify, so forging one needs breaking both algorithms. The node
//! id is a SHA-256 commitment to the suite and both public keys; the suite is
//! part of the id, so a roster entry cannot be used with a weaker suite.
//!
//! Keys are derived from a 64-byte seed that the caller supplies (this crate
//! never reads OS randomness): 32 bytes seed Ed25519 (RFC 8032), 32 bytes seed
//! ML-DSA-65 key generation (FIPS 204 `ML-DSA.KeyGen_internal`). The seed is
//! the secret that key files store.

use std::fmt;

use aws_lc_rs::digest;
use aws_lc_rs::signature::{
    ED25519, Ed25519KeyPair, KeyPair, ML_DSA_65, ML_DSA_65_SIGNING, ParsedPublicKey, PqdsaKeyPair,
};
use zeroize::Zeroizing;

use crate::codec::{Codec, Reader};
use crate::error::{Error, InvalidMessage, PeerMisbehaved};

/// Ed25519 public key length.
pub const ED25519_PUBLIC_KEY_LEN: usize = 32;
/// Ed25519 signature length.
pub const ED25519_SIGNATURE_LEN: usize = 64;
/// ML-DSA-65 public key length (FIPS 204, table 2).
pub const ML_DSA_65_PUBLIC_KEY_LEN: usize = 1952;
/// ML-DSA-65 signature length (FIPS 204, table 2).
pub const ML_DSA_65_SIGNATURE_LEN: usize = 3309;
/// Length of the secret seed: Ed25519 seed then ML-DSA-65 seed.
pub const SEED_LEN: usize = 64;

/// A signature suite: which algorithms sign, with which encodings.
///
/// The suite byte is inside every signed message and inside every node id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Suite {
    /// Ed25519 and ML-DSA-65; both must verify.
    Ed25519MlDsa65,
}

impl Suite {
    /// The suite's wire byte.
    #[must_use]
    pub const fn to_u8(self) -> u8 {
        match self {
            Suite::Ed25519MlDsa65 => 1,
        }
    }

    /// The suite for a wire byte.
    ///
    /// # Errors
    /// [`InvalidMessage::UnknownSuite`].
    pub const fn from_u8(b: u8) -> Result<Self, InvalidMessage> {
        match b {
            1 => Ok(Suite::Ed25519MlDsa65),
            other => Err(InvalidMessage::UnknownSuite(other)),
        }
    }

    /// The suite's name in genesis files.
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Suite::Ed25519MlDsa65 => "ed25519+ml-dsa-65",
        }
    }

    /// The suite for a name in a genesis file.
    #[must_use]
    pub fn from_name(name: &str) -> Option<Self> {
        (name == Suite::Ed25519MlDsa65.name()).then_some(Suite::Ed25519MlDsa65)
    }

    /// Length of a signature in this suite.
    #[must_use]
    pub const fn signature_len(self) -> usize {
        match self {
            Suite::Ed25519MlDsa65 => ED25519_SIGNATURE_LEN + ML_DSA_65_SIGNATURE_LEN,
        }
    }
}

/// A node id: SHA-256 over a domain tag, the suite and both public keys.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct NodeId(pub [u8; 32]);

/// Byte-wise (lexicographic) order, decided by the first eight bytes as a
/// big-endian integer whenever they differ, as they almost always do for
/// hashes. Ids are the keys of every map in the mesh node, and a `memcmp` call
/// per comparison was a fifth of the simulator's time.
impl Ord for NodeId {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        let prefix = |id: &Self| {
            let mut p = [0u8; 8];
            p.copy_from_slice(&id.0[..8]);
            u64::from_be_bytes(p)
        };
        prefix(self)
            .cmp(&prefix(other))
            .then_with(|| self.0[8..].cmp(&other.0[8..]))
    }
}

impl PartialOrd for NodeId {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl NodeId {
    /// Byte length.
    pub const LEN: usize = 32;

    /// The id committing to these public keys.
    #[must_use]
    pub fn derive(suite: Suite, ed25519: &[u8], ml_dsa: &[u8]) -> Self {
        let mut ctx = digest::Context::new(&digest::SHA256);
        ctx.update(b"sentinel-mesh/node-id/v1\0");
        ctx.update(&[suite.to_u8()]);
        ctx.update(ed25519);
        ctx.update(ml_dsa);
        let mut id = [0u8; 32];
        id.copy_from_slice(ctx.finish().as_ref());
        NodeId(id)
    }

    /// Parses 64 hex digits.
    ///
    /// # Errors
    /// A message saying what is wrong with the text.
    pub fn from_hex(s: &str) -> Result<Self, String> {
        let mut id = [0u8; 32];
        hex::decode_to_slice(s, &mut id).map_err(|e| format!("node id {s:?}: {e}"))?;
        Ok(NodeId(id))
    }

    /// The full id as 64 hex digits.
    #[must_use]
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

/// Short form (first 8 bytes), as logs show it.
impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(&self.0[..8]))
    }
}

impl fmt::Debug for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NodeId({self})")
    }
}

/// A hybrid signature: Ed25519 then ML-DSA-65, fixed lengths.
#[derive(Clone, PartialEq, Eq)]
pub struct HybridSignature {
    /// The Ed25519 signature.
    pub ed25519: [u8; ED25519_SIGNATURE_LEN],
    /// The ML-DSA-65 signature.
    pub ml_dsa: Box<[u8; ML_DSA_65_SIGNATURE_LEN]>,
}

impl fmt::Debug for HybridSignature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "HybridSignature({}…)", hex::encode(&self.ed25519[..8]))
    }
}

impl Codec for HybridSignature {
    const NAME: &'static str = "hybrid signature";

    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.ed25519);
        out.extend_from_slice(&self.ml_dsa[..]);
    }

    fn read(r: &mut Reader<'_>) -> Result<Self, InvalidMessage> {
        let ed25519 = r.array()?;
        let mut ml_dsa = Box::new([0u8; ML_DSA_65_SIGNATURE_LEN]);
        ml_dsa.copy_from_slice(r.take(ML_DSA_65_SIGNATURE_LEN)?);
        Ok(Self { ed25519, ml_dsa })
    }
}

/// The public half of an identity, with both keys parsed once so that
/// verification does no per-call key parsing.
#[derive(Clone)]
pub struct PublicIdentity {
    suite: Suite,
    id: NodeId,
    ed25519: ParsedPublicKey,
    ml_dsa: ParsedPublicKey,
}

impl fmt::Debug for PublicIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicIdentity({}, {})", self.suite.name(), self.id)
    }
}

impl PartialEq for PublicIdentity {
    fn eq(&self, other: &Self) -> bool {
        // The id commits to the suite and both keys.
        self.id == other.id
    }
}

impl Eq for PublicIdentity {}

impl PublicIdentity {
    /// Parses and validates raw public keys.
    ///
    /// # Errors
    /// [`InvalidMessage::InvalidField`] if a key has the wrong length or is not
    /// a valid key for its algorithm.
    pub fn from_keys(suite: Suite, ed25519: &[u8], ml_dsa: &[u8]) -> Result<Self, InvalidMessage> {
        let Suite::Ed25519MlDsa65 = suite;
        if ed25519.len() != ED25519_PUBLIC_KEY_LEN {
            return Err(InvalidMessage::InvalidField {
                field: "ed25519 public key",
                reason: "must be 32 bytes",
            });
        }
        if ml_dsa.len() != ML_DSA_65_PUBLIC_KEY_LEN {
            return Err(InvalidMessage::InvalidField {
                field: "ml-dsa-65 public key",
                reason: "must be 1952 bytes",
            });
        }
        let ed =
            ParsedPublicKey::new(&ED25519, ed25519).map_err(|_| InvalidMessage::InvalidField {
                field: "ed25519 public key",
                reason: "not a valid Ed25519 point",
            })?;
        let pq =
            ParsedPublicKey::new(&ML_DSA_65, ml_dsa).map_err(|_| InvalidMessage::InvalidField {
                field: "ml-dsa-65 public key",
                reason: "not a valid ML-DSA-65 public key",
            })?;
        Ok(Self {
            suite,
            id: NodeId::derive(suite, ed25519, ml_dsa),
            ed25519: ed,
            ml_dsa: pq,
        })
    }

    /// The node id.
    #[must_use]
    pub fn id(&self) -> NodeId {
        self.id
    }

    /// The suite.
    #[must_use]
    pub fn suite(&self) -> Suite {
        self.suite
    }

    /// The raw Ed25519 public key.
    #[must_use]
    pub fn ed25519_bytes(&self) -> &[u8] {
        self.ed25519.as_ref()
    }

    /// The raw ML-DSA-65 public key (FIPS 204 `pkEncode`).
    #[must_use]
    pub fn ml_dsa_bytes(&self) -> &[u8] {
        self.ml_dsa.as_ref()
    }

    /// Verifies a hybrid signature over `message`: both must verify.
    ///
    /// # Errors
    /// [`PeerMisbehaved::BadEd25519Signature`] or
    /// [`PeerMisbehaved::BadMlDsaSignature`].
    pub fn verify(&self, message: &[u8], sig: &HybridSignature) -> Result<(), PeerMisbehaved> {
        self.verify_parts(message, &sig.ed25519, &sig.ml_dsa[..])
    }

    /// As [`Self::verify`], over signature bytes still in a received buffer.
    pub(crate) fn verify_parts(
        &self,
        message: &[u8],
        ed25519: &[u8],
        ml_dsa: &[u8],
    ) -> Result<(), PeerMisbehaved> {
        self.ed25519
            .verify_sig(message, ed25519)
            .map_err(|_| PeerMisbehaved::BadEd25519Signature(self.id))?;
        self.ml_dsa
            .verify_sig(message, ml_dsa)
            .map_err(|_| PeerMisbehaved::BadMlDsaSignature(self.id))
    }
}

/// A secret identity: both key pairs and the seed they came from.
///
/// `Debug` shows only the node id; the seed is zeroed when dropped.
pub struct Identity {
    seed: Zeroizing<[u8; SEED_LEN]>,
    ed25519: Ed25519KeyPair,
    ml_dsa: PqdsaKeyPair,
    public: PublicIdentity,
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Identity({})", self.public.id)
    }
}

impl Identity {
    /// Derives an identity from a 64-byte secret seed. The caller supplies the
    /// randomness (OS randomness in the daemon, a seeded generator in the
    /// simulator and tests).
    ///
    /// # Errors
    /// [`Error::Crypto`] if the library rejects the seed (it accepts every
    /// 64-byte value in practice).
    pub fn from_seed(seed: &[u8; SEED_LEN]) -> Result<Self, Error> {
        let ed25519 = Ed25519KeyPair::from_seed_unchecked(&seed[..32])
            .map_err(|_| Error::Crypto("Ed25519 key from seed"))?;
        let ml_dsa = PqdsaKeyPair::from_seed(&ML_DSA_65_SIGNING, &seed[32..])
            .map_err(|_| Error::Crypto("ML-DSA-65 key from seed"))?;
        let public = PublicIdentity::from_keys(
            Suite::Ed25519MlDsa65,
            ed25519.public_key().as_ref(),
            ml_dsa.public_key().as_ref(),
        )
        .map_err(|_| Error::Crypto("derived public key rejected"))?;
        Ok(Self {
            seed: Zeroizing::new(*seed),
            ed25519,
            ml_dsa,
            public,
        })
    }

    /// The public half.
    #[must_use]
    pub fn public(&self) -> &PublicIdentity {
        &self.public
    }

    /// The node id.
    #[must_use]
    pub fn id(&self) -> NodeId {
        self.public.id
    }

    /// The secret seed, for writing a key file.
    pub(crate) fn seed(&self) -> &[u8; SEED_LEN] {
        &self.seed
    }

    /// Signs `message` with both keys. ML-DSA signing is randomised (hedged),
    /// so two signatures over one message differ; protocol rules compare
    /// signed *content*, never signature bytes.
    ///
    /// # Errors
    /// [`Error::Crypto`] if ML-DSA signing fails.
    pub fn sign(&self, message: &[u8]) -> Result<HybridSignature, Error> {
        let mut ed25519 = [0u8; ED25519_SIGNATURE_LEN];
        ed25519.copy_from_slice(self.ed25519.sign(message).as_ref());
        let mut ml_dsa = Box::new([0u8; ML_DSA_65_SIGNATURE_LEN]);
        self.ml_dsa
            .sign(message, &mut ml_dsa[..])
            .map_err(|_| Error::Crypto("ML-DSA-65 signing"))?;
        Ok(HybridSignature { ed25519, ml_dsa })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seed(b: u8) -> [u8; SEED_LEN] {
        [b; SEED_LEN]
    }

    #[test]
    fn node_id_order_is_byte_order() {
        // Pairs that differ in the prefix, only after it, or not at all.
        let mut ids = Vec::new();
        for first in [0u8, 1, 0x7f, 0x80, 0xff] {
            for last in [0u8, 1, 0xff] {
                let mut a = [0u8; 32];
                a[0] = first;
                a[7] = last;
                ids.push(NodeId(a));
                let mut b = a;
                b[31] = last;
                ids.push(NodeId(b));
            }
        }
        for a in &ids {
            for b in &ids {
                assert_eq!(a.cmp(b), a.0.cmp(&b.0), "{a} vs {b}");
            }
        }
    }

    #[test]
    fn same_seed_same_identity_and_id_commits_to_both_keys() {
        let a = Identity::from_seed(&seed(1)).unwrap();
        let b = Identity::from_seed(&seed(1)).unwrap();
        assert_eq!(a.id(), b.id());
        assert_eq!(a.public().ml_dsa_bytes(), b.public().ml_dsa_bytes());
        assert_eq!(a.public().ml_dsa_bytes().len(), ML_DSA_65_PUBLIC_KEY_LEN);

        // Changing either half of the seed changes the id.
        let mut s = seed(1);
        s[0] ^= 1;
        assert_ne!(Identity::from_seed(&s).unwrap().id(), a.id());
        let mut s = seed(1);
        s[63] ^= 1;
        assert_ne!(Identity::from_seed(&s).unwrap().id(), a.id());
    }

    #[test]
    fn both_signatures_must_verify() {
        let a = Identity::from_seed(&seed(2)).unwrap();
        let b = Identity::from_seed(&seed(3)).unwrap();
        let sig_a = a.sign(b"msg").unwrap();
        let sig_b = b.sign(b"msg").unwrap();
        a.public().verify(b"msg", &sig_a).unwrap();
        assert_eq!(
            a.public().verify(b"other", &sig_a),
            Err(PeerMisbehaved::BadEd25519Signature(a.id()))
        );
        // A valid Ed25519 half with someone else's ML-DSA half fails.
        let mixed = HybridSignature {
            ed25519: sig_a.ed25519,
            ml_dsa: sig_b.ml_dsa.clone(),
        };
        assert_eq!(
            a.public().verify(b"msg", &mixed),
            Err(PeerMisbehaved::BadMlDsaSignature(a.id()))
        );
        let mixed = HybridSignature {
            ed25519: sig_b.ed25519,
            ml_dsa: sig_a.ml_dsa,
        };
        assert_eq!(
            a.public().verify(b"msg", &mixed),
            Err(PeerMisbehaved::BadEd25519Signature(a.id()))
        );
    }

    #[test]
    fn debug_never_shows_the_seed() {
        let a = Identity::from_seed(&seed(0xab)).unwrap();
        let shown = format!("{a:?}");
        assert!(!shown.contains("abab"), "{shown}");
        assert!(shown.starts_with("Identity("));
    }

    #[test]
    fn bad_public_keys_are_rejected() {
        let a = Identity::from_seed(&seed(4)).unwrap();
        let ed = a.public().ed25519_bytes();
        let pq = a.public().ml_dsa_bytes();
        assert!(PublicIdentity::from_keys(Suite::Ed25519MlDsa65, &ed[..31], pq).is_err());
        assert!(PublicIdentity::from_keys(Suite::Ed25519MlDsa65, ed, &pq[..1951]).is_err());
        let again = PublicIdentity::from_keys(Suite::Ed25519MlDsa65, ed, pq).unwrap();
        assert_eq!(&again, a.public());
    }
}
