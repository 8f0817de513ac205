//! `bench`: speed, memory and quality of each KV-cache scheme on one model,
//! side by side. The weights load once; every (scheme, context) case gets a
//! cache of its own, prefills a synthetic prompt and decodes greedily.
//! Nothing here prints: progress goes to a `BenchObserver`, memory comes
//! from a `MemoryMeter`, results come back as values.

pub mod meters;
pub mod quality;

use std::time::Instant;

use candle_core::{D, Tensor};
use serde::Serialize;

use crate::engine::kv_cache::KvCache;
use crate::engine::model::{Logits, Model};
use crate::engine::{EngineError, LoadedWeights, cache_layout, new_cache};
use crate::exit::{Diagnostic, ExitStatus};
use crate::quant::KvScheme;

/// Tokens a warm-up prefill runs before each case's timings (kernel loading,
/// first-touch allocations); one single-token decode step follows it.
const WARMUP_TOKENS: usize = 8;

/// What to measure.
#[derive(Debug, Clone)]
pub struct BenchPlan {
    /// `None` is the unquantized cache.
    pub schemes: Vec<Option<KvScheme>>,
    pub contexts: Vec<usize>,
    /// Tokens decoded after each prefill.
    pub generate: usize,
}

/// Memory readings for the device the model runs on.
pub trait MemoryMeter {
    /// Starts watching for the peak of this process's memory.
    fn start_peak(&mut self);
    /// The peak since `start_peak`, bytes, if this meter can tell.
    fn finish_peak(&mut self) -> Option<u64>;
    /// This process's memory now, bytes.
    fn current(&self) -> Option<u64>;
    /// Memory still free for this process to allocate, bytes.
    fn free_bytes(&self) -> Option<u64>;
}

/// Told of each step, for a progress bar.
pub trait BenchObserver {
    fn case_started(&mut self, scheme: &str, context: usize);
    fn case_finished(&mut self);
}

/// One (scheme, context) case.
#[derive(Debug, Clone, Serialize)]
pub struct SpeedResult {
    pub kv: String,
    pub context: usize,
    pub prompt_tokens: usize,
    pub generated_tokens: usize,
    /// The prompt over the prefill's time, which is `ttft_ms`.
    pub prefill_tokens_per_s: f64,
    /// All decode steps together: `generated_tokens` over their total time.
    pub decode_tokens_per_s: f64,
    /// Time to first token: the prompt's prefill and the sampling of the
    /// first token from its last logits, read back on the host.
    pub ttft_ms: f64,
    /// End to end, as one span from the prefill's start to the end of the
    /// last decode step: `ttft_ms`, then the `generated_tokens` decode steps,
    /// each running the token sampled before it and sampling the next. The
    /// cache then holds exactly `context` tokens (`prompt_tokens` +
    /// `generated_tokens`); `generated_tokens` + 1 tokens were sampled, the
    /// last of them not run.
    pub e2e_ms: f64,
    /// The spread of the single decode steps, to tell a few stalls from uniformly slower steps.
    pub decode_step_ms: StepTimes,
    /// This process's peak memory during the case (NVML on CUDA; `None` on the CPU).
    pub peak_memory_bytes: Option<u64>,
    pub kv_cache_bytes: u64,
    pub kv_bytes_per_token: u64,
    /// The longest cache of this scheme that the free memory would hold, with
    /// the case's own working memory set aside, and never more than the
    /// model can attend to (`fits_limit` says which bound it is).
    pub max_context_fits: Option<u64>,
    pub fits_limit: Option<FitsLimit>,
}

/// What bounds `max_context_fits`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FitsLimit {
    /// Free memory would hold no more.
    Memory,
    /// Memory would hold more, but the model's context length ends there.
    Model,
}

/// The longest context that `free` bytes (plus the case's own cache, with
/// its working memory set aside) hold, a context of n tokens taking
/// `cache_bytes(n)` (which grows with n, and stops growing for windowed
/// layers past their window), capped at the model's context length.
pub fn context_that_fits(
    free: u64,
    kv_bytes: u64,
    working: u64,
    cache_bytes: impl Fn(u64) -> u64,
    model_max: u64,
) -> (u64, FitsLimit) {
    let budget = (free + kv_bytes).saturating_sub(working);
    if cache_bytes(model_max) <= budget {
        return (model_max, FitsLimit::Model);
    }
    // The largest n with cache_bytes(n) <= budget: cache_bytes(lo) fits, cache_bytes(hi) does not.
    let (mut lo, mut hi) = (0, model_max);
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        if cache_bytes(mid) <= budget { lo = mid } else { hi = mid }
    }
    (lo, FitsLimit::Memory)
}

/// Decode step times in milliseconds. Percentiles are nearest-rank: the p-th
/// of n sorted steps is the one at 1-based rank ⌈p·n/100⌉, so each figure is
/// a measured step (and the median of an even count is the lower middle one).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct StepTimes {
    pub median: f64,
    pub p90: f64,
    /// Below 100 steps this is the slowest step, as rank ⌈0.99·n⌉ is n.
    pub p99: f64,
    pub max: f64,
}

