//! The tiny reference families under `tests/reference/tiny/`: random-weight
//! models made and scored by transformers (`tests/reference/tiny_families_reference.py`),
//! as the tests read them.

use std::path::PathBuf;

use serde_json::Value;

/// The folder of the families' model directories and `tiny_golden.json`.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/reference/tiny")
}

/// `tiny_golden.json`: the token sequence and each family's logits.
pub fn golden() -> Value {
    serde_json::from_slice(&std::fs::read(root().join("tiny_golden.json")).unwrap()).unwrap()
}

/// The token sequence every family was scored on.
pub fn tokens(golden: &Value) -> Vec<u32> {
    golden["tokens"].as_array().unwrap().iter().map(|t| t.as_u64().unwrap() as u32).collect()
}

/// A family's transformers logits, one row per position.
pub fn logits(family: &Value) -> Vec<Vec<f32>> {
    let row = |r: &Value| r.as_array().unwrap().iter().map(|x| x.as_f64().unwrap() as f32).collect();
    family["logits"].as_array().unwrap().iter().map(row).collect()
}
