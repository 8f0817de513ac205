//! Imports from local disk: a Hugging Face-layout directory, a `.gguf`
//! file (with the other parts beside it, for a part of a split model), or
//! a snapshot in a Hugging Face cache (whose files are symlinks into the
//! cache's `blobs/`, followed only while they stay in that cache).
//! Files are copied into a staging area this process holds, so an
//! interrupted import leaves nothing behind (Ctrl-C cleans up on the way
//! out; after `kill -9` the next writer sweeps the area).

use std::path::{Path, PathBuf};

use super::select::{self, SelectError, Selection};
use super::{PullError, PullEvent, PullOutcome, PullReporter, commit, hf_cache, stage};
use crate::formats::gguf::split::{gguf_stem, split_name};
use crate::hub::RemoteFile;
use crate::interrupt::InterruptGuard;
use crate::quant::{Format, Quant, QuantError};
use crate::store::manifest::Source;
use crate::store::reference::ModelRef;
use crate::store::{Store, io_err};

/// Where the files of a local model are, and the folder its links must stay in.
struct LocalDir {
    dir: PathBuf,
    /// For a Hugging Face cache snapshot, the cached repository's folder.
    links_within: Option<PathBuf>,
}

pub(super) fn import(
    store: &Store,
    path: &Path,
    reference: &ModelRef,
    reporter: &dyn PullReporter,
) -> Result<PullOutcome, PullError> {
    let (local, selection) = local_selection(path, reference)?;
    let _interrupts = InterruptGuard::install();
    let area = {
        let lock = store.lock(|| reporter.event(PullEvent::WaitingForLock))?;
        store.sweep_leftovers(&lock)?;
        store.staging_area(&lock)?
    };
    let sources = selection.files.iter().map(|f| local.source_of(&f.name)).collect::<Result<Vec<_>, _>>()?;
    let bytes = sources.iter().map(|(_, path)| std::fs::metadata(path).map_or(0, |m| m.len())).sum();
    reporter.event(PullEvent::Transferring { files: sources.len(), bytes });
    let staged = stage::from_local(&sources, area.path(), reporter)?;
    let absolute = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    let source = Source::Local { path: absolute.display().to_string() };
    commit(store, reference, &selection, staged, source, reporter)
}

impl LocalDir {
    /// The file to copy for `name`, links followed; a link out of the cache is refused.
    fn source_of(&self, name: &str) -> Result<(String, PathBuf), PullError> {
        let path = self.dir.join(name);
        let Some(within) = &self.links_within else { return Ok((name.into(), path)) };
        let resolved = std::fs::canonicalize(&path).map_err(io_err("read", &path))?;
        let root = std::fs::canonicalize(within).map_err(io_err("read", within))?;
        if !resolved.starts_with(&root) {
            return Err(PullError::LinkOutsideCache { file: name.into(), target: resolved, cache: root });
        }
        Ok((name.into(), resolved))
    }
}

/// The directory to read from and the files to take.
fn local_selection(path: &Path, reference: &ModelRef) -> Result<(LocalDir, Selection), PullError> {
    if let Some(snapshot) = hf_cache::snapshot(path) {
        if !snapshot.dir.is_dir() {
            return Err(PullError::NotAModelPath(snapshot.dir));
        }
        let files = list_local_dir(&snapshot.dir)?;
        let local = LocalDir { dir: snapshot.dir, links_within: Some(snapshot.repo_dir) };
        return Ok((local, select::select(reference, &files)?));
    }
    if path.is_dir() {
        let files = list_local_dir(path)?;
        return Ok((LocalDir { dir: path.to_path_buf(), links_within: None }, select::select(reference, &files)?));
    }
    let is_gguf = path.extension().is_some_and(|e| e.eq_ignore_ascii_case("gguf"));
    let (Some(dir), Some(name), true) = (path.parent(), path.file_name(), is_gguf && path.is_file()) else {
        return Err(PullError::NotAModelPath(path.to_path_buf()));
    };
    if let Some(Quant::Kv(quant)) = reference.tag {
        return Err(SelectError::Quant(QuantError::KvOnGguf { quant, model: reference.name.to_string() }).into());
    }
    let dir = if dir.as_os_str().is_empty() { Path::new(".") } else { dir };
    let files = gguf_parts_beside(dir, &name.to_string_lossy())?;
    Ok((LocalDir { dir: dir.to_path_buf(), links_within: None }, Selection { format: Format::Gguf, files }))
}

/// The `.gguf` file `file_name` in `dir`; for a part of a split model
/// (`Model-00002-of-00003.gguf`), every part of it there, in order.
fn gguf_parts_beside(dir: &Path, file_name: &str) -> Result<Vec<RemoteFile>, SelectError> {
    let Some(split) = gguf_stem(file_name).and_then(split_name) else {
        return Ok(vec![RemoteFile::local(file_name.into())]);
    };
    // The user's own spelling of `.gguf`, and names made of their own file's name.
    let extension = &file_name[file_name.len() - ".gguf".len()..];
    let label = format!("{}-*-of-{:05}{extension}", split.prefix, split.count);
    let present = |i| dir.join(split.part(i, extension)).is_file();
    select::check_parts(&dir.display().to_string(), &label, split, extension, present)?;
    Ok((1..=split.count).map(|i| RemoteFile::local(split.part(i, extension))).collect())
}

/// The regular files at the top of `dir`, symlinks to files included.
fn list_local_dir(dir: &Path) -> Result<Vec<RemoteFile>, PullError> {
    let entries = std::fs::read_dir(dir).map_err(io_err("read", dir))?;
    let mut files = Vec::new();
    for entry in entries {
        let entry = entry.map_err(io_err("read", dir))?;
        // `metadata` follows links: a link to a file counts as a file.
        if std::fs::metadata(entry.path()).is_ok_and(|m| m.is_file())
            && let Some(name) = entry.file_name().to_str()
        {
            files.push(RemoteFile::local(name.into()));
        }
    }
    Ok(files)
}
