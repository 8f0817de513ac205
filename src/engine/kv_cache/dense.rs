//! The unquantized cache: keys and values in the compute dtype.

use candle_core::{DType, Device, Result, Tensor};

use super::{CacheShape, LayerCache, tensor_bytes};

#[derive(Clone)]
pub struct DenseLayer {
    k: Tensor,
    v: Tensor,
}

impl DenseLayer {
    pub fn new(shape: CacheShape, dtype: DType, device: &Device) -> Result<DenseLayer> {
        let dims = (shape.kv_heads, shape.capacity, shape.head_dim);
        Ok(DenseLayer { k: Tensor::zeros(dims, dtype, device)?, v: Tensor::zeros(dims, dtype, device)? })
    }
}

impl LayerCache for DenseLayer {
    fn write(&mut self, pos: usize, k: &Tensor, v: &Tensor) -> Result<()> {
        self.k.slice_set(&k.to_dtype(self.k.dtype())?.contiguous()?, 1, pos)?;
        self.v.slice_set(&v.to_dtype(self.v.dtype())?.contiguous()?, 1, pos)
    }

    fn read(&self, from: usize, to: usize, dtype: DType) -> Result<(Tensor, Tensor)> {
        let n = to - from;
        Ok((self.k.narrow(1, from, n)?.to_dtype(dtype)?, self.v.narrow(1, from, n)?.to_dtype(dtype)?))
    }

    fn bytes(&self) -> u64 {
        tensor_bytes(&self.k) + tensor_bytes(&self.v)
    }

    fn stored_form(&self, k: &Tensor, v: &Tensor, dtype: DType) -> Result<(Tensor, Tensor)> {
        let stored = self.k.dtype();
        Ok((k.to_dtype(stored)?.to_dtype(dtype)?, v.to_dtype(stored)?.to_dtype(dtype)?))
    }

    fn share(&self) -> Result<Box<dyn LayerCache>> {
        Ok(Box::new(self.clone()))
    }

    fn compact(&self, runs: &[std::ops::Range<usize>]) -> Result<Box<dyn LayerCache>> {
        Ok(Box::new(DenseLayer { k: super::paged::gather(&self.k, runs)?, v: super::paged::gather(&self.v, runs)? }))
    }

    fn decode_attention(&self, q: &Tensor, rows: std::ops::Range<usize>) -> Result<Option<Tensor>> {
        if !super::cuda::takes(q, &self.k) {
            return Ok(None);
        }
        let (first, len) = (rows.start, rows.len());
        let rows = super::cuda::CacheRows {
            k: &self.k,
            v: &self.v,
            scales: None,
            stored: super::cuda::Stored::Dense,
            rotated: false,
            first,
        };
        super::cuda::decode_attention(q, rows, len).map(Some)
    }
}
