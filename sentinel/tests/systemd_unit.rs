//! The example systemd unit (`sentinel/dist/sentinel.service`) runs the
//! sentinel the way it says: its `ExecStart` command line and `Environment`
//! start a working sentinel (paths swapped for a temporary install), its
//! `KillSignal` stops it cleanly within `TimeoutStopSec`, and the logs are
//! the JSON lines the unit asks for. When `systemd-analyze` is installed,
//! it must accept the unit too.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn directive<'a>(unit: &'a str, key: &str) -> Vec<&'a str> {
    unit.lines()
        .filter_map(|l| l.strip_prefix(key)?.strip_prefix('='))
        .collect()
}

#[test]
fn the_unit_starts_and_stops_a_sentinel() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/dist/sentinel.service");
    let unit = std::fs::read_to_string(path).unwrap();

    let exec = directive(&unit, "ExecStart");
    assert_eq!(exec.len(), 1, "one ExecStart");
    let mut argv = exec[0].split_whitespace();
    assert_eq!(argv.next(), Some("/usr/local/bin/sentinel"));
    let args: Vec<&str> = argv.collect();
    assert_eq!(args[..2], ["run", "--config"], "{args:?}");
    assert_eq!(args[2], "/etc/sentinel/sentinel.toml");
    assert_eq!(directive(&unit, "KillSignal"), ["SIGTERM"]);
    let stop_timeout: u64 = directive(&unit, "TimeoutStopSec")[0]
        .trim_end_matches('s')
        .parse()
        .unwrap();

    let dir = tempfile::tempdir().unwrap();
    let node = sentinel::devnet::prepare(dir.path(), "unit", 1, 0)
        .unwrap()
        .remove(0);
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_sentinel"));
    cmd.args(&args[..2]).arg(&node.config);
    for env in directive(&unit, "Environment") {
        let (k, v) = env.split_once('=').unwrap();
        cmd.env(k, v);
    }
    let log = dir.path().join("log");
    let mut child = cmd
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let start = Instant::now();
    let ready = loop {
        let r = rt.block_on(sentinel::http::get(
            node.api,
            "localhost",
            "/readyz",
            None,
            Duration::from_secs(1),
        ));
        if matches!(r, Ok((200, _))) || start.elapsed() > Duration::from_secs(30) {
            break r;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(matches!(ready, Ok((200, _))), "{ready:?}");

    Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status()
        .unwrap();
    let stopping = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(
            stopping.elapsed() < Duration::from_secs(stop_timeout),
            "still running after TimeoutStopSec"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "{status}");
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.lines().count() >= 2, "{text}");
    for line in text.lines() {
        let v: serde_json::Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("not a JSON log line ({e}): {line}"));
        assert!(v["level"].is_string(), "{line}");
    }

    if Command::new("systemd-analyze")
        .arg("--version")
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
    {
        let out = Command::new("systemd-analyze")
            .arg("verify")
            .arg(path)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        // The binary is not installed here; anything else is a unit error.
        let problems: Vec<&str> = err
            .lines()
            .filter(|l| !l.contains("/usr/local/bin/sentinel") && !l.trim().is_empty())
            .collect();
        assert!(problems.is_empty(), "{err}");
    }
}
