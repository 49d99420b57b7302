//! `sentinel export`: what this sentinel stored, as a dataset in the
//! simulator's schemas (`datasets/README.md`), so detectors can be trained
//! or checked on real traffic with the same tools.
//!
//! - `features`: the rows this sentinel scored (observer = itself), with the
//!   model's score and its local suspicion; the ground-truth columns are
//!   null.
//! - `telemetry_host`, `telemetry_links`: the stored signed reports, decoded
//!   (they were verified when they arrived).
//! - `events`: the stored incidents.
//!
//! The database is opened read-only without the data dir's lock, so an
//! export runs beside the daemon.

use std::collections::BTreeMap;
use std::path::Path;

use sentinel_datasets::{Dataset, EventRecord, FeatureRecord, Meta};
use sentinel_protocol::codec::Codec;
use sentinel_protocol::telemetry::Report;
use sentinel_protocol::{NodeId, Roster, envelope};

use crate::store::Store;

/// Parses `--since`: Unix milliseconds, or a duration back from `now_ms`
/// (`90s`, `30m`, `12h`, `7d`).
///
/// # Errors
/// A message saying what is accepted.
pub fn parse_since(text: &str, now_ms: u64) -> Result<u64, String> {
    let bad = || {
        format!("--since {text:?}: expected Unix milliseconds or a duration like 90s, 30m, 12h, 7d")
    };
    let t = text.trim();
    if let Some(unit) = t.chars().last().filter(char::is_ascii_alphabetic) {
        let n: u64 = t[..t.len() - 1].parse().map_err(|_| bad())?;
        let ms = match unit {
            's' => 1_000,
            'm' => 60_000,
            'h' => 3_600_000,
            'd' => 86_400_000,
            _ => return Err(bad()),
        };
        return Ok(now_ms.saturating_sub(n.saturating_mul(ms)));
    }
    t.parse().map_err(|_| bad())
}

/// What an export wrote.
#[derive(Debug)]
pub struct Exported {
    /// Rows per table.
    pub rows: BTreeMap<&'static str, u64>,
    /// Stored frames that did not verify or decode (skipped).
    pub undecodable: u64,
    /// Scored rows of an older feature schema (kept in the database, not
    /// exported: their columns differ).
    pub other_schema_rows: u64,
}

/// Writes the dataset of what `data_dir` holds since `since_ms` into `out`.
/// `me` is this sentinel's id (the observer of its scored rows); stored
/// frames are verified against `roster` again and skipped when they fail.
///
/// # Errors
/// A message naming the file or database problem.
pub fn export(
    data_dir: &Path,
    roster: &Roster,
    me: NodeId,
    since_ms: u64,
    out: &Path,
) -> Result<Exported, String> {
    let store = Store::open_read_only(data_dir).map_err(|e| e.to_string())?;
    let meta = Meta {
        producer: format!("sentinel export {}", env!("CARGO_PKG_VERSION")),
        commit: option_env!("SENTINEL_COMMIT")
            .unwrap_or("unknown")
            .to_owned(),
        seed: None,
        scenario: None,
        scenario_sha256: None,
    };
    let other_schema_rows = store
        .scores_of_other_schemas_since(since_ms)
        .map_err(|e| e.to_string())?;
    let mut ds = Dataset::create(out, meta).map_err(|e| e.to_string())?;
    let mut since = since_ms;
    loop {
        let rows = store
            .scores_since(since, 10_000)
            .map_err(|e| e.to_string())?;
        let Some(last) = rows.last().map(|r| r.window_ms) else {
            break;
        };
        let full = rows.len() == 10_000;
        for r in rows {
            // A full page may end inside one window: take that window in
            // the next page.
            if full && r.window_ms == last {
                continue;
            }
            let subject = NodeId::from_hex(&r.subject).map_err(|e| format!("scores row: {e}"))?;
            ds.feature(FeatureRecord {
                time_ms: r.window_ms,
                window_end_ms: r.window_ms,
                observer: me,
                subject,
                row: r.features,
                malicious: None,
                attack: None,
                attack_fraction: None,
                honest_case: None,
                score: Some(f32::from(r.score) / 10_000.0),
                suspected: Some(r.suspected),
            })
            .map_err(|e| e.to_string())?;
        }
        if !full {
            break;
        }
        if last == since {
            return Err(format!(
                "more than 10,000 scored rows in the window ending at {last}"
            ));
        }
        since = last;
    }
    let mut undecodable = 0;
    for (origin, frame) in store.frames_since(since_ms).map_err(|e| e.to_string())? {
        // Stored bytes are checked again: the database is a file anyone
        // with access could have edited.
        let decoded = envelope::open(roster, &frame)
            .ok()
            .and_then(|v| Some((*v.header(), Report::decode_exact(v.payload()).ok()?)));
        let (Some((header, report)), Ok(origin)) = (decoded, NodeId::from_hex(&origin)) else {
            undecodable += 1;
            continue;
        };
        ds.report(origin, header.stamp.epoch, header.stamp.sequence, &report)
            .map_err(|e| e.to_string())?;
    }
    for i in store.incidents_since(since_ms).map_err(|e| e.to_string())? {
        ds.event(EventRecord {
            time_ms: i.at_ms,
            node: me,
            kind: i.kind,
            subject: NodeId::from_hex(&i.subject).ok(),
            detail: i.detail,
        })
        .map_err(|e| e.to_string())?;
    }
    let rows = ds.finish().map_err(|e| e.to_string())?;
    Ok(Exported {
        rows,
        undecodable,
        other_schema_rows,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_takes_unix_ms_or_a_duration_back() {
        assert_eq!(parse_since("1700000000000", 5), Ok(1_700_000_000_000));
        assert_eq!(parse_since("90s", 100_000), Ok(10_000));
        assert_eq!(parse_since("2h", 10_000_000), Ok(2_800_000));
        assert_eq!(parse_since("7d", 5), Ok(0));
        assert!(parse_since("yesterday", 5).unwrap_err().contains("90s"));
        assert!(parse_since("5w", 5).is_err());
    }
}
