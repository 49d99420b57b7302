//! Datasets: labelled feature rows, raw telemetry and events as Arrow
//! tables, written as Parquet (zstd) and Arrow IPC files side by side.
//!
//! One dataset is a directory:
//!
//! | file | rows |
//! |---|---|
//! | `features.parquet`, `features.arrow` | one per (observer, subject, window) scored |
//! | `telemetry_host.parquet`, `.arrow` | one per sample of a signed report: the signer's host metrics |
//! | `telemetry_links.parquet`, `.arrow` | one per (report sample, observed neighbour) |
//! | `events.parquet`, `.arrow` | one per event (link up/down, suspicion, quarantine, attack start) |
//! | `dataset.json` | the metadata below and each table's row count |
//!
//! Every file carries the same key-value metadata (Parquet footer and Arrow
//! schema metadata, so DuckDB's `parquet_kv_metadata` and pyarrow's
//! `schema.metadata` show it): `sentinel.dataset_schema`,
//! `sentinel.feature_schema`, `sentinel.producer`, `sentinel.commit`, and
//! for simulator runs `sentinel.seed`, `sentinel.scenario` and
//! `sentinel.scenario_sha256`. `datasets/README.md` documents every column.
//!
//! Tables are written in record batches as rows arrive, so a long run does
//! not hold its dataset in memory; [`Dataset::finish`] closes the files. A
//! dataset that was not finished has no `dataset.json`.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::builder::{
    BooleanBuilder, Float32Builder, StringBuilder, UInt8Builder, UInt16Builder, UInt32Builder,
    UInt64Builder,
};
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;
use sentinel_protocol::NodeId;
use sentinel_protocol::features::{self, Relays, Row};
use sentinel_protocol::telemetry::{LinkSample, Report};

/// Name and version of the table layouts below.
pub const DATASET_SCHEMA: &str = "sentinel-datasets/2";

/// Rows buffered per table before a record batch is written.
const BATCH_ROWS: usize = 65_536;

/// Why a dataset could not be written.
#[derive(Debug, thiserror::Error)]
pub enum DatasetError {
    /// A file operation failed.
    #[error("dataset {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// Arrow or Parquet refused a batch.
    #[error("dataset {path}: {message}")]
    Format {
        /// The file.
        path: PathBuf,
        /// The library's message.
        message: String,
    },
}

/// Where a dataset came from; written into every file.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Meta {
    /// What wrote it, e.g. `sentinel-sim 0.1.0`.
    pub producer: String,
    /// Git commit of the producer (or `unknown`).
    pub commit: String,
    /// Simulator seed.
    pub seed: Option<u64>,
    /// Scenario name.
    pub scenario: Option<String>,
    /// Hex SHA-256 of the scenario as run (after command-line overrides).
    pub scenario_sha256: Option<String>,
}

impl Meta {
    fn pairs(&self) -> BTreeMap<String, String> {
        let mut m = BTreeMap::new();
        m.insert("sentinel.dataset_schema".into(), DATASET_SCHEMA.into());
        m.insert("sentinel.feature_schema".into(), features::SCHEMA.into());
        m.insert("sentinel.producer".into(), self.producer.clone());
        m.insert("sentinel.commit".into(), self.commit.clone());
        if let Some(s) = self.seed {
            m.insert("sentinel.seed".into(), s.to_string());
        }
        if let Some(s) = &self.scenario {
            m.insert("sentinel.scenario".into(), s.clone());
        }
        if let Some(s) = &self.scenario_sha256 {
            m.insert("sentinel.scenario_sha256".into(), s.clone());
        }
        m
    }
}

/// One scored (observer, subject, window).
#[derive(Debug, Clone, PartialEq)]
pub struct FeatureRecord {
    /// Run time of the window's end, ms (simulated time from the start in a
    /// simulator run; Unix ms in a daemon export).
    pub time_ms: u64,
    /// The observer's clock at the window's end, Unix ms.
    pub window_end_ms: u64,
    /// Who scored.
    pub observer: NodeId,
    /// Who was scored.
    pub subject: NodeId,
    /// The features.
    pub row: Row,
    /// Ground truth (simulator only): the subject attacked during the
    /// whole window.
    pub malicious: Option<bool>,
    /// Ground truth: the subject's adversary kind (`none` for honest
    /// nodes), even in windows before its attack starts.
    pub attack: Option<String>,
    /// Ground truth: share of the window during which the attack ran.
    pub attack_fraction: Option<f32>,
    /// Ground truth: the hard honest case the subject is in (`none`,
    /// `overloaded`, `churn`, `victim`).
    pub honest_case: Option<String>,
    /// The model's quantised score, when one scored the row.
    pub score: Option<f32>,
    /// Local suspicion of the subject after this window.
    pub suspected: Option<bool>,
}

