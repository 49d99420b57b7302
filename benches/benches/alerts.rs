//! The alert outbox with fsync on (SQLite WAL, `synchronous=FULL`, as the
//! daemon opens it), each figure against a reference measured in the same
//! run:
//!
//! - `outbox_queue`: an incident and its alert committed together
//!   (`Store::incident_with_alerts`), against `sqlite_commit`, one bare
//!   INSERT of the same bytes committed on a connection with the same
//!   settings: what the outbox adds to a durable write;
//! - `deliver_signed`: one Standard Webhooks delivery (`webhook::deliver`:
//!   resolve, address guard, connect, HMAC-SHA256, POST, answer) to a
//!   receiver on loopback, against `post_plain`, a bodiless POST to the same
//!   receiver with the same client;
//! - `outbox_end_to_end`: an alert queued, taken as due, delivered and
//!   recorded as delivered (two durable commits and one request): alerts
//!   per second through the outbox.
#![allow(missing_docs)] // criterion_main! generates an undocumented `main`
#![allow(clippy::unwrap_used)] // set-up failures in a benchmark should stop it loudly

use std::net::SocketAddr;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use sentinel::outbox::{Decision, Queued};
use sentinel::store::{DataDir, Store};
use sentinel::webhook::{
    Alert, Destination, EventType, Outcome, Secret, Severity, Target, Template,
};

fn alert(n: u64) -> Alert {
    Alert {
        event: EventType::NodeQuarantined,
        severity: Severity::Critical,
        subject: "ab".repeat(32),
        incident: format!("quarantine/{}/{n}/1", "ab".repeat(32)),
        at_ms: 1_765_000_000_000 + n,
        detail: "voted certificate, 229036 bytes, from 3f2a...".into(),
        sentinel: "cd".repeat(32),
    }
}

fn queued(n: u64) -> Queued {
    let a = alert(n);
    Queued {
        endpoint: "ops".into(),
        body: a.body(Template::Standard),
        alert: a,
    }
}

/// A receiver on loopback answering every request 204 (HTTP/1.1,
/// connection closed after each, as the client opens one per attempt).
fn receiver(rt: &tokio::runtime::Runtime) -> SocketAddr {
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let addr = listener.local_addr().unwrap();
    rt.spawn(async move {
        loop {
            let Ok((mut s, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                use tokio::io::{AsyncReadExt, AsyncWriteExt};
                let mut buf = vec![0u8; 8192];
                let mut got = Vec::new();
                // Headers, then the body the content-length names.
                loop {
                    let Ok(n) = s.read(&mut buf).await else {
                        return;
                    };
                    if n == 0 {
                        return;
                    }
                    got.extend_from_slice(&buf[..n]);
                    let text = String::from_utf8_lossy(&got).to_lowercase();
                    if let Some(end) = text.find("\r\n\r\n") {
                        let len = text
                            .lines()
                            .find_map(|l| l.strip_prefix("content-length:"))
                            .and_then(|v| v.trim().parse::<usize>().ok())
                            .unwrap_or(0);
                        if got.len() >= end + 4 + len {
                            break;
                        }
                    }
                }
                let _ = s
                    .write_all(b"HTTP/1.1 204 No Content\r\nconnection: close\r\n\r\n")
                    .await;
            });
        }
    });
    addr
}

fn outbox(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let data = DataDir::lock(&dir.path().join("data")).unwrap();
    let mut store = Store::open(&data).unwrap();
    let raw = rusqlite::Connection::open(dir.path().join("raw.db")).unwrap();
    raw.pragma_update(None, "journal_mode", "WAL").unwrap();
    raw.pragma_update(None, "synchronous", "FULL").unwrap();
    raw.execute_batch("CREATE TABLE t (id INTEGER PRIMARY KEY, body BLOB NOT NULL)")
        .unwrap();
    let body = queued(0).body;
    let mut g = c.benchmark_group("alerts");
    g.throughput(Throughput::Elements(1));
    g.measurement_time(Duration::from_secs(8));
    g.bench_function("sqlite_commit", |b| {
        b.iter(|| {
            raw.execute("INSERT INTO t (body) VALUES (?1)", [&body])
                .unwrap();
        });
    });
    let mut n = 0u64;
    g.bench_function("outbox_queue", |b| {
        b.iter(|| {
            n += 1;
            let q = [queued(n)];
            let (at, subject) = (q[0].alert.at_ms, q[0].alert.subject.clone());
            assert_eq!(
                store
                    .incident_with_alerts(at, "quarantined", &subject, "", &q)
                    .unwrap(),
                1
            );
        });
    });

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let addr = receiver(&rt);
    let target = Destination {
        target: Target::parse(&format!("http://{addr}/hook")).unwrap(),
        allow_private: true,
        tls: None,
    };
    let secrets = [Secret::generate().unwrap()];
    let timeout = Duration::from_secs(5);
    g.bench_function("post_plain", |b| {
        b.iter(|| {
            let (code, _) = rt
                .block_on(sentinel::http::request(
                    addr,
                    &addr.to_string(),
                    hyper::Method::POST,
                    "/hook",
                    None,
                    timeout,
                ))
                .unwrap();
            assert_eq!(code, 204);
        });
    });
    g.bench_function("deliver_signed", |b| {
        b.iter(|| {
            let o = rt.block_on(sentinel::webhook::deliver(
                &target, &secrets, "msg_1", &body, timeout,
            ));
            assert_eq!(o, Outcome::Delivered(204));
        });
    });
    g.bench_function("outbox_end_to_end", |b| {
        b.iter(|| {
            n += 1;
            let q = [queued(n)];
            let (at, subject) = (q[0].alert.at_ms, q[0].alert.subject.clone());
            store
                .incident_with_alerts(at, "quarantined", &subject, "", &q)
                .unwrap();
            let due = store.due_alerts(u64::MAX / 2, 1).unwrap();
            let a = &due[0];
            let o = rt.block_on(sentinel::webhook::deliver(
                &target, &secrets, &a.id, &a.body, timeout,
            ));
            let Outcome::Delivered(status) = o else {
                panic!("{o:?}")
            };
            store
                .record_attempt(&a.id, &a.endpoint, &Decision::Delivered(status), at)
                .unwrap();
        });
    });
    g.finish();
}

criterion_group!(benches, outbox);
criterion_main!(benches);
