//! Causal scaled-dot-product attention over the cache, GQA-aware: each KV
//! head is read once for its whole group of query heads (no repeat_kv copy).

// One switch for the concern: the softmax kernel in CUDA builds, a taker of nothing otherwise.
#[cfg_attr(not(feature = "cuda"), path = "none.rs")]
pub mod cuda;

use candle_core::{DType, Result, Tensor};

/// Keys per block: attention never holds more than one block of keys,
/// values and scores at a time, whatever the context length. At 4096 the
/// dequantized blocks of an 8B model's quantized cache cost 64 MiB more
/// peak VRAM than the dense cache's (H200, 4k context); 1024 keeps that small.
pub const KEY_BLOCK: usize = 1024;

/// Scores of hidden keys: finite, so that a row with no visible key in a
/// block (a window's start past it) gives weights that the next block's
/// correction `exp(m - m_new)` zeroes, where -inf would give NaN.
const HIDDEN: f32 = -1e30;

/// Causal attention for `q`: (heads, T, D) at positions `start..start+T`
/// over keys `0..start+T` (with a `window`, position p sees only the keys
/// `p+1-window..=p`), read block by block through `read(from, to)`
/// (each (kv_heads, to-from, D)) and combined with an online softmax, as
/// flash attention does. Returns (heads, T, D). Scores are f32 ([`blockwise`]),
/// except on CUDA in bf16/f16, where they and the probabilities stay in that
/// dtype ([`fused`]: tensor-core products around the softmax kernel of `cuda.rs`).
pub fn attend(
    q: &Tensor,
    start: usize,
    window: Option<usize>,
    block: usize,
    read: impl FnMut(usize, usize) -> Result<(Tensor, Tensor)>,
) -> Result<Tensor> {
    attend_with_sinks(q, start, window, None, block, read)
}

/// As [`attend`], with `sinks` (heads,) f32: one more logit per head in
/// every softmax, attached to no value (gpt-oss's attention sinks), so a
/// head can attend to nothing.
pub fn attend_with_sinks(
    q: &Tensor,
    start: usize,
    window: Option<usize>,
    sinks: Option<&Tensor>,
    block: usize,
    mut read: impl FnMut(usize, usize) -> Result<(Tensor, Tensor)>,
) -> Result<Tensor> {
    let (heads, t, d) = q.dims3()?;
    let total = start + t;
    let step = block.max(1);
    // No query of the chunk sees a key before the first one's window.
    let lowest = window.map_or(0, |w| (start + 1).saturating_sub(w));
    let first = read(lowest, (lowest + step).min(total))?;
    let kv_heads = first.0.dim(0)?;
    // Query heads h*group..(h+1)*group share KV head h: fold them into rows.
    let rows = q.reshape((kv_heads, heads / kv_heads * t, d))?;
    // The softmax kernel masks causally only, and knows no sinks.
    let on_kernels = window.is_none() && sinks.is_none() && cuda::takes(&rows, &first.0);
    let mut first = Some(first);
    let blocks = (lowest..total).step_by(step).map(move |from| -> Result<Block> {
        let to = (from + step).min(total);
        let (k, v) = match first.take() {
            Some(kv) => kv,
            None => read(from, to)?,
        };
        Ok(Block { from, to, k, v })
    });
    let shape = Shape { group: heads / kv_heads, t, d, kv_heads, start, window };
    // Each query row's sink logit: row g·t+i of KV head h is query head h·group+g.
    let sink_rows = sinks
        .map(|s| {
            s.to_dtype(DType::F32)?.reshape((kv_heads, heads / kv_heads, 1))?.repeat((1, 1, t))?.reshape((
                kv_heads,
                heads / kv_heads * t,
                1,
            ))
        })
        .transpose()?;
    let out = if on_kernels { fused(&rows, shape, blocks)? } else { blockwise(&rows, shape, sink_rows, blocks)? };
    out.to_dtype(q.dtype())?.reshape((heads, t, d))
}

/// One block of keys and values, `from..to`.
struct Block {
    from: usize,
    to: usize,
    k: Tensor,
    v: Tensor,
}

