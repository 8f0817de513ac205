//! What can go wrong loading a model, each with its hint and exit status.

use std::path::PathBuf;

use super::device::DeviceError;
use super::text::TextError;
use super::{config, gguf_weights};
use crate::exit::{Diagnostic, ExitStatus};
use crate::store::model_files::ModelFileError;

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Files(#[from] ModelFileError),
    #[error(transparent)]
    Config(#[from] config::ConfigError),
    #[error("`--ctx-size {requested}` is beyond the model's context length of {max}")]
    ContextTooLarge { requested: usize, max: usize },
    #[error(transparent)]
    Device(#[from] DeviceError),
    #[error(transparent)]
    Text(#[from] TextError),
    #[error("`{}` is not a usable GGUF file", .0.display())]
    GgufHeader(PathBuf, #[source] crate::formats::gguf::GgufError),
    #[error(transparent)]
    GgufTokenizer(crate::formats::gguf::tokenizer::GgufTokenizerError),
    #[error(transparent)]
    GgufModel(gguf_weights::GgufModelError),
    #[error("the GGUF file's tensors do not fit its metadata")]
    GgufTensors(#[source] candle_core::Error),
    #[error("loading the weights failed")]
    Weights(#[source] candle_core::Error),
    #[error("allocating the KV cache failed")]
    Cache(#[source] candle_core::Error),
}

impl Diagnostic for EngineError {
    fn hint(&self) -> Option<String> {
        match self {
            EngineError::Files(e) => e.hint(),
            EngineError::ContextTooLarge { max, .. } => Some(format!("use `--ctx-size {max}` or less")),
            EngineError::Device(e) => e.hint(),
            EngineError::Text(TextError::NoTemplate) => Some("use `--raw` to send the prompt as it is".into()),
            EngineError::Text(TextError::Chat(_)) => Some("use `--raw` to send the prompt without the template".into()),
            EngineError::Text(TextError::Tokenizer(_) | TextError::Config(_)) => Some(
                "the model's tokenizer files cannot be read: pull it again, and if the repository's own files are broken, tell its authors".into(),
            ),
            EngineError::Config(config::ConfigError::Unsupported(_) | config::ConfigError::Activation(..))
            | EngineError::GgufModel(gguf_weights::GgufModelError::Architecture(_)) => {
                Some("pull a model of a supported family".into())
            }
            EngineError::GgufModel(_) | EngineError::GgufTensors(_) => {
                Some("convert the model again with a current llama.cpp, or pull another GGUF file of it".into())
            }
            EngineError::GgufTokenizer(_) => Some("pull the model's safetensors repository instead".into()),
            _ => None,
        }
    }

    fn exit_status(&self) -> ExitStatus {
        match self {
            EngineError::ContextTooLarge { .. } | EngineError::Device(_) => ExitStatus::Usage,
            _ => ExitStatus::Failure,
        }
    }
}
