//! `llmctl list`: the store's models, newest first; and, for the shell
//! completion scripts, the completions of a MODEL word (`--complete`).

use std::time::SystemTime;

use crate::exit::{Diagnostic, ExitStatus};
use crate::printer::Printer;
use crate::quant::{Format, KvScheme};
use crate::settings::{GlobalSettings, ListSettings, OutputFormat};
use crate::store::manifest::Manifest;
use crate::ui::table;
use crate::ui::views::ListEntry;

pub fn execute(global: &GlobalSettings, settings: &ListSettings, printer: &Printer) -> anyhow::Result<ExitStatus> {
    let store = super::open_store(global)?;
    let (manifests, unreadable) = store.manifests()?;
    if let Some(word) = &settings.complete {
        // Quiet: a damaged manifest is for `list` to report, not the shell.
        printer.data(&completions(&manifests, word).iter().map(|c| format!("{c}\n")).collect::<String>())?;
        return Ok(ExitStatus::Success);
    }
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

/// The completions of a MODEL word: stored `name[:tag]`s starting with it,
/// and after `name:` every tag valid for that name: the KV schemes unless the
/// store knows `name` only as GGUF (a name it does not know may be a
/// safetensors model on the hub), and the weight types of its GGUF manifests.
fn completions(manifests: &[Manifest], word: &str) -> Vec<String> {
    let mut out: Vec<String> = manifests.iter().map(|m| m.reference().to_string()).collect();
    if let Some((base, _)) = word.split_once(':') {
        let of_base: Vec<&Manifest> = manifests.iter().filter(|m| m.name.as_str() == base).collect();
        if of_base.is_empty() || of_base.iter().any(|m| m.format == Format::Safetensors) {
            out.extend(KvScheme::ALL.iter().map(|k| format!("{base}:{}", k.as_str())));
        }
        let weight_types = of_base.iter().filter(|m| m.format == Format::Gguf).filter_map(|m| m.quantization);
        out.extend(weight_types.map(|q| format!("{base}:{q}")));
    }
    out.sort();
    out.dedup();
    out.retain(|c| c.starts_with(word));
    out
}
