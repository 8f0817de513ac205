//! The backend: one engine thread that batches requests continuously. Each
//! stored model has one batch (`engine::batch`): every step runs one prompt
//! chunk of a request that is joining, then one decode step of all its
//! running requests together, whatever their KV schemes; requests join and
//! leave at any step. Caches come from a pool per model and scheme, at most
//! `--max-sequences` each, reused from one request to the next; a request for
//! which none is free waits, and the bounded queue behind it answers 503
//! when full. Models load on first use and stay loaded.

use std::collections::{HashMap, VecDeque};
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel};

use super::stop::StopMatcher;
use super::{
    Backend, ErrorKind, Event, FinishReason, Finished, GenerationRequest, LoadedModel, Outcome, Prompt, RequestLog,
    ServeError, ServeReporter,
};
use crate::engine::batch::{Batch, SequenceId, StepOutcome};
use crate::engine::device::DeviceRequest;
use crate::engine::generate::{GenerateOptions, StopReason, TokenSink};
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
    /// Requests that may wait for a free cache; one more is refused with 503.
    pub max_queue: usize,
    /// Caches (so requests at once) per model and scheme.
    pub max_sequences: usize,
}

/// Seconds a refused client is told to wait (`Retry-After`).
const RETRY_AFTER_SECONDS: u64 = 1;

struct Job {
    request: GenerationRequest,
    events: UnboundedSender<Event>,
}

/// Runs requests on one engine thread, batched.
pub struct EngineBackend {
    queue: Mutex<Option<Sender<Job>>>,
    /// Requests submitted and not yet in a batch: at most `max_queue`.
    waiting: Arc<AtomicUsize>,
    max_queue: usize,
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
        let (queue, jobs) = std::sync::mpsc::channel();
        let (waiting, max_queue) = (Arc::new(AtomicUsize::new(0)), config.max_queue);
        let loaded = Arc::new(Mutex::new(Vec::new()));
        let in_flight = Arc::new(AtomicUsize::new(0));
        let mut worker = Worker {
            store,
            config,
            reporter,
            weights: HashMap::new(),
            batches: HashMap::new(),
            pool: HashMap::new(),
            waiting: VecDeque::new(),
            queued: waiting.clone(),
            live: HashMap::new(),
            loaded: loaded.clone(),
            in_flight: in_flight.clone(),
        };
        for request in preload {
            worker.ensure_loaded(request)?;
        }
        let thread = std::thread::Builder::new()
            .name("llmctl-engine".into())
            .spawn(move || worker.run(jobs))
            .map_err(|e| ServeError::internal(format!("cannot start the engine thread: {e}")))?;
        Ok(EngineBackend {
            queue: Mutex::new(Some(queue)),
            waiting,
            max_queue,
            loaded,
            in_flight,
            thread: Mutex::new(Some(thread)),
        })
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
        // Counted before it is sent, so that the engine's count down never passes it.
        if self.waiting.fetch_add(1, Ordering::SeqCst) >= self.max_queue {
            self.waiting.fetch_sub(1, Ordering::SeqCst);
            return Err(ServeError {
                kind: ErrorKind::Busy { retry_after: RETRY_AFTER_SECONDS },
                message: "the server is busy: the request queue is full (`--max-queue`); try again shortly".into(),
            });
        }
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        if queue.send(Job { request, events }).is_err() {
            self.waiting.fetch_sub(1, Ordering::SeqCst);
            self.in_flight.fetch_sub(1, Ordering::SeqCst);
            return Err(ServeError::internal("the engine thread has stopped"));
        }
        Ok(receiver)
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

/// Caches of one model and scheme: free ones, and how many exist.
#[derive(Default)]
struct Pool {
    free: Vec<KvCache>,
    allocated: usize,
}

/// Where an admitted request runs: its model's batch and its sequence there.
struct Admitted {
    model: String,
    sequence: SequenceId,
}

/// A request in a batch, as the engine thread follows it.
struct Live {
    events: UnboundedSender<Event>,
    log: RequestLog,
    kv: Option<KvScheme>,
}

/// The engine thread's state: the models it holds and the requests they run.
struct Worker {
    store: Store,
    config: EngineConfig,
    reporter: Arc<dyn ServeReporter>,
    /// Weights by manifest id: every tag of one stored model shares them.
    weights: HashMap<String, LoadedWeights>,
    /// One batch per stored model.
    batches: HashMap<String, Batch<EventSink>>,
    pool: HashMap<(String, Option<KvScheme>), Pool>,
    /// Taken from the queue, waiting for a cache of their model and scheme.
    waiting: VecDeque<Job>,
    /// Requests submitted and not yet admitted (shared with `submit`).
    queued: Arc<AtomicUsize>,
    live: HashMap<(String, SequenceId), Live>,
    loaded: Arc<Mutex<Vec<LoadedModel>>>,
    in_flight: Arc<AtomicUsize>,
}

impl Worker {
    fn run(&mut self, jobs: Receiver<Job>) {
        let mut open = true;
        loop {
            let idle = self.live.is_empty();
            if idle && !open && self.waiting.is_empty() {
                return;
            }
            // Nothing running: wait for a request; else take what has come, without waiting.
            if idle && self.waiting.is_empty() && open {
                match jobs.recv() {
                    Ok(job) => self.waiting.push_back(job),
                    Err(_) => open = false,
                }
            }
            while open {
                match jobs.try_recv() {
                    Ok(job) => self.waiting.push_back(job),
                    Err(std::sync::mpsc::TryRecvError::Empty) => break,
                    Err(std::sync::mpsc::TryRecvError::Disconnected) => open = false,
                }
            }
            self.admit_waiting();
            self.step_all();
        }
    }

