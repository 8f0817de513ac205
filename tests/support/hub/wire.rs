//! HTTP/1.1 on the wire for the test hub: accepting, reading one request, writing one
//! reply (with the send-side faults), closing, and percent-coding.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::Duration;

use super::{LogEntry, RequestRecord, Shared, routes};

/// Cap on request line + headers, so a hostile client cannot make us buffer forever.
const MAX_HEAD_BYTES: u64 = 64 * 1024;
/// Body bytes are written in chunks this big, which bounds the copy made to corrupt one.
const CHUNK: usize = 64 * 1024;
/// How long a connection may sit idle before we give up on it.
const READ_TIMEOUT: Duration = Duration::from_secs(10);
/// How long one write may block on a client that stopped reading.
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);
/// How long we keep reading after our response, so unread client bytes don't turn
/// our close into a reset that could eat the response.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(2);
/// How often a hanging connection looks at the stop flag and the client.
const HANG_POLL: Duration = Duration::from_millis(100);

pub(super) fn accept_loop(listener: TcpListener, shared: &Arc<Shared>) {
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
    let _ = stream.set_write_timeout(Some(WRITE_TIMEOUT));
    // Headers must leave at once so `Delay` and `DropAfter` behave as described.
    let _ = stream.set_nodelay(true);
    let mut reader = BufReader::new(&stream);
    let (record, reply) = match read_request(&mut reader) {
        Ok(request) => {
            let reply = routes::respond(&request, shared);
            let status = if reply.plan.hang { 0 } else { reply.status };
            (request.record(status), reply)
        }
        // A connection that closes without a byte (a port probe) is not a request.
        Err(RequestError::Empty) => return,
        Err(RequestError::Malformed(partial)) => {
            let reply = routes::json_error(400, "Bad request").finish();
            (partial.record(reply.status), reply)
        }
    };
    let download_of = reply.download_of.clone();
    shared.lock().log.push(LogEntry { record, download_of });
    if reply.plan.hang {
        hang(&stream, &shared.stopping);
        let _ = stream.shutdown(Shutdown::Both);
        return;
    }
    let sent = write_reply(&stream, &reply, &shared.stopping);
    if reply.plan.drop_after.is_some() || sent.is_err() {
        let _ = stream.shutdown(Shutdown::Both);
    } else {
        close_gracefully(&stream);
    }
}

