//! Loading a stored model onto a device: checks first (files, config,
//! context, device), then weights, then the cache; observers hear each stage.

use std::time::{Duration, Instant};

use candle_core::DType;
use candle_nn::VarBuilder;

use super::EngineError;
use super::config::ModelConfig;
use super::decoder::{Decoder, OwnedModel};
use super::defaults::{GenerationDefaults, generation_defaults};
use super::device::{self, DeviceRequest};
use super::gguf_text;
use super::gguf_weights::{self, GgufWeights, Mode};
use super::kv_cache::{BlockPool, KvCache};
use super::model::Model;
use super::text::{TextCodec, TextFiles};
use crate::formats::gguf::GgufHeader;
use crate::formats::{ModelFacts, WeightDtype};
use crate::kv_size::{CacheLayout, DenseDtype};
use crate::quant::{Format, KvScheme};
use crate::store::model_files::ModelFiles;

/// Context length used when `--ctx-size` is not given (capped by the model's).
pub const DEFAULT_CONTEXT: usize = 4096;

/// Milestones of a load, for whoever measures memory around them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoadStage {
    /// The device (and its CUDA context) exists; nothing is loaded yet.
    DeviceReady,
    WeightsLoaded,
    CacheAllocated,
}

pub trait LoadObserver {
    fn stage(&mut self, stage: LoadStage, device: &str);
}

/// Observes nothing.
pub struct NoObserver;

impl LoadObserver for NoObserver {
    fn stage(&mut self, _: LoadStage, _: &str) {}
}

/// What to load and how.
#[derive(Debug, Clone)]
pub struct LoadRequest {
    pub device: DeviceRequest,
    pub ctx_size: Option<usize>,
    pub kv: Option<KvScheme>,
}

pub struct Loaded {
    pub decoder: Box<dyn Decoder>,
    pub text: TextCodec,
    pub device: String,
    pub defaults: GenerationDefaults,
    pub load_time: Duration,
    /// What the weights were computed as, where not as stored (said to the user).
    pub conversions: Vec<String>,
}

/// Loads `manifest`'s model: checks first, then weights, then the cache.
pub fn load(
    files: &ModelFiles<'_>,
    request: &LoadRequest,
    observer: &mut dyn LoadObserver,
) -> Result<Loaded, EngineError> {
    let started = Instant::now();
    let weights = load_weights(files, request.device, request.ctx_size, observer)?;
    let cache = new_cache(&weights, request.kv, weights.context)?;
    observer.stage(LoadStage::CacheAllocated, &weights.device);
    let LoadedWeights { model, text, device, defaults, conversions, .. } = weights;
    let decoder = Box::new(OwnedModel { model, cache });
    Ok(Loaded { decoder, text, device, defaults, load_time: started.elapsed(), conversions })
}

/// A model's weights on a device, with its text codec; caches are made for
/// it separately (`new_cache`), so one load can serve several.
pub struct LoadedWeights {
    pub model: Model,
    pub text: TextCodec,
    pub device: String,
    pub defaults: GenerationDefaults,
    pub facts: ModelFacts,
    pub format: Format,
    /// The context length RoPE tables cover: `--ctx-size`, else the default.
    pub context: usize,
    /// The model's own context limit.
    pub max_context: usize,
    /// What the weights were computed as, where not as stored, e.g. "Q4_1
    /// blocks are computed as Q8_0 on the CPU".
    pub conversions: Vec<String>,
}