    /// Admits every waiting request a cache is free for, in arrival order per model and scheme.
    fn admit_waiting(&mut self) {
        let mut still = VecDeque::new();
        while let Some(job) = self.waiting.pop_front() {
            let key = (job.request.manifest.id(), job.request.kv);
            // One waiting for this pool already waits first.
            let queued = still.iter().any(|j: &Job| (j.request.manifest.id(), j.request.kv) == key);
            let pool = self.pool.get(&key);
            if queued || pool.is_some_and(|p| p.free.is_empty() && p.allocated >= self.config.max_sequences) {
                still.push_back(job);
                continue;
            }
            let caught = std::panic::catch_unwind(AssertUnwindSafe(|| self.admit(job)));
            if let Err(panic) = caught {
                // The job's channel went with it; the request is counted out here.
                self.reporter.request(&panicked_log(&panic));
                self.done();
            }
        }
        self.waiting = still;
    }

    /// Loads what the request needs, encodes it, and puts it in its model's batch.
    fn admit(&mut self, job: Job) {
        self.queued.fetch_sub(1, Ordering::SeqCst);
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
            self.done();
            return;
        }
        let admitted = self.try_admit(&request, &events, &mut log);
        match admitted {
            Ok(Some(Admitted { model, sequence })) => {
                self.live.insert((model, sequence), Live { events, log, kv: request.kv });
            }
            Ok(None) => {
                self.reporter.request(&log);
                self.done();
            }
            Err(error) => {
                log.outcome = Outcome::Failed(error.message.clone());
                let _ = events.send(Event::Error(error));
                self.reporter.request(&log);
                self.done();
            }
        }
    }

    /// The request in its batch (its model id, sequence and sink state); `None` when the client left.
    fn try_admit(
        &mut self,
        request: &GenerationRequest,
        events: &UnboundedSender<Event>,
        log: &mut RequestLog,
    ) -> Result<Option<Admitted>, ServeError> {
        let id = request.manifest.id();
        self.ensure_loaded(request)?;
        let weights = &self.weights[&id];
        let ids = encode(weights, &request.prompt)?;
        log.prompt_tokens = ids.len();
        let key = (id.clone(), request.kv);
        let cache = match self.pool.get_mut(&key).and_then(|p| p.free.pop()) {
            Some(cache) => cache,
            None => {
                let fail = |e: EngineError| {
                    ServeError::from_error(&anyhow::Error::from(e).context("allocating a KV cache failed"))
                };
                let cache = engine::new_cache(weights, request.kv, weights.context).map_err(fail)?;
                self.pool.entry(key.clone()).or_default().allocated += 1;
                cache
            }
        };
        log.scheme = cache.layout().name().to_string();
        if let Err(full) = cache.check_room(ids.len() + 1) {
            let message = format!(
                "the prompt ({} tokens) does not fit in the context ({} tokens) with room for a reply",
                ids.len(),
                full.capacity
            );
            self.give_back(&key, cache);
            return Err(ServeError::bad_request(message));
        }
        if events.send(Event::Started { prompt_tokens: ids.len() }).is_err() {
            self.give_back(&key, cache);
            return Ok(None);
        }
        let options = GenerateOptions { max_tokens: request.max_tokens, sampling: request.sampling.clone() };
        let sink = EventSink {
            events: events.clone(),
            stop: StopMatcher::new(&request.stop),
            stopped: false,
            first: None,
            received: request.received,
        };
        let batch = self.batches.entry(id.clone()).or_default();
        match batch.admit(ids, cache, &options, sink) {
            Ok(sequence) => Ok(Some(Admitted { model: id, sequence })),
            Err(refused) => {
                let message = refused.error.to_string();
                self.give_back(&key, refused.cache);
                Err(ServeError::bad_request(message))
            }
        }
    }

    /// One step of every model's batch; the requests it ended are answered.
    fn step_all(&mut self) {
        let ids: Vec<String> = self.batches.iter().filter(|(_, b)| !b.is_empty()).map(|(id, _)| id.clone()).collect();
        for id in ids {
            let (weights, batch) = (&self.weights[&id], self.batches.get_mut(&id).expect("a batch per model"));
            let stepped = std::panic::catch_unwind(AssertUnwindSafe(|| batch.step(&weights.model, &weights.text)));
            // The model failed (or panicked): every request of the batch ends with the error.
            let message = match stepped {
                Ok(Ok(outcome)) => {
                    self.answer(&id, outcome);
                    continue;
                }
                Ok(Err(e)) => format!("running the model failed: {e}"),
                Err(panic) => format!("the engine failed: {}", panic_text(&panic)),
            };
            let drained = self.batches.get_mut(&id).map(Batch::drain).unwrap_or_default();
            for (sequence, _cache) in drained {
                // The caches' contents are unknown: they are dropped, not reused.
                if let Some(live) = self.live.remove(&(id.clone(), sequence)) {
                    self.pool.entry((id.clone(), live.kv)).or_default().allocated -= 1;
                    self.fail(live, ServeError::internal(message.clone()));
                }
            }
        }
    }

