//! `sentinel_protocol::fuzzing::quorum_tally` on arbitrary bytes; its committed
//! corpus replays in `tests/fuzz_corpus.rs`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = sentinel_protocol::fuzzing::quorum_tally(data);
});
