//! The special tokens llama.cpp derives from a vocabulary: BOS and EOS, the
//! tokens that end generation, and Phi-3's special tokens that swallow the
//! whitespace after them.

use std::collections::BTreeSet;

use super::GgufHeader;
use super::vocab::Vocab;
use crate::formats::gguf::GgufValue;

/// Tokens llama.cpp ends generation on whatever their type, by their text
/// (`special_eog_ids` in `llama_vocab::load`).
const END_OF_GENERATION: &[&str] = &[
    "<|eot_id|>",
    "<|im_end|>",
    "<|end|>",
    "<|return|>",
    "<|call|>",
    "<|flush|>",
    "<|calls|>",
    "<end_of_turn>",
    "<|endoftext|>",
    "</s>",
    "<|eom_id|>",
    "<EOT>",
    "_<EOT>",
    "[EOT]",
    "[EOS]",
    "<|end_of_text|>",
    "<end_of_utterance>",
    "<eos>",
    "<turn|>",
    "<|tool_response>",
    "<｜end▁of▁sentence｜>",
    "[e~[",
];

/// Fill-in-the-middle padding, repository and file separators end generation
/// too; llama.cpp finds them by key, else by these texts.
const FIM_ENDS: &[(&str, &[&str])] = &[
    ("tokenizer.ggml.fim_pad_token_id", &["<|fim_pad|>", "<fim-pad>", "<fim_pad>", "<PAD>", "[PAD]"]),
    ("tokenizer.ggml.fim_rep_token_id", &["<|fim_repo|>", "<|repo_name|>", "<fim-repo>", "<REPO>", "<reponame>"]),
    ("tokenizer.ggml.fim_sep_token_id", &["<|file_sep|>"]),
];

pub(super) struct Specials {
    pub bos: Option<(String, u32)>,
    pub eos: Option<(String, u32)>,
    pub stop_ids: Vec<u32>,
}

/// The id under `key` if it names a token, else `default` if that does (as llama.cpp).
pub(super) fn token_id(header: &GgufHeader, key: &str, default: Option<u32>, vocab: &Vocab) -> Option<u32> {
    let valid = |id: &u64| (*id as usize) < vocab.len();
    let id = header.get(key).and_then(GgufValue::as_u64).filter(valid).map(|id| id as u32);
    id.or(default.filter(|d| (*d as usize) < vocab.len()))
}

impl Specials {
    /// SentencePiece vocabularies default to BOS 1 and EOS 2, as in llama.cpp.
    /// (llama.cpp also gives byte-level ones a BOS and EOS of 11, Falcon's;
    /// a file without the keys gets none here rather than an arbitrary token.)
    pub fn read(header: &GgufHeader, vocab: &Vocab, sentencepiece: bool) -> Specials {
        let (bos_default, eos_default) = if sentencepiece { (Some(1), Some(2)) } else { (None, None) };
        let with_text = |id: u32| (vocab.tokens[id as usize].clone(), id);
        let bos = token_id(header, "tokenizer.ggml.bos_token_id", bos_default, vocab);
        let eos = token_id(header, "tokenizer.ggml.eos_token_id", eos_default, vocab);
        Specials { bos: bos.map(with_text), eos: eos.map(with_text), stop_ids: stop_ids(header, vocab, eos) }
    }
}

fn stop_ids(header: &GgufHeader, vocab: &Vocab, eos: Option<u32>) -> Vec<u32> {
    let by_text = |texts: &[&str]| -> Vec<u32> {
        let ids = vocab.tokens.iter().enumerate().filter(|(_, t)| texts.contains(&t.as_str()));
        ids.map(|(id, _)| id as u32).collect()
    };
    let mut ids: BTreeSet<u32> = by_text(END_OF_GENERATION).into_iter().collect();
    ids.extend(eos);
    for key in ["tokenizer.ggml.eot_token_id", "tokenizer.ggml.eom_token_id"] {
        ids.extend(token_id(header, key, None, vocab));
    }
    for (key, texts) in FIM_ENDS {
        ids.extend(token_id(header, key, None, vocab).or_else(|| by_text(texts).first().copied()));
    }
    let has = |ids: &BTreeSet<u32>, text: &str| ids.iter().find(|&&id| vocab.tokens[id as usize] == text).copied();
    // gpt-oss and Solar Open end turns with `<|end|>` but not generation.
    let end = has(&ids, "<|end|>");
    if let Some(end) = end.filter(|_| {
        (has(&ids, "<|return|>").is_some() && has(&ids, "<|call|>").is_some())
            || (has(&ids, "<|calls|>").is_some() && has(&ids, "<|flush|>").is_some())
    }) {
        ids.remove(&end);
    }
    // Gemma 4's and PLaMo's `</s>` is an ordinary token.
    let ordinary_s = has(&ids, "<|tool_response>").or(has(&ids, "<|plamo:eos|>")).is_some();
    if let Some(s) = has(&ids, "</s>").filter(|_| ordinary_s) {
        ids.remove(&s);
    }
    ids.into_iter().collect()
}

/// Phi-3's special tokens swallow the whitespace after them, all but
/// `<unk>`, `<s>` and `<|endoftext|>`; llama.cpp knows Phi-3 by `general.name`.
pub(super) fn rstrip_rule<'a>(header: &GgufHeader, vocab: &'a Vocab) -> impl Fn(usize) -> bool + 'a {
    let name = header.get("general.name").and_then(GgufValue::as_str).unwrap_or_default().to_lowercase();
    let phi3 = name.contains("phi-3") || name.contains("phi3");
    move |id| phi3 && !matches!(vocab.tokens[id].as_str(), "<unk>" | "<s>" | "<|endoftext|>")
}
