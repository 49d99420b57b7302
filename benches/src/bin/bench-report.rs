//! Prints the benchmark figures and the ratios against their same-run
//! references from criterion's output, and exits non-zero if a ratio misses
//! its target.
//!
//! `cargo bench -p sentinel-benches && cargo run -p sentinel-benches --bin bench-report`
//! (pass a directory to read another criterion output than `target/criterion`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// (name, measured, reference, target ratio or none for information only)
const RATIOS: &[(&str, &str, &str, Option<f64>)] = &[
    (
        "envelope verify / raw hybrid verify",
        "verify/envelope_open",
        "verify/raw_hybrid_parsed_keys",
        Some(1.10),
    ),
    (
        "record from batch of 100 / envelope verify",
        "verify/record_from_batch_of_100",
        "verify/envelope_open",
        Some(1.10),
    ),
    (
        "envelope verify / raw hybrid verify, keys parsed per call",
        "verify/envelope_open",
        "verify/raw_hybrid_unparsed_keys",
        None,
    ),
    (
        "envelope seal / raw hybrid sign",
        "sign/envelope_seal",
        "sign/raw_hybrid",
        None,
    ),
    (
        "simulator run, modelled / real crypto (200 nodes, 60 s)",
        "simulator/run_200_nodes_60s_modelled",
        "simulator/run_200_nodes_60s_real",
        None,
    ),
    (
        "QUIC handshake, X25519MLKEM768 / X25519 alone",
        "quic/handshake_x25519mlkem768",
        "quic/handshake_x25519",
        None,
    ),
    (
        "link set-up with roster authentication / bare PQ handshake",
        "quic/link_x25519mlkem768_authenticated",
        "quic/handshake_x25519mlkem768",
        None,
    ),
    (
        "quarantine certificate decode + verify / envelope verify (target: two verifies)",
        "verify/certificate_decode_and_verify",
        "verify/envelope_open",
        Some(2.20),
    ),
    (
        "batch of 100 seal / one envelope seal",
        "sign/batch_seal_100_records",
        "sign/envelope_seal",
        None,
    ),
    (
        "alert queued with its incident (fsync) / bare SQLite commit (fsync)",
        "alerts/outbox_queue",
        "alerts/sqlite_commit",
        None,
    ),
    (
        "signed webhook delivery / plain POST, same receiver",
        "alerts/deliver_signed",
        "alerts/post_plain",
        None,
    ),
    (
        "alert through the outbox (queue, deliver, record) / bare SQLite commit",
        "alerts/outbox_end_to_end",
        "alerts/sqlite_commit",
        None,
    ),
];

/// Mean time per iteration in nanoseconds, and the 95% confidence interval.
fn estimate(dir: &Path, bench: &str) -> Result<(f64, f64, f64), String> {
    let path = dir.join(bench).join("new/estimates.json");
    let text = std::fs::read_to_string(&path).map_err(|e| {
        format!(
            "{}: {e} (run `cargo bench -p sentinel-benches` first)",
            path.display()
        )
    })?;
    let json: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    let mean = &json["mean"];
    let get = |v: &serde_json::Value| {
        v.as_f64()
            .ok_or_else(|| format!("{}: no mean estimate", path.display()))
    };
    Ok((
        get(&mean["point_estimate"])?,
        get(&mean["confidence_interval"]["lower_bound"])?,
        get(&mean["confidence_interval"]["upper_bound"])?,
    ))
}

fn human(ns: f64) -> String {
    if ns >= 1e6 {
        format!("{:.2} ms", ns / 1e6)
    } else if ns >= 1e3 {
        format!("{:.2} µs", ns / 1e3)
    } else {
        format!("{ns:.0} ns")
    }
}

/// The element count of a benchmark declared with a throughput.
fn elements(dir: &Path, bench: &str) -> Option<f64> {
    let text = std::fs::read_to_string(dir.join(bench).join("new/benchmark.json")).ok()?;
    let json: serde_json::Value = serde_json::from_str(&text).ok()?;
    json["throughput"]["Elements"].as_f64()
}

fn main() -> ExitCode {
    let dir = std::env::args()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/criterion"));
    let mut benches: Vec<&str> = RATIOS.iter().flat_map(|r| [r.1, r.2]).collect();
    benches.extend([
        "codec/envelope_encode",
        "codec/envelope_parse_header",
        "codec/record_proof_decode",
    ]);
    benches.sort_unstable();
    benches.dedup();

    // Read every estimate once; both tables use the same figures.
    let mut means = BTreeMap::new();
    println!("| benchmark | mean | 95% CI | elements per second |");
    println!("|---|---|---|---|");
    for b in benches {
        let (m, lo, hi) = match estimate(&dir, b) {
            Ok(e) => e,
            Err(e) => {
                eprintln!("{e}");
                return ExitCode::FAILURE;
            }
        };
        // Benchmarks that declare an element count (records in a batch,
        // events in a simulator run) read per element.
        let per_second = format!("{:.0}", elements(&dir, b).unwrap_or(1.0) * 1e9 / m);
        println!(
            "| {b} | {} | {} – {} | {per_second} |",
            human(m),
            human(lo),
            human(hi),
        );
        means.insert(b, m);
    }
    println!();
    println!("| ratio | value | target |");
    println!("|---|---|---|");
    let mut ok = true;
    for (name, measured, reference, target) in RATIOS {
        let (m, r) = (means[measured], means[reference]);
        let ratio = m / r;
        let verdict = match target {
            Some(t) if ratio <= *t => format!("≤ {t:.2} met"),
            Some(t) => {
                ok = false;
                format!("≤ {t:.2} MISSED")
            }
            None => "(information)".to_owned(),
        };
        println!("| {name} | {ratio:.3}x | {verdict} |");
    }
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