/// The sizes both paths need: query rows are (kv_heads, group·t, d).
#[derive(Clone, Copy)]
struct Shape {
    group: usize,
    t: usize,
    d: usize,
    kv_heads: usize,
    start: usize,
    window: Option<usize>,
}

/// Scores and softmax in f32 with tensor ops; returns the f32 output rows.
/// `sinks` (kv_heads, rows, 1): a logit per row that starts the softmax
/// with weight on no value.
fn blockwise(
    q: &Tensor,
    s: Shape,
    sinks: Option<Tensor>,
    blocks: impl Iterator<Item = Result<Block>>,
) -> Result<Tensor> {
    // Running max, sum, weighted values.
    let mut state: Option<(Tensor, Tensor, Tensor)> = match sinks {
        Some(m) => {
            let (kv, rows, _) = m.dims3()?;
            let (l, acc) = (m.ones_like()?, Tensor::zeros((kv, rows, s.d), DType::F32, m.device())?);
            Some((m, l, acc))
        }
        None => None,
    };
    for block in blocks {
        let Block { from, to, k, v } = block?;
        let mut scores = (q.matmul(&k.t()?)? * (1.0 / (s.d as f64).sqrt()))?.to_dtype(DType::F32)?;
        // The last query sees the latest keys; the first the earliest.
        let future = to > s.start + 1;
        let too_old = s.window.is_some_and(|w| from + w < s.start + s.t);
        if future || too_old {
            scores = apply_mask(&scores, s, from, to)?;
        }
        let block_max = scores.max_keepdim(2)?;
        let v = v.to_dtype(DType::F32)?;
        state = Some(match state {
            None => {
                let p = scores.broadcast_sub(&block_max)?.exp()?;
                (block_max, p.sum_keepdim(2)?, p.matmul(&v)?)
            }
            Some((m, l, acc)) => {
                let m_new = m.maximum(&block_max)?;
                let p = scores.broadcast_sub(&m_new)?.exp()?;
                let correction = (m - &m_new)?.exp()?;
                let l = ((l * &correction)? + p.sum_keepdim(2)?)?;
                let acc = (acc.broadcast_mul(&correction)? + p.matmul(&v)?)?;
                (m_new, l, acc)
            }
        });
    }
    let (_, l, acc) = state.expect("there is at least one key");
    acc.broadcast_div(&l)
}

/// CUDA in bf16/f16: scores and P·V on the tensor cores, the masked online
/// softmax in one kernel (`cuda.rs`), probabilities in the compute dtype;
/// returns the f32 output rows.
fn fused(q: &Tensor, s: Shape, blocks: impl Iterator<Item = Result<Block>>) -> Result<Tensor> {
    let mut fused: Option<(Tensor, Tensor)> = None; // kernel state (max, sum, correction), weighted values
    for block in blocks {
        let Block { from, k, v, .. } = block?;
        let scores = q.matmul(&k.t()?)?;
        let kernel_state = match &fused {
            Some((state, _)) => state.clone(),
            None => cuda::initial_state(s.kv_heads, s.group * s.t, q.device())?,
        };
        cuda::softmax_block(&scores, &kernel_state, (1.0 / (s.d as f64).sqrt()) as f32, s.start, from, s.t)?;
        let weighted = scores.matmul(&v.contiguous()?)?.to_dtype(DType::F32)?;
        let acc = match fused {
            None => weighted,
            Some((_, acc)) => (acc.broadcast_mul(&kernel_state.narrow(2, 2, 1)?)? + weighted)?,
        };
        fused = Some((kernel_state, acc));
    }
    let (kernel_state, acc) = fused.expect("there is at least one key");
    acc.broadcast_div(&kernel_state.narrow(2, 1, 1)?)
}

