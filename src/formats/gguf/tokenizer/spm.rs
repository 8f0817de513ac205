//! SentencePiece vocabularies (`tokenizer.ggml.model` `llama`: Llama 2,
//! Mistral, Gemma 1–3, Phi-3) as a BPE with byte fallback, whose merges come
//! from the scores.
//!
//! llama.cpp's `llm_tokenizer_spm` starts from the characters and keeps
//! joining the neighbouring pair whose joined text is the token of highest
//! score (leftmost among equals). A BPE does the same when every split of a
//! token into two tokens is a merge, ranked by the joined token's score:
//! what Hugging Face's SentencePiece converter builds. They differ only
//! where two different tokens of equal score compete (the BPE then prefers
//! the lower ids, not the leftmost pair) and where llama.cpp joins a
//! character that is not itself a token (the BPE has turned it into bytes).

use tokenizers::models::bpe::{BPE, Merges, Vocab as BpeVocab};

use super::GgufTokenizerError;
use super::vocab::Vocab;

/// Tokens longer than this (bytes) are never the result of a merge. The
/// vocabularies llama.cpp tests have none longer than 93 bytes (Gemma 4's 31
/// `▁`); splitting a longer one costs time quadratic in its length, which a
/// hostile file could make hang.
const MAX_MERGED_TOKEN: usize = 1024;

/// Every split of every token into two tokens, the best-scoring tokens'
/// splits first; splits of one token by (left id, right id), as the
/// converter orders them.
pub(super) fn merges_by_score(vocab: &Vocab, ids: &BpeVocab) -> Merges {
    let mut ranked: Vec<(f32, u32, u32, usize, usize)> = Vec::new();
    for (index, piece) in vocab.tokens.iter().enumerate().filter(|(_, piece)| piece.len() <= MAX_MERGED_TOKEN) {
        for (at, _) in piece.char_indices().skip(1) {
            if let (Some(&left), Some(&right)) = (ids.get(&piece[..at]), ids.get(&piece[at..])) {
                ranked.push((vocab.scores[index], left, right, index, at));
            }
        }
    }
    // Stable: equal scores keep the order of the tokens, then of (left, right).
    ranked.sort_by_key(|&(_, left, right, index, _)| (index, left, right));
    ranked.sort_by(|a, b| b.0.total_cmp(&a.0));
    let merges = ranked.into_iter().map(|(_, _, _, index, at)| {
        let piece = &vocab.tokens[index];
        (piece[..at].to_string(), piece[at..].to_string())
    });
    merges.collect()
}

/// A BPE over SentencePiece pieces: characters outside the vocabulary fall
/// back to `<0xNN>` byte tokens.
pub(super) fn model(ids: BpeVocab, merges: Merges, unk: Option<&str>) -> Result<BPE, GgufTokenizerError> {
    let mut builder = BPE::builder().vocab_and_merges(ids, merges).byte_fallback(true).fuse_unk(true);
    if let Some(unk) = unk {
        builder = builder.unk_token(unk.to_string());
    }
    builder.build().map_err(|e| GgufTokenizerError::Build(e.to_string()))
}
