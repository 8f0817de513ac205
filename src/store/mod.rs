//! The local model store under `$LLMCTL_HOME`: content-addressed blobs
//! shared between tags, one manifest per `name[:tag]`, a lock for writers,
//! and the rules that find the manifest a reference means.
//!
//! Layout: `blobs/sha256-<hex>`, `manifests/<org|_>/<name>/<tag|_>.json`,
//! `staging/` (files being imported, one area per command), `downloads/`
//! (resumable partial downloads, named `<org>--<name>.sha256-<hex>.part` or
//! `<org>--<name>.git-<blob id>.part`), `pins/` (stored blobs running pulls
//! count on, see [`pins`]), `locks/` (one per repository being pulled), `lock`.
//!
//! A damaged manifest is its own model's problem: listing, finding and
//! removing other models go on, and garbage collection keeps every blob
//! whose digest appears in a damaged manifest's bytes.

pub mod atomic;
pub mod blobs;
pub mod lock;
pub mod manifest;
pub mod model_files;
pub mod pins;
pub mod reference;
pub mod staging;

use std::collections::BTreeSet;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use blobs::Digest;
use lock::StoreLock;
use manifest::{Manifest, ManifestError};
use reference::{ModelName, ModelRef};

use crate::exit::{Diagnostic, ExitStatus};
use crate::quant::{Format, Quant, QuantError};

/// File name used for a manifest with no tag (tags never start with `_`).
const UNTAGGED: &str = "_";

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("model `{0}` is not in the store")]
    NotFound(ModelName),
    #[error("`{reference}` is not in the store{}", available_suffix(available))]
    TagNotFound { reference: ModelRef, available: Vec<String> },
    #[error("`{reference}` is not in the store{}", available_suffix(available))]
    NoSuchTag { reference: ModelRef, available: Vec<String> },
    #[error("`{name}` is stored under several tags and none is untagged: {}", tags.join(", "))]
    Ambiguous { name: ModelName, tags: Vec<String> },
    #[error(transparent)]
    Quant(#[from] QuantError),
    #[error("the manifest of `{reference}` is damaged: `{}`", path.display())]
    BadManifest { reference: ModelRef, path: PathBuf, source: ManifestError },
    #[error("cannot {action} `{}`", path.display())]
    Io { action: &'static str, path: PathBuf, source: io::Error },
    #[error("`{name}` has missing or damaged files in the store: {}", files.join(", "))]
    Damaged { name: String, files: Vec<String> },
    #[error("the stored blob of `{file}` disappeared while the pull ran")]
    Vanished { file: String },
}

fn available_suffix(available: &[String]) -> String {
    if available.is_empty() { String::new() } else { format!(" (stored: {})", available.join(", ")) }
}

impl Diagnostic for StoreError {
    fn hint(&self) -> Option<String> {
        match self {
            StoreError::NotFound(name) => Some(format!("run `llmctl pull {name}` first, or see `llmctl list`")),
            StoreError::TagNotFound { reference, .. } => {
                Some(format!("a GGUF weight type is a different file: run `llmctl pull {reference}`"))
            }
            StoreError::NoSuchTag { .. } => Some("`llmctl list` shows what is stored".into()),
            StoreError::Ambiguous { name, tags } => Some(format!("name one, e.g. `{name}:{}`", tags[0])),
            StoreError::Quant(e) => e.hint(),
            StoreError::BadManifest { reference, .. } => {
                Some(format!("remove it with `llmctl rm {reference}`, then pull the model again"))
            }
            StoreError::Io { .. } => None,
            StoreError::Damaged { name, .. } => {
                Some(format!("pull it again: `llmctl rm {name}` then `llmctl pull {name}`"))
            }
            StoreError::Vanished { .. } => Some(
                "something other than llmctl deleted it from the store's `blobs/`; nothing was recorded, run the pull again".into(),
            ),
        }
    }

    /// The user asked for something the store cannot mean: a usage error.
    fn exit_status(&self) -> ExitStatus {
        match self {
            StoreError::BadManifest { .. }
            | StoreError::Io { .. }
            | StoreError::Damaged { .. }
            | StoreError::Vanished { .. } => ExitStatus::Failure,
            _ => ExitStatus::Usage,
        }
    }
}

pub(crate) fn io_err<'a>(action: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> StoreError + use<'a> {
    move |source| StoreError::Io { action, path: path.to_path_buf(), source }
}

/// A manifest that could not be read, reported beside the readable ones.
#[derive(Debug)]
pub struct Unreadable {
    /// What its path says it is.
    pub reference: ModelRef,
    pub path: PathBuf,
    pub error: StoreError,
}

impl Unreadable {
    /// Why it could not be read, in a few words.
    pub fn reason(&self) -> String {
        match &self.error {
            StoreError::BadManifest { source, .. } => source.to_string(),
            StoreError::Io { source, .. } => source.to_string(),
            other => other.to_string(),
        }
    }
}

/// What `Store::verify` found of one file.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case", tag = "state", content = "detail")]
pub enum BlobState {
    Intact,
    Missing,
    /// Its bytes no longer hash to its name or have another size.
    Damaged,
    Unreadable(String),
}

/// What lives under the store's root, for people (the man page's FILES
/// section); the paths are those the methods below and `pins`, `staging`
/// and `pull` build.
pub const LAYOUT: &[(&str, &str)] = &[
    ("blobs/sha256-<hex>", "file contents, stored once whatever the tags"),
    (
        "manifests/<org>/<name>/<tag>.json",
        "one `name[:tag]` (`_` for no org or no tag): source, format, shape, quantization, files and their sha256",
    ),
    ("downloads/<org>--<name>.sha256-<hex>.part", "partial downloads, resumed by the next `pull`"),
    ("staging/<area>/", "files being imported, held by a lock on `staging/<area>.lock` while the command lives"),
    ("pins/<id>.pin", "blobs a running pull reuses, which garbage collection keeps"),
    ("locks/pull-<org>--<name>.lock", "makes two pulls of one repository take turns"),
    ("lock", "held exclusively by every writer"),
];

#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
}

