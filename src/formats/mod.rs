//! What llmctl reads from model files without running them: the facts a
//! manifest records (architecture, sizes, dtype), for both formats.

pub mod gguf;
pub mod hf_config;
pub mod safetensors;

use serde::{Deserialize, Serialize};

/// Shape and size facts about a model, as recorded in its manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelFacts {
    pub architecture: String,
    pub parameters: u64,
    pub context_length: u64,
    pub hidden_size: u64,
    pub layers: u64,
    pub attention_heads: u64,
    pub kv_heads: u64,
    pub head_dim: u64,
    pub vocab_size: u64,
    /// `f32`, `bf16`, `f16` for safetensors; the GGUF type (e.g. `Q4_1`) for GGUF.
    pub weight_dtype: String,
}

impl ModelFacts {
    /// KV-cache values stored per token: layers × (K and V) × KV heads × head dim.
    pub fn kv_values_per_token(&self) -> u64 {
        self.layers * 2 * self.kv_heads * self.head_dim
    }

    /// (token, KV head) pairs per token, each of which carries one scale in a quantized cache.
    pub fn kv_scales_per_token(&self) -> u64 {
        self.layers * 2 * self.kv_heads
    }
}

/// Upper bounds for shape values read from untrusted files; generous for
/// real models, small enough that products of them cannot overflow `u64`.
pub mod bounds {
    pub const MAX_LAYERS: u64 = 1024;
    pub const MAX_HEADS: u64 = 4096;
    pub const MAX_HEAD_DIM: u64 = 4096;
    pub const MAX_HIDDEN: u64 = 1 << 20;
    pub const MAX_CONTEXT: u64 = 1 << 24;
    pub const MAX_VOCAB: u64 = 1 << 24;
}

/// Why a shape read from a model file is not believable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{field}` is {value}, outside 1..={max}")]
pub struct ShapeError {
    pub field: &'static str,
    pub value: u64,
    pub max: u64,
}

pub(crate) fn check_range(field: &'static str, value: u64, max: u64) -> Result<u64, ShapeError> {
    if (1..=max).contains(&value) { Ok(value) } else { Err(ShapeError { field, value, max }) }
}
