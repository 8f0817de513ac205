//! The data shapes commands print: one struct per output, serialized as
//! JSON for `--json` and rendered as text or tables otherwise.

use serde::Serialize;

use crate::kv_size::CacheSize;
use crate::store::Unreadable;
use crate::store::manifest::{FileEntry, Manifest, Source};

/// One row of `llmctl list`.
#[derive(Debug, Serialize)]
pub struct ListEntry {
    pub name: String,
    pub id: String,
    pub format: String,
    pub quantization: Option<String>,
    pub size: u64,
    pub modified: String,
    /// Why the manifest cannot be read; absent for a usable model.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub damaged: Option<String>,
}

impl ListEntry {
    pub fn from_manifest(m: &Manifest) -> ListEntry {
        ListEntry {
            name: m.reference().to_string(),
            id: m.id(),
            format: m.format.to_string(),
            quantization: m.quantization.map(|q| q.to_string()),
            size: m.total_size(),
            modified: m.pulled_at.clone(),
            damaged: None,
        }
    }

    /// A manifest that cannot be read: its name, when it was written, and why.
    pub fn damaged(u: &Unreadable) -> ListEntry {
        let modified = std::fs::metadata(&u.path).and_then(|m| m.modified()).ok();
        ListEntry {
            name: u.reference.to_string(),
            id: String::new(),
            format: "damaged".into(),
            quantization: None,
            size: 0,
            modified: modified.map(|t| humantime::format_rfc3339_millis(t).to_string()).unwrap_or_default(),
            damaged: Some(u.reason()),
        }
    }
}

/// `llmctl show`: the stored model as the reference resolves it.
#[derive(Debug, Serialize)]
pub struct ShowView {
    pub name: String,
    pub id: String,
    pub format: String,
    pub architecture: String,
    pub parameters: u64,
    pub context_length: u64,
    /// What `run` allocates without `--ctx-size`, and the most it accepts.
    pub context: crate::engine::ContextLimits,
    pub hidden_size: u64,
    pub layers: u64,
    pub attention_heads: u64,
    pub kv_heads: u64,
    pub head_dim: u64,
    /// The layers that store keys and values, by shape, where they differ (Gemma 4); absent otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kv_layers: Option<Vec<crate::formats::KvLayers>>,
    pub vocab_size: u64,
    pub weight_dtype: String,
    /// The quantization a run of this reference uses (`null`: none).
    pub quantization: Option<String>,
    pub kv_cache: KvCacheView,
    pub source: Source,
    pub size: u64,
    pub files: Vec<FileEntry>,
    pub pulled_at: String,
    /// The chat template the model carries (`null`: none).
    pub chat_template: Option<String>,
    /// The sampling defaults of `generation_config.json` (`null`: no such file).
    pub generation: Option<GenerationView>,
    /// The license the model carries (`null`: none found).
    pub license: Option<LicenseView>,
    /// A GGUF file's metadata (`null` for safetensors models).
    pub gguf: Option<crate::formats::gguf::facts::GgufSummary>,
    /// With `--verify`: the model's other manifests (tags) that cannot be read.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub damaged_manifests: Vec<DamagedManifest>,
    /// With `--verify`: what re-reading each file found.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verified: Option<Vec<VerifiedFile>>,
}

/// `generation_config.json`'s sampling defaults, as `run` reads them.
#[derive(Debug, Serialize)]
pub struct GenerationView {
    pub temperature: Option<f64>,
    pub top_p: Option<f64>,
    pub top_k: Option<usize>,
    pub do_sample: Option<bool>,
    pub eos_token_ids: Vec<u32>,
}

/// A license: where it was found (`general.license` or a file name) and its text.
#[derive(Debug, Serialize)]
pub struct LicenseView {
    pub source: String,
    pub text: String,
}

/// A manifest `show --verify` found unreadable.
#[derive(Debug, Serialize)]
pub struct DamagedManifest {
    pub name: String,
    pub reason: String,
}

#[derive(Debug, Serialize)]
pub struct VerifiedFile {
    pub name: String,
    #[serde(flatten)]
    pub state: crate::store::BlobState,
}

#[derive(Debug, Serialize)]
pub struct KvCacheView {
    pub unquantized: CacheSize,
    /// The chosen scheme's size; equal to `unquantized` when none is chosen.
    pub selected: CacheSize,
}

/// What `pull --json` prints: the manifests written.
#[derive(Debug, Serialize)]
pub struct PullView {
    pub stored: Vec<ListEntry>,
    pub fetched_bytes: u64,
    pub reused_files: usize,
}

/// `llmctl bench`: one row per (scheme, context), and the quality rows.
#[derive(Debug, Serialize)]
pub struct BenchView {
    pub model: String,
    pub device: String,
    /// The GPU's name as NVML reports it.
    pub gpu: Option<String>,
    pub speed: Vec<crate::bench::SpeedResult>,
    pub quality: Option<Vec<crate::bench::quality::QualityResult>>,
    /// The model's layers, and those that keep a recurrent state in place of KV rows.
    pub layers: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recurrent: Option<crate::formats::RecurrentLayers>,
}
