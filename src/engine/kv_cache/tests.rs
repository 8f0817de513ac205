//! Cache behaviour and the quantizers checked against plain-Rust references.

use candle_core::{DType, Device, Tensor};

use super::quantized::{Codec, dequantize, quantize};
use super::*;
use crate::formats::ModelFacts;
use crate::kv_size::DenseDtype;

/// INT8 with a per-vector absmax scale errs by at most half a step.
const INT8_MAX_REL_ERR: f32 = 0.5 / 127.0;
/// E4M3 keeps 3 mantissa bits: relative rounding error ≤ 2^-4 for normal
/// values; values tiny next to the vector's max are subnormal after scaling,
/// where the error is at most half the subnormal step 2^-9 (in scaled units).
const FP8_MAX_REL_ERR: f32 = 1.0 / 16.0;
const FP8_SUBNORMAL_HALF_STEP: f32 = 1.0 / 1024.0;

fn shape() -> CacheShape {
    CacheShape { layers: 3, kv_heads: 2, head_dim: 8, capacity: 10 }
}

fn sample(kv_heads: usize, t: usize, d: usize, seed: u32) -> Vec<f32> {
    // Spread over five orders of magnitude, signs mixed, one all-zero vector.
    (0..kv_heads * t * d)
        .map(|i| {
            let x = ((i as u32).wrapping_mul(2_654_435_761).wrapping_add(seed) >> 8) as f32 / (1u32 << 24) as f32;
            if i < d { 0.0 } else { (x - 0.5) * 10f32.powi((i % 5) as i32 - 2) }
        })
        .collect()
}

fn round_trip<C: Codec>(values: &[f32], d: usize) -> Vec<f32> {
    let x = Tensor::from_vec(values.to_vec(), (1, values.len() / d, d), &Device::Cpu).unwrap();
    let (codes, scale) = quantize::<C>(&x).unwrap();
    dequantize::<C>(&codes, &scale).unwrap().flatten_all().unwrap().to_vec1().unwrap()
}

#[test]
fn int8_round_trip_is_within_half_a_step_of_each_vectors_scale() {
    let d = 8;
    let values = sample(1, 40, d, 1);
    let back = round_trip::<Int8>(&values, d);
    for (vec_in, vec_out) in values.chunks(d).zip(back.chunks(d)) {
        let absmax = vec_in.iter().fold(0f32, |m, x| m.max(x.abs()));
        for (a, b) in vec_in.iter().zip(vec_out) {
            assert!((a - b).abs() <= absmax * INT8_MAX_REL_ERR * 1.0001, "{a} -> {b} (absmax {absmax})");
        }
    }
    assert!(back[..d].iter().all(|&x| x == 0.0), "a zero vector stays zero");
}

#[test]
fn fp8_round_trip_keeps_relative_precision_where_a_plain_cast_would_not() {
    let d = 8;
    let values = sample(1, 40, d, 2);
    let back = round_trip::<Fp8E4M3>(&values, d);
    for (vec_in, vec_out) in values.chunks(d).zip(back.chunks(d)) {
        let absmax = vec_in.iter().fold(0f32, |m, x| m.max(x.abs()));
        for (a, b) in vec_in.iter().zip(vec_out) {
            let bound = a.abs() * FP8_MAX_REL_ERR + absmax / 448.0 * FP8_SUBNORMAL_HALF_STEP;
            assert!((a - b).abs() <= bound, "{a} -> {b} (absmax {absmax})");
        }
    }
    // Without the scale, 1e-3 is an E4M3 subnormal and loses most of its digits.
    let tiny = Tensor::new(&[1.2345e-3f32], &Device::Cpu).unwrap();
    let cast: Vec<f32> = tiny.to_dtype(DType::F8E4M3).unwrap().to_dtype(DType::F32).unwrap().to_vec1().unwrap();
    let scaled = round_trip::<Fp8E4M3>(&[1.2345e-3, 0.0], 2);
    assert!((cast[0] - 1.2345e-3).abs() > 10.0 * (scaled[0] - 1.2345e-3).abs());
}

