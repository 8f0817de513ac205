//! The only place that writes to stdout and stderr. stdout carries data
//! (tables, JSON, generated text); everything else goes to stderr.

use std::io::{self, Write};

use indicatif::ProgressDrawTarget;

#[derive(Debug, Clone, Copy)]
pub struct Printer {
    quiet: bool,
    color: bool,
    progress: bool,
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
    pub fn new(quiet: bool, color: bool, progress: bool) -> Printer {
        Printer { quiet, color, progress }
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

    /// Clap's own help, version and usage errors, as clap formats them.
    pub fn clap(&self, error: &clap::Error) {
        let _ = error.print();
    }
}
