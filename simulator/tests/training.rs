//! The documented training command (models/training/README.md), run from
//! this checkout, is deterministic (two trainings on the same simulated
//! data give the same data hash and validation metrics), and the shipped
//! classifier still holds on the data this checkout's simulator produces:
//! almost no honest row at the raise threshold, no false raise, and the
//! window recall of every trained kind. (The shipped models were trained on
//! an earlier simulator; models/training/README.md says why they stay.)

use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn run(cmd: &mut Command) {
    let out = cmd.output().expect("the command starts");
    assert!(
        out.status.success(),
        "{cmd:?} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn manifest(path: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(path).expect("manifest exists"))
        .expect("manifest is JSON")
}

#[test]
fn the_training_command_is_deterministic_and_the_shipped_classifier_holds_on_current_data() {
    let dir = tempfile::tempdir().unwrap();
    let mut datasets = Vec::new();
    for scenario in ["detect-train", "detect-train-small"] {
        let ds = dir.path().join(scenario);
        run(Command::new(env!("CARGO_BIN_EXE_sentinel-sim"))
            .arg("run")
            .arg(root().join(format!("simulator/scenarios/{scenario}.toml")))
            .arg("--dataset")
            .arg(&ds)
            .arg("--out")
            .arg(dir.path().join(format!("{scenario}-report")))
            .arg("--quiet"));
        datasets.push(ds);
    }
    let train = |out: &Path| {
        run(Command::new("python3")
            .arg(root().join("models/training/train.py"))
            .args(&datasets)
            .arg("--out")
            .arg(out));
    };
    let (first, second) = (dir.path().join("first"), dir.path().join("second"));
    train(&first);
    train(&second);
    for name in ["mlp-classifier", "mlp-autoencoder"] {
        let a = manifest(&first.join(format!("{name}.json")));
        let b = manifest(&second.join(format!("{name}.json")));
        assert_eq!(
            a["training"]["data_sha256"], b["training"]["data_sha256"],
            "{name}"
        );
        assert_eq!(a["training"]["rows"], b["training"]["rows"], "{name}");
        assert_eq!(
            a["metrics"]["validation"], b["metrics"]["validation"],
            "{name}"
        );
    }
    // The shipped classifier on today's training data.
    let out = Command::new("python3")
        .arg(root().join("models/training/tune.py"))
        .arg(&datasets[0])
        .arg(root().join("models/mlp-classifier.onnx"))
        .arg("--scenario")
        .arg(root().join("simulator/scenarios/detect-train.toml"))
        .output()
        .expect("tune.py starts");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .rev()
        .find(|l| l.starts_with('{'))
        .expect("tune.py prints a JSON line");
    let r: serde_json::Value = serde_json::from_str(line).expect("JSON");
    let rows = r["rows"].as_f64().unwrap();
    let high = r["honest_rows_high"].as_f64().unwrap();
    assert!(
        high <= 1e-4 * rows,
        "{high} honest rows of {rows} at the threshold"
    );
    assert_eq!(r["false_raises"], 0, "{r}");
    for (kind, recall) in r["window_recall_by_kind"].as_object().unwrap() {
        let floor = match kind.as_str() {
            // Left out of training (its harm is to others' rows).
            "framer" => continue,
            // Barely visible by design; suspected, not voted out.
            "mimic" => 0.85,
            _ => 0.95,
        };
        let recall = recall.as_f64().unwrap();
        assert!(recall >= floor, "{kind}: window recall {recall} < {floor}");
    }
}
