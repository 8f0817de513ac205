//! The HTTP side: routes of both APIs on axum, a body limit, panics kept
//! from clients, and a graceful stop on SIGINT/SIGTERM.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{get, post};
use futures_util::FutureExt;

use super::api::{self, ResolvedModel};
use super::engine::{EngineBackend, EngineConfig};
use super::{Backend, GenerationRequest, Outcome, Prompt, RequestLog, ServeError, ServeReporter, ollama, openai};
use crate::engine::SamplingRequest;
use crate::store::Store;

/// How to serve.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    pub host: String,
    pub port: u16,
    pub engine: EngineConfig,
    /// Models to load before listening (`--model`).
    pub preload: Vec<String>,
    /// How long a stop waits for requests in flight.
    pub grace: Duration,
}

/// What every handler shares.
pub struct AppState {
    pub backend: Arc<dyn Backend>,
    pub store: Store,
    pub reporter: Arc<dyn ServeReporter>,
    pub ctx_size: Option<usize>,
}

impl AppState {
    /// A request for the engine, sampling resolved against the model's defaults.
    pub fn request(
        &self,
        api: &'static str,
        model: ResolvedModel,
        prompt: Prompt,
        max_tokens: usize,
        sampling: SamplingRequest,
        stop: Vec<String>,
    ) -> GenerationRequest {
        let limits = Limits { max_tokens, sampling, stop };
        generation_request(&self.store, api, model, prompt, limits)
    }

    /// A request refused before it reached the engine: logged, then rendered.
    pub fn refused(
        &self,
        api: &'static str,
        model: Option<&str>,
        error: &ServeError,
        render: fn(&ServeError) -> Response,
    ) -> Response {
        self.reporter.request(&RequestLog {
            api,
            model: model.unwrap_or("-").to_string(),
            scheme: "-".into(),
            outcome: Outcome::Refused { status: api::status(error.kind).as_u16(), message: error.message.clone() },
            prompt_tokens: 0,
            generated_tokens: 0,
            time_to_first_token: None,
            decode: Duration::ZERO,
        });
        render(error)
    }
}

/// What a request asks of the reply besides its prompt.
struct Limits {
    max_tokens: usize,
    sampling: SamplingRequest,
    stop: Vec<String>,
}

fn generation_request(
    store: &Store,
    api: &'static str,
    model: ResolvedModel,
    prompt: Prompt,
    limits: Limits,
) -> GenerationRequest {
    // As `run`: the request's sampling first, then the model's generation config.
    let defaults = crate::engine::stored_generation_defaults(&store.model_files(&model.manifest))
        .ok()
        .flatten()
        .unwrap_or_default();
    GenerationRequest {
        reference: model.reference,
        manifest: model.manifest,
        kv: model.kv,
        prompt,
        max_tokens: limits.max_tokens,
        sampling: defaults.sampling(&limits.sampling),
        stop: limits.stop,
        api,
        received: Instant::now(),
    }
}

/// Loads `--model`s, listens, serves until SIGINT or SIGTERM, then lets
/// requests in flight finish (at most `grace`).
pub fn serve(store: Store, config: ServeConfig, reporter: Arc<dyn ServeReporter>) -> anyhow::Result<()> {
    let mut preload = Vec::new();
    for name in &config.preload {
        let model = api::find_model(&store, name)?;
        let limits = Limits { max_tokens: 1, sampling: SamplingRequest::default(), stop: Vec::new() };
        preload.push(generation_request(&store, "--model", model, Prompt::Text(String::new()), limits));
    }
    let backend = EngineBackend::start(store.clone(), config.engine.clone(), reporter.clone(), &preload)
        .map_err(|e| anyhow::anyhow!(e.message))?;
    let backend: Arc<dyn Backend> = Arc::new(backend);
    let state = Arc::new(AppState {
        backend: backend.clone(),
        store,
        reporter: reporter.clone(),
        ctx_size: config.engine.ctx_size,
    });
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    runtime.block_on(run(state, &config))?;
    backend.shut_down(config.grace);
    Ok(())
}

