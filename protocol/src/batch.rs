//! Batched signing: one hybrid signature over many records.
//!
//! An ML-DSA-65 signature is 3,309 bytes, so signing every record separately
//! would dominate bandwidth. A batch is a [`Kind::Batch`] envelope whose
//! payload is a [`BatchRoot`]: the records' kind, their count and the root of
//! a Merkle tree over them (RFC 9162 §2.1 hashing: leaves are
//! `SHA-256(0x00 ‖ kind ‖ record)`, inner nodes `SHA-256(0x01 ‖ left ‖ right)`,
//! with the RFC's unbalanced-tree shape). A [`RecordProof`] carries one record,
//! its index, its audit path and the signed root envelope, so a single record
//! can be checked alone — for example as evidence sent to a third party.

use aws_lc_rs::digest;

use crate::codec::{Codec, Reader, put_bytes_u32};
use crate::envelope::{self, Header, Kind, Stamp};
use crate::error::{Error, InvalidMessage, PeerMisbehaved};
use crate::identity::Identity;
use crate::roster::{MeshId, Roster};

/// Most records in one batch.
pub const MAX_RECORDS: u32 = 4096;
/// Longest audit path ([`MAX_RECORDS`] is 2^12).
pub const MAX_PATH_LEN: usize = 12;

type Hash = [u8; 32];

fn leaf_hash(kind: Kind, record: &[u8]) -> Hash {
    let mut ctx = digest::Context::new(&digest::SHA256);
    ctx.update(&[0x00, kind.to_u8()]);
    ctx.update(record);
    to_hash(ctx.finish())
}

fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut ctx = digest::Context::new(&digest::SHA256);
    ctx.update(&[0x01]);
    ctx.update(left);
    ctx.update(right);
    to_hash(ctx.finish())
}

fn to_hash(d: digest::Digest) -> Hash {
    let mut h = [0u8; 32];
    h.copy_from_slice(d.as_ref());
    h
}

/// The payload of a [`Kind::Batch`] envelope.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchRoot {
    /// The kind of every record in the batch (never [`Kind::Batch`]).
    pub record_kind: Kind,
    /// Number of records, 1 to [`MAX_RECORDS`].
    pub count: u32,
    /// Merkle tree root.
    pub root: [u8; 32],
}

impl BatchRoot {
    /// Encoded length.
    pub const LEN: usize = 1 + 4 + 32;
}

impl Codec for BatchRoot {
    const NAME: &'static str = "batch root";

    fn encode(&self, out: &mut Vec<u8>) {
        out.push(self.record_kind.to_u8());
        out.extend_from_slice(&self.count.to_be_bytes());
        out.extend_from_slice(&self.root);
    }

    fn read(r: &mut Reader<'_>) -> Result<Self, InvalidMessage> {
        let record_kind = Kind::from_u8(r.u8()?)?;
        if record_kind == Kind::Batch {
            return Err(InvalidMessage::InvalidField {
                field: "record kind",
                reason: "batches do not nest",
            });
        }
        let count = r.u32()?;
        if count == 0 || count > MAX_RECORDS {
            return Err(InvalidMessage::InvalidField {
                field: "record count",
                reason: "must be 1 to 4096",
            });
        }
        Ok(Self {
            record_kind,
            count,
            root: r.array()?,
        })
    }
}

/// A Merkle tree kept level by level: `levels[0]` are the leaf hashes and the
/// last level holds the root. A level with an odd count promotes its last
/// node unchanged, which gives exactly RFC 9162's tree.
#[derive(Debug, Clone)]
struct Tree {
    levels: Vec<Vec<Hash>>,
}

impl Tree {
    fn new(leaves: Vec<Hash>) -> Self {
        let mut levels = vec![leaves];
        while levels.last().is_some_and(|l| l.len() > 1) {
            let below = levels.last().map(Vec::as_slice).unwrap_or_default();
            let next = below
                .chunks(2)
                .map(|pair| match pair {
                    [l, r] => node_hash(l, r),
                    [only] => *only,
                    _ => unreachable!("chunks(2) yields one or two"),
                })
                .collect();
            levels.push(next);
        }
        Self { levels }
    }

