//! The backend of today: one engine thread that runs requests one at a
//! time, in arrival order, from a bounded queue. Models load on first use
//! (weights once per stored model, a cache per KV scheme) and stay loaded.

use std::collections::HashMap;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel};

use super::stop::StopMatcher;
use super::{
    Backend, ErrorKind, Event, FinishReason, Finished, GenerationRequest, LoadedModel, Outcome, Prompt, RequestLog,
    ServeError, ServeReporter,
};
use crate::engine::decoder::{CachedModel, Decoder};
use crate::engine::device::DeviceRequest;
use crate::engine::generate::{GenerateOptions, StopReason, TokenSink, generate};
use crate::engine::kv_cache::KvCache;
use crate::engine::{self, EngineError, LoadObserver, LoadStage, LoadedWeights};
use crate::gpu::VramProbe;
use crate::quant::KvScheme;
use crate::store::Store;

/// How the engine loads models.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    pub device: DeviceRequest,
    pub ctx_size: Option<usize>,
    /// Requests that may wait while one runs; one more is refused with 503.
    pub max_queue: usize,
}

/// Seconds a refused client is told to wait (`Retry-After`).
const RETRY_AFTER_SECONDS: u64 = 1;

struct Job {
    request: GenerationRequest,
    events: UnboundedSender<Event>,
}

/// Runs requests on one engine thread, one at a time.
pub struct EngineBackend {
    queue: Mutex<Option<SyncSender<Job>>>,
    loaded: Arc<Mutex<Vec<LoadedModel>>>,
    /// Requests queued or running.
    in_flight: Arc<AtomicUsize>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl EngineBackend {
    /// Loads `preload`'s models here (`serve --model`), then starts the engine thread.
    pub fn start(
        store: Store,
        config: EngineConfig,
        reporter: Arc<dyn ServeReporter>,
        preload: &[GenerationRequest],
    ) -> Result<EngineBackend, ServeError> {
        let (queue, jobs) = std::sync::mpsc::sync_channel(config.max_queue);
        let loaded = Arc::new(Mutex::new(Vec::new()));
        let in_flight = Arc::new(AtomicUsize::new(0));
        let mut worker = Worker {
            store,
            config,
            reporter,
            weights: HashMap::new(),
            caches: HashMap::new(),
            loaded: loaded.clone(),
            in_flight: in_flight.clone(),
        };
        for request in preload {
            worker.ensure_loaded(request, &request.manifest.id())?;
        }
        let thread = std::thread::Builder::new()
            .name("llmctl-engine".into())
            .spawn(move || worker.run(jobs))
            .map_err(|e| ServeError::internal(format!("cannot start the engine thread: {e}")))?;
        Ok(EngineBackend { queue: Mutex::new(Some(queue)), loaded, in_flight, thread: Mutex::new(Some(thread)) })
    }
}

impl Backend for EngineBackend {
    fn submit(&self, request: GenerationRequest) -> Result<UnboundedReceiver<Event>, ServeError> {
        let (events, receiver) = unbounded_channel();
        let queue = self.queue.lock().unwrap_or_else(|e| e.into_inner());
        let Some(queue) = queue.as_ref() else {
            return Err(ServeError {
                kind: ErrorKind::Busy { retry_after: 0 },
                message: "the server is shutting down".into(),
            });
        };
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        match queue.try_send(Job { request, events }) {
            Ok(()) => Ok(receiver),
            Err(error) => {
                self.in_flight.fetch_sub(1, Ordering::SeqCst);
                Err(match error {
                    TrySendError::Full(_) => ServeError {
                        kind: ErrorKind::Busy { retry_after: RETRY_AFTER_SECONDS },
                        message: "the server is busy: the request queue is full (`--max-queue`); try again shortly"
                            .into(),
                    },
                    TrySendError::Disconnected(_) => ServeError::internal("the engine thread has stopped"),
                })
            }
        }
    }

