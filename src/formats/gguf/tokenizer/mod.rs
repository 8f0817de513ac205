//! A `tokenizers` tokenizer built from a GGUF file's vocabulary, to give the
//! ids llama.cpp gives for the same text: byte-level BPE (`gpt2`) with the
//! pre-tokenizer `tokenizer.ggml.pre` names, SentencePiece (`llama`), and
//! Gemma 4's BPE over SentencePiece pieces (`gemma4`). Checked against
//! llama.cpp's own vocabulary tests (`tests/it/vocab.rs`).
//!
//! As in llama.cpp, control and unknown tokens in the text are matched whole
//! only when special tokens are parsed (`tokenizers`' special added tokens),
//! user-defined ones always.

mod pre;
mod specials;
mod spm;
#[cfg(test)]
mod tests;
mod vocab;

use tokenizers::decoders::byte_fallback::ByteFallback;
use tokenizers::decoders::fuse::Fuse;
use tokenizers::decoders::sequence::Sequence as DecoderSequence;
use tokenizers::decoders::strip::Strip;
use tokenizers::models::bpe::BPE;
use tokenizers::normalizers::{Prepend, Replace, Sequence as NormalizerSequence};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::sequence::Sequence as PreSequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::{DecoderWrapper, NormalizerWrapper, PreTokenizerWrapper, SplitDelimiterBehavior, Tokenizer};

use super::{GgufHeader, GgufValue};
use pre::PreTokenizer;
use vocab::Vocab;

#[derive(Debug, thiserror::Error)]
pub enum GgufTokenizerError {
    #[error("GGUF metadata has no usable `{0}`")]
    Missing(&'static str),
    #[error("`{key}` has {len} entries for {tokens} tokens")]
    TooShort { key: &'static str, len: usize, tokens: usize },
    #[error("`tokenizer.ggml.tokens` holds a token twice: `{0}`")]
    DuplicateToken(String),
    #[error("unsupported GGUF {what}: `{value}`; llmctl builds {supported}")]
    Unsupported { what: String, value: String, supported: String },
    #[error("the GGUF vocabulary does not make a tokenizer: {0}")]
    Build(String),
}

/// The tokenizer, special tokens and chat template that come with the vocabulary.
#[derive(Debug, Clone)]
pub struct GgufTextMeta {
    pub tokenizer: Tokenizer,
    pub bos: Option<(String, u32)>,
    pub eos: Option<(String, u32)>,
    /// Every token llama.cpp ends generation on (its end-of-generation set), EOS among them.
    pub stop_ids: Vec<u32>,
    /// llama.cpp's `add_bos`: a raw prompt starts with BOS, even one whose text starts with it.
    pub add_bos: bool,
    pub chat_template: Option<String>,
}

/// How the vocabulary tokenizes, from `tokenizer.ggml.model` (and `.pre`).
enum Kind {
    SentencePiece,
    Gemma4,
    ByteLevel(&'static PreTokenizer),
}

const SUPPORTED_MODELS: &str = "`llama` (SentencePiece), `gemma4` and `gpt2` (byte-level BPE)";

fn text<'a>(header: &'a GgufHeader, key: &str) -> Option<&'a str> {
    header.get(key).and_then(GgufValue::as_str)
}

fn flag(header: &GgufHeader, key: &str) -> Option<bool> {
    match header.get(key) {
        Some(GgufValue::Bool(value)) => Some(*value),
        _ => None,
    }
}

impl Kind {
    fn of(header: &GgufHeader) -> Result<Kind, GgufTokenizerError> {
        match text(header, "tokenizer.ggml.model").unwrap_or_default() {
            "llama" => Ok(Kind::SentencePiece),
            "gemma4" => Ok(Kind::Gemma4),
            // llama.cpp takes a missing pre-tokenizer as `default` (and warns).
            "gpt2" => {
                let name = text(header, "tokenizer.ggml.pre").unwrap_or("default");
                pre::find(name).map(Kind::ByteLevel).ok_or_else(|| GgufTokenizerError::Unsupported {
                    what: "pre-tokenizer for `gpt2`".into(),
                    value: name.into(),
                    supported: pre::supported_names(),
                })
            }
            model => Err(GgufTokenizerError::Unsupported {
                what: "tokenizer model".into(),
                value: model.into(),
                supported: SUPPORTED_MODELS.into(),
            }),
        }
    }

