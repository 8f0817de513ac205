//! The inference engine for safetensors models: load a stored model onto a
//! device with the requested KV cache, then generate. Every check that can
//! fail (files, config, context, device) runs before weights are touched.

pub mod attention;
pub mod chat;
pub mod config;
pub mod decoder;
pub mod detokenize;
pub mod device;
pub mod generate;
pub mod gguf_model;
pub mod kv_cache;
pub mod linear;
pub mod model;
pub mod rope;
pub mod sampling;
pub mod text;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use candle_core::DType;
use candle_nn::VarBuilder;
use serde::Deserialize;

use crate::exit::{Diagnostic, ExitStatus};
use crate::formats::ModelFacts;
use crate::formats::safetensors::{INDEX_FILE, index_shards};
use crate::kv_size::CacheLayout;
use crate::quant::{Format, KvScheme};
use crate::store::Store;
use crate::store::manifest::Manifest;
use config::ModelConfig;
use decoder::{Decoder, OwnedModel};
use device::{DeviceError, DeviceRequest};
use kv_cache::{CacheShape, KvCache};
use model::Model;
use text::{TextCodec, TextError, TextFiles};

/// Context length used when `--ctx-size` is not given (capped by the model's).
pub const DEFAULT_CONTEXT: usize = 4096;

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("`{name}` has no `{file}` in the store")]
    MissingFile { name: String, file: String },
    #[error("the store has lost `{file}` of `{name}` (blob `{}`)", path.display())]
    MissingBlob { name: String, file: String, path: PathBuf },
    #[error("the store's copy of `{file}` of `{name}` is damaged: {size} bytes where {expected} were stored")]
    DamagedBlob { name: String, file: String, size: u64, expected: u64 },
    #[error("`{INDEX_FILE}` of `{name}` lists shard `{shard}`, which is not stored")]
    MissingShard { name: String, shard: String },
    #[error("cannot read `{file}`")]
    Read { file: String, source: std::io::Error },
    #[error(transparent)]
    Config(#[from] config::ConfigError),
    #[error("`--ctx-size {requested}` is beyond the model's context length of {max}")]
    ContextTooLarge { requested: usize, max: usize },
    #[error(transparent)]
    Device(#[from] DeviceError),
    #[error(transparent)]
    Text(#[from] TextError),
    #[error("`{}` is not a usable GGUF file", .0.display())]
    GgufHeader(PathBuf, #[source] crate::formats::gguf::GgufError),
    #[error(transparent)]
    GgufTokenizer(crate::formats::gguf::tokenizer::GgufTokenizerError),
    #[error("unsupported GGUF architecture `{arch}`: llmctl runs GGUF models of {}", gguf_model::SUPPORTED)]
    GgufArchitecture { arch: String },
    #[error("loading the weights failed")]
    Weights(#[source] candle_core::Error),
    #[error("`{name}` is a GGUF model; this needs a safetensors model")]
    NotSafetensors { name: String },
    #[error("allocating the KV cache failed")]
    Cache(#[source] candle_core::Error),
}

impl Diagnostic for EngineError {
    fn hint(&self) -> Option<String> {
        match self {
            EngineError::MissingFile { name, .. }
            | EngineError::MissingBlob { name, .. }
            | EngineError::DamagedBlob { name, .. }
            | EngineError::MissingShard { name, .. } => {
                Some(format!("pull the model again: `llmctl rm {name}` then `llmctl pull {name}`"))
            }
            EngineError::ContextTooLarge { max, .. } => Some(format!("use `--ctx-size {max}` or less")),
            EngineError::Device(e) => e.hint(),
            EngineError::Text(TextError::NoTemplate) => Some("use `--raw` to send the prompt as it is".into()),
            EngineError::Text(TextError::Chat(_)) => Some("use `--raw` to send the prompt without the template".into()),
            EngineError::Text(TextError::Tokenizer(_) | TextError::Config(_)) => Some(
                "the model's tokenizer files cannot be read: pull it again, and if the repository's own files are broken, tell its authors".into(),
            ),
            EngineError::Config(config::ConfigError::Unsupported(_)) | EngineError::GgufArchitecture { .. } => {
                Some("pull a model of a supported family".into())
            }
            EngineError::GgufTokenizer(_) => Some("pull the model's safetensors repository instead".into()),
            EngineError::NotSafetensors { .. } => {
                Some("KV-cache schemes apply to safetensors models: pull the model's safetensors repository".into())
            }
            _ => None,
        }
    }

    fn exit_status(&self) -> ExitStatus {
        match self {
            EngineError::ContextTooLarge { .. } | EngineError::Device(_) | EngineError::NotSafetensors { .. } => {
                ExitStatus::Usage
            }
            _ => ExitStatus::Failure,
        }
    }
}

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

/// Sampling defaults a model ships in `generation_config.json`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct GenerationDefaults {
    pub temperature: Option<f64>,
    pub top_k: Option<usize>,
    pub top_p: Option<f64>,
    pub do_sample: Option<bool>,
    #[serde(default)]
    eos_token_id: Option<serde_json::Value>,
}

pub struct Loaded {
    pub decoder: Box<dyn Decoder>,
    pub text: TextCodec,
    pub device: String,
    pub defaults: GenerationDefaults,
    pub load_time: Duration,
}

struct Files<'a> {
    store: &'a Store,
    manifest: &'a Manifest,
}

impl Files<'_> {
    fn name(&self) -> String {
        self.manifest.reference().to_string()
    }

    /// The blob of `file`, checked to exist; `None` if the model has no such file.
    fn path(&self, file: &str) -> Result<Option<PathBuf>, EngineError> {
        let Some(entry) = self.manifest.file(file) else { return Ok(None) };
        let path = self.store.blob_path(&entry.sha256);
        // Hashing gigabytes on every run is too slow; a size check catches
        // truncation, and `show --verify` hashes.
        match std::fs::metadata(&path) {
            Ok(meta) if meta.is_file() && meta.len() == entry.size => Ok(Some(path)),
            Ok(meta) if meta.is_file() => Err(EngineError::DamagedBlob {
                name: self.name(),
                file: file.into(),
                size: meta.len(),
                expected: entry.size,
            }),
            _ => Err(EngineError::MissingBlob { name: self.name(), file: file.into(), path }),
        }
    }

    fn required(&self, file: &str) -> Result<PathBuf, EngineError> {
        self.path(file)?.ok_or_else(|| EngineError::MissingFile { name: self.name(), file: file.into() })
    }

    fn read(&self, file: &str) -> Result<Option<Vec<u8>>, EngineError> {
        let Some(path) = self.path(file)? else { return Ok(None) };
        std::fs::read(path).map(Some).map_err(|source| EngineError::Read { file: file.into(), source })
    }

    fn read_required(&self, file: &str) -> Result<Vec<u8>, EngineError> {
        self.read(file)?.ok_or_else(|| EngineError::MissingFile { name: self.name(), file: file.into() })
    }

    /// Every weight shard, checked against the index when there is one.
    fn weights(&self) -> Result<Vec<PathBuf>, EngineError> {
        if let Some(index) = self.read(INDEX_FILE)? {
            let shards = index_shards(&index)
                .map_err(|e| EngineError::MissingFile { name: self.name(), file: e.to_string() })?;
            if let Some(shard) = shards.iter().find(|s| self.manifest.file(s).is_none()) {
                return Err(EngineError::MissingShard { name: self.name(), shard: shard.clone() });
            }
        }
        let names = self.manifest.files.iter().filter(|f| f.name.ends_with(".safetensors"));
        let paths = names.map(|f| self.required(&f.name)).collect::<Result<Vec<_>, _>>()?;
        if paths.is_empty() {
            return Err(EngineError::MissingFile { name: self.name(), file: "*.safetensors".into() });
        }
        Ok(paths)
    }
}

/// Loads `manifest`'s model: checks first, then weights, then the cache.
pub fn load(
    store: &Store,
    manifest: &Manifest,
    request: &LoadRequest,
    observer: &mut dyn LoadObserver,
) -> Result<Loaded, EngineError> {
    let started = Instant::now();
    if manifest.format == Format::Gguf {
        return load_gguf(&Files { store, manifest }, request, started, observer);
    }
    let weights = load_weights(store, manifest, request.device, request.ctx_size, observer)?;
    let cache = new_cache(&weights, request.kv, weights.context)?;
    observer.stage(LoadStage::CacheAllocated, &weights.device);
    let LoadedWeights { model, text, device, defaults, .. } = weights;
    Ok(Loaded { decoder: Box::new(OwnedModel { model, cache }), text, device, defaults, load_time: started.elapsed() })
}

/// A safetensors model's weights on a device, with its text codec; caches
/// are made for it separately (`new_cache`), so one load can serve several.
pub struct LoadedWeights {
    pub model: Model,
    pub text: TextCodec,
    pub device: String,
    pub defaults: GenerationDefaults,
    pub facts: ModelFacts,
    /// The context length RoPE tables cover: `--ctx-size`, else the default.
    pub context: usize,
    /// The model's own context limit.
    pub max_context: usize,
}

/// Checks files, config, context and device, then loads the weights.
pub fn load_weights(
    store: &Store,
    manifest: &Manifest,
    device: DeviceRequest,
    ctx_size: Option<usize>,
    observer: &mut dyn LoadObserver,
) -> Result<LoadedWeights, EngineError> {
    let files = Files { store, manifest };
    if manifest.format == Format::Gguf {
        return Err(EngineError::NotSafetensors { name: files.name() });
    }
    let config = ModelConfig::parse(&files.read_required("config.json")?)?;
    let tokenizer_json = files.required("tokenizer.json")?;
    let weights = files.weights()?;
    let max_context = config.max_context;
    let context = context_length(ctx_size, max_context)?;
    let defaults = generation_defaults(&files)?;
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
    let model = Model::load(vb, config, context).map_err(EngineError::Weights)?;
    device.synchronize().map_err(EngineError::Weights)?;
    observer.stage(LoadStage::WeightsLoaded, &device_name);
    Ok(LoadedWeights {
        model,
        text,
        device: device_name,
        defaults,
        facts: manifest.facts.clone(),
        context,
        max_context,
    })
}

/// The layout a scheme (or `None`, unquantized) gives this model's cache.
pub fn cache_layout(facts: &ModelFacts, kv: Option<KvScheme>) -> CacheLayout {
    match kv {
        Some(scheme) => CacheLayout::Quantized(scheme),
        None => CacheLayout::dense_for(facts, Format::Safetensors),
    }
}

/// Allocates a cache of `capacity` tokens (at most `weights.context`) for the model.
pub fn new_cache(weights: &LoadedWeights, kv: Option<KvScheme>, capacity: usize) -> Result<KvCache, EngineError> {
    let config = weights.model.config();
    let layout = cache_layout(&weights.facts, kv);
    let shape = CacheShape { layers: config.layers, kv_heads: config.kv_heads, head_dim: config.head_dim, capacity };
    let device = weights.model.device();
    let cache = KvCache::new(layout, shape, dense_dtype(layout), device).map_err(EngineError::Cache)?;
    device.synchronize().map_err(EngineError::Cache)?;
    Ok(cache)
}

/// GGUF: tokenizer and template from the file's metadata, weights through candle.
fn load_gguf(
    files: &Files<'_>,
    request: &LoadRequest,
    started: Instant,
    observer: &mut dyn LoadObserver,
) -> Result<Loaded, EngineError> {
    let file =
        files.manifest.files.iter().find(|f| f.name.ends_with(".gguf")).map(|f| f.name.clone()).unwrap_or_default();
    let path = files.required(&file)?;
    let header =
        crate::formats::gguf::read_header_from_path(&path).map_err(|e| EngineError::GgufHeader(path.clone(), e))?;
    let text = gguf_model::text_codec(&header)?;
    let max = gguf_model::max_context(&header, files.manifest.facts.context_length as usize);
    let context = context_length(request.ctx_size, max)?;
    let (device, device_name) = device::open(request.device)?;
    observer.stage(LoadStage::DeviceReady, &device_name);
    let layout = CacheLayout::dense_for(&files.manifest.facts, Format::Gguf);
    let decoder =
        gguf_model::GgufModel::load(&path, &header, context, layout.bytes_per_token(&files.manifest.facts), &device)?;
    observer.stage(LoadStage::WeightsLoaded, &device_name);
    Ok(Loaded {
        decoder: Box::new(decoder),
        text,
        device: device_name,
        defaults: GenerationDefaults::default(),
        load_time: started.elapsed(),
    })
}

fn context_length(requested: Option<usize>, max: usize) -> Result<usize, EngineError> {
    match requested {
        Some(n) if n > max => Err(EngineError::ContextTooLarge { requested: n, max }),
        Some(n) => Ok(n),
        None => Ok(max.min(DEFAULT_CONTEXT)),
    }
}

fn generation_defaults(files: &Files<'_>) -> Result<GenerationDefaults, EngineError> {
    let Some(bytes) = files.read("generation_config.json")? else { return Ok(GenerationDefaults::default()) };
    // A malformed optional file only loses its defaults.
    Ok(serde_json::from_slice(&bytes).unwrap_or_default())
}

impl GenerationDefaults {
    fn eos_ids(&self) -> Vec<u32> {
        match &self.eos_token_id {
            Some(serde_json::Value::Number(n)) => n.as_u64().map(|n| n as u32).into_iter().collect(),
            Some(serde_json::Value::Array(a)) => a.iter().filter_map(|v| v.as_u64()).map(|n| n as u32).collect(),
            _ => Vec::new(),
        }
    }
}

/// f32 on the CPU (fast and exact there); the weights' half type on a GPU.
fn compute_dtype(device: &candle_core::Device, weight_dtype: &str) -> DType {
    match (device.is_cpu(), weight_dtype) {
        (true, _) => DType::F32,
        (false, "f16") => DType::F16,
        (false, _) => DType::BF16,
    }
}

fn dense_dtype(layout: CacheLayout) -> DType {
    match layout.name() {
        "bf16" => DType::BF16,
        "f16" => DType::F16,
        _ => DType::F32,
    }
}
