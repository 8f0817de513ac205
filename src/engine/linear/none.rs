//! The CUDA seam of a CPU build: no row is ever taken, so the kernels are
//! never called.

use candle_core::{Result, Tensor};

pub fn takes(_x: &Tensor, _w: &Tensor) -> bool {
    false
}

pub fn matvec(_x: &Tensor, _w: &Tensor) -> Result<Tensor> {
    unreachable!("a CPU build takes no row for the CUDA kernels")
}

pub fn gated_matvec(_x: &Tensor, _gate: &Tensor, _up: &Tensor) -> Result<Tensor> {
    unreachable!("a CPU build takes no row for the CUDA kernels")
}
