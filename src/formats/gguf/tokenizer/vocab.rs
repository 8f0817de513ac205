//! The vocabulary as llama.cpp's `llama_vocab::load` reads it from the
//! `tokenizer.ggml.*` keys: token texts, types and scores, and the merges.

use tokenizers::AddedToken;
use tokenizers::models::bpe::{Merges, Vocab as BpeVocab};

use super::GgufTokenizerError;
use crate::formats::gguf::{GgufHeader, GgufValue};

/// `tokenizer.ggml.token_type`: llama.cpp's `llama_token_type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum TokenType {
    Normal,
    Unknown,
    Control,
    UserDefined,
    Unused,
    Byte,
    Undefined,
}

impl TokenType {
    fn from_value(value: &GgufValue) -> TokenType {
        match value.as_u64() {
            Some(1) => TokenType::Normal,
            Some(2) => TokenType::Unknown,
            Some(3) => TokenType::Control,
            Some(4) => TokenType::UserDefined,
            Some(5) => TokenType::Unused,
            Some(6) => TokenType::Byte,
            _ => TokenType::Undefined,
        }
    }

    /// llama.cpp matches these whole in the text before tokenizing the rest
    /// (its `cache_special_tokens`).
    pub fn is_special_text(self) -> bool {
        matches!(self, TokenType::Unknown | TokenType::Control | TokenType::UserDefined)
    }
}

pub(super) struct Vocab {
    pub tokens: Vec<String>,
    pub types: Vec<TokenType>,
    /// 0 where the file has none, as in llama.cpp.
    pub scores: Vec<f32>,
}

fn array<'a>(header: &'a GgufHeader, key: &'static str) -> Result<Option<&'a [GgufValue]>, GgufTokenizerError> {
    match header.get(key) {
        None => Ok(None),
        Some(value) => value.as_array().map(Some).ok_or(GgufTokenizerError::Missing(key)),
    }
}

/// A per-token array as long as the vocabulary (llama.cpp rejects a shorter one), or `None` if absent.
fn per_token<'a>(
    header: &'a GgufHeader,
    key: &'static str,
    tokens: usize,
) -> Result<Option<&'a [GgufValue]>, GgufTokenizerError> {
    let Some(values) = array(header, key)? else { return Ok(None) };
    if values.len() < tokens {
        return Err(GgufTokenizerError::TooShort { key, len: values.len(), tokens });
    }
    Ok(Some(&values[..tokens]))
}

impl Vocab {
    pub fn read(header: &GgufHeader) -> Result<Vocab, GgufTokenizerError> {
        const TOKENS: &str = "tokenizer.ggml.tokens";
        let values = array(header, TOKENS)?.ok_or(GgufTokenizerError::Missing(TOKENS))?;
        // llama.cpp names empty tokens so that each text is unique.
        let tokens = values
            .iter()
            .enumerate()
            .map(|(i, v)| match v.as_str() {
                Some("") => Ok(format!("[EMPTY_{i}]")),
                Some(text) => Ok(text.to_string()),
                None => Err(GgufTokenizerError::Missing(TOKENS)),
            })
            .collect::<Result<Vec<_>, _>>()?;
        let n = tokens.len();
        let types = match per_token(header, "tokenizer.ggml.token_type", n)? {
            Some(values) => values.iter().map(TokenType::from_value).collect(),
            None => vec![TokenType::Normal; n],
        };
        let scores = match per_token(header, "tokenizer.ggml.scores", n)? {
            Some(values) => values.iter().map(|v| v.as_f64().unwrap_or(0.0) as f32).collect(),
            None => vec![0.0; n],
        };
        Ok(Vocab { tokens, types, scores })
    }

    pub fn len(&self) -> usize {
        self.tokens.len()
    }

    /// Text → id. llama.cpp aborts on a text that two ids share; so does this, with an error.
    pub fn ids(&self) -> Result<BpeVocab, GgufTokenizerError> {
        let ids: BpeVocab = self.tokens.iter().enumerate().map(|(i, t)| (t.clone(), i as u32)).collect();
        if ids.len() == self.tokens.len() {
            return Ok(ids);
        }
        let duplicate = self.tokens.iter().enumerate().find(|(i, t)| ids.get(*t) != Some(&(*i as u32)));
        Err(GgufTokenizerError::DuplicateToken(duplicate.map(|(_, t)| t.clone()).unwrap_or_default()))
    }

    /// The tokens matched whole in the text: control and unknown ones only
    /// when special tokens are parsed (`special` to `tokenizers`), user-defined
    /// ones always. `rstrip(id)` says which also swallow the whitespace after them.
    pub fn added_tokens(&self, rstrip: impl Fn(usize) -> bool) -> Vec<AddedToken> {
        self.tokens
            .iter()
            .zip(&self.types)
            .enumerate()
            .filter(|(_, (_, ty))| ty.is_special_text())
            .map(|(id, (text, ty))| {
                AddedToken::from(text.clone(), *ty != TokenType::UserDefined).normalized(false).rstrip(rstrip(id))
            })
            .collect()
    }
}

/// `tokenizer.ggml.merges`, each split at its first space after the first
/// byte, as llama.cpp does. Entries without such a space can never apply
/// in llama.cpp and are left out.
pub(super) fn merges(header: &GgufHeader) -> Result<Merges, GgufTokenizerError> {
    const MERGES: &str = "tokenizer.ggml.merges";
    let values = array(header, MERGES)?.ok_or(GgufTokenizerError::Missing(MERGES))?;
    let mut merges = Vec::with_capacity(values.len());
    for value in values {
        let merge = value.as_str().ok_or(GgufTokenizerError::Missing(MERGES))?;
        let split = merge.char_indices().skip(1).find(|&(_, c)| c == ' ').map(|(i, _)| i);
        if let Some(at) = split {
            merges.push((merge[..at].to_string(), merge[at + 1..].to_string()));
        }
    }
    Ok(merges)
}
