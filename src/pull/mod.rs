//! `pull`'s domain logic: resolve what a reference means at its source,
//! stage verified files, then commit blobs and manifests under the store
//! lock. A failure at any step leaves the store as it was.

pub mod hf_cache;
mod local;
pub mod record;
mod retry;
pub mod select;
pub mod stage;

use std::path::PathBuf;

use crate::exit::{Diagnostic, ExitStatus};
use crate::hub::{DownloadReporter, Hub, HubConfig, HubError, Revision};
use crate::quant::{GgufType, Quant};
use crate::store::lock::StoreLock;
use crate::store::manifest::{FileEntry, Manifest, SCHEMA_VERSION, Source, now_rfc3339};
use crate::store::reference::ModelRef;
use crate::store::{Store, StoreError, io_err};
use record::RecordError;
use select::{SelectError, Selection};
use stage::{StageError, StagedFile};

/// Where a pull takes its files from.
#[derive(Debug, Clone)]
pub enum PullSource {
    /// A repository on the hub, at a branch, tag or commit.
    Hub { reference: ModelRef, revision: Revision },
    /// A Hugging Face-layout directory, a cached snapshot or a `.gguf` file, stored as `reference`.
    Local { path: PathBuf, reference: ModelRef },
}

/// Milestones a pull reports besides per-file download progress.
pub enum PullEvent<'a> {
    Resolved {
        repo: &'a str,
        commit: &'a str,
        files: usize,
    },
    AlreadyStored {
        file: &'a str,
    },
    /// The files about to be downloaded or copied (those already stored are
    /// not counted) and their bytes, known before the first starts: the
    /// progress of the whole.
    Transferring {
        files: usize,
        bytes: u64,
    },
    WaitingForLock,
    /// Another process is pulling the same repository.
    WaitingForPull {
        repo: &'a str,
    },
    /// A request failed in a way worth retrying; `attempt` of `attempts` starts after a pause.
    /// `what` is a file name, or `listing`.
    Retrying {
        what: &'a str,
        attempt: u32,
        attempts: u32,
        reason: &'a str,
    },
}

