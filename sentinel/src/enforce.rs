//! Enforcement outside the mesh: the blocklist file and the exec hook.
//!
//! Inside the mesh a verified certificate is enforced by the protocol node
//! and the driver (views, messages, links). These two adapters tell the
//! rest of the host: node software reads the blocklist file, and the hook
//! runs whatever the operator wants (a firewall rule, a peer ban).
//!
//! Both describe the full state or a change that is safe to repeat: the
//! file is rewritten whole and atomically, and at every start the hook is
//! called again for each quarantine in force, so hooks must be idempotent.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Serialize;
use tokio::sync::mpsc;
use tracing::{info, warn};

/// Format name in the blocklist file.
pub const BLOCKLIST_FORMAT: &str = "sentinel-blocklist";
/// Format version in the blocklist file.
pub const BLOCKLIST_VERSION: u32 = 1;
/// Hook calls waiting to run; more are dropped with a warning.
const HOOK_QUEUE: usize = 1024;
/// Bytes of a failing hook's output kept for the log.
const HOOK_OUTPUT_LOGGED: usize = 512;

/// One enforced quarantine, as the blocklist file and hook see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Blocked {
    /// The subject's node id (hex).
    pub id: String,
    /// Its name on the roster.
    pub name: String,
    /// Where its sentinel listens (address book), if known.
    pub address: Option<String>,
    /// The fault proven (e.g. `equivocation`).
    pub fault: String,
    /// Since when this sentinel enforces it, Unix ms.
    pub since_ms: u64,
    /// When it ends, Unix ms.
    pub until_ms: u64,
}

#[derive(Serialize)]
struct BlocklistFile<'a> {
    format: &'static str,
    version: u32,
    mesh: &'a str,
    updated_ms: u64,
    quarantined: &'a [Blocked],
}

/// Rewrites `path` with `entries`: written to a temporary file in the same
/// directory, synced, renamed over `path`, directory synced. A reader sees
/// the old or the new list, never a partial one.
///
/// # Errors
/// Filesystem errors, naming the file.
pub fn write_blocklist(
    path: &Path,
    mesh: &str,
    now_ms: u64,
    entries: &[Blocked],
) -> Result<(), String> {
    let err = |e: std::io::Error| format!("{}: {e}", path.display());
    let file = BlocklistFile {
        format: BLOCKLIST_FORMAT,
        version: BLOCKLIST_VERSION,
        mesh,
        updated_ms: now_ms,
        quarantined: entries,
    };
    let mut text = serde_json::to_vec_pretty(&file).map_err(|e| e.to_string())?;
    text.push(b'\n');
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .map_or_else(|| "blocklist".into(), |n| n.to_string_lossy().into_owned());
    let tmp = dir.join(format!(".{name}.tmp"));
    {
        let mut f = std::fs::File::create(&tmp).map_err(err)?;
        f.write_all(&text).map_err(err)?;
        f.sync_all().map_err(err)?;
    }
    std::fs::rename(&tmp, path).map_err(err)?;
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(err)?;
    Ok(())
}

/// What a hook call announces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// A quarantine is enforced.
    Quarantine,
    /// A quarantine ended.
    Lift,
}

impl Action {
    /// The first argument.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Quarantine => "quarantine",
            Self::Lift => "lift",
        }
    }
}

/// Runs the exec hook, one call at a time in the order asked (a lift never
/// overtakes its quarantine), off the driver task.
#[derive(Debug, Clone)]
pub struct Hook {
    tx: mpsc::Sender<(Action, Blocked)>,
}

impl Hook {
    /// Starts the worker for `program`, killing calls after `timeout`.
    #[must_use]
    pub fn start(program: PathBuf, timeout: Duration) -> Self {
        let (tx, mut rx) = mpsc::channel::<(Action, Blocked)>(HOOK_QUEUE);
        tokio::spawn(async move {
            while let Some((action, subject)) = rx.recv().await {
                match run_hook(&program, action, &subject, timeout).await {
                    Ok(()) => {
                        info!(hook = %program.display(), action = action.as_str(), subject = %subject.id, "enforcement hook ran");
                    }
                    Err(error) => {
                        warn!(hook = %program.display(), action = action.as_str(), subject = %subject.id, %error, "enforcement hook failed");
                    }
                }
            }
        });
        Self { tx }
    }

