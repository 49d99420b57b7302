//! `sentinel.toml`: one file, every field documented, `SENTINEL_*`
//! environment overrides, unknown keys and bad values rejected by name.
//!
//! Relative paths are relative to the directory holding the config file.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The sections, in file order (also the first word of an env override).
const SECTIONS: [&str; 11] = [
    "node",
    "quic",
    "api",
    "storage",
    "log",
    "collect",
    "enforce",
    "detection",
    "quorum",
    "alerts",
    "testing",
];

/// The whole configuration.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Identity, roster and data files.
    pub node: NodeSection,
    /// The mesh transport.
    pub quic: QuicSection,
    /// The admin HTTP API.
    pub api: ApiSection,
    /// The database.
    pub storage: StorageSection,
    /// Logging.
    pub log: LogSection,
    /// Host and guarded-node metrics.
    pub collect: CollectSection,
    /// `[enforce]`.
    pub enforce: EnforceSection,
    /// `[detection]`: scoring neighbours with a model.
    pub detection: DetectionSection,
    /// `[quorum]`: accusing and voting on quarantines.
    pub quorum: QuorumSection,
    /// `[alerts]`: webhooks.
    pub alerts: AlertsSection,
    /// `[testing]`: misbehaviour for demos and tests; never in production.
    pub testing: TestingSection,
}

/// `[quorum]`: voted quarantine. A sentinel whose local suspicion of a
/// neighbour is raised accuses it before a committee of members; each
/// member votes on its own view of the signed evidence, and two thirds of
/// the committee's seats make a certificate every member enforces
/// (`ARCHITECTURE.md`, "Voted quarantine"). Needs `[detection]` on: the
/// loaded model's hash is what accusations and votes pin.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct QuorumSection {
    /// Accuse and vote. Default true (off when detection is off).
    pub enabled: bool,
    /// Own-view score (0 to 1) at or above which this sentinel votes yes,
    /// and that its accusations need. Default 0.95.
    pub vote_threshold: f32,
    /// Accusations this sentinel makes, and accepts from one accuser, per
    /// hour, 1 to 1,000. Default 12.
    pub accusations_per_hour: u16,
    /// How long a voted quarantine lasts, minutes, 1 to 10,080. Every
    /// member must use the same value (certificates name it). Default 60.
    pub quarantine_minutes: u64,
}

impl Default for QuorumSection {
    fn default() -> Self {
        Self {
            enabled: true,
            vote_threshold: 0.95,
            accusations_per_hour: 12,
            quarantine_minutes: 60,
        }
    }
}

/// `[alerts]`: alert webhooks per the Standard Webhooks spec, through a
/// durable outbox in the database (`ARCHITECTURE.md`, "Alerts").
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct AlertsSection {
    /// Node ids (hex) that never alert, on any endpoint. Default none.
    pub never_alert: Vec<String>,
    /// One delivery attempt's deadline, ms, 100 to 120,000. Default 10,000.
    pub timeout_ms: u64,
    /// First retry delay, ms, 100 to `retry_max_ms`; it doubles per
    /// attempt, each delay drawn between half and all of it. Default 5,000.
    pub retry_base_ms: u64,
    /// Longest delay between attempts, ms, up to 86,400,000. A
    /// `Retry-After` answer is honoured up to this. Default 3,600,000.
    pub retry_max_ms: u64,
    /// Attempts before an alert goes to the dead-letter list, 1 to 100.
    /// Default 20.
    pub max_attempts: u32,
    /// An alert undelivered this long goes to the dead-letter list, hours,
    /// 1 to 720. Default 72.
    pub max_age_hours: u64,
    /// The endpoints, `[[alerts.endpoint]]`. Default none.
    pub endpoint: Vec<EndpointConfig>,
}

impl Default for AlertsSection {
    fn default() -> Self {
        Self {
            never_alert: Vec::new(),
            timeout_ms: 10_000,
            retry_base_ms: 5_000,
            retry_max_ms: 3_600_000,
            max_attempts: 20,
            max_age_hours: 72,
            endpoint: Vec::new(),
        }
    }
}

