//! Host metrics from procfs: CPU and memory use, network bytes, established
//! TCP connections. Every file read is a small, constant-cost one. Each call to [`HostCollector::sample`] covers the time
//! since the previous one.

use sentinel_protocol::telemetry::HostSample;

/// Reads `/proc` (or another root, for tests).
#[derive(Debug)]
pub struct HostCollector {
    root: std::path::PathBuf,
    cpu: Option<(u64, u64)>,
    net: Option<(u64, u64)>,
}

/// One reading beyond what the signed sample carries.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct HostExtra {
    /// Established TCP connections (IPv4 and IPv6).
    pub tcp_established: u64,
}

fn permille(part: u64, whole: u64) -> u16 {
    if whole == 0 {
        return 0;
    }
    u16::try_from((part.min(whole) * 1000) / whole).unwrap_or(1000)
}

/// (busy, total) jiffies from the first line of `/proc/stat`.
fn parse_stat(text: &str) -> Option<(u64, u64)> {
    let line = text.lines().find(|l| l.starts_with("cpu "))?;
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(|x| x.parse().ok())
        .collect::<Option<_>>()?;
    if v.len() < 4 {
        return None;
    }
    let total: u64 = v.iter().take(8).sum();
    // idle + iowait are not busy.
    let idle = v[3] + v.get(4).copied().unwrap_or(0);
    Some((total - idle, total))
}

/// Memory use, per mille, from `/proc/meminfo`.
fn parse_meminfo(text: &str) -> Option<u16> {
    let field = |name: &str| -> Option<u64> {
        text.lines()
            .find(|l| l.starts_with(name))?
            .split_whitespace()
            .nth(1)?
            .parse()
            .ok()
    };
    let total = field("MemTotal:")?;
    let available = field("MemAvailable:")?;
    Some(permille(total.saturating_sub(available), total))
}

/// (received, sent) bytes over every interface but loopback.
fn parse_net_dev(text: &str) -> Option<(u64, u64)> {
    let mut rx = 0u64;
    let mut tx = 0u64;
    for line in text.lines().skip(2) {
        let (name, rest) = line.split_once(':')?;
        if name.trim() == "lo" {
            continue;
        }
        let v: Vec<u64> = rest
            .split_whitespace()
            .map(|x| x.parse().ok())
            .collect::<Option<_>>()?;
        rx = rx.saturating_add(*v.first()?);
        tx = tx.saturating_add(*v.get(8)?);
    }
    Some((rx, tx))
}

/// Established TCP connections (IPv4 and IPv6 share the counter) from
/// the `CurrEstab` column of `/proc/net/snmp`. Listing `/proc/net/tcp{,6}`
/// would cost the kernel a walk of every socket each second (measured at
/// ~5 ms a read here); this is one counter.
fn parse_snmp_established(text: &str) -> Option<u64> {
    let mut tcp = text.lines().filter(|l| l.starts_with("Tcp:"));
    let header = tcp.next()?;
    let values = tcp.next()?;
    let column = header.split_whitespace().position(|h| h == "CurrEstab")?;
    values.split_whitespace().nth(column)?.parse().ok()
}

impl HostCollector {
    /// Reads the real `/proc`.
    #[must_use]
    pub fn new() -> Self {
        Self::with_root("/proc")
    }

    /// Reads a procfs-shaped directory.
    #[must_use]
    pub fn with_root(root: impl Into<std::path::PathBuf>) -> Self {
        Self {
            root: root.into(),
            cpu: None,
            net: None,
        }
    }

    fn read(&self, rel: &str) -> String {
        std::fs::read_to_string(self.root.join(rel)).unwrap_or_default()
    }

    /// A sample since the last call (the first call reports use since
    /// boot for CPU and zero network bytes). Unreadable files give zeros.
    pub fn sample(&mut self) -> (HostSample, HostExtra) {
        let mut s = HostSample::default();
        if let Some((busy, total)) = parse_stat(&self.read("stat")) {
            let (b0, t0) = self.cpu.unwrap_or((0, 0));
            s.cpu_permille = permille(busy.saturating_sub(b0), total.saturating_sub(t0));
            self.cpu = Some((busy, total));
        }
        s.mem_permille = parse_meminfo(&self.read("meminfo")).unwrap_or(0);
        if let Some((rx, tx)) = parse_net_dev(&self.read("net/dev")) {
            if let Some((rx0, tx0)) = self.net {
                s.net_in_bytes = u32::try_from(rx.saturating_sub(rx0)).unwrap_or(u32::MAX);
                s.net_out_bytes = u32::try_from(tx.saturating_sub(tx0)).unwrap_or(u32::MAX);
            }
            self.net = Some((rx, tx));
        }
        let extra = HostExtra {
            tcp_established: parse_snmp_established(&self.read("net/snmp")).unwrap_or(0),
        };
        (s, extra)
    }
}

impl Default for HostCollector {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_procfs_tree_and_reports_deltas() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path();
        std::fs::create_dir(p.join("net")).unwrap();
        let write = |f: &str, s: &str| std::fs::write(p.join(f), s).unwrap();
        write("stat", "cpu  100 0 100 700 100 0 0 0 0 0\ncpu0 1 1 1 1\n");
        write(
            "meminfo",
            "MemTotal: 1000 kB\nMemFree: 100 kB\nMemAvailable: 250 kB\n",
        );
        write(
            "net/dev",
            "Inter-|\n face |\n    lo: 999 1 0 0 0 0 0 0 999 1 0 0 0 0 0 0\n  eth0: 1000 5 0 0 0 0 0 0 2000 5 0 0 0 0 0 0\n",
        );
        write(
            "net/snmp",
            "Ip: Forwarding\nIp: 1\nTcp: RtoAlgorithm MaxConn CurrEstab InSegs\nTcp: 1 -1 1 99\n",
        );
        let mut c = HostCollector::with_root(p);
        let (s, extra) = c.sample();
        assert_eq!(s.cpu_permille, 200); // 200 busy of 1000
        assert_eq!(s.mem_permille, 750);
        assert_eq!((s.net_in_bytes, s.net_out_bytes), (0, 0));
        assert_eq!(extra.tcp_established, 1);

        write("stat", "cpu  150 0 150 750 150 0 0 0 0 0\n");
        write(
            "net/dev",
            "a\nb\n    lo: 5000 1 0 0 0 0 0 0 5000 1 0 0 0 0 0 0\n  eth0: 1500 5 0 0 0 0 0 0 2100 5 0 0 0 0 0 0\n",
        );
        let (s, _) = c.sample();
        assert_eq!(s.cpu_permille, 500); // 100 busy of 200
        assert_eq!((s.net_in_bytes, s.net_out_bytes), (500, 100));
    }

    #[test]
    fn missing_or_garbled_files_give_zeros_not_panics() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("stat"), "cpu x y z\n").unwrap();
        let mut c = HostCollector::with_root(dir.path());
        let (s, e) = c.sample();
        assert_eq!(s, HostSample::default());
        assert_eq!(e.tcp_established, 0);
    }

    #[test]
    fn the_real_proc_counts_an_open_connection() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let _client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let _server = listener.accept().unwrap();
        let (s, extra) = HostCollector::new().sample();
        assert!(extra.tcp_established >= 2, "{extra:?}");
        assert!(s.mem_permille > 0);
    }
}
