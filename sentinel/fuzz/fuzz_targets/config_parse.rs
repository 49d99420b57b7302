//! `sentinel::fuzzing::config_parse` on arbitrary bytes; its committed
//! corpus replays in `sentinel/tests/fuzz_corpus.rs`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = sentinel::fuzzing::config_parse(data);
});
