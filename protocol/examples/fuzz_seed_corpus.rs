//! Writes the seed corpus for the `envelope_decode` fuzz target:
//! `cargo run -p sentinel-protocol --example fuzz_seed_corpus -- protocol/fuzz/corpus/envelope_decode`

use std::path::PathBuf;

fn main() -> std::io::Result<()> {
    let dir = PathBuf::from(
        std::env::args()
            .nth(1)
            .unwrap_or_else(|| "protocol/fuzz/corpus/envelope_decode".into()),
    );
    std::fs::create_dir_all(&dir)?;
    for (name, bytes) in sentinel_protocol::fuzzing::seed_corpus() {
        std::fs::write(dir.join(&name), &bytes)?;
        println!("{name}: {} bytes", bytes.len());
    }
    Ok(())
}
