//! Quality of each KV-cache scheme against the unquantized cache on a text:
//! the text runs through the model once per scheme, in lockstep chunks, and
//! each scheme's next-token distributions are compared with the reference's
//! at every position (mean NLL, KL divergence, top-1 agreement).

use candle_core::{D, DType, Result, Tensor};
use serde::Serialize;

use crate::engine::model::Logits;
use crate::engine::{LoadedWeights, cache_layout, new_cache};
use crate::quant::KvScheme;

use super::BenchError;

/// Positions scored per forward pass: bounds the (positions × vocabulary)
/// log-probabilities held at once.
const CHUNK: usize = 256;

#[derive(Debug, Clone, Serialize)]
pub struct QualityResult {
    pub kv: String,
    /// Positions scored: every token of the text but the first.
    pub tokens: usize,
    pub mean_nll: f64,
    pub perplexity: f64,
    /// Mean NLL minus the unquantized cache's.
    pub delta_nll: f64,
    /// Mean KL(unquantized ‖ this scheme) of the next-token distributions, nats.
    pub mean_kl: f64,
    /// Share of positions whose most likely next token is the unquantized cache's.
    pub top1_agreement: f64,
}

/// Sums over the scored positions of one chunk.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Sums {
    pub nll: f64,
    pub kl: f64,
    pub agree: f64,
}

impl std::ops::AddAssign for Sums {
    fn add_assign(&mut self, o: Sums) {
        self.nll += o.nll;
        self.kl += o.kl;
        self.agree += o.agree;
    }
}

/// Scores `tokens` (at least two) with the unquantized cache and each of
/// `schemes`; the unquantized row comes first.
pub fn quality(
    weights: &LoadedWeights,
    schemes: &[KvScheme],
    tokens: &[u32],
) -> std::result::Result<Vec<QualityResult>, BenchError> {
    let runs: Vec<Option<KvScheme>> = std::iter::once(None).chain(schemes.iter().copied().map(Some)).collect();
    let mut caches =
        runs.iter().map(|&s| new_cache(weights, s, tokens.len())).collect::<std::result::Result<Vec<_>, _>>()?;
    let mut sums = vec![Sums::default(); runs.len()];
    let scored = tokens.len() - 1;
    let device = weights.model.device();
    for start in (0..scored).step_by(CHUNK) {
        let end = (start + CHUNK).min(tokens.len());
        let rows = (end - start).min(scored - start);
        let targets = Tensor::new(&tokens[start + 1..start + 1 + rows], device)?.unsqueeze(1)?;
        let mut reference = None;
        for (cache, sum) in caches.iter_mut().zip(&mut sums) {
            let logits = weights.model.forward(&tokens[start..end], cache, Logits::All)?.narrow(0, 0, rows)?;
            let logp = candle_nn::ops::log_softmax(&logits, D::Minus1)?;
            let reference = reference.get_or_insert_with(|| logp.clone());
            *sum += chunk_sums(reference, &logp, &targets)?;
        }
    }
    let reference_nll = sums[0].nll / scored as f64;
    Ok(runs
        .iter()
        .zip(&sums)
        .map(|(&scheme, s)| {
            let mean_nll = s.nll / scored as f64;
            QualityResult {
                kv: cache_layout(&weights.facts, weights.format, scheme).name().to_string(),
                tokens: scored,
                mean_nll,
                perplexity: mean_nll.exp(),
                delta_nll: mean_nll - reference_nll,
                mean_kl: s.kl / scored as f64,
                top1_agreement: s.agree / scored as f64,
            }
        })
        .collect())
}

