//! What both APIs share: reading a JSON body (naming the field that is
//! wrong), resolving a `model` field with llmctl's grammar, and the limits
//! a request is checked against before it reaches the engine.

use serde::Deserialize;
use serde::de::DeserializeOwned;

use tokio::sync::mpsc::UnboundedReceiver;

use super::{ErrorKind, Event, Finished, ServeError};
use crate::engine::context_limits;
use crate::quant::{self, Resolved};
use crate::store::Store;
use crate::store::manifest::Manifest;
use crate::store::reference::ModelRef;

/// The largest request body taken, bytes: far more than any context's worth of text.
pub const BODY_LIMIT: usize = 4 * 1024 * 1024;

/// A JSON body as `T`; a syntax error says where, a wrong field names it.
pub fn parse_body<T: DeserializeOwned>(body: &[u8]) -> Result<T, ServeError> {
    let mut json = serde_json::Deserializer::from_slice(body);
    match serde_path_to_error::deserialize::<_, T>(&mut json) {
        Ok(value) => Ok(value),
        Err(error) => {
            let path = error.path().to_string();
            let inner = error.into_inner();
            Err(ServeError::bad_request(match inner.classify() {
                serde_json::error::Category::Data if path != "." => {
                    format!("invalid request body: field `{path}`: {inner}")
                }
                serde_json::error::Category::Data => format!("invalid request body: {inner}"),
                _ => format!("the request body is not valid JSON: {inner}"),
            }))
        }
    }
}

/// A model the request names, found in the store, with the KV scheme its tag chose.
#[derive(Debug, Clone)]
pub struct ResolvedModel {
    pub reference: ModelRef,
    pub manifest: Manifest,
    pub kv: Option<crate::quant::KvScheme>,
}

/// Ollama's clients name untagged models `name:latest`; so does this API.
pub const LATEST: &str = ":latest";

/// `org/name[:TAG]` as `llmctl run` takes it; `:latest` is the untagged
/// model. Every error is the CLI's, with its message and hint.
pub fn resolve_model(store: &Store, text: &str) -> Result<ResolvedModel, ServeError> {
    find_model(store, text).map_err(|e| ServeError::from_error(&e))
}

/// [`resolve_model`] with the CLI's own errors (`serve --model`).
pub fn find_model(store: &Store, text: &str) -> anyhow::Result<ResolvedModel> {
    let text = text.strip_suffix(LATEST).unwrap_or(text);
    let reference: ModelRef = text.parse()?;
    let manifest = store.find(&reference)?;
    let resolved = quant::resolve(reference.tag, manifest.format, manifest.quantization, reference.name.as_str())?;
    let kv = match resolved {
        Resolved::Kv(scheme) => Some(scheme),
        Resolved::None | Resolved::Gguf(_) => None,
    };
    Ok(ResolvedModel { reference, manifest, kv })
}

/// The reply's token limit: what was asked, at most the context; the context when not asked.
pub fn max_tokens(
    asked: Option<i64>,
    field: &str,
    model: &ResolvedModel,
    ctx_size: Option<usize>,
) -> Result<usize, ServeError> {
    let context = ctx_size.unwrap_or(context_limits(&model.manifest.facts).default);
    match asked {
        None => Ok(context),
        Some(n) if n < 1 => Err(ServeError::bad_request(format!("`{field}` must be at least 1, not {n}"))),
        Some(n) if n as u64 > context as u64 => Err(ServeError::bad_request(format!(
            "`{field}` must be at most the context of `{}`, {context} tokens, not {n}",
            model.reference
        ))),
        Some(n) => Ok(n as usize),
    }
}

/// Sampling values a request may carry, checked as `run` checks its flags.
pub fn check_sampling(temperature: Option<f64>, top_p: Option<f64>) -> Result<(), ServeError> {
    if let Some(t) = temperature.filter(|t| !(t.is_finite() && *t >= 0.0)) {
        return Err(ServeError::bad_request(format!("`temperature` must be a number of 0 or more, not {t}")));
    }
    if let Some(p) = top_p.filter(|p| !(*p > 0.0 && *p <= 1.0)) {
        return Err(ServeError::bad_request(format!("`top_p` must be in 0 < P <= 1, not {p}")));
    }
    Ok(())
}

/// `stop`: one text or a list of them.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum Stop {
    One(String),
    Many(Vec<String>),
}

