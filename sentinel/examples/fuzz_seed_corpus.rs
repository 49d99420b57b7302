//! Writes the seed corpus of the `config_parse` fuzz target:
//! `cargo run -p sentinel --example fuzz_seed_corpus -- [DIR]`
//! (default `sentinel/fuzz/corpus/config_parse`). Seeds already there are
//! kept.

use std::path::PathBuf;

fn main() -> std::io::Result<()> {
    let dir = PathBuf::from(
        std::env::args()
            .nth(1)
            .unwrap_or_else(|| "sentinel/fuzz/corpus/config_parse".into()),
    );
    std::fs::create_dir_all(&dir)?;
    for (name, bytes) in sentinel::fuzzing::seeds() {
        let path = dir.join(&name);
        if !path.exists() {
            std::fs::write(&path, &bytes)?;
            println!("{name}: {} bytes", bytes.len());
        }
    }
    Ok(())
}
