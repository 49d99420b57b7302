//! Secret key files.
//!
//! The one place this crate touches the filesystem, always at a path the
//! caller names. Format (version 1, 106 bytes, fixed layout so it has one
//! encoding):
//!
//! | bytes | field |
//! |---|---|
//! | 8 | magic `SNTLKEY\0` |
//! | 1 | format version (1) |
//! | 1 | suite byte |
//! | 32 | node id derived from the keys (detects corruption and wrong files) |
//! | 64 | secret seed: Ed25519 seed, then ML-DSA-65 seed |
//!
//! Writing never overwrites: the bytes go to a temporary file created with
//! mode 0600, are fsynced, and are linked into place only if no file has the
//! name yet. Loading refuses a file that group or others may read or write.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use zeroize::Zeroizing;

use crate::codec::Reader;
use crate::error::{Error, InvalidMessage, KeyFileError, KeyFileErrorAt};
use crate::identity::{Identity, NodeId, SEED_LEN, Suite};

const MAGIC: &[u8; 8] = b"SNTLKEY\0";
const VERSION: u8 = 1;
/// Length of a version-1 key file.
pub const KEY_FILE_LEN: usize = 8 + 1 + 1 + NodeId::LEN + SEED_LEN;

fn at(path: &Path) -> impl Fn(KeyFileError) -> KeyFileErrorAt + '_ {
    move |kind| KeyFileErrorAt(path.to_path_buf(), kind)
}

/// Writes `identity`'s secret key to a new file at `path` with mode 0600.
///
/// # Errors
/// [`Error::KeyFile`] with [`KeyFileError::AlreadyExists`] if `path` exists
/// (it is left untouched), or [`KeyFileError::Io`].
pub fn save(path: &Path, identity: &Identity) -> Result<(), Error> {
    let err = at(path);
    let mut bytes = Zeroizing::new(Vec::with_capacity(KEY_FILE_LEN));
    bytes.extend_from_slice(MAGIC);
    bytes.push(VERSION);
    bytes.push(identity.public().suite().to_u8());
    bytes.extend_from_slice(&identity.id().0);
    bytes.extend_from_slice(identity.seed());

    if path.symlink_metadata().is_ok() {
        return Err(err(KeyFileError::AlreadyExists).into());
    }
    let tmp = temp_path(path);
    let result = write_new_file(&tmp, &bytes).and_then(|()| match fs::hard_link(&tmp, path) {
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Err(KeyFileError::AlreadyExists),
        other => other.map_err(KeyFileError::Io),
    });
    // The temporary name is removed whether or not the link succeeded.
    let _ = fs::remove_file(&tmp);
    result.map_err(&err)?;
    sync_parent(path).map_err(|e| err(KeyFileError::Io(e)))?;
    Ok(())
}

/// Loads a secret key file written by [`save`].
///
/// # Errors
/// [`Error::KeyFile`] with [`KeyFileError::TooOpen`] if group or others have
/// any access to the file, [`KeyFileError::Format`] if it is not a version-1
/// key file, [`KeyFileError::IdMismatch`] if its recorded id does not match
/// its keys, or [`KeyFileError::Io`].
pub fn load(path: &Path) -> Result<Identity, Error> {
    let err = at(path);
    let mut file = File::open(path).map_err(|e| err(KeyFileError::Io(e)))?;
    // Checked on the open handle, so the file cannot be swapped in between.
    let meta = file.metadata().map_err(|e| err(KeyFileError::Io(e)))?;
    if !meta.is_file() {
        return Err(err(KeyFileError::NotAFile).into());
    }
    check_mode(&meta).map_err(&err)?;

    let mut bytes = Zeroizing::new(Vec::with_capacity(KEY_FILE_LEN + 1));
    // Read one byte past the expected length to detect trailing bytes
    // without reading an arbitrarily large file.
    (&mut file)
        .take(KEY_FILE_LEN as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| err(KeyFileError::Io(e)))?;
    let (suite, stored, seed) = parse(&bytes).map_err(|e| err(KeyFileError::Format(e)))?;
    let identity = Identity::from_seed(&seed)?;
    if identity.public().suite() != suite || identity.id() != stored {
        return Err(err(KeyFileError::IdMismatch {
            stored,
            derived: identity.id(),
        })
        .into());
    }
    Ok(identity)
}

fn parse(bytes: &[u8]) -> Result<(Suite, NodeId, Zeroizing<[u8; SEED_LEN]>), InvalidMessage> {
    let mut r = Reader::new(bytes);
    if r.take(MAGIC.len())? != MAGIC {
        return Err(InvalidMessage::BadMagic);
    }
    match r.u8()? {
        VERSION => {}
        other => return Err(InvalidMessage::UnsupportedVersion(other)),
    }
    let suite = Suite::from_u8(r.u8()?)?;
    let id = NodeId(r.array()?);
    let mut seed = Zeroizing::new([0u8; SEED_LEN]);
    seed.copy_from_slice(r.take(SEED_LEN)?);
    r.finish()?;
    Ok((suite, id, seed))
}

