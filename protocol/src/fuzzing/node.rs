//! A node's state machine driven by a script of messages from its
//! neighbours: membership, gossip merge, suspicion and quarantine handling
//! on real traffic, reordered, repeated, corrupted and interleaved with
//! arbitrary bytes and timer jumps.

use std::collections::{BTreeSet, VecDeque};
use std::sync::{Arc, OnceLock};

use super::{NOW_MS, fixture};
use crate::codec::Codec;
use crate::crypto::{Crypto, ModelledCrypto};
use crate::envelope::{self, Kind};
use crate::identity::NodeId;
use crate::message::{MAX_MESSAGE_LEN, Message};
use crate::node::{Config, Event, Node};
use crate::telemetry::{HostSample, Report};

/// Longest script [`node_messages`] runs: the rest of an input is ignored,
/// which keeps each run short.
pub const MAX_STEPS: usize = 512;

/// Most messages of the mesh's traffic kept (a step names one by a byte,
/// and two more follow).
const KEPT: usize = 253;

/// One step of a script, decoded from the input by [`Step::read`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Deliver message `index` of [`traffic`] from the peer that sent it.
    Replay(u8),
    /// Deliver it from the other peer instead (a relay or a liar).
    Reflect(u8),
    /// Deliver it with the byte at `at` (modulo its length) XORed with
    /// `mask`.
    Corrupt {
        /// Which message.
        index: u8,
        /// Which byte.
        at: u16,
        /// Which bits.
        mask: u8,
    },
    /// Deliver `len` raw bytes taken from the input, from peer 1.
    Raw(u8),
    /// Let `ms` × 10 milliseconds pass, firing every timer due.
    Wait(u16),
}

impl Step {
    /// Encodes a step the way [`Step::read`] reads it (for seed scripts).
    pub fn write(self, out: &mut Vec<u8>) {
        match self {
            Step::Replay(i) => out.extend_from_slice(&[0, i]),
            Step::Reflect(i) => out.extend_from_slice(&[1, i]),
            Step::Corrupt { index, at, mask } => {
                out.extend_from_slice(&[2, index]);
                out.extend_from_slice(&at.to_be_bytes());
                out.push(mask);
            }
            Step::Raw(len) => out.extend_from_slice(&[3, len]),
            Step::Wait(ms) => {
                out.push(4);
                out.extend_from_slice(&ms.to_be_bytes());
            }
        }
    }

    fn read(data: &mut &[u8]) -> Option<Self> {
        let (&op, rest) = data.split_first()?;
        *data = rest;
        let mut byte = || {
            let (&b, rest) = data.split_first()?;
            *data = rest;
            Some(b)
        };
        Some(match op % 5 {
            0 => Step::Replay(byte()?),
            1 => Step::Reflect(byte()?),
            2 => Step::Corrupt {
                index: byte()?,
                at: u16::from_be_bytes([byte()?, byte()?]),
                mask: byte()?,
            },
            3 => Step::Raw(byte()?),
            _ => Step::Wait(u16::from_be_bytes([byte()?, byte()?])),
        })
    }
}

/// What the node did with a script.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Outcome {
    /// Reports it verified and stored.
    pub reports: usize,
    /// Messages it sent.
    pub transmits: usize,
    /// Members it quarantined on evidence it found or received.
    pub quarantined: BTreeSet<NodeId>,
}

/// The first 253 messages node 0 of the fuzz roster receives in a
/// three-node mesh (every node [`ModelledCrypto`], fixed seeds), and then
/// two reports of node 1 that share one stamp: an equivocation. Each is
/// `(sender index, message)`.
///
/// # Panics
/// Never with the fixed fixture.
pub fn traffic() -> &'static [(usize, Arc<[u8]>)] {
    static T: OnceLock<Vec<(usize, Arc<[u8]>)>> = OnceLock::new();
    T.get_or_init(|| {
        let f = fixture();
        let roster = Arc::new(f.roster.clone());
        let ids: Vec<NodeId> = f.members.iter().map(crate::Identity::id).collect();
        let mut nodes: Vec<Node<ModelledCrypto>> = (0..3u16)
            .map(|i| {
                let at = usize::from(i);
                let mut n = Node::new(
                    Config::default(),
                    roster.clone(),
                    ModelledCrypto::new(ids[at]),
                    1,
                    u64::from(i) + 1,
                    NOW_MS,
                )
                .expect("fixture nodes are on the roster");
                n.set_host_sample(HostSample {
                    cpu_permille: 100 * (i + 1),
                    ..HostSample::default()
                });
                n.join(NOW_MS);
                n
            })
            .collect();
        let mut received = Vec::new();
        let mut queue = VecDeque::new();
        let mut now = NOW_MS;
        while received.len() < KEPT && now < NOW_MS + 600_000 {
            for (i, n) in nodes.iter_mut().enumerate() {
                while let Some(t) = n.poll_transmit() {
                    queue.push_back((i, t.to, t.bytes));
                }
                while n.poll_event().is_some() {}
            }
            if let Some((from, to, bytes)) = queue.pop_front() {
                let to = ids.iter().position(|id| *id == to).expect("rostered");
                if to == 0 {
                    received.push((from, bytes.clone()));
                }
                nodes[to].handle_message(now, ids[from], bytes);
                continue;
            }
            now = nodes
                .iter()
                .filter_map(Node::poll_timeout)
                .min()
                .unwrap_or(now + 1_000)
                .max(now + 1);
            for n in &mut nodes {
                if n.poll_timeout().is_some_and(|t| t <= now) {
                    n.handle_timeout(now);
                }
            }
        }
        received.truncate(KEPT);
        received.extend(equivocation(&received, ids[1]));
        received
    })
}

