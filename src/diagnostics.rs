//! Exit statuses and error rendering: classify an error chain once at the
//! top, print `error: / caused by: / hint:`, and pick the exit code.

use crate::bench::BenchError;
use crate::commands::bench::BenchInputError;
use crate::engine::EngineError;
use crate::engine::generate::GenerateError;
use crate::engine::kv_cache::ContextFull;
use crate::engine::text::TextError;
use crate::exit::{Diagnostic, ExitStatus};
use crate::hub::{HubError, RevisionError};
use crate::printer::Printer;
use crate::pull::PullError;
use crate::pull::select::SelectError;
use crate::pull::stage::StageError;
use crate::quant::QuantError;
use crate::settings::SettingsError;
use crate::store::StoreError;
use crate::store::model_files::ModelFileError;
use crate::store::reference::{RefError, ReferenceError};

/// The first cause in the chain that knows its hint and exit status. The
/// list is every error type that implements [`Diagnostic`]; each says what
/// it says beside its own definition.
fn diagnosis(error: &anyhow::Error) -> Option<&dyn Diagnostic> {
    type Known = for<'a> fn(&'a (dyn std::error::Error + 'static)) -> Option<&'a dyn Diagnostic>;
    fn as_diagnostic<'a, T: Diagnostic + std::error::Error + 'static>(
        cause: &'a (dyn std::error::Error + 'static),
    ) -> Option<&'a dyn Diagnostic> {
        cause.downcast_ref::<T>().map(|e| e as &dyn Diagnostic)
    }
    const KNOWN: [Known; 17] = [
        as_diagnostic::<SettingsError>,
        as_diagnostic::<RefError>,
        as_diagnostic::<ReferenceError>,
        as_diagnostic::<QuantError>,
        as_diagnostic::<RevisionError>,
        as_diagnostic::<PullError>,
        as_diagnostic::<SelectError>,
        as_diagnostic::<StageError>,
        as_diagnostic::<StoreError>,
        as_diagnostic::<ModelFileError>,
        as_diagnostic::<HubError>,
        as_diagnostic::<EngineError>,
        as_diagnostic::<BenchError>,
        as_diagnostic::<BenchInputError>,
        as_diagnostic::<TextError>,
        as_diagnostic::<GenerateError>,
        as_diagnostic::<ContextFull>,
    ];
    error.chain().find_map(|cause| KNOWN.iter().find_map(|known| known(cause)))
}

/// Prints `error` and returns the exit status it deserves. A closed stdout
/// is not an error: the reader got what it wanted (as `head` does).
pub fn report(error: &anyhow::Error, printer: &Printer) -> ExitStatus {
    if is_broken_pipe(error) {
        return ExitStatus::Success;
    }
    let diagnosis = diagnosis(error);
    let causes: Vec<String> = error.chain().skip(1).map(|c| c.to_string()).collect();
    printer.error(&error.to_string(), &causes, diagnosis.and_then(|d| d.hint()).as_deref());
    diagnosis.map_or(ExitStatus::Failure, |d| d.exit_status())
}

/// How the CLI would classify `error`: its exit status, its hint, and whether
/// it says a model is not in the store (the server answers that with 404).
pub fn classify(error: &anyhow::Error) -> (ExitStatus, Option<String>, bool) {
    let diagnosis = diagnosis(error);
    let not_found = error.chain().any(|c| {
        matches!(
            c.downcast_ref::<StoreError>(),
            Some(StoreError::NotFound(_) | StoreError::TagNotFound { .. } | StoreError::NoSuchTag { .. })
        )
    });
    (diagnosis.map_or(ExitStatus::Failure, |d| d.exit_status()), diagnosis.and_then(|d| d.hint()), not_found)
}

fn is_broken_pipe(error: &anyhow::Error) -> bool {
    error
        .chain()
        .any(|c| c.downcast_ref::<std::io::Error>().is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe))
}