    /// Queues a call.
    pub fn call(&self, action: Action, subject: Blocked) {
        if let Err(e) = self.tx.try_send((action, subject)) {
            warn!(error = %e, "enforcement hook queue full: call dropped");
        }
    }
}

/// Runs `program action id address` once, with the same values in the
/// environment.
///
/// # Errors
/// The program could not start, exited non-zero (with the start of its
/// output), or ran past `timeout` (it is killed).
pub async fn run_hook(
    program: &Path,
    action: Action,
    subject: &Blocked,
    timeout: Duration,
) -> Result<(), String> {
    let address = subject.address.clone().unwrap_or_default();
    let child = tokio::process::Command::new(program)
        .arg(action.as_str())
        .arg(&subject.id)
        .arg(&address)
        .env("QUARANTINE_ACTION", action.as_str())
        .env("QUARANTINE_SUBJECT", &subject.id)
        .env("QUARANTINE_SUBJECT_NAME", &subject.name)
        .env("QUARANTINE_ADDRESS", &address)
        .env("QUARANTINE_FAULT", &subject.fault)
        .env("QUARANTINE_UNTIL_MS", subject.until_ms.to_string())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", program.display()))?;
    let out = tokio::time::timeout(timeout, child.wait_with_output())
        .await
        .map_err(|_| format!("killed after {} ms", timeout.as_millis()))?
        .map_err(|e| e.to_string())?;
    if out.status.success() {
        return Ok(());
    }
    let mut text = String::from_utf8_lossy(&out.stderr).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stdout));
    let cut = text
        .char_indices()
        .nth(HOOK_OUTPUT_LOGGED)
        .map_or(text.len(), |(i, _)| i);
    Err(format!("{}: {}", out.status, text[..cut].trim()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn blocked() -> Blocked {
        Blocked {
            id: "ab".repeat(32),
            name: "node-3".into(),
            address: Some("127.0.0.1:7003".into()),
            fault: "equivocation".into(),
            since_ms: 5,
            until_ms: 9,
        }
    }

    #[test]
    fn the_blocklist_is_replaced_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("blocklist.json");
        write_blocklist(&path, "m", 1, &[blocked()]).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        assert_eq!(v["format"], BLOCKLIST_FORMAT);
        assert_eq!(v["quarantined"][0]["id"], blocked().id);
        assert_eq!(v["quarantined"][0]["address"], "127.0.0.1:7003");
        write_blocklist(&path, "m", 2, &[]).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        assert_eq!(v["quarantined"].as_array().unwrap().len(), 0);
        assert_eq!(v["updated_ms"], 2);
        // No temporary file is left behind.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
        assert!(write_blocklist(&dir.path().join("no/such/dir.json"), "m", 1, &[]).is_err());
    }

    #[tokio::test]
    async fn the_hook_gets_arguments_and_environment_and_failures_are_reported() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("calls");
        let script = dir.path().join("hook.sh");
        std::fs::write(
            &script,
            format!(
                "#!/bin/sh\necho \"$1 $2 $3 $QUARANTINE_FAULT $QUARANTINE_SUBJECT_NAME\" >> {}\n[ \"$1\" = lift ] && {{ echo nope >&2; exit 3; }}\nexit 0\n",
                out.display()
            ),
        )
        .unwrap();
        std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
        let b = blocked();
        let t = Duration::from_secs(5);
        run_hook(&script, Action::Quarantine, &b, t).await.unwrap();
        let e = run_hook(&script, Action::Lift, &b, t).await.unwrap_err();
        assert!(e.contains("nope"), "{e}");
        let calls = std::fs::read_to_string(&out).unwrap();
        assert_eq!(
            calls,
            format!(
                "quarantine {id} 127.0.0.1:7003 equivocation node-3\nlift {id} 127.0.0.1:7003 equivocation node-3\n",
                id = b.id
            )
        );
        let slow = dir.path().join("slow.sh");
        std::fs::write(&slow, "#!/bin/sh\nsleep 30\n").unwrap();
        std::fs::set_permissions(&slow, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
        let e = run_hook(&slow, Action::Quarantine, &b, Duration::from_millis(200))
            .await
            .unwrap_err();
        assert!(e.contains("killed"), "{e}");
        let e = run_hook(&dir.path().join("missing"), Action::Quarantine, &b, t)
            .await
            .unwrap_err();
        assert!(e.contains("cannot start"), "{e}");
    }
}
