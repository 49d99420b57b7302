//! A run is a function of its scenario and seed: two processes running the
//! same scenario print the same trace hash, a different seed changes it, and
//! the report files are written.

use std::path::Path;
use std::process::Command;

fn run(scenario: &str, seed: u64, extra: &[&str], out: &Path) -> String {
    let file = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("scenarios")
        .join(scenario);
    let output = Command::new(env!("CARGO_BIN_EXE_sentinel-sim"))
        .arg("run")
        .arg(&file)
        .args(["--seed", &seed.to_string(), "--quiet", "--out"])
        .arg(out)
        .args(extra)
        .output()
        .expect("sentinel-sim starts");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "sentinel-sim failed: {}\n{stdout}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
        .lines()
        .find_map(|l| l.strip_prefix("trace-hash "))
        .unwrap_or_else(|| panic!("no trace hash in output:\n{stdout}"))
        .to_string()
}

#[test]
fn same_seed_gives_the_same_trace_in_separate_processes() {
    let dir = tempfile::tempdir().unwrap();
    let a = run("smoke.toml", 7, &[], &dir.path().join("a"));
    let b = run("smoke.toml", 7, &[], &dir.path().join("b"));
    let c = run("smoke.toml", 8, &[], &dir.path().join("c"));
    assert_eq!(a, b);
    assert_ne!(a, c);
    assert_eq!(a.len(), 64);
    for f in [
        "report.json",
        "report.md",
        "delivery_over_time.svg",
        "latency_cdf.svg",
        "bandwidth_over_time.svg",
    ] {
        let p = dir.path().join("a").join(f);
        assert!(
            std::fs::metadata(&p).unwrap().len() > 100,
            "{f} missing or empty"
        );
    }
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("a/report.json")).unwrap()).unwrap();
    assert_eq!(json["trace_hash"].as_str(), Some(a.as_str()));
}

#[test]
fn real_signatures_are_deterministic_and_modelled_mode_matches_them() {
    // ML-DSA signatures are randomised; the trace hashes signed content, so
    // real-crypto runs still agree. Modelled frames have the real sizes and
    // open where real ones do, so the whole trace is the same: what a
    // modelled 10,000-node run shows is what real signatures would give.
    let dir = tempfile::tempdir().unwrap();
    let args = ["--nodes", "20", "--duration", "70"];
    let real = [&args[..], &["--crypto", "real"]].concat();
    let a = run("smoke.toml", 3, &real, &dir.path().join("a"));
    let b = run("smoke.toml", 3, &real, &dir.path().join("b"));
    assert_eq!(a, b);
    let modelled = [&args[..], &["--crypto", "modelled"]].concat();
    let m = run("smoke.toml", 3, &modelled, &dir.path().join("m"));
    assert_eq!(a, m);
}
