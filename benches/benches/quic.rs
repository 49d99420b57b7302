//! QUIC handshakes on loopback with the post-quantum key exchange the daemon
//! uses (X25519MLKEM768) against classical X25519 alone, measured in the same
//! run with everything else equal (quinn, rustls on aws-lc-rs, the same
//! throw-away certificate type, the same transport settings). A third figure
//! adds the daemon's link authentication (both sides sign and verify the
//! TLS exporter with their roster identities) to the post-quantum handshake.
//!
//! Both ends run on one current-thread runtime, so one iteration is the
//! CPU work of both sides of one handshake plus loopback latency;
//! `bench-report` prints handshakes per second and the ratio.
#![allow(missing_docs)] // criterion_main! generates an undocumented `main`
#![allow(clippy::unwrap_used)] // set-up failures in a benchmark should stop it loudly

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use rustls::crypto::CryptoProvider;
use sentinel::config::QuicSection;
use sentinel::devnet::new_identity;
use sentinel::transport::{self, Authenticator};
use sentinel_protocol::Roster;

const TIMEOUT: Duration = Duration::from_secs(5);

fn endpoint(provider: CryptoProvider) -> quinn::Endpoint {
    transport::endpoint(
        "127.0.0.1:0".parse().unwrap(),
        &QuicSection::default(),
        provider,
    )
    .unwrap()
}

/// A server that completes every handshake and closes the connection.
fn serve(server: &quinn::Endpoint) {
    let server = server.clone();
    tokio::spawn(async move {
        while let Some(incoming) = server.accept().await {
            tokio::spawn(async move {
                if let Ok(conn) = incoming.await {
                    conn.closed().await;
                }
            });
        }
    });
}

fn handshakes(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut g = c.benchmark_group("quic");
    g.throughput(Throughput::Elements(1));
    g.measurement_time(Duration::from_secs(8));
    for (name, provider) in [
        (
            "handshake_x25519mlkem768",
            transport::pq_provider as fn() -> CryptoProvider,
        ),
        ("handshake_x25519", transport::classical_provider),
    ] {
        let (server, client) = rt.block_on(async {
            let server = endpoint(provider());
            serve(&server);
            (server, endpoint(provider()))
        });
        let addr = server.local_addr().unwrap();
        g.bench_function(name, |b| {
            b.iter(|| {
                rt.block_on(async {
                    let conn = client.connect(addr, "sentinel").unwrap().await.unwrap();
                    black_box(conn.stable_id());
                    conn.close(0u32.into(), b"");
                });
            });
        });
        rt.block_on(async {
            client.close(0u32.into(), b"");
            server.close(0u32.into(), b"");
            client.wait_idle().await;
            server.wait_idle().await;
        });
    }

    // The daemon's full link set-up: PQ handshake + channel-bound roster
    // authentication (ML-DSA-65 + Ed25519 sign and verify on each side).
    let a = new_identity().unwrap();
    let b = new_identity().unwrap();
    let (a_id, b_id) = (a.id(), b.id());
    let roster =
        Arc::new(Roster::equal_weight("bench", [a.public().clone(), b.public().clone()]).unwrap());
    let auth = |identity| {
        Arc::new(Authenticator {
            identity: Arc::new(identity),
            roster: roster.clone(),
            epoch: 1,
        })
    };
    let (server_auth, client_auth) = (auth(a), auth(b));
    let (server, client) = rt.block_on(async {
        let server = endpoint(transport::pq_provider());
        let ep = server.clone();
        tokio::spawn(async move {
            while let Some(incoming) = ep.accept().await {
                let auth = server_auth.clone();
                tokio::spawn(async move {
                    if let Ok((conn, peer)) = auth.accept(incoming, TIMEOUT).await {
                        assert_eq!(peer, b_id);
                        conn.closed().await;
                    }
                });
            }
        });
        (server, endpoint(transport::pq_provider()))
    });
    let addr = server.local_addr().unwrap();
    g.bench_function("link_x25519mlkem768_authenticated", |bench| {
        bench.iter(|| {
            rt.block_on(async {
                let conn = client_auth
                    .dial(&client, addr, a_id, TIMEOUT)
                    .await
                    .unwrap();
                conn.close(0u32.into(), b"");
            });
        });
    });
    g.finish();
}

criterion_group!(benches, handshakes);
criterion_main!(benches);
