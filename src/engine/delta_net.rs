//! Qwen3.5's linear attention, the gated delta rule (transformers'
//! `Qwen3_5GatedDeltaNet`): immutable weights; the layer's state (the last
//! inputs of its causal convolution and its per-head recurrent state, f32)
//! lives in the run's `KvCache`, which holds no KV rows for it.
//!
//! Per token, for each value head: the state decays by `exp(g)` and is
//! corrected toward the token's value along its key,
//! `S ← e^g·S + k ⊗ β(v − Sᵀk)`, and the output is `Sᵀq`. It is computed
//! token by token (the recurrent form): exact, and what a decode step needs.

use candle_core::{D, DType, Module, Result, Tensor};

use super::config::{LinearSpec, ModelConfig};
use super::kv_cache::{KvCache, RecurrentShape};
use super::linear::Projection;
use super::weights::Weights;

/// transformers' `l2norm` epsilon for queries and keys.
const L2_EPS: f64 = 1e-6;

pub struct GatedDeltaNet {
    /// Queries, keys and values, before the convolution.
    qkv: Projection,
    /// The output gate, per value channel.
    z: Projection,
    /// β (the correction's strength) and the decay's input, per value head.
    b: Projection,
    a: Projection,
    /// The depthwise convolution's taps (kernel, channels), f32.
    conv: Tensor,
    /// −exp(A_log) and the decay's bias, per value head, f32.
    neg_a: Tensor,
    dt_bias: Tensor,
    /// The gated RMSNorm of each head's output (weight as stored: no `1 + w`), f32.
    norm: Tensor,
    eps: f64,
    out: Projection,
    spec: LinearSpec,
}

impl GatedDeltaNet {
    pub fn load(w: &dyn Weights, p: &str, cfg: &ModelConfig, spec: LinearSpec) -> Result<GatedDeltaNet> {
        let (h, c) = (cfg.hidden_size, spec.conv_channels());
        let values = spec.value_heads * spec.value_dim;
        let f32 = |name: &str, shape: candle_core::Shape| w.tensor(&format!("{p}.{name}"), shape)?.to_dtype(DType::F32);
        let conv = f32("conv1d.weight", (c, 1, spec.conv_kernel).into())?.squeeze(1)?.t()?.contiguous()?;
        Ok(GatedDeltaNet {
            qkv: w.projection(&format!("{p}.in_proj_qkv"), h, c, false)?,
            z: w.projection(&format!("{p}.in_proj_z"), h, values, false)?,
            b: w.projection(&format!("{p}.in_proj_b"), h, spec.value_heads, false)?,
            a: w.projection(&format!("{p}.in_proj_a"), h, spec.value_heads, false)?,
            conv,
            neg_a: f32("A_log", spec.value_heads.into())?.exp()?.neg()?,
            dt_bias: f32("dt_bias", spec.value_heads.into())?,
            norm: f32("norm.weight", spec.value_dim.into())?,
            eps: cfg.rms_norm_eps,
            out: w.projection(&format!("{p}.out_proj"), values, h, false)?,
            spec,
        })
    }

    /// The state the cache keeps for a layer of this spec.
    pub fn state_shape(spec: &LinearSpec) -> RecurrentShape {
        RecurrentShape {
            conv_channels: spec.conv_channels(),
            conv_kernel: spec.conv_kernel,
            heads: spec.value_heads,
            key_dim: spec.key_dim,
            value_dim: spec.value_dim,
        }
    }

