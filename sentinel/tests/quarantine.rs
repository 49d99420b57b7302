//! Five real sentinels on loopback; the fifth is made to equivocate the way
//! it happens in real life: two processes run with one key and a copy of
//! one data directory, so both sign different reports under the same
//! (epoch, sequence). Every honest sentinel ends up holding the same
//! certificate, enforces it (links cut and refused, blocklist file, exec
//! hook), keeps it across a restart, and `sentinel verify-cert` accepts it
//! offline and refuses a tampered copy.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{Proc, api, copy_files, start, terminate, wait_for};
use sentinel::devnet::{self, DevNode};
use sentinel::store::{DataDir, Store};
use serde_json::Value;

/// The hex certificate `node` holds about `subject`, if any.
fn certificate_at(rt: &tokio::runtime::Runtime, node: &DevNode, subject: &str) -> Option<String> {
    let v = api(rt, node, &format!("/v1/quarantine/{subject}"))?;
    let rows = v["certificates"].as_array()?;
    let newest = rows.last()?;
    (newest["enforced"] == true).then(|| newest["certificate"].as_str().map(str::to_owned))?
}

fn quarantined_at(rt: &tokio::runtime::Runtime, node: &DevNode) -> Vec<Value> {
    api(rt, node, "/v1/status")
        .and_then(|s| s["quarantined"].as_array().cloned())
        .unwrap_or_default()
}

fn sentinel_cli(args: &[&str], config: &Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_sentinel"))
        .args(args)
        .arg("--config")
        .arg(config)
        .output()
        .expect("the CLI runs")
}

