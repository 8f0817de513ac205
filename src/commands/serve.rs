//! `llmctl serve`: the store's models over HTTP; what the server says
//! (listening, loads, one line per request) goes to stderr here.

use std::sync::Arc;
use std::time::Duration;

use crate::exit::ExitStatus;
use crate::printer::Printer;
use crate::serve::engine::EngineConfig;
use crate::serve::{LoadedModel, RequestLog, ServeConfig, ServeReporter};
use crate::settings::{GlobalSettings, ServeSettings};
use crate::ui::format;

/// How long a stop waits for requests in flight before exiting anyway.
const GRACE: Duration = Duration::from_secs(10);

pub fn execute(global: &GlobalSettings, settings: &ServeSettings, printer: &Printer) -> anyhow::Result<ExitStatus> {
    let store = super::open_store(global)?;
    if !is_loopback(&settings.host) {
        printer.warning(&format!(
            "listening on `{}`, not a loopback address: anyone who can reach it can use the models (there is no authentication)",
            settings.host
        ));
    }
    let config = ServeConfig {
        host: settings.host.clone(),
        port: settings.port,
        engine: EngineConfig {
            device: settings.device,
            ctx_size: settings.ctx_size,
            max_queue: settings.max_queue,
            max_sequences: settings.max_sequences,
            kv_budget: settings.kv_budget,
        },
        preload: settings.models.clone(),
        grace: GRACE,
    };
    crate::serve::serve(store, config, Arc::new(Reporter { printer: *printer }))?;
    Ok(ExitStatus::Success)
}

fn is_loopback(host: &str) -> bool {
    host == "localhost" || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

struct Reporter {
    printer: Printer,
}

impl ServeReporter for Reporter {
    fn listening(&self, address: &str) {
        self.printer.status(&format!("listening on {address} (OpenAI API under /v1, Ollama API under /api)"));
    }

    fn loaded(&self, model: &LoadedModel, load_time: Duration, notes: &[String]) {
        for note in notes {
            self.printer.status(&format!("note: {note}"));
        }
        self.printer.status(&format!(
            "loaded {} on {} in {:.2} s (KV cache: {}, a pool of {} for {} tokens in blocks of {}; context {})",
            model.name,
            model.device,
            load_time.as_secs_f64(),
            model.kv_scheme,
            format::bytes(model.cache_bytes),
            model.blocks_total * model.block_tokens,
            model.block_tokens,
            model.context_length
        ));
    }

    fn request(&self, line: &RequestLog) {
        self.printer.status(&line.line());
    }

    fn stopping(&self, reason: &str) {
        self.printer.status(&format!("{reason}: no new requests; finishing those in flight"));
    }
}
