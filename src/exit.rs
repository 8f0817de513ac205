//! Exit statuses, and the one way an error says what the user can do and
//! which status it deserves: [`Diagnostic`], implemented beside each error
//! type. A leaf module: every layer may use it; `diagnostics` renders.

use std::process::ExitCode;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitStatus {
    Success,
    /// The command ran and failed.
    Failure,
    /// The input was wrong (bad reference, tag, flag), or an internal error.
    Usage,
    /// Ctrl-C or SIGTERM stopped the command (it cleaned up first).
    Interrupted,
}

impl ExitStatus {
    /// Every status, for the man page's EXIT STATUS section.
    pub const ALL: [ExitStatus; 4] =
        [ExitStatus::Success, ExitStatus::Failure, ExitStatus::Usage, ExitStatus::Interrupted];

    pub fn code(self) -> u8 {
        match self {
            ExitStatus::Success => 0,
            ExitStatus::Failure => 1,
            ExitStatus::Usage => 2,
            ExitStatus::Interrupted => 130,
        }
    }

    /// What the status means, for people (README's "Exit codes" says the same).
    pub fn meaning(self) -> &'static str {
        match self {
            ExitStatus::Success => "success; also when stdout is closed early (`llmctl list | head -1`)",
            ExitStatus::Failure => {
                "the command ran and failed (network, hub, integrity, missing files, unsupported model)"
            }
            ExitStatus::Usage => {
                "the input was wrong: bad reference or tag, unknown model, bad flag, a device or context the run cannot have"
            }
            ExitStatus::Interrupted => "interrupted (Ctrl-C or SIGTERM during an import, after cleaning up)",
        }
    }
}

impl From<ExitStatus> for ExitCode {
    fn from(status: ExitStatus) -> ExitCode {
        ExitCode::from(status.code())
    }
}

/// What an error tells the renderer besides its message.
pub trait Diagnostic {
    /// What to do about it, printed after the error as `hint: …`.
    fn hint(&self) -> Option<String> {
        None
    }

    /// The status the command exits with: a failure unless said otherwise.
    fn exit_status(&self) -> ExitStatus {
        ExitStatus::Failure
    }
}
