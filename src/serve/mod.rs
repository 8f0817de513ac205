//! `llmctl serve`: OpenAI- and Ollama-compatible HTTP APIs over the engine.
//!
//! The seam is [`Backend`]: the HTTP side validates a request into a
//! [`GenerationRequest`] and submits it; events come back on a channel of
//! its own. The types say nothing about how the engine schedules:
//! [`engine::EngineBackend`] batches every model's requests continuously on
//! one engine thread.

pub mod api;
pub mod engine;
mod http;
mod ollama;
mod openai;
mod stop;

use std::time::Duration;

use serde::Serialize;
use tokio::sync::mpsc::UnboundedReceiver;

use crate::engine::chat::Message;
use crate::engine::sampling::SamplingParams;
use crate::store::manifest::Manifest;
use crate::store::reference::ModelRef;

pub use http::{ServeConfig, serve};

/// What the model is given.
#[derive(Debug, Clone)]
pub enum Prompt {
    /// Rendered with the model's chat template, as `llmctl run` renders it.
    Chat(Vec<Message>),
    /// Tokenized as it is, as `llmctl run --raw`.
    Text(String),
}

/// A validated request: the model resolved in the store, limits checked.
#[derive(Debug, Clone)]
pub struct GenerationRequest {
    /// The reference as the client wrote it (`:latest` dropped).
    pub reference: ModelRef,
    pub manifest: Manifest,
    /// The KV-cache scheme the reference's tag chose (`None`: unquantized).
    pub kv: Option<crate::quant::KvScheme>,
    pub prompt: Prompt,
    pub max_tokens: usize,
    pub sampling: SamplingParams,
    /// Texts that end the reply where they first appear (not included).
    pub stop: Vec<String>,
    /// Which API asked, for the log line.
    pub api: &'static str,
    /// When the request arrived (time to first token counts from here).
    pub received: std::time::Instant,
}

/// What a submitted request sends back, in order: `Started`, any number of
/// `Text`, then `Done`; or `Error` at any point (then nothing more).
#[derive(Debug, Clone)]
pub enum Event {
    /// The model is loaded and the prompt fits: the reply begins.
    Started {
        prompt_tokens: usize,
    },
    Text(String),
    Done(Finished),
    Error(ServeError),
}

/// Why a reply ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FinishReason {
    /// The model's end token or a stop text.
    Stop,
    /// `max_tokens`, or a full context.
    Length,
}

/// The end of a reply, with its usage.
#[derive(Debug, Clone)]
pub struct Finished {
    pub reason: FinishReason,
    pub prompt_tokens: usize,
    pub completion_tokens: usize,
    pub prefill: Duration,
    pub decode: Duration,
}

/// A model the backend holds, as `/api/ps` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct LoadedModel {
    /// `name[:kv_scheme]`, as clients name it.
    pub name: String,
    pub device: String,
    /// `none`'s layout name (`f32`, `bf16`, …), `kv_int8` or `kv_fp8`.
    pub kv_scheme: String,
    pub context_length: usize,
    /// Bytes of its KV block pool, and of what its caches keep of their own
    /// (sliding-window rings, recurrent states).
    pub cache_bytes: u64,
    /// Positions per block.
    pub block_tokens: usize,
    pub blocks_total: usize,
    /// Blocks reserved by requests running now.
    pub blocks_used: usize,
    /// Requests running now.
    pub sequences: usize,
    /// Requests waiting for a cache or blocks.
    pub waiting: usize,
    /// VRAM its load took (weights with its first cache, or the cache alone), measured by NVML; `None` off a GPU.
    pub vram_bytes: Option<u64>,
    pub size_bytes: u64,
}

/// What kind of failure a request met; each API renders it in its own shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    BadRequest,
    NotFound,
    /// The body is over [`api::BODY_LIMIT`].
    TooLarge,
    /// The queue is full: try again after this many seconds.
    Busy {
        retry_after: u64,
    },
    Internal,
}

/// A failed request: its kind and the message the client sees (the text
/// the CLI prints for the same error, its hint after it).
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct ServeError {
    pub kind: ErrorKind,
    pub message: String,
}

