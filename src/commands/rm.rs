//! `llmctl rm`: remove tags, then the blobs no remaining tag uses.

use crate::exit::ExitStatus;
use crate::printer::Printer;
use crate::settings::{GlobalSettings, RmSettings};
use crate::store::StoreError;
use crate::ui::format;

pub fn execute(global: &GlobalSettings, settings: &RmSettings, printer: &Printer) -> anyhow::Result<ExitStatus> {
    let store = super::open_store(global)?;
    let lock = store.lock(|| printer.status("waiting for another llmctl to release the store lock..."))?;
    // Check every name first, so a typo in the last one removes nothing.
    for reference in &settings.models {
        let stored = store.manifests_of(&reference.name)?;
        if !stored.iter().any(|m| m.tag == reference.tag) {
            let available = stored.iter().map(|m| m.reference().to_string()).collect();
            return Err(match stored.is_empty() {
                true => StoreError::NotFound(reference.name.clone()),
                false => StoreError::NoSuchTag { reference: reference.clone(), available },
            }
            .into());
        }
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
