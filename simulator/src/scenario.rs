//! Scenario files: what to simulate.
//!
//! A scenario is one TOML file (see `simulator/scenarios/`). Every field has a
//! default, so a file states only what it changes; unknown fields are errors
//! that name the field, and values are range-checked with messages that name
//! the field and the allowed range.

use std::path::Path;

use serde::{Deserialize, Serialize};

/// Why a scenario was refused.
#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    /// The file could not be read.
    #[error("cannot read scenario {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// The TOML did not parse or has unknown or mistyped fields.
    #[error("scenario {path}: {message}")]
    Parse {
        /// The file.
        path: String,
        /// The parser's message (it names the field and line).
        message: String,
    },
    /// A value is out of range.
    #[error("scenario field {field}: {rule}")]
    Invalid {
        /// The field.
        field: &'static str,
        /// The rule it breaks.
        rule: String,
    },
}

/// Signature handling.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CryptoMode {
    /// Every signature made and verified (identical bytes verified once).
    Real,
    /// Real sizes, checksum instead of signature, CPU cost accounted.
    Modelled,
}

/// A whole scenario.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Scenario {
    /// A name for reports.
    pub name: String,
    /// Number of sentinels.
    pub nodes: usize,
    /// Simulated time in seconds.
    pub duration_s: u64,
    /// Seed of every random choice in the run.
    pub seed: u64,
    /// Signature handling.
    pub crypto: CryptoMode,
    /// Nodes boot one after another this many milliseconds apart.
    pub boot_stagger_ms: u64,
    /// Metrics ignore the first seconds (the mesh forming).
    pub warmup_s: u64,
    /// A delivery counts as on time within this many milliseconds.
    pub deadline_ms: u64,
    /// The network.
    pub network: Network,
    /// Per-node clock skew.
    pub clock: Clock,
    /// Overloaded hosts.
    pub overload: Overload,
    /// Background churn.
    pub churn: Churn,
    /// Honest nodes whose own network degrades: they may accuse their
    /// neighbours wrongly, and must get no one quarantined.
    pub degraded: Degraded,
    /// CPU cost model.
    pub cost: Cost,
    /// Scheduled actions.
    pub events: Vec<Action>,
    /// Protocol tunables that differ from the defaults.
    pub protocol: ProtocolOverrides,
    /// Adversaries of the attack library.
    pub attackers: Vec<crate::adversary::Attackers>,
    /// Scoring and local suspicion.
    pub detection: crate::detect::DetectionSettings,
}

impl Default for Scenario {
    fn default() -> Self {
        Self {
            name: "unnamed".into(),
            nodes: 100,
            duration_s: 120,
            seed: 1,
            crypto: CryptoMode::Modelled,
            boot_stagger_ms: 10,
            warmup_s: 60,
            deadline_ms: 2_000,
            network: Network::default(),
            clock: Clock::default(),
            overload: Overload::default(),
            churn: Churn::default(),
            degraded: Degraded::default(),
            cost: Cost::default(),
            events: Vec::new(),
            protocol: ProtocolOverrides::default(),
            attackers: Vec::new(),
            detection: crate::detect::DetectionSettings::default(),
        }
    }
}

/// Links between sentinels.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Network {
    /// Median one-way latency of a link, ms. Each pair of nodes gets a fixed
    /// base latency from a log-normal distribution with this median.
    pub latency_median_ms: f64,
    /// Log-normal sigma of link base latencies.
    pub latency_sigma: f64,
    /// Per-message jitter added to the base, uniform in `0..=jitter_ms`.
    pub jitter_ms: u64,
    /// Probability that one packet is lost. Datagrams are dropped; stream
    /// packets are retransmitted after a probe timeout (as QUIC does).
    pub loss: f64,
    /// Each node's uplink, megabits per second (messages queue behind it).
    pub uplink_mbps: f64,
    /// Bytes of UDP/IP/QUIC overhead per packet.
    pub packet_overhead: usize,
    /// Largest QUIC payload per packet.
    pub packet_payload: usize,
}

impl Default for Network {
    fn default() -> Self {
        Self {
            latency_median_ms: 50.0,
            latency_sigma: 0.4,
            jitter_ms: 10,
            loss: 0.0,
            uplink_mbps: 100.0,
            packet_overhead: 48,
            packet_payload: 1_200,
        }
    }
}

/// Clock skew.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Clock {
    /// Each node's clock is off by a fixed amount uniform in ±`skew_ms`.
    pub skew_ms: u64,
}

