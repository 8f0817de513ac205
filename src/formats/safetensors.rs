//! Reading safetensors headers (through the `safetensors` crate, which
//! checks offsets against the file): every tensor's dtype and shape, from
//! which parameter counts and the weight dtype follow, and the shard list of
//! a `model.safetensors.index.json`.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::path::Path;

use safetensors::{Dtype, SafeTensors};
use serde::Deserialize;

pub const INDEX_FILE: &str = "model.safetensors.index.json";

#[derive(Debug, thiserror::Error)]
pub enum SafetensorsError {
    #[error("cannot read `{file}`")]
    Io { file: String, source: std::io::Error },
    #[error("`{file}` is not a valid safetensors file: {reason}")]
    Header { file: String, reason: String },
    #[error("`{INDEX_FILE}` is not valid")]
    Index(#[source] serde_json::Error),
    #[error("`{INDEX_FILE}` names shard `{0}`, which is not a plain file name")]
    BadShardName(String),
}

/// What the shards' headers say: element counts per dtype, summed over
/// every tensor of every shard, and each tensor's dtype and shape.
#[derive(Debug, Default)]
pub struct WeightSummary {
    by_dtype: BTreeMap<String, u64>,
    tensors: BTreeMap<String, TensorHeader>,
}

/// One tensor as its shard's header describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorHeader {
    pub dtype: Dtype,
    pub shape: Vec<usize>,
    /// The shard file it is in.
    pub shard: String,
}

impl WeightSummary {
    /// Adds one shard's tensors; the shard is memory-mapped, not read.
    pub fn add_shard(&mut self, name: &str, path: &Path) -> Result<(), SafetensorsError> {
        let io = |source| SafetensorsError::Io { file: name.into(), source };
        let file = File::open(path).map_err(io)?;
        // SAFETY: blobs in the store are never modified in place (writes go through rename).
        let map = unsafe { memmap2::Mmap::map(&file) }.map_err(io)?;
        let (_, metadata) = SafeTensors::read_metadata(&map)
            .map_err(|e| SafetensorsError::Header { file: name.into(), reason: e.to_string() })?;
        for (tensor, info) in metadata.tensors() {
            let count = info.shape.iter().try_fold(1u64, |acc, &d| acc.checked_mul(d as u64));
            let count = count.ok_or_else(|| SafetensorsError::Header {
                file: name.into(),
                reason: "a tensor's element count overflows".into(),
            })?;
            *self.by_dtype.entry(dtype_name(info.dtype)).or_default() += count;
            // A name in two shards: the later shard's wins, as candle's loader routes it.
            let header = TensorHeader { dtype: info.dtype, shape: info.shape.clone(), shard: name.into() };
            self.tensors.insert(tensor, header);
        }
        Ok(())
    }

    /// Every tensor by name, over all shards added.
    pub fn tensors(&self) -> &BTreeMap<String, TensorHeader> {
        &self.tensors
    }

    pub fn parameters(&self) -> u64 {
        self.by_dtype.values().sum()
    }

    /// The dtype holding the most elements (ties: the alphabetically first).
    pub fn dominant_dtype(&self) -> Option<&str> {
        let best = self.by_dtype.iter().max_by(|a, b| a.1.cmp(b.1).then(b.0.cmp(a.0)));
        best.map(|(name, _)| name.as_str())
    }
}

fn dtype_name(dtype: Dtype) -> String {
    format!("{dtype:?}").to_ascii_lowercase()
}

#[derive(Deserialize)]
struct Index {
    weight_map: BTreeMap<String, String>,
}

/// The shard file names an index refers to, each a plain file name.
pub fn index_shards(json: &[u8]) -> Result<BTreeSet<String>, SafetensorsError> {
    let index: Index = serde_json::from_slice(json).map_err(SafetensorsError::Index)?;
    let shards: BTreeSet<String> = index.weight_map.into_values().collect();
    for shard in &shards {
        if shard.contains(['/', '\\']) || shard.starts_with('.') || !shard.ends_with(".safetensors") {
            return Err(SafetensorsError::BadShardName(shard.clone()));
        }
    }
    Ok(shards)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_shards_are_plain_names() {
        let ok = br#"{"weight_map":{"a":"model-00001-of-00002.safetensors","b":"model-00002-of-00002.safetensors"}}"#;
        assert_eq!(index_shards(ok).unwrap().len(), 2);
        let bad = br#"{"weight_map":{"a":"../../etc/passwd.safetensors"}}"#;
        assert!(matches!(index_shards(bad), Err(SafetensorsError::BadShardName(_))));
    }

    #[test]
    fn counts_parameters_and_rejects_truncated_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.safetensors");
        let data = vec![0u8; 2 * 3 * 4];
        let view = safetensors::tensor::TensorView::new(Dtype::F32, vec![2, 3], &data).unwrap();
        safetensors::serialize_to_file([("w", view)], None, &path).unwrap();
        let mut summary = WeightSummary::default();
        summary.add_shard("m.safetensors", &path).unwrap();
        assert_eq!((summary.parameters(), summary.dominant_dtype()), (6, Some("f32")));
        let bytes = std::fs::read(&path).unwrap();
        std::fs::write(&path, &bytes[..bytes.len() - 1]).unwrap();
        let err = WeightSummary::default().add_shard("m.safetensors", &path).unwrap_err();
        assert!(matches!(err, SafetensorsError::Header { .. }), "{err}");
    }

    /// A file of an 8-byte length prefix, `header` and `data` zero bytes.
    fn raw(prefix: u64, header: &str, data: usize) -> Vec<u8> {
        let mut bytes = prefix.to_le_bytes().to_vec();
        bytes.extend(header.as_bytes());
        bytes.extend(vec![0u8; data]);
        bytes
    }

    #[test]
    fn hostile_headers_are_refused_without_panicking_or_allocating_their_claims() {
        let ok = r#"{"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#;
        let len = |h: &str| h.len() as u64;
        let cases: [(&str, Vec<u8>); 7] = [
            ("a header length of 2^40", raw(1 << 40, ok, 8)),
            ("a header longer than the file", raw(len(ok) + 100, ok, 8)),
            ("a truncated file", raw(len(ok), ok, 4)),
            ("malformed JSON", raw(12, "{\"w\": [1, 2", 0)),
            (
                "offsets past the end",
                raw(
                    len(r#"{"w":{"dtype":"F32","shape":[2],"data_offsets":[0,4000]}}"#),
                    r#"{"w":{"dtype":"F32","shape":[2],"data_offsets":[0,4000]}}"#,
                    8,
                ),
            ),
            (
                "overlapping tensors",
                raw(
                    len(
                        r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}"#,
                    ),
                    r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}"#,
                    12,
                ),
            ),
            (
                "a shape that disagrees with its bytes",
                raw(
                    len(r#"{"w":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}"#),
                    r#"{"w":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}"#,
                    8,
                ),
            ),
        ];
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.safetensors");
        std::fs::write(&path, raw(len(ok), ok, 8)).unwrap();
        WeightSummary::default().add_shard("m.safetensors", &path).expect("the unmodified file is valid");
        for (what, bytes) in cases {
            std::fs::write(&path, bytes).unwrap();
            let err = WeightSummary::default().add_shard("m.safetensors", &path).expect_err(what);
            assert!(matches!(err, SafetensorsError::Header { .. }), "{what}: {err}");
        }
    }
}
