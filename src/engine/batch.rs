//! Continuous batching: many sequences of one model generated together.
//! Each `step` runs at most one prompt chunk of a sequence that is joining,
//! then one decode step over every running sequence at once
//! (`Model::decode_rows`), so a long prompt never stalls the streams already
//! running; sequences join and leave at any step. Each keeps its own cache
//! (its own scheme), sampler and detokenizer, and ends exactly as `generate`
//! would end it alone: a stop token, its token limit, a full context, or its
//! sink asking to stop (a client gone).

use std::time::{Duration, Instant};

use super::detokenize::Pending;
use super::generate::{self, GenerateError, GenerateOptions, StopReason, TokenSink};
use super::kv_cache::KvCache;
use super::model::{Logits, Model};
use super::sampling::Sampler;
use super::text::TextCodec;

/// The most prompt tokens one step prefills, so that running sequences get
/// a decode step at least every this many prompt tokens.
pub const PREFILL_CHUNK: usize = 512;

/// A sequence's handle, unique within its batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SequenceId(pub u64);

/// What a finished sequence reports, with its cache handed back for reuse
/// and its sink (whatever it gathered).
pub struct Finished<S> {
    pub id: SequenceId,
    pub prompt_tokens: usize,
    pub generated_tokens: usize,
    pub stop_reason: StopReason,
    /// From admission to the first generated token (queueing in the batch and prefill).
    pub first_token: Duration,
    pub elapsed: Duration,
    pub cache: KvCache,
    pub sink: S,
}

/// A sequence that failed (its sink broke, detokenizing failed): its cache handed back.
pub struct Failed {
    pub id: SequenceId,
    pub error: GenerateError,
    pub cache: KvCache,
}

/// A sequence the batch would not take, and the cache it came with.
pub struct Refused {
    pub error: GenerateError,
    pub cache: KvCache,
}

/// What one step ended.
pub struct StepOutcome<S> {
    pub finished: Vec<Finished<S>>,
    pub failed: Vec<Failed>,
}

struct Sequence<S> {
    id: SequenceId,
    cache: KvCache,
    prompt: Vec<u32>,
    /// Prompt tokens run so far (all of them once the sequence runs).
    prefilled: usize,
    sampler: Sampler,
    detok: Pending,
    sink: S,
    max_tokens: usize,
    generated: usize,
    /// The sampled token the next decode step runs.
    next: u32,
    admitted: Instant,
    first_token: Option<Duration>,
}

/// The sequences of one model being generated, each with its sink `S`.
pub struct Batch<S> {
    /// Joining: prompts not yet fully run, first come first.
    joining: Vec<Sequence<S>>,
    running: Vec<Sequence<S>>,
    next_id: u64,
}

impl<S: TokenSink> Default for Batch<S> {
    fn default() -> Self {
        Batch::new()
    }
}

impl<S: TokenSink> Batch<S> {
    pub fn new() -> Batch<S> {
        Batch { joining: Vec::new(), running: Vec::new(), next_id: 0 }
    }

    /// Queues `prompt` to run in `cache` (empty, sized for it and its
    /// tokens); nothing runs until the next `step`. The cache's room is
    /// checked now.
    pub fn admit(
        &mut self,
        prompt: Vec<u32>,
        mut cache: KvCache,
        options: &GenerateOptions,
        sink: S,
    ) -> Result<SequenceId, Box<Refused>> {
        if prompt.is_empty() {
            return Err(Box::new(Refused { error: GenerateError::NoTokens, cache }));
        }
        cache.reset();
        if let Err(full) = cache.check_room(prompt.len()) {
            return Err(Box::new(Refused { error: full.into(), cache }));
        }
        let id = SequenceId(self.next_id);
        self.next_id += 1;
        self.joining.push(Sequence {
            id,
            cache,
            prompt,
            prefilled: 0,
            sampler: Sampler::new(options.sampling.clone()),
            detok: Pending::default(),
            sink,
            max_tokens: options.max_tokens,
            generated: 0,
            next: 0,
            admitted: Instant::now(),
            first_token: None,
        });
        Ok(id)
    }

