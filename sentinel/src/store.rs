//! Durable state: one SQLite database (WAL, `synchronous=FULL`) in the data
//! directory, which a lock file keeps to one process.
//!
//! What it holds: boot epochs and reserved sequence numbers (so no crash,
//! restore or snapshot makes the sentinel sign two contents under one
//! (epoch, sequence)), peers seen, telemetry received (the signed frame and
//! features derived from it), incidents, and the quarantine certificates
//! held. Later issues add their tables as new migrations; the alert outbox is
//! [`crate::outbox`].

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use rusqlite::{Connection, OptionalExtension, params};

/// Schema migrations; `PRAGMA user_version` is how many have run.
const MIGRATIONS: &[&str] = &[
    // 1: the first schema.
    "CREATE TABLE meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL) STRICT;
     CREATE TABLE peers (
         id TEXT PRIMARY KEY,
         first_seen_ms INTEGER NOT NULL,
         last_seen_ms INTEGER NOT NULL,
         last_addr TEXT,
         connections INTEGER NOT NULL DEFAULT 0
     ) STRICT;
     CREATE TABLE telemetry (
         origin TEXT NOT NULL,
         epoch INTEGER NOT NULL,
         sequence INTEGER NOT NULL,
         received_ms INTEGER NOT NULL,
         start_ms INTEGER NOT NULL,
         samples INTEGER NOT NULL,
         neighbours INTEGER NOT NULL,
         cpu_permille_mean INTEGER NOT NULL,
         mem_permille_mean INTEGER NOT NULL,
         net_in_bytes INTEGER NOT NULL,
         net_out_bytes INTEGER NOT NULL,
         invalid_messages INTEGER NOT NULL,
         probes_failed INTEGER NOT NULL,
         frame BLOB NOT NULL,
         PRIMARY KEY (origin, epoch, sequence)
     ) STRICT;
     CREATE INDEX telemetry_received ON telemetry (received_ms);
     CREATE TABLE incidents (
         id INTEGER PRIMARY KEY,
         at_ms INTEGER NOT NULL,
         kind TEXT NOT NULL,
         subject TEXT NOT NULL,
         detail TEXT NOT NULL
     ) STRICT;
     CREATE INDEX incidents_at ON incidents (at_ms);",
    // 2: the guarded node's metrics in telemetry rows.
    "ALTER TABLE telemetry ADD COLUMN node_peers_mean INTEGER NOT NULL DEFAULT 0;
     ALTER TABLE telemetry ADD COLUMN node_errors INTEGER NOT NULL DEFAULT 0;",
    // 3: quarantine certificates held, one row per proven fault.
    "CREATE TABLE certificates (
         subject TEXT NOT NULL,
         epoch INTEGER NOT NULL,
         sequence INTEGER NOT NULL,
         fault TEXT NOT NULL,
         since_ms INTEGER NOT NULL,
         until_ms INTEGER NOT NULL,
         enforced INTEGER NOT NULL,
         source TEXT NOT NULL,
         certificate BLOB NOT NULL,
         PRIMARY KEY (subject, epoch, sequence)
     ) STRICT;
     CREATE INDEX certificates_until ON certificates (until_ms);",
    // 4: scored feature rows (schema `sentinel-features/1` then), for
    // `/v1/scores` and `sentinel export`.
    "CREATE TABLE scores (
         window_ms INTEGER NOT NULL,
         subject TEXT NOT NULL,
         model TEXT NOT NULL,
         score INTEGER NOT NULL,
         suspected INTEGER NOT NULL,
         features BLOB NOT NULL,
         PRIMARY KEY (subject, window_ms)
     ) STRICT;
     CREATE INDEX scores_window ON scores (window_ms);",
    // 5: the feature schema version of each scored row; rows stored before
    // are version 1 and stay, but only rows of the running schema are read
    // back as features.
    "ALTER TABLE scores ADD COLUMN feature_schema INTEGER NOT NULL DEFAULT 1;",
    // 6: voted quarantine: this sentinel's accusations and the votes it
    // cast, each with its signed frame.
    "CREATE TABLE accusations (
         hash TEXT PRIMARY KEY,
         at_ms INTEGER NOT NULL,
         subject TEXT NOT NULL,
         score INTEGER NOT NULL,
         committee INTEGER NOT NULL,
         state TEXT NOT NULL,
         yes_seats INTEGER NOT NULL DEFAULT 0,
         no_seats INTEGER NOT NULL DEFAULT 0,
         total_seats INTEGER NOT NULL DEFAULT 0,
         frame BLOB NOT NULL
     ) STRICT;
     CREATE INDEX accusations_at ON accusations (at_ms);
     CREATE TABLE votes (
         accusation TEXT PRIMARY KEY,
         at_ms INTEGER NOT NULL,
         accuser TEXT NOT NULL,
         subject TEXT NOT NULL,
         verdict TEXT NOT NULL,
         frame BLOB NOT NULL
     ) STRICT;
     CREATE INDEX votes_at ON votes (at_ms);",
    // 7: the alert outbox, one row per (webhook-id, endpoint), and the
    // endpoints a 410 answer disabled.
    "CREATE TABLE alerts (
         id TEXT NOT NULL,
         endpoint TEXT NOT NULL,
         event TEXT NOT NULL,
         severity TEXT NOT NULL,
         subject TEXT NOT NULL,
         incident TEXT NOT NULL,
         created_ms INTEGER NOT NULL,
         body BLOB NOT NULL,
         state TEXT NOT NULL CHECK (state IN ('pending', 'delivered', 'dead')),
         attempts INTEGER NOT NULL DEFAULT 0,
         next_ms INTEGER NOT NULL,
         last_status INTEGER,
         last_error TEXT,
         done_ms INTEGER,
         PRIMARY KEY (id, endpoint)
     ) STRICT;
     CREATE INDEX alerts_due ON alerts (state, next_ms);
     CREATE TABLE alert_endpoints (
         name TEXT PRIMARY KEY,
         disabled_ms INTEGER NOT NULL,
         reason TEXT NOT NULL
     ) STRICT;",
];

