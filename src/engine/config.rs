//! A model's `config.json` as the engine needs it: the decoder family, its
//! shapes, RoPE parameters and special token ids, validated before loading.

use serde::Deserialize;

use crate::formats::bounds::MAX_HIDDEN;
use crate::formats::{ShapeError, check_range, hf_config};

/// Decoder families llmctl implements, by `model_type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// Llama 2/3.x, SmolLM/SmolLM2, TinyLlama.
    Llama,
    /// Same block as Llama; sliding-window attention is not applied (see README).
    Mistral,
    /// Llama block with biases on the Q, K and V projections.
    Qwen2,
    /// Llama block with RMS-normalized queries and keys per head.
    Qwen3,
}

pub const SUPPORTED: &str = "llama, mistral, qwen2, qwen3";

impl Family {
    pub fn name(self) -> &'static str {
        match self {
            Family::Llama => "llama",
            Family::Mistral => "mistral",
            Family::Qwen2 => "qwen2",
            Family::Qwen3 => "qwen3",
        }
    }

    fn from_model_type(model_type: &str) -> Option<Family> {
        Some(match model_type {
            "llama" => Family::Llama,
            "mistral" => Family::Mistral,
            "qwen2" => Family::Qwen2,
            "qwen3" => Family::Qwen3,
            _ => return None,
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("`config.json` is not a usable model config")]
    Json(#[from] serde_json::Error),
    #[error("unsupported architecture `{0}`: llmctl runs {SUPPORTED}")]
    Unsupported(String),
    #[error("`config.json` has a bad shape")]
    Shape(#[from] ShapeError),
    #[error(transparent)]
    Facts(#[from] hf_config::ConfigError),
    #[error("unsupported `rope_scaling` type `{0}`: llmctl supports `default`, `linear` and `llama3`")]
    RopeScaling(String),
    #[error("`config.json` has an odd head dimension ({0}); rotary embeddings need an even one")]
    OddHeadDim(usize),
    #[error("`config.json` sets `mlp_bias`, which llmctl does not implement")]
    MlpBias,
    #[error("unsupported activation `{0}` (`hidden_act` in `config.json`): llmctl's {1} block computes `silu`")]
    Activation(String, &'static str),
}

#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
enum TokenIds {
    One(u32),
    Many(Vec<u32>),
}

impl TokenIds {
    fn to_vec(&self) -> Vec<u32> {
        match self {
            TokenIds::One(id) => vec![*id],
            TokenIds::Many(ids) => ids.clone(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct RopeScaling {
    /// `rope_type`, else the older `type` (transformers 5 writes both).
    pub rope_type: Option<String>,
    #[serde(rename = "type", default)]
    pub legacy_type: Option<String>,
    /// Only in transformers 5's `rope_parameters`, which carries the base too.
    pub rope_theta: Option<f64>,
    pub factor: Option<f64>,
    pub low_freq_factor: Option<f64>,
    pub high_freq_factor: Option<f64>,
    pub original_max_position_embeddings: Option<f64>,
}

#[derive(Debug, Deserialize)]
struct Kind {
    model_type: Option<String>,
}

/// What the engine reads beyond the shape that `formats::hf_config` checks.
#[derive(Debug, Deserialize)]
struct Raw {
    intermediate_size: u64,
    #[serde(default = "default_eps")]
    rms_norm_eps: f64,
    #[serde(default = "default_theta")]
    rope_theta: f64,
    rope_scaling: Option<RopeScaling>,
    /// transformers 5 writes `rope_parameters` in place of `rope_theta` and `rope_scaling`.
    rope_parameters: Option<RopeScaling>,
    #[serde(default)]
    tie_word_embeddings: bool,
    attention_bias: Option<bool>,
    #[serde(default)]
    mlp_bias: bool,
    hidden_act: Option<String>,
    eos_token_id: Option<TokenIds>,
}

fn default_eps() -> f64 {
    1e-6
}

fn default_theta() -> f64 {
    10_000.0
}

/// The validated configuration a model is built from.
#[derive(Debug, Clone)]
pub struct ModelConfig {
    pub family: Family,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub layers: usize,
    pub heads: usize,
    pub kv_heads: usize,
    pub head_dim: usize,
    pub max_context: usize,
    pub vocab_size: usize,
    pub rms_norm_eps: f64,
    pub rope_theta: f64,
    pub rope_scaling: Option<RopeScaling>,
    pub tie_word_embeddings: bool,
    pub qkv_bias: bool,
    pub eos_token_ids: Vec<u32>,
}

impl ModelConfig {
    pub fn parse(json: &[u8]) -> Result<ModelConfig, ConfigError> {
        // The family first: another family's config need not have a Llama's fields.
        let kind: Kind = serde_json::from_slice(json)?;
        let model_type = kind.model_type.unwrap_or_default();
        let family = Family::from_model_type(&model_type).ok_or(ConfigError::Unsupported(model_type))?;
        let raw: Raw = serde_json::from_slice(json)?;
        // The shape is checked once, by the same code that records it at pull time.
        let shape = hf_config::parse(json)?;
        let head_dim = shape.head_dim as usize;
        if !head_dim.is_multiple_of(2) {
            return Err(ConfigError::OddHeadDim(head_dim));
        }
        if raw.mlp_bias {
            return Err(ConfigError::MlpBias);
        }
        // A block computed with another activation than the config's would run, wrongly.
        if let Some(act) = raw.hidden_act.filter(|a| !matches!(a.as_str(), "silu" | "swish")) {
            return Err(ConfigError::Activation(act, family.name()));
        }
        let mut rope_scaling = raw.rope_parameters.or(raw.rope_scaling);
        if let Some(scaling) = rope_scaling.as_mut() {
            scaling.rope_type = scaling.rope_type.take().or(scaling.legacy_type.take());
        }
        check_rope_scaling(rope_scaling.as_ref())?;
        let rope_theta = rope_scaling.as_ref().and_then(|r| r.rope_theta).unwrap_or(raw.rope_theta);
        Ok(ModelConfig {
            family,
            hidden_size: shape.hidden_size as usize,
            intermediate_size: check_range("intermediate_size", raw.intermediate_size, MAX_HIDDEN * 8)? as usize,
            layers: shape.layers as usize,
            heads: shape.attention_heads as usize,
            kv_heads: shape.kv_heads as usize,
            head_dim,
            max_context: shape.context_length as usize,
            vocab_size: shape.vocab_size as usize,
            rms_norm_eps: raw.rms_norm_eps,
            rope_theta,
            rope_scaling,
            tie_word_embeddings: raw.tie_word_embeddings,
            qkv_bias: raw.attention_bias.unwrap_or(family == Family::Qwen2),
            eos_token_ids: raw.eos_token_id.map(|e| e.to_vec()).unwrap_or_default(),
        })
    }

    /// Query heads that share one KV head.
    pub fn group_size(&self) -> usize {
        self.heads / self.kv_heads
    }
}

fn check_rope_scaling(scaling: Option<&RopeScaling>) -> Result<(), ConfigError> {
    match scaling.and_then(|s| s.rope_type.as_deref()) {
        None | Some("default" | "linear" | "llama3") => Ok(()),
        Some(other) => Err(ConfigError::RopeScaling(other.into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = r#"{"model_type":"qwen2","hidden_size":64,"intermediate_size":128,"num_hidden_layers":2,
        "num_attention_heads":4,"num_key_value_heads":2,"max_position_embeddings":256,"vocab_size":32,
        "eos_token_id":[2,3]}"#;

    #[test]
    fn families_bring_their_defaults() {
        let cfg = ModelConfig::parse(BASE.as_bytes()).unwrap();
        assert_eq!((cfg.family, cfg.qkv_bias, cfg.group_size(), cfg.head_dim), (Family::Qwen2, true, 2, 16));
        assert_eq!(cfg.eos_token_ids, [2, 3]);
        assert_eq!(cfg.rope_theta, 10_000.0);
    }

    #[test]
    fn transformers_5_rope_parameters_carry_the_base_and_scaling() {
        let json = BASE.replace(
            "\"vocab_size\":32",
            "\"vocab_size\":32,\"rope_parameters\":{\"rope_theta\":500000.0,\"rope_type\":\"llama3\",\"factor\":8.0}",
        );
        let cfg = ModelConfig::parse(json.as_bytes()).unwrap();
        assert_eq!(cfg.rope_theta, 500_000.0);
        assert_eq!(cfg.rope_scaling.unwrap().rope_type.as_deref(), Some("llama3"));
        let mlp_bias = BASE.replace("\"vocab_size\":32", "\"vocab_size\":32,\"mlp_bias\":true");
        assert!(matches!(ModelConfig::parse(mlp_bias.as_bytes()), Err(ConfigError::MlpBias)));
    }

    #[test]
    fn an_activation_the_block_does_not_compute_is_named() {
        let gelu = BASE.replace("\"vocab_size\":32", "\"vocab_size\":32,\"hidden_act\":\"gelu_pytorch_tanh\"");
        let err = ModelConfig::parse(gelu.as_bytes()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "unsupported activation `gelu_pytorch_tanh` (`hidden_act` in `config.json`): llmctl's qwen2 block computes `silu`"
        );
        let silu = BASE.replace("\"vocab_size\":32", "\"vocab_size\":32,\"hidden_act\":\"silu\"");
        ModelConfig::parse(silu.as_bytes()).unwrap();
    }

    #[test]
    fn rope_scaling_may_carry_both_type_and_rope_type() {
        // As transformers 5 writes a Llama 3.1 config: both keys, the same value.
        let both = BASE.replace(
            "\"vocab_size\":32",
            "\"vocab_size\":32,\"rope_scaling\":{\"type\":\"llama3\",\"rope_type\":\"llama3\",\"factor\":8.0}",
        );
        let cfg = ModelConfig::parse(both.as_bytes()).unwrap();
        assert_eq!(cfg.rope_scaling.unwrap().rope_type.as_deref(), Some("llama3"));
        let legacy = BASE
            .replace("\"vocab_size\":32", "\"vocab_size\":32,\"rope_scaling\":{\"type\":\"linear\",\"factor\":2.0}");
        assert_eq!(
            ModelConfig::parse(legacy.as_bytes()).unwrap().rope_scaling.unwrap().rope_type.as_deref(),
            Some("linear")
        );
    }

    #[test]
    fn unsupported_architectures_and_scalings_are_named() {
        let gpt2 = BASE.replace("qwen2", "gpt2");
        let err = ModelConfig::parse(gpt2.as_bytes()).unwrap_err();
        assert_eq!(err.to_string(), "unsupported architecture `gpt2`: llmctl runs llama, mistral, qwen2, qwen3");
        // Named even when the config lacks fields only a Llama-family config has.
        let falcon = br#"{"model_type":"falcon","hidden_size":64}"#;
        assert!(matches!(ModelConfig::parse(falcon), Err(ConfigError::Unsupported(t)) if t == "falcon"));
        let yarn =
            BASE.replace("\"vocab_size\":32", "\"vocab_size\":32,\"rope_scaling\":{\"type\":\"yarn\",\"factor\":4}");
        assert!(matches!(ModelConfig::parse(yarn.as_bytes()), Err(ConfigError::RopeScaling(t)) if t == "yarn"));
    }
}
