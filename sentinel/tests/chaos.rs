//! Fault injection on real sentinel processes, each on its own network
//! namespace made by the test: a switch namespace holds a bridge, and every
//! sentinel sits on it behind a veth pair at 10.77.0.1x, so partitions,
//! bandwidth caps and loss act on a real network path. Nothing leaves the
//! namespaces: each sentinel's API listens on its own namespace's loopback
//! and is read through the real CLI (`ip netns exec … sentinel status`).
//!
//! One scenario, bounded in time: five honest sentinels vote out a sixth
//! that floods them, then go through faults one after another: SIGKILL
//! and restart, SIGSTOP and SIGCONT, a partition and its heal, a bandwidth
//! cap and random loss, a restart under a clock 20 s fast (`faketime`),
//! and a full disk under one sentinel's data directory. After each fault
//! the mesh must re-converge (every sentinel holds a fresh report from
//! every other), and at the end:
//! - no honest sentinel was quarantined (every one holds the flooder's
//!   certificate), and none detected an equivocation;
//! - no two different frames were stored anywhere under one (origin,
//!   epoch, sequence), and a restarted sentinel always took a newer epoch;
//! - nothing a sentinel had stored before it was killed (reports, the
//!   certificate, its votes, the alerts waiting in its outbox), or before
//!   its disk filled, is lost.
//!
//! Needs root, `ip` and `tc` (iproute2), `nft` (nftables) and libfaketime
//! (`.ci/run` installs them). Without them it fails, naming what is
//! missing: it never passes without having run.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use sentinel::devnet::{self, DevNode};
use serde_json::Value;

