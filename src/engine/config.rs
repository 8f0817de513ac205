//! A model's `config.json` as the engine needs it: the decoder family, its
//! shapes, RoPE parameters and special token ids, validated before loading.

use serde::Deserialize;

mod gemma4;

use crate::formats::bounds::MAX_HIDDEN;
use crate::formats::{ShapeError, check_range, hf_config};

/// Decoder families llmctl implements, by `model_type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// Llama 2/3.x, SmolLM/SmolLM2, TinyLlama.
    Llama,
    /// Llama block with sliding-window attention where `sliding_window` is set.
    Mistral,
    /// Llama block with biases on the Q, K and V projections.
    Qwen2,
    /// Llama block with RMS-normalized queries and keys per head.
    Qwen3,
    /// Qwen3's attention with routed experts in place of (some) MLPs.
    Qwen3Moe,
    /// Llama block in which some layers have no rotary embedding.
    SmolLm3,
    /// Gemma 3's text model: local (windowed) and global layers with their own
    /// RoPE, q/k norms, norms around attention and MLP, GeGLU, scaled embeddings.
    Gemma3,
    /// Phi-3 and Phi-4-mini: fused Q/K/V and gate/up projections, RoPE on part
    /// of each head, LongRoPE.
    Phi3,
    /// gpt-oss: local and global layers, attention sinks, biased projections,
    /// routed experts with biases and a clamped SwiGLU.
    GptOss,
    /// Gemma 4's text model: Gemma 3's block with wider global heads (proportional
    /// RoPE), normed values, keys reused as values, KV shared by the last layers,
    /// per-layer input embeddings, and experts beside the MLP.
    Gemma4,
    /// Qwen3.5's text model: gated delta-rule (linear attention) layers beside
    /// full-attention layers with an output gate, q/k norms and partial RoPE;
    /// norms scale by `1 + w`.
    Qwen35,
    /// Qwen3.5's block with routed experts and a gated shared expert in every layer.
    Qwen35Moe,
}

pub const SUPPORTED: &str = "llama, mistral, qwen2, qwen3, qwen3_moe, smollm3, phi3, gpt_oss, gemma3 (and gemma3_text), \
     gemma4 (and gemma4_text), qwen3_5 (and qwen3_5_text), qwen3_5_moe (and qwen3_5_moe_text)";

impl Family {
    pub fn name(self) -> &'static str {
        match self {
            Family::Llama => "llama",
            Family::Mistral => "mistral",
            Family::Qwen2 => "qwen2",
            Family::Qwen3 => "qwen3",
            Family::Qwen3Moe => "qwen3_moe",
            Family::SmolLm3 => "smollm3",
            Family::Gemma3 => "gemma3",
            Family::Phi3 => "phi3",
            Family::GptOss => "gpt_oss",
            Family::Gemma4 => "gemma4",
            Family::Qwen35 => "qwen3_5_text",
            Family::Qwen35Moe => "qwen3_5_moe_text",
        }
    }

    fn from_model_type(model_type: &str) -> Option<Family> {
        Some(match model_type {
            "llama" => Family::Llama,
            "mistral" => Family::Mistral,
            "qwen2" => Family::Qwen2,
            "qwen3" => Family::Qwen3,
            "qwen3_moe" => Family::Qwen3Moe,
            "smollm3" => Family::SmolLm3,
            "gemma3_text" => Family::Gemma3,
            "phi3" => Family::Phi3,
            "gpt_oss" => Family::GptOss,
            "gemma4_text" => Family::Gemma4,
            "qwen3_5_text" => Family::Qwen35,
            "qwen3_5_moe_text" => Family::Qwen35Moe,
            _ => return None,
        })
    }

    /// The activation of the gated MLP the family's block is written for.
    fn activation(self) -> Activation {
        match self {
            Family::Gemma3 | Family::Gemma4 => Activation::GeluTanh,
            Family::GptOss => Activation::ClampedSwiglu,
            _ => Activation::Silu,
        }
    }

    /// Whether `sliding_window` applies only when `use_sliding_window` is set (as transformers reads it).
    fn window_needs_flag(self) -> bool {
        matches!(self, Family::Qwen2 | Family::Qwen3 | Family::Qwen3Moe | Family::SmolLm3)
    }

    /// Qwen3.5's: gated delta-rule layers beside full-attention ones.
    fn is_qwen35(self) -> bool {
        matches!(self, Family::Qwen35 | Family::Qwen35Moe)
    }

    /// The layer types the family's block computes, as `layer_types` spells them.
    fn layer_types(self) -> &'static str {
        if self.is_qwen35() {
            "`full_attention` and `linear_attention`"
        } else {
            "`full_attention` and `sliding_attention`"
        }
    }
}

/// The activation of a gated MLP: `act(x · gateᵀ) * (x · upᵀ)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    /// `silu` / `swish` (SwiGLU).
    Silu,
    /// `gelu_pytorch_tanh` (GeGLU with the tanh approximation).
    GeluTanh,
    /// gpt-oss's: `(clamp(up, ±7) + 1) · g · σ(1.702 g)` with `g = min(gate, 7)`.
    ClampedSwiglu,
}

impl Activation {
    fn parse(name: &str) -> Option<Activation> {
        match name {
            "silu" | "swish" => Some(Activation::Silu),
            "gelu_pytorch_tanh" => Some(Activation::GeluTanh),
            _ => None,
        }
    }
}

/// Multi-checkpoint containers: the text model inside an image-text checkpoint.
const MULTIMODAL: &[(&str, &str)] = &[
    ("gemma3", "gemma3_text"),
    ("gemma4", "gemma4_text"),
    ("qwen3_5", "qwen3_5_text"),
    ("qwen3_5_moe", "qwen3_5_moe_text"),
];

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
    #[error(
        "unsupported `rope_scaling` type `{0}`: llmctl supports `default`, `linear`, `llama3` and `yarn`, and `longrope` for phi3"
    )]
    RopeScaling(String),
    #[error("`config.json`'s LongRoPE needs `{0}`: {1}")]
    LongRope(&'static str, String),
    #[error("`partial_rotary_factor` {share} of head dimension {head_dim} is not an even number of dimensions")]
    PartialRotary { share: f64, head_dim: usize },
    #[error("`config.json` has an odd head dimension ({0}); rotary embeddings need an even one")]
    OddHeadDim(usize),
    #[error("`config.json` sets `mlp_bias`, which llmctl does not implement")]
    MlpBias,
    #[error("unsupported activation `{0}` (`hidden_act` in `config.json`): llmctl's {1} block computes `{2}`")]
    Activation(String, &'static str, &'static str),
    #[error("unsupported layer type `{found}` in `layer_types`: llmctl's {family} block runs {runs} layers")]
    LayerType { found: String, family: &'static str, runs: &'static str },
    #[error("`config.json` lists {found} `{field}` for {layers} layers")]
    PerLayer { field: &'static str, found: usize, layers: usize },
    #[error("`config.json` has sliding-window layers but no `sliding_window` size")]
    NoWindow,
    #[error("`config.json` sets `{0}`, which llmctl does not implement")]
    Unimplemented(&'static str),
    #[error("`config.json` (gemma4): {0}")]
    Gemma4(String),
    #[error(
        "`config.json` shares {key_heads} linear-attention key heads among {value_heads} value heads; \
         the value heads must be a multiple of them"
    )]
    LinearHeads { key_heads: usize, value_heads: usize },
    #[error("`config.json` routes each token to {top_k} of {experts} experts; top-k must be 1..=experts")]
    Experts { experts: usize, top_k: usize },
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

#[derive(Debug, Clone, Default, Deserialize)]
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
    /// LongRoPE's per-frequency divisors, for contexts up to and past the original one.
    pub short_factor: Option<Vec<f64>>,
    pub long_factor: Option<Vec<f64>>,
    /// LongRoPE's scale of cos and sin (derived from the context growth when absent).
    pub attention_factor: Option<f64>,
    /// The share of each head that is rotated (transformers 5 keeps it here).
    pub partial_rotary_factor: Option<f64>,
    /// YaRN's ramp between interpolated and extrapolated frequencies, and its attention scale.
    pub beta_fast: Option<f64>,
    pub beta_slow: Option<f64>,
    pub truncate: Option<bool>,
    pub mscale: Option<f64>,
    pub mscale_all_dim: Option<f64>,
}

