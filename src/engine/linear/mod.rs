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

use super::config::Activation;

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

/// Projections of one input: a single product over their stacked rows where
/// the weights allow it (a GGUF's quantized Q/K/V, gate/up), else one each.
pub enum Projections {
    Each(Vec<Projection>),
    /// The outputs are consecutive column ranges of these widths.
    Stacked {
        projection: Projection,
        widths: Vec<usize>,
    },
}

impl Projections {
    /// Each projection's output, in order.
    pub fn forward(&self, x: &Tensor) -> Result<Vec<Tensor>> {
        match self {
            Projections::Each(each) => each.iter().map(|p| p.forward(x)).collect(),
            Projections::Stacked { projection, widths } => {
                let y = projection.forward(x)?;
                let mut start = 0;
                widths
                    .iter()
                    .map(|&w| {
                        start += w;
                        y.narrow(1, start - w, w)
                    })
                    .collect()
            }
        }
    }

    /// act(x · gateᵀ) * (x · upᵀ) of a (gate, up) pair.
    pub fn gated(&self, x: &Tensor, activation: Activation) -> Result<Tensor> {
        match (self, activation) {
            (Projections::Each(each), Activation::Silu) if each.len() == 2 => Projection::gated(x, &each[0], &each[1]),
            _ => match self.forward(x)?.as_slice() {
                [gate, up] if activation == Activation::ClampedSwiglu => clamped_swiglu(gate, up),
                [gate, up] => activate(gate, activation)? * up,
                _ => candle_core::bail!("a gated projection needs a gate and an up projection"),
            },
        }
    }
}

/// gpt-oss's gate: `(clamp(up, ±LIMIT) + 1) · g · σ(ALPHA · g)`, `g = min(gate, LIMIT)`.
fn clamped_swiglu(gate: &Tensor, up: &Tensor) -> Result<Tensor> {
    const ALPHA: f64 = 1.702;
    const LIMIT: f64 = 7.0;
    let g = gate.minimum(LIMIT)?;
    let glu = (&g * candle_nn::ops::sigmoid(&(&g * ALPHA)?)?)?;
    (up.clamp(-LIMIT, LIMIT)? + 1.0)? * glu
}

pub fn activate(x: &Tensor, activation: Activation) -> Result<Tensor> {
    match activation {
        Activation::Silu => candle_nn::ops::silu(x),
        // candle's `gelu` is the tanh approximation (PyTorch's `gelu(approximate="tanh")`).
        Activation::GeluTanh => x.gelu(),
        Activation::ClampedSwiglu => {
            candle_core::bail!("the clamped SwiGLU takes the gate and up projections together")
        }
    }
}
