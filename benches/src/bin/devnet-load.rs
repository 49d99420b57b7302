//! CPU and memory of real sentinel processes in a devnet on one machine.
//!
//! Starts `--nodes` sentinels (one mesh, separate processes on 127.0.0.1)
//! and, as the same-run reference, one lone sentinel in a mesh of its own:
//! same binary, same collectors and API, no peers. Waits until every mesh
//! member has neighbours and holds signed reports from them, then measures each
//! process's CPU time (`/proc/<pid>/stat`) over `--seconds` and its
//! resident memory (`/proc/<pid>/status`) at the end, and prints a table
//! and the ratio of a mesh member's CPU to the lone sentinel's.
//!
//! ```text
//! cargo build --release -p sentinel -p sentinel-benches
//! target/release/devnet-load --nodes 20 --seconds 60
//! ```

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use clap::Parser;
use sentinel::devnet::{self, DevNode};

#[derive(Parser, Debug)]
#[command(about = "CPU and RSS per sentinel in a devnet")]
struct Args {
    /// Sentinels in the mesh.
    #[arg(long, default_value_t = 20)]
    nodes: usize,
    /// Measurement window after the mesh has converged, seconds.
    #[arg(long, default_value_t = 60)]
    seconds: u64,
    /// Longest wait for convergence, seconds.
    #[arg(long, default_value_t = 180)]
    converge_timeout: u64,
    /// The sentinel binary (default: `sentinel` next to this program).
    #[arg(long)]
    sentinel: Option<PathBuf>,
    /// Also write the figures as JSON here.
    #[arg(long)]
    out: Option<PathBuf>,
}

/// A child that is killed if the tool stops early.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// CPU seconds (user + system) a process has used.
fn cpu_seconds(pid: u32, ticks_per_s: f64) -> Result<f64, String> {
    let path = format!("/proc/{pid}/stat");
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{path}: {e}"))?;
    // Fields after the parenthesised command name; utime and stime are the
    // 14th and 15th fields of the line, 12th and 13th after the name.
    let rest = text
        .rsplit_once(')')
        .ok_or_else(|| format!("{path}: no command name"))?
        .1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let tick = |i: usize| -> Result<f64, String> {
        f.get(i)
            .and_then(|v| v.parse::<u64>().ok())
            .map(|v| v as f64)
            .ok_or_else(|| format!("{path}: field {} unreadable", i + 3))
    };
    Ok((tick(11)? + tick(12)?) / ticks_per_s)
}

/// (VmRSS, VmHWM) in MiB.
fn memory_mib(pid: u32) -> Result<(f64, f64), String> {
    let path = format!("/proc/{pid}/status");
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{path}: {e}"))?;
    let kib = |name: &str| -> Result<f64, String> {
        text.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<u64>().ok())
            .map(|v| v as f64 / 1024.0)
            .ok_or_else(|| format!("{path}: no {name}"))
    };
    Ok((kib("VmRSS:")?, kib("VmHWM:")?))
}

/// Clock ticks per second for `/proc/<pid>/stat` (USER_HZ).
fn ticks_per_second() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

fn start(exe: &Path, node: &DevNode) -> Result<Proc, String> {
    let log = std::fs::File::create(node.dir.join("sentinel.log")).map_err(|e| e.to_string())?;
    Command::new(exe)
        .args(["run", "--config"])
        .arg(&node.config)
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .map(Proc)
        .map_err(|e| format!("starting {}: {e}", exe.display()))
}

/// (active view size, origins heard) from the node's status.
fn mesh_state(rt: &tokio::runtime::Runtime, node: &DevNode) -> Option<(u64, u64)> {
    let s = rt.block_on(node.api_json("/v1/status")).ok()?;
    Some((
        s["active"].as_array()?.len() as u64,
        s["origins_heard"].as_u64()?,
    ))
}

#[derive(Debug, serde::Serialize)]
struct Figures {
    nodes: usize,
    seconds: u64,
    converged_after_s: f64,
    cpu_percent_mean: f64,
    cpu_percent_p50: f64,
    cpu_percent_max: f64,
    rss_mib_mean: f64,
    rss_mib_max: f64,
    peak_rss_mib_max: f64,
    lone_cpu_percent: f64,
    lone_rss_mib: f64,
    /// None when the lone sentinel used less CPU than the clock tick
    /// resolution can tell over the window.
    cpu_ratio_member_to_lone: Option<f64>,
    rss_ratio_member_to_lone: f64,
}