/// Row i (position start+i) may see keys 0..=start+i (with a window, only
/// the last `window` of them); this block holds keys from..to. The mask is
/// built on the scores' device (no host copy per block).
fn apply_mask(scores: &Tensor, s: Shape, from: usize, to: usize) -> Result<Tensor> {
    let (t, width, dev) = (s.t, to - from, scores.device());
    let rows = Tensor::arange(s.start as i64, (s.start + t) as i64, dev)?.reshape((t, 1))?;
    let cols = Tensor::arange(from as i64, to as i64, dev)?.reshape((1, width))?;
    let mut hidden = cols.broadcast_gt(&rows)?;
    if let Some(w) = s.window {
        // Key j is too old for position p when j <= p - w.
        let (lo, hi) = (s.start as i64 - w as i64, (s.start + t) as i64 - w as i64);
        let old = cols.broadcast_le(&Tensor::arange(lo, hi, dev)?.reshape((t, 1))?)?;
        hidden = hidden.maximum(&old)?;
    }
    let mask =
        hidden.where_cond(&Tensor::full(HIDDEN, (t, width), dev)?, &Tensor::zeros((t, width), DType::F32, dev)?)?;
    scores.reshape((s.kv_heads, s.group, t, width))?.broadcast_add(&mask)?.reshape((s.kv_heads, s.group * t, width))
}

/// Softmax-weighted values by explicit loops, for checking `attend`.
#[cfg(test)]
pub fn reference(q: &[Vec<Vec<f32>>], k: &[Vec<Vec<f32>>], v: &[Vec<Vec<f32>>], start: usize) -> Vec<Vec<Vec<f32>>> {
    windowed_reference(q, k, v, start, None)
}

