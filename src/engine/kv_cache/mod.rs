//! The KV cache: preallocated for the context, written in place each step,
//! one storage type per scheme behind one small interface. The model's
//! weights never change; this is the only mutable state of a run.

mod cpu;
// One switch for the concern: the kernels in CUDA builds, a taker of nothing otherwise.
#[cfg_attr(not(feature = "cuda"), path = "none.rs")]
pub mod cuda;
mod dense;
mod fp8;
mod quantized;
mod rows;

use candle_core::{DType, Device, Result, Tensor};

use crate::kv_size::CacheLayout;
use crate::quant::KvScheme;

pub use quantized::{Codec, Fp8E4M3, Int8, QuantizedLayer, dequantize, hadamard, quantize, rotate};

/// One layer's keys and values, stored however the scheme stores them.
pub trait LayerCache: Send {
    /// Stores `k` and `v`, each (kv_heads, T, head_dim), at positions `pos..pos+T`.
    fn write(&mut self, pos: usize, k: &Tensor, v: &Tensor) -> Result<()>;
    /// Keys and values for positions `from..to`, in `dtype`, each (kv_heads, to-from, head_dim),
    /// in the cache's basis (see `KvCache::rotation`).
    fn read(&self, from: usize, to: usize, dtype: DType) -> Result<(Tensor, Tensor)>;
    /// Bytes this layer holds on its device.
    fn bytes(&self) -> u64;
    /// Attention of `q` (heads, 1, head_dim: one position, in the model's
    /// basis, not rotated) over positions `0..len` in fused kernels, where
    /// the layer has them for the device (CUDA: every cache; CPU: the
    /// quantized ones), with the output in the model's basis too; `None`
    /// leaves it to the blockwise path (`attention::attend`).
    fn decode_attention(&self, q: &Tensor, len: usize) -> Result<Option<Tensor>> {
        let _ = (q, len);
        Ok(None)
    }
}

#[derive(Debug, thiserror::Error)]
#[error("the context is full: {needed} tokens do not fit in {capacity} (`--ctx-size`)")]
pub struct ContextFull {
    pub needed: usize,
    pub capacity: usize,
}

impl crate::exit::Diagnostic for ContextFull {
    fn hint(&self) -> Option<String> {
        Some("raise `--ctx-size` (up to the model's context length) or shorten the prompt".into())
    }
}

/// Shape of a cache: what the model needs stored per token.
#[derive(Debug, Clone, Copy)]
pub struct CacheShape {
    pub layers: usize,
    pub kv_heads: usize,
    pub head_dim: usize,
    pub capacity: usize,
}

pub struct KvCache {
    layers: Vec<Box<dyn LayerCache>>,
    rotation: Option<Tensor>,
    layout: CacheLayout,
    len: usize,
    capacity: usize,
}

impl KvCache {
    /// Allocates the whole cache up front, so a run that starts fits to the end.
    pub fn new(layout: CacheLayout, shape: CacheShape, dtype: DType, device: &Device) -> Result<KvCache> {
        let rotation = match layout {
            CacheLayout::Dense(_) => None,
            CacheLayout::Quantized(_) => quantized::hadamard(shape.head_dim, device)?,
        };
        let mut layers: Vec<Box<dyn LayerCache>> = Vec::with_capacity(shape.layers);
        for _ in 0..shape.layers {
            let r = rotation.clone();
            layers.push(match layout {
                CacheLayout::Dense(_) => Box::new(dense::DenseLayer::new(shape, dtype, device)?),
                CacheLayout::Quantized(KvScheme::Int8) => Box::new(QuantizedLayer::<Int8>::new(shape, r, device)?),
                CacheLayout::Quantized(KvScheme::Fp8) => Box::new(QuantizedLayer::<Fp8E4M3>::new(shape, r, device)?),
            });
        }
        Ok(KvCache { layers, rotation, layout, len: 0, capacity: shape.capacity })
    }

    pub fn layout(&self) -> CacheLayout {
        self.layout
    }

    /// The orthonormal, symmetric matrix stored keys and values are
    /// multiplied by; queries must be rotated by it and outputs rotated back.
    pub fn rotation(&self) -> Option<&Tensor> {
        self.rotation.as_ref()
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Forgets every stored token; the memory stays allocated.
    pub fn reset(&mut self) {
        self.len = 0;
    }

    /// Keeps the first `len` stored tokens (positions past them are
    /// overwritten by the next append).
    pub fn truncate(&mut self, len: usize) {
        self.len = self.len.min(len);
    }

    /// Fails unless `tokens` more positions fit.
    pub fn check_room(&self, tokens: usize) -> std::result::Result<(), ContextFull> {
        let needed = self.len + tokens;
        if needed > self.capacity { Err(ContextFull { needed, capacity: self.capacity }) } else { Ok(()) }
    }

    /// Writes a layer's new keys/values at the current end; the length
    /// advances in `commit`, once every layer has written.
    pub fn append(&mut self, layer: usize, k: &Tensor, v: &Tensor) -> Result<()> {
        let new = k.dim(1)?;
        if self.len + new > self.capacity {
            candle_core::bail!("{}", ContextFull { needed: self.len + new, capacity: self.capacity });
        }
        self.layers[layer].write(self.len, k, v)
    }

    /// A layer's keys/values for positions `from..to` (including ones appended
    /// but not yet committed).
    pub fn read(&self, layer: usize, from: usize, to: usize, dtype: DType) -> Result<(Tensor, Tensor)> {
        self.layers[layer].read(from, to, dtype)
    }

    /// A layer's fused decode attention over positions `0..len` (including
    /// the one just appended), if its device has a kernel for it.
    pub fn decode_attention(&self, layer: usize, q: &Tensor, len: usize) -> Result<Option<Tensor>> {
        self.layers[layer].decode_attention(q, len)
    }

    /// Marks `tokens` positions, written in every layer, as stored.
    pub fn commit(&mut self, tokens: usize) {
        self.len += tokens;
    }

    /// Bytes the cache holds on its device.
    pub fn allocated_bytes(&self) -> u64 {
        self.layers.iter().map(|l| l.bytes()).sum()
    }
}

/// The Walsh–Hadamard rotation quantized caches use, for tests elsewhere.
#[cfg(test)]
pub(crate) fn quantized_hadamard(n: usize, device: &Device) -> Tensor {
    quantized::hadamard(n, device).unwrap().unwrap()
}

pub(crate) fn tensor_bytes(t: &Tensor) -> u64 {
    (t.elem_count() * t.dtype().size_in_bytes()) as u64
}

#[cfg(test)]
mod tests;
