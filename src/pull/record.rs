//! Reading what a set of staged files is (format facts, quantization),
//! refusing files `run` could not load (checked from headers, see
//! `engine::check_safetensors`), for the manifests that record it.

use std::collections::BTreeSet;

use super::select::{CONFIG, TOKENIZER};
use super::stage::StagedFile;
use crate::engine::{self, WeightCheckError};
use crate::exit::Diagnostic;
use crate::formats::gguf::{self, facts as gguf_facts};
use crate::formats::safetensors::{INDEX_FILE, SafetensorsError, WeightSummary, index_shards};
use crate::formats::{ModelFacts, WeightDtype, hf_config};
use crate::quant::{Format, GgufType};

#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error("cannot read `{file}`")]
    Read { file: String, source: std::io::Error },
    #[error(transparent)]
    Config(#[from] hf_config::ConfigError),
    #[error(transparent)]
    Safetensors(#[from] SafetensorsError),
    #[error("`{file}` is not a usable GGUF file")]
    Gguf { file: String, source: gguf::GgufError },
    #[error("`{file}` is not a usable GGUF file")]
    GgufFacts { file: String, source: gguf_facts::GgufFactsError },
    #[error("`{INDEX_FILE}` lists shard `{0}`, which is missing")]
    MissingShard(String),
    /// Boxed: its tensor names and shapes would double every pull error's size.
    #[error(transparent)]
    Weights(Box<WeightCheckError>),
    #[error("`{file}` is not a usable GGUF file")]
    GgufWeights { file: String, source: Box<WeightCheckError> },
}

impl Diagnostic for RecordError {
    fn hint(&self) -> Option<String> {
        let base = "the files are not a usable model; nothing was stored";
        let specific = match self {
            RecordError::Weights(e) | RecordError::GgufWeights { source: e, .. } => e.hint(),
            _ => None,
        };
        Some(specific.map_or_else(|| base.to_string(), |s| format!("{base}; {s}")))
    }
}

/// Facts about the model, and for GGUF its weight type.
pub fn read_facts(format: Format, files: &[StagedFile]) -> Result<(ModelFacts, Option<GgufType>), RecordError> {
    match format {
        Format::Safetensors => safetensors_facts(files).map(|f| (f, None)),
        Format::Gguf => gguf_file_facts(files).map(|(f, t)| (f, Some(t))),
    }
}

fn read(file: &StagedFile) -> Result<Vec<u8>, RecordError> {
    std::fs::read(&file.path).map_err(|source| RecordError::Read { file: file.name.clone(), source })
}

fn safetensors_facts(files: &[StagedFile]) -> Result<ModelFacts, RecordError> {
    let by_name = |name: &str| files.iter().find(|f| f.name == name);
    let config_json = by_name(CONFIG).map(read).transpose()?.unwrap_or_default();
    let config = hf_config::parse(&config_json)?;
    if let Some(index) = by_name(INDEX_FILE) {
        let present: BTreeSet<&str> = files.iter().map(|f| f.name.as_str()).collect();
        if let Some(missing) = index_shards(&read(index)?)?.into_iter().find(|s| !present.contains(s.as_str())) {
            return Err(RecordError::MissingShard(missing));
        }
    }
    let mut weights = WeightSummary::default();
    for shard in files.iter().filter(|f| f.name.ends_with(".safetensors")) {
        weights.add_shard(&shard.name, &shard.path)?;
    }
    let tokenizer_json = by_name(TOKENIZER).map(read).transpose()?;
    engine::check_safetensors(&config_json, tokenizer_json.as_deref(), weights.tensors())
        .map_err(|e| RecordError::Weights(Box::new(e)))?;
    let weight_dtype = WeightDtype::from_safetensors(weights.dominant_dtype().unwrap_or("unknown"));
    Ok(ModelFacts { parameters: weights.parameters(), weight_dtype, ..config })
}

fn gguf_file_facts(files: &[StagedFile]) -> Result<(ModelFacts, GgufType), RecordError> {
    let file = files.iter().find(|f| f.name.ends_with(".gguf")).expect("a GGUF selection holds one .gguf file");
    let header = gguf::read_header_from_path(&file.path)
        .map_err(|source| RecordError::Gguf { file: file.name.clone(), source })?;
    let facts =
        gguf_facts::facts(&header).map_err(|source| RecordError::GgufFacts { file: file.name.clone(), source })?;
    engine::check_gguf(&file.path)
        .map_err(|source| RecordError::GgufWeights { file: file.name.clone(), source: Box::new(source) })?;
    Ok(facts)
}
