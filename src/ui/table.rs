//! Tables for people (comfy-table), in the plain style of `ollama list`.

use std::time::SystemTime;

use comfy_table::{Table, presets::NOTHING};

use super::format;
use super::views::{BenchView, ListEntry, ShowView};
use crate::store::BlobState;
use crate::store::manifest::Source;

pub fn models(entries: &[ListEntry], now: SystemTime) -> String {
    let mut table = Table::new();
    table.load_preset(NOTHING).set_header(["NAME", "ID", "FORMAT", "QUANTIZATION", "SIZE", "MODIFIED"]);
    for e in entries {
        let modified = humantime::parse_rfc3339(&e.modified).map(|t| format::age(t, now)).unwrap_or_default();
        let (quantization, size) = match e.damaged {
            Some(_) => ("-".into(), "-".into()),
            None => (format::quantization(e.quantization.as_deref()).to_string(), format::bytes(e.size)),
        };
        table.add_row([e.name.clone(), e.id.clone(), e.format.clone(), quantization, size, modified]);
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

/// `bench`'s speed table, then its quality table when there is one.
pub fn bench(view: &BenchView) -> String {
    let gpu = view.gpu.as_deref().map(|g| format!(" ({g})")).unwrap_or_default();
    let mut text = format!("{} on {}{gpu}\n", view.model, view.device);
    if let Some(r) = view.recurrent {
        let kv = view.layers - r.layers.min(view.layers);
        text.push_str(&format!(
            "KV rows in {kv} of {} layers; {} keep a fixed recurrent state of {} (counted in KV CACHE)\n",
            view.layers,
            r.layers,
            format::bytes(r.state_bytes)
        ));
    }
    text.push('\n');
    let mut table = Table::new();
    table.load_preset(NOTHING).set_header([
        "KV",
        "CONTEXT",
        "PREFILL TOK/S",
        "TTFT",
        "DECODE TOK/S",
        "STEP MS P50/P99/MAX",
        "E2E",
        "PEAK MEMORY",
        "KV CACHE",
        "FITS (TOKENS)",
    ]);
    // Quantized rows say how they compare with the unquantized row of their context.
    let unquantized = |context: usize| view.speed.iter().find(|r| r.context == context && !r.kv.starts_with("kv_"));
    let versus = |value: f64, base: Option<f64>| match base {
        Some(base) if base > 0.0 => format!(" ({:.2}×)", value / base),
        _ => String::new(),
    };
    for r in &view.speed {
        let base = unquantized(r.context).filter(|b| !std::ptr::eq(*b, r));
        table.add_row([
            r.kv.clone(),
            r.context.to_string(),
            format!("{:.1}", r.prefill_tokens_per_s),
            format::millis(r.ttft_ms),
            format!(
                "{:.1}{}",
                r.decode_tokens_per_s,
                versus(r.decode_tokens_per_s, base.map(|b| b.decode_tokens_per_s))
            ),
            format!("{:.2}/{:.2}/{:.2}", r.decode_step_ms.median, r.decode_step_ms.p99, r.decode_step_ms.max),
            format::millis(r.e2e_ms),
            r.peak_memory_bytes.map_or("unknown".into(), format::bytes),
            format!(
                "{}{}",
                format::bytes(r.kv_cache_bytes),
                versus(r.kv_cache_bytes as f64, base.map(|b| b.kv_cache_bytes as f64))
            ),
            match (r.max_context_fits, r.fits_limit) {
                (Some(n), Some(crate::bench::FitsLimit::Model)) => format!("{n} (model limit)"),
                (Some(n), _) => {
                    format!("{n}{}", versus(n as f64, base.and_then(|b| b.max_context_fits).map(|m| m as f64)))
                }
                (None, _) => "unknown".into(),
            },
        ]);
    }
    text.push_str(&table.trim_fmt());
    text.push('\n');
    if let Some(rows) = &view.quality {
        let mut table = Table::new();
        table.load_preset(NOTHING).set_header([
            "KV",
            "TOKENS",
            "MEAN NLL",
            "PERPLEXITY",
            "ΔNLL",
            "MEAN KL",
            "TOP-1 AGREE",
        ]);
        for q in rows {
            table.add_row([
                q.kv.clone(),
                q.tokens.to_string(),
                format!("{:.4}", q.mean_nll),
                format!("{:.3}", q.perplexity),
                format!("{:+.4}", q.delta_nll),
                format!("{:.5}", q.mean_kl),
                format!("{:.2}%", q.top1_agreement * 100.0),
            ]);
        }
        text.push('\n');
        text.push_str(&table.trim_fmt());
        text.push('\n');
    }
    text
}

/// `show`: the model's facts, its KV cache sizes, and its files (with `--verify`'s verdicts).
pub fn show(v: &ShowView) -> String {
    let kv = |c: &crate::kv_size::CacheSize| {
        let stored = c.stored_layers.unwrap_or(v.layers);
        let mut window = String::new();
        match c.recurrent {
            Some(r) => window.push_str(&format!(
                "; {stored} of {} layers hold KV rows, {} a fixed recurrent state of {} in all",
                v.layers,
                r.layers,
                format::bytes(r.state_bytes)
            )),
            None if stored < v.layers => window.push_str(&format!("; {stored} of {} layers hold a KV cache", v.layers)),
            None => {}
        }
        if let Some(s) = c.sliding_window {
            window.push_str(&format!("; {} of {stored} layers keep only their last {} tokens", s.layers, s.window));
        }
        format!(
            "{} ({} B/token, {} at {} tokens{window})",
            c.layout,
            c.bytes_per_token,
            format::bytes(c.bytes),
            c.context_length
        )
    };
    let source = match &v.source {
        Source::Hub { repo, commit, revision, .. } => {
            let short = &commit[..commit.len().min(12)];
            match revision.as_deref() {
                Some(rev) if rev != "main" && !commit.starts_with(rev) => format!("hub {repo} @ {short} ({rev})"),
                _ => format!("hub {repo} @ {short}"),
            }
        }
        Source::Local { path } => format!("local {path}"),
    };
    let mut rows = vec![
        ("name", v.name.clone()),
        ("id", v.id.clone()),
        ("format", v.format.clone()),
        ("architecture", v.architecture.clone()),
        ("parameters", format::count(v.parameters)),
        (
            "context length",
            format!(
                "{} (run allocates {} by default, `--ctx-size` up to {})",
                v.context_length, v.context.default, v.context.max
            ),
        ),
        ("hidden size", v.hidden_size.to_string()),
        ("layers", v.layers.to_string()),
        ("attention heads", format!("{} ({} KV heads)", v.attention_heads, v.kv_heads)),
        ("head dim", v.head_dim.to_string()),
    ];
    if let Some(groups) = &v.kv_layers {
        // "2 × 2 KV heads of 16 (last 8 tokens), 1 × 1 KV head of 32"
        let group = |g: &crate::formats::KvLayers| {
            let heads = if g.kv_heads == 1 { "KV head" } else { "KV heads" };
            let window = g.window.map_or(String::new(), |w| format!(" (last {w} tokens)"));
            format!("{} × {} {heads} of {}{window}", g.layers, g.kv_heads, g.head_dim)
        };
        rows.push(("cached layers", groups.iter().map(group).collect::<Vec<_>>().join(", ")));
    }
    rows.extend([
        ("weight dtype", v.weight_dtype.clone()),
        ("quantization", format::quantization(v.quantization.as_deref()).to_string()),
        ("source", source),
    ]);
    let model = key_values(&rows);
    let cache = key_values(&[("unquantized", kv(&v.kv_cache.unquantized)), ("this run", kv(&v.kv_cache.selected))]);
    let state = |name: &str| match v.verified.iter().flatten().find(|f| f.name == name).map(|f| &f.state) {
        None => String::new(),
        Some(BlobState::Intact) => "  verified".into(),
        Some(BlobState::Missing) => "  MISSING".into(),
        Some(BlobState::Damaged) => "  DAMAGED".into(),
        Some(BlobState::Unreadable(e)) => format!("  UNREADABLE ({e})"),
    };
    let files: Vec<(&str, String)> =
        v.files.iter().map(|f| (f.name.as_str(), format!("{}{}", format::bytes(f.size), state(&f.name)))).collect();
    let mut text = format!("Model\n{model}\nKV cache\n{cache}\n");
    if let Some(g) = &v.gguf {
        text.push_str(&format!("GGUF metadata\n{}\n", gguf(g)));
    }
    if let Some(g) = &v.generation {
        text.push_str(&format!("Generation defaults\n{}\n", generation(g)));
    }
    let name = v.name.as_str();
    let template =
        v.chat_template.as_deref().map(|t| excerpt(t, TEMPLATE_LINES, &format!("llmctl show {name} --template")));
    text.push_str(&format!("Chat template\n{}\n", template.unwrap_or_else(|| "  none\n".into())));
    let license = v.license.as_ref().map(|l| {
        let body = excerpt(&l.text, LICENSE_LINES, &format!("llmctl show {name} --json"));
        if l.text.lines().count() <= 1 { format!("  {}\n", l.text.trim()) } else { format!("  ({})\n{body}", l.source) }
    });
    text.push_str(&format!("License\n{}\n", license.unwrap_or_else(|| "  none found\n".into())));
    text.push_str(&format!("Files\n{}", key_values(&files)));
    if !v.damaged_manifests.is_empty() {
        let rows: Vec<(&str, String)> =
            v.damaged_manifests.iter().map(|d| (d.name.as_str(), format!("DAMAGED ({})", d.reason))).collect();
        text.push_str(&format!("Manifests\n{}", key_values(&rows)));
    }
    text
}

/// Lines of a chat template or license the text output shows before cutting.
const TEMPLATE_LINES: usize = 12;
const LICENSE_LINES: usize = 4;

/// The first `max` lines of `text`, indented, and a note naming `full` (the
/// command that prints it all) when some were cut.
fn excerpt(text: &str, max: usize, full: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    let mut out: String =
        lines.iter().take(max).map(|l| if l.is_empty() { "\n".into() } else { format!("    {l}\n") }).collect();
    if lines.len() > max {
        out.push_str(&format!("  ({} more lines: `{full}` prints them)\n", lines.len() - max));
    }
    out
}

fn generation(g: &super::views::GenerationView) -> String {
    let or_unset = |v: Option<String>| v.unwrap_or_else(|| "unset".into());
    let eos = g.eos_token_ids.iter().map(u32::to_string).collect::<Vec<_>>().join(", ");
    key_values(&[
        ("temperature", or_unset(g.temperature.map(|t| t.to_string()))),
        ("top_p", or_unset(g.top_p.map(|p| p.to_string()))),
        ("top_k", or_unset(g.top_k.map(|k| k.to_string()))),
        ("do_sample", or_unset(g.do_sample.map(|d| d.to_string()))),
        ("eos token ids", if eos.is_empty() { "none".into() } else { eos }),
    ])
}

fn gguf(g: &crate::formats::gguf::facts::GgufSummary) -> String {
    let or_none = |v: &Option<String>| v.clone().unwrap_or_else(|| "none".into());
    key_values(&[
        ("general.name", or_none(&g.name)),
        ("architecture", or_none(&g.architecture)),
        ("file type", or_none(&g.file_type)),
        ("context length", g.context_length.map_or("none".into(), |n| n.to_string())),
        ("tokenizer", format!("{} (pre: {})", or_none(&g.tokenizer_model), or_none(&g.tokenizer_pre))),
        ("vocab size", g.vocab_size.to_string()),
        ("chat template", if g.has_chat_template { "yes".into() } else { "no".into() }),
        ("parts", g.parts.to_string()),
    ])
}
