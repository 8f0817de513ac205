//! A block pool: the KV rows of many sequences in storage allocated once,
//! in blocks of `BLOCK_TOKENS` positions, as paged attention keeps them. A
//! sequence reserves the blocks it will need when it starts and gives them
//! back when it ends; its blocks need not be adjacent, so sequences of any
//! length share the pool without fragmenting it. Only layers that attend to
//! every position page: a sliding-window layer's ring and a recurrent
//! layer's state have a fixed size per sequence, which each sequence's cache
//! keeps itself.

use std::ops::Range;
use std::sync::{Arc, RwLock};

use candle_core::{DType, Device, Result, Tensor};

use super::{KvCache, LayerCache, LayerShape};
use crate::kv_size::CacheLayout;

/// Positions per block.
pub const BLOCK_TOKENS: usize = 32;

/// Which of its pool's blocks a sequence holds: its position `p` lies in row
/// `blocks[p / BLOCK_TOKENS] * BLOCK_TOKENS + p % BLOCK_TOKENS` of every
/// paged layer.
#[derive(Debug, Default)]
pub(super) struct BlockTable {
    blocks: Vec<u32>,
}

pub(super) type SharedTable = Arc<RwLock<BlockTable>>;

impl BlockTable {
    /// Positions the reserved blocks hold.
    pub(super) fn tokens(&self) -> usize {
        self.blocks.len() * BLOCK_TOKENS
    }

    /// Positions `from..to` as runs of adjacent pool rows: (first position, rows).
    fn runs(&self, from: usize, to: usize) -> Result<Vec<(usize, Range<usize>)>> {
        if to > self.tokens() {
            candle_core::bail!("position {} lies past the sequence's {} reserved positions", to - 1, self.tokens());
        }
        let mut runs: Vec<(usize, Range<usize>)> = Vec::new();
        let mut p = from;
        while p < to {
            let n = (BLOCK_TOKENS - p % BLOCK_TOKENS).min(to - p);
            let row = self.blocks[p / BLOCK_TOKENS] as usize * BLOCK_TOKENS + p % BLOCK_TOKENS;
            match runs.last_mut() {
                Some((_, rows)) if rows.end == row => rows.end += n,
                _ => runs.push((p, row..row + n)),
            }
            p += n;
        }
        Ok(runs)
    }
}

fn table(shared: &SharedTable) -> std::sync::RwLockReadGuard<'_, BlockTable> {
    shared.read().unwrap_or_else(|e| e.into_inner())
}

/// Rows `runs` of `x` (kv_heads, rows, …), in order, as one contiguous tensor.
pub(super) fn gather(x: &Tensor, runs: &[Range<usize>]) -> Result<Tensor> {
    let parts = runs.iter().map(|r| x.narrow(1, r.start, r.len())).collect::<Result<Vec<_>>>()?;
    match parts.as_slice() {
        [one] => one.contiguous(),
        _ => Tensor::cat(&parts, 1),
    }
}

/// One layer of a sequence, its rows in its pool's blocks.
pub(super) struct PagedLayer {
    /// A handle on the pool's storage for this layer.
    rows: Box<dyn LayerCache>,
    table: SharedTable,
    /// Bytes of one row of `rows`.
    row_bytes: u64,
}

impl LayerCache for PagedLayer {
    fn write(&mut self, pos: usize, k: &Tensor, v: &Tensor) -> Result<()> {
        let runs = table(&self.table).runs(pos, pos + k.dim(1)?)?;
        for (p, rows) in runs {
            let (at, n) = (p - pos, rows.len());
            self.rows.write(rows.start, &k.narrow(1, at, n)?, &v.narrow(1, at, n)?)?;
        }
        Ok(())
    }

    fn read(&self, from: usize, to: usize, dtype: DType) -> Result<(Tensor, Tensor)> {
        let runs = table(&self.table).runs(from, to)?;
        super::join_rows(runs.into_iter().map(|(_, r)| self.rows.read(r.start, r.end, dtype)).collect::<Result<_>>()?)
    }

    /// The bytes of the rows this sequence reserved.
    fn bytes(&self) -> u64 {
        table(&self.table).tokens() as u64 * self.row_bytes
    }

    fn decode_attention(&self, q: &Tensor, rows: Range<usize>) -> Result<Option<Tensor>> {
        let mut runs: Vec<Range<usize>> =
            table(&self.table).runs(rows.start, rows.end)?.into_iter().map(|(_, r)| r).collect();
        // Adjacent blocks: the kernels read them in place; else from a compact copy of the codes.
        if runs.len() == 1 {
            return self.rows.decode_attention(q, runs.remove(0));
        }
        self.rows.compact(&runs)?.decode_attention(q, 0..rows.len())
    }

    fn stored_form(&self, k: &Tensor, v: &Tensor, dtype: DType) -> Result<(Tensor, Tensor)> {
        self.rows.stored_form(k, v, dtype)
    }
}

#[derive(Debug, thiserror::Error)]
#[error("the KV pool has {free} free blocks of {BLOCK_TOKENS} positions; {needed} are needed")]
pub struct PoolFull {
    pub needed: usize,
    pub free: usize,
}

/// The blocks of one model and scheme, and the storage they live in.
pub struct BlockPool {
    layout: CacheLayout,
    shapes: Vec<LayerShape>,
    context: usize,
    dtype: DType,
    device: Device,
    /// Per stored layer: the pool's rows if the layer pages, else none.
    layers: Vec<Option<Box<dyn LayerCache>>>,
    /// Free blocks, highest first: the lowest adjacent ones are taken first,
    /// so blocks reused are ones already touched.
    free: Vec<u32>,
    blocks: usize,
}