/// One event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventRecord {
    /// Run time, ms (as [`FeatureRecord::time_ms`]).
    pub time_ms: u64,
    /// The node it happened at.
    pub node: NodeId,
    /// What: `neighbour_up`, `neighbour_down`, `suspected`, `refuted`,
    /// `suspicion_raised`, `suspicion_cleared`, `quarantined`,
    /// `quarantine_lifted`, `attack_started`, `crashed`, `booted`.
    pub kind: String,
    /// The other node concerned, if any.
    pub subject: Option<NodeId>,
    /// Free text (a reason, a score, an attack kind).
    pub detail: String,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> DatasetError + '_ {
    move |source| DatasetError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn format_err(path: &Path, e: impl std::fmt::Display) -> DatasetError {
    DatasetError::Format {
        path: path.to_path_buf(),
        message: e.to_string(),
    }
}

/// One table written to `NAME.parquet` and `NAME.arrow`.
struct Table {
    name: &'static str,
    schema: SchemaRef,
    parquet: Option<ArrowWriter<File>>,
    ipc: Option<arrow_ipc::writer::FileWriter<File>>,
    dir: PathBuf,
    rows: u64,
}

impl Table {
    fn create(
        dir: &Path,
        name: &'static str,
        fields: Vec<Field>,
        meta: &BTreeMap<String, String>,
    ) -> Result<Self, DatasetError> {
        let schema = Arc::new(
            Schema::new(fields).with_metadata(
                meta.clone()
                    .into_iter()
                    .collect::<std::collections::HashMap<String, String>>(),
            ),
        );
        let pq_path = dir.join(format!("{name}.parquet"));
        let props = WriterProperties::builder()
            .set_compression(Compression::ZSTD(ZstdLevel::default()))
            .set_key_value_metadata(Some(
                meta.iter()
                    .map(|(k, v)| parquet::file::metadata::KeyValue::new(k.clone(), v.clone()))
                    .collect(),
            ))
            .build();
        let pq = ArrowWriter::try_new(
            File::create(&pq_path).map_err(io(&pq_path))?,
            schema.clone(),
            Some(props),
        )
        .map_err(|e| format_err(&pq_path, e))?;
        let ipc_path = dir.join(format!("{name}.arrow"));
        let options = arrow_ipc::writer::IpcWriteOptions::default()
            .try_with_compression(Some(arrow_ipc::CompressionType::ZSTD))
            .map_err(|e| format_err(&ipc_path, e))?;
        let ipc = arrow_ipc::writer::FileWriter::try_new_with_options(
            File::create(&ipc_path).map_err(io(&ipc_path))?,
            &schema,
            options,
        )
        .map_err(|e| format_err(&ipc_path, e))?;
        Ok(Self {
            name,
            schema,
            parquet: Some(pq),
            ipc: Some(ipc),
            dir: dir.to_path_buf(),
            rows: 0,
        })
    }

    fn write(&mut self, columns: Vec<ArrayRef>) -> Result<(), DatasetError> {
        let path = self.dir.join(self.name);
        let batch =
            RecordBatch::try_new(self.schema.clone(), columns).map_err(|e| format_err(&path, e))?;
        if batch.num_rows() == 0 {
            return Ok(());
        }
        self.rows += batch.num_rows() as u64;
        if let Some(w) = self.parquet.as_mut() {
            w.write(&batch).map_err(|e| format_err(&path, e))?;
        }
        if let Some(w) = self.ipc.as_mut() {
            w.write(&batch).map_err(|e| format_err(&path, e))?;
        }
        Ok(())
    }

    fn finish(&mut self) -> Result<(), DatasetError> {
        let path = self.dir.join(self.name);
        if let Some(w) = self.parquet.take() {
            let file = w.into_inner().map_err(|e| format_err(&path, e))?;
            file.sync_all().map_err(io(&path))?;
        }
        if let Some(mut w) = self.ipc.take() {
            w.finish().map_err(|e| format_err(&path, e))?;
            w.get_ref().sync_all().map_err(io(&path))?;
        }
        Ok(())
    }
}

fn hex(id: &NodeId) -> String {
    id.to_hex()
}

