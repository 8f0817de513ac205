//! Reading a Hugging Face `config.json` into model facts, refusing shapes
//! no real model has (zero or absurd head counts, GQA that does not divide).

use serde::Deserialize;

use super::bounds::*;
use super::{ModelFacts, ShapeError, check_range};

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("`config.json` is not valid JSON for a model config")]
    Json(#[from] serde_json::Error),
    #[error("`config.json` names no architecture: it has neither `model_type` nor `architectures`")]
    NoArchitecture,
    #[error("`config.json` has a bad shape")]
    Shape(#[from] ShapeError),
    #[error("`config.json` has {heads} attention heads, not a multiple of its {kv_heads} KV heads")]
    Gqa { heads: u64, kv_heads: u64 },
    #[error(
        "`config.json` has no `head_dim`, and its `hidden_size` of {hidden_size} is not a multiple of its {heads} attention heads"
    )]
    HeadsDoNotDivide { hidden_size: u64, heads: u64 },
}

/// The subset of `config.json` llmctl reads; unknown keys are ignored.
#[derive(Debug, Deserialize)]
struct RawConfig {
    model_type: Option<String>,
    /// Some writers put `null` here.
    architectures: Option<Vec<String>>,
    hidden_size: u64,
    num_hidden_layers: u64,
    num_attention_heads: u64,
    num_key_value_heads: Option<u64>,
    head_dim: Option<u64>,
    max_position_embeddings: u64,
    vocab_size: u64,
}

/// Facts from `config.json`; `parameters` and `weight_dtype` are left for the
/// caller to fill from the weights.
pub fn parse(json: &[u8]) -> Result<ModelFacts, ConfigError> {
    let value: serde_json::Value = serde_json::from_slice(json)?;
    // An image-text checkpoint (Gemma 3, …) keeps its text model's shape in `text_config`.
    let text = value.get("text_config").filter(|t| t.is_object() && value.get("hidden_size").is_none());
    let mut raw: RawConfig = serde_json::from_value(text.unwrap_or(&value).clone())?;
    if text.is_some() {
        raw.model_type = value.get("model_type").and_then(|t| t.as_str()).map(Into::into).or(raw.model_type);
    }
    let architecture = raw
        .model_type
        .clone()
        .or_else(|| raw.architectures.as_ref().and_then(|a| a.first().cloned()))
        .ok_or(ConfigError::NoArchitecture)?;
    let heads = check_range("num_attention_heads", raw.num_attention_heads, MAX_HEADS)?;
    let kv_heads = check_range("num_key_value_heads", raw.num_key_value_heads.unwrap_or(heads), MAX_HEADS)?;
    if heads % kv_heads != 0 {
        return Err(ConfigError::Gqa { heads, kv_heads });
    }
    let hidden_size = check_range("hidden_size", raw.hidden_size, MAX_HIDDEN)?;
    if raw.head_dim.is_none() && !hidden_size.is_multiple_of(heads) {
        return Err(ConfigError::HeadsDoNotDivide { hidden_size, heads });
    }
    let head_dim = check_range("head_dim", raw.head_dim.unwrap_or(hidden_size / heads), MAX_HEAD_DIM)?;
    Ok(ModelFacts {
        architecture,
        parameters: 0,
        weight_dtype: super::WeightDtype::Other(String::new()),
        sliding_window: None,
        kv_layers: None,
        recurrent: None,
        context_length: check_range("max_position_embeddings", raw.max_position_embeddings, MAX_CONTEXT)?,
        hidden_size,
        layers: check_range("num_hidden_layers", raw.num_hidden_layers, MAX_LAYERS)?,
        attention_heads: heads,
        kv_heads,
        head_dim,
        vocab_size: check_range("vocab_size", raw.vocab_size, MAX_VOCAB)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SMOLLM2: &str = r#"{"model_type":"llama","architectures":["LlamaForCausalLM"],"hidden_size":576,
        "num_hidden_layers":30,"num_attention_heads":9,"num_key_value_heads":3,
        "max_position_embeddings":8192,"vocab_size":49152,"rope_theta":100000.0}"#;

    #[test]
    fn reads_a_llama_config() {
        let facts = parse(SMOLLM2.as_bytes()).unwrap();
        assert_eq!((facts.architecture.as_str(), facts.head_dim, facts.kv_heads), ("llama", 64, 3));
    }

    #[test]
    fn an_image_text_checkpoint_is_described_by_its_text_model() {
        let json =
            format!(r#"{{"model_type":"gemma3","vision_config":{{"hidden_size":32}},"text_config":{}}}"#, SMOLLM2);
        let facts = parse(json.as_bytes()).unwrap();
        assert_eq!((facts.architecture.as_str(), facts.hidden_size, facts.layers), ("gemma3", 576, 30));
    }

    #[test]
    fn tolerates_null_architectures() {
        // transformers writes this for models it loaded from GGUF.
        let json = SMOLLM2.replace("\"architectures\":[\"LlamaForCausalLM\"]", "\"architectures\":null");
        assert_eq!(parse(json.as_bytes()).unwrap().architecture, "llama");
    }

    #[test]
    fn refuses_adversarial_shapes() {
        let zero = SMOLLM2.replace("\"num_attention_heads\":9", "\"num_attention_heads\":0");
        assert!(matches!(parse(zero.as_bytes()), Err(ConfigError::Shape(e)) if e.field == "num_attention_heads"));
        let huge = SMOLLM2.replace("\"num_hidden_layers\":30", "\"num_hidden_layers\":18446744073709551615");
        assert!(matches!(parse(huge.as_bytes()), Err(ConfigError::Shape(_))));
        let gqa = SMOLLM2.replace("\"num_key_value_heads\":3", "\"num_key_value_heads\":4");
        assert!(matches!(parse(gqa.as_bytes()), Err(ConfigError::Gqa { .. })));
        // 576 / 7 would truncate to a head dimension the weights do not have.
        let indivisible = SMOLLM2.replace(
            "\"num_attention_heads\":9,\"num_key_value_heads\":3",
            "\"num_attention_heads\":7,\"num_key_value_heads\":7",
        );
        assert!(matches!(
            parse(indivisible.as_bytes()),
            Err(ConfigError::HeadsDoNotDivide { hidden_size: 576, heads: 7 })
        ));
        let explicit = indivisible.replace("\"vocab_size\"", "\"head_dim\":64,\"vocab_size\"");
        assert_eq!(parse(explicit.as_bytes()).unwrap().head_dim, 64);
        assert!(matches!(parse(b"{}"), Err(ConfigError::Json(_))));
    }
}
