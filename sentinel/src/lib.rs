//! The Sentinel Mesh daemon: drives the `sentinel-protocol` [`Node`] over
//! real QUIC links, keeps state in SQLite, and serves an admin API.
//!
//! The protocol logic lives in `sentinel-protocol`; this crate only does
//! I/O: sockets and TLS ([`transport`]), the driver task ([`daemon`]), the
//! database ([`store`]), enforcement outside the mesh ([`enforce`]), host metrics ([`collect`]), the HTTP API ([`api`],
//! [`metrics`]), configuration ([`config`]) and local meshes ([`devnet`]).
//!
//! [`Node`]: sentinel_protocol::Node
#![forbid(unsafe_code)]

pub mod api;
pub mod collect;
pub mod config;
pub mod daemon;
pub mod devnet;
pub mod enforce;
pub mod export;
#[doc(hidden)]
pub mod fuzzing;
pub mod http;
pub mod metrics;
pub mod outbox;
pub mod scrape;
pub mod store;
pub mod transport;
pub mod webhook;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;

use sentinel_protocol::NodeId;

/// Unix time in ms.
#[must_use]
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Where the other members listen (until signed address records arrive with
/// the deployment issue): `[[peer]] id = "<hex>"`, `addr = "host:port"`.
#[derive(Debug, Clone, Default)]
pub struct AddressBook {
    addrs: BTreeMap<NodeId, SocketAddr>,
}

#[derive(serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
struct AddressFile {
    #[serde(default)]
    peer: Vec<AddressEntry>,
}

#[derive(serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
struct AddressEntry {
    id: String,
    addr: SocketAddr,
}

impl AddressBook {
    /// Reads the file.
    ///
    /// # Errors
    /// Unreadable file, bad TOML, bad id or address (named).
    pub fn load(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        Self::parse(&text).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// Parses the TOML text.
    ///
    /// # Errors
    /// As [`AddressBook::load`].
    pub fn parse(text: &str) -> Result<Self, String> {
        let file: AddressFile = toml::from_str(text).map_err(|e| e.to_string())?;
        let mut addrs = BTreeMap::new();
        for (i, e) in file.peer.into_iter().enumerate() {
            let id = NodeId::from_hex(&e.id).map_err(|err| format!("peer {i}: {err}"))?;
            addrs.insert(id, e.addr);
        }
        Ok(Self { addrs })
    }

    /// The file text for these entries.
    #[must_use]
    pub fn to_toml(&self) -> String {
        let file = AddressFile {
            peer: self
                .addrs
                .iter()
                .map(|(id, addr)| AddressEntry {
                    id: id.to_hex(),
                    addr: *addr,
                })
                .collect(),
        };
        toml::to_string(&file).expect("address book always serialises")
    }

    /// Adds or replaces an entry.
    pub fn insert(&mut self, id: NodeId, addr: SocketAddr) {
        self.addrs.insert(id, addr);
    }

    /// Where `id` listens.
    #[must_use]
    pub fn get(&self, id: &NodeId) -> Option<SocketAddr> {
        self.addrs.get(id).copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn address_book_round_trips_and_names_bad_entries() {
        let mut b = AddressBook::default();
        let id = NodeId([3; 32]);
        b.insert(id, "127.0.0.1:9".parse().unwrap());
        let again = AddressBook::parse(&b.to_toml()).unwrap();
        assert_eq!(again.get(&id), b.get(&id));
        let e = AddressBook::parse("[[peer]]\nid = \"zz\"\naddr = \"127.0.0.1:1\"\n").unwrap_err();
        assert!(e.contains("peer 0"), "{e}");
        let e = AddressBook::parse("[[peer]]\nid = \"00\"\naddr = \"nowhere\"\n").unwrap_err();
        assert!(e.contains("addr"), "{e}");
    }
}