impl Default for Clock {
    fn default() -> Self {
        Self { skew_ms: 250 }
    }
}

/// Overloaded hosts: they stall (process nothing) at random moments.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Overload {
    /// Fraction of nodes that are overloaded for the whole run.
    pub fraction: f64,
    /// Stalls per second on an overloaded node (Poisson).
    pub stalls_per_s: f64,
    /// Shortest stall, ms.
    pub stall_min_ms: u64,
    /// Longest stall, ms.
    pub stall_max_ms: u64,
}

impl Default for Overload {
    fn default() -> Self {
        Self {
            fraction: 0.0,
            stalls_per_s: 0.3,
            stall_min_ms: 100,
            stall_max_ms: 1_500,
        }
    }
}

/// Degraded hosts: honest nodes (never attackers or victims) that from
/// `start_s` on lose `inbound_loss` of the packets sent to them, on top of
/// the network's loss. Their own measurements then make their neighbours
/// look as if they claimed traffic they never sent and missed probes.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Degraded {
    /// How many nodes.
    pub count: usize,
    /// When their network degrades, seconds from the run's start.
    pub start_s: f64,
    /// Fraction of the packets sent to them that are lost.
    pub inbound_loss: f64,
}

/// Background churn: some nodes crash and come back, again and again.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Churn {
    /// Fraction of nodes that churn.
    pub fraction: f64,
    /// Mean time up between crashes, s (exponential).
    pub mean_up_s: f64,
    /// Mean time down before restart, s (exponential).
    pub mean_down_s: f64,
}

impl Default for Churn {
    fn default() -> Self {
        Self {
            fraction: 0.0,
            mean_up_s: 300.0,
            mean_down_s: 30.0,
        }
    }
}

/// What signing and verifying cost, for the CPU estimate. Defaults are the
/// criterion figures in `ARCHITECTURE.md` (aws-lc-rs on this machine kind).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Cost {
    /// One hybrid signature, µs.
    pub sign_us: f64,
    /// One hybrid verification, µs.
    pub verify_us: f64,
    /// Handling any other message or timer, µs.
    pub event_us: f64,
}

impl Default for Cost {
    fn default() -> Self {
        Self {
            sign_us: 125.0,
            verify_us: 70.0,
            event_us: 2.0,
        }
    }
}

/// What a scheduled action does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ActionKind {
    /// Crash a random `fraction` of the live nodes at once.
    Crash,
    /// Restart every crashed node (new epoch; they rejoin).
    Restart,
    /// A random `fraction` of the live nodes leave gracefully.
    Leave,
    /// Split the nodes into `groups` by index range; no traffic crosses.
    Partition,
    /// End any partition.
    Heal,
    /// `count` random live nodes start equivocating: each of their reports
    /// goes out in two signed versions under one (epoch, sequence), to
    /// different neighbours — what two processes sharing one key and one
    /// data directory do.
    Equivocate,
    /// Crash a random `fraction` of the live nodes and restart them at once
    /// from a data directory restored from the copy taken at their first
    /// boot (an old backup): their recorded epoch goes back.
    Restore,
}

/// One scheduled action.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Action {
    /// When, in seconds from the start.
    pub at_s: f64,
    /// What.
    pub action: ActionKind,
    /// For crash and leave: the fraction of live nodes.
    #[serde(default)]
    pub fraction: f64,
    /// For partition: the number of groups.
    #[serde(default)]
    pub groups: usize,
    /// For equivocate: how many nodes.
    #[serde(default)]
    pub count: usize,
}

/// Protocol tunables a scenario may change (the rest keep their defaults).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProtocolOverrides {
    /// `Config::max_active`.
    pub max_active: Option<usize>,
    /// `Config::samples_per_report`.
    pub samples_per_report: Option<usize>,
    /// `Config::sample_interval_ms`.
    pub sample_interval_ms: Option<u64>,
    /// `Config::probe_interval_ms`.
    pub probe_interval_ms: Option<u64>,
    /// `Config::suspicion_timeout_ms`.
    pub suspicion_timeout_ms: Option<u64>,
    /// `Config::pull_interval_ms`.
    pub pull_interval_ms: Option<u64>,
}

