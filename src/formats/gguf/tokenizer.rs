//! A `tokenizers` tokenizer built from a GGUF file's vocabulary (llama.cpp's
//! `gpt2` byte-level BPE), with the pre-tokenizer its `tokenizer.ggml.pre`
//! names. Only pre-tokenizers checked against a reference are accepted.

use serde_json::{Value, json};

use super::{GgufHeader, GgufValue};

#[derive(Debug, thiserror::Error)]
pub enum GgufTokenizerError {
    #[error("GGUF metadata has no usable `{0}`")]
    Missing(&'static str),
    #[error(
        "unsupported GGUF tokenizer `{model}` with pre-tokenizer `{pre}`: llmctl builds `gpt2` tokenizers with pre-tokenizer {SUPPORTED_PRE}"
    )]
    Unsupported { model: String, pre: String },
}

const SUPPORTED_PRE: &str = "`smollm` or `default`";

/// The special tokens and chat template that come with the vocabulary.
#[derive(Debug, Clone)]
pub struct GgufTextMeta {
    pub tokenizer_json: Vec<u8>,
    pub bos: Option<(String, u32)>,
    pub eos: Option<(String, u32)>,
    pub add_bos: bool,
    pub chat_template: Option<String>,
}

fn strings<'a>(header: &'a GgufHeader, key: &'static str) -> Result<Vec<&'a str>, GgufTokenizerError> {
    let array = header.get(key).and_then(GgufValue::as_array).ok_or(GgufTokenizerError::Missing(key))?;
    array.iter().map(|v| v.as_str().ok_or(GgufTokenizerError::Missing(key))).collect()
}

fn pre_tokenizer(pre: &str) -> Option<Value> {
    let byte_level = json!({"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true});
    match pre {
        // llama.cpp's `smollm`: every digit split off, then GPT-2's regex.
        "smollm" => Some(
            json!({"type": "Sequence", "pretokenizers": [{"type": "Digits", "individual_digits": true}, byte_level]}),
        ),
        "default" | "gpt-2" => Some(byte_level),
        _ => None,
    }
}

pub fn build(header: &GgufHeader) -> Result<GgufTextMeta, GgufTokenizerError> {
    let model = header.get("tokenizer.ggml.model").and_then(GgufValue::as_str).unwrap_or("");
    let pre = header.get("tokenizer.ggml.pre").and_then(GgufValue::as_str).unwrap_or("default");
    let unsupported = || GgufTokenizerError::Unsupported { model: model.into(), pre: pre.into() };
    let pre_tokenizer = pre_tokenizer(pre).filter(|_| model == "gpt2").ok_or_else(unsupported)?;
    let tokens = strings(header, "tokenizer.ggml.tokens")?;
    let merges = strings(header, "tokenizer.ggml.merges")?;
    let types: Vec<u64> = header
        .get("tokenizer.ggml.token_type")
        .and_then(GgufValue::as_array)
        .map(|a| a.iter().map(|v| v.as_u64().unwrap_or(1)).collect())
        .unwrap_or_default();
    let vocab: serde_json::Map<String, Value> =
        tokens.iter().enumerate().map(|(i, t)| (t.to_string(), json!(i))).collect();
    // Control tokens (type 3) are matched whole in text and never split.
    let added: Vec<Value> = tokens
        .iter()
        .enumerate()
        .filter(|(i, _)| types.get(*i) == Some(&3))
        .map(|(i, t)| json!({"id": i, "content": t, "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": true}))
        .collect();
    let tokenizer = json!({
        "version": "1.0", "truncation": null, "padding": null, "added_tokens": added, "normalizer": null,
        "pre_tokenizer": pre_tokenizer, "post_processor": null,
        "decoder": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true},
        "model": {"type": "BPE", "dropout": null, "unk_token": null, "continuing_subword_prefix": null,
                  "end_of_word_suffix": null, "fuse_unk": false, "byte_fallback": false, "ignore_merges": false,
                  "vocab": vocab, "merges": merges}
    });
    let special = |key: &str| {
        let id = header.get(key).and_then(GgufValue::as_u64)?;
        Some((tokens.get(id as usize)?.to_string(), id as u32))
    };
    Ok(GgufTextMeta {
        tokenizer_json: serde_json::to_vec(&tokenizer).expect("JSON values serialize"),
        bos: special("tokenizer.ggml.bos_token_id"),
        eos: special("tokenizer.ggml.eos_token_id"),
        add_bos: matches!(header.get("tokenizer.ggml.add_bos_token"), Some(GgufValue::Bool(true))),
        chat_template: header.get("tokenizer.chat_template").and_then(GgufValue::as_str).map(str::to_string),
    })
}
