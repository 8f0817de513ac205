//! Raw CLI arguments plus the environment, resolved into validated
//! settings before any command does expensive work.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use crate::cli::{BenchArgs, Cli, ColorChoice, Command, RunArgs, Shell};
use crate::engine::device::DeviceRequest;
use crate::env_vars::*;
use crate::exit::{Diagnostic, ExitStatus};
use crate::hub::{HubConfig, Resilience};
use crate::pull::PullSource;
use crate::quant::{KvScheme, Quant};
use crate::store::reference::{ModelName, ModelRef, RefError};

/// The environment as read once at start-up (tests pass their own).
#[derive(Debug, Clone, Default)]
pub struct Env {
    vars: HashMap<String, String>,
    pub stdout_is_terminal: bool,
    pub stderr_is_terminal: bool,
    pub stdin_is_terminal: bool,
    /// stderr's terminal width in columns, when it is a terminal that says.
    pub stderr_columns: Option<usize>,
}

impl Env {
    pub fn from_process() -> Env {
        Env {
            vars: std::env::vars().collect(),
            stdout_is_terminal: std::io::stdout().is_terminal(),
            stderr_is_terminal: std::io::stderr().is_terminal(),
            stdin_is_terminal: std::io::stdin().is_terminal(),
            stderr_columns: stderr_columns(),
        }
    }

    /// The width progress lines fit: `COLUMNS` (as shells export it, and
    /// as tests set it), else stderr's terminal width.
    pub fn columns(&self) -> Option<usize> {
        let given = self.var(COLUMNS).and_then(|c| c.trim().parse().ok()).filter(|c| *c > 0);
        given.or(self.stderr_columns)
    }

    pub fn var(&self, name: &str) -> Option<&str> {
        self.vars.get(name).map(String::as_str).filter(|v| !v.is_empty())
    }
}

/// The terminal width of stderr (`TIOCGWINSZ`); `None` off a terminal or
/// when it reports zero columns (a pseudo-terminal nobody sized).
#[cfg(unix)]
fn stderr_columns() -> Option<usize> {
    let mut size = libc::winsize { ws_row: 0, ws_col: 0, ws_xpixel: 0, ws_ypixel: 0 };
    // SAFETY: TIOCGWINSZ writes one `winsize` through the pointer, which is valid for it.
    let ok = unsafe { libc::ioctl(libc::STDERR_FILENO, libc::TIOCGWINSZ, &mut size) } == 0;
    (ok && size.ws_col > 0).then_some(usize::from(size.ws_col))
}

#[cfg(not(unix))]
fn stderr_columns() -> Option<usize> {
    None
}

