//! Rotary position embeddings: cos/sin tables (with `linear` and Llama-3
//! frequency scaling) and their application in the half-split layout that
//! Hugging Face checkpoints use.

use candle_core::{DType, Device, Result, Tensor};

use super::config::{RopeScaling, RopeSpec};

pub struct Rope {
    /// (cos, sin) per position; LongRoPE's short-factor tables first, then its long ones.
    tables: Vec<(Tensor, Tensor)>,
    /// LongRoPE: a pass ending past this position uses the long tables.
    long_past: Option<usize>,
    /// Leading dimensions of each head that are rotated.
    rotary_dim: usize,
}

impl Rope {
    /// Tables for positions `0..positions`, in `dtype`; `factors` divide
    /// the frequencies one by one (a GGUF file's `rope_freqs`).
    pub fn new(
        spec: &RopeSpec,
        factors: Option<&[f32]>,
        positions: usize,
        dtype: DType,
        device: &Device,
    ) -> Result<Rope> {
        let dim = spec.rotary_dim;
        let mut inv_freq = inverse_frequencies(spec, dim);
        if let Some(factors) = factors {
            if factors.len() != inv_freq.len() {
                candle_core::bail!("`rope_freqs` has {} factors for {} frequencies", factors.len(), inv_freq.len());
            }
            inv_freq.iter_mut().zip(factors).for_each(|(f, d)| *f /= d);
        }
        let table = |inv_freq: Vec<f32>, scale: f64| -> Result<(Tensor, Tensor)> {
            let half = inv_freq.len();
            let inv_freq = Tensor::from_vec(inv_freq, (1, half), device)?;
            let t = Tensor::arange(0u32, positions as u32, device)?.to_dtype(DType::F32)?.reshape((positions, 1))?;
            let freqs = t.broadcast_mul(&inv_freq)?;
            Ok(((freqs.cos()? * scale)?.to_dtype(dtype)?, (freqs.sin()? * scale)?.to_dtype(dtype)?))
        };
        let Some(long) = &spec.longrope else {
            let scale =
                spec.scaling.as_ref().filter(|s| s.rope_type.as_deref() == Some("yarn")).map_or(1.0, yarn_scale);
            return Ok(Rope { tables: vec![table(inv_freq, scale)?], long_past: None, rotary_dim: dim });
        };
        // transformers: 1 / (factor · base^(2i/dim)), in f32.
        let divided = |by: &[f64]| inv_freq.iter().zip(by).map(|(f, d)| (*f as f64 / d) as f32).collect::<Vec<_>>();
        let tables = vec![
            table(divided(&long.short_factor), long.attention_factor)?,
            table(divided(&long.long_factor), long.attention_factor)?,
        ];
        Ok(Rope { tables, long_past: Some(long.original_context), rotary_dim: dim })
    }

    /// Rotates `x` of shape (1, heads, T, head_dim) for positions
    /// `start..start+T` of a forward pass that ends at position `end`
    /// (LongRoPE picks its tables by that end, as transformers does per call).
    pub fn apply(&self, x: &Tensor, start: usize, end: usize) -> Result<Tensor> {
        let t = x.dim(2)?;
        let long = self.long_past.is_some_and(|original| end > original);
        let (cos, sin) = &self.tables[usize::from(long)];
        let (cos, sin) = (cos.narrow(0, start, t)?, sin.narrow(0, start, t)?);
        let head_dim = x.dim(3)?;
        if self.rotary_dim == head_dim {
            return candle_nn::rotary_emb::rope(&x.contiguous()?, &cos, &sin);
        }
        // Partial rotary: the leading dimensions turn, the rest pass through.
        let turned = candle_nn::rotary_emb::rope(&x.narrow(3, 0, self.rotary_dim)?.contiguous()?, &cos, &sin)?;
        Tensor::cat(&[&turned, &x.narrow(3, self.rotary_dim, head_dim - self.rotary_dim)?], 3)
    }
}

/// Per-pair frequencies, computed in f64 and rounded once to f32.
/// `dim`: the rotated dimensions.
pub fn inverse_frequencies(spec: &RopeSpec, dim: usize) -> Vec<f32> {
    let base: Vec<f64> = (0..dim / 2).map(|i| 1.0 / spec.theta.powf(2.0 * i as f64 / dim as f64)).collect();
    let scaled = match spec.scaling.as_ref().map(|s| (s.rope_type.as_deref(), s)) {
        Some((Some("linear" | "proportional"), s)) => base.iter().map(|f| f / s.factor.unwrap_or(1.0)).collect(),
        Some((Some("llama3"), s)) => base.iter().map(|&f| llama3(f, s)).collect(),
        Some((Some("yarn"), s)) => yarn(&base, spec.theta, dim, s),
        _ => base,
    };
    // Proportional RoPE: the pairs past the rotated ones keep still.
    let turning = spec.rotated_pairs.unwrap_or(dim / 2);
    scaled.into_iter().enumerate().map(|(i, f)| if i < turning { f as f32 } else { 0.0 }).collect()
}

