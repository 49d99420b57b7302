//! Envelope and record-proof decoding on arbitrary bytes. The logic and its
//! invariants live in `sentinel_protocol::fuzzing`, so the committed corpus
//! replays through the same code in a stable test (`tests/fuzz_corpus.rs`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = sentinel_protocol::fuzzing::envelope_decode(data);
});
