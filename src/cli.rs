//! The command-line surface, as clap derive types and nothing else: the
//! `///` docs are the help text, and completions and man pages are
//! generated from this file. Values stay raw here; `settings` validates them.

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Pull language models from the Hugging Face Hub and run them, with a
/// per-run quantized KV cache (`MODEL:kv_int8`, `MODEL:kv_fp8`).
#[derive(Debug, Parser)]
#[command(name = "llmctl", version, propagate_version = true, max_term_width = 100)]
#[command(after_help = "Models are named `org/name[:TAG]`. TAG is a KV-cache scheme for \
safetensors models (`kv_int8`, `kv_fp8`) or a GGUF weight type (`Q4_K_M`, `Q8_0`, ...).")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,

    /// Print no progress or status messages (errors and data still print)
    #[arg(short, long, global = true)]
    pub quiet: bool,

    /// When to use colour on stderr
    #[arg(long, global = true, value_enum, default_value_t = ColorChoice::Auto, value_name = "WHEN")]
    pub color: ColorChoice,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ColorChoice {
    Auto,
    Always,
    Never,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Download a model from the hub (or import a local one) into the store
    Pull(PullArgs),
    /// Run a stored model on a prompt
    Run(RunArgs),
    /// List the models in the store
    #[command(visible_alias = "ls")]
    List(ListArgs),
    /// Show a stored model's details, KV-cache sizes and files
    Show(ShowArgs),
    /// Measure speed, memory and quality of each KV-cache scheme on a stored model
    Bench(BenchArgs),
    /// Remove tags from the store, and the files no other tag uses
    Rm(RmArgs),
    /// Serve the store's models over OpenAI- and Ollama-compatible HTTP APIs
    Serve(ServeArgs),
    /// Print a shell completion script
    Completions(CompletionsArgs),
}

#[derive(Debug, Args)]
pub struct PullArgs {
    /// `org/name[:TAG]` on the hub, or a local path (starting with `/`, `./`, `../` or `~/`):
    /// a directory in Hugging Face layout or a `.gguf` file
    #[arg(value_name = "MODEL|PATH")]
    pub model: String,

    /// Store a local import under this name (`name` or `org/name`, optionally `:TAG`)
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,

    /// The branch, tag or commit to pull from the hub (default `main`); recorded in the manifest
    #[arg(long, value_name = "REV")]
    pub revision: Option<String>,

    /// Print what was stored as JSON on stdout
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// The model, `org/name[:TAG]`; `:kv_int8` or `:kv_fp8` quantizes the KV cache for this run
    #[arg(value_name = "MODEL")]
    pub model: String,

    /// The prompt; read from stdin when omitted and stdin is not a terminal,
    /// else an interactive chat starts
    pub prompt: Option<String>,

    /// Send the prompt as it is, without the model's chat template
    #[arg(long)]
    pub raw: bool,

    /// A system prompt before the message, through the model's chat template (in a chat, as `/set system`)
    #[arg(long, value_name = "TEXT", conflicts_with = "raw")]
    pub system: Option<String>,

    /// Stop after this many generated tokens
    #[arg(long, value_name = "N", default_value_t = 256, allow_negative_numbers = true)]
    pub max_tokens: usize,

    /// Sampling temperature; 0 is greedy [default: the model's generation config, else 0]
    // Negative values parse, so that llmctl's range check says what is allowed
    // (clap would suggest `-- -1`, which is not what the user meant).
    #[arg(long, value_name = "T", allow_negative_numbers = true)]
    pub temperature: Option<f64>,

    /// Sample only among the K most likely tokens [default: the model's]
    #[arg(long, value_name = "K", allow_negative_numbers = true)]
    pub top_k: Option<usize>,

    /// Sample only among the most likely tokens whose probabilities sum to P [default: the model's]
    #[arg(long, value_name = "P", allow_negative_numbers = true)]
    pub top_p: Option<f64>,

    /// Seed for sampling: the same seed gives the same output
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub seed: u64,

    /// Context length to allocate the KV cache for [default: the model's, at most 4096]
    #[arg(long, value_name = "N")]
    pub ctx_size: Option<usize>,

    /// Where to run: `cpu`, `cuda`, `cuda:N`, or `auto` (the GPU if this build has CUDA and one is present)
    #[arg(long, value_name = "DEVICE", default_value = "auto")]
    pub device: String,

    /// Print JSON Lines on stdout: a `prompt` event (the rendered prompt and its token ids), one `token` event per token, then a `done` event with statistics
    #[arg(long)]
    pub json: bool,

    /// Print load, speed, cache and memory statistics on stderr
    #[arg(short, long)]
    pub verbose: bool,

    /// Print the prompt as the model is given it on stderr: the rendered text, then each token id and its text
    #[arg(long)]
    pub verbose_prompt: bool,

    /// Refuse a model that is not in the store instead of pulling it first
    #[arg(long)]
    pub no_pull: bool,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    /// Print a JSON array instead of a table
    #[arg(long, conflicts_with = "names")]
    pub json: bool,

