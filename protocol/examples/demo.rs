//! The protocol layer end to end, with real key files and a real genesis file:
//! `cargo run -p sentinel-protocol --example demo [DIR]`.
//!
//! Three members get fresh keys from OS randomness, a genesis roster is
//! written and read back, one member's telemetry is signed and accepted once
//! by another, and then the things an attacker would try are shown failing.

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use sentinel_protocol::batch::{RecordProof, SignedBatch};
use sentinel_protocol::codec::Codec;
use sentinel_protocol::envelope::{self, Kind, Stamp};
use sentinel_protocol::identity::SEED_LEN;
use sentinel_protocol::replay::{Receiver, TimeWindow};
use sentinel_protocol::roster::Member;
use sentinel_protocol::{Identity, Roster, keyfile};

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

fn fresh_identity() -> Result<Identity> {
    let mut seed = [0u8; SEED_LEN];
    aws_lc_rs::rand::fill(&mut seed).map_err(|_| "OS randomness unavailable")?;
    Ok(Identity::from_seed(&seed)?)
}

fn now_ms() -> u64 {
    let since = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
}

fn main() -> Result<()> {
    let tmp;
    let dir = match std::env::args().nth(1) {
        Some(d) => PathBuf::from(d),
        None => {
            tmp = tempfile::tempdir()?;
            tmp.path().to_path_buf()
        }
    };
    std::fs::create_dir_all(&dir)?;
    println!("== keys and roster in {}", dir.display());

    let names = ["alpha", "bravo", "charlie"];
    let mut members = Vec::new();
    for name in names {
        let path = dir.join(format!("{name}.key"));
        keyfile::save(&path, &fresh_identity()?)?;
        let id = keyfile::load(&path)?;
        let mode = std::fs::metadata(&path)?.permissions().mode() & 0o777;
        println!(
            "{name:8} node {}  key file {} (mode {mode:o})",
            id.id().to_hex(),
            path.display()
        );
        members.push((name, id));
    }
    let roster = Roster::new(
        "demo",
        members
            .iter()
            .map(|(name, id)| Member {
                public: id.public().clone(),
                weight: 1,
                name: (*name).to_owned(),
            })
            .collect(),
    )?;
    let genesis = dir.join("genesis.toml");
    std::fs::write(&genesis, roster.to_genesis_toml())?;
    let roster = Roster::load_genesis(&genesis)?;
    println!(
        "genesis  {} members, mesh id {}",
        roster.len(),
        roster.mesh_id().to_hex()
    );

    println!("\n== alpha signs one telemetry report; bravo accepts it once");
    let alpha = &members[0].1;
    let report = b"{\"cpu\":0.21,\"peers\":{\"bravo\":{\"rtt_ms\":3}}}";
    let stamp = Stamp {
        epoch: 1,
        sequence: 1,
        issued_at_ms: now_ms(),
    };
    let t = Instant::now();
    let frame = envelope::seal(alpha, roster.mesh_id(), Kind::Telemetry, stamp, report)?;
    let sealed_in = t.elapsed();
    let mut bravo = Receiver::new(TimeWindow::default());
    let t = Instant::now();
    let v = bravo.accept(&roster, &frame, now_ms())?;
    println!(
        "frame {} bytes ({} payload + 67 header + 3,373 signatures); sealed in {sealed_in:?}, verified in {:?}",
        frame.len(),
        report.len(),
        t.elapsed()
    );
    println!("payload: {}", String::from_utf8_lossy(v.payload()));

    println!("\n== what an attacker tries");
    let show = |what: &str, r: std::result::Result<(), sentinel_protocol::Error>| match r {
        Ok(()) => println!("{what:28} ACCEPTED (this is a bug)"),
        Err(e) => println!("{what:28} refused: {e}"),
    };
    show(
        "replay the same frame",
        bravo.accept(&roster, &frame, now_ms()).map(drop),
    );
    // A fresh frame (sequence 2, not yet accepted), one payload bit flipped.
    let fresh = Stamp {
        sequence: 2,
        ..stamp
    };
    let mut tampered = envelope::seal(alpha, roster.mesh_id(), Kind::Telemetry, fresh, report)?;
    tampered[envelope::HEADER_LEN] ^= 1;
    show(
        "flip one payload bit",
        bravo.accept(&roster, &tampered, now_ms()).map(drop),
    );
    let mut trailing = frame.clone();
    trailing.push(0);
    show(
        "append a byte",
        bravo.accept(&roster, &trailing, now_ms()).map(drop),
    );
    let outsider = fresh_identity()?;
    let forged = envelope::seal(&outsider, roster.mesh_id(), Kind::Telemetry, stamp, report)?;
    show(
        "sign with an unrostered key",
        bravo.accept(&roster, &forged, now_ms()).map(drop),
    );

    println!("\n== one signature over a batch of 100 records; one record checked alone");
    let records: Vec<Vec<u8>> = (0..100)
        .map(|i| format!("observation {i} about a peer").into_bytes())
        .collect();
    let batch_stamp = Stamp {
        sequence: 3,
        ..stamp
    };
    let batch = SignedBatch::seal(
        alpha,
        roster.mesh_id(),
        Kind::Telemetry,
        batch_stamp,
        records,
    )?;
    let proof = batch.prove(42).ok_or("record 42 exists")?.to_bytes();
    let t = Instant::now();
    let decoded = RecordProof::decode_exact(&proof)?;
    let rec = decoded.verify(&roster)?;
    println!(
        "record {} verified alone in {:?}: {:?} (proof {} bytes: signed root + {}-hash path)",
        rec.index,
        t.elapsed(),
        String::from_utf8_lossy(rec.record),
        proof.len(),
        decoded.path().len()
    );

    println!("\n== a secret key file that others can read is refused");
    let path = dir.join("charlie.key");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644))?;
    match keyfile::load(&path) {
        Ok(_) => println!("loaded a world-readable key (this is a bug)"),
        Err(e) => println!("{e}"),
    }
    Ok(())
}
