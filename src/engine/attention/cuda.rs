//! Launcher for `softmax.cu` (compiled to PTX by `build.rs`): the online
//! softmax of one key block of prefill attention, in place over bf16/f16
//! scores. `tests/gpu.rs` checks `attend`'s CUDA path, which uses it, against
//! the f32 tensor-op path.

use candle_core::backend::BackendStorage;
use candle_core::cuda_backend::cudarc::driver::{LaunchConfig, PushKernelArg};
use candle_core::cuda_backend::{CudaStorageSlice, WrapErr};
use candle_core::{CudaStorage, DType, Device, InplaceOp1, Layout, Result, Storage, Tensor, bail};

const PTX: &str = include_str!(concat!(env!("OUT_DIR"), "/softmax.ptx"));
const MODULE: &str = "llmctl_softmax";
/// Rows (warps) per block.
const ROWS_PER_BLOCK: usize = 8;

/// Whether the CUDA path takes queries `q` (kv_heads, rows, d) over keys `k`:
/// CUDA, both bf16 or both f16.
pub fn takes(q: &Tensor, k: &Tensor) -> bool {
    q.device().is_cuda() && matches!(q.dtype(), DType::BF16 | DType::F16) && k.dtype() == q.dtype()
}

/// The softmax state before any block: (kv_heads, rows, 3) f32 holding
/// running max −∞, running sum 0, correction 0.
pub fn initial_state(kv_heads: usize, rows: usize, device: &Device) -> Result<Tensor> {
    let max = Tensor::full(f32::NEG_INFINITY, (kv_heads, rows, 1), device)?;
    let rest = Tensor::zeros((kv_heads, rows, 2), DType::F32, device)?;
    Tensor::cat(&[&max, &rest], 2)
}

/// Turns `scores` (kv_heads, rows, width) = q·kᵀ of keys `from..from+width`
/// into probabilities under each row's running max (scaled by `scale`,
/// causal for query positions `start + row % t`), in place, and updates
/// `state` (see `initial_state`; its third column becomes this block's
/// correction of earlier blocks' weighted values).
pub fn softmax_block(scores: &Tensor, state: &Tensor, scale: f32, start: usize, from: usize, t: usize) -> Result<()> {
    let (kv_heads, rows, _) = scores.dims3()?;
    if state.dims3()? != (kv_heads, rows, 3) || state.dtype() != DType::F32 || !state.is_contiguous() {
        bail!("the softmax state is (kv_heads, rows, 3) f32");
    }
    scores.inplace_op1(&SoftmaxBlock { state, scale, start, from, t })
}

struct SoftmaxBlock<'t> {
    state: &'t Tensor,
    scale: f32,
    start: usize,
    from: usize,
    t: usize,
}

impl InplaceOp1 for SoftmaxBlock<'_> {
    fn name(&self) -> &'static str {
        "llmctl-softmax-block"
    }

    fn cpu_fwd(&self, _: &mut candle_core::CpuStorage, _: &Layout) -> Result<()> {
        bail!("the blockwise softmax kernel runs on CUDA only")
    }

    fn cuda_fwd(&self, scores: &mut CudaStorage, layout: &Layout) -> Result<()> {
        if layout.start_offset() != 0 || !layout.is_contiguous() {
            bail!("the blockwise softmax kernel takes whole contiguous scores");
        }
        let (kv_heads, rows, width) = layout.shape().dims3()?;
        let dev = scores.device().clone();
        let (state_guard, state_layout) = self.state.storage_and_layout();
        let state = match &*state_guard {
            Storage::Cuda(CudaStorage { slice: CudaStorageSlice::F32(s), .. }) if state_layout.start_offset() == 0 => s,
            _ => bail!("the softmax state is a whole f32 CUDA tensor"),
        };
        let all_rows = kv_heads * rows;
        let cfg = LaunchConfig {
            grid_dim: (all_rows.div_ceil(ROWS_PER_BLOCK) as u32, 1, 1),
            block_dim: (32 * ROWS_PER_BLOCK as u32, 1, 1),
            shared_mem_bytes: 0,
        };
        let ints = [all_rows as i32, width as i32];
        let (start, from, t) = (self.start as i32, self.from as i32, self.t as i32);
        macro_rules! launch {
            ($kernel:literal, $s:expr) => {{
                let func = dev.get_or_load_custom_func($kernel, MODULE, PTX)?;
                let mut b = func.builder();
                b.arg($s).arg(state).arg(&ints[0]).arg(&ints[1]).arg(&self.scale).arg(&start).arg(&from).arg(&t);
                // SAFETY: the arguments match the kernel's parameters; it
                // touches rows × width scores and rows × 3 state values, which
                // both tensors hold (checked in `softmax_block`). The state is
                // written through its own tensor, which only `attend` holds.
                unsafe { b.launch(cfg) }.w()?;
            }};
        }
        match &mut scores.slice {
            CudaStorageSlice::BF16(s) => launch!("softmax_block_bf16", s),
            CudaStorageSlice::F16(s) => launch!("softmax_block_f16", s),
            _ => bail!("the blockwise softmax kernel takes bf16 or f16 scores"),
        }
        Ok(())
    }
}
