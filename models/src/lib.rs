//! Scoring feature rows with pinned ONNX models.
//!
//! A model is two files side by side: `NAME.onnx` and its manifest
//! `NAME.json` ([`Manifest`]), written by `models/training/train.py`. Loading
//! checks, before anything runs:
//! - the ONNX file's SHA-256 against the manifest, and against the hash the
//!   caller pins (the daemon's policy) when it pins one;
//! - the manifest's feature schema and column names against the schema this
//!   build extracts ([`sentinel_protocol::features::SCHEMA`]);
//! - that tract can load the graph with a batch dimension and the output is
//!   one score per row.
//!
//! A mismatch is an error that says which check failed and what was
//! expected, never a silently different model. [`TractScorer`] runs the
//! graph in batches; scores leave as [`Score`]s, quantised so that a replay
//! on another CPU agrees within [`Score::REPLAY_MARGIN`].
//!
//! Only the ONNX runtime lives here; extraction is pure code in `protocol`
//! so votes and appeals can recompute rows without a model runtime.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

use std::path::{Path, PathBuf};
use std::sync::Arc;

use sentinel_protocol::features::{self, Row, Score};
use serde::{Deserialize, Serialize};
use tract_onnx::prelude::*;

/// Batch sizes the graph is compiled for, largest first. A request is cut
/// by [`runs`] into runs of these sizes, each with concrete shapes. There
/// is no plan for one row: tract's single-row (matrix-vector) path costs
/// more per call than its batch of 8 with seven zero rows of padding.
pub const BATCH_SIZES: [usize; 3] = [1_024, 64, 8];

/// How `n` rows are cut into runs of [`BATCH_SIZES`]: `(rows, plan size)`
/// pairs in order, `rows <= plan size`, the rest of a run padded with zero
/// rows whose outputs are dropped. Full runs of the largest size that fits
/// are taken; a tail bigger than half of the next size up runs in one
/// padded run of that size (a padded batch of 64 costs about as much as
/// two of 8); a tail smaller than the smallest size is padded to it.
#[must_use]
pub fn runs(n: usize) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut rest = n;
    while rest > 0 {
        let fits = BATCH_SIZES.iter().position(|&s| s <= rest);
        let size = match fits {
            // The next size up, when the rest is over half of it.
            Some(i) if i > 0 && rest * 2 > BATCH_SIZES[i - 1] => BATCH_SIZES[i - 1],
            Some(i) => BATCH_SIZES[i],
            None => BATCH_SIZES[BATCH_SIZES.len() - 1],
        };
        let take = rest.min(size);
        out.push((take, size));
        rest -= take;
    }
    out
}

/// Largest ONNX file accepted (the shipped ones are a few KB).
pub const MAX_MODEL_BYTES: u64 = 64 << 20;

/// What a model's single output means.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ModelKind {
    /// A classifier: the probability that the row is malicious.
    Classifier,
    /// An autoencoder: its reconstruction error mapped into `[0, 1)`
    /// inside the graph (`e / (e + e0)`, `e0` from training).
    Autoencoder,
}

/// The manifest next to every model file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Short name.
    pub name: String,
    /// What the score means.
    pub kind: ModelKind,
    /// The ONNX file, relative to the manifest.
    pub file: String,
    /// Hex SHA-256 of the ONNX file.
    pub sha256: String,
    /// The feature schema the model was trained on.
    pub feature_schema: String,
    /// Its columns, in input order.
    pub features: Vec<String>,
    /// Name of the graph's input (`[N, features]`, f32).
    pub input: String,
    /// Name of the graph's output (`[N, 1]`, f32 in `[0, 1]`).
    pub output: String,
    /// How it was trained: data hash, command, seeds, rows.
    pub training: serde_json::Value,
    /// Quality measured at training time.
    pub metrics: serde_json::Value,
}

