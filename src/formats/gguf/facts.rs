//! Model facts and the weight type of a GGUF model, from its headers: the
//! metadata of its first part, the tensors of all.

use super::{GgufHeader, GgufParts};
use crate::formats::bounds::*;
use crate::formats::{ModelFacts, ShapeError, WeightDtype, check_range};
use crate::quant::GgufType;

#[derive(Debug, thiserror::Error)]
pub enum GgufFactsError {
    #[error("GGUF metadata has no `general.architecture`")]
    NoArchitecture,
    #[error("GGUF metadata has no `{0}`")]
    Missing(String),
    #[error("GGUF metadata has a bad shape")]
    Shape(#[from] ShapeError),
    #[error("GGUF file type cannot be told: no `general.file_type` and no known weight type")]
    UnknownType,
}

pub fn facts(parts: &GgufParts) -> Result<(ModelFacts, GgufType), GgufFactsError> {
    let header = parts.metadata();
    let arch = header.architecture().ok_or(GgufFactsError::NoArchitecture)?.to_string();
    let key = |suffix: &str| header.arch_u64(suffix).ok_or_else(|| GgufFactsError::Missing(format!("{arch}.{suffix}")));
    let heads = check_range("attention.head_count", key("attention.head_count")?, MAX_HEADS)?;
    let kv_heads = header.arch_u64("attention.head_count_kv").unwrap_or(heads);
    let hidden = check_range("embedding_length", key("embedding_length")?, MAX_HIDDEN)?;
    let head_dim = header.arch_u64("attention.key_length").unwrap_or(hidden / heads);
    let weight_type = weight_type(parts)?;
    let vocab = header.get("tokenizer.ggml.tokens").and_then(|v| v.as_array()).map_or(0, |a| a.len() as u64);
    let facts = ModelFacts {
        parameters: parts.parameter_count(),
        context_length: check_range("context_length", key("context_length")?, MAX_CONTEXT)?,
        hidden_size: hidden,
        layers: check_range("block_count", key("block_count")?, MAX_LAYERS)?,
        attention_heads: heads,
        kv_heads: check_range("attention.head_count_kv", kv_heads, MAX_HEADS)?,
        head_dim: check_range("attention.key_length", head_dim, MAX_HEAD_DIM)?,
        vocab_size: check_range("tokenizer.ggml.tokens", vocab, MAX_VOCAB)?,
        weight_dtype: WeightDtype::Gguf(weight_type),
        sliding_window: None,
        kv_layers: None,
        recurrent: None,
        architecture: arch,
    };
    Ok((facts, weight_type))
}

/// `general.file_type` when present, else the type holding most weights.
fn weight_type(parts: &GgufParts) -> Result<GgufType, GgufFactsError> {
    if let Some(t) = parts.metadata().file_type().and_then(GgufType::from_file_type) {
        return Ok(t);
    }
    parts
        .dominant_type()
        .and_then(|t| t.name())
        .and_then(GgufType::from_ggml_type_name)
        .ok_or(GgufFactsError::UnknownType)
}

/// What `llmctl show` tells of a GGUF model's metadata, as read from its headers.
#[derive(Debug, Clone, serde::Serialize)]
pub struct GgufSummary {
    pub architecture: Option<String>,
    /// `general.name`, the model's name as its converter wrote it.
    pub name: Option<String>,
    /// `general.file_type` as its GGUF type (else the type holding most weights).
    pub file_type: Option<String>,
    pub context_length: Option<u64>,
    /// `tokenizer.ggml.model` and `tokenizer.ggml.pre`.
    pub tokenizer_model: Option<String>,
    pub tokenizer_pre: Option<String>,
    pub vocab_size: u64,
    pub has_chat_template: bool,
    /// `general.license`.
    pub license: Option<String>,
    /// Files the model is split over (`split.count`); 1 for a single file.
    pub parts: usize,
}

pub fn summary(parts: &GgufParts) -> GgufSummary {
    let header: &GgufHeader = parts.metadata();
    let text = |key: &str| header.get(key).and_then(super::GgufValue::as_str).map(str::to_string);
    GgufSummary {
        architecture: header.architecture().map(str::to_string),
        name: text("general.name"),
        file_type: weight_type(parts).ok().map(|t| t.as_str().to_string()),
        context_length: header.arch_u64("context_length"),
        tokenizer_model: text("tokenizer.ggml.model"),
        tokenizer_pre: text("tokenizer.ggml.pre"),
        vocab_size: header.get("tokenizer.ggml.tokens").and_then(|v| v.as_array()).map_or(0, |a| a.len() as u64),
        has_chat_template: header.get("tokenizer.chat_template").is_some(),
        license: text("general.license"),
        parts: parts.headers().len(),
    }
}