/// One accusation this sentinel made.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct AccusationRow {
    /// Hex SHA-256 of its signed content.
    pub hash: String,
    /// When it was made, Unix ms.
    pub at_ms: u64,
    /// Hex id of the accused.
    pub subject: String,
    /// The accused score, basis points.
    pub score: u16,
    /// Members of the committee.
    pub committee: u64,
    /// `open`, `certified` or `refused` (refused or timed out).
    pub state: String,
    /// Seats that voted yes, no, and in all (when closed).
    pub seats: (u64, u64, u64),
    /// The signed accusation.
    #[serde(skip)]
    pub frame: Vec<u8>,
}

/// One vote this sentinel cast.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct VoteRow {
    /// Hex SHA-256 of the accusation voted on.
    pub accusation: String,
    /// When, Unix ms.
    pub at_ms: u64,
    /// Hex id of the accuser.
    pub accuser: String,
    /// Hex id of the accused.
    pub subject: String,
    /// The verdict's name (`yes`, `own-view-below`, ...).
    pub verdict: String,
    /// The signed vote.
    #[serde(skip)]
    pub frame: Vec<u8>,
}

/// One scored (subject, window) as stored.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ScoreRow {
    /// End of the window, this sentinel's clock, Unix ms.
    pub window_ms: u64,
    /// Hex id of the neighbour scored.
    pub subject: String,
    /// SHA-256 of the model that scored.
    pub model: String,
    /// Quantised score, basis points (0 to 10,000).
    pub score: u16,
    /// Suspected after this window.
    pub suspected: bool,
    /// The feature row (`features::SCHEMA` order).
    #[serde(skip)]
    pub features: sentinel_protocol::features::Row,
}

/// One stored incident.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct IncidentRow {
    /// When, Unix ms.
    pub at_ms: u64,
    /// What.
    pub kind: String,
    /// Hex id concerned.
    pub subject: String,
    /// Details.
    pub detail: String,
}

/// How many sequences one reservation covers.
pub const SEQUENCE_BLOCK: u64 = 1024;

/// Why the store could not be opened or written.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Another process holds the data directory.
    #[error("data directory {dir} is in use by another sentinel process{holder}")]
    Locked {
        /// The directory.
        dir: PathBuf,
        /// ", pid N" when the lock file says.
        holder: String,
    },
    /// A filesystem error.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A database error.
    #[error("database: {0}")]
    Db(#[from] rusqlite::Error),
    /// The database was written by a newer sentinel.
    #[error("database schema version {found} is newer than this sentinel knows ({known})")]
    TooNew {
        /// The file's version.
        found: u32,
        /// Ours.
        known: u32,
    },
    /// Stored data that cannot be what this sentinel wrote.
    #[error("database: {0}")]
    Corrupt(String),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.to_owned(),
        source,
    }
}

/// The data directory, locked for this process while the value lives.
#[derive(Debug)]
pub struct DataDir {
    path: PathBuf,
    _lock: File,
}

impl DataDir {
    /// Creates the directory if needed (mode 0700) and takes its lock.
    ///
    /// # Errors
    /// [`StoreError::Locked`] when another process has it.
    pub fn lock(path: &Path) -> Result<Self, StoreError> {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(path)
            .map_err(io(path))?;
        let lock_path = path.join("LOCK");
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&lock_path)
            .map_err(io(&lock_path))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                let holder = std::fs::read_to_string(&lock_path)
                    .ok()
                    .and_then(|s| s.trim().parse::<u32>().ok())
                    .map(|pid| format!(", pid {pid}"))
                    .unwrap_or_default();
                return Err(StoreError::Locked {
                    dir: path.to_owned(),
                    holder,
                });
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(io(&lock_path)(e)),
        }
        file.set_len(0).map_err(io(&lock_path))?;
        writeln!(file, "{}", std::process::id()).map_err(io(&lock_path))?;
        Ok(Self {
            path: path.to_owned(),
            _lock: file,
        })
    }

    /// The directory.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Telemetry features derived from one verified report.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct TelemetryRow {
    /// Signer (hex).
    pub origin: String,
    /// Signer's boot epoch.
    pub epoch: u64,
    /// Sequence within the epoch.
    pub sequence: u64,
    /// When we stored it, Unix ms.
    pub received_ms: u64,
    /// First sample's start, Unix ms (signer's clock).
    pub start_ms: u64,
    /// Samples in the report.
    pub samples: u64,
    /// Neighbours observed.
    pub neighbours: u64,
    /// Mean host CPU use, per mille.
    pub cpu_permille_mean: u64,
    /// Mean host memory use, per mille.
    pub mem_permille_mean: u64,
    /// Host bytes received over the report.
    pub net_in_bytes: u64,
    /// Host bytes sent over the report.
    pub net_out_bytes: u64,
    /// Invalid and malformed messages the signer saw from its neighbours.
    pub invalid_messages: u64,
    /// Probes to neighbours that failed.
    pub probes_failed: u64,
    /// Mean peer count of the signer's guarded node.
    pub node_peers_mean: u64,
    /// Errors of the signer's guarded node over the report.
    pub node_errors: u64,
}

/// A peer as stored.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PeerRow {
    /// Node id (hex).
    pub id: String,
    /// First connection, Unix ms.
    pub first_seen_ms: u64,
    /// Latest connection, Unix ms.
    pub last_seen_ms: u64,
    /// Address of the latest connection.
    pub last_addr: Option<String>,
    /// Connections authenticated so far.
    pub connections: u64,
}

/// A quarantine certificate as stored.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct CertificateRow {
    /// The quarantined node (hex id).
    pub subject: String,
    /// The (epoch, sequence) of the subject's signed messages it proves a
    /// fault at.
    pub epoch: u64,
    /// See `epoch`.
    pub sequence: u64,
    /// The fault's name (e.g. `equivocation`).
    pub fault: String,
    /// When this sentinel first held it, Unix ms.
    pub since_ms: u64,
    /// When the quarantine ends, Unix ms.
    pub until_ms: u64,
    /// Enforced here (false: held over the quarantine cap).
    pub enforced: bool,
    /// `detected` here, or the hex id of the peer that sent it.
    pub source: String,
    /// The encoded certificate (`sentinel verify-cert` reads it).
    #[serde(skip)]
    pub certificate: Vec<u8>,
}

