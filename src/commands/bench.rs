//! `llmctl bench`: load a safetensors model once, then measure each KV-cache
//! scheme at each context (and, given `--text`, its quality) and print one
//! table or one JSON object, and given `--plot`, write the chart file.

use crate::bench::meters::{GpuMeter, HostMeter};
use crate::bench::quality::quality;
use crate::bench::{self, BenchPlan, MemoryMeter};
use crate::engine::device::DeviceRequest;
use crate::engine::{self, EngineError, LoadObserver, LoadStage};
use crate::exit::{Diagnostic, ExitStatus};
use crate::gpu::VramProbe;
use crate::printer::Printer;
use crate::quant::{self, Format, KvScheme, QuantError, Resolved};
use crate::settings::{BenchSettings, GlobalSettings, OutputFormat};
use crate::ui::progress::BenchProgress;
use crate::ui::views::BenchView;
use crate::ui::{plot, table};

/// Contexts measured when `--ctx` is not given.
const GPU_CONTEXTS: [usize; 3] = [1024, 8192, 32768];
const CPU_CONTEXTS: [usize; 2] = [512, 2048];

/// Tokens a text may hold beyond one per byte (BOS and other added tokens).
const TEXT_TOKEN_MARGIN: usize = 16;

pub fn execute(global: &GlobalSettings, settings: &BenchSettings, printer: &Printer) -> anyhow::Result<ExitStatus> {
    let store = super::open_store(global)?;
    let manifest = store.find(&settings.model)?;
    let name = settings.model.name.as_str();
    let resolved = quant::resolve(settings.model.tag, manifest.format, manifest.quantization, name)?;
    // A GGUF model runs with its dense cache only (the quantization rules).
    if let (Format::Gguf, Some(&Some(quant))) = (manifest.format, settings.schemes.iter().find(|s| s.is_some())) {
        return Err(QuantError::KvOnGguf { quant, model: settings.model.to_string() }.into());
    }
    let schemes = if manifest.format == Format::Gguf { vec![None] } else { schemes(settings, resolved) };
    let max = manifest.facts.context_length as usize;
    let (contexts, dropped) = match &settings.contexts {
        Some(given) => (given.clone(), Vec::new()),
        None => default_contexts(settings.device, max),
    };
    if !dropped.is_empty() {
        let dropped: Vec<String> = dropped.iter().map(usize::to_string).collect();
        printer.warning(&format!("skipping contexts {}: beyond the model's limit of {max} tokens", dropped.join(", ")));
    }
    let largest = contexts.iter().copied().max().unwrap_or(max);
    let text = match &settings.text {
        Some(path) => Some(
            std::fs::read_to_string(path)
                .map_err(|source| BenchInputError::Read { path: path.to_path_buf(), source })?,
        ),
        None => None,
    };
    // RoPE tables must also cover the text; a token spans at least one byte.
    let text_bound = text.as_ref().map_or(0, |t| (t.len() + TEXT_TOKEN_MARGIN).min(max));
    let positions = largest.max(text_bound);
    let mut observer = MeterObserver { meter: None, gpu: None };
    printer.status(&format!("loading {} ...", settings.model));
    let weights = engine::load_weights(&store.model_files(&manifest), settings.device, Some(positions), &mut observer)?;
    for conversion in &weights.conversions {
        printer.status(&format!("note: {conversion}"));
    }
    let mut meter = observer.meter.take().unwrap_or_else(|| Box::new(HostMeter::new()));
    let contexts = if weights.model.device().is_cpu() && settings.contexts.is_none() {
        default_contexts(DeviceRequest::Cpu, max).0
    } else {
        contexts
    };
    let text_tokens = match (&text, &settings.text) {
        (Some(text), Some(path)) => Some(text_tokens(text, path, &weights, printer)?),
        _ => None,
    };
    printer.status(&format!("benchmarking {} on {}", settings.model, weights.device));
    let plan = BenchPlan { schemes: schemes.clone(), contexts, generate: settings.generate };
    let cases = plan.schemes.len() * plan.contexts.len() + usize::from(text_tokens.is_some());
    let mut progress = BenchProgress::new(*printer, cases as u64);
    let speed = bench::speed(&weights, &plan, meter.as_mut(), &mut progress)?;
    let quality = match text_tokens {
        Some(tokens) => {
            progress.quality_started(tokens.len());
            let quantized: Vec<KvScheme> = schemes.iter().flatten().copied().collect();
            let rows = quality(&weights, &quantized, &tokens)?;
            progress.quality_finished();
            Some(rows)
        }
        None => None,
    };
    progress.finish();
    let view = BenchView {
        model: settings.model.to_string(),
        device: weights.device.clone(),
        gpu: observer.gpu,
        speed,
        quality,
        layers: weights.facts.layers,
        recurrent: weights.facts.recurrent,
    };
    let text = if settings.output == OutputFormat::Json {
        format!("{}\n", serde_json::to_string_pretty(&view)?)
    } else {
        table::bench(&view)
    };
    printer.data(&text)?;
    // After the numbers are out, so that a failed write loses no measurement.
    if let Some(path) = &settings.plot {
        let svg = plot::bench_svg(&view)?;
        std::fs::write(path, svg).map_err(|source| BenchInputError::WritePlot { path: path.clone(), source })?;
        printer.status(&format!("wrote the plot to {}", path.display()));
    }
    Ok(ExitStatus::Success)
}

