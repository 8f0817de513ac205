//! The KV cache: preallocated for the context, written in place each step,
//! one storage type per scheme behind one small interface, and the fixed
//! states of recurrent (linear-attention) layers, which store no rows. The
//! model's weights never change; this is the only mutable state of a run.

mod cpu;
// One switch for the concern: the kernels in CUDA builds, a taker of nothing otherwise.
#[cfg_attr(not(feature = "cuda"), path = "none.rs")]
pub mod cuda;
mod dense;
mod fp8;
mod paged;
mod quantized;
mod recurrent;
mod rows;

use candle_core::{DType, Device, Result, Tensor};

use crate::kv_size::CacheLayout;
use crate::quant::KvScheme;

pub use paged::{BLOCK_TOKENS, BlockPool, PoolFull};
pub use quantized::{Codec, Fp8E4M3, Int8, QuantizedLayer, dequantize, hadamard, quantize, rotate};
pub use recurrent::RecurrentShape;

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
    /// basis, not rotated) over the positions stored in `rows` in fused kernels, where
    /// the layer has them for the device (CUDA: every cache; CPU: the
    /// quantized ones), with the output in the model's basis too; `None`
    /// leaves it to the blockwise path (`attention::attend`).
    fn decode_attention(&self, q: &Tensor, rows: std::ops::Range<usize>) -> Result<Option<Tensor>> {
        let _ = (q, rows);
        Ok(None)
    }
    /// What `read` would give for `k` and `v` once written: the rows of a
    /// chunk that a sliding-window layer attends to before it stores them.
    fn stored_form(&self, k: &Tensor, v: &Tensor, dtype: DType) -> Result<(Tensor, Tensor)>;
    /// Another handle on this layer's storage (writes through either reach
    /// both): how the sequences of a block pool share its rows.
    fn share(&self) -> Result<Box<dyn LayerCache>> {
        candle_core::bail!("this layer's rows cannot be shared")
    }
    /// A layer of its own holding rows `runs`, in order, from row 0: a paged
    /// sequence's rows made contiguous for the fused decode kernels (codes
    /// are copied as codes, never dequantized).
    fn compact(&self, runs: &[std::ops::Range<usize>]) -> Result<Box<dyn LayerCache>> {
        let _ = runs;
        candle_core::bail!("this layer's rows cannot be compacted")
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

/// One stored layer's shape, where a model's layers differ (Gemma 4's wider
/// global heads, Qwen3.5's recurrent layers): its KV heads, head width and
/// window, or the recurrent state it keeps instead of KV rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LayerShape {
    pub kv_heads: usize,
    pub head_dim: usize,
    pub window: Option<usize>,
    pub recurrent: Option<RecurrentShape>,
}

pub struct KvCache {
    layers: Vec<Box<dyn LayerCache>>,
    /// Per layer: the ring of a sliding-window layer (see [`Ring`]), or none.
    rings: Vec<Option<Ring>>,
    /// Per layer: the rotation of its head width (see `rotation`).
    rotations: Vec<Option<Tensor>>,
    /// Per layer: the state of a recurrent layer (whose `layers` entry stores nothing), or none.
    recurrent: Vec<Option<recurrent::RecurrentState>>,
    layout: CacheLayout,
    len: usize,
    capacity: usize,
    /// A paged cache's blocks in its pool (see `BlockPool`), shared with its paged layers.
    table: Option<paged::SharedTable>,
}

/// A sliding-window layer keeps only its last `window` positions: position
/// `p` lives in slot `p % window`. A one-token step writes its row before
/// attending (the slots then hold exactly the window, in some order); a
/// longer chunk attends to the stored rows and to its own rows in their
/// stored form (`pending`), and its last `window` rows are written at
/// `commit`, so no row is overwritten while a query of the chunk needs it.
struct Ring {
    window: usize,
    /// One past the last position written into the slots.
    written: usize,
    /// A chunk's keys and values (kv_heads, T, head_dim), not yet written.
    pending: Option<(Tensor, Tensor)>,
}

