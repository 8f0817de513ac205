//! The text side of a GGUF model: the tokenizer and chat template from the
//! file's own metadata (its weights load through `gguf_weights`).

use super::EngineError;
use super::text::{AddBos, TextCodec, TextParts};
use crate::formats::gguf::GgufHeader;
use crate::formats::gguf::tokenizer as gguf_tokenizer;

/// The text side of a GGUF model, from its metadata.
pub fn text_codec(header: &GgufHeader) -> Result<TextCodec, EngineError> {
    let meta = gguf_tokenizer::build(header).map_err(EngineError::GgufTokenizer)?;
    let parts = TextParts {
        tokenizer: meta.tokenizer,
        bos: meta.bos,
        eos: meta.eos,
        add_bos: if meta.add_bos { AddBos::Always } else { AddBos::No },
        chat_template: meta.chat_template,
        eos_ids: meta.stop_ids,
    };
    Ok(TextCodec::from_parts(parts)?)
}