    /// `x` (T, hidden) at the cache's end; the layer's state advances past it.
    pub fn forward(&self, x: &Tensor, layer: usize, cache: &mut KvCache) -> Result<Tensor> {
        let (t, s) = (x.dim(0)?, &self.spec);
        let (tail, state) = match cache.recurrent_state(layer)? {
            Some(held) => held,
            None => (
                Tensor::zeros((s.conv_kernel - 1, s.conv_channels()), DType::F32, x.device())?,
                Tensor::zeros((s.value_heads, s.key_dim, s.value_dim), DType::F32, x.device())?,
            ),
        };
        let mixed = Tensor::cat(&[tail, self.qkv.forward(x)?.to_dtype(DType::F32)?], 0)?;
        let new_tail = mixed.narrow(0, t, s.conv_kernel - 1)?;
        let mixed = self.convolve(&mixed, t)?;
        let keys = s.key_heads * s.key_dim;
        let heads = |y: Tensor| self.per_value_head(&y, t);
        let q = (heads(l2_normed(&mixed.narrow(1, 0, keys)?.reshape((t, s.key_heads, s.key_dim))?)?)?
            * (1.0 / (s.key_dim as f64).sqrt()))?;
        let k = heads(l2_normed(&mixed.narrow(1, keys, keys)?.reshape((t, s.key_heads, s.key_dim))?)?)?;
        let v = mixed.narrow(1, 2 * keys, s.value_heads * s.value_dim)?.reshape((t, s.value_heads, s.value_dim))?;
        let beta = candle_nn::ops::sigmoid(&self.b.forward(x)?.to_dtype(DType::F32)?)?;
        let a = self.a.forward(x)?.to_dtype(DType::F32)?.broadcast_add(&self.dt_bias)?;
        let decay = softplus(&a)?.broadcast_mul(&self.neg_a)?.exp()?;
        let (y, state) = self.recur(state, &q, &k, &v, &beta, &decay)?;
        cache.set_recurrent_state(layer, &new_tail, &state)?;
        let z = self.z.forward(x)?.to_dtype(DType::F32)?.reshape((t, s.value_heads, s.value_dim))?;
        let y = self.gated_norm(&y, &z)?.reshape((t, s.value_heads * s.value_dim))?;
        self.out.forward(&y.to_dtype(x.dtype())?)
    }

    /// The causal depthwise convolution of `padded` (past inputs, then T new
    /// ones: (kernel - 1 + T, channels)), through SiLU: (T, channels).
    fn convolve(&self, padded: &Tensor, t: usize) -> Result<Tensor> {
        let mut y = padded.narrow(0, 0, t)?.broadcast_mul(&self.conv.get(0)?)?;
        for tap in 1..self.spec.conv_kernel {
            y = (y + padded.narrow(0, tap, t)?.broadcast_mul(&self.conv.get(tap)?)?)?;
        }
        candle_nn::ops::silu(&y)
    }

    /// (T, key_heads, d) as (T, value_heads, d): each key head serves consecutive value heads.
    fn per_value_head(&self, y: &Tensor, t: usize) -> Result<Tensor> {
        let s = &self.spec;
        let share = s.value_heads / s.key_heads;
        y.unsqueeze(2)?.broadcast_as((t, s.key_heads, share, s.key_dim))?.reshape((t, s.value_heads, s.key_dim))
    }

    /// The gated delta rule over T tokens from `state`: outputs (T, heads, value_dim) and the last state.
    fn recur(
        &self,
        mut state: Tensor,
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        beta: &Tensor,
        decay: &Tensor,
    ) -> Result<(Tensor, Tensor)> {
        let heads = self.spec.value_heads;
        let mut outputs = Vec::with_capacity(q.dim(0)?);
        for i in 0..q.dim(0)? {
            // (heads, 1, key_dim) rows and (heads, key_dim, 1) columns.
            let (q, k) = (q.get(i)?.unsqueeze(1)?.contiguous()?, k.get(i)?.unsqueeze(1)?.contiguous()?);
            state = state.broadcast_mul(&decay.get(i)?.reshape((heads, 1, 1))?)?;
            let remembered = k.matmul(&state)?;
            let delta = (v.get(i)?.unsqueeze(1)? - remembered)?.broadcast_mul(&beta.get(i)?.reshape((heads, 1, 1))?)?;
            state = (state + k.transpose(1, 2)?.contiguous()?.matmul(&delta)?)?;
            outputs.push(q.matmul(&state)?.squeeze(1)?);
        }
        Ok((Tensor::stack(&outputs, 0)?, state))
    }

    /// RMS-normed per head, scaled by the norm's weight and by SiLU of the gate.
    fn gated_norm(&self, y: &Tensor, z: &Tensor) -> Result<Tensor> {
        let rms = (y.sqr()?.mean_keepdim(D::Minus1)? + self.eps)?.sqrt()?;
        y.broadcast_div(&rms)?.broadcast_mul(&self.norm)?.mul(&candle_nn::ops::silu(z)?)
    }
}

/// `x / √(Σx² + ε)` over the last dimension, as transformers' `l2norm`.
fn l2_normed(x: &Tensor) -> Result<Tensor> {
    x.broadcast_div(&(x.sqr()?.sum_keepdim(D::Minus1)? + L2_EPS)?.sqrt()?)
}

/// `ln(1 + eˣ)`, written so that large `x` does not overflow.
fn softplus(x: &Tensor) -> Result<Tensor> {
    x.relu()? + (x.abs()?.neg()?.exp()? + 1.0)?.log()?
}