impl KvCache {
    /// Allocates the whole cache up front, so a run that starts fits to the end.
    pub fn new(layout: CacheLayout, shape: CacheShape, dtype: DType, device: &Device) -> Result<KvCache> {
        KvCache::windowed(layout, shape, &[], dtype, device)
    }

    /// As `new`, with layer `i` attending to its last `windows[i]` positions
    /// only (missing entries: all), which it alone stores.
    pub fn windowed(
        layout: CacheLayout,
        shape: CacheShape,
        windows: &[Option<usize>],
        dtype: DType,
        device: &Device,
    ) -> Result<KvCache> {
        let layers: Vec<LayerShape> = (0..shape.layers)
            .map(|i| LayerShape {
                kv_heads: shape.kv_heads,
                head_dim: shape.head_dim,
                window: windows.get(i).copied().flatten(),
                recurrent: None,
            })
            .collect();
        KvCache::layered(layout, &layers, shape.capacity, dtype, device)
    }

    /// As `windowed`, with a shape of its own for each stored layer (or the
    /// recurrent state it keeps in place of KV rows).
    pub fn layered(
        layout: CacheLayout,
        shapes: &[LayerShape],
        capacity: usize,
        dtype: DType,
        device: &Device,
    ) -> Result<KvCache> {
        KvCache::build(layout, shapes, capacity, dtype, device, None)
    }

    /// As `layered`; with `pool`, the layers that attend to every position
    /// keep their rows in the pool's blocks instead of storage of their own.
    fn build(
        layout: CacheLayout,
        shapes: &[LayerShape],
        capacity: usize,
        dtype: DType,
        device: &Device,
        pool: Option<&BlockPool>,
    ) -> Result<KvCache> {
        let table = pool.map(|_| paged::SharedTable::default());
        let mut by_width: Vec<(usize, Option<Tensor>)> = Vec::new();
        let mut layers: Vec<Box<dyn LayerCache>> = Vec::with_capacity(shapes.len());
        let (mut rings, mut rotations) = (Vec::with_capacity(shapes.len()), Vec::with_capacity(shapes.len()));
        let mut states = Vec::with_capacity(shapes.len());
        for (i, s) in shapes.iter().enumerate() {
            states.push(s.recurrent.map(|r| recurrent::RecurrentState::new(r, device)).transpose()?);
            if s.recurrent.is_some() {
                rings.push(None);
                rotations.push(None);
                layers.push(Box::new(recurrent::NoRows { layer: i }));
                continue;
            }
            let r = match (layout, by_width.iter().find(|(d, _)| *d == s.head_dim)) {
                (CacheLayout::Dense(_), _) => None,
                (_, Some((_, r))) => r.clone(),
                (CacheLayout::Quantized(_), None) => {
                    let r = quantized::hadamard(s.head_dim, device)?;
                    by_width.push((s.head_dim, r.clone()));
                    r
                }
            };
            rotations.push(r.clone());
            // A window as long as the context is no window.
            let window = s.window.filter(|&w| w < capacity);
            rings.push(window.map(|window| Ring { window, written: 0, pending: None }));
            if let (Some(pool), Some(table)) = (pool, &table)
                && let Some(layer) = pool.layer(i, table)?
            {
                layers.push(layer);
                continue;
            }
            let shape = CacheShape {
                layers: 1,
                kv_heads: s.kv_heads,
                head_dim: s.head_dim,
                capacity: window.unwrap_or(capacity),
            };
            layers.push(match layout {
                CacheLayout::Dense(_) => Box::new(dense::DenseLayer::new(shape, dtype, device)?),
                CacheLayout::Quantized(KvScheme::Int8) => Box::new(QuantizedLayer::<Int8>::new(shape, r, device)?),
                CacheLayout::Quantized(KvScheme::Fp8) => Box::new(QuantizedLayer::<Fp8E4M3>::new(shape, r, device)?),
            });
        }
        Ok(KvCache { layers, rings, rotations, recurrent: states, layout, len: 0, capacity, table })
    }