#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error(transparent)]
    Reference(#[from] RefError),
    #[error("cannot find a data directory for the store")]
    NoStoreDir,
    #[error("`--name` only applies to local imports, not to hub model `{0}`")]
    NameWithHubModel(String),
    #[error("`--revision` only applies to hub models, not to local path `{}`", .0.display())]
    RevisionWithPath(PathBuf),
    #[error(transparent)]
    Revision(#[from] crate::hub::RevisionError),
    #[error("cannot derive a model name from `{}`", .0.display())]
    NoDerivedName(PathBuf),
    #[error("`--ctx-size` must be at least 1")]
    ZeroContext,
    #[error("invalid `--device`: {0}")]
    Device(String),
    #[error("`--kv {0}` is not a KV-cache scheme")]
    NotAKvScheme(String),
    #[error("`{flag}` must be {expected}, not {value}")]
    OutOfRange { flag: &'static str, expected: &'static str, value: String },
    /// Nothing but whitespace, from the argument or standard input.
    #[error("the prompt {0} is empty")]
    EmptyPrompt(&'static str),
    #[error("`--plot` file `{}` does not end in `.svg`", .0.display())]
    PlotNotSvg(PathBuf),
    #[error("`--plot` path `{}` names a directory, not a file", .0.display())]
    PlotIsDirectory(PathBuf),
    #[error("cannot write `--plot` file `{}`: directory `{}` does not exist", .plot.display(), .dir.display())]
    PlotNoDirectory { plot: PathBuf, dir: PathBuf },
    #[error("cannot write `--plot` file `{}`: `{}` is not a directory", .plot.display(), .dir.display())]
    PlotParentNotDirectory { plot: PathBuf, dir: PathBuf },
}

impl Diagnostic for SettingsError {
    fn exit_status(&self) -> ExitStatus {
        match self {
            SettingsError::NoStoreDir => ExitStatus::Failure,
            _ => ExitStatus::Usage,
        }
    }

    fn hint(&self) -> Option<String> {
        match self {
            SettingsError::Reference(e) => e.hint(),
            SettingsError::NoStoreDir => Some(format!("set `{LLMCTL_HOME}` to a directory for the store")),
            SettingsError::NameWithHubModel(_) => Some("drop `--name`, or give a path such as `./my-model`".into()),
            SettingsError::RevisionWithPath(_) => {
                Some("drop `--revision`: a local import takes the files as they are".into())
            }
            SettingsError::Revision(e) => e.hint(),
            SettingsError::NoDerivedName(_) => Some("name it with `--name org/name`".into()),
            SettingsError::NotAKvScheme(_) => {
                Some("list schemes from `none`, `kv_int8` and `kv_fp8`, e.g. `--kv none,kv_fp8`".into())
            }
            SettingsError::EmptyPrompt(_) => Some(
                "give the text as the PROMPT argument or on standard input, or run without one on a terminal to chat"
                    .into(),
            ),
            SettingsError::PlotNotSvg(_) => Some("give a file name ending in `.svg`, e.g. `--plot bench.svg`".into()),
            SettingsError::PlotIsDirectory(dir) => {
                Some(format!("give a file to write, e.g. `--plot {}`", dir.join("bench.svg").display()))
            }
            SettingsError::PlotNoDirectory { dir, .. } => {
                Some(format!("create directory `{}` first, or write the plot into an existing one", dir.display()))
            }
            SettingsError::PlotParentNotDirectory { .. } => {
                Some("write the plot into a directory, e.g. `--plot bench.svg`".into())
            }
            SettingsError::ZeroContext | SettingsError::OutOfRange { .. } | SettingsError::Device(_) => None,
        }
    }
}

/// The chat history file: the platform's state directory (`~/.local/state`
/// on Linux, as shells keep theirs), else its local data directory.
fn chat_history_file() -> Option<PathBuf> {
    dirs::state_dir().or_else(dirs::data_local_dir).map(|d| d.join("llmctl").join("history"))
}

/// A prompt with something in it; `from` says where it came from.
pub fn non_empty(prompt: String, from: &'static str) -> Result<String, SettingsError> {
    if prompt.trim().is_empty() { Err(SettingsError::EmptyPrompt(from)) } else { Ok(prompt) }
}

/// How a command writes its data on stdout: for people, or as JSON (`--json`) for scripts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputFormat {
    Text,
    Json,
}

impl OutputFormat {
    pub fn from_json_flag(json: bool) -> OutputFormat {
        if json { OutputFormat::Json } else { OutputFormat::Text }
    }
}

/// Settings every command shares.
#[derive(Debug, Clone)]
pub struct GlobalSettings {
    pub store_root: PathBuf,
    pub quiet: bool,
    pub color: bool,
    pub progress: bool,
    /// The terminal's width for progress lines (`Env::columns`).
    pub columns: Option<usize>,
    pub hub: HubConfig,
}

#[derive(Debug, Clone)]
pub struct PullSettings {
    pub source: PullSource,
    pub output: OutputFormat,
}

/// Where `run` takes its prompt from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PromptSource {
    Text(String),
    /// Read all of stdin (a pipe or file).
    Stdin,
    /// stdin is a terminal: chat turn by turn.
    Interactive,
}

#[derive(Debug, Clone)]
pub struct RunSettings {
    pub model: ModelRef,
    pub prompt: PromptSource,
    pub raw: bool,
    /// `--system`: the system turn the chat template renders first.
    pub system: Option<String>,
    pub max_tokens: usize,
    pub temperature: Option<f64>,
    pub top_k: Option<usize>,
    pub top_p: Option<f64>,
    pub seed: u64,
    pub ctx_size: Option<usize>,
    pub device: DeviceRequest,
    pub output: OutputFormat,
    pub verbose: bool,
    /// `--verbose-prompt`: the rendered prompt and its tokens on stderr.
    pub verbose_prompt: bool,
    /// Pull a model that is not in the store before running it (`--no-pull` refuses instead).
    pub pull_missing: bool,
    /// Where the interactive chat keeps its input history (`None`: no history).
    pub history: Option<PathBuf>,
}

#[derive(Debug, Clone)]
pub struct ListSettings {
    pub output: OutputFormat,
    pub names: bool,
    /// `--complete WORD`: the completions of a MODEL word, for shell scripts.
    pub complete: Option<String>,
}

#[derive(Debug, Clone)]
pub struct ShowSettings {
    pub model: ModelRef,
    pub ctx_size: Option<u64>,
    pub verify: bool,
    pub output: OutputFormat,
    /// `--template`: print the chat template alone.
    pub template: bool,
}

