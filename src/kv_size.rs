//! KV-cache sizes: the one formula that `show`, `bench` and the cache
//! allocation share, so what llmctl promises is what it allocates.

use serde::Serialize;

use crate::formats::{KvLayers, ModelFacts, RecurrentLayers, SlidingWindow, WeightDtype};
use crate::quant::{Format, KV_SCALE_BYTES, KvScheme};

/// The element type of an unquantized cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DenseDtype {
    F32,
    F16,
    Bf16,
}

impl DenseDtype {
    pub fn as_str(self) -> &'static str {
        match self {
            DenseDtype::F32 => "f32",
            DenseDtype::F16 => "f16",
            DenseDtype::Bf16 => "bf16",
        }
    }

    pub fn bytes(self) -> u64 {
        match self {
            DenseDtype::F32 => 4,
            DenseDtype::F16 | DenseDtype::Bf16 => 2,
        }
    }
}

/// How a cache stores its values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheLayout {
    /// Unquantized, in the compute dtype.
    Dense(DenseDtype),
    /// One byte per value plus one f32 scale per (token, KV head).
    Quantized(KvScheme),
}

impl CacheLayout {
    /// The unquantized layout a model runs with: its weight dtype for
    /// safetensors (bf16 and f16 stay 2 bytes), f16 for GGUF (llama.cpp's
    /// default cache type, on every device).
    pub fn dense_for(facts: &ModelFacts, format: Format) -> CacheLayout {
        match (format, &facts.weight_dtype) {
            (Format::Gguf, _) => CacheLayout::Dense(DenseDtype::F16),
            (Format::Safetensors, WeightDtype::Bf16) => CacheLayout::Dense(DenseDtype::Bf16),
            (Format::Safetensors, WeightDtype::F16) => CacheLayout::Dense(DenseDtype::F16),
            _ => CacheLayout::Dense(DenseDtype::F32),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            CacheLayout::Dense(dtype) => dtype.as_str(),
            CacheLayout::Quantized(scheme) => scheme.as_str(),
        }
    }

    pub fn bytes_per_token(self, facts: &ModelFacts) -> u64 {
        facts.stored_layers().iter().map(|g| g.layers * self.layer_bytes_per_token(g)).sum()
    }

    /// What one of these layers stores per token.
    fn layer_bytes_per_token(self, g: &KvLayers) -> u64 {
        self.row_bytes(g.kv_heads, g.head_dim)
    }

    /// What a layer of `kv_heads` heads of `head_dim` stores per token: K
    /// and V rows, plus a scale per KV head each when quantized.
    pub fn row_bytes(self, kv_heads: u64, head_dim: u64) -> u64 {
        let values = 2 * kv_heads * head_dim;
        match self {
            CacheLayout::Dense(dtype) => values * dtype.bytes(),
            CacheLayout::Quantized(scheme) => values * scheme.element_bytes() + 2 * kv_heads * KV_SCALE_BYTES,
        }
    }
}

/// A cache layout's size for a context length, as shown to users.
#[derive(Debug, Clone, Serialize)]
pub struct CacheSize {
    pub layout: &'static str,
    /// What each token adds while every KV layer stores it (below any window).
    pub bytes_per_token: u64,
    pub context_length: u64,
    /// KV rows and any recurrent state.
    pub bytes: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sliding_window: Option<SlidingWindow>,
    /// How many layers store keys and values, where not all do (see `recurrent` for the others, if any).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stored_layers: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recurrent: Option<RecurrentLayers>,
}