#[test]
fn an_equivocating_sentinel_is_certified_and_cut_off_everywhere() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let nodes = devnet::prepare(dir.path(), "quarantine", 5, 0).unwrap();
    let (honest, cheat) = (&nodes[..4], &nodes[4]);
    let cheat_hex = cheat.id.to_hex();

    // The cheat's twin: the same key and a copy of its data dir whose
    // recorded epoch is an hour ahead, so both processes boot into the same
    // next epoch and number their reports from 1.
    {
        let dd = DataDir::lock(&cheat.dir.join("data")).unwrap();
        let mut store = Store::open(&dd).unwrap();
        store.begin_epoch(sentinel::now_ms() + 3_600_000).unwrap();
    }
    let twin = DevNode {
        dir: dir.path().join("twin"),
        config: cheat.config.clone(),
        id: cheat.id,
        quic: devnet::free_port(true).unwrap(),
        api: devnet::free_port(false).unwrap(),
    };
    std::fs::create_dir(&twin.dir).unwrap();
    copy_files(&cheat.dir.join("data"), &twin.dir.join("data"));
    let twin_data = twin.dir.join("data");
    let (twin_quic, twin_api) = (twin.quic.to_string(), twin.api.to_string());
    let twin_env = [
        ("SENTINEL_NODE_DATA_DIR", twin_data.to_str().unwrap()),
        ("SENTINEL_QUIC_LISTEN", twin_quic.as_str()),
        ("SENTINEL_API_LISTEN", twin_api.as_str()),
    ];

    // Node 0 tells the world outside: a blocklist file and an exec hook
    // that appends its arguments and environment to a file.
    let blocklist = dir.path().join("blocklist.json");
    let calls = dir.path().join("hook-calls");
    let hook = dir.path().join("hook.sh");
    std::fs::write(
        &hook,
        format!(
            "#!/bin/sh\necho \"$1 $2 $3 $QUARANTINE_FAULT $QUARANTINE_SUBJECT_NAME\" >> {}\n",
            calls.display()
        ),
    )
    .unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let enforce_env = [
        (
            "SENTINEL_ENFORCE_BLOCKLIST_FILE",
            blocklist.to_str().unwrap(),
        ),
        ("SENTINEL_ENFORCE_EXEC_HOOK", hook.to_str().unwrap()),
    ];

    let mut procs: Vec<Proc> = honest
        .iter()
        .enumerate()
        .map(|(i, n)| start(n, if i == 0 { &enforce_env[..] } else { &[] }))
        .collect();
    // The blocklist exists, empty, from the start.
    wait_for("the empty blocklist", Duration::from_secs(30), || {
        std::fs::read_to_string(&blocklist)
            .ok()
            .and_then(|t| serde_json::from_str::<Value>(&t).ok())
            .is_some_and(|b| b["quarantined"] == serde_json::json!([]))
    });
    let _cheat_proc = start(cheat, &[]);
    let _twin_proc = start(&twin, &twin_env);
    let started = Instant::now();

    // Every honest sentinel holds and enforces one and the same certificate.
    let mut certs = Vec::new();
    wait_for(
        "the certificate at every honest sentinel",
        Duration::from_secs(60),
        || {
            certs = honest
                .iter()
                .filter_map(|n| certificate_at(&rt, n, &cheat_hex))
                .collect();
            certs.len() == honest.len() && certs.iter().all(|c| *c == certs[0])
        },
    );
    eprintln!(
        "certificate held by all {} honest sentinels {:.1} s after the equivocator started ({} bytes)",
        honest.len(),
        started.elapsed().as_secs_f64(),
        certs[0].len() / 2
    );
    // The status (a snapshot the daemon refreshes) follows.
    wait_for(
        "the status of every honest sentinel",
        Duration::from_secs(10),
        || {
            honest
                .iter()
                .all(|n| quarantined_at(&rt, n) == vec![Value::from(cheat_hex.clone())])
        },
    );
    let detected: u64 = honest
        .iter()
        .map(|n| {
            api(&rt, n, "/v1/status").unwrap()["equivocations_detected"]
                .as_u64()
                .unwrap()
        })
        .sum();
    assert!(detected > 0, "an honest sentinel found the evidence itself");

    // Cut off: neither copy of the cheat keeps a neighbour, and the honest
    // ones keep refusing it as it redials.
    wait_for("the cheat to be cut off", Duration::from_secs(30), || {
        [cheat, &twin].iter().all(|c| {
            api(&rt, c, "/v1/status")
                .is_some_and(|s| s["active"].as_array().is_some_and(Vec::is_empty))
        })
    });
    for n in honest {
        let peers = api(&rt, n, "/v1/peers").unwrap();
        assert!(
            peers
                .as_array()
                .unwrap()
                .iter()
                .all(|p| p["id"] != cheat_hex.as_str() || p["view"] != "active"),
            "{peers}"
        );
    }
    // The honest mesh still works: everyone keeps hearing the others.
    wait_for("the honest mesh", Duration::from_secs(30), || {
        honest.iter().all(|n| {
            api(&rt, n, "/v1/status")
                .is_some_and(|s| s["active"].as_array().is_some_and(|a| !a.is_empty()))
        })
    });

    // The world outside was told, with the subject's id and address.
    let list: Value = serde_json::from_str(&std::fs::read_to_string(&blocklist).unwrap()).unwrap();
    assert_eq!(list["format"], "sentinel-blocklist");
    assert_eq!(list["mesh"], "quarantine");
    let entries = list["quarantined"].as_array().unwrap();
    assert_eq!(entries.len(), 1, "{list}");
    assert_eq!(entries[0]["id"], cheat_hex.as_str());
    assert_eq!(entries[0]["address"], cheat.quic.to_string());
    assert_eq!(entries[0]["fault"], "equivocation");
    wait_for("the exec hook", Duration::from_secs(10), || {
        std::fs::read_to_string(&calls).is_ok_and(|c| {
            c.contains(&format!(
                "quarantine {cheat_hex} {} equivocation node-4",
                cheat.quic
            ))
        })
    });

    // The CLI lists it and writes its bytes; verify-cert accepts them
    // offline against the genesis roster and refuses a tampered copy.
    let listed = sentinel_cli(&["quarantine", "list"], &honest[1].config);
    assert!(listed.status.success());
    let listed = String::from_utf8_lossy(&listed.stdout);
    assert!(
        listed.contains(&cheat_hex[..16]) && listed.contains("enforced"),
        "{listed}"
    );
    let file = dir.path().join("cert.bin");
    let shown = sentinel_cli(
        &[
            "quarantine",
            "show",
            "node-4",
            "--out",
            file.to_str().unwrap(),
        ],
        &honest[1].config,
    );
    assert!(shown.status.success(), "{shown:?}");
    assert_eq!(hex::encode(std::fs::read(&file).unwrap()), certs[0]);
    let genesis = honest[1].dir.join("genesis.toml");
    let verify = |path: &Path| {
        Command::new(env!("CARGO_BIN_EXE_sentinel"))
            .arg("verify-cert")
            .arg(path)
            .arg("--roster")
            .arg(&genesis)
            .output()
            .unwrap()
    };
    let ok = verify(&file);
    assert!(ok.status.success(), "{ok:?}");
    assert!(String::from_utf8_lossy(&ok.stdout).contains(&cheat_hex));
    let mut bytes = std::fs::read(&file).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x01;
    let tampered = dir.path().join("tampered.bin");
    std::fs::write(&tampered, &bytes).unwrap();
    let refused = verify(&tampered);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("error"));

    // A restarted honest sentinel enforces the stored certificate from its
    // first moment: same bytes, the cheat refused, the hook told again
    // (hooks are idempotent) and the blocklist still lists it.
    terminate(&mut procs[0]);
    let hook_calls_before = std::fs::read_to_string(&calls).unwrap().lines().count();
    procs[0] = start(&honest[0], &enforce_env);
    wait_for("the restarted sentinel", Duration::from_secs(30), || {
        quarantined_at(&rt, &honest[0]) == vec![Value::from(cheat_hex.clone())]
    });
    assert_eq!(
        certificate_at(&rt, &honest[0], &cheat_hex).as_ref(),
        Some(&certs[0])
    );
    wait_for("the hook at start", Duration::from_secs(10), || {
        std::fs::read_to_string(&calls).is_ok_and(|c| c.lines().count() > hook_calls_before)
    });
    wait_for(
        "the restarted sentinel's neighbours",
        Duration::from_secs(30),
        || {
            api(&rt, &honest[0], "/v1/status").is_some_and(|s| {
                s["active"]
                    .as_array()
                    .is_some_and(|a| !a.is_empty() && a.iter().all(|p| p != cheat_hex.as_str()))
            })
        },
    );
    let list: Value = serde_json::from_str(&std::fs::read_to_string(&blocklist).unwrap()).unwrap();
    assert_eq!(list["quarantined"][0]["id"], cheat_hex.as_str());
    // No honest sentinel is quarantined anywhere.
    for n in honest {
        assert_eq!(quarantined_at(&rt, n).len(), 1);
    }
    for p in &mut procs {
        terminate(p);
    }
}