#[test]
fn allocated_bytes_are_exactly_what_the_size_formula_promises() {
    let facts = ModelFacts {
        architecture: "llama".into(),
        parameters: 0,
        context_length: 10,
        hidden_size: 16,
        layers: 3,
        attention_heads: 2,
        kv_heads: 2,
        head_dim: 8,
        vocab_size: 1,
        weight_dtype: crate::formats::WeightDtype::Bf16,
        sliding_window: None,
        kv_layers: None,
        recurrent: None,
    };
    let dense = CacheLayout::Dense(DenseDtype::Bf16);
    for layout in [dense, CacheLayout::Quantized(KvScheme::Int8), CacheLayout::Quantized(KvScheme::Fp8)] {
        let cache = KvCache::new(layout, shape(), DType::BF16, &Device::Cpu).unwrap();
        assert_eq!(cache.allocated_bytes(), layout.bytes_per_token(&facts) * 10, "{}", layout.name());
    }
    // 3 layers x (K, V) x 2 heads: 96 one-byte values + 12 f32 scales, vs 192 bytes in bf16.
    assert_eq!(CacheLayout::Quantized(KvScheme::Int8).bytes_per_token(&facts), 96 + 48);
}

#[test]
fn append_writes_in_place_and_overflow_is_refused() {
    let dense = CacheLayout::Dense(DenseDtype::F32);
    let mut cache = KvCache::new(dense, shape(), DType::F32, &Device::Cpu).unwrap();
    let k = Tensor::from_vec(sample(2, 4, 8, 3), (2, 4, 8), &Device::Cpu).unwrap();
    let v = (&k * 2.0).unwrap();
    for layer in 0..3 {
        cache.append(layer, &k, &v).unwrap();
        let (all_k, all_v) = cache.read(layer, 0, 4, DType::F32).unwrap();
        assert_eq!(all_k.dims(), [2, 4, 8]);
        assert_eq!(all_v.to_vec3::<f32>().unwrap(), v.to_vec3::<f32>().unwrap());
    }
    cache.commit(4).unwrap();
    let k2 = k.narrow(1, 0, 2).unwrap();
    cache.append(0, &k2, &k2).unwrap();
    let (all_k, _) = cache.read(0, 0, 6, DType::F32).unwrap();
    assert_eq!(all_k.dims(), [2, 6, 8]);
    assert_eq!(all_k.narrow(1, 4, 2).unwrap().to_vec3::<f32>().unwrap(), k2.to_vec3::<f32>().unwrap());
    assert_eq!(all_k.narrow(1, 0, 4).unwrap().to_vec3::<f32>().unwrap(), k.to_vec3::<f32>().unwrap());
    cache.commit(2).unwrap();
    assert!(cache.check_room(4).is_ok());
    let err = cache.check_room(5).unwrap_err();
    assert_eq!(err.to_string(), "the context is full: 11 tokens do not fit in 10 (`--ctx-size`)");
    let five = Tensor::from_vec(sample(2, 5, 8, 4), (2, 5, 8), &Device::Cpu).unwrap();
    assert!(cache.append(0, &five, &five).unwrap_err().to_string().contains("the context is full"));
    cache.reset();
    assert!(cache.is_empty() && cache.check_room(10).is_ok());
}

