//! Everything before the tensor data: version, metadata, tensors, where the data starts.

use std::collections::BTreeMap;

use super::*;

/// Everything before the tensor data.
#[derive(Debug, Clone)]
pub struct GgufHeader {
    pub version: u32,
    /// In file order; keys are unique.
    pub metadata: Vec<(String, GgufValue)>,
    /// In file order; names are unique.
    pub tensors: Vec<TensorInfo>,
    pub alignment: u64,
    /// Absolute file offset where the tensor data section starts.
    pub data_offset: u64,
}

impl GgufHeader {
    pub fn get(&self, key: &str) -> Option<&GgufValue> {
        find(&self.metadata, key)
    }

    /// `general.architecture`, e.g. `llama`.
    pub fn architecture(&self) -> Option<&str> {
        self.get("general.architecture")?.as_str()
    }

    /// `{architecture}.{suffix}` as an integer, e.g. suffix `attention.head_count`.
    pub fn arch_u64(&self, suffix: &str) -> Option<u64> {
        let key = format!("{}.{suffix}", self.architecture()?);
        self.get(&key)?.as_u64()
    }

    /// `general.file_type`: llama.cpp's raw `llama_ftype` id.
    pub fn file_type(&self) -> Option<u32> {
        self.get("general.file_type")?.as_u64().and_then(|v| u32::try_from(v).ok())
    }

    /// Elements over all tensors, saturating.
    pub fn parameter_count(&self) -> u64 {
        parameter_count(&self.tensors)
    }

    /// The type holding the most elements among tensors of two or more
    /// dimensions (the weights; 3-D ones are stacked experts), ties going to
    /// the lowest type id. Norms and biases are 1-D and usually `F32`, so they
    /// are left out.
    pub fn dominant_type(&self) -> Option<GgmlType> {
        dominant_type(&self.tensors)
    }
}

/// [`GgufHeader::parameter_count`] of any tensors (a split model's, say).
pub(super) fn parameter_count<'a>(tensors: impl IntoIterator<Item = &'a TensorInfo>) -> u64 {
    tensors.into_iter().fold(0, |sum, t| sum.saturating_add(t.element_count()))
}

/// [`GgufHeader::dominant_type`] of any tensors.
pub(super) fn dominant_type<'a>(tensors: impl IntoIterator<Item = &'a TensorInfo>) -> Option<GgmlType> {
    let mut totals: BTreeMap<GgmlType, u64> = BTreeMap::new();
    for tensor in tensors.into_iter().filter(|t| t.dims.len() >= 2) {
        let total = totals.entry(tensor.ggml_type).or_default();
        *total = total.saturating_add(tensor.element_count());
    }
    // `max_by_key` keeps the last of equal maxima, hence the descending walk.
    totals.into_iter().rev().max_by_key(|&(_, count)| count).map(|(ty, _)| ty)
}
