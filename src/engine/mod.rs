//! The inference engine for safetensors models: load a stored model onto a
//! device with the requested KV cache, then generate. Every check that can
//! fail (files, config, context, device) runs before weights are touched.

pub mod attention;
pub mod batch;
pub mod chat;
mod check;
pub mod config;
pub mod decoder;
mod defaults;
mod delta_net;
pub mod detokenize;
pub mod device;
mod error;
pub mod generate;
pub mod gguf_text;
pub mod gguf_weights;
pub mod kv_cache;
pub mod linear;
mod load;
pub mod model;
pub mod rope;
pub mod sampling;
pub mod text;
pub mod weights;

pub use check::{TensorProblem, WeightCheckError, check_gguf, check_safetensors};
pub use defaults::{GenerationDefaults, SamplingRequest, stored_generation_defaults};
pub use error::EngineError;
pub use load::{
    ContextLimits, DEFAULT_CONTEXT, LoadObserver, LoadRequest, LoadStage, Loaded, LoadedWeights, NoObserver,
    block_bytes, cache_layout, context_limits, gguf_headers, load, load_weights, new_block_pool, new_cache,
};
