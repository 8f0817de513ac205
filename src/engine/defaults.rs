//! Sampling defaults a model ships in `generation_config.json`.

use serde::Deserialize;

use super::EngineError;
use super::sampling::SamplingParams;
use crate::store::model_files::ModelFiles;

/// Sampling defaults a model ships in `generation_config.json`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct GenerationDefaults {
    pub temperature: Option<f64>,
    pub top_k: Option<usize>,
    pub top_p: Option<f64>,
    pub do_sample: Option<bool>,
    #[serde(default)]
    eos_token_id: Option<serde_json::Value>,
}

/// The defaults of `generation_config.json`; `None` when the model has none.
pub fn stored_generation_defaults(files: &ModelFiles<'_>) -> Result<Option<GenerationDefaults>, EngineError> {
    let Some(bytes) = files.read("generation_config.json")? else { return Ok(None) };
    // A malformed optional file only loses its defaults.
    Ok(Some(serde_json::from_slice(&bytes).unwrap_or_default()))
}

pub(super) fn generation_defaults(files: &ModelFiles<'_>) -> Result<GenerationDefaults, EngineError> {
    Ok(stored_generation_defaults(files)?.unwrap_or_default())
}

impl GenerationDefaults {
    /// `eos_token_id` as a list (it may be one number or an array).
    pub fn eos_ids(&self) -> Vec<u32> {
        match &self.eos_token_id {
            Some(serde_json::Value::Number(n)) => n.as_u64().map(|n| n as u32).into_iter().collect(),
            Some(serde_json::Value::Array(a)) => a.iter().filter_map(|v| v.as_u64()).map(|n| n as u32).collect(),
            _ => Vec::new(),
        }
    }
}

/// Sampling as a caller asked for it (`run`'s flags, a server request); `None` leaves it to the model.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SamplingRequest {
    pub temperature: Option<f64>,
    pub top_k: Option<usize>,
    pub top_p: Option<f64>,
    pub seed: u64,
}

impl GenerationDefaults {
    /// The request first, then the model's generation config; greedy when neither samples.
    pub fn sampling(&self, requested: &SamplingRequest) -> SamplingParams {
        let sampled_by_default = self.do_sample.unwrap_or(false);
        let temperature =
            requested.temperature.unwrap_or(if sampled_by_default { self.temperature.unwrap_or(1.0) } else { 0.0 });
        SamplingParams {
            temperature,
            top_k: requested.top_k.or(self.top_k.filter(|_| sampled_by_default)),
            top_p: requested.top_p.or(self.top_p.filter(|_| sampled_by_default)),
            seed: requested.seed,
        }
    }
}
