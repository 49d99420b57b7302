//! The attacker library: what each adversary kind does to its traffic and
//! its signed reports, and the ground-truth labels of its windows.
//!
//! An adversary runs the honest [`sentinel_protocol::Node`] underneath (it
//! has to stay in the mesh to do harm) and the engine applies its kind's
//! behaviour around it:
//!
//! | kind | what it does | seen by |
//! |---|---|---|
//! | `flooder` | pings each neighbour at `60 × intensity` per second | messages in, rate limiting |
//! | `forger` | sends `4 × intensity` reports a second per neighbour with a broken signature | invalid frames |
//! | `replayer` | re-sends `4 × intensity` of its own reports at least 20 s old (kept from boot) a second per neighbour | invalid frames (a replay) |
//! | `liar` | signs reports claiming `1 + 4 × intensity` times the traffic it had, half the RTT | claims against the other ends |
//! | `framer` | reports a victim (shared by its entry's framers) sending `10 × intensity` invalid frames a second, missing probes and withholding `8 × intensity` of 24 relays; with `eclipse`, also joins the victim every second it is not its neighbour; with `weakest`, the victim is the honest node with the most framers of the entry among its neighbours when the attack starts | must *not* move the victim |
//! | `freerider` | relays no one's reports and answers no pulls | reciprocity |
//! | `compromised` | host metrics of a compromised machine: CPU and memory near full, node errors, `10 ×` outbound bytes | claims |
//! | `drip` | a forger and flooder whose intensity ramps from 0 to full over `ramp_s` | slowly |
//! | `flash` | honest until `start_s`, then a flooder and forger at once | suddenly |
//! | `sybil` | each second sends each neighbour a voted certificate against a victim (shared by its entry's sybils) whose yes votes are signed by `8 × intensity` fresh unrostered keys, and an accusation of the victim signed by one of them | must *not* move the victim; invalid frames |
//! | `mimic` | drops `30 × intensity` % of the reports it should relay and pads its message count with pings so its ratios look honest | barely |
//!
//! Labels: a (subject, window) is malicious when the subject's attack ran
//! for the whole window ([`Attack::fraction`] is 1); windows before the
//! start (a flash attacker's quiet period) are not.

use serde::{Deserialize, Serialize};

use sentinel_protocol::NodeId;
use sentinel_protocol::features::Relays;
use sentinel_protocol::telemetry::{LinkSample, Observation, Report};

/// Relay claims a framer says it checked of its victim (about what eight
/// reports' checks hold); it says a third of them, times its intensity,
/// were withheld.
const FRAMED_RELAY_CLAIMS: u16 = 24;

/// The adversary kinds (see the module documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AttackKind {
    /// Floods its neighbours with messages.
    Flooder,
    /// Sends frames with bad signatures.
    Forger,
    /// Re-sends old reports.
    Replayer,
    /// Its self-reported metrics disagree with what neighbours observe.
    Liar,
    /// Reports false observations about an honest victim.
    Framer,
    /// Does not relay.
    Freerider,
    /// Resource anomalies on its host.
    Compromised,
    /// Ramps a flood and forgeries up slowly.
    Drip,
    /// Behaves, then attacks.
    Flash,
    /// Does real harm (drops relays) while keeping its features honest-looking.
    Mimic,
    /// Votes with keys that are not in the roster.
    Sybil,
}

impl AttackKind {
    /// Every kind, in a fixed order.
    pub const ALL: [AttackKind; 11] = [
        AttackKind::Flooder,
        AttackKind::Forger,
        AttackKind::Replayer,
        AttackKind::Liar,
        AttackKind::Framer,
        AttackKind::Freerider,
        AttackKind::Compromised,
        AttackKind::Drip,
        AttackKind::Flash,
        AttackKind::Mimic,
        AttackKind::Sybil,
    ];

    /// The name used in scenarios, datasets and reports.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            AttackKind::Flooder => "flooder",
            AttackKind::Forger => "forger",
            AttackKind::Replayer => "replayer",
            AttackKind::Liar => "liar",
            AttackKind::Framer => "framer",
            AttackKind::Freerider => "freerider",
            AttackKind::Compromised => "compromised",
            AttackKind::Drip => "drip",
            AttackKind::Flash => "flash",
            AttackKind::Mimic => "mimic",
            AttackKind::Sybil => "sybil",
        }
    }

    /// Flagrant kinds (the detection target is stricter for them).
    #[must_use]
    pub fn flagrant(self) -> bool {
        matches!(
            self,
            AttackKind::Flooder | AttackKind::Forger | AttackKind::Replayer | AttackKind::Liar
        )
    }
}

/// One `[[attackers]]` entry of a scenario.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Attackers {
    /// The kind.
    pub kind: AttackKind,
    /// How many nodes (chosen at random among those not attacking yet).
    pub count: usize,
    /// When the attack starts, seconds from the run's start.
    pub start_s: f64,
    /// Strength, 1.0 being the documented default rates.
    #[serde(default = "one")]
    pub intensity: f64,
    /// For `drip`: seconds to reach full intensity.
    #[serde(default)]
    pub ramp_s: f64,
    /// For `framer`: also try to eclipse the victim, joining it every
    /// second while not its neighbour, so that framers crowd out its
    /// honest neighbours (its reporters).
    #[serde(default)]
    pub eclipse: bool,
    /// For `framer`: when the attack starts, the entry's framers pick as
    /// their victim the honest node with the most of them among its
    /// neighbours (they can read that from the signed reports), instead of
    /// one drawn at random.
    #[serde(default)]
    pub weakest: bool,
}

