//! `TestHub`: an in-process stand-in for the Hugging Face Hub, for integration tests.
//!
//! ```ignore
//! let hub = TestHub::start();
//! hub.add_repo("org/name", vec![("config.json".into(), b"{}".to_vec())]);
//! hub.set_fault("org/name", "config.json", Fault::DropAfter(1));
//! // point hf-hub (or `llmctl`, via its endpoint setting) at `hub.url()`, then
//! // inspect `hub.requests()`.
//! ```
//!
//! It owns a loopback HTTP/1.1 server (std `TcpListener`, one thread per connection)
//! and the repos, faults, token rule and request log the tests configure on it. It
//! speaks the subset of the Hub protocol that `hf-hub` 0.4.3's blocking client
//! (`hf_hub::api::sync`, ureq 2) uses:
//!
//! * `GET /api/models/{repo_id}[/revision/{rev}][?blobs=true]`: repo listing
//!   (`ApiRepo::info_request`). With `blobs=true` each sibling carries `blobId`,
//!   `size` and, for LFS files, `lfs: {sha256, size, pointerSize}`.
//! * `GET|HEAD /{repo_id}/resolve/{rev}/{filename}`: file bytes with single-range
//!   support (`bytes=A-B`, `bytes=A-`, `bytes=-N`). hf-hub first probes with
//!   `Range: bytes=0-0` (the "metadata probe") and reads `X-Repo-Commit`,
//!   `X-Linked-Etag`/`ETag` and `Content-Range`, then downloads with `Range: bytes=N-`.
//!
//! `{rev}` may be `main` or the repo's commit sha; anything else is a 404
//! `RevisionNotFound`. Only model repos exist (no `datasets/` or `spaces/`).
//!
//! Identifiers (no sha1 is available, so sha256 stands in where git would use sha1):
//! * commit sha: 40 hex, sha256 over the sorted file names and contents, truncated.
//! * `blobId`: 40 hex, sha256 of `"blob {len}\0"` + content (git's blob framing) for
//!   plain files, of the LFS pointer text for LFS files, truncated.
//! * `ETag` of a plain file is its `blobId`; an LFS file sends `X-Linked-Etag` and
//!   `ETag` = its full sha256 (64 hex) and `X-Linked-Size`. hf-hub names its cache
//!   blob after this etag.
//!
//! A file is LFS when its name ends in `.safetensors` or `.gguf`, or it is larger
//! than 1 MiB.
//!
//! Connections: every response carries `Connection: close` and an exact
//! `Content-Length`, and the server closes the connection after it. ureq 2 then marks
//! the connection unpoolable, so no keep-alive reuse can race a server-side close.
//!
//! Deliberate differences from the real Hub: a missing repo is a 404 (the real Hub
//! often answers 401 with `X-Error-Code: RepoNotFound` to hide private repos); there
//! are no redirects to a CDN; `require_token` guards every request, public or not.
//! Odd requests get a 400 (malformed) or 405 (method other than GET/HEAD); a
//! malformed `Range` header is a 400 (RFC 9110 would let us ignore it, but a loud
//! failure is more useful in tests); a multi-range request gets the full body (200).
//! A 0-byte file answers any range, including the `bytes=0-0` probe, with 416
//! `Content-Range: bytes */0`, as RFC 9110 and CDNs do (so hf-hub 0.4.3 cannot
//! download it). Faults cannot be stacked: one per file, `set_fault` replaces.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use serde_json::{Value, json};
use sha2::{Digest, Sha256};

/// Proxy variables that ureq 2 (hence hf-hub's blocking client) obeys. ureq 2 has no
/// `NO_PROXY` support, so with any of these set even requests to 127.0.0.1 go to the
/// proxy and the tests fail: remove them from the environment of a spawned `llmctl`.
#[allow(dead_code)]
pub const PROXY_ENV_VARS: [&str; 6] = [
    "ALL_PROXY",
    "all_proxy",
    "HTTPS_PROXY",
    "https_proxy",
    "HTTP_PROXY",
    "http_proxy",
];