    /// Sends each ended request its end, logs it, and frees its cache.
    fn answer(&mut self, id: &str, outcome: StepOutcome<EventSink>) {
        for failed in outcome.failed {
            if let Some(live) = self.live.remove(&(id.to_string(), failed.id)) {
                self.give_back(&(id.to_string(), live.kv), failed.cache);
                self.fail(live, ServeError::from_error(&failed.error.into()));
            }
        }
        for finished in outcome.finished {
            let Some(mut live) = self.live.remove(&(id.to_string(), finished.id)) else { continue };
            let mut sink = finished.sink;
            self.give_back(&(id.to_string(), live.kv), finished.cache);
            live.log.time_to_first_token = sink.first;
            live.log.generated_tokens = finished.generated_tokens;
            let decode = finished.elapsed.saturating_sub(finished.first_token);
            live.log.decode = decode;
            let reason = match finished.stop_reason {
                StopReason::Interrupted if !sink.stopped => None,
                StopReason::Eos | StopReason::Interrupted => Some(FinishReason::Stop),
                StopReason::MaxTokens | StopReason::ContextFull => Some(FinishReason::Length),
            };
            let rest = sink.stop.finish();
            live.log.outcome = match reason {
                // The client left.
                None => Outcome::Cancelled,
                Some(_) if !sink.stopped && !rest.is_empty() && live.events.send(Event::Text(rest)).is_err() => {
                    Outcome::Cancelled
                }
                Some(reason) => {
                    let done = Finished {
                        reason,
                        prompt_tokens: finished.prompt_tokens,
                        completion_tokens: finished.generated_tokens,
                        prefill: finished.first_token,
                        decode,
                    };
                    let _ = live.events.send(Event::Done(done));
                    Outcome::Finished(reason)
                }
            };
            self.reporter.request(&live.log);
            self.done();
        }
    }

    fn fail(&mut self, mut live: Live, error: ServeError) {
        live.log.outcome = Outcome::Failed(error.message.clone());
        let _ = live.events.send(Event::Error(error));
        self.reporter.request(&live.log);
        self.done();
    }

    fn give_back(&mut self, key: &(String, Option<KvScheme>), cache: KvCache) {
        self.pool.entry(key.clone()).or_default().free.push(cache);
    }

    /// One request fewer queued or running.
    fn done(&self) {
        self.in_flight.fetch_sub(1, Ordering::SeqCst);
    }

    /// The request's weights loaded unless they are, and `/api/ps`'s entry for its scheme.
    fn ensure_loaded(&mut self, request: &GenerationRequest) -> Result<(), ServeError> {
        let id = request.manifest.id();
        let key = (id.clone(), request.kv);
        if self.pool.contains_key(&key) {
            return Ok(());
        }
        let started = Instant::now();
        let fail = |e: EngineError| ServeError::from_error(&anyhow::Error::from(e).context("loading the model failed"));
        let mut vram = VramDelta { probe: None, before: None };
        if !self.weights.contains_key(&id) {
            let files = self.store.model_files(&request.manifest);
            let weights =
                engine::load_weights(&files, self.config.device, self.config.ctx_size, &mut vram).map_err(fail)?;
            self.weights.insert(id.clone(), weights);
        }
        let weights = &self.weights[&id];
        if vram.probe.is_none() {
            vram.stage(LoadStage::DeviceReady, &weights.device);
        }
        // The first cache of this scheme, allocated now so that `/api/ps` shows its bytes.
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
        self.pool.insert(key, Pool { free: vec![cache], allocated: 1 });
        Ok(())
    }
}

fn panic_text(panic: &Box<dyn std::any::Any + Send>) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_default()
}

fn panicked_log(panic: &Box<dyn std::any::Any + Send>) -> RequestLog {
    RequestLog {
        api: "-",
        model: "-".into(),
        scheme: "-".into(),
        outcome: Outcome::Failed(format!("the engine failed: {}", panic_text(panic))),
        prompt_tokens: 0,
        generated_tokens: 0,
        time_to_first_token: None,
        decode: Duration::ZERO,
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

/// Generated text goes to the client; a client gone, or a stop text, stops
/// it. The batch hands it back when the request ends, with what it saw.
struct EventSink {
    events: UnboundedSender<Event>,
    stop: StopMatcher,
    /// A stop text ended the reply.
    stopped: bool,
    first: Option<Duration>,
    received: Instant,
}

impl TokenSink for EventSink {
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