impl ProtocolOverrides {
    /// The node config these overrides give.
    #[must_use]
    pub fn config(&self) -> sentinel_protocol::Config {
        let mut c = sentinel_protocol::Config::default();
        if let Some(v) = self.max_active {
            c.max_active = v;
        }
        if let Some(v) = self.samples_per_report {
            c.samples_per_report = v;
        }
        if let Some(v) = self.sample_interval_ms {
            c.sample_interval_ms = v;
        }
        if let Some(v) = self.probe_interval_ms {
            c.probe_interval_ms = v;
        }
        if let Some(v) = self.suspicion_timeout_ms {
            c.suspicion_timeout_ms = v;
        }
        if let Some(v) = self.pull_interval_ms {
            c.pull_interval_ms = v;
        }
        c
    }
}

fn fraction(field: &'static str, v: f64) -> Result<(), ScenarioError> {
    if (0.0..=1.0).contains(&v) {
        Ok(())
    } else {
        Err(ScenarioError::Invalid {
            field,
            rule: format!("must be between 0 and 1, got {v}"),
        })
    }
}

fn positive(field: &'static str, v: f64) -> Result<(), ScenarioError> {
    if v.is_finite() && v > 0.0 {
        Ok(())
    } else {
        Err(ScenarioError::Invalid {
            field,
            rule: format!("must be a positive number, got {v}"),
        })
    }
}

