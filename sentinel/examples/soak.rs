//! A bounded soak: N real sentinels on loopback for M minutes, sampling
//! each one's resident set and CPU time from /proc every few seconds.
//!
//! ```sh
//! cargo build --release -p sentinel --example soak --bin sentinel
//! target/release/examples/soak --nodes 20 --minutes 10 --out soak-out
//! ```
//!
//! Writes `soak-out/samples.csv` (seconds, node, RSS kB, CPU seconds),
//! `soak-out/rss.svg` and `soak-out/cpu.svg` (one line per sentinel), and
//! prints the mean RSS of every minute, and per sentinel the RSS over the
//! middle minute and over the last one, and CPU use over the run. The sentinels run the `sentinel` binary
//! next to this example's directory (`target/release/sentinel`).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const SAMPLE: Duration = Duration::from_secs(5);

struct Args {
    nodes: usize,
    minutes: u64,
    out: PathBuf,
}

fn args() -> Result<Args, String> {
    let mut a = Args {
        nodes: 20,
        minutes: 10,
        out: PathBuf::from("soak-out"),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().ok_or(format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--nodes" => a.nodes = value.parse().map_err(|e| format!("--nodes: {e}"))?,
            "--minutes" => a.minutes = value.parse().map_err(|e| format!("--minutes: {e}"))?,
            "--out" => a.out = PathBuf::from(value),
            _ => return Err(format!("unknown flag {flag} (--nodes, --minutes, --out)")),
        }
    }
    if a.nodes == 0 || a.minutes < 4 {
        return Err("at least one node and four minutes".into());
    }
    Ok(a)
}

/// (RSS kB, CPU seconds) of a process, from /proc.
fn sample(pid: u32) -> Option<(u64, f64)> {
    let rss = sentinel::devnet::resident_kb(pid)?;
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces) start at 3.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    #[allow(clippy::cast_precision_loss, reason = "CPU ticks of a soak")]
    Some((rss, ticks as f64 / 100.0))
}

/// One line per series on shared axes, as an SVG document.
fn plot(title: &str, unit: &str, series: &[Vec<(f64, f64)>]) -> String {
    let (w, h, m) = (900.0, 420.0, 60.0);
    let xs = series.iter().flatten().map(|p| p.0);
    let ys = series.iter().flatten().map(|p| p.1);
    let x_max = xs.fold(1.0_f64, f64::max);
    let y_max = ys.fold(1.0_f64, f64::max) * 1.1;
    let x = |v: f64| m + v / x_max * (w - 2.0 * m);
    let y = |v: f64| h - m - v / y_max * (h - 2.0 * m);
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" font-family=\"sans-serif\" font-size=\"12\">\n\
         <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n\
         <text x=\"{}\" y=\"24\" text-anchor=\"middle\" font-size=\"15\">{title}</text>\n\
         <line x1=\"{m}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"black\"/>\n\
         <line x1=\"{m}\" y1=\"{m}\" x2=\"{m}\" y2=\"{}\" stroke=\"black\"/>\n\
         <text x=\"{}\" y=\"{}\" text-anchor=\"middle\">seconds</text>\n\
         <text x=\"{m}\" y=\"{}\" text-anchor=\"middle\">{unit}</text>\n",
        w / 2.0,
        h - m,
        w - m,
        h - m,
        h - m,
        w / 2.0,
        h - 18.0,
        m - 12.0
    );
    for k in 0..=4 {
        let (vx, vy) = (x_max * f64::from(k) / 4.0, y_max * f64::from(k) / 4.0);
        let _ = writeln!(
            svg,
            "<text x=\"{:.0}\" y=\"{:.0}\" text-anchor=\"middle\">{vx:.0}</text>\
             <text x=\"{:.0}\" y=\"{:.0}\" text-anchor=\"end\">{vy:.1}</text>",
            x(vx),
            h - m + 16.0,
            m - 6.0,
            y(vy) + 4.0
        );
    }
    for (i, s) in series.iter().enumerate() {
        let hue = i * 360 / series.len().max(1);
        let points: Vec<String> = s
            .iter()
            .map(|(a, b)| format!("{:.1},{:.1}", x(*a), y(*b)))
            .collect();
        let _ = writeln!(
            svg,
            "<polyline fill=\"none\" stroke=\"hsl({hue},70%,45%)\" stroke-width=\"1.2\" points=\"{}\"/>",
            points.join(" ")
        );
    }
    svg.push_str("</svg>\n");
    svg
}

fn mean(v: &[f64]) -> f64 {
    #[allow(clippy::cast_precision_loss, reason = "a handful of samples")]
    let n = v.len().max(1) as f64;
    v.iter().sum::<f64>() / n
}

struct Running(Vec<Child>);