#[derive(Debug, Clone)]
pub struct BenchSettings {
    pub model: ModelRef,
    /// Schemes as given; `None` is the unquantized cache. Empty: from the tag, else all.
    pub schemes: Vec<Option<KvScheme>>,
    /// Context lengths as given; `None`: the device's defaults.
    pub contexts: Option<Vec<usize>>,
    pub generate: usize,
    pub text: Option<PathBuf>,
    pub device: DeviceRequest,
    pub output: OutputFormat,
    /// `--plot`: an `.svg` file to write, in a directory that exists (checked
    /// before the benchmark runs, not written until it has).
    pub plot: Option<PathBuf>,
}

#[derive(Debug, Clone)]
pub struct RmSettings {
    pub models: Vec<ModelRef>,
}

#[derive(Debug, Clone)]
pub struct ServeSettings {
    pub host: String,
    pub port: u16,
    /// Checked references, loaded before listening.
    pub models: Vec<String>,
    pub max_queue: usize,
    pub max_sequences: usize,
    pub kv_budget: crate::serve::engine::KvBudget,
    pub ctx_size: Option<usize>,
    pub device: DeviceRequest,
}

#[derive(Debug, Clone)]
pub enum CommandSettings {
    Pull(PullSettings),
    Run(RunSettings),
    List(ListSettings),
    Show(ShowSettings),
    Bench(BenchSettings),
    Rm(RmSettings),
    Serve(ServeSettings),
    Completions(Shell),
}

/// Validates everything the user gave before any command runs.
pub fn resolve(cli: Cli, env: &Env) -> Result<(GlobalSettings, CommandSettings), SettingsError> {
    let store_root = store_root(env)?;
    let global = GlobalSettings {
        quiet: cli.quiet,
        color: use_color(cli.color, env),
        progress: !cli.quiet && env.stderr_is_terminal,
        columns: env.columns(),
        hub: hub_config(env),
        store_root,
    };
    let command = match cli.command {
        Command::Pull(args) => CommandSettings::Pull(PullSettings {
            source: pull_source(&args, env)?,
            output: OutputFormat::from_json_flag(args.json),
        }),
        Command::Run(args) => CommandSettings::Run(run_settings(args, env)?),
        Command::List(args) => CommandSettings::List(ListSettings {
            output: OutputFormat::from_json_flag(args.json),
            names: args.names,
            complete: args.complete,
        }),
        Command::Show(args) => CommandSettings::Show(ShowSettings {
            model: args.model.parse()?,
            ctx_size: args
                .ctx_size
                .map(|n| if n == 0 { Err(SettingsError::ZeroContext) } else { Ok(n) })
                .transpose()?,
            verify: args.verify,
            output: OutputFormat::from_json_flag(args.json),
            template: args.template,
        }),
        Command::Bench(args) => CommandSettings::Bench(bench_settings(args)?),
        Command::Rm(args) => {
            CommandSettings::Rm(RmSettings { models: args.models.iter().map(|m| m.parse()).collect::<Result<_, _>>()? })
        }
        Command::Serve(args) => CommandSettings::Serve(serve_settings(args)?),
        Command::Completions(args) => CommandSettings::Completions(args.shell),
    };
    Ok((global, command))
}

fn run_settings(args: RunArgs, env: &Env) -> Result<RunSettings, SettingsError> {
    let range = |flag, expected, ok: bool, value: String| {
        if ok { Ok(()) } else { Err(SettingsError::OutOfRange { flag, expected, value }) }
    };
    if let Some(t) = args.temperature {
        range("--temperature", "a number of 0 or more", t.is_finite() && t >= 0.0, t.to_string())?;
    }
    if let Some(p) = args.top_p {
        range("--top-p", "in 0 < P <= 1", p > 0.0 && p <= 1.0, p.to_string())?;
    }
    range("--max-tokens", "at least 1", args.max_tokens >= 1, args.max_tokens.to_string())?;
    if args.ctx_size == Some(0) {
        return Err(SettingsError::ZeroContext);
    }
    let prompt = match (args.prompt, env.stdin_is_terminal) {
        (Some(text), _) => PromptSource::Text(non_empty(text, "argument")?),
        (None, false) => PromptSource::Stdin,
        (None, true) => PromptSource::Interactive,
    };
    Ok(RunSettings {
        model: args.model.parse()?,
        prompt,
        raw: args.raw,
        system: args.system,
        max_tokens: args.max_tokens,
        temperature: args.temperature,
        top_k: args.top_k,
        top_p: args.top_p,
        seed: args.seed,
        ctx_size: args.ctx_size,
        device: args.device.parse().map_err(SettingsError::Device)?,
        output: OutputFormat::from_json_flag(args.json),
        verbose: args.verbose,
        verbose_prompt: args.verbose_prompt,
        pull_missing: !args.no_pull,
        history: chat_history_file(),
    })
}