/// Waits without answering until the client closes or the hub stops.
fn hang(stream: &TcpStream, stopping: &AtomicBool) {
    let _ = stream.set_read_timeout(Some(HANG_POLL));
    let mut sink = [0u8; 4096];
    let mut reader = stream;
    while !stopping.load(Ordering::SeqCst) {
        match reader.read(&mut sink) {
            Ok(0) => return,
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted
                ) => {}
            Err(_) => return,
        }
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

// ---------------------------------------------------------------------------
// Requests

pub(super) struct Request {
    pub(super) method: String,
    pub(super) target: String,
    /// Header names lower-cased.
    headers: Vec<(String, String)>,
}

impl Request {
    pub(super) fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
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
    let mut request = Request { method: String::new(), target: String::new(), headers: Vec::new() };
    let mut budget = MAX_HEAD_BYTES;
    let first = match read_line(reader, &mut budget) {
        Ok(Some(line)) => line,
        Ok(None) => return Err(RequestError::Empty),
        Err(()) => return Err(RequestError::Malformed(request)),
    };
    let mut parts = first.split(' ');
    let (Some(method), Some(target), Some(version), None) = (parts.next(), parts.next(), parts.next(), parts.next())
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
    let read = reader.by_ref().take(*budget).read_until(b'\n', &mut line).map_err(|_| ())?;
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
    is_token(name).then(|| (name.to_ascii_lowercase(), value.trim().to_string()))
}

/// An HTTP token (RFC 9110 §5.6.2), what a header name must be.
pub(super) fn is_token(name: &str) -> bool {
    !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

// ---------------------------------------------------------------------------
// Replies

pub(super) struct Reply {
    pub(super) status: u16,
    /// Written verbatim, in order; [`Reply::finish`] adds the framing ones.
    pub(super) headers: Vec<(String, String)>,
    pub(super) body: Body,
    pub(super) plan: SendPlan,
    /// The file this request downloads, for [`super::TestHub::downloads`].
    pub(super) download_of: Option<super::FileKey>,
}

impl Reply {
    pub(super) fn header(&mut self, name: &str, value: impl Into<String>) {
        self.headers.push((name.to_string(), value.into()));
    }

    /// HEAD gets the GET headers (Content-Length included) but no body.
    pub(super) fn head_only(mut self, is_head: bool) -> Reply {
        if is_head {
            self.body.send = false;
        }
        self
    }

    /// Adds `Content-Length` (unless the body is close-delimited) and `Connection`.
    pub(super) fn finish(mut self) -> Reply {
        let len = (self.body.end - self.body.start) as u64;
        let declared = match self.plan.extra {
            Extra::None => Some(len),
            Extra::Bytes { count, declared: true } => Some(len + count),
            Extra::Bytes { declared: false, .. } | Extra::Endless => None,
        };
        if let Some(declared) = declared {
            self.header("Content-Length", declared.to_string());
        }
        self.header("Connection", "close");
        self
    }

    /// Replaces (case-insensitively) or adds these headers; `None` removes one.
    pub(super) fn override_headers(&mut self, overrides: &[(String, Option<String>)]) {
        for (name, value) in overrides {
            self.headers.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
            if let Some(value) = value {
                self.headers.push((name.clone(), value.clone()));
            }
        }
    }
}

/// `data[start..end]` is the body; `data` is the whole file so offsets stay absolute.
pub(super) struct Body {
    pub(super) data: Arc<[u8]>,
    pub(super) start: usize,
    pub(super) end: usize,
    pub(super) send: bool,
}

/// How the body is sent, beyond its bytes: what the faults do on the wire.
#[derive(Default)]
pub(super) struct SendPlan {
    pub(super) drop_after: Option<u64>,
    pub(super) corrupt_at: Option<u64>,
    pub(super) delay: Option<Duration>,
    pub(super) gate: Option<super::Gate>,
    pub(super) extra: Extra,
    /// Never answer ([`super::ListingFault::Hang`]).
    pub(super) hang: bool,
}

/// Zero bytes sent after the body proper.
#[derive(Default, Clone, Copy)]
pub(super) enum Extra {
    #[default]
    None,
    /// `declared`: `Content-Length` counts them; otherwise there is none.
    Bytes {
        count: u64,
        declared: bool,
    },
    Endless,
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        206 => "Partial Content",
        302 => "Found",
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

fn write_reply(mut stream: &TcpStream, reply: &Reply, stopping: &AtomicBool) -> io::Result<()> {
    let mut head = format!("HTTP/1.1 {} {}\r\n", reply.status, reason(reply.status));
    for (name, value) in &reply.headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes())?;
    let body = &reply.body;
    if !body.send {
        return Ok(());
    }
    if let Some(delay) = reply.plan.delay {
        thread::sleep(delay);
    }
    if let Some(gate) = &reply.plan.gate {
        gate.pass();
    }
    let len = (body.end - body.start) as u64;
    let limit = reply.plan.drop_after.map_or(len, |n| n.min(len));
    write_body(stream, body, limit as usize, reply.plan.corrupt_at)?;
    match reply.plan.extra {
        Extra::None => Ok(()),
        Extra::Bytes { count, .. } => write_zeros(stream, Some(count), stopping),
        Extra::Endless => write_zeros(stream, None, stopping),
    }
}

/// Writes the first `limit` bytes of the body, flipping the byte at absolute file
/// offset `corrupt_at` if it falls inside them.
fn write_body(mut stream: &TcpStream, body: &Body, limit: usize, corrupt_at: Option<u64>) -> io::Result<()> {
    let stop = body.start + limit;
    let mut chunk = Vec::with_capacity(CHUNK);
    let mut pos = body.start;
    while pos < stop {
        let end = (pos + CHUNK).min(stop);
        chunk.clear();
        chunk.extend_from_slice(&body.data[pos..end]);
        if let Some(offset) = corrupt_at.map(|o| o as usize).filter(|o| (pos..end).contains(o)) {
            chunk[offset - pos] ^= 0xFF;
        }
        stream.write_all(&chunk)?;
        pos = end;
    }
    stream.flush()
}

/// `count` zero bytes, or without end (`None`) until a write fails or the hub stops.
fn write_zeros(mut stream: &TcpStream, count: Option<u64>, stopping: &AtomicBool) -> io::Result<()> {
    static ZEROS: [u8; CHUNK] = [0; CHUNK];
    let mut left = count.unwrap_or(u64::MAX);
    while left > 0 && !stopping.load(Ordering::SeqCst) {
        let n = left.min(CHUNK as u64) as usize;
        stream.write_all(&ZEROS[..n])?;
        if count.is_some() {
            left -= n as u64;
        }
    }
    stream.flush()
}

// ---------------------------------------------------------------------------
// Percent-coding

pub(super) fn percent_decode(text: &str) -> Option<String> {
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

/// Encodes everything but RFC 3986's unreserved characters (so `/` becomes `%2F`).
pub(super) fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}
