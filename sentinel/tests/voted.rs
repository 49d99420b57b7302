//! Seven real sentinels on loopback; the seventh floods its neighbours
//! (`[testing] attack = "flooder"`). The others score it with the shipped
//! model, one accuses it, the committee (the whole roster) votes on its own
//! views, and every honest sentinel ends up holding the same voted
//! certificate and enforcing it. It survives a SIGKILL and restart of an
//! honest sentinel and of the flooder; `sentinel verify-cert` accepts it
//! offline; the accusation and the votes are in the databases and in
//! `sentinel incidents`.

mod common;

use std::process::Command;
use std::time::Duration;

use common::{Proc, api, start, terminate, wait_for, wait_for_mesh};
use sentinel::devnet::{self, DevNode};
use serde_json::Value;

/// The hex certificate `node` holds and enforces about `subject`, if any.
fn certificate_at(rt: &tokio::runtime::Runtime, node: &DevNode, subject: &str) -> Option<String> {
    let v = api(rt, node, &format!("/v1/quarantine/{subject}"))?;
    let newest = v["certificates"].as_array()?.last()?.clone();
    (newest["enforced"] == true && newest["fault"] == "voted")
        .then(|| newest["certificate"].as_str().map(str::to_owned))?
}

fn quarantined_at(rt: &tokio::runtime::Runtime, node: &DevNode) -> Vec<Value> {
    api(rt, node, "/v1/status")
        .and_then(|s| s["quarantined"].as_array().cloned())
        .unwrap_or_default()
}

fn kill(p: &mut Proc) {
    let _ = p.0.kill();
    let _ = p.0.wait();
}

#[test]
fn a_flooding_sentinel_is_voted_out_and_every_honest_one_holds_the_certificate() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let nodes = devnet::prepare(dir.path(), "voted", 7, 0).unwrap();
    let (honest, flooder) = (&nodes[..6], &nodes[6]);
    devnet::set_attack(&flooder.config, "flooder").unwrap();
    let bad = flooder.id.to_hex();
    let mut procs: Vec<Proc> = nodes.iter().map(|n| start(n, &[])).collect();

    // An accusation the committee refuses (members whose own views are
    // still thin on a slow, loaded machine) is tried again a minute later
    // (the accusation spacing): three rounds fit.
    wait_for_mesh(
        "every honest sentinel to enforce a voted certificate against the flooder",
        Duration::from_secs(190),
        &nodes,
        || {
            honest
                .iter()
                .all(|n| certificate_at(&rt, n, &bad).is_some())
        },
    );
    // One incident, one certificate: the same bytes everywhere (a second
    // accusation's certificate is replaced by the one that precedes it).
    wait_for_mesh(
        "the honest sentinels to agree on one certificate",
        Duration::from_secs(30),
        &nodes,
        || {
            let certs: Vec<Option<String>> = honest
                .iter()
                .map(|n| certificate_at(&rt, n, &bad))
                .collect();
            certs.iter().all(|c| c.is_some() && *c == certs[0])
        },
    );
    let cert = certificate_at(&rt, &honest[0], &bad).unwrap();
    // The status (published once a second) lists the flooder, and only it.
    wait_for(
        "every honest sentinel's status to list the quarantine",
        Duration::from_secs(10),
        || {
            honest
                .iter()
                .all(|n| quarantined_at(&rt, n) == vec![Value::from(bad.clone())])
        },
    );

    // Someone accused; the accusation and every honest member's vote are
    // stored with their signed frames.
    let mut accusers = 0;
    let mut yes = 0;
    for n in honest {
        let v = api(&rt, n, "/v1/accusations").unwrap();
        for a in v["accusations"].as_array().unwrap() {
            assert_eq!(a["subject"], bad.as_str(), "{a}");
            accusers += usize::from(a["state"] == "certified");
        }
        for vote in v["votes"].as_array().unwrap() {
            assert_eq!(vote["subject"], bad.as_str(), "{vote}");
            yes += usize::from(vote["verdict"] == "yes");
        }
    }
    assert!(accusers >= 1, "no accusation was certified");
    assert!(
        3 * yes >= 2 * nodes.len(),
        "{yes} yes votes of {}",
        nodes.len()
    );
    let incidents = Command::new(env!("CARGO_BIN_EXE_sentinel"))
        .args(["incidents", "--since", "1h", "--config"])
        .arg(&honest[0].config)
        .output()
        .unwrap();
    assert!(incidents.status.success(), "{incidents:?}");
    let text = String::from_utf8_lossy(&incidents.stdout);
    assert!(
        text.contains("quarantined") || text.contains("accus"),
        "{text}"
    );

    // Anyone checks it offline with the roster (and the pinned model: the
    // shipped classifier, verify-cert's default).
    let file = dir.path().join("voted.bin");
    std::fs::write(&file, hex::decode(&cert).unwrap()).unwrap();
    let verified = Command::new(env!("CARGO_BIN_EXE_sentinel"))
        .arg("verify-cert")
        .arg(&file)
        .arg("--roster")
        .arg(honest[0].dir.join("genesis.toml"))
        .output()
        .unwrap();
    assert!(verified.status.success(), "{verified:?}");
    let out = String::from_utf8_lossy(&verified.stdout);
    assert!(
        out.contains("fault:    voted") && out.contains(&bad),
        "{out}"
    );

    // A SIGKILLed honest sentinel comes back holding and enforcing it.
    kill(&mut procs[0]);
    procs[0] = start(&honest[0], &[]);
    wait_for(
        "the restarted sentinel to enforce the stored certificate",
        Duration::from_secs(30),
        || certificate_at(&rt, &honest[0], &bad).as_ref() == Some(&cert),
    );
    // So does the mesh when the flooder restarts: it stays cut off.
    kill(&mut procs[6]);
    procs[6] = start(flooder, &[]);
    std::thread::sleep(Duration::from_secs(10));
    for n in honest {
        assert_eq!(
            certificate_at(&rt, n, &bad).as_ref(),
            Some(&cert),
            "{}",
            n.id
        );
        let s = api(&rt, n, "/v1/status").unwrap();
        assert!(
            s["active"]
                .as_array()
                .unwrap()
                .iter()
                .all(|p| p != bad.as_str()),
            "{s}"
        );
    }
    for p in &mut procs[..6] {
        terminate(p);
    }
    kill(&mut procs[6]);
}