/// One rotary embedding: its base and frequency scaling.
#[derive(Debug, Clone)]
pub struct RopeSpec {
    pub theta: f64,
    pub scaling: Option<RopeScaling>,
    /// The leading dimensions of each head it rotates (all of them but for Phi's partial rotary).
    pub rotary_dim: usize,
    /// LongRoPE: a pass reaching past this many positions uses the long factors.
    pub longrope: Option<LongRope>,
    /// Gemma 4's proportional RoPE: only the first this many pairs of the
    /// (full-width, half-split) rotation turn, at `theta^(-2i/rotary_dim)`; the rest keep still.
    pub rotated_pairs: Option<usize>,
}

/// LongRoPE, as transformers applies it: the frequencies of a forward pass
/// are divided by the short factors while the pass ends within the original
/// context, by the long ones past it; cos and sin are scaled by `attention_factor`.
#[derive(Debug, Clone)]
pub struct LongRope {
    pub original_context: usize,
    pub short_factor: Vec<f64>,
    pub long_factor: Vec<f64>,
    pub attention_factor: f64,
}

/// What one layer computes beyond the shared block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerSpec {
    /// Keys this layer attends to (its own position included), or all.
    pub window: Option<usize>,
    /// Which of the config's rotary embeddings it applies (`ModelConfig::ropes`), or none.
    pub rope: Option<usize>,
    /// Routed experts in place of (or, for Gemma 4, beside) the dense MLP.
    pub moe: bool,
    /// Its attention's shape: Gemma 4's global layers have wider heads and may have fewer KV heads.
    pub head_dim: usize,
    pub kv_heads: usize,
    /// Where its keys and values come from.
    pub kv: KvSource,
    /// Width of its dense MLP (Gemma 4 doubles it in the layers that share KV).
    pub intermediate_size: usize,
    /// A gated delta-rule layer (`BlockSpec::linear`) in place of attention:
    /// a fixed recurrent state, no KV rows.
    pub linear: bool,
}

/// A layer's keys and values: its own projections, its keys reused as values
/// (Gemma 4's `attention_k_eq_v`), or those an earlier layer stored (Gemma 4's
/// KV sharing: the layer has no K/V projections and stores nothing).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KvSource {
    Projected,
    ValuesAreKeys,
    SharedWith(usize),
}

impl LayerSpec {
    /// A layer of the config's uniform shape: its own K/V, the config's MLP width.
    pub fn uniform(head_dim: usize, kv_heads: usize, intermediate_size: usize) -> LayerSpec {
        LayerSpec {
            window: None,
            rope: Some(0),
            moe: false,
            head_dim,
            kv_heads,
            kv: KvSource::Projected,
            intermediate_size,
            linear: false,
        }
    }

    /// Whether it stores keys and values of its own (not a recurrent layer, nor one that shares).
    pub fn stores_kv(&self) -> bool {
        !self.linear && !matches!(self.kv, KvSource::SharedWith(_))
    }
}

/// Qwen3.5's gated delta rule: a causal depthwise convolution over the
/// queries, keys and values, then a recurrent state per value head
/// (key_dim × value_dim) that decays and is corrected by each token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinearSpec {
    pub conv_kernel: usize,
    pub key_heads: usize,
    pub key_dim: usize,
    pub value_heads: usize,
    pub value_dim: usize,
}

impl LinearSpec {
    /// Channels of the convolution: queries, keys and values.
    pub fn conv_channels(&self) -> usize {
        2 * self.key_heads * self.key_dim + self.value_heads * self.value_dim
    }

    /// The f32 state one layer keeps, whatever the context: the convolution's
    /// last `conv_kernel - 1` inputs and the recurrent state.
    pub fn state_bytes(&self) -> u64 {
        let conv = self.conv_channels() * (self.conv_kernel - 1);
        ((conv + self.value_heads * self.key_dim * self.value_dim) * 4) as u64
    }
}

/// Routed experts: a router picks `top_k` of `experts` gated MLPs per token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MoeSpec {
    pub experts: usize,
    pub top_k: usize,
    pub intermediate_size: usize,
    pub routing: Routing,
    /// Qwen3.5-MoE: a dense MLP of this width beside the routed ones, its
    /// output scaled by a sigmoid gate (`shared_expert_gate`).
    pub shared_expert: Option<usize>,
}

/// How the router's logits become the chosen experts' weights.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Routing {
    /// Qwen3-MoE: softmax over all experts, the top k kept (renormalized to sum to one where `norm_top_k`).
    SoftmaxTopK { norm_top_k: bool },
    /// gpt-oss: the top k logits (the router has a bias), then a softmax over them.
    TopKSoftmax,
    /// Gemma 4: the router's input RMS-normed and scaled, softmax, the top k
    /// renormalized and multiplied by a learned scale per expert; experts run
    /// beside the dense MLP, each output normed, and their sum normed again.
    Gemma4,
}

/// Gemma's block: norms after attention and MLP as well as before,
/// embeddings multiplied by √hidden; Gemma 3's norms scale by `1 + w`, Gemma 4's by `w`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NormStyle {
    Llama,
    Gemma {
        plus_one: bool,
    },
    /// Qwen3.5: Llama's norms, each scaling by `1 + w`.
    OffsetLlama,
}

impl NormStyle {
    /// Whether a norm's weight is stored as its offset from one.
    pub fn offset(self) -> bool {
        matches!(self, NormStyle::Gemma { plus_one: true } | NormStyle::OffsetLlama)
    }
}

/// Gemma 4's per-layer input embeddings: a second embedding table of `width`
/// values per layer and token, mixed with a projection of the token's
/// embedding and fed into each layer through a gate after its MLP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PerLayerInputs {
    pub width: usize,
    pub vocab: usize,
}

#[derive(Debug, Deserialize)]
struct Kind {
    model_type: Option<String>,
    text_config: Option<serde_json::Value>,
}

