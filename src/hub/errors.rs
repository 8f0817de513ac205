//! What can go wrong at the hub, said so that the user knows what happened
//! and what to do, and whether trying again may help.

use std::path::PathBuf;
use std::time::Duration;

use crate::env_vars::HF_HUB_OFFLINE;
use crate::exit::Diagnostic;

#[derive(Debug, thiserror::Error)]
pub enum HubError {
    #[error("`{HF_HUB_OFFLINE}` is set, so llmctl did not contact the hub")]
    Offline,
    #[error("repository `{repo}` was not found on the hub")]
    RepoNotFound { repo: String },
    #[error("`{repo}` has no branch, tag or commit `{revision}`")]
    RevisionNotFound { repo: String, revision: String },
    #[error("file `{file}` was not found in `{repo}`")]
    FileNotFound { repo: String, file: String },
    #[error("`{repo}` is a gated repository and the hub refused access (HTTP {status})")]
    Gated { repo: String, status: u16, page: String },
    #[error("the hub refused access to `{repo}` (HTTP {status})")]
    Unauthorized { repo: String, status: u16, token_sent: bool },
    #[error("the hub is rate-limiting requests for `{repo}` (HTTP 429){}", wait_note(*retry_after))]
    RateLimited { repo: String, retry_after: Option<Duration> },
    #[error("the hub answered HTTP {status} for `{what}`{}", wait_note(*retry_after))]
    Status { what: String, status: u16, retry_after: Option<Duration> },
    #[error("cannot reach the hub at `{endpoint}`: {detail}")]
    Network { endpoint: String, detail: String },
    #[error("the hub's listing of `{repo}` is unusable: {reason}")]
    BadListing { repo: String, reason: String },
    #[error("downloading `{what}` failed: {detail}")]
    Download { what: String, detail: String },
    #[error("the hub sent more than the {size} bytes it listed for `{what}`")]
    Overlong { what: String, size: u64 },
    #[error("the hub answered another part of `{what}` than was asked for ({detail})")]
    BadRange { what: String, detail: String },
    #[error("{what} stalled: no data for {:.1} s", idle.as_secs_f64())]
    Stalled { what: String, idle: Duration },
    #[error("no space left on the disk of `{}` while downloading `{what}`", dir.display())]
    DiskFull { what: String, dir: PathBuf },
    #[error("cannot write download file `{}`", path.display())]
    Io { path: PathBuf, source: std::io::Error },
}

fn wait_note(retry_after: Option<Duration>) -> String {
    retry_after
        .filter(|d| *d > MAX_RETRY_AFTER)
        .map(|d| format!("; it asks to wait {} s", d.as_secs()))
        .unwrap_or_default()
}

/// The longest `Retry-After` llmctl waits out within a pull; a server that
/// asks for more gets an error that says how long it asked for.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(60);

/// Whether, and after how long, the same request may succeed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retry {
    Never,
    /// After the usual doubling delay.
    Backoff,
    /// After the delay, but no sooner than the server asked (`Retry-After`).
    AtLeast(Duration),
}

impl HubError {
    /// Server trouble, rate limits, dropped or stalled connections and
    /// garbled transfers are worth another try; answers about the request
    /// (not found, refused, bad listing, full disk) are not.
    pub fn retry(&self) -> Retry {
        let after = |wait: &Option<Duration>| match wait {
            Some(d) if *d > MAX_RETRY_AFTER => Retry::Never,
            Some(d) => Retry::AtLeast(*d),
            None => Retry::Backoff,
        };
        match self {
            HubError::RateLimited { retry_after, .. } => after(retry_after),
            HubError::Status { status, retry_after, .. } if *status >= 500 || *status == 408 => after(retry_after),
            HubError::Network { .. }
            | HubError::Download { .. }
            | HubError::Stalled { .. }
            | HubError::Overlong { .. }
            | HubError::BadRange { .. } => Retry::Backoff,
            _ => Retry::Never,
        }
    }
}

impl Diagnostic for HubError {
    fn hint(&self) -> Option<String> {
        Some(match self {
            HubError::Offline => format!(
                "unset `{HF_HUB_OFFLINE}` to pull from the hub; models already in the store run without it, and `llmctl pull ./DIR` imports local files"
            ),
            HubError::RepoNotFound { .. } => {
                "check the spelling; a private repository also needs `HF_TOKEN` set to a token with access".into()
            }
            HubError::RevisionNotFound { .. } => {
                "check the spelling of `--revision`; without it llmctl pulls the `main` branch".into()
            }
            HubError::Gated { status: 401, page, .. } => format!(
                "accept the license at {page}, then set `HF_TOKEN` to a token of that account (or log in with `huggingface-cli login`)"
            ),
            HubError::Gated { page, .. } => {
                format!("the token's account has not been granted access: accept the license at {page} and pull again")
            }
            HubError::Unauthorized { token_sent: true, .. } => {
                "the token in `HF_TOKEN` (or from `huggingface-cli login`) was refused: check that it is valid and has access".into()
            }
            HubError::Unauthorized { .. } => "set `HF_TOKEN` to a token that has access to this repository".into(),
            HubError::RateLimited { .. } => "wait a while and pull again; partial downloads are kept".into(),
            HubError::Network { .. } => {
                "check the network, or point `HF_ENDPOINT` at a reachable mirror; partial downloads are kept".into()
            }
            HubError::DiskFull { dir, .. } => format!(
                "free space on that disk, or point `LLMCTL_HOME` at a store on a larger one; the partial download in `{}` is kept",
                dir.display()
            ),
            HubError::Overlong { .. } | HubError::BadRange { .. } => {
                "the partial file was deleted; if this repeats, the hub or a proxy in between is misbehaving".into()
            }
            HubError::Download { .. } | HubError::Status { .. } | HubError::Stalled { .. } => {
                "pull again: the download resumes from the bytes already received".into()
            }
            HubError::BadListing { .. } | HubError::FileNotFound { .. } | HubError::Io { .. } => return None,
        })
    }
}

