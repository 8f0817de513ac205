//! `pull`'s domain logic: resolve what a reference means at its source,
//! stage verified files, then commit blobs and manifests under the store
//! lock. A failure at any step leaves the store as it was.

pub mod record;
pub mod select;
pub mod stage;

use std::path::{Path, PathBuf};

use crate::hub::{DownloadReporter, Hub, HubConfig, HubError, RemoteFile, forget_downloads};
use crate::quant::{Format, GgufType, Quant, QuantError};
use crate::store::atomic::{TempDirGuard, unique_name};
use crate::store::manifest::{Manifest, SCHEMA_VERSION, Source, FileEntry, now_rfc3339};
use crate::store::reference::ModelRef;
use crate::store::lock::StoreLock;
use crate::store::{Store, StoreError, io_err};
use record::RecordError;
use select::{SelectError, Selection};
use stage::{StageError, StagedFile};

/// Where a pull takes its files from.
#[derive(Debug, Clone)]
pub enum PullSource {
    Hub(ModelRef),
    /// A Hugging Face-layout directory or a `.gguf` file, stored as `reference`.
    Local { path: PathBuf, reference: ModelRef },
}

/// Milestones a pull reports besides per-file download progress.
pub enum PullEvent<'a> {
    Resolved { repo: &'a str, commit: &'a str, files: usize },
    AlreadyStored { file: &'a str },
    WaitingForLock,
    /// Another process is pulling the same repository.
    WaitingForPull { repo: &'a str },
    /// A download failed in a way worth retrying; `attempt` of `attempts` starts after a pause.
    Retrying { file: &'a str, attempt: u32, attempts: u32, reason: &'a str },
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
}

impl PullError {
    pub fn hint(&self) -> Option<String> {
        match self {
            PullError::Select(e) => e.hint(),
            PullError::Stage(e) => e.hint(),
            PullError::Store(e) => e.hint(),
            PullError::Hub(e) => e.hint(),
            PullError::TagMismatch { actual, .. } => Some(format!("pull it as `MODEL:{actual}`")),
            PullError::NotAModelPath(_) => {
                Some("give a directory with `config.json`, `tokenizer.json` and safetensors weights, or a `.gguf` file".into())
            }
            PullError::Record(_) => Some("the files are not a usable model; nothing was stored".into()),
        }
    }

    pub fn is_usage(&self) -> bool {
        match self {
            PullError::Select(SelectError::Quant(_)) | PullError::TagMismatch { .. } => true,
            PullError::Store(e) => e.is_usage(),
            _ => false,
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
        PullSource::Hub(reference) => pull_from_hub(store, hub, reference, reporter),
        PullSource::Local { path, reference } => import_local(store, path, reference, reporter),
    }
}

fn pull_from_hub(
    store: &Store,
    config: &HubConfig,
    reference: &ModelRef,
    reporter: &dyn PullReporter,
) -> Result<PullOutcome, PullError> {
    let hub = Hub::new(config)?;
    // One pull of a repository at a time shares its partial downloads: a second
    // waits, then finds the first one's blobs in the store.
    let locks = store.root().join("locks");
    std::fs::create_dir_all(&locks).map_err(io_err("create", &locks))?;
    let lock_path = locks.join(format!("pull-{}.lock", reference.name.as_str().replace('/', "--")));
    let repo_name = reference.name.as_str();
    let _downloading = StoreLock::acquire(&lock_path, || reporter.event(PullEvent::WaitingForPull { repo: repo_name }))
        .map_err(io_err("lock", &lock_path))?;
    let listing = hub.listing(&reference.name)?;
    let selection = select::select(reference, &listing.files)?;
    let repo = reference.name.as_str();
    reporter.event(PullEvent::Resolved { repo, commit: &listing.commit, files: selection.files.len() });
    // A failed download keeps its partial file for the next pull to resume.
    let remote = stage::Remote { hub: &hub, repo: &reference.name, commit: &listing.commit, resilience: config.resilience };
    let staged = stage::from_hub(&remote, store, &selection.files, reporter)?;
    let source = Source::Hub { endpoint: hub.endpoint().into(), repo: repo.into(), commit: listing.commit.clone() };
    let outcome = commit(store, reference, &selection, staged, source, reporter);
    forget_downloads(&config.download_dir, &reference.name);
    outcome
}

fn import_local(
    store: &Store,
    path: &Path,
    reference: &ModelRef,
    reporter: &dyn PullReporter,
) -> Result<PullOutcome, PullError> {
    let (dir, selection) = local_selection(path, reference)?;
    let staging = store.staging_dir().join(unique_name("pull"));
    std::fs::create_dir_all(&staging).map_err(io_err("create", &staging))?;
    let _cleanup = TempDirGuard(staging.clone());
    let names: Vec<String> = selection.files.iter().map(|f| f.name.clone()).collect();
    let staged = stage::from_local(&dir, &names, &staging)?;
    let absolute = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    let source = Source::Local { path: absolute.display().to_string() };
    commit(store, reference, &selection, staged, source, reporter)
}

/// The directory to read from and the files to take.
fn local_selection(path: &Path, reference: &ModelRef) -> Result<(PathBuf, Selection), PullError> {
    if path.is_dir() {
        let files = list_local_dir(path)?;
        return Ok((path.to_path_buf(), select::select(reference, &files)?));
    }
    let is_gguf = path.extension().is_some_and(|e| e.eq_ignore_ascii_case("gguf"));
    let (Some(dir), Some(name), true) = (path.parent(), path.file_name(), is_gguf && path.is_file()) else {
        return Err(PullError::NotAModelPath(path.to_path_buf()));
    };
    if let Some(Quant::Kv(quant)) = reference.tag {
        return Err(SelectError::Quant(QuantError::KvOnGguf { quant, model: reference.name.to_string() }).into());
    }
    let file = RemoteFile { name: name.to_string_lossy().into_owned(), size: None, sha256: None, git_oid: None };
    let dir = if dir.as_os_str().is_empty() { Path::new(".") } else { dir };
    Ok((dir.to_path_buf(), Selection { format: Format::Gguf, files: vec![file] }))
}

fn list_local_dir(dir: &Path) -> Result<Vec<RemoteFile>, PullError> {
    let entries = std::fs::read_dir(dir).map_err(io_err("read", dir))?;
    let mut files = Vec::new();
    for entry in entries {
        let entry = entry.map_err(io_err("read", dir))?;
        if entry.file_type().is_ok_and(|t| t.is_file())
            && let Some(name) = entry.file_name().to_str() {
                files.push(RemoteFile { name: name.into(), size: None, sha256: None, git_oid: None });
            }
    }
    Ok(files)
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
    let (facts, gguf_type) = record::read_facts(selection.format, &staged)?;
    if let (Some(Quant::Gguf(tag)), Some(actual)) = (reference.tag, gguf_type)
        && tag != actual {
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
