//! A layer's cache as the CUDA decode kernels read it: plain data, shared by
//! the kernels' module and its CPU-build stand-in.

use candle_core::Tensor;

/// How cache rows are stored, as the kernels' names spell it.
#[derive(Debug, Clone, Copy)]
pub enum Stored {
    Dense,
    Int8,
    Fp8,
}

/// One layer's cache as the decode kernels read it.
#[derive(Clone, Copy)]
pub struct CacheRows<'t> {
    /// (kv_heads, capacity, d): rows in the queries' dtype, or u8 codes.
    pub k: &'t Tensor,
    pub v: &'t Tensor,
    /// (kv_heads, capacity, 1) f32 each: the codes' scales.
    pub scales: Option<(&'t Tensor, &'t Tensor)>,
    pub stored: Stored,
    /// Rows stored Hadamard-rotated: the kernels rotate `q` into that basis
    /// and the output back.
    pub rotated: bool,
    /// The row of the first position: the kernels read rows `first..first + len` of each head
    /// (a paged sequence's blocks, where they lie in their pool).
    pub first: usize,
}