/// Checks files, config, context and device, then loads the weights.
pub fn load_weights(
    files: &ModelFiles<'_>,
    device: DeviceRequest,
    ctx_size: Option<usize>,
    observer: &mut dyn LoadObserver,
) -> Result<LoadedWeights, EngineError> {
    let manifest = files.manifest();
    if manifest.format == Format::Gguf {
        return load_gguf_weights(files, device, ctx_size, observer);
    }
    let config = ModelConfig::parse(&files.read_required("config.json")?)?;
    let tokenizer_json = files.required("tokenizer.json")?;
    let weights = files.weights()?;
    let max_context = config.max_context;
    let context = context_length(ctx_size, max_context)?;
    let defaults = generation_defaults(files)?;
    let mut eos_ids = config.eos_token_ids.clone();
    eos_ids.extend(defaults.eos_ids());
    let text = TextCodec::load(TextFiles {
        tokenizer_json: &tokenizer_json,
        tokenizer_config: files.read("tokenizer_config.json")?,
        chat_template_jinja: files.read("chat_template.jinja")?.map(|b| String::from_utf8_lossy(&b).into_owned()),
        eos_ids,
    })?;
    let (device, device_name) = device::open(device)?;
    observer.stage(LoadStage::DeviceReady, &device_name);
    let compute = compute_dtype(&device, &manifest.facts.weight_dtype);
    // SAFETY: blobs are immutable once stored (replaced only by rename).
    let vb =
        unsafe { VarBuilder::from_mmaped_safetensors(&weights, compute, &device) }.map_err(EngineError::Weights)?;
    let multimodal = config.block.multimodal;
    let model = Model::load(&vb, config, context).map_err(EngineError::Weights)?;
    device.synchronize().map_err(EngineError::Weights)?;
    observer.stage(LoadStage::WeightsLoaded, &device_name);
    // Said, not hidden: an image-text checkpoint runs as its text model; MXFP4 experts are dequantized.
    let mut conversions: Vec<String> = Vec::new();
    if multimodal {
        conversions
            .push("the checkpoint's image encoder is not loaded: llmctl runs its text model, for text prompts".into());
    }
    if vb.contains_tensor("model.layers.0.mlp.experts.gate_up_proj_blocks") {
        conversions.push(format!(
            "the experts' MXFP4 blocks are dequantized to {} as they load (llmctl has no MXFP4 kernel)",
            format!("{compute:?}").to_lowercase()
        ));
    }
    Ok(LoadedWeights {
        model,
        text,
        device: device_name,
        defaults,
        facts: manifest.facts.clone(),
        format: manifest.format,
        context,
        max_context,
        conversions,
    })
}

/// The layout a scheme (or `None`, unquantized) gives this model's cache.
pub fn cache_layout(facts: &ModelFacts, format: Format, kv: Option<KvScheme>) -> CacheLayout {
    match kv {
        Some(scheme) => CacheLayout::Quantized(scheme),
        None => CacheLayout::dense_for(facts, format),
    }
}

/// Allocates a cache of `capacity` tokens (at most `weights.context`) for the model.
pub fn new_cache(weights: &LoadedWeights, kv: Option<KvScheme>, capacity: usize) -> Result<KvCache, EngineError> {
    let layout = cache_layout(&weights.facts, weights.format, kv);
    let device = weights.model.device();
    let cache = weights.model.new_cache(layout, capacity, dense_dtype(layout)).map_err(EngineError::Cache)?;
    device.synchronize().map_err(EngineError::Cache)?;
    Ok(cache)
}

/// A pool of `blocks` KV blocks of scheme `kv`, for sequences of up to `context` positions.
pub fn new_block_pool(
    weights: &LoadedWeights,
    kv: Option<KvScheme>,
    context: usize,
    blocks: usize,
) -> Result<BlockPool, EngineError> {
    let layout = cache_layout(&weights.facts, weights.format, kv);
    let pool = weights.model.block_pool(layout, context, blocks, dense_dtype(layout)).map_err(EngineError::Cache)?;
    weights.model.device().synchronize().map_err(EngineError::Cache)?;
    Ok(pool)
}

/// Bytes one KV block of scheme `kv` takes (see `new_block_pool`).
pub fn block_bytes(weights: &LoadedWeights, kv: Option<KvScheme>, context: usize) -> u64 {
    let layout = cache_layout(&weights.facts, weights.format, kv);
    weights.model.block_bytes(layout, context)
}

