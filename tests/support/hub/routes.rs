//! What the test hub answers: the listing, `resolve` (direct or a 302 to the CDN
//! path), the CDN path, the token and gate checks, and the faults of each.

use std::sync::Arc;

use serde_json::{Value, json};

use super::repo::{Repo, sha256_hex};
use super::wire::{Body, Extra, Reply, Request, SendPlan, percent_decode, percent_encode};
use super::{Fault, FileKey, ListingFault, Shared, State};

pub(super) fn respond(request: &Request, shared: &Shared) -> Reply {
    let mut state = shared.lock();
    let is_head = request.method == "HEAD";
    if request.method != "GET" && !is_head {
        return json_error(405, "Method not allowed").finish();
    }
    if !state.authorized(request.header("authorization")) {
        return json_error(401, "Invalid credentials in Authorization header").head_only(is_head).finish();
    }
    let (path, query) = request.target.split_once('?').unwrap_or((&request.target, ""));
    let (reply, file) = if let Some(rest) = path.strip_prefix("/api/models/") {
        (listing(&mut state, rest, query), None)
    } else if let Some(rest) = path.strip_prefix("/cdn-lfs/") {
        cdn(&mut state, &shared.url, rest, request)
    } else if let Some((repo, rest)) = path.strip_prefix('/').and_then(|p| p.split_once("/resolve/")) {
        resolve(&mut state, &shared.url, repo, rest, request)
    } else {
        (json_error(404, "Not found"), None)
    };
    let mut reply = reply.head_only(is_head).finish();
    if let Some(overrides) = file.and_then(|key| state.header_overrides.get(&key)) {
        reply.override_headers(overrides);
    }
    reply
}

impl State {
    fn authorized(&self, authorization: Option<&str>) -> bool {
        match &self.token {
            None => true,
            Some(token) => authorization == Some(format!("Bearer {token}").as_str()),
        }
    }

    /// The gate's refusal of this request, if the repo is gated and the token wrong.
    fn gate(&self, url: &str, repo_id: &str, request: &Request) -> Option<Reply> {
        let token = self.gated.get(repo_id)?;
        let offered = request.header("authorization").and_then(|a| a.strip_prefix("Bearer "));
        match offered {
            Some(offered) if offered == token => None,
            Some(_) => Some(hub_error(
                403,
                "GatedRepo",
                &format!(
                    "Access to model {repo_id} is restricted and you are not in the authorized list. Visit {url}/{repo_id} to ask for access."
                ),
            )),
            None => Some(hub_error(
                401,
                "GatedRepo",
                &format!(
                    "Access to model {repo_id} is restricted. You must have access to it and be authenticated to access it. Please log in."
                ),
            )),
        }
    }

    fn repo_not_found(&self) -> Reply {
        let status = if self.hide_missing { 401 } else { 404 };
        hub_error(status, "RepoNotFound", "Repository not found")
    }

    /// The file fault that applies to this request, consuming one-shot and counted ones.
    fn take_fault(&mut self, key: &FileKey, kind: GetKind) -> Option<Fault> {
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
            Fault::Status { times, .. } | Fault::ProbeStatus { times, .. } | Fault::StatusRetryAfter { times, .. } => {
                match take_one(times) {
                    Some(exhausted) => exhausted,
                    None => {
                        self.faults.remove(key);
                        return None;
                    }
                }
            }
            _ => false,
        };
        if exhausted {
            self.faults.remove(key);
        }
        Some(effective)
    }

    fn take_listing_fault(&mut self, repo_id: &str) -> Option<ListingFault> {
        let fault = self.listing_faults.get_mut(repo_id)?;
        let effective = fault.clone();
        if let ListingFault::Status { times, .. } = fault {
            match take_one(times) {
                Some(false) => {}
                Some(true) => {
                    self.listing_faults.remove(repo_id);
                }
                None => {
                    self.listing_faults.remove(repo_id);
                    return None;
                }
            }
        }
        Some(effective)
    }
}

/// Counts one use down: `None` if none was left, else whether this was the last.
fn take_one(times: &mut u32) -> Option<bool> {
    *times = times.checked_sub(1)?;
    Some(*times == 0)
}

/// Which flavour of file request this is, for deciding which faults apply.
#[derive(Clone, Copy, PartialEq, Eq)]
enum GetKind {
    Head,
    Probe,
    Download,
}

impl GetKind {
    fn of(request: &Request) -> GetKind {
        match (request.method.as_str(), request.header("range")) {
            ("HEAD", _) => GetKind::Head,
            (_, Some("bytes=0-0")) => GetKind::Probe,
            _ => GetKind::Download,
        }
    }
}

// ---------------------------------------------------------------------------
// Listing