    /// Sequences joining or running.
    pub fn len(&self) -> usize {
        self.joining.len() + self.running.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// One prompt chunk of the first joining sequence, then one decode step
    /// of every running one, through `model` (the one every sequence of the
    /// batch runs with) and its `text`. A model failure fails the whole step
    /// (every sequence's cache state is then unknown): the caller ends them all.
    pub fn step(&mut self, model: &Model, text: &TextCodec) -> Result<StepOutcome<S>, candle_core::Error> {
        let mut outcome = StepOutcome { finished: Vec::new(), failed: Vec::new() };
        if let Some(seq) = self.joining.first_mut() {
            let end = (seq.prefilled + PREFILL_CHUNK).min(seq.prompt.len());
            let logits = model.forward(&seq.prompt[seq.prefilled..end], &mut seq.cache, Logits::Last)?;
            seq.prefilled = end;
            if end == seq.prompt.len() {
                let mut seq = self.joining.remove(0);
                seq.next = seq.sampler.sample(&logits)?;
                seq.first_token = Some(seq.admitted.elapsed());
                self.emit_or_end(seq, text, &mut outcome);
            }
        }
        if self.running.is_empty() {
            return Ok(outcome);
        }
        let tokens: Vec<u32> = self.running.iter().map(|s| s.next).collect();
        let logits = {
            let mut caches: Vec<&mut KvCache> = self.running.iter_mut().map(|s| &mut s.cache).collect();
            model.decode_rows(&tokens, &mut caches)?
        };
        let mut previous = std::mem::take(&mut self.running);
        for (i, mut seq) in previous.drain(..).enumerate() {
            seq.next = seq.sampler.sample(&logits.get(i)?)?;
            self.emit_or_end(seq, text, &mut outcome);
        }
        Ok(outcome)
    }

    /// Ends sequence `id` now, wherever it is (mid-prompt too), as
    /// interrupted: what it generated, its cache and its sink.
    pub fn cancel(&mut self, id: SequenceId) -> Option<Finished<S>> {
        for list in [&mut self.joining, &mut self.running] {
            if let Some(i) = list.iter().position(|s| s.id == id) {
                return Some(list.remove(i).end(StopReason::Interrupted));
            }
        }
        None
    }

    /// Takes every sequence out (after a failed step), handing back their caches.
    pub fn drain(&mut self) -> Vec<(SequenceId, KvCache)> {
        self.joining.drain(..).chain(self.running.drain(..)).map(|s| (s.id, s.cache)).collect()
    }

    /// Hands `seq.next` to its sink and keeps it running, or ends it, as the
    /// generation loop does for one sequence.
    fn emit_or_end(&mut self, mut seq: Sequence<S>, text: &TextCodec, outcome: &mut StepOutcome<S>) {
        let reason = match emit(&mut seq, text) {
            Ok(None) => {
                self.running.push(seq);
                return;
            }
            Ok(Some(reason)) => reason,
            Err(error) => {
                outcome.failed.push(Failed { id: seq.id, error, cache: seq.cache });
                return;
            }
        };
        outcome.finished.push(seq.end(reason));
    }
}

impl<S> Sequence<S> {
    fn end(self, stop_reason: StopReason) -> Finished<S> {
        Finished {
            id: self.id,
            prompt_tokens: self.prompt.len(),
            generated_tokens: self.generated,
            stop_reason,
            first_token: self.first_token.unwrap_or_default(),
            elapsed: self.admitted.elapsed(),
            cache: self.cache,
            sink: self.sink,
        }
    }
}

/// Why `seq` ends at its sampled token, if it does (as `generate` ends one alone).
fn emit<S: TokenSink>(seq: &mut Sequence<S>, text: &TextCodec) -> Result<Option<StopReason>, GenerateError> {
    let room = seq.cache.check_room(1).is_ok();
    generate::emit(seq.next, text, &mut seq.detok, &mut seq.sink, &mut seq.generated, seq.max_tokens, room)
}
