//! `TestHub`: an in-process stand-in for the Hugging Face Hub, for integration tests.
//!
//! ```ignore
//! let hub = TestHub::start();
//! hub.add_repo("org/name", vec![("config.json".into(), b"{}".to_vec())]);
//! hub.set_fault("org/name", "config.json", Fault::DropAfter(1));
//! // point `llmctl` (HF_ENDPOINT) at `hub.url()`, then inspect `hub.requests()`
//! // and `hub.downloads("org/name", "config.json")`.
//! ```
//!
//! It owns a loopback HTTP/1.1 server (std `TcpListener`, one thread per connection)
//! and the repos, switches, faults and request log the tests configure on it. The
//! wire format lives in `hub/wire.rs`, repos and identifiers in `hub/repo.rs`, and
//! what each URL answers in `hub/routes.rs`.
//!
//! # What it imitates of the real Hub
//!
//! * `GET /api/models/{repo}[/revision/{rev}][?blobs=true]`: the listing, with `_id`,
//!   `id`, `modelId`, `author`, `sha` (the commit the revision resolves to),
//!   `private: false`, `gated` (`false`, or `"manual"` for [`TestHub::set_gated`]),
//!   `disabled`, `tags`, `downloads`, `likes`, `lastModified`, `createdAt` and
//!   `siblings` sorted by name. With `blobs=true` each sibling carries `blobId` and
//!   `size`, and LFS files `lfs: {sha256, size, pointerSize}`. `{rev}` may be
//!   percent-encoded (`refs%2Fpr%2F1`) or not.
//! * `GET|HEAD /{repo}/resolve/{rev}/{path}`: a file. Path segments are
//!   percent-decoded, so `onnx/model.onnx` and `onnx%2Fmodel.onnx` both work; so do
//!   `refs%2Fpr%2F1` and a bare `refs/pr/1` as `{rev}`.
//!   * A plain (non-LFS) file answers 200 (206 for a range) directly, with
//!     `ETag: "<blobId>"` and `X-Repo-Commit`.
//!   * An LFS file answers `302 Found` with an empty body, `Location:` an absolute
//!     URL on this server, `/cdn-lfs/{repo}/{path, '/' as %2F}/{sha256}?X-Amz-...`
//!     (the query is decoration and ignored), and `X-Repo-Commit`,
//!     `X-Linked-Etag: "<sha256>"`, `X-Linked-Size`, `ETag: "<sha256>"`,
//!     `Accept-Ranges: bytes`. The CDN URL serves the bytes with `ETag`,
//!     `Content-Length`, `Accept-Ranges: bytes` and Range support, and no Hub headers.
//!     [`TestHub::set_redirects`]`(false)` serves LFS files directly instead (200/206
//!     from `resolve`, `ETag` = `X-Linked-Etag` = sha256, `X-Linked-Size`).
//!   * Ranges: one range per request (`bytes=A-B`, `bytes=A-`, `bytes=-N`), answered
//!     206 with `Content-Range`; past the end, or any range of a 0-byte file, is 416
//!     with `Content-Range: bytes */{size}` (RFC 9110, as CDNs do).
//! * Revisions: `main`, any branch or tag name given to [`TestHub::add_revision`]
//!   (`v1.0`, `dev`, `refs/pr/1`), or the full 40-hex commit id of any revision ever
//!   published on the repo (replacing `main` keeps older commits reachable by id, as
//!   git does). Anything else: 404 `X-Error-Code: RevisionNotFound`.
//! * Errors carry a JSON `{"error": ...}` body and the `X-Error-Code` /
//!   `X-Error-Message` headers clients key on: `RepoNotFound` (404, or 401 after
//!   [`TestHub::set_hide_missing`]), `RevisionNotFound` (404), `EntryNotFound` (404,
//!   with `X-Repo-Commit`), `GatedRepo` (401 without a token, 403 with the wrong one,
//!   with the Hub's messages).
//! * Every repo holds a `.gitattributes` ([`DEFAULT_GITATTRIBUTES`], the Hub's LFS
//!   rules) and a `README.md` unless the test's files include them; the commit id
//!   covers them. A file is LFS when a `filter=lfs` line of the repo's
//!   `.gitattributes` matches it (`*`, `?`, `**` globs; a pattern without `/` matches
//!   the file name in any folder), when it ends in `.safetensors` or `.gguf`, or when
//!   it is larger than 1 MiB.
//!
//! Identifiers: `blobId` and a plain file's `ETag` are real git blob ids (sha1 of
//! `"blob {len}\0"` + content; of the LFS pointer text for LFS files). The commit id is
//! 40 hex of a sha256 over the sorted file names and contents, so two revisions with
//! the same files share one commit (like a tag on a branch's head).
//!
//! # What it does not imitate
//!
//! * Only model repos (no `datasets/`, `spaces/`), no `/tree`, `/paths-info`,
//!   `/api/whoami`, upload or Xet endpoints; no short commit ids.
//! * The real Hub creates only `.gitattributes` with a repo; the default `README.md`
//!   is here because nearly every model repo has one.
//! * The real CDN is another host and checks only its URL's signature. Here it is the
//!   same host, and [`TestHub::require_token`] and [`TestHub::set_gated`] guard it as
//!   they guard `resolve`: a ureq client needs
//!   `redirect_auth_headers(RedirectAuthHeaders::SameHost)` (ureq 2's default drops
//!   `Authorization` on every redirect), and one that never sends the token after a
//!   redirect fails here against a gated repo but not on the Hub.
//! * Redirect bodies are empty (the Hub sends a short text); the Hub's 302 `ETag`
//!   may differ from `X-Linked-Etag` (clients must prefer `X-Linked-Etag`).
//! * [`TestHub::require_token`] guards every request, public or not (401
//!   `Invalid credentials in Authorization header`).
//! * Connections: every response carries `Connection: close` and the server closes
//!   after it (no keep-alive), so no pooled-connection reuse can race a server close.
//!   Responses have an exact `Content-Length` unless a fault says otherwise.
//! * Odd requests get a 400 (malformed request or `Range`) or 405 (a method other
//!   than GET/HEAD); a multi-range request gets the full body (200).
//!
//! # Switches
//!
//! Settings, kept by [`TestHub::clear_faults`]: [`TestHub::require_token`],
//! [`TestHub::set_gated`], [`TestHub::set_hide_missing`], [`TestHub::set_redirects`],
//! [`TestHub::set_listing_override`]. Faults, removed by `clear_faults`:
//! [`TestHub::set_fault`] (one [`Fault`] per file, on the request that carries the
//! bytes: the CDN leg of a redirected LFS file, `resolve` otherwise),
//! [`TestHub::set_header_override`] / [`TestHub::remove_header`] (any number per
//! file, on every `resolve` and CDN answer for it, redirects and errors included,
//! but not `require_token`'s 401), and [`TestHub::set_listing_fault`] (one
//! [`ListingFault`] per repo).

