//! `llmctl run`: resolve the model and its quantization, load it with the
//! chosen KV cache, and generate from a prompt, stdin, or a chat session.

mod chat;

use std::io::Read;

use crate::engine::chat::Message;
use crate::engine::device::DeviceRequest;
use crate::engine::generate::{GenerateOptions, GenerationStats, TokenSink, generate};
use crate::engine::sampling::SamplingParams;
use crate::engine::{self, GenerationDefaults, LoadObserver, LoadRequest, LoadStage, Loaded, SamplingRequest};
use crate::exit::ExitStatus;
use crate::gpu::VramProbe;
use crate::hub::Revision;
use crate::printer::Printer;
use crate::pull::PullSource;
use crate::quant::{self, Resolved};
use crate::settings::{GlobalSettings, OutputFormat, PromptSource, RunSettings, non_empty};
use crate::store::manifest::Manifest;
use crate::store::{Store, StoreError};
use crate::ui::format;
use crate::ui::stream::{DoneView, JsonStream, KvCacheStats, MemoryStats, TextStream};

pub fn execute(global: &GlobalSettings, settings: &RunSettings, printer: &Printer) -> anyhow::Result<ExitStatus> {
    let store = super::open_store(global)?;
    let manifest = find_or_pull(&store, global, settings, printer)?;
    let resolved =
        quant::resolve(settings.model.tag, manifest.format, manifest.quantization, settings.model.name.as_str())?;
    // A piped prompt is read and checked before anything is loaded.
    let piped = match settings.prompt {
        PromptSource::Stdin => {
            let mut text = String::new();
            std::io::stdin().read_to_string(&mut text)?;
            Some(non_empty(text, "read from standard input")?)
        }
        PromptSource::Text(_) | PromptSource::Interactive => None,
    };
    let kv = match resolved {
        Resolved::Kv(scheme) => Some(scheme),
        Resolved::None | Resolved::Gguf(_) => None,
    };
    let request = LoadRequest { device: settings.device, ctx_size: settings.ctx_size, kv };
    let mut vram = VramObserver { probe: VramProbe::open(None) };
    let loaded = engine::load(&store.model_files(&manifest), &request, &mut vram)?;
    for conversion in &loaded.conversions {
        printer.status(&format!("note: {conversion}"));
    }
    let cache = loaded.decoder.cache_info();
    printer.status(&format!(
        "running {} on {} (KV cache: {}, {} for {} tokens)",
        settings.model,
        loaded.device,
        cache.scheme,
        format::bytes(cache.allocated_bytes),
        cache.capacity
    ));
    let options = GenerateOptions { max_tokens: settings.max_tokens, sampling: sampling(settings, &loaded.defaults) };
    match &settings.prompt {
        PromptSource::Text(text) => {
            one_shot(&mut Run { loaded, vram: vram.probe, in_cache: Vec::new() }, settings, &options, text, printer)
        }
        PromptSource::Stdin => {
            let text = piped.unwrap_or_default();
            one_shot(&mut Run { loaded, vram: vram.probe, in_cache: Vec::new() }, settings, &options, &text, printer)
        }
        PromptSource::Interactive => {
            chat::chat_loop(&mut Run { loaded, vram: vram.probe, in_cache: Vec::new() }, settings, &options, printer)
        }
    }
}

/// The stored model the reference means; one that is not stored is pulled
/// first, as `ollama run` does, unless `--no-pull`. A tag follows `pull`'s
/// rules, then `run`'s: `:kv_*` pulls the safetensors model and records the
/// tag, a GGUF weight type pulls that file.
fn find_or_pull(
    store: &Store,
    global: &GlobalSettings,
    settings: &RunSettings,
    printer: &Printer,
) -> anyhow::Result<Manifest> {
    match store.find(&settings.model) {
        Err(StoreError::NotFound(_) | StoreError::TagNotFound { .. }) if settings.pull_missing => {
            printer.status(&format!("`{}` is not in the store: pulling it", settings.model));
            let source = PullSource::Hub { reference: settings.model.clone(), revision: Revision::main() };
            super::pull::pull_with_progress(store, global, &source, printer)?;
            Ok(store.find(&settings.model)?)
        }
        found => Ok(found?),
    }
}

/// Flags first, then the model's generation config; greedy when neither samples.
fn sampling(settings: &RunSettings, defaults: &GenerationDefaults) -> SamplingParams {
    defaults.sampling(&SamplingRequest {
        temperature: settings.temperature,
        top_k: settings.top_k,
        top_p: settings.top_p,
        seed: settings.seed,
    })
}

/// The prompt's token ids; the text they encode and the ids are shown as
/// `--json`'s `prompt` event and by `--verbose-prompt`.
fn encode(loaded: &Run, settings: &RunSettings, messages: &[Message], printer: &Printer) -> anyhow::Result<Vec<u32>> {
    let codec = &loaded.loaded.text;
    let (text, ids) = if settings.raw {
        let text = messages.last().map_or("", |m| m.content.as_str());
        (text.to_string(), codec.encode_raw(text)?)
    } else {
        codec.encode_chat(messages).map_err(engine::EngineError::Text)?
    };
    if settings.output == OutputFormat::Json {
        printer.data(&crate::ui::stream::prompt_json_line(&text, &ids))?;
    }
    if settings.verbose_prompt {
        let pieces: Vec<(u32, String)> = ids.iter().map(|&id| (id, codec.piece(id))).collect();
        printer.detail(crate::ui::stream::prompt_text(&text, &pieces).trim_end());
    }
    Ok(ids)
}

