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
use crate::engine::kv_cache::{BLOCK_TOKENS, BlockPool, KvCache};
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
    /// Memory of each model and scheme's pool of KV blocks.
    pub kv_budget: KvBudget,
}

/// How much memory a pool of KV blocks (one per model and scheme) takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KvBudget {
    /// Blocks for `--max-sequences` whole contexts, within a share of the
    /// memory free when the pool is made (`AUTO_GPU_SHARE` of a GPU's, by
    /// NVML; `AUTO_HOST_SHARE` of the host's available memory).
    Auto,
    Bytes(u64),
}

/// The share of a GPU's free memory an `auto` pool takes at most.
pub const AUTO_GPU_SHARE: f64 = 0.9;
/// The share of the host's available memory an `auto` pool takes at most off a GPU.
pub const AUTO_HOST_SHARE: f64 = 0.5;

impl KvBudget {
    /// `auto`, or bytes: a whole number, with `KB`, `MB`, `GB`, `TB` (powers
    /// of 1000) or `KiB`, `MiB`, `GiB`, `TiB` (powers of 1024) after it if
    /// wanted; `None` for anything else and for zero.
    pub fn parse(text: &str) -> Option<KvBudget> {
        let text = text.trim();
        if text.eq_ignore_ascii_case("auto") {
            return Some(KvBudget::Auto);
        }
        let digits = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
        let (number, unit) = text.split_at(digits);
        let scale: u64 = match unit.trim().to_ascii_lowercase().as_str() {
            "" | "b" => 1,
            "kb" => 1_000,
            "mb" => 1_000_000,
            "gb" => 1_000_000_000,
            "tb" => 1_000_000_000_000,
            "kib" => 1 << 10,
            "mib" => 1 << 20,
            "gib" => 1 << 30,
            "tib" => 1 << 40,
            _ => return None,
        };
        let bytes = number.parse::<u64>().ok()?.checked_mul(scale)?;
        (bytes > 0).then_some(KvBudget::Bytes(bytes))
    }

    /// Blocks of `block_bytes` for a pool of sequences of up to `context`
    /// positions, `free` bytes being free on the GPU (`None`: a CPU run).
    /// Never more than `max_sequences` whole contexts take: more could never be used at once
    /// (and a model whose layers all keep fixed states, whose blocks weigh nothing, gets that).
    pub fn blocks(self, block_bytes: u64, context: usize, max_sequences: usize, free: Option<u64>) -> usize {
        let whole = max_sequences.saturating_mul(BlockPool::blocks_for(context));
        if block_bytes == 0 {
            return whole;
        }
        let bytes = match self {
            KvBudget::Bytes(bytes) => bytes,
            KvBudget::Auto => {
                let limit = match free {
                    Some(free) => free as f64 * AUTO_GPU_SHARE,
                    None => crate::memory::available().map_or(f64::MAX, |a| a as f64 * AUTO_HOST_SHARE),
                };
                limit as u64
            }
        };
        usize::try_from(bytes / block_bytes).unwrap_or(usize::MAX).min(whole)
    }
}

/// Seconds a refused client is told to wait (`Retry-After`).
const RETRY_AFTER_SECONDS: u64 = 1;

struct Job {
    request: GenerationRequest,
    events: UnboundedSender<Event>,
    /// The prompt's tokens, once encoded (a request waiting for room is encoded once).
    tokens: Option<Vec<u32>>,
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
        if queue.send(Job { request, events, tokens: None }).is_err() {
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

/// The KV blocks of one model and scheme, and the sequences' caches over them.
struct Pool {
    blocks: BlockPool,
    /// Caches of ended requests, holding no blocks, for the next ones.
    free: Vec<KvCache>,
    /// Caches that exist, free or running: at most `max_sequences`.
    allocated: usize,
    /// Bytes the caches keep of their own (sliding-window rings, recurrent states).
    own_bytes: u64,
    /// Its entry in `/api/ps`'s list.
    entry: usize,
}

/// Where an admitted request runs: its model's batch and its sequence there.
struct Admitted {
    model: String,
    sequence: SequenceId,
}

/// What became of a request the engine tried to start.
enum Admission {
    Running(Admitted),
    /// No cache or too few free blocks now: it waits.
    Wait,
    /// The client left.
    Gone,
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
    /// Taken from the queue, waiting for a cache and blocks of their model and scheme.
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
            self.cancel_gone();
            self.admit_waiting();
            self.step_all();
            // Waiting with nothing running that could free room: the next request or a client leaving changes that.
            if self.live.is_empty() && !self.waiting.is_empty() {
                std::thread::sleep(Duration::from_millis(5));
            }
        }
    }

