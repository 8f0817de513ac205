//! Launchers for `matvec.cu` (compiled to PTX by `build.rs`): y = x · Wᵀ for
//! one row x, and a SwiGLU MLP's silu(x · Gᵀ) * (x · Uᵀ) in one pass; one
//! warp per output element. `tests/gpu.rs` checks both against f32 matmuls.

use candle_core::backend::BackendStorage;
use candle_core::cuda_backend::cudarc::driver::{CudaSlice, CudaView, DeviceRepr, LaunchConfig, PushKernelArg};
use candle_core::cuda_backend::{CudaDevice, CudaStorageSlice, WrapErr};
use candle_core::{CudaStorage, CustomOp2, CustomOp3, DType, Layout, Result, Shape, Tensor, bail};
use half::{bf16, f16};

const PTX: &str = include_str!(concat!(env!("OUT_DIR"), "/matvec.ptx"));
const MODULE: &str = "llmctl_matvec";
/// Output rows (warps) per block.
const ROWS_PER_BLOCK: usize = 4;

/// Whether the kernels take `x` (1, cols) against `w` (rows, cols): CUDA,
/// both bf16 or both f16, rows of W in whole 16-byte vectors.
pub fn takes(x: &Tensor, w: &Tensor) -> bool {
    let (Ok((1, cols)), Ok((_, w_cols))) = (x.dims2(), w.dims2()) else { return false };
    x.device().is_cuda()
        && matches!(x.dtype(), DType::BF16 | DType::F16)
        && w.dtype() == x.dtype()
        && cols == w_cols
        && cols.is_multiple_of(8)
        && x.is_contiguous()
        && w.is_contiguous()
}

/// x · Wᵀ for `x` (1, cols) and `w` (rows, cols): (1, rows).
pub fn matvec(x: &Tensor, w: &Tensor) -> Result<Tensor> {
    x.apply_op2_no_bwd(w, &MatVec)
}

/// silu(x · Gᵀ) * (x · Uᵀ) for `x` (1, cols) and `gate`, `up` (rows, cols):
/// (1, rows), each product rounded to x's dtype first, as separate ops would.
pub fn gated_matvec(x: &Tensor, gate: &Tensor, up: &Tensor) -> Result<Tensor> {
    x.apply_op3_no_bwd(gate, up, &GatedMatVec)
}

struct MatVec;
struct GatedMatVec;

impl CustomOp2 for MatVec {
    fn name(&self) -> &'static str {
        "llmctl-matvec"
    }

    fn cpu_fwd(
        &self,
        _: &candle_core::CpuStorage,
        _: &Layout,
        _: &candle_core::CpuStorage,
        _: &Layout,
    ) -> Result<(candle_core::CpuStorage, Shape)> {
        bail!("the matrix-vector kernels run on CUDA only")
    }

    fn cuda_fwd(
        &self,
        x: &CudaStorage,
        x_layout: &Layout,
        w: &CudaStorage,
        w_layout: &Layout,
    ) -> Result<(CudaStorage, Shape)> {
        run(x, x_layout, &[(w, w_layout)], "matvec")
    }
}

impl CustomOp3 for GatedMatVec {
    fn name(&self) -> &'static str {
        "llmctl-gated-matvec"
    }

    fn cpu_fwd(
        &self,
        _: &candle_core::CpuStorage,
        _: &Layout,
        _: &candle_core::CpuStorage,
        _: &Layout,
        _: &candle_core::CpuStorage,
        _: &Layout,
    ) -> Result<(candle_core::CpuStorage, Shape)> {
        bail!("the matrix-vector kernels run on CUDA only")
    }

    fn cuda_fwd(
        &self,
        x: &CudaStorage,
        x_layout: &Layout,
        g: &CudaStorage,
        g_layout: &Layout,
        u: &CudaStorage,
        u_layout: &Layout,
    ) -> Result<(CudaStorage, Shape)> {
        run(x, x_layout, &[(g, g_layout), (u, u_layout)], "gated_matvec")
    }
}