    fn root(&self) -> Hash {
        self.levels
            .last()
            .and_then(|l| l.first())
            .copied()
            .unwrap_or_default()
    }

    /// The audit path of leaf `index`, bottom-up (siblings that exist).
    fn path(&self, mut index: usize) -> Vec<Hash> {
        let mut path = Vec::new();
        for level in &self.levels[..self.levels.len() - 1] {
            let sibling = index ^ 1;
            if let Some(h) = level.get(sibling) {
                path.push(*h);
            }
            index /= 2;
        }
        path
    }
}

/// RFC 9162 §2.1.3.2: recompute the root from a leaf hash and its path.
/// `None` if the path has the wrong length for (`index`, `size`).
fn root_from_path(index: u64, size: u64, leaf: Hash, path: &[Hash]) -> Option<Hash> {
    if index >= size {
        return None;
    }
    let (mut f, mut s) = (index, size - 1);
    let mut r = leaf;
    for p in path {
        if s == 0 {
            return None;
        }
        if f & 1 == 1 || f == s {
            r = node_hash(p, &r);
            while f & 1 == 0 && f != 0 {
                f >>= 1;
                s >>= 1;
            }
        } else {
            r = node_hash(&r, p);
        }
        f >>= 1;
        s >>= 1;
    }
    (s == 0).then_some(r)
}

/// A signed batch as its signer holds it: the envelope and the records, ready
/// to hand out [`RecordProof`]s.
#[derive(Debug, Clone)]
pub struct SignedBatch {
    envelope: Vec<u8>,
    record_kind: Kind,
    records: Vec<Vec<u8>>,
    tree: Tree,
}

impl SignedBatch {
    /// Signs `records` (all of `record_kind`) under one signature.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] for no records, more than [`MAX_RECORDS`], a
    /// record over its kind's limit, or `record_kind` = [`Kind::Batch`];
    /// [`Error::Crypto`] if signing fails.
    pub fn seal(
        identity: &Identity,
        mesh: &MeshId,
        record_kind: Kind,
        stamp: Stamp,
        records: Vec<Vec<u8>>,
    ) -> Result<Self, Error> {
        let count = u32::try_from(records.len())
            .ok()
            .filter(|&n| (1..=MAX_RECORDS).contains(&n))
            .ok_or_else(|| {
                Error::InvalidInput(format!(
                    "a batch holds 1 to {MAX_RECORDS} records, not {}",
                    records.len()
                ))
            })?;
        if record_kind == Kind::Batch {
            return Err(Error::InvalidInput("batches do not nest".into()));
        }
        let limit = record_kind.max_payload_len();
        if let Some((i, r)) = records.iter().enumerate().find(|(_, r)| r.len() > limit) {
            return Err(Error::InvalidInput(format!(
                "record {i} is {} bytes, over the {record_kind:?} limit of {limit}",
                r.len()
            )));
        }
        let tree = Tree::new(records.iter().map(|r| leaf_hash(record_kind, r)).collect());
        let root = BatchRoot {
            record_kind,
            count,
            root: tree.root(),
        };
        let envelope = envelope::seal(identity, mesh, Kind::Batch, stamp, &root.to_bytes())?;
        Ok(Self {
            envelope,
            record_kind,
            records,
            tree,
        })
    }

    /// The signed root envelope.
    #[must_use]
    pub fn envelope(&self) -> &[u8] {
        &self.envelope
    }

    /// Number of records.
    #[must_use]
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// Always false: a batch has at least one record.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// The proof for record `index`, or `None` if there is no such record.
    #[must_use]
    pub fn prove(&self, index: usize) -> Option<RecordProof> {
        let record = self.records.get(index)?.clone();
        Some(RecordProof {
            envelope: self.envelope.clone(),
            index: u32::try_from(index).ok()?,
            record,
            path: self.tree.path(index),
        })
    }

    /// The kind of the records.
    #[must_use]
    pub fn record_kind(&self) -> Kind {
        self.record_kind
    }
}

