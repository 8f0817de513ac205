//! Property-based fuzzing of every parser that reads untrusted input: model
//! references (typed by people and scripts), manifests (files in the store),
//! safetensors headers and GGUF headers (files from the internet). Each gets
//! random and mutated inputs; none may panic, and what they accept must be
//! sound. `PROPTEST_CASES` sets the cases per target (256 by default;
//! `tests/fuzz/run.sh` runs many more and records the counts).

use std::io::Cursor;

use llmctl::formats::gguf::{GgufLimits, read_header};
use llmctl::formats::safetensors::WeightSummary;
use llmctl::store::manifest::{Manifest, is_plain_file_name};
use llmctl::store::reference::ModelRef;
use proptest::prelude::*;

/// Applies `edits` (position, byte) to `bytes`: position modulo the length,
/// a byte of 0 removes the rest (truncation), any other replaces it.
fn mutate(mut bytes: Vec<u8>, edits: &[(usize, u8)]) -> Vec<u8> {
    for &(at, byte) in edits {
        if bytes.is_empty() {
            break;
        }
        let at = at % bytes.len();
        if byte == 0 { bytes.truncate(at) } else { bytes[at] = byte }
    }
    bytes
}

fn valid_manifest() -> Vec<u8> {
    br#"{"schema_version": 1, "name": "org/model", "tag": "kv_int8",
"source": {"kind": "hub", "endpoint": "http://x", "repo": "org/model", "commit": "0123456789012345678901234567890123456789"},
"format": "safetensors", "quantization": "kv_int8", "architecture": "llama", "parameters": 10, "context_length": 256,
"hidden_size": 64, "layers": 2, "attention_heads": 4, "kv_heads": 2, "head_dim": 16, "vocab_size": 32, "weight_dtype": "f32",
"files": [{"name": "config.json", "size": 3, "sha256": "a7144c36580938131b5e462c7ed81f2052523aec9a6f4150e77843014feb0af3"}],
"pulled_at": "2026-11-27T12:00:00.000Z"}"#
        .to_vec()
}

/// A small valid safetensors file: two f32 tensors.
fn valid_safetensors() -> Vec<u8> {
    let data = [0u8; 4 * 6 + 4 * 2];
    let a = safetensors::tensor::TensorView::new(safetensors::Dtype::F32, vec![2, 3], &data[..24]).unwrap();
    let b = safetensors::tensor::TensorView::new(safetensors::Dtype::F32, vec![2], &data[24..]).unwrap();
    safetensors::serialize([("a", a), ("b", b)], None).unwrap()
}

fn gguf_string(out: &mut Vec<u8>, s: &str) {
    out.extend((s.len() as u64).to_le_bytes());
    out.extend(s.as_bytes());
}

/// A small valid GGUF v3 header: two metadata pairs, one f32 tensor, its data.
fn valid_gguf() -> Vec<u8> {
    let mut out = b"GGUF".to_vec();
    out.extend(3u32.to_le_bytes());
    out.extend(1u64.to_le_bytes()); // tensors
    out.extend(2u64.to_le_bytes()); // metadata pairs
    gguf_string(&mut out, "general.architecture");
    out.extend(8u32.to_le_bytes()); // string
    gguf_string(&mut out, "llama");
    gguf_string(&mut out, "llama.block_count");
    out.extend(4u32.to_le_bytes()); // u32
    out.extend(2u32.to_le_bytes());
    gguf_string(&mut out, "token_embd.weight");
    out.extend(2u32.to_le_bytes()); // dims
    out.extend(4u64.to_le_bytes());
    out.extend(2u64.to_le_bytes());
    out.extend(0u32.to_le_bytes()); // f32
    out.extend(0u64.to_le_bytes()); // offset
    while !out.len().is_multiple_of(32) {
        out.push(0);
    }
    out.extend([0u8; 32]);
    out
}

proptest! {
    #[test]
    fn model_references_never_panic_and_what_parses_round_trips(text in "\\PC{0,40}|[a-zA-Z0-9._:/\\-\\x00-\\x1f~]{0,40}") {
        if let Ok(reference) = text.parse::<ModelRef>() {
            let shown = reference.to_string();
            prop_assert!(!shown.chars().any(char::is_control), "{shown:?}");
            prop_assert!(!shown.starts_with('/') && !shown.split('/').any(|s| s == ".." || s == "."), "{shown:?}");
            prop_assert_eq!(shown.parse::<ModelRef>().ok(), Some(reference));
        }
    }

    #[test]
    fn manifests_never_panic_and_what_loads_names_plain_files(edits in prop::collection::vec((any::<usize>(), any::<u8>()), 0..8)) {
        let bytes = mutate(valid_manifest(), &edits);
        if let Ok(manifest) = Manifest::from_json(&bytes) {
            prop_assert!(manifest.files.iter().all(|f| is_plain_file_name(&f.name)));
            prop_assert_eq!(Manifest::from_json(&manifest.to_json()).ok(), Some(manifest));
        }
    }

    #[test]
    fn arbitrary_manifest_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let _ = Manifest::from_json(&bytes);
    }

    #[test]
    fn safetensors_headers_never_panic_and_what_loads_fits_the_file(
        edits in prop::collection::vec((0usize..160, any::<u8>()), 0..6),
        length_prefix in prop::option::of(any::<u64>()),
    ) {
        let mut bytes = mutate(valid_safetensors(), &edits);
        if let (Some(prefix), true) = (length_prefix, bytes.len() >= 8) {
            bytes[..8].copy_from_slice(&prefix.to_le_bytes());
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.safetensors");
        std::fs::write(&path, &bytes).unwrap();
        let mut summary = WeightSummary::default();
        if summary.add_shard("m.safetensors", &path).is_ok() {
            // Every element accepted is backed by bytes of the file (f32 or smaller here).
            prop_assert!(summary.parameters() <= bytes.len() as u64, "{} elements in {} bytes", summary.parameters(), bytes.len());
        }
    }

    #[test]
    fn gguf_headers_never_panic_and_what_loads_fits_the_file(edits in prop::collection::vec((any::<usize>(), any::<u8>()), 0..6)) {
        let bytes = mutate(valid_gguf(), &edits);
        let len = bytes.len() as u64;
        if let Ok(header) = read_header(&mut Cursor::new(bytes), len, &GgufLimits::default()) {
            prop_assert!(header.data_offset <= len);
            for tensor in &header.tensors {
                let end = header.data_offset + tensor.offset + tensor.byte_size().unwrap();
                prop_assert!(end <= len, "tensor ends at {end} of {len}");
            }
        }
    }

    #[test]
    fn arbitrary_gguf_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        let mut with_magic = b"GGUF\x03\x00\x00\x00".to_vec();
        with_magic.extend(&bytes);
        let len = with_magic.len() as u64;
        let _ = read_header(&mut Cursor::new(with_magic), len, &GgufLimits::default());
    }
}

#[test]
fn the_seeds_are_valid_before_mutation() {
    assert!(Manifest::from_json(&valid_manifest()).is_ok(), "{:?}", Manifest::from_json(&valid_manifest()).err());
    let len = valid_gguf().len() as u64;
    let header = read_header(&mut Cursor::new(valid_gguf()), len, &GgufLimits::default()).unwrap();
    assert_eq!((header.tensors.len(), header.architecture()), (1, Some("llama")));
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("m.safetensors"), valid_safetensors()).unwrap();
    let mut summary = WeightSummary::default();
    summary.add_shard("m.safetensors", &dir.path().join("m.safetensors")).unwrap();
    assert_eq!(summary.parameters(), 8);
}
