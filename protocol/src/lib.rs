//! The pure core of Sentinel Mesh.
//!
//! This crate is to the `sentinel` daemon what `quinn-proto` is to `quinn`: it
//! owns the formats and rules and does no I/O of its own. There is no async
//! runtime, no socket, no clock and no OS randomness here — time arrives as
//! arguments (`now_ms`), randomness as seeds — so the daemon and the
//! simulator drive the very same code. The one exception is [`keyfile`],
//! which reads and writes the secret key file at a path the caller names.
//!
//! Layers, bottom up:
//! - [`codec`]: a strict binary codec (fixed-width integers, exact lengths,
//!   no trailing bytes, re-encode-and-compare).
//! - [`identity`]: hybrid Ed25519 + ML-DSA-65 identities; both signatures
//!   must verify. [`keyfile`] stores the secret seed.
//! - [`roster`]: the closed membership, loaded from a genesis file; it fixes
//!   the [`roster::MeshId`] that every signature is bound to.
//! - [`envelope`]: the signed frame every message travels in, verified over
//!   the exact received bytes before anything reads its payload.
//! - [`replay`]: per-sender replay windows and issued-at checks.
//! - [`batch`]: one signature over a Merkle root of many records, with proofs
//!   that let one record be checked alone.
//! - [`telemetry`]: the signed report's payload; [`message`]: link messages;
//!   [`link`]: who is on the other end of a connection (channel binding).
//! - [`node`]: the mesh node — membership (HyParView views, SWIM/Lifeguard
//!   failure detection) and dissemination of reports (push, relay, pull) —
//!   behind one `handle_*` / `poll_*` surface, generic over [`crypto`] so the
//!   simulator can model signature costs. [`rng`] makes its choices
//!   reproducible.
//! - [`evidence`]: self-proving faults (equivocation), the evidence and
//!   quarantine certificates anyone can verify with the roster, and the
//!   quarantine state (TTL, cap on the quarantined share of the roster).
//! - [`features`]: the versioned feature schema and its extraction from
//!   signed reports; [`suspicion`]: per-neighbour hysteresis over the scores
//!   the host's model returns.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod batch;
pub mod codec;
pub mod crypto;
pub mod envelope;
pub mod error;
pub mod evidence;
pub mod features;
#[doc(hidden)]
pub mod fuzzing;
mod gossip;
#[cfg(test)]
mod harness;
pub mod identity;
pub mod keyfile;
pub mod link;
mod membership;
pub mod message;
pub mod node;
pub mod quorum;
pub mod replay;
pub mod rng;
pub mod roster;
pub mod suspicion;
pub mod telemetry;

pub use error::{Error, InvalidMessage, PeerMisbehaved, Result};
pub use identity::{HybridSignature, Identity, NodeId, PublicIdentity, Suite};
pub use node::{Config, Event, Node, Transmit};
pub use roster::{MeshId, Roster};