/// A loaded model, the VRAM probe watching it, and the tokens its cache holds.
struct Run {
    loaded: Loaded,
    vram: VramProbe,
    in_cache: Vec<u32>,
}

/// Samples VRAM at the load milestones.
struct VramObserver {
    probe: VramProbe,
}

impl LoadObserver for VramObserver {
    fn stage(&mut self, stage: LoadStage, device: &str) {
        match stage {
            LoadStage::DeviceReady => self.probe = VramProbe::open(DeviceRequest::cuda_index(device)),
            LoadStage::WeightsLoaded => self.probe.report.after_weights = self.probe.sample(),
            LoadStage::CacheAllocated => self.probe.report.after_cache = self.probe.sample(),
        }
    }
}

/// Tokens pass through to the output; VRAM is sampled every few tokens for the peak.
struct Sampled<'a> {
    inner: Box<dyn TokenSink + 'a>,
    vram: &'a mut VramProbe,
    text: String,
    count: usize,
}

/// Tokens between VRAM samples: NVML queries cost about a millisecond.
const VRAM_SAMPLE_EVERY: usize = 16;

impl TokenSink for Sampled<'_> {
    fn token(&mut self, id: u32, text: &str) -> std::io::Result<()> {
        if self.count.is_multiple_of(VRAM_SAMPLE_EVERY) {
            self.vram.sample();
        }
        self.count += 1;
        self.text.push_str(text);
        self.inner.token(id, text)
    }

    /// Only a chat installs the interrupt guard that raises this flag.
    fn stop_requested(&self) -> bool {
        crate::interrupt::requested()
    }
}

fn one_shot(
    loaded: &mut Run,
    settings: &RunSettings,
    options: &GenerateOptions,
    prompt: &str,
    printer: &Printer,
) -> anyhow::Result<ExitStatus> {
    let system = settings.system.iter().map(|s| Message { role: "system".into(), content: s.clone() });
    let messages: Vec<Message> =
        system.chain(std::iter::once(Message { role: "user".into(), content: prompt.to_string() })).collect();
    let ids = encode(loaded, settings, &messages, printer)?;
    let stats = run_once(loaded, settings, options, &ids, false, printer)?.0;
    report(loaded, settings, &stats, printer)?;
    Ok(ExitStatus::Success)
}

/// Generates into the right sink; returns the stats and the text produced.
/// With `reuse`, the prompt's prefix that the cache already holds (an earlier
/// chat turn) is not run again.
fn run_once(
    run: &mut Run,
    settings: &RunSettings,
    options: &GenerateOptions,
    ids: &[u32],
    reuse: bool,
    printer: &Printer,
) -> anyhow::Result<(GenerationStats, String)> {
    // At least one token is run, for the logits of the next.
    let shared = if reuse { common_prefix(&run.in_cache, ids).min(ids.len().saturating_sub(1)) } else { 0 };
    let cached = if shared > 0 && run.loaded.decoder.truncate(shared) { shared } else { 0 };
    if cached == 0 {
        run.loaded.decoder.reset();
    }
    let inner: Box<dyn TokenSink> = if settings.output == OutputFormat::Json {
        Box::new(JsonStream { printer })
    } else {
        Box::new(TextStream { printer })
    };
    let mut sink = Sampled { inner, vram: &mut run.vram, text: String::new(), count: 0 };
    let stats = generate(run.loaded.decoder.as_mut(), &run.loaded.text, ids, cached, options, &mut sink)?;
    let text = std::mem::take(&mut sink.text);
    drop(sink);
    run.in_cache = stats.in_cache.clone();
    run.vram.sample();
    if settings.output == OutputFormat::Text {
        printer.generated("\n")?;
    }
    Ok((stats, text))
}

fn common_prefix(a: &[u32], b: &[u32]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

fn report(run: &Run, settings: &RunSettings, stats: &GenerationStats, printer: &Printer) -> anyhow::Result<()> {
    let loaded = &run.loaded;
    let cache = loaded.decoder.cache_info();
    let kv_cache =
        KvCacheStats { scheme: cache.scheme, context_length: cache.capacity, allocated_bytes: cache.allocated_bytes };
    let gpu = run.vram.report.gpu.is_some().then(|| run.vram.report.clone());
    let memory = MemoryStats { host: crate::memory::read(), gpu };
    let done = DoneView::new(
        settings.model.to_string(),
        loaded.device.clone(),
        loaded.load_time.as_secs_f64(),
        stats,
        kv_cache,
        memory,
    );
    if settings.output == OutputFormat::Json {
        printer.data(&done.json_line()?)?;
    }
    if settings.verbose {
        printer.detail(&done.text());
    }
    Ok(())
}