fn serve_settings(args: crate::cli::ServeArgs) -> Result<ServeSettings, SettingsError> {
    if args.ctx_size == Some(0) {
        return Err(SettingsError::ZeroContext);
    }
    for model in &args.models {
        // `:latest` is the untagged model, as in the APIs.
        model.strip_suffix(":latest").unwrap_or(model).parse::<ModelRef>()?;
    }
    Ok(ServeSettings {
        host: args.host,
        port: args.port,
        models: args.models,
        max_queue: args.max_queue,
        max_sequences: usize::from(args.max_sequences),
        kv_budget: crate::serve::engine::KvBudget::parse(&args.kv_budget).ok_or_else(|| SettingsError::OutOfRange {
            flag: "--kv-budget",
            expected: "`auto` or a size of at least one byte, such as `8GiB`, `512MB` or `1000000`",
            value: args.kv_budget.clone(),
        })?,
        ctx_size: args.ctx_size,
        device: args.device.parse().map_err(SettingsError::Device)?,
    })
}

fn bench_settings(args: BenchArgs) -> Result<BenchSettings, SettingsError> {
    let mut schemes: Vec<Option<KvScheme>> = Vec::new();
    for text in args.kv.iter().flatten() {
        let scheme = match text.trim() {
            "none" => None,
            other => match other.parse::<Quant>() {
                Ok(Quant::Kv(scheme)) => Some(scheme),
                _ => return Err(SettingsError::NotAKvScheme(text.clone())),
            },
        };
        if !schemes.contains(&scheme) {
            schemes.push(scheme);
        }
    }
    if args.ctx.iter().flatten().any(|&n| n == 0) {
        return Err(SettingsError::ZeroContext);
    }
    if args.r#gen == 0 {
        return Err(SettingsError::OutOfRange { flag: "--gen", expected: "at least 1", value: "0".into() });
    }
    let mut contexts = args.ctx;
    if let Some(c) = contexts.as_mut() {
        c.sort_unstable();
        c.dedup();
    }
    Ok(BenchSettings {
        model: args.model.parse()?,
        schemes,
        contexts,
        generate: args.r#gen,
        text: args.text,
        device: args.device.parse().map_err(SettingsError::Device)?,
        output: OutputFormat::from_json_flag(args.json),
        plot: args.plot.map(plot_file).transpose()?,
    })
}

/// A `--plot` path that can be written once the benchmark is done: an
/// `.svg` name (any case), not a directory, in a directory that exists.
fn plot_file(path: PathBuf) -> Result<PathBuf, SettingsError> {
    // `out.svg/` has the extension `svg` to `Path`, but names a directory.
    if path.is_dir() || path.as_os_str().to_string_lossy().ends_with(std::path::is_separator) {
        return Err(SettingsError::PlotIsDirectory(path));
    }
    if !path.extension().is_some_and(|e| e.eq_ignore_ascii_case("svg")) {
        return Err(SettingsError::PlotNotSvg(path));
    }
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
        _ => PathBuf::from("."),
    };
    match std::fs::metadata(&dir) {
        Ok(meta) if meta.is_dir() => Ok(path),
        Ok(_) => Err(SettingsError::PlotParentNotDirectory { plot: path, dir }),
        Err(_) => Err(SettingsError::PlotNoDirectory { plot: path, dir }),
    }
}

fn store_root(env: &Env) -> Result<PathBuf, SettingsError> {
    if let Some(home) = env.var(LLMCTL_HOME) {
        return Ok(PathBuf::from(home));
    }
    dirs::data_dir().map(|d| d.join("llmctl")).ok_or(SettingsError::NoStoreDir)
}

fn use_color(choice: ColorChoice, env: &Env) -> bool {
    match choice {
        ColorChoice::Always => true,
        ColorChoice::Never => false,
        ColorChoice::Auto if env.var(NO_COLOR).is_some() => false,
        ColorChoice::Auto => env.var(FORCE_COLOR).is_some() || env.stderr_is_terminal,
    }
}