/// What the engine reads beyond the shape that `formats::hf_config` checks.
#[derive(Debug, Deserialize)]
struct Raw {
    /// Absent where every layer routes (Qwen3.5-MoE).
    intermediate_size: Option<u64>,
    #[serde(default = "default_eps")]
    rms_norm_eps: f64,
    rope_theta: Option<f64>,
    rope_scaling: Option<RopeScaling>,
    /// transformers 5 writes `rope_parameters` in place of `rope_theta` and
    /// `rope_scaling`: one set, or one per layer type.
    rope_parameters: Option<serde_json::Value>,
    rope_local_base_freq: Option<f64>,
    partial_rotary_factor: Option<f64>,
    original_max_position_embeddings: Option<f64>,
    tie_word_embeddings: Option<bool>,
    attention_bias: Option<bool>,
    #[serde(default)]
    mlp_bias: bool,
    hidden_act: Option<String>,
    /// Gemma's name for it.
    hidden_activation: Option<String>,
    eos_token_id: Option<TokenIds>,
    sliding_window: Option<u64>,
    use_sliding_window: Option<bool>,
    max_window_layers: Option<u64>,
    layer_types: Option<Vec<String>>,
    #[serde(alias = "_sliding_window_pattern")]
    sliding_window_pattern: Option<u64>,
    no_rope_layers: Option<Vec<u8>>,
    no_rope_layer_interval: Option<u64>,
    query_pre_attn_scalar: Option<f64>,
    final_logit_softcapping: Option<f64>,
    /// `true` (Gemma 3) or `"all"` (Gemma 4): not computed; Gemma 4's `"vision"` is causal for text.
    use_bidirectional_attention: Option<serde_json::Value>,
    num_experts: Option<u64>,
    /// transformers 5's (and gpt-oss's) name for it; a config may carry both.
    num_local_experts: Option<u64>,
    num_experts_per_tok: Option<u64>,
    moe_intermediate_size: Option<u64>,
    #[serde(default)]
    norm_topk_prob: bool,
    decoder_sparse_step: Option<u64>,
    mlp_only_layers: Option<Vec<u64>>,
    shared_expert_intermediate_size: Option<u64>,
    full_attention_interval: Option<u64>,
    linear_conv_kernel_dim: Option<u64>,
    linear_num_key_heads: Option<u64>,
    linear_key_head_dim: Option<u64>,
    linear_num_value_heads: Option<u64>,
    linear_value_head_dim: Option<u64>,
    /// Gemma 4: its global layers' head width and KV heads (transformers 5.17
    /// writes them as `per_layer_config` instead).
    global_head_dim: Option<u64>,
    num_global_key_value_heads: Option<u64>,
    per_layer_config: Option<std::collections::BTreeMap<String, LayerOverride>>,
    #[serde(default)]
    attention_k_eq_v: bool,
    #[serde(default)]
    num_kv_shared_layers: u64,
    #[serde(default)]
    use_double_wide_mlp: bool,
    #[serde(default)]
    enable_moe_block: bool,
    top_k_experts: Option<u64>,
    /// Absent: transformers' default (256); `null` or 0: none.
    #[serde(default, deserialize_with = "present")]
    hidden_size_per_layer_input: Option<serde_json::Value>,
    vocab_size_per_layer_input: Option<u64>,
}

/// One layer's attention shape where it differs from the config's (Gemma 4).
#[derive(Debug, Clone, Default, Deserialize)]
struct LayerOverride {
    head_dim: Option<u64>,
    num_key_value_heads: Option<u64>,
}

/// A key that is present, `null` included (serde's `Option` reads `null` as absent).
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<serde_json::Value>, D::Error> {
    serde_json::Value::deserialize(d).map(Some)
}

fn default_eps() -> f64 {
    1e-6
}

const DEFAULT_THETA: f64 = 10_000.0;

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
    pub tie_word_embeddings: bool,
    pub qkv_bias: bool,
    pub eos_token_ids: Vec<u32>,
    pub block: BlockSpec,
}

/// What the family's block computes, and per layer.
#[derive(Debug, Clone)]
pub struct BlockSpec {
    pub qk_norm: bool,
    /// A bias on the attention's output projection.
    pub output_bias: bool,
    /// A learned logit per head that joins each softmax (gpt-oss's attention sinks).
    pub sinks: bool,
    pub activation: Activation,
    pub norms: NormStyle,
    /// Scores are divided by √ of this instead of √head_dim.
    pub query_pre_attn_scalar: Option<f64>,
    /// Logits become `cap · tanh(logits / cap)`.
    pub final_logit_softcapping: Option<f64>,
    pub moe: Option<MoeSpec>,
    /// Qwen3.5: the gated delta rule of its `LayerSpec::linear` layers.
    pub linear: Option<LinearSpec>,
    /// Qwen3.5: the query projection is twice as wide, each head's query
    /// followed by a gate; the attention's output is multiplied by its sigmoid.
    pub output_gate: bool,
    /// Every rotary embedding a layer uses; `ropes[0]` is the global one.
    pub ropes: Vec<RopeSpec>,
    pub layers: Vec<LayerSpec>,
    /// The text model's weights sit under `language_model.` (an image-text checkpoint).
    pub multimodal: bool,
    /// Values are RMS-normed per head (without a scale), as Gemma 4's are.
    pub v_norm: bool,
    pub per_layer_inputs: Option<PerLayerInputs>,
    /// Each layer's output is multiplied by its stored `layer_scalar` (Gemma 4).
    pub layer_scalar: bool,
}

impl BlockSpec {
    /// A Llama block in every layer, with one rotary embedding.
    pub fn llama(layers: LayerSpec, count: usize, rope: RopeSpec, qk_norm: bool) -> BlockSpec {
        BlockSpec {
            qk_norm,
            output_bias: false,
            sinks: false,
            activation: Activation::Silu,
            norms: NormStyle::Llama,
            query_pre_attn_scalar: None,
            final_logit_softcapping: None,
            moe: None,
            linear: None,
            output_gate: false,
            ropes: vec![rope],
            layers: vec![layers; count],
            multimodal: false,
            v_norm: false,
            per_layer_inputs: None,
            layer_scalar: false,
        }
    }
}

