//! Detection in the daemon: four real sentinels score each other with the
//! shipped model (`/v1/scores`, metrics), raise no suspicion in a quiet
//! mesh, store the scored rows, and `sentinel export` turns what one of
//! them stored into a dataset while it runs. A sentinel whose model does not
//! match the pinned hash refuses to start and says why.

mod common;

use std::process::Command;
use std::time::Duration;

use common::{api, log_of, start, terminate, wait_for};
use sentinel::devnet;

#[test]
fn sentinels_score_their_neighbours_and_export_what_they_stored() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let nodes = devnet::prepare(dir.path(), "detection", 4, 0).unwrap();
    let mut procs: Vec<_> = nodes.iter().map(|n| start(n, &[])).collect();

    // Every sentinel scores at least two neighbours (a report every 5 s).
    wait_for(
        "every sentinel to score its neighbours",
        Duration::from_secs(60),
        || {
            nodes.iter().all(|n| {
                api(&rt, n, "/v1/scores")
                    .is_some_and(|v| v["neighbours"].as_array().is_some_and(|a| a.len() >= 2))
            })
        },
    );
    // Let a few more windows pass.
    std::thread::sleep(Duration::from_secs(12));
    for n in &nodes {
        let v = api(&rt, n, "/v1/scores").unwrap();
        assert!(
            v["model"].as_str().unwrap().starts_with("mlp-classifier "),
            "{v}"
        );
        for s in v["neighbours"].as_array().unwrap() {
            let score = s["score"].as_f64().unwrap();
            assert!((0.0..=1.0).contains(&score), "{s}");
            assert_eq!(
                s["suspected"], false,
                "an honest neighbour is suspected: {s}"
            );
        }
        let log = log_of(n);
        assert!(!log.contains("local suspicion raised"), "{log}");
        assert!(log.contains("detection model loaded"), "{log}");
    }
    let token = sentinel::daemon::read_api_token(&nodes[0].dir.join("data")).unwrap();
    let (code, metrics) = rt
        .block_on(sentinel::http::get(
            nodes[0].api,
            &nodes[0].api.to_string(),
            "/metrics",
            Some(&token),
            Duration::from_secs(2),
        ))
        .unwrap();
    assert_eq!(code, 200);
    let scored: f64 = metrics
        .lines()
        .find(|l| l.starts_with("sentinel_rows_scored_total"))
        .and_then(|l| l.split_whitespace().last()?.parse().ok())
        .unwrap_or(0.0);
    assert!(scored >= 2.0, "{metrics}");
    // Honest neighbours: no accusation was even considered.
    for reason in ["degraded", "own_view"] {
        let line = format!("sentinel_accusations_withheld{{reason=\"{reason}\"}} 0");
        assert!(metrics.lines().any(|l| l == line), "{line}\n{metrics}");
    }
    // The status sums up the same scoring (what `devnet --seconds` prints).
    let status = api(&rt, &nodes[0], "/v1/status").unwrap();
    let d = &status["detection"];
    assert!(d["rows_scored"].as_f64().unwrap() >= scored, "{d}");
    assert_eq!(d["suspicions_raised"], 0, "{d}");
    assert_eq!(d["accusations_withheld_degraded"], 0, "{d}");
    assert_eq!(d["accusations_withheld_own_view"], 0, "{d}");
    assert_eq!(d["locally_suspected"], serde_json::json!([]), "{d}");
    let highest = d["highest_score"].as_f64().unwrap();
    assert!((0.0..0.9).contains(&highest), "{d}");
    assert!(d["highest_subject"].is_string(), "{d}");
    let scores = api(&rt, &nodes[0], "/v1/scores").unwrap();
    let named = scores["model"].as_str().unwrap().split(' ').nth(1);
    assert_eq!(named, d["model"].as_str(), "{d}");

    // Export while it runs.
    let out = dir.path().join("export");
    let o = Command::new(env!("CARGO_BIN_EXE_sentinel"))
        .args(["export", "--since", "1h", "--out"])
        .arg(&out)
        .arg("--config")
        .arg(&nodes[0].config)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let summary: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("dataset.json")).unwrap()).unwrap();
    assert!(
        summary["rows"]["features"].as_u64().unwrap() >= 2,
        "{summary}"
    );
    assert!(
        summary["rows"]["telemetry_host"].as_u64().unwrap() >= 5,
        "{summary}"
    );
    assert_eq!(
        summary["meta"]["producer"]
            .as_str()
            .map(|p| p.starts_with("sentinel export")),
        Some(true)
    );
    assert!(!stdout.contains("did not verify"), "{stdout}");
    for p in &mut procs {
        terminate(p);
    }
}

#[test]
fn a_model_that_does_not_match_the_pinned_hash_is_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let nodes = devnet::prepare(dir.path(), "pinned", 1, 0).unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_sentinel"))
        .args(["run", "--config"])
        .arg(&nodes[0].config)
        .env("SENTINEL_DETECTION_PINNED_SHA256", "ab".repeat(32))
        .output()
        .unwrap();
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("detection model"), "{err}");
    assert!(err.contains("pinned policy expects sha256 abab"), "{err}");
}
