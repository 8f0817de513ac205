//! Talking to a Hugging Face-compatible hub: repository listings and file
//! downloads, through `hf-hub` 0.4 (blocking, ureq). Everything else in
//! llmctl sees only this module's types, so the client can be swapped.

mod errors;
mod progress;

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

use hf_hub::api::sync::{Api, ApiBuilder};
use hf_hub::{Repo, RepoType};
use serde::Deserialize;

pub use errors::HubError;
pub use progress::{DownloadProgress, DownloadReporter};

use crate::store::blobs::Digest;
use crate::store::manifest::is_plain_file_name;
use crate::store::reference::ModelName;

/// Where the hub is and who we are to it.
#[derive(Debug, Clone)]
pub struct HubConfig {
    pub endpoint: String,
    /// Sent as a bearer token; never printed or stored.
    pub token: Option<String>,
    /// Where partial downloads live until they complete (kept for resuming).
    pub download_dir: PathBuf,
    pub resilience: Resilience,
}

/// How downloads meet a flaky network.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Resilience {
    /// Tries per file, the first included.
    pub attempts: u32,
    /// Wait before the first retry; doubled before each next one.
    pub retry_delay: Duration,
    /// A transfer with no new byte for this long is abandoned as stalled.
    pub stall_after: Duration,
}

impl Default for Resilience {
    fn default() -> Resilience {
        Resilience { attempts: 4, retry_delay: Duration::from_millis(500), stall_after: Duration::from_secs(60) }
    }
}

/// A file in a repository listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteFile {
    pub name: String,
    pub size: Option<u64>,
    /// Given by the hub for LFS files only.
    pub sha256: Option<Digest>,
    /// The git blob id, for files outside LFS (whose only checksum it is).
    pub git_oid: Option<String>,
}

/// A repository at one commit.
#[derive(Debug, Clone)]
pub struct RepoListing {
    pub commit: String,
    pub files: Vec<RemoteFile>,
}

impl RepoListing {
    pub fn file(&self, name: &str) -> Option<&RemoteFile> {
        self.files.iter().find(|f| f.name == name)
    }
}

pub struct Hub {
    api: Api,
    endpoint: String,
    download_dir: PathBuf,
    stall_after: Duration,
}

/// How often a download's watcher looks for progress.
const STALL_CHECK: Duration = Duration::from_millis(100);

impl Hub {
    pub fn new(config: &HubConfig) -> Result<Hub, HubError> {
        let api = ApiBuilder::new()
            .with_endpoint(config.endpoint.clone())
            .with_cache_dir(config.download_dir.clone())
            .with_token(config.token.clone())
            .with_progress(false)
            .with_user_agent("llmctl", env!("CARGO_PKG_VERSION"))
            .build()
            .map_err(|e| HubError::from_api(e, &config.endpoint, "set up the hub client"))?;
        Ok(Hub {
            api,
            endpoint: config.endpoint.clone(),
            download_dir: config.download_dir.clone(),
            stall_after: config.resilience.stall_after,
        })
    }

    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// Lists the repository's files at its current `main` commit.
    pub fn listing(&self, repo: &ModelName) -> Result<RepoListing, HubError> {
        let api_repo = self.api.repo(Repo::model(repo.to_string()));
        let response = api_repo
            .info_request()
            .query("blobs", "true")
            .call()
            .map_err(|e| HubError::from_ureq(e, repo))?;
        let raw: RawListing = response.into_json().map_err(|e| HubError::BadListing {
            repo: repo.to_string(),
            reason: format!("the answer is not a repository listing ({e})"),
        })?;
        raw.validate(repo)
    }

