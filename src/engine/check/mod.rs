//! What `run` needs of a model's files, checked at import from headers
//! alone (never weight data): for safetensors the engine's own
//! `Model::load` over the headers, for GGUF the tensors candle's loaders
//! read (from every part of a split model), against the metadata. A model
//! that fails here would fail to load.

mod gguf;
mod headers;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Mutex;

use candle_core::quantized::gguf_file::Content;
use candle_core::{DType, Device};
use candle_nn::VarBuilder;

use super::config::{ConfigError, ModelConfig};
use super::model::Model;
use crate::exit::Diagnostic;
use crate::formats::safetensors::TensorHeader;
use crate::formats::tokenizer_json;
use headers::HeaderBackend;
pub use headers::TensorProblem;

/// RoPE tables the check builds: one position is enough to build the model.
const CHECK_POSITIONS: usize = 1;

#[derive(Debug, thiserror::Error)]
pub enum WeightCheckError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Tensor(#[from] TensorProblem),
    #[error(
        "`tokenizer.json` has token id {id}, beyond the model's {vocab_size} embedding rows (`vocab_size` in `config.json`)"
    )]
    TokenId { id: u64, vocab_size: usize },
    #[error("building the model from its headers failed")]
    Load(#[source] candle_core::Error),
    #[error("cannot read the GGUF file")]
    Read(#[source] std::io::Error),
    #[error("candle cannot read the GGUF header")]
    GgufRead(#[source] candle_core::Error),
    #[error("GGUF metadata has no `{key}` of type `{ty}`, which llmctl's loader reads")]
    GgufKey { key: String, ty: &'static str },
    #[error("GGUF metadata is inconsistent: {0}")]
    GgufMetadata(String),
    #[error("the GGUF file has no tensor `{tensor}`")]
    GgufMissingTensor { tensor: String },
    #[error(transparent)]
    GgufModel(#[from] super::gguf_weights::GgufModelError),
    #[error("the GGUF file's header cannot be read")]
    GgufHeader(#[source] crate::formats::gguf::GgufError),
    /// What llmctl's GGUF loader says of the headers (a tensor missing, misshapen, of a type it cannot compute with).
    #[error("{0}")]
    GgufLoader(String),
    #[error("tensor `{tensor}` is in more than one part of the GGUF model")]
    GgufDuplicateTensor { tensor: String },
    #[error("a GGUF model has at least one file")]
    GgufNoFile,
    #[error(
        "tensor `{tensor}` has the wrong shape for the GGUF metadata: expected {}, found {}",
        dims(expected),
        dims(found)
    )]
    GgufShape { tensor: String, expected: Vec<usize>, found: Vec<usize> },
}

impl Diagnostic for WeightCheckError {
    fn hint(&self) -> Option<String> {
        match self {
            WeightCheckError::Tensor(TensorProblem::Dtype { .. }) => None,
            WeightCheckError::Tensor(_) | WeightCheckError::TokenId { .. } => {
                Some("check that `config.json`, `tokenizer.json` and the weights come from the same model".into())
            }
            WeightCheckError::GgufKey { .. }
            | WeightCheckError::GgufMetadata(_)
            | WeightCheckError::GgufMissingTensor { .. }
            | WeightCheckError::GgufDuplicateTensor { .. }
            | WeightCheckError::GgufLoader(_)
            | WeightCheckError::GgufModel(_)
            | WeightCheckError::GgufShape { .. } => {
                Some("convert the model again with a current llama.cpp, or pull another GGUF file of it".into())
            }
            _ => None,
        }
    }
}

/// A shape as `[rows, columns]`.
fn dims(shape: &[usize]) -> String {
    format!("{shape:?}")
}

/// Checks that the engine can build the model `config_json` describes from
/// tensors with these headers, and that `tokenizer_json`'s ids fit its
/// embedding. Families llmctl does not run pass: they are stored for
/// `show`, and `run` names the family.
/// Returns the parsed configuration (`None` for an architecture llmctl does
/// not run, which is stored but not checked), for the facts the manifest records.
pub fn check_safetensors(
    config_json: &[u8],
    tokenizer_json: Option<&[u8]>,
    tensors: &BTreeMap<String, TensorHeader>,
) -> Result<Option<ModelConfig>, WeightCheckError> {
    let config = match ModelConfig::parse(config_json) {
        Err(ConfigError::Unsupported(_)) => return Ok(None),
        config => config?,
    };
    let checked = config.clone();
    let vocab_size = config.vocab_size;
    let problem = Mutex::new(None);
    let backend = HeaderBackend { tensors, problem: &problem };
    let vb = VarBuilder::from_backend(Box::new(backend), DType::F32, Device::Cpu);
    let loaded = Model::load(&vb, config, CHECK_POSITIONS).map(drop);
    drop(vb);
    if let Err(e) = loaded {
        let recorded = problem.into_inner().unwrap_or_else(|poisoned| poisoned.into_inner());
        return Err(recorded.map_or(WeightCheckError::Load(e), WeightCheckError::Tensor));
    }
    // Equal to the embedding's rows now that the model has loaded.
    match tokenizer_json.and_then(tokenizer_json::largest_id) {
        Some(id) if id >= vocab_size as u64 => Err(WeightCheckError::TokenId { id, vocab_size }),
        _ => Ok(Some(checked)),
    }
}

/// Checks that the GGUF model in the files at `parts` (one, or the parts of a
/// split model in order) has the tensors its architecture's loader reads,
/// shaped as its metadata (the first part's) says, each in exactly one part.
/// Architectures llmctl does not run pass: they are stored for `show`, and
/// `run` names them.
pub fn check_gguf(parts: &[&Path]) -> Result<(), WeightCheckError> {
    loader_accepts(parts)?;
    let mut whole: Option<Content> = None;
    for path in parts {
        let mut file = std::fs::File::open(path).map_err(WeightCheckError::Read)?;
        // The header only: candle's own reading of it, as `run` does.
        let content = Content::read(&mut file).map_err(WeightCheckError::GgufRead)?;
        match &mut whole {
            None => whole = Some(content),
            Some(whole) => add_part_tensors(whole, content)?,
        }
    }
    gguf::check(&whole.ok_or(WeightCheckError::GgufNoFile)?)
}

/// The decoder built from the parts' headers alone, as `run` checks them
/// before loading: every tensor of a type llmctl computes with.
fn loader_accepts(parts: &[&Path]) -> Result<(), WeightCheckError> {
    use super::gguf_weights::{self, GgufModelError, GgufWeights, Mode};
    let read = |p: &&Path| crate::formats::gguf::read_header_from_path(p).map_err(WeightCheckError::GgufHeader);
    let headers = parts.iter().map(read).collect::<Result<Vec<_>, _>>()?;
    let config = match headers.first().map(gguf_weights::config) {
        None | Some(Err(GgufModelError::Architecture(_))) => return Ok(()),
        Some(config) => config?,
    };
    let paths: Vec<_> = parts.iter().map(|p| p.to_path_buf()).collect();
    let weights = GgufWeights::open(&paths, &headers, &config, DType::F32, &Device::Cpu, Mode::HeadersOnly);
    weights
        .and_then(|w| Model::load(&w, config, CHECK_POSITIONS).map(drop))
        .map_err(|e| WeightCheckError::GgufLoader(e.to_string()))
}

/// Adds a later part's tensors to the first part's header. The result is
/// for checking names and shapes only: each tensor's offset stays its own
/// part's.
fn add_part_tensors(whole: &mut Content, part: Content) -> Result<(), WeightCheckError> {
    for (name, info) in part.tensor_infos {
        if whole.tensor_infos.contains_key(&name) {
            return Err(WeightCheckError::GgufDuplicateTensor { tensor: name });
        }
        whole.tensor_infos.insert(name, info);
    }
    Ok(())
}

#[cfg(test)]
mod tests;
