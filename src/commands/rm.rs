//! `llmctl rm`: remove tags, then the blobs no remaining tag uses.

use crate::exit::ExitStatus;
use crate::printer::Printer;
use crate::settings::{GlobalSettings, RmSettings};
use crate::store::StoreError;
use crate::ui::format;

pub fn execute(global: &GlobalSettings, settings: &RmSettings, printer: &Printer) -> anyhow::Result<ExitStatus> {
    let store = super::open_store(global)?;
    let lock = store.lock(|| printer.status("waiting for another llmctl to release the store lock..."))?;
    // Check every name first, so a typo in the last one removes nothing. A
    // damaged manifest is removed like any other: its file is what is named.
    for reference in &settings.models {
        if store.has_manifest(reference) {
            continue;
        }
        let (stored, damaged) = store.manifests_of(&reference.name)?;
        let mut available: Vec<String> = stored.iter().map(|m| m.reference().to_string()).collect();
        available.extend(damaged.iter().map(|d| d.reference.to_string()));
        return Err(match available.is_empty() {
            true => StoreError::NotFound(reference.name.clone()),
            false => StoreError::NoSuchTag { reference: reference.clone(), available },
        }
        .into());
    }
    for reference in &settings.models {
        store.remove_manifest(reference, &lock)?;
        printer.status(&format!("removed {reference}"));
    }
    // A writer also sweeps what killed commands left (staging areas, stray downloads).
    let freed = store.collect_garbage(&lock)? + store.sweep_leftovers(&lock)?;
    printer.status(&format!("freed {}", format::bytes(freed)));
    Ok(ExitStatus::Success)
}
