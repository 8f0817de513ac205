//! A stored model's files as whoever runs it reads them: each name resolved
//! to its blob and size-checked (hashing gigabytes on every run is too
//! slow; `show --verify` hashes), the weight shards checked against their
//! index, a split GGUF's parts checked to be all there in order. The engine
//! sees paths, never the store's layout.

use std::path::PathBuf;

use super::Store;
use super::manifest::Manifest;
use crate::exit::Diagnostic;
use crate::formats::gguf::split::{gguf_stem, split_name};
use crate::formats::safetensors::{INDEX_FILE, index_shards};

/// A stored model's file that cannot be had as it was stored.
#[derive(Debug, thiserror::Error)]
pub enum ModelFileError {
    #[error("`{name}` has no `{file}` in the store")]
    MissingFile { name: String, file: String },
    #[error("the store has lost `{file}` of `{name}` (blob `{}`)", path.display())]
    MissingBlob { name: String, file: String, path: PathBuf },
    #[error("the store's copy of `{file}` of `{name}` is damaged: {size} bytes where {expected} were stored")]
    DamagedBlob { name: String, file: String, size: u64, expected: u64 },
    #[error("`{INDEX_FILE}` of `{name}` lists shard `{shard}`, which is not stored")]
    MissingShard { name: String, shard: String },
    #[error("cannot read `{file}`")]
    Read { file: String, source: std::io::Error },
    #[error("`{name}` lists GGUF files that are not the parts of one model in order: {}", files.join(", "))]
    NotOneGguf { name: String, files: Vec<String> },
}

impl Diagnostic for ModelFileError {
    fn hint(&self) -> Option<String> {
        match self {
            ModelFileError::MissingFile { name, .. }
            | ModelFileError::MissingBlob { name, .. }
            | ModelFileError::DamagedBlob { name, .. }
            | ModelFileError::MissingShard { name, .. }
            | ModelFileError::NotOneGguf { name, .. } => {
                Some(format!("pull the model again: `llmctl rm {name}` then `llmctl pull {name}`"))
            }
            ModelFileError::Read { .. } => None,
        }
    }
}

impl Store {
    /// The files of `manifest`, for whoever runs the model.
    pub fn model_files<'a>(&'a self, manifest: &'a Manifest) -> ModelFiles<'a> {
        ModelFiles { store: self, manifest }
    }
}

/// A manifest's files, each resolved to its blob in the store on access.
pub struct ModelFiles<'a> {
    store: &'a Store,
    manifest: &'a Manifest,
}

impl<'a> ModelFiles<'a> {
    pub fn manifest(&self) -> &'a Manifest {
        self.manifest
    }

    pub fn name(&self) -> String {
        self.manifest.reference().to_string()
    }

    /// The blob of `file`, checked to exist; `None` if the model has no such file.
    pub fn path(&self, file: &str) -> Result<Option<PathBuf>, ModelFileError> {
        let Some(entry) = self.manifest.file(file) else { return Ok(None) };
        let path = self.store.blob_path(&entry.sha256);
        // Hashing gigabytes on every run is too slow; a size check catches
        // truncation, and `show --verify` hashes.
        match std::fs::metadata(&path) {
            Ok(meta) if meta.is_file() && meta.len() == entry.size => Ok(Some(path)),
            Ok(meta) if meta.is_file() => Err(ModelFileError::DamagedBlob {
                name: self.name(),
                file: file.into(),
                size: meta.len(),
                expected: entry.size,
            }),
            _ => Err(ModelFileError::MissingBlob { name: self.name(), file: file.into(), path }),
        }
    }

    pub fn required(&self, file: &str) -> Result<PathBuf, ModelFileError> {
        self.path(file)?.ok_or_else(|| ModelFileError::MissingFile { name: self.name(), file: file.into() })
    }

    pub fn read(&self, file: &str) -> Result<Option<Vec<u8>>, ModelFileError> {
        let Some(path) = self.path(file)? else { return Ok(None) };
        std::fs::read(path).map(Some).map_err(|source| ModelFileError::Read { file: file.into(), source })
    }

    pub fn read_required(&self, file: &str) -> Result<Vec<u8>, ModelFileError> {
        self.read(file)?.ok_or_else(|| ModelFileError::MissingFile { name: self.name(), file: file.into() })
    }

    /// Every weight shard, checked against the index when there is one.
    pub fn weights(&self) -> Result<Vec<PathBuf>, ModelFileError> {
        if let Some(index) = self.read(INDEX_FILE)? {
            let shards = index_shards(&index)
                .map_err(|e| ModelFileError::MissingFile { name: self.name(), file: e.to_string() })?;
            if let Some(shard) = shards.iter().find(|s| self.manifest.file(s).is_none()) {
                return Err(ModelFileError::MissingShard { name: self.name(), shard: shard.clone() });
            }
        }
        let names = self.manifest.files.iter().filter(|f| f.name.ends_with(".safetensors"));
        let paths = names.map(|f| self.required(&f.name)).collect::<Result<Vec<_>, _>>()?;
        if paths.is_empty() {
            return Err(ModelFileError::MissingFile { name: self.name(), file: "*.safetensors".into() });
        }
        Ok(paths)
    }

    /// A GGUF model's files in part order, each checked as [`ModelFiles::path`]
    /// checks: the one file, or every part of a split model (metadata in the
    /// first, tensors in all; each part's tensor offsets are its own).
    pub fn gguf_parts(&self) -> Result<Vec<PathBuf>, ModelFileError> {
        let names: Vec<&str> =
            self.manifest.files.iter().map(|f| f.name.as_str()).filter(|n| gguf_stem(n).is_some()).collect();
        if names.is_empty() {
            return Err(ModelFileError::MissingFile { name: self.name(), file: "*.gguf".into() });
        }
        if names.len() > 1 && !are_parts_in_order(&names) {
            return Err(ModelFileError::NotOneGguf {
                name: self.name(),
                files: names.iter().map(|n| n.to_string()).collect(),
            });
        }
        names.into_iter().map(|n| self.required(n)).collect()
    }
}

/// Parts 1 to N of N of one split model, in that order.
fn are_parts_in_order(names: &[&str]) -> bool {
    let parts: Vec<_> = names.iter().map(|n| gguf_stem(n).and_then(split_name)).collect();
    let first = parts[0].map(|p| p.prefix);
    parts.iter().enumerate().all(|(i, part)| {
        part.is_some_and(|p| p.index as usize == i + 1 && p.count as usize == names.len() && Some(p.prefix) == first)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gguf_parts_must_be_one_models_in_order() {
        assert!(are_parts_in_order(&["q/M-00001-of-00002.gguf", "q/M-00002-of-00002.gguf"]));
        for bad in [
            &["q/M-00002-of-00002.gguf", "q/M-00001-of-00002.gguf"][..],
            &["q/M-00001-of-00003.gguf", "q/M-00002-of-00003.gguf"],
            &["q/M-00001-of-00002.gguf", "q/N-00002-of-00002.gguf"],
            &["a.gguf", "b.gguf"],
        ] {
            assert!(!are_parts_in_order(bad), "{bad:?}");
        }
    }
}