/// YaRN (transformers' `_compute_yarn_parameters`): frequencies that turn
/// fewer than `beta_slow` times over the original context are interpolated
/// (divided by `factor`), those turning more than `beta_fast` times kept, and
/// a linear ramp between. `factor` and the original context are filled in by
/// the config.
fn yarn(base: &[f64], theta: f64, dim: usize, s: &RopeScaling) -> Vec<f64> {
    let factor = s.factor.unwrap_or(1.0);
    let original = s.original_max_position_embeddings.unwrap_or(1.0);
    let (fast, slow) = (s.beta_fast.unwrap_or(32.0), s.beta_slow.unwrap_or(1.0));
    let correction =
        |rotations: f64| dim as f64 * (original / (rotations * 2.0 * std::f64::consts::PI)).ln() / (2.0 * theta.ln());
    let (mut low, mut high) = (correction(fast), correction(slow));
    if s.truncate.unwrap_or(true) {
        (low, high) = (low.floor(), high.ceil());
    }
    let (low, mut high) = (low.max(0.0), high.min(dim as f64 - 1.0));
    if low == high {
        high += 0.001;
    }
    base.iter()
        .enumerate()
        .map(|(i, &f)| {
            let ramp = ((i as f64 - low) / (high - low)).clamp(0.0, 1.0);
            let extrapolated = 1.0 - ramp;
            f / factor * (1.0 - extrapolated) + f * extrapolated
        })
        .collect()
}

/// YaRN's scale of cos and sin: `attention_factor`, else 0.1·ln(factor)+1
/// (with `mscale`/`mscale_all_dim`, their ratio).
fn yarn_scale(s: &RopeScaling) -> f64 {
    let factor = s.factor.unwrap_or(1.0);
    let mscale = |m: f64| if factor <= 1.0 { 1.0 } else { 0.1 * m * factor.ln() + 1.0 };
    s.attention_factor.unwrap_or(match (s.mscale, s.mscale_all_dim) {
        (Some(m), Some(all)) if m != 0.0 && all != 0.0 => mscale(m) / mscale(all),
        _ => mscale(1.0),
    })
}

/// Llama 3.1's scaling: long wavelengths are divided by `factor`, short ones
/// kept, and the band between interpolated smoothly.
fn llama3(freq: f64, s: &RopeScaling) -> f64 {
    let factor = s.factor.unwrap_or(8.0);
    let low = s.low_freq_factor.unwrap_or(1.0);
    let high = s.high_freq_factor.unwrap_or(4.0);
    let old_context = s.original_max_position_embeddings.unwrap_or(8192.0);
    let wavelen = 2.0 * std::f64::consts::PI / freq;
    if wavelen < old_context / high {
        freq
    } else if wavelen > old_context / low {
        freq / factor
    } else {
        let smooth = (old_context / wavelen - low) / (high - low);
        (1.0 - smooth) * freq / factor + smooth * freq
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::config::ModelConfig;

    fn config(scaling: &str) -> ModelConfig {
        let json = format!(
            r#"{{"model_type":"llama","hidden_size":256,"intermediate_size":8,"num_hidden_layers":1,
            "num_attention_heads":2,"max_position_embeddings":8,"vocab_size":8,"rope_theta":500000.0{scaling}}}"#
        );
        ModelConfig::parse(json.as_bytes()).unwrap()
    }

    #[test]
    fn llama3_scaling_matches_transformers() {
        // The three regimes of Llama 3.1's rule for head_dim 128, theta 5e5,
        // factor 8, low 1, high 4, original context 8192.
        let cfg = config(
            r#","rope_scaling":{"rope_type":"llama3","factor":8.0,"low_freq_factor":1.0,"high_freq_factor":4.0,"original_max_position_embeddings":8192}"#,
        );
        let f = inverse_frequencies(&cfg.block.ropes[0], cfg.head_dim);
        let plain = inverse_frequencies(&config("").block.ropes[0], 128);
        assert_eq!(f[0], plain[0], "short wavelengths are kept");
        assert!((f[63] - plain[63] / 8.0).abs() <= plain[63] * 1e-6, "long wavelengths are divided by factor");
        // A band frequency lies strictly between the two.
        let mid = (0..64).find(|&i| f[i] != plain[i] && (f[i] - plain[i] / 8.0).abs() > plain[i] * 1e-6).unwrap();
        assert!(f[mid] < plain[mid] && f[mid] > plain[mid] / 8.0);
    }
}