mod repo;
mod routes;
mod wire;

use std::collections::HashMap;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use serde_json::Value;

pub use repo::DEFAULT_GITATTRIBUTES;
use repo::Repo;

/// Proxy variables that ureq 2 (hence hf-hub's blocking client) obeys. ureq 2 has no
/// `NO_PROXY` support, so with any of these set even requests to 127.0.0.1 go to the
/// proxy and the tests fail: remove them from the environment of a spawned `llmctl`.
#[allow(dead_code)]
pub const PROXY_ENV_VARS: [&str; 6] =
    ["ALL_PROXY", "all_proxy", "HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy"];

/// A fault injected into the byte transfers of one file (see [`TestHub::set_fault`]).
///
/// A "download" is a GET of the file's bytes that is not the `Range: bytes=0-0`
/// metadata probe: the CDN request of a redirected LFS file, the `resolve` request
/// otherwise (never the 302 itself). Unless stated, faults affect downloads only,
/// never the probe, HEAD or the redirect.
#[allow(dead_code)]
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Send the headers and this many bytes of the response body (counted from the
    /// start of this response, not the file), then close the connection. Applies to
    /// one download, then the fault is gone.
    DropAfter(u64),
    /// Flip (xor 0xFF) the byte at this absolute file offset in every body served,
    /// the probe's one byte included. Stays until cleared.
    CorruptByteAt(u64),
    /// Answer the next `times` downloads with this status and a JSON error body
    /// (`Retry-After: 0` is added for 429 and 503). The code is sent verbatim.
    Status { code: u16, times: u32 },
    /// Like `Status`, always with `Retry-After: {seconds}`, whatever the code.
    StatusRetryAfter { code: u16, times: u32, seconds: u64 },
    /// Like `Status`, but for the next `times` metadata probes instead of downloads.
    ProbeStatus { code: u16, times: u32 },
    /// Answer 200 with the full body even when a range was asked. Stays until cleared.
    IgnoreRange,
    /// Answer a range that starts past 0 with 206 and the bytes from offset 0, with a
    /// truthful `Content-Range: bytes 0-{last}/{size}` (not the offset asked). A
    /// range from 0 is served normally. Stays until cleared.
    BadContentRange,
    /// Send the headers, then sleep this long before the body. Stays until cleared.
    Delay(Duration),
    /// After the bytes asked for, send `extra` more zero bytes: the body is longer than
    /// the listed size and than `Content-Range` says. With `content_length` the
    /// `Content-Length` counts them (a lie about the file, true about the body);
    /// without, there is none and the body ends when the server closes. Stays until
    /// cleared.
    OverlongBody { extra: u64, content_length: bool },
    /// After the bytes asked for, zero bytes without end and no `Content-Length`,
    /// until the client goes away or the hub is dropped (memory stays bounded). A
    /// client that never stops hangs its test: `OverlongBody` with a large `extra`
    /// turns that into a failure. Stays until cleared.
    EndlessBody,
    /// Send the headers, then wait until the test opens the gate (at most a minute)
    /// before the body. Stays until cleared.
    Hold(Gate),
}

