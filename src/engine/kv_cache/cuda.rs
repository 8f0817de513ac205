//! Launchers for the cache's own CUDA kernels (`kernels.cu` and the
//! `decode_mma.cuh` it includes, compiled to PTX by `build.rs`): fused
//! decode attention over dense or quantized rows (SIMT, or tensor cores for
//! codes), and quantize-and-append. The unfused tensor-op paths stay the reference
//! they are tested against.

use candle_core::backend::BackendStorage;
use std::sync::Mutex;

use candle_core::cuda_backend::cudarc::driver::sys::CUdevice_attribute;
use candle_core::cuda_backend::cudarc::driver::{
    CudaFunction, CudaSlice, CudaView, DeviceRepr, LaunchArgs, LaunchConfig, PushKernelArg,
};
use candle_core::cuda_backend::{CudaDevice, CudaStorageSlice, WrapErr};
use candle_core::{CudaStorage, CustomOp1, D, DType, InplaceOp2, Layout, Result, Shape, Storage, Tensor, bail};
use half::{bf16, f16};

pub use super::rows::{CacheRows, Stored};

const PTX: &str = include_str!(concat!(env!("OUT_DIR"), "/kv_cache.ptx"));
const MODULE: &str = "llmctl_kv_cache";

/// Fewest keys a split is worth.
const MIN_SPLIT_KEYS: usize = 128;

/// Whether the fused kernels take rows of this length: 64, 128 or 256 (a
/// row spans a power-of-two number of lanes).
pub fn supports(head_dim: usize) -> bool {
    matches!(head_dim, 64 | 128 | 256)
}

/// Gemma 4's global heads of 512: the partial kernels over codes with at most
/// 4 query heads per KV head, the case an H200 run has checked against the
/// CPU (the dense rows' and groups of 8's kernels are built but have not run).
fn wide(d: usize, rows: &Tensor, group: usize) -> bool {
    d == 512 && rows.dtype() == DType::U8 && group <= 4
}

/// Whether fused decode attention takes `q` (heads, 1, d) over `rows`
/// (kv_heads, capacity, d): CUDA, bf16/f16 queries over rows of their own
/// dtype or u8 codes, at most 8 query heads per KV head.
pub fn takes(q: &Tensor, rows: &Tensor) -> bool {
    let (Ok((heads, t, d)), Ok((kv_heads, _, _))) = (q.dims3(), rows.dims3()) else { return false };
    q.device().is_cuda()
        && t == 1
        && (supports(d) || (kv_heads > 0 && wide(d, rows, heads / kv_heads)))
        && matches!(q.dtype(), DType::BF16 | DType::F16)
        && (rows.dtype() == q.dtype() || rows.dtype() == DType::U8)
        && kv_heads > 0
        && heads.is_multiple_of(kv_heads)
        && heads / kv_heads <= 8
}

/// Whether quantize-and-append takes new rows `x` (kv_heads, T, d) for `codes`.
pub fn takes_rows(x: &Tensor, codes: &Tensor) -> bool {
    x.device().is_cuda() && x.dims3().is_ok_and(|(_, _, d)| supports(d) || d == 512) && codes.dtype() == DType::U8
}

