//! Getting a model's files onto local disk, verified: downloaded from the
//! hub (resuming partial downloads) or copied from a local path. Files whose
//! blob is already in the store are not fetched again.

use std::fs::{self, File};
use std::path::{Path, PathBuf};

use super::PullReporter;
use super::retry::with_retries;
use crate::exit::{Diagnostic, ExitStatus};
use crate::hub::{CommitId, DownloadProgress, DownloadReporter, Hub, RemoteFile, Resilience, Retry};
use crate::store::blobs::{Digest, copy_hashing, git_blob_id, hash_file};
use crate::store::pins::Pinned;
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
    #[error("the hub lists no checksum for `{file}` in `{repo}`, so it cannot be verified")]
    NoChecksum { repo: String, file: String },
    #[error("the import was interrupted")]
    Interrupted,
}

impl StageError {
    /// Worth another try: the hub's transient failures, and bytes that failed
    /// verification (deleted, so the next try downloads them afresh).
    pub fn retry(&self) -> Retry {
        match self {
            StageError::Integrity { .. } => Retry::Backoff,
            StageError::Hub(e) => e.retry(),
            StageError::Store(_) | StageError::NoChecksum { .. } | StageError::Interrupted => Retry::Never,
        }
    }
}

impl Diagnostic for StageError {
    fn exit_status(&self) -> ExitStatus {
        match self {
            StageError::Interrupted => ExitStatus::Interrupted,
            _ => ExitStatus::Failure,
        }
    }

    fn hint(&self) -> Option<String> {
        match self {
            StageError::Integrity { .. } => {
                Some("the bad bytes were deleted; pull again to download them afresh".into())
            }
            StageError::Store(e) => e.hint(),
            StageError::Hub(e) => e.hint(),
            StageError::NoChecksum { .. } => {
                Some("the hub is not answering as the Hugging Face Hub does; check `HF_ENDPOINT`".into())
            }
            StageError::Interrupted => Some("nothing was stored; run the same command again".into()),
        }
    }
}

/// Where a hub download comes from.
pub struct Remote<'a> {
    pub hub: &'a Hub,
    pub repo: &'a ModelName,
    pub commit: &'a CommitId,
    pub resilience: Resilience,
}

/// Downloads (or reuses) each file and checks size and checksum against the listing.
/// Files whose blob `pinned` holds are reused, not fetched.
pub fn from_hub(
    remote: &Remote<'_>,
    store: &Store,
    pinned: &Pinned,
    files: &[RemoteFile],
    reporter: &dyn PullReporter,
) -> Result<Vec<StagedFile>, StageError> {
    files.iter().map(|file| stage_remote(remote, store, pinned, file, reporter)).collect()
}

/// One file, retried while failures look transient (server errors, rate
/// limits, dropped or stalled connections, bytes that failed verification
/// and were deleted). Each retry resumes what is on disk.
fn stage_remote(
    remote: &Remote<'_>,
    store: &Store,
    pinned: &Pinned,
    file: &RemoteFile,
    reporter: &dyn PullReporter,
) -> Result<StagedFile, StageError> {
    if let Some(digest) = file.sha256.filter(|d| pinned.contains(d)) {
        return reuse(store, &file.name, digest);
    }
    let part = store.downloads_dir().join(partial_name(remote.repo, file)?);
    with_retries(&remote.resilience, &file.name, reporter, StageError::retry, || {
        download_verified(remote, file, &part, reporter)
    })
}

/// The partial file's name: the repository (a validated name) and the
/// checksum the listing gave (validated hex); no server-sent text reaches
/// it. One per repository, so that concurrent pulls never share one: pulls
/// of one repository take turns on its pull lock.
fn partial_name(repo: &ModelName, file: &RemoteFile) -> Result<String, StageError> {
    match (file.sha256, file.git_oid) {
        (Some(sha256), _) => Ok(format!("{}.{}.part", repo.flat(), sha256.file_name())),
        (None, Some(oid)) => Ok(format!("{}.git-{oid}.part", repo.flat())),
        (None, None) => Err(StageError::NoChecksum { repo: repo.to_string(), file: file.name.clone() }),
    }
}

fn download_verified(
    remote: &Remote<'_>,
    file: &RemoteFile,
    part: &Path,
    reporter: &dyn DownloadReporter,
) -> Result<StagedFile, StageError> {
    remote.hub.download(remote.repo, remote.commit, file, part, reporter)?;
    let (sha256, size) = hash_file(part).map_err(io_err("read", part))?;
    let staged = StagedFile { name: file.name.clone(), size, sha256, path: part.to_path_buf(), in_store: false };
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
    let git_oid = match (promised.git_oid, promised.sha256) {
        (Some(_), None) => Some(git_blob_id(&staged.path).map_err(io_err("read", &staged.path))?),
        _ => None,
    };
    let mismatch = if let Some(expected) = promised.sha256.filter(|d| *d != staged.sha256) {
        Some((format!("sha256 {expected}"), format!("sha256 {}", staged.sha256)))
    } else if let (Some(expected), Some(actual)) = (promised.git_oid, git_oid)
        && expected != actual
    {
        Some((format!("git blob {expected}"), format!("git blob {actual}")))
    } else {
        promised
            .size
            .filter(|s| *s != staged.size)
            .map(|expected| (format!("{expected} bytes"), format!("{} bytes", staged.size)))
    };
    let Some((expected, actual)) = mismatch else { return Ok(()) };
    let _ = fs::remove_file(&staged.path);
    Err(StageError::Integrity { file: staged.name.clone(), expected, actual })
}

/// Copies local files (name, path) into `staging`, hashing them on the
/// way and reporting progress as downloads do; stops at an interrupt
/// (`crate::interrupt`), leaving the staging area for its owner to remove.
pub fn from_local(
    sources: &[(String, PathBuf)],
    staging: &Path,
    reporter: &dyn DownloadReporter,
) -> Result<Vec<StagedFile>, StageError> {
    sources.iter().map(|(name, path)| copy_one(path, name, staging, reporter)).collect()
}

fn copy_one(
    source: &Path,
    name: &str,
    staging: &Path,
    reporter: &dyn DownloadReporter,
) -> Result<StagedFile, StageError> {
    let target = staging.join(crate::store::atomic::unique_name("import"));
    let file = File::open(source).map_err(io_err("read", source))?;
    let size = file.metadata().map_err(io_err("read", source))?.len();
    let mut progress = reporter.start(name, Some(size));
    progress.restart(size, 0);
    let mut from = Reporting { inner: Interruptible(file), progress: progress.as_mut() };
    let mut to = File::create(&target).map_err(io_err("write", &target))?;
    let copied = copy_hashing(&mut from, &mut to);
    progress.finish();
    if crate::interrupt::requested() {
        return Err(StageError::Interrupted);
    }
    let (sha256, size) = copied.map_err(io_err("copy", source))?;
    Ok(StagedFile { name: name.into(), size, sha256, path: target, in_store: false })
}

/// A reader that tells `progress` of the bytes it reads.
struct Reporting<'a, R> {
    inner: R,
    progress: &'a mut dyn DownloadProgress,
}

impl<R: std::io::Read> std::io::Read for Reporting<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.progress.advance(n as u64);
        Ok(n)
    }
}

/// A reader that fails once an interrupt has been requested.
struct Interruptible<R>(R);

impl<R: std::io::Read> std::io::Read for Interruptible<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if crate::interrupt::requested() {
            return Err(std::io::Error::other("interrupted"));
        }
        self.0.read(buf)
    }
}
