//! Streaming generated tokens: plain text for people, JSON Lines for
//! scripts, and the end-of-run statistics in both forms.

use serde::Serialize;

use crate::engine::generate::{GenerationStats, StopReason, TokenSink};
use crate::gpu::VramReport;
use crate::memory::HostMemory;
use crate::printer::Printer;

/// Text as it is generated, straight to stdout.
pub struct TextStream<'a> {
    pub printer: &'a Printer,
}

impl TokenSink for TextStream<'_> {
    fn token(&mut self, _id: u32, text: &str) -> std::io::Result<()> {
        self.printer.generated(text)
    }
}

#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Event<'a> {
    Prompt { text: &'a str, ids: &'a [u32] },
    Token { id: u32, text: &'a str },
    Done(&'a DoneView),
}

/// One `{"type":"token",…}` line per token.
pub struct JsonStream<'a> {
    pub printer: &'a Printer,
}

impl TokenSink for JsonStream<'_> {
    fn token(&mut self, id: u32, text: &str) -> std::io::Result<()> {
        let line = serde_json::to_string(&Event::Token { id, text }).map_err(std::io::Error::other)?;
        self.printer.data(&format!("{line}\n"))
    }
}

/// The `{"type":"prompt",…}` line that starts a run's JSON Lines: the text
/// the model is given (the chat template's rendering, or the raw prompt)
/// and its token ids.
pub fn prompt_json_line(text: &str, ids: &[u32]) -> String {
    let line = serde_json::to_string(&Event::Prompt { text, ids }).expect("strings and ids serialize");
    format!("{line}\n")
}

/// `--verbose-prompt`, as llama.cpp prints it: the text, the count, then
/// one `id -> 'piece'` line per token.
pub fn prompt_text(text: &str, tokens: &[(u32, String)]) -> String {
    let mut out = format!("prompt: {text:?}\nnumber of tokens in prompt = {}\n", tokens.len());
    for (id, piece) in tokens {
        out.push_str(&format!("{id:>8} -> {piece:?}\n"));
    }
    out
}

#[derive(Debug, Serialize)]
pub struct KvCacheStats {
    pub scheme: String,
    pub context_length: usize,
    pub allocated_bytes: u64,
}

#[derive(Debug, Serialize)]
pub struct MemoryStats {
    pub host: HostMemory,
    /// NVML readings on a GPU run; `null` on the CPU.
    pub gpu: Option<VramReport>,
}

/// The statistics of one generation.
#[derive(Debug, Serialize)]
pub struct DoneView {
    pub model: String,
    pub device: String,
    pub prompt_tokens: usize,
    /// Of the prompt, the leading tokens an earlier turn left in the cache.
    pub cached_prompt_tokens: usize,
    pub generated_tokens: usize,
    pub stop_reason: StopReason,
    pub load_seconds: f64,
    pub prefill_seconds: f64,
    pub decode_seconds: f64,
    pub prefill_tokens_per_second: f64,
    pub decode_tokens_per_second: f64,
    pub kv_cache: KvCacheStats,
    pub memory: MemoryStats,
}

impl DoneView {
    pub fn new(
        model: String,
        device: String,
        load_seconds: f64,
        stats: &GenerationStats,
        kv_cache: KvCacheStats,
        memory: MemoryStats,
    ) -> DoneView {
        let rate = |n: usize, s: f64| if s > 0.0 { n as f64 / s } else { 0.0 };
        let (prefill, decode) = (stats.prefill.as_secs_f64(), stats.decode.as_secs_f64());
        DoneView {
            model,
            device,
            prompt_tokens: stats.prompt_tokens,
            cached_prompt_tokens: stats.cached_prompt_tokens,
            generated_tokens: stats.generated_tokens,
            stop_reason: stats.stop_reason,
            load_seconds,
            prefill_seconds: prefill,
            decode_seconds: decode,
            prefill_tokens_per_second: rate(stats.prompt_tokens - stats.cached_prompt_tokens, prefill),
            // The first token comes from the prefill pass; decode timed the rest.
            decode_tokens_per_second: rate(stats.generated_tokens.saturating_sub(1), decode),
            kv_cache,
            memory,
        }
    }

    pub fn json_line(&self) -> anyhow::Result<String> {
        Ok(format!("{}\n", serde_json::to_string(&Event::Done(self))?))
    }

    /// The same numbers for people (`--verbose`).
    pub fn text(&self) -> String {
        let mb = |b: Option<u64>| b.map_or("unknown".into(), super::format::bytes);
        format!(
            "model: {} on {}\nload: {:.2} s\nprompt: {}{} in {:.2} s ({:.1} tokens/s)\n\
             generated: {} in {:.2} s ({:.1} tokens/s), stopped by {}\n\
             kv cache: {} for {} tokens, {}\nhost memory: {} now, {} peak{}",
            self.model,
            self.device,
            self.load_seconds,
            super::format::counted(self.prompt_tokens as u64, "token"),
            if self.cached_prompt_tokens > 0 {
                format!(" ({} from the cache)", self.cached_prompt_tokens)
            } else {
                String::new()
            },
            self.prefill_seconds,
            self.prefill_tokens_per_second,
            super::format::counted(self.generated_tokens as u64, "token"),
            self.decode_seconds,
            self.decode_tokens_per_second,
            stop_text(self.stop_reason),
            self.kv_cache.scheme,
            self.kv_cache.context_length,
            super::format::bytes(self.kv_cache.allocated_bytes),
            mb(self.memory.host.rss_bytes),
            mb(self.memory.host.peak_rss_bytes),
            self.memory.gpu.as_ref().map_or(String::new(), |g| format!(
                "\nVRAM ({}, {}): {} before load, {} after weights, {} after cache, {} peak",
                g.gpu.as_deref().unwrap_or("unknown GPU"),
                reading_text(g.reading),
                mb(g.before_load),
                mb(g.after_weights),
                mb(g.after_cache),
                mb(g.peak)
            )),
        )
    }
}

/// Why generation stopped, in the words of the flags and terms users know.
fn stop_text(reason: StopReason) -> &'static str {
    match reason {
        StopReason::Eos => "the model's end-of-text token",
        StopReason::MaxTokens => "`--max-tokens`",
        StopReason::ContextFull => "a full context (`--ctx-size`)",
        StopReason::Interrupted => "Ctrl-C",
    }
}

/// How the VRAM figures were read.
fn reading_text(reading: Option<crate::gpu::ReadingKind>) -> &'static str {
    match reading {
        Some(crate::gpu::ReadingKind::Process) => "this process",
        Some(crate::gpu::ReadingKind::DeviceDelta) => "device use since start",
        None => "not read",
    }
}