impl ModelConfig {
    pub fn parse(json: &[u8]) -> Result<ModelConfig, ConfigError> {
        // The family first: another family's config need not have a Llama's fields.
        let kind: Kind = serde_json::from_slice(json)?;
        let model_type = kind.model_type.unwrap_or_default();
        let text;
        let (json, model_type, multimodal) = match MULTIMODAL.iter().find(|(outer, _)| *outer == model_type) {
            Some((_, inner)) => {
                let config = kind
                    .text_config
                    .ok_or_else(|| ConfigError::Unsupported(format!("{model_type} without `text_config`")))?;
                let inner_type = config.get("model_type").and_then(|t| t.as_str()).unwrap_or(inner).to_string();
                text = serde_json::to_vec(&config)?;
                (text.as_slice(), inner_type, true)
            }
            None => (json, model_type, false),
        };
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
        if let Some(b) = &raw.use_bidirectional_attention
            && (b == true || b == "all")
        {
            return Err(ConfigError::Unimplemented("use_bidirectional_attention"));
        }
        // A block computed with another activation than the config's would run, wrongly.
        // (gpt-oss's experts compute their own, whatever `hidden_act` says, as in transformers.)
        let want = family.activation();
        if let Some(act) = raw.hidden_activation.as_ref().or(raw.hidden_act.as_ref())
            && family != Family::GptOss
            && Activation::parse(act) != Some(want)
        {
            let computes = if want == Activation::Silu { "silu" } else { "gelu_pytorch_tanh" };
            return Err(ConfigError::Activation(act.clone(), family.name(), computes));
        }
        let layers = shape.layers as usize;
        let kv_heads = shape.kv_heads as usize;
        let moe = moe_spec(&raw, family)?;
        // Only Qwen3.5-MoE, whose every layer routes, may leave out the dense MLP's width.
        let intermediate = match (raw.intermediate_size, &moe) {
            (Some(i), _) => i,
            (None, Some(moe)) if family == Family::Qwen35Moe => moe.intermediate_size as u64,
            (None, _) => 0,
        };
        let intermediate_size = check_range("intermediate_size", intermediate, MAX_HIDDEN * 8)? as usize;
        let (global, local) = ropes(&raw, family, head_dim, shape.context_length as usize)?;
        let uniform = LayerSpec::uniform(head_dim, kv_heads, intermediate_size);
        let mut layer_specs = layer_specs(&raw, family, layers, local.is_some(), &uniform)?;
        let global = if family == Family::Gemma4 {
            gemma4::layers(&raw, &mut layer_specs, shape.attention_heads as usize)?;
            gemma4::global_rope(global, &layer_specs, &raw)?
        } else {
            global
        };
        // Qwen3.5-MoE routes in every layer, whatever `mlp_only_layers` says (as transformers builds it).
        let layer_specs = layer_specs
            .into_iter()
            .enumerate()
            .map(|(i, spec)| LayerSpec {
                moe: moe.is_some() && (family == Family::Qwen35Moe || is_sparse(&raw, i)),
                ..spec
            })
            .collect();
        let linear = linear_spec(&raw, family)?;
        // As each family's attention in transformers builds its projections.
        let attention_bias = raw.attention_bias.unwrap_or(family == Family::GptOss);
        let (qkv_bias, output_bias) = match family {
            Family::Mistral | Family::Phi3 => (false, false),
            Family::Qwen2 => (true, false),
            _ => (attention_bias, attention_bias),
        };
        let mut rope_list = vec![global];
        rope_list.extend(local);
        let gemma = matches!(family, Family::Gemma3 | Family::Gemma4);
        let gemma4 = family == Family::Gemma4;
        Ok(ModelConfig {
            family,
            hidden_size: shape.hidden_size as usize,
            intermediate_size,
            layers,
            heads: shape.attention_heads as usize,
            kv_heads,
            head_dim,
            max_context: shape.context_length as usize,
            vocab_size: shape.vocab_size as usize,
            rms_norm_eps: raw.rms_norm_eps,
            // Gemma and SmolLM3 tie by default (their configs' defaults), the others do not.
            tie_word_embeddings: raw.tie_word_embeddings.unwrap_or(gemma || family == Family::SmolLm3),
            qkv_bias,
            eos_token_ids: raw.eos_token_id.as_ref().map(|e| e.to_vec()).unwrap_or_default(),
            block: BlockSpec {
                qk_norm: gemma || family.is_qwen35() || matches!(family, Family::Qwen3 | Family::Qwen3Moe),
                output_bias,
                sinks: family == Family::GptOss,
                activation: want,
                norms: match family {
                    Family::Gemma3 | Family::Gemma4 => NormStyle::Gemma { plus_one: !gemma4 },
                    Family::Qwen35 | Family::Qwen35Moe => NormStyle::OffsetLlama,
                    _ => NormStyle::Llama,
                },
                // Gemma 4 scores unscaled (its q/k norms see to the size).
                query_pre_attn_scalar: match family {
                    Family::Gemma3 => Some(raw.query_pre_attn_scalar.unwrap_or(256.0)),
                    Family::Gemma4 => Some(1.0),
                    _ => None,
                },
                // transformers caps in Gemma3ForCausalLM, not in Gemma 3's image-text model (real
                // Gemma 3 configs set no cap); both of Gemma 4's cap.
                final_logit_softcapping: if gemma4 || (gemma && !multimodal) {
                    raw.final_logit_softcapping
                } else {
                    None
                },
                moe,
                linear,
                output_gate: family.is_qwen35(),
                ropes: rope_list,
                layers: layer_specs,
                multimodal,
                v_norm: gemma4,
                per_layer_inputs: if gemma4 { gemma4::per_layer_inputs(&raw)? } else { None },
                layer_scalar: gemma4,
            },
        })
    }

    /// How many of the layers that store keys and values attend through a window, and its size.
    pub fn sliding_window(&self) -> Option<crate::formats::SlidingWindow> {
        let windows: Vec<usize> = self.block.layers.iter().filter(|l| l.stores_kv()).filter_map(|l| l.window).collect();
        let window = *windows.first()?;
        Some(crate::formats::SlidingWindow { layers: windows.len() as u64, window: window as u64 })
    }

    /// The layers that store keys and values, by shape, in order of first
    /// appearance; `None` where every layer stores the config's shape (the
    /// facts' `layers × kv_heads × head_dim`, windows aside).
    pub fn kv_layers(&self) -> Option<Vec<crate::formats::KvLayers>> {
        let uniform = self
            .block
            .layers
            .iter()
            .all(|l| l.stores_kv() && (l.kv_heads, l.head_dim) == (self.kv_heads, self.head_dim));
        if uniform {
            return None;
        }
        let mut groups: Vec<crate::formats::KvLayers> = Vec::new();
        for l in self.block.layers.iter().filter(|l| l.stores_kv()) {
            let (kv_heads, head_dim, window) = (l.kv_heads as u64, l.head_dim as u64, l.window.map(|w| w as u64));
            match groups.iter_mut().find(|g| (g.kv_heads, g.head_dim, g.window) == (kv_heads, head_dim, window)) {
                Some(g) => g.layers += 1,
                None => groups.push(crate::formats::KvLayers { layers: 1, kv_heads, head_dim, window }),
            }
        }
        Some(groups)
    }

    /// How many layers keep a recurrent state in place of KV rows, and its bytes.
    pub fn recurrent(&self) -> Option<crate::formats::RecurrentLayers> {
        let spec = self.block.linear?;
        let layers = self.block.layers.iter().filter(|l| l.linear).count() as u64;
        (layers > 0).then(|| crate::formats::RecurrentLayers { layers, state_bytes: layers * spec.state_bytes() })
    }

    /// Query heads that share one KV head.
    pub fn group_size(&self) -> usize {
        self.heads / self.kv_heads
    }
}

/// The global rotary embedding and, for families with local layers of their own base, the local one.
fn ropes(
    raw: &Raw,
    family: Family,
    head_dim: usize,
    max_context: usize,
) -> Result<(RopeSpec, Option<RopeSpec>), ConfigError> {
    let (global, local) = base_ropes(raw, family, head_dim)?;
    Ok((partial_and_long(global, raw, family, max_context)?, local))
}