/// Where a held download waits ([`Fault::Hold`]): the test sees when a client has
/// reached it and decides when it opens.
#[derive(Clone, Default)]
pub struct Gate(Arc<(Mutex<GateState>, std::sync::Condvar)>);

#[derive(Default)]
struct GateState {
    reached: bool,
    open: bool,
}

#[allow(dead_code)]
impl Gate {
    /// Waits until a download has reached the gate; false after `timeout`.
    pub fn wait_reached(&self, timeout: Duration) -> bool {
        let (state, changed) = &*self.0;
        let guard = state.lock().unwrap();
        !changed.wait_timeout_while(guard, timeout, |s| !s.reached).unwrap().1.timed_out()
    }

    /// Lets every held download (and all later ones) through.
    pub fn open(&self) {
        let (state, changed) = &*self.0;
        state.lock().unwrap().open = true;
        changed.notify_all();
    }

    /// Called by the server: marks the gate reached and waits for it to open.
    fn pass(&self) {
        let (state, changed) = &*self.0;
        let mut guard = state.lock().unwrap();
        guard.reached = true;
        changed.notify_all();
        let _ = changed.wait_timeout_while(guard, Duration::from_secs(60), |s| !s.open).unwrap();
    }
}

impl std::fmt::Debug for Gate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Gate")
    }
}