/// Why a model was refused or could not score.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// A file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The manifest is not valid.
    #[error("model manifest {path}: {message}")]
    Manifest {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The ONNX file is not the one the manifest (or the policy) names.
    #[error("model {name}: {what} expects sha256 {expected}, but the file has {actual}")]
    Hash {
        /// The model.
        name: String,
        /// Who expects it: the manifest or the pinned policy hash.
        what: &'static str,
        /// Expected hex SHA-256.
        expected: String,
        /// Actual hex SHA-256.
        actual: String,
    },
    /// The model was trained on other features than this build extracts.
    #[error(
        "model {name} was trained on feature schema {got}, but this sentinel extracts {want}{detail}"
    )]
    Schema {
        /// The model.
        name: String,
        /// Its schema.
        got: String,
        /// Ours.
        want: &'static str,
        /// Which column differs, if the names do.
        detail: String,
    },
    /// tract could not load or run the graph.
    #[error("model {name}: {message}")]
    Onnx {
        /// The model.
        name: String,
        /// tract's message.
        message: String,
    },
}

/// Scores feature rows.
pub trait Scorer {
    /// The manifest of the model in use.
    fn manifest(&self) -> &Manifest;

    /// Raw model outputs, one per row, in row order.
    ///
    /// # Errors
    /// [`ModelError::Onnx`] when the runtime fails.
    fn score_raw(&mut self, rows: &[Row]) -> Result<Vec<f32>, ModelError>;

    /// Quantised scores, one per row.
    ///
    /// # Errors
    /// As [`Scorer::score_raw`].
    fn score(&mut self, rows: &[Row]) -> Result<Vec<Score>, ModelError> {
        Ok(self
            .score_raw(rows)?
            .into_iter()
            .map(Score::quantise)
            .collect())
    }
}

/// Hex SHA-256 of `bytes`.
#[must_use]
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bytes).as_ref())
}

impl Manifest {
    /// Parses a manifest.
    ///
    /// # Errors
    /// [`ModelError::Manifest`].
    pub fn parse(path: &Path, text: &str) -> Result<Self, ModelError> {
        serde_json::from_str(text).map_err(|e| ModelError::Manifest {
            path: path.to_path_buf(),
            message: e.to_string(),
        })
    }

    /// Checks the schema against the one this build extracts.
    ///
    /// # Errors
    /// [`ModelError::Schema`].
    pub fn check_schema(&self) -> Result<(), ModelError> {
        let mismatch = |detail: String| ModelError::Schema {
            name: self.name.clone(),
            got: self.feature_schema.clone(),
            want: features::SCHEMA,
            detail,
        };
        if self.feature_schema != features::SCHEMA {
            return Err(mismatch(String::new()));
        }
        if self.features.len() != features::COUNT {
            return Err(mismatch(format!(
                " ({} columns where the schema has {})",
                self.features.len(),
                features::COUNT
            )));
        }
        if let Some((i, (got, want))) = self
            .features
            .iter()
            .zip(features::NAMES)
            .enumerate()
            .find(|(_, (g, w))| g.as_str() != *w)
        {
            return Err(mismatch(format!(
                " (column {i} is {got:?} where the schema has {want:?})"
            )));
        }
        Ok(())
    }
}

/// A model run by tract: one compiled plan, with its run state kept between
/// calls, per batch size in [`BATCH_SIZES`].
#[derive(Debug)]
pub struct TractScorer {
    manifest: Manifest,
    plans: Vec<Plan>,
}

/// One batch size's compiled plan, run state and input tensor. The input
/// is filled in place and lent to tract for each run: tract lets go of its
/// inputs when the run ends, so the next call writes into the same buffer
/// instead of allocating and copying a new one.
#[derive(Debug)]
struct Plan {
    size: usize,
    state: TypedSimpleState,
    input: Arc<Tensor>,
}

impl TractScorer {
    /// Loads the model a manifest names, checking hashes and schema. With
    /// `pinned`, the ONNX file's SHA-256 must also equal it.
    ///
    /// # Errors
    /// [`ModelError`] naming the file and the check that failed.
    pub fn load(manifest_path: &Path, pinned: Option<&str>) -> Result<Self, ModelError> {
        let read = |p: &Path| {
            let len = std::fs::metadata(p)
                .map_err(|source| ModelError::Read {
                    path: p.to_path_buf(),
                    source,
                })?
                .len();
            if len > MAX_MODEL_BYTES {
                return Err(ModelError::Manifest {
                    path: p.to_path_buf(),
                    message: format!("{len} bytes is over the {MAX_MODEL_BYTES}-byte limit"),
                });
            }
            std::fs::read(p).map_err(|source| ModelError::Read {
                path: p.to_path_buf(),
                source,
            })
        };
        let text = String::from_utf8(read(manifest_path)?).map_err(|_| ModelError::Manifest {
            path: manifest_path.to_path_buf(),
            message: "not UTF-8".into(),
        })?;
        let manifest = Manifest::parse(manifest_path, &text)?;
        let file = Path::new(&manifest.file);
        if file.components().count() != 1 {
            return Err(ModelError::Manifest {
                path: manifest_path.to_path_buf(),
                message: format!(
                    "file {:?} must be a plain file name next to the manifest",
                    manifest.file
                ),
            });
        }
        let onnx = read(&manifest_path.with_file_name(file))?;
        Self::from_parts(manifest, &onnx, pinned)
    }