/// As `reference`, position p seeing only keys `p+1-window..=p` with a window.
#[cfg(test)]
pub fn windowed_reference(
    q: &[Vec<Vec<f32>>],
    k: &[Vec<Vec<f32>>],
    v: &[Vec<Vec<f32>>],
    start: usize,
    window: Option<usize>,
) -> Vec<Vec<Vec<f32>>> {
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
                    let first = window.map_or(0, |w| visible.saturating_sub(w));
                    let s: Vec<f64> = (first..visible)
                        .map(|j| {
                            qi.iter().zip(&kh[j]).map(|(a, b)| (*a as f64) * (*b as f64)).sum::<f64>()
                                / (d as f64).sqrt()
                        })
                        .collect();
                    let max = s.iter().cloned().fold(f64::MIN, f64::max);
                    let w: Vec<f64> = s.iter().map(|x| (x - max).exp()).collect();
                    let z: f64 = w.iter().sum();
                    let weighted = |c: usize| (first..visible).map(|j| w[j - first] / z * vh[j][c] as f64).sum::<f64>();
                    (0..d).map(|c| weighted(c) as f32).collect()
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
        (0..n)
            .map(|_| {
                s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                ((s >> 40) as f32 / (1u64 << 24) as f32) - 0.5
            })
            .collect()
    }

    fn whole(q: &Tensor, k: &Tensor, v: &Tensor, start: usize, block: usize) -> Tensor {
        windowed(q, k, v, start, None, block)
    }

    fn windowed(q: &Tensor, k: &Tensor, v: &Tensor, start: usize, window: Option<usize>, block: usize) -> Tensor {
        attend(q, start, window, block, |from, to| Ok((k.narrow(1, from, to - from)?, v.narrow(1, from, to - from)?)))
            .unwrap()
    }

    /// Random q (heads, t, d) at positions start..start+t, and k, v (kv, start+t, d).
    fn inputs((heads, kv, t, start, d): (usize, usize, usize, usize, usize), seed: u64) -> (Tensor, Tensor, Tensor) {
        let (l, dev) = (start + t, &Device::Cpu);
        let q = Tensor::from_vec(rand(heads * t * d, seed), (heads, t, d), dev).unwrap();
        let k = Tensor::from_vec(rand(kv * l * d, seed + 1), (kv, l, d), dev).unwrap();
        let v = Tensor::from_vec(rand(kv * l * d, seed + 2), (kv, l, d), dev).unwrap();
        (q, k, v)
    }

    #[test]
    fn rotating_queries_keys_values_and_back_leaves_attention_unchanged() {
        let (start, d) = (2, 8);
        let (q, k, v) = inputs((4, 2, 3, start, d), 4);
        let h = crate::engine::kv_cache::quantized_hadamard(d, &Device::Cpu);
        let r = |x: &Tensor| x.broadcast_matmul(&h).unwrap();
        let plain: Vec<f32> = whole(&q, &k, &v, start, 64).flatten_all().unwrap().to_vec1().unwrap();
        let rotated: Vec<f32> = r(&whole(&r(&q), &r(&k), &r(&v), start, 64)).flatten_all().unwrap().to_vec1().unwrap();
        for (a, b) in plain.iter().zip(&rotated) {
            assert!((a - b).abs() < TOLERANCE, "{a} vs {b}");
        }
    }

    #[test]
    fn sliding_window_attention_matches_loops() {
        // 12 queries after 5 stored keys, windows shorter and longer than the chunk; blocks of
        // 2 leave rows with no visible key in a block (the window's start past it).
        let start = 5;
        let (q, k, v) = inputs((4, 2, 12, start, 8), 7);
        for window in [1, 3, 8, 40] {
            let want = windowed_reference(
                &q.to_vec3().unwrap(),
                &k.to_vec3().unwrap(),
                &v.to_vec3().unwrap(),
                start,
                Some(window),
            );
            for block in [64, 2, 5] {
                let got = windowed(&q, &k, &v, start, Some(window), block).to_vec3::<f32>().unwrap();
                for (a, b) in got.iter().flatten().flatten().zip(want.iter().flatten().flatten()) {
                    assert!((a - b).abs() < TOLERANCE, "window {window}, block {block}: {a} vs {b}");
                }
            }
        }
    }

    #[test]
    fn a_sink_is_a_logit_with_no_value() {
        // With sink logits, attention is the plain softmax's output times Σexp(s) / (Σexp(s) + exp(sink)).
        let start = 3;
        let (q, k, v) = inputs((4, 2, 2, start, 8), 11);
        let sinks = Tensor::new(&[0.5f32, -1.0, 2.0, 0.0], &Device::Cpu).unwrap();
        let read = |from: usize, to: usize| Ok((k.narrow(1, from, to - from)?, v.narrow(1, from, to - from)?));
        let got = attend_with_sinks(&q, start, None, Some(&sinks), 2, read).unwrap().to_vec3::<f32>().unwrap();
        let plain = whole(&q, &k, &v, start, 64).to_vec3::<f32>().unwrap();
        let (qv, kv) = (q.to_vec3::<f32>().unwrap(), k.to_vec3::<f32>().unwrap());
        for h in 0..4 {
            for i in 0..2 {
                let scores: Vec<f64> = (0..=start + i)
                    .map(|j| qv[h][i].iter().zip(&kv[h / 2][j]).map(|(a, b)| (a * b) as f64).sum::<f64>() / 8f64.sqrt())
                    .collect();
                let z: f64 = scores.iter().map(|s| s.exp()).sum();
                let keep = z / (z + (sinks.to_vec1::<f32>().unwrap()[h] as f64).exp());
                for c in 0..8 {
                    let want = plain[h][i][c] as f64 * keep;
                    assert!(
                        (got[h][i][c] as f64 - want).abs() < TOLERANCE as f64,
                        "head {h} row {i}: {} vs {want}",
                        got[h][i][c]
                    );
                }
            }
        }
    }

    #[test]
    fn gqa_causal_attention_matches_loops() {
        let start = 4;
        let (q, k, v) = inputs((6, 2, 3, start, 8), 1);
        let want = reference(&q.to_vec3().unwrap(), &k.to_vec3().unwrap(), &v.to_vec3().unwrap(), start);
        // One block, and blocks of 2 and 3 keys that split the causal boundary.
        for block in [64, 2, 3] {
            let got = whole(&q, &k, &v, start, block).to_vec3::<f32>().unwrap();
            for (a, b) in got.iter().flatten().flatten().zip(want.iter().flatten().flatten()) {
                assert!((a - b).abs() < TOLERANCE, "block {block}: {a} vs {b}");
            }
        }
    }
}