/// `--kv` as given; else the tag's scheme against the unquantized cache; else all three.
fn schemes(settings: &BenchSettings, resolved: Resolved) -> Vec<Option<KvScheme>> {
    match (settings.schemes.is_empty(), resolved) {
        (false, _) => settings.schemes.clone(),
        (true, Resolved::Kv(scheme)) => vec![None, Some(scheme)],
        (true, _) => std::iter::once(None).chain(KvScheme::ALL.map(Some)).collect(),
    }
}

/// The device's default contexts that the model takes (its own limit if it
/// takes none), and those it does not.
fn default_contexts(device: DeviceRequest, max: usize) -> (Vec<usize>, Vec<usize>) {
    let gpu_likely = match device {
        DeviceRequest::Cpu => false,
        DeviceRequest::Cuda(_) => true,
        DeviceRequest::Auto => cfg!(feature = "cuda"),
    };
    let all: &[usize] = if gpu_likely { &GPU_CONTEXTS } else { &CPU_CONTEXTS };
    let (fit, dropped): (Vec<usize>, Vec<usize>) = all.iter().partition(|&&n| n <= max);
    if fit.is_empty() { (vec![max], dropped) } else { (fit, dropped) }
}

/// The text's tokens, as `run --raw` would encode it, cut to the model's context.
fn text_tokens(
    text: &str,
    path: &std::path::Path,
    weights: &engine::LoadedWeights,
    printer: &Printer,
) -> anyhow::Result<Vec<u32>> {
    let mut tokens = weights.text.encode_raw(text).map_err(EngineError::Text)?;
    if tokens.len() < 2 {
        return Err(BenchInputError::TooShort { path: path.to_path_buf() }.into());
    }
    if tokens.len() > weights.context {
        printer.warning(&format!(
            "scoring the first {} of the text's {} tokens (the model's context)",
            weights.context,
            tokens.len()
        ));
        tokens.truncate(weights.context);
    }
    Ok(tokens)
}

#[derive(Debug, thiserror::Error)]
pub enum BenchInputError {
    #[error("cannot read `--text` file `{}`", path.display())]
    Read { path: std::path::PathBuf, source: std::io::Error },
    #[error("`--text` file `{}` holds fewer than two tokens: nothing to score", path.display())]
    TooShort { path: std::path::PathBuf },
    #[error("cannot write `--plot` file `{}`", path.display())]
    WritePlot { path: std::path::PathBuf, source: std::io::Error },
}

impl Diagnostic for BenchInputError {
    fn hint(&self) -> Option<String> {
        Some(match self {
            BenchInputError::Read { .. } => "give `--text` a readable UTF-8 text file".into(),
            BenchInputError::TooShort { .. } => "give `--text` a longer text (a few hundred tokens or more)".into(),
            BenchInputError::WritePlot { .. } => {
                "the numbers went to stdout all the same; give `--plot` a file in a directory you can write to".into()
            }
        })
    }

    fn exit_status(&self) -> ExitStatus {
        ExitStatus::Usage
    }
}

/// Opens the GPU meter once the device exists.
struct MeterObserver {
    meter: Option<Box<dyn MemoryMeter>>,
    gpu: Option<String>,
}

impl LoadObserver for MeterObserver {
    fn stage(&mut self, stage: LoadStage, device: &str) {
        if stage != LoadStage::DeviceReady {
            return;
        }
        if let Some(index) = DeviceRequest::cuda_index(device) {
            let probe = VramProbe::open(Some(index));
            self.gpu = probe.report.gpu.clone();
            self.meter = Some(Box::new(GpuMeter::new(probe)));
        }
    }
}