/// The database.
#[derive(Debug)]
pub struct Store {
    pub(crate) db: Connection,
    path: PathBuf,
}

pub(crate) fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

pub(crate) fn to_u64(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

impl Store {
    /// Opens (creating and migrating) `sentinel.db` in a locked data dir.
    ///
    /// # Errors
    /// Database errors, or a schema newer than this build.
    pub fn open(dir: &DataDir) -> Result<Self, StoreError> {
        let path = dir.path().join("sentinel.db");
        let db = Connection::open(&path)?;
        // auto_vacuum must be chosen before the first table exists.
        db.pragma_update(None, "auto_vacuum", "INCREMENTAL")?;
        db.pragma_update(None, "journal_mode", "WAL")?;
        db.pragma_update(None, "synchronous", "FULL")?;
        db.pragma_update(None, "foreign_keys", "ON")?;
        db.busy_timeout(std::time::Duration::from_secs(5))?;
        let mut store = Self { db, path };
        store.migrate()?;
        Ok(store)
    }

    /// Opens the database of a data dir read-only, without taking the data
    /// dir's lock, so `sentinel export` works beside a running daemon (WAL
    /// lets readers in while it writes). Refuses a schema it does not know.
    ///
    /// # Errors
    /// Missing file, database errors, or a schema newer than this build.
    pub fn open_read_only(data_dir: &Path) -> Result<Self, StoreError> {
        let path = data_dir.join("sentinel.db");
        if !path.exists() {
            return Err(StoreError::Corrupt(format!(
                "{} does not exist (is this a sentinel data dir?)",
                path.display()
            )));
        }
        let db = Connection::open_with_flags(&path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)?;
        db.busy_timeout(std::time::Duration::from_secs(5))?;
        let store = Self { db, path };
        let found = store.schema_version()?;
        let known = u32::try_from(MIGRATIONS.len()).unwrap_or(u32::MAX);
        if found > known {
            return Err(StoreError::TooNew { found, known });
        }
        Ok(store)
    }

    fn migrate(&mut self) -> Result<(), StoreError> {
        let version: u32 = self
            .db
            .pragma_query_value(None, "user_version", |r| r.get(0))?;
        let known = u32::try_from(MIGRATIONS.len()).unwrap_or(u32::MAX);
        if version > known {
            return Err(StoreError::TooNew {
                found: version,
                known,
            });
        }
        for (i, sql) in MIGRATIONS.iter().enumerate().skip(version as usize) {
            let tx = self.db.transaction()?;
            tx.execute_batch(sql)?;
            tx.pragma_update(
                None,
                "user_version",
                i64::try_from(i + 1).unwrap_or(i64::MAX),
            )?;
            tx.commit()?;
        }
        Ok(())
    }

    /// The schema version.
    ///
    /// # Errors
    /// Database errors.
    pub fn schema_version(&self) -> Result<u32, StoreError> {
        Ok(self
            .db
            .pragma_query_value(None, "user_version", |r| r.get(0))?)
    }

    fn meta(&self, key: &str) -> Result<Option<u64>, StoreError> {
        Ok(self
            .db
            .query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| {
                r.get::<_, i64>(0)
            })
            .optional()?
            .map(to_u64))
    }

    /// Starts a new boot epoch and returns it: greater than every epoch this
    /// database has recorded *and* than the wall clock in ms, committed
    /// before it is used. The clock term covers a data directory restored
    /// from an older copy or a VM snapshot: the restored counter is behind,
    /// but time has moved on. (Both a restore *and* a clock set back past the
    /// previous boot would be needed to reuse an epoch.)
    ///
    /// # Errors
    /// Database errors; nothing may be signed then.
    pub fn begin_epoch(&mut self, now_ms: u64) -> Result<u64, StoreError> {
        let last = self.meta("epoch")?.unwrap_or(0);
        let epoch = last.saturating_add(1).max(now_ms);
        let tx = self.db.transaction()?;
        tx.execute(
            "INSERT INTO meta (key, value) VALUES ('epoch', ?1)
             ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            [to_i64(epoch)],
        )?;
        tx.execute(
            "INSERT INTO meta (key, value) VALUES ('sequences_reserved', 0)
             ON CONFLICT (key) DO UPDATE SET value = 0",
            [],
        )?;
        tx.commit()?;
        Ok(epoch)
    }

    /// Durably reserves sequences of the current epoch through `through`;
    /// the node may sign them once this returns.
    ///
    /// # Errors
    /// Database errors; the node must not sign past the old limit then.
    pub fn reserve_sequences(&mut self, through: u64) -> Result<(), StoreError> {
        self.db.execute(
            "INSERT INTO meta (key, value) VALUES ('sequences_reserved', ?1)
             ON CONFLICT (key) DO UPDATE SET value = max(value, excluded.value)",
            [to_i64(through)],
        )?;
        Ok(())
    }

    /// (epoch, sequences reserved) as recorded.
    ///
    /// # Errors
    /// Database errors.
    pub fn epoch_state(&self) -> Result<(u64, u64), StoreError> {
        Ok((
            self.meta("epoch")?.unwrap_or(0),
            self.meta("sequences_reserved")?.unwrap_or(0),
        ))
    }

    /// Records an authenticated connection with `id`.
    ///
    /// # Errors
    /// Database errors.
    pub fn peer_connected(&mut self, id: &str, addr: &str, now_ms: u64) -> Result<(), StoreError> {
        self.db.execute(
            "INSERT INTO peers (id, first_seen_ms, last_seen_ms, last_addr, connections)
             VALUES (?1, ?2, ?2, ?3, 1)
             ON CONFLICT (id) DO UPDATE SET last_seen_ms = excluded.last_seen_ms,
                 last_addr = excluded.last_addr, connections = connections + 1",
            params![id, to_i64(now_ms), addr],
        )?;
        Ok(())
    }

    /// Every peer seen, by id.
    ///
    /// # Errors
    /// Database errors.
    pub fn peers(&self) -> Result<Vec<PeerRow>, StoreError> {
        let mut stmt = self.db.prepare(
            "SELECT id, first_seen_ms, last_seen_ms, last_addr, connections FROM peers ORDER BY id",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok(PeerRow {
                id: r.get(0)?,
                first_seen_ms: to_u64(r.get(1)?),
                last_seen_ms: to_u64(r.get(2)?),
                last_addr: r.get(3)?,
                connections: to_u64(r.get(4)?),
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Stores telemetry rows (with their frames) in one transaction.
    ///
    /// # Errors
    /// Database errors; none of the rows is stored then.
    pub fn insert_telemetry(&mut self, rows: &[(TelemetryRow, Vec<u8>)]) -> Result<(), StoreError> {
        let tx = self.db.transaction()?;
        {
            let mut stmt = tx.prepare_cached(
                "INSERT OR IGNORE INTO telemetry (origin, epoch, sequence, received_ms, start_ms,
                     samples, neighbours, cpu_permille_mean, mem_permille_mean, net_in_bytes,
                     net_out_bytes, invalid_messages, probes_failed, node_peers_mean,
                     node_errors, frame)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16)",
            )?;
            for (t, frame) in rows {
                stmt.execute(params![
                    t.origin,
                    to_i64(t.epoch),
                    to_i64(t.sequence),
                    to_i64(t.received_ms),
                    to_i64(t.start_ms),
                    to_i64(t.samples),
                    to_i64(t.neighbours),
                    to_i64(t.cpu_permille_mean),
                    to_i64(t.mem_permille_mean),
                    to_i64(t.net_in_bytes),
                    to_i64(t.net_out_bytes),
                    to_i64(t.invalid_messages),
                    to_i64(t.probes_failed),
                    to_i64(t.node_peers_mean),
                    to_i64(t.node_errors),
                    frame,
                ])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// Stores scored rows in one transaction (a repeated window replaces
    /// the row).
    ///
    /// # Errors
    /// Database errors; none of the rows is stored then.
    pub fn insert_scores(&mut self, rows: &[ScoreRow]) -> Result<(), StoreError> {
        let tx = self.db.transaction()?;
        {
            let mut stmt = tx.prepare_cached(
                "INSERT OR REPLACE INTO scores
                     (window_ms, subject, model, score, suspected, features, feature_schema)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )?;
            for r in rows {
                let blob: Vec<u8> = r.features.0.iter().flat_map(|v| v.to_le_bytes()).collect();
                stmt.execute(params![
                    to_i64(r.window_ms),
                    r.subject,
                    r.model,
                    i64::from(r.score),
                    i64::from(r.suspected),
                    blob,
                    i64::from(sentinel_protocol::features::SCHEMA_VERSION),
                ])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// Scored rows of the running feature schema with `window_ms >=
    /// since_ms`, oldest first, at most `limit`.
    ///
    /// # Errors
    /// Database errors, or a stored feature blob of the wrong length
    /// (a corrupt row).
    pub fn scores_since(&self, since_ms: u64, limit: usize) -> Result<Vec<ScoreRow>, StoreError> {
        let mut stmt = self.db.prepare_cached(
            "SELECT window_ms, subject, model, score, suspected, features FROM scores
             WHERE window_ms >= ?1 AND feature_schema = ?3
             ORDER BY window_ms, subject LIMIT ?2",
        )?;
        let version = i64::from(sentinel_protocol::features::SCHEMA_VERSION);
        let rows = stmt.query_map(
            params![to_i64(since_ms), to_i64(limit as u64), version],
            |r| {
                let blob: Vec<u8> = r.get(5)?;
                let mut row = [0f32; sentinel_protocol::features::COUNT];
                let ok = blob.len() == row.len() * 4;
                if ok {
                    for (v, c) in row.iter_mut().zip(blob.chunks_exact(4)) {
                        *v = f32::from_le_bytes([c[0], c[1], c[2], c[3]]);
                    }
                }
                Ok((
                    ok,
                    ScoreRow {
                        window_ms: to_u64(r.get(0)?),
                        subject: r.get(1)?,
                        model: r.get(2)?,
                        score: u16::try_from(r.get::<_, i64>(3)?).unwrap_or(u16::MAX),
                        suspected: r.get::<_, i64>(4)? != 0,
                        features: sentinel_protocol::features::Row(row),
                    },
                ))
            },
        )?;
        let mut out = Vec::new();
        for r in rows {
            let (ok, row) = r?;
            if !ok {
                return Err(StoreError::Corrupt(format!(
                    "scores row ({}, {}) has a feature blob of the wrong length",
                    row.subject, row.window_ms
                )));
            }
            out.push(row);
        }
        Ok(out)
    }

    /// How many scored rows with `window_ms >= since_ms` are of another
    /// feature schema than the running one (stored by an older version;
    /// [`Store::scores_since`] skips them).
    ///
    /// # Errors
    /// Database errors.
    pub fn scores_of_other_schemas_since(&self, since_ms: u64) -> Result<u64, StoreError> {
        let n: i64 = self.db.query_row(
            "SELECT COUNT(*) FROM scores WHERE window_ms >= ?1 AND feature_schema != ?2",
            params![
                to_i64(since_ms),
                i64::from(sentinel_protocol::features::SCHEMA_VERSION)
            ],
            |r| r.get(0),
        )?;
        Ok(to_u64(n))
    }

    /// Stored report frames received at or after `since_ms`, oldest first:
    /// (origin hex, frame).
    ///
    /// # Errors
    /// Database errors.
    pub fn frames_since(&self, since_ms: u64) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        let mut stmt = self.db.prepare_cached(
            "SELECT origin, frame FROM telemetry WHERE received_ms >= ?1
             ORDER BY received_ms, origin, epoch, sequence",
        )?;
        let rows = stmt.query_map([to_i64(since_ms)], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Incidents at or after `since_ms`, oldest first.
    ///
    /// # Errors
    /// Database errors.
    pub fn incidents_since(&self, since_ms: u64) -> Result<Vec<IncidentRow>, StoreError> {
        let mut stmt = self.db.prepare_cached(
            "SELECT at_ms, kind, subject, detail FROM incidents WHERE at_ms >= ?1 ORDER BY at_ms, id",
        )?;
        let rows = stmt.query_map([to_i64(since_ms)], |r| {
            Ok(IncidentRow {
                at_ms: to_u64(r.get(0)?),
                kind: r.get(1)?,
                subject: r.get(2)?,
                detail: r.get(3)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The newest `limit` telemetry rows from `origin`, newest first.
    ///
    /// # Errors
    /// Database errors.
    pub fn telemetry(&self, origin: &str, limit: usize) -> Result<Vec<TelemetryRow>, StoreError> {
        let mut stmt = self.db.prepare_cached(
            "SELECT origin, epoch, sequence, received_ms, start_ms, samples, neighbours,
                    cpu_permille_mean, mem_permille_mean, net_in_bytes, net_out_bytes,
                    invalid_messages, probes_failed, node_peers_mean, node_errors
             FROM telemetry WHERE origin = ?1 ORDER BY epoch DESC, sequence DESC LIMIT ?2",
        )?;
        let rows = stmt.query_map(params![origin, to_i64(limit as u64)], |r| {
            Ok(TelemetryRow {
                origin: r.get(0)?,
                epoch: to_u64(r.get(1)?),
                sequence: to_u64(r.get(2)?),
                received_ms: to_u64(r.get(3)?),
                start_ms: to_u64(r.get(4)?),
                samples: to_u64(r.get(5)?),
                neighbours: to_u64(r.get(6)?),
                cpu_permille_mean: to_u64(r.get(7)?),
                mem_permille_mean: to_u64(r.get(8)?),
                net_in_bytes: to_u64(r.get(9)?),
                net_out_bytes: to_u64(r.get(10)?),
                invalid_messages: to_u64(r.get(11)?),
                probes_failed: to_u64(r.get(12)?),
                node_peers_mean: to_u64(r.get(13)?),
                node_errors: to_u64(r.get(14)?),
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Telemetry rows held.
    ///
    /// # Errors
    /// Database errors.
    pub fn telemetry_count(&self) -> Result<u64, StoreError> {
        Ok(to_u64(self.db.query_row(
            "SELECT count(*) FROM telemetry",
            [],
            |r| r.get(0),
        )?))
    }

    /// Records an incident.
    ///
    /// # Errors
    /// Database errors.
    pub fn incident(
        &mut self,
        at_ms: u64,
        kind: &str,
        subject: &str,
        detail: &str,
    ) -> Result<(), StoreError> {
        self.db.execute(
            "INSERT INTO incidents (at_ms, kind, subject, detail) VALUES (?1, ?2, ?3, ?4)",
            params![to_i64(at_ms), kind, subject, detail],
        )?;
        Ok(())
    }

    /// Stores an accusation this sentinel made.
    ///
    /// # Errors
    /// Database errors.
    pub fn save_accusation(&mut self, row: &AccusationRow) -> Result<(), StoreError> {
        self.db.execute(
            "INSERT OR IGNORE INTO accusations (hash, at_ms, subject, score, committee, state,
                 frame) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![
                row.hash,
                to_i64(row.at_ms),
                row.subject,
                row.score,
                to_i64(row.committee),
                row.state,
                row.frame
            ],
        )?;
        Ok(())
    }

    /// Records how an accusation ended.
    ///
    /// # Errors
    /// Database errors.
    pub fn close_accusation(
        &mut self,
        hash: &str,
        state: &str,
        (yes, no, total): (u64, u64, u64),
    ) -> Result<(), StoreError> {
        self.db.execute(
            "UPDATE accusations SET state = ?2, yes_seats = ?3, no_seats = ?4, total_seats = ?5
             WHERE hash = ?1",
            params![hash, state, to_i64(yes), to_i64(no), to_i64(total)],
        )?;
        Ok(())
    }

    /// Stores a vote this sentinel cast (one per accusation).
    ///
    /// # Errors
    /// Database errors.
    pub fn save_vote(&mut self, row: &VoteRow) -> Result<(), StoreError> {
        self.db.execute(
            "INSERT OR IGNORE INTO votes (accusation, at_ms, accuser, subject, verdict, frame)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![
                row.accusation,
                to_i64(row.at_ms),
                row.accuser,
                row.subject,
                row.verdict,
                row.frame
            ],
        )?;
        Ok(())
    }

    /// The newest `limit` accusations, newest first.
    ///
    /// # Errors
    /// Database errors.
    pub fn accusations(&self, limit: usize) -> Result<Vec<AccusationRow>, StoreError> {
        let mut stmt = self.db.prepare(
            "SELECT hash, at_ms, subject, score, committee, state, yes_seats, no_seats,
                 total_seats, frame FROM accusations ORDER BY at_ms DESC LIMIT ?1",
        )?;
        let rows = stmt.query_map(params![to_i64(limit as u64)], |r| {
            Ok(AccusationRow {
                hash: r.get(0)?,
                at_ms: to_u64(r.get(1)?),
                subject: r.get(2)?,
                score: u16::try_from(r.get::<_, i64>(3)?).unwrap_or(u16::MAX),
                committee: to_u64(r.get(4)?),
                state: r.get(5)?,
                seats: (to_u64(r.get(6)?), to_u64(r.get(7)?), to_u64(r.get(8)?)),
                frame: r.get(9)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The newest `limit` votes cast, newest first.
    ///
    /// # Errors
    /// Database errors.
    pub fn votes(&self, limit: usize) -> Result<Vec<VoteRow>, StoreError> {
        let mut stmt = self.db.prepare(
            "SELECT accusation, at_ms, accuser, subject, verdict, frame FROM votes
             ORDER BY at_ms DESC LIMIT ?1",
        )?;
        let rows = stmt.query_map(params![to_i64(limit as u64)], |r| {
            Ok(VoteRow {
                accusation: r.get(0)?,
                at_ms: to_u64(r.get(1)?),
                accuser: r.get(2)?,
                subject: r.get(3)?,
                verdict: r.get(4)?,
                frame: r.get(5)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Hashes of the accusations voted on since `since_ms` (restored into
    /// the node so that a restart does not vote twice).
    ///
    /// # Errors
    /// Database errors.
    pub fn voted_since(&self, since_ms: u64) -> Result<Vec<String>, StoreError> {
        let mut stmt = self
            .db
            .prepare("SELECT accusation FROM votes WHERE at_ms >= ?1")?;
        let rows = stmt.query_map(params![to_i64(since_ms)], |r| r.get(0))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Stores a certificate durably (committed when this returns); a second
    /// copy of one fault's certificate changes nothing.
    ///
    /// # Errors
    /// Database errors.
    pub fn save_certificate(&mut self, row: &CertificateRow) -> Result<(), StoreError> {
        Self::insert_certificate(&self.db, row)
    }

    /// Replaces the certificate of the quarantine of `row.subject` that
    /// began at `row.since_ms` by `row` (a preceding certificate for the same
    /// incident), in one transaction.
    ///
    /// # Errors
    /// Database errors; the old row stays then.
    pub fn replace_certificate(&mut self, row: &CertificateRow) -> Result<(), StoreError> {
        let tx = self.db.transaction()?;
        tx.execute(
            "DELETE FROM certificates WHERE subject = ?1 AND since_ms = ?2",
            params![row.subject, to_i64(row.since_ms)],
        )?;
        Self::insert_certificate(&tx, row)?;
        tx.commit()?;
        Ok(())
    }

    fn insert_certificate(
        db: &rusqlite::Connection,
        row: &CertificateRow,
    ) -> Result<(), StoreError> {
        db.execute(
            "INSERT OR IGNORE INTO certificates (subject, epoch, sequence, fault, since_ms,
                 until_ms, enforced, source, certificate)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            params![
                row.subject,
                to_i64(row.epoch),
                to_i64(row.sequence),
                row.fault,
                to_i64(row.since_ms),
                to_i64(row.until_ms),
                row.enforced,
                row.source,
                row.certificate,
            ],
        )?;
        Ok(())
    }

    /// Marks `subject`'s current quarantine enforced (or not).
    ///
    /// # Errors
    /// Database errors.
    pub fn set_enforced(&mut self, subject: &str, enforced: bool) -> Result<(), StoreError> {
        self.db.execute(
            "UPDATE certificates SET enforced = ?2 WHERE subject = ?1
                 AND until_ms = (SELECT max(until_ms) FROM certificates WHERE subject = ?1)",
            params![subject, enforced],
        )?;
        Ok(())
    }

    /// Every certificate stored, oldest first.
    ///
    /// # Errors
    /// Database errors, or a row that does not fit its type.
    pub fn certificates(&self) -> Result<Vec<CertificateRow>, StoreError> {
        self.certificates_where("1", "")
    }

    /// The certificates stored about `subject` (hex id), oldest first.
    ///
    /// # Errors
    /// As [`Store::certificates`].
    pub fn certificates_of(&self, subject: &str) -> Result<Vec<CertificateRow>, StoreError> {
        self.certificates_where("subject = ?1", subject)
    }

    fn certificates_where(
        &self,
        filter: &str,
        arg: &str,
    ) -> Result<Vec<CertificateRow>, StoreError> {
        let mut stmt = self.db.prepare(&format!(
            "SELECT subject, epoch, sequence, fault, since_ms, until_ms, enforced, source,
                 certificate FROM certificates WHERE {filter} ORDER BY since_ms, subject"
        ))?;
        let map = |r: &rusqlite::Row<'_>| {
            Ok(CertificateRow {
                subject: r.get(0)?,
                epoch: to_u64(r.get(1)?),
                sequence: to_u64(r.get(2)?),
                fault: r.get(3)?,
                since_ms: to_u64(r.get(4)?),
                until_ms: to_u64(r.get(5)?),
                enforced: r.get(6)?,
                source: r.get(7)?,
                certificate: r.get(8)?,
            })
        };
        let rows = if filter.contains("?1") {
            stmt.query_map([arg], map)?.collect::<Result<_, _>>()?
        } else {
            stmt.query_map([], map)?.collect::<Result<_, _>>()?
        };
        Ok(rows)
    }

    /// Database bytes in use.
    ///
    /// # Errors
    /// Database errors.
    pub fn size_bytes(&self) -> Result<u64, StoreError> {
        let pages: i64 = self
            .db
            .pragma_query_value(None, "page_count", |r| r.get(0))?;
        let free: i64 = self
            .db
            .pragma_query_value(None, "freelist_count", |r| r.get(0))?;
        let size: i64 = self
            .db
            .pragma_query_value(None, "page_size", |r| r.get(0))?;
        Ok(to_u64((pages - free) * size))
    }

    /// Applies the retention policy and the size budget: deletes telemetry
    /// received before `now_ms - retention_ms`, then the oldest tenth at a
    /// time while over `max_bytes`; returns the rows deleted.
    ///
    /// # Errors
    /// Database errors.
    pub fn prune(
        &mut self,
        now_ms: u64,
        retention_ms: u64,
        max_bytes: u64,
    ) -> Result<u64, StoreError> {
        let mut deleted = self.db.execute(
            "DELETE FROM telemetry WHERE received_ms < ?1",
            [to_i64(now_ms.saturating_sub(retention_ms))],
        )? as u64;
        deleted += self.db.execute(
            "DELETE FROM incidents WHERE at_ms < ?1",
            [to_i64(now_ms.saturating_sub(retention_ms))],
        )? as u64;
        deleted += self.db.execute(
            "DELETE FROM scores WHERE window_ms < ?1",
            [to_i64(now_ms.saturating_sub(retention_ms))],
        )? as u64;
        for table in ["accusations", "votes"] {
            deleted += self.db.execute(
                &format!("DELETE FROM {table} WHERE at_ms < ?1"),
                [to_i64(now_ms.saturating_sub(retention_ms))],
            )? as u64;
        }
        // Certificates whose quarantine ended longer ago than the retention.
        deleted += self.db.execute(
            "DELETE FROM certificates WHERE until_ms < ?1",
            [to_i64(now_ms.saturating_sub(retention_ms))],
        )? as u64;
        // Alerts delivered or given up on longer ago than the retention
        // (pending ones stay whatever their age).
        deleted += self.db.execute(
            "DELETE FROM alerts WHERE state != 'pending' AND done_ms < ?1",
            [to_i64(now_ms.saturating_sub(retention_ms))],
        )? as u64;
        while self.size_bytes()? > max_bytes {
            let n = self.telemetry_count()?;
            if n == 0 {
                break;
            }
            deleted += self.db.execute(
                "DELETE FROM telemetry WHERE rowid IN
                     (SELECT rowid FROM telemetry ORDER BY received_ms LIMIT ?1)",
                [to_i64(n.div_ceil(10))],
            )? as u64;
        }
        self.db.execute_batch("PRAGMA incremental_vacuum;")?;
        Ok(deleted)
    }

    /// The database file.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(origin: &str, seq: u64, received_ms: u64) -> (TelemetryRow, Vec<u8>) {
        (
            TelemetryRow {
                origin: origin.into(),
                epoch: 1,
                sequence: seq,
                received_ms,
                samples: 5,
                ..TelemetryRow::default()
            },
            vec![7u8; 4000],
        )
    }

    #[test]
    fn a_second_process_cannot_take_the_data_dir() {
        let dir = tempfile::tempdir().unwrap();
        let held = DataDir::lock(dir.path()).unwrap();
        let e = DataDir::lock(dir.path()).unwrap_err().to_string();
        assert!(e.contains("in use by another sentinel process"), "{e}");
        assert!(e.contains(&format!("pid {}", std::process::id())), "{e}");
        drop(held);
        DataDir::lock(dir.path()).unwrap();
    }

    #[test]
    fn epochs_only_grow_even_from_a_restored_copy() {
        let dir = tempfile::tempdir().unwrap();
        let dd = DataDir::lock(&dir.path().join("d")).unwrap();
        let mut s = Store::open(&dd).unwrap();
        assert_eq!(s.schema_version().unwrap() as usize, MIGRATIONS.len());
        let e1 = s.begin_epoch(1_000).unwrap();
        s.reserve_sequences(SEQUENCE_BLOCK).unwrap();
        assert_eq!(s.epoch_state().unwrap(), (e1, SEQUENCE_BLOCK));
        // Same clock reading again (a fast restart): the counter moves on.
        let e2 = s.begin_epoch(1_000).unwrap();
        assert!(e2 > e1);
        assert_eq!(s.epoch_state().unwrap(), (e2, 0));
        drop(s);
        drop(dd);

        // Copy the directory as a backup, boot twice more, restore it.
        let backup = dir.path().join("backup");
        std::fs::create_dir(&backup).unwrap();
        for f in ["sentinel.db", "sentinel.db-wal", "sentinel.db-shm"] {
            let src = dir.path().join("d").join(f);
            if src.exists() {
                std::fs::copy(&src, backup.join(f)).unwrap();
            }
        }
        let dd = DataDir::lock(&dir.path().join("d")).unwrap();
        let mut s = Store::open(&dd).unwrap();
        let e3 = s.begin_epoch(2_000).unwrap();
        drop(s);
        drop(dd);
        let dd = DataDir::lock(&backup).unwrap();
        let mut restored = Store::open(&dd).unwrap();
        assert_eq!(restored.epoch_state().unwrap().0, e2);
        // Time has passed since: the restored copy still starts past e3.
        let e4 = restored.begin_epoch(3_000).unwrap();
        assert!(e4 > e3, "{e4} <= {e3}");
    }

    #[test]
    fn accusations_and_votes_round_trip_and_survive_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let dd = DataDir::lock(dir.path()).unwrap();
        let mut s = Store::open(&dd).unwrap();
        let a = AccusationRow {
            hash: "ab".repeat(32),
            at_ms: 5_000,
            subject: "cd".repeat(32),
            score: 9_500,
            committee: 7,
            state: "open".into(),
            seats: (0, 0, 0),
            frame: vec![1, 2, 3],
        };
        s.save_accusation(&a).unwrap();
        s.save_accusation(&a).unwrap();
        s.close_accusation(&a.hash, "certified", (5, 1, 7)).unwrap();
        let v = VoteRow {
            accusation: "ef".repeat(32),
            at_ms: 6_000,
            accuser: "01".repeat(32),
            subject: "cd".repeat(32),
            verdict: "own-view-below".into(),
            frame: vec![4, 5],
        };
        s.save_vote(&v).unwrap();
        drop(s);
        let s = Store::open(&dd).unwrap();
        let got = s.accusations(10).unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].state, "certified");
        assert_eq!(got[0].seats, (5, 1, 7));
        assert_eq!(got[0].frame, vec![1, 2, 3]);
        assert_eq!(s.votes(10).unwrap(), vec![v.clone()]);
        assert_eq!(s.voted_since(6_000).unwrap(), vec![v.accusation.clone()]);
        assert!(s.voted_since(6_001).unwrap().is_empty());
    }

    #[test]
    fn telemetry_round_trips_and_retention_and_budget_prune_oldest_first() {
        let dir = tempfile::tempdir().unwrap();
        let dd = DataDir::lock(dir.path()).unwrap();
        let mut s = Store::open(&dd).unwrap();
        let rows: Vec<_> = (1..=300).map(|i| row("aa", i, i * 1000)).collect();
        s.insert_telemetry(&rows).unwrap();
        // Duplicates are ignored, not errors.
        s.insert_telemetry(&rows[..3]).unwrap();
        assert_eq!(s.telemetry_count().unwrap(), 300);
        let newest = s.telemetry("aa", 2).unwrap();
        assert_eq!(newest[0].sequence, 300);
        assert_eq!(newest[0], rows[299].0);

        // Retention: everything received before t = 100 s goes.
        let gone = s.prune(150_000, 50_000, u64::MAX).unwrap();
        assert_eq!(gone, 99);
        assert_eq!(s.telemetry_count().unwrap(), 201);
        // Budget: shrink until under it, oldest first.
        let before = s.size_bytes().unwrap();
        s.prune(150_000, 50_000, before / 2).unwrap();
        assert!(s.size_bytes().unwrap() <= before / 2);
        let left = s.telemetry_count().unwrap();
        assert!(left > 0 && left < 201);
        assert_eq!(s.telemetry("aa", 1).unwrap()[0].sequence, 300);

        s.peer_connected("bb", "127.0.0.1:1", 5).unwrap();
        s.peer_connected("bb", "127.0.0.1:2", 9).unwrap();
        let p = &s.peers().unwrap()[0];
        assert_eq!((p.first_seen_ms, p.last_seen_ms, p.connections), (5, 9, 2));
        assert_eq!(p.last_addr.as_deref(), Some("127.0.0.1:2"));
    }

    #[test]
    fn scored_rows_of_an_older_feature_schema_stay_but_are_not_read_as_features() {
        let dir = tempfile::tempdir().unwrap();
        let dd = DataDir::lock(dir.path()).unwrap();
        let mut s = Store::open(&dd).unwrap();
        // A row as schema 4 stored it: 30 columns, no schema version.
        s.db.execute(
            "INSERT INTO scores (window_ms, subject, model, score, suspected, features)
             VALUES (1000, 'aa', 'm', 5, 0, ?1)",
            params![vec![0u8; 30 * 4]],
        )
        .unwrap();
        let mut features = [0f32; sentinel_protocol::features::COUNT];
        features[0] = 3.0;
        let current = ScoreRow {
            window_ms: 2000,
            subject: "bb".into(),
            model: "m".into(),
            score: 7,
            suspected: false,
            features: sentinel_protocol::features::Row(features),
        };
        s.insert_scores(std::slice::from_ref(&current)).unwrap();
        assert_eq!(s.scores_since(0, 10).unwrap(), vec![current]);
        assert_eq!(s.scores_of_other_schemas_since(0).unwrap(), 1);
        assert_eq!(s.scores_of_other_schemas_since(1001).unwrap(), 0);
        let kept: i64 =
            s.db.query_row("SELECT COUNT(*) FROM scores", [], |r| r.get(0))
                .unwrap();
        assert_eq!(kept, 2);
    }

    #[test]
    fn certificates_survive_reopening_and_the_size_budget() {
        let dir = tempfile::tempdir().unwrap();
        let cert = |subject: &str, sequence, until_ms| CertificateRow {
            subject: subject.into(),
            epoch: 7,
            sequence,
            fault: "equivocation".into(),
            since_ms: 1_000,
            until_ms,
            enforced: true,
            source: "detected".into(),
            certificate: vec![u8::try_from(sequence).unwrap(); 100],
        };
        {
            let dd = DataDir::lock(dir.path()).unwrap();
            let mut s = Store::open(&dd).unwrap();
            s.save_certificate(&cert("aa", 1, 500_000)).unwrap();
            // A second copy of one fault changes nothing.
            let mut copy = cert("aa", 1, 900_000);
            copy.source = "bb".into();
            s.save_certificate(&copy).unwrap();
            s.save_certificate(&cert("cc", 2, 2_000)).unwrap();
            s.set_enforced("aa", false).unwrap();
            // A preceding certificate for cc's incident takes its place.
            let mut earlier = cert("cc", 0, 2_000);
            earlier.certificate = vec![9; 50];
            s.replace_certificate(&earlier).unwrap();
        }
        let dd = DataDir::lock(dir.path()).unwrap();
        let mut s = Store::open(&dd).unwrap();
        let all = s.certificates().unwrap();
        assert_eq!(all.len(), 2);
        let aa = &s.certificates_of("aa").unwrap()[0];
        assert_eq!((aa.until_ms, aa.enforced), (500_000, false));
        assert_eq!(aa.source, "detected");
        assert_eq!(aa.certificate, vec![1u8; 100]);
        let cc = s.certificates_of("cc").unwrap();
        assert_eq!(cc.len(), 1);
        assert_eq!((cc[0].sequence, cc[0].certificate.len()), (0, 50));
        // A budget of zero empties telemetry but keeps live certificates;
        // retention drops the one that ended long ago.
        s.insert_telemetry(&[row("aa", 1, 1)]).unwrap();
        s.prune(100_000, 50_000, 0).unwrap();
        assert_eq!(s.telemetry_count().unwrap(), 0);
        let left = s.certificates().unwrap();
        assert_eq!(left.len(), 1);
        assert_eq!(left[0].subject, "aa");
    }

    #[test]
    fn a_version_1_database_migrates_and_keeps_its_rows() {
        let dir = tempfile::tempdir().unwrap();
        {
            let db = Connection::open(dir.path().join("sentinel.db")).unwrap();
            db.execute_batch(MIGRATIONS[0]).unwrap();
            db.pragma_update(None, "user_version", 1).unwrap();
            db.execute(
                "INSERT INTO telemetry VALUES ('aa', 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, x'00')",
                [],
            )
            .unwrap();
        }
        let dd = DataDir::lock(dir.path()).unwrap();
        let s = Store::open(&dd).unwrap();
        assert_eq!(s.schema_version().unwrap() as usize, MIGRATIONS.len());
        let rows = s.telemetry("aa", 10).unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!((rows[0].sequence, rows[0].probes_failed), (2, 12));
        assert_eq!((rows[0].node_peers_mean, rows[0].node_errors), (0, 0));
    }

    #[test]
    fn a_newer_schema_is_refused_and_a_corrupt_file_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let dd = DataDir::lock(dir.path()).unwrap();
        let s = Store::open(&dd).unwrap();
        s.db.pragma_update(None, "user_version", 99).unwrap();
        drop(s);
        let e = Store::open(&dd).unwrap_err().to_string();
        assert!(e.contains("newer"), "{e}");

        let dir2 = tempfile::tempdir().unwrap();
        std::fs::write(
            dir2.path().join("sentinel.db"),
            b"not a database at all, just junk bytes",
        )
        .unwrap();
        let dd2 = DataDir::lock(dir2.path()).unwrap();
        let e = Store::open(&dd2).unwrap_err().to_string();
        assert!(e.contains("database"), "{e}");
    }
}