/// What a request was about, to say so in its errors.
pub(super) struct Context<'a> {
    pub repo: &'a str,
    pub revision: &'a str,
    /// `None` for the listing.
    pub file: Option<&'a str>,
    pub endpoint: &'a str,
    pub token_sent: bool,
}

impl Context<'_> {
    pub(super) fn what(&self) -> String {
        match self.file {
            Some(file) => format!("{}/{file}", self.repo),
            None => self.repo.to_string(),
        }
    }

    /// Names the transfer in a "stalled" error.
    pub(super) fn transfer(&self) -> String {
        match self.file {
            Some(_) => format!("the download of `{}`", self.what()),
            None => format!("the listing of `{}`", self.repo),
        }
    }

    /// A body read that failed: stalled (the read timeout), or dropped.
    pub(super) fn read_error(&self, error: std::io::Error, stall_after: Duration) -> HubError {
        if is_timeout_io(&error) {
            return HubError::Stalled { what: self.transfer(), idle: stall_after };
        }
        HubError::Download { what: self.what(), detail: error.to_string() }
    }

    pub(super) fn error(&self, error: ureq::Error, stall_after: Duration) -> HubError {
        match error {
            ureq::Error::Status(status, response) => self.status_error(status, &response),
            ureq::Error::Transport(transport) => {
                if is_timeout(&transport) && transport.kind() == ureq::ErrorKind::Io {
                    return HubError::Stalled { what: self.transfer(), idle: stall_after };
                }
                // A redirect may have led elsewhere (the hub's CDN): name where it failed.
                let endpoint = transport.url().map(|u| u.origin().ascii_serialization());
                HubError::Network {
                    endpoint: endpoint.unwrap_or_else(|| self.endpoint.to_string()),
                    detail: transport_detail(&transport),
                }
            }
        }
    }

    /// The hub's `X-Error-Code` decides before the status does: the real
    /// hub answers a missing (or private) repository with 401 and
    /// `RepoNotFound`, a gated one with 401/403 and `GatedRepo`.
    pub(super) fn status_error(&self, status: u16, response: &ureq::Response) -> HubError {
        let code = response.header("x-error-code").unwrap_or_default();
        let repo = self.repo.to_string();
        let retry_after = retry_after(response);
        match (code, status, self.file) {
            ("GatedRepo", _, _) => HubError::Gated { repo, status, page: format!("{}/{}", self.endpoint, self.repo) },
            ("RepoNotFound", _, _) => HubError::RepoNotFound { repo },
            ("RevisionNotFound", _, _) => HubError::RevisionNotFound { repo, revision: self.revision.to_string() },
            ("EntryNotFound", _, Some(file)) | (_, 404, Some(file)) => {
                HubError::FileNotFound { repo, file: file.into() }
            }
            (_, 401 | 403, _) => HubError::Unauthorized { repo, status, token_sent: self.token_sent },
            (_, 404, None) => HubError::RepoNotFound { repo },
            (_, 429, _) => HubError::RateLimited { repo, retry_after },
            _ => HubError::Status { what: self.what(), status, retry_after },
        }
    }
}

/// `Retry-After` in seconds, the form the hub sends (an HTTP date is ignored).
fn retry_after(response: &ureq::Response) -> Option<Duration> {
    response.header("retry-after")?.trim().parse::<u64>().ok().map(Duration::from_secs)
}

fn is_timeout(transport: &ureq::Transport) -> bool {
    std::error::Error::source(transport).and_then(|e| e.downcast_ref::<std::io::Error>()).is_some_and(is_timeout_io)
}

/// How a socket read timeout shows (`WouldBlock` on Unix, `TimedOut` elsewhere).
fn is_timeout_io(error: &std::io::Error) -> bool {
    matches!(error.kind(), std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock)
}

/// ureq's own words, without the URL (which may carry a signed query).
fn transport_detail(transport: &ureq::Transport) -> String {
    let source = std::error::Error::source(transport).map(|e| format!(": {e}")).unwrap_or_default();
    format!("{}{source}", transport.kind())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_beyond_the_limit_is_said_and_not_waited_for() {
        let long = HubError::RateLimited { repo: "o/m".into(), retry_after: Some(Duration::from_secs(3600)) };
        assert_eq!(long.retry(), Retry::Never);
        assert_eq!(long.to_string(), "the hub is rate-limiting requests for `o/m` (HTTP 429); it asks to wait 3600 s");
        let short = HubError::Status { what: "o/m".into(), status: 503, retry_after: Some(Duration::from_secs(2)) };
        assert_eq!(short.retry(), Retry::AtLeast(Duration::from_secs(2)));
        assert_eq!(short.to_string(), "the hub answered HTTP 503 for `o/m`");
        let not_found = HubError::Status { what: "o/m".into(), status: 410, retry_after: None };
        assert_eq!(not_found.retry(), Retry::Never);
    }
}
