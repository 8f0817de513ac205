//! The text side of a GGUF model: the tokenizer and chat template from the
//! file's own metadata (its weights load through `gguf_weights`).

use super::EngineError;
use super::text::{TextCodec, TextParts};
use crate::formats::gguf::GgufHeader;
use crate::formats::gguf::tokenizer as gguf_tokenizer;

/// The text side of a GGUF model, from its metadata.
pub fn text_codec(header: &GgufHeader) -> Result<TextCodec, EngineError> {
    let meta = gguf_tokenizer::build(header).map_err(EngineError::GgufTokenizer)?;
    let tokenizer = tokenizers::Tokenizer::from_bytes(&meta.tokenizer_json)
        .map_err(|e| EngineError::Text(super::text::TextError::Tokenizer(e.to_string())))?;
    let parts = TextParts {
        tokenizer,
        bos: meta.bos,
        eos: meta.eos,
        add_bos: meta.add_bos,
        chat_template: meta.chat_template,
        eos_ids: Vec::new(),
    };
    Ok(TextCodec::from_parts(parts)?)
}