    /// Admits every waiting request there is room for, in arrival order per model and scheme.
    fn admit_waiting(&mut self) {
        // Nothing waits, nothing changes (the counts in `/api/ps` went to zero when the last one left).
        if self.waiting.is_empty() {
            return;
        }
        let mut still = VecDeque::new();
        while let Some(job) = self.waiting.pop_front() {
            let key = (job.request.manifest.id(), job.request.kv);
            // One waiting for this pool already waits first.
            if still.iter().any(|j: &Job| (j.request.manifest.id(), j.request.kv) == key) {
                still.push_back(job);
                continue;
            }
            match std::panic::catch_unwind(AssertUnwindSafe(|| self.admit(job))) {
                Ok(Some(job)) => still.push_back(job),
                Ok(None) => {
                    self.queued.fetch_sub(1, Ordering::SeqCst);
                }
                Err(panic) => {
                    // The job's channel went with it; the request is counted out here.
                    self.queued.fetch_sub(1, Ordering::SeqCst);
                    self.reporter.request(&panicked_log(&panic));
                    self.done();
                }
            }
        }
        self.waiting = still;
        let keys: Vec<_> = self.pool.keys().cloned().collect();
        for key in keys {
            self.publish(&key);
        }
    }

    /// Loads what the request needs, encodes it, and puts it in its model's
    /// batch; hands it back while there is no room for it.
    fn admit(&mut self, mut job: Job) -> Option<Job> {
        let mut log = RequestLog {
            api: job.request.api,
            model: job.request.reference.to_string(),
            scheme: job.request.kv.map_or("none".into(), |k| k.to_string()),
            outcome: Outcome::Cancelled,
            prompt_tokens: 0,
            generated_tokens: 0,
            time_to_first_token: None,
            decode: Duration::ZERO,
        };
        // A client that left while its request waited costs nothing.
        let admitted = if job.events.is_closed() { Ok(Admission::Gone) } else { self.try_admit(&mut job, &mut log) };
        match admitted {
            Ok(Admission::Running(Admitted { model, sequence })) => {
                self.live.insert((model, sequence), Live { events: job.events, log, kv: job.request.kv });
            }
            Ok(Admission::Wait) => return Some(job),
            Ok(Admission::Gone) => {
                self.reporter.request(&log);
                self.done();
            }
            Err(error) => {
                log.outcome = Outcome::Failed(error.message.clone());
                let _ = job.events.send(Event::Error(error));
                self.reporter.request(&log);
                self.done();
            }
        }
        None
    }

    /// The request in its batch, or waiting for room, or gone.
    fn try_admit(&mut self, job: &mut Job, log: &mut RequestLog) -> Result<Admission, ServeError> {
        let request = &job.request;
        let id = request.manifest.id();
        self.ensure_loaded(request)?;
        let weights = &self.weights[&id];
        let ids = match job.tokens.take() {
            Some(ids) => ids,
            None => encode(weights, &request.prompt)?,
        };
        log.prompt_tokens = ids.len();
        let key = (id.clone(), request.kv);
        let pool = self.pool.get_mut(&key).expect("ensure_loaded makes the pool");
        let context = pool.blocks.context();
        if ids.len() + 1 > context {
            return Err(ServeError::bad_request(format!(
                "the prompt ({} tokens) does not fit in the context ({context} tokens) with room for a reply",
                ids.len()
            )));
        }
        // Blocks for the prompt and every token it may generate, taken now, so it never runs out.
        let tokens = (ids.len() + request.max_tokens).min(context);
        let needed = BlockPool::blocks_for(tokens);
        if needed > pool.blocks.total_blocks() {
            return Err(ServeError::bad_request(format!(
                "the request needs {needed} KV blocks of {BLOCK_TOKENS} positions ({tokens} positions: its prompt and \
                 its token limit), more than the pool's {} (hint: ask for fewer tokens, or start the server with a \
                 larger `--kv-budget`)",
                pool.blocks.total_blocks()
            )));
        }
        let cache_free = !pool.free.is_empty() || pool.allocated < self.config.max_sequences;
        if !cache_free || needed > pool.blocks.free_blocks() {
            job.tokens = Some(ids);
            return Ok(Admission::Wait);
        }
        let mut cache = match pool.free.pop() {
            Some(cache) => cache,
            None => {
                let fail = |e: candle_core::Error| {
                    ServeError::from_error(&anyhow::Error::from(e).context("allocating a KV cache failed"))
                };
                let cache = pool.blocks.sequence().map_err(fail)?;
                pool.allocated += 1;
                pool.own_bytes += cache.allocated_bytes();
                cache
            }
        };
        if let Err(e) = pool.blocks.reserve(&mut cache, tokens) {
            pool.free.push(cache);
            return Err(ServeError::internal(format!("reserving KV blocks failed: {e}")));
        }
        log.scheme = cache.layout().name().to_string();
        self.publish(&key);
        if job.events.send(Event::Started { prompt_tokens: ids.len() }).is_err() {
            self.give_back(&key, cache);
            return Ok(Admission::Gone);
        }
        let options = GenerateOptions { max_tokens: request.max_tokens, sampling: request.sampling.clone() };
        let sink = EventSink {
            events: job.events.clone(),
            stop: StopMatcher::new(&request.stop),
            stopped: false,
            first: None,
            received: request.received,
        };
        let batch = self.batches.entry(id.clone()).or_default();
        match batch.admit(ids, cache, &options, sink) {
            Ok(sequence) => Ok(Admission::Running(Admitted { model: id, sequence })),
            Err(refused) => {
                let message = refused.error.to_string();
                self.give_back(&key, refused.cache);
                Err(ServeError::bad_request(message))
            }
        }
    }