#[test]
fn quantized_layers_store_rotated_vectors_that_rotate_back() {
    let mut cache = KvCache::new(CacheLayout::Quantized(KvScheme::Int8), shape(), DType::F32, &Device::Cpu).unwrap();
    let k = Tensor::from_vec(sample(2, 4, 8, 5), (2, 4, 8), &Device::Cpu).unwrap();
    cache.append(1, &k, &k).unwrap();
    let (stored_k, _) = cache.read(1, 0, 4, DType::F32).unwrap();
    let rotation = cache.rotation().expect("head_dim 8 is a power of two");
    // The rotation is orthonormal and its own inverse.
    let identity: Vec<Vec<f32>> = rotation.matmul(rotation).unwrap().to_vec2().unwrap();
    for (i, row) in identity.iter().enumerate() {
        for (j, x) in row.iter().enumerate() {
            assert!((x - if i == j { 1.0 } else { 0.0 }).abs() < 1e-6);
        }
    }
    let back = rotate(&stored_k, Some(rotation)).unwrap();
    let (want, got): (Vec<f32>, Vec<f32>) =
        (k.flatten_all().unwrap().to_vec1().unwrap(), back.flatten_all().unwrap().to_vec1().unwrap());
    let absmax = want.iter().fold(0f32, |m, x| m.max(x.abs()));
    for (a, b) in want.iter().zip(&got) {
        // Rotated vectors have at most sqrt(8) times the original absmax per element.
        assert!((a - b).abs() <= absmax * 8f32.sqrt() * INT8_MAX_REL_ERR * 8f32.sqrt(), "{a} vs {b}");
    }
    assert!(
        KvCache::new(CacheLayout::Dense(DenseDtype::F32), shape(), DType::F32, &Device::Cpu)
            .unwrap()
            .rotation()
            .is_none()
    );
}

#[test]
fn head_dims_that_are_not_powers_of_two_get_a_block_hadamard_rotation() {
    for n in [8usize, 80, 96, 6] {
        let h =
            quantized::hadamard(n, &Device::Cpu).unwrap().unwrap_or_else(|| panic!("{n} is even: it has a rotation"));
        let rows: Vec<Vec<f32>> = h.to_vec2().unwrap();
        let product: Vec<Vec<f32>> = h.matmul(&h).unwrap().to_vec2().unwrap();
        for i in 0..n {
            for j in 0..n {
                assert_eq!(rows[i][j], rows[j][i], "n {n}: symmetric");
                let want = if i == j { 1.0 } else { 0.0 };
                assert!((product[i][j] - want).abs() < 1e-5, "n {n}: H·H[{i}][{j}] = {}", product[i][j]);
            }
        }
        // Every entry of a block spreads one channel over all the block's channels.
        let block = 1usize << n.trailing_zeros();
        let nonzero = rows[0].iter().filter(|x| **x != 0.0).count();
        assert_eq!(nonzero, block, "n {n}");
    }
    assert!(quantized::hadamard(9, &Device::Cpu).unwrap().is_none());
}

/// The CPU decode kernel against the blockwise path over the same codes,
/// both in f32 (summed in other orders), relative to the largest output.
const CPU_DECODE_TOLERANCE: f32 = 1e-5;

#[test]
fn cpu_decode_kernel_matches_the_blockwise_path() {
    use crate::engine::attention::attend;
    let dev = Device::Cpu;
    // GQA groups of 3, 1 and 4; head dims 64 and 16; keys in several appends.
    for (heads, kv_heads, d, len) in [(9, 3, 64, 37), (4, 4, 16, 5), (8, 2, 64, 300)] {
        for scheme in [KvScheme::Int8, KvScheme::Fp8] {
            let shape = CacheShape { layers: 1, kv_heads, head_dim: d, capacity: len + 3 };
            let mut cache = KvCache::new(CacheLayout::Quantized(scheme), shape, DType::F32, &dev).unwrap();
            for (i, from) in (0..len).step_by(16).enumerate() {
                let t = (len - from).min(16);
                let kv = |seed| Tensor::from_vec(sample(kv_heads, t, d, seed), (kv_heads, t, d), &dev).unwrap();
                cache.append(0, &kv(2 * i as u32 + 10), &kv(2 * i as u32 + 11)).unwrap();
                cache.commit(t).unwrap();
            }
            let q = Tensor::from_vec(sample(heads, 1, d, 99), (heads, 1, d), &dev).unwrap().affine(30.0, 0.0).unwrap();
            let fused = cache.decode_attention(0, &q, len).unwrap().expect("the CPU kernel takes quantized caches");
            let rotation = cache.rotation().cloned();
            let blockwise = attend(&rotate(&q, rotation.as_ref()).unwrap(), len - 1, None, 64, |from, to| {
                cache.read(0, from, to, DType::F32)
            })
            .unwrap();
            let reference = rotate(&blockwise, rotation.as_ref()).unwrap();
            let diff = (&fused - &reference).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
            let scale = reference.abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
            assert!(
                diff <= CPU_DECODE_TOLERANCE * scale,
                "{scheme:?} heads {heads}/{kv_heads} d {d} len {len}: {diff} vs {scale}"
            );
        }
    }
}

