//! Replays the committed fuzz corpus through the fuzz target's code on stable,
//! so every input that ever mattered keeps being checked in CI.

use std::path::Path;

use sentinel_protocol::fuzzing::{Outcome, envelope_decode};

#[test]
fn committed_corpus_replays() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/envelope_decode");
    let mut counts = [0usize; 3];
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let data = std::fs::read(&path).unwrap();
        let outcome = envelope_decode(&data);
        // Seeds say what they are; inputs found by fuzzing (hash names) only
        // have to run without breaking an invariant.
        if name.starts_with("valid-record") {
            assert_eq!(outcome, Outcome::Record, "{name}");
        } else if name.starts_with("valid-") {
            assert_eq!(outcome, Outcome::Envelope, "{name}");
        } else if name.starts_with("invalid-") {
            assert_eq!(outcome, Outcome::Rejected, "{name}");
        }
        counts[outcome as usize] += 1;
    }
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