/// Two report messages signed by `signer` under one stamp with different
/// contents, made from its first report in `received` (so that they fall
/// inside a new node's time window from the start).
fn equivocation(received: &[(usize, Arc<[u8]>)], signer: NodeId) -> Vec<(usize, Arc<[u8]>)> {
    let f = fixture();
    let own = received.iter().find_map(|(_, m)| {
        let Ok(Message::Report(frame)) = Message::decode(m) else {
            return None;
        };
        let (header, payload) = envelope::verified_parts(frame).ok()?;
        (header.sender == signer).then(|| (header.stamp, payload.to_vec()))
    });
    let Some((mut stamp, payload)) = own else {
        return Vec::new();
    };
    stamp.sequence += 1;
    stamp.issued_at_ms += 1;
    let report = Report::decode_exact(&payload).expect("the node's own report decodes");
    [0u16, 1]
        .into_iter()
        .map(|extra| {
            let mut r = report.clone();
            r.host[0].cpu_permille = r.host[0].cpu_permille.saturating_add(extra) % 1001;
            let frame = ModelledCrypto::new(signer)
                .seal(f.roster.mesh_id(), Kind::Telemetry, stamp, &r.to_bytes())
                .expect("within limits");
            (1, Arc::from(Message::Report(&frame).encode()))
        })
        .collect()
}

/// Runs a script (a sequence of [`Step`]s read from `data`) against a new
/// node 0 of the fuzz roster and checks, after every step, that each
/// message it sends is a canonical link message within the size limit,
/// addressed to another member, and that it stores no report twice.
/// Panics only if an invariant breaks.
///
/// # Panics
/// When an invariant breaks.
pub fn node_messages(mut data: &[u8]) -> Outcome {
    let f = fixture();
    let ids: Vec<NodeId> = f.members.iter().map(crate::Identity::id).collect();
    let pool = traffic();
    let mut node = Node::new(
        Config::default(),
        Arc::new(f.roster.clone()),
        ModelledCrypto::new(ids[0]),
        1,
        7,
        NOW_MS,
    )
    .expect("node 0 is on the roster");
    node.join(NOW_MS);
    let mut now = NOW_MS;
    let mut out = Outcome::default();
    let mut stored = BTreeSet::new();
    let pick = |i: u8| &pool[usize::from(i) % pool.len()];
    for _ in 0..MAX_STEPS {
        let Some(step) = Step::read(&mut data) else {
            break;
        };
        match step {
            Step::Replay(i) => {
                let (from, m) = pick(i);
                node.handle_message(now, ids[*from], m.clone());
            }
            Step::Reflect(i) => {
                let (from, m) = pick(i);
                let other = if *from == 1 { 2 } else { 1 };
                node.handle_message(now, ids[other], m.clone());
            }
            Step::Corrupt { index, at, mask } => {
                let (from, m) = pick(index);
                let mut bytes = m.to_vec();
                let at = usize::from(at) % bytes.len();
                bytes[at] ^= mask;
                node.handle_message(now, ids[*from], bytes.into());
            }
            Step::Raw(len) => {
                let len = usize::from(len).min(data.len());
                let (raw, rest) = data.split_at(len);
                data = rest;
                node.handle_message(now, ids[1], raw.into());
            }
            Step::Wait(ms) => {
                now += u64::from(ms) * 10;
                while node.poll_timeout().is_some_and(|t| t <= now) {
                    node.handle_timeout(now);
                }
            }
        }
        while let Some(t) = node.poll_transmit() {
            assert!(
                t.to != ids[0] && f.roster.get(&t.to).is_some(),
                "sent to {}",
                t.to
            );
            assert!(t.bytes.len() <= MAX_MESSAGE_LEN, "oversize message sent");
            let m = Message::decode(&t.bytes).expect("the node sends only valid messages");
            assert_eq!(&m.encode()[..], &t.bytes[..], "non-canonical message sent");
            out.transmits += 1;
        }
        while let Some(e) = node.poll_event() {
            match e {
                Event::ReportReceived { origin, stamp, .. } => {
                    let key = (origin, stamp.epoch, stamp.sequence);
                    assert!(stored.insert(key), "report {key:?} stored twice");
                    out.reports += 1;
                }
                Event::Quarantined { subject, .. } => {
                    assert!(subject != ids[0], "node 0 quarantined itself");
                    out.quarantined.insert(subject);
                }
                _ => {}
            }
        }
    }
    out
}

/// Seed scripts: the whole traffic in order, with time passing; the
/// equivocation alone; and the traffic reflected by the wrong peer.
#[must_use]
pub fn node_seeds() -> Vec<(String, Vec<u8>)> {
    let n = u8::try_from(traffic().len()).expect("at most 256 messages");
    let script = |steps: &mut dyn Iterator<Item = Step>| {
        let mut out = Vec::new();
        for s in steps {
            s.write(&mut out);
        }
        out
    };
    let in_order = |reflect: bool| {
        (0..n - 2).flat_map(move |i| {
            let deliver = if reflect {
                Step::Reflect(i)
            } else {
                Step::Replay(i)
            };
            [deliver, Step::Wait(if i % 8 == 7 { 50 } else { 1 })]
        })
    };
    vec![
        ("valid-traffic".to_owned(), script(&mut in_order(false))),
        (
            "valid-equivocation".to_owned(),
            script(&mut [Step::Replay(n - 2), Step::Replay(n - 1)].into_iter()),
        ),
        ("valid-reflected".to_owned(), script(&mut in_order(true))),
        (
            "invalid-corrupt".to_owned(),
            script(&mut (0..n).map(|i| Step::Corrupt {
                index: i,
                at: u16::from(i) * 7,
                mask: 0x41,
            })),
        ),
    ]
}