/// One record with what is needed to check it alone.
///
/// Wire format: envelope (u32 length + bytes), index (u32), record (u32
/// length + bytes), path (u8 count + 32-byte hashes).
#[derive(Debug, Clone, PartialEq, Eq)]
///
/// Only [`SignedBatch::prove`] and decoding make one, so the path is never
/// longer than [`MAX_PATH_LEN`].
pub struct RecordProof {
    envelope: Vec<u8>,
    index: u32,
    record: Vec<u8>,
    path: Vec<[u8; 32]>,
}

/// A record whose batch signature and inclusion proof verified.
#[derive(Debug, Clone, Copy)]
pub struct VerifiedRecord<'a> {
    /// The batch envelope's header (signer, epoch, sequence, time).
    pub header: Header,
    /// The batch root it belongs to.
    pub root: BatchRoot,
    /// The record's index.
    pub index: u32,
    /// The record, undecoded; its kind is `root.record_kind`.
    pub record: &'a [u8],
}

impl RecordProof {
    /// The signed batch root envelope.
    #[must_use]
    pub fn envelope(&self) -> &[u8] {
        &self.envelope
    }

    /// The record's claimed position in the batch.
    #[must_use]
    pub fn index(&self) -> u32 {
        self.index
    }

    /// The record, unverified until [`Self::verify`] succeeds.
    #[must_use]
    pub fn record(&self) -> &[u8] {
        &self.record
    }

    /// Sibling hashes from the leaf up.
    #[must_use]
    pub fn path(&self) -> &[[u8; 32]] {
        &self.path
    }

    /// Verifies the batch envelope against the roster, then the record's path
    /// to its signed root.
    ///
    /// # Errors
    /// As [`envelope::open`]; [`InvalidMessage::WrongKind`] if the envelope is
    /// not a batch; [`InvalidMessage`] for a bad root payload, index or record
    /// length; [`PeerMisbehaved::BadInclusionProof`] if the path does not lead
    /// to the signed root.
    pub fn verify<'a>(&'a self, roster: &Roster) -> Result<VerifiedRecord<'a>, Error> {
        let env = envelope::open(roster, &self.envelope)?;
        let header = *env.header();
        if header.kind != Kind::Batch {
            return Err(InvalidMessage::WrongKind {
                expected: Kind::Batch,
                got: header.kind,
            }
            .into());
        }
        let root = BatchRoot::decode_exact(env.payload())?;
        if self.index >= root.count {
            return Err(InvalidMessage::InvalidField {
                field: "record index",
                reason: "not below the batch's record count",
            }
            .into());
        }
        let limit = root.record_kind.max_payload_len();
        if self.record.len() > limit {
            return Err(InvalidMessage::Oversize {
                what: "record",
                len: self.record.len(),
                limit,
            }
            .into());
        }
        let leaf = leaf_hash(root.record_kind, &self.record);
        match root_from_path(self.index.into(), root.count.into(), leaf, &self.path) {
            Some(r) if r == root.root => Ok(VerifiedRecord {
                header,
                root,
                index: self.index,
                record: &self.record,
            }),
            _ => Err(PeerMisbehaved::BadInclusionProof {
                sender: header.sender,
                index: self.index,
            }
            .into()),
        }
    }
}

impl Codec for RecordProof {
    const NAME: &'static str = "record proof";

    fn encode(&self, out: &mut Vec<u8>) {
        put_bytes_u32(out, &self.envelope);
        out.extend_from_slice(&self.index.to_be_bytes());
        put_bytes_u32(out, &self.record);
        let n = u8::try_from(self.path.len()).expect("paths are at most MAX_PATH_LEN long");
        out.push(n);
        for h in &self.path {
            out.extend_from_slice(h);
        }
    }