/// A tensor's elements from its start offset.
enum Operand<'a> {
    Bf16(CudaView<'a, bf16>),
    F16(CudaView<'a, f16>),
}

fn operand<'a>(storage: &'a CudaStorage, layout: &Layout) -> Result<Operand<'a>> {
    // 16-byte vectors need 16-byte aligned starts (8 elements of 2 bytes).
    let start = layout.start_offset();
    if !layout.is_contiguous() || !start.is_multiple_of(8) {
        bail!("the matrix-vector kernels take contiguous, 16-byte aligned tensors");
    }
    Ok(match &storage.slice {
        CudaStorageSlice::BF16(s) => Operand::Bf16(s.slice(start..)),
        CudaStorageSlice::F16(s) => Operand::F16(s.slice(start..)),
        _ => bail!("the matrix-vector kernels take bf16 or f16 tensors"),
    })
}

/// `{kernel}_{dtype}` over x (one row of `cols`) and weights of one shape (rows, cols).
fn run(
    x: &CudaStorage,
    x_layout: &Layout,
    weights: &[(&CudaStorage, &Layout)],
    kernel: &str,
) -> Result<(CudaStorage, Shape)> {
    let dev = x.device().clone();
    let (rows, cols) = weights[0].1.shape().dims2()?;
    if x_layout.shape().elem_count() != cols
        || weights.iter().any(|(_, l)| l.shape().dims2().ok() != Some((rows, cols)))
    {
        bail!("the matrix-vector kernels take one row of x and weights of one shape");
    }
    let ws = weights.iter().map(|(s, l)| operand(s, l)).collect::<Result<Vec<_>>>()?;
    let slice = match operand(x, x_layout)? {
        Operand::Bf16(x) => {
            let ws = ws
                .iter()
                .map(|w| if let Operand::Bf16(w) = w { Ok(w) } else { bail!("mixed dtypes") })
                .collect::<Result<Vec<_>>>()?;
            CudaStorageSlice::BF16(launch(&dev, &format!("{kernel}_bf16"), &x, &ws, rows, cols)?)
        }
        Operand::F16(x) => {
            let ws = ws
                .iter()
                .map(|w| if let Operand::F16(w) = w { Ok(w) } else { bail!("mixed dtypes") })
                .collect::<Result<Vec<_>>>()?;
            CudaStorageSlice::F16(launch(&dev, &format!("{kernel}_f16"), &x, &ws, rows, cols)?)
        }
    };
    Ok((CudaStorage { slice, device: dev }, Shape::from((1, rows))))
}

/// Runs `kernel(x, w..., y, rows, cols)` into a new buffer of `rows` elements.
fn launch<T: DeviceRepr>(
    dev: &CudaDevice,
    kernel: &str,
    x: &CudaView<T>,
    ws: &[&CudaView<T>],
    rows: usize,
    cols: usize,
) -> Result<CudaSlice<T>> {
    let func = dev.get_or_load_custom_func(kernel, MODULE, PTX)?;
    // SAFETY: the kernel writes every one of the `rows` outputs.
    let y = unsafe { dev.alloc::<T>(rows)? };
    let cfg = LaunchConfig {
        grid_dim: (rows.div_ceil(ROWS_PER_BLOCK) as u32, 1, 1),
        block_dim: (32 * ROWS_PER_BLOCK as u32, 1, 1),
        shared_mem_bytes: 0,
    };
    let (rows_i, cols_i) = (rows as i32, cols as i32);
    let mut b = func.builder();
    b.arg(x);
    for w in ws {
        b.arg(*w);
    }
    b.arg(&y).arg(&rows_i).arg(&cols_i);
    // SAFETY: the arguments match the kernel's parameters; x holds `cols`
    // elements and each w `rows × cols` (checked in `run`).
    unsafe { b.launch(cfg) }.w()?;
    Ok(y)
}