#[test]
fn cpu_decode_kernel_refuses_shapes_it_cannot_read() {
    use super::cpu::{CodeRows, Decode, decode_attention};
    let dev = Device::Cpu;
    let codes = Tensor::zeros((2, 8, 16), DType::U8, &dev).unwrap();
    let scales = Tensor::ones((2, 8, 1), DType::F32, &dev).unwrap();
    let rows =
        CodeRows { k: &codes, v: &codes, k_scale: &scales, v_scale: &scales, decode: Decode::Offset(128.0), first: 0 };
    let q = |heads, d| Tensor::zeros((heads, 1, d), DType::F32, &dev).unwrap();
    assert!(decode_attention(&q(4, 16), rows, 8).is_ok());
    for (what, q, len) in
        [("3 heads over 2", q(3, 16), 8), ("rows of 8", q(4, 8), 8), ("9 of 8 positions", q(4, 16), 9)]
    {
        let err = decode_attention(&q, rows, len).unwrap_err().to_string();
        assert!(err.starts_with("decode attention:"), "{what}: {err}");
    }
    let shifted = CodeRows { first: 3, ..rows };
    assert!(decode_attention(&q(4, 16), shifted, 5).is_ok());
    let err = decode_attention(&q(4, 16), shifted, 6).unwrap_err().to_string();
    assert!(err.contains(", rows 3..9 of 8"), "{err}");
}

/// A sliding-window layer fed chunks and single tokens reads back, for every
/// position its next query may see, what a full cache reads; it holds only
/// its window (bytes exact), and refuses to truncate past rows it overwrote.
#[test]
fn a_sliding_window_layer_keeps_exactly_its_window() {
    let (window, d, kv_heads) = (4, 8, 2);
    let shape = CacheShape { layers: 2, kv_heads, head_dim: d, capacity: 20 };
    for layout in [
        CacheLayout::Dense(DenseDtype::F32),
        CacheLayout::Quantized(KvScheme::Int8),
        CacheLayout::Quantized(KvScheme::Fp8),
    ] {
        let dev = Device::Cpu;
        let mut full = KvCache::new(layout, shape, DType::F32, &dev).unwrap();
        let mut ring = KvCache::windowed(layout, shape, &[None, Some(window)], DType::F32, &dev).unwrap();
        let per_layer = full.allocated_bytes() / 2;
        assert_eq!(ring.allocated_bytes(), per_layer + per_layer * window as u64 / 20, "{layout:?}");
        // Chunks longer than the window, shorter, and single tokens, so writes wrap the slots.
        for (seed, t) in [(1, 6), (2, 1), (3, 3), (4, 1), (5, 1), (6, 5)] {
            let k = Tensor::from_vec(sample(kv_heads, t, d, seed), (kv_heads, t, d), &dev).unwrap();
            let v = Tensor::from_vec(sample(kv_heads, t, d, seed + 100), (kv_heads, t, d), &dev).unwrap();
            let start = full.len();
            for cache in [&mut full, &mut ring] {
                cache.append(0, &k, &v).unwrap();
                cache.append(1, &k, &v).unwrap();
            }
            // Before commit: the chunk's own rows and the window behind its first query.
            let from = (start + 1).saturating_sub(window);
            let want = full.read(1, from, start + t, DType::F32).unwrap();
            let got = ring.read(1, from, start + t, DType::F32).unwrap();
            for (a, b) in [(&want.0, &got.0), (&want.1, &got.1)] {
                let diff = (a - b).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
                assert_eq!(diff, 0.0, "{layout:?}: positions {from}..{}", start + t);
            }
            full.commit(t).unwrap();
            ring.commit(t).unwrap();
        }
        assert_eq!(ring.window(1), Some(window));
        let err = ring.read(1, 0, 2, DType::F32).unwrap_err();
        assert!(err.to_string().contains("position 0 has left layer 1's window of 4"), "{err}");
        let len = ring.len();
        assert!(!ring.truncate(len - 3), "rows the shorter conversation needs are overwritten");
        assert_eq!(ring.len(), len);
        assert!(ring.truncate(len - 1));
    }
}