impl Stop {
    pub fn into_vec(stop: Option<Stop>) -> Vec<String> {
        match stop {
            None => Vec::new(),
            Some(Stop::One(s)) => vec![s],
            Some(Stop::Many(v)) => v,
        }
    }
}

/// A seed for a request that gave none: a different one each time, as the APIs do.
pub fn fresh_seed() -> u64 {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    nanos as u64
}

/// HTTP status of an error kind.
pub fn status(kind: ErrorKind) -> axum::http::StatusCode {
    use axum::http::StatusCode;
    match kind {
        ErrorKind::BadRequest => StatusCode::BAD_REQUEST,
        ErrorKind::NotFound => StatusCode::NOT_FOUND,
        ErrorKind::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        ErrorKind::Busy { .. } => StatusCode::SERVICE_UNAVAILABLE,
        ErrorKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// An error response: `body` in the API's shape, `Retry-After` when busy.
pub fn error_response(error: &ServeError, body: serde_json::Value) -> axum::response::Response {
    use axum::response::IntoResponse;
    let mut response = (status(error.kind), axum::Json(body)).into_response();
    if let ErrorKind::Busy { retry_after } = error.kind {
        response.headers_mut().insert(axum::http::header::RETRY_AFTER, retry_after.into());
    }
    response
}

/// Seconds since 1970.
pub fn unix_seconds(time: std::time::SystemTime) -> u64 {
    time.duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// The body as bytes, or the error for one over the limit (or cut off).
pub fn body_bytes(
    body: Result<axum::body::Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<axum::body::Bytes, ServeError> {
    body.map_err(|e| match e.status() {
        axum::http::StatusCode::PAYLOAD_TOO_LARGE => ServeError {
            kind: ErrorKind::TooLarge,
            message: format!("the request body is over the limit of {} MiB", BODY_LIMIT >> 20),
        },
        _ => ServeError::bad_request(format!("cannot read the request body: {e}")),
    })
}

/// Waits for the reply to begin: an error before that is the response's status.
pub async fn started(events: &mut UnboundedReceiver<Event>) -> Result<usize, ServeError> {
    match events.recv().await {
        Some(Event::Started { prompt_tokens }) => Ok(prompt_tokens),
        Some(Event::Error(e)) => Err(e),
        _ => Err(lost()),
    }
}

/// The whole reply, after `started`.
pub async fn collect(events: &mut UnboundedReceiver<Event>) -> Result<(String, Finished), ServeError> {
    let mut text = String::new();
    loop {
        match events.recv().await {
            Some(Event::Text(piece)) => text.push_str(&piece),
            Some(Event::Done(finished)) => return Ok((text, finished)),
            Some(Event::Error(e)) => return Err(e),
            Some(Event::Started { .. }) => {}
            None => return Err(lost()),
        }
    }
}

fn lost() -> ServeError {
    ServeError::internal("the engine stopped before the reply ended")
}

/// What a streamed reply is made of, for an API to render as its chunks.
pub enum Chunk {
    Text(String),
    Done(Finished),
    Error(ServeError),
}

/// A streamed body: each event rendered by `render`; it ends after `Done`
/// or an error. Dropping the body (the client left) drops the receiver,
/// which cancels the request.
pub fn stream_body(
    events: UnboundedReceiver<Event>,
    render: impl FnMut(Chunk) -> String + Send + 'static,
) -> axum::body::Body {
    let stream = futures_util::stream::unfold((events, render, false), |(mut events, mut render, ended)| async move {
        if ended {
            return None;
        }
        let (chunk, ended) = loop {
            match events.recv().await {
                Some(Event::Started { .. }) => continue,
                Some(Event::Text(text)) => break (Chunk::Text(text), false),
                Some(Event::Done(finished)) => break (Chunk::Done(finished), true),
                Some(Event::Error(e)) => break (Chunk::Error(e), true),
                None => break (Chunk::Error(lost()), true),
            }
        };
        let bytes = axum::body::Bytes::from(render(chunk));
        Some((Ok::<_, std::convert::Infallible>(bytes), (events, render, ended)))
    });
    axum::body::Body::from_stream(stream)
}

/// RFC 3339 with milliseconds, as Ollama writes times.
pub fn rfc3339(time: std::time::SystemTime) -> String {
    humantime::format_rfc3339_millis(time).to_string()
}
