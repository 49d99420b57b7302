//! Replays the committed corpus of the `config_parse` fuzz target on
//! stable. Seeds say what they are (`valid-…`, `invalid-…`); inputs found
//! by fuzzing (hash names) only have to run without breaking an invariant.

use std::path::Path;

#[test]
fn config_parse_corpus_replays() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/config_parse");
    let (mut valid, mut invalid) = (0, 0);
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let accepted = sentinel::fuzzing::config_parse(&std::fs::read(&path).unwrap());
        if name.starts_with("valid-") {
            assert!(accepted, "{name} refused");
            valid += 1;
        } else if name.starts_with("invalid-") {
            assert!(!accepted, "{name} accepted");
            invalid += 1;
        }
    }
    assert!(
        valid >= 4 && invalid >= 4,
        "{valid} valid, {invalid} invalid"
    );
}