    fn loaded(&self) -> Vec<LoadedModel> {
        self.loaded.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn shut_down(&self, grace: Duration) {
        // Closing the queue ends the engine thread once the queued jobs ran.
        self.queue.lock().unwrap_or_else(|e| e.into_inner()).take();
        let deadline = Instant::now() + grace;
        while self.in_flight.load(Ordering::SeqCst) > 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        if self.in_flight.load(Ordering::SeqCst) == 0
            && let Some(thread) = self.thread.lock().unwrap_or_else(|e| e.into_inner()).take()
        {
            let _ = thread.join();
        }
    }
}

/// The engine thread's state: the models it holds.
struct Worker {
    store: Store,
    config: EngineConfig,
    reporter: Arc<dyn ServeReporter>,
    /// Weights by manifest id: every tag of one stored model shares them.
    weights: HashMap<String, LoadedWeights>,
    caches: HashMap<(String, Option<KvScheme>), KvCache>,
    loaded: Arc<Mutex<Vec<LoadedModel>>>,
    in_flight: Arc<AtomicUsize>,
}

impl Worker {
    fn run(&mut self, jobs: Receiver<Job>) {
        for job in jobs {
            let events = job.events.clone();
            let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| self.run_job(job)));
            if let Err(panic) = outcome {
                let what = panic
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_default();
                let _ = events.send(Event::Error(ServeError::internal(format!("the engine failed: {what}"))));
            }
            self.in_flight.fetch_sub(1, Ordering::SeqCst);
        }
    }

    fn run_job(&mut self, job: Job) {
        let Job { request, events } = job;
        let mut log = RequestLog {
            api: request.api,
            model: request.reference.to_string(),
            scheme: request.kv.map_or("none".into(), |k| k.to_string()),
            outcome: Outcome::Cancelled,
            prompt_tokens: 0,
            generated_tokens: 0,
            time_to_first_token: None,
            decode: Duration::ZERO,
        };
        // A client that left while its request waited costs nothing.
        if events.is_closed() {
            self.reporter.request(&log);
            return;
        }
        match self.generate(&request, &events, &mut log) {
            Ok(finished) => {
                log.outcome = match finished {
                    Some(f) => {
                        let reason = f.reason;
                        let _ = events.send(Event::Done(f));
                        Outcome::Finished(reason)
                    }
                    None => Outcome::Cancelled,
                };
            }
            Err(error) => {
                log.outcome = Outcome::Failed(error.message.clone());
                let _ = events.send(Event::Error(error));
            }
        }
        self.reporter.request(&log);
    }

    /// Loads what the request needs, then generates; `None` when the client left.
    fn generate(
        &mut self,
        request: &GenerationRequest,
        events: &UnboundedSender<Event>,
        log: &mut RequestLog,
    ) -> Result<Option<Finished>, ServeError> {
        let id = request.manifest.id();
        self.ensure_loaded(request, &id)?;
        let weights = &self.weights[&id];
        let cache = self.caches.get_mut(&(id.clone(), request.kv)).expect("loaded with its weights");
        log.scheme = cache.layout().name().to_string();
        let ids = encode(weights, &request.prompt)?;
        log.prompt_tokens = ids.len();
        let mut decoder = CachedModel { model: &weights.model, cache };
        decoder.reset();
        decoder.check_room(ids.len() + 1).map_err(|full| {
            ServeError::bad_request(format!(
                "the prompt ({} tokens) does not fit in the context ({} tokens) with room for a reply",
                ids.len(),
                full.capacity
            ))
        })?;
        if events.send(Event::Started { prompt_tokens: ids.len() }).is_err() {
            return Ok(None);
        }
        let options = GenerateOptions { max_tokens: request.max_tokens, sampling: request.sampling.clone() };
        let mut sink = EventSink {
            events,
            stop: StopMatcher::new(&request.stop),
            stopped: false,
            first: None,
            received: request.received,
        };
        let result = generate(&mut decoder, &weights.text, &ids, 0, &options, &mut sink);
        log.time_to_first_token = sink.first;
        let stats = result.map_err(|e| ServeError::from_error(&e.into()))?;
        log.generated_tokens = stats.generated_tokens;
        log.decode = stats.decode;
        let reason = match stats.stop_reason {
            StopReason::Interrupted if !sink.stopped => return Ok(None),
            StopReason::Eos | StopReason::Interrupted => FinishReason::Stop,
            StopReason::MaxTokens | StopReason::ContextFull => FinishReason::Length,
        };
        let rest = sink.stop.finish();
        if !sink.stopped && !rest.is_empty() && events.send(Event::Text(rest)).is_err() {
            return Ok(None);
        }
        Ok(Some(Finished {
            reason,
            prompt_tokens: stats.prompt_tokens,
            completion_tokens: stats.generated_tokens,
            prefill: stats.prefill,
            decode: stats.decode,
        }))
    }