/// Runs a command, failing with its stderr.
fn run(cmd: &mut Command) -> Result<String, String> {
    let out = cmd
        .output()
        .map_err(|e| format!("{cmd:?} did not start: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{cmd:?} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn ip(args: &[&str]) {
    run(Command::new("ip").args(args)).unwrap_or_else(|e| panic!("{e}"));
}

/// The test hosts: namespaces `<tag>-sw` (the bridge) and `<tag>-<i>`.
/// Dropping it deletes them, which deletes their veths too.
struct Lab {
    tag: String,
    n: usize,
    mounts: Vec<PathBuf>,
}

impl Lab {
    fn new(n: usize) -> Self {
        for tool in ["ip", "nft", "tc"] {
            assert!(
                run(Command::new("sh").args(["-c", &format!("command -v {tool}")])).is_ok(),
                "the fault-injection test needs `{tool}` (apt-get install iproute2 nftables)"
            );
        }
        let tag = format!("sm{}", std::process::id() % 100_000);
        let lab = Self {
            tag,
            n,
            mounts: Vec::new(),
        };
        let sw = lab.ns_switch();
        if let Err(e) = run(Command::new("ip").args(["netns", "add", &sw])) {
            panic!("cannot create a network namespace (the test needs root): {e}");
        }
        ip(&["-n", &sw, "link", "add", "br0", "type", "bridge"]);
        ip(&["-n", &sw, "link", "set", "br0", "up"]);
        for i in 0..n {
            let ns = lab.ns(i);
            let (outer, inner) = (format!("{}v{i}", lab.tag), format!("{}e{i}", lab.tag));
            ip(&["netns", "add", &ns]);
            ip(&["-n", &ns, "link", "set", "lo", "up"]);
            ip(&[
                "link", "add", &outer, "type", "veth", "peer", "name", &inner,
            ]);
            ip(&["link", "set", &outer, "netns", &sw]);
            ip(&["link", "set", &inner, "netns", &ns]);
            ip(&["-n", &sw, "link", "set", &outer, "master", "br0", "up"]);
            ip(&["-n", &ns, "link", "set", &inner, "name", "eth0"]);
            ip(&[
                "-n",
                &ns,
                "addr",
                "add",
                &format!("{}/24", lab.addr(i)),
                "dev",
                "eth0",
            ]);
            ip(&["-n", &ns, "link", "set", "eth0", "up"]);
        }
        let _ = libfaketime();
        lab
    }

    fn ns_switch(&self) -> String {
        format!("{}-sw", self.tag)
    }

    fn ns(&self, i: usize) -> String {
        format!("{}-{i}", self.tag)
    }

    fn addr(&self, i: usize) -> String {
        format!("10.77.0.{}", 10 + i)
    }

    /// A command run inside node `i`'s namespace.
    fn exec(&self, i: usize, program: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.ns(i), program]);
        c
    }

    /// Replaces node `i`'s nftables ruleset with one `inet chaos` table.
    fn nft(&self, i: usize, rules: &str) {
        let script = format!("flush ruleset\ntable inet chaos {{\n{rules}\n}}\n");
        let path = std::env::temp_dir().join(format!("{}-{i}.nft", self.tag));
        std::fs::write(&path, script).expect("the rules file is written");
        run(self.exec(i, "nft").arg("-f").arg(&path)).unwrap_or_else(|e| panic!("{e}"));
    }

    /// Drops every packet between node `i` and `others`, both ways.
    fn cut_off(&self, i: usize, others: &[usize]) {
        let set: Vec<String> = others.iter().map(|j| self.addr(*j)).collect();
        let set = set.join(", ");
        self.nft(
            i,
            &format!(
                "chain input {{\n type filter hook input priority 0;\n ip saddr {{ {set} }} counter drop\n}}\n\
                 chain output {{\n type filter hook output priority 0;\n ip daddr {{ {set} }} counter drop\n}}"
            ),
        );
    }

    /// Drops `percent` % of node `i`'s packets at random, both ways.
    fn lossy(&self, i: usize, percent: u32) {
        self.nft(
            i,
            &format!(
                "chain input {{\n type filter hook input priority 0;\n numgen random mod 100 < {percent} counter drop\n}}\n\
                 chain output {{\n type filter hook output priority 0;\n numgen random mod 100 < {percent} counter drop\n}}"
            ),
        );
    }

    /// Packets node `i`'s rules have dropped so far.
    fn dropped(&self, i: usize) -> u64 {
        let rules = run(self.exec(i, "nft").args(["list", "ruleset"])).unwrap_or_default();
        rules
            .split("counter packets ")
            .skip(1)
            .filter_map(|r| r.split_whitespace().next()?.parse::<u64>().ok())
            .sum()
    }

    fn heal(&self, i: usize) {
        run(self.exec(i, "nft").args(["flush", "ruleset"])).unwrap_or_else(|e| panic!("{e}"));
    }

    /// Caps node `i`'s outgoing bandwidth (token bucket), or lifts the cap.
    fn cap(&self, i: usize, rate: Option<&str>) {
        let mut tc = self.exec(i, "tc");
        match rate {
            Some(r) => tc.args([
                "qdisc", "replace", "dev", "eth0", "root", "tbf", "rate", r, "burst", "16kb",
                "latency", "200ms",
            ]),
            None => tc.args(["qdisc", "del", "dev", "eth0", "root"]),
        };
        run(&mut tc).unwrap_or_else(|e| panic!("{e}"));
    }

    /// Mounts a `size` tmpfs on `dir` (unmounted on drop).
    fn mount_tmpfs(&mut self, dir: &Path, size: &str) {
        run(Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir))
        .unwrap_or_else(|e| panic!("{e}"));
        self.mounts.push(dir.to_owned());
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for m in &self.mounts {
            let _ = Command::new("umount").arg("-l").arg(m).status();
        }
        for i in 0..self.n {
            let _ = Command::new("ip")
                .args(["netns", "del", &self.ns(i)])
                .status();
        }
        let _ = Command::new("ip")
            .args(["netns", "del", &self.ns_switch()])
            .status();
    }
}

/// Debian's libfaketime (package `faketime`, multiarch path).
fn libfaketime() -> PathBuf {
    std::fs::read_dir("/usr/lib")
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .map(|d| d.path().join("faketime/libfaketime.so.1"))
        .find(|p| p.exists())
        .expect("libfaketime.so.1 under /usr/lib/<arch>/faketime (apt-get install faketime)")
}

/// A sentinel process in its namespace, killed when dropped.
struct Sentinel(Child);