/// GGUF: tokenizer and template from the file's metadata; the tensors
/// checked against it before any is read, then loaded for the decoder.
fn load_gguf_weights(
    files: &ModelFiles<'_>,
    device: DeviceRequest,
    ctx_size: Option<usize>,
    observer: &mut dyn LoadObserver,
) -> Result<LoadedWeights, EngineError> {
    let manifest = files.manifest();
    let (paths, headers): (Vec<_>, Vec<_>) = gguf_headers(files)?.into_iter().unzip();
    // Metadata lives in the first part.
    let text = gguf_text::text_codec(&headers[0])?;
    let config = gguf_weights::config(&headers[0]).map_err(EngineError::GgufModel)?;
    let max_context = config.max_context;
    let context = context_length(ctx_size, max_context)?;
    let (device, device_name) = device::open(device)?;
    observer.stage(LoadStage::DeviceReady, &device_name);
    let dtype = compute_dtype(&device, &manifest.facts.weight_dtype);
    let open = |mode| GgufWeights::open(&paths, &headers, &config, dtype, &device, mode);
    let checked = open(Mode::HeadersOnly).and_then(|w| Model::load(&w, config.clone(), 1).map(drop));
    checked.map_err(EngineError::GgufTensors)?;
    let weights = open(Mode::Load).map_err(EngineError::Weights)?;
    let model = Model::load(&weights, config, context).map_err(EngineError::Weights)?;
    let conversions = weights.conversions();
    device.synchronize().map_err(EngineError::Weights)?;
    observer.stage(LoadStage::WeightsLoaded, &device_name);
    Ok(LoadedWeights {
        model,
        text,
        device: device_name,
        defaults: GenerationDefaults::default(),
        facts: manifest.facts.clone(),
        format: manifest.format,
        context,
        max_context,
        conversions,
    })
}

fn context_length(requested: Option<usize>, max: usize) -> Result<usize, EngineError> {
    ContextLimits::up_to(max).choose(requested)
}

/// The context a run allocates by default and the most it may ask for: one
/// rule for `run`, `show` and `bench`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct ContextLimits {
    /// Without `--ctx-size`: the model's context, at most [`DEFAULT_CONTEXT`]
    /// (a cache for a model's full 128k would take gigabytes nobody asked for).
    pub default: usize,
    /// What the model can attend to.
    pub max: usize,
}

impl ContextLimits {
    pub fn up_to(max: usize) -> ContextLimits {
        ContextLimits { default: max.min(DEFAULT_CONTEXT), max }
    }

    /// `--ctx-size` if given and within the limit, else the default.
    pub fn choose(&self, requested: Option<usize>) -> Result<usize, EngineError> {
        match requested {
            Some(n) if n > self.max => Err(EngineError::ContextTooLarge { requested: n, max: self.max }),
            Some(n) => Ok(n),
            None => Ok(self.default),
        }
    }
}

/// The limits `run` applies to a stored model: the context it declares.
pub fn context_limits(facts: &ModelFacts) -> ContextLimits {
    ContextLimits::up_to(facts.context_length as usize)
}

/// A stored GGUF model's files in part order (one, or a split model's
/// parts), each with its parsed header (metadata and tensor table).
pub fn gguf_headers(files: &ModelFiles<'_>) -> Result<Vec<(std::path::PathBuf, GgufHeader)>, EngineError> {
    let read = |path: std::path::PathBuf| {
        let header =
            crate::formats::gguf::read_header_from_path(&path).map_err(|e| EngineError::GgufHeader(path.clone(), e))?;
        Ok((path, header))
    };
    files.gguf_parts()?.into_iter().map(read).collect()
}

/// f32 on the CPU (fast and exact there); the weights' half type on a GPU,
/// f16 for GGUF (the type of its cache, as llama.cpp's).
fn compute_dtype(device: &candle_core::Device, weight_dtype: &WeightDtype) -> DType {
    match (device.is_cpu(), weight_dtype) {
        (true, _) => DType::F32,
        (false, WeightDtype::F16 | WeightDtype::Gguf(_)) => DType::F16,
        (false, _) => DType::BF16,
    }
}

fn dense_dtype(layout: CacheLayout) -> DType {
    match layout {
        CacheLayout::Dense(DenseDtype::Bf16) => DType::BF16,
        CacheLayout::Dense(DenseDtype::F16) => DType::F16,
        _ => DType::F32,
    }
}
