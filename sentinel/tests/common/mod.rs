//! Helpers shared by the tests that run real sentinel processes.
#![allow(dead_code, reason = "each test binary uses some of these helpers")]

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use sentinel::devnet::DevNode;
use serde_json::Value;

/// A sentinel process, killed when dropped.
pub(crate) struct Proc(pub(crate) Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub(crate) fn start(node: &DevNode, env: &[(&str, &str)]) -> Proc {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(node.dir.join("sentinel.log"))
        .expect("log file opens");
    Proc(
        Command::new(env!("CARGO_BIN_EXE_sentinel"))
            .args(["run", "--config"])
            .arg(&node.config)
            .env("SENTINEL_LOG_LEVEL", "debug")
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("sentinel starts"),
    )
}

pub(crate) fn api(rt: &tokio::runtime::Runtime, node: &DevNode, path: &str) -> Option<Value> {
    rt.block_on(node.api_json(path)).ok()
}

/// Whether `ok` became true within `limit`, asked every 250 ms.
fn poll(limit: Duration, mut ok: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if ok() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    false
}

pub(crate) fn wait_for(what: &str, limit: Duration, ok: impl FnMut() -> bool) {
    assert!(
        poll(limit, ok),
        "timed out after {limit:?} waiting for {what}"
    );
}

/// As `wait_for`, but a timeout also shows what each of `nodes` logged
/// about suspicions, accusations, votes and certificates (and every
/// warning), so a failure on a CI machine can be read without rerunning it.
pub(crate) fn wait_for_mesh(
    what: &str,
    limit: Duration,
    nodes: &[DevNode],
    ok: impl FnMut() -> bool,
) {
    assert!(
        poll(limit, ok),
        "timed out after {limit:?} waiting for {what}\n{}",
        mesh_log(nodes)
    );
}

/// The last lines of each node's log that tell the quarantine story.
pub(crate) fn mesh_log(nodes: &[DevNode]) -> String {
    const KEEP: usize = 25;
    let telling = |l: &&str| {
        [
            "WARN",
            "ERROR",
            "suspected",
            "voted",
            "accusation",
            "accused",
            "certificate",
        ]
        .iter()
        .any(|w| l.contains(w))
    };
    let mut out = String::new();
    for n in nodes {
        let log = log_of(n);
        let lines: Vec<&str> = log.lines().filter(telling).collect();
        let from = lines.len().saturating_sub(KEEP);
        out.push_str(&format!(
            "--- {} ({} telling lines, last {}):\n",
            n.id,
            lines.len(),
            lines.len() - from
        ));
        for l in &lines[from..] {
            out.push_str(l);
            out.push('\n');
        }
    }
    out
}

/// Each member's newest held report, (epoch, sequence), by id, from a
/// `/v1/peers` answer (`sentinel peers`).
pub(crate) fn latest_reports(peers: &Value) -> std::collections::BTreeMap<String, (u64, u64)> {
    peers
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| {
            let l: (u64, u64) = serde_json::from_value(p["latest_report"].clone()).ok()?;
            Some((p["id"].as_str()?.to_owned(), l))
        })
        .collect()
}

pub(crate) fn log_of(node: &DevNode) -> String {
    std::fs::read_to_string(node.dir.join("sentinel.log")).unwrap_or_default()
}

pub(crate) fn terminate(p: &mut Proc) {
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(p.0.id().to_string())
        .status();
    let status = p.0.wait().expect("waits");
    assert!(status.success(), "exit status {status}");
}

/// Copies the files of `from` into a new directory `to`.
pub(crate) fn copy_files(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir(to).expect("creates the copy");
    for entry in std::fs::read_dir(from).expect("lists the original") {
        let path = entry.expect("entry").path();
        let name = path.file_name().expect("a file name");
        std::fs::copy(&path, to.join(name)).expect("copies");
    }
}

/// No sentinel among `nodes` found or took evidence against anyone: the
/// safety check after crashes, restores and refused second processes.
pub(crate) fn assert_nobody_quarantined(rt: &tokio::runtime::Runtime, nodes: &[DevNode]) {
    for n in nodes {
        let s = api(rt, n, "/v1/status").expect("status answers");
        assert_eq!(s["equivocations_detected"], 0, "{}: {s}", n.id);
        assert_eq!(s["certificates_accepted"], 0, "{}: {s}", n.id);
        assert_eq!(s["quarantined"], serde_json::json!([]), "{}: {s}", n.id);
    }
}
