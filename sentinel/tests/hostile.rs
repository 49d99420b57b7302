//! A hostile peer against a real sentinel on loopback. It holds a rostered
//! key, so it gets past link authentication, and then sends what a
//! compromised member would: malformed frames, bad signatures, replays,
//! stale epochs, a flood at over 100 times a link's normal rate, more
//! streams and connections than allowed, partial frames it never finishes
//! (slowloris), and a frame over the size limit.
//!
//! The sentinel stays up and answers its API, its memory stays bounded
//! (resident set sampled throughout, printed), reports from its honest
//! neighbours keep arriving during and after the attack, and the attacker
//! is penalised: each bad message is refused as invalid or malformed or
//! dropped by the link's rate limit, the flood is rate-limited, extra
//! connections replace each other, a link whose stream ends is closed,
//! and the oversize frame closes its link with a protocol error.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::{Proc, api, start, terminate, wait_for_mesh};
use sentinel::config::QuicSection;
use sentinel::devnet::{self, DevNode};
use sentinel::transport::{self, Authenticator};
use sentinel_protocol::codec::Codec;
use sentinel_protocol::envelope::{self, Kind, Stamp};
use sentinel_protocol::message::Message;
use sentinel_protocol::rng::Rng;
use sentinel_protocol::telemetry::{HostSample, Report};
use sentinel_protocol::{Identity, NodeId, Roster, keyfile};

const T: Duration = Duration::from_secs(10);

/// Resident set of a process, kB (0 once it is gone).
fn rss_kb(pid: u32) -> u64 {
    devnet::resident_kb(pid).unwrap_or(0)
}

/// One sample of a Prometheus metric of `node` (the first line naming it).
fn metric(rt: &tokio::runtime::Runtime, node: &DevNode, name: &str) -> f64 {
    let token = sentinel::daemon::read_api_token(&node.dir.join("data")).expect("token");
    let (code, text) = rt
        .block_on(sentinel::http::get(
            node.api,
            &node.api.to_string(),
            "/metrics",
            Some(&token),
            Duration::from_secs(2),
        ))
        .expect("metrics answer");
    assert_eq!(code, 200, "{text}");
    text.lines()
        .find(|l| l.starts_with(name))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in\n{text}"))
}

/// The newest (epoch, sequence) `node` holds from `origin`.
fn latest_from(
    rt: &tokio::runtime::Runtime,
    node: &DevNode,
    origin: &NodeId,
) -> Option<(u64, u64)> {
    common::latest_reports(&api(rt, node, "/v1/peers")?)
        .get(&origin.to_hex())
        .copied()
}

/// The attacker: a rostered identity with its own QUIC endpoint.
struct Attacker {
    auth: Authenticator,
    ep: quinn::Endpoint,
    mesh: sentinel_protocol::MeshId,
}

impl Attacker {
    async fn connect(&self, to: &DevNode) -> quinn::Connection {
        self.auth
            .dial(&self.ep, to.quic, to.id, T)
            .await
            .expect("the attacker's rostered key gets a link")
    }

    /// A report message signed under `stamp` (a well-formed report).
    fn report(&self, stamp: Stamp) -> Vec<u8> {
        let report = Report {
            start_ms: stamp.issued_at_ms - 1_000,
            sample_ms: 1_000,
            host: vec![HostSample::default()],
            neighbours: Vec::new(),
        };
        let frame = envelope::seal(
            &self.auth.identity,
            &self.mesh,
            Kind::Telemetry,
            stamp,
            &report.to_bytes(),
        )
        .expect("within limits");
        Message::Report(&frame).encode()
    }
}

/// `len` bytes from `rng`, for malformed frames.
fn noise(rng: &mut Rng, len: usize) -> Vec<u8> {
    (0..len).map(|_| rng.next_u64().to_be_bytes()[0]).collect()
}

