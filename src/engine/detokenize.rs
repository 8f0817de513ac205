//! Incremental detokenization: emit text as tokens arrive, holding back
//! bytes until they form complete UTF-8 (a multi-byte character may span
//! several byte-level tokens). Each step re-decodes a short window so that
//! tokenizers which treat the first token of a decode specially still join
//! words correctly.

use tokenizers::Tokenizer;

/// What one detokenization has seen and emitted, apart from its tokenizer
/// (each sequence of a batch keeps one beside the model's one tokenizer).
#[derive(Debug, Default)]
pub struct Pending {
    ids: Vec<u32>,
    /// `ids[prev..current]` is the already-emitted left context of the window.
    prev: usize,
    current: usize,
}

impl Pending {
    fn decode(&self, tokenizer: &Tokenizer, from: usize, to: usize) -> tokenizers::Result<String> {
        tokenizer.decode(&self.ids[from..to], false)
    }

    /// Adds a token; returns the newly completed text (possibly empty).
    pub fn push(&mut self, tokenizer: &Tokenizer, id: u32) -> tokenizers::Result<String> {
        let before = self.decode(tokenizer, self.prev, self.current)?;
        self.ids.push(id);
        let text = self.decode(tokenizer, self.prev, self.ids.len())?;
        if text.ends_with('\u{FFFD}') {
            return Ok(String::new());
        }
        match text.get(before.len()..) {
            Some(new) if !new.is_empty() => {
                let new = new.to_string();
                self.prev = self.current;
                self.current = self.ids.len();
                Ok(new)
            }
            _ => Ok(String::new()),
        }
    }

    /// Whatever is still held back (an incomplete character at the very end).
    pub fn finish(&mut self, tokenizer: &Tokenizer) -> tokenizers::Result<String> {
        let before = self.decode(tokenizer, self.prev, self.current)?;
        let text = self.decode(tokenizer, self.prev, self.ids.len())?;
        self.prev = self.ids.len();
        self.current = self.ids.len();
        Ok(text.get(before.len()..).unwrap_or_default().to_string())
    }
}