    /// The positions layer `layer` attends to, its own included: a window, or all.
    pub fn window(&self, layer: usize) -> Option<usize> {
        self.rings[layer].as_ref().map(|r| r.window)
    }

    pub fn layout(&self) -> CacheLayout {
        self.layout
    }

    /// The orthonormal, symmetric matrix stored keys and values are
    /// multiplied by; queries must be rotated by it and outputs rotated back
    /// (the first layer's; see `rotation_of` where head widths differ).
    pub fn rotation(&self) -> Option<&Tensor> {
        self.rotation_of(0)
    }

    /// Layer `layer`'s rotation (layers of one head width share one).
    pub fn rotation_of(&self, layer: usize) -> Option<&Tensor> {
        self.rotations.get(layer).and_then(Option::as_ref)
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
        for ring in self.rings.iter_mut().flatten() {
            *ring = Ring { window: ring.window, written: 0, pending: None };
        }
        for state in self.recurrent.iter_mut().flatten() {
            state.forget();
        }
    }

    /// Keeps the first `len` stored tokens (positions past them are
    /// overwritten by the next append); false, changing nothing, where a
    /// sliding-window layer has already overwritten a row those tokens need,
    /// or a recurrent layer would need its state at `len` (it keeps only the last).
    pub fn truncate(&mut self, len: usize) -> bool {
        let len = self.len.min(len);
        if len < self.len && self.recurrent.iter().any(Option::is_some) {
            return false;
        }
        // The rows the next position needs: len+1-window.., all still in the slots?
        let kept = |r: &Ring| r.written <= r.window || len + 1 >= r.written;
        if !self.rings.iter().flatten().all(kept) {
            return false;
        }
        for ring in self.rings.iter_mut().flatten() {
            ring.written = ring.written.min(len);
        }
        self.len = len;
        true
    }

    /// Fails unless `tokens` more positions fit (in a paged cache: in the blocks it holds).
    pub fn check_room(&self, tokens: usize) -> std::result::Result<(), ContextFull> {
        let needed = self.len + tokens;
        let capacity = self.room();
        if needed > capacity { Err(ContextFull { needed, capacity }) } else { Ok(()) }
    }

    /// Positions the cache can hold: its capacity, or a paged cache's reserved positions within it.
    fn room(&self) -> usize {
        match &self.table {
            Some(t) => self.capacity.min(t.read().unwrap_or_else(|e| e.into_inner()).tokens()),
            None => self.capacity,
        }
    }

    /// Writes a layer's new keys/values at the current end; the length
    /// advances in `commit`, once every layer has written.
    pub fn append(&mut self, layer: usize, k: &Tensor, v: &Tensor) -> Result<()> {
        let new = k.dim(1)?;
        if let Err(full) = self.check_room(new) {
            candle_core::bail!("{full}");
        }
        let Some(ring) = self.rings[layer].as_mut() else {
            return self.layers[layer].write(self.len, k, v);
        };
        if new == 1 {
            ring.written = self.len + 1;
            return self.layers[layer].write(self.len % ring.window, k, v);
        }
        ring.pending = Some((k.clone(), v.clone()));
        Ok(())
    }

    /// A layer's keys/values for positions `from..to` (including ones appended
    /// but not yet committed). A sliding-window layer has only its window's.
    pub fn read(&self, layer: usize, from: usize, to: usize, dtype: DType) -> Result<(Tensor, Tensor)> {
        let Some(ring) = self.rings[layer].as_ref() else {
            return self.layers[layer].read(from, to, dtype);
        };
        let cache = &self.layers[layer];
        if from + ring.window < ring.written {
            candle_core::bail!("position {from} has left layer {layer}'s window of {}", ring.window);
        }
        let mut parts = Vec::new();
        // Stored rows, in runs of consecutive slots.
        let mut p = from;
        while p < to.min(ring.written) {
            let slot = p % ring.window;
            let n = (to.min(ring.written) - p).min(ring.window - slot);
            parts.push(cache.read(slot, slot + n, dtype)?);
            p += n;
        }
        if to > ring.written {
            let Some((k, v)) = ring.pending.as_ref() else {
                candle_core::bail!("positions {}..{to} of layer {layer} were never written", ring.written);
            };
            let (start, n) = (p - ring.written, to - p);
            parts.push(cache.stored_form(&k.narrow(1, start, n)?, &v.narrow(1, start, n)?, dtype)?);
        }
        join_rows(parts)
    }

