//! The crate's error type.
//!
//! One root [`Error`] with sub-enums that say *whose* fault a failure is:
//! [`InvalidMessage`] for bytes that are not a well-formed frame (anyone may
//! have produced them, including a relay or the network), [`PeerMisbehaved`]
//! for well-formed frames that fail authentication or freshness checks. Neither
//! kind is, on its own, evidence against the *named sender*: a sender field can
//! be forged and a valid frame can be replayed by anyone. Callers count them
//! against the link they arrived on.

use std::path::PathBuf;

use crate::envelope::Kind;
use crate::identity::NodeId;

/// Every error this crate returns.
///
/// No variant leaves partial state behind: an operation that fails has changed
/// nothing (a frame that fails verification does not advance a replay window;
/// a key file that fails to load is not modified).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The bytes are not a well-formed, canonical frame. Drop them; count a
    /// local signal against the link they came from.
    #[error("invalid message: {0}")]
    InvalidMessage(#[from] InvalidMessage),
    /// A well-formed frame failed authentication or freshness. Drop it; count a
    /// local signal against the link it came from (not against the sender it
    /// names, which anyone can forge).
    #[error("peer misbehaved: {0}")]
    PeerMisbehaved(#[from] PeerMisbehaved),
    /// A key file could not be written or read. Nothing was loaded; an existing
    /// file was not changed.
    #[error("key file {path}: {kind}")]
    KeyFile {
        /// The file concerned.
        path: PathBuf,
        /// What went wrong.
        kind: KeyFileError,
    },
    /// A genesis/roster file was rejected. No roster was built.
    #[error("roster: {0}")]
    Roster(#[from] RosterError),
    /// The cryptographic library refused an operation on valid inputs (for
    /// example an ML-DSA signing failure). Nothing was produced; retrying is
    /// safe.
    #[error("cryptographic operation failed: {0}")]
    Crypto(&'static str),
    /// The caller asked for something outside the protocol's limits (for
    /// example a payload larger than its kind allows). Nothing was produced.
    #[error("invalid input: {0}")]
    InvalidInput(String),
}

/// Why a byte string is not a valid frame.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InvalidMessage {
    /// Fewer bytes than the structure needs.
    #[error("truncated: needed {needed} more bytes")]
    Truncated {
        /// How many more bytes the decoder needed.
        needed: usize,
    },
    /// Bytes left over after a complete structure.
    #[error("{count} trailing bytes after the end of the message")]
    TrailingBytes {
        /// How many bytes were left.
        count: usize,
    },
    /// The frame does not start with the expected magic number.
    #[error("bad magic number")]
    BadMagic,
    /// A version this implementation does not speak.
    #[error("unsupported version {0}")]
    UnsupportedVersion(u8),
    /// A signature suite this implementation does not know.
    #[error("unknown signature suite {0}")]
    UnknownSuite(u8),
    /// A message kind not on the closed list of kinds.
    #[error("unknown message kind {0}")]
    UnknownKind(u8),
    /// A frame or field larger than its hard limit.
    #[error("{what} is {len} bytes, over the limit of {limit}")]
    Oversize {
        /// What was too large.
        what: &'static str,
        /// Its length.
        len: usize,
        /// The limit for it.
        limit: usize,
    },
    /// The decoded value does not re-encode to the received bytes (for
    /// example a boolean byte other than 0 or 1).
    #[error("non-canonical encoding of {0}")]
    NonCanonical(&'static str),
    /// A field holds a value the structure forbids.
    #[error("invalid field {field}: {reason}")]
    InvalidField {
        /// The field.
        field: &'static str,
        /// Why it is invalid.
        reason: &'static str,
    },
    /// A batch envelope was expected and the frame is another kind.
    #[error("expected a {expected:?} envelope, got {got:?}")]
    WrongKind {
        /// The kind expected.
        expected: Kind,
        /// The kind received.
        got: Kind,
    },
}

/// Why a well-formed frame was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PeerMisbehaved {
    /// The sender is not on the roster. Its messages never count.
    #[error("sender {0} is not on the roster")]
    UnknownSender(NodeId),
    /// The frame's suite differs from the suite bound to the sender's roster
    /// entry (a downgrade attempt or a corrupt frame).
    #[error("sender {sender} is rostered with suite {rostered}, frame uses suite {used}")]
    SuiteMismatch {
        /// The sender named in the frame.
        sender: NodeId,
        /// The suite on the roster.
        rostered: u8,
        /// The suite in the frame.
        used: u8,
    },
    /// The Ed25519 signature does not verify.
    #[error("bad Ed25519 signature from {0}")]
    BadEd25519Signature(NodeId),
    /// The ML-DSA-65 signature does not verify.
    #[error("bad ML-DSA-65 signature from {0}")]
    BadMlDsaSignature(NodeId),
    /// A batch record's inclusion proof does not lead to the signed root.
    #[error("record {index} is not in the batch signed by {sender}")]
    BadInclusionProof {
        /// The batch's signer.
        sender: NodeId,
        /// The claimed index of the record.
        index: u32,
    },
    /// A link authentication was signed for another connection or role.
    #[error("link authentication from {0} is not bound to this connection")]
    LinkNotBound(NodeId),
    /// Already accepted this (sender, epoch, sequence).
    #[error("replay of {sender} epoch {epoch} sequence {sequence}")]
    Replay {
        /// The sender.
        sender: NodeId,
        /// The epoch.
        epoch: u64,
        /// The sequence number.
        sequence: u64,
    },
    /// The sequence number is older than the replay window remembers, so it
    /// cannot be told apart from a replay.
    #[error("sequence {sequence} from {sender} is older than the replay window")]
    TooOld {
        /// The sender.
        sender: NodeId,
        /// The sequence number.
        sequence: u64,
    },
    /// The epoch is older than one already seen from this sender (the sender
    /// starts a new epoch at every boot, so old epochs are over).
    #[error("stale epoch {epoch} from {sender}; current is {current}")]
    StaleEpoch {
        /// The sender.
        sender: NodeId,
        /// The epoch in the frame.
        epoch: u64,
        /// The newest epoch seen from the sender.
        current: u64,
    },
    /// The issued-at time is outside the accepted window around `now`.
    #[error("issued-at {issued_at_ms} ms is outside the window around now ({now_ms} ms)")]
    OutsideTimeWindow {
        /// The frame's issued-at time, in Unix milliseconds.
        issued_at_ms: u64,
        /// The receiver's time, in Unix milliseconds.
        now_ms: u64,
    },
}

/// Why a key file could not be written or read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyFileError {
    /// An operating-system error.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// The file exists already; keys are never overwritten.
    #[error("already exists; refusing to overwrite a key")]
    AlreadyExists,
    /// The secret key file is readable or writable by group or others.
    #[error(
        "permissions {mode:04o} are too open: a secret key must be readable by its owner only (run `chmod 600` on it)"
    )]
    TooOpen {
        /// The file's permission bits.
        mode: u32,
    },
    /// Not a regular file.
    #[error("not a regular file")]
    NotAFile,
    /// The contents are not a valid key file of a version we read.
    #[error("corrupt or unsupported key file: {0}")]
    Format(InvalidMessage),
    /// The file's recorded node id does not match the keys it holds.
    #[error("stored node id {stored} does not match the keys ({derived})")]
    IdMismatch {
        /// The id recorded in the file.
        stored: NodeId,
        /// The id derived from the keys.
        derived: NodeId,
    },
}

