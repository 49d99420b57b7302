//! The roster: who is a member, with which keys and weight.
//!
//! Membership is closed (Sybil resistance): a genesis file lists the initial
//! members, and only governance changes it. A key that is not on the roster is
//! refused, and none of its messages count.
//!
//! Genesis file (TOML):
//!
//! ```toml
//! format = 1
//! mesh = "devnet"                  # the mesh's name; part of the mesh id
//!
//! [[members]]
//! name = "alpha"                   # optional label for humans
//! suite = "ed25519+ml-dsa-65"
//! node_id = "<64 hex digits>"      # optional; checked against the keys
//! ed25519 = "<64 hex digits>"
//! ml_dsa_65 = "<3904 hex digits>"
//! weight = 1                       # optional, default 1, at most 1000000
//! ```
//!
//! The **mesh id** is a SHA-256 commitment to the mesh name and the genesis
//! members with their weights (sorted by node id, so file order and labels do
//! not matter). Every signature covers it, so a message signed for one mesh is
//! worthless in another that shares a member key.

use std::collections::BTreeMap;
use std::path::Path;

use aws_lc_rs::digest;
use serde::{Deserialize, Serialize};

use crate::error::RosterError;
use crate::identity::{NodeId, PublicIdentity, Suite};

/// Most members a roster may hold.
pub const MAX_MEMBERS: usize = 1 << 20;
/// Largest weight of one member; with [`MAX_MEMBERS`] the total fits in a u64.
pub const MAX_WEIGHT: u64 = 1_000_000;
/// Largest genesis file read (about 15,000 members).
pub const MAX_GENESIS_BYTES: u64 = 64 << 20;
const GENESIS_FORMAT: u32 = 1;

/// The id of a mesh: what every signature in it is bound to.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct MeshId(pub [u8; 32]);

