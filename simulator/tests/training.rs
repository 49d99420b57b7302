//! The documented training command (models/training/README.md), run from
//! this checkout, reproduces the shipped models: the same training data
//! (hash of every training row and label) and the same validation metrics
//! within a tolerance that covers another CPU's rounding.

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
fn the_training_command_reproduces_the_shipped_models() {
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
    let models = dir.path().join("models");
    run(Command::new("python3")
        .arg(root().join("models/training/train.py"))
        .args(&datasets)
        .arg("--out")
        .arg(&models));
    for name in ["mlp-classifier", "mlp-autoencoder"] {
        let shipped = manifest(&root().join(format!("models/{name}.json")));
        let ours = manifest(&models.join(format!("{name}.json")));
        assert_eq!(
            ours["training"]["data_sha256"], shipped["training"]["data_sha256"],
            "{name}: the simulator produced other training data"
        );
        assert_eq!(ours["training"]["rows"], shipped["training"]["rows"]);
        let (a, b) = (
            &ours["metrics"]["validation"],
            &shipped["metrics"]["validation"],
        );
        for (metric, tolerance) in [
            ("auc", 0.005),
            ("recall", 0.01),
            ("false_positive_rate", 2e-4),
        ] {
            let (x, y) = (a[metric].as_f64().unwrap(), b[metric].as_f64().unwrap());
            assert!(
                (x - y).abs() <= tolerance,
                "{name}: {metric} {x} where the shipped model has {y} (tolerance {tolerance})"
            );
        }
        assert_eq!(a["rows"], b["rows"]);
    }
}
