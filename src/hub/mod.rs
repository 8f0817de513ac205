//! Talking to a Hugging Face-compatible hub: repository listings and file
//! downloads, over llmctl's own HTTP agent (ureq, the client hf-hub is built
//! on). hf-hub supplies the hub's URL conventions (API paths, revision
//! escaping); llmctl makes every request and writes every byte itself, into
//! paths the caller builds from validated values. Nothing a server sends
//! (headers, names, ids) becomes a path: listings are validated in
//! [`listing`] before anything else sees them, and file bodies go to the
//! partial file the caller names.
//!
//! Every request is bounded: connect, read and write timeouts of the stall
//! time, at most [`listing::MAX_LISTING_BYTES`] of listing, at most the
//! listed size of a file. Retrying is the caller's choice, by
//! [`HubError::retry`].

mod download;
mod errors;
mod listing;
mod progress;
pub mod revision;

use std::io::Read;
use std::path::Path;
use std::time::Duration;

use hf_hub::{Repo, RepoType};

pub use errors::{HubError, MAX_RETRY_AFTER, Retry};
pub use listing::{RemoteFile, RepoListing, is_safe_repo_path};
pub use progress::{DownloadProgress, DownloadReporter};
pub use revision::{CommitId, Revision, RevisionError};

use crate::ids::ModelName;
use errors::Context;

/// Where the hub is and who we are to it.
#[derive(Debug, Clone)]
pub struct HubConfig {
    pub endpoint: String,
    /// Sent as a bearer token; never printed or stored.
    pub token: Option<String>,
    /// `HF_HUB_OFFLINE`: no request is made at all.
    pub offline: bool,
    pub resilience: Resilience,
}

/// How requests meet a flaky network.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Resilience {
    /// Tries per request, the first included.
    pub attempts: u32,
    /// Wait before the first retry; doubled before each next one.
    pub retry_delay: Duration,
    /// Connecting, or waiting for the next byte, for longer than this fails
    /// the request as stalled.
    pub stall_after: Duration,
}

impl Default for Resilience {
    fn default() -> Resilience {
        Resilience { attempts: 4, retry_delay: Duration::from_millis(500), stall_after: Duration::from_secs(60) }
    }
}

pub struct Hub {
    agent: ureq::Agent,
    endpoint: String,
    token: Option<String>,
    stall_after: Duration,
}

/// Redirects followed per request: the hub sends LFS files to its CDN with
/// one, a renamed repository adds another.
const MAX_REDIRECTS: u32 = 5;

impl Hub {
    pub fn new(config: &HubConfig) -> Result<Hub, HubError> {
        if config.offline {
            return Err(HubError::Offline);
        }
        let stall = config.resilience.stall_after;
        let agent = ureq::AgentBuilder::new()
            .timeout_connect(stall)
            .timeout_read(stall)
            .timeout_write(stall)
            .redirects(MAX_REDIRECTS)
            // The token goes to the hub's own host only, never to its CDN.
            .redirect_auth_headers(ureq::RedirectAuthHeaders::SameHost)
            .user_agent(concat!("llmctl/", env!("CARGO_PKG_VERSION")))
            .try_proxy_from_env(true)
            .build();
        Ok(Hub { agent, endpoint: config.endpoint.clone(), token: config.token.clone(), stall_after: stall })
    }

    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    fn get(&self, url: &str) -> ureq::Request {
        let request = self.agent.get(url);
        match &self.token {
            Some(token) => request.set("Authorization", &format!("Bearer {token}")),
            None => request,
        }
    }

    fn context<'a>(&'a self, repo: &'a ModelName, revision: &'a str, file: Option<&'a str>) -> Context<'a> {
        Context { repo: repo.as_str(), revision, file, endpoint: &self.endpoint, token_sent: self.token.is_some() }
    }

    /// Lists the repository's files at `revision`, validated (one request).
    pub fn listing(&self, repo: &ModelName, revision: &Revision) -> Result<RepoListing, HubError> {
        let path = Repo::with_revision(repo.to_string(), RepoType::Model, revision.to_string()).api_url();
        debug_assert!(path.ends_with(&revision.url_segment()), "hf-hub escapes revisions as we do");
        let url = format!("{}/api/{path}?blobs=true", self.endpoint);
        let ctx = self.context(repo, revision.as_str(), None);
        let response = self.get(&url).call().map_err(|e| ctx.error(e, self.stall_after))?;
        let bad = |reason: String| HubError::BadListing { repo: repo.to_string(), reason };
        let mut body = Vec::new();
        response
            .into_reader()
            .take(listing::MAX_LISTING_BYTES + 1)
            .read_to_end(&mut body)
            .map_err(|e| ctx.read_error(e, self.stall_after))?;
        if body.len() as u64 > listing::MAX_LISTING_BYTES {
            return Err(bad(format!("it is larger than {} MiB", listing::MAX_LISTING_BYTES >> 20)));
        }
        let raw: listing::RawListing =
            serde_json::from_slice(&body).map_err(|e| bad(format!("the answer is not a repository listing ({e})")))?;
        raw.validate(repo, revision)
    }

    /// Downloads `file` of `repo` at `commit` into `part`, resuming from
    /// the bytes already there (one request). `file` must come from a
    /// validated listing: its name is a safe path and its size is known.
    pub fn download(
        &self,
        repo: &ModelName,
        commit: &CommitId,
        file: &RemoteFile,
        part: &Path,
        reporter: &dyn DownloadReporter,
    ) -> Result<(), HubError> {
        let commit = commit.to_string();
        let ctx = self.context(repo, &commit, Some(&file.name));
        let size = file.size.ok_or_else(|| HubError::BadListing {
            repo: repo.to_string(),
            reason: format!("`{}` has no size", file.name),
        })?;
        let url = format!("{}/{repo}/resolve/{commit}/{}", self.endpoint, encode_path(&file.name));
        let mut progress = reporter.start(&file.name, Some(size));
        download::fill(self.get(&url), &ctx, part, size, self.stall_after, progress.as_mut())
    }
}

/// Percent-encodes each segment of a repository path (keeping the `/`s).
fn encode_path(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for byte in path.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' | b'/' => out.push(byte as char),
            _ => out.push_str(&format!("%{byte:02X}")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repository_paths_are_percent_encoded_segment_by_segment() {
        assert_eq!(encode_path("onnx/model.onnx"), "onnx/model.onnx");
        assert_eq!(encode_path("a b/c#d?e%f+ü"), "a%20b/c%23d%3Fe%25f%2B%C3%BC");
    }

    #[test]
    fn offline_makes_no_client() {
        let config = HubConfig {
            endpoint: "http://127.0.0.1:9".into(),
            token: None,
            offline: true,
            resilience: Resilience::default(),
        };
        assert!(matches!(Hub::new(&config), Err(HubError::Offline)));
    }
}
