//! GGUF models through candle's quantized implementations (Llama family,
//! Qwen2, Qwen3), with the tokenizer and chat template from the file's own
//! metadata. These models keep an unquantized f32 cache of their own.

use std::fs::File;
use std::path::Path;

use candle_core::quantized::gguf_file;
use candle_core::{DType, Device, Tensor};
use candle_transformers::models::{quantized_llama, quantized_qwen2, quantized_qwen3};

use super::EngineError;
use super::decoder::{CacheInfo, Decoder};
use super::generate::GenerateError;
use super::kv_cache::ContextFull;
use super::text::{AddBos, TextCodec, TextParts};
use crate::formats::gguf::GgufHeader;
use crate::formats::gguf::tokenizer as gguf_tokenizer;
use crate::store::model_files::ModelFileError;

/// candle's quantized Llama precomputes RoPE for this many positions.
const LLAMA_MAX_POSITIONS: usize = quantized_llama::MAX_SEQ_LEN;
pub const SUPPORTED: &str = "llama, qwen2, qwen3";

enum Weights {
    Llama(quantized_llama::ModelWeights),
    Qwen2(quantized_qwen2::ModelWeights),
    Qwen3(quantized_qwen3::ModelWeights),
}

pub struct GgufModel {
    weights: Weights,
    device: Device,
    position: usize,
    capacity: usize,
    /// Bytes one cached token takes: layers × (K, V) × KV heads × head dim × f32.
    bytes_per_token: u64,
}

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

/// The largest context the architecture's implementation can run.
pub fn max_context(header: &GgufHeader, model_context: usize) -> usize {
    match header.architecture() {
        Some("llama") => model_context.min(LLAMA_MAX_POSITIONS),
        _ => model_context,
    }
}

impl GgufModel {
    pub fn load(
        path: &Path,
        header: &GgufHeader,
        capacity: usize,
        bytes_per_token: u64,
        device: &Device,
    ) -> Result<GgufModel, EngineError> {
        let arch = header.architecture().unwrap_or_default().to_string();
        let weights_err = |e| EngineError::Weights(e);
        let mut file = File::open(path)
            .map_err(|source| EngineError::Files(ModelFileError::Read { file: path.display().to_string(), source }))?;
        let content = gguf_file::Content::read(&mut file).map_err(weights_err)?;
        let weights = match arch.as_str() {
            "llama" => Weights::Llama(
                quantized_llama::ModelWeights::from_gguf(content, &mut file, device).map_err(weights_err)?,
            ),
            "qwen2" => Weights::Qwen2(
                quantized_qwen2::ModelWeights::from_gguf(content, &mut file, device).map_err(weights_err)?,
            ),
            "qwen3" => Weights::Qwen3(
                quantized_qwen3::ModelWeights::from_gguf(content, &mut file, device).map_err(weights_err)?,
            ),
            _ => return Err(EngineError::GgufArchitecture { arch }),
        };
        Ok(GgufModel { weights, device: device.clone(), position: 0, capacity, bytes_per_token })
    }
}

impl Decoder for GgufModel {
    fn step(&mut self, tokens: &[u32]) -> Result<Tensor, GenerateError> {
        self.check_room(tokens.len())?;
        let input = Tensor::new(tokens, &self.device)?.unsqueeze(0)?;
        let logits = match &mut self.weights {
            Weights::Llama(m) => m.forward(&input, self.position)?,
            Weights::Qwen2(m) => m.forward(&input, self.position)?,
            Weights::Qwen3(m) => m.forward(&input, self.position)?,
        };
        self.position += tokens.len();
        Ok(logits.squeeze(0)?.to_dtype(DType::F32)?)
    }

    fn check_room(&self, tokens: usize) -> Result<(), ContextFull> {
        let needed = self.position + tokens;
        if needed > self.capacity { Err(ContextFull { needed, capacity: self.capacity }) } else { Ok(()) }
    }

    fn reset(&mut self) {
        match &mut self.weights {
            Weights::Llama(m) => m.clear_kv_cache(),
            Weights::Qwen2(m) => m.clear_kv_cache(),
            Weights::Qwen3(m) => m.clear_kv_cache(),
        }
        self.position = 0;
    }

    fn device(&self) -> &Device {
        &self.device
    }

    /// candle's GGUF models grow their f32 cache as tokens arrive.
    fn cache_info(&self) -> CacheInfo {
        CacheInfo {
            scheme: "f32".into(),
            capacity: self.capacity,
            allocated_bytes: self.bytes_per_token * self.position as u64,
        }
    }
}
