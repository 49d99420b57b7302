//! Writes the seed corpora of the fuzz targets into `protocol/fuzz/corpus/<target>`
//! (or into `DIR/<target>`):
//! `cargo run -p sentinel-protocol --example fuzz_seed_corpus -- [DIR]`
//!
//! A seed already there is kept: ML-DSA signing is randomised, so written
//! again it would differ without being any better.

use std::path::PathBuf;

use sentinel_protocol::fuzzing;

type Seeds = fn() -> Vec<(String, Vec<u8>)>;

fn main() -> std::io::Result<()> {
    let root = PathBuf::from(
        std::env::args()
            .nth(1)
            .unwrap_or_else(|| "protocol/fuzz/corpus".into()),
    );
    let targets: [(&str, Seeds); 4] = [
        ("envelope_decode", fuzzing::seed_corpus),
        ("decode_all", fuzzing::decode_seeds),
        ("node_messages", fuzzing::node_seeds),
        ("quorum_tally", fuzzing::tally_seeds),
    ];
    for (target, seeds) in targets {
        let dir = root.join(target);
        std::fs::create_dir_all(&dir)?;
        for (name, bytes) in seeds() {
            let path = dir.join(&name);
            if path.exists() {
                continue;
            }
            std::fs::write(&path, &bytes)?;
            println!("{target}/{name}: {} bytes", bytes.len());
        }
    }
    Ok(())
}
