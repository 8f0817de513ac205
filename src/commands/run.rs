//! `llmctl run`: resolve the model and its quantization, then generate.

use crate::diagnostics::ExitStatus;
use crate::printer::Printer;
use crate::quant::{self, Resolved};
use crate::settings::{GlobalSettings, RunSettings};

#[derive(Debug, thiserror::Error)]
#[error("`llmctl run` cannot generate text yet: this build has no inference engine")]
pub struct NoEngine;

pub fn execute(global: &GlobalSettings, settings: &RunSettings, printer: &Printer) -> anyhow::Result<ExitStatus> {
    let store = super::open_store(global)?;
    let manifest = store.find(&settings.model)?;
    let resolved = quant::resolve(settings.model.tag, manifest.format, manifest.quantization, settings.model.name.as_str())?;
    let scheme = match resolved {
        Resolved::None => "unquantized".to_string(),
        Resolved::Kv(k) => k.as_str().to_string(),
        Resolved::Gguf(t) => t.as_str().to_string(),
    };
    printer.status(&format!("{} ({}, {scheme})", settings.model, manifest.format));
    Err(NoEngine.into())
}
