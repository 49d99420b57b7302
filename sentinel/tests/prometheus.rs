//! A real Prometheus server (the Debian package `prometheus`, which
//! `.ci/run` installs) scrapes a running sentinel's `/metrics`: the target is
//! up and the values it stored are the ones the sentinel reports.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use sentinel::devnet;
use serde_json::Value;

struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn get(rt: &tokio::runtime::Runtime, addr: std::net::SocketAddr, path: &str) -> Option<Value> {
    let (code, body) = rt
        .block_on(sentinel::http::get(
            addr,
            "localhost",
            path,
            None,
            Duration::from_secs(2),
        ))
        .ok()?;
    (code == 200).then(|| serde_json::from_str(&body).ok())?
}

/// The single value of an instant query, as Prometheus formats it.
fn query(rt: &tokio::runtime::Runtime, addr: std::net::SocketAddr, q: &str) -> Option<String> {
    let encoded: String = q
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b == b'_' {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect();
    let v = get(rt, addr, &format!("/api/v1/query?query={encoded}"))?;
    let result = v["data"]["result"].as_array()?;
    Some(result.first()?["value"][1].as_str()?.to_owned())
}

#[test]
fn prometheus_scrapes_a_sentinel() {
    let binary = std::env::var("PROMETHEUS").unwrap_or_else(|_| "prometheus".into());
    let found = Command::new(&binary)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        found,
        "no `{binary}` binary: install the Debian package prometheus (.ci/run does) or set PROMETHEUS"
    );

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let node = devnet::prepare(dir.path(), "prom", 1, 0).unwrap().remove(0);
    let _sentinel = Proc(
        Command::new(env!("CARGO_BIN_EXE_sentinel"))
            .args(["run", "--config"])
            .arg(&node.config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );

    let web = devnet::free_port(false).unwrap();
    let config = dir.path().join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n  - job_name: sentinel\n    metrics_path: /metrics\n    static_configs:\n      - targets: ['{}']\n",
            node.api
        ),
    )
    .unwrap();
    let log = std::fs::File::create(dir.path().join("prometheus.log")).unwrap();
    let _prometheus = Proc(
        Command::new(&binary)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--web.listen-address={web}"))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("tsdb").display()
            ))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap(),
    );

    let start = Instant::now();
    let mut up = None;
    while start.elapsed() < Duration::from_secs(60) {
        up = query(&rt, web, "up");
        if up.as_deref() == Some("1") {
            break;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    let log = std::fs::read_to_string(dir.path().join("prometheus.log")).unwrap_or_default();
    assert_eq!(
        up.as_deref(),
        Some("1"),
        "target not up; prometheus log:\n{log}"
    );

    // What Prometheus stored is what the sentinel says.
    let status = rt.block_on(node.api_json("/v1/status")).unwrap();
    let epoch = status["epoch"].as_u64().unwrap();
    // Prometheus formats samples as float strings; epochs are Unix ms,
    // within f64's exact integer range.
    #[allow(clippy::cast_precision_loss)]
    let expected = epoch as f64;
    let stored: f64 = query(&rt, web, "sentinel_epoch")
        .expect("sentinel_epoch stored")
        .parse()
        .unwrap();
    assert!((stored - expected).abs() < 1.0, "{stored} vs {epoch}");
    let scrapes = query(&rt, web, "count_over_time(up[1m])").unwrap();
    assert!(scrapes.parse::<f64>().unwrap() >= 1.0);
}