    /// The request's weights and cache, loaded unless they are.
    fn ensure_loaded(&mut self, request: &GenerationRequest, id: &str) -> Result<(), ServeError> {
        let key = (id.to_string(), request.kv);
        if self.caches.contains_key(&key) {
            return Ok(());
        }
        let started = Instant::now();
        let fail = |e: EngineError| ServeError::from_error(&anyhow::Error::from(e).context("loading the model failed"));
        let mut vram = VramDelta { probe: None, before: None };
        if !self.weights.contains_key(id) {
            let files = self.store.model_files(&request.manifest);
            let weights =
                engine::load_weights(&files, self.config.device, self.config.ctx_size, &mut vram).map_err(fail)?;
            self.weights.insert(id.to_string(), weights);
        }
        let weights = &self.weights[id];
        if vram.probe.is_none() {
            vram.stage(LoadStage::DeviceReady, &weights.device);
        }
        let cache = engine::new_cache(weights, request.kv, weights.context).map_err(fail)?;
        let name = match request.kv {
            Some(kv) => format!("{}:{kv}", request.reference.name),
            None => request.reference.name.to_string(),
        };
        let model = LoadedModel {
            name,
            device: weights.device.clone(),
            kv_scheme: cache.layout().name().to_string(),
            context_length: cache.capacity(),
            cache_bytes: cache.allocated_bytes(),
            vram_bytes: vram.measured(),
            size_bytes: request.manifest.total_size(),
        };
        self.reporter.loaded(&model, started.elapsed(), &weights.conversions);
        self.loaded.lock().unwrap_or_else(|e| e.into_inner()).push(model);
        self.caches.insert(key, cache);
        Ok(())
    }
}

/// The VRAM a load took, measured by NVML around it (`None` off a GPU).
struct VramDelta {
    probe: Option<VramProbe>,
    before: Option<u64>,
}

impl LoadObserver for VramDelta {
    fn stage(&mut self, stage: LoadStage, device: &str) {
        if stage == LoadStage::DeviceReady {
            let probe = VramProbe::open(DeviceRequest::cuda_index(device));
            self.before = probe.current();
            self.probe = Some(probe);
        }
    }
}

impl VramDelta {
    fn measured(&self) -> Option<u64> {
        let now = self.probe.as_ref()?.current()?;
        Some(now.saturating_sub(self.before.unwrap_or(0)))
    }
}

/// The prompt's token ids, as `llmctl run` makes them (`--raw` for plain text).
fn encode(weights: &LoadedWeights, prompt: &Prompt) -> Result<Vec<u32>, ServeError> {
    let ids = match prompt {
        Prompt::Chat(messages) => weights.text.encode_chat(messages).map(|(_, ids)| ids),
        Prompt::Text(text) => weights.text.encode_raw(text),
    };
    ids.map_err(|e| {
        // The CLI's words; the way out is the API's, not `--raw`.
        let message = anyhow::Error::from(e).chain().map(|c| c.to_string()).collect::<Vec<_>>().join(": ");
        ServeError::bad_request(format!(
            "{message} (hint: send the prompt as it is: `/v1/completions`, or `/api/generate` with `\"raw\": true`)"
        ))
    })
}

/// Generated text goes to the client; a client gone, or a stop text, stops it.
struct EventSink<'a> {
    events: &'a UnboundedSender<Event>,
    stop: StopMatcher,
    /// A stop text ended the reply.
    stopped: bool,
    first: Option<Duration>,
    received: Instant,
}

impl TokenSink for EventSink<'_> {
    fn token(&mut self, _id: u32, text: &str) -> std::io::Result<()> {
        self.first.get_or_insert_with(|| self.received.elapsed());
        let released = self.stop.push(text);
        self.stopped = released.stopped;
        if !released.text.is_empty() {
            // A closed channel is a client that left: `stop_requested` ends the reply.
            let _ = self.events.send(Event::Text(released.text));
        }
        Ok(())
    }

    fn stop_requested(&self) -> bool {
        self.stopped || self.events.is_closed()
    }
}