    /// Print only `name[:tag]`, one per line (used by shell completion)
    #[arg(long)]
    pub names: bool,

    /// Shell completion of a MODEL word: the stored names starting with it, and after
    /// `name:` every tag valid for that name's format
    #[arg(long, hide = true, value_name = "WORD", conflicts_with_all = ["json", "names"])]
    pub complete: Option<String>,
}

#[derive(Debug, Args)]
pub struct ShowArgs {
    /// The model, `org/name[:TAG]`
    #[arg(value_name = "MODEL")]
    pub model: String,

    /// Context length for the KV-cache size estimate, at most the model's [default: what `run` allocates, the model's context up to 4096]
    #[arg(long, value_name = "N")]
    pub ctx_size: Option<u64>,

    /// Re-read every file and check its size and sha256 against the manifest
    /// (exit 1 when one is missing or damaged)
    #[arg(long)]
    pub verify: bool,

    /// Print one JSON object instead of text
    #[arg(long)]
    pub json: bool,

    /// Print only the model's chat template, in full (nothing when it has none), as `ollama show --template`
    #[arg(long, conflicts_with_all = ["json", "verify"])]
    pub template: bool,
}

#[derive(Debug, Args)]
pub struct BenchArgs {
    /// The model, `org/name` (safetensors); a `:kv_*` tag compares that scheme with the unquantized cache
    #[arg(value_name = "MODEL")]
    pub model: String,

    /// KV-cache schemes to compare, comma-separated: `none`, `kv_int8`, `kv_fp8` [default: all three]
    #[arg(long, value_delimiter = ',', value_name = "SCHEMES")]
    pub kv: Option<Vec<String>>,

    /// Context lengths, comma-separated [default: 1024,8192,32768 on a GPU, 512,2048 on the CPU,
    /// each up to the model's limit]
    #[arg(long, value_delimiter = ',', value_name = "N,...")]
    pub ctx: Option<Vec<usize>>,

    /// Tokens to decode in each case, after a prompt that fills the rest of the context
    #[arg(long, value_name = "N", default_value_t = 64)]
    pub r#gen: usize,

    /// Score each scheme on this text against the unquantized cache (NLL, KL divergence, top-1 agreement)
    #[arg(long, value_name = "FILE")]
    pub text: Option<std::path::PathBuf>,

    /// Where to run: `cpu`, `cuda`, `cuda:N`, or `auto`
    #[arg(long, value_name = "DEVICE", default_value = "auto")]
    pub device: String,

    /// Print one JSON object on stdout instead of tables
    #[arg(long)]
    pub json: bool,

    /// Also draw decode tokens/s and end-to-end time against context, a line per scheme, into this
    /// SVG file (replaced if it exists)
    #[arg(long, value_name = "FILE.svg")]
    pub plot: Option<std::path::PathBuf>,
}

#[derive(Debug, Args)]
pub struct RmArgs {
    /// The models to remove, each `org/name[:TAG]` exactly as `llmctl list` shows it
    #[arg(value_name = "MODEL", required = true)]
    pub models: Vec<String>,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// The address to listen on; anything but a loopback address exposes the models to the network
    #[arg(long, value_name = "HOST", default_value = "127.0.0.1")]
    pub host: String,

    /// The TCP port to listen on (0: any free port)
    #[arg(long, value_name = "N", default_value_t = 11435)]
    pub port: u16,

    /// Load this model (`org/name[:TAG]`) before listening; repeat for more. Others load on first use
    #[arg(long = "model", value_name = "MODEL")]
    pub models: Vec<String>,

    /// Requests that may wait for room in the KV pool; more are answered 503 with `Retry-After`
    #[arg(long, value_name = "N", default_value_t = 16)]
    pub max_queue: usize,

    /// Requests of one model and KV scheme generated at once, batched
    #[arg(long, value_name = "N", default_value_t = 16, value_parser = clap::value_parser!(u16).range(1..))]
    pub max_sequences: u16,

    /// Memory of each model and KV scheme's pool of KV blocks, allocated when the pool is made: bytes (`8GiB`, `512MB`, …), or `auto`: `--max-sequences` whole contexts, at most 90% of the GPU's free memory (CPU: half the available memory)
    #[arg(long, value_name = "BYTES|auto", default_value = "auto")]
    pub kv_budget: String,

    /// Context length of each model's KV cache [default: the model's, at most 4096]
    #[arg(long, value_name = "N")]
    pub ctx_size: Option<usize>,

    /// Where to run: `cpu`, `cuda`, `cuda:N`, or `auto`
    #[arg(long, value_name = "DEVICE", default_value = "auto")]
    pub device: String,
}

#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell to print the script for
    #[arg(value_enum)]
    pub shell: Shell,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Shell {
    Bash,
    Zsh,
    Fish,
    Powershell,
    Elvish,
}

/// The clap command, for generators and tests.
pub fn command() -> clap::Command {
    <Cli as clap::CommandFactory>::command()
}
