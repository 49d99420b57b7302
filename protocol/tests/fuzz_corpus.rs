//! Replays the committed fuzz corpora through the fuzz targets' code on
//! stable, so every input that ever mattered keeps being checked in CI.
//! Seeds say what they are (`valid-…`, `invalid-…`); inputs found by
//! fuzzing (hash names) only have to run without breaking an invariant.

use std::collections::BTreeSet;
use std::path::Path;

use sentinel_protocol::envelope::peek_header;
use sentinel_protocol::fuzzing::{
    DECODERS, Outcome, decode_all, envelope_decode, node_messages, quorum_tally, traffic,
};
use sentinel_protocol::message::Message;

/// Runs `check` on every file of the target's corpus; returns how many
/// seeds named `valid-` and `invalid-` it held.
fn replay(target: &str, mut check: impl FnMut(&str, &[u8])) -> (usize, usize) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let (mut valid, mut invalid) = (0, 0);
    for entry in std::fs::read_dir(&dir).expect("the corpus is committed") {
        let path = entry.expect("a directory entry").path();
        let name = path
            .file_name()
            .expect("a file")
            .to_string_lossy()
            .into_owned();
        check(&name, &std::fs::read(&path).expect("a readable seed"));
        valid += usize::from(name.starts_with("valid-"));
        invalid += usize::from(name.starts_with("invalid-"));
    }
    (valid, invalid)
}

#[test]
fn envelope_decode_corpus_replays() {
    let mut counts = [0usize; 3];
    replay("envelope_decode", |name, data| {
        let outcome = envelope_decode(data);
        if name.starts_with("valid-record") {
            assert_eq!(outcome, Outcome::Record, "{name}");
        } else if name.starts_with("valid-") {
            assert_eq!(outcome, Outcome::Envelope, "{name}");
        } else if name.starts_with("invalid-") {
            assert_eq!(outcome, Outcome::Rejected, "{name}");
        }
        counts[outcome as usize] += 1;
    });
    assert!(
        counts[Outcome::Envelope as usize] >= 4,
        "corpus lost its valid envelopes: {counts:?}"
    );
    assert!(
        counts[Outcome::Record as usize] >= 1,
        "corpus lost its record proof: {counts:?}"
    );
    assert!(
        counts[Outcome::Rejected as usize] >= 4,
        "corpus lost its invalid seeds: {counts:?}"
    );
}

#[test]
fn decode_all_corpus_replays_and_covers_every_decoder() {
    let mut covered = BTreeSet::new();
    let (valid, invalid) = replay("decode_all", |name, data| {
        let accepted = decode_all(data);
        if name.starts_with("invalid-") {
            assert!(accepted.is_empty(), "{name} accepted by {accepted:?}");
        }
        let Some(decoder) = DECODERS
            .iter()
            .find(|d| name.starts_with(&format!("valid-{d}-")))
        else {
            return;
        };
        assert!(accepted.contains(decoder), "{name}: {accepted:?}");
        covered.insert(*decoder);
    });
    assert_eq!(covered.len(), DECODERS.len(), "seeds cover {covered:?}");
    assert!(
        valid >= 15 && invalid >= 4,
        "{valid} valid, {invalid} invalid"
    );
}

#[test]
fn node_messages_corpus_replays() {
    // The traffic ends with two reports its signer made under one stamp.
    let (_, last) = traffic().last().unwrap();
    let Ok(Message::Report(frame)) = Message::decode(last) else {
        panic!("the traffic ends with a report");
    };
    let equivocator = peek_header(frame).unwrap().sender;
    let (valid, invalid) = replay("node_messages", |name, data| {
        let out = node_messages(data);
        match name {
            "valid-traffic" | "valid-reflected" => {
                assert!(out.reports >= 10 && out.transmits >= 50, "{name}: {out:?}");
                assert!(out.quarantined.is_empty(), "{name}: {out:?}");
            }
            "valid-equivocation" => {
                assert_eq!(out.reports, 1, "{out:?}");
                assert_eq!(out.quarantined, BTreeSet::from([equivocator]), "{out:?}");
            }
            "invalid-corrupt" => assert_eq!(out.reports, 0, "{out:?}"),
            _ => {}
        }
    });
    assert!(
        valid >= 3 && invalid >= 1,
        "{valid} valid, {invalid} invalid"
    );
}

#[test]
fn quorum_tally_corpus_replays() {
    let (valid, invalid) = replay("quorum_tally", |name, data| {
        let certified = quorum_tally(data);
        if name.starts_with("valid-") {
            assert!(certified, "{name}");
        } else if name.starts_with("invalid-") {
            assert!(!certified, "{name}");
        }
    });
    assert!(
        valid >= 2 && invalid >= 6,
        "{valid} valid, {invalid} invalid"
    );
}
