//! Tables for people (comfy-table), in the plain style of `ollama list`.

use std::time::SystemTime;

use comfy_table::{Table, presets::NOTHING};

use super::format;
use super::views::ListEntry;

pub fn models(entries: &[ListEntry], now: SystemTime) -> String {
    let mut table = Table::new();
    table.load_preset(NOTHING).set_header(["NAME", "ID", "FORMAT", "QUANTIZATION", "SIZE", "MODIFIED"]);
    for e in entries {
        let modified = humantime::parse_rfc3339(&e.modified).map(|t| format::age(t, now)).unwrap_or_default();
        table.add_row([
            e.name.clone(),
            e.id.clone(),
            e.format.clone(),
            e.quantization.clone().unwrap_or_else(|| "none".into()),
            format::bytes(e.size),
            modified,
        ]);
    }
    let mut text = table.trim_fmt();
    text.push('\n');
    text
}

/// Two aligned columns of `key: value` lines.
pub fn key_values(rows: &[(&str, String)]) -> String {
    let width = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    rows.iter().map(|(k, v)| format!("  {k:<width$}  {v}\n")).collect()
}