fn field(name: &str, dt: DataType, nullable: bool) -> Field {
    Field::new(name, dt, nullable)
}

/// A dataset being written. See the crate documentation for its layout.
pub struct Dataset {
    dir: PathBuf,
    meta: Meta,
    features: Table,
    host: Table,
    links: Table,
    events: Table,
    pending_features: Vec<FeatureRecord>,
    pending_host: Vec<(
        NodeId,
        u64,
        u64,
        u64,
        sentinel_protocol::telemetry::HostSample,
    )>,
    pending_links: Vec<(NodeId, u64, u64, u64, NodeId, LinkSample, Relays)>,
    pending_events: Vec<EventRecord>,
}

impl Dataset {
    /// Creates `dir` (and its parents) and the table files in it.
    ///
    /// # Errors
    /// [`DatasetError`] naming the file.
    pub fn create(dir: &Path, meta: Meta) -> Result<Self, DatasetError> {
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        let kv = meta.pairs();
        let mut fcols = vec![
            field("time_ms", DataType::UInt64, false),
            field("window_end_ms", DataType::UInt64, false),
            field("observer", DataType::Utf8, false),
            field("subject", DataType::Utf8, false),
        ];
        fcols.extend(
            features::NAMES
                .iter()
                .map(|n| field(n, DataType::Float32, false)),
        );
        fcols.extend([
            field("malicious", DataType::Boolean, true),
            field("attack", DataType::Utf8, true),
            field("attack_fraction", DataType::Float32, true),
            field("honest_case", DataType::Utf8, true),
            field("score", DataType::Float32, true),
            field("suspected", DataType::Boolean, true),
        ]);
        let report_key = || {
            vec![
                field("origin", DataType::Utf8, false),
                field("epoch", DataType::UInt64, false),
                field("sequence", DataType::UInt64, false),
                field("sample_start_ms", DataType::UInt64, false),
            ]
        };
        let mut hcols = report_key();
        hcols.extend([
            field("cpu_permille", DataType::UInt16, false),
            field("mem_permille", DataType::UInt16, false),
            field("net_in_bytes", DataType::UInt32, false),
            field("net_out_bytes", DataType::UInt32, false),
            field("node_peers", DataType::UInt16, false),
            field("node_errors", DataType::UInt16, false),
        ]);
        let mut lcols = report_key();
        lcols.push(field("neighbour", DataType::Utf8, false));
        for n in [
            "messages_in",
            "messages_out",
            "invalid",
            "malformed",
            "duplicates",
            "rate_limited",
        ] {
            lcols.push(field(n, DataType::UInt16, false));
        }
        lcols.extend([
            field("bytes_in", DataType::UInt32, false),
            field("bytes_out", DataType::UInt32, false),
            field("probes_sent", DataType::UInt8, false),
            field("probes_failed", DataType::UInt8, false),
            field("rtt_ms", DataType::UInt16, true),
            field("relays_claimed", DataType::UInt16, false),
            field("relays_missing", DataType::UInt16, false),
        ]);
        let ecols = vec![
            field("time_ms", DataType::UInt64, false),
            field("node", DataType::Utf8, false),
            field("kind", DataType::Utf8, false),
            field("subject", DataType::Utf8, true),
            field("detail", DataType::Utf8, false),
        ];
        Ok(Self {
            features: Table::create(dir, "features", fcols, &kv)?,
            host: Table::create(dir, "telemetry_host", hcols, &kv)?,
            links: Table::create(dir, "telemetry_links", lcols, &kv)?,
            events: Table::create(dir, "events", ecols, &kv)?,
            dir: dir.to_path_buf(),
            meta,
            pending_features: Vec::new(),
            pending_host: Vec::new(),
            pending_links: Vec::new(),
            pending_events: Vec::new(),
        })
    }

    /// Adds a feature row.
    ///
    /// # Errors
    /// [`DatasetError`] when a full batch cannot be written.
    pub fn feature(&mut self, r: FeatureRecord) -> Result<(), DatasetError> {
        self.pending_features.push(r);
        if self.pending_features.len() >= BATCH_ROWS {
            self.flush_features()?;
        }
        Ok(())
    }