/// A tensor as a kernel argument: its elements from its layout's start on.
enum Arg<'a> {
    Bf16(CudaView<'a, bf16>),
    F16(CudaView<'a, f16>),
    F32(CudaView<'a, f32>),
    U8(CudaView<'a, u8>),
}

impl<'a> Arg<'a> {
    /// `storage` as `layout` reads it, which must be contiguous (it may start anywhere:
    /// one sequence's rows of a batch, a chunk's keys, are views into larger tensors).
    fn of(storage: &'a CudaStorage, layout: &Layout) -> Result<Arg<'a>> {
        if !layout.is_contiguous() {
            bail!("the fused KV-cache kernels take contiguous tensors");
        }
        let start = layout.start_offset();
        Ok(match &storage.slice {
            CudaStorageSlice::BF16(s) => Arg::Bf16(s.slice(start..)),
            CudaStorageSlice::F16(s) => Arg::F16(s.slice(start..)),
            CudaStorageSlice::F32(s) => Arg::F32(s.slice(start..)),
            CudaStorageSlice::U8(s) => Arg::U8(s.slice(start..)),
            _ => bail!("the fused KV-cache kernels take bf16, f16, f32 or u8 tensors"),
        })
    }

    /// The type part of a kernel name.
    fn type_name(&self) -> &'static str {
        match self {
            Arg::Bf16(_) => "bf16",
            Arg::F16(_) => "f16",
            Arg::F32(_) => "f32",
            Arg::U8(_) => "u8",
        }
    }

    fn push<'b>(&'b self, builder: &mut LaunchArgs<'b>) {
        match self {
            Arg::Bf16(s) => builder.arg(s),
            Arg::F16(s) => builder.arg(s),
            Arg::F32(s) => builder.arg(s),
            Arg::U8(s) => builder.arg(s),
        };
    }

    /// The argument from its element `offset` on.
    fn from(&self, offset: usize) -> Arg<'a> {
        match self {
            Arg::Bf16(s) => Arg::Bf16(s.slice(offset..)),
            Arg::F16(s) => Arg::F16(s.slice(offset..)),
            Arg::F32(s) => Arg::F32(s.slice(offset..)),
            Arg::U8(s) => Arg::U8(s.slice(offset..)),
        }
    }
}

fn cuda_storage(storage: &Storage) -> Result<&CudaStorage> {
    match storage {
        Storage::Cuda(s) => Ok(s),
        _ => bail!("the fused KV-cache kernels run on CUDA tensors only"),
    }
}

/// Which kernel computes decode attention: the SIMT kernel takes every
/// layout; the tensor-core kernel takes int8/fp8 codes with rows of 64 or
/// 128 and spends far fewer instructions per byte on them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecodeKernel {
    Simt,
    TensorCore,
}

impl DecodeKernel {
    /// The faster kernel that takes `stored` rows of length `head_dim`.
    pub fn best(stored: Stored, head_dim: usize) -> Self {
        if Self::TensorCore.takes(stored, head_dim) { Self::TensorCore } else { Self::Simt }
    }

    /// Whether this kernel takes `stored` rows of length `head_dim`.
    pub fn takes(self, stored: Stored, head_dim: usize) -> bool {
        match self {
            // Rows of 512 only as codes (see `wide`: `takes` also bounds their group).
            Self::Simt => supports(head_dim) || (head_dim == 512 && matches!(stored, Stored::Int8 | Stored::Fp8)),
            Self::TensorCore => matches!(stored, Stored::Int8 | Stored::Fp8) && matches!(head_dim, 64 | 128),
        }
    }
}

/// Attention of one query position per head, `q`: (heads, 1, d) in bf16 or
/// f16, over cache positions `0..len`, on the faster kernel for the rows.
/// Returns (heads, 1, d) in `q`'s dtype.
pub fn decode_attention(q: &Tensor, rows: CacheRows, len: usize) -> Result<Tensor> {
    let kernel = DecodeKernel::best(rows.stored, q.dim(D::Minus1)?);
    decode_attention_with(kernel, q, rows, len)
}

/// [`decode_attention`] on a chosen kernel (for tests and benchmarks).
pub fn decode_attention_with(kernel: DecodeKernel, q: &Tensor, rows: CacheRows, len: usize) -> Result<Tensor> {
    let d = q.dim(D::Minus1)?;
    if !kernel.takes(rows.stored, d) {
        bail!("the {kernel:?} decode kernel does not take {:?} rows of {d}", rows.stored)
    }
    let q = q.contiguous()?;
    q.apply_op1_no_bwd(&DecodeAttention { kernel, rows, len })
}

struct DecodeAttention<'t> {
    kernel: DecodeKernel,
    rows: CacheRows<'t>,
    len: usize,
}