/// Why a roster (genesis file) was rejected.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RosterError {
    /// The file could not be read.
    #[error("reading {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The TOML does not parse or does not match the genesis schema.
    #[error("genesis file is not valid: {0}")]
    Parse(String),
    /// A member entry is invalid.
    #[error("member {index} ({name}): {reason}")]
    Member {
        /// Position in the file, from 0.
        index: usize,
        /// The member's label, or "" if none.
        name: String,
        /// What is wrong.
        reason: String,
    },
    /// The same identity is listed twice.
    #[error("member {index} duplicates node {id}")]
    Duplicate {
        /// Position of the second entry, from 0.
        index: usize,
        /// The duplicated node id.
        id: NodeId,
    },
    /// The roster has no members, or more than the limit.
    #[error("roster must have between 1 and {max} members, has {count}")]
    Size {
        /// Members found.
        count: usize,
        /// The limit.
        max: usize,
    },
}

impl From<KeyFileErrorAt> for Error {
    fn from(e: KeyFileErrorAt) -> Self {
        Error::KeyFile {
            path: e.0,
            kind: e.1,
        }
    }
}

/// A key file error with the path it concerns (internal helper for `?`).
pub(crate) struct KeyFileErrorAt(pub(crate) PathBuf, pub(crate) KeyFileError);

/// Convenience alias.
pub type Result<T, E = Error> = std::result::Result<T, E>;
