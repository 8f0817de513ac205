//! A stored model's files as the engine reads them: each blob found and
//! size-checked through the store, the weight shards checked against their index.

use std::path::PathBuf;

use super::EngineError;
use crate::formats::safetensors::{INDEX_FILE, index_shards};
use crate::store::Store;
use crate::store::manifest::Manifest;

pub(super) struct Files<'a> {
    pub(super) store: &'a Store,
    pub(super) manifest: &'a Manifest,
}

impl Files<'_> {
    pub(super) fn name(&self) -> String {
        self.manifest.reference().to_string()
    }

    /// The blob of `file`, checked to exist; `None` if the model has no such file.
    pub(super) fn path(&self, file: &str) -> Result<Option<PathBuf>, EngineError> {
        let Some(entry) = self.manifest.file(file) else { return Ok(None) };
        let path = self.store.blob_path(&entry.sha256);
        // Hashing gigabytes on every run is too slow; a size check catches
        // truncation, and `show --verify` hashes.
        match std::fs::metadata(&path) {
            Ok(meta) if meta.is_file() && meta.len() == entry.size => Ok(Some(path)),
            Ok(meta) if meta.is_file() => Err(EngineError::DamagedBlob {
                name: self.name(),
                file: file.into(),
                size: meta.len(),
                expected: entry.size,
            }),
            _ => Err(EngineError::MissingBlob { name: self.name(), file: file.into(), path }),
        }
    }

    pub(super) fn required(&self, file: &str) -> Result<PathBuf, EngineError> {
        self.path(file)?.ok_or_else(|| EngineError::MissingFile { name: self.name(), file: file.into() })
    }

    pub(super) fn read(&self, file: &str) -> Result<Option<Vec<u8>>, EngineError> {
        let Some(path) = self.path(file)? else { return Ok(None) };
        std::fs::read(path).map(Some).map_err(|source| EngineError::Read { file: file.into(), source })
    }

    pub(super) fn read_required(&self, file: &str) -> Result<Vec<u8>, EngineError> {
        self.read(file)?.ok_or_else(|| EngineError::MissingFile { name: self.name(), file: file.into() })
    }

    /// Every weight shard, checked against the index when there is one.
    pub(super) fn weights(&self) -> Result<Vec<PathBuf>, EngineError> {
        if let Some(index) = self.read(INDEX_FILE)? {
            let shards = index_shards(&index)
                .map_err(|e| EngineError::MissingFile { name: self.name(), file: e.to_string() })?;
            if let Some(shard) = shards.iter().find(|s| self.manifest.file(s).is_none()) {
                return Err(EngineError::MissingShard { name: self.name(), shard: shard.clone() });
            }
        }
        let names = self.manifest.files.iter().filter(|f| f.name.ends_with(".safetensors"));
        let paths = names.map(|f| self.required(&f.name)).collect::<Result<Vec<_>, _>>()?;
        if paths.is_empty() {
            return Err(EngineError::MissingFile { name: self.name(), file: "*.safetensors".into() });
        }
        Ok(paths)
    }
}