/// Bytes for `context_length` tokens: every layer that stores keys and values
/// stores each token, except that a sliding-window layer stops growing at its
/// window; recurrent layers store no tokens but a fixed state (f32 whatever the layout).
pub fn cache_size(facts: &ModelFacts, layout: CacheLayout, context_length: u64) -> CacheSize {
    let rows = facts.stored_layers().iter().fold(0u64, |sum, g| {
        let kept = g.window.map_or(context_length, |w| context_length.min(w));
        sum.saturating_add(g.layers.saturating_mul(layout.layer_bytes_per_token(g)).saturating_mul(kept))
    });
    let state = facts.recurrent.map_or(0, |r| r.state_bytes);
    CacheSize {
        layout: layout.name(),
        bytes_per_token: layout.bytes_per_token(facts),
        context_length,
        bytes: rows.saturating_add(state),
        sliding_window: facts.sliding_window,
        stored_layers: (facts.kv_layers.is_some() || facts.recurrent.is_some()).then(|| facts.kv_layer_count()),
        recurrent: facts.recurrent,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn smollm2() -> ModelFacts {
        ModelFacts {
            architecture: "llama".into(),
            parameters: 134_515_008,
            context_length: 8192,
            hidden_size: 576,
            layers: 30,
            attention_heads: 9,
            kv_heads: 3,
            head_dim: 64,
            vocab_size: 49152,
            weight_dtype: WeightDtype::Bf16,
            sliding_window: None,
            kv_layers: None,
            recurrent: None,
        }
    }

    #[test]
    fn smollm2_cache_sizes_match_the_model_facts() {
        let facts = smollm2();
        let dense = CacheLayout::dense_for(&facts, Format::Safetensors);
        // models.md: 11,520 values per token, 23,040 bytes in bf16.
        assert_eq!(dense.bytes_per_token(&facts), 23_040);
        // 11,520 one-byte values + 180 (layer, K/V, head) scales of 4 bytes.
        assert_eq!(CacheLayout::Quantized(KvScheme::Int8).bytes_per_token(&facts), 11_520 + 720);
        assert_eq!(cache_size(&facts, CacheLayout::Quantized(KvScheme::Fp8), 8192).bytes, 12_240 * 8192);
    }

    #[test]
    fn sliding_window_layers_stop_growing_at_their_window() {
        // 20 of SmolLM2's 30 layers with a window of 1024: 768 B per layer and token in bf16.
        let facts = ModelFacts { sliding_window: Some(SlidingWindow { layers: 20, window: 1024 }), ..smollm2() };
        let dense = CacheLayout::dense_for(&facts, Format::Safetensors);
        assert_eq!(cache_size(&facts, dense, 512).bytes, 23_040 * 512);
        assert_eq!(cache_size(&facts, dense, 8192).bytes, 768 * (10 * 8192 + 20 * 1024));
        let int8 = CacheLayout::Quantized(KvScheme::Int8);
        assert_eq!(cache_size(&facts, int8, 8192).bytes, 12_240 / 30 * (10 * 8192 + 20 * 1024));
    }

    #[test]
    fn stored_layers_of_their_own_shapes_are_counted_as_such() {
        // A Gemma-4-like model of 30 layers of which 20 store keys and values: 16 windowed (1024) with
        // 4 KV heads of 64, 4 global with 1 KV head of 128. In bf16 per layer and token: 1024 and 512 B.
        let groups = vec![
            KvLayers { layers: 16, kv_heads: 4, head_dim: 64, window: Some(1024) },
            KvLayers { layers: 4, kv_heads: 1, head_dim: 128, window: None },
        ];
        let facts = ModelFacts { kv_layers: Some(groups), ..smollm2() };
        let dense = CacheLayout::dense_for(&facts, Format::Safetensors);
        assert_eq!(dense.bytes_per_token(&facts), 16 * 1024 + 4 * 512);
        let size = cache_size(&facts, dense, 8192);
        assert_eq!(size.bytes, 16 * 1024 * 1024 + 4 * 512 * 8192);
        assert_eq!(size.stored_layers, Some(20));
        // INT8: a byte a value, plus a 4-byte scale per KV head for K and for V.
        let int8 = CacheLayout::Quantized(KvScheme::Int8);
        assert_eq!(int8.bytes_per_token(&facts), 16 * (512 + 32) + 4 * (256 + 8));
    }

    #[test]
    fn recurrent_layers_hold_no_kv_rows_but_their_fixed_state() {
        // 24 of SmolLM2's 30 layers recurrent: 6 KV layers of 768 B per token in bf16, 408 in INT8.
        let recurrent = RecurrentLayers { layers: 24, state_bytes: 1_000_000 };
        let facts = ModelFacts { recurrent: Some(recurrent), ..smollm2() };
        let dense = CacheLayout::dense_for(&facts, Format::Safetensors);
        assert_eq!(dense.bytes_per_token(&facts), 6 * 768);
        assert_eq!(cache_size(&facts, dense, 8192).bytes, 6 * 768 * 8192 + 1_000_000);
        let int8 = CacheLayout::Quantized(KvScheme::Int8);
        assert_eq!(int8.bytes_per_token(&facts), 6 * 384 + 6 * 2 * 3 * 4);
        assert_eq!(cache_size(&facts, int8, 8192).bytes, 6 * 408 * 8192 + 1_000_000);
        // A window applies to the KV layers only.
        let windowed = ModelFacts { sliding_window: Some(SlidingWindow { layers: 4, window: 1024 }), ..facts };
        assert_eq!(cache_size(&windowed, dense, 8192).bytes, 768 * (2 * 8192 + 4 * 1024) + 1_000_000);
    }
}