impl PartialEq for Gate {
    fn eq(&self, other: &Gate) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for Gate {}

/// A fault injected into the listing of one repo (see [`TestHub::set_listing_fault`]).
#[allow(dead_code)]
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ListingFault {
    /// Answer the next `times` listing requests with this status and a JSON error
    /// body, with `Retry-After: N` when given. The code is sent verbatim.
    Status { code: u16, times: u32, retry_after: Option<u64> },
    /// Read the request, then never answer: the connection stays open until the client
    /// closes it or the hub is dropped (the thread polls, so drop is not held up).
    /// Logged with status 0. Stays until cleared.
    Hang,
}

/// One request as the server saw it, in arrival order.
#[allow(dead_code)]
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestRecord {
    /// `GET`, `HEAD`, ...; empty when the request line could not be parsed.
    pub method: String,
    /// The request target as sent (still percent-encoded, query included).
    pub path: String,
    /// The `Range` header, verbatim.
    pub range: Option<String>,
    /// The `Authorization` header, verbatim (e.g. `Bearer hf_x`).
    pub authorization: Option<String>,
    /// The status code we answered; 0 for a request left unanswered
    /// ([`ListingFault::Hang`]).
    pub status: u16,
}

/// The fake Hub. The server runs until this value is dropped.
#[allow(dead_code)]
pub struct TestHub {
    addr: SocketAddr,
    shared: Arc<Shared>,
    /// In a Mutex only so that `&TestHub` is `RefUnwindSafe` (usable in `catch_unwind`).
    accept_thread: Mutex<Option<JoinHandle<()>>>,
}

#[allow(dead_code)]
impl TestHub {
    /// Binds 127.0.0.1 on an OS-chosen port and starts serving (no repos yet).
    pub fn start() -> TestHub {
        let listener = TcpListener::bind(("127.0.0.1", 0)).expect("TestHub: bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("TestHub: local_addr");
        let shared = Arc::new(Shared {
            url: format!("http://{addr}"),
            state: Mutex::default(),
            stopping: AtomicBool::new(false),
        });
        let accept_shared = Arc::clone(&shared);
        let accept_thread = thread::Builder::new()
            .name("test-hub-accept".into())
            .spawn(move || wire::accept_loop(listener, &accept_shared))
            .expect("TestHub: spawn accept thread");
        TestHub { addr, shared, accept_thread: Mutex::new(Some(accept_thread)) }
    }

    /// The endpoint, e.g. `http://127.0.0.1:40123` (what `HF_ENDPOINT` takes).
    pub fn url(&self) -> String {
        self.shared.url.clone()
    }

    /// Publishes a model repo, or a new `main` of an existing one (its other branches
    /// and tags stay, and its older commits stay reachable by id). A later duplicate
    /// file name wins. Faults, switches and listing overrides for the id are kept.
    pub fn add_repo(&self, repo_id: &str, files: Vec<(String, Vec<u8>)>) {
        let mut state = self.state();
        let repo = state.repos.entry(repo_id.to_string()).or_insert_with(|| Repo::new(repo_id));
        repo.publish(repo_id, "main", files);
    }

    /// Publishes another commit of an existing repo under a branch or tag name
    /// (`v1.0`, `dev`, `refs/pr/1`; `main` is the same as [`TestHub::add_repo`]).
    /// Panics when the repo does not exist.
    pub fn add_revision(&self, repo_id: &str, name: &str, files: Vec<(String, Vec<u8>)>) {
        let mut state = self.state();
        let repo = state.repos.get_mut(repo_id).unwrap_or_else(|| panic!("TestHub::add_revision: no repo `{repo_id}`"));
        repo.publish(repo_id, name, files);
    }

    /// The commit id of `main` of a published repo, for asserting snapshot paths.
    pub fn commit(&self, repo_id: &str) -> Option<String> {
        self.commit_of(repo_id, "main")
    }

    /// The commit id a revision (branch, tag or commit id) resolves to.
    pub fn commit_of(&self, repo_id: &str, revision: &str) -> Option<String> {
        let state = self.state();
        let snapshot = state.repos.get(repo_id)?.snapshot(revision)?;
        Some(snapshot.commit.clone())
    }

    /// From now on every request must carry `Authorization: Bearer <token>`, or it
    /// gets 401 `{"error":"Invalid credentials in Authorization header"}`.
    pub fn require_token(&self, token: &str) {
        self.state().token = Some(token.to_string());
    }

    /// Gates `repo_id`: its listing stays public (with `"gated": "manual"`), but its
    /// `resolve` and CDN requests need `Authorization: Bearer <token>`: without one
    /// they get 401, with another token 403, both `X-Error-Code: GatedRepo` with the
    /// Hub's messages.
    pub fn set_gated(&self, repo_id: &str, token: &str) {
        let gate = (repo_id.to_string(), token.to_string());
        self.state().gated.insert(gate.0, gate.1);
    }

    /// With `true`, an unknown repo is answered as the Hub answers an anonymous
    /// client (which cannot tell missing from private): 401 `RepoNotFound`
    /// "Repository not found". Default `false`: 404 `RepoNotFound`.
    pub fn set_hide_missing(&self, hide: bool) {
        self.state().hide_missing = hide;
    }

    /// With `false`, LFS files are served directly by `resolve` (200/206) instead of
    /// through a 302 to the CDN path. Default `true`.
    pub fn set_redirects(&self, on: bool) {
        self.state().lfs_direct = !on;
    }

    /// Sets the fault for one file, replacing any earlier fault for it.
    pub fn set_fault(&self, repo_id: &str, filename: &str, fault: Fault) {
        let key = (repo_id.to_string(), filename.to_string());
        self.state().faults.insert(key, fault);
    }

    /// Sets header `name` to `value` on every `resolve` and CDN answer for this file
    /// (redirects, errors and 416s included), replacing a header of that name
    /// (case-insensitively) or adding one: `ETag`, `X-Repo-Commit`, `X-Linked-Etag`,
    /// `Location`, even `Content-Length`. Later calls for the same name win. Panics
    /// when `name` is not an HTTP token or `value` holds CR, LF or NUL.
    pub fn set_header_override(&self, repo_id: &str, filename: &str, name: &str, value: &str) {
        assert!(wire::is_token(name), "TestHub: `{name}` is not a header name");
        assert!(!value.contains(['\r', '\n', '\0']), "TestHub: a header value must be one line: {value:?}");
        self.add_header_override(repo_id, filename, name, Some(value.to_string()));
    }

    /// Leaves header `name` out of every `resolve` and CDN answer for this file.
    pub fn remove_header(&self, repo_id: &str, filename: &str, name: &str) {
        self.add_header_override(repo_id, filename, name, None);
    }

    /// Sets the fault for the listing of one repo (every revision, with or without
    /// `blobs`, overrides included), replacing any earlier one.
    pub fn set_listing_fault(&self, repo_id: &str, fault: ListingFault) {
        self.state().listing_faults.insert(repo_id.to_string(), fault);
    }

    /// Removes every fault, header override and listing fault (settings stay).
    pub fn clear_faults(&self) {
        let mut state = self.state();
        state.faults.clear();
        state.header_overrides.clear();
        state.listing_faults.clear();
    }

    /// Every request served so far, oldest first. A request is logged when its status
    /// is decided, before its body is sent.
    pub fn requests(&self) -> Vec<RequestRecord> {
        self.state().log.iter().map(|entry| entry.record.clone()).collect()
    }

    /// How many downloads of this file the server saw (see [`Fault`]): GETs of its
    /// bytes that passed the token, gate, revision and name checks, whether answered
    /// with the bytes or with an injected fault. Probes (`bytes=0-0`), HEADs and
    /// redirects are not counted.
    pub fn downloads(&self, repo_id: &str, filename: &str) -> usize {
        self.state()
            .log
            .iter()
            .filter(|entry| entry.download_of.as_ref().is_some_and(|(r, f)| r == repo_id && f == filename))
            .count()
    }

    /// Empties the request log.
    pub fn clear_requests(&self) {
        self.state().log.clear();
    }

    /// Answers the listing of `repo_id` (any revision, with or without `blobs`) with
    /// this raw JSON and 200, whether or not the repo exists. Resolve is unaffected.
    pub fn set_listing_override(&self, repo_id: &str, json: Value) {
        self.state().listing_overrides.insert(repo_id.to_string(), json);
    }

    fn add_header_override(&self, repo_id: &str, filename: &str, name: &str, value: Option<String>) {
        let key = (repo_id.to_string(), filename.to_string());
        let mut state = self.state();
        let overrides = state.header_overrides.entry(key).or_default();
        overrides.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
        overrides.push((name.to_string(), value));
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.shared.lock()
    }
}

impl Drop for TestHub {
    fn drop(&mut self) {
        self.shared.stopping.store(true, Ordering::SeqCst);
        // accept() blocks; one connection wakes it so it sees the flag. If that
        // connect fails we must not join, or drop would hang: the thread is left
        // blocked instead. Connection threads are not joined: they poll the flag.
        let woke = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1)).is_ok();
        let handle = self.accept_thread.get_mut().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(handle) = handle
            && woke
        {
            let _ = handle.join();
        }
    }
}

/// State shared by the handle and the server threads.
struct Shared {
    /// `http://127.0.0.1:{port}`, for absolute redirect targets and messages.
    url: String,
    state: Mutex<State>,
    stopping: AtomicBool,
}

impl Shared {
    /// A panicking test thread must not take the whole server down with a poisoned lock.
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// (repo id, file path): the key of per-file faults and overrides.
type FileKey = (String, String);

#[derive(Default)]
struct State {
    repos: HashMap<String, Repo>,
    listing_overrides: HashMap<String, Value>,
    listing_faults: HashMap<String, ListingFault>,
    token: Option<String>,
    /// Repo id → the one token that passes its gate.
    gated: HashMap<String, String>,
    hide_missing: bool,
    /// `set_redirects(false)`; stored negated so that `Default` means redirects on.
    lfs_direct: bool,
    faults: HashMap<FileKey, Fault>,
    /// Header name → value, or `None` to leave the header out.
    header_overrides: HashMap<FileKey, Vec<(String, Option<String>)>>,
    log: Vec<LogEntry>,
}

struct LogEntry {
    record: RequestRecord,
    /// The file whose bytes this request downloaded (see [`TestHub::downloads`]).
    download_of: Option<FileKey>,
}