    /// llama.cpp's `add_bos` when `tokenizer.ggml.add_bos_token` does not say.
    fn default_add_bos(&self) -> bool {
        match self {
            Kind::SentencePiece | Kind::Gemma4 => true,
            Kind::ByteLevel(pre) => pre.add_bos,
        }
    }
}

pub fn build(header: &GgufHeader) -> Result<GgufTextMeta, GgufTokenizerError> {
    let kind = Kind::of(header)?;
    let vocab = Vocab::read(header)?;
    let mut tokenizer = match &kind {
        Kind::SentencePiece => sentencepiece(header, &vocab)?,
        Kind::Gemma4 => gemma4(header, &vocab)?,
        Kind::ByteLevel(pre) => byte_level(header, &vocab, pre)?,
    };
    let rstrip = specials::rstrip_rule(header, &vocab);
    tokenizer.add_tokens(vocab.added_tokens(rstrip)).map_err(build_error)?;
    let special = specials::Specials::read(header, &vocab, matches!(kind, Kind::SentencePiece));
    let mut add_bos = flag(header, "tokenizer.ggml.add_bos_token").unwrap_or(kind.default_add_bos());
    // llama.cpp overrides a `false` for Gemma 4, whose files say so wrongly.
    add_bos |= matches!(kind, Kind::Gemma4);
    Ok(GgufTextMeta {
        tokenizer,
        bos: special.bos,
        eos: special.eos,
        stop_ids: special.stop_ids,
        add_bos,
        chat_template: text(header, "tokenizer.chat_template").map(str::to_string),
    })
}

fn build_error(e: impl ToString) -> GgufTokenizerError {
    GgufTokenizerError::Build(e.to_string())
}

fn isolated(regex: &str) -> Result<PreTokenizerWrapper, GgufTokenizerError> {
    let split = Split::new(SplitPattern::Regex(regex.into()), SplitDelimiterBehavior::Isolated, false);
    Ok(split.map_err(build_error)?.into())
}

fn replace(from: &str, to: &str) -> Result<Replace, GgufTokenizerError> {
    Replace::new(from, to).map_err(build_error)
}

/// `gpt2`: the pre-tokenizer's regexes, then GPT-2's bytes-to-characters map.
fn byte_level(header: &GgufHeader, vocab: &Vocab, pre: &PreTokenizer) -> Result<Tokenizer, GgufTokenizerError> {
    let merges = vocab::merges(header)?;
    let bpe = BPE::builder().vocab_and_merges(vocab.ids()?, merges).ignore_merges(pre.ignore_merges);
    let mut tokenizer = Tokenizer::new(bpe.build().map_err(build_error)?);
    let mut steps = pre.regexes.iter().map(|regex| isolated(regex)).collect::<Result<Vec<_>, _>>()?;
    steps.push(ByteLevel::new(false, true, false).into());
    tokenizer.with_pre_tokenizer(Some(PreSequence::new(steps)));
    tokenizer.with_decoder(Some(ByteLevel::default()));
    Ok(tokenizer)
}

/// `llama`: spaces become `▁`, with one in front of every stretch of text
/// between special tokens (llama.cpp's `add_space_prefix`, default true).
fn sentencepiece(header: &GgufHeader, vocab: &Vocab) -> Result<Tokenizer, GgufTokenizerError> {
    let ids = vocab.ids()?;
    let merges = spm::merges_by_score(vocab, &ids);
    let unk = specials::token_id(header, "tokenizer.ggml.unknown_token_id", Some(0), vocab);
    let mut tokenizer = Tokenizer::new(spm::model(ids, merges, unk.map(|id| vocab.tokens[id as usize].as_str()))?);
    let prefix = flag(header, "tokenizer.ggml.add_space_prefix").unwrap_or(true);
    let mut normalizers: Vec<NormalizerWrapper> = vec![replace(" ", "▁")?.into()];
    let mut decoders = metaspace_decoders()?;
    if prefix {
        normalizers.insert(0, Prepend::new("▁".into()).into());
        decoders.push(Strip::new(' ', 1, 0).into());
    }
    tokenizer.with_normalizer(Some(NormalizerSequence::new(normalizers))).map_err(build_error)?;
    tokenizer.with_decoder(Some(DecoderSequence::new(decoders)));
    Ok(tokenizer)
}

/// `gemma4`: BPE merges from the file over SentencePiece pieces (spaces as
/// `▁`, no space prefix, byte fallback), on each line and each run of
/// newlines, as llama.cpp's `LLAMA_VOCAB_PRE_TYPE_GEMMA4`.
fn gemma4(header: &GgufHeader, vocab: &Vocab) -> Result<Tokenizer, GgufTokenizerError> {
    let merges = vocab::merges(header)?;
    let unk = specials::token_id(header, "tokenizer.ggml.unknown_token_id", None, vocab);
    let mut tokenizer =
        Tokenizer::new(spm::model(vocab.ids()?, merges, unk.map(|id| vocab.tokens[id as usize].as_str()))?);
    tokenizer.with_normalizer(Some(replace(" ", "▁")?)).map_err(build_error)?;
    tokenizer.with_pre_tokenizer(Some(isolated(pre::LINES)?));
    tokenizer.with_decoder(Some(DecoderSequence::new(metaspace_decoders()?)));
    Ok(tokenizer)
}

/// `▁` back to spaces and `<0xNN>` tokens back to bytes.
fn metaspace_decoders() -> Result<Vec<DecoderWrapper>, GgufTokenizerError> {
    Ok(vec![replace("▁", " ")?.into(), ByteFallback::new().into(), Fuse::new().into()])
}
