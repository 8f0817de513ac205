//! Decode attention over quantized codes on the CPU, in one pass over each
//! KV head's codes for all the query heads of its group (threads take KV
//! heads). Codes decode into one row of f32 at a time (INT8 by arithmetic
//! the compiler vectorizes, FP8 through a 256-entry table), where the
//! blockwise path first dequantizes whole key blocks with tensor ops and
//! then runs attention over the f32 copies. On x86-64 CPUs with AVX2 and FMA
//! the same code is compiled a second time for them and chosen at run time.

use candle_core::{CpuStorage, DType, Layout, Result, Storage, Tensor, WithDType, bail};
use rayon::prelude::*;

/// One layer's codes and scales as the kernel reads them.
#[derive(Clone, Copy)]
pub struct CodeRows<'t> {
    /// (kv_heads, capacity, d) u8 codes.
    pub k: &'t Tensor,
    pub v: &'t Tensor,
    /// (kv_heads, capacity, 1) f32.
    pub k_scale: &'t Tensor,
    pub v_scale: &'t Tensor,
    pub decode: Decode<'t>,
    /// The row of the first position: the kernel reads rows `first..first + len` of each head.
    pub first: usize,
}

/// How a code becomes its value before the scale.
#[derive(Clone, Copy)]
pub enum Decode<'t> {
    /// code − the offset (INT8, stored offset by 128).
    Offset(f32),
    /// table[code].
    Table(&'t [f32; 256]),
}

/// Attention of `q` (heads, 1, d), already in the cache's basis, over
/// positions `0..len`; returns (heads, 1, d) f32 in that basis.
pub fn decode_attention(q: &Tensor, rows: CodeRows, len: usize) -> Result<Tensor> {
    let (heads, _, d) = q.dims3()?;
    let (kv_heads, capacity, row) = rows.k.dims3()?;
    let first = rows.first;
    if kv_heads == 0 || !heads.is_multiple_of(kv_heads) || first + len > capacity || row != d {
        bail!(
            "decode attention: {heads} query heads of {d} over {kv_heads} KV heads of {row}, rows {first}..{} of {capacity}",
            first + len
        );
    }
    let group = heads / kv_heads;
    let q: Vec<f32> = q.to_dtype(DType::F32)?.flatten_all()?.to_vec1()?;
    let (k_guard, k_layout) = rows.k.storage_and_layout();
    let (v_guard, v_layout) = rows.v.storage_and_layout();
    let (ks_guard, ks_layout) = rows.k_scale.storage_and_layout();
    let (vs_guard, vs_layout) = rows.v_scale.storage_and_layout();
    let k: &[u8] = cpu_slice(&k_guard, k_layout)?;
    let v: &[u8] = cpu_slice(&v_guard, v_layout)?;
    let ks: &[f32] = cpu_slice(&ks_guard, ks_layout)?;
    let vs: &[f32] = cpu_slice(&vs_guard, vs_layout)?;
    let scale = 1.0 / (d as f32).sqrt();
    let mut out = vec![0f32; heads * d];
    out.par_chunks_mut(group * d).enumerate().for_each(|(h, out)| {
        let codes = (h * capacity + first) * d..(h * capacity + first + len) * d;
        let scales = h * capacity + first..h * capacity + first + len;
        let head = Head {
            k: &k[codes.clone()],
            v: &v[codes],
            ks: &ks[scales.clone()],
            vs: &vs[scales],
            decode: rows.decode,
            d,
        };
        head.attend(&q[h * group * d..(h + 1) * group * d], scale, out);
    });
    Tensor::from_vec(out, (heads, 1, d), rows.k.device())
}

/// One KV head's first `len` codes and scales.
struct Head<'a> {
    k: &'a [u8],
    v: &'a [u8],
    ks: &'a [f32],
    vs: &'a [f32],
    decode: Decode<'a>,
    d: usize,
}

impl Head<'_> {
    /// Softmax(q·kᵀ · scale) · v for each of the group's queries (`q`:
    /// group × d) into `out` (group × d).
    fn attend(&self, q: &[f32], scale: f32, out: &mut [f32]) {
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
            // SAFETY: this CPU has AVX2 and FMA (checked just above).
            return unsafe { self.attend_avx2(q, scale, out) };
        }
        self.attend_any(q, scale, out)
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    fn attend_avx2(&self, q: &[f32], scale: f32, out: &mut [f32]) {
        self.attend_any(q, scale, out)
    }

    #[inline(always)]
    fn attend_any(&self, q: &[f32], scale: f32, out: &mut [f32]) {
        let (d, len) = (self.d, self.ks.len());
        let group = q.len() / d;
        let mut row = vec![0f32; d];
        // Scores, head by head: scores[g * len + t].
        let mut scores = vec![0f32; group * len];
        for t in 0..len {
            self.decode(self.k, t, &mut row);
            let s = self.ks[t] * scale;
            for (g, qg) in q.chunks_exact(d).enumerate() {
                scores[g * len + t] = dot(qg, &row) * s;
            }
        }
        let mut sums = vec![0f32; group];
        for (s, sum) in scores.chunks_exact_mut(len).zip(&mut sums) {
            let max = s.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            for x in s.iter_mut() {
                *x = (*x - max).exp();
                *sum += *x;
            }
        }
        out.fill(0.0);
        for t in 0..len {
            self.decode(self.v, t, &mut row);
            for (g, og) in out.chunks_exact_mut(d).enumerate() {
                let w = scores[g * len + t] * self.vs[t];
                og.iter_mut().zip(&row).for_each(|(o, x)| *o += w * x);
            }
        }
        for (og, sum) in out.chunks_exact_mut(d).zip(sums) {
            og.iter_mut().for_each(|o| *o /= sum);
        }
    }

    #[inline(always)]
    fn decode(&self, codes: &[u8], t: usize, row: &mut [f32]) {
        let codes = &codes[t * self.d..(t + 1) * self.d];
        match self.decode {
            Decode::Offset(offset) => row.iter_mut().zip(codes).for_each(|(r, &c)| *r = c as f32 - offset),
            Decode::Table(table) => row.iter_mut().zip(codes).for_each(|(r, &c)| *r = table[c as usize]),
        }
    }
}

/// a · b with eight running sums, which the compiler keeps in one vector
/// register (one running sum would serialize every addition).
#[inline(always)]
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let (a8, b8) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = a8.remainder().iter().zip(b8.remainder()).map(|(x, y)| x * y).sum();
    for (x, y) in a8.zip(b8) {
        let (x, y): (&[f32; 8], &[f32; 8]) = (x.try_into().expect("chunks of 8"), y.try_into().expect("chunks of 8"));
        for i in 0..8 {
            acc[i] += x[i] * y[i];
        }
    }
    acc.iter().sum::<f32>() + tail
}

/// The contiguous elements of a CPU tensor's storage.
fn cpu_slice<'a, T: WithDType>(storage: &'a Storage, layout: &Layout) -> Result<&'a [T]> {
    let Storage::Cpu(cpu) = storage else { bail!("the CPU decode kernel reads CPU tensors") };
    let all: &[T] = CpuStorage::as_slice(cpu)?;
    match layout.contiguous_offsets() {
        Some((from, to)) => Ok(&all[from..to]),
        None => bail!("the CPU decode kernel reads contiguous tensors"),
    }
}
