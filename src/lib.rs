//! llmctl: pull language models from the Hugging Face Hub into a local
//! store and run them, with a per-run quantized KV cache.
//!
//! `main` is the whole program: parse → resolve settings → dispatch →
//! render any error → exit status.

pub mod bench;
pub mod cli;
pub mod cli_docs;
pub mod commands;
pub mod diagnostics;
pub mod engine;
pub mod env_vars;
pub mod exit;
pub mod formats;
pub mod gpu;
pub mod hub;
pub mod ids;
pub mod interrupt;
pub mod kv_size;
pub mod memory;
pub mod printer;
pub mod pull;
pub mod quant;
pub mod serve;
pub mod settings;
pub mod store;
pub mod ui;

use std::process::ExitCode;

use clap::Parser;

use cli::Cli;
use exit::ExitStatus;
use printer::Printer;
use settings::{CommandSettings, Env, GlobalSettings};

pub fn main() -> ExitCode {
    if std::env::args_os().nth(1).is_some_and(|arg| arg == engine::chat::sandbox::CHILD_ARG) {
        return engine::chat::sandbox::child_main();
    }
    quiet_library_backtraces();
    // Chat templates come with the model: render them where a runaway one cannot take llmctl down.
    if let Ok(exe) = std::env::current_exe() {
        engine::chat::sandbox::enable(exe);
    }
    let env = Env::from_process();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => return clap_exit(&error),
    };
    // Until settings are resolved, errors print without colour.
    let plain = Printer::new(false, false, false, false);
    let (global, command) = match settings::resolve(cli, &env) {
        Ok(resolved) => resolved,
        Err(error) => return diagnostics::report(&error.into(), &plain).into(),
    };
    let printer =
        Printer::new(global.quiet, global.color, global.progress, env.stdout_is_terminal).with_columns(global.columns);
    match dispatch(&global, &command, &printer) {
        Ok(status) => status.into(),
        Err(error) => diagnostics::report(&error, &printer).into(),
    }
}

/// Library backtraces stay out of error messages unless `LLMCTL_BACKTRACE=1`:
/// with `RUST_BACKTRACE=1` (common among Rust users) candle appends one to
/// every error it makes. Panics keep honouring `RUST_BACKTRACE`.
fn quiet_library_backtraces() {
    if std::env::var_os(env_vars::LLMCTL_BACKTRACE).is_some_and(|v| v == "1") {
        return;
    }
    // SAFETY: the first thing `main` does, before any thread exists, so no
    // other code reads or writes the environment at the same time.
    unsafe { std::env::set_var(env_vars::RUST_LIB_BACKTRACE, "0") };
}

fn dispatch(global: &GlobalSettings, command: &CommandSettings, printer: &Printer) -> anyhow::Result<ExitStatus> {
    match command {
        CommandSettings::Pull(s) => commands::pull::execute(global, s, printer),
        CommandSettings::Run(s) => commands::run::execute(global, s, printer),
        CommandSettings::List(s) => commands::list::execute(global, s, printer),
        CommandSettings::Show(s) => commands::show::execute(global, s, printer),
        CommandSettings::Bench(s) => commands::bench::execute(global, s, printer),
        CommandSettings::Rm(s) => commands::rm::execute(global, s, printer),
        CommandSettings::Serve(s) => commands::serve::execute(global, s, printer),
        CommandSettings::Completions(shell) => commands::completions::execute(*shell, printer),
    }
}

/// `--help` and `--version` exit 0 on stdout; usage errors exit 2 on stderr.
fn clap_exit(error: &clap::Error) -> ExitCode {
    Printer::new(false, false, false, false).clap(error);
    ExitCode::from(error.exit_code().clamp(0, 255) as u8)
}