/// Layer shapes for the paged tests: two full layers of different head
/// widths and a sliding-window layer (which keeps its own ring).
fn paged_shapes() -> Vec<LayerShape> {
    let full = |kv_heads, head_dim| LayerShape { kv_heads, head_dim, window: None, recurrent: None };
    vec![full(2, 16), LayerShape { window: Some(5), ..full(2, 16) }, full(1, 32)]
}

/// Writes the same keys and values, in chunks then one by one, into each cache.
fn fill_alike(caches: &mut [&mut KvCache], shapes: &[LayerShape], chunks: &[usize]) {
    let dev = Device::Cpu;
    for (i, &t) in chunks.iter().enumerate() {
        for (l, s) in shapes.iter().enumerate() {
            let kv =
                |seed| Tensor::from_vec(sample(s.kv_heads, t, s.head_dim, seed), (s.kv_heads, t, s.head_dim), &dev);
            let (k, v) = (kv(7 * i as u32 + l as u32).unwrap(), kv(7 * i as u32 + l as u32 + 100).unwrap());
            for cache in caches.iter_mut() {
                cache.append(l, &k, &v).unwrap();
            }
        }
        for cache in caches.iter_mut() {
            cache.commit(t).unwrap();
        }
    }
}

#[test]
fn a_paged_cache_in_scattered_blocks_reads_and_attends_as_a_contiguous_one() {
    let dev = Device::Cpu;
    let shapes = paged_shapes();
    let context = 200;
    for layout in [
        CacheLayout::Dense(DenseDtype::F32),
        CacheLayout::Quantized(KvScheme::Int8),
        CacheLayout::Quantized(KvScheme::Fp8),
    ] {
        let mut pool = BlockPool::new(layout, &shapes, context, 9, DType::F32, &dev).unwrap();
        let sequence = || pool.sequence().unwrap();
        let [mut a, mut b, mut c, mut d, mut e, mut g] = [(); 6].map(|_| sequence());
        // Blocks 0-1 to `a`, 2-4 to `b`, 5-6 to `e`, 7-8 to `g`; `a` and `e` leave: no 3
        // adjacent blocks are free, so `c` gets 0, 1 and 5. Once `g` leaves, `d` gets 6-8.
        for (cache, tokens) in [(&mut a, 2 * BLOCK_TOKENS), (&mut b, 2 * BLOCK_TOKENS + 1), (&mut e, 40), (&mut g, 64)]
        {
            pool.reserve(cache, tokens).unwrap();
        }
        assert_eq!(pool.free_blocks(), 0);
        pool.release(&mut a);
        pool.release(&mut e);
        assert_eq!(pool.free_blocks(), 4);
        let len = 2 * BLOCK_TOKENS + 9;
        pool.reserve(&mut c, len + 1).unwrap();
        pool.release(&mut g);
        pool.reserve(&mut d, len).unwrap();
        assert_eq!(pool.free_blocks(), 0);
        let plain = || KvCache::layered(layout, &shapes, context, DType::F32, &dev).unwrap();
        let (mut plain_c, mut plain_d) = (plain(), plain());
        fill_alike(&mut [&mut c, &mut plain_c], &shapes, &[BLOCK_TOKENS + 3, 1, BLOCK_TOKENS + 4, 1]);
        fill_alike(&mut [&mut d, &mut plain_d], &shapes, &[len]);
        // `b` writes its own rows after, in the blocks between `c`'s.
        fill_alike(&mut [&mut b], &shapes, &[2 * BLOCK_TOKENS + 1]);
        assert_eq!((c.len(), plain_c.len(), d.len()), (len, len, len));
        // `c` reads from a compact copy of its two runs of blocks, `d` in place from row 192.
        for (l, shape, c, plain) in
            (0..shapes.len()).flat_map(|l| [(l, &shapes[l], &c, &plain_c), (l, &shapes[l], &d, &plain_d)])
        {
            let from = if plain.window(l).is_some() { len - 5 } else { 0 };
            let (pk, pv) = c.read(l, from, len, DType::F32).unwrap();
            let (qk, qv) = plain.read(l, from, len, DType::F32).unwrap();
            let same = |x: &Tensor, y: &Tensor| {
                x.flatten_all().unwrap().to_vec1::<f32>().unwrap() == y.flatten_all().unwrap().to_vec1::<f32>().unwrap()
            };
            assert!(same(&pk, &qk) && same(&pv, &qv), "{layout:?} layer {l}: the rows read differ");
            let heads = 2 * shape.kv_heads;
            let q = Tensor::from_vec(sample(heads, 1, shape.head_dim, 5), (heads, 1, shape.head_dim), &dev).unwrap();
            let (fused, want) = (c.decode_attention(l, &q, len).unwrap(), plain.decode_attention(l, &q, len).unwrap());
            match (fused, want) {
                (Some(x), Some(y)) => assert!(same(&x, &y), "{layout:?} layer {l}: decode attention differs"),
                (None, None) => assert!(matches!(layout, CacheLayout::Dense(_)), "the CPU kernel takes codes"),
                other => panic!("{layout:?} layer {l}: fused {} vs {}", other.0.is_some(), other.1.is_some()),
            }
        }
        // `c` holds 3 blocks of the two full layers, and its own ring of 5 rows.
        let ring = KvCache::layered(layout, &shapes[1..2], context, DType::F32, &dev).unwrap().allocated_bytes();
        let blocks = 3 * BlockPool::block_bytes(layout, &shapes, context);
        assert_eq!(c.allocated_bytes(), blocks + ring, "{layout:?}");
    }
}

