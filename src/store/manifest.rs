//! The manifest: one JSON document per `name[:tag]` that records what a
//! model is (format, quantization, shape) and which blobs make it up.

use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use super::blobs::Digest;
use super::reference::{ModelName, ModelRef};
use crate::formats::ModelFacts;
pub use crate::ids::{is_plain_file_name, is_plain_relative_path};
use crate::quant::{Format, Quant};

/// Bumped when a manifest field changes meaning; older readers refuse newer files.
pub const SCHEMA_VERSION: u32 = 1;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub schema_version: u32,
    pub name: ModelName,
    /// The tag this manifest is stored under; `None` for the plain name.
    pub tag: Option<Quant>,
    pub source: Source,
    pub format: Format,
    /// KV scheme of a safetensors tag, GGUF file type of a GGUF model.
    pub quantization: Option<Quant>,
    #[serde(flatten)]
    pub facts: ModelFacts,
    pub files: Vec<FileEntry>,
    /// RFC 3339, UTC.
    pub pulled_at: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Source {
    Hub {
        endpoint: String,
        repo: String,
        commit: String,
        /// The branch, tag or commit asked for (`--revision`; `main` by default).
        /// Absent in manifests written before llmctl recorded it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        revision: Option<String>,
    },
    Local {
        path: String,
    },
}

/// One file of the model: its path inside the repository or directory it
/// came from (a folder for GGUF parts, `Q8_0/…-00001-of-00002.gguf`), and its blob.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileEntry {
    pub name: String,
    pub size: u64,
    pub sha256: Digest,
}

#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("manifest is not valid JSON for schema {SCHEMA_VERSION}")]
    Json(#[from] serde_json::Error),
    #[error("manifest has schema version {0}, newer than this llmctl understands ({SCHEMA_VERSION})")]
    NewerSchema(u32),
    #[error("manifest lists file `{}`, which is not a plain relative path", .0.escape_debug())]
    BadFileName(String),
    #[error("manifest describes `{0}`, another model than its path names")]
    Misplaced(String),
}

impl Manifest {
    pub fn reference(&self) -> ModelRef {
        ModelRef { name: self.name.clone(), tag: self.tag }
    }

    pub fn total_size(&self) -> u64 {
        self.files.iter().map(|f| f.size).sum()
    }

    /// A short id shared by every tag that points at the same blobs.
    pub fn id(&self) -> String {
        let mut lines: Vec<String> = self.files.iter().map(|f| format!("{} {}\n", f.name, f.sha256)).collect();
        lines.sort();
        Digest::of_bytes(lines.concat().as_bytes()).hex()[..12].to_string()
    }

    pub fn file(&self, name: &str) -> Option<&FileEntry> {
        self.files.iter().find(|f| f.name == name)
    }

    pub fn pulled_at_time(&self) -> Option<SystemTime> {
        humantime::parse_rfc3339(&self.pulled_at).ok()
    }

    pub fn to_json(&self) -> Vec<u8> {
        let mut bytes = serde_json::to_vec_pretty(self).expect("a manifest always serializes");
        bytes.push(b'\n');
        bytes
    }

    /// Parses and checks a manifest read from disk.
    pub fn from_json(bytes: &[u8]) -> Result<Manifest, ManifestError> {
        #[derive(Deserialize)]
        struct Version {
            schema_version: u32,
        }
        let version: Version = serde_json::from_slice(bytes)?;
        if version.schema_version > SCHEMA_VERSION {
            return Err(ManifestError::NewerSchema(version.schema_version));
        }
        let manifest: Manifest = serde_json::from_slice(bytes)?;
        if let Some(bad) = manifest.files.iter().find(|f| !is_plain_relative_path(&f.name)) {
            return Err(ManifestError::BadFileName(bad.name.clone()));
        }
        Ok(manifest)
    }
}

pub fn now_rfc3339() -> String {
    humantime::format_rfc3339_millis(SystemTime::now()).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn sample() -> Manifest {
        Manifest {
            schema_version: SCHEMA_VERSION,
            name: "org/m".parse().unwrap(),
            tag: Some("kv_int8".parse().unwrap()),
            source: Source::Local { path: "/x".into() },
            format: Format::Safetensors,
            quantization: Some("kv_int8".parse().unwrap()),
            facts: ModelFacts {
                architecture: "llama".into(),
                parameters: 10,
                context_length: 8,
                hidden_size: 4,
                layers: 1,
                attention_heads: 2,
                kv_heads: 1,
                head_dim: 2,
                vocab_size: 5,
                weight_dtype: crate::formats::WeightDtype::F32,
                sliding_window: None,
                kv_layers: None,
                recurrent: None,
            },
            files: vec![FileEntry { name: "config.json".into(), size: 2, sha256: Digest::of_bytes(b"{}") }],
            pulled_at: now_rfc3339(),
        }
    }

    #[test]
    fn round_trips_and_refuses_unsafe_or_newer_files() {
        let m = sample();
        assert_eq!(Manifest::from_json(&m.to_json()).unwrap(), m);
        let mut bad = m.clone();
        bad.files[0].name = "../../x".into();
        assert!(matches!(Manifest::from_json(&bad.to_json()), Err(ManifestError::BadFileName(_))));
        let newer = String::from_utf8(m.to_json()).unwrap().replace("\"schema_version\": 1", "\"schema_version\": 9");
        assert!(matches!(Manifest::from_json(newer.as_bytes()), Err(ManifestError::NewerSchema(9))));
    }
}
