//! What the generation loop drives: a model together with its cache, kept
//! apart (`CachedModel`) or owned for one run (`OwnedModel`), for both
//! formats.

use candle_core::{Device, Tensor};

use super::generate::GenerateError;
use super::kv_cache::{ContextFull, KvCache};
use super::model::{Logits, Model};

/// The cache a run uses, as reported to people and scripts.
#[derive(Debug, Clone)]
pub struct CacheInfo {
    pub scheme: String,
    pub capacity: usize,
    pub allocated_bytes: u64,
}

pub trait Decoder {
    /// Runs `tokens` after those already processed; f32 logits of the last one.
    fn step(&mut self, tokens: &[u32]) -> Result<Tensor, GenerateError>;
    /// Fails unless `tokens` more positions fit.
    fn check_room(&self, tokens: usize) -> Result<(), ContextFull>;
    /// Forgets all processed tokens (a new conversation).
    fn reset(&mut self);
    /// Keeps only the first `len` processed tokens, so a conversation can go
    /// on from a shared prefix; false where the cache cannot (then `reset`).
    fn truncate(&mut self, len: usize) -> bool {
        let _ = len;
        false
    }
    fn device(&self) -> &Device;
    fn cache_info(&self) -> CacheInfo;
}

/// A safetensors model and the cache it runs with.
pub struct CachedModel<'a> {
    pub model: &'a Model,
    pub cache: &'a mut KvCache,
}

impl Decoder for CachedModel<'_> {
    fn step(&mut self, tokens: &[u32]) -> Result<Tensor, GenerateError> {
        Ok(self.model.forward(tokens, self.cache, Logits::Last)?)
    }

    fn check_room(&self, tokens: usize) -> Result<(), ContextFull> {
        self.cache.check_room(tokens)
    }

    fn reset(&mut self) {
        self.cache.reset();
    }

    fn truncate(&mut self, len: usize) -> bool {
        self.cache.truncate(len)
    }

    fn device(&self) -> &Device {
        self.model.device()
    }

    fn cache_info(&self) -> CacheInfo {
        info_of(self.cache)
    }
}

fn info_of(cache: &KvCache) -> CacheInfo {
    CacheInfo {
        scheme: cache.layout().name().to_string(),
        capacity: cache.capacity(),
        allocated_bytes: cache.allocated_bytes(),
    }
}

/// A safetensors model that owns its cache, for one run.
pub struct OwnedModel {
    pub model: Model,
    pub cache: KvCache,
}

impl OwnedModel {
    fn borrowed(&mut self) -> CachedModel<'_> {
        CachedModel { model: &self.model, cache: &mut self.cache }
    }
}

impl Decoder for OwnedModel {
    fn step(&mut self, tokens: &[u32]) -> Result<Tensor, GenerateError> {
        self.borrowed().step(tokens)
    }

    fn check_room(&self, tokens: usize) -> Result<(), ContextFull> {
        self.cache.check_room(tokens)
    }

    fn reset(&mut self) {
        self.borrowed().reset();
    }

    fn truncate(&mut self, len: usize) -> bool {
        self.borrowed().truncate(len)
    }

    fn device(&self) -> &Device {
        self.model.device()
    }

    fn cache_info(&self) -> CacheInfo {
        info_of(&self.cache)
    }
}
