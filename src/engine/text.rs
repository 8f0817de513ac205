//! From prompt text to token ids and back: the tokenizer, its special
//! tokens and BOS rule, the chat template, and the stop tokens.

use std::path::Path;

use serde::Deserialize;
use tokenizers::Tokenizer;

use super::chat::{Chat, ChatError, ChatTemplate, Message};

use crate::exit::Diagnostic;

#[derive(Debug, thiserror::Error)]
pub enum TextError {
    #[error("`tokenizer.json` cannot be loaded: {0}")]
    Tokenizer(String),
    #[error("`tokenizer_config.json` is not valid")]
    Config(#[source] serde_json::Error),
    #[error(transparent)]
    Chat(#[from] ChatError),
    #[error("this model has no chat template")]
    NoTemplate,
    #[error("tokenizing the prompt failed: {0}")]
    Encode(String),
}

impl Diagnostic for TextError {
    fn hint(&self) -> Option<String> {
        Some("use `--raw` to send the prompt without the template".into())
    }
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum TokenText {
    Plain(String),
    Object { content: String },
}

impl TokenText {
    fn text(&self) -> &str {
        match self {
            TokenText::Plain(s) | TokenText::Object { content: s } => s,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum TemplateField {
    One(String),
    Named(Vec<NamedTemplate>),
}

#[derive(Debug, Deserialize)]
struct NamedTemplate {
    name: String,
    template: String,
}

#[derive(Debug, Default, Deserialize)]
struct TokenizerConfig {
    add_bos_token: Option<bool>,
    bos_token: Option<TokenText>,
    eos_token: Option<TokenText>,
    chat_template: Option<TemplateField>,
}

/// The files the text side reads, as bytes or paths from the store.
pub struct TextFiles<'a> {
    pub tokenizer_json: &'a Path,
    pub tokenizer_config: Option<Vec<u8>>,
    pub chat_template_jinja: Option<String>,
    /// EOS ids from `config.json` and `generation_config.json`.
    pub eos_ids: Vec<u32>,
}

/// When a raw prompt gets the BOS token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddBos {
    No,
    /// Unless the ids already start with it: `tokenizer_config.json`'s
    /// `add_bos_token`, whose tokenizer's post-processor may add one itself.
    UnlessPresent,
    /// Always, as llama.cpp does for a GGUF vocabulary, even before a BOS in the text.
    Always,
}

pub struct TextCodec {
    pub tokenizer: Tokenizer,
    pub stop_ids: Vec<u32>,
    bos: Option<(String, u32)>,
    eos_text: String,
    add_bos: AddBos,
    template: Option<ChatTemplate>,
}

/// Everything a codec is made of, whichever files it came from.
pub struct TextParts {
    pub tokenizer: Tokenizer,
    /// Special tokens as (text, id).
    pub bos: Option<(String, u32)>,
    pub eos: Option<(String, u32)>,
    pub add_bos: AddBos,
    pub chat_template: Option<String>,
    /// Further stop tokens (from model and generation configs).
    pub eos_ids: Vec<u32>,
}

impl TextCodec {
    /// From a Hugging Face layout: `tokenizer.json`, `tokenizer_config.json`, …
    pub fn load(files: TextFiles<'_>) -> Result<TextCodec, TextError> {
        let tokenizer = Tokenizer::from_file(files.tokenizer_json).map_err(|e| TextError::Tokenizer(e.to_string()))?;
        let config: TokenizerConfig = match &files.tokenizer_config {
            Some(bytes) => serde_json::from_slice(bytes).map_err(TextError::Config)?,
            None => TokenizerConfig::default(),
        };
        let id_of = |t: &Option<TokenText>| {
            t.as_ref().and_then(|t| tokenizer.token_to_id(t.text()).map(|id| (t.text().to_string(), id)))
        };
        let (bos, eos) = (id_of(&config.bos_token), id_of(&config.eos_token));
        let chat_template = files.chat_template_jinja.or_else(|| config.chat_template.and_then(default_template));
        let add_bos = if config.add_bos_token == Some(true) { AddBos::UnlessPresent } else { AddBos::No };
        TextCodec::from_parts(TextParts { tokenizer, bos, eos, add_bos, chat_template, eos_ids: files.eos_ids })
    }

    pub fn from_parts(parts: TextParts) -> Result<TextCodec, TextError> {
        let mut stop_ids = parts.eos_ids;
        stop_ids.extend(parts.eos.as_ref().map(|e| e.1));
        stop_ids.sort_unstable();
        stop_ids.dedup();
        Ok(TextCodec {
            tokenizer: parts.tokenizer,
            stop_ids,
            bos: parts.bos,
            eos_text: parts.eos.map(|e| e.0).unwrap_or_default(),
            add_bos: parts.add_bos,
            template: parts.chat_template.map(ChatTemplate::new).transpose()?,
        })
    }

    pub fn has_template(&self) -> bool {
        self.template.is_some()
    }

    /// A prompt sent verbatim: special tokens in the text are matched, the
    /// tokenizer's post-processor runs, BOS as [`AddBos`] says.
    pub fn encode_raw(&self, text: &str) -> Result<Vec<u32>, TextError> {
        let mut ids = self.encode(text, true)?;
        if let Some((_, bos)) = &self.bos {
            let add = match self.add_bos {
                AddBos::No => false,
                AddBos::UnlessPresent => ids.first() != Some(bos),
                AddBos::Always => true,
            };
            if add {
                ids.insert(0, *bos);
            }
        }
        Ok(ids)
    }

    /// The conversation rendered by the chat template (which writes any BOS itself).
    pub fn encode_chat(&self, messages: &[Message]) -> Result<(String, Vec<u32>), TextError> {
        let template = self.template.as_ref().ok_or(TextError::NoTemplate)?;
        let bos = self.bos.as_ref().map_or("", |b| b.0.as_str());
        let chat = Chat { messages, add_generation_prompt: true, bos, eos: &self.eos_text };
        let text = template.render(&chat)?;
        let ids = self.encode(&text, false)?;
        Ok((text, ids))
    }

    /// One token's text as the model reads it (`<|im_start|>`, ` Paris`).
    pub fn piece(&self, id: u32) -> String {
        self.tokenizer.decode(&[id], false).unwrap_or_default()
    }

    fn encode(&self, text: &str, special: bool) -> Result<Vec<u32>, TextError> {
        let encoding = self.tokenizer.encode(text, special).map_err(|e| TextError::Encode(e.to_string()))?;
        Ok(encoding.get_ids().to_vec())
    }
}

/// The chat template a Hugging Face layout carries, as [`TextCodec::load`]
/// picks it: `chat_template.jinja`, else `tokenizer_config.json`'s (the
/// `default` one of a named list).
pub fn stored_chat_template(
    tokenizer_config: Option<&[u8]>,
    chat_template_jinja: Option<String>,
) -> Result<Option<String>, TextError> {
    let config: TokenizerConfig = match tokenizer_config {
        Some(bytes) => serde_json::from_slice(bytes).map_err(TextError::Config)?,
        None => TokenizerConfig::default(),
    };
    Ok(chat_template_jinja.or_else(|| config.chat_template.and_then(default_template)))
}

fn default_template(field: TemplateField) -> Option<String> {
    match field {
        TemplateField::One(source) => Some(source),
        TemplateField::Named(list) => list.into_iter().find(|t| t.name == "default").map(|t| t.template),
    }
}