/// How one decode kernel is launched: its name, block size, shared memory,
/// splits per block and the multiple of keys a split takes.
struct Launch {
    name: String,
    threads: usize,
    smem_bytes: usize,
    splits_per_block: usize,
    keys_step: usize,
}

impl Launch {
    fn of(kernel: DecodeKernel, q_type: &str, stored: &str, d: usize, group: usize) -> Self {
        match kernel {
            // One block of d threads per split, d keys at a time. Shared:
            // queries and tile probabilities (group × d each), three softmax
            // values per head, one value scale per tile row; reused at the
            // end to sum the eight row groups of one head (8 × d).
            DecodeKernel::Simt => Self {
                name: format!("decode_partial_{q_type}_{stored}_d{d}_g{}", if group <= 4 { 4 } else { 8 }),
                threads: d,
                smem_bytes: (2 * group * d + 3 * group + d).max(8 * d) * 4,
                splits_per_block: 1,
                keys_step: d,
            },
            // Four warps, a split each, 16 keys at a time; shared: the queries.
            DecodeKernel::TensorCore => Self {
                name: format!("decode_mma_partial_{q_type}_{stored}_d{d}"),
                threads: 32 * MMA_WARPS,
                smem_bytes: group * d * 4,
                splits_per_block: MMA_WARPS,
                keys_step: 16,
            },
        }
    }
}

/// Warps per block of the tensor-core kernel (`MMA_WARPS` in decode_mma.cuh).
const MMA_WARPS: usize = 4;

