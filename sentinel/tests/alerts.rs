//! Alert webhooks end to end: five real sentinels on loopback, the fifth
//! floods its neighbours, and the honest four alert three endpoints served
//! by a real HTTP receiver that verifies every request with the
//! `standardwebhooks` library from PyPI (`webhook_receiver.py`).
//!
//! The receiver is down at first. One honest sentinel is killed with
//! SIGKILL while its alerts are being retried, and started again; then the
//! receiver comes up. Every alert in every outbox must arrive, verified;
//! copies of one alert share its webhook-id; one incident (the flooder's
//! quarantine) has one id at every sentinel; an endpoint answering 410 is
//! disabled with its alerts in the dead-letter list; one answering 429
//! with `Retry-After: 1` gets each alert again no sooner than a second
//! later.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{Proc, api, start, wait_for};
use sentinel::devnet::{self, DevNode};
use serde_json::Value;

/// The Python receiver, stopped when dropped.
struct Receiver(Child);

impl Drop for Receiver {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.0.id().to_string())
            .status();
        let _ = self.0.wait();
    }
}

fn receiver(port: u16, secrets: &Path, log: &Path) -> Receiver {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/webhook_receiver.py");
    let mut child = Command::new("python3")
        .arg(script)
        .arg(port.to_string())
        .arg(secrets)
        .arg(log)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("python3 starts the receiver");
    // It prints one line once it listens.
    let mut out = child.stdout.take().expect("stdout");
    let mut buf = [0u8; 10];
    std::io::Read::read_exact(&mut out, &mut buf).expect("the receiver listens");
    Receiver(child)
}

/// A free loopback port for the receiver that starts later (the URL must
/// be in the sentinels' config before it listens).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a loopback port")
        .port()
}

fn add_endpoints(node: &DevNode, port: u16, secrets: &Path) {
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&node.config)
        .expect("the config opens");
    for (name, path, template) in [
        ("ops", "hook", "standard"),
        ("chat", "busy", "slack"),
        ("old", "gone", "standard"),
    ] {
        writeln!(
            f,
            "\n[[alerts.endpoint]]\nname = {name:?}\nurl = \"http://127.0.0.1:{port}/{path}\"\n\
             secrets_file = {:?}\ntemplate = {template:?}\nallow_private = true",
            secrets.display().to_string()
        )
        .expect("the config takes the endpoint");
    }
}

fn alerts(rt: &tokio::runtime::Runtime, node: &DevNode) -> Vec<Value> {
    api(rt, node, "/v1/alerts?limit=10000")
        .and_then(|v| v["alerts"].as_array().cloned())
        .unwrap_or_default()
}

fn quarantined(rt: &tokio::runtime::Runtime, node: &DevNode, subject: &str) -> bool {
    alerts(rt, node)
        .iter()
        .any(|a| a["event"] == "node.quarantined" && a["subject"] == subject)
}

