//! `llmctl list`: the store's models, newest first.

use std::time::SystemTime;

use crate::exit::ExitStatus;
use crate::printer::Printer;
use crate::settings::{GlobalSettings, ListSettings, OutputFormat};
use crate::ui::table;
use crate::ui::views::ListEntry;

pub fn execute(global: &GlobalSettings, settings: &ListSettings, printer: &Printer) -> anyhow::Result<ExitStatus> {
    let store = super::open_store(global)?;
    let (mut manifests, unreadable) = store.manifests()?;
    for bad in &unreadable {
        printer.warning(&format!("skipping {}", bad.error));
    }
    manifests.sort_by(|a, b| {
        b.pulled_at.cmp(&a.pulled_at).then_with(|| a.reference().to_string().cmp(&b.reference().to_string()))
    });
    let entries: Vec<ListEntry> = manifests.iter().map(ListEntry::from_manifest).collect();
    let text = if settings.output == OutputFormat::Json {
        format!("{}\n", serde_json::to_string_pretty(&entries)?)
    } else if settings.names {
        entries.iter().map(|e| format!("{}\n", e.name)).collect()
    } else {
        table::models(&entries, SystemTime::now())
    };
    printer.data(&text)?;
    Ok(ExitStatus::Success)
}
