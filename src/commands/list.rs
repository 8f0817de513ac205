//! `llmctl list`: the store's models, newest first.

use std::time::SystemTime;

use crate::exit::{Diagnostic, ExitStatus};
use crate::printer::Printer;
use crate::settings::{GlobalSettings, ListSettings, OutputFormat};
use crate::ui::table;
use crate::ui::views::ListEntry;

pub fn execute(global: &GlobalSettings, settings: &ListSettings, printer: &Printer) -> anyhow::Result<ExitStatus> {
    let store = super::open_store(global)?;
    let (manifests, unreadable) = store.manifests()?;
    for bad in &unreadable {
        printer.warning(&format!("{} ({})", bad.error, bad.reason()));
        if let Some(hint) = bad.error.hint() {
            printer.hint(&hint);
        }
    }
    let mut entries: Vec<ListEntry> = manifests.iter().map(ListEntry::from_manifest).collect();
    entries.extend(unreadable.iter().map(ListEntry::damaged));
    entries.sort_by(|a, b| b.modified.cmp(&a.modified).then_with(|| a.name.cmp(&b.name)));
    let text = if settings.output == OutputFormat::Json {
        format!("{}\n", serde_json::to_string_pretty(&entries)?)
    } else if settings.names {
        entries.iter().map(|e| format!("{}\n", e.name)).collect()
    } else {
        table::models(&entries, SystemTime::now())
    };
    printer.data(&text)?;
    if entries.is_empty() {
        // stdout keeps its shape (header, `[]`, nothing) for scripts; people read this.
        printer.status(
            "no models in the store yet; pull one with `llmctl pull org/name` or import files with `llmctl pull ./DIR`",
        );
    }
    Ok(ExitStatus::Success)
}