/// Files above this size are LFS even without an LFS extension (the Hub's own rule
/// is configurable per repo; 1 MiB keeps test fixtures small).
const LFS_MIN_SIZE: usize = 1024 * 1024;
/// Cap on request line + headers, so a hostile client cannot make us buffer forever.
const MAX_HEAD_BYTES: u64 = 64 * 1024;
/// Body bytes are written in chunks this big, which bounds the copy made to corrupt one.
const CHUNK: usize = 64 * 1024;
/// How long a connection may sit idle before we give up on it.
const READ_TIMEOUT: Duration = Duration::from_secs(10);
/// How long we keep reading after our response, so unread client bytes don't turn
/// our close into a reset that could eat the response.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(2);

/// A fault injected into the responses for one file (see [`TestHub::set_fault`]).
///
/// A "download" is a GET of the file that is not the `Range: bytes=0-0` metadata
/// probe. Unless stated, faults affect downloads only, never the probe or HEAD.
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
    /// Like `Status`, but for the next `times` metadata probes instead of downloads.
    ProbeStatus { code: u16, times: u32 },
    /// Answer 200 with the full body even when a range was asked. Stays until cleared.
    IgnoreRange,
    /// Send the headers, then sleep this long before the body. Stays until cleared.
    Delay(Duration),
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
    /// The status code we answered.
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
        let shared = Arc::new(Shared::default());
        let accept_shared = Arc::clone(&shared);
        let accept_thread = thread::Builder::new()
            .name("test-hub-accept".into())
            .spawn(move || accept_loop(listener, &accept_shared))
            .expect("TestHub: spawn accept thread");
        TestHub {
            addr,
            shared,
            accept_thread: Mutex::new(Some(accept_thread)),
        }
    }

    /// The endpoint to hand to `ApiBuilder::with_endpoint`, e.g. `http://127.0.0.1:40123`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Publishes (or replaces) a model repo. A later duplicate name wins. Faults and
    /// listing overrides for the id are kept.
    pub fn add_repo(&self, repo_id: &str, files: Vec<(String, Vec<u8>)>) {
        let repo = Repo::new(repo_id, files);
        self.state().repos.insert(repo_id.to_string(), repo);
    }

    /// The commit sha of a published repo, for asserting snapshot paths.
    pub fn commit(&self, repo_id: &str) -> Option<String> {
        self.state()
            .repos
            .get(repo_id)
            .map(|repo| repo.commit.clone())
    }

    /// From now on every request must carry `Authorization: Bearer <token>`, or it
    /// gets 401 `{"error":"Invalid credentials in Authorization header"}`.
    pub fn require_token(&self, token: &str) {
        self.state().token = Some(token.to_string());
    }

    /// Sets the fault for one file, replacing any earlier fault for it.
    pub fn set_fault(&self, repo_id: &str, filename: &str, fault: Fault) {
        let key = (repo_id.to_string(), filename.to_string());
        self.state().faults.insert(key, fault);
    }

    /// Removes every fault.
    pub fn clear_faults(&self) {
        self.state().faults.clear();
    }

    /// Every request served so far, oldest first. A request is logged when its status
    /// is decided, before its body is sent.
    pub fn requests(&self) -> Vec<RequestRecord> {
        self.state().requests.clone()
    }

    /// Empties the request log.
    pub fn clear_requests(&self) {
        self.state().requests.clear();
    }

    /// Answers the listing of `repo_id` (any revision, with or without `blobs`) with
    /// this raw JSON and 200, whether or not the repo exists. Resolve is unaffected.
    pub fn set_listing_override(&self, repo_id: &str, json: Value) {
        self.state()
            .listing_overrides
            .insert(repo_id.to_string(), json);
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
        // blocked instead.
        let woke = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1)).is_ok();
        let handle = self
            .accept_thread
            .get_mut()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(handle) = handle
            && woke
        {
            let _ = handle.join();
        }
    }
}

/// State shared by the handle and the server threads.
#[derive(Default)]
struct Shared {
    state: Mutex<State>,
    stopping: AtomicBool,
}

impl Shared {
    /// A panicking test thread must not take the whole server down with a poisoned lock.
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[derive(Default)]
struct State {
    repos: HashMap<String, Repo>,
    listing_overrides: HashMap<String, Value>,
    token: Option<String>,
    faults: HashMap<(String, String), Fault>,
    requests: Vec<RequestRecord>,
}

impl State {
    fn authorized(&self, authorization: Option<&str>) -> bool {
        match &self.token {
            None => true,
            Some(token) => authorization == Some(format!("Bearer {token}").as_str()),
        }
    }

