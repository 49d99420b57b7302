//! Setting up sentinels on one machine: `sentinel init` for one operator,
//! and `sentinel devnet` for a whole local mesh on 127.0.0.1.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use sentinel_protocol::identity::SEED_LEN;
use sentinel_protocol::{Identity, NodeId, Roster, keyfile};

use crate::AddressBook;
use crate::config::template;

/// A freshly made identity from OS randomness.
///
/// # Errors
/// No randomness, or key generation failed.
pub fn new_identity() -> Result<Identity, String> {
    let mut seed = zeroize::Zeroizing::new([0u8; SEED_LEN]);
    aws_lc_rs::rand::fill(&mut seed[..]).map_err(|_| "no OS randomness".to_owned())?;
    Identity::from_seed(&seed).map_err(|e| e.to_string())
}

/// Writes a sentinel directory: `node.key` (0600), `sentinel.toml`, `data/`.
/// Refuses to overwrite an existing key or config.
///
/// # Errors
/// A message naming the file.
pub fn init_dir(
    dir: &Path,
    identity: &Identity,
    listen: SocketAddr,
    api: SocketAddr,
) -> Result<PathBuf, String> {
    std::fs::create_dir_all(dir.join("data")).map_err(|e| format!("{}: {e}", dir.display()))?;
    let config = dir.join("sentinel.toml");
    if config.exists() {
        return Err(format!("{} exists; not overwriting it", config.display()));
    }
    keyfile::save(&dir.join("node.key"), identity).map_err(|e| e.to_string())?;
    std::fs::write(&config, template(listen, api))
        .map_err(|e| format!("{}: {e}", config.display()))?;
    Ok(config)
}

/// One sentinel of a devnet.
#[derive(Debug, Clone)]
pub struct DevNode {
    /// Its directory.
    pub dir: PathBuf,
    /// Its config file.
    pub config: PathBuf,
    /// Its id.
    pub id: NodeId,
    /// QUIC address.
    pub quic: SocketAddr,
    /// API address.
    pub api: SocketAddr,
}

impl DevNode {
    /// GETs an admin API path of this sentinel with its bearer token and
    /// parses the JSON answer.
    ///
    /// # Errors
    /// No token yet, no answer, a status other than 200, or not JSON.
    pub async fn api_json(&self, path: &str) -> Result<serde_json::Value, String> {
        let token = crate::daemon::read_api_token(&self.dir.join("data"))
            .map_err(|e| format!("API token: {e}"))?;
        let (code, body) = crate::http::get(
            self.api,
            &self.api.to_string(),
            path,
            Some(&token),
            std::time::Duration::from_secs(2),
        )
        .await?;
        if code != 200 {
            return Err(format!("{path}: HTTP status {code}"));
        }
        serde_json::from_str(&body).map_err(|e| format!("{path}: {e}"))
    }
}

/// A free loopback port (UDP for QUIC, TCP for the API), released for the
/// caller to bind. Another process could take it in between; devnets are
/// local and short-lived.
///
/// # Errors
/// Socket errors.
pub fn free_port(udp: bool) -> std::io::Result<SocketAddr> {
    if udp {
        std::net::UdpSocket::bind("127.0.0.1:0")?.local_addr()
    } else {
        std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()
    }
}

/// Makes the sentinel of `config` misbehave (`[testing] attack`), for a
/// demo or a test of the mesh's answer.
///
/// # Errors
/// A message naming what failed.
pub fn set_attack(config: &Path, attack: &str) -> Result<(), String> {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(config)
        .map_err(|e| format!("{}: {e}", config.display()))?;
    writeln!(f, "\n[testing]\nattack = {attack:?}")
        .map_err(|e| format!("{}: {e}", config.display()))
}

/// Creates `n` sentinel directories under `root` with one genesis roster and
/// address book; returns them. Extra identities (not on the roster) can be
/// made with `outsiders`, for tests of refusal.
///
/// # Errors
/// A message naming what failed.
pub fn prepare(
    root: &Path,
    mesh: &str,
    n: usize,
    outsiders: usize,
) -> Result<Vec<DevNode>, String> {
    if n == 0 {
        return Err("a devnet needs at least one node".into());
    }
    let mut identities = Vec::new();
    for _ in 0..n + outsiders {
        identities.push(new_identity()?);
    }
    // Members are named after their directories (node-0, node-1, ...).
    let members = identities[..n]
        .iter()
        .enumerate()
        .map(|(i, id)| sentinel_protocol::roster::Member {
            public: id.public().clone(),
            weight: 1,
            name: format!("node-{i}"),
        })
        .collect();
    let roster = Roster::new(mesh, members).map_err(|e| e.to_string())?;
    let mut book = AddressBook::default();
    let mut nodes = Vec::new();
    for (i, identity) in identities.iter().enumerate() {
        let quic = free_port(true).map_err(|e| e.to_string())?;
        let api = free_port(false).map_err(|e| e.to_string())?;
        let dir = root.join(format!("node-{i}"));
        let config = init_dir(&dir, identity, quic, api)?;
        if i < n {
            book.insert(identity.id(), quic);
        }
        nodes.push(DevNode {
            dir,
            config,
            id: identity.id(),
            quic,
            api,
        });
    }
    let genesis = roster.to_genesis_toml();
    let addresses = book.to_toml();
    for node in &nodes {
        std::fs::write(node.dir.join("genesis.toml"), &genesis).map_err(|e| e.to_string())?;
        std::fs::write(node.dir.join("addresses.toml"), &addresses).map_err(|e| e.to_string())?;
    }
    Ok(nodes)
}

/// The resident set of process `pid` in kB (`VmRSS` in `/proc/<pid>/status`),
/// for tests and the soak that watch devnet sentinels' memory.
#[must_use]
pub fn resident_kb(pid: u32) -> Option<u64> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()
}
