//! The model's projections: candle's `Linear`, except for one activation
//! row in bf16 or f16 on CUDA (every decode step), which our matrix-vector
//! kernels take (`cuda.rs`), the gated MLP's two input projections and its
//! activation in one pass. GGUF weights stay in their quantized blocks and
//! go through candle's quantized products (llama.cpp's kernels on CUDA).

// One switch for the concern: the kernels in CUDA builds, a taker of nothing otherwise.
#[cfg_attr(not(feature = "cuda"), path = "none.rs")]
pub mod cuda;

use candle_core::quantized::QMatMul;
use candle_core::{Module, Result, Tensor};
use candle_nn::Linear;

/// One projection `x · Wᵀ (+ b)`: dense weights in the compute dtype, or a
/// GGUF file's quantized blocks, multiplied as they are stored.
pub enum Projection {
    Dense(Linear),
    Quantized { weight: QMatMul, bias: Option<Tensor> },
}

impl Projection {
    pub fn new(linear: Linear) -> Projection {
        Projection::Dense(linear)
    }

    pub fn quantized(weight: QMatMul, bias: Option<Tensor>) -> Projection {
        Projection::Quantized { weight, bias }
    }

    /// silu(x · gateᵀ) * (x · upᵀ), a SwiGLU MLP's first half.
    pub fn gated(x: &Tensor, gate: &Projection, up: &Projection) -> Result<Tensor> {
        if let (Projection::Dense(gate), Projection::Dense(up)) = (gate, up)
            && gate.bias().is_none()
            && up.bias().is_none()
            && cuda::takes(x, gate.weight())
            && cuda::takes(x, up.weight())
        {
            return cuda::gated_matvec(x, gate.weight(), up.weight());
        }
        candle_nn::ops::silu(&gate.forward(x)?)? * up.forward(x)?
    }
}

impl Module for Projection {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        match self {
            Projection::Dense(linear) if cuda::takes(x, linear.weight()) => {
                let y = cuda::matvec(x, linear.weight())?;
                match linear.bias() {
                    Some(bias) => y.broadcast_add(bias),
                    None => Ok(y),
                }
            }
            Projection::Dense(linear) => linear.forward(x),
            Projection::Quantized { weight, bias } => {
                // candle's quantized products take f32, f16 and bf16 rows.
                let y = weight.forward(&x.contiguous()?)?.to_dtype(x.dtype())?;
                match bias {
                    Some(bias) => y.broadcast_add(bias),
                    None => Ok(y),
                }
            }
        }
    }
}