impl StepTimes {
    /// `None` when there are no steps.
    pub fn of(steps_ms: &[f64]) -> Option<StepTimes> {
        let mut sorted = steps_ms.to_vec();
        sorted.sort_by(f64::total_cmp);
        let max = *sorted.last()?;
        let at = |p| sorted[nearest_rank(p, sorted.len()) - 1];
        Some(StepTimes { median: at(50), p90: at(90), p99: at(99), max })
    }
}

/// The 1-based rank of the `p`-th percentile of `n` sorted values: ⌈p·n/100⌉,
/// at least 1.
fn nearest_rank(p: usize, n: usize) -> usize {
    (p * n).div_ceil(100).max(1)
}

/// Runs every case in plan order: scheme-major, contexts ascending.
pub fn speed(
    weights: &LoadedWeights,
    plan: &BenchPlan,
    meter: &mut dyn MemoryMeter,
    observer: &mut dyn BenchObserver,
) -> Result<Vec<SpeedResult>, BenchError> {
    let mut results = Vec::new();
    for &scheme in &plan.schemes {
        for &context in &plan.contexts {
            let name = cache_layout(&weights.facts, weights.format, scheme).name();
            observer.case_started(name, context);
            results.push(case(weights, scheme, context, plan.generate, meter)?);
            observer.case_finished();
        }
    }
    Ok(results)
}

#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error("`--gen {generate}` leaves no room for a prompt in a context of {context} tokens")]
    NoRoomForPrompt { generate: usize, context: usize },
    #[error("running the model failed")]
    Run(#[from] candle_core::Error),
}

impl Diagnostic for BenchError {
    fn exit_status(&self) -> ExitStatus {
        match self {
            BenchError::Engine(e) => e.exit_status(),
            BenchError::NoRoomForPrompt { .. } => ExitStatus::Usage,
            BenchError::Run(_) => ExitStatus::Failure,
        }
    }

    fn hint(&self) -> Option<String> {
        match self {
            BenchError::Engine(e) => e.hint(),
            BenchError::NoRoomForPrompt { .. } => Some("lower `--gen` or raise the `--ctx` values".into()),
            BenchError::Run(_) => None,
        }
    }
}

fn case(
    weights: &LoadedWeights,
    scheme: Option<KvScheme>,
    context: usize,
    generate: usize,
    meter: &mut dyn MemoryMeter,
) -> Result<SpeedResult, BenchError> {
    let model = &weights.model;
    let prompt_len =
        context.checked_sub(generate).filter(|&n| n > 0).ok_or(BenchError::NoRoomForPrompt { generate, context })?;
    let prompt = synthetic_prompt(prompt_len, model.config().vocab_size);
    let mut cache = new_cache(weights, scheme, context)?;
    warm_up(model, &prompt, &mut cache)?;
    let device = model.device();
    device.synchronize()?;
    meter.start_peak();
    let started = Instant::now();
    let first = greedy(&model.forward(&prompt, &mut cache, Logits::Last)?)?;
    let prefill = started.elapsed().as_secs_f64();
    let decode_started = Instant::now();
    let steps_ms = decode(model, &mut cache, first, generate)?;
    device.synchronize()?;
    let decode = decode_started.elapsed().as_secs_f64();
    let e2e = started.elapsed().as_secs_f64();
    let peak = meter.finish_peak();
    let layout = cache_layout(&weights.facts, weights.format, scheme);
    let per_token = layout.bytes_per_token(&weights.facts);
    let kv_bytes = cache.allocated_bytes();
    // Working memory beyond weights and cache: what the peak held over the
    // steady state once the step's buffers are freed.
    let working = peak.zip(meter.current()).map_or(0, |(p, now)| p.saturating_sub(now));
    let fits = meter.free_bytes().map(|free| {
        let size = |n| crate::kv_size::cache_size(&weights.facts, layout, n).bytes;
        context_that_fits(free, kv_bytes, working, size, weights.max_context as u64)
    });
    Ok(SpeedResult {
        kv: layout.name().to_string(),
        context,
        prompt_tokens: prompt_len,
        generated_tokens: generate,
        prefill_tokens_per_s: prompt_len as f64 / prefill,
        decode_tokens_per_s: generate as f64 / decode,
        ttft_ms: prefill * 1e3,
        e2e_ms: e2e * 1e3,
        // Settings hold `--gen` to at least 1; an empty plan reads zeros, as its rate does.
        decode_step_ms: StepTimes::of(&steps_ms).unwrap_or_default(),
        peak_memory_bytes: peak,
        kv_cache_bytes: kv_bytes,
        kv_bytes_per_token: per_token,
        max_context_fits: fits.map(|f| f.0),
        fits_limit: fits.map(|f| f.1),
    })
}

/// Runs the prompt's first tokens, then one single-token step (decoding uses
/// other kernels than a prefill), so that neither is loaded while timed;
/// leaves the cache empty.
fn warm_up(model: &Model, prompt: &[u32], cache: &mut KvCache) -> candle_core::Result<()> {
    let warm = &prompt[..WARMUP_TOKENS.min(prompt.len())];
    let next = greedy(&model.forward(warm, cache, Logits::Last)?)?;
    // The cache holds exactly the case's context, which `--gen` keeps above the
    // prompt; should the prompt fill it, the step is skipped rather than fail.
    if warm.len() < cache.capacity() {
        greedy(&model.forward(&[next], cache, Logits::Last)?)?;
    }
    cache.reset();
    Ok(())
}