    /// The fault that applies to this request, consuming one-shot and counted faults.
    fn take_fault(&mut self, key: &(String, String), kind: GetKind) -> Option<Fault> {
        let fault = self.faults.get_mut(key)?;
        let applies = match fault {
            Fault::CorruptByteAt(_) => kind != GetKind::Head,
            Fault::ProbeStatus { .. } => kind == GetKind::Probe,
            _ => kind == GetKind::Download,
        };
        if !applies {
            return None;
        }
        let effective = fault.clone();
        let exhausted = match fault {
            Fault::DropAfter(_) => true,
            Fault::Status { times, .. } | Fault::ProbeStatus { times, .. } => {
                if *times == 0 {
                    self.faults.remove(key);
                    return None;
                }
                *times -= 1;
                *times == 0
            }
            _ => false,
        };
        if exhausted {
            self.faults.remove(key);
        }
        Some(effective)
    }
}

/// Which flavour of file request this is, for deciding which faults apply.
#[derive(Clone, Copy, PartialEq, Eq)]
enum GetKind {
    Head,
    Probe,
    Download,
}

struct Repo {
    listing_id: String,
    commit: String,
    /// Sorted by name, as a git tree lists them.
    files: BTreeMap<String, HubFile>,
}

impl Repo {
    fn new(repo_id: &str, files: Vec<(String, Vec<u8>)>) -> Repo {
        let files: BTreeMap<String, HubFile> = files
            .into_iter()
            .map(|(name, bytes)| {
                let file = HubFile::new(&name, bytes);
                (name, file)
            })
            .collect();
        let mut hasher = Sha256::new();
        for (name, file) in &files {
            hasher.update(name.as_bytes());
            hasher.update([0]);
            hasher.update(file.sha256.as_bytes());
        }
        Repo {
            // The Hub's `_id` is a 24-hex database id; derive a stable one.
            listing_id: sha256_hex(format!("repo:{repo_id}").as_bytes())[..24].to_string(),
            commit: hex(&hasher.finalize())[..40].to_string(),
            files,
        }
    }

    fn has_revision(&self, revision: &str) -> bool {
        revision == "main" || revision == self.commit
    }

    fn listing(&self, repo_id: &str, blobs: bool) -> Value {
        let siblings: Vec<Value> = self
            .files
            .iter()
            .map(|(name, file)| file.sibling(name, blobs))
            .collect();
        json!({
            "_id": self.listing_id,
            "id": repo_id,
            "modelId": repo_id,
            "sha": self.commit,
            "private": false,
            "siblings": siblings,
        })
    }
}

struct HubFile {
    bytes: Arc<[u8]>,
    sha256: String,
    blob_id: String,
    /// Size of the LFS pointer file, for LFS files.
    lfs_pointer_size: Option<usize>,
}

impl HubFile {
    fn new(name: &str, bytes: Vec<u8>) -> HubFile {
        let sha256 = sha256_hex(&bytes);
        let is_lfs =
            name.ends_with(".safetensors") || name.ends_with(".gguf") || bytes.len() > LFS_MIN_SIZE;
        // For LFS the git blob is the pointer file, so that is what blobId hashes.
        let pointer = is_lfs.then(|| {
            format!(
                "version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {}\n",
                bytes.len()
            )
        });
        let blob_content = pointer.as_ref().map_or(&bytes[..], |p| p.as_bytes());
        HubFile {
            blob_id: git_blob_id(blob_content),
            lfs_pointer_size: pointer.map(|p| p.len()),
            sha256,
            bytes: bytes.into(),
        }
    }

    fn len(&self) -> u64 {
        self.bytes.len() as u64
    }

    fn sibling(&self, name: &str, blobs: bool) -> Value {
        if !blobs {
            return json!({ "rfilename": name });
        }
        let mut sibling = json!({ "rfilename": name, "blobId": self.blob_id, "size": self.len() });
        if let Some(pointer_size) = self.lfs_pointer_size {
            sibling["lfs"] =
                json!({ "sha256": self.sha256, "size": self.len(), "pointerSize": pointer_size });
        }
        sibling
    }