impl CustomOp1 for DecodeAttention<'_> {
    fn name(&self) -> &'static str {
        "llmctl-decode-attention"
    }

    fn cpu_fwd(&self, _: &candle_core::CpuStorage, _: &Layout) -> Result<(candle_core::CpuStorage, Shape)> {
        bail!("fused decode attention runs on CUDA only")
    }

    fn cuda_fwd(&self, q: &CudaStorage, q_layout: &Layout) -> Result<(CudaStorage, Shape)> {
        let dev = q.device().clone();
        let (heads, _, d) = q_layout.shape().dims3()?;
        let CacheRows { k, v, scales, stored, rotated, first } = self.rows;
        let (kv_heads, capacity, _) = k.dims3()?;
        if first + self.len > capacity {
            bail!("decode attention over rows {first}..{} of {capacity}", first + self.len);
        }
        let group = heads / kv_heads;
        let (k_guard, k_layout) = k.storage_and_layout();
        let (v_guard, v_layout) = v.storage_and_layout();
        let (k, v) = (Arg::of(cuda_storage(&k_guard)?, k_layout)?, Arg::of(cuda_storage(&v_guard)?, v_layout)?);
        let scale_guards = scales.map(|(a, b)| (a.storage_and_layout(), b.storage_and_layout()));
        let q_arg = Arg::of(q, q_layout)?;
        let stored = match stored {
            Stored::Dense if k.type_name() == q_arg.type_name() => k.type_name(),
            Stored::Dense => bail!("fused decode attention reads dense rows in the queries' dtype"),
            Stored::Int8 => "int8",
            Stored::Fp8 => "fp8",
        };
        let launch = Launch::of(self.kernel, q_arg.type_name(), stored, d, group);
        let func = dev.get_or_load_custom_func(&launch.name, MODULE, PTX)?;
        // Splits of whole steps: as many as the GPU runs at once, so one
        // wave streams the whole cache, but none under MIN_SPLIT_KEYS keys.
        let wave = one_wave(&dev, &launch.name, &func, launch.threads, launch.smem_bytes)? * launch.splits_per_block;
        let splits = (wave / kv_heads).clamp(1, self.len.div_ceil(MIN_SPLIT_KEYS).max(1));
        let chunk = self.len.div_ceil(splits).next_multiple_of(launch.keys_step);
        let blocks = self.len.div_ceil(chunk).div_ceil(launch.splits_per_block);
        let splits = blocks * launch.splits_per_block;
        // SAFETY: the partial kernels write every (head, split) slot, empty splits included.
        let partial = unsafe { dev.alloc::<f32>(heads * splits * (d + 2))? };
        let cfg = LaunchConfig {
            grid_dim: (kv_heads as u32, blocks as u32, 1),
            block_dim: (launch.threads as u32, 1, 1),
            shared_mem_bytes: launch.smem_bytes as u32,
        };
        let (heads_i, kv_i, cap_i, d_i, len_i, chunk_i) =
            (heads as i32, kv_heads as i32, capacity as i32, d as i32, self.len as i32, chunk as i32);
        let softmax_scale = 1.0f32 / (d as f32).sqrt();
        // Dense rows have no scales: the rows' own slices stand in, never read.
        let (ks, vs) = match &scale_guards {
            Some(((ks, ks_layout), (vs, vs_layout))) => {
                (Arg::of(cuda_storage(ks)?, ks_layout)?, Arg::of(cuda_storage(vs)?, vs_layout)?)
            }
            None => (Arg::of(cuda_storage(&k_guard)?, k_layout)?, Arg::of(cuda_storage(&v_guard)?, v_layout)?),
        };
        // Each head's rows start `first` rows in: the kernels index head `h`'s row `t` as `h * capacity + t`.
        let scale_first = if scale_guards.is_some() { first } else { first * d };
        let (k, v, ks, vs) = (k.from(first * d), v.from(first * d), ks.from(scale_first), vs.from(scale_first));
        let mut builder = func.builder();
        q_arg.push(&mut builder);
        k.push(&mut builder);
        v.push(&mut builder);
        ks.push(&mut builder);
        vs.push(&mut builder);
        builder.arg(&partial);
        for x in [&heads_i, &kv_i, &cap_i, &len_i, &chunk_i] {
            builder.arg(x);
        }
        let rotate = i32::from(rotated);
        builder.arg(&softmax_scale).arg(&rotate);
        // SAFETY: the arguments match the partial kernels' parameters; every
        // row read lies below `len` <= capacity.
        unsafe { builder.launch(cfg) }.w()?;

        let splits_i = splits as i32;
        let cfg = LaunchConfig {
            grid_dim: (heads as u32, 1, 1),
            block_dim: (d as u32, 1, 1),
            shared_mem_bytes: ((d + splits + 32) * 4) as u32,
        };
        let slice = match q_arg {
            Arg::Bf16(_) => CudaStorageSlice::BF16(combine_into::<bf16>(
                &dev,
                "bf16",
                cfg,
                &partial,
                heads * d,
                [splits_i, d_i, rotate],
            )?),
            Arg::F16(_) => CudaStorageSlice::F16(combine_into::<f16>(
                &dev,
                "f16",
                cfg,
                &partial,
                heads * d,
                [splits_i, d_i, rotate],
            )?),
            _ => bail!("fused decode attention takes bf16 or f16 queries"),
        };
        Ok((CudaStorage { slice, device: dev }, Shape::from((heads, 1, d))))
    }
}

/// Blocks of `kernel` the GPU holds at once (SMs × resident blocks per SM),
/// asked of the driver once per kernel.
fn one_wave(dev: &CudaDevice, kernel: &str, func: &CudaFunction, threads: usize, smem: usize) -> Result<usize> {
    static WAVES: Mutex<Vec<(String, usize)>> = Mutex::new(Vec::new());
    let mut waves = WAVES.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((_, n)) = waves.iter().find(|(k, _)| k == kernel) {
        return Ok(*n);
    }
    let sms =
        dev.cuda_stream().context().attribute(CUdevice_attribute::CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT).w()?;
    let per_sm = func.occupancy_max_active_blocks_per_multiprocessor(threads as u32, smem, None).w()?;
    let n = (sms.max(1) as usize) * (per_sm.max(1) as usize);
    waves.push((kernel.to_string(), n));
    Ok(n)
}

