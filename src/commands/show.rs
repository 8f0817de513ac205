//! `llmctl show`: a stored model as a reference resolves it, with the
//! KV-cache size of the unquantized and the chosen cache, and what the model
//! carries as Ollama's `show` says it: chat template, generation defaults,
//! license, and a GGUF file's metadata.

use crate::engine::{self, ContextLimits, EngineError};
use crate::exit::ExitStatus;
use crate::formats::gguf;
use crate::kv_size::{CacheLayout, cache_size};
use crate::printer::Printer;
use crate::quant::{self, Format, Resolved};
use crate::settings::{GlobalSettings, OutputFormat, ShowSettings};
use crate::store::manifest::Manifest;
use crate::store::model_files::ModelFiles;
use crate::store::{BlobState, StoreError};
use crate::ui::table;
use crate::ui::views::{DamagedManifest, GenerationView, KvCacheView, LicenseView, ShowView, VerifiedFile};

pub fn execute(global: &GlobalSettings, settings: &ShowSettings, printer: &Printer) -> anyhow::Result<ExitStatus> {
    let store = super::open_store(global)?;
    let manifest = store.find(&settings.model)?;
    let name = settings.model.name.as_str();
    let resolved = quant::resolve(settings.model.tag, manifest.format, manifest.quantization, name)?;
    let files = store.model_files(&manifest);
    let limits = engine::context_limits(&manifest.facts);
    let context = limits.choose(settings.ctx_size.map(|n| usize::try_from(n).unwrap_or(usize::MAX)))?;
    let mut view = view(&manifest, resolved, settings, limits, context as u64);
    carried(&files, &mut view)?;
    if settings.template {
        return print_template(&view, printer);
    }
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
    // The template and license are the model's text: sanitized on a terminal.
    printer.generated(&text)?;
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
        kv_layers: f.kv_layers.clone(),
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
        chat_template: None,
        generation: None,
        license: None,
        gguf: None,
    }
}

/// `--template`: the template alone, as `ollama show --template` prints it.
fn print_template(view: &ShowView, printer: &Printer) -> anyhow::Result<ExitStatus> {
    match &view.chat_template {
        Some(t) if t.ends_with('\n') => printer.generated(t)?,
        Some(t) => printer.generated(&format!("{t}\n"))?,
        None => printer.status(&format!("`{}` has no chat template", view.name)),
    }
    Ok(ExitStatus::Success)
}

/// What the model's own files say: template, generation defaults, license, GGUF metadata.
fn carried(files: &ModelFiles<'_>, view: &mut ShowView) -> anyhow::Result<()> {
    if files.manifest().format == Format::Gguf {
        let parts = gguf_parts(files)?;
        let header = parts.metadata();
        view.chat_template = header.get("tokenizer.chat_template").and_then(gguf::GgufValue::as_str).map(Into::into);
        let summary = gguf::facts::summary(&parts);
        view.license = summary.license.clone().map(|text| LicenseView { source: "general.license".into(), text });
        view.gguf = Some(summary);
        return Ok(());
    }
    let jinja = files.read("chat_template.jinja")?.map(|b| String::from_utf8_lossy(&b).into_owned());
    view.chat_template =
        crate::engine::text::stored_chat_template(files.read("tokenizer_config.json")?.as_deref(), jinja)?;
    view.generation = crate::engine::stored_generation_defaults(files)?.map(|d| GenerationView {
        eos_token_ids: d.eos_ids(),
        temperature: d.temperature,
        top_p: d.top_p,
        top_k: d.top_k,
        do_sample: d.do_sample,
    });
    for name in crate::pull::select::LICENSES {
        if let Some(bytes) = files.read(name)? {
            view.license =
                Some(LicenseView { source: name.into(), text: String::from_utf8_lossy(&bytes).into_owned() });
            break;
        }
    }
    Ok(())
}

/// The headers of a stored GGUF model's parts (one for a single file).
fn gguf_parts(files: &ModelFiles<'_>) -> anyhow::Result<gguf::GgufParts> {
    let headers = files
        .gguf_parts()?
        .into_iter()
        .map(|path| gguf::read_header_from_path(&path).map_err(|e| EngineError::GgufHeader(path, e)))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(gguf::GgufParts::new(headers)?)
}
