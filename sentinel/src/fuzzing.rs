//! Entry point for the `config_parse` fuzz target (`sentinel/fuzz`) and for
//! the test that replays its committed corpus on stable. Not part of the
//! API.

use crate::config::Config;

/// Where overrides start in an input: the text before is the file, each
/// line after is `SENTINEL_<SECTION>_<FIELD>=value`.
pub const ENV_MARKER: &str = "\n--env--\n";

/// Parses `data` as a config file (plus overrides after [`ENV_MARKER`]) the
/// way `sentinel run` does, without touching the filesystem. A config that
/// is accepted must also be accepted when serialised back to TOML, and
/// serialise the same again: nothing is accepted that the config types
/// cannot hold. Returns whether it was accepted. Panics only if an
/// invariant breaks.
///
/// # Panics
/// When an accepted config does not round-trip.
#[must_use]
pub fn config_parse(data: &[u8]) -> bool {
    let Ok(text) = std::str::from_utf8(data) else {
        return false;
    };
    let (file, env) = text.split_once(ENV_MARKER).unwrap_or((text, ""));
    let env = env
        .lines()
        .filter_map(|l| l.split_once('=').map(|(k, v)| (k.to_owned(), v.to_owned())));
    let Ok(cfg) = Config::parse(file, env) else {
        return false;
    };
    let written = toml::to_string(&cfg).expect("an accepted config serialises");
    let again = Config::parse(&written, [])
        .unwrap_or_else(|e| panic!("an accepted config, written out, is refused: {e}\n{written}"));
    let rewritten = toml::to_string(&again).expect("an accepted config serialises");
    assert_eq!(
        written, rewritten,
        "a written config reads back differently"
    );
    true
}

/// Seed inputs: the file `sentinel init` writes, with an alert endpoint,
/// with overrides, and near misses (named `valid-…` and `invalid-…`).
#[must_use]
pub fn seeds() -> Vec<(String, Vec<u8>)> {
    let listen = "127.0.0.1:7700".parse().expect("an address");
    let api = "127.0.0.1:7780".parse().expect("an address");
    let template = crate::config::template(listen, api);
    let endpoint = "\n[[alerts.endpoint]]\nname = \"ops\"\nurl = \"https://alerts.example.net/s\"\n\
                    secrets_file = \"ops.secret\"\nmin_severity = \"warning\"\n";
    let seeds = [
        ("valid-template", template.clone()),
        ("valid-empty", String::new()),
        ("valid-endpoint", template.clone() + endpoint),
        (
            "valid-overrides",
            format!(
                "{template}{ENV_MARKER}SENTINEL_QUIC_LISTEN=0.0.0.0:7700\nSENTINEL_QUORUM_ENABLED=false\n"
            ),
        ),
        (
            "invalid-unknown-key",
            "[quic]\nmax_conections = 3\n".to_owned(),
        ),
        (
            "invalid-out-of-range",
            "[quorum]\nvote_threshold = 2.0\n".to_owned(),
        ),
        (
            "invalid-override",
            format!("{template}{ENV_MARKER}SENTINEL_NOPE_X=1\n"),
        ),
        (
            "invalid-endpoint-url",
            template + &endpoint.replace("https://", "ftp://"),
        ),
    ];
    seeds
        .into_iter()
        .map(|(n, t)| (n.to_owned(), t.into_bytes()))
        .collect()
}
