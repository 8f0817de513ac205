//! What a header may claim: [`GgufLimits`], checked before anything is allocated.

/// Bounds on what a header may claim, beyond the file's own length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GgufLimits {
    /// Bytes in one string (key, value, or tensor name).
    pub max_string_len: u64,
    /// Elements in one metadata array.
    pub max_array_len: u64,
    pub max_tensors: u64,
    pub max_kv: u64,
    /// Dimensions of one tensor.
    pub max_dims: u32,
    /// Array levels in one value: 1 allows arrays, 2 arrays of arrays. Values
    /// above 32 act as 32.
    pub max_nesting: u32,
}

impl Default for GgufLimits {
    fn default() -> Self {
        Self {
            max_string_len: 16 << 20,
            max_array_len: 16 << 20,
            max_tensors: 1 << 20,
            max_kv: 1 << 20,
            max_dims: 4, // GGML_MAX_DIMS
            max_nesting: 2,
        }
    }
}