/// Whether a layer of this shape pages: it attends to every position of the context.
fn pages(shape: &LayerShape, context: usize) -> bool {
    shape.recurrent.is_none() && shape.window.is_none_or(|w| w >= context)
}

/// Bytes one position takes in a layer of `shape` (the size formula `show` and `bench` use).
fn row_bytes(layout: CacheLayout, shape: &LayerShape) -> u64 {
    layout.row_bytes(shape.kv_heads as u64, shape.head_dim as u64)
}

impl BlockPool {
    /// Bytes one block takes over every paged layer of `shapes`.
    pub fn block_bytes(layout: CacheLayout, shapes: &[LayerShape], context: usize) -> u64 {
        let row: u64 = shapes.iter().filter(|s| pages(s, context)).map(|s| row_bytes(layout, s)).sum();
        row * BLOCK_TOKENS as u64
    }

    /// Allocates `blocks` blocks for sequences of up to `context` positions.
    pub fn new(
        layout: CacheLayout,
        shapes: &[LayerShape],
        context: usize,
        blocks: usize,
        dtype: DType,
        device: &Device,
    ) -> Result<BlockPool> {
        if u32::try_from(blocks).is_err() {
            candle_core::bail!("{blocks} blocks are more than a pool holds");
        }
        let rows = blocks * BLOCK_TOKENS;
        // The pool's storage: a cache of the paged layers, as long as every block together.
        let paged: Vec<LayerShape> =
            shapes.iter().filter(|s| pages(s, context)).map(|s| LayerShape { window: None, ..*s }).collect();
        let mut whole = KvCache::build(layout, &paged, rows, dtype, device, None)?.layers.into_iter();
        let layers = shapes.iter().map(|s| if pages(s, context) { whole.next() } else { None }).collect();
        Ok(BlockPool {
            layout,
            shapes: shapes.to_vec(),
            context,
            dtype,
            device: device.clone(),
            layers,
            free: (0..blocks as u32).rev().collect(),
            blocks,
        })
    }

    /// An empty cache for one sequence of up to the pool's context, whose
    /// paged layers live in this pool; it holds no block until `reserve`.
    pub fn sequence(&self) -> Result<KvCache> {
        KvCache::build(self.layout, &self.shapes, self.context, self.dtype, &self.device, Some(self))
    }

    /// A paged layer of a new sequence: a handle on layer `layer`'s rows, or
    /// none where that layer keeps its own.
    pub(super) fn layer(&self, layer: usize, table: &SharedTable) -> Result<Option<Box<dyn LayerCache>>> {
        let Some(rows) = self.layers.get(layer).and_then(Option::as_ref) else { return Ok(None) };
        let row_bytes = row_bytes(self.layout, &self.shapes[layer]);
        Ok(Some(Box::new(PagedLayer { rows: rows.share()?, table: table.clone(), row_bytes })))
    }

    /// Blocks that hold `tokens` positions.
    pub fn blocks_for(tokens: usize) -> usize {
        tokens.div_ceil(BLOCK_TOKENS)
    }

    /// Gives `cache` (one of this pool's, holding no blocks) the blocks for
    /// `tokens` positions; takes none when too few are free.
    pub fn reserve(&mut self, cache: &mut KvCache, tokens: usize) -> std::result::Result<(), PoolFull> {
        let needed = BlockPool::blocks_for(tokens.min(self.context));
        if needed > self.free.len() {
            return Err(PoolFull { needed, free: self.free.len() });
        }
        if let Some(shared) = &cache.table {
            let mut t = shared.write().unwrap_or_else(|e| e.into_inner());
            // Adjacent blocks where there are enough (the kernels then read them in place), else the lowest.
            let at = self.adjacent(needed).unwrap_or(self.free.len() - needed);
            let taken: Vec<u32> = self.free.drain(at..at + needed).collect();
            t.blocks.extend(taken.into_iter().rev());
        }
        Ok(())
    }

    /// Where in `free` (highest first) the lowest `n` adjacent blocks begin.
    fn adjacent(&self, n: usize) -> Option<usize> {
        if n == 0 {
            return None;
        }
        let mut run = 1;
        for i in (0..self.free.len()).rev() {
            if i + 1 < self.free.len() && self.free[i] == self.free[i + 1] + 1 {
                run += 1;
            } else {
                run = 1;
            }
            if run == n {
                return Some(i);
            }
        }
        None
    }

    /// Takes `cache`'s blocks back and empties it.
    pub fn release(&mut self, cache: &mut KvCache) {
        cache.reset();
        let Some(shared) = &cache.table else { return };
        let mut t = shared.write().unwrap_or_else(|e| e.into_inner());
        self.free.append(&mut t.blocks);
        self.free.sort_unstable_by(|a, b| b.cmp(a));
    }

    pub fn total_blocks(&self) -> usize {
        self.blocks
    }

    pub fn free_blocks(&self) -> usize {
        self.free.len()
    }

    /// Bytes of the pool's storage.
    pub fn bytes(&self) -> u64 {
        self.layers.iter().flatten().map(|l| l.bytes()).sum()
    }

    pub fn context(&self) -> usize {
        self.context
    }

    pub fn layout(&self) -> CacheLayout {
        self.layout
    }
}
