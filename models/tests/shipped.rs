//! The shipped models: they load with their checks, tract agrees with
//! onnxruntime on the same inputs within 1e-5, and a wrong hash, schema or
//! file is refused with an error that says which.

use std::path::Path;
use std::process::Command;

use sentinel_models::{Manifest, ModelError, Scorer, TractScorer, shipped};
use sentinel_protocol::features::{COUNT, Row};
use sentinel_protocol::rng::Rng;

const NAMES: [&str; 2] = ["mlp-classifier", "mlp-autoencoder"];

/// Rows spread over what the features take: quiet ones near zero, busy and
/// hostile ones far out, and every column at its extremes.
fn rows() -> Vec<Row> {
    let mut r = Rng::from_seed(42);
    let mut out = Vec::new();
    for i in 0..2_000 {
        let mut row = [0f32; COUNT];
        for v in &mut row {
            let scale = [0.1, 1.0, 5.0, 30.0][i % 4];
            #[allow(clippy::cast_possible_truncation)]
            let x = (r.unit() * scale) as f32;
            *v = x;
        }
        out.push(Row(row));
    }
    out.push(Row([0.0; COUNT]));
    out.push(Row([1e4; COUNT]));
    out
}

fn ort_scores(onnx: &Path, rows: &[Row]) -> Vec<f32> {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let input = dir.path().join("rows.f32");
    let output = dir.path().join("out.f32");
    let bytes: Vec<u8> = rows
        .iter()
        .flat_map(|r| r.0.iter().flat_map(|v| v.to_le_bytes()))
        .collect();
    std::fs::write(&input, bytes).expect("rows written");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("training/ort_score.py");
    let status = Command::new("python3")
        .arg(&script)
        .arg(onnx)
        .arg(&input)
        .arg(COUNT.to_string())
        .arg(&output)
        .status()
        .expect("python3 is needed (`.ci/run` installs models/training/requirements.txt)");
    assert!(
        status.success(),
        "onnxruntime scoring failed: install it with `pip install -r models/training/requirements.txt`"
    );
    std::fs::read(&output)
        .expect("onnxruntime wrote its scores")
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

#[test]
fn tract_agrees_with_onnxruntime_on_every_shipped_model() {
    let rows = rows();
    for name in NAMES {
        let mut scorer = shipped::load(name, None).unwrap();
        let ours = scorer.score_raw(&rows).unwrap();
        let theirs = ort_scores(
            &Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("{name}.onnx")),
            &rows,
        );
        assert_eq!(ours.len(), theirs.len());
        let worst = ours
            .iter()
            .zip(&theirs)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        eprintln!(
            "{name}: max |tract - onnxruntime| = {worst:e} over {} rows",
            rows.len()
        );
        assert!(
            worst <= 1e-5,
            "{name}: tract and onnxruntime differ by {worst}"
        );
        assert!(
            ours.iter().all(|s| (0.0..=1.0).contains(s)),
            "{name}: a score outside [0, 1]"
        );
        // One row at a time gives the batch's answers.
        for (i, row) in rows.iter().enumerate().step_by(97) {
            let one = scorer.score_raw(std::slice::from_ref(row)).unwrap()[0];
            assert!(
                (one - ours[i]).abs() <= 1e-6,
                "{name}: batch 1 vs batch differ at row {i}"
            );
        }
    }
}

#[test]
fn files_on_disk_match_the_compiled_in_copies_and_their_manifests() {
    for name in NAMES {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("{name}.json"));
        let from_disk = TractScorer::load(&path, None).unwrap();
        let built_in = shipped::load(name, None).unwrap();
        assert_eq!(from_disk.manifest(), built_in.manifest());
        let pinned = built_in.manifest().sha256.clone();
        TractScorer::load(&path, Some(&pinned)).unwrap();
    }
}

#[test]
fn a_model_that_does_not_match_is_refused_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let (json, onnx) = shipped::CLASSIFIER;
    let write = |manifest: &Manifest, bytes: &[u8]| {
        std::fs::write(dir.path().join("m.onnx"), bytes).unwrap();
        let mut m = manifest.clone();
        m.file = "m.onnx".into();
        let p = dir.path().join("m.json");
        std::fs::write(&p, serde_json::to_string(&m).unwrap()).unwrap();
        p
    };
    let manifest = Manifest::parse(Path::new("x"), json).unwrap();

    // Pinned policy hash differs.
    let p = write(&manifest, onnx);
    let e = TractScorer::load(&p, Some(&"0".repeat(64))).unwrap_err();
    assert!(
        matches!(
            e,
            ModelError::Hash {
                what: "the pinned policy",
                ..
            }
        ),
        "{e}"
    );
    assert!(e.to_string().contains("pinned policy"), "{e}");

    // One byte of the file changed.
    let mut bad = onnx.to_vec();
    let last = bad.len() - 1;
    bad[last] ^= 1;
    let p = write(&manifest, &bad);
    let e = TractScorer::load(&p, None).unwrap_err();
    assert!(e.to_string().contains("its manifest expects sha256"), "{e}");

    // Trained on another schema, or other columns.
    let mut m = manifest.clone();
    m.feature_schema = "sentinel-features/0".into();
    let e = TractScorer::load(&write(&m, onnx), None).unwrap_err();
    assert!(
        e.to_string().contains("feature schema sentinel-features/0"),
        "{e}"
    );
    let mut m = manifest.clone();
    m.features.swap(0, 1);
    let e = TractScorer::load(&write(&m, onnx), None).unwrap_err();
    assert!(e.to_string().contains("column 0"), "{e}");

    // Not ONNX at all (with a matching hash).
    let mut m = manifest.clone();
    m.sha256 = sentinel_models::sha256_hex(b"not a model");
    let e = TractScorer::load(&write(&m, b"not a model"), None).unwrap_err();
    assert!(matches!(e, ModelError::Onnx { .. }), "{e}");

    // A manifest pointing outside its directory.
    let mut m = manifest;
    m.file = "../elsewhere.onnx".into();
    let p = dir.path().join("m.json");
    std::fs::write(&p, serde_json::to_string(&m).unwrap()).unwrap();
    let e = TractScorer::load(&p, None).unwrap_err();
    assert!(e.to_string().contains("plain file name"), "{e}");
}