    /// A scorer from a parsed manifest and the ONNX bytes (checked as
    /// [`TractScorer::load`] does).
    ///
    /// # Errors
    /// [`ModelError`].
    pub fn from_parts(
        manifest: Manifest,
        onnx: &[u8],
        pinned: Option<&str>,
    ) -> Result<Self, ModelError> {
        let actual = sha256_hex(onnx);
        let hash_error = |what, expected: &str| ModelError::Hash {
            name: manifest.name.clone(),
            what,
            expected: expected.to_string(),
            actual: actual.clone(),
        };
        if !actual.eq_ignore_ascii_case(&manifest.sha256) {
            return Err(hash_error("its manifest", &manifest.sha256));
        }
        if let Some(pin) = pinned
            && !actual.eq_ignore_ascii_case(pin)
        {
            return Err(hash_error("the pinned policy", pin));
        }
        manifest.check_schema()?;
        let plans = BATCH_SIZES
            .iter()
            .map(|&size| {
                Ok(Plan {
                    size,
                    state: Self::plan(&manifest, onnx, size)?.spawn()?,
                    input: Arc::new(Tensor::zero::<f32>(&[size, features::COUNT])?),
                })
            })
            .collect::<TractResult<Vec<_>>>()
            .map_err(|e| ModelError::Onnx {
                name: manifest.name.clone(),
                message: format!("{e:#}"),
            })?;
        Ok(Self { manifest, plans })
    }

    fn plan(
        manifest: &Manifest,
        onnx: &[u8],
        batch: usize,
    ) -> TractResult<Arc<TypedRunnableModel>> {
        let mut reader = onnx;
        let model = tract_onnx::onnx().model_for_read(&mut reader)?;
        let inputs = model.input_outlets()?.len();
        let outputs = model.output_outlets()?.len();
        anyhow_ensure(inputs == 1, || {
            format!(
                "has {inputs} inputs where one ({}) is expected",
                manifest.input
            )
        })?;
        anyhow_ensure(outputs == 1, || {
            format!(
                "has {outputs} outputs where one ({}) is expected",
                manifest.output
            )
        })?;
        let typed = model
            .with_input_fact(0, f32::fact([batch, features::COUNT]).into())?
            .into_optimized()?;
        let out = typed.output_fact(0)?;
        let rank = out.shape.rank();
        anyhow_ensure(out.datum_type == f32::datum_type(), || {
            format!("output is {:?}, not f32", out.datum_type)
        })?;
        anyhow_ensure(
            rank == 1 || (rank == 2 && out.shape[1] == 1.to_dim()),
            || format!("output shape {:?} is not [N] or [N, 1]", out.shape),
        )?;
        typed.into_runnable()
    }

    fn run_batch(&mut self, rows: &[Row], size: usize, out: &mut Vec<f32>) -> TractResult<()> {
        let Some(plan) = self.plans.iter_mut().find(|p| p.size == size) else {
            return Err(tract_onnx::tract_core::internal::anyhow!(
                "no plan for a batch of {size}"
            ));
        };
        // Copies only if tract still held the last input (it never has).
        let mut view = Arc::make_mut(&mut plan.input).try_as_plain_ram_mut()?;
        let buffer = view.as_slice_mut::<f32>()?;
        let (filled, padding) = buffer.split_at_mut(rows.len() * features::COUNT);
        for (to, row) in filled.chunks_exact_mut(features::COUNT).zip(rows) {
            to.copy_from_slice(&row.0);
        }
        padding.fill(0.0);
        let result = plan.state.run(tvec!(plan.input.clone().into_tvalue()))?;
        let scores = result[0].try_as_plain_ram()?.as_slice::<f32>()?;
        anyhow_ensure(scores.len() == size, || {
            format!("{} outputs for a batch of {size}", scores.len())
        })?;
        out.extend_from_slice(&scores[..rows.len()]);
        Ok(())
    }
}

