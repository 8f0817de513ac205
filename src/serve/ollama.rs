//! The Ollama API: `/api/tags`, `/api/chat`, `/api/generate`, `/api/show`,
//! `/api/ps`, `/api/version`; NDJSON streaming unless `"stream": false`,
//! errors as `{"error":"…"}`. Untagged models are `name:latest` here.

use std::sync::Arc;
use std::time::SystemTime;

use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use super::api::{self, Chunk, Stop};
use super::http::AppState;
use super::{Finished, GenerationRequest, Prompt, ServeError};
use crate::engine::chat::Message;
use crate::store::manifest::Manifest;

pub fn error(error: &ServeError) -> Response {
    api::error_response(error, json!({"error": error.message}))
}

/// A stored model's name as Ollama's clients write it.
fn ollama_name(manifest: &Manifest) -> String {
    match manifest.tag {
        Some(tag) => format!("{}:{tag}", manifest.name),
        None => format!("{}{}", manifest.name, api::LATEST),
    }
}

fn details(manifest: &Manifest) -> Value {
    let quantization = manifest.quantization.map(|q| q.to_string());
    json!({"format": manifest.format.to_string(), "family": manifest.facts.architecture,
           "families": [manifest.facts.architecture], "parameter_size": parameter_size(manifest.facts.parameters),
           "quantization_level": quantization.unwrap_or_default(), "parent_model": ""})
}

fn parameter_size(parameters: u64) -> String {
    match parameters {
        p if p >= 1_000_000_000 => format!("{:.1}B", p as f64 / 1e9),
        p => format!("{:.0}M", p as f64 / 1e6),
    }
}

pub async fn tags(State(state): State<Arc<AppState>>) -> Response {
    match state.store.manifests() {
        Ok((manifests, _)) => {
            let models: Vec<Value> = manifests
                .iter()
                .map(|m| {
                    let modified = m.pulled_at_time().map_or_else(String::new, api::rfc3339);
                    json!({"name": ollama_name(m), "model": ollama_name(m), "modified_at": modified,
                           "size": m.total_size(), "digest": m.id(), "details": details(m)})
                })
                .collect();
            axum::Json(json!({"models": models})).into_response()
        }
        Err(e) => error(&ServeError::from_error(&e.into())),
    }
}

pub async fn ps(State(state): State<Arc<AppState>>) -> Response {
    let models: Vec<Value> = state
        .backend
        .loaded()
        .iter()
        .map(|m| {
            json!({"name": m.name, "model": m.name, "size": m.size_bytes + m.cache_bytes, "size_vram": m.vram_bytes,
                   "device": m.device, "kv_scheme": m.kv_scheme, "cache_bytes": m.cache_bytes,
                   "context_length": m.context_length, "kv_block_tokens": m.block_tokens,
                   "kv_blocks_total": m.blocks_total, "kv_blocks_used": m.blocks_used, "sequences": m.sequences,
                   "waiting": m.waiting})
        })
        .collect();
    axum::Json(json!({"models": models})).into_response()
}

pub async fn version() -> Response {
    axum::Json(json!({"version": env!("CARGO_PKG_VERSION")})).into_response()
}

#[derive(Debug, Deserialize)]
struct ShowRequest {
    /// `name` is the older spelling.
    model: Option<String>,
    name: Option<String>,
}

pub async fn show(State(state): State<Arc<AppState>>, body: Result<Bytes, BytesRejection>) -> Response {
    let parsed = api::body_bytes(body).and_then(|b| api::parse_body::<ShowRequest>(&b));
    let name = match parsed.map(|r| r.model.or(r.name)) {
        Ok(Some(name)) => name,
        Ok(None) => return error(&ServeError::bad_request("invalid request body: missing field `model`")),
        Err(e) => return error(&e),
    };
    let model = match api::resolve_model(&state.store, &name) {
        Ok(model) => model,
        Err(e) => return error(&e),
    };
    let m = &model.manifest;
    let files = state.store.model_files(m);
    let template = match m.format {
        crate::quant::Format::Safetensors => {
            let jinja =
                files.read("chat_template.jinja").ok().flatten().map(|b| String::from_utf8_lossy(&b).into_owned());
            let config = files.read("tokenizer_config.json").ok().flatten();
            crate::engine::text::stored_chat_template(config.as_deref(), jinja).ok().flatten()
        }
        crate::quant::Format::Gguf => None,
    };
    let arch = &m.facts.architecture;
    let info = json!({"general.architecture": arch, "general.parameter_count": m.facts.parameters,
                      format!("{arch}.context_length"): m.facts.context_length,
                      format!("{arch}.block_count"): m.facts.layers,
                      format!("{arch}.embedding_length"): m.facts.hidden_size});
    let modified = m.pulled_at_time().map_or_else(String::new, api::rfc3339);
    axum::Json(json!({"modelfile": "", "parameters": "", "template": template.unwrap_or_default(),
                      "details": details(m), "model_info": info, "modified_at": modified,
                      "capabilities": ["completion"]}))
    .into_response()
}

/// `options`, as far as llmctl's sampling goes.
#[derive(Debug, Default, Deserialize)]
struct Options {
    temperature: Option<f64>,
    top_p: Option<f64>,
    top_k: Option<i64>,
    seed: Option<i64>,
    /// -1 (or absent): up to the context.
    num_predict: Option<i64>,
    stop: Option<Stop>,
}

