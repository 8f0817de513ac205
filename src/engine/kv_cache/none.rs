//! The CUDA seam of a CPU build: no cache rows are ever taken, so the
//! kernels are never called; the types exist so that callers carry no cfg.

use candle_core::{Result, Tensor};

/// How cache rows are stored, as the kernels' names spell it.
#[derive(Debug, Clone, Copy)]
pub enum Stored {
    Dense,
    Int8,
    Fp8,
}

/// One layer's cache as the decode kernels would read it.
#[derive(Clone, Copy)]
pub struct CacheRows<'t> {
    pub k: &'t Tensor,
    pub v: &'t Tensor,
    pub scales: Option<(&'t Tensor, &'t Tensor)>,
    pub stored: Stored,
    pub rotated: bool,
}

pub fn takes(_q: &Tensor, _rows: &Tensor) -> bool {
    false
}

pub fn takes_rows(_x: &Tensor, _codes: &Tensor) -> bool {
    false
}

pub fn decode_attention(_q: &Tensor, _rows: CacheRows, _len: usize) -> Result<Tensor> {
    unreachable!("a CPU build takes no cache rows for the CUDA kernels")
}

pub fn quantize_append(_x: &Tensor, _codes: &Tensor, _scales: &Tensor, _pos: usize, _stored: Stored) -> Result<()> {
    unreachable!("a CPU build takes no cache rows for the CUDA kernels")
}
