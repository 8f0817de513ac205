//! Work areas of running commands, and the sweep that removes what dead
//! ones left behind.
//!
//! An import copies into its own `staging/<name>/`, held by an exclusive
//! lock on `staging/<name>.lock` for as long as the command lives (the OS
//! drops the lock when the process dies, `kill -9` included). Areas are
//! made and swept only under the store lock, so a sweep never sees an area
//! whose lock is not yet taken. `downloads/` keeps partial hub downloads
//! for resuming, named by their checksum; anything else there (hf-hub's
//! layout of older llmctl versions, stray files) is swept too.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};

use super::atomic::unique_name;
use super::lock::StoreLock;
use super::{Store, StoreError, io_err};
use crate::ids::parse_hex;

/// A command's staging directory, removed when dropped.
#[derive(Debug)]
pub struct StagingArea {
    dir: PathBuf,
    lock_path: PathBuf,
    _held: File,
}

impl StagingArea {
    pub fn path(&self) -> &Path {
        &self.dir
    }
}

impl Drop for StagingArea {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.dir);
        let _ = fs::remove_file(&self.lock_path);
    }
}

const LOCK_SUFFIX: &str = ".lock";

impl Store {
    /// Makes a staging directory held by this process.
    pub fn staging_area(&self, _lock: &StoreLock) -> Result<StagingArea, StoreError> {
        let name = unique_name("pull");
        let staging = self.staging_dir();
        let lock_path = staging.join(format!("{name}{LOCK_SUFFIX}"));
        let held =
            OpenOptions::new().write(true).create_new(true).open(&lock_path).map_err(io_err("create", &lock_path))?;
        held.try_lock().map_err(|e| io_err("lock", &lock_path)(e.into()))?;
        let dir = staging.join(name);
        let area = StagingArea { dir, lock_path, _held: held };
        fs::create_dir(&area.dir).map_err(io_err("create", &area.dir))?;
        Ok(area)
    }

    /// Removes staging areas no live process holds and download leftovers
    /// that are not resumable partial files; returns the bytes freed.
    pub fn sweep_leftovers(&self, _lock: &StoreLock) -> Result<u64, StoreError> {
        let mut freed = 0;
        let staging = self.staging_dir();
        for entry in entries(&staging)? {
            let name = entry.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_string();
            let stale = match name.strip_suffix(LOCK_SUFFIX) {
                Some(_) => is_unheld(&entry),
                // An area without its lock: made by an older llmctl, or its owner died mid-removal.
                None => !staging.join(format!("{name}{LOCK_SUFFIX}")).exists(),
            };
            if stale {
                let area = staging.join(name.strip_suffix(LOCK_SUFFIX).unwrap_or(&name));
                freed += remove_tree(&area);
                freed += remove_tree(&entry);
            }
        }
        for entry in entries(&self.downloads_dir())? {
            let name = entry.file_name().and_then(|n| n.to_str()).unwrap_or_default();
            if !is_partial_download_name(name) || entry.is_dir() {
                freed += remove_tree(&entry);
            }
        }
        Ok(freed)
    }
}

/// `<org>--<name>.sha256-<64 hex>.part` or `<org>--<name>.git-<40 hex>.part`,
/// as the pull names them.
pub fn is_partial_download_name(name: &str) -> bool {
    let Some(stem) = name.strip_suffix(".part") else { return false };
    let Some((repo, checksum)) = stem.rsplit_once('.') else { return false };
    if repo.is_empty() {
        return false;
    }
    match (checksum.strip_prefix("sha256-"), checksum.strip_prefix("git-")) {
        (Some(hex), _) => parse_hex::<32>(hex).is_some() && hex.bytes().all(|b| !b.is_ascii_uppercase()),
        (_, Some(hex)) => parse_hex::<20>(hex).is_some() && hex.bytes().all(|b| !b.is_ascii_uppercase()),
        _ => false,
    }
}

/// Whether no process holds the lock file (taking it for a moment to see).
fn is_unheld(lock_path: &Path) -> bool {
    match File::open(lock_path) {
        Ok(file) => file.try_lock().is_ok(),
        Err(e) => e.kind() == io::ErrorKind::NotFound,
    }
}

fn entries(dir: &Path) -> Result<Vec<PathBuf>, StoreError> {
    match fs::read_dir(dir) {
        Ok(read) => read.map(|e| e.map(|e| e.path()).map_err(io_err("read", dir))).collect(),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(io_err("read", dir)(e)),
    }
}

/// Removes a file or directory tree (not following links); returns the bytes it held.
fn remove_tree(path: &Path) -> u64 {
    let Ok(meta) = fs::symlink_metadata(path) else { return 0 };
    if !meta.is_dir() {
        return fs::remove_file(path).map(|()| meta.len()).unwrap_or(0);
    }
    let inner: u64 = fs::read_dir(path).map(|d| d.flatten().map(|e| remove_tree(&e.path())).sum()).unwrap_or(0);
    let _ = fs::remove_dir(path);
    inner
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partial_download_names_are_exactly_what_pulls_make() {
        assert!(is_partial_download_name(&format!("org--m.sha256-{}.part", "a".repeat(64))));
        assert!(is_partial_download_name(&format!("Qwen2.5-7B.git-{}.part", "0".repeat(40))));
        let unnamed = format!("sha256-{}.part", "a".repeat(64));
        for other in [
            "models--org--m",
            ".lock",
            "o--m.sha256-ab.part",
            &format!("o.git-{}.part", "A".repeat(40)),
            &format!("o.sha256-{}", "a".repeat(64)),
            &unnamed,
        ] {
            assert!(!is_partial_download_name(other), "{other}");
        }
    }

    #[test]
    fn a_sweep_keeps_held_areas_and_partials_and_removes_the_rest() {
        let root = tempfile::tempdir().unwrap();
        let store = Store::open(root.path()).unwrap();
        let lock = store.lock(|| {}).unwrap();
        let live = store.staging_area(&lock).unwrap();
        fs::write(live.path().join("x"), b"live").unwrap();
        // A dead process's area: its lock file exists but nobody holds it.
        let dead = store.staging_dir().join(".pull-1-1");
        fs::create_dir(&dead).unwrap();
        fs::write(dead.join("blob"), [0u8; 100]).unwrap();
        fs::write(store.staging_dir().join(".pull-1-1.lock"), b"").unwrap();
        let orphan = store.staging_dir().join(".pull-2-9");
        fs::create_dir(&orphan).unwrap();
        let partial = store.downloads_dir().join(format!("org--m.sha256-{}.part", "a".repeat(64)));
        fs::write(&partial, b"resume me").unwrap();
        let old_layout = store.downloads_dir().join("models--org--m/blobs");
        fs::create_dir_all(&old_layout).unwrap();
        fs::write(old_layout.join("x.part"), [0u8; 50]).unwrap();
        assert_eq!(store.sweep_leftovers(&lock).unwrap(), 150);
        assert!(live.path().join("x").is_file() && partial.is_file());
        assert!(!dead.exists() && !orphan.exists() && !store.downloads_dir().join("models--org--m").exists());
        let live_dir = live.path().to_path_buf();
        drop(live);
        assert!(!live_dir.exists());
        assert_eq!(fs::read_dir(store.staging_dir()).unwrap().count(), 0);
    }
}
