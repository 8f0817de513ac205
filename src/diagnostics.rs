//! Exit statuses and error rendering: classify an error chain once at the
//! top, print `error: / caused by: / hint:`, and pick the exit code.

use std::process::ExitCode;

use crate::bench::BenchError;
use crate::commands::bench::BenchInputError;
use crate::engine::EngineError;
use crate::engine::kv_cache::ContextFull;
use crate::engine::text::TextError;
use crate::hub::HubError;
use crate::printer::Printer;
use crate::pull::PullError;
use crate::pull::select::SelectError;
use crate::pull::stage::StageError;
use crate::quant::QuantError;
use crate::settings::SettingsError;
use crate::store::StoreError;
use crate::store::reference::{RefError, ReferenceError};

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

impl From<ExitStatus> for ExitCode {
    fn from(status: ExitStatus) -> ExitCode {
        ExitCode::from(match status {
            ExitStatus::Success => 0,
            ExitStatus::Failure => 1,
            ExitStatus::Usage => 2,
            ExitStatus::Interrupted => 130,
        })
    }
}

/// What the renderer needs to know about an error.
struct Diagnosis {
    usage: bool,
    hint: Option<String>,
}

/// Errors that know their hint and whether they are the user's input.
trait Diagnose {
    fn diagnose(&self) -> Diagnosis;
}

macro_rules! diagnose {
    ($($ty:ty => |$e:ident| ($usage:expr, $hint:expr)),+ $(,)?) => {
        $(impl Diagnose for $ty {
            fn diagnose(&self) -> Diagnosis {
                let $e = self;
                Diagnosis { usage: $usage, hint: $hint }
            }
        })+

        fn diagnose_chain(error: &anyhow::Error) -> Option<Diagnosis> {
            error.chain().find_map(|cause| {
                $(if let Some(e) = cause.downcast_ref::<$ty>() { return Some(e.diagnose()); })+
                None
            })
        }
    };
}

diagnose! {
    SettingsError => |e| (!matches!(e, SettingsError::NoStoreDir), e.hint()),
    RefError => |e| (true, Some(match e { RefError::Name(n) => n.hint().to_string(), RefError::Quant(q) => q.hint() })),
    ReferenceError => |e| (true, Some(e.hint().to_string())),
    QuantError => |e| (true, Some(e.hint())),
    PullError => |e| (e.is_usage(), e.hint()),
    SelectError => |e| (matches!(e, SelectError::Quant(_)), e.hint()),
    StageError => |e| (false, e.hint()),
    StoreError => |e| (e.is_usage(), e.hint()),
    HubError => |e| (false, e.hint()),
    EngineError => |e| (e.is_usage(), e.hint()),
    BenchError => |e| (e.is_usage(), e.hint()),
    BenchInputError => |e| (true, Some(e.hint().into())),
    TextError => |_e| (false, Some("use `--raw` to send the prompt without the template".into())),
    ContextFull => |_e| (false, Some("raise `--ctx-size` (up to the model's context length) or shorten the prompt".into())),
}

/// Prints `error` and returns the exit status it deserves. A closed stdout
/// is not an error: the reader got what it wanted (as `head` does).
pub fn report(error: &anyhow::Error, printer: &Printer) -> ExitStatus {
    if is_broken_pipe(error) {
        return ExitStatus::Success;
    }
    let diagnosis = diagnose_chain(error).unwrap_or(Diagnosis { usage: false, hint: None });
    let causes: Vec<String> = error.chain().skip(1).map(|c| c.to_string()).collect();
    printer.error(&error.to_string(), &causes, diagnosis.hint.as_deref());
    // `PullError::Stage` is transparent: the chain holds the `PullError`, not its `StageError`.
    let interrupted = error.chain().any(|c| {
        matches!(c.downcast_ref::<StageError>(), Some(StageError::Interrupted))
            || matches!(c.downcast_ref::<PullError>(), Some(PullError::Stage(StageError::Interrupted)))
    });
    match (interrupted, diagnosis.usage) {
        (true, _) => ExitStatus::Interrupted,
        (false, true) => ExitStatus::Usage,
        (false, false) => ExitStatus::Failure,
    }
}

fn is_broken_pipe(error: &anyhow::Error) -> bool {
    error
        .chain()
        .any(|c| c.downcast_ref::<std::io::Error>().is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe))
}