fn hub_config(env: &Env) -> HubConfig {
    let token = env.var(HF_TOKEN).map(str::to_string).or_else(|| token_file(env));
    let ms = |name| env.var(name).and_then(|v| v.parse::<u64>().ok()).map(std::time::Duration::from_millis);
    let defaults = Resilience::default();
    HubConfig {
        endpoint: env.var(HF_ENDPOINT).unwrap_or(DEFAULT_HF_ENDPOINT).trim_end_matches('/').to_string(),
        token,
        offline: env
            .var(HF_HUB_OFFLINE)
            .is_some_and(|v| ["1", "true", "yes", "on"].contains(&v.trim().to_ascii_lowercase().as_str())),
        resilience: Resilience {
            retry_delay: ms(LLMCTL_RETRY_DELAY_MS).unwrap_or(defaults.retry_delay),
            stall_after: ms(LLMCTL_STALL_TIMEOUT_MS).unwrap_or(defaults.stall_after),
            ..defaults
        },
    }
}

/// The token `huggingface-cli login` saved, as the Hugging Face tools read it.
fn token_file(env: &Env) -> Option<String> {
    let home = match env.var(HF_HOME) {
        Some(home) => PathBuf::from(home),
        None => dirs::home_dir()?.join(".cache").join("huggingface"),
    };
    let token = std::fs::read_to_string(home.join("token")).ok()?;
    Some(token.trim().to_string()).filter(|t| !t.is_empty())
}

/// Hub reference or local path, by the documented rule: a path starts with
/// `/`, `./`, `../` or `~/`.
fn pull_source(args: &crate::cli::PullArgs, env: &Env) -> Result<PullSource, SettingsError> {
    let arg = args.model.as_str();
    let is_path = ["/", "./", "../", "~/"].iter().any(|p| arg.starts_with(p)) || arg == "." || arg == "..";
    if !is_path {
        if args.name.is_some() {
            return Err(SettingsError::NameWithHubModel(arg.into()));
        }
        let revision = args.revision.as_deref().map(str::parse).transpose()?.unwrap_or_else(crate::hub::Revision::main);
        return Ok(PullSource::Hub { reference: arg.parse()?, revision });
    }
    let path = expand_home(arg, env);
    if args.revision.is_some() {
        return Err(SettingsError::RevisionWithPath(path));
    }
    let reference = match args.name.as_deref() {
        Some(name) => name.parse()?,
        None => ModelRef { name: derived_name(&path)?, tag: None },
    };
    Ok(PullSource::Local { path, reference })
}

fn expand_home(arg: &str, env: &Env) -> PathBuf {
    match (arg.strip_prefix("~/"), env.var("HOME")) {
        (Some(rest), Some(home)) => Path::new(home).join(rest),
        _ => PathBuf::from(arg),
    }
}

/// A name from the path's last component (`.gguf` and a weight-type part dropped).
fn derived_name(path: &Path) -> Result<ModelName, SettingsError> {
    if let Some(snapshot) = crate::pull::hf_cache::snapshot(path) {
        return Ok(snapshot.name);
    }
    let fail = || SettingsError::NoDerivedName(path.to_path_buf());
    let absolute = std::path::absolute(path).map_err(|_| fail())?;
    let last = absolute.file_name().and_then(|n| n.to_str()).ok_or_else(fail)?;
    let (stem, _) = crate::pull::select::split_gguf_name(last);
    let cleaned: String =
        stem.chars().map(|c| if c.is_ascii_alphanumeric() || "._-".contains(c) { c } else { '-' }).collect();
    cleaned.trim_start_matches(['.', '_', '-']).parse().map_err(|_| fail())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derives_names_from_paths() {
        let name = |p: &str| derived_name(Path::new(p)).map(|n| n.to_string()).ok();
        assert_eq!(name("/m/SmolLM2-135M-Instruct.Q4_1.gguf").as_deref(), Some("SmolLM2-135M-Instruct"));
        // The hub's other common styles drop their GGUF type the same way (#18).
        assert_eq!(name("/m/smollm2-135m-instruct-q4_1.gguf").as_deref(), Some("smollm2-135m-instruct"));
        assert_eq!(name("/m/Model-Q4_K_M.gguf").as_deref(), Some("Model"));
        assert_eq!(name("/m/model_q8_0.GGUF").as_deref(), Some("model"));
        assert_eq!(name("/m/plain.gguf").as_deref(), Some("plain"));
        // A part of a split model names the model (#16).
        assert_eq!(name("/m/Model-Q8_0-00002-of-00003.gguf").as_deref(), Some("Model"));
        assert_eq!(name("/m/my model").as_deref(), Some("my-model"));
        assert_eq!(name("/m/tiny-llama").as_deref(), Some("tiny-llama"));
    }
}