#[derive(Debug, Deserialize)]
struct ChatMessage {
    role: String,
    #[serde(default)]
    content: String,
}

/// `/api/chat` and `/api/generate` in one type, so a wrong field's path is exact.
#[derive(Debug, Deserialize)]
struct GenerateRequest {
    model: String,
    /// Chat only.
    messages: Option<Vec<ChatMessage>>,
    /// Generate only.
    prompt: Option<String>,
    system: Option<String>,
    #[serde(default)]
    raw: bool,
    stream: Option<bool>,
    #[serde(default)]
    options: Options,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Chat,
    Generate,
}

pub async fn chat(State(state): State<Arc<AppState>>, body: Result<Bytes, BytesRejection>) -> Response {
    generate_for(state, Kind::Chat, body).await
}

pub async fn generate(State(state): State<Arc<AppState>>, body: Result<Bytes, BytesRejection>) -> Response {
    generate_for(state, Kind::Generate, body).await
}

async fn generate_for(state: Arc<AppState>, kind: Kind, body: Result<Bytes, BytesRejection>) -> Response {
    let api = if kind == Kind::Chat { "POST /api/chat" } else { "POST /api/generate" };
    let parsed = api::body_bytes(body).and_then(|b| api::parse_body::<GenerateRequest>(&b));
    let request = match parsed {
        Ok(r) => r,
        Err(e) => return state.refused(api, None, &e, error),
    };
    let model_name = request.model.clone();
    let stream = request.stream.unwrap_or(true);
    let mut events = match check(&state, api, kind, request).and_then(|r| state.backend.submit(r)) {
        Ok(events) => events,
        Err(e) => return state.refused(api, Some(&model_name), &e, error),
    };
    if let Err(e) = api::started(&mut events).await {
        return error(&e);
    }
    let reply = Reply { kind, model: model_name };
    if !stream {
        return match api::collect(&mut events).await {
            Ok((text, finished)) => axum::Json(reply.done(&text, &finished)).into_response(),
            Err(e) => error(&e),
        };
    }
    let body = api::stream_body(events, move |chunk| {
        let value = match chunk {
            Chunk::Text(text) => reply.part(&text),
            Chunk::Done(finished) => reply.done("", &finished),
            Chunk::Error(e) => json!({"error": e.message}),
        };
        format!("{value}\n")
    });
    ([(header::CONTENT_TYPE, "application/x-ndjson")], body).into_response()
}

fn check(state: &AppState, api: &'static str, kind: Kind, r: GenerateRequest) -> Result<GenerationRequest, ServeError> {
    let o = r.options;
    api::check_sampling(o.temperature, o.top_p)?;
    let system = r.system.map(|content| Message { role: "system".into(), content });
    let prompt = match (kind, r.messages, r.prompt) {
        (Kind::Chat, Some(messages), _) => Prompt::Chat(
            system
                .into_iter()
                .chain(messages.into_iter().map(|m| Message { role: m.role, content: m.content }))
                .collect(),
        ),
        (Kind::Generate, _, Some(prompt)) if r.raw => Prompt::Text(prompt),
        (Kind::Generate, _, Some(content)) => {
            Prompt::Chat(system.into_iter().chain([Message { role: "user".into(), content }]).collect())
        }
        (Kind::Chat, None, _) => return Err(ServeError::bad_request("invalid request body: missing field `messages`")),
        (Kind::Generate, _, None) => {
            return Err(ServeError::bad_request("invalid request body: missing field `prompt`"));
        }
    };
    let model = api::resolve_model(&state.store, &r.model)?;
    let num_predict = o.num_predict.filter(|&n| n >= 0);
    let max_tokens = api::max_tokens(num_predict, "options.num_predict", &model, state.ctx_size)?;
    let requested = crate::engine::SamplingRequest {
        temperature: o.temperature,
        top_k: o.top_k.filter(|&k| k > 0).map(|k| k as usize),
        top_p: o.top_p,
        seed: o.seed.map_or_else(api::fresh_seed, |s| s as u64),
    };
    Ok(state.request(api, model, prompt, max_tokens, requested, Stop::into_vec(o.stop)))
}

struct Reply {
    kind: Kind,
    model: String,
}

impl Reply {
    fn part(&self, text: &str) -> Value {
        let mut value = json!({"model": self.model, "created_at": api::rfc3339(SystemTime::now()), "done": false});
        match self.kind {
            Kind::Chat => value["message"] = json!({"role": "assistant", "content": text}),
            Kind::Generate => value["response"] = json!(text),
        }
        value
    }

    fn done(&self, text: &str, f: &Finished) -> Value {
        let mut value = self.part(text);
        let nanos = |d: std::time::Duration| d.as_nanos() as u64;
        value["done"] = json!(true);
        value["done_reason"] = json!(f.reason);
        value["total_duration"] = json!(nanos(f.prefill + f.decode));
        value["load_duration"] = json!(0);
        value["prompt_eval_count"] = json!(f.prompt_tokens);
        value["prompt_eval_duration"] = json!(nanos(f.prefill));
        value["eval_count"] = json!(f.completion_tokens);
        value["eval_duration"] = json!(nanos(f.decode));
        value
    }
}
