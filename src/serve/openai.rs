//! The OpenAI API: `/v1/models`, `/v1/chat/completions`, `/v1/completions`,
//! whole replies and server-sent events, errors as `{"error":{…}}`.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use super::api::{self, Chunk, Stop};
use super::http::AppState;
use super::{ErrorKind, FinishReason, Finished, Prompt, ServeError};
use crate::engine::chat::Message;

/// The body of an OpenAI error, with the type its clients map to exceptions.
fn error_body(error: &ServeError) -> Value {
    let (kind, code) = match error.kind {
        ErrorKind::BadRequest | ErrorKind::TooLarge => ("invalid_request_error", Value::Null),
        ErrorKind::NotFound => ("invalid_request_error", json!("model_not_found")),
        ErrorKind::Busy { .. } => ("server_error", json!("server_busy")),
        ErrorKind::Internal => ("server_error", Value::Null),
    };
    json!({"error": {"message": error.message, "type": kind, "param": Value::Null, "code": code}})
}

pub fn error(error: &ServeError) -> Response {
    api::error_response(error, error_body(error))
}

pub async fn models(State(state): State<Arc<AppState>>) -> Response {
    match state.store.manifests() {
        Ok((manifests, _)) => {
            let data: Vec<Value> = manifests
                .iter()
                .map(|m| {
                    let created = m.pulled_at_time().map_or(0, api::unix_seconds);
                    json!({"id": m.reference().to_string(), "object": "model", "created": created, "owned_by": "llmctl"})
                })
                .collect();
            axum::Json(json!({"object": "list", "data": data})).into_response()
        }
        Err(e) => error(&ServeError::from_error(&e.into())),
    }
}

#[derive(Debug, Deserialize)]
struct StreamOptions {
    #[serde(default)]
    include_usage: bool,
}

/// What both generation endpoints take (one type, so a wrong field's path is exact).
#[derive(Debug, Deserialize)]
struct Common {
    model: String,
    /// Chat only.
    messages: Option<Vec<ChatMessage>>,
    /// Completions only.
    prompt: Option<PromptField>,
    #[serde(default)]
    stream: bool,
    stream_options: Option<StreamOptions>,
    max_tokens: Option<i64>,
    max_completion_tokens: Option<i64>,
    temperature: Option<f64>,
    top_p: Option<f64>,
    seed: Option<u64>,
    stop: Option<Stop>,
    n: Option<i64>,
}

/// A message's content: text, or a list of parts of which the text ones count.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Content {
    Text(String),
    Parts(Vec<Part>),
}

#[derive(Debug, Deserialize)]
struct Part {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    text: String,
}

#[derive(Debug, Deserialize)]
struct ChatMessage {
    role: String,
    content: Option<Content>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum PromptField {
    One(String),
    Many(Vec<String>),
}

/// Which endpoint, for the shape of its replies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Chat,
    Completion,
}

pub async fn chat(State(state): State<Arc<AppState>>, body: Result<Bytes, BytesRejection>) -> Response {
    let parsed = api::body_bytes(body).and_then(|b| api::parse_body::<Common>(&b));
    let mut request = match parsed.and_then(|r| required(r.messages.is_some(), "messages").map(|()| r)) {
        Ok(r) => r,
        Err(e) => return state.refused("POST /v1/chat/completions", None, &e, error),
    };
    let messages = request
        .messages
        .take()
        .into_iter()
        .flatten()
        .map(|m| Message { role: m.role, content: text_of(m.content) })
        .collect();
    generate(state, Kind::Chat, Prompt::Chat(messages), request).await
}

pub async fn completions(State(state): State<Arc<AppState>>, body: Result<Bytes, BytesRejection>) -> Response {
    let parsed = api::body_bytes(body).and_then(|b| api::parse_body::<Common>(&b));
    let mut request = match parsed.and_then(|r| required(r.prompt.is_some(), "prompt").map(|()| r)) {
        Ok(r) => r,
        Err(e) => return state.refused("POST /v1/completions", None, &e, error),
    };
    let prompt = match request.prompt.take() {
        Some(PromptField::One(text)) => text,
        Some(PromptField::Many(mut texts)) if texts.len() == 1 => texts.remove(0),
        _ => {
            let e =
                ServeError::bad_request("invalid request body: field `prompt`: llmctl takes one prompt per request");
            return state.refused("POST /v1/completions", Some(&request.model), &e, error);
        }
    };
    generate(state, Kind::Completion, Prompt::Text(prompt), request).await
}

fn required(present: bool, field: &str) -> Result<(), ServeError> {
    if present {
        Ok(())
    } else {
        Err(ServeError::bad_request(format!("invalid request body: missing field `{field}`")))
    }
}

fn text_of(content: Option<Content>) -> String {
    match content {
        None => String::new(),
        Some(Content::Text(text)) => text,
        Some(Content::Parts(parts)) => parts.into_iter().filter(|p| p.kind == "text").map(|p| p.text).collect(),
    }
}

