//! FP8 E4M3 codes kept as raw bytes (`u8` tensors). candle 0.11.1's own
//! F8E4M3 CUDA kernels are looked up under wrong names (huggingface/candle
//! #3886), and byte tensors work with every cache operation on every device,
//! so the cache stores bit patterns and these two ops convert: on the CPU
//! with the `float8` crate, on CUDA with candle's correctly named
//! `cast_f32_f8_e4m3` / `cast_f8_e4m3_f32` kernels.

use candle_core::{CpuStorage, CustomOp1, Layout, Result, Shape, Tensor};
use float8::F8E4M3;

/// f32 → E4M3 bit patterns (round to nearest even, saturating).
struct Encode;
/// E4M3 bit patterns → f32.
struct Decode;

pub fn encode(x: &Tensor) -> Result<Tensor> {
    x.contiguous()?.apply_op1_no_bwd(&Encode)
}

pub fn decode(codes: &Tensor) -> Result<Tensor> {
    codes.contiguous()?.apply_op1_no_bwd(&Decode)
}

fn contiguous<'a, T>(data: &'a [T], layout: &Layout) -> Result<&'a [T]> {
    match layout.contiguous_offsets() {
        Some((start, end)) => Ok(&data[start..end]),
        None => candle_core::bail!("fp8 conversion needs a contiguous tensor"),
    }
}

impl CustomOp1 for Encode {
    fn name(&self) -> &'static str {
        "llmctl-f32-to-e4m3"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let CpuStorage::F32(data) = storage else { candle_core::bail!("fp8 encode takes f32") };
        let codes = contiguous(data, layout)?.iter().map(|&x| F8E4M3::from_f32(x).to_bits()).collect();
        Ok((CpuStorage::U8(codes), layout.shape().clone()))
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        storage: &candle_core::CudaStorage,
        layout: &Layout,
    ) -> Result<(candle_core::CudaStorage, Shape)> {
        cuda::cast(storage, layout, "cast_f32_f8_e4m3")
    }
}

/// All 256 decoded values, so decoding is one table lookup per byte.
fn decode_table() -> &'static [f32; 256] {
    static TABLE: std::sync::OnceLock<[f32; 256]> = std::sync::OnceLock::new();
    TABLE.get_or_init(|| std::array::from_fn(|b| F8E4M3::from_bits(b as u8).to_f32()))
}

impl CustomOp1 for Decode {
    fn name(&self) -> &'static str {
        "llmctl-e4m3-to-f32"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let CpuStorage::U8(data) = storage else { candle_core::bail!("fp8 decode takes u8 codes") };
        let table = decode_table();
        let values = contiguous(data, layout)?.iter().map(|&b| table[b as usize]).collect();
        Ok((CpuStorage::F32(values), layout.shape().clone()))
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        storage: &candle_core::CudaStorage,
        layout: &Layout,
    ) -> Result<(candle_core::CudaStorage, Shape)> {
        cuda::cast(storage, layout, "cast_f8_e4m3_f32")
    }
}

#[cfg(feature = "cuda")]
mod cuda {
    use candle_core::backend::BackendStorage;
    use candle_core::cuda_backend::cudarc::driver::{LaunchConfig, PushKernelArg};
    use candle_core::cuda_backend::{CudaStorageSlice, WrapErr, kernels};
    use candle_core::{CudaStorage, Layout, Result, Shape};

    /// Runs one of candle's cast kernels between f32 and fp8 bytes (the
    /// kernel's `__nv_fp8_e4m3` has the same one-byte layout as `u8`).
    pub fn cast(storage: &CudaStorage, layout: &Layout, kernel: &str) -> Result<(CudaStorage, Shape)> {
        let dev = storage.device().clone();
        let (start, end) = layout
            .contiguous_offsets()
            .ok_or_else(|| candle_core::Error::Msg("fp8 cast needs a contiguous tensor".into()))?;
        let numel = end - start;
        let func = dev.get_or_load_func(kernel, &kernels::CAST)?;
        let cfg = LaunchConfig::for_num_elems(numel as u32);
        let no_strides: u64 = 0;
        let slice = match &storage.slice {
            CudaStorageSlice::F32(src) => {
                let src = src.slice(start..end);
                // SAFETY: every element is written by the kernel below.
                let out = unsafe { dev.alloc::<u8>(numel)? };
                let mut builder = func.builder();
                candle_core::builder_arg!(builder, numel, 1usize, no_strides);
                builder.arg(&src);
                builder.arg(&out);
                // SAFETY: arguments match the kernel's (numel, num_dims, info, in, out).
                unsafe { builder.launch(cfg) }.w()?;
                CudaStorageSlice::U8(out)
            }
            CudaStorageSlice::U8(src) => {
                let src = src.slice(start..end);
                // SAFETY: as above.
                let out = unsafe { dev.alloc::<f32>(numel)? };
                let mut builder = func.builder();
                candle_core::builder_arg!(builder, numel, 1usize, no_strides);
                builder.arg(&src);
                builder.arg(&out);
                // SAFETY: as above.
                unsafe { builder.launch(cfg) }.w()?;
                CudaStorageSlice::F32(out)
            }
            _ => candle_core::bail!("fp8 cast takes f32 or u8"),
        };
        Ok((CudaStorage { slice, device: dev }, layout.shape().clone()))
    }
}

#[cfg(test)]
mod tests {
    use candle_core::{DType, Device};

    use super::*;

    #[test]
    fn bytes_round_trip_like_candles_own_f8_dtype() {
        let values: Vec<f32> = (-40..40).map(|i| i as f32 * 11.3 + 0.01).chain([448.0, -448.0, 1e-3, 0.0]).collect();
        let x = Tensor::from_vec(values.clone(), values.len(), &Device::Cpu).unwrap();
        let ours: Vec<f32> = decode(&encode(&x).unwrap()).unwrap().to_vec1().unwrap();
        let candle: Vec<f32> = x.to_dtype(DType::F8E4M3).unwrap().to_dtype(DType::F32).unwrap().to_vec1().unwrap();
        assert_eq!(ours, candle);
        assert_eq!(encode(&x).unwrap().dtype(), DType::U8);
    }
}