fn anyhow_ensure(ok: bool, message: impl FnOnce() -> String) -> TractResult<()> {
    if ok {
        Ok(())
    } else {
        Err(tract_onnx::tract_core::internal::anyhow!(message()))
    }
}

impl Scorer for TractScorer {
    fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    fn score_raw(&mut self, rows: &[Row]) -> Result<Vec<f32>, ModelError> {
        let mut out = Vec::with_capacity(rows.len());
        let mut rest = rows;
        for (take, size) in runs(rows.len()) {
            let (chunk, tail) = rest.split_at(take);
            self.run_batch(chunk, size, &mut out)
                .map_err(|e| ModelError::Onnx {
                    name: self.manifest.name.clone(),
                    message: format!("{e:#}"),
                })?;
            rest = tail;
        }
        Ok(out)
    }
}

/// The models shipped in `models/`, compiled into the binary so a sentinel
/// scores out of the box.
pub mod shipped {
    use super::{Manifest, ModelError, TractScorer};
    use std::path::Path;

    /// (manifest JSON, ONNX bytes) of the MLP classifier, the default.
    pub const CLASSIFIER: (&str, &[u8]) = (
        include_str!("../mlp-classifier.json"),
        include_bytes!("../mlp-classifier.onnx"),
    );
    /// (manifest JSON, ONNX bytes) of the MLP autoencoder.
    pub const AUTOENCODER: (&str, &[u8]) = (
        include_str!("../mlp-autoencoder.json"),
        include_bytes!("../mlp-autoencoder.onnx"),
    );

    /// The shipped model called `name` (`mlp-classifier` or
    /// `mlp-autoencoder`), checked like a file on disk; with `pinned`, its
    /// SHA-256 must equal it.
    ///
    /// # Errors
    /// [`ModelError::Manifest`] for an unknown name; the load checks'
    /// errors otherwise.
    pub fn load(name: &str, pinned: Option<&str>) -> Result<TractScorer, ModelError> {
        let (json, onnx) = match name {
            "mlp-classifier" => CLASSIFIER,
            "mlp-autoencoder" => AUTOENCODER,
            other => {
                return Err(ModelError::Manifest {
                    path: Path::new(other).to_path_buf(),
                    message: "no shipped model has this name (mlp-classifier, mlp-autoencoder)"
                        .into(),
                });
            }
        };
        let manifest = Manifest::parse(Path::new(name), json)?;
        TractScorer::from_parts(manifest, onnx, pinned)
    }
}

#[cfg(test)]
mod tests {
    use super::{BATCH_SIZES, runs};

    #[test]
    fn runs_cover_every_row_once_in_compiled_sizes() {
        for n in 0..3_000 {
            let cut = runs(n);
            assert_eq!(cut.iter().map(|(take, _)| take).sum::<usize>(), n, "{n}");
            for &(take, size) in &cut {
                assert!(BATCH_SIZES.contains(&size), "{n}: {size}");
                assert!(take > 0 && take <= size, "{n}: {take} in {size}");
            }
            // Only the last run is padded.
            assert!(
                cut.iter().rev().skip(1).all(|(t, s)| t == s),
                "{n}: {cut:?}"
            );
        }
    }

    #[test]
    fn runs_pad_small_tails_and_take_full_batches() {
        assert_eq!(runs(1), [(1, 8)]);
        assert_eq!(runs(8), [(8, 8)]);
        assert_eq!(runs(20), [(8, 8), (8, 8), (4, 8)]);
        assert_eq!(runs(40), [(40, 64)]);
        assert_eq!(runs(64), [(64, 64)]);
        assert_eq!(
            runs(300),
            [(64, 64), (64, 64), (64, 64), (64, 64), (44, 64)]
        );
        assert_eq!(runs(600), [(600, 1_024)]);
        assert_eq!(runs(1_030), [(1_024, 1_024), (6, 8)]);
    }
}