impl ServeError {
    pub fn bad_request(message: impl Into<String>) -> ServeError {
        ServeError { kind: ErrorKind::BadRequest, message: message.into() }
    }

    pub fn internal(message: impl Into<String>) -> ServeError {
        ServeError { kind: ErrorKind::Internal, message: message.into() }
    }

    /// An error of llmctl's own, with its status and hint as the CLI classifies them.
    pub fn from_error(error: &anyhow::Error) -> ServeError {
        let (status, hint, not_found) = crate::diagnostics::classify(error);
        let mut message = error.chain().map(|c| c.to_string()).collect::<Vec<_>>().join(": ");
        if let Some(hint) = hint {
            message.push_str(&format!(" (hint: {hint})"));
        }
        let kind = match status {
            _ if not_found => ErrorKind::NotFound,
            crate::exit::ExitStatus::Usage => ErrorKind::BadRequest,
            _ => ErrorKind::Internal,
        };
        ServeError { kind, message }
    }
}

/// The seam between the HTTP side and whatever runs the model. What an
/// implementation owes the HTTP side:
/// - `submit` never blocks on generation: it admits the request (or
///   refuses it, `ErrorKind::Busy` when full) and returns at once;
/// - each request's events come in the order [`Event`] documents, each
///   request on its own channel, however requests are interleaved;
/// - a closed receiver (the client left) stops work on that request soon,
///   and its log line says `Outcome::Cancelled`;
/// - a failure of one request (load, template, a panic) is that request's
///   `Event::Error`, and the backend keeps serving the others.
pub trait Backend: Send + Sync {
    /// Queues a request; its events come back on the receiver. Dropping the
    /// receiver cancels the request (the engine stops generating for it).
    fn submit(&self, request: GenerationRequest) -> Result<UnboundedReceiver<Event>, ServeError>;

    /// The models loaded now.
    fn loaded(&self) -> Vec<LoadedModel>;

    /// Stops taking requests; those queued or running finish. Returns once
    /// all are done or `grace` has passed.
    fn shut_down(&self, grace: Duration);
}

/// What the server tells people, through whoever prints.
pub trait ServeReporter: Send + Sync {
    fn listening(&self, address: &str);
    fn loaded(&self, model: &LoadedModel, load_time: Duration, notes: &[String]);
    fn request(&self, line: &RequestLog);
    fn stopping(&self, reason: &str);
}

/// One request, as its log line says it.
#[derive(Debug, Clone)]
pub struct RequestLog {
    pub api: &'static str,
    pub model: String,
    pub scheme: String,
    pub outcome: Outcome,
    pub prompt_tokens: usize,
    pub generated_tokens: usize,
    pub time_to_first_token: Option<Duration>,
    pub decode: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Finished(FinishReason),
    /// The client went away before the reply ended.
    Cancelled,
    Failed(String),
    /// Refused before it reached the engine, with the status it got.
    Refused {
        status: u16,
        message: String,
    },
}

impl RequestLog {
    /// `POST /api/chat smollm2:kv_int8 (kv_int8): 12 prompt + 8 generated tokens, first token 0.21 s, 31.2 tokens/s, stop`
    pub fn line(&self) -> String {
        let ttft = self.time_to_first_token.map_or("-".into(), |t| format!("{:.3} s", t.as_secs_f64()));
        let rate = match self.decode.as_secs_f64() {
            s if s > 0.0 => self.generated_tokens.saturating_sub(1) as f64 / s,
            _ => 0.0,
        };
        let outcome = match &self.outcome {
            Outcome::Finished(FinishReason::Stop) => "stop".to_string(),
            Outcome::Finished(FinishReason::Length) => "length".to_string(),
            Outcome::Cancelled => "cancelled by the client".to_string(),
            Outcome::Failed(message) => format!("failed: {message}"),
            Outcome::Refused { status, message } => {
                return format!("{} {}: refused with {status}: {message}", self.api, self.model);
            }
        };
        format!(
            "{} {} (KV cache: {}): {} prompt + {} generated tokens, first token {ttft}, {rate:.1} tokens/s, {outcome}",
            self.api, self.model, self.scheme, self.prompt_tokens, self.generated_tokens
        )
    }
}