/// One `[[alerts.endpoint]]`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct EndpointConfig {
    /// A name for lists and logs (letters, digits, `-`, `_`), unique.
    pub name: String,
    /// `https://host[:port]/path` (TLS 1.3, the certificate checked
    /// against the system's CAs and `ca_file`) or `http://...`.
    pub url: String,
    /// PEM file of CA certificates trusted for this endpoint besides the
    /// system's (a private CA). Default none.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// File (mode 0600) with one `whsec_` secret per line; every line
    /// signs, so a receiver can rotate. `sentinel alerts secret FILE`
    /// makes one.
    pub secrets_file: PathBuf,
    /// Event types sent (`node.quarantined`, ...). Default all.
    #[serde(default)]
    pub events: Vec<String>,
    /// Lowest severity sent: `info`, `warning`, `high`, `critical`.
    /// Default `info`.
    #[serde(default = "info")]
    pub min_severity: crate::webhook::Severity,
    /// `standard` (`{type, timestamp, data}`) or `slack` (`{text}`).
    /// Default `standard`.
    #[serde(default)]
    pub template: crate::webhook::Template,
    /// Deliver to loopback, private and link-local addresses. Default
    /// false (the URL's name is resolved at every attempt and those
    /// addresses are refused, so DNS cannot point it inside).
    #[serde(default)]
    pub allow_private: bool,
    /// Node ids (hex) that never alert on this endpoint. Default none.
    #[serde(default)]
    pub never_alert: Vec<String>,
}

fn info() -> crate::webhook::Severity {
    crate::webhook::Severity::Info
}

/// `[testing]`: makes this sentinel misbehave so that a demo or a test can
/// watch the mesh quarantine it. Never set it on a real member.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct TestingSection {
    /// `flooder`: ping every neighbour 60 times a second (the simulator's
    /// flooder at intensity 1). Default none.
    pub attack: Option<String>,
}

/// `[detection]`: which model scores the neighbours' feature rows and when
/// local suspicion is raised.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct DetectionSection {
    /// Score neighbours at all. Default true.
    pub enabled: bool,
    /// A shipped model's name (`mlp-classifier`, `mlp-autoencoder`) or the
    /// path of a model manifest (`NAME.json` next to `NAME.onnx`). Default
    /// `mlp-classifier`.
    pub model: String,
    /// Refuse to start unless the model file's SHA-256 is this (hex), as
    /// the mesh's policy pins it. Default none.
    pub pinned_sha256: Option<String>,
    /// Score (0 to 1) at or above which a window counts towards suspicion.
    /// Default 0.95.
    pub raise: f32,
    /// Score below which a window counts towards clearing it; at most
    /// `raise`. Default 0.5.
    pub clear: f32,
    /// Consecutive high windows (one per signed report) that raise
    /// suspicion, 1 to 100. Default 2.
    pub raise_after: u8,
    /// Score at or above which a single window raises suspicion, from
    /// `raise` to 1 (1: only a score the model saturates at). Default 1.
    pub raise_at_once: f32,
    /// Consecutive low windows that clear it, 1 to 100. Default 3.
    pub clear_after: u8,
    /// Score a neighbour again each second one of its samples shows a
    /// flagrant fault (an invalid or undecodable frame, a rate-limited
    /// message, 17 messages in a second), and sign the report early at its
    /// onset so the mesh can vote within seconds. Default true.
    pub flagrant: bool,
}

impl Default for DetectionSection {
    fn default() -> Self {
        Self {
            enabled: true,
            model: "mlp-classifier".into(),
            pinned_sha256: None,
            raise: 0.95,
            clear: 0.5,
            raise_after: 2,
            raise_at_once: 1.0,
            clear_after: 3,
            flagrant: true,
        }
    }
}

impl Config {
    /// Whether this sentinel accuses and votes: `[quorum]` and
    /// `[detection]` both on.
    #[must_use]
    pub fn quorum_on(&self) -> bool {
        self.quorum.enabled && self.detection.enabled
    }
}

impl DetectionSection {
    /// The node's suspicion policy.
    #[must_use]
    pub fn policy(&self) -> sentinel_protocol::suspicion::SuspicionPolicy {
        let mut p = sentinel_protocol::suspicion::SuspicionPolicy::from_fractions(
            self.enabled,
            self.raise,
            self.clear,
            self.raise_after,
            self.raise_at_once,
            self.clear_after,
        );
        p.flagrant.enabled = self.flagrant;
        p
    }

    /// Loads the configured model (a shipped one by name, else a manifest
    /// path), checked against `pinned_sha256`.
    ///
    /// # Errors
    /// The model error, which names the check that failed.
    pub fn load_model(&self) -> Result<sentinel_models::TractScorer, sentinel_models::ModelError> {
        let pinned = self.pinned_sha256.as_deref();
        if self.model.ends_with(".json") || self.model.contains('/') {
            sentinel_models::TractScorer::load(Path::new(&self.model), pinned)
        } else {
            sentinel_models::shipped::load(&self.model, pinned)
        }
    }
}

/// `[node]`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct NodeSection {
    /// Data directory (database, API token, lock). Default `data`.
    pub data_dir: PathBuf,
    /// Secret key file (mode 0600). Default `node.key`.
    pub key_file: PathBuf,
    /// Genesis roster. Default `genesis.toml`.
    pub genesis: PathBuf,
    /// Where the other members listen: TOML with `[[peer]] id = "<hex>"`,
    /// `addr = "host:port"`. Default `addresses.toml`.
    pub address_book: PathBuf,
}