/// Phi's partial rotary embedding and LongRoPE, on the global embedding.
fn partial_and_long(
    mut spec: RopeSpec,
    raw: &Raw,
    family: Family,
    max_context: usize,
) -> Result<RopeSpec, ConfigError> {
    let head_dim = spec.rotary_dim;
    // A default `rope_type` leaves no scaling in `spec`, but `rope_parameters` may still carry the share.
    let in_parameters = raw.rope_parameters.as_ref().and_then(|p| p.get("partial_rotary_factor")?.as_f64());
    let partial = spec.scaling.as_ref().and_then(|s| s.partial_rotary_factor).or(in_parameters);
    let partial = partial.or(raw.partial_rotary_factor);
    // Qwen3.5 rotates a quarter of each head unless its config says otherwise (as transformers defaults it).
    let partial = partial.or(family.is_qwen35().then_some(0.25));
    if let Some(share) = partial.filter(|_| family == Family::Phi3 || family.is_qwen35()) {
        // transformers: int(head_dim * partial_rotary_factor), even for the half-split rotation.
        let dim = (head_dim as f64 * share) as usize;
        if dim == 0 || dim > head_dim || !dim.is_multiple_of(2) {
            return Err(ConfigError::PartialRotary { share, head_dim });
        }
        spec.rotary_dim = dim;
    }
    if let Some(yarn) = spec.scaling.as_mut().filter(|s| s.rope_type.as_deref() == Some("yarn")) {
        // transformers: the config's `original_max_position_embeddings`, else the context.
        let original = yarn.original_max_position_embeddings.or(raw.original_max_position_embeddings);
        let original = original.unwrap_or(max_context as f64);
        yarn.original_max_position_embeddings = Some(original);
        yarn.factor = Some(yarn.factor.unwrap_or(max_context as f64 / original));
    }
    let Some(scaling) = spec.scaling.take_if(|s| s.rope_type.as_deref() == Some("longrope")) else {
        return Ok(spec);
    };
    let half = spec.rotary_dim / 2;
    let factors = |name: &'static str, f: &Option<Vec<f64>>| match f {
        Some(f) if f.len() == half && f.iter().all(|x| x.is_finite() && *x > 0.0) => Ok(f.clone()),
        Some(f) => {
            Err(ConfigError::LongRope(name, format!("{} positive factors, one per rotated pair ({half})", f.len())))
        }
        None => Err(ConfigError::LongRope(name, format!("{half} factors, one per rotated pair"))),
    };
    let original = scaling
        .original_max_position_embeddings
        .or(raw.original_max_position_embeddings)
        .filter(|&o| o >= 1.0)
        .ok_or_else(|| ConfigError::LongRope("original_max_position_embeddings", "the pretraining context".into()))?;
    // transformers: the context's growth when `factor` is absent, and √(1 + ln f / ln original).
    let factor = scaling.factor.unwrap_or(max_context as f64 / original);
    let attention_factor = scaling.attention_factor.unwrap_or(if factor <= 1.0 {
        1.0
    } else {
        (1.0 + factor.ln() / original.ln()).sqrt()
    });
    spec.longrope = Some(LongRope {
        original_context: original as usize,
        short_factor: factors("short_factor", &scaling.short_factor)?,
        long_factor: factors("long_factor", &scaling.long_factor)?,
        attention_factor,
    });
    Ok(spec)
}

fn base_ropes(raw: &Raw, family: Family, head_dim: usize) -> Result<(RopeSpec, Option<RopeSpec>), ConfigError> {
    let scaling_of = |v: &serde_json::Value| normalized(serde_json::from_value(v.clone())?, family);
    let spec = |s: Option<RopeScaling>, theta: Option<f64>| {
        let theta = s.as_ref().and_then(|s| s.rope_theta).or(theta).unwrap_or(DEFAULT_THETA);
        let scaling = s.filter(|s| s.rope_type.as_deref().is_some_and(|t| t != "default"));
        RopeSpec { theta, scaling, rotary_dim: head_dim, longrope: None, rotated_pairs: None }
    };
    let gemma = matches!(family, Family::Gemma3 | Family::Gemma4);
    // Gemma 3's local layers: their own base (`rope_local_base_freq` before transformers 5), no scaling.
    let local_default = || RopeSpec {
        theta: raw.rope_local_base_freq.unwrap_or(DEFAULT_THETA),
        scaling: None,
        rotary_dim: head_dim,
        longrope: None,
        rotated_pairs: None,
    };
    let params = raw.rope_parameters.as_ref();
    if let Some(full) = params.and_then(|p| p.get("full_attention")) {
        let global = spec(Some(scaling_of(full)?), raw.rope_theta);
        let sliding = params.and_then(|p| p.get("sliding_attention"));
        let local = sliding.map(|s| scaling_of(s).map(|s| spec(Some(s), raw.rope_local_base_freq))).transpose()?;
        return Ok((global, gemma.then(|| local.unwrap_or_else(local_default))));
    }
    let scaling = match params {
        Some(p) => Some(scaling_of(p)?),
        None => raw.rope_scaling.clone().map(|s| normalized(s, family)).transpose()?,
    };
    let global = spec(scaling, raw.rope_theta.or(gemma.then_some(1_000_000.0)));
    Ok((global, gemma.then(local_default)))
}

/// `rope_type` from either key, checked; Phi's older names for LongRoPE as transformers reads them.
fn normalized(mut s: RopeScaling, family: Family) -> Result<RopeScaling, ConfigError> {
    s.rope_type = s.rope_type.take().or(s.legacy_type.take());
    if family == Family::Phi3 && matches!(s.rope_type.as_deref(), Some("su" | "yarn")) {
        s.rope_type = Some("longrope".into());
    }
    check_rope_scaling(Some(&s), family)?;
    Ok(s)
}

/// Each layer's window and rotary embedding, as transformers derives them from the config.
fn layer_specs(
    raw: &Raw,
    family: Family,
    layers: usize,
    local_rope: bool,
    uniform: &LayerSpec,
) -> Result<Vec<LayerSpec>, ConfigError> {
    let window = match raw.sliding_window {
        Some(w) if !family.window_needs_flag() || raw.use_sliding_window == Some(true) => {
            Some(check_range("sliding_window", w, crate::formats::bounds::MAX_CONTEXT)? as usize)
        }
        _ => None,
    };
    let rope_on: Vec<bool> = match (&raw.no_rope_layers, family) {
        (Some(list), Family::SmolLm3) => {
            if list.len() != layers {
                return Err(ConfigError::PerLayer { field: "no_rope_layers", found: list.len(), layers });
            }
            list.iter().map(|&r| r != 0).collect()
        }
        (None, Family::SmolLm3) => {
            let every = raw.no_rope_layer_interval.unwrap_or(4).max(1) as usize;
            (0..layers).map(|i| !(i + 1).is_multiple_of(every)).collect()
        }
        _ => vec![true; layers],
    };
    let mixers: Vec<Mixer> = match &raw.layer_types {
        Some(types) => {
            if types.len() != layers {
                return Err(ConfigError::PerLayer { field: "layer_types", found: types.len(), layers });
            }
            types
                .iter()
                .map(|t| match (t.as_str(), family.is_qwen35()) {
                    ("full_attention", _) => Ok(Mixer::Full),
                    ("sliding_attention", false) => Ok(Mixer::Sliding),
                    ("linear_attention", true) => Ok(Mixer::Linear),
                    (other, _) => Err(ConfigError::LayerType {
                        found: other.into(),
                        family: family.name(),
                        runs: family.layer_types(),
                    }),
                })
                .collect::<Result<_, _>>()?
        }
        None => (0..layers)
            .map(|i| {
                let sliding = match family {
                    Family::Gemma3 | Family::Gemma4 => {
                        !(i as u64 + 1).is_multiple_of(raw.sliding_window_pattern.unwrap_or(6).max(1))
                    }
                    Family::Qwen2 | Family::Qwen3 => i as u64 >= raw.max_window_layers.unwrap_or(28),
                    Family::SmolLm3 => !rope_on[i],
                    Family::Mistral | Family::Qwen3Moe | Family::Phi3 => true,
                    Family::GptOss => !(i + 1).is_multiple_of(2),
                    Family::Llama => false,
                    // Every `full_attention_interval`-th layer attends, the others are linear.
                    Family::Qwen35 | Family::Qwen35Moe => {
                        let every = raw.full_attention_interval.unwrap_or(4).max(1);
                        return if (i as u64 + 1).is_multiple_of(every) { Mixer::Full } else { Mixer::Linear };
                    }
                };
                if sliding { Mixer::Sliding } else { Mixer::Full }
            })
            .collect(),
    };
    let mut sliding: Vec<bool> = mixers.iter().map(|m| *m == Mixer::Sliding).collect();
    // transformers makes Gemma 4's last layer global, whatever `layer_types` says.
    if family == Family::Gemma4
        && let Some(last) = sliding.last_mut()
    {
        *last = false;
    }
    // Gemma's local layers are windowed whatever the flag; the others need a size to be.
    let gemma = matches!(family, Family::Gemma3 | Family::Gemma4);
    if gemma && sliding.iter().any(|&s| s) && window.is_none() {
        return Err(ConfigError::NoWindow);
    }
    Ok((0..layers)
        .map(|i| LayerSpec {
            window: if sliding[i] { window } else { None },
            rope: (rope_on[i] && mixers[i] != Mixer::Linear).then_some(usize::from(sliding[i] && local_rope)),
            linear: mixers[i] == Mixer::Linear,
            ..uniform.clone()
        })
        .collect())
}