impl Store {
    /// Opens (creating if needed) the store at `root`.
    pub fn open(root: &Path) -> Result<Store, StoreError> {
        let store = Store { root: root.to_path_buf() };
        for dir in [store.blobs_dir(), store.manifests_dir(), store.staging_dir(), store.downloads_dir()] {
            fs::create_dir_all(&dir).map_err(io_err("create", &dir))?;
        }
        Ok(store)
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn blobs_dir(&self) -> PathBuf {
        self.root.join("blobs")
    }

    fn manifests_dir(&self) -> PathBuf {
        self.root.join("manifests")
    }

    pub fn staging_dir(&self) -> PathBuf {
        self.root.join("staging")
    }

    pub fn downloads_dir(&self) -> PathBuf {
        self.root.join("downloads")
    }

    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.blobs_dir().join(digest.file_name())
    }

    pub fn has_blob(&self, digest: &Digest) -> bool {
        self.blob_path(digest).is_file()
    }

    /// Re-reads every file of `manifest` and checks it against the manifest's
    /// size and sha256: what `show --verify` reports.
    pub fn verify(&self, manifest: &manifest::Manifest) -> Vec<(String, BlobState)> {
        manifest
            .files
            .iter()
            .map(|f| {
                let path = self.blob_path(&f.sha256);
                let state = match blobs::hash_file(&path) {
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => BlobState::Missing,
                    Err(e) => BlobState::Unreadable(e.to_string()),
                    Ok((digest, size)) if digest == f.sha256 && size == f.size => BlobState::Intact,
                    Ok(_) => BlobState::Damaged,
                };
                (f.name.clone(), state)
            })
            .collect()
    }

    fn model_dir(&self, name: &ModelName) -> PathBuf {
        let (org, model) = name.parts();
        self.manifests_dir().join(org.unwrap_or(UNTAGGED)).join(model)
    }

    fn manifest_path(&self, name: &ModelName, tag: Option<Quant>) -> PathBuf {
        let file = tag.map_or_else(|| UNTAGGED.to_string(), |t| t.to_string());
        self.model_dir(name).join(format!("{file}.json"))
    }

    /// Takes the writers' lock; `on_wait` runs if another process holds it.
    pub fn lock(&self, on_wait: impl FnOnce()) -> Result<StoreLock, StoreError> {
        let path = self.root.join("lock");
        StoreLock::acquire(&path, on_wait).map_err(io_err("lock", &path))
    }

    /// Reads one manifest; one that does not parse, or names another
    /// model than its path, is `BadManifest`.
    fn read_manifest_file(path: &Path, reference: &ModelRef) -> Result<Manifest, StoreError> {
        let bytes = fs::read(path).map_err(io_err("read", path))?;
        let bad = |source| StoreError::BadManifest { reference: reference.clone(), path: path.into(), source };
        let manifest = Manifest::from_json(&bytes).map_err(bad)?;
        if manifest.reference() != *reference {
            return Err(bad(ManifestError::Misplaced(manifest.reference().to_string())));
        }
        Ok(manifest)
    }

