//! The CUDA seam of a CPU build: no cache rows are ever taken, so the
//! kernels are never called; callers carry no cfg.

use candle_core::{Result, Tensor};

pub use super::rows::{CacheRows, Stored};

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