fn temp_path(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.tmp-{}", std::process::id()))
}

fn write_new_file(path: &Path, bytes: &[u8]) -> Result<(), KeyFileError> {
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    Ok(())
}

fn sync_parent(path: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        let parent = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        File::open(parent)?.sync_all()?;
    }
    #[cfg(not(unix))]
    let _ = path;
    Ok(())
}

#[cfg(unix)]
fn check_mode(meta: &fs::Metadata) -> Result<(), KeyFileError> {
    use std::os::unix::fs::PermissionsExt;
    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o077 != 0 {
        return Err(KeyFileError::TooOpen { mode });
    }
    Ok(())
}

#[cfg(not(unix))]
fn check_mode(_meta: &fs::Metadata) -> Result<(), KeyFileError> {
    // No POSIX permission bits to check; operators rely on ACLs there.
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn identity(b: u8) -> Identity {
        Identity::from_seed(&[b; SEED_LEN]).unwrap()
    }

    fn kind(e: Error) -> KeyFileError {
        match e {
            Error::KeyFile { kind, .. } => kind,
            other => panic!("expected a key file error, got {other}"),
        }
    }

    #[test]
    fn round_trip_with_mode_0600() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("node.key");
        let id = identity(7);
        save(&path, &id).unwrap();
        let meta = fs::metadata(&path).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        assert_eq!(meta.len(), KEY_FILE_LEN as u64);
        assert_eq!(load(&path).unwrap().id(), id.id());
        // No temporary file is left behind.
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn never_overwrites() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("node.key");
        save(&path, &identity(1)).unwrap();
        let e = kind(save(&path, &identity(2)).unwrap_err());
        assert!(matches!(e, KeyFileError::AlreadyExists));
        assert_eq!(load(&path).unwrap().id(), identity(1).id());
    }

    #[test]
    fn refuses_readable_by_others_with_a_clear_message() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("node.key");
        save(&path, &identity(1)).unwrap();
        for mode in [0o644, 0o640, 0o604, 0o660, 0o602] {
            fs::set_permissions(&path, fs::Permissions::from_mode(mode)).unwrap();
            let e = load(&path).unwrap_err();
            let text = e.to_string();
            assert!(text.contains("chmod 600"), "{text}");
            assert!(matches!(kind(e), KeyFileError::TooOpen { mode: m } if m == mode));
        }
        fs::set_permissions(&path, fs::Permissions::from_mode(0o400)).unwrap();
        load(&path).unwrap();
    }

    #[test]
    fn rejects_corrupt_files() {
        let dir = tempfile::tempdir().unwrap();
        let good = dir.path().join("good.key");
        save(&good, &identity(3)).unwrap();
        let bytes = fs::read(&good).unwrap();

        let write = |name: &str, b: &[u8]| {
            let p = dir.path().join(name);
            write_new_file(&p, b).unwrap();
            p
        };
        // Truncated, extended, wrong magic, unknown version.
        let short = write("short", &bytes[..bytes.len() - 1]);
        assert!(matches!(
            kind(load(&short).unwrap_err()),
            KeyFileError::Format(_)
        ));
        let mut ext = bytes.clone();
        ext.push(0);
        let long = write("long", &ext);
        assert!(matches!(
            kind(load(&long).unwrap_err()),
            KeyFileError::Format(InvalidMessage::TrailingBytes { count: 1 })
        ));
        let mut m = bytes.clone();
        m[0] ^= 1;
        let magic = write("magic", &m);
        assert!(matches!(
            kind(load(&magic).unwrap_err()),
            KeyFileError::Format(InvalidMessage::BadMagic)
        ));
        let mut v = bytes.clone();
        v[8] = 9;
        let version = write("version", &v);
        assert!(matches!(
            kind(load(&version).unwrap_err()),
            KeyFileError::Format(InvalidMessage::UnsupportedVersion(9))
        ));
        // A flipped seed bit no longer matches the recorded id.
        let mut s = bytes.clone();
        s[KEY_FILE_LEN - 1] ^= 1;
        let seed = write("seed", &s);
        assert!(matches!(
            kind(load(&seed).unwrap_err()),
            KeyFileError::IdMismatch { .. }
        ));
        // A directory is not a key file.
        assert!(matches!(
            kind(load(dir.path()).unwrap_err()),
            KeyFileError::NotAFile | KeyFileError::TooOpen { .. }
        ));
    }
}
