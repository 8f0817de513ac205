//! `llmctl show`: a stored model as a reference resolves it, with the
//! KV-cache size of the unquantized and the chosen cache.

use crate::exit::ExitStatus;
use crate::kv_size::{CacheLayout, cache_size};
use crate::printer::Printer;
use crate::quant::{self, Resolved};
use crate::settings::{GlobalSettings, OutputFormat, ShowSettings};
use crate::store::manifest::{Manifest, Source};
use crate::store::{BlobState, StoreError};
use crate::ui::format;
use crate::ui::table::key_values;
use crate::ui::views::{KvCacheView, ShowView, VerifiedFile};

pub fn execute(global: &GlobalSettings, settings: &ShowSettings, printer: &Printer) -> anyhow::Result<ExitStatus> {
    let store = super::open_store(global)?;
    let manifest = store.find(&settings.model)?;
    let name = settings.model.name.as_str();
    let resolved = quant::resolve(settings.model.tag, manifest.format, manifest.quantization, name)?;
    let mut view = view(&manifest, resolved, settings);
    if settings.verify {
        view.verified =
            Some(store.verify(&manifest).into_iter().map(|(name, state)| VerifiedFile { name, state }).collect());
    }
    let text = if settings.output == OutputFormat::Json {
        format!("{}\n", serde_json::to_string_pretty(&view)?)
    } else {
        render(&view)
    };
    printer.data(&text)?;
    let bad: Vec<String> =
        view.verified.iter().flatten().filter(|f| f.state != BlobState::Intact).map(|f| f.name.clone()).collect();
    if !bad.is_empty() {
        return Err(StoreError::Damaged { name: manifest.reference().to_string(), files: bad }.into());
    }
    Ok(ExitStatus::Success)
}

fn view(m: &Manifest, resolved: Resolved, settings: &ShowSettings) -> ShowView {
    let context = settings.ctx_size.unwrap_or(m.facts.context_length);
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
        hidden_size: f.hidden_size,
        layers: f.layers,
        attention_heads: f.attention_heads,
        kv_heads: f.kv_heads,
        head_dim: f.head_dim,
        vocab_size: f.vocab_size,
        weight_dtype: f.weight_dtype.clone(),
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
    }
}

fn render(v: &ShowView) -> String {
    let kv = |c: &crate::kv_size::CacheSize| {
        format!(
            "{} ({} B/token, {} at {} tokens)",
            c.layout,
            c.bytes_per_token,
            format::bytes(c.bytes),
            c.context_length
        )
    };
    let source = match &v.source {
        Source::Hub { repo, commit, revision, .. } => {
            let short = &commit[..commit.len().min(12)];
            match revision.as_deref() {
                Some(rev) if rev != "main" && !commit.starts_with(rev) => format!("hub {repo} @ {short} ({rev})"),
                _ => format!("hub {repo} @ {short}"),
            }
        }
        Source::Local { path } => format!("local {path}"),
    };
    let model = key_values(&[
        ("name", v.name.clone()),
        ("id", v.id.clone()),
        ("format", v.format.clone()),
        ("architecture", v.architecture.clone()),
        ("parameters", format::count(v.parameters)),
        ("context length", v.context_length.to_string()),
        ("hidden size", v.hidden_size.to_string()),
        ("layers", v.layers.to_string()),
        ("attention heads", format!("{} ({} KV heads)", v.attention_heads, v.kv_heads)),
        ("head dim", v.head_dim.to_string()),
        ("weight dtype", v.weight_dtype.clone()),
        ("quantization", v.quantization.clone().unwrap_or_else(|| "none".into())),
        ("source", source),
    ]);
    let cache = key_values(&[("unquantized", kv(&v.kv_cache.unquantized)), ("this run", kv(&v.kv_cache.selected))]);
    let state = |name: &str| match v.verified.iter().flatten().find(|f| f.name == name).map(|f| &f.state) {
        None => String::new(),
        Some(BlobState::Intact) => "  verified".into(),
        Some(BlobState::Missing) => "  MISSING".into(),
        Some(BlobState::Damaged) => "  DAMAGED".into(),
        Some(BlobState::Unreadable(e)) => format!("  UNREADABLE ({e})"),
    };
    let files: Vec<(&str, String)> =
        v.files.iter().map(|f| (f.name.as_str(), format!("{}{}", format::bytes(f.size), state(&f.name)))).collect();
    format!("Model\n{model}\nKV cache\n{cache}\nFiles\n{}", key_values(&files))
}