fn run(args: &Args) -> Result<Figures, String> {
    let exe = match &args.sentinel {
        Some(p) => p.clone(),
        None => std::env::current_exe()
            .map_err(|e| e.to_string())?
            .with_file_name("sentinel"),
    };
    if !exe.exists() {
        return Err(format!(
            "{} not found: `cargo build --release -p sentinel` first, or pass --sentinel",
            exe.display()
        ));
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let root = tempfile::tempdir().map_err(|e| e.to_string())?;
    let mesh = devnet::prepare(&root.path().join("mesh"), "load", args.nodes, 0)?;
    let lone = devnet::prepare(&root.path().join("lone"), "lone", 1, 0)?.remove(0);
    let mut procs = Vec::new();
    for node in &mesh {
        procs.push(start(&exe, node)?);
    }
    let lone_proc = start(&exe, &lone)?;
    eprintln!(
        "started {} sentinels and a lone reference in {}",
        args.nodes,
        root.path().display()
    );

    // Converged: every member has neighbours and holds signed reports from
    // more origins than it has neighbours. (Reports travel two hops, to the
    // nodes that score their subjects, so beyond ~25 nodes no one hears
    // everyone.)
    let begun = Instant::now();
    let want_active = (args.nodes as u64 - 1).min(2);
    loop {
        let heard: Vec<(u64, u64)> = mesh
            .iter()
            .map(|n| mesh_state(&rt, n).unwrap_or((0, 0)))
            .collect();
        if heard
            .iter()
            .all(|&(active, heard)| active >= want_active && heard > active)
        {
            break;
        }
        if begun.elapsed() > Duration::from_secs(args.converge_timeout) {
            return Err(format!(
                "no convergence in {}s: {heard:?}",
                args.converge_timeout
            ));
        }
        for (i, p) in procs.iter_mut().enumerate() {
            if let Ok(Some(status)) = p.0.try_wait() {
                return Err(format!(
                    "sentinel {i} exited ({status}); see {}",
                    mesh[i].dir.join("sentinel.log").display()
                ));
            }
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    let converged_after_s = begun.elapsed().as_secs_f64();
    eprintln!(
        "converged after {converged_after_s:.1} s; measuring {} s",
        args.seconds
    );

    let hz = ticks_per_second();
    let pids: Vec<u32> = procs.iter().map(|p| p.0.id()).collect();
    let lone_pid = lone_proc.0.id();
    let cpu_at = |pid| cpu_seconds(pid, hz);
    let before: Vec<f64> = pids.iter().map(|&p| cpu_at(p)).collect::<Result<_, _>>()?;
    let lone_before = cpu_at(lone_pid)?;
    let t0 = Instant::now();
    std::thread::sleep(Duration::from_secs(args.seconds));
    let wall = t0.elapsed().as_secs_f64();
    let after: Vec<f64> = pids.iter().map(|&p| cpu_at(p)).collect::<Result<_, _>>()?;
    let lone_after = cpu_at(lone_pid)?;
    let mem: Vec<(f64, f64)> = pids
        .iter()
        .map(|&p| memory_mib(p))
        .collect::<Result<_, _>>()?;
    let (lone_rss, _) = memory_mib(lone_pid)?;

    let mut cpu: Vec<f64> = before
        .iter()
        .zip(&after)
        .map(|(b, a)| 100.0 * (a - b) / wall)
        .collect();
    cpu.sort_by(f64::total_cmp);
    let n = cpu.len() as f64;
    let cpu_mean = cpu.iter().sum::<f64>() / n;
    let rss_mean = mem.iter().map(|m| m.0).sum::<f64>() / n;
    let lone_cpu = 100.0 * (lone_after - lone_before) / wall;
    Ok(Figures {
        nodes: args.nodes,
        seconds: args.seconds,
        converged_after_s,
        cpu_percent_mean: cpu_mean,
        cpu_percent_p50: cpu[cpu.len() / 2],
        cpu_percent_max: cpu[cpu.len() - 1],
        rss_mib_mean: rss_mean,
        rss_mib_max: mem.iter().map(|m| m.0).fold(0.0, f64::max),
        peak_rss_mib_max: mem.iter().map(|m| m.1).fold(0.0, f64::max),
        lone_cpu_percent: lone_cpu,
        lone_rss_mib: lone_rss,
        cpu_ratio_member_to_lone: (lone_after - lone_before >= 10.0 / hz)
            .then(|| cpu_mean / lone_cpu),
        rss_ratio_member_to_lone: rss_mean / lone_rss.max(1e-9),
    })
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args) {
        Ok(f) => {
            println!(
                "| sentinels | window | CPU % of one core (mean / p50 / max) | RSS MiB (mean / max) | peak RSS MiB |"
            );
            println!("|---|---|---|---|---|");
            println!(
                "| {} | {} s | {:.2} / {:.2} / {:.2} | {:.1} / {:.1} | {:.1} |",
                f.nodes,
                f.seconds,
                f.cpu_percent_mean,
                f.cpu_percent_p50,
                f.cpu_percent_max,
                f.rss_mib_mean,
                f.rss_mib_max,
                f.peak_rss_mib_max
            );
            println!(
                "| lone reference | {} s | {:.2} | {:.1} | |",
                f.seconds, f.lone_cpu_percent, f.lone_rss_mib
            );
            println!();
            let cpu_ratio = f.cpu_ratio_member_to_lone.map_or_else(
                || "n/a (lone sentinel under 10 clock ticks; measure longer)".to_owned(),
                |r| format!("{r:.2}x"),
            );
            println!(
                "mesh member / lone sentinel, same run: CPU {cpu_ratio}, RSS {:.2}x (converged after {:.1} s)",
                f.rss_ratio_member_to_lone, f.converged_after_s
            );
            if let Some(path) = &args.out {
                let json = serde_json::to_string_pretty(&f).unwrap_or_default();
                if let Err(e) = std::fs::write(path, json) {
                    eprintln!("{}: {e}", path.display());
                    return ExitCode::FAILURE;
                }
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("devnet-load: {e}");
            ExitCode::FAILURE
        }
    }
}