impl Drop for Sentinel {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Fields drop in order: the sentinels stop before their namespaces and
/// mounts go.
struct Mesh {
    procs: Vec<Option<Sentinel>>,
    nodes: Vec<DevNode>,
    lab: Lab,
}

impl Mesh {
    fn start(&mut self, i: usize, faketime: Option<&str>) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.nodes[i].dir.join("sentinel.log"))
            .expect("the log file opens");
        let bin = env!("CARGO_BIN_EXE_sentinel");
        let mut cmd = self.lab.exec(i, bin);
        // libfaketime preloaded into the sentinel itself (the `faketime`
        // wrapper would run it as a child, out of reach of our signals).
        if let Some(offset) = faketime {
            cmd.env("LD_PRELOAD", libfaketime()).env("FAKETIME", offset);
        }
        cmd.args(["run", "--config"])
            .arg(&self.nodes[i].config)
            .env("SENTINEL_LOG_LEVEL", "debug")
            .stdout(Stdio::null())
            .stderr(log);
        self.procs[i] = Some(Sentinel(cmd.spawn().expect("sentinel starts")));
    }

    fn kill(&mut self, i: usize) {
        self.procs[i] = None;
    }

    fn signal(&self, i: usize, sig: &str) {
        let pid = self.procs[i].as_ref().expect("running").0.id();
        run(Command::new("kill").args([sig, &pid.to_string()])).unwrap_or_else(|e| panic!("{e}"));
    }

    /// `sentinel <what> --config …` run in node `i`'s namespace, as JSON.
    fn cli(&self, i: usize, what: &str) -> Option<Value> {
        let out = self
            .lab
            .exec(i, env!("CARGO_BIN_EXE_sentinel"))
            .args([what, "--config"])
            .arg(&self.nodes[i].config)
            .output()
            .ok()?;
        serde_json::from_slice(&out.stdout).ok()
    }

    /// Node `i`'s newest (epoch, sequence) from each other member.
    fn latest(&self, i: usize) -> BTreeMap<String, (u64, u64)> {
        self.cli(i, "peers")
            .map(|p| common::latest_reports(&p))
            .unwrap_or_default()
    }

    /// Waits until every running node holds a report from every other
    /// running node newer than what it held when called: the mesh has
    /// re-converged.
    fn converge(&self, what: &str, limit: Duration) {
        let up: Vec<usize> = (0..self.nodes.len())
            .filter(|i| self.procs[*i].is_some())
            .collect();
        let before: Vec<_> = up.iter().map(|i| self.latest(*i)).collect();
        let start = Instant::now();
        loop {
            let fresh = up.iter().zip(&before).all(|(i, old)| {
                let now = self.latest(*i);
                up.iter().filter(|j| *j != i).all(|j| {
                    let id = self.nodes[*j].id.to_hex();
                    now.get(&id)
                        .is_some_and(|l| old.get(&id).is_none_or(|o| l > o))
                })
            });
            if fresh {
                println!(
                    "{what}: re-converged in {:.1} s",
                    start.elapsed().as_secs_f64()
                );
                return;
            }
            assert!(
                start.elapsed() < limit,
                "the mesh did not re-converge within {limit:?} after {what}\n{}",
                common::mesh_log(&self.nodes)
            );
            std::thread::sleep(Duration::from_millis(500));
        }
    }
}

