//! Getting a model's files onto local disk, verified: downloaded from the
//! hub (resuming partial downloads) or copied from a local path. Files whose
//! blob is already in the store are not fetched again.

use std::fs::{self, File};
use std::path::{Path, PathBuf};

use crate::hub::{DownloadReporter, Hub, RemoteFile, Resilience};
use super::{PullEvent, PullReporter};
use crate::store::blobs::{Digest, copy_hashing, git_blob_id, hash_file};
use crate::store::reference::ModelName;
use crate::store::{Store, StoreError, io_err};

/// A verified file ready to be recorded in a manifest.
#[derive(Debug, Clone)]
pub struct StagedFile {
    pub name: String,
    pub size: u64,
    pub sha256: Digest,
    /// Where the bytes are now: a staging path, or the blob itself.
    pub path: PathBuf,
    pub in_store: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum StageError {
    #[error("`{file}` failed verification: expected {expected}, got {actual}")]
    Integrity { file: String, expected: String, actual: String },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Hub(#[from] crate::hub::HubError),
}

impl StageError {
    /// Worth another try: the hub's transient failures, and bytes that failed
    /// verification (deleted, so the next try downloads them afresh).
    pub fn is_transient(&self) -> bool {
        match self {
            StageError::Integrity { .. } => true,
            StageError::Hub(e) => e.is_transient(),
            StageError::Store(_) => false,
        }
    }

    pub fn hint(&self) -> Option<String> {
        match self {
            StageError::Integrity { .. } => Some("the bad bytes were deleted; pull again to download them afresh".into()),
            StageError::Store(e) => e.hint(),
            StageError::Hub(e) => e.hint(),
        }
    }
}

/// Where a hub download comes from.
pub struct Remote<'a> {
    pub hub: &'a Hub,
    pub repo: &'a ModelName,
    pub commit: &'a str,
    pub resilience: Resilience,
}

/// Downloads (or reuses) each file and checks size and sha256 against the listing.
pub fn from_hub(remote: &Remote<'_>, store: &Store, files: &[RemoteFile], reporter: &dyn PullReporter) -> Result<Vec<StagedFile>, StageError> {
    files.iter().map(|file| stage_remote(remote, store, file, reporter)).collect()
}

/// One file, retried with doubling delays while failures look transient
/// (server errors, rate limits, dropped connections, bytes that failed
/// verification and were deleted). Each retry resumes what is on disk.
fn stage_remote(remote: &Remote<'_>, store: &Store, file: &RemoteFile, reporter: &dyn PullReporter) -> Result<StagedFile, StageError> {
    if let Some(digest) = file.sha256.filter(|d| store.has_blob(d)) {
        return reuse(store, &file.name, digest);
    }
    let attempts = remote.resilience.attempts.max(1);
    let mut delay = remote.resilience.retry_delay;
    for attempt in 1.. {
        match download_verified(remote, file, reporter) {
            Err(e) if attempt < attempts && e.is_transient() => {
                reporter.event(PullEvent::Retrying { file: &file.name, attempt: attempt + 1, attempts, reason: &e.to_string() });
                std::thread::sleep(delay);
                delay = delay.saturating_mul(2);
            }
            outcome => return outcome,
        }
    }
    unreachable!("the loop returns by the last attempt")
}

fn download_verified(remote: &Remote<'_>, file: &RemoteFile, reporter: &dyn DownloadReporter) -> Result<StagedFile, StageError> {
    let path = remote.hub.download(remote.repo, remote.commit, file, reporter)?;
    let (sha256, size) = hash_file(&path).map_err(io_err("read", &path))?;
    let staged = StagedFile { name: file.name.clone(), size, sha256, path, in_store: false };
    verify(&staged, file)?;
    Ok(staged)
}

fn reuse(store: &Store, name: &str, digest: Digest) -> Result<StagedFile, StageError> {
    let path = store.blob_path(&digest);
    let size = fs::metadata(&path).map_err(io_err("read", &path))?.len();
    Ok(StagedFile { name: name.into(), size, sha256: digest, path, in_store: true })
}

/// Deletes the file and fails when it is not what the hub promised: its
/// sha256 (LFS files), else its git blob id, and its size.
fn verify(staged: &StagedFile, promised: &RemoteFile) -> Result<(), StageError> {
    let git_oid = match (&promised.git_oid, promised.sha256) {
        (Some(_), None) => Some(git_blob_id(&staged.path).map_err(io_err("read", &staged.path))?),
        _ => None,
    };
    let mismatch = if let Some(expected) = promised.sha256.filter(|d| *d != staged.sha256) {
        Some((format!("sha256 {expected}"), format!("sha256 {}", staged.sha256)))
    } else if let (Some(expected), Some(actual)) = (&promised.git_oid, &git_oid)
        && expected != actual
    {
        Some((format!("git blob {expected}"), format!("git blob {actual}")))
    } else {
        promised.size.filter(|s| *s != staged.size).map(|expected| (format!("{expected} bytes"), format!("{} bytes", staged.size)))
    };
    let Some((expected, actual)) = mismatch else { return Ok(()) };
    let _ = fs::remove_file(&staged.path);
    Err(StageError::Integrity { file: staged.name.clone(), expected, actual })
}

/// Copies local files into `staging`, hashing them on the way.
pub fn from_local(dir: &Path, names: &[String], staging: &Path) -> Result<Vec<StagedFile>, StageError> {
    names.iter().map(|name| copy_one(&dir.join(name), name, staging)).collect()
}

fn copy_one(source: &Path, name: &str, staging: &Path) -> Result<StagedFile, StageError> {
    let target = staging.join(crate::store::atomic::unique_name("import"));
    let mut from = File::open(source).map_err(io_err("read", source))?;
    let mut to = File::create(&target).map_err(io_err("write", &target))?;
    let (sha256, size) = copy_hashing(&mut from, &mut to).map_err(io_err("copy", source))?;
    Ok(StagedFile { name: name.into(), size, sha256, path: target, in_store: false })
}