    /// A layer's fused decode attention over positions `0..len` (including
    /// the one just appended), if its device has a kernel for it. A
    /// sliding-window layer's slots hold exactly its window then: the
    /// kernel reads them all, in whatever order (attention is unchanged by
    /// the order of its keys).
    pub fn decode_attention(&self, layer: usize, q: &Tensor, len: usize) -> Result<Option<Tensor>> {
        let rows = self.rings[layer].as_ref().map_or(len, |r| len.min(r.window));
        self.layers[layer].decode_attention(q, 0..rows)
    }

    /// Marks `tokens` positions, written in every layer, as stored; a
    /// sliding-window layer writes its chunk's last rows now.
    pub fn commit(&mut self, tokens: usize) -> Result<()> {
        let end = self.len + tokens;
        for (ring, cache) in self.rings.iter_mut().zip(&mut self.layers) {
            let Some(ring) = ring.as_mut() else { continue };
            if let Some((k, v)) = ring.pending.take() {
                let t = k.dim(1)?;
                let mut p = end - t.min(ring.window);
                while p < end {
                    let slot = p % ring.window;
                    let n = (end - p).min(ring.window - slot);
                    let at = p - (end - t);
                    cache.write(slot, &k.narrow(1, at, n)?, &v.narrow(1, at, n)?)?;
                    p += n;
                }
            }
            ring.written = end;
        }
        self.len = end;
        Ok(())
    }

    /// A recurrent layer's state after the stored positions: the last
    /// `conv_kernel - 1` inputs of its convolution (conv_kernel - 1,
    /// channels) and its state (heads, key_dim, value_dim), f32; none before
    /// the first position (both zero).
    pub fn recurrent_state(&self, layer: usize) -> Result<Option<(Tensor, Tensor)>> {
        match &self.recurrent[layer] {
            Some(state) => Ok(state.get()),
            None => candle_core::bail!("layer {layer} keeps no recurrent state"),
        }
    }

    /// Overwrites a recurrent layer's state with the one after the positions
    /// being appended (they count as stored at `commit`).
    pub fn set_recurrent_state(&mut self, layer: usize, conv: &Tensor, state: &Tensor) -> Result<()> {
        match &mut self.recurrent[layer] {
            Some(s) => s.set(conv, state),
            None => candle_core::bail!("layer {layer} keeps no recurrent state"),
        }
    }

    /// Bytes the cache holds on its device: KV rows and recurrent states.
    pub fn allocated_bytes(&self) -> u64 {
        let states: u64 = self.recurrent.iter().flatten().map(|s| s.bytes()).sum();
        self.layers.iter().map(|l| l.bytes()).sum::<u64>() + states
    }
}

/// The Walsh–Hadamard rotation quantized caches use, for tests elsewhere.
#[cfg(test)]
pub(crate) fn quantized_hadamard(n: usize, device: &Device) -> Tensor {
    quantized::hadamard(n, device).unwrap().unwrap()
}

/// Keys and values read in parts, each (kv_heads, n, head_dim), as one (k, v) pair in order.
fn join_rows(mut parts: Vec<(Tensor, Tensor)>) -> Result<(Tensor, Tensor)> {
    if parts.len() == 1 {
        return Ok(parts.remove(0));
    }
    let (ks, vs): (Vec<Tensor>, Vec<Tensor>) = parts.into_iter().unzip();
    Ok((Tensor::cat(&ks, 1)?, Tensor::cat(&vs, 1)?))
}

pub(crate) fn tensor_bytes(t: &Tensor) -> u64 {
    (t.elem_count() * t.dtype().size_in_bytes()) as u64
}

#[cfg(test)]
mod tests;