impl Default for NodeSection {
    fn default() -> Self {
        Self {
            data_dir: "data".into(),
            key_file: "node.key".into(),
            genesis: "genesis.toml".into(),
            address_book: "addresses.toml".into(),
        }
    }
}

/// `[quic]`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct QuicSection {
    /// UDP address to listen on. Default `127.0.0.1:7700`.
    pub listen: SocketAddr,
    /// Most simultaneous connections (in and out), 1 to 4,096. Default 64.
    pub max_connections: usize,
    /// Largest message frame accepted, bytes, 1,024 to 1,048,576; with
    /// `[quorum]` on, at least a voted certificate's bound (about 519 KB).
    /// Default 655,360.
    pub max_frame_bytes: usize,
    /// A connection silent this long is closed, ms, 1,000 to 600,000.
    /// Default 15,000.
    pub idle_timeout_ms: u64,
    /// Keep-alive interval, ms, 100 to `idle_timeout_ms`. Default 3,000.
    pub keep_alive_ms: u64,
    /// The handshake plus link authentication must finish within this, ms,
    /// 100 to 60,000. Default 5,000.
    pub handshake_timeout_ms: u64,
    /// First delay before redialling a peer, ms, 10 to `reconnect_max_ms`.
    /// Default 500.
    pub reconnect_min_ms: u64,
    /// Longest delay between redials (doubles up to this), ms, up to
    /// 3,600,000. Default 30,000.
    pub reconnect_max_ms: u64,
    /// Messages queued per peer while its connection is not up, 1 to
    /// 65,536; older ones are dropped first. Default 256.
    pub queue_per_peer: usize,
}

impl Default for QuicSection {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:7700".parse().expect("literal address"),
            max_connections: 64,
            max_frame_bytes: 640 * 1024,
            idle_timeout_ms: 15_000,
            keep_alive_ms: 3_000,
            handshake_timeout_ms: 5_000,
            reconnect_min_ms: 500,
            reconnect_max_ms: 30_000,
            queue_per_peer: 256,
        }
    }
}

/// `[api]`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApiSection {
    /// TCP address of the admin API. Default `127.0.0.1:7780` (loopback:
    /// expose it only behind something that adds TLS).
    pub listen: SocketAddr,
}

impl Default for ApiSection {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:7780".parse().expect("literal address"),
        }
    }
}

/// `[storage]`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct StorageSection {
    /// Telemetry older than this is deleted, hours, 1 to 87,600.
    /// Default 168 (a week).
    pub retention_hours: u64,
    /// Database size budget, MiB, 16 to 1,048,576; past it the oldest
    /// telemetry is deleted first. Default 1,024.
    pub max_db_mib: u64,
}

impl Default for StorageSection {
    fn default() -> Self {
        Self {
            retention_hours: 168,
            max_db_mib: 1024,
        }
    }
}

/// `[log]`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogSection {
    /// `text` or `json`. Default `text`.
    pub format: LogFormat,
    /// A `tracing` filter, e.g. `info` or `sentinel=debug,quinn=warn`.
    /// Default `info`. `RUST_LOG` is not read; use `SENTINEL_LOG_LEVEL`.
    pub level: String,
}

impl Default for LogSection {
    fn default() -> Self {
        Self {
            format: LogFormat::Text,
            level: "info".into(),
        }
    }
}

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// `[collect]`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct CollectSection {
    /// Read host metrics from `/proc` every second. Default true.
    pub host: bool,
    /// The guarded node's Prometheus endpoint (`http://host:port/path`),
    /// scraped every `scrape_interval_ms`. Default none.
    pub guarded_metrics_url: Option<String>,
    /// Metric of the guarded node giving its peer count. Default
    /// `p2p_peers`.
    pub peers_metric: String,
    /// Counter of the guarded node's errors. Default `errors_total`.
    pub errors_metric: String,
    /// Scrape interval, ms, 1,000 to 3,600,000. Default 5,000.
    pub scrape_interval_ms: u64,
}

impl Default for CollectSection {
    fn default() -> Self {
        Self {
            host: true,
            guarded_metrics_url: None,
            peers_metric: "p2p_peers".into(),
            errors_metric: "errors_total".into(),
            scrape_interval_ms: 5_000,
        }
    }
}

/// `[enforce]`: how a quarantine reaches things outside the mesh.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct EnforceSection {
    /// JSON file listing the enforced quarantines (format in
    /// `ARCHITECTURE.md`, "Enforcement hooks"), rewritten atomically on
    /// every change. Default none.
    pub blocklist_file: Option<PathBuf>,
    /// Program run as `<hook> quarantine|lift <subject id> <address>` on
    /// every change, with the same in `SENTINEL_*` environment variables.
    /// Default none.
    pub exec_hook: Option<PathBuf>,
    /// The hook is killed after this long, ms, 100 to 600,000. Default
    /// 10,000.
    pub hook_timeout_ms: u64,
}