/// What a layer computes in place of attention over the sequence, as `layer_types` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mixer {
    Full,
    Sliding,
    Linear,
}

/// Qwen3.5's gated delta rule, with transformers' defaults for what the config leaves out.
fn linear_spec(raw: &Raw, family: Family) -> Result<Option<LinearSpec>, ConfigError> {
    use crate::formats::bounds::{MAX_HEAD_DIM, MAX_HEADS};
    if !family.is_qwen35() {
        return Ok(None);
    }
    let spec = LinearSpec {
        conv_kernel: check_range("linear_conv_kernel_dim", raw.linear_conv_kernel_dim.unwrap_or(4), 64)? as usize,
        key_heads: check_range("linear_num_key_heads", raw.linear_num_key_heads.unwrap_or(16), MAX_HEADS)? as usize,
        key_dim: check_range("linear_key_head_dim", raw.linear_key_head_dim.unwrap_or(128), MAX_HEAD_DIM)? as usize,
        value_heads: check_range("linear_num_value_heads", raw.linear_num_value_heads.unwrap_or(32), MAX_HEADS)?
            as usize,
        value_dim: check_range("linear_value_head_dim", raw.linear_value_head_dim.unwrap_or(128), MAX_HEAD_DIM)?
            as usize,
    };
    if !spec.value_heads.is_multiple_of(spec.key_heads) {
        return Err(ConfigError::LinearHeads { key_heads: spec.key_heads, value_heads: spec.value_heads });
    }
    Ok(Some(spec))
}

fn moe_spec(raw: &Raw, family: Family) -> Result<Option<MoeSpec>, ConfigError> {
    let routing = match family {
        Family::Qwen3Moe => Routing::SoftmaxTopK { norm_top_k: raw.norm_topk_prob },
        // Qwen3.5-MoE's router always renormalizes its top k.
        Family::Qwen35Moe => Routing::SoftmaxTopK { norm_top_k: true },
        Family::GptOss => Routing::TopKSoftmax,
        Family::Gemma4 if raw.enable_moe_block => Routing::Gemma4,
        _ => return Ok(None),
    };
    let experts = check_range("num_experts", raw.num_experts.or(raw.num_local_experts).unwrap_or(0), 1 << 16)? as usize;
    let top_k = raw.num_experts_per_tok.or(raw.top_k_experts).unwrap_or(0) as usize;
    if top_k == 0 || top_k > experts {
        return Err(ConfigError::Experts { experts, top_k });
    }
    // gpt-oss's experts are `intermediate_size` wide.
    let inter = match family {
        Family::GptOss => raw.intermediate_size.unwrap_or(0),
        _ => raw.moe_intermediate_size.unwrap_or(0),
    };
    let inter = check_range("moe_intermediate_size", inter, MAX_HIDDEN * 8)?;
    let shared_expert = match family {
        Family::Qwen35Moe => Some(check_range(
            "shared_expert_intermediate_size",
            raw.shared_expert_intermediate_size.unwrap_or(0),
            MAX_HIDDEN * 8,
        )? as usize),
        _ => None,
    };
    Ok(Some(MoeSpec { experts, top_k, intermediate_size: inter as usize, routing, shared_expert }))
}

/// Whether layer `i` of a mixture-of-experts model routes (transformers' `Qwen3MoeDecoderLayer` rule).
fn is_sparse(raw: &Raw, i: usize) -> bool {
    let step = raw.decoder_sparse_step.unwrap_or(1).max(1) as usize;
    !raw.mlp_only_layers.as_ref().is_some_and(|l| l.contains(&(i as u64))) && (i + 1).is_multiple_of(step)
}