    /// Adds a signed report's samples (host and link tables).
    ///
    /// # Errors
    /// [`DatasetError`] when a full batch cannot be written.
    pub fn report(
        &mut self,
        origin: NodeId,
        epoch: u64,
        sequence: u64,
        report: &Report,
    ) -> Result<(), DatasetError> {
        let start = |i: usize| report.start_ms + i as u64 * u64::from(report.sample_ms);
        for (i, h) in report.host.iter().enumerate() {
            self.pending_host
                .push((origin, epoch, sequence, start(i), *h));
        }
        for o in &report.neighbours {
            for (i, s) in o.samples.iter().enumerate() {
                self.pending_links.push((
                    origin,
                    epoch,
                    sequence,
                    start(i),
                    o.neighbour,
                    *s,
                    o.relays,
                ));
            }
        }
        if self.pending_host.len() >= BATCH_ROWS {
            self.flush_host()?;
        }
        if self.pending_links.len() >= BATCH_ROWS {
            self.flush_links()?;
        }
        Ok(())
    }

    /// Adds an event.
    ///
    /// # Errors
    /// [`DatasetError`] when a full batch cannot be written.
    pub fn event(&mut self, e: EventRecord) -> Result<(), DatasetError> {
        self.pending_events.push(e);
        if self.pending_events.len() >= BATCH_ROWS {
            self.flush_events()?;
        }
        Ok(())
    }

    fn flush_features(&mut self) -> Result<(), DatasetError> {
        let rows = std::mem::take(&mut self.pending_features);
        let mut cols: Vec<ArrayRef> = Vec::with_capacity(4 + features::COUNT + 6);
        let u64s = |f: &dyn Fn(&FeatureRecord) -> u64| -> ArrayRef {
            let mut b = UInt64Builder::with_capacity(rows.len());
            rows.iter().for_each(|r| b.append_value(f(r)));
            Arc::new(b.finish())
        };
        let strs = |f: &dyn Fn(&FeatureRecord) -> Option<String>| -> ArrayRef {
            let mut b = StringBuilder::new();
            rows.iter().for_each(|r| b.append_option(f(r)));
            Arc::new(b.finish())
        };
        let f32s = |f: &dyn Fn(&FeatureRecord) -> Option<f32>| -> ArrayRef {
            let mut b = Float32Builder::with_capacity(rows.len());
            rows.iter().for_each(|r| b.append_option(f(r)));
            Arc::new(b.finish())
        };
        let bools = |f: &dyn Fn(&FeatureRecord) -> Option<bool>| -> ArrayRef {
            let mut b = BooleanBuilder::with_capacity(rows.len());
            rows.iter().for_each(|r| b.append_option(f(r)));
            Arc::new(b.finish())
        };
        cols.push(u64s(&|r| r.time_ms));
        cols.push(u64s(&|r| r.window_end_ms));
        cols.push(strs(&|r| Some(hex(&r.observer))));
        cols.push(strs(&|r| Some(hex(&r.subject))));
        for i in 0..features::COUNT {
            cols.push(f32s(&|r| Some(r.row.0[i])));
        }
        cols.push(bools(&|r| r.malicious));
        cols.push(strs(&|r| r.attack.clone()));
        cols.push(f32s(&|r| r.attack_fraction));
        cols.push(strs(&|r| r.honest_case.clone()));
        cols.push(f32s(&|r| r.score));
        cols.push(bools(&|r| r.suspected));
        self.features.write(cols)
    }

    fn flush_host(&mut self) -> Result<(), DatasetError> {
        let rows = std::mem::take(&mut self.pending_host);
        let mut origin = StringBuilder::new();
        let (mut epoch, mut seq, mut start) = (
            UInt64Builder::new(),
            UInt64Builder::new(),
            UInt64Builder::new(),
        );
        let (mut cpu, mut mem, mut peers, mut errors) = (
            UInt16Builder::new(),
            UInt16Builder::new(),
            UInt16Builder::new(),
            UInt16Builder::new(),
        );
        let (mut net_in, mut net_out) = (UInt32Builder::new(), UInt32Builder::new());
        for (o, e, s, t, h) in &rows {
            origin.append_value(hex(o));
            epoch.append_value(*e);
            seq.append_value(*s);
            start.append_value(*t);
            cpu.append_value(h.cpu_permille);
            mem.append_value(h.mem_permille);
            net_in.append_value(h.net_in_bytes);
            net_out.append_value(h.net_out_bytes);
            peers.append_value(h.node_peers);
            errors.append_value(h.node_errors);
        }
        self.host.write(vec![
            Arc::new(origin.finish()),
            Arc::new(epoch.finish()),
            Arc::new(seq.finish()),
            Arc::new(start.finish()),
            Arc::new(cpu.finish()),
            Arc::new(mem.finish()),
            Arc::new(net_in.finish()),
            Arc::new(net_out.finish()),
            Arc::new(peers.finish()),
            Arc::new(errors.finish()),
        ])
    }

