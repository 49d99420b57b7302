//! `sentinel`: the Sentinel Mesh daemon and its command line.
#![forbid(unsafe_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use sentinel::config::{Config, LogFormat};
use sentinel::daemon::Daemon;
use sentinel::devnet;
use sentinel_models::Scorer as _;

#[derive(Debug, Parser)]
#[command(
    name = "sentinel",
    version,
    about = "Sentinel Mesh: a security monitoring mesh with no center"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create keys (mode 0600), a documented sentinel.toml and a data dir.
    Init {
        /// Directory to create them in.
        #[arg(long, default_value = ".")]
        dir: PathBuf,
        /// Mesh name for a one-member genesis.toml written alongside (skipped
        /// if genesis.toml exists).
        #[arg(long, default_value = "my-mesh")]
        mesh: String,
        /// QUIC listen address.
        #[arg(long, default_value = "127.0.0.1:7700")]
        listen: SocketAddr,
        /// Admin API address.
        #[arg(long, default_value = "127.0.0.1:7780")]
        api: SocketAddr,
    },
    /// Run the sentinel until SIGTERM or Ctrl-C.
    Run {
        /// Config file.
        #[arg(long, short, default_value = "sentinel.toml")]
        config: PathBuf,
    },
    /// Print this sentinel's status (from its API).
    Status {
        /// Config file.
        #[arg(long, short, default_value = "sentinel.toml")]
        config: PathBuf,
    },
    /// Write what this sentinel stored (scored feature rows, telemetry,
    /// incidents) as a dataset: Parquet and Arrow IPC files in the
    /// simulator's schemas (datasets/README.md). Works while it runs.
    Export {
        /// From when: Unix ms, or a duration back from now (90s, 30m, 12h,
        /// 7d).
        #[arg(long, default_value = "24h")]
        since: String,
        /// Directory to write (created).
        #[arg(long)]
        out: PathBuf,
        /// Config file.
        #[arg(long, short, default_value = "sentinel.toml")]
        config: PathBuf,
    },
    /// Print the mesh members as this sentinel sees them.
    Peers {
        /// Config file.
        #[arg(long, short, default_value = "sentinel.toml")]
        config: PathBuf,
    },
    /// Quarantines this sentinel holds certificates for.
    Quarantine {
        #[command(subcommand)]
        command: QuarantineCommand,
    },
    /// Check a quarantine certificate offline against a roster (anyone can
    /// run this: no keys, no network). Exits non-zero if it does not verify.
    VerifyCert {
        /// The encoded certificate.
        file: PathBuf,
        /// The mesh's genesis roster.
        #[arg(long)]
        roster: PathBuf,
        /// SHA-256 (hex) of the model the mesh pins, which a voted
        /// certificate's accusation must name (default: the shipped
        /// classifier's).
        #[arg(long)]
        model_sha256: Option<String>,
        /// Length of a voted quarantine in the mesh's policy, minutes.
        #[arg(long, default_value_t = 60)]
        quarantine_minutes: u64,
    },
    /// Incidents this sentinel recorded (suspicions, accusations, votes'
    /// outcomes, quarantines, failures), oldest first.
    Incidents {
        /// From when: Unix ms, or a duration back from now (90s, 30m, 12h,
        /// 7d).
        #[arg(long, default_value = "24h")]
        since: String,
        /// Config file.
        #[arg(long, short, default_value = "sentinel.toml")]
        config: PathBuf,
    },
    /// The alert webhooks' outbox: list, retry the dead-letter list, make
    /// a secret.
    Alerts {
        #[command(subcommand)]
        command: AlertsCommand,
    },
    /// Start N sentinels on 127.0.0.1 with a fresh genesis; Ctrl-C stops all.
    Devnet {
        /// How many sentinels.
        #[arg(long, default_value_t = 5)]
        nodes: usize,
        /// Where their directories go (default: a new temporary directory).
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Stop by itself after this many seconds and print what each
        /// sentinel's model scored (default: run until Ctrl-C).
        #[arg(long)]
        seconds: Option<u64>,
        /// Make the last sentinel misbehave (`flooder`: it pings every
        /// neighbour 60 times a second) and watch the others vote it out.
        #[arg(long)]
        attack: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
enum AlertsCommand {
    /// One line per alert and endpoint, newest first: webhook-id, state,
    /// attempts, event, subject, last error.
    List {
        /// Only the dead-letter list (alerts given up on).
        #[arg(long, conflicts_with = "pending")]
        dead: bool,
        /// Only alerts still being delivered.
        #[arg(long)]
        pending: bool,
        /// At most this many.
        #[arg(long, default_value_t = 100)]
        limit: usize,
        /// Config file.
        #[arg(long, short, default_value = "sentinel.toml")]
        config: PathBuf,
    },
    /// Put dead alerts back in the queue (all of them, or one webhook-id)
    /// and enable their endpoints again.
    Retry {
        /// The webhook-id (`msg_...`); default all dead alerts.
        id: Option<String>,
        /// Config file.
        #[arg(long, short, default_value = "sentinel.toml")]
        config: PathBuf,
    },
    /// Write a new secrets file (mode 0600) holding one fresh `whsec_`
    /// secret, for `secrets_file` and for the receiver.
    Secret {
        /// The file to create (never overwritten).
        file: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
enum QuarantineCommand {
    /// One line per certificate held: subject, fault, period, state.
    List {
        /// Config file.
        #[arg(long, short, default_value = "sentinel.toml")]
        config: PathBuf,
    },
    /// The certificates about one node (hex id or member name).
    Show {
        /// The node: its hex id or its name in the roster.
        node: String,
        /// Config file.
        #[arg(long, short, default_value = "sentinel.toml")]
        config: PathBuf,
        /// Write the newest certificate's bytes here, for
        /// `sentinel verify-cert FILE --roster genesis.toml`.
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Init {
                dir,
                mesh,
                listen,
                api,
            } => init(&dir, &mesh, listen, api),
            Command::Run { config } => run(&config).await,
            Command::Status { config } => show(&config, "/v1/status").await,
            Command::Peers { config } => show(&config, "/v1/peers").await,
            Command::Export { since, out, config } => export_cmd(&config, &since, &out),
            Command::Devnet {
                nodes,
                dir,
                seconds,
                attack,
            } => devnet_cmd(nodes, dir, seconds, attack.as_deref()).await,
            Command::VerifyCert {
                file,
                roster,
                model_sha256,
                quarantine_minutes,
            } => verify_cert(&file, &roster, model_sha256.as_deref(), quarantine_minutes),
            Command::Incidents { since, config } => incidents(&config, &since).await,
            Command::Alerts {
                command:
                    AlertsCommand::List {
                        dead,
                        pending,
                        limit,
                        config,
                    },
            } => {
                let state = if dead {
                    Some("dead")
                } else if pending {
                    Some("pending")
                } else {
                    None
                };
                alerts_list(&config, state, limit).await
            }
            Command::Alerts {
                command: AlertsCommand::Retry { id, config },
            } => alerts_retry(&config, id.as_deref()).await,
            Command::Alerts {
                command: AlertsCommand::Secret { file },
            } => sentinel::outbox::write_new_secret(&file).map(|()| {
                println!(
                    "wrote a new webhook secret to {} (mode 0600); give the same line to the receiver",
                    file.display()
                );
            }),
            Command::Quarantine {
                command: QuarantineCommand::List { config },
            } => quarantine_list(&config).await,
            Command::Quarantine {
                command: QuarantineCommand::Show { node, config, out },
            } => quarantine_show(&config, &node, out.as_deref()).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `sentinel verify-cert`: decode strictly, verify against the roster and
/// the default quarantine policy, print what it proves.
fn verify_cert(
    file: &Path,
    roster: &Path,
    model: Option<&str>,
    quarantine_minutes: u64,
) -> Result<(), String> {
    use sentinel_protocol::codec::Codec;
    use sentinel_protocol::evidence::{Certificate, MAX_CERTIFICATE_LEN, QuarantinePolicy};
    use std::io::Read;
    let roster = sentinel_protocol::Roster::load_genesis(roster).map_err(|e| e.to_string())?;
    let mut bytes = Vec::new();
    std::fs::File::open(file)
        .and_then(|f| {
            f.take(MAX_CERTIFICATE_LEN as u64 + 1)
                .read_to_end(&mut bytes)
        })
        .map_err(|e| format!("{}: {e}", file.display()))?;
    if bytes.len() > MAX_CERTIFICATE_LEN {
        return Err(format!(
            "{}: larger than any certificate ({MAX_CERTIFICATE_LEN} bytes)",
            file.display()
        ));
    }
    let cert = Certificate::decode_exact(&bytes)
        .map_err(|e| format!("{}: not a certificate: {e}", file.display()))?;
    let model = match model {
        Some(m) => m.to_owned(),
        None => sentinel_models::shipped::load("mlp-classifier", None)
            .map_err(|e| e.to_string())?
            .manifest()
            .sha256
            .clone(),
    };
    let mut policy = QuarantinePolicy {
        voted_ttl_ms: quarantine_minutes.saturating_mul(60_000),
        ..QuarantinePolicy::default()
    };
    hex::decode_to_slice(&model, &mut policy.model)
        .map_err(|e| format!("--model-sha256 {model:?}: {e}"))?;
    let proven = cert
        .verify(&roster, &policy)
        .map_err(|e| format!("certificate does NOT verify: {e}"))?;
    println!("certificate verifies against mesh {:?}", roster.mesh());
    println!("subject:  {}", proven.subject.to_hex());
    println!("fault:    {}", proven.fault.name());
    println!(
        "signed:   epoch {} sequence {}",
        proven.epoch, proven.sequence
    );
    println!("ttl:      {} ms", cert.ttl_ms);
    println!("size:     {} bytes", bytes.len());
    Ok(())
}

fn export_cmd(config: &Path, since: &str, out: &Path) -> Result<(), String> {
    let cfg = load_config(config)?;
    let since_ms = sentinel::export::parse_since(since, sentinel::now_ms())?;
    let me = sentinel_protocol::keyfile::load(&cfg.node.key_file)
        .map_err(|e| format!("key file: {e}"))?
        .id();
    let roster = sentinel_protocol::Roster::load_genesis(&cfg.node.genesis)
        .map_err(|e| format!("genesis: {e}"))?;
    let done = sentinel::export::export(&cfg.node.data_dir, &roster, me, since_ms, out)?;
    for (table, n) in &done.rows {
        println!("{table}: {n} rows");
    }
    if done.undecodable > 0 {
        println!(
            "skipped {} stored frames that did not verify or decode",
            done.undecodable
        );
    }
    if done.other_schema_rows > 0 {
        println!(
            "skipped {} scored rows of an older feature schema (still in the database; \
             this version writes {})",
            done.other_schema_rows,
            sentinel_protocol::features::SCHEMA
        );
    }
    println!("written to {}", out.display());
    Ok(())
}

fn load_config(path: &Path) -> Result<Config, String> {
    Config::load(path, std::env::vars()).map_err(|e| e.to_string())
}

fn init(dir: &Path, mesh: &str, listen: SocketAddr, api: SocketAddr) -> Result<(), String> {
    let identity = devnet::new_identity()?;
    let config = devnet::init_dir(dir, &identity, listen, api)?;
    let genesis = dir.join("genesis.toml");
    if !genesis.exists() {
        let roster = sentinel_protocol::Roster::equal_weight(mesh, [identity.public().clone()])
            .map_err(|e| e.to_string())?;
        std::fs::write(&genesis, roster.to_genesis_toml()).map_err(|e| e.to_string())?;
    }
    let book = dir.join("addresses.toml");
    if !book.exists() {
        std::fs::write(
            &book,
            "# [[peer]]\n# id = \"<node id hex>\"\n# addr = \"host:port\"\n",
        )
        .map_err(|e| e.to_string())?;
    }
    println!("node id   {}", identity.id().to_hex());
    println!("key       {} (mode 0600)", dir.join("node.key").display());
    println!("config    {}", config.display());
    println!("genesis   {}", genesis.display());
    println!(
        "Share this sentinel's [[members]] entry from genesis.toml with the other operators, \
         merge everyone's entries into one genesis.toml, list their addresses in addresses.toml, \
         then: sentinel run -c {}",
        config.display()
    );
    Ok(())
}

fn init_logs(cfg: &Config) {
    let filter = tracing_subscriber::EnvFilter::try_new(&cfg.log.level)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    let _ = match cfg.log.format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Text => builder.try_init(),
    };
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let Ok(mut term) = signal(SignalKind::terminate()) else {
        let _ = tokio::signal::ctrl_c().await;
        return;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}

async fn run(config: &Path) -> Result<(), String> {
    let cfg = load_config(config)?;
    init_logs(&cfg);
    let api_addr = cfg.api.listen;
    let daemon = Daemon::start(cfg).map_err(|e| e.to_string())?;
    let listener = tokio::net::TcpListener::bind(api_addr)
        .await
        .map_err(|e| format!("admin API on {api_addr}: {e}"))?;
    let router = sentinel::api::router(daemon.shared());
    let (stop_api, api_stopped) = tokio::sync::oneshot::channel::<()>();
    let api = tokio::spawn(async move {
        axum::serve(listener, router)
            .with_graceful_shutdown(async {
                let _ = api_stopped.await;
            })
            .await
    });
    tracing::info!(api = %api_addr, "admin API listening");
    daemon.run(shutdown_signal()).await;
    let _ = stop_api.send(());
    let _ = api.await;
    Ok(())
}

async fn show(config: &Path, path: &str) -> Result<(), String> {
    let value = api_get(&load_config(config)?, path).await?;
    println!(
        "{}",
        serde_json::to_string_pretty(&value).map_err(|e| e.to_string())?
    );
    Ok(())
}

/// GET from this sentinel's admin API with its token.
async fn api_get(cfg: &Config, path: &str) -> Result<serde_json::Value, String> {
    api_call(cfg, hyper::Method::GET, path).await
}

/// A request to this sentinel's admin API with its token.
async fn api_call(
    cfg: &Config,
    method: hyper::Method,
    path: &str,
) -> Result<serde_json::Value, String> {
    let token = sentinel::daemon::read_api_token(&cfg.node.data_dir).map_err(|e| {
        format!(
            "reading the API token in {}: {e}",
            cfg.node.data_dir.display()
        )
    })?;
    let addr = cfg.api.listen;
    let (code, body) = sentinel::http::request(
        addr,
        &addr.to_string(),
        method,
        path,
        Some(&token),
        Duration::from_secs(5),
    )
    .await?;
    if code != 200 {
        return Err(format!("{path}: HTTP {code}: {body}"));
    }
    serde_json::from_str(&body).map_err(|e| format!("{path}: {e}"))
}

/// Member names by hex id, from the genesis roster (empty if unreadable:
/// names are a convenience here).
async fn incidents(config: &Path, since: &str) -> Result<(), String> {
    let cfg = load_config(config)?;
    let since_ms = sentinel::export::parse_since(since, sentinel::now_ms())?;
    let value = api_get(&cfg, &format!("/v1/incidents?since={since_ms}")).await?;
    let names = member_names(&cfg);
    let rows = value["incidents"].as_array().cloned().unwrap_or_default();
    if rows.is_empty() {
        println!("no incidents since {since_ms}");
        return Ok(());
    }
    for r in &rows {
        let subject = r["subject"].as_str().unwrap_or("?");
        let name = names.get(subject).map_or("", String::as_str);
        println!(
            "{:>13}  {:<22} {:<16} {:<10} {}",
            r["at_ms"].as_u64().unwrap_or(0),
            r["kind"].as_str().unwrap_or("?"),
            subject.get(..16).unwrap_or(subject),
            name,
            r["detail"].as_str().unwrap_or(""),
        );
    }
    Ok(())
}

/// `sentinel alerts list`.
async fn alerts_list(config: &Path, state: Option<&str>, limit: usize) -> Result<(), String> {
    let cfg = load_config(config)?;
    let mut path = format!("/v1/alerts?limit={limit}");
    if let Some(s) = state {
        path.push_str(&format!("&state={s}"));
    }
    let value = api_get(&cfg, &path).await?;
    let rows = value["alerts"].as_array().cloned().unwrap_or_default();
    if rows.is_empty() {
        println!(
            "no alerts{}",
            state.map_or(String::new(), |s| format!(" {s}"))
        );
        return Ok(());
    }
    println!(
        "{:<36} {:<10} {:<9} {:>8}  {:<18} {:<16} last error",
        "webhook-id", "endpoint", "state", "attempts", "event", "subject"
    );
    for r in &rows {
        let subject = r["subject"].as_str().unwrap_or("?");
        println!(
            "{:<36} {:<10} {:<9} {:>8}  {:<18} {:<16} {}",
            r["id"].as_str().unwrap_or("?"),
            r["endpoint"].as_str().unwrap_or("?"),
            r["state"].as_str().unwrap_or("?"),
            r["attempts"].as_u64().unwrap_or(0),
            r["event"].as_str().unwrap_or("?"),
            subject.get(..16).unwrap_or(subject),
            r["last_error"].as_str().unwrap_or(""),
        );
    }
    Ok(())
}

/// `sentinel alerts retry`.
async fn alerts_retry(config: &Path, id: Option<&str>) -> Result<(), String> {
    let cfg = load_config(config)?;
    if let Some(id) = id
        && !(id.starts_with("msg_") && id[4..].chars().all(|c| c.is_ascii_hexdigit()))
    {
        return Err(format!("{id:?} is not a webhook-id (msg_ and hex)"));
    }
    let path = id.map_or_else(
        || "/v1/alerts/retry".to_owned(),
        |id| format!("/v1/alerts/retry?id={id}"),
    );
    let value = api_call(&cfg, hyper::Method::POST, &path).await?;
    println!(
        "{} alert(s) queued again",
        value["requeued"].as_u64().unwrap_or(0)
    );
    Ok(())
}

fn member_names(cfg: &Config) -> std::collections::BTreeMap<String, String> {
    sentinel_protocol::Roster::load_genesis(&cfg.node.genesis)
        .map(|r| {
            r.members()
                .map(|m| (m.public.id().to_hex(), m.name.clone()))
                .collect()
        })
        .unwrap_or_default()
}

async fn quarantine_list(config: &Path) -> Result<(), String> {
    let cfg = load_config(config)?;
    let value = api_get(&cfg, "/v1/quarantine").await?;
    let names = member_names(&cfg);
    let rows = value["certificates"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    if rows.is_empty() {
        println!("no quarantine certificates held");
        return Ok(());
    }
    println!(
        "{:<16} {:<12} {:<13} {:<10} {:>9}  source",
        "subject", "name", "fault", "state", "left (s)"
    );
    let now = sentinel::now_ms();
    for r in &rows {
        let subject = r["subject"].as_str().unwrap_or("?");
        let state = match (r["enforced"].as_bool(), r["active"].as_bool()) {
            (Some(true), _) => "enforced",
            (_, Some(true)) => "over cap",
            _ => "ended",
        };
        let left = r["until_ms"].as_u64().unwrap_or(0).saturating_sub(now) / 1000;
        println!(
            "{:<16} {:<12} {:<13} {:<10} {:>9}  {}",
            subject.get(..16).unwrap_or(subject),
            names.get(subject).map_or("", String::as_str),
            r["fault"].as_str().unwrap_or("?"),
            state,
            left,
            r["source"].as_str().unwrap_or("?"),
        );
    }
    Ok(())
}

async fn quarantine_show(config: &Path, node: &str, out: Option<&Path>) -> Result<(), String> {
    let cfg = load_config(config)?;
    let names = member_names(&cfg);
    let id = names
        .iter()
        .find(|(_, name)| name.as_str() == node)
        .map_or_else(|| node.to_owned(), |(id, _)| id.clone());
    let mut value = api_get(&cfg, &format!("/v1/quarantine/{id}")).await?;
    let rows = value["certificates"]
        .as_array_mut()
        .map(std::mem::take)
        .unwrap_or_default();
    let Some(newest) = rows.last() else {
        return Err(format!("no quarantine certificate held for {node}"));
    };
    if let Some(out) = out {
        let bytes = hex::decode(newest["certificate"].as_str().unwrap_or_default())
            .map_err(|e| format!("the API returned a malformed certificate: {e}"))?;
        std::fs::write(out, &bytes).map_err(|e| format!("{}: {e}", out.display()))?;
        eprintln!(
            "wrote the newest certificate ({} bytes) to {}; check it with: sentinel verify-cert {} --roster {}",
            bytes.len(),
            out.display(),
            out.display(),
            cfg.node.genesis.display()
        );
    }
    let listed: Vec<serde_json::Value> = rows
        .into_iter()
        .map(|mut r| {
            if let Some(o) = r.as_object_mut() {
                o.remove("certificate");
            }
            r
        })
        .collect();
    value["certificates"] = listed.into();
    println!(
        "{}",
        serde_json::to_string_pretty(&value).map_err(|e| e.to_string())?
    );
    Ok(())
}

async fn devnet_cmd(
    n: usize,
    dir: Option<PathBuf>,
    seconds: Option<u64>,
    attack: Option<&str>,
) -> Result<(), String> {
    let root = match dir {
        Some(d) => d,
        None => std::env::temp_dir().join(format!("sentinel-devnet-{}", std::process::id())),
    };
    std::fs::create_dir_all(&root).map_err(|e| format!("{}: {e}", root.display()))?;
    let nodes = devnet::prepare(&root, "devnet", n, 0)?;
    if let Some(attack) = attack {
        let last = nodes.last().ok_or("a devnet needs at least one node")?;
        devnet::set_attack(&last.config, attack)?;
        println!(
            "node {} ({}) runs attack {attack:?}",
            nodes.len() - 1,
            last.id
        );
    }
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let mut children = Vec::new();
    for node in &nodes {
        let log =
            std::fs::File::create(node.dir.join("sentinel.log")).map_err(|e| e.to_string())?;
        let child = tokio::process::Command::new(&exe)
            .arg("run")
            .arg("--config")
            .arg(&node.config)
            .stdout(std::process::Stdio::null())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("starting {}: {e}", exe.display()))?;
        children.push(child);
    }
    println!("devnet of {n} sentinels in {}", root.display());
    println!(
        "{:<6} {:<18} {:<22} {:<22} api token file",
        "node", "id", "quic", "api"
    );
    for (i, node) in nodes.iter().enumerate() {
        println!(
            "{:<6} {:<18} {:<22} {:<22} {}",
            i,
            node.id.to_string(),
            node.quic.to_string(),
            format!("http://{}", node.api),
            node.dir.join("data/api-token").display()
        );
    }
    println!("try: sentinel status -c {}", nodes[0].config.display());
    println!(
        "     curl -H \"Authorization: Bearer $(cat {})\" http://{}/v1/peers",
        nodes[0].dir.join("data/api-token").display(),
        nodes[0].api
    );
    println!(
        "logs: {}/node-*/sentinel.log — Ctrl-C stops all",
        root.display()
    );
    // Print a one-line summary every 5 s until Ctrl-C (or the time is up).
    let mut every = tokio::time::interval(Duration::from_secs(5));
    let deadline = async {
        match seconds {
            Some(s) => tokio::time::sleep(Duration::from_secs(s)).await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(deadline);
    loop {
        tokio::select! {
            () = shutdown_signal() => break,
            () = &mut deadline => break,
            _ = every.tick() => {
                let mut line = Vec::new();
                for node in &nodes {
                    line.push(summary(node).await);
                }
                println!("{}", line.join(" | "));
            }
        }
        for (i, c) in children.iter_mut().enumerate() {
            if let Ok(Some(status)) = c.try_wait() {
                return Err(format!(
                    "sentinel {i} exited ({status}); see {}",
                    nodes[i].dir.join("sentinel.log").display()
                ));
            }
        }
    }
    println!("detection since start (model: rows scored, suspicions raised, highest score):");
    for (i, node) in nodes.iter().enumerate() {
        println!("  node-{i} {}", detection_summary(node).await);
    }
    println!("quarantines enforced (by roster name):");
    let names: std::collections::BTreeMap<String, String> = nodes
        .iter()
        .enumerate()
        .map(|(i, n)| (n.id.to_hex(), format!("node-{i}")))
        .collect();
    for (i, node) in nodes.iter().enumerate() {
        let held = match node.api_json("/v1/status").await {
            Ok(s) => s["quarantined"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|v| v.as_str())
                        .map(|h| names.get(h).cloned().unwrap_or_else(|| h.to_owned()))
                        .collect::<Vec<_>>()
                        .join(", ")
                })
                .unwrap_or_default(),
            Err(_) => "no answer".into(),
        };
        println!(
            "  node-{i}: {}",
            if held.is_empty() { "none" } else { &held }
        );
    }
    println!("stopping {} sentinels", children.len());
    for c in &children {
        if let Some(pid) = c.id() {
            // SIGTERM: each leaves the mesh and closes its database.
            let _ = std::process::Command::new("kill")
                .arg("-TERM")
                .arg(pid.to_string())
                .status();
        }
    }
    for c in &mut children {
        match tokio::time::timeout(Duration::from_secs(10), c.wait()).await {
            Ok(_) => {}
            Err(_) => {
                let _ = c.kill().await;
            }
        }
    }
    println!("stopped; state kept in {}", root.display());
    Ok(())
}

async fn detection_summary(node: &devnet::DevNode) -> String {
    let Ok(s) = node.api_json("/v1/status").await else {
        return "no answer".into();
    };
    let d = &s["detection"];
    let model = d["model"].as_str().map_or("off", |m| &m[..m.len().min(8)]);
    format!(
        "{} model {model}: {} rows, {} raised, highest {:.4}{}",
        &node.id.to_string()[..6],
        d["rows_scored"],
        d["suspicions_raised"],
        d["highest_score"].as_f64().unwrap_or(0.0),
        d["locally_suspected"]
            .as_array()
            .filter(|v| !v.is_empty())
            .map_or(String::new(), |v| format!(", suspecting {}", v.len()))
    )
}

async fn summary(node: &devnet::DevNode) -> String {
    match node.api_json("/v1/status").await.ok() {
        Some(s) => format!(
            "{} active {} heard {} signed {} raised {} quarantined {}",
            &node.id.to_string()[..6],
            s["active"].as_array().map_or(0, Vec::len),
            s["origins_heard"],
            s["reports_signed"],
            s["detection"]["suspicions_raised"],
            s["quarantined"].as_array().map_or(0, Vec::len),
        ),
        None => format!("{} starting", &node.id.to_string()[..6]),
    }
}
