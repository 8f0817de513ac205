//! The only place that writes to stdout and stderr. stdout carries data
//! (tables, JSON, generated text); everything else goes to stderr.

// The one module allowed to print (`Cargo.toml`'s lints deny it elsewhere).
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::io::{self, Write};

use indicatif::ProgressDrawTarget;

#[derive(Debug, Clone, Copy)]
pub struct Printer {
    quiet: bool,
    color: bool,
    progress: bool,
    stdout_is_terminal: bool,
    /// The terminal's width: `COLUMNS`, else what stderr reports.
    columns: Option<usize>,
}

#[derive(Debug, Clone, Copy)]
enum Style {
    Error,
    Warning,
    Hint,
}

impl Style {
    fn paint(self, text: &str, color: bool) -> String {
        if !color {
            return text.to_string();
        }
        let code = match self {
            Style::Error => "1;31",
            Style::Warning => "1;33",
            Style::Hint => "1;36",
        };
        format!("\x1b[{code}m{text}\x1b[0m")
    }
}

impl Printer {
    pub fn new(quiet: bool, color: bool, progress: bool, stdout_is_terminal: bool) -> Printer {
        Printer { quiet, color, progress, stdout_is_terminal, columns: None }
    }

    /// The same printer, drawing progress for a terminal `columns` wide.
    pub fn with_columns(self, columns: Option<usize>) -> Printer {
        Printer { columns, ..self }
    }

    /// How wide progress lines may be (settings resolved it), else 80.
    pub fn progress_width(&self) -> usize {
        self.columns.unwrap_or(crate::ui::progress_line::DEFAULT_WIDTH)
    }

    /// Model-generated text: on a terminal, control sequences are removed so
    /// a model cannot move the cursor or retitle the window; pipes get it as is.
    pub fn generated(&self, text: &str) -> io::Result<()> {
        if self.stdout_is_terminal { self.data(&sanitize(text)) } else { self.data(text) }
    }

    /// Whether `--quiet` is off.
    pub fn is_chatty(&self) -> bool {
        !self.quiet
    }

    /// An interactive prompt marker on stderr, without a newline.
    pub fn prompt_marker(&self, marker: &str) {
        let mut err = io::stderr().lock();
        let _ = err.write_all(marker.as_bytes());
        let _ = err.flush();
    }

    /// Writes data to stdout; a closed pipe surfaces as `BrokenPipe`.
    pub fn data(&self, text: &str) -> io::Result<()> {
        let mut out = io::stdout().lock();
        out.write_all(text.as_bytes())?;
        out.flush()
    }

    /// A status line for people, hidden by `--quiet`.
    pub fn status(&self, text: &str) {
        if !self.quiet {
            eprintln!("{text}");
        }
    }

    pub fn warning(&self, text: &str) {
        eprintln!("{} {text}", Style::Warning.paint("warning:", self.color));
    }

    /// A hint after a warning.
    pub fn hint(&self, text: &str) {
        eprintln!("{} {text}", Style::Hint.paint("hint:", self.color));
    }

    /// Prints an error with its causes and hint, as `diagnostics` rendered them.
    pub fn error(&self, message: &str, causes: &[String], hint: Option<&str>) {
        let mut text = format!("{} {message}\n", Style::Error.paint("error:", self.color));
        for cause in causes {
            text.push_str(&format!("  caused by: {cause}\n"));
        }
        if let Some(hint) = hint {
            text.push_str(&format!("{} {hint}\n", Style::Hint.paint("hint:", self.color)));
        }
        let _ = io::stderr().write_all(text.as_bytes());
    }

    /// Where progress bars draw: stderr on a terminal, nowhere otherwise.
    pub fn progress_target(&self) -> ProgressDrawTarget {
        if self.progress { ProgressDrawTarget::stderr() } else { ProgressDrawTarget::hidden() }
    }

    /// Lines for people that `--verbose` asked for (shown even with `--quiet`).
    pub fn detail(&self, text: &str) {
        eprintln!("{text}");
    }

    /// Clap's own help, version and usage errors, as clap formats them.
    pub fn clap(&self, error: &clap::Error) {
        let _ = error.print();
    }
}

/// Drops control characters other than newline and tab.
fn sanitize(text: &str) -> String {
    text.chars().filter(|c| !c.is_control() || *c == '\n' || *c == '\t').collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn sanitize_removes_escape_sequences_but_keeps_layout() {
        assert_eq!(super::sanitize("a\x1b]0;title\x07b\n\tc\r"), "a]0;titleb\n\tc");
    }
}
