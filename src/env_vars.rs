//! Every environment variable llmctl reads, in one place: each is a
//! documented constant, and [`ALL`] lists them with those same docs (the man
//! page's ENVIRONMENT section is rendered from it, so it cannot drift).

/// An environment variable and what it does, from its doc comment.
#[derive(Debug, Clone, Copy)]
pub struct EnvVar {
    pub name: &'static str,
    pub doc: &'static str,
}

/// Declares each variable as a constant named after it and lists it in `ALL`,
/// both from one doc comment.
macro_rules! env_vars {
    ($($(#[doc = $doc:literal])+ $name:ident;)+) => {
        $($(#[doc = $doc])+ pub const $name: &str = stringify!($name);)+
        /// Every variable above, in declaration order, with its doc comment.
        pub const ALL: &[EnvVar] = &[$(EnvVar { name: stringify!($name), doc: concat!($($doc, "\n"),+) }),+];
    };
}

env_vars! {
    /// Root of the local store (default: the platform data directory + `llmctl`,
    /// e.g. `~/.local/share/llmctl`).
    LLMCTL_HOME;
    /// Hub base URL (default `https://huggingface.co`); read by hf-hub's convention too.
    HF_ENDPOINT;
    /// Hub access token for private and gated repositories, sent as a bearer token and
    /// never printed or stored.
    HF_TOKEN;
    /// Hugging Face home (default `~/.cache/huggingface`); its `token` file (written by
    /// `huggingface-cli login`) is used when `HF_TOKEN` is unset.
    HF_HOME;
    /// When `1` (or `true`/`yes`/`on`), `pull` makes no network request and says so
    /// (as the Hugging Face tools); stored models and local imports work as usual.
    HF_HUB_OFFLINE;
    /// Disables colour on stderr when set to anything non-empty (no-color.org);
    /// `--color` overrides it.
    NO_COLOR;
    /// Forces colour on stderr even when it is not a terminal; `--color` overrides it.
    FORCE_COLOR;
    /// Milliseconds to connect, or without a received byte, before a hub request counts
    /// as stalled (default 60000); it is retried, and a partial file is kept.
    LLMCTL_STALL_TIMEOUT_MS;
    /// First delay before retrying a failed hub request, in milliseconds, doubled per
    /// retry (default 500; 4 tries in all).
    LLMCTL_RETRY_DELAY_MS;
    /// When `1`, error messages carry the backtraces libraries capture (candle's do when
    /// `RUST_BACKTRACE` is set); otherwise llmctl turns library backtraces off.
    LLMCTL_BACKTRACE;
    /// Read by Rust's standard library: whether library code captures backtraces.
    /// llmctl sets it to `0` unless `LLMCTL_BACKTRACE` is `1`.
    RUST_LIB_BACKTRACE;
    /// The terminal's width in columns, as shells export it; progress lines fit it
    /// (default: the width stderr reports, else 80).
    COLUMNS;
    /// Seconds since 1970 (UTC) that chat templates' `strftime_now` reads as the time
    /// now (the reproducible-builds convention), so a prompt with today's date renders
    /// the same on every run; unset, the local time.
    SOURCE_DATE_EPOCH;
}

pub const DEFAULT_HF_ENDPOINT: &str = "https://huggingface.co";

#[cfg(test)]
mod tests {
    #[test]
    fn every_variable_is_listed_once_with_its_doc() {
        let names: Vec<&str> = super::ALL.iter().map(|v| v.name).collect();
        assert!(names.contains(&super::LLMCTL_HOME) && names.contains(&super::HF_TOKEN));
        let mut unique = names.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), names.len());
        assert!(super::ALL.iter().all(|v| v.doc.trim().len() > 10));
    }
}