#[test]
fn alerts_survive_a_down_receiver_and_a_sigkill_and_arrive_verified_once_per_incident() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let secrets = dir.path().join("hooks.secret");
    let made = Command::new(env!("CARGO_BIN_EXE_sentinel"))
        .args(["alerts", "secret"])
        .arg(&secrets)
        .status()
        .unwrap();
    assert!(made.success());
    let port = free_port();
    let nodes = devnet::prepare(dir.path(), "alerts", 5, 0).unwrap();
    let (honest, flooder) = (&nodes[..4], &nodes[4]);
    devnet::set_attack(&flooder.config, "flooder").unwrap();
    for n in honest {
        add_endpoints(n, port, &secrets);
    }
    let bad = flooder.id.to_hex();
    let env = [
        ("SENTINEL_ALERTS_RETRY_BASE_MS", "300"),
        ("SENTINEL_ALERTS_RETRY_MAX_MS", "2000"),
        ("SENTINEL_ALERTS_TIMEOUT_MS", "2000"),
        // Up to 100 attempts 2 s apart: nothing dies while the receiver is
        // down (about 200 s).
        ("SENTINEL_ALERTS_MAX_ATTEMPTS", "100"),
    ];
    let mut procs: Vec<Proc> = nodes.iter().map(|n| start(n, &env)).collect();

    // The receiver is down: alerts pile up, retried. The first honest
    // sentinel seen retrying one is killed and started again.
    let retrying = |n: &DevNode| {
        alerts(&rt, n)
            .iter()
            .any(|a| a["state"] == "pending" && a["attempts"].as_u64() >= Some(2))
    };
    wait_for(
        "an honest sentinel retrying an alert",
        Duration::from_secs(120),
        || honest.iter().any(retrying),
    );
    let k = honest.iter().position(retrying).unwrap();
    let before_kill: BTreeSet<String> = alerts(&rt, &honest[k])
        .iter()
        .map(|a| a["id"].as_str().unwrap().to_owned())
        .collect();
    let _ = procs[k].0.kill();
    let _ = procs[k].0.wait();
    procs[k] = start(&honest[k], &env);
    wait_for(
        "every honest sentinel to alert on the flooder's quarantine",
        Duration::from_secs(180),
        || honest.iter().all(|n| quarantined(&rt, n, &bad)),
    );

    let log = dir.path().join("received.jsonl");
    let _receiver = receiver(port, &secrets, &log);
    let unsettled = || -> Vec<Value> {
        honest
            .iter()
            .flat_map(|n| alerts(&rt, n))
            .filter(|a| {
                let want = if a["endpoint"] == "old" {
                    "dead"
                } else {
                    "delivered"
                };
                a["state"] != want
            })
            .collect()
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !unsettled().is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "alerts neither delivered nor, for the 410 endpoint, dead after 60 s: {:?}",
            unsettled()
        );
        std::thread::sleep(Duration::from_millis(250));
    }

    let received: Vec<Value> = std::fs::read_to_string(&log)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let verified: BTreeMap<String, Vec<&Value>> = received
        .iter()
        .filter(|r| r["status"] == 204)
        .fold(BTreeMap::new(), |mut m, r| {
            m.entry(r["id"].as_str().unwrap().to_owned())
                .or_default()
                .push(r);
            m
        });
    assert!(
        received.iter().all(|r| r["verified"] != false),
        "a signature failed: {received:?}"
    );
    let mut quarantine_ids = BTreeSet::new();
    for n in honest {
        let outbox = alerts(&rt, n);
        assert!(outbox.iter().any(|a| a["endpoint"] == "ops"), "{}", n.id);
        for a in &outbox {
            let id = a["id"].as_str().unwrap();
            let endpoint = a["endpoint"].as_str().unwrap();
            if endpoint == "old" {
                let why = a["last_error"].as_str().unwrap_or("");
                assert!(why.contains("410"), "{a}");
                continue;
            }
            let path = if endpoint == "ops" { "/hook" } else { "/busy" };
            let copies: Vec<&&Value> = verified
                .get(id)
                .map(|v| v.iter().filter(|r| r["path"] == path).collect())
                .unwrap_or_default();
            assert!(!copies.is_empty(), "{} alert {a} never arrived", n.id);
            let payload = &copies[0]["payload"];
            if endpoint == "ops" {
                assert_eq!(payload["type"], a["event"], "{a}");
                assert_eq!(payload["data"]["subject"], a["subject"], "{a}");
            } else {
                // This sentinel's copy (the Slack text names the sender).
                let sender = &n.id.to_hex()[..16];
                let mine = copies
                    .iter()
                    .find(|r| r["payload"]["text"].as_str().unwrap().contains(sender))
                    .unwrap_or_else(|| panic!("{} alert {a}: no copy of its own", n.id));
                let text = mine["payload"]["text"].as_str().unwrap();
                assert!(text.contains(a["event"].as_str().unwrap()), "{text}");
                // Refused with Retry-After: 1, then sent again no sooner.
                assert!(a["attempts"].as_u64() >= Some(2), "{a}");
                let first = received
                    .iter()
                    .filter(|r| r["key"] == mine["key"])
                    .map(|r| r["at"].as_f64().unwrap())
                    .fold(f64::INFINITY, f64::min);
                let ok = mine["at"].as_f64().unwrap();
                assert!(ok - first >= 0.95, "{a}: {first} then {ok}");
            }
            if a["event"] == "node.quarantined" && a["subject"] == bad.as_str() {
                quarantine_ids.insert((endpoint.to_owned(), id.to_owned()));
            }
        }
    }
    let events: BTreeSet<&str> = received
        .iter()
        .filter_map(|r| r["payload"]["type"].as_str())
        .collect();
    eprintln!(
        "{} requests received, {} verified ids, event types {events:?}; killed sentinel had {} \
         alerts queued",
        received.len(),
        verified.len(),
        before_kill.len()
    );
    // One incident, one id per endpoint, whichever sentinel sent it.
    assert_eq!(
        quarantine_ids.iter().filter(|(e, _)| e == "ops").count(),
        1,
        "{quarantine_ids:?}"
    );
    // What the killed sentinel had queued before SIGKILL arrived.
    for id in &before_kill {
        assert!(
            verified.contains_key(id),
            "{id} queued before the kill was lost"
        );
    }
    let dead = api(&rt, &honest[1], "/v1/alerts?state=dead").unwrap();
    let reasons: Vec<&str> = dead["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|a| a["last_error"].as_str())
        .collect();
    assert!(reasons.iter().any(|r| r.contains("410")), "{reasons:?}");
    // A crash between a certificate's commit and its alert's: the alert
    // rows of one sentinel are removed while it is stopped; at start it
    // queues the quarantine's alert again, under the same id.
    let lost = &honest[2];
    let id_before = alerts(&rt, lost)
        .iter()
        .find(|a| a["event"] == "node.quarantined" && a["endpoint"] == "ops")
        .map(|a| a["id"].as_str().unwrap().to_owned())
        .unwrap();
    common::terminate(&mut procs[2]);
    rusqlite::Connection::open(lost.dir.join("data/sentinel.db"))
        .unwrap()
        .execute("DELETE FROM alerts", [])
        .unwrap();
    procs[2] = start(lost, &env);
    wait_for(
        "the restarted sentinel to deliver the quarantine alert again",
        Duration::from_secs(60),
        || {
            alerts(&rt, lost).iter().any(|a| {
                a["id"] == id_before.as_str() && a["endpoint"] == "ops" && a["state"] == "delivered"
            })
        },
    );
    let hook_copies = |records: &[Value]| {
        records
            .iter()
            .filter(|r| r["id"] == id_before.as_str() && r["path"] == "/hook" && r["status"] == 204)
            .count()
    };
    let now_received: Vec<Value> = std::fs::read_to_string(&log)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(hook_copies(&now_received), hook_copies(&received) + 1);
    // The dead-letter list through the CLI.
    let out = Command::new(env!("CARGO_BIN_EXE_sentinel"))
        .args(["alerts", "list", "--dead", "--config"])
        .arg(&honest[1].config)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.contains("old") && text.contains("dead"),
        "{text}"
    );
    drop(procs);
}