    /// Headers every resolve answer for this file carries (success or 416).
    fn headers(&self, commit: &str) -> Vec<(&'static str, String)> {
        let mut headers = vec![
            ("Content-Type", "application/octet-stream".to_string()),
            ("Accept-Ranges", "bytes".to_string()),
            ("X-Repo-Commit", commit.to_string()),
        ];
        if self.lfs_pointer_size.is_some() {
            headers.push(("ETag", format!("\"{}\"", self.sha256)));
            headers.push(("X-Linked-Etag", format!("\"{}\"", self.sha256)));
            headers.push(("X-Linked-Size", self.len().to_string()));
        } else {
            headers.push(("ETag", format!("\"{}\"", self.blob_id)));
        }
        headers
    }
}

// ---------------------------------------------------------------------------
// Serving

fn accept_loop(listener: TcpListener, shared: &Arc<Shared>) {
    for conn in listener.incoming() {
        if shared.stopping.load(Ordering::SeqCst) {
            break;
        }
        match conn {
            Ok(stream) => {
                let shared = Arc::clone(shared);
                let _ = thread::Builder::new()
                    .name("test-hub-conn".into())
                    .spawn(move || serve_connection(stream, &shared));
            }
            // e.g. out of file descriptors: back off instead of spinning.
            Err(_) => thread::sleep(Duration::from_millis(10)),
        }
    }
}

/// Serves exactly one request, then closes (see the module doc on keep-alive).
fn serve_connection(stream: TcpStream, shared: &Shared) {
    let _ = stream.set_read_timeout(Some(READ_TIMEOUT));
    // Headers must leave at once so `Delay` and `DropAfter` behave as described.
    let _ = stream.set_nodelay(true);
    let mut reader = BufReader::new(&stream);
    let (record, reply) = match read_request(&mut reader) {
        Ok(request) => {
            let reply = respond(&request, shared);
            (request.record(reply.status), reply)
        }
        // A connection that closes without a byte (a port probe) is not a request.
        Err(RequestError::Empty) => return,
        Err(RequestError::Malformed(partial)) => {
            let reply = json_error(400, "Bad request");
            (partial.record(reply.status), reply)
        }
    };
    shared.lock().requests.push(record);
    let sent = write_reply(&stream, &reply);
    if reply.plan.drop_after.is_some() || sent.is_err() {
        let _ = stream.shutdown(Shutdown::Both);
    } else {
        close_gracefully(&stream);
    }
}

/// Half-closes, then reads until the client closes, so the kernel sends FIN, not RST.
fn close_gracefully(stream: &TcpStream) {
    let _ = stream.shutdown(Shutdown::Write);
    let _ = stream.set_read_timeout(Some(DRAIN_TIMEOUT));
    let mut sink = [0u8; 4096];
    let mut reader = stream;
    let mut budget = MAX_HEAD_BYTES as usize;
    while budget > 0 {
        match reader.read(&mut sink) {
            Ok(0) | Err(_) => break,
            Ok(n) => budget = budget.saturating_sub(n),
        }
    }
}

struct Request {
    method: String,
    target: String,
    /// Header names lower-cased.
    headers: Vec<(String, String)>,
}

impl Request {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    fn record(&self, status: u16) -> RequestRecord {
        RequestRecord {
            method: self.method.clone(),
            path: self.target.clone(),
            range: self.header("range").map(str::to_string),
            authorization: self.header("authorization").map(str::to_string),
            status,
        }
    }
}

enum RequestError {
    Empty,
    /// Whatever was parsed before things went wrong, for the request log.
    Malformed(Request),
}

fn read_request(reader: &mut impl BufRead) -> Result<Request, RequestError> {
    let mut request = Request {
        method: String::new(),
        target: String::new(),
        headers: Vec::new(),
    };
    let mut budget = MAX_HEAD_BYTES;
    let first = match read_line(reader, &mut budget) {
        Ok(Some(line)) => line,
        Ok(None) => return Err(RequestError::Empty),
        Err(()) => return Err(RequestError::Malformed(request)),
    };
    let mut parts = first.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(RequestError::Malformed(request));
    };
    request.method = method.to_string();
    request.target = target.to_string();
    let well_formed = !method.is_empty()
        && method.bytes().all(|b| b.is_ascii_uppercase())
        && target.starts_with('/')
        && (version == "HTTP/1.1" || version == "HTTP/1.0");
    if !well_formed {
        return Err(RequestError::Malformed(request));
    }
    loop {
        let Ok(Some(line)) = read_line(reader, &mut budget) else {
            return Err(RequestError::Malformed(request));
        };
        if line.is_empty() {
            return Ok(request);
        }
        match parse_header(&line) {
            Some(header) => request.headers.push(header),
            None => return Err(RequestError::Malformed(request)),
        }
    }
}

