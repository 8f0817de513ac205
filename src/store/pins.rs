//! Blobs a running command counts on before a manifest names them.
//!
//! A pull that finds a file's blob already stored does not fetch it again;
//! from that decision until its manifest is written, another command's
//! `rm` must not collect that blob. So the pull pins it: under the store
//! lock it checks which blobs exist and writes their names to
//! `pins/<unique>.pin`, a file it holds an exclusive lock on for as long as
//! it lives (the OS drops the lock when the process dies, `kill -9`
//! included). Garbage collection, also under the store lock, keeps every
//! blob a held pin file names and removes pin files nobody holds.

use std::collections::BTreeSet;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use super::atomic::unique_name;
use super::blobs::Digest;
use super::lock::StoreLock;
use super::{Store, StoreError, io_err};

const PIN_SUFFIX: &str = ".pin";

/// Stored blobs held for this process; unpinned when dropped.
#[derive(Debug)]
pub struct Pinned {
    digests: BTreeSet<Digest>,
    /// The held pin file; `None` when nothing was pinned.
    file: Option<(PathBuf, File)>,
}

impl Pinned {
    /// Whether `digest` was stored when pinned, and so stays stored while `self` lives.
    pub fn contains(&self, digest: &Digest) -> bool {
        self.digests.contains(digest)
    }
}

impl Drop for Pinned {
    fn drop(&mut self) {
        if let Some((path, _held)) = &self.file {
            let _ = fs::remove_file(path);
        }
    }
}

impl Store {
    fn pins_dir(&self) -> PathBuf {
        self.root().join("pins")
    }

    /// Pins those of `wanted` that are stored now.
    pub fn pin_stored(
        &self,
        wanted: impl IntoIterator<Item = Digest>,
        _lock: &StoreLock,
    ) -> Result<Pinned, StoreError> {
        let digests: BTreeSet<Digest> = wanted.into_iter().filter(|d| self.has_blob(d)).collect();
        if digests.is_empty() {
            return Ok(Pinned { digests, file: None });
        }
        let dir = self.pins_dir();
        fs::create_dir_all(&dir).map_err(io_err("create", &dir))?;
        let path = dir.join(format!("{}{PIN_SUFFIX}", unique_name("pull")));
        let mut file = OpenOptions::new().write(true).create_new(true).open(&path).map_err(io_err("create", &path))?;
        // Written and locked before the store lock is released, so a collection never sees it half made.
        let written = file.try_lock().map_err(io::Error::from).and_then(|()| {
            let lines: String = digests.iter().map(|d| format!("{}\n", d.file_name())).collect();
            file.write_all(lines.as_bytes())
        });
        if let Err(e) = written {
            let _ = fs::remove_file(&path);
            return Err(io_err("write", &path)(e));
        }
        Ok(Pinned { digests, file: Some((path, file)) })
    }

    /// The blob file names live processes have pinned; removes the pin files of dead ones.
    pub(super) fn pinned_blob_names(&self, _lock: &StoreLock) -> Result<BTreeSet<String>, StoreError> {
        let dir = self.pins_dir();
        let entries = match fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(BTreeSet::new()),
            Err(e) => return Err(io_err("read", &dir)(e)),
        };
        let mut names = BTreeSet::new();
        for entry in entries {
            let path = entry.map_err(io_err("read", &dir))?.path();
            if !is_held(&path) {
                let _ = fs::remove_file(&path);
                continue;
            }
            let text = fs::read_to_string(&path).map_err(io_err("read", &path))?;
            names.extend(text.lines().filter(|l| Digest::from_file_name(l).is_some()).map(str::to_string));
        }
        Ok(names)
    }
}

/// Whether another process holds the lock on `path` (taking it for a moment to see).
fn is_held(path: &Path) -> bool {
    File::open(path).is_ok_and(|file| file.try_lock().is_err())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_collection_keeps_pinned_blobs_until_the_pin_is_dropped() {
        let root = tempfile::tempdir().unwrap();
        let store = Store::open(root.path()).unwrap();
        let lock = store.lock(|| {}).unwrap();
        let (kept, absent) = (Digest::of_bytes(b"kept"), Digest::of_bytes(b"absent"));
        fs::write(store.blob_path(&kept), b"kept").unwrap();
        let pinned = store.pin_stored([kept, absent], &lock).unwrap();
        assert!(pinned.contains(&kept) && !pinned.contains(&absent), "only stored blobs are pinned");
        // A pin file this process holds reads as held: flock locks belong to the open file.
        assert_eq!(store.collect_garbage(&lock).unwrap(), 0);
        assert!(store.has_blob(&kept));
        drop(pinned);
        assert_eq!(store.collect_garbage(&lock).unwrap(), 4);
        assert!(!store.has_blob(&kept));
    }

    #[test]
    fn a_dead_process_pin_file_is_ignored_and_removed() {
        let root = tempfile::tempdir().unwrap();
        let store = Store::open(root.path()).unwrap();
        let lock = store.lock(|| {}).unwrap();
        let blob = Digest::of_bytes(b"x");
        fs::write(store.blob_path(&blob), b"x").unwrap();
        fs::create_dir_all(store.pins_dir()).unwrap();
        let stale = store.pins_dir().join(".pull-1-1.pin");
        fs::write(&stale, format!("{}\n", blob.file_name())).unwrap();
        assert_eq!(store.collect_garbage(&lock).unwrap(), 1);
        assert!(!stale.exists());
    }
}