async fn run(state: Arc<AppState>, config: &ServeConfig) -> anyhow::Result<()> {
    let address = format!("{}:{}", config.host, config.port);
    let listener = tokio::net::TcpListener::bind(&address)
        .await
        .map_err(|e| anyhow::anyhow!(e).context(format!("cannot listen on `{address}`")))?;
    let reporter = state.reporter.clone();
    reporter.listening(&format!("http://{}", listener.local_addr()?));
    let (stopped, stop_seen) = tokio::sync::oneshot::channel::<()>();
    let shutdown = async move {
        let reason = stop_signal().await;
        reporter.stopping(reason);
        let _ = stopped.send(());
    };
    let server = axum::serve(listener, router(state)).with_graceful_shutdown(shutdown);
    let grace = config.grace;
    tokio::select! {
        served = server => served?,
        () = async move { let _ = stop_seen.await; tokio::time::sleep(grace).await } => {}
    }
    Ok(())
}

fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/v1/models", get(openai::models))
        .route("/v1/chat/completions", post(openai::chat))
        .route("/v1/completions", post(openai::completions))
        .route("/api/tags", get(ollama::tags))
        .route("/api/chat", post(ollama::chat))
        .route("/api/generate", post(ollama::generate))
        .route("/api/show", post(ollama::show))
        .route("/api/ps", get(ollama::ps))
        .route("/api/version", get(ollama::version))
        .layer(DefaultBodyLimit::max(api::BODY_LIMIT))
        .layer(middleware::from_fn(catch_panics))
        .with_state(state)
}

/// A panic in a handler is a 500 in the API's shape; the server goes on.
async fn catch_panics(request: Request, next: Next) -> Response {
    let ollama_api = request.uri().path().starts_with("/api/");
    match AssertUnwindSafe(next.run(request)).catch_unwind().await {
        Ok(response) => response,
        Err(_) => {
            let error = ServeError::internal("internal error: the request failed unexpectedly; the server goes on");
            if ollama_api { ollama::error(&error) } else { openai::error(&error) }
        }
    }
}

/// SIGINT or SIGTERM, whichever comes first.
async fn stop_signal() -> &'static str {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    let terminate = async {
        match term.as_mut() {
            Some(term) => term.recv().await,
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => "SIGINT",
        _ = terminate => "SIGTERM",
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};

    use super::*;

    /// A handler that panics answers 500 in its API's shape, and the next request is served.
    #[test]
    fn a_panicking_handler_is_a_500_and_the_server_goes_on() {
        async fn boom() -> Response {
            panic!("a bug")
        }
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let listener = runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
        let address = listener.local_addr().unwrap();
        let app = Router::new()
            .route("/api/boom", get(boom))
            .route("/v1/boom", get(boom))
            .route("/api/version", get(ollama::version))
            .layer(middleware::from_fn(catch_panics));
        std::thread::spawn(move || runtime.block_on(async { axum::serve(listener, app).await }));
        let get = |path: &str| {
            let mut stream = std::net::TcpStream::connect(address).unwrap();
            write!(stream, "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
            let mut response = String::new();
            stream.read_to_string(&mut response).unwrap();
            let (head, body) = response.split_once("\r\n\r\n").unwrap();
            (head.lines().next().unwrap().to_string(), body.to_string())
        };
        let message = "internal error: the request failed unexpectedly; the server goes on";
        assert_eq!(
            get("/api/boom"),
            ("HTTP/1.1 500 Internal Server Error".into(), format!("{{\"error\":\"{message}\"}}"))
        );
        let (status, body) = get("/v1/boom");
        assert_eq!(status, "HTTP/1.1 500 Internal Server Error");
        assert_eq!(serde_json::from_str::<serde_json::Value>(&body).unwrap()["error"]["message"], message);
        assert_eq!(get("/api/version").0, "HTTP/1.1 200 OK");
    }
}