impl Scenario {
    /// Reads and checks a scenario file.
    ///
    /// # Errors
    /// [`ScenarioError`] naming the file and field.
    pub fn load(path: &Path) -> Result<Self, ScenarioError> {
        let text = std::fs::read_to_string(path).map_err(|source| ScenarioError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::parse(&text).map_err(|e| match e {
            ScenarioError::Parse { message, .. } => ScenarioError::Parse {
                path: path.display().to_string(),
                message,
            },
            other => other,
        })
    }

    /// Parses and checks scenario TOML.
    ///
    /// # Errors
    /// [`ScenarioError`].
    pub fn parse(text: &str) -> Result<Self, ScenarioError> {
        let s: Scenario = toml::from_str(text).map_err(|e| ScenarioError::Parse {
            path: "<text>".into(),
            message: e.to_string(),
        })?;
        s.validate()?;
        Ok(s)
    }

    /// Checks every range.
    ///
    /// # Errors
    /// [`ScenarioError::Invalid`] naming the field.
    pub fn validate(&self) -> Result<(), ScenarioError> {
        if !(2..=100_000).contains(&self.nodes) {
            return Err(ScenarioError::Invalid {
                field: "nodes",
                rule: format!("must be 2 to 100000, got {}", self.nodes),
            });
        }
        if self.duration_s == 0 || self.duration_s > 7 * 86_400 {
            return Err(ScenarioError::Invalid {
                field: "duration_s",
                rule: "must be 1 s to 7 days".into(),
            });
        }
        if self.warmup_s >= self.duration_s {
            return Err(ScenarioError::Invalid {
                field: "warmup_s",
                rule: "must be shorter than duration_s".into(),
            });
        }
        positive("network.latency_median_ms", self.network.latency_median_ms)?;
        positive("network.uplink_mbps", self.network.uplink_mbps)?;
        if !(0.0..=3.0).contains(&self.network.latency_sigma) {
            return Err(ScenarioError::Invalid {
                field: "network.latency_sigma",
                rule: "must be 0 to 3".into(),
            });
        }
        if self.network.loss >= 0.5 || self.network.loss < 0.0 {
            return Err(ScenarioError::Invalid {
                field: "network.loss",
                rule: "must be 0 to below 0.5".into(),
            });
        }
        if self.network.packet_payload < 100 {
            return Err(ScenarioError::Invalid {
                field: "network.packet_payload",
                rule: "must be at least 100 bytes".into(),
            });
        }
        fraction("overload.fraction", self.overload.fraction)?;
        fraction("churn.fraction", self.churn.fraction)?;
        if self.overload.fraction > 0.0 {
            positive("overload.stalls_per_s", self.overload.stalls_per_s)?;
        }
        if self.overload.stall_min_ms > self.overload.stall_max_ms {
            return Err(ScenarioError::Invalid {
                field: "overload.stall_min_ms",
                rule: "must not exceed stall_max_ms".into(),
            });
        }
        if self.churn.fraction > 0.0 {
            positive("churn.mean_up_s", self.churn.mean_up_s)?;
            positive("churn.mean_down_s", self.churn.mean_down_s)?;
        }
        for a in &self.events {
            if !(0.0..=self.duration_s as f64).contains(&a.at_s) {
                return Err(ScenarioError::Invalid {
                    field: "events.at_s",
                    rule: format!("{} is outside the run", a.at_s),
                });
            }
            match a.action {
                ActionKind::Crash | ActionKind::Leave | ActionKind::Restore => {
                    fraction("events.fraction", a.fraction)?;
                }
                ActionKind::Equivocate if a.count == 0 || a.count > self.nodes => {
                    return Err(ScenarioError::Invalid {
                        field: "events.count",
                        rule: format!("equivocate needs 1 to {} nodes", self.nodes),
                    });
                }
                ActionKind::Partition if a.groups < 2 => {
                    return Err(ScenarioError::Invalid {
                        field: "events.groups",
                        rule: "a partition needs at least 2 groups".into(),
                    });
                }
                _ => {}
            }
        }
        let attackers: usize = self.attackers.iter().map(|a| a.count).sum();
        let victims = self
            .attackers
            .iter()
            .filter(|a| {
                matches!(
                    a.kind,
                    crate::adversary::AttackKind::Framer | crate::adversary::AttackKind::Sybil
                )
            })
            .count();
        if attackers + victims + self.degraded.count > self.nodes {
            return Err(ScenarioError::Invalid {
                field: "attackers.count",
                rule: format!(
                    "{attackers} attackers, {victims} framing victims and {} degraded hosts do \
                     not fit in {} nodes",
                    self.degraded.count, self.nodes
                ),
            });
        }
        let d = &self.degraded;
        if !(0.0..1.0).contains(&d.inbound_loss) {
            return Err(ScenarioError::Invalid {
                field: "degraded.inbound_loss",
                rule: format!("must be at least 0 and below 1, got {}", d.inbound_loss),
            });
        }
        if !(0.0..=self.duration_s as f64).contains(&d.start_s) {
            return Err(ScenarioError::Invalid {
                field: "degraded.start_s",
                rule: format!("{} is outside the run", d.start_s),
            });
        }
        for a in &self.attackers {
            if !(0.0..=self.duration_s as f64).contains(&a.start_s) {
                return Err(ScenarioError::Invalid {
                    field: "attackers.start_s",
                    rule: format!("{} is outside the run", a.start_s),
                });
            }
            if !(a.intensity.is_finite() && a.intensity > 0.0 && a.intensity <= 100.0) {
                return Err(ScenarioError::Invalid {
                    field: "attackers.intensity",
                    rule: format!("must be above 0 and at most 100, got {}", a.intensity),
                });
            }
            if !(a.ramp_s.is_finite() && a.ramp_s >= 0.0) {
                return Err(ScenarioError::Invalid {
                    field: "attackers.ramp_s",
                    rule: "must be 0 or more".into(),
                });
            }
            if (a.eclipse || a.weakest) && a.kind != crate::adversary::AttackKind::Framer {
                return Err(ScenarioError::Invalid {
                    field: if a.eclipse {
                        "attackers.eclipse"
                    } else {
                        "attackers.weakest"
                    },
                    rule: format!(
                        "only framers choose and crowd a victim, not {}",
                        a.kind.name()
                    ),
                });
            }
        }
        let d = &self.detection;
        for (field, v) in [("detection.raise", d.raise), ("detection.clear", d.clear)] {
            if !(0.0..=1.0).contains(&v) {
                return Err(ScenarioError::Invalid {
                    field,
                    rule: format!("must be between 0 and 1, got {v}"),
                });
            }
        }
        d.policy(true)
            .validate()
            .map_err(|e| ScenarioError::Invalid {
                field: "detection",
                rule: e.to_string(),
            })?;
        self.protocol
            .config()
            .validate()
            .map_err(|e| ScenarioError::Invalid {
                field: "protocol",
                rule: e.to_string(),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_fill_in_and_bad_fields_are_named() {
        let s = Scenario::parse("name = \"x\"\nnodes = 10\n").unwrap();
        assert_eq!(s.network.latency_median_ms, 50.0);
        let e = Scenario::parse("nodez = 10\n").unwrap_err().to_string();
        assert!(e.contains("nodez"), "{e}");
        let e = Scenario::parse("[network]\nloss = 0.7\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("network.loss"), "{e}");
        let e = Scenario::parse("[[events]]\nat_s = 5.0\naction = \"partition\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("events.groups"), "{e}");
        let e = Scenario::parse("[protocol]\nmax_active = 0\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("max_active"), "{e}");
    }

    #[test]
    fn shipped_scenarios_parse() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios");
        let mut n = 0;
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "toml") {
                Scenario::load(&path).unwrap();
                n += 1;
            }
        }
        assert!(n >= 4);
    }
}
