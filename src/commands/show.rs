//! `llmctl show`: a stored model as a reference resolves it, with the
//! KV-cache size of the unquantized and the chosen cache.

use crate::engine::{self, ContextLimits};
use crate::exit::ExitStatus;
use crate::kv_size::{CacheLayout, cache_size};
use crate::printer::Printer;
use crate::quant::{self, Resolved};
use crate::settings::{GlobalSettings, OutputFormat, ShowSettings};
use crate::store::manifest::Manifest;
use crate::store::{BlobState, StoreError};
use crate::ui::table;
use crate::ui::views::{DamagedManifest, KvCacheView, ShowView, VerifiedFile};

pub fn execute(global: &GlobalSettings, settings: &ShowSettings, printer: &Printer) -> anyhow::Result<ExitStatus> {
    let store = super::open_store(global)?;
    let manifest = store.find(&settings.model)?;
    let name = settings.model.name.as_str();
    let resolved = quant::resolve(settings.model.tag, manifest.format, manifest.quantization, name)?;
    let limits = engine::context_limits(&store.model_files(&manifest))?;
    let context = limits.choose(settings.ctx_size.map(|n| usize::try_from(n).unwrap_or(usize::MAX)))?;
    let mut view = view(&manifest, resolved, settings, limits, context as u64);
    let mut damaged = Vec::new();
    if settings.verify {
        view.verified =
            Some(store.verify(&manifest).into_iter().map(|(name, state)| VerifiedFile { name, state }).collect());
        damaged = store.manifests_of(&settings.model.name)?.1;
        view.damaged_manifests =
            damaged.iter().map(|d| DamagedManifest { name: d.reference.to_string(), reason: d.reason() }).collect();
    }
    let text = if settings.output == OutputFormat::Json {
        format!("{}\n", serde_json::to_string_pretty(&view)?)
    } else {
        table::show(&view)
    };
    printer.data(&text)?;
    let bad: Vec<String> =
        view.verified.iter().flatten().filter(|f| f.state != BlobState::Intact).map(|f| f.name.clone()).collect();
    if !bad.is_empty() {
        return Err(StoreError::Damaged { name: manifest.reference().to_string(), files: bad }.into());
    }
    match damaged.into_iter().next() {
        Some(tag) => Err(tag.error.into()),
        None => Ok(ExitStatus::Success),
    }
}

fn view(m: &Manifest, resolved: Resolved, settings: &ShowSettings, limits: ContextLimits, context: u64) -> ShowView {
    let dense = CacheLayout::dense_for(&m.facts, m.format);
    let (selected, quantization) = match resolved {
        Resolved::Kv(scheme) => (CacheLayout::Quantized(scheme), Some(scheme.as_str().to_string())),
        Resolved::Gguf(t) => (dense, Some(t.as_str().to_string())),
        Resolved::None => (dense, None),
    };
    let f = &m.facts;
    ShowView {
        name: settings.model.to_string(),
        id: m.id(),
        format: m.format.to_string(),
        architecture: f.architecture.clone(),
        parameters: f.parameters,
        context_length: f.context_length,
        context: limits,
        hidden_size: f.hidden_size,
        layers: f.layers,
        attention_heads: f.attention_heads,
        kv_heads: f.kv_heads,
        head_dim: f.head_dim,
        vocab_size: f.vocab_size,
        weight_dtype: f.weight_dtype.to_string(),
        quantization,
        kv_cache: KvCacheView {
            unquantized: cache_size(f, dense, context),
            selected: cache_size(f, selected, context),
        },
        source: m.source.clone(),
        size: m.total_size(),
        files: m.files.clone(),
        pulled_at: m.pulled_at.clone(),
        verified: None,
        damaged_manifests: Vec::new(),
    }
}