#[test]
#[allow(
    clippy::too_many_lines,
    reason = "one attack after another on one sentinel, each checked in place"
)]
fn a_hostile_rostered_peer_cannot_crash_bloat_or_silence_a_sentinel() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let nodes = devnet::prepare(dir.path(), "hostile", 4, 0).unwrap();
    let (honest, hostile) = (&nodes[..3], &nodes[3]);
    let (target, b, c) = (&honest[0], &honest[1], &honest[2]);
    let mut procs: Vec<Proc> = honest.iter().map(|n| start(n, &[])).collect();
    wait_for_mesh(
        "the target to hold reports from both honest neighbours",
        Duration::from_secs(60),
        honest,
        || latest_from(&rt, target, &b.id).is_some() && latest_from(&rt, target, &c.id).is_some(),
    );

    let pid = procs[0].0.id();
    let rss_before = rss_kb(pid);
    let peak = Arc::new(AtomicU64::new(rss_before));
    let sampling = Arc::new(AtomicBool::new(true));
    let sampler = {
        let (peak, sampling) = (peak.clone(), sampling.clone());
        std::thread::spawn(move || {
            while sampling.load(Ordering::Relaxed) {
                peak.fetch_max(rss_kb(pid), Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(50));
            }
        })
    };
    // A link's normal rate: what the target took in over 5 s, per link.
    let in_before = metric(&rt, target, "sentinel_messages_received_total");
    std::thread::sleep(Duration::from_secs(5));
    let normal_per_s =
        (metric(&rt, target, "sentinel_messages_received_total") - in_before) / 5.0 / 2.0;
    let invalid_before = metric(&rt, target, "sentinel_invalid_messages");
    let limited_before = metric(&rt, target, "sentinel_rate_limited_messages");
    let from_b_before = latest_from(&rt, target, &b.id).unwrap();

    let identity: Identity = keyfile::load(&hostile.dir.join("node.key")).unwrap();
    let roster = Roster::load_genesis(&hostile.dir.join("genesis.toml")).unwrap();
    let epoch = sentinel::now_ms();
    let attacker = Attacker {
        mesh: *roster.mesh_id(),
        auth: Authenticator {
            identity: Arc::new(identity),
            roster: Arc::new(roster),
            epoch,
        },
        ep: rt.block_on(async {
            transport::endpoint(
                "127.0.0.1:0".parse().unwrap(),
                &QuicSection::default(),
                transport::pq_provider(),
            )
            .unwrap()
        }),
    };
    let stamp = |epoch, sequence| Stamp {
        epoch,
        sequence,
        issued_at_ms: sentinel::now_ms(),
    };

    let mut rng = Rng::from_seed(0x5eed);
    let attacks = async {
        let conn = attacker.connect(target).await;
        let mut send = conn.open_uni().await.expect("a stream");
        // Malformed frames: noise of every length up to 2 KB.
        let junk = (0..300).map(|i| noise(&mut rng, 1 + i * 7 % 2048));
        // Bad signatures: well-formed reports with one bit flipped in the
        // signature.
        let forged = (1..=50).map(|s| {
            let mut m = attacker.report(stamp(epoch, s));
            let last = m.len() - 1;
            m[last] ^= 1;
            m
        });
        // Replays: one good report, then the same bytes 200 times; stale
        // epochs: reports from an epoch before this one.
        let replays = std::iter::repeat_n(attacker.report(stamp(epoch, 100)), 201);
        let stale = (1..=50).map(|s| attacker.report(stamp(epoch - 10_000, s)));
        for m in junk.chain(forged).chain(replays).chain(stale) {
            transport::send_message(&mut send, &m)
                .await
                .expect("bad messages are dropped, not the link");
        }
        // A flood of pings for 5 s, as fast as the target takes them.
        let started = Instant::now();
        let mut sent = 0u64;
        while let Some(left) = Duration::from_secs(5).checked_sub(started.elapsed()) {
            let ping = Message::Ping { nonce: sent }.encode();
            match tokio::time::timeout(left, transport::send_message(&mut send, &ping)).await {
                Ok(Ok(())) => sent += 1,
                Ok(Err(e)) => panic!("the flood lost its link: {e}"),
                Err(_) => break,
            }
        }
        #[allow(clippy::cast_precision_loss, reason = "a rate for a report")]
        let rate = sent as f64 / started.elapsed().as_secs_f64();

        // Streams: the target reads one per link. A second is buffered up
        // to its flow-control window and never read; a third is not
        // allowed at all.
        let conn = attacker.connect(target).await;
        let mut first = conn.open_uni().await.expect("a first stream");
        let mut second = conn.open_uni().await.expect("a second stream");
        assert!(
            tokio::time::timeout(Duration::from_secs(2), conn.open_uni())
                .await
                .is_err(),
            "a third concurrent stream was allowed"
        );
        // Slowloris: half a length prefix on the read stream, a promised
        // 4 KB frame cut short on the other, then nothing for 10 s.
        first.write_all(&[0, 0]).await.unwrap();
        second.write_all(&4_096u32.to_be_bytes()).await.unwrap();
        second.write_all(&[0u8; 100]).await.unwrap();
        tokio::time::sleep(Duration::from_secs(10)).await;

        // Connections: each new one replaces the last (one link per
        // peer), so 40 of them leave the target holding one.
        let mut conns = Vec::new();
        for _ in 0..40 {
            conns.push(attacker.connect(target).await);
        }
        for (i, c) in conns[..39].iter().enumerate() {
            let closed = tokio::time::timeout(T, c.closed())
                .await
                .unwrap_or_else(|_| panic!("connection {i} of 40 is still open"));
            assert!(
                matches!(&closed, quinn::ConnectionError::ApplicationClosed(c)
                    if c.error_code == transport::close::DUPLICATE.into()),
                "{closed:?}"
            );
        }
        // A link whose stream ends is closed, slot and all.
        let conn = conns.pop().unwrap();
        let mut last = conn.open_uni().await.unwrap();
        transport::send_message(&mut last, &Message::Ping { nonce: 0 }.encode())
            .await
            .unwrap();
        last.finish().unwrap();
        tokio::time::timeout(T, conn.closed())
            .await
            .expect("the target closes a link whose stream ended");

        // A frame over the limit closes the link with a protocol error.
        let conn = attacker.connect(target).await;
        let mut send = conn.open_uni().await.unwrap();
        let over = u32::try_from(QuicSection::default().max_frame_bytes + 1).unwrap();
        send.write_all(&over.to_be_bytes()).await.unwrap();
        let closed = tokio::time::timeout(T, conn.closed())
            .await
            .expect("the target closes a link that sends an oversize frame");
        assert!(
            matches!(&closed, quinn::ConnectionError::ApplicationClosed(c)
                if c.error_code == transport::close::PROTOCOL.into()),
            "{closed:?}"
        );
        rate
    };
    let flood_rate = rt
        .block_on(async { tokio::time::timeout(Duration::from_secs(180), attacks).await })
        .expect("the attacks finish within 3 minutes");

    // Honest reports kept arriving through all of it and still do.
    wait_for_mesh(
        "the target to hold a newer report from an honest neighbour",
        Duration::from_secs(20),
        honest,
        || latest_from(&rt, target, &b.id).is_some_and(|l| l > from_b_before),
    );
    sampling.store(false, Ordering::Relaxed);
    sampler.join().unwrap();
    let rss_after = rss_kb(pid);
    let peak = peak.load(Ordering::Relaxed);
    println!(
        "normal {normal_per_s:.1} msg/s per link; flood {flood_rate:.0} msg/s ({:.0}x); \
         RSS before {rss_before} kB, peak {peak} kB, after {rss_after} kB",
        flood_rate / normal_per_s.max(0.1)
    );
    assert!(
        flood_rate >= 100.0 * normal_per_s,
        "the flood ({flood_rate:.0}/s) was not 100x a link's normal rate ({normal_per_s:.1}/s)"
    );
    assert!(
        peak < rss_before + 64 * 1024,
        "resident set grew from {rss_before} kB to {peak} kB"
    );

    // Still up, and the attacker was penalised.
    assert!(
        procs[0].0.try_wait().unwrap().is_none(),
        "the target exited"
    );
    let status = api(&rt, target, "/v1/status").expect("the target answers");
    // Every bad message was refused as invalid or malformed, or dropped by
    // the link's rate limit before it cost a signature check; so was most
    // of the flood.
    let invalid = metric(&rt, target, "sentinel_invalid_messages") - invalid_before;
    let limited = metric(&rt, target, "sentinel_rate_limited_messages") - limited_before;
    println!("refused as invalid or malformed: {invalid}; rate-limited: {limited}");
    assert!(invalid >= 50.0, "{status}");
    assert!(invalid + limited >= 601.0 + flood_rate, "{status}");
    assert!(metric(&rt, target, "sentinel_link_protocol_errors_total") >= 1.0);
    // No honest sentinel was quarantined for it, and none crashed.
    for n in honest {
        let s = api(&rt, n, "/v1/status").expect("status answers");
        let quarantined = s["quarantined"].as_array().unwrap();
        assert!(
            quarantined
                .iter()
                .all(|q| q == hostile.id.to_hex().as_str()),
            "{}: {s}",
            n.id
        );
    }
    for p in &mut procs {
        terminate(p);
    }
}
