//! Scoring throughput of the shipped models: tract (what sentinels run)
//! against onnxruntime on the same model and inputs, in the same run, at
//! batch 1, 64 and 1,024; and the cost of extracting one feature row.
//!
//! ```sh
//! cargo run --release -p sentinel-benches --bin scoring-vs-ort
//! ```
//!
//! onnxruntime runs in Python (`benches/ort_bench.py`), which measures the
//! cost of an empty call (an Identity graph) in the same process and
//! subtracts it, so the figures compare the runtimes, not the Python call.
//! Goal: tract at least 0.5x onnxruntime at batch 64 and 1,024, and faster
//! at batch 1. The empty call subtracted from onnxruntime also holds
//! onnxruntime's own fixed cost per run; tract's figures keep theirs, so
//! tract's empty call (a plan with only an input) is printed beside it.

use std::hint::black_box;
use std::path::Path;
use std::process::{Command, ExitCode};
use std::time::Instant;

use sentinel_models::{Scorer, shipped};
use sentinel_protocol::NodeId;
use sentinel_protocol::features::{self, COUNT, Held, Inputs, Relays, Row};
use sentinel_protocol::rng::Rng;
use sentinel_protocol::telemetry::{HostSample, LinkSample, Observation, Report};

const BATCHES: [usize; 3] = [1, 64, 1024];
const SECONDS: f64 = 1.5;

/// Best mean time per call over rounds filling `SECONDS`.
fn per_call(mut f: impl FnMut()) -> f64 {
    for _ in 0..50 {
        f();
    }
    let (mut best, mut spent) = (f64::INFINITY, 0.0);
    while spent < SECONDS {
        let n = 200;
        let t = Instant::now();
        for _ in 0..n {
            f();
        }
        let dt = t.elapsed().as_secs_f64();
        spent += dt;
        best = best.min(dt / f64::from(n));
    }
    best
}

fn rows(n: usize) -> Vec<Row> {
    let mut r = Rng::from_seed(1);
    (0..n)
        .map(|_| {
            let mut row = [0f32; COUNT];
            for v in &mut row {
                #[allow(clippy::cast_possible_truncation, reason = "a small random float")]
                let x = (r.unit() * 3.0) as f32;
                *v = x;
            }
            Row(row)
        })
        .collect()
}

/// A subject with `k` neighbours, each reporting 5 samples about it, and
/// its own report naming them: what one row is extracted from.
fn neighbourhood(k: u8) -> (NodeId, Vec<(NodeId, Report)>) {
    let subject = NodeId([0; 32]);
    let sample = LinkSample {
        messages_in: 12,
        messages_out: 11,
        bytes_in: 9_000,
        bytes_out: 8_000,
        probes_sent: 1,
        rtt_ms: 40,
        ..LinkSample::default()
    };
    let report = |obs: Vec<NodeId>| Report {
        start_ms: 1_000_000,
        sample_ms: 1000,
        host: vec![HostSample::default(); 5],
        neighbours: obs
            .into_iter()
            .map(|n| Observation {
                neighbour: n,
                claimed_epoch: 1,
                claimed_sequence: 1,
                relays: Default::default(),
                samples: vec![sample; 5],
            })
            .collect(),
    };
    let others: Vec<NodeId> = (1..=k).map(|i| NodeId([i; 32])).collect();
    let mut out = vec![(subject, report(others.clone()))];
    out.extend(others.iter().map(|o| (*o, report(vec![subject]))));
    (subject, out)
}

/// tract's cost of a run that does nothing: a plan whose only node is the
/// `[1, COUNT]` input, fed a fresh tensor as the scorer does.
fn tract_empty_call() -> tract_onnx::prelude::TractResult<f64> {
    // tract's extension traits (`fact`, `into_runnable`) come with its prelude.
    use tract_onnx::prelude::*;
    let mut model = TypedModel::default();
    let input = model.add_source("features", f32::fact([1, COUNT]))?;
    model.select_output_outlets(&[input])?;
    let mut state: TypedSimpleState = model.into_runnable()?.spawn()?;
    let row = [0.5f32; COUNT];
    let mut failed = None;
    let t = per_call(|| {
        let run =
            Tensor::from_shape(&[1, COUNT], &row).and_then(|x| state.run(tvec!(x.into_tvalue())));
        if let Err(e) = run {
            failed = Some(e);
        }
    });
    failed.map_or(Ok(t), Err)
}

fn main() -> ExitCode {
    let model = Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/mlp-classifier.onnx");
    let mut scorer = match shipped::load("mlp-classifier", None) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let all = rows(1024);
    let mut tract = Vec::new();
    for b in BATCHES {
        let batch = &all[..b];
        let t = per_call(|| {
            black_box(scorer.score_raw(black_box(batch)).ok());
        });
        tract.push(b as f64 / t);
    }
    let tract_empty_s = match tract_empty_call() {
        Ok(t) => t,
        Err(e) => {
            eprintln!("tract empty plan: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("ort_bench.py");
    let out = Command::new("python3")
        .arg(&script)
        .arg(&model)
        .arg(COUNT.to_string())
        .arg(SECONDS.to_string())
        .args(BATCHES.map(|b| b.to_string()))
        .output();
    let ort: serde_json::Value = match out {
        Ok(o) if o.status.success() => serde_json::from_slice(&o.stdout).unwrap_or_default(),
        Ok(o) => {
            eprintln!(
                "onnxruntime side failed (pip install -r models/training/requirements.txt): {}",
                String::from_utf8_lossy(&o.stderr)
            );
            return ExitCode::FAILURE;
        }
        Err(e) => {
            eprintln!("python3: {e}");
            return ExitCode::FAILURE;
        }
    };
    let ort_empty_s = ort["empty_call_s"].as_f64().unwrap_or(0.0);
    println!(
        "model mlp-classifier ({} bytes); empty call: onnxruntime from Python {:.2} µs \
         (subtracted), tract {:.2} µs",
        std::fs::metadata(&model).map(|m| m.len()).unwrap_or(0),
        ort_empty_s * 1e6,
        tract_empty_s * 1e6
    );
    let ort_rows = |b: usize| {
        ort["batches"][b.to_string()]["rows_per_s"]
            .as_f64()
            .unwrap_or(f64::NAN)
    };
    println!("\n| batch | tract rows/s | onnxruntime rows/s | tract / onnxruntime | goal |");
    println!("|---|---|---|---|---|");
    for (b, t) in BATCHES.iter().zip(&tract) {
        let goal = if *b == 1 { "> 1" } else { ">= 0.5" };
        println!(
            "| {b} | {t:.0} | {:.0} | {:.2}x | {goal} |",
            ort_rows(*b),
            t / ort_rows(*b)
        );
    }
    println!("\n| feature extraction | per row |");
    println!("|---|---|");
    for k in [3u8, 8, 16] {
        let (subject, reports) = neighbourhood(k);
        let refs: Vec<Held<'_>> = reports
            .iter()
            .map(|(o, r)| Held {
                signer: *o,
                position: (1, 1),
                report: r,
                relays: Relays::default(),
            })
            .collect();
        let t = per_call(|| {
            black_box(features::extract(black_box(&Inputs {
                subject,
                observer: NodeId([1; 32]),
                now_ms: 1_005_000,
                horizon_ms: 10_000,
                reports: &refs,
            })));
        });
        println!("| subject with {k} reporters | {:.2} µs |", t * 1e6);
    }
    ExitCode::SUCCESS
}