fn check_rope_scaling(scaling: Option<&RopeScaling>, family: Family) -> Result<(), ConfigError> {
    match scaling.and_then(|s| s.rope_type.as_deref()) {
        None | Some("default" | "linear" | "llama3" | "yarn") => Ok(()),
        // LongRoPE is Phi's (other families' blocks would need its per-pass switch too).
        Some("longrope") if family == Family::Phi3 => Ok(()),
        Some("proportional") if family == Family::Gemma4 => Ok(()),
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
        assert_eq!(cfg.block.ropes[0].theta, 10_000.0);
    }

    #[test]
    fn transformers_5_rope_parameters_carry_the_base_and_scaling() {
        let json = BASE.replace(
            "\"vocab_size\":32",
            "\"vocab_size\":32,\"rope_parameters\":{\"rope_theta\":500000.0,\"rope_type\":\"llama3\",\"factor\":8.0}",
        );
        let cfg = ModelConfig::parse(json.as_bytes()).unwrap();
        assert_eq!(cfg.block.ropes[0].theta, 500_000.0);
        assert_eq!(cfg.block.ropes[0].scaling.as_ref().unwrap().rope_type.as_deref(), Some("llama3"));
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
        assert_eq!(cfg.block.ropes[0].scaling.as_ref().unwrap().rope_type.as_deref(), Some("llama3"));
        let legacy = BASE
            .replace("\"vocab_size\":32", "\"vocab_size\":32,\"rope_scaling\":{\"type\":\"linear\",\"factor\":2.0}");
        assert_eq!(
            ModelConfig::parse(legacy.as_bytes()).unwrap().block.ropes[0]
                .scaling
                .as_ref()
                .unwrap()
                .rope_type
                .as_deref(),
            Some("linear")
        );
    }

    #[test]
    fn unsupported_architectures_and_scalings_are_named() {
        let gpt2 = BASE.replace("qwen2", "gpt2");
        let err = ModelConfig::parse(gpt2.as_bytes()).unwrap_err();
        assert_eq!(err.to_string(), format!("unsupported architecture `gpt2`: llmctl runs {SUPPORTED}"));
        // Named even when the config lacks fields only a Llama-family config has.
        let falcon = br#"{"model_type":"falcon","hidden_size":64}"#;
        assert!(matches!(ModelConfig::parse(falcon), Err(ConfigError::Unsupported(t)) if t == "falcon"));
        let dynamic =
            BASE.replace("\"vocab_size\":32", "\"vocab_size\":32,\"rope_scaling\":{\"type\":\"dynamic\",\"factor\":4}");
        assert!(matches!(ModelConfig::parse(dynamic.as_bytes()), Err(ConfigError::RopeScaling(t)) if t == "dynamic"));
    }

    fn with(extra: &str) -> String {
        BASE.replace("\"vocab_size\":32", &format!("\"vocab_size\":32,{extra}"))
    }

    #[test]
    fn layer_types_the_block_does_not_compute_are_named() {
        let cases = [
            (
                with(r#""layer_types":["full_attention","linear_attention"]"#),
                "unsupported layer type `linear_attention` in `layer_types`: llmctl's qwen2 block runs `full_attention` and `sliding_attention` layers",
            ),
            (with(r#""layer_types":["full_attention"]"#), "`config.json` lists 1 `layer_types` for 2 layers"),
            (
                with(r#""use_bidirectional_attention":true"#),
                "`config.json` sets `use_bidirectional_attention`, which llmctl does not implement",
            ),
        ];
        for (json, message) in cases {
            assert_eq!(ModelConfig::parse(json.as_bytes()).unwrap_err().to_string(), message);
        }
        // Both names of the expert count, as some configs carry them.
        let both = with(r#""num_experts":4,"num_local_experts":4,"num_experts_per_tok":2,"moe_intermediate_size":8"#)
            .replace("qwen2", "qwen3_moe");
        assert_eq!(ModelConfig::parse(both.as_bytes()).unwrap().block.moe.unwrap().experts, 4);
        let moe =
            with(r#""num_experts":4,"num_experts_per_tok":5,"moe_intermediate_size":8"#).replace("qwen2", "qwen3_moe");
        assert_eq!(
            ModelConfig::parse(moe.as_bytes()).unwrap_err().to_string(),
            "`config.json` routes each token to 5 of 4 experts; top-k must be 1..=experts"
        );
        let gemma = with(r#""layer_types":["sliding_attention","full_attention"]"#).replace("qwen2", "gemma3_text");
        assert_eq!(
            ModelConfig::parse(gemma.as_bytes()).unwrap_err().to_string(),
            "`config.json` has sliding-window layers but no `sliding_window` size"
        );
    }

    /// A Qwen3.5 config as transformers 5 writes it, with `extra` fields.
    fn qwen35(model_type: &str, extra: &str) -> String {
        format!(
            r#"{{"model_type":"{model_type}","hidden_size":64,"intermediate_size":96,"num_hidden_layers":4,
            "num_attention_heads":4,"num_key_value_heads":2,"head_dim":32,"max_position_embeddings":256,
            "vocab_size":128,"linear_conv_kernel_dim":4,"linear_key_head_dim":16,"linear_value_head_dim":24,
            "linear_num_key_heads":2,"linear_num_value_heads":4,"num_experts":4,"num_experts_per_tok":2,
            "moe_intermediate_size":32,"shared_expert_intermediate_size":48,
            "rope_parameters":{{"rope_type":"default","rope_theta":10000000.0,"mrope_section":[11,11,10]}}{extra}}}"#
        )
    }

    #[test]
    fn qwen35_layers_are_linear_or_gated_full_attention() {
        // No `layer_types`: every fourth layer attends (`full_attention_interval`), the others are linear.
        let cfg = ModelConfig::parse(qwen35("qwen3_5_text", "").as_bytes()).unwrap();
        let kinds: Vec<_> = cfg.block.layers.iter().map(|l| (l.linear, l.rope, l.moe)).collect();
        assert_eq!(kinds, [(true, None, false), (true, None, false), (true, None, false), (false, Some(0), false)]);
        assert_eq!((cfg.block.norms, cfg.block.output_gate, cfg.block.qk_norm), (NormStyle::OffsetLlama, true, true));
        // A quarter of each head rotates, by transformers' default; mrope's sections reduce to one RoPE.
        assert_eq!((cfg.block.ropes[0].rotary_dim, cfg.block.ropes[0].theta), (8, 10_000_000.0));
        let linear = cfg.block.linear.unwrap();
        assert_eq!((linear.conv_channels(), linear.state_bytes()), (160, (3 * 160 + 4 * 16 * 24) * 4));
        assert_eq!(cfg.recurrent(), Some(crate::formats::RecurrentLayers { layers: 3, state_bytes: 3 * 8064 }));
        let half =
            qwen35("qwen3_5_text", "").replace(r#""mrope_section""#, r#""partial_rotary_factor":0.5,"mrope_section""#);
        assert_eq!(ModelConfig::parse(half.as_bytes()).unwrap().block.ropes[0].rotary_dim, 16);
        let every_other = qwen35("qwen3_5_text", r#","full_attention_interval":2"#);
        let cfg = ModelConfig::parse(every_other.as_bytes()).unwrap();
        assert_eq!(cfg.block.layers.iter().map(|l| l.linear).collect::<Vec<_>>(), [true, false, true, false]);
        // Qwen3.5-MoE routes in every layer, beside a shared expert, and needs no dense width.
        let moe = qwen35("qwen3_5_moe_text", "").replace(r#""intermediate_size":96,"#, "");
        let cfg = ModelConfig::parse(moe.as_bytes()).unwrap();
        assert!(cfg.block.layers.iter().all(|l| l.moe));
        let spec = cfg.block.moe.unwrap();
        assert_eq!((spec.shared_expert, spec.routing), (Some(48), Routing::SoftmaxTopK { norm_top_k: true }));
        // The image-text checkpoint: its text model.
        let outer = format!(r#"{{"model_type":"qwen3_5","text_config":{}}}"#, qwen35("qwen3_5_text", ""));
        let cfg = ModelConfig::parse(outer.as_bytes()).unwrap();
        assert_eq!((cfg.family, cfg.block.multimodal), (Family::Qwen35, true));
    }

    #[test]
    fn qwen35_configs_the_block_does_not_compute_are_named() {
        let cases = [
            (
                qwen35(
                    "qwen3_5_text",
                    r#","layer_types":["linear_attention","sliding_attention","linear_attention","full_attention"]"#,
                ),
                "unsupported layer type `sliding_attention` in `layer_types`: llmctl's qwen3_5_text block runs `full_attention` and `linear_attention` layers",
            ),
            (
                qwen35(
                    "qwen3_5_moe_text",
                    r#","layer_types":["linear_attention","mamba","linear_attention","full_attention"]"#,
                ),
                "unsupported layer type `mamba` in `layer_types`: llmctl's qwen3_5_moe_text block runs `full_attention` and `linear_attention` layers",
            ),
            (
                qwen35("qwen3_5_text", "").replace(r#""linear_num_value_heads":4"#, r#""linear_num_value_heads":3"#),
                "`config.json` shares 2 linear-attention key heads among 3 value heads; the value heads must be a multiple of them",
            ),
            (
                qwen35("qwen3_5_text", "").replace(r#""linear_conv_kernel_dim":4"#, r#""linear_conv_kernel_dim":0"#),
                "`config.json` has a bad shape",
            ),
            (
                qwen35("qwen3_5_moe_text", "").replace(r#","shared_expert_intermediate_size":48"#, ""),
                "`config.json` has a bad shape",
            ),
            (qwen35("qwen3_5_text", "").replace(r#""intermediate_size":96,"#, ""), "`config.json` has a bad shape"),
            (
                qwen35("qwen3_5_text", r#","hidden_act":"gelu_pytorch_tanh""#),
                "unsupported activation `gelu_pytorch_tanh` (`hidden_act` in `config.json`): llmctl's qwen3_5_text block computes `silu`",
            ),
        ];
        for (json, message) in cases {
            assert_eq!(ModelConfig::parse(json.as_bytes()).unwrap_err().to_string(), message, "{json}");
        }
        // What a bad shape is, in the error's source.
        let shape = |json: String| match ModelConfig::parse(json.as_bytes()).unwrap_err() {
            ConfigError::Shape(shape) => shape.to_string(),
            other => panic!("{other}"),
        };
        let kernel =
            qwen35("qwen3_5_text", "").replace(r#""linear_conv_kernel_dim":4"#, r#""linear_conv_kernel_dim":0"#);
        assert_eq!(shape(kernel), "`linear_conv_kernel_dim` is 0, outside 1..=64");
        let shared = qwen35("qwen3_5_moe_text", "").replace(r#","shared_expert_intermediate_size":48"#, "");
        assert_eq!(shape(shared), format!("`shared_expert_intermediate_size` is 0, outside 1..={}", MAX_HIDDEN * 8));
        let dense = qwen35("qwen3_5_text", "").replace(r#""intermediate_size":96,"#, "");
        assert_eq!(shape(dense), format!("`intermediate_size` is 0, outside 1..={}", MAX_HIDDEN * 8));
        // Other families still refuse linear attention, and Qwen3.5 is the family that runs it.
        let qwen3 = with(r#""layer_types":["linear_attention","full_attention"]"#).replace("qwen2", "qwen3");
        assert_eq!(
            ModelConfig::parse(qwen3.as_bytes()).unwrap_err().to_string(),
            "unsupported layer type `linear_attention` in `layer_types`: llmctl's qwen3 block runs `full_attention` and `sliding_attention` layers"
        );
    }

    #[test]
    fn windows_follow_each_familys_rule() {
        // Qwen2 windows only with `use_sliding_window`, and then from `max_window_layers` on.
        let off = with(r#""sliding_window":16"#);
        assert_eq!(ModelConfig::parse(off.as_bytes()).unwrap().sliding_window(), None);
        let on = with(r#""sliding_window":16,"use_sliding_window":true,"max_window_layers":1"#);
        let cfg = ModelConfig::parse(on.as_bytes()).unwrap();
        assert_eq!(cfg.block.layers.iter().map(|l| l.window).collect::<Vec<_>>(), [None, Some(16)]);
        // Mistral: every layer, flag or not.
        let mistral = with(r#""sliding_window":16"#).replace("qwen2", "mistral");
        assert_eq!(
            ModelConfig::parse(mistral.as_bytes()).unwrap().sliding_window(),
            Some(crate::formats::SlidingWindow { layers: 2, window: 16 })
        );
        // A Gemma 3 config as transformers 4 wrote it: a pattern, and the local base beside the global one.
        let gemma = with(
            r#""sliding_window":16,"sliding_window_pattern":2,"rope_theta":1000000.0,"rope_local_base_freq":10000.0,"rope_scaling":{"rope_type":"linear","factor":8.0}"#,
        )
        .replace("qwen2", "gemma3_text");
        let cfg = ModelConfig::parse(gemma.as_bytes()).unwrap();
        assert_eq!(
            cfg.block.layers.iter().map(|l| (l.window, l.rope)).collect::<Vec<_>>(),
            [(Some(16), Some(1)), (None, Some(0))]
        );
        assert_eq!((cfg.block.ropes[0].theta, cfg.block.ropes[1].theta), (1_000_000.0, 10_000.0));
        assert!(cfg.block.ropes[0].scaling.is_some() && cfg.block.ropes[1].scaling.is_none());
        assert_eq!(cfg.block.query_pre_attn_scalar, Some(256.0));
        assert!(cfg.tie_word_embeddings, "Gemma ties its head by default");
    }

    #[test]
    fn phi_longrope_and_partial_rotary_are_read_and_checked() {
        // As Phi-4-mini's config.json writes them (before transformers 5): top-level share and original context.
        let phi = |scaling: &str| {
            with(&format!(
                r#""partial_rotary_factor":0.5,"original_max_position_embeddings":64,"rope_scaling":{{{scaling}}}"#
            ))
            .replace("qwen2", "phi3")
        };
        let cfg =
            ModelConfig::parse(phi(r#""type":"longrope","short_factor":[1,1,1,1],"long_factor":[2,2,2,2]"#).as_bytes())
                .unwrap();
        let rope = &cfg.block.ropes[0];
        let long = rope.longrope.as_ref().unwrap();
        assert_eq!((rope.rotary_dim, long.original_context), (8, 64));
        // factor = 256 / 64 = 4 (the context's growth), attention factor √(1 + ln 4 / ln 64).
        assert!((long.attention_factor - (1.0 + 4f64.ln() / 64f64.ln()).sqrt()).abs() < 1e-12);
        // Phi-3's older name for it.
        let su = ModelConfig::parse(phi(r#""type":"su","short_factor":[1,1,1,1],"long_factor":[2,2,2,2]"#).as_bytes());
        assert!(su.unwrap().block.ropes[0].longrope.is_some());
        // 0.3 of 16 is 4.8 dimensions, which transformers truncates to 4; 0.1 of 16 is 1, odd.
        let truncated = with(r#""partial_rotary_factor":0.3"#).replace("qwen2", "phi3");
        assert_eq!(ModelConfig::parse(truncated.as_bytes()).unwrap().block.ropes[0].rotary_dim, 4);
        let odd = with(r#""partial_rotary_factor":0.1"#).replace("qwen2", "phi3");
        assert_eq!(
            ModelConfig::parse(odd.as_bytes()).unwrap_err().to_string(),
            "`partial_rotary_factor` 0.1 of head dimension 16 is not an even number of dimensions"
        );
        let no_original = with(r#""partial_rotary_factor":0.5,"rope_scaling":{"type":"longrope","short_factor":[1,1,1,1],"long_factor":[2,2,2,2]}"#)
            .replace("qwen2", "phi3");
        assert_eq!(
            ModelConfig::parse(no_original.as_bytes()).unwrap_err().to_string(),
            "`config.json`'s LongRoPE needs `original_max_position_embeddings`: the pretraining context"
        );
        let short =
            ModelConfig::parse(phi(r#""type":"longrope","short_factor":[1,1],"long_factor":[2,2,2,2]"#).as_bytes());
        assert_eq!(
            short.unwrap_err().to_string(),
            "`config.json`'s LongRoPE needs `short_factor`: 2 positive factors, one per rotated pair (4)"
        );
        // LongRoPE is refused on a family whose block does not switch factors per pass.
        let llama = with(r#""rope_scaling":{"type":"longrope","short_factor":[1],"long_factor":[2]}"#)
            .replace("qwen2", "llama");
        assert_eq!(
            ModelConfig::parse(llama.as_bytes()).unwrap_err().to_string(),
            "unsupported `rope_scaling` type `longrope`: llmctl supports `default`, `linear`, `llama3` and `yarn`, and `longrope` for phi3"
        );
    }
}