    /// Ends the requests whose clients left, wherever they are (a prompt
    /// half prefilled too), so their blocks are free for the next step.
    fn cancel_gone(&mut self) {
        let gone: Vec<(String, SequenceId)> =
            self.live.iter().filter(|(_, live)| live.events.is_closed()).map(|(key, _)| key.clone()).collect();
        for (id, sequence) in gone {
            let Some(finished) = self.batches.get_mut(&id).and_then(|b| b.cancel(sequence)) else { continue };
            self.answer(&id, StepOutcome { finished: vec![finished], failed: Vec::new() });
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
            for (sequence, cache) in drained {
                if let Some(live) = self.live.remove(&(id.clone(), sequence)) {
                    self.drop_cache(&(id.clone(), live.kv), cache);
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

    /// An ended request's blocks back to its pool, and its cache for the next request.
    fn give_back(&mut self, key: &(String, Option<KvScheme>), mut cache: KvCache) {
        let Some(pool) = self.pool.get_mut(key) else { return };
        pool.blocks.release(&mut cache);
        pool.free.push(cache);
        self.publish(key);
    }

    /// A failed step's cache: its blocks back to the pool, the cache (its state unknown) dropped.
    fn drop_cache(&mut self, key: &(String, Option<KvScheme>), mut cache: KvCache) {
        let Some(pool) = self.pool.get_mut(key) else { return };
        pool.blocks.release(&mut cache);
        pool.allocated -= 1;
        pool.own_bytes = pool.own_bytes.saturating_sub(cache.allocated_bytes());
        self.publish(key);
    }

    /// The pool's blocks and caches as `/api/ps` shows them.
    fn publish(&self, key: &(String, Option<KvScheme>)) {
        let Some(pool) = self.pool.get(key) else { return };
        let mut loaded = self.loaded.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(model) = loaded.get_mut(pool.entry) {
            model.cache_bytes = pool.blocks.bytes() + pool.own_bytes;
            model.blocks_used = pool.blocks.total_blocks() - pool.blocks.free_blocks();
            model.sequences = pool.allocated - pool.free.len();
            model.waiting = self.waiting.iter().filter(|j| (j.request.manifest.id(), j.request.kv) == *key).count();
        }
    }

    /// One request fewer queued or running.
    fn done(&self) {
        self.in_flight.fetch_sub(1, Ordering::SeqCst);
    }

    /// The request's weights loaded unless they are, and its scheme's pool
    /// of KV blocks allocated unless it is (with its `/api/ps` entry).
    fn ensure_loaded(&mut self, request: &GenerationRequest) -> Result<(), ServeError> {
        let id = request.manifest.id();
        let key = (id.clone(), request.kv);
        if self.pool.contains_key(&key) {
            return Ok(());
        }
        let started = Instant::now();
        let root = self.store.root().to_path_buf();
        let fail = |e: EngineError| {
            hide_store(ServeError::from_error(&anyhow::Error::from(e).context("loading the model failed")), &root)
        };
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
        let context = weights.context;
        let block_bytes = engine::block_bytes(weights, request.kv, context);
        let free = vram.probe.as_ref().and_then(VramProbe::free_bytes);
        let blocks = self.config.kv_budget.blocks(block_bytes, context, self.config.max_sequences, free);
        if blocks == 0 {
            let budget = match self.config.kv_budget {
                KvBudget::Bytes(bytes) => format!("`--kv-budget` of {}", crate::ui::format::bytes(bytes)),
                KvBudget::Auto => "the memory free".to_string(),
            };
            return Err(ServeError::internal(format!(
                "{budget} holds no KV block of `{}` ({} positions of {} each) (hint: give a larger `--kv-budget`)",
                request.reference,
                BLOCK_TOKENS,
                crate::ui::format::bytes(block_bytes)
            )));
        }
        let pool = engine::new_block_pool(weights, request.kv, context, blocks).map_err(fail)?;
        let name = match request.kv {
            Some(kv) => format!("{}:{kv}", request.reference.name),
            None => request.reference.name.to_string(),
        };
        let model = LoadedModel {
            name,
            device: weights.device.clone(),
            kv_scheme: pool.layout().name().to_string(),
            context_length: context,
            cache_bytes: pool.bytes(),
            block_tokens: BLOCK_TOKENS,
            blocks_total: pool.total_blocks(),
            blocks_used: 0,
            sequences: 0,
            waiting: 0,
            vram_bytes: vram.measured(),
            size_bytes: request.manifest.total_size(),
        };
        self.reporter.loaded(&model, started.elapsed(), &weights.conversions);
        let mut loaded = self.loaded.lock().unwrap_or_else(|e| e.into_inner());
        let entry = loaded.len();
        loaded.push(model);
        drop(loaded);
        self.pool.insert(key, Pool { blocks: pool, free: Vec::new(), allocated: 0, own_bytes: 0, entry });
        Ok(())
    }
}

/// The error with the store's location on this machine written as `<store>`: clients
/// learn which file failed, not where the server keeps its files.
fn hide_store(mut error: ServeError, root: &std::path::Path) -> ServeError {
    let root = root.display().to_string();
    if !root.is_empty() {
        error.message = error.message.replace(&root, "<store>");
    }
    error
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_kv_budget_is_auto_or_a_size_with_an_optional_unit() {
        let bytes = |s| match KvBudget::parse(s) {
            Some(KvBudget::Bytes(b)) => Some(b),
            _ => None,
        };
        assert_eq!(KvBudget::parse("auto"), Some(KvBudget::Auto));
        assert_eq!(KvBudget::parse("AUTO"), Some(KvBudget::Auto));
        assert_eq!(bytes("1000000"), Some(1_000_000));
        assert_eq!(bytes("12MB"), Some(12_000_000));
        assert_eq!(bytes("8GiB"), Some(8 << 30));
        assert_eq!(bytes("512 mib"), Some(512 << 20));
        assert_eq!(bytes("2tb"), Some(2_000_000_000_000));
        for bad in ["", "0", "0GiB", "-1", "1.5GB", "GB", "12 parsecs", "99999999999999999999", "20000000TiB"] {
            assert_eq!(KvBudget::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn a_budget_buys_whole_blocks_and_auto_stops_at_its_share_of_free_memory() {
        let block = 1000;
        // 2 blocks of 32 positions hold a context of 40; 3 sequences of it: 6 blocks.
        assert_eq!(KvBudget::Bytes(5_999).blocks(block, 40, 3, None), 5);
        assert_eq!(KvBudget::Auto.blocks(block, 40, 3, Some(1_000_000)), 6);
        // A GPU with 5,000 bytes free: 90% of it, 4,500, buys 4 blocks.
        assert_eq!(KvBudget::Auto.blocks(block, 40, 3, Some(5_000)), 4);
        assert_eq!(KvBudget::Bytes(999).blocks(block, 40, 3, None), 0);
        // More than 3 whole contexts could never be used at once; blocks of nothing (recurrent layers only) cost nothing.
        assert_eq!(KvBudget::Bytes(1 << 40).blocks(block, 40, 3, None), 6);
        assert_eq!(KvBudget::Bytes(1).blocks(0, 40, 3, None), 6);
    }
}
