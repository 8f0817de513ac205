//! Causal scaled-dot-product attention over the cache, GQA-aware: each KV
//! head is read once for its whole group of query heads (no repeat_kv copy).

use candle_core::{DType, Result, Tensor};

/// `q`: (heads, T, D) at positions `start..start+T`; `k`, `v`: (kv_heads, L, D)
/// with L = start + T. Returns (heads, T, D). Scores and softmax are in f32.
pub fn attend(q: &Tensor, k: &Tensor, v: &Tensor, start: usize) -> Result<Tensor> {
    let (heads, t, d) = q.dims3()?;
    let (kv_heads, l, _) = k.dims3()?;
    let group = heads / kv_heads;
    // Query heads h*group..(h+1)*group share KV head h: fold them into rows.
    let q = q.reshape((kv_heads, group * t, d))?;
    let scores = (q.matmul(&k.t()?)? * (1.0 / (d as f64).sqrt()))?.to_dtype(DType::F32)?;
    let scores = if t > 1 { apply_causal_mask(&scores, kv_heads, group, t, l, start)? } else { scores };
    let probs = candle_nn::ops::softmax_last_dim(&scores)?.to_dtype(v.dtype())?;
    probs.matmul(&v.contiguous()?)?.reshape((heads, t, d))
}

/// Row i (position start+i) may see keys 0..=start+i.
fn apply_causal_mask(scores: &Tensor, kv_heads: usize, group: usize, t: usize, l: usize, start: usize) -> Result<Tensor> {
    let mask: Vec<f32> =
        (0..t).flat_map(|i| (0..l).map(move |j| if j > start + i { f32::NEG_INFINITY } else { 0.0 })).collect();
    let mask = Tensor::from_vec(mask, (t, l), scores.device())?;
    scores.reshape((kv_heads, group, t, l))?.broadcast_add(&mask)?.reshape((kv_heads, group * t, l))
}

/// Softmax-weighted values by explicit loops, for checking `attend`.
#[cfg(test)]
pub fn reference(q: &[Vec<Vec<f32>>], k: &[Vec<Vec<f32>>], v: &[Vec<Vec<f32>>], start: usize) -> Vec<Vec<Vec<f32>>> {
    let group = q.len() / k.len();
    let d = q[0][0].len();
    q.iter()
        .enumerate()
        .map(|(h, rows)| {
            let (kh, vh) = (&k[h / group], &v[h / group]);
            rows.iter()
                .enumerate()
                .map(|(i, qi)| {
                    let visible = start + i + 1;
                    let s: Vec<f64> = (0..visible)
                        .map(|j| qi.iter().zip(&kh[j]).map(|(a, b)| (*a as f64) * (*b as f64)).sum::<f64>() / (d as f64).sqrt())
                        .collect();
                    let max = s.iter().cloned().fold(f64::MIN, f64::max);
                    let w: Vec<f64> = s.iter().map(|x| (x - max).exp()).collect();
                    let z: f64 = w.iter().sum();
                    (0..d).map(|c| (0..visible).map(|j| w[j] / z * vh[j][c] as f64).sum::<f64>() as f32).collect()
                })
                .collect()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use candle_core::Device;

    use super::*;

    /// f32 matmul vs f64 loops over a few dozen products.
    const TOLERANCE: f32 = 1e-5;

    fn rand(n: usize, seed: u64) -> Vec<f32> {
        let mut s = seed;
        (0..n).map(|_| { s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407); ((s >> 40) as f32 / (1u64 << 24) as f32) - 0.5 }).collect()
    }

    #[test]
    fn rotating_queries_keys_values_and_back_leaves_attention_unchanged() {
        let (heads, kv, t, start, d) = (4, 2, 3, 2, 8);
        let l = start + t;
        let dev = Device::Cpu;
        let q = Tensor::from_vec(rand(heads * t * d, 4), (heads, t, d), &dev).unwrap();
        let k = Tensor::from_vec(rand(kv * l * d, 5), (kv, l, d), &dev).unwrap();
        let v = Tensor::from_vec(rand(kv * l * d, 6), (kv, l, d), &dev).unwrap();
        let h = crate::engine::kv_cache::quantized_hadamard(d, &dev);
        let r = |x: &Tensor| x.broadcast_matmul(&h).unwrap();
        let plain: Vec<f32> = attend(&q, &k, &v, start).unwrap().flatten_all().unwrap().to_vec1().unwrap();
        let rotated: Vec<f32> = r(&attend(&r(&q), &r(&k), &r(&v), start).unwrap()).flatten_all().unwrap().to_vec1().unwrap();
        for (a, b) in plain.iter().zip(&rotated) {
            assert!((a - b).abs() < TOLERANCE, "{a} vs {b}");
        }
    }

    #[test]
    fn gqa_causal_attention_matches_loops() {
        let (heads, kv, t, start, d) = (6, 2, 3, 4, 8);
        let l = start + t;
        let dev = Device::Cpu;
        let q = Tensor::from_vec(rand(heads * t * d, 1), (heads, t, d), &dev).unwrap();
        let k = Tensor::from_vec(rand(kv * l * d, 2), (kv, l, d), &dev).unwrap();
        let v = Tensor::from_vec(rand(kv * l * d, 3), (kv, l, d), &dev).unwrap();
        let got = attend(&q, &k, &v, start).unwrap().to_vec3::<f32>().unwrap();
        let want = reference(&q.to_vec3().unwrap(), &k.to_vec3().unwrap(), &v.to_vec3().unwrap(), start);
        for (a, b) in got.iter().flatten().flatten().zip(want.iter().flatten().flatten()) {
            assert!((a - b).abs() < TOLERANCE, "{a} vs {b}");
        }
    }
}
