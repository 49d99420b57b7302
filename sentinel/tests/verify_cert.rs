//! `sentinel verify-cert`: a third party checks a quarantine certificate
//! offline with nothing but the roster. A valid certificate passes and says
//! what it proves; tampered copies, another mesh's roster, junk and
//! oversize files are refused with a non-zero exit.

use std::path::Path;
use std::process::{Command, Output};

use sentinel_protocol::codec::Codec;
use sentinel_protocol::envelope::{self, Kind, Stamp};
use sentinel_protocol::evidence::{Certificate, Evidence, QuarantinePolicy};
use sentinel_protocol::identity::SEED_LEN;
use sentinel_protocol::{Identity, Roster};

fn verify(cert: &Path, roster: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sentinel"))
        .arg("verify-cert")
        .arg(cert)
        .arg("--roster")
        .arg(roster)
        .output()
        .expect("sentinel runs")
}

#[test]
fn verify_cert_accepts_the_real_one_and_refuses_the_rest() {
    let ids: Vec<Identity> = (1..=4u8)
        .map(|i| Identity::from_seed(&[i; SEED_LEN]).unwrap())
        .collect();
    let publics = || ids.iter().map(|i| i.public().clone());
    let roster = Roster::equal_weight("mesh", publics()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let genesis = dir.path().join("genesis.toml");
    std::fs::write(&genesis, roster.to_genesis_toml()).unwrap();
    let other = dir.path().join("other.toml");
    std::fs::write(
        &other,
        Roster::equal_weight("another mesh", publics())
            .unwrap()
            .to_genesis_toml(),
    )
    .unwrap();

    let stamp = Stamp {
        epoch: 5,
        sequence: 9,
        issued_at_ms: 1_700_000_000_000,
    };
    let seal = |payload: &[u8]| {
        envelope::seal(&ids[2], roster.mesh_id(), Kind::Telemetry, stamp, payload).unwrap()
    };
    let evidence = Evidence::equivocation(&roster, &seal(b"one"), &seal(b"two")).unwrap();
    let cert = Certificate::from_evidence(&roster, &QuarantinePolicy::default(), evidence)
        .unwrap()
        .to_bytes();
    let file = dir.path().join("cert.bin");
    std::fs::write(&file, &cert).unwrap();

    let ok = verify(&file, &genesis);
    let out = String::from_utf8_lossy(&ok.stdout);
    assert!(
        ok.status.success(),
        "{out}{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert!(out.contains(&ids[2].id().to_hex()), "{out}");
    assert!(
        out.contains("equivocation") && out.contains("epoch 5 sequence 9"),
        "{out}"
    );

    let refused = |bytes: &[u8], roster: &Path, why: &str| {
        let f = dir.path().join("bad.bin");
        std::fs::write(&f, bytes).unwrap();
        let r = verify(&f, roster);
        let err = String::from_utf8_lossy(&r.stderr);
        assert!(!r.status.success(), "accepted: {why}");
        assert!(err.contains("error:"), "{why}: {err}");
        err.into_owned()
    };
    // Another TTL (offset: version, subject, epoch, then the TTL).
    let mut t = cert.clone();
    t[1 + 32 + 8 + 7] ^= 1;
    assert!(refused(&t, &genesis, "ttl").contains("does NOT verify"));
    // Another subject named.
    let mut t = cert.clone();
    t[1..33].copy_from_slice(&ids[1].id().0);
    assert!(refused(&t, &genesis, "subject").contains("does NOT verify"));
    // A signature byte of the second frame.
    let mut t = cert.clone();
    let last = t.len() - 1;
    t[last] ^= 1;
    refused(&t, &genesis, "signature");
    // The right certificate against another mesh's roster.
    refused(&cert, &other, "other roster");
    // Junk, trailing bytes, and a file larger than any certificate.
    assert!(refused(b"junk", &genesis, "junk").contains("not a certificate"));
    let mut t = cert.clone();
    t.push(0);
    refused(&t, &genesis, "trailing");
    let huge = vec![0u8; sentinel_protocol::evidence::MAX_CERTIFICATE_LEN + 10];
    assert!(refused(&huge, &genesis, "huge").contains("larger than any certificate"));
}