pub trait PullReporter: DownloadReporter {
    fn event(&self, event: PullEvent<'_>);
}

#[derive(Debug, thiserror::Error)]
pub enum PullError {
    #[error(transparent)]
    Select(#[from] SelectError),
    #[error(transparent)]
    Stage(#[from] StageError),
    #[error("cannot record the pulled model")]
    Record(#[from] RecordError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Hub(#[from] HubError),
    #[error("the GGUF file's own type is `{actual}`, not `{tag}`")]
    TagMismatch { tag: GgufType, actual: GgufType },
    #[error("`{}` is neither a directory nor a `.gguf` file", .0.display())]
    NotAModelPath(PathBuf),
    #[error("`{file}` in the Hugging Face cache links to `{}`, outside the cache folder `{}`", target.display(), cache.display())]
    LinkOutsideCache { file: String, target: PathBuf, cache: PathBuf },
}

impl Diagnostic for PullError {
    fn hint(&self) -> Option<String> {
        match self {
            PullError::Select(e) => e.hint(),
            PullError::Stage(e) => e.hint(),
            PullError::Store(e) => e.hint(),
            PullError::Hub(e) => e.hint(),
            PullError::TagMismatch { actual, .. } => Some(format!("pull it as `MODEL:{actual}`")),
            PullError::NotAModelPath(_) => {
                Some("give a directory with `config.json`, `tokenizer.json` and safetensors weights, or a `.gguf` file".into())
            }
            PullError::Record(e) => e.hint(),
            PullError::LinkOutsideCache { .. } => Some(
                "a cache snapshot links only into its own `blobs/`: re-download it with the Hugging Face tools, or copy the files into a plain folder and import that".into(),
            ),
        }
    }

    fn exit_status(&self) -> ExitStatus {
        match self {
            PullError::Select(SelectError::Quant(_)) | PullError::TagMismatch { .. } => ExitStatus::Usage,
            PullError::Store(e) => e.exit_status(),
            PullError::Stage(StageError::Interrupted) => ExitStatus::Interrupted,
            _ => ExitStatus::Failure,
        }
    }
}

/// What a pull stored.
#[derive(Debug)]
pub struct PullOutcome {
    pub manifests: Vec<Manifest>,
    pub fetched_bytes: u64,
    pub reused_files: usize,
}

pub fn pull(
    store: &Store,
    hub: &HubConfig,
    source: &PullSource,
    reporter: &dyn PullReporter,
) -> Result<PullOutcome, PullError> {
    match source {
        PullSource::Hub { reference, revision } => pull_from_hub(store, hub, reference, revision, reporter),
        PullSource::Local { path, reference } => local::import(store, path, reference, reporter),
    }
}

fn pull_from_hub(
    store: &Store,
    config: &HubConfig,
    reference: &ModelRef,
    revision: &Revision,
    reporter: &dyn PullReporter,
) -> Result<PullOutcome, PullError> {
    let hub = Hub::new(config)?;
    // One pull of a repository at a time: a second waits, then finds the
    // first one's blobs in the store.
    let locks = store.root().join("locks");
    std::fs::create_dir_all(&locks).map_err(io_err("create", &locks))?;
    let lock_path = locks.join(format!("pull-{}.lock", reference.name.flat()));
    let repo = reference.name.as_str();
    let _downloading = StoreLock::acquire(&lock_path, || reporter.event(PullEvent::WaitingForPull { repo }))
        .map_err(io_err("lock", &lock_path))?;
    store.sweep_leftovers(&store.lock(|| reporter.event(PullEvent::WaitingForLock))?)?;
    let listing = retry::with_retries(&config.resilience, "listing", reporter, HubError::retry, || {
        hub.listing(&reference.name, revision)
    })?;
    let selection = select::select(reference, &listing.files)?;
    // Blobs already stored are not fetched again; pinned, no `rm` collects them before our manifest names them.
    let pinned = {
        let lock = store.lock(|| reporter.event(PullEvent::WaitingForLock))?;
        store.pin_stored(selection.files.iter().filter_map(|f| f.sha256), &lock)?
    };
    let commit_id = listing.commit.to_string();
    reporter.event(PullEvent::Resolved { repo, commit: &commit_id, files: selection.files.len() });
    let to_fetch = selection.files.iter().filter(|f| !f.sha256.is_some_and(|d| pinned.contains(&d)));
    let (files, bytes) = to_fetch.fold((0, 0), |(n, sum), f| (n + 1, sum + f.size.unwrap_or(0)));
    reporter.event(PullEvent::Transferring { files, bytes });
    // A failed download keeps its partial file for the next pull to resume.
    let remote =
        stage::Remote { hub: &hub, repo: &reference.name, commit: &listing.commit, resilience: config.resilience };
    let staged = stage::from_hub(&remote, store, &pinned, &selection.files, reporter)?;
    let source = Source::Hub {
        endpoint: hub.endpoint().into(),
        repo: repo.into(),
        commit: commit_id,
        revision: Some(revision.to_string()),
    };
    let downloaded: Vec<PathBuf> = staged.iter().filter(|f| !f.in_store).map(|f| f.path.clone()).collect();
    let outcome = commit(store, reference, &selection, staged, source, reporter);
    if outcome.is_err() {
        // Complete, verified files that are not a usable model: no resuming to keep them for.
        for path in downloaded {
            let _ = std::fs::remove_file(path);
        }
    }
    outcome
}

/// Reads the staged files, then moves blobs and writes manifests under the lock.
fn commit(
    store: &Store,
    reference: &ModelRef,
    selection: &Selection,
    staged: Vec<StagedFile>,
    source: Source,
    reporter: &dyn PullReporter,
) -> Result<PullOutcome, PullError> {
    // Pinned blobs stay; this catches one deleted behind llmctl's back, before it is read and again at the end.
    still_stored(store, &staged)?;
    let (facts, gguf_type) = record::read_facts(selection.format, &staged)?;
    if let (Some(Quant::Gguf(tag)), Some(actual)) = (reference.tag, gguf_type)
        && tag != actual
    {
        return Err(PullError::TagMismatch { tag, actual });
    }
    let base = Manifest {
        schema_version: SCHEMA_VERSION,
        name: reference.name.clone(),
        tag: None,
        source,
        format: selection.format,
        quantization: gguf_type.map(Quant::Gguf),
        facts,
        files: staged.iter().map(|f| FileEntry { name: f.name.clone(), size: f.size, sha256: f.sha256 }).collect(),
        pulled_at: now_rfc3339(),
    };
    let manifests = manifests_for(reference, base);
    let lock = store.lock(|| reporter.event(PullEvent::WaitingForLock))?;
    still_stored(store, &staged)?;
    for file in &staged {
        if file.in_store {
            reporter.event(PullEvent::AlreadyStored { file: &file.name });
        } else {
            store.adopt_blob(&file.path, &file.sha256, &lock)?;
        }
    }
    for manifest in &manifests {
        store.write_manifest(manifest, &lock)?;
    }
    let fetched_bytes = staged.iter().filter(|f| !f.in_store).map(|f| f.size).sum();
    let reused_files = staged.iter().filter(|f| f.in_store).count();
    Ok(PullOutcome { manifests, fetched_bytes, reused_files })
}

/// Fails if a blob the pull reuses is gone from the store.
fn still_stored(store: &Store, staged: &[StagedFile]) -> Result<(), StoreError> {
    match staged.iter().find(|f| f.in_store && !store.has_blob(&f.sha256)) {
        Some(gone) => Err(StoreError::Vanished { file: gone.name.clone() }),
        None => Ok(()),
    }
}

/// A safetensors pull always records the plain name and, for `:kv_*`, the
/// tag too (same blobs); a GGUF pull records the name as asked.
fn manifests_for(reference: &ModelRef, base: Manifest) -> Vec<Manifest> {
    match reference.tag {
        Some(Quant::Kv(_)) => {
            let tagged = Manifest { tag: reference.tag, quantization: reference.tag, ..base.clone() };
            vec![base, tagged]
        }
        tag => vec![Manifest { tag, ..base }],
    }
}
