//! The generation loop: prefill the prompt, then sample one token at a
//! time until a stop token, the token limit or a full context. Tokens are
//! pushed into a sink; the loop never prints.

use std::time::{Duration, Instant};

use serde::Serialize;

use super::decoder::Decoder;
use super::detokenize::Detokenizer;
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
    let mut detok = Detokenizer::new(&text.tokenizer);
    let mut in_cache = prompt.to_vec();
    let mut generated = 0;
    let stop_reason = loop {
        if text.stop_ids.contains(&next) {
            break StopReason::Eos;
        }
        let piece = detok.push(next).map_err(|e| GenerateError::Detokenize(e.to_string()))?;
        sink.token(next, &piece).map_err(GenerateError::Sink)?;
        generated += 1;
        if sink.stop_requested() {
            break StopReason::Interrupted;
        }
        if generated >= options.max_tokens {
            break StopReason::MaxTokens;
        }
        if decoder.check_room(1).is_err() {
            break StopReason::ContextFull;
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
