//! What llmctl reads from model files without running them: the facts a
//! manifest records (architecture, sizes, dtype), for both formats.

pub mod gguf;
pub mod hf_config;
pub mod safetensors;
pub mod tokenizer_json;

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::quant::GgufType;

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
    pub weight_dtype: WeightDtype,
    /// Layers that attend to, and cache, only their last `window` positions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sliding_window: Option<SlidingWindow>,
    /// The layers that store keys and values, by shape, where the model's
    /// layers differ (Gemma 4: wider global heads, layers that share an
    /// earlier layer's cache; Qwen3.5: only its full-attention layers);
    /// absent: every layer but the recurrent ones stores `kv_heads × head_dim`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kv_layers: Option<Vec<KvLayers>>,
    /// Layers that keep a fixed recurrent state in place of KV rows (Qwen3.5's linear attention).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recurrent: Option<RecurrentLayers>,
}

/// `layers` layers that each store `kv_heads` keys and values of `head_dim`
/// per token (only their last `window` tokens, where they have a window).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct KvLayers {
    pub layers: u64,
    pub kv_heads: u64,
    pub head_dim: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window: Option<u64>,
}

/// Recurrent (linear-attention) layers: `layers` of the model's layers store no
/// KV rows but one f32 state each, `state_bytes` for all of them, whatever the
/// context and the `kv_*` scheme.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecurrentLayers {
    pub layers: u64,
    pub state_bytes: u64,
}

/// Sliding-window attention: `layers` of the model's layers see (and keep) only `window` positions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SlidingWindow {
    pub layers: u64,
    pub window: u64,
}

/// What a model's weights are stored as: for safetensors the element type
/// most parameters have (written lowercase, as `f32`, `bf16`, `i8`), for
/// GGUF the file's type (written as llama.cpp names it, e.g. `Q4_1`, `F16`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WeightDtype {
    F32,
    F16,
    Bf16,
    Gguf(GgufType),
    /// Any other safetensors element type (`i8`, `f8_e4m3`, …) or `unknown`:
    /// recorded and shown, never computed with.
    Other(String),
}

impl WeightDtype {
    /// From a safetensors element type's lowercase name.
    pub fn from_safetensors(name: &str) -> WeightDtype {
        match name {
            "f32" => WeightDtype::F32,
            "f16" => WeightDtype::F16,
            "bf16" => WeightDtype::Bf16,
            other => WeightDtype::Other(other.to_string()),
        }
    }

    /// As a manifest spells it: the inverse of [`WeightDtype::from_safetensors`] and of
    /// GGUF types' exact (uppercase) names.
    fn parse(text: &str) -> WeightDtype {
        match GgufType::ALL.iter().find(|t| t.as_str() == text) {
            Some(t) => WeightDtype::Gguf(*t),
            None => WeightDtype::from_safetensors(text),
        }
    }
}

impl fmt::Display for WeightDtype {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            WeightDtype::F32 => "f32",
            WeightDtype::F16 => "f16",
            WeightDtype::Bf16 => "bf16",
            WeightDtype::Gguf(t) => t.as_str(),
            WeightDtype::Other(name) => name,
        })
    }
}

impl Serialize for WeightDtype {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for WeightDtype {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(WeightDtype::parse(&String::deserialize(d)?))
    }
}

impl ModelFacts {
    /// Layers that store KV rows.
    pub fn kv_layer_count(&self) -> u64 {
        self.stored_layers().iter().map(|g| g.layers).sum()
    }

    /// KV-cache values stored per token: KV layers × (K and V) × KV heads × head dim.
    pub fn kv_values_per_token(&self) -> u64 {
        self.stored_layers().iter().map(|g| g.layers * 2 * g.kv_heads * g.head_dim).sum()
    }

    /// (token, KV head) pairs per token, each of which carries one scale in a quantized cache.
    pub fn kv_scales_per_token(&self) -> u64 {
        self.stored_layers().iter().map(|g| g.layers * 2 * g.kv_heads).sum()
    }

    /// The layers that store keys and values, by shape (see `kv_layers`).
    pub fn stored_layers(&self) -> Vec<KvLayers> {
        if let Some(groups) = &self.kv_layers {
            return groups.clone();
        }
        let uniform = |layers, window| KvLayers { layers, kv_heads: self.kv_heads, head_dim: self.head_dim, window };
        let layers = self.layers - self.recurrent.map_or(0, |r| r.layers.min(self.layers));
        match self.sliding_window {
            Some(s) => {
                let windowed = s.layers.min(layers);
                vec![uniform(layers - windowed, None), uniform(windowed, Some(s.window))]
            }
            None => vec![uniform(layers, None)],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weight_dtypes_round_trip_through_the_spelling_manifests_use() {
        for text in ["f32", "f16", "bf16", "Q4_1", "F16", "BF16", "Q4_K_M", "i8", "f8_e4m3", "unknown"] {
            let parsed: WeightDtype = serde_json::from_value(serde_json::json!(text)).unwrap();
            assert_eq!(serde_json::to_value(&parsed).unwrap(), serde_json::json!(text), "{text}");
        }
        assert_eq!(WeightDtype::parse("f16"), WeightDtype::F16);
        assert_eq!(WeightDtype::parse("F16"), WeightDtype::Gguf(GgufType::F16));
        assert_eq!(WeightDtype::from_safetensors("i8"), WeightDtype::Other("i8".into()));
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
