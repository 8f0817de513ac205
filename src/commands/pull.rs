//! `llmctl pull`: fetch or import a model and record it in the store.

use crate::exit::ExitStatus;
use crate::printer::Printer;
use crate::pull::{PullOutcome, PullSource, pull};
use crate::settings::{GlobalSettings, OutputFormat, PullSettings};
use crate::store::Store;
use crate::ui::format;
use crate::ui::progress::PullProgress;
use crate::ui::views::{ListEntry, PullView};

pub fn execute(global: &GlobalSettings, settings: &PullSettings, printer: &Printer) -> anyhow::Result<ExitStatus> {
    let store = super::open_store(global)?;
    if let PullSource::Local { path, reference } = &settings.source {
        printer.status(&format!("importing {} as {reference}", path.display()));
    }
    let outcome = pull_with_progress(&store, global, &settings.source, printer)?;
    let stored: Vec<ListEntry> = outcome.manifests.iter().map(ListEntry::from_manifest).collect();
    if settings.output == OutputFormat::Json {
        let view = PullView { stored, fetched_bytes: outcome.fetched_bytes, reused_files: outcome.reused_files };
        printer.data(&format!("{}\n", serde_json::to_string_pretty(&view)?))?;
    }
    Ok(ExitStatus::Success)
}

/// Pulls with progress bars and says what was stored: `pull`'s work, also
/// what `run` does first for a model not in the store.
pub fn pull_with_progress(
    store: &Store,
    global: &GlobalSettings,
    source: &PullSource,
    printer: &Printer,
) -> anyhow::Result<PullOutcome> {
    let progress = PullProgress::new(*printer);
    let outcome = pull(store, &global.hub, source, &progress);
    // Finished bars are cleared before the summary or an error takes their line.
    drop(progress);
    let outcome = outcome?;
    for entry in outcome.manifests.iter().map(ListEntry::from_manifest) {
        let quant = format::quantization(entry.quantization.as_deref());
        printer.status(&format!("stored {} ({}, {quant}, {})", entry.name, entry.format, format::bytes(entry.size)));
    }
    Ok(outcome)
}
