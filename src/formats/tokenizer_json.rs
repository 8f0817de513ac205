//! The largest token id a Hugging Face `tokenizer.json` can produce, read
//! without building the tokenizer: the model's vocabulary (a map of token
//! to id, or Unigram's list whose ids are positions) and the added tokens.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde::de::IgnoredAny;

#[derive(Deserialize)]
struct TokenizerJson {
    #[serde(default)]
    added_tokens: Vec<AddedToken>,
    model: Model,
}

#[derive(Deserialize)]
struct AddedToken {
    id: u64,
}

#[derive(Deserialize)]
struct Model {
    vocab: Option<Vocab>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Vocab {
    /// BPE, WordPiece, WordLevel: token → id.
    Ids(BTreeMap<String, u64>),
    /// Unigram: `[piece, score]` pairs, ids by position.
    Pieces(Vec<IgnoredAny>),
}

/// The largest id `json` assigns, or `None` when the file does not have the
/// shape read here (the tokenizer library then reports it at `run`) or
/// assigns none.
pub fn largest_id(json: &[u8]) -> Option<u64> {
    let parsed: TokenizerJson = serde_json::from_slice(json).ok()?;
    let vocab = match parsed.model.vocab {
        Some(Vocab::Ids(ids)) => ids.into_values().max(),
        Some(Vocab::Pieces(pieces)) => (pieces.len() as u64).checked_sub(1),
        None => None,
    };
    parsed.added_tokens.iter().map(|t| t.id).chain(vocab).max()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_vocabularies_of_each_shape_and_added_tokens() {
        let bpe =
            br#"{"added_tokens":[{"id":5,"content":"<x>"}],"model":{"type":"BPE","vocab":{"a":0,"b":3},"merges":[]}}"#;
        assert_eq!(largest_id(bpe), Some(5));
        let unigram = br#"{"added_tokens":[],"model":{"type":"Unigram","vocab":[["a",-1.0],["b",-2.0]]}}"#;
        assert_eq!(largest_id(unigram), Some(1));
        let added_only = br#"{"added_tokens":[{"id":2}],"model":{"type":"BPE","vocab":{"a":7}}}"#;
        assert_eq!(largest_id(added_only), Some(7));
    }

    #[test]
    fn an_unreadable_file_has_no_answer() {
        assert_eq!(largest_id(br#"{"model":{"type":"BPE","vocab":3}}"#), None);
        assert_eq!(largest_id(b"not json"), None);
    }
}
