//! `llmctl completions SHELL`: print the completion script for a shell.

use crate::cli::Shell;
use crate::cli_docs::completions::script;
use crate::exit::ExitStatus;
use crate::printer::Printer;

pub fn execute(shell: Shell, printer: &Printer) -> anyhow::Result<ExitStatus> {
    printer.data(&script(shell))?;
    Ok(ExitStatus::Success)
}