impl Default for EnforceSection {
    fn default() -> Self {
        Self {
            blocklist_file: None,
            exec_hook: None,
            hook_timeout_ms: 10_000,
        }
    }
}

/// Why a configuration was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("reading {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// TOML syntax, an unknown key or a value of the wrong type.
    #[error("{path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parser's message (names the key and line).
        message: String,
    },
    /// An environment override names no known field or has a bad value.
    #[error("environment variable {var}: {message}")]
    Env {
        /// The variable.
        var: String,
        /// Why.
        message: String,
    },
    /// A value out of its range.
    #[error("config field {field}: {message}")]
    Invalid {
        /// `section.field`.
        field: &'static str,
        /// Why.
        message: String,
    },
}

impl Config {
    /// Reads `path`, applies `SENTINEL_<SECTION>_<FIELD>` overrides from
    /// `env`, validates, and resolves relative paths against the file's
    /// directory.
    ///
    /// # Errors
    /// A [`ConfigError`] naming the file, variable or field.
    pub fn load(
        path: &Path,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        let mut cfg = Self::parse(&text, env).map_err(|e| match e {
            ConfigError::Parse { message, .. } => ConfigError::Parse {
                path: path.to_owned(),
                message,
            },
            other => other,
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        for p in [
            &mut cfg.node.data_dir,
            &mut cfg.node.key_file,
            &mut cfg.node.genesis,
            &mut cfg.node.address_book,
        ]
        .into_iter()
        .chain(cfg.enforce.blocklist_file.as_mut())
        .chain(cfg.enforce.exec_hook.as_mut())
        .chain(
            cfg.alerts
                .endpoint
                .iter_mut()
                .flat_map(|e| std::iter::once(&mut e.secrets_file).chain(e.ca_file.as_mut())),
        ) {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        }
        let model = &mut cfg.detection.model;
        if (model.ends_with(".json") || model.contains('/'))
            && Path::new(model.as_str()).is_relative()
        {
            *model = base.join(model.as_str()).display().to_string();
        }
        Ok(cfg)
    }

    /// Parses TOML text with overrides and validates (paths left as written).
    ///
    /// # Errors
    /// As [`Config::load`].
    pub fn parse(
        text: &str,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        let parse_err = |message: String| ConfigError::Parse {
            path: PathBuf::from("sentinel.toml"),
            message,
        };
        let mut table: toml::Table = text
            .parse()
            .map_err(|e: toml::de::Error| parse_err(e.to_string()))?;
        let mut overridden = false;
        for (var, value) in env {
            let Some(rest) = var.strip_prefix("SENTINEL_") else {
                continue;
            };
            let rest = rest.to_ascii_lowercase();
            let Some((section, field)) = rest.split_once('_') else {
                return Err(ConfigError::Env {
                    var,
                    message: "expected SENTINEL_<SECTION>_<FIELD>".into(),
                });
            };
            if !SECTIONS.contains(&section) {
                return Err(ConfigError::Env {
                    var,
                    message: format!("no section [{section}] (sections: {})", SECTIONS.join(", ")),
                });
            }
            // A TOML value if it parses as one (numbers, booleans), else a string.
            let parsed = format!("v = {value}")
                .parse::<toml::Table>()
                .ok()
                .and_then(|mut t| t.remove("v"))
                .unwrap_or(toml::Value::String(value));
            let entry = table
                .entry(section.to_owned())
                .or_insert_with(|| toml::Value::Table(toml::Table::new()));
            let Some(section_table) = entry.as_table_mut() else {
                return Err(ConfigError::Env {
                    var,
                    message: format!("[{section}] in the file is not a table"),
                });
            };
            section_table.insert(field.to_owned(), parsed);
            overridden = true;
        }
        // Re-read the merged document as text so that errors carry the key.
        let merged = if overridden {
            toml::to_string(&table).map_err(|e| parse_err(e.to_string()))?
        } else {
            text.to_owned()
        };
        let cfg: Config = toml::from_str(&merged).map_err(|e| {
            parse_err(if overridden {
                format!("{e}(after SENTINEL_* overrides)")
            } else {
                e.to_string()
            })
        })?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Checks every range the field documentation states.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] naming the first bad field.
    pub fn validate(&self) -> Result<(), ConfigError> {
        fn range<T: PartialOrd + std::fmt::Display + Copy>(
            field: &'static str,
            v: T,
            lo: T,
            hi: T,
        ) -> Result<(), ConfigError> {
            if v < lo || v > hi {
                return Err(ConfigError::Invalid {
                    field,
                    message: format!("{v} is outside {lo} to {hi}"),
                });
            }
            Ok(())
        }
        let q = &self.quic;
        range("quic.max_connections", q.max_connections, 1, 4096)?;
        range("quic.max_frame_bytes", q.max_frame_bytes, 1024, 1 << 20)?;
        range("quic.idle_timeout_ms", q.idle_timeout_ms, 1_000, 600_000)?;
        range(
            "quic.keep_alive_ms",
            q.keep_alive_ms,
            100,
            q.idle_timeout_ms,
        )?;
        range(
            "quic.handshake_timeout_ms",
            q.handshake_timeout_ms,
            100,
            60_000,
        )?;
        range("quic.reconnect_max_ms", q.reconnect_max_ms, 10, 3_600_000)?;
        range(
            "quic.reconnect_min_ms",
            q.reconnect_min_ms,
            10,
            q.reconnect_max_ms,
        )?;
        range("quic.queue_per_peer", q.queue_per_peer, 1, 65_536)?;
        range(
            "storage.retention_hours",
            self.storage.retention_hours,
            1,
            87_600,
        )?;
        range("storage.max_db_mib", self.storage.max_db_mib, 16, 1 << 20)?;
        range(
            "collect.scrape_interval_ms",
            self.collect.scrape_interval_ms,
            1_000,
            3_600_000,
        )?;
        range(
            "enforce.hook_timeout_ms",
            self.enforce.hook_timeout_ms,
            100,
            600_000,
        )?;
        if let Some(url) = &self.collect.guarded_metrics_url
            && let Err(message) = crate::scrape::Target::parse(url)
        {
            return Err(ConfigError::Invalid {
                field: "collect.guarded_metrics_url",
                message,
            });
        }
        for (field, name) in [
            ("collect.peers_metric", &self.collect.peers_metric),
            ("collect.errors_metric", &self.collect.errors_metric),
        ] {
            let ok = name.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_' || c == ':')
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':');
            if !ok {
                return Err(ConfigError::Invalid {
                    field,
                    message: format!("{name:?} is not a Prometheus metric name"),
                });
            }
        }
        let d = &self.detection;
        range("detection.raise", d.raise, 0.0001, 1.0)?;
        range("detection.clear", d.clear, 0.0, d.raise)?;
        range("detection.raise_after", d.raise_after, 1, 100)?;
        range("detection.raise_at_once", d.raise_at_once, d.raise, 1.0)?;
        range("detection.clear_after", d.clear_after, 1, 100)?;
        if let Some(pin) = &d.pinned_sha256
            && (pin.len() != 64 || !pin.chars().all(|c| c.is_ascii_hexdigit()))
        {
            return Err(ConfigError::Invalid {
                field: "detection.pinned_sha256",
                message: format!("{pin:?} is not 64 hex digits"),
            });
        }
        let v = &self.quorum;
        range("quorum.vote_threshold", v.vote_threshold, 0.0001, 1.0)?;
        range(
            "quorum.accusations_per_hour",
            v.accusations_per_hour,
            1,
            1000,
        )?;
        range("quorum.quarantine_minutes", v.quarantine_minutes, 1, 10_080)?;
        let needed = sentinel_protocol::message::MAX_MESSAGE_LEN;
        if self.quorum_on() && self.quic.max_frame_bytes < needed {
            return Err(ConfigError::Invalid {
                field: "quic.max_frame_bytes",
                message: format!(
                    "{} is below {needed}, the largest voted quarantine certificate; raise it \
                     or turn [quorum] off",
                    self.quic.max_frame_bytes
                ),
            });
        }
        self.validate_alerts()?;
        if let Some(a) = &self.testing.attack
            && a != "flooder"
        {
            return Err(ConfigError::Invalid {
                field: "testing.attack",
                message: format!("{a:?} is not an attack this sentinel can make (flooder)"),
            });
        }
        if tracing_subscriber::EnvFilter::try_new(&self.log.level).is_err() {
            return Err(ConfigError::Invalid {
                field: "log.level",
                message: format!("{:?} is not a tracing filter", self.log.level),
            });
        }
        Ok(())
    }
}

impl Config {
    fn validate_alerts(&self) -> Result<(), ConfigError> {
        let a = &self.alerts;
        let invalid =
            |field: &'static str, message: String| ConfigError::Invalid { field, message };
        let bounds = [
            ("alerts.timeout_ms", a.timeout_ms, 100, 120_000),
            ("alerts.retry_max_ms", a.retry_max_ms, 100, 86_400_000),
            ("alerts.retry_base_ms", a.retry_base_ms, 100, a.retry_max_ms),
            ("alerts.max_attempts", u64::from(a.max_attempts), 1, 100),
            ("alerts.max_age_hours", a.max_age_hours, 1, 720),
        ];
        for (field, v, lo, hi) in bounds {
            if v < lo || v > hi {
                return Err(invalid(field, format!("{v} is outside {lo} to {hi}")));
            }
        }
        let id_ok = |id: &String| id.len() == 64 && id.chars().all(|c| c.is_ascii_hexdigit());
        if let Some(bad) = a.never_alert.iter().find(|id| !id_ok(id)) {
            return Err(invalid(
                "alerts.never_alert",
                format!("{bad:?} is not a node id (64 hex digits)"),
            ));
        }
        let mut names = std::collections::BTreeSet::new();
        for e in &a.endpoint {
            let name_ok = !e.name.is_empty()
                && e.name.len() <= 64
                && e.name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
            if !name_ok {
                return Err(invalid(
                    "alerts.endpoint.name",
                    format!("{:?}: 1 to 64 letters, digits, - or _", e.name),
                ));
            }
            if !names.insert(e.name.as_str()) {
                return Err(invalid(
                    "alerts.endpoint.name",
                    format!("{:?} is used twice", e.name),
                ));
            }
            crate::webhook::Target::parse(&e.url)
                .map_err(|m| invalid("alerts.endpoint.url", format!("endpoint {}: {m}", e.name)))?;
            if let Some(bad) = e
                .events
                .iter()
                .find(|t| crate::webhook::EventType::from_name(t).is_none())
            {
                let known: Vec<&str> = crate::webhook::EventType::ALL
                    .iter()
                    .map(|t| t.name())
                    .collect();
                return Err(invalid(
                    "alerts.endpoint.events",
                    format!(
                        "endpoint {}: {bad:?} is not an event type ({})",
                        e.name,
                        known.join(", ")
                    ),
                ));
            }
            if let Some(bad) = e.never_alert.iter().find(|id| !id_ok(id)) {
                return Err(invalid(
                    "alerts.endpoint.never_alert",
                    format!(
                        "endpoint {}: {bad:?} is not a node id (64 hex digits)",
                        e.name
                    ),
                ));
            }
        }
        Ok(())
    }
}

/// The documented file `sentinel init` writes.
#[must_use]
pub fn template(listen: SocketAddr, api: SocketAddr) -> String {
    format!(
        r#"# Sentinel configuration. Every field is optional; the value shown is the
# default unless `sentinel init` chose it. Relative paths are relative to
# this file. Any field can be overridden by an environment variable
# SENTINEL_<SECTION>_<FIELD>, e.g. SENTINEL_QUIC_LISTEN=0.0.0.0:7700.
# Unknown keys and out-of-range values are errors that name the field.

[node]
# Data directory: database (sentinel.db), API token (api-token), lock.
data_dir = "data"
# Secret key file, mode 0600 (refused if group or others can read it).
key_file = "node.key"
# The mesh's genesis roster (public keys and weights of every member).
genesis = "genesis.toml"
# Where members listen: [[peer]] id = "<node id hex>", addr = "host:port".
address_book = "addresses.toml"

[quic]
# UDP address of the mesh transport (QUIC, TLS 1.3, X25519MLKEM768 only).
listen = "{listen}"
# Most simultaneous connections, in and out (1 to 4096).
max_connections = 64
# Largest message frame accepted, bytes (1024 to 1048576; a voted quarantine
# certificate needs up to about 519 KB).
max_frame_bytes = 655360
# Close a connection after this long without traffic, ms (1000 to 600000).
idle_timeout_ms = 15000
# Keep-alive interval, ms (100 to idle_timeout_ms).
keep_alive_ms = 3000
# Handshake plus link authentication deadline, ms (100 to 60000).
handshake_timeout_ms = 5000
# Redial backoff: first delay and cap, ms (doubling in between).
reconnect_min_ms = 500
reconnect_max_ms = 30000
# Messages queued per peer while it is unreachable (1 to 65536).
queue_per_peer = 256

[api]
# Admin HTTP API (TCP). /healthz, /readyz and /metrics are open; /v1/* need
# "Authorization: Bearer <data_dir/api-token>". Keep it on loopback.
listen = "{api}"

[storage]
# Telemetry retention, hours (1 to 87600).
retention_hours = 168
# Database size budget, MiB (16 to 1048576); oldest telemetry goes first.
max_db_mib = 1024

[log]
# "text" or "json".
format = "text"
# tracing filter, e.g. "info" or "sentinel=debug,quinn=warn".
level = "info"

[collect]
# Host CPU, memory, network and connection counts from /proc, every second.
host = true
# The guarded node's Prometheus endpoint, e.g. "http://127.0.0.1:9100/metrics".
# guarded_metrics_url = "http://127.0.0.1:9100/metrics"
# Metric names read from it: peer count (gauge) and errors (counter), each
# summed over its label sets. The increase of the counter between scrapes is
# reported in the next one-second sample; an unreachable node reports 0 peers.
peers_metric = "p2p_peers"
errors_metric = "errors_total"
# Scrape interval, ms (1000 to 3600000).
scrape_interval_ms = 5000

[enforce]
# A quarantine certificate verified here is always enforced inside the mesh
# (links closed and refused). These reach the world outside it.
# JSON file listing enforced quarantines, rewritten atomically on every change
# (format: ARCHITECTURE.md, "Enforcement hooks").
# blocklist_file = "blocklist.json"
# Program run on every change as: <hook> quarantine|lift <subject id> <address>
# (environment: QUARANTINE_ACTION, QUARANTINE_SUBJECT, QUARANTINE_SUBJECT_NAME,
# QUARANTINE_ADDRESS, QUARANTINE_FAULT, QUARANTINE_UNTIL_MS). Non-zero exits are logged.
# It is also called at every start for each quarantine in force, so it must be
# idempotent; calls run one at a time, in order.
# exec_hook = "/usr/local/bin/sentinel-enforce"
# The hook is killed after this long, ms (100 to 600000).
hook_timeout_ms = 10000

[quorum]
# Voted quarantine: accuse a neighbour this sentinel's model keeps scoring
# high before a committee of members; each votes on its own view of the
# signed evidence; two thirds of the committee make a certificate. Needs
# [detection] on.
enabled = true
# Own-view score (0 to 1) needed to vote yes, and to accuse.
vote_threshold = 0.95
# Accusations made, and accepted from one accuser, per hour (1 to 1000).
accusations_per_hour = 12
# Length of a voted quarantine, minutes (1 to 10080); the same on every member.
quarantine_minutes = 60

[alerts]
# Alert webhooks (Standard Webhooks: webhook-id, webhook-timestamp and
# webhook-signature headers, JSON body). Every alert is committed to the
# database before it is sent and retried until delivered; the ones that
# never are stay in a dead-letter list (`sentinel alerts list --dead`,
# `sentinel alerts retry`). Event types and incident keys: ARCHITECTURE.md,
# "Alerts".
# Node ids (hex) that never alert.
never_alert = []
# Deadline of one delivery attempt, ms (100 to 120000).
timeout_ms = 10000
# Retry delays: first one, ms, doubling up to retry_max_ms, each drawn
# between half and all of it; Retry-After is honoured up to retry_max_ms.
retry_base_ms = 5000
retry_max_ms = 3600000
# An alert goes to the dead-letter list after this many attempts (1 to 100)
# or this many hours undelivered (1 to 720).
max_attempts = 20
max_age_hours = 72
# One block per endpoint:
# [[alerts.endpoint]]
# name = "ops"
# # https (TLS 1.3, checked against the system's CAs) or http.
# url = "https://alerts.example.net/sentinel"
# # PEM CA certificates trusted besides the system's (a private CA).
# ca_file = "alerts-ca.pem"
# # One whsec_ secret per line, mode 0600; make one with
# # `sentinel alerts secret ops.secret`.
# secrets_file = "ops.secret"
# # Event types sent (default all): peer.suspected, accusation.raised,
# # node.quarantined, quarantine.lifted, proposal.passed, model.changed,
# # sentinel.degraded.
# events = ["node.quarantined", "quarantine.lifted"]
# # Lowest severity sent: info, warning, high, critical.
# min_severity = "warning"
# # "standard" or "slack".
# template = "standard"
# # Loopback, private and link-local addresses are refused unless this is
# # true (checked on the address connected to, at every attempt).
# allow_private = false
"#
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_env() -> Vec<(String, String)> {
        Vec::new()
    }

    #[test]
    fn template_parses_to_the_defaults_it_documents() {
        let listen = "127.0.0.1:7700".parse().unwrap();
        let api = "127.0.0.1:7780".parse().unwrap();
        let cfg = Config::parse(&template(listen, api), no_env()).unwrap();
        let d = Config::default();
        assert_eq!(toml::to_string(&cfg).unwrap(), toml::to_string(&d).unwrap());
    }

    /// The README's way of adding an endpoint: a block appended to the
    /// file `sentinel init` writes.
    #[test]
    fn an_alert_endpoint_appended_to_the_template_parses_and_bad_ones_say_why() {
        let listen = "127.0.0.1:7700".parse().unwrap();
        let api = "127.0.0.1:7780".parse().unwrap();
        let block = "\n[[alerts.endpoint]]\nname = \"ops\"\nurl = \"https://alerts.example.net/s\"\n\
                     secrets_file = \"ops.secret\"\nmin_severity = \"warning\"\n";
        let cfg = Config::parse(&(template(listen, api) + block), no_env()).unwrap();
        let e = &cfg.alerts.endpoint[0];
        assert_eq!(
            (e.name.as_str(), e.min_severity, e.template),
            (
                "ops",
                crate::webhook::Severity::Warning,
                crate::webhook::Template::Standard
            )
        );
        for (bad, field) in [
            (block.replace("https://", "ftp://"), "alerts.endpoint.url"),
            (block.replace("\"ops\"", "\"o p\""), "alerts.endpoint.name"),
            (block.to_owned() + block, "alerts.endpoint.name"),
            (
                block.replace("min_severity", "events = [\"node.banned\"]\nmin_severity"),
                "alerts.endpoint.events",
            ),
        ] {
            let e = Config::parse(&(template(listen, api) + &bad), no_env())
                .unwrap_err()
                .to_string();
            assert!(e.contains(field), "{e}");
        }
    }

    #[test]
    fn unknown_keys_and_bad_values_name_the_field() {
        let e = Config::parse(
            "[quic]\nlisten = \"127.0.0.1:1\"\nmax_conections = 3\n",
            no_env(),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("max_conections"), "{e}");
        let e = Config::parse("[quic]\nmax_connections = \"many\"\n", no_env())
            .unwrap_err()
            .to_string();
        assert!(e.contains("max_connections"), "{e}");
        let e = Config::parse("[quic]\nmax_connections = 0\n", no_env())
            .unwrap_err()
            .to_string();
        assert!(e.contains("quic.max_connections"), "{e}");
        let e = Config::parse("[bogus]\n", no_env())
            .unwrap_err()
            .to_string();
        assert!(e.contains("bogus"), "{e}");
        let e = Config::parse("[log]\nlevel = \"[[[\"\n", no_env())
            .unwrap_err()
            .to_string();
        assert!(e.contains("log.level"), "{e}");
        for (text, field) in [
            (
                "[collect]\nguarded_metrics_url = \"https://n/metrics\"\n",
                "collect.guarded_metrics_url",
            ),
            (
                "[collect]\npeers_metric = \"peers count\"\n",
                "collect.peers_metric",
            ),
            ("[collect]\nerrors_metric = \"\"\n", "collect.errors_metric"),
            (
                "[enforce]\nhook_timeout_ms = 5\n",
                "enforce.hook_timeout_ms",
            ),
            ("[enforce]\nexec_hok = \"x\"\n", "exec_hok"),
        ] {
            let e = Config::parse(text, no_env()).unwrap_err().to_string();
            assert!(e.contains(field), "{e}");
        }
    }

    #[test]
    fn environment_overrides_win_and_bad_ones_are_named() {
        let env = vec![
            ("SENTINEL_QUIC_LISTEN".to_owned(), "0.0.0.0:9000".to_owned()),
            ("SENTINEL_QUIC_MAX_CONNECTIONS".to_owned(), "9".to_owned()),
            ("SENTINEL_LOG_FORMAT".to_owned(), "json".to_owned()),
            ("PATH".to_owned(), "/bin".to_owned()),
        ];
        let cfg = Config::parse("[quic]\nmax_connections = 3\n", env).unwrap();
        assert_eq!(cfg.quic.listen.port(), 9000);
        assert_eq!(cfg.quic.max_connections, 9);
        assert_eq!(cfg.log.format, LogFormat::Json);

        let e = Config::parse("", vec![("SENTINEL_NOPE_X".into(), "1".into())])
            .unwrap_err()
            .to_string();
        assert!(e.contains("SENTINEL_NOPE_X"), "{e}");
        let e = Config::parse(
            "",
            vec![("SENTINEL_QUIC_MAX_CONNECTIONS".into(), "x".into())],
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("max_connections"), "{e}");
        let e = Config::parse("", vec![("SENTINEL_QUIC_LISTEN_ADR".into(), "x".into())])
            .unwrap_err()
            .to_string();
        assert!(e.contains("listen_adr"), "{e}");
    }

    #[test]
    fn relative_paths_resolve_against_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sentinel.toml");
        std::fs::write(
            &path,
            "[node]\ndata_dir = \"d\"\nkey_file = \"/abs/k\"\n[enforce]\nblocklist_file = \"b.json\"\n",
        )
        .unwrap();
        let cfg = Config::load(&path, no_env()).unwrap();
        assert_eq!(cfg.node.data_dir, dir.path().join("d"));
        assert_eq!(cfg.enforce.blocklist_file, Some(dir.path().join("b.json")));
        assert_eq!(cfg.node.key_file, PathBuf::from("/abs/k"));
        assert!(matches!(
            Config::load(&dir.path().join("missing.toml"), no_env()),
            Err(ConfigError::Read { .. })
        ));
    }
}