impl MeshId {
    /// Full hex form.
    #[must_use]
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

/// One roster member.
#[derive(Debug, Clone)]
pub struct Member {
    /// Public keys (and id).
    pub public: PublicIdentity,
    /// Voting weight, 1 to [`MAX_WEIGHT`].
    pub weight: u64,
    /// A label for humans; carries no authority.
    pub name: String,
}

/// The set of members, indexed by node id.
#[derive(Debug, Clone)]
pub struct Roster {
    mesh: String,
    mesh_id: MeshId,
    members: BTreeMap<NodeId, Member>,
    total_weight: u64,
    /// [`crate::quorum::committee_seats`], worked out once: a
    /// hypergeometric search that every certificate check needs.
    pub(crate) seats: std::sync::OnceLock<Result<crate::quorum::Seats, String>>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct GenesisFile {
    format: u32,
    mesh: String,
    members: Vec<GenesisMember>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct GenesisMember {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    name: String,
    suite: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    node_id: Option<String>,
    ed25519: String,
    ml_dsa_65: String,
    #[serde(default = "one")]
    weight: u64,
}

fn one() -> u64 {
    1
}

impl Roster {
    /// Builds a genesis roster from members.
    ///
    /// # Errors
    /// [`RosterError::Size`], [`RosterError::Duplicate`], or
    /// [`RosterError::Member`] for a weight of 0 or over [`MAX_WEIGHT`].
    pub fn new(mesh: &str, members: Vec<Member>) -> Result<Self, RosterError> {
        if members.is_empty() || members.len() > MAX_MEMBERS {
            return Err(RosterError::Size {
                count: members.len(),
                max: MAX_MEMBERS,
            });
        }
        let mut map = BTreeMap::new();
        let mut total_weight = 0u64;
        for (index, m) in members.into_iter().enumerate() {
            if m.weight == 0 || m.weight > MAX_WEIGHT {
                return Err(RosterError::Member {
                    index,
                    name: m.name,
                    reason: format!("weight must be 1 to {MAX_WEIGHT}"),
                });
            }
            total_weight += m.weight;
            let id = m.public.id();
            if map.insert(id, m).is_some() {
                return Err(RosterError::Duplicate { index, id });
            }
        }
        let mesh_id = mesh_id(mesh, &map);
        Ok(Self {
            mesh: mesh.to_owned(),
            mesh_id,
            members: map,
            total_weight,
            seats: std::sync::OnceLock::new(),
        })
    }

    /// A genesis roster in which every member has weight 1 and no label (as
    /// devnets, simulations and tests use).
    ///
    /// # Errors
    /// As [`Roster::new`].
    pub fn equal_weight(
        mesh: &str,
        members: impl IntoIterator<Item = PublicIdentity>,
    ) -> Result<Self, RosterError> {
        let members = members
            .into_iter()
            .map(|public| Member {
                public,
                weight: 1,
                name: String::new(),
            })
            .collect();
        Self::new(mesh, members)
    }

    /// Reads and validates a genesis file.
    ///
    /// # Errors
    /// [`RosterError::Io`] if it cannot be read or is larger than
    /// [`MAX_GENESIS_BYTES`]; otherwise as [`Roster::from_genesis_toml`].
    pub fn load_genesis(path: &Path) -> Result<Self, RosterError> {
        let io = |source| RosterError::Io {
            path: path.to_path_buf(),
            source,
        };
        let len = std::fs::metadata(path).map_err(io)?.len();
        if len > MAX_GENESIS_BYTES {
            return Err(io(std::io::Error::other(format!(
                "file is {len} bytes, over the limit of {MAX_GENESIS_BYTES}"
            ))));
        }
        let text = std::fs::read_to_string(path).map_err(io)?;
        Self::from_genesis_toml(&text)
    }

    /// Parses and validates genesis TOML: every key is parsed and checked,
    /// and a member's `node_id`, if given, must match its keys.
    ///
    /// # Errors
    /// [`RosterError::Parse`] for TOML or schema errors (the message names the
    /// line and field), [`RosterError::Member`] for a bad key, suite, id or
    /// weight, and the errors of [`Roster::new`].
    pub fn from_genesis_toml(text: &str) -> Result<Self, RosterError> {
        let file: GenesisFile =
            toml::from_str(text).map_err(|e| RosterError::Parse(e.to_string()))?;
        if file.format != GENESIS_FORMAT {
            return Err(RosterError::Parse(format!(
                "format {} is not supported (expected {GENESIS_FORMAT})",
                file.format
            )));
        }
        let members = file
            .members
            .into_iter()
            .enumerate()
            .map(|(index, m)| {
                let bad = |reason: String| RosterError::Member {
                    index,
                    name: m.name.clone(),
                    reason,
                };
                let suite = Suite::from_name(&m.suite)
                    .ok_or_else(|| bad(format!("unknown suite {:?}", m.suite)))?;
                let ed = hex::decode(&m.ed25519).map_err(|e| bad(format!("ed25519: {e}")))?;
                let pq = hex::decode(&m.ml_dsa_65).map_err(|e| bad(format!("ml_dsa_65: {e}")))?;
                let public =
                    PublicIdentity::from_keys(suite, &ed, &pq).map_err(|e| bad(e.to_string()))?;
                if let Some(claimed) = &m.node_id {
                    let claimed = NodeId::from_hex(claimed).map_err(bad)?;
                    if claimed != public.id() {
                        return Err(bad(format!(
                            "node_id {} does not match its keys ({})",
                            claimed.to_hex(),
                            public.id().to_hex()
                        )));
                    }
                }
                Ok(Member {
                    public,
                    weight: m.weight,
                    name: m.name,
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Self::new(&file.mesh, members)
    }

    /// This roster as genesis TOML that [`Roster::from_genesis_toml`] reads
    /// back to an equal roster.
    #[must_use]
    pub fn to_genesis_toml(&self) -> String {
        let file = GenesisFile {
            format: GENESIS_FORMAT,
            mesh: self.mesh.clone(),
            members: self
                .members
                .values()
                .map(|m| GenesisMember {
                    name: m.name.clone(),
                    suite: m.public.suite().name().to_owned(),
                    node_id: Some(m.public.id().to_hex()),
                    ed25519: hex::encode(m.public.ed25519_bytes()),
                    ml_dsa_65: hex::encode(m.public.ml_dsa_bytes()),
                    weight: m.weight,
                })
                .collect(),
        };
        toml::to_string(&file).expect("genesis structs always serialise")
    }

    /// The mesh name.
    #[must_use]
    pub fn mesh(&self) -> &str {
        &self.mesh
    }

    /// The mesh id every signature is bound to.
    #[must_use]
    pub fn mesh_id(&self) -> &MeshId {
        &self.mesh_id
    }

    /// The member with this id.
    #[must_use]
    pub fn get(&self, id: &NodeId) -> Option<&Member> {
        self.members.get(id)
    }

    /// Members in node-id order.
    pub fn members(&self) -> impl Iterator<Item = &Member> {
        self.members.values()
    }

    /// Number of members.
    #[must_use]
    pub fn len(&self) -> usize {
        self.members.len()
    }

    /// Always false: a roster has at least one member.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// Sum of all members' weights.
    #[must_use]
    pub fn total_weight(&self) -> u64 {
        self.total_weight
    }
}

fn mesh_id(mesh: &str, members: &BTreeMap<NodeId, Member>) -> MeshId {
    let mut ctx = digest::Context::new(&digest::SHA256);
    ctx.update(b"sentinel-mesh/mesh-id/v1\0");
    ctx.update(&(mesh.len() as u64).to_be_bytes());
    ctx.update(mesh.as_bytes());
    ctx.update(&(members.len() as u64).to_be_bytes());
    for (id, m) in members {
        ctx.update(&id.0);
        ctx.update(&m.weight.to_be_bytes());
    }
    let mut out = [0u8; 32];
    out.copy_from_slice(ctx.finish().as_ref());
    MeshId(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::{Identity, SEED_LEN};

    fn member(b: u8, weight: u64) -> Member {
        Member {
            public: Identity::from_seed(&[b; SEED_LEN])
                .unwrap()
                .public()
                .clone(),
            weight,
            name: format!("m{b}"),
        }
    }

    #[test]
    fn genesis_round_trip_keeps_mesh_id() {
        let r = Roster::new("test", vec![member(1, 1), member(2, 3)]).unwrap();
        assert_eq!(r.total_weight(), 4);
        let text = r.to_genesis_toml();
        let back = Roster::from_genesis_toml(&text).unwrap();
        assert_eq!(back.mesh_id(), r.mesh_id());
        assert_eq!(back.len(), 2);
        let id = member(2, 3).public.id();
        assert_eq!(back.get(&id).unwrap().weight, 3);
        assert_eq!(back.get(&id).unwrap().name, "m2");
    }

    #[test]
    fn mesh_id_ignores_order_and_labels_but_not_weights_or_name() {
        let a = Roster::new("test", vec![member(1, 1), member(2, 1)]).unwrap();
        let mut m2 = member(2, 1);
        m2.name = "other".into();
        let b = Roster::new("test", vec![m2, member(1, 1)]).unwrap();
        assert_eq!(a.mesh_id(), b.mesh_id());
        let c = Roster::new("test", vec![member(1, 1), member(2, 2)]).unwrap();
        assert_ne!(a.mesh_id(), c.mesh_id());
        let d = Roster::new("other", vec![member(1, 1), member(2, 1)]).unwrap();
        assert_ne!(a.mesh_id(), d.mesh_id());
    }

    #[test]
    fn load_genesis_reads_files_and_names_them_in_errors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("genesis.toml");
        let r = Roster::new("file", vec![member(1, 2)]).unwrap();
        std::fs::write(&path, r.to_genesis_toml()).unwrap();
        assert_eq!(Roster::load_genesis(&path).unwrap().mesh_id(), r.mesh_id());

        let missing = dir.path().join("missing.toml");
        let e = Roster::load_genesis(&missing).unwrap_err().to_string();
        assert!(e.contains("missing.toml"), "{e}");

        // Over the size cap: refused from its length, without reading it.
        let big = std::fs::File::create(dir.path().join("big.toml")).unwrap();
        big.set_len(MAX_GENESIS_BYTES + 1).unwrap();
        let e = Roster::load_genesis(&dir.path().join("big.toml"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("over the limit"), "{e}");
    }

    #[test]
    fn rejects_bad_rosters_with_errors_that_name_the_member() {
        assert!(matches!(
            Roster::new("t", vec![]),
            Err(RosterError::Size { count: 0, .. })
        ));
        assert!(matches!(
            Roster::new("t", vec![member(1, 1), member(1, 2)]),
            Err(RosterError::Duplicate { index: 1, .. })
        ));
        assert!(matches!(
            Roster::new("t", vec![member(1, 0)]),
            Err(RosterError::Member { index: 0, .. })
        ));
        assert!(matches!(
            Roster::new("t", vec![member(1, MAX_WEIGHT + 1)]),
            Err(RosterError::Member { .. })
        ));

        let good = Roster::new("t", vec![member(1, 1), member(2, 1)])
            .unwrap()
            .to_genesis_toml();
        let cases = [
            (good.replace("format = 1", "format = 2"), "format 2"),
            (good.replace("ed25519+ml-dsa-65", "rsa"), "unknown suite"),
            (
                good.replacen("weight = 1", "weight = 1\ncolour = \"red\"", 1),
                "colour",
            ),
            (
                good.replacen("ed25519 = \"", "ed25519 = \"zz", 1),
                "ed25519",
            ),
            (
                good.replacen("ed25519 = \"", "ed25519 = \"00", 1),
                "32 bytes",
            ),
            (
                good.replacen("node_id = \"", "node_id = \"00", 1),
                "node id",
            ),
        ];
        for (text, needle) in cases {
            let e = Roster::from_genesis_toml(&text).unwrap_err().to_string();
            assert!(e.contains(needle), "{needle:?} not in {e:?}");
        }
        // A node id that is well-formed but belongs to other keys.
        let other = member(9, 1).public.id().to_hex();
        let first_id = good.split("node_id = \"").nth(1).unwrap()[..64].to_owned();
        let e = Roster::from_genesis_toml(&good.replacen(&first_id, &other, 1))
            .unwrap_err()
            .to_string();
        assert!(e.contains("does not match its keys"), "{e}");
    }
}