    fn read(r: &mut Reader<'_>) -> Result<Self, InvalidMessage> {
        let envelope_limit = envelope::HEADER_LEN
            + BatchRoot::LEN
            + crate::identity::Suite::Ed25519MlDsa65.signature_len();
        let envelope = r.bytes_u32("batch envelope", envelope_limit)?.to_vec();
        let index = r.u32()?;
        let record = r.bytes_u32("record", envelope::MAX_PAYLOAD_LEN)?.to_vec();
        let n = usize::from(r.u8()?);
        if n > MAX_PATH_LEN {
            return Err(InvalidMessage::Oversize {
                what: "audit path",
                len: n,
                limit: MAX_PATH_LEN,
            });
        }
        let path = (0..n).map(|_| r.array()).collect::<Result<_, _>>()?;
        Ok(Self {
            envelope,
            index,
            record,
            path,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::SEED_LEN;

    /// RFC 9162 §2.1.1 MTH, written recursively straight from the RFC, as the
    /// reference for the level-by-level tree.
    fn mth(leaves: &[Hash]) -> Hash {
        match leaves.len() {
            1 => leaves[0],
            n => {
                let k = split(n);
                node_hash(&mth(&leaves[..k]), &mth(&leaves[k..]))
            }
        }
    }

    /// RFC 9162 §2.1.3.1 PATH.
    fn rfc_path(m: usize, leaves: &[Hash]) -> Vec<Hash> {
        let n = leaves.len();
        if n == 1 {
            return vec![];
        }
        let k = split(n);
        if m < k {
            let mut p = rfc_path(m, &leaves[..k]);
            p.push(mth(&leaves[k..]));
            p
        } else {
            let mut p = rfc_path(m - k, &leaves[k..]);
            p.push(mth(&leaves[..k]));
            p
        }
    }

    /// Largest power of two smaller than `n` (n > 1).
    fn split(n: usize) -> usize {
        1 << (usize::BITS - (n - 1).leading_zeros() - 1)
    }

    fn leaves(n: usize) -> Vec<Hash> {
        (0..n)
            .map(|i| leaf_hash(Kind::Telemetry, &i.to_be_bytes()))
            .collect()
    }

    #[test]
    fn tree_matches_rfc_9162_and_every_path_verifies() {
        for n in 1..=70 {
            let l = leaves(n);
            let tree = Tree::new(l.clone());
            assert_eq!(tree.root(), mth(&l), "root, n = {n}");
            for i in 0..n {
                let path = tree.path(i);
                assert_eq!(path, rfc_path(i, &l), "path, n = {n} i = {i}");
                let (iu, nu) = (i as u64, n as u64);
                assert_eq!(root_from_path(iu, nu, l[i], &path), Some(tree.root()));
                // Wrong index, wrong size, short or long paths all fail.
                if n > 1 {
                    assert_ne!(
                        root_from_path((iu + 1) % nu, nu, l[i], &path),
                        Some(tree.root())
                    );
                }
                // A path does not commit to the tree size (RFC 9162 signs the
                // size beside the root; our BatchRoot carries `count`), but an
                // index outside the size never verifies.
                assert_eq!(root_from_path(iu, iu, l[i], &path), None);
                if !path.is_empty() {
                    assert_eq!(root_from_path(iu, nu, l[i], &path[1..]), None);
                }
                let mut long = path.clone();
                long.push([0; 32]);
                assert_ne!(root_from_path(iu, nu, l[i], &long), Some(tree.root()));
            }
        }
    }

    #[test]
    fn max_batch_path_fits_the_limit() {
        let tree = Tree::new(leaves(MAX_RECORDS as usize));
        assert_eq!(tree.path(0).len(), MAX_PATH_LEN);
    }

    fn setup() -> (Identity, Roster) {
        let a = Identity::from_seed(&[5; SEED_LEN]).unwrap();
        let roster = Roster::equal_weight("batch", [a.public().clone()]).unwrap();
        (a, roster)
    }

    const STAMP: Stamp = Stamp {
        epoch: 1,
        sequence: 2,
        issued_at_ms: 3,
    };

    #[test]
    fn every_record_of_a_signed_batch_verifies_alone() {
        let (a, roster) = setup();
        let records: Vec<Vec<u8>> = (0..13u8).map(|i| vec![i; usize::from(i) * 10]).collect();
        let batch = SignedBatch::seal(
            &a,
            roster.mesh_id(),
            Kind::Telemetry,
            STAMP,
            records.clone(),
        )
        .unwrap();
        for (i, rec) in records.iter().enumerate() {
            let proof = batch.prove(i).unwrap();
            let bytes = proof.to_bytes();
            let back = RecordProof::decode_exact(&bytes).unwrap();
            let v = back.verify(&roster).unwrap();
            assert_eq!(v.record, &rec[..]);
            assert_eq!(v.index as usize, i);
            assert_eq!(v.header.sender, a.id());
            assert_eq!(v.root.count, 13);
        }
        assert!(batch.prove(13).is_none());
    }

    #[test]
    fn tampered_proofs_are_rejected() {
        let (a, roster) = setup();
        let records: Vec<Vec<u8>> = (0..8u8).map(|i| vec![i; 4]).collect();
        let batch =
            SignedBatch::seal(&a, roster.mesh_id(), Kind::Telemetry, STAMP, records).unwrap();
        let good = batch.prove(3).unwrap();

        let mut p = good.clone();
        p.record[0] ^= 1;
        assert!(matches!(
            p.verify(&roster),
            Err(Error::PeerMisbehaved(
                PeerMisbehaved::BadInclusionProof { .. }
            ))
        ));
        let mut p = good.clone();
        p.index = 4;
        assert!(matches!(
            p.verify(&roster),
            Err(Error::PeerMisbehaved(
                PeerMisbehaved::BadInclusionProof { .. }
            ))
        ));
        let mut p = good.clone();
        p.index = 8;
        assert!(matches!(
            p.verify(&roster),
            Err(Error::InvalidMessage(InvalidMessage::InvalidField { .. }))
        ));
        let mut p = good.clone();
        p.path[1][0] ^= 1;
        assert!(p.verify(&roster).is_err());
        let mut p = good.clone();
        p.path.pop();
        assert!(p.verify(&roster).is_err());
        // A plain telemetry envelope is not a batch root.
        let mut p = good.clone();
        p.envelope =
            envelope::seal(&a, roster.mesh_id(), Kind::Telemetry, STAMP, &[0; 37]).unwrap();
        assert!(matches!(
            p.verify(&roster),
            Err(Error::InvalidMessage(InvalidMessage::WrongKind { .. }))
        ));
        good.verify(&roster).unwrap();
    }

    #[test]
    fn seal_refuses_bad_batches() {
        let (a, roster) = setup();
        let m = roster.mesh_id();
        assert!(SignedBatch::seal(&a, m, Kind::Telemetry, STAMP, vec![]).is_err());
        assert!(SignedBatch::seal(&a, m, Kind::Batch, STAMP, vec![vec![]]).is_err());
        let too_many = vec![vec![]; MAX_RECORDS as usize + 1];
        assert!(SignedBatch::seal(&a, m, Kind::Telemetry, STAMP, too_many).is_err());
        let too_big = vec![vec![0; envelope::MAX_PAYLOAD_LEN + 1]];
        assert!(SignedBatch::seal(&a, m, Kind::Telemetry, STAMP, too_big).is_err());
    }

    #[test]
    fn batch_root_decoding_is_strict() {
        let root = BatchRoot {
            record_kind: Kind::Telemetry,
            count: 3,
            root: [9; 32],
        };
        let bytes = root.to_bytes();
        assert_eq!(bytes.len(), BatchRoot::LEN);
        assert_eq!(BatchRoot::decode_exact(&bytes), Ok(root));
        let mut b = bytes.clone();
        b[0] = Kind::Batch.to_u8();
        assert!(BatchRoot::decode_exact(&b).is_err());
        let mut b = bytes.clone();
        b[1..5].copy_from_slice(&0u32.to_be_bytes());
        assert!(BatchRoot::decode_exact(&b).is_err());
        let mut b = bytes;
        b.push(0);
        assert!(BatchRoot::decode_exact(&b).is_err());
    }
}
