//! KV-cache sizes: the one formula that `show`, `bench` and the cache
//! allocation share, so what llmctl promises is what it allocates.

use serde::Serialize;

use crate::formats::{ModelFacts, RecurrentLayers, SlidingWindow, WeightDtype};
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
        match self {
            CacheLayout::Dense(dtype) => facts.kv_values_per_token() * dtype.bytes(),
            CacheLayout::Quantized(scheme) => {
                facts.kv_values_per_token() * scheme.element_bytes() + facts.kv_scales_per_token() * KV_SCALE_BYTES
            }
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
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recurrent: Option<RecurrentLayers>,
}

/// Bytes for `context_length` tokens: every KV layer stores each token, except
/// that a sliding-window layer stops growing at its window; recurrent layers
/// store no tokens but a fixed state (f32 whatever the layout).
pub fn cache_size(facts: &ModelFacts, layout: CacheLayout, context_length: u64) -> CacheSize {
    let per_token = layout.bytes_per_token(facts);
    let kv_layers = facts.kv_layers();
    let per_layer = per_token / kv_layers.max(1);
    let (windowed, window) = facts.sliding_window.map_or((0, 0), |s| (s.layers.min(kv_layers), s.window));
    let full = (kv_layers - windowed).saturating_mul(context_length);
    let kept = windowed.saturating_mul(context_length.min(window));
    let state = facts.recurrent.map_or(0, |r| r.state_bytes);
    CacheSize {
        layout: layout.name(),
        bytes_per_token: per_token,
        context_length,
        bytes: per_layer.saturating_mul(full.saturating_add(kept)).saturating_add(state),
        sliding_window: facts.sliding_window,
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
