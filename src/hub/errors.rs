//! Turning `hf-hub`/`ureq` failures into errors that say what happened at
//! the hub and what the user can do about it.

use std::path::PathBuf;

use hf_hub::api::sync::ApiError;

use crate::store::reference::ModelName;

#[derive(Debug, thiserror::Error)]
pub enum HubError {
    #[error("repository `{repo}` was not found on the hub")]
    RepoNotFound { repo: String },
    #[error("file `{file}` was not found in `{repo}`")]
    FileNotFound { repo: String, file: String },
    #[error("the hub refused access to `{repo}` (HTTP {status})")]
    Unauthorized { repo: String, status: u16 },
    #[error("the hub is rate-limiting requests for `{repo}` (HTTP 429)")]
    RateLimited { repo: String },
    #[error("the hub answered HTTP {status} for `{what}`")]
    Status { what: String, status: u16 },
    #[error("cannot reach the hub at `{endpoint}`: {detail}")]
    Network { endpoint: String, detail: String },
    #[error("the hub's listing of `{repo}` is unusable: {reason}")]
    BadListing { repo: String, reason: String },
    #[error("downloading `{what}` failed: {detail}")]
    Download { what: String, detail: String },
    #[error("the download of `{what}` stalled: no data for {:.1} s", idle.as_secs_f64())]
    Stalled { what: String, idle: std::time::Duration },
    #[error("no space left on the disk of `{}` while downloading `{what}`", dir.display())]
    DiskFull { what: String, dir: PathBuf },
    #[error("cannot write download file `{}`", path.display())]
    Io { path: PathBuf, source: std::io::Error },
}

impl HubError {
    /// Whether trying the same download again may succeed: server trouble,
    /// rate limits and dropped connections, not answers about the request.
    pub fn is_transient(&self) -> bool {
        match self {
            HubError::RateLimited { .. } | HubError::Network { .. } | HubError::Download { .. } => true,
            HubError::Status { status, .. } => *status >= 500 || *status == 408,
            _ => false,
        }
    }

    pub fn hint(&self) -> Option<String> {
        Some(match self {
            HubError::RepoNotFound { .. } => {
                "check the name; private or gated repositories need `HF_TOKEN` set to a token with access".into()
            }
            HubError::Unauthorized { .. } => "set `HF_TOKEN` to a token that has access to this repository".into(),
            HubError::RateLimited { .. } => "wait a minute and pull again; partial downloads are kept".into(),
            HubError::Network { .. } => {
                "check the network, or point `HF_ENDPOINT` at a reachable mirror; partial downloads are kept".into()
            }
            HubError::DiskFull { dir, .. } => format!(
                "free space on that disk, or point `LLMCTL_HOME` at a store on a larger one; the partial download in `{}` is kept",
                dir.display()
            ),
            HubError::Download { .. } | HubError::Status { .. } | HubError::Stalled { .. } => {
                "pull again: the download resumes from the bytes already received".into()
            }
            _ => return None,
        })
    }

    pub(super) fn from_ureq(error: ureq::Error, repo: &ModelName) -> HubError {
        status_error(error, repo.as_str(), None)
    }

    pub(super) fn from_api(error: ApiError, repo: &str, file: &str) -> HubError {
        match error {
            ApiError::RequestError(e) => status_error(*e, repo, Some(file)),
            // hf-hub reports a dropped connection and a full disk alike as I/O.
            ApiError::IoError(e) => HubError::Download { what: format!("{repo}/{file}"), detail: e.to_string() },
            ApiError::TooManyRetries(inner) => HubError::from_api(*inner, repo, file),
            other => HubError::Download { what: format!("{repo}/{file}"), detail: other.to_string() },
        }
    }
}

fn status_error(error: ureq::Error, repo: &str, file: Option<&str>) -> HubError {
    let repo = repo.to_string();
    match error {
        ureq::Error::Status(status, response) => {
            let code = response.header("x-error-code").unwrap_or_default().to_string();
            // The real hub answers a missing (or private) repository with 401
            // and this code, so the code decides before the status does.
            match (status, file) {
                (_, _) if code == "RepoNotFound" => HubError::RepoNotFound { repo },
                (401 | 403, _) => HubError::Unauthorized { repo, status },
                (404, Some(file)) => HubError::FileNotFound { repo, file: file.into() },
                (404, _) => HubError::RepoNotFound { repo },
                (429, _) => HubError::RateLimited { repo },
                (status, _) => {
                    HubError::Status { what: file.map_or(repo.clone(), |f| format!("{repo}/{f}")), status }
                }
            }
        }
        ureq::Error::Transport(transport) => {
            let endpoint = transport.url().map(|u| u.origin().ascii_serialization()).unwrap_or_default();
            HubError::Network { endpoint, detail: transport.kind().to_string() }
        }
    }
}