fn listing(state: &mut State, rest: &str, query: &str) -> Reply {
    let (raw_repo, raw_revision) = rest.split_once("/revision/").unwrap_or((rest, "main"));
    let (Some(repo_id), Some(revision)) = (percent_decode(raw_repo), percent_decode(raw_revision)) else {
        return json_error(400, "Bad request");
    };
    match state.take_listing_fault(&repo_id) {
        Some(ListingFault::Hang) => {
            let mut reply = json_error(503, "never sent");
            reply.plan.hang = true;
            return reply;
        }
        Some(ListingFault::Status { code, retry_after, .. }) => return status_fault(code, retry_after),
        None => {}
    }
    if let Some(json) = state.listing_overrides.get(&repo_id) {
        return json_reply(200, json);
    }
    let Some(repo) = state.repos.get(&repo_id) else {
        return state.repo_not_found();
    };
    let Some(snapshot) = repo.snapshot(&revision) else {
        return revision_not_found(&revision);
    };
    let blobs = query.split('&').any(|pair| pair == "blobs=true" || pair == "blobs=1");
    let gated = state.gated.contains_key(&repo_id);
    json_reply(200, &repo.listing(&repo_id, snapshot, blobs, gated))
}

// ---------------------------------------------------------------------------
// Files

/// `GET|HEAD /{repo}/resolve/{rev}/{path}`; also returns the file it names, for the
/// header overrides.
fn resolve(state: &mut State, url: &str, raw_repo: &str, rest: &str, request: &Request) -> (Reply, Option<FileKey>) {
    let Some(repo_id) = percent_decode(raw_repo) else {
        return (json_error(400, "Bad request"), None);
    };
    let Some((revision, filename)) = split_revision(state.repos.get(&repo_id), rest) else {
        return (json_error(400, "Bad request"), None);
    };
    let key = (repo_id, filename);
    let reply = resolve_file(state, url, &key, &revision, request);
    (reply, Some(key))
}

/// Splits `{rev}/{path}` (raw) and decodes both. A revision holding `/` comes
/// encoded (`refs%2Fpr%2F1`), but the Hub also takes a bare `refs/pr/1`.
fn split_revision(repo: Option<&Repo>, rest: &str) -> Option<(String, String)> {
    let parts: Vec<&str> = rest.splitn(4, '/').collect();
    if let [refs @ "refs", kind, name, path] = parts[..] {
        let revision = format!("{refs}/{}/{}", percent_decode(kind)?, percent_decode(name)?);
        if repo.is_some_and(|repo| repo.snapshot(&revision).is_some()) {
            return Some((revision, percent_decode(path)?));
        }
    }
    let (revision, path) = rest.split_once('/')?;
    Some((percent_decode(revision)?, percent_decode(path)?))
}

fn resolve_file(state: &mut State, url: &str, key: &FileKey, revision: &str, request: &Request) -> Reply {
    let (repo_id, filename) = key;
    let Some(repo) = state.repos.get(repo_id) else {
        return state.repo_not_found();
    };
    if let Some(refusal) = state.gate(url, repo_id, request) {
        return refusal;
    }
    let Some(snapshot) = repo.snapshot(revision).cloned() else {
        return revision_not_found(revision);
    };
    let Some(file) = snapshot.files.get(filename) else {
        return entry_not_found(&snapshot.commit);
    };
    if file.is_lfs() && !state.lfs_direct {
        let location = cdn_url(url, key, &file.sha256);
        return redirect(file.redirect_headers(&snapshot.commit, location));
    }
    let headers = file.direct_headers(&snapshot.commit);
    serve_bytes(state, key, Arc::clone(&file.bytes), headers, request)
}

/// Where a redirect sends an LFS file: the path names the object, the query only
/// looks like the real CDN's signed one.
fn cdn_url(url: &str, (repo_id, filename): &FileKey, sha256: &str) -> String {
    let repo: Vec<String> = repo_id.split('/').map(percent_encode).collect();
    let signature = sha256_hex(format!("{repo_id}\0{filename}\0{sha256}").as_bytes());
    format!(
        "{url}/cdn-lfs/{}/{}/{sha256}?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Expires=3600&X-Amz-Signature={signature}",
        repo.join("/"),
        percent_encode(filename),
    )
}

/// `GET|HEAD /cdn-lfs/{repo}/{path as one segment}/{sha256}`.
fn cdn(state: &mut State, url: &str, rest: &str, request: &Request) -> (Reply, Option<FileKey>) {
    let mut parts = rest.rsplitn(3, '/');
    let (Some(sha256), Some(Some(filename)), Some(Some(repo_id))) =
        (parts.next(), parts.next().map(percent_decode), parts.next().map(percent_decode))
    else {
        return (json_error(404, "Not found"), None);
    };
    let key = (repo_id, filename);
    let Some(repo) = state.repos.get(&key.0) else {
        return (json_error(404, "Not found"), Some(key));
    };
    if let Some(refusal) = state.gate(url, &key.0, request) {
        return (refusal, Some(key));
    }
    let Some(file) = repo.lfs_object(&key.1, sha256) else {
        return (json_error(404, "Not found"), Some(key));
    };
    let (bytes, headers) = (Arc::clone(&file.bytes), file.cdn_headers());
    let reply = serve_bytes(state, &key, bytes, headers, request);
    (reply, Some(key))
}