/// NLL of `targets` (rows × 1, u32) under `logp`, KL(reference ‖ logp) and
/// top-1 agreements, summed over rows; both inputs are f32 log-probabilities
/// (rows × vocabulary).
pub fn chunk_sums(reference: &Tensor, logp: &Tensor, targets: &Tensor) -> Result<Sums> {
    let nll = logp.gather(targets, 1)?.sum_all()?.neg()?;
    let kl = (reference.exp()? * (reference - logp)?)?.sum_all()?;
    let agree = logp.argmax(D::Minus1)?.eq(&reference.argmax(D::Minus1)?)?.to_dtype(DType::F32)?.sum_all()?;
    let scalar = |t: Tensor| t.to_dtype(DType::F64)?.to_scalar::<f64>();
    Ok(Sums { nll: scalar(nll)?, kl: scalar(kl)?, agree: scalar(agree)? })
}

#[cfg(test)]
mod tests {
    use candle_core::Device;

    use super::*;

    /// f64 log-softmax of one row, written out.
    fn log_softmax(row: &[f32]) -> Vec<f64> {
        let max = row.iter().cloned().fold(f32::NEG_INFINITY, f32::max) as f64;
        let lse = row.iter().map(|&x| (x as f64 - max).exp()).sum::<f64>().ln() + max;
        row.iter().map(|&x| x as f64 - lse).collect()
    }

    fn argmax(row: &[f64]) -> usize {
        (0..row.len()).fold(0, |best, i| if row[i] > row[best] { i } else { best })
    }

    /// Sums computed element by element in f64, the definitions spelled out.
    fn naive(reference: &[Vec<f32>], other: &[Vec<f32>], targets: &[u32]) -> Sums {
        let mut sums = Sums::default();
        for ((r, o), &t) in reference.iter().zip(other).zip(targets) {
            let (lr, lo) = (log_softmax(r), log_softmax(o));
            sums.nll -= lo[t as usize];
            sums.kl += lr.iter().zip(&lo).map(|(a, b)| a.exp() * (a - b)).sum::<f64>();
            sums.agree += f64::from(u8::from(argmax(&lr) == argmax(&lo)));
        }
        sums
    }

    /// Metric sums within this of the f64 definitions (f32 arithmetic over 50 values).
    const SUMS_TOLERANCE: f64 = 1e-4;

    #[test]
    fn chunk_sums_match_the_definitions() {
        let mut state = 7u64;
        let mut next = || {
            state = state.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
            ((state >> 40) as f32 / (1u64 << 24) as f32) * 8.0 - 4.0
        };
        let (rows, vocab) = (6, 50);
        let reference: Vec<Vec<f32>> = (0..rows).map(|_| (0..vocab).map(|_| next()).collect()).collect();
        // Perturbed copies: small noise keeps most argmaxes, one row flips outright.
        let mut other: Vec<Vec<f32>> =
            reference.iter().map(|r| r.iter().map(|&x| x + 0.3 * next() / 4.0).collect()).collect();
        other[2] = reference[2].iter().map(|&x| -x).collect();
        let targets: Vec<u32> = (0..rows as u32).map(|i| (i * 7) % vocab as u32).collect();
        let tensor = |m: &[Vec<f32>]| {
            let t = Tensor::new(m.concat(), &Device::Cpu).unwrap().reshape((rows, vocab)).unwrap();
            candle_nn::ops::log_softmax(&t, D::Minus1).unwrap()
        };
        let target_tensor = Tensor::new(targets.as_slice(), &Device::Cpu).unwrap().unsqueeze(1).unwrap();
        let got = chunk_sums(&tensor(&reference), &tensor(&other), &target_tensor).unwrap();
        let want = naive(&reference, &other, &targets);
        assert!((got.nll - want.nll).abs() < SUMS_TOLERANCE, "nll {} vs {}", got.nll, want.nll);
        assert!((got.kl - want.kl).abs() < SUMS_TOLERANCE, "kl {} vs {}", got.kl, want.kl);
        assert_eq!(got.agree, want.agree);
        assert!(want.agree < rows as f64 && want.kl > 0.0, "the perturbation must show: {want:?}");
        let same = chunk_sums(&tensor(&reference), &tensor(&reference), &target_tensor).unwrap();
        assert!(same.kl.abs() < SUMS_TOLERANCE && same.agree == rows as f64);
    }
}