fn one() -> f64 {
    1.0
}

/// A node's attack, as the engine runs it.
#[derive(Debug, Clone)]
pub struct Attack {
    /// The kind.
    pub kind: AttackKind,
    /// Start, µs of simulated time.
    pub start_us: u64,
    /// Strength.
    pub intensity: f64,
    /// Ramp for `drip`, µs.
    pub ramp_us: u64,
    /// For framers and sybils: the victim.
    pub victim: Option<NodeId>,
    /// For framers: join the victim whenever not its neighbour.
    pub eclipse: bool,
    /// For framers: pick the victim when the attack starts (see
    /// [`Attackers::weakest`]); cleared once picked.
    pub weakest: bool,
    /// Own old report messages, for a replayer.
    pub old_reports: std::collections::VecDeque<(u64, std::sync::Arc<[u8]>)>,
    /// Forgeries sent so far (distinct sequences).
    pub forged: u64,
}

impl Attack {
    /// Whether the attack runs at `now_us`.
    #[must_use]
    pub fn active(&self, now_us: u64) -> bool {
        now_us >= self.start_us
    }

    /// Intensity at `now_us` (0 before the start; ramped for `drip`).
    #[must_use]
    pub fn strength(&self, now_us: u64) -> f64 {
        if !self.active(now_us) {
            return 0.0;
        }
        if self.kind == AttackKind::Drip && self.ramp_us > 0 {
            let t = (now_us - self.start_us) as f64 / self.ramp_us as f64;
            return self.intensity * t.min(1.0);
        }
        self.intensity
    }

    /// Share of `[end_us - len_us, end_us]` during which the attack ran.
    #[must_use]
    pub fn fraction(&self, end_us: u64, len_us: u64) -> f32 {
        let start = end_us.saturating_sub(len_us);
        if end_us <= self.start_us {
            return 0.0;
        }
        let from = start.max(self.start_us);
        #[allow(clippy::cast_possible_truncation, reason = "a ratio in [0, 1]")]
        let f = ((end_us - from) as f64 / len_us.max(1) as f64) as f32;
        f.min(1.0)
    }
}

fn scale16(v: u16, k: f64) -> u16 {
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        reason = "saturating float-to-int cast of a non-negative product"
    )]
    let r = (f64::from(v) * k) as u16;
    r
}

fn scale32(v: u32, k: f64) -> u32 {
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        reason = "saturating float-to-int cast of a non-negative product"
    )]
    let r = (f64::from(v) * k) as u32;
    r
}

/// Rewrites a liar's or framer's report before it is signed again.
/// Returns false when the kind does not touch reports.
pub fn rewrite(attack: &Attack, strength: f64, report: &mut Report) -> bool {
    match attack.kind {
        AttackKind::Liar => {
            let k = 1.0 + 4.0 * strength;
            for o in &mut report.neighbours {
                for s in &mut o.samples {
                    s.messages_out = scale16(s.messages_out, k);
                    s.messages_in = scale16(s.messages_in, k);
                    s.bytes_out = scale32(s.bytes_out, k);
                    s.bytes_in = scale32(s.bytes_in, k);
                    if s.rtt_ms != LinkSample::NO_RTT {
                        s.rtt_ms /= 2;
                    }
                }
            }
            true
        }
        AttackKind::Framer => {
            let Some(victim) = attack.victim else {
                return false;
            };
            let n = report.host.len();
            let i = match report
                .neighbours
                .binary_search_by(|o| o.neighbour.cmp(&victim))
            {
                Ok(i) => i,
                Err(i) => {
                    // Claim a link it does not have.
                    let quiet = LinkSample {
                        messages_in: 3,
                        messages_out: 3,
                        bytes_in: 2_000,
                        bytes_out: 2_000,
                        probes_sent: 1,
                        rtt_ms: 60,
                        ..LinkSample::default()
                    };
                    report.neighbours.insert(
                        i,
                        Observation {
                            neighbour: victim,
                            claimed_epoch: 0,
                            claimed_sequence: 0,
                            relays: Relays::default(),
                            samples: vec![quiet; n],
                        },
                    );
                    if report.neighbours.len() > sentinel_protocol::telemetry::MAX_NEIGHBOURS {
                        report.neighbours.remove(if i == 0 { 1 } else { 0 });
                    }
                    match report
                        .neighbours
                        .binary_search_by(|o| o.neighbour.cmp(&victim))
                    {
                        Ok(i) => i,
                        Err(_) => return false,
                    }
                }
            };
            // And that the victim withholds the relays it owes.
            let claimed = report.neighbours[i].relays.claimed.max(FRAMED_RELAY_CLAIMS);
            report.neighbours[i].relays = Relays {
                claimed,
                missing: scale16(FRAMED_RELAY_CLAIMS / 3, strength).clamp(1, claimed),
            };
            for s in &mut report.neighbours[i].samples {
                s.invalid = s.invalid.saturating_add(scale16(10, strength).max(1));
                s.probes_failed = s.probes_sent.max(1);
                s.probes_sent = s.probes_sent.max(1);
                s.rtt_ms = LinkSample::NO_RTT;
            }
            true
        }
        _ => false,
    }
}
