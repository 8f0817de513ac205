//! Every environment variable llmctl reads, in one place.

/// Root of the local store (default: the platform data directory + `llmctl`).
pub const LLMCTL_HOME: &str = "LLMCTL_HOME";
/// Hub base URL (default `https://huggingface.co`); read by hf-hub's convention too.
pub const HF_ENDPOINT: &str = "HF_ENDPOINT";
/// Hub access token, sent as a bearer token and never printed or stored.
pub const HF_TOKEN: &str = "HF_TOKEN";
/// Hugging Face home; its `token` file is used when `HF_TOKEN` is unset.
pub const HF_HOME: &str = "HF_HOME";
/// When `1` (or `true`/`yes`/`on`), `pull` makes no network request (as the Hugging Face tools).
pub const HF_HUB_OFFLINE: &str = "HF_HUB_OFFLINE";
/// Disables colour when set to anything non-empty (<https://no-color.org>).
pub const NO_COLOR: &str = "NO_COLOR";
/// Forces colour on stderr even when it is not a terminal.
pub const FORCE_COLOR: &str = "FORCE_COLOR";

/// The terminal's width in columns, as shells export it; progress lines fit it
/// (default: the width stderr reports, else 80).
pub const COLUMNS: &str = "COLUMNS";

/// Milliseconds to connect, or without a received byte, before a request counts as stalled (default 60,000).
pub const LLMCTL_STALL_TIMEOUT_MS: &str = "LLMCTL_STALL_TIMEOUT_MS";
/// First delay before retrying a failed request, in milliseconds, doubled per retry (default 500).
pub const LLMCTL_RETRY_DELAY_MS: &str = "LLMCTL_RETRY_DELAY_MS";

/// When `1`, error messages carry the backtraces libraries capture (candle's do when
/// `RUST_BACKTRACE` is set); otherwise llmctl turns library backtraces off.
pub const LLMCTL_BACKTRACE: &str = "LLMCTL_BACKTRACE";
/// Read by Rust's standard library: whether library code captures backtraces.
pub const RUST_LIB_BACKTRACE: &str = "RUST_LIB_BACKTRACE";

pub const DEFAULT_HF_ENDPOINT: &str = "https://huggingface.co";
