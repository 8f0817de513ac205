//! Reading what a set of staged files is (format facts, quantization),
//! refusing files `run` could not load (checked from headers, see
//! `engine::check_safetensors`), for the manifests that record it.

use std::collections::BTreeSet;
use std::path::Path;

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
    #[error("`{file}` is not a usable GGUF file")]
    GgufLone { file: String, source: gguf::split::PartError },
    #[error("`{file}` is not part {index} of {count} of a GGUF model")]
    GgufPart { file: String, index: usize, count: usize, source: gguf::split::PartError },
    #[error("the {count} parts `{first}` … `{last}` are not one GGUF model")]
    GgufParts { first: String, last: String, count: usize, source: gguf::GgufPartsError },
}

impl Diagnostic for RecordError {
    fn hint(&self) -> Option<String> {
        let base = "the files are not a usable model; nothing was stored";
        let specific = match self {
            RecordError::Weights(e) | RecordError::GgufWeights { source: e, .. } => e.hint(),
            RecordError::GgufPart { .. } | RecordError::GgufParts { .. } => Some(
                "the parts of a split GGUF come from one `gguf-split` run: get them again, all from one revision"
                    .into(),
            ),
            RecordError::GgufLone { .. } => {
                Some("pull or import every part of the model (`…-00001-of-000NN.gguf` and the rest)".into())
            }
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
    let checked = engine::check_safetensors(&config_json, tokenizer_json.as_deref(), weights.tensors())
        .map_err(|e| RecordError::Weights(Box::new(e)))?;
    let weight_dtype = WeightDtype::from_safetensors(weights.dominant_dtype().unwrap_or("unknown"));
    let sliding_window = checked.as_ref().and_then(|config| config.sliding_window());
    let kv_layers = checked.as_ref().and_then(|config| config.kv_layers());
    let recurrent = checked.as_ref().and_then(|config| config.recurrent());
    Ok(ModelFacts { parameters: weights.parameters(), weight_dtype, sliding_window, kv_layers, recurrent, ..config })
}

/// A GGUF selection's files are the model's parts, in order (one for a single file).
fn gguf_file_facts(parts: &[StagedFile]) -> Result<(ModelFacts, GgufType), RecordError> {
    let headers = parts
        .iter()
        .map(|f| {
            gguf::read_header_from_path(&f.path).map_err(|source| RecordError::Gguf { file: f.name.clone(), source })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let model = gguf::GgufParts::new(headers).map_err(|e| parts_error(parts, e))?;
    // Named after the first part, which holds the metadata.
    let first = parts[0].name.clone();
    let facts = gguf_facts::facts(&model).map_err(|source| RecordError::GgufFacts { file: first.clone(), source })?;
    let paths: Vec<&Path> = parts.iter().map(|f| f.path.as_path()).collect();
    engine::check_gguf(&paths).map_err(|source| RecordError::GgufWeights { file: first, source: Box::new(source) })?;
    Ok(facts)
}

/// A part that is not where it says it is, by its name; else the parts as a whole.
fn parts_error(parts: &[StagedFile], error: gguf::GgufPartsError) -> RecordError {
    match error {
        gguf::GgufPartsError::Part { count: 1, source, .. } => {
            RecordError::GgufLone { file: parts[0].name.clone(), source }
        }
        gguf::GgufPartsError::Part { index, count, source } => {
            RecordError::GgufPart { file: parts[index - 1].name.clone(), index, count, source }
        }
        source => RecordError::GgufParts {
            first: parts.first().map(|f| f.name.clone()).unwrap_or_default(),
            last: parts.last().map(|f| f.name.clone()).unwrap_or_default(),
            count: parts.len(),
            source,
        },
    }
}