/// Serves the bytes of a file with its fault applied, and marks a download.
fn serve_bytes(
    state: &mut State,
    key: &FileKey,
    bytes: Arc<[u8]>,
    headers: Vec<(String, String)>,
    request: &Request,
) -> Reply {
    let kind = GetKind::of(request);
    let fault = state.take_fault(key, kind);
    let mut reply = serve_file(bytes, headers, request.header("range"), fault);
    if kind == GetKind::Download {
        reply.download_of = Some(key.clone());
    }
    reply
}

/// Builds the answer for an existing file, with the fault (if any) applied.
fn serve_file(
    bytes: Arc<[u8]>,
    mut headers: Vec<(String, String)>,
    range: Option<&str>,
    fault: Option<Fault>,
) -> Reply {
    let mut plan = SendPlan::default();
    let mut honour_range = true;
    let mut from_zero = false;
    match fault {
        Some(Fault::Status { code, .. } | Fault::ProbeStatus { code, .. }) => {
            let retry_after = matches!(code, 429 | 503).then_some(0);
            return status_fault(code, retry_after);
        }
        Some(Fault::StatusRetryAfter { code, seconds, .. }) => {
            return status_fault(code, Some(seconds));
        }
        Some(Fault::DropAfter(n)) => plan.drop_after = Some(n),
        Some(Fault::CorruptByteAt(offset)) => plan.corrupt_at = Some(offset),
        Some(Fault::Delay(delay)) => plan.delay = Some(delay),
        Some(Fault::Hold(gate)) => plan.gate = Some(gate),
        Some(Fault::IgnoreRange) => honour_range = false,
        Some(Fault::BadContentRange) => from_zero = true,
        Some(Fault::OverlongBody { extra, content_length }) => {
            plan.extra = Extra::Bytes { count: extra, declared: content_length };
        }
        Some(Fault::EndlessBody) => plan.extra = Extra::Endless,
        None => {}
    }
    let total = bytes.len() as u64;
    let span = match range.filter(|_| honour_range).map(|r| parse_range(r, total)) {
        None | Some(RangeAsk::Full) => None,
        Some(RangeAsk::Span(first, last)) => Some((if from_zero { 0 } else { first }, last)),
        Some(RangeAsk::Malformed) => return json_error(400, "Malformed Range header"),
        Some(RangeAsk::Unsatisfiable) => {
            headers.push(("Content-Range".into(), format!("bytes */{total}")));
            let mut reply = json_error(416, "Requested Range Not Satisfiable");
            reply.headers.extend(headers);
            return reply;
        }
    };
    let (status, start, end) = match span {
        None => (200, 0, total),
        Some((first, last)) => {
            headers.push(("Content-Range".into(), format!("bytes {first}-{last}/{total}")));
            (206, first, last + 1)
        }
    };
    Reply {
        status,
        headers,
        body: Body { data: bytes, start: start as usize, end: end as usize, send: true },
        plan,
        download_of: None,
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
    // RFC 9110 lets a server ignore a multi-range ask; clients here never send one.
    if spec.contains(',') {
        return RangeAsk::Full;
    }
    let Some((first, last)) = spec.split_once('-') else {
        return RangeAsk::Malformed;
    };
    match (digits(first.trim()), digits(last.trim()), first.trim().is_empty()) {
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

// ---------------------------------------------------------------------------
// Canned answers

pub(super) fn json_reply(status: u16, json: &Value) -> Reply {
    let data: Arc<[u8]> = json.to_string().into_bytes().into();
    let end = data.len();
    Reply {
        status,
        headers: vec![("Content-Type".into(), "application/json; charset=utf-8".into())],
        body: Body { data, start: 0, end, send: true },
        plan: SendPlan::default(),
        download_of: None,
    }
}

pub(super) fn json_error(status: u16, message: &str) -> Reply {
    json_reply(status, &json!({ "error": message }))
}

fn redirect(headers: Vec<(String, String)>) -> Reply {
    let mut reply = json_reply(302, &Value::Null);
    reply.headers = headers;
    reply.body.end = 0;
    reply
}

/// A Hub error: JSON body plus the `X-Error-Code`/`X-Error-Message` headers the
/// Python client keys on.
fn hub_error(status: u16, code: &str, message: &str) -> Reply {
    let mut reply = json_error(status, message);
    reply.header("X-Error-Code", code);
    reply.header("X-Error-Message", message);
    reply
}

fn revision_not_found(revision: &str) -> Reply {
    // The header value must stay one printable line whatever the client sent.
    let shown: String = revision.chars().filter(|c| !c.is_control()).collect();
    hub_error(404, "RevisionNotFound", &format!("Invalid rev id: {shown}"))
}

fn entry_not_found(commit: &str) -> Reply {
    let mut reply = hub_error(404, "EntryNotFound", "Entry not found");
    // The real Hub sends the commit on 404s too (clients cache the miss by commit).
    reply.header("X-Repo-Commit", commit);
    reply
}

fn status_fault(code: u16, retry_after: Option<u64>) -> Reply {
    let mut reply = json_error(code, "Injected fault");
    if let Some(seconds) = retry_after {
        reply.header("Retry-After", seconds.to_string());
    }
    reply
}