#[test]
fn a_pool_refuses_what_it_cannot_hold_and_a_sequence_its_reserved_room() {
    let dev = Device::Cpu;
    let shapes = paged_shapes();
    let layout = CacheLayout::Quantized(KvScheme::Int8);
    let mut pool = BlockPool::new(layout, &shapes, 1000, 4, DType::F32, &dev).unwrap();
    assert_eq!(pool.bytes(), 4 * BlockPool::block_bytes(layout, &shapes, 1000));
    // Two full layers: 2 heads of 16 and 1 of 32, keys and values, a byte a value and 4 a scale.
    assert_eq!(BlockPool::block_bytes(layout, &shapes, 1000), (2 * (2 * 20 + 36) * BLOCK_TOKENS) as u64);
    let mut a = pool.sequence().unwrap();
    let full = pool.reserve(&mut a, 4 * BLOCK_TOKENS + 1).unwrap_err();
    assert_eq!(full.to_string(), format!("the KV pool has 4 free blocks of {BLOCK_TOKENS} positions; 5 are needed"));
    assert_eq!(pool.free_blocks(), 4, "a refused reservation takes nothing");
    pool.reserve(&mut a, BLOCK_TOKENS).unwrap();
    let err = a.check_room(BLOCK_TOKENS + 1).unwrap_err();
    assert_eq!((err.needed, err.capacity), (BLOCK_TOKENS + 1, BLOCK_TOKENS), "room is what was reserved");
    let k = Tensor::zeros((2, BLOCK_TOKENS + 1, 16), DType::F32, &dev).unwrap();
    assert!(a.append(0, &k, &k).unwrap_err().to_string().starts_with("the context is full"));
    pool.release(&mut a);
    assert_eq!((pool.free_blocks(), a.len()), (4, 0));
    assert!(a.check_room(1).is_err(), "a released cache holds no room");
}