/// Node `node`'s database, read-only (the sentinel keeps writing it).
fn db(node: &DevNode) -> rusqlite::Connection {
    rusqlite::Connection::open_with_flags(
        node.dir.join("data/sentinel.db"),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .expect("the database opens")
}

/// Every (origin, epoch, sequence) → frame stored in node `node`'s database.
fn stored(node: &DevNode) -> BTreeMap<(String, u64, u64), Vec<u8>> {
    let db = db(node);
    let mut q = db
        .prepare("SELECT origin, epoch, sequence, frame FROM telemetry")
        .expect("the telemetry table is there");
    q.query_map([], |r| {
        Ok((
            (
                r.get::<_, String>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, i64>(2)?,
            ),
            r.get::<_, Vec<u8>>(3)?,
        ))
    })
    .expect("the query runs")
    .map(|row| {
        let ((o, e, s), f) = row.expect("a telemetry row");
        ((o, e.unsigned_abs(), s.unsigned_abs()), f)
    })
    .collect()
}

/// The first column of `sql`'s rows in node `node`'s database, as text.
fn rows(node: &DevNode, sql: &str) -> std::collections::BTreeSet<String> {
    let db = db(node);
    let mut q = db.prepare(sql).expect("a valid query");
    q.query_map([], |r| r.get::<_, String>(0))
        .expect("the query runs")
        .map(|r| r.expect("a row"))
        .collect()
}

fn assert_kept(before: &BTreeMap<(String, u64, u64), Vec<u8>>, node: &DevNode, when: &str) {
    let after = stored(node);
    let lost = before.keys().filter(|k| !after.contains_key(*k)).count();
    assert_eq!(lost, 0, "{}: {lost} stored reports lost {when}", node.id);
}

#[test]
#[allow(
    clippy::too_many_lines,
    reason = "one scenario: each fault, then its checks"
)]
fn the_mesh_survives_kills_pauses_partitions_bad_links_skew_and_a_full_disk() {
    // Five honest sentinels and a flooder, which the others vote out.
    const N: usize = 6;
    const FLOODER: usize = 5;
    let mut lab = Lab::new(N);
    let dir = tempfile::tempdir().unwrap();
    let mut nodes = devnet::prepare(dir.path(), "chaos", N, 0).unwrap();
    devnet::set_attack(&nodes[FLOODER].config, "flooder").unwrap();
    // Node 1 alerts an endpoint nobody answers: its alerts wait in the
    // outbox.
    let secret = nodes[1].dir.join("hook.secret");
    run(Command::new(env!("CARGO_BIN_EXE_sentinel"))
        .args(["alerts", "secret"])
        .arg(&secret))
    .unwrap();
    {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&nodes[1].config)
            .unwrap();
        write!(
            f,
            "\n[[alerts.endpoint]]\nname = \"nobody\"\nurl = \"http://10.77.0.99:9/hook\"\n\
             secrets_file = {:?}\nallow_private = true\n",
            secret.display().to_string()
        )
        .unwrap();
    }
    // Each sentinel listens on its namespace's address; its API stays on
    // that namespace's loopback.
    let mut text = BTreeMap::new();
    for n in &nodes {
        for f in ["sentinel.toml", "addresses.toml"] {
            let p = n.dir.join(f);
            text.insert(p.clone(), std::fs::read_to_string(&p).unwrap());
        }
    }
    for (i, n) in nodes.iter_mut().enumerate() {
        let quic = format!("{}:7700", lab.addr(i));
        for t in text.values_mut() {
            *t = t
                .replace(&format!("\"{}\"", n.quic), &format!("\"{quic}\""))
                .replace(&format!("\"{}\"", n.api), "\"127.0.0.1:7780\"");
        }
        n.quic = quic.parse().unwrap();
    }
    for (p, t) in &text {
        std::fs::write(p, t).unwrap();
    }
    // Node 4's data directory is a 24 MB tmpfs, to fill later.
    lab.mount_tmpfs(&nodes[4].dir.join("data"), "24m");
    let mut mesh = Mesh {
        lab,
        nodes,
        procs: (0..N).map(|_| None).collect(),
    };
    for i in 0..N {
        mesh.start(i, None);
    }
    let flooder = mesh.nodes[FLOODER].id.to_hex();
    let quarantined = |m: &Mesh, i: usize| {
        m.cli(i, "status")
            .map(|s| s["quarantined"].clone())
            .unwrap_or_default()
    };
    let voted_out = Instant::now();
    while !(0..FLOODER).all(|i| quarantined(&mesh, i) == serde_json::json!([flooder])) {
        assert!(
            voted_out.elapsed() < Duration::from_secs(190),
            "the flooder was not voted out everywhere\n{}",
            common::mesh_log(&mesh.nodes)
        );
        std::thread::sleep(Duration::from_secs(1));
    }
    println!(
        "flooder voted out everywhere after {:.1} s",
        voted_out.elapsed().as_secs_f64()
    );
    mesh.kill(FLOODER);
    mesh.converge("start", Duration::from_secs(90));
    let epochs: Vec<u64> = (0..FLOODER)
        .map(|i| mesh.cli(i, "status").unwrap()["epoch"].as_u64().unwrap())
        .collect();

    // 1. SIGKILL and restart: what it stored (reports, the certificate,
    //    its votes, the alerts waiting in its outbox) is still there, it
    //    still enforces the quarantine, and it signs under a newer epoch.
    let kept = stored(&mesh.nodes[1]);
    let durable = |m: &Mesh| {
        [
            "SELECT subject || '/' || epoch || '/' || sequence FROM certificates",
            "SELECT accusation FROM votes",
            "SELECT id || '/' || endpoint FROM alerts",
        ]
        .map(|q| rows(&m.nodes[1], q))
    };
    let before = durable(&mesh);
    assert!(
        before.iter().all(|r| !r.is_empty()),
        "node 1 holds no certificate, vote or alert to keep: {before:?}"
    );
    mesh.kill(1);
    std::thread::sleep(Duration::from_secs(3));
    mesh.start(1, None);
    mesh.converge("SIGKILL and restart of node 1", Duration::from_secs(90));
    assert_kept(&kept, &mesh.nodes[1], "across a SIGKILL");
    let after = durable(&mesh);
    for (b, a) in before.iter().zip(&after) {
        assert!(
            b.is_subset(a),
            "lost across a SIGKILL: {:?}",
            b.difference(a)
        );
    }
    assert_eq!(quarantined(&mesh, 1), serde_json::json!([flooder]));
    let epoch = mesh.cli(1, "status").unwrap()["epoch"].as_u64().unwrap();
    assert!(epoch > epochs[1], "restart reused epoch {epoch}");

    // 2. SIGSTOP for 12 s (its links see nothing), then SIGCONT. Reports
    //    come every 5 s: none of its own arrives while it is stopped.
    let id2 = mesh.nodes[2].id.to_hex();
    mesh.signal(2, "-STOP");
    std::thread::sleep(Duration::from_secs(1));
    let paused = mesh.latest(0).get(&id2).copied();
    std::thread::sleep(Duration::from_secs(11));
    assert_eq!(
        mesh.latest(0).get(&id2).copied(),
        paused,
        "a stopped node reported"
    );
    mesh.signal(2, "-CONT");
    mesh.converge("SIGSTOP and SIGCONT of node 2", Duration::from_secs(90));

    // 3. A partition {0, 1} | {2, 3, 4} for 20 s, then healed.
    for (side, other) in [
        ([0, 1].as_slice(), [2, 3, 4].as_slice()),
        (&[2, 3, 4], &[0, 1]),
    ] {
        for i in side {
            mesh.lab.cut_off(*i, other);
        }
    }
    std::thread::sleep(Duration::from_secs(2));
    let across = |m: &Mesh| (m.latest(0), m.latest(3));
    let cut = across(&mesh);
    std::thread::sleep(Duration::from_secs(18));
    let (at0, at3) = across(&mesh);
    for j in [2, 3, 4] {
        let id = mesh.nodes[j].id.to_hex();
        assert_eq!(
            at0.get(&id),
            cut.0.get(&id),
            "a report crossed the partition"
        );
    }
    for j in [0, 1] {
        let id = mesh.nodes[j].id.to_hex();
        assert_eq!(
            at3.get(&id),
            cut.1.get(&id),
            "a report crossed the partition"
        );
    }
    assert!(
        (0..FLOODER).all(|i| mesh.lab.dropped(i) > 0),
        "the partition dropped nothing"
    );
    for i in 0..N {
        mesh.lab.heal(i);
    }
    mesh.converge("a 20 s partition, healed", Duration::from_secs(120));

    // 4. Node 3 capped at 48 kbit/s and node 0 losing 10 % of its
    //    packets both ways: the mesh still converges through them.
    mesh.lab.cap(3, Some("48kbit"));
    mesh.lab.lossy(0, 10);
    mesh.converge(
        "a 48 kbit/s cap on node 3 and 10 % loss at node 0",
        Duration::from_secs(120),
    );
    let qdisc = run(mesh
        .lab
        .exec(3, "tc")
        .args(["-s", "qdisc", "show", "dev", "eth0"]))
    .unwrap();
    let overlimits: u64 = qdisc
        .split("overlimits ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next()?.parse().ok())
        .unwrap_or(0);
    assert!(
        qdisc.contains("tbf") && overlimits > 0,
        "the cap never held anything back: {qdisc}"
    );
    let lost = mesh.lab.dropped(0);
    println!(
        "10 % loss dropped {lost} packets at node 0\n{}",
        qdisc.trim()
    );
    assert!(lost > 0, "the loss rule dropped nothing");
    mesh.lab.cap(3, None);
    mesh.lab.heal(0);

    // 5. Node 2 restarted with its clock 20 s fast: inside every time
    //    window, so it stays a member in good standing.
    mesh.kill(2);
    mesh.start(2, Some("+20"));
    mesh.converge(
        "a restart of node 2 with its clock 20 s fast",
        Duration::from_secs(90),
    );
    // Its reports start in node 0's future: the skew is real. (Node 0
    // writes what it received a moment after holding it: wait for it.)
    let epoch2 = mesh.cli(2, "status").unwrap()["epoch"].as_u64().unwrap();
    let skewed = Instant::now();
    let newest = loop {
        let from2 = stored(&mesh.nodes[0])
            .into_keys()
            .filter(|(o, e, _)| *o == id2 && *e == epoch2)
            .max();
        if let Some(k) = from2 {
            break k;
        }
        assert!(
            skewed.elapsed() < Duration::from_secs(30),
            "node 0 stored nothing from node 2's new epoch"
        );
        std::thread::sleep(Duration::from_millis(500));
    };
    let skew: i64 = db(&mesh.nodes[0])
        .query_row(
            "SELECT start_ms - received_ms FROM telemetry WHERE origin = ?1 AND epoch = ?2 AND sequence = ?3",
            rusqlite::params![newest.0, newest.1.cast_signed(), newest.2.cast_signed()],
            |r| r.get(0),
        )
        .unwrap();
    println!("node 2's newest report starts {skew} ms after node 0 received it");
    assert!(skew > 5_000, "node 2's clock is not ahead: {skew} ms");

    // 6. Node 4's disk fills up: it keeps running and answering, loses
    //    nothing it had stored, and stores again once there is room.
    let kept = stored(&mesh.nodes[4]);
    let filler = mesh.nodes[4].dir.join("data/filler");
    {
        use std::io::Write;
        let mut f = std::fs::File::create(&filler).unwrap();
        let chunk = vec![0u8; 1 << 20];
        while f.write_all(&chunk).is_ok() {}
        let _ = f.sync_all();
    }
    std::thread::sleep(Duration::from_secs(15));
    let log = common::log_of(&mesh.nodes[4]);
    assert!(
        log.contains("full"),
        "node 4 never hit the full disk:\n{}",
        &log[log.len().saturating_sub(3000)..]
    );
    assert!(
        mesh.procs[4]
            .as_mut()
            .unwrap()
            .0
            .try_wait()
            .unwrap()
            .is_none(),
        "node 4 exited when its disk filled\n{}",
        common::log_of(&mesh.nodes[4])
    );
    assert!(mesh.cli(4, "status").is_some(), "node 4 stopped answering");
    std::fs::remove_file(&filler).unwrap();
    mesh.converge(
        "a full disk under node 4, then room again",
        Duration::from_secs(90),
    );
    assert_kept(&kept, &mesh.nodes[4], "across a full disk");
    let grown = stored(&mesh.nodes[4]).len();
    let start = Instant::now();
    while stored(&mesh.nodes[4]).len() <= grown {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "node 4 stores nothing after its disk has room again"
        );
        std::thread::sleep(Duration::from_secs(1));
    }

    // Invariants over the whole run.
    let mut seen: BTreeMap<(String, u64, u64), Vec<u8>> = BTreeMap::new();
    for (i, n) in mesh.nodes.iter().enumerate() {
        if i != FLOODER {
            let s = mesh.cli(i, "status").expect("every sentinel answers");
            assert_eq!(
                s["quarantined"],
                serde_json::json!([flooder]),
                "{}: {s}",
                n.id
            );
            assert_eq!(s["equivocations_detected"], 0, "{}: {s}", n.id);
        }
        for (key, frame) in stored(n) {
            let first = seen.entry(key.clone()).or_insert_with(|| frame.clone());
            assert!(*first == frame, "two frames stored under {key:?}");
        }
    }
    println!("{} distinct reports stored, one frame each", seen.len());
}