/// A quarantine's end alerts too: `quarantine.lifted` carries the same
/// incident key as its `node.quarantined` and another webhook-id (another
/// type and severity). Quarantines here last a minute.
#[test]
fn a_quarantine_that_ends_sends_quarantine_lifted_under_its_incident_key() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let secrets = dir.path().join("hooks.secret");
    sentinel::outbox::write_new_secret(&secrets).unwrap();
    let port = free_port();
    let log = dir.path().join("received.jsonl");
    let _receiver = receiver(port, &secrets, &log);
    let nodes = devnet::prepare(dir.path(), "lifted", 5, 0).unwrap();
    let (honest, flooder) = (&nodes[..4], &nodes[4]);
    devnet::set_attack(&flooder.config, "flooder").unwrap();
    add_endpoints(&honest[0], port, &secrets);
    let env = [("SENTINEL_QUORUM_QUARANTINE_MINUTES", "1")];
    let _procs: Vec<Proc> = nodes.iter().map(|n| start(n, &env)).collect();
    let bad = flooder.id.to_hex();
    let delivered = |event: &str| {
        alerts(&rt, &honest[0]).into_iter().find(|a| {
            a["event"] == event
                && a["subject"] == bad.as_str()
                && a["endpoint"] == "ops"
                && a["state"] == "delivered"
        })
    };
    wait_for(
        "the quarantine alert to be delivered",
        Duration::from_secs(120),
        || delivered("node.quarantined").is_some(),
    );
    wait_for(
        "the lift alert to be delivered, a minute later",
        Duration::from_secs(150),
        || delivered("quarantine.lifted").is_some(),
    );
    let (q, l) = (
        delivered("node.quarantined").unwrap(),
        delivered("quarantine.lifted").unwrap(),
    );
    assert_eq!(q["incident"], l["incident"]);
    assert_ne!(q["id"], l["id"]);
    assert_eq!(l["severity"], "info");
    let received: Vec<Value> = std::fs::read_to_string(&log)
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    let lifted = received
        .iter()
        .find(|r| r["id"] == l["id"] && r["path"] == "/hook")
        .expect("the receiver got the lift");
    assert_eq!(lifted["verified"], true);
    assert_eq!(lifted["payload"]["type"], "quarantine.lifted");
    assert_eq!(lifted["payload"]["data"]["incident"], q["incident"]);
}