/// Runs `decode_combine_{q_type}` over `partial` into a new buffer of `n` elements.
fn combine_into<T: DeviceRepr>(
    dev: &CudaDevice,
    q_type: &str,
    cfg: LaunchConfig,
    partial: &CudaSlice<f32>,
    n: usize,
    [splits, d, rotate]: [i32; 3],
) -> Result<CudaSlice<T>> {
    let func = dev.get_or_load_custom_func(&format!("decode_combine_{q_type}"), MODULE, PTX)?;
    // SAFETY: `decode_combine` writes every element.
    let out = unsafe { dev.alloc::<T>(n)? };
    let mut b = func.builder();
    b.arg(partial).arg(&out).arg(&splits).arg(&d).arg(&rotate);
    // SAFETY: the arguments match `decode_combine`'s parameters.
    unsafe { b.launch(cfg) }.w()?;
    Ok(out)
}

/// Rotates, scales and encodes `x` (kv_heads, T, d) into `codes` (kv_heads,
/// capacity, d) u8 and `scales` (kv_heads, capacity, 1) f32 at positions
/// `pos..pos+T`, in one kernel.
pub fn quantize_append(x: &Tensor, codes: &Tensor, scales: &Tensor, pos: usize, stored: Stored) -> Result<()> {
    let x = x.contiguous()?;
    if scales.dtype() != DType::F32 || codes.dtype() != DType::U8 {
        bail!("quantize-and-append writes u8 codes and f32 scales");
    }
    codes.inplace_op2(&x, &QuantizeAppend { scales, pos, stored })
}

struct QuantizeAppend<'t> {
    scales: &'t Tensor,
    pos: usize,
    stored: Stored,
}

impl InplaceOp2 for QuantizeAppend<'_> {
    fn name(&self) -> &'static str {
        "llmctl-quantize-append"
    }

    fn cpu_fwd(
        &self,
        _: &mut candle_core::CpuStorage,
        _: &Layout,
        _: &candle_core::CpuStorage,
        _: &Layout,
    ) -> Result<()> {
        bail!("fused quantize-and-append runs on CUDA only")
    }

    fn cuda_fwd(
        &self,
        codes: &mut CudaStorage,
        codes_layout: &Layout,
        x: &CudaStorage,
        x_layout: &Layout,
    ) -> Result<()> {
        let dev = x.device().clone();
        let (kv_heads, t, d) = x_layout.shape().dims3()?;
        let capacity = codes_layout.shape().dims3()?.1;
        if self.pos + t > capacity {
            bail!("quantize-and-append past the cache's capacity");
        }
        let (scales_guard, scales_layout) = self.scales.storage_and_layout();
        let scales = Arg::of(cuda_storage(&scales_guard)?, scales_layout)?;
        let x_arg = Arg::of(x, x_layout)?;
        let codec = match self.stored {
            Stored::Int8 => "int8",
            Stored::Fp8 => "fp8",
            Stored::Dense => bail!("dense rows are not quantized"),
        };
        let func =
            dev.get_or_load_custom_func(&format!("quantize_append_{}_{codec}", x_arg.type_name()), MODULE, PTX)?;
        let cfg = LaunchConfig {
            grid_dim: (kv_heads as u32, t as u32, 1),
            block_dim: (d as u32, 1, 1),
            shared_mem_bytes: ((d + 32) * 4) as u32,
        };
        let codes_slice = match &mut codes.slice {
            CudaStorageSlice::U8(s) => s,
            _ => bail!("quantize-and-append writes u8 codes"),
        };
        let (t_i, cap_i, d_i, pos_i) = (t as i32, capacity as i32, d as i32, self.pos as i32);
        let mut builder = func.builder();
        x_arg.push(&mut builder);
        builder.arg(codes_slice);
        // The scales are written through the cache's own tensor, which only
        // this cache holds.
        scales.push(&mut builder);
        builder.arg(&t_i).arg(&cap_i).arg(&d_i).arg(&pos_i);
        // SAFETY: the arguments match `quantize_append`'s parameters and
        // positions pos..pos+t lie within the capacity (checked above).
        unsafe { builder.launch(cfg) }.w()?;
        Ok(())
    }
}