impl Drop for Running {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn sentinel_binary() -> Result<PathBuf, String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let bin = exe
        .parent()
        .and_then(Path::parent)
        .map(|d| d.join("sentinel"))
        .ok_or("no directory above this example")?;
    bin.exists().then_some(bin.clone()).ok_or(format!(
        "{} is missing: cargo build --release -p sentinel --bin sentinel",
        bin.display()
    ))
}

fn main() -> Result<(), String> {
    let a = args()?;
    let bin = sentinel_binary()?;
    std::fs::create_dir_all(&a.out).map_err(|e| format!("{}: {e}", a.out.display()))?;
    let root = a.out.join("mesh");
    let _ = std::fs::remove_dir_all(&root);
    let nodes = sentinel::devnet::prepare(&root, "soak", a.nodes, 0)?;
    let mut running = Running(Vec::new());
    for n in &nodes {
        let log = std::fs::File::create(n.dir.join("sentinel.log")).map_err(|e| e.to_string())?;
        let child = Command::new(&bin)
            .args(["run", "--config"])
            .arg(&n.config)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(|e| format!("{}: {e}", bin.display()))?;
        running.0.push(child);
    }
    println!(
        "{} sentinels for {} minutes; sampling every {SAMPLE:?}",
        a.nodes, a.minutes
    );
    let mut csv = String::from("seconds,node,rss_kb,cpu_s\n");
    let mut rss: Vec<Vec<(f64, f64)>> = vec![Vec::new(); a.nodes];
    let mut cpu: Vec<Vec<(f64, f64)>> = vec![Vec::new(); a.nodes];
    let start = Instant::now();
    let end = Duration::from_secs(a.minutes * 60);
    while start.elapsed() < end {
        let t = start.elapsed().as_secs_f64();
        for (i, c) in running.0.iter_mut().enumerate() {
            if let Ok(Some(status)) = c.try_wait() {
                return Err(format!("sentinel {i} exited: {status}"));
            }
            if let Some((kb, cpu_s)) = sample(c.id()) {
                let _ = writeln!(csv, "{t:.1},{i},{kb},{cpu_s:.2}");
                #[allow(clippy::cast_precision_loss, reason = "kB to MB for a plot")]
                rss[i].push((t, kb as f64 / 1024.0));
                cpu[i].push((t, cpu_s));
            }
        }
        std::thread::sleep(SAMPLE);
    }
    drop(running);
    std::fs::write(a.out.join("samples.csv"), &csv).map_err(|e| e.to_string())?;
    std::fs::write(
        a.out.join("rss.svg"),
        plot("Resident set per sentinel", "MB", &rss),
    )
    .map_err(|e| e.to_string())?;
    // CPU as a rate: percent of one core over each sampling interval.
    let rate: Vec<Vec<(f64, f64)>> = cpu
        .iter()
        .map(|s| {
            s.windows(2)
                .map(|w| (w[1].0, 100.0 * (w[1].1 - w[0].1) / (w[1].0 - w[0].0)))
                .collect()
        })
        .collect();
    std::fs::write(
        a.out.join("cpu.svg"),
        plot("CPU per sentinel", "% of one core", &rate),
    )
    .map_err(|e| e.to_string())?;

    // Growth is read from the middle of the run to its last minute: the
    // first minutes are start-up (model, database, peers' first reports).
    let minute_mean = |i: usize, m: u64| -> f64 {
        #[allow(clippy::cast_precision_loss, reason = "minutes of a soak")]
        let (from, to) = ((m * 60) as f64, ((m + 1) * 60) as f64);
        let v: Vec<f64> = rss[i]
            .iter()
            .filter(|p| p.0 >= from && p.0 < to)
            .map(|p| p.1)
            .collect();
        mean(&v)
    };
    let (mid, last) = (a.minutes / 2, a.minutes - 1);
    print!("RSS mean over all sentinels by minute (MB):");
    for m in 0..a.minutes {
        let all: Vec<f64> = (0..a.nodes).map(|i| minute_mean(i, m)).collect();
        print!(" {:.2}", mean(&all));
    }
    println!();
    println!("node  RSS minute {mid} (MB)  RSS minute {last} (MB)  growth (MB)  CPU mean (% core)");
    let mut growth = Vec::new();
    for (i, c) in cpu.iter().enumerate() {
        let (early, late) = (minute_mean(i, mid), minute_mean(i, last));
        let used = c.last().map_or(0.0, |p| p.1) - c.first().map_or(0.0, |p| p.1);
        let span = c.last().map_or(1.0, |p| p.0) - c.first().map_or(0.0, |p| p.0);
        growth.push(late - early);
        println!(
            "{i:<5} {early:>17.2}  {late:>17.2}  {:>+11.2}  {:>17.2}",
            late - early,
            100.0 * used / span.max(1.0)
        );
    }
    println!(
        "RSS change from minute {mid} to minute {last}, over all sentinels: mean {:+.3} MB, max {:+.3} MB",
        mean(&growth),
        growth.iter().copied().fold(f64::MIN, f64::max)
    );
    println!("samples, plots: {}", a.out.display());
    Ok(())
}
