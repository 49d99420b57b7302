//! Five real sentinel processes on loopback: the mesh forms and signed
//! telemetry flows over QUIC; `kill -9` of one is detected by the others;
//! restarted, it rejoins with a newer epoch and its database intact; a second
//! process on the same data dir is refused; garbage on the QUIC and API
//! ports crashes nothing; a guarded node's metrics reach the others in
//! signed telemetry. None of the crashes, restores and refused processes
//! produces evidence against the honest node they happen to.

mod common;

use std::process::Command;
use std::time::Duration;

use common::{
    Proc, api, assert_nobody_quarantined, copy_files, log_of, start, terminate, wait_for,
};
use sentinel::devnet::{self, DevNode};

const GUARDED_PEERS: u64 = 7;

/// A stand-in for the guarded node's metrics endpoint on loopback: a peers
/// gauge over two label sets and an errors counter that grows by 3 a scrape.
async fn guarded_node() -> std::net::SocketAddr {
    use std::sync::atomic::{AtomicU64, Ordering};
    let errors = std::sync::Arc::new(AtomicU64::new(0));
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let e = errors.fetch_add(3, Ordering::SeqCst);
            async move {
                format!(
                    "# TYPE p2p_peers gauge\np2p_peers{{dir=\"in\"}} 3\np2p_peers{{dir=\"out\"}} {}\n# TYPE errors counter\nerrors_total {e}\n",
                    GUARDED_PEERS - 3
                )
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("binds");
    let addr = listener.local_addr().expect("has an address");
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

#[test]
fn five_sentinels_mesh_detect_a_kill_and_take_it_back() {
    // One worker thread: the guarded node's metrics server runs on it
    // while the test waits.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let guarded = rt.block_on(guarded_node());
    let guarded_url = format!("http://{guarded}/metrics");
    let dir = tempfile::tempdir().unwrap();
    let nodes = devnet::prepare(dir.path(), "it", 5, 0).unwrap();
    let mut procs: Vec<Option<Proc>> = nodes
        .iter()
        .enumerate()
        .map(|(i, n)| {
            let env: &[(&str, &str)] = if i == 0 {
                &[
                    ("SENTINEL_COLLECT_GUARDED_METRICS_URL", &guarded_url),
                    ("SENTINEL_COLLECT_SCRAPE_INTERVAL_MS", "1000"),
                ]
            } else {
                &[]
            };
            Some(start(n, env))
        })
        .collect();

    // Every sentinel has neighbours and holds signed reports from all five.
    wait_for("mesh and telemetry", Duration::from_secs(60), || {
        nodes.iter().all(|n| {
            api(&rt, n, "/v1/status").is_some_and(|s| {
                s["active"].as_array().is_some_and(|a| a.len() >= 2)
                    && s["origins_heard"].as_u64() == Some(5)
            })
        })
    });
    let victim = &nodes[4];
    let before = api(&rt, victim, "/v1/status").unwrap();
    let old_epoch = before["epoch"].as_u64().unwrap();
    let old_next = before["next_sequence"].as_u64().unwrap();
    assert!(old_next > 1, "it signed reports: {before}");
    // Stored telemetry about another node is served from the database.
    let rows = api(
        &rt,
        &nodes[0],
        &format!("/v1/telemetry/{}", nodes[1].id.to_hex()),
    )
    .unwrap();
    assert!(!rows["reports"].as_array().unwrap().is_empty(), "{rows}");

    // Node 0 scrapes its guarded node; the values travel in its signed
    // reports and another sentinel stores them.
    let node0 = nodes[0].id.to_hex();
    wait_for(
        "the guarded node's metrics at a peer",
        Duration::from_secs(30),
        || {
            api(&rt, &nodes[2], &format!("/v1/telemetry/{node0}")).is_some_and(|t| {
                t["reports"].as_array().unwrap().iter().any(|r| {
                    r["node_peers_mean"] == GUARDED_PEERS && r["node_errors"].as_u64() > Some(0)
                })
            })
        },
    );
    let s = api(&rt, &nodes[0], "/v1/status").unwrap();
    assert_eq!(s["guarded"]["up"], true, "{s}");
    assert!(api(&rt, &nodes[1], "/v1/status").unwrap()["guarded"].is_null());

    // A second process on the victim's data dir is refused and exits.
    let second = Command::new(env!("CARGO_BIN_EXE_sentinel"))
        .args(["run", "--config"])
        .arg(&victim.config)
        .env("SENTINEL_API_LISTEN", "127.0.0.1:0")
        .env("SENTINEL_QUIC_LISTEN", "127.0.0.1:0")
        .output()
        .unwrap();
    assert!(!second.status.success());
    let err = String::from_utf8_lossy(&second.stderr);
    assert!(err.contains("in use by another sentinel process"), "{err}");

    // Garbage on the QUIC port (UDP) and the API port (TCP).
    let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    for i in 0..200u32 {
        let junk: Vec<u8> = (0..1200u32)
            .map(|j| (i * 31 + j * 7).to_le_bytes()[0])
            .collect();
        udp.send_to(&junk, nodes[0].quic).unwrap();
    }
    {
        use std::io::{Read, Write};
        let mut tcp = std::net::TcpStream::connect(nodes[0].api).unwrap();
        tcp.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let _ = tcp.write_all(b"\x16\x03\x01 garbage that is not HTTP\r\n\r\n");
        let mut buf = [0u8; 256];
        let _ = tcp.read(&mut buf);
    }
    let unauthorised = rt
        .block_on(sentinel::http::get(
            nodes[0].api,
            "localhost",
            "/v1/status",
            Some("wrong"),
            Duration::from_secs(2),
        ))
        .unwrap();
    assert_eq!(unauthorised.0, 401);

    // kill -9: its neighbours declare it failed.
    let mut p = procs[4].take().unwrap();
    let killed_at = i64::try_from(sentinel::now_ms()).unwrap();
    p.0.kill().unwrap();
    let _ = p.0.wait();
    let victim_hex = victim.id.to_hex();
    wait_for("the kill to be detected", Duration::from_secs(30), || {
        nodes[..4].iter().all(|n| {
            api(&rt, n, "/v1/peers").is_some_and(|peers| {
                peers
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|p| p["id"] == victim_hex.as_str() && p["view"] != "active")
            })
        })
    });
    assert!(
        nodes[..4]
            .iter()
            .any(|n| log_of(n).contains("reason=\"failed\"")),
        "someone declared it failed"
    );

    // Restart: new, larger epoch; sequences start over under it; the
    // database kept the peers it had seen; it rejoins and is heard again.
    procs[4] = Some(start(victim, &[]));
    wait_for(
        "the restarted node to rejoin",
        Duration::from_secs(60),
        || {
            api(&rt, victim, "/v1/status").is_some_and(|s| {
                s["epoch"].as_u64().is_some_and(|e| e > old_epoch)
                    && s["active"].as_array().is_some_and(|a| !a.is_empty())
            }) && nodes[..4].iter().all(|n| {
                api(&rt, n, "/v1/peers").is_some_and(|peers| {
                    peers.as_array().unwrap().iter().any(|p| {
                        p["id"] == victim_hex.as_str()
                            && p["latest_report"][0]
                                .as_u64()
                                .is_some_and(|e| e > old_epoch)
                    })
                })
            })
        },
    );
    let db = rusqlite::Connection::open_with_flags(
        victim.dir.join("data/sentinel.db"),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .unwrap();
    let old_rows: i64 = db
        .query_row(
            "SELECT count(*) FROM telemetry WHERE received_ms < ?1",
            [killed_at],
            |r| r.get(0),
        )
        .unwrap();
    assert!(old_rows > 0, "telemetry stored before the kill survived it");
    let after = api(&rt, victim, "/v1/status").unwrap();
    assert!(
        after["sequences_reserved"].as_u64().unwrap() >= after["next_sequence"].as_u64().unwrap()
    );

    // Still alive after the garbage: everyone answers.
    for n in &nodes {
        assert!(
            api(&rt, n, "/v1/status").is_some(),
            "{} stopped answering",
            n.id
        );
    }
    // The kill, the restart and the refused second process produced no
    // evidence against the victim anywhere.
    assert_nobody_quarantined(&rt, &nodes);
    // Graceful stop: SIGTERM, a clean exit.
    for p in procs.iter_mut().flatten() {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(p.0.id().to_string())
            .status();
    }
    for p in procs.iter_mut().flatten() {
        let status = p.0.wait().unwrap();
        assert!(status.success(), "exit status {status}");
    }
}

/// The epochs under which a peer holds reports from `origin`, read from its
/// database.
fn epochs_stored(peer: &DevNode, origin: &str) -> Vec<u64> {
    let db = rusqlite::Connection::open_with_flags(
        peer.dir.join("data/sentinel.db"),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .expect("database opens");
    let mut stmt = db
        .prepare("SELECT DISTINCT epoch FROM telemetry WHERE origin = ?1 ORDER BY epoch")
        .expect("query prepares");
    stmt.query_map([origin], |r| r.get::<_, i64>(0))
        .expect("query runs")
        .map(|e| u64::try_from(e.expect("row")).expect("positive"))
        .collect()
}

/// A sentinel whose data dir is restored from an older copy never reuses an
/// epoch: boots before the copy, after it, and from the restored copy each
/// sign under their own, growing epoch, and the peers' databases hold the
/// victim's reports under exactly those epochs.
#[test]
fn a_restored_data_dir_never_reuses_an_epoch() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let nodes = devnet::prepare(dir.path(), "restore", 3, 0).unwrap();
    let mut procs: Vec<Proc> = nodes.iter().map(|n| start(n, &[])).collect();
    let victim = &nodes[2];
    let victim_hex = victim.id.to_hex();
    let data = victim.dir.join("data");

    // Waits until both peers hold a report of the victim signed under
    // `epoch`.
    let heard_under =
        |epoch: u64| {
            wait_for("the victim's reports", Duration::from_secs(60), || {
                nodes[..2].iter().all(|n| {
                    api(&rt, n, "/v1/peers").is_some_and(|peers| {
                        peers.as_array().unwrap().iter().any(|p| {
                            p["id"] == victim_hex.as_str() && p["latest_report"][0] == epoch
                        })
                    })
                })
            });
        };
    let boot_epoch = || {
        let mut epoch = None;
        wait_for("the victim's API", Duration::from_secs(30), || {
            epoch = api(&rt, victim, "/v1/status").and_then(|s| s["epoch"].as_u64());
            epoch.is_some()
        });
        epoch.unwrap()
    };

    let e1 = boot_epoch();
    heard_under(e1);
    // A clean stop, then a copy of the data dir: the "backup".
    terminate(&mut procs[2]);
    let backup = dir.path().join("backup");
    copy_files(&data, &backup);

    // Boot 2 runs on, signs, and crashes.
    procs[2] = start(victim, &[]);
    let e2 = boot_epoch();
    assert!(e2 > e1);
    heard_under(e2);
    procs[2].0.kill().unwrap();
    let _ = procs[2].0.wait();

    // Restore the older copy over the data dir and boot from it.
    std::fs::remove_dir_all(&data).unwrap();
    copy_files(&backup, &data);
    procs[2] = start(victim, &[]);
    let e3 = boot_epoch();
    assert!(
        e3 > e2,
        "the restored copy knew only {e1}; it booted under {e3} after {e2}"
    );
    heard_under(e3);

    for peer in &nodes[..2] {
        let held = epochs_stored(peer, &victim_hex);
        assert!(
            held.iter().all(|e| [e1, e2, e3].contains(e)),
            "{held:?} vs {e1} {e2} {e3}"
        );
        assert!(held.contains(&e3));
    }
    // Neither the crash nor the restore produced evidence against it.
    assert_nobody_quarantined(&rt, &nodes);
    for p in &mut procs {
        terminate(p);
    }
}
