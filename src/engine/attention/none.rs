//! The CUDA seam of a CPU build: attention never takes the kernel path, so
//! the kernel is never called.

use candle_core::{Device, Result, Tensor};

pub fn takes(_q: &Tensor, _k: &Tensor) -> bool {
    false
}

pub fn initial_state(_kv_heads: usize, _rows: usize, _device: &Device) -> Result<Tensor> {
    unreachable!("a CPU build takes no attention for the CUDA kernel")
}

pub fn softmax_block(
    _scores: &Tensor,
    _state: &Tensor,
    _scale: f32,
    _start: usize,
    _from: usize,
    _t: usize,
) -> Result<()> {
    unreachable!("a CPU build takes no attention for the CUDA kernel")
}
