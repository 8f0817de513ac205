//! The state of a recurrent (linear-attention) layer: a fixed size whatever
//! the context, allocated with the cache and overwritten in place by each
//! forward pass. It holds only the state after the last stored position, so
//! it cannot be rolled back.

use candle_core::{DType, Device, Result, Tensor};

use super::{LayerCache, tensor_bytes};

/// What one recurrent layer keeps: the last `conv_kernel - 1` inputs of its
/// causal convolution (`conv_channels` each) and a `key_dim` × `value_dim`
/// state per head, all f32.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecurrentShape {
    pub conv_channels: usize,
    pub conv_kernel: usize,
    pub heads: usize,
    pub key_dim: usize,
    pub value_dim: usize,
}

pub(super) struct RecurrentState {
    /// (conv_kernel - 1, conv_channels).
    conv: Tensor,
    /// (heads, key_dim, value_dim).
    state: Tensor,
    /// Whether `conv` and `state` follow stored positions (else they are stale: the state of no position is zero).
    holds: bool,
}

impl RecurrentState {
    pub(super) fn new(shape: RecurrentShape, device: &Device) -> Result<RecurrentState> {
        Ok(RecurrentState {
            conv: Tensor::zeros((shape.conv_kernel - 1, shape.conv_channels), DType::F32, device)?,
            state: Tensor::zeros((shape.heads, shape.key_dim, shape.value_dim), DType::F32, device)?,
            holds: false,
        })
    }

    /// The convolution's past inputs and the state, or none before the first position.
    pub(super) fn get(&self) -> Option<(Tensor, Tensor)> {
        self.holds.then(|| (self.conv.clone(), self.state.clone()))
    }

    /// Overwrites both, in place.
    pub(super) fn set(&mut self, conv: &Tensor, state: &Tensor) -> Result<()> {
        self.conv.slice_set(&conv.to_dtype(DType::F32)?.contiguous()?, 0, 0)?;
        self.state.slice_set(&state.to_dtype(DType::F32)?.contiguous()?, 0, 0)?;
        self.holds = true;
        Ok(())
    }

    pub(super) fn forget(&mut self) {
        self.holds = false;
    }

    pub(super) fn bytes(&self) -> u64 {
        tensor_bytes(&self.conv) + tensor_bytes(&self.state)
    }
}

/// A recurrent layer's place among the KV layers: it stores no rows.
pub(super) struct NoRows {
    pub(super) layer: usize,
}

impl NoRows {
    fn refuse<T>(&self) -> Result<T> {
        candle_core::bail!("layer {} keeps a recurrent state, no KV rows", self.layer)
    }
}

impl LayerCache for NoRows {
    fn write(&mut self, _pos: usize, _k: &Tensor, _v: &Tensor) -> Result<()> {
        self.refuse()
    }

    fn read(&self, _from: usize, _to: usize, _dtype: DType) -> Result<(Tensor, Tensor)> {
        self.refuse()
    }

    fn bytes(&self) -> u64 {
        0
    }

    fn stored_form(&self, _k: &Tensor, _v: &Tensor, _dtype: DType) -> Result<(Tensor, Tensor)> {
        self.refuse()
    }
}