/// One CRLF- (or LF-) terminated line without its terminator; `None` at a clean EOF
/// before any byte; `Err` on EOF mid-line, I/O error, non-UTF-8 or overlong head.
fn read_line(reader: &mut impl BufRead, budget: &mut u64) -> Result<Option<String>, ()> {
    let mut line = Vec::new();
    let read = reader
        .by_ref()
        .take(*budget)
        .read_until(b'\n', &mut line)
        .map_err(|_| ())?;
    *budget -= read as u64;
    if read == 0 && *budget > 0 {
        return Ok(None);
    }
    if line.pop() != Some(b'\n') {
        return Err(());
    }
    if line.last() == Some(&b'\r') {
        line.pop();
    }
    String::from_utf8(line).map(Some).map_err(|_| ())
}

fn parse_header(line: &str) -> Option<(String, String)> {
    let (name, value) = line.split_once(':')?;
    let valid_name = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
    valid_name.then(|| (name.to_ascii_lowercase(), value.trim().to_string()))
}

// ---------------------------------------------------------------------------
// Routing

fn respond(request: &Request, shared: &Shared) -> Reply {
    let mut state = shared.lock();
    let is_head = request.method == "HEAD";
    if request.method != "GET" && !is_head {
        return json_error(405, "Method not allowed");
    }
    if !state.authorized(request.header("authorization")) {
        return json_error(401, "Invalid credentials in Authorization header").head_only(is_head);
    }
    let (path, query) = request
        .target
        .split_once('?')
        .unwrap_or((&request.target, ""));
    let reply = if let Some(rest) = path.strip_prefix("/api/models/") {
        listing(&state, rest, query)
    } else if let Some((repo, rest)) = path
        .strip_prefix('/')
        .and_then(|p| p.split_once("/resolve/"))
    {
        match ResolveTarget::decode(repo, rest) {
            Some(target) => resolve(&mut state, &target, request),
            None => json_error(400, "Bad request"),
        }
    } else {
        json_error(404, "Not found")
    };
    reply.head_only(is_head)
}

fn listing(state: &State, rest: &str, query: &str) -> Reply {
    let (raw_repo, raw_revision) = rest.split_once("/revision/").unwrap_or((rest, "main"));
    let (Some(repo_id), Some(revision)) = (percent_decode(raw_repo), percent_decode(raw_revision))
    else {
        return json_error(400, "Bad request");
    };
    if let Some(json) = state.listing_overrides.get(&repo_id) {
        return json_reply(200, json);
    }
    let Some(repo) = state.repos.get(&repo_id) else {
        return repo_not_found();
    };
    if !repo.has_revision(&revision) {
        return revision_not_found(&revision);
    }
    let blobs = query
        .split('&')
        .any(|pair| pair == "blobs=true" || pair == "blobs=1");
    json_reply(200, &repo.listing(&repo_id, blobs))
}

struct ResolveTarget {
    repo_id: String,
    revision: String,
    filename: String,
}

impl ResolveTarget {
    /// `repo` and `rest` are the raw parts around `/resolve/`; `rest` is `{rev}/{filename}`.
    fn decode(repo: &str, rest: &str) -> Option<ResolveTarget> {
        // Split before decoding: a revision like `refs%2Fpr%2F1` holds an encoded '/'.
        let (revision, filename) = rest.split_once('/')?;
        Some(ResolveTarget {
            repo_id: percent_decode(repo)?,
            revision: percent_decode(revision)?,
            filename: percent_decode(filename)?,
        })
    }
}

fn resolve(state: &mut State, target: &ResolveTarget, request: &Request) -> Reply {
    let Some(repo) = state.repos.get(&target.repo_id) else {
        return repo_not_found();
    };
    if !repo.has_revision(&target.revision) {
        return revision_not_found(&target.revision);
    }
    let commit = repo.commit.clone();
    let Some(file) = repo.files.get(&target.filename) else {
        return entry_not_found(&commit);
    };
    let headers = file.headers(&commit);
    let bytes = Arc::clone(&file.bytes);
    let range = request.header("range");
    let kind = match (request.method.as_str(), range) {
        ("HEAD", _) => GetKind::Head,
        (_, Some("bytes=0-0")) => GetKind::Probe,
        _ => GetKind::Download,
    };
    let key = (target.repo_id.clone(), target.filename.clone());
    let fault = state.take_fault(&key, kind);
    serve_file(bytes, headers, range, fault)
}