    /// Every manifest in the store, plus those that could not be read.
    pub fn manifests(&self) -> Result<(Vec<Manifest>, Vec<Unreadable>), StoreError> {
        let mut paths = Vec::new();
        for org in read_dir_sorted(&self.manifests_dir())? {
            for model in read_dir_sorted(&org)? {
                paths.extend(read_dir_sorted(&model)?.into_iter().filter(|p| is_manifest_file(p)));
            }
        }
        Ok(read_all(paths.into_iter().filter_map(|p| reference_of_path(&p).map(|r| (p, r)))))
    }

    /// The manifests stored under `name`, untagged first, and those of its
    /// tags that could not be read.
    pub fn manifests_of(&self, name: &ModelName) -> Result<(Vec<Manifest>, Vec<Unreadable>), StoreError> {
        let paths = read_dir_sorted(&self.model_dir(name))?.into_iter().filter(|p| is_manifest_file(p));
        let named = paths.filter_map(|p| {
            let tag = tag_of_file(&p)?;
            Some((p, ModelRef { name: name.clone(), tag }))
        });
        let (mut found, unreadable) = read_all(named);
        found.sort_by_key(|m| m.tag.map(|t| t.to_string()));
        Ok((found, unreadable))
    }

    /// Whether a manifest, readable or not, is stored under exactly this name and tag.
    pub fn has_manifest(&self, reference: &ModelRef) -> bool {
        self.manifest_path(&reference.name, reference.tag).is_file()
    }

    /// The manifest `reference` means, following the quantization rules:
    /// a `kv_*` tag is a run-time choice on any safetensors copy of the
    /// model; a GGUF tag must have been pulled. A damaged manifest stops
    /// only the references that would mean it.
    pub fn find(&self, reference: &ModelRef) -> Result<Manifest, StoreError> {
        let (all, mut unreadable) = self.manifests_of(&reference.name)?;
        if let Some(exact) = all.iter().find(|m| m.tag == reference.tag) {
            return Ok(exact.clone());
        }
        if let Some(i) = unreadable.iter().position(|u| u.reference == *reference) {
            return Err(unreadable.swap_remove(i).error);
        }
        if all.is_empty() {
            return Err(match unreadable.into_iter().next() {
                Some(damaged) => damaged.error,
                None => StoreError::NotFound(reference.name.clone()),
            });
        }
        match reference.tag {
            Some(Quant::Kv(quant)) => find_for_kv(all, reference, quant),
            Some(Quant::Gguf(quant)) => find_for_weight_type(all, reference, quant),
            None => find_untagged(all, reference),
        }
    }

    /// Writes a manifest in place of any previous one under its name and tag.
    pub fn write_manifest(&self, manifest: &Manifest, _lock: &StoreLock) -> Result<(), StoreError> {
        let path = self.manifest_path(&manifest.name, manifest.tag);
        atomic::write_atomic(&path, &manifest.to_json()).map_err(io_err("write", &path))
    }

