//! Times llmctl's one-row projection kernel against candle's matmul (cuBLAS)
//! on the Llama-3.1-8B shape's projections, the host cost of a small candle
//! op, and the decode attention kernels over one layer's cache of that
//! shape (SIMT and tensor-core kernels over int8/fp8 codes, SIMT over bf16
//! rows), on a CUDA GPU:
//!
//!     cargo build --release --features cuda --example cuda_kernels_bench
//!     target/release/examples/cuda_kernels_bench [--attention-only]
//!
//! Prints one line per case: microseconds per call and the bytes read per
//! second (weights, or cache rows and scales).

#![allow(clippy::print_stdout, clippy::print_stderr, reason = "a benchmark prints its table")]

use std::time::Instant;

use candle_core::{DType, Device, Result, Tensor};
use llmctl::engine::kv_cache::cuda::{CacheRows, DecodeKernel, Stored, decode_attention_with};
use llmctl::engine::linear::cuda::{gated_matvec, matvec};

const REPEATS: usize = 200;

fn time(dev: &Device, mut f: impl FnMut() -> Result<Tensor>) -> Result<f64> {
    for _ in 0..10 {
        f()?;
    }
    dev.synchronize()?;
    let started = Instant::now();
    for _ in 0..REPEATS {
        f()?;
    }
    dev.synchronize()?;
    Ok(started.elapsed().as_secs_f64() / REPEATS as f64)
}

fn main() -> Result<()> {
    let dev = Device::new_cuda(0)?;
    if std::env::args().any(|a| a == "--attention-only") {
        return decode_attention_cases(&dev);
    }
    println!(
        "{:<28} {:>10} {:>10} {:>12} {:>12}",
        "projection (rows x cols)", "candle µs", "ours µs", "candle GB/s", "ours GB/s"
    );
    for (name, rows, cols) in [
        ("q/o_proj", 4096, 4096),
        ("k/v_proj", 1024, 4096),
        ("gate/up_proj", 14_336, 4096),
        ("down_proj", 4096, 14_336),
        ("lm_head", 128_256, 4096),
    ] {
        let w = Tensor::randn(0f32, 0.02, (rows, cols), &dev)?.to_dtype(DType::BF16)?;
        let x = Tensor::randn(0f32, 1.0, (1, cols), &dev)?.to_dtype(DType::BF16)?;
        let wt = w.t()?;
        let candle = time(&dev, || x.matmul(&wt))?;
        let ours = time(&dev, || matvec(&x, &w))?;
        let bytes = (rows * cols * 2) as f64;
        println!(
            "{:<28} {:>10.1} {:>10.1} {:>12.0} {:>12.0}",
            format!("{name} ({rows}x{cols})"),
            candle * 1e6,
            ours * 1e6,
            bytes / candle / 1e9,
            bytes / ours / 1e9
        );
    }
    // The gated MLP half: candle's two products, silu and product vs one kernel.
    let (rows, cols) = (14_336, 4096);
    let gate = Tensor::randn(0f32, 0.02, (rows, cols), &dev)?.to_dtype(DType::BF16)?;
    let up = Tensor::randn(0f32, 0.02, (rows, cols), &dev)?.to_dtype(DType::BF16)?;
    let x = Tensor::randn(0f32, 1.0, (1, cols), &dev)?.to_dtype(DType::BF16)?;
    let (gt, ut) = (gate.t()?, up.t()?);
    let candle = time(&dev, || candle_nn::ops::silu(&x.matmul(&gt)?)? * x.matmul(&ut)?)?;
    let ours = time(&dev, || gated_matvec(&x, &gate, &up))?;
    let bytes = (2 * rows * cols * 2) as f64;
    println!(
        "{:<28} {:>10.1} {:>10.1} {:>12.0} {:>12.0}",
        "silu(gate)*up (2x14336x4096)",
        candle * 1e6,
        ours * 1e6,
        bytes / candle / 1e9,
        bytes / ours / 1e9
    );
    // Host cost of one small op (a 4096-element affine), queued back to back.
    let x = Tensor::zeros((1, 4096), DType::BF16, &dev)?;
    let op = time(&dev, || x.affine(1.0, 1.0))?;
    println!("small candle op (affine, 4096 bf16): {:.1} µs per op", op * 1e6);
    decode_attention_cases(&dev)
}

/// One layer of the 8B shape's cache (8 KV heads of 128, 32 query heads).
fn decode_attention_cases(dev: &Device) -> Result<()> {
    let (heads, kv_heads, d) = (32, 8, 128);
    println!("{:<36} {:>10} {:>12} {:>14}", "decode attention (1 layer)", "µs", "GB/s", "max |Δ| vs SIMT");
    for len in [8192, 32_768, 131_072] {
        let q = Tensor::randn(0f32, 1.0, (heads, 1, d), dev)?.to_dtype(DType::BF16)?;
        let dense = || Tensor::randn(0f32, 1.0, (kv_heads, len, d), dev)?.to_dtype(DType::BF16);
        let (k, v) = (dense()?, dense()?);
        let bytes = (2 * kv_heads * len * d * 2) as f64;
        let rows = CacheRows { k: &k, v: &v, scales: None, stored: Stored::Dense, rotated: false };
        let t = time(dev, || decode_attention_with(DecodeKernel::Simt, &q, rows, len))?;
        println!("{:<36} {:>10.1} {:>12.0}", format!("bf16 rows, Simt, {len} keys"), t * 1e6, bytes / t / 1e9);
        for (stored, name) in [(Stored::Int8, "int8"), (Stored::Fp8, "fp8")] {
            // Codes 0..=125 are finite in both formats (E4M3's NaN is 0x7f).
            let codes = || (Tensor::rand(0f32, 126.0, (kv_heads, len, d), dev)?.floor()?).to_dtype(DType::U8);
            let scale = || Tensor::rand(0.001f32, 0.02, (kv_heads, len, 1), dev);
            let (k, v, ks, vs) = (codes()?, codes()?, scale()?, scale()?);
            let bytes = (2 * kv_heads * len * (d + 4)) as f64;
            let rows = CacheRows { k: &k, v: &v, scales: Some((&ks, &vs)), stored, rotated: true };
            let run = |kernel| decode_attention_with(kernel, &q, rows, len);
            let simt = run(DecodeKernel::Simt)?.to_dtype(DType::F32)?;
            for kernel in [DecodeKernel::Simt, DecodeKernel::TensorCore] {
                let diff = (run(kernel)?.to_dtype(DType::F32)? - &simt)?.abs()?.max_all()?.to_scalar::<f32>()?;
                let t = time(dev, || run(kernel))?;
                println!(
                    "{:<36} {:>10.1} {:>12.0} {:>14.2e}",
                    format!("{name} codes, {kernel:?}, {len} keys"),
                    t * 1e6,
                    bytes / t / 1e9,
                    diff
                );
            }
        }
    }
    Ok(())
}
