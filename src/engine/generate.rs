//! The generation loop: prefill the prompt, then sample one token at a
//! time until a stop token, the token limit or a full context. Tokens are
//! pushed into a sink; the loop never prints.

use std::time::{Duration, Instant};

use serde::Serialize;

use super::decoder::Decoder;
use super::detokenize::Pending;
use super::kv_cache::ContextFull;
use super::sampling::{Sampler, SamplingParams};
use super::text::TextCodec;
use crate::exit::{Diagnostic, ExitStatus};

/// Receives each generated token and its newly completed text.
pub trait TokenSink {
    fn token(&mut self, id: u32, text: &str) -> std::io::Result<()>;

    /// Asked after each token: whether the reader wants the reply to stop here (Ctrl-C in a chat).
    fn stop_requested(&self) -> bool {
        false
    }
}

/// Why generation stopped short of a result.
#[derive(Debug, thiserror::Error)]
pub enum GenerateError {
    #[error(transparent)]
    ContextFull(#[from] ContextFull),
    #[error("running the model failed")]
    Model(#[from] candle_core::Error),
    #[error("detokenizing failed: {0}")]
    Detokenize(String),
    /// Writing a token out failed (a closed pipe, a full disk).
    #[error("writing the generated text failed")]
    Sink(#[source] std::io::Error),
    /// The model needs at least one token to predict the next.
    #[error("the prompt encodes to no tokens")]
    NoTokens,
}

impl Diagnostic for GenerateError {
    fn hint(&self) -> Option<String> {
        match self {
            GenerateError::ContextFull(e) => e.hint(),
            GenerateError::NoTokens => Some("give a prompt with some text in it".into()),
            _ => None,
        }
    }

    fn exit_status(&self) -> ExitStatus {
        match self {
            GenerateError::ContextFull(e) => e.exit_status(),
            GenerateError::NoTokens => ExitStatus::Usage,
            _ => ExitStatus::Failure,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    Eos,
    MaxTokens,
    ContextFull,
    /// The sink asked to stop (the user pressed Ctrl-C).
    Interrupted,
}

#[derive(Debug, Clone)]
pub struct GenerateOptions {
    pub max_tokens: usize,
    pub sampling: SamplingParams,
}

#[derive(Debug, Clone)]
pub struct GenerationStats {
    pub prompt_tokens: usize,
    /// Leading prompt tokens the cache already held (not run again).
    pub cached_prompt_tokens: usize,
    /// The tokens the cache holds afterwards: the prompt and every generated
    /// token that was run through the model (the last one sampled is not).
    pub in_cache: Vec<u32>,
    pub generated_tokens: usize,
    pub stop_reason: StopReason,
    pub prefill: Duration,
    pub decode: Duration,
}

/// Generates after `prompt`, whose first `cached` tokens the decoder's cache
/// already holds (0: a fresh cache).
pub fn generate(
    decoder: &mut dyn Decoder,
    text: &TextCodec,
    prompt: &[u32],
    cached: usize,
    options: &GenerateOptions,
    sink: &mut dyn TokenSink,
) -> Result<GenerationStats, GenerateError> {
    let new = &prompt[cached.min(prompt.len())..];
    if new.is_empty() {
        return Err(GenerateError::NoTokens);
    }
    decoder.check_room(new.len())?;
    let started = Instant::now();
    let mut logits = decoder.step(new)?;
    let mut sampler = Sampler::new(options.sampling.clone());
    let mut next = sampler.sample(&logits)?;
    let prefill = started.elapsed();
    let decode_start = Instant::now();
    let mut detok = Pending::default();
    let mut in_cache = prompt.to_vec();
    let mut generated = 0;
    let stop_reason = loop {
        let room = decoder.check_room(1).is_ok();
        if let Some(reason) = emit(next, text, &mut detok, sink, &mut generated, options.max_tokens, room)? {
            break reason;
        }
        logits = decoder.step(&[next])?;
        in_cache.push(next);
        next = sampler.sample(&logits)?;
    };
    decoder.device().synchronize()?;
    Ok(GenerationStats {
        prompt_tokens: prompt.len(),
        cached_prompt_tokens: cached,
        in_cache,
        generated_tokens: generated,
        stop_reason,
        prefill,
        decode: decode_start.elapsed(),
    })
}

/// What follows each sampled token `next`, alone or in a batch: a stop token
/// ends generation; else its text goes to the sink, and then the sink, the
/// token limit or a full context (no `room` for one more) may end it.
/// `None`: run `next` and sample the one after.
pub(crate) fn emit(
    next: u32,
    text: &TextCodec,
    detok: &mut Pending,
    sink: &mut dyn TokenSink,
    generated: &mut usize,
    max_tokens: usize,
    room: bool,
) -> Result<Option<StopReason>, GenerateError> {
    if text.stop_ids.contains(&next) {
        return Ok(Some(StopReason::Eos));
    }
    let piece = detok.push(&text.tokenizer, next).map_err(|e| GenerateError::Detokenize(e.to_string()))?;
    sink.token(next, &piece).map_err(GenerateError::Sink)?;
    *generated += 1;
    Ok(if sink.stop_requested() {
        Some(StopReason::Interrupted)
    } else if *generated >= max_tokens {
        Some(StopReason::MaxTokens)
    } else if !room {
        Some(StopReason::ContextFull)
    } else {
        None
    })
}