/// Builds the answer for an existing file, with the fault (if any) applied.
fn serve_file(
    bytes: Arc<[u8]>,
    mut headers: Vec<(&'static str, String)>,
    range: Option<&str>,
    fault: Option<Fault>,
) -> Reply {
    let mut plan = SendPlan::default();
    let mut honour_range = true;
    match fault {
        Some(Fault::Status { code, .. } | Fault::ProbeStatus { code, .. }) => {
            return status_fault(code);
        }
        Some(Fault::DropAfter(n)) => plan.drop_after = Some(n),
        Some(Fault::CorruptByteAt(offset)) => plan.corrupt_at = Some(offset),
        Some(Fault::Delay(delay)) => plan.delay = Some(delay),
        Some(Fault::IgnoreRange) => honour_range = false,
        None => {}
    }
    let total = bytes.len() as u64;
    let span = match range
        .filter(|_| honour_range)
        .map(|r| parse_range(r, total))
    {
        None | Some(RangeAsk::Full) => None,
        Some(RangeAsk::Span(first, last)) => Some((first, last)),
        Some(RangeAsk::Malformed) => return json_error(400, "Malformed Range header"),
        Some(RangeAsk::Unsatisfiable) => {
            headers.push(("Content-Range", format!("bytes */{total}")));
            let mut reply = json_error(416, "Requested Range Not Satisfiable");
            reply.headers.extend(headers);
            return reply;
        }
    };
    let (status, start, end) = match span {
        None => (200, 0, total),
        Some((first, last)) => {
            headers.push(("Content-Range", format!("bytes {first}-{last}/{total}")));
            (206, first, last + 1)
        }
    };
    Reply {
        status,
        headers,
        body: Body {
            data: bytes,
            start: start as usize,
            end: end as usize,
            send: true,
        },
        plan,
    }
}

/// What a `Range` header asks for, against a body of known length.
enum RangeAsk {
    Full,
    /// Inclusive byte positions, already clamped to the body.
    Span(u64, u64),
    Unsatisfiable,
    Malformed,
}

fn parse_range(value: &str, total: u64) -> RangeAsk {
    let Some(spec) = value.trim().strip_prefix("bytes=") else {
        return RangeAsk::Malformed;
    };
    // RFC 9110 lets a server ignore a multi-range ask; hf-hub never sends one.
    if spec.contains(',') {
        return RangeAsk::Full;
    }
    let Some((first, last)) = spec.split_once('-') else {
        return RangeAsk::Malformed;
    };
    match (
        digits(first.trim()),
        digits(last.trim()),
        first.trim().is_empty(),
    ) {
        // bytes=-N: the last N bytes.
        (None, Some(n), true) if n == 0 || total == 0 => RangeAsk::Unsatisfiable,
        (None, Some(n), true) => RangeAsk::Span(total - n.min(total), total - 1),
        (Some(a), _, _) if a >= total => RangeAsk::Unsatisfiable,
        (Some(a), None, _) if last.trim().is_empty() => RangeAsk::Span(a, total - 1),
        (Some(a), Some(b), _) if b >= a => RangeAsk::Span(a, b.min(total - 1)),
        _ => RangeAsk::Malformed,
    }
}

/// A non-empty run of ASCII digits (`str::parse` alone would also take `+5`).
fn digits(text: &str) -> Option<u64> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let pair = bytes.get(i + 1..i + 3)?;
            let pair = std::str::from_utf8(pair).ok()?;
            out.push(u8::from_str_radix(pair, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

// ---------------------------------------------------------------------------
// Replies

struct Reply {
    status: u16,
    headers: Vec<(&'static str, String)>,
    body: Body,
    plan: SendPlan,
}

impl Reply {
    /// HEAD gets the GET headers (Content-Length included) but no body.
    fn head_only(mut self, is_head: bool) -> Reply {
        if is_head {
            self.body.send = false;
        }
        self
    }
}

/// `data[start..end]` is the body; `data` is the whole file so offsets stay absolute.
struct Body {
    data: Arc<[u8]>,
    start: usize,
    end: usize,
    send: bool,
}

#[derive(Default)]
struct SendPlan {
    drop_after: Option<u64>,
    corrupt_at: Option<u64>,
    delay: Option<Duration>,
}

fn json_reply(status: u16, json: &Value) -> Reply {
    let data: Arc<[u8]> = json.to_string().into_bytes().into();
    let end = data.len();
    Reply {
        status,
        headers: vec![(
            "Content-Type",
            "application/json; charset=utf-8".to_string(),
        )],
        body: Body {
            data,
            start: 0,
            end,
            send: true,
        },
        plan: SendPlan::default(),
    }
}

fn json_error(status: u16, message: &str) -> Reply {
    json_reply(status, &json!({ "error": message }))
}

/// A Hub error: JSON body plus the `X-Error-Code`/`X-Error-Message` headers the
/// Python client keys on.
fn hub_error(status: u16, code: &str, message: &str) -> Reply {
    let mut reply = json_error(status, message);
    reply.headers.push(("X-Error-Code", code.to_string()));
    reply.headers.push(("X-Error-Message", message.to_string()));
    reply
}

fn repo_not_found() -> Reply {
    hub_error(404, "RepoNotFound", "Repository not found")
}

fn revision_not_found(revision: &str) -> Reply {
    // The header value must stay one printable line whatever the client sent.
    let shown: String = revision.chars().filter(|c| !c.is_control()).collect();
    hub_error(404, "RevisionNotFound", &format!("Invalid rev id: {shown}"))
}

fn entry_not_found(commit: &str) -> Reply {
    let mut reply = hub_error(404, "EntryNotFound", "Entry not found");
    // The real Hub sends the commit on 404s too (clients cache the miss by commit).
    reply.headers.push(("X-Repo-Commit", commit.to_string()));
    reply
}

fn status_fault(code: u16) -> Reply {
    let mut reply = json_error(code, "Injected fault");
    if code == 429 || code == 503 {
        reply.headers.push(("Retry-After", "0".to_string()));
    }
    reply
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        206 => "Partial Content",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        416 => "Range Not Satisfiable",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Unknown",
    }
}

fn write_reply(mut stream: &TcpStream, reply: &Reply) -> io::Result<()> {
    let body = &reply.body;
    let mut head = format!("HTTP/1.1 {} {}\r\n", reply.status, reason(reply.status));
    for (name, value) in &reply.headers {
        let _ = write!(head, "{name}: {value}\r\n");
    }
    let _ = write!(
        head,
        "Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.end - body.start
    );
    stream.write_all(head.as_bytes())?;
    if !body.send {
        return Ok(());
    }
    if let Some(delay) = reply.plan.delay {
        thread::sleep(delay);
    }
    let len = (body.end - body.start) as u64;
    let limit = reply.plan.drop_after.map_or(len, |n| n.min(len));
    write_body(stream, body, limit as usize, reply.plan.corrupt_at)
}

/// Writes the first `limit` bytes of the body, flipping the byte at absolute file
/// offset `corrupt_at` if it falls inside them.
fn write_body(
    mut stream: &TcpStream,
    body: &Body,
    limit: usize,
    corrupt_at: Option<u64>,
) -> io::Result<()> {
    let stop = body.start + limit;
    let mut chunk = Vec::with_capacity(CHUNK);
    let mut pos = body.start;
    while pos < stop {
        let end = (pos + CHUNK).min(stop);
        chunk.clear();
        chunk.extend_from_slice(&body.data[pos..end]);
        if let Some(offset) = corrupt_at
            .map(|o| o as usize)
            .filter(|o| (pos..end).contains(o))
        {
            chunk[offset - pos] ^= 0xFF;
        }
        stream.write_all(&chunk)?;
        pos = end;
    }
    stream.flush()
}

// ---------------------------------------------------------------------------
// Hashing

fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

/// git's blob id framing, with sha256 (truncated to 40 hex) in place of sha1.
fn git_blob_id(content: &[u8]) -> String {
    use sha1::Digest as _;
    let mut hasher = sha1::Sha1::new();
    hasher.update(format!("blob {}\0", content.len()).as_bytes());
    hasher.update(content);
    hex(&hasher.finalize())
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    bytes
        .iter()
        .flat_map(|b| {
            [
                DIGITS[usize::from(b >> 4)] as char,
                DIGITS[usize::from(b & 0xF)] as char,
            ]
        })
        .collect()
}