/// Decodes `generate` tokens after `first`, one at a time, and times each
/// step in milliseconds; `greedy` reads the token back, so a step ends when
/// the device has finished it.
fn decode(model: &Model, cache: &mut KvCache, first: u32, generate: usize) -> candle_core::Result<Vec<f64>> {
    let mut next = first;
    let mut steps_ms = Vec::with_capacity(generate);
    for _ in 0..generate {
        let started = Instant::now();
        next = greedy(&model.forward(&[next], cache, Logits::Last)?)?;
        steps_ms.push(started.elapsed().as_secs_f64() * 1e3);
    }
    Ok(steps_ms)
}

/// The most likely next token of a row of logits, computed on the device.
fn greedy(logits: &Tensor) -> candle_core::Result<u32> {
    logits.flatten_all()?.argmax(D::Minus1)?.to_scalar::<u32>()
}

/// Token ids spread over the vocabulary by a fixed linear congruential
/// sequence: the same prompt every run, no tokenizer needed.
pub fn synthetic_prompt(len: usize, vocab: usize) -> Vec<u32> {
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    (0..len)
        .map(|_| {
            state = state.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
            ((state >> 33) % vocab as u64) as u32
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_context_that_fits_never_exceeds_the_models() {
        // 1 MB free + a 100 kB cache, 50 kB of working memory, 1 kB a token: 1050 tokens.
        let flat = |n: u64| n * 1000;
        assert_eq!(context_that_fits(1_000_000, 100_000, 50_000, flat, 4096), (1050, FitsLimit::Memory));
        assert_eq!(context_that_fits(1_000_000, 100_000, 50_000, flat, 1024), (1024, FitsLimit::Model));
        assert_eq!(context_that_fits(0, 0, 10, flat, 1024), (0, FitsLimit::Memory));
        // Half the layers windowed at 256 tokens: past the window a token adds 500 bytes, not 1000.
        let windowed = |n: u64| n * 500 + n.min(256) * 500;
        assert_eq!(context_that_fits(1_000_000, 100_000, 50_000, windowed, 4096), (1844, FitsLimit::Memory));
    }

    #[test]
    fn synthetic_prompts_are_repeatable_and_cover_the_vocabulary() {
        let a = synthetic_prompt(4096, 1000);
        assert_eq!(a, synthetic_prompt(4096, 1000));
        assert!(a.iter().all(|&id| id < 1000));
        let distinct: std::collections::HashSet<_> = a.iter().collect();
        assert!(distinct.len() > 950, "only {} distinct ids", distinct.len());
    }

    #[test]
    fn step_times_are_nearest_rank_percentiles() {
        let times = |median, p90, p99, max| Some(StepTimes { median, p90, p99, max });
        assert_eq!(StepTimes::of(&[]), None);
        assert_eq!(StepTimes::of(&[4.0]), times(4.0, 4.0, 4.0, 4.0));
        // Odd count, unsorted: ranks ⌈2.5⌉ = 3 and ⌈4.5⌉ = ⌈4.95⌉ = 5.
        assert_eq!(StepTimes::of(&[5.0, 1.0, 4.0, 2.0, 3.0]), times(3.0, 5.0, 5.0, 5.0));
        // Even count: the median is the lower middle step (rank 2 of 4).
        assert_eq!(StepTimes::of(&[4.0, 1.0, 3.0, 2.0]), times(2.0, 4.0, 4.0, 4.0));
        // One stall in twenty steps moves the max and p99 (rank ⌈19.8⌉ = 20), not the median or p90 (rank 18).
        let mut steps: Vec<f64> = (1..=19).map(f64::from).collect();
        steps.push(500.0);
        assert_eq!(StepTimes::of(&steps), times(10.0, 18.0, 500.0, 500.0));
        // 150 steps, shuffled: p99 is rank ⌈148.5⌉ = 149 (flooring would give 148, a 0-based index 150).
        let steps: Vec<f64> = (0..150).map(|i| f64::from((i * 7) % 150 + 1)).collect();
        assert_eq!(StepTimes::of(&steps), times(75.0, 135.0, 149.0, 150.0));
    }

    #[test]
    fn nearest_ranks_round_up_and_start_at_one() {
        // Exact multiples take their rank; anything above rounds up; tiny p·n is rank 1.
        assert_eq!([nearest_rank(99, 100), nearest_rank(99, 101), nearest_rank(99, 200)], [99, 100, 198]);
        assert_eq!([nearest_rank(50, 1), nearest_rank(1, 1), nearest_rank(1, 99), nearest_rank(1, 101)], [1, 1, 1, 2]);
        assert_eq!([nearest_rank(90, 10), nearest_rank(90, 11), nearest_rank(100, 7)], [9, 10, 7]);
    }
}
