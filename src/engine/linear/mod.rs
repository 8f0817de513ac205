//! The model's projections: candle's `Linear`, except for one activation
//! row in bf16 or f16 on CUDA (every decode step), which our matrix-vector
//! kernels take (`cuda.rs`), the gated MLP's two input projections and its
//! activation in one pass.

// One switch for the concern: the kernels in CUDA builds, a taker of nothing otherwise.
#[cfg_attr(not(feature = "cuda"), path = "none.rs")]
pub mod cuda;

use candle_core::{Module, Result, Tensor};
use candle_nn::Linear;

pub struct Projection(Linear);

impl Projection {
    pub fn new(linear: Linear) -> Projection {
        Projection(linear)
    }

    /// silu(x · gateᵀ) * (x · upᵀ), a SwiGLU MLP's first half.
    pub fn gated(x: &Tensor, gate: &Projection, up: &Projection) -> Result<Tensor> {
        if gate.0.bias().is_none()
            && up.0.bias().is_none()
            && cuda::takes(x, gate.0.weight())
            && cuda::takes(x, up.0.weight())
        {
            return cuda::gated_matvec(x, gate.0.weight(), up.0.weight());
        }
        candle_nn::ops::silu(&gate.forward(x)?)? * up.forward(x)?
    }
}

impl Module for Projection {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        if cuda::takes(x, self.0.weight()) {
            let y = cuda::matvec(x, self.0.weight())?;
            return match self.0.bias() {
                Some(bias) => y.broadcast_add(bias),
                None => Ok(y),
            };
        }
        self.0.forward(x)
    }
}