    /// Removes one manifest; returns whether it existed.
    pub fn remove_manifest(&self, reference: &ModelRef, _lock: &StoreLock) -> Result<bool, StoreError> {
        let path = self.manifest_path(&reference.name, reference.tag);
        match fs::remove_file(&path) {
            Ok(()) => {
                self.prune_empty_dirs(&reference.name);
                Ok(true)
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(io_err("remove", &path)(e)),
        }
    }

    fn prune_empty_dirs(&self, name: &ModelName) {
        let model = self.model_dir(name);
        // remove_dir fails on non-empty directories, which is what we want.
        let _ = fs::remove_dir(&model);
        if let Some(org) = model.parent() {
            let _ = fs::remove_dir(org);
        }
    }

    /// Deletes blobs that no manifest references and no running pull has
    /// pinned; returns the bytes freed. A damaged manifest keeps every blob
    /// whose digest its bytes still spell; one that cannot be read at all
    /// stops the collection (nothing is deleted).
    pub fn collect_garbage(&self, lock: &StoreLock) -> Result<u64, StoreError> {
        let (manifests, unreadable) = self.manifests()?;
        let mut live: BTreeSet<String> =
            manifests.iter().flat_map(|m| m.files.iter().map(|f| f.sha256.file_name())).collect();
        for damaged in unreadable {
            let bytes = fs::read(&damaged.path).map_err(io_err("read", &damaged.path))?;
            live.extend(digests_spelled_in(&bytes).map(|d| d.file_name()));
        }
        live.extend(self.pinned_blob_names(lock)?);
        let mut freed = 0;
        for path in read_dir_sorted(&self.blobs_dir())? {
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
            if !live.contains(name) {
                freed += fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
                fs::remove_file(&path).map_err(io_err("remove", &path))?;
            }
        }
        Ok(freed)
    }

    /// Moves a verified file into the blob store (or drops it if the blob exists).
    pub fn adopt_blob(&self, file: &Path, digest: &Digest, _lock: &StoreLock) -> Result<(), StoreError> {
        let target = self.blob_path(digest);
        if target.is_file() {
            // Another pull of the same blob may have moved this very file in already.
            return match fs::remove_file(file) {
                Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
                other => other.map_err(io_err("remove", file)),
            };
        }
        atomic::rename_durable(file, &target).map_err(io_err("store", &target))
    }
}

fn find_for_kv(
    all: Vec<Manifest>,
    reference: &ModelRef,
    quant: crate::quant::KvScheme,
) -> Result<Manifest, StoreError> {
    match all.into_iter().find(|m| m.format == Format::Safetensors) {
        Some(m) => Ok(m),
        None => Err(QuantError::KvOnGguf { quant, model: reference.name.to_string() }.into()),
    }
}

fn find_for_weight_type(
    all: Vec<Manifest>,
    reference: &ModelRef,
    quant: crate::quant::GgufType,
) -> Result<Manifest, StoreError> {
    if all.iter().all(|m| m.format == Format::Safetensors) {
        return Err(QuantError::WeightTagOnSafetensors { quant, model: reference.name.to_string() }.into());
    }
    let wanted = Some(Quant::Gguf(quant));
    if let Some(m) = all.iter().find(|m| m.format == Format::Gguf && m.quantization == wanted) {
        return Ok(m.clone());
    }
    let available = all.iter().map(describe).collect();
    Err(StoreError::TagNotFound { reference: reference.clone(), available })
}

/// `name[:tag] (quantization)`, for lists of what is stored.
fn describe(m: &Manifest) -> String {
    match m.quantization {
        Some(q) if m.tag != Some(q) => format!("{} ({q})", m.reference()),
        _ => m.reference().to_string(),
    }
}

fn find_untagged(mut all: Vec<Manifest>, reference: &ModelRef) -> Result<Manifest, StoreError> {
    if all.len() == 1 {
        return Ok(all.remove(0));
    }
    let tags = all.iter().filter_map(|m| m.tag.map(|t| t.to_string())).collect();
    Err(StoreError::Ambiguous { name: reference.name.clone(), tags })
}

/// Reads each manifest, sorting the readable from the rest.
fn read_all(paths: impl Iterator<Item = (PathBuf, ModelRef)>) -> (Vec<Manifest>, Vec<Unreadable>) {
    let (mut good, mut bad) = (Vec::new(), Vec::new());
    for (path, reference) in paths {
        match Store::read_manifest_file(&path, &reference) {
            Ok(m) => good.push(m),
            Err(error) => bad.push(Unreadable { reference, path, error }),
        }
    }
    (good, bad)
}

/// The reference a manifest path stands for (`<org|_>/<name>/<tag|_>.json`);
/// `None` for files llmctl did not name.
fn reference_of_path(path: &Path) -> Option<ModelRef> {
    let tag = tag_of_file(path)?;
    let model = path.parent()?;
    let org = model.parent()?.file_name()?.to_str()?;
    let model = model.file_name()?.to_str()?;
    let name = if org == UNTAGGED { model.to_string() } else { format!("{org}/{model}") };
    Some(ModelRef { name: name.parse().ok()?, tag })
}

/// The tag a manifest file's name stands for: `Some(None)` for the untagged one.
fn tag_of_file(path: &Path) -> Option<Option<Quant>> {
    let stem = path.file_stem()?.to_str()?;
    if stem == UNTAGGED { Some(None) } else { stem.parse().ok().map(Some) }
}

/// Every run of exactly 64 hex digits in `bytes`, as a digest.
fn digests_spelled_in(bytes: &[u8]) -> impl Iterator<Item = Digest> + '_ {
    bytes
        .split(|b| !b.is_ascii_hexdigit())
        .filter(|run| run.len() == 64)
        .filter_map(|run| std::str::from_utf8(run).ok()?.to_ascii_lowercase().parse().ok())
}

fn is_manifest_file(path: &Path) -> bool {
    path.extension().is_some_and(|e| e == "json")
        && !path.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with('.'))
}

/// Directory entries sorted by name; a missing directory is empty.
fn read_dir_sorted(dir: &Path) -> Result<Vec<PathBuf>, StoreError> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io_err("read", dir)(e)),
    };
    let mut paths = Vec::new();
    for entry in entries {
        paths.push(entry.map_err(io_err("read", dir))?.path());
    }
    paths.sort();
    Ok(paths)
}