async fn generate(state: Arc<AppState>, kind: Kind, prompt: Prompt, common: Common) -> Response {
    let api = match kind {
        Kind::Chat => "POST /v1/chat/completions",
        Kind::Completion => "POST /v1/completions",
    };
    let model_name = common.model.clone();
    let checked = check(&state, api, prompt, &common);
    let mut events = match checked.and_then(|r| state.backend.submit(r)) {
        Ok(events) => events,
        Err(e) => return state.refused(api, Some(&model_name), &e, error),
    };
    if let Err(e) = api::started(&mut events).await {
        return error(&e);
    }
    let reply =
        Reply { kind, id: reply_id(kind), created: api::unix_seconds(std::time::SystemTime::now()), model: model_name };
    if !common.stream {
        return match api::collect(&mut events).await {
            Ok((text, finished)) => axum::Json(reply.whole(&text, &finished)).into_response(),
            Err(e) => error(&e),
        };
    }
    let include_usage = common.stream_options.is_some_and(|o| o.include_usage);
    let mut first = kind == Kind::Chat;
    let body = api::stream_body(events, move |chunk| {
        let mut out = String::new();
        if std::mem::take(&mut first) {
            out.push_str(&sse(&reply.chunk(json!({"role": "assistant", "content": ""}), None)));
        }
        match chunk {
            Chunk::Text(text) => out.push_str(&sse(&reply.delta(&text))),
            Chunk::Done(finished) => {
                out.push_str(&sse(&reply.chunk(reply.empty_delta(), Some(finished.reason))));
                if include_usage {
                    let mut usage = reply.envelope();
                    usage["choices"] = json!([]);
                    usage["usage"] = usage_of(&finished);
                    out.push_str(&sse(&usage));
                }
                out.push_str("data: [DONE]\n\n");
            }
            Chunk::Error(e) => out.push_str(&sse(&error_body(&e))),
        }
        out
    });
    ([(header::CONTENT_TYPE, "text/event-stream"), (header::CACHE_CONTROL, "no-cache")], body).into_response()
}

/// Validates the request into what the engine runs.
fn check(
    state: &AppState,
    api: &'static str,
    prompt: Prompt,
    common: &Common,
) -> Result<super::GenerationRequest, ServeError> {
    if let Some(n) = common.n.filter(|&n| n != 1) {
        return Err(ServeError::bad_request(format!(
            "`n` must be 1: llmctl generates one choice per request, not {n}"
        )));
    }
    api::check_sampling(common.temperature, common.top_p)?;
    let model = api::resolve_model(&state.store, &common.model)?;
    let (asked, field) = match common.max_completion_tokens {
        Some(n) => (Some(n), "max_completion_tokens"),
        None => (common.max_tokens, "max_tokens"),
    };
    let max_tokens = api::max_tokens(asked, field, &model, state.ctx_size)?;
    let requested = crate::engine::SamplingRequest {
        temperature: common.temperature,
        top_k: None,
        top_p: common.top_p,
        seed: common.seed.unwrap_or_else(api::fresh_seed),
    };
    Ok(state.request(api, model, prompt, max_tokens, requested, Stop::into_vec(common.stop.clone())))
}

fn reply_id(kind: Kind) -> String {
    let prefix = if kind == Kind::Chat { "chatcmpl" } else { "cmpl" };
    format!("{prefix}-{:016x}", api::fresh_seed())
}

/// The parts every object of one reply shares.
struct Reply {
    kind: Kind,
    id: String,
    created: u64,
    model: String,
}

impl Reply {
    fn object(&self, streamed: bool) -> &'static str {
        match (self.kind, streamed) {
            (Kind::Chat, false) => "chat.completion",
            (Kind::Chat, true) => "chat.completion.chunk",
            (Kind::Completion, _) => "text_completion",
        }
    }

    fn envelope(&self) -> Value {
        json!({"id": self.id, "object": self.object(true), "created": self.created, "model": self.model})
    }

    fn whole(&self, text: &str, finished: &Finished) -> Value {
        let choice = match self.kind {
            Kind::Chat => json!({"index": 0, "message": {"role": "assistant", "content": text}, "logprobs": null,
                                 "finish_reason": finished.reason}),
            Kind::Completion => json!({"index": 0, "text": text, "logprobs": null, "finish_reason": finished.reason}),
        };
        json!({"id": self.id, "object": self.object(false), "created": self.created, "model": self.model,
               "choices": [choice], "usage": usage_of(finished)})
    }

    fn delta(&self, text: &str) -> Value {
        match self.kind {
            Kind::Chat => self.chunk(json!({"content": text}), None),
            Kind::Completion => self.text_chunk(text, None),
        }
    }

    fn empty_delta(&self) -> Value {
        json!({})
    }

    /// A streamed chunk: a chat delta, or for completions its text.
    fn chunk(&self, delta: Value, finish: Option<FinishReason>) -> Value {
        if self.kind == Kind::Completion {
            return self.text_chunk(delta["content"].as_str().unwrap_or(""), finish);
        }
        let mut chunk = self.envelope();
        chunk["choices"] = json!([{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}]);
        chunk
    }

    fn text_chunk(&self, text: &str, finish: Option<FinishReason>) -> Value {
        let mut chunk = self.envelope();
        chunk["choices"] = json!([{"index": 0, "text": text, "logprobs": null, "finish_reason": finish}]);
        chunk
    }
}

fn usage_of(finished: &Finished) -> Value {
    json!({"prompt_tokens": finished.prompt_tokens, "completion_tokens": finished.completion_tokens,
           "total_tokens": finished.prompt_tokens + finished.completion_tokens})
}

fn sse(value: &Value) -> String {
    format!("data: {value}\n\n")
}