    fn flush_links(&mut self) -> Result<(), DatasetError> {
        let rows = std::mem::take(&mut self.pending_links);
        let mut origin = StringBuilder::new();
        let mut neighbour = StringBuilder::new();
        let (mut epoch, mut seq, mut start) = (
            UInt64Builder::new(),
            UInt64Builder::new(),
            UInt64Builder::new(),
        );
        let mut u16s: Vec<UInt16Builder> = (0..6).map(|_| UInt16Builder::new()).collect();
        let (mut bytes_in, mut bytes_out) = (UInt32Builder::new(), UInt32Builder::new());
        let (mut sent, mut failed) = (UInt8Builder::new(), UInt8Builder::new());
        let mut rtt = UInt16Builder::new();
        let (mut claimed, mut missing) = (UInt16Builder::new(), UInt16Builder::new());
        for (o, e, s, t, n, l, r) in &rows {
            origin.append_value(hex(o));
            epoch.append_value(*e);
            seq.append_value(*s);
            start.append_value(*t);
            neighbour.append_value(hex(n));
            for (b, v) in u16s.iter_mut().zip([
                l.messages_in,
                l.messages_out,
                l.invalid,
                l.malformed,
                l.duplicates,
                l.rate_limited,
            ]) {
                b.append_value(v);
            }
            bytes_in.append_value(l.bytes_in);
            bytes_out.append_value(l.bytes_out);
            sent.append_value(l.probes_sent);
            failed.append_value(l.probes_failed);
            rtt.append_option((l.rtt_ms != LinkSample::NO_RTT).then_some(l.rtt_ms));
            claimed.append_value(r.claimed);
            missing.append_value(r.missing);
        }
        let mut cols: Vec<ArrayRef> = vec![
            Arc::new(origin.finish()),
            Arc::new(epoch.finish()),
            Arc::new(seq.finish()),
            Arc::new(start.finish()),
            Arc::new(neighbour.finish()),
        ];
        cols.extend(u16s.iter_mut().map(|b| Arc::new(b.finish()) as ArrayRef));
        cols.extend([
            Arc::new(bytes_in.finish()) as ArrayRef,
            Arc::new(bytes_out.finish()),
            Arc::new(sent.finish()),
            Arc::new(failed.finish()),
            Arc::new(rtt.finish()),
            Arc::new(claimed.finish()),
            Arc::new(missing.finish()),
        ]);
        self.links.write(cols)
    }

    fn flush_events(&mut self) -> Result<(), DatasetError> {
        let rows = std::mem::take(&mut self.pending_events);
        let mut time = UInt64Builder::new();
        let (mut node, mut kind, mut subject, mut detail) = (
            StringBuilder::new(),
            StringBuilder::new(),
            StringBuilder::new(),
            StringBuilder::new(),
        );
        for e in &rows {
            time.append_value(e.time_ms);
            node.append_value(hex(&e.node));
            kind.append_value(&e.kind);
            subject.append_option(e.subject.as_ref().map(hex));
            detail.append_value(&e.detail);
        }
        self.events.write(vec![
            Arc::new(time.finish()),
            Arc::new(node.finish()),
            Arc::new(kind.finish()),
            Arc::new(subject.finish()),
            Arc::new(detail.finish()),
        ])
    }

    /// Writes what is buffered, closes every file (fsync'd) and writes
    /// `dataset.json`. Returns the row count per table.
    ///
    /// # Errors
    /// [`DatasetError`] naming the file.
    pub fn finish(mut self) -> Result<BTreeMap<&'static str, u64>, DatasetError> {
        self.flush_features()?;
        self.flush_host()?;
        self.flush_links()?;
        self.flush_events()?;
        let mut counts = BTreeMap::new();
        for t in [
            &mut self.features,
            &mut self.host,
            &mut self.links,
            &mut self.events,
        ] {
            t.finish()?;
            counts.insert(t.name, t.rows);
        }
        let summary = serde_json::json!({
            "dataset_schema": DATASET_SCHEMA,
            "feature_schema": features::SCHEMA,
            "meta": self.meta,
            "rows": counts,
            "formats": ["parquet", "arrow"],
        });
        let path = self.dir.join("dataset.json");
        let text = serde_json::to_string_pretty(&summary).map_err(|e| format_err(&path, e))?;
        std::fs::write(&path, text + "\n").map_err(io(&path))?;
        Ok(counts)
    }
}