    /// Downloads one file of `repo` at `commit`, resuming a partial download
    /// left by an earlier attempt; returns the downloaded file's path.
    /// Downloads `file` (resuming a partial download) on a worker thread
    /// while this one watches for progress: a transfer idle for longer than
    /// the stall timeout is abandoned with `HubError::Stalled` (the worker is
    /// left blocked on its socket and ends with the process; the partial file
    /// stays for the next pull to resume).
    pub fn download(
        &self,
        repo: &ModelName,
        commit: &str,
        file: &RemoteFile,
        reporter: &dyn DownloadReporter,
    ) -> Result<PathBuf, HubError> {
        let revision = Repo::with_revision(repo.to_string(), RepoType::Model, commit.to_string());
        let heartbeat = progress::Heartbeat::new();
        let progress = progress::Adapter::new(reporter.start(&file.name, file.size), heartbeat.clone());
        let (api, name) = (self.api.clone(), file.name.clone());
        let (done, result) = mpsc::channel();
        std::thread::spawn(move || {
            let _ = done.send(api.repo(revision).download_with_progress(&name, progress));
        });
        let pointer = loop {
            match result.recv_timeout(STALL_CHECK) {
                Ok(Err(hf_hub::api::sync::ApiError::IoError(e))) if e.kind() == std::io::ErrorKind::StorageFull => {
                    return Err(HubError::DiskFull { what: format!("{repo}/{}", file.name), dir: self.download_dir.clone() });
                }
                Ok(outcome) => break outcome.map_err(|e| HubError::from_api(e, repo.as_str(), &file.name))?,
                Err(mpsc::RecvTimeoutError::Timeout) if heartbeat.idle() > self.stall_after => {
                    return Err(HubError::Stalled { what: format!("{repo}/{}", file.name), idle: heartbeat.idle() });
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    return Err(HubError::Download { what: format!("{repo}/{}", file.name), detail: "the download thread died".into() });
                }
            }
        };
        std::fs::canonicalize(&pointer).map_err(|e| HubError::Io { path: pointer, source: e })
    }
}

pub fn forget_downloads(download_dir: &Path, repo: &ModelName) {
    let folder = Repo::model(repo.to_string()).folder_name();
    let _ = std::fs::remove_dir_all(download_dir.join(folder));
}

#[derive(Deserialize)]
struct RawListing {
    sha: String,
    siblings: Vec<RawSibling>,
}

#[derive(Deserialize)]
struct RawSibling {
    rfilename: String,
    #[serde(rename = "blobId")]
    blob_id: Option<String>,
    size: Option<u64>,
    lfs: Option<RawLfs>,
}

#[derive(Deserialize)]
struct RawLfs {
    sha256: String,
}

impl RawListing {
    fn validate(self, repo: &ModelName) -> Result<RepoListing, HubError> {
        let bad = |reason: String| HubError::BadListing { repo: repo.to_string(), reason };
        if self.sha.len() != 40 || !self.sha.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(bad(format!("commit `{}` is not a 40-digit hex id", self.sha.escape_debug())));
        }
        let mut files = Vec::with_capacity(self.siblings.len());
        for sibling in self.siblings {
            if !is_safe_repo_path(&sibling.rfilename) {
                return Err(bad(format!("file name `{}` is not a safe relative path", sibling.rfilename.escape_debug())));
            }
            let sha256 = match sibling.lfs {
                Some(lfs) => Some(lfs.sha256.parse().map_err(|e: crate::store::blobs::DigestError| bad(e.to_string()))?),
                None => None,
            };
            // For LFS files the blob id hashes the pointer, not the content.
            let git_oid = match (sha256, sibling.blob_id) {
                (None, Some(oid)) if oid.len() == 40 && oid.bytes().all(|b| b.is_ascii_hexdigit()) => Some(oid.to_ascii_lowercase()),
                (None, Some(oid)) => return Err(bad(format!("blob id `{}` of `{}` is not a 40-digit hex id", oid.escape_debug(), sibling.rfilename))),
                _ => None,
            };
            files.push(RemoteFile { name: sibling.rfilename, size: sibling.size, sha256, git_oid });
        }
        Ok(RepoListing { commit: self.sha.to_ascii_lowercase(), files })
    }
}

/// A repository path made of plain components (`dir/file` is fine, `../x` is not).
fn is_safe_repo_path(path: &str) -> bool {
    !path.is_empty() && path.split('/').all(is_plain_file_name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listing_paths_must_stay_inside_the_repository() {
        for bad in ["../x", "/etc/passwd", "a/../../b", "a\\b", "", ".git/config", "a//b", "x\u{1b}]0;pwn\u{7}"] {
            assert!(!is_safe_repo_path(bad), "{bad:?}");
        }
        assert!(is_safe_repo_path("onnx/model.onnx"));
    }
}
