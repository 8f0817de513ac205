//! Times llmctl's one-row projection kernel against candle's matmul (cuBLAS)
//! on the Llama-3.1-8B shape's projections, and the host cost of a small
//! candle op, on a CUDA GPU:
//!
//!     cargo build --release --features cuda --example cuda_kernels_bench
//!     target/release/examples/cuda_kernels_bench
//!
//! Prints one line per case: microseconds per call and the weight bytes
//! read per second.

use std::time::Instant;

use candle_core::{DType, Device, Result, Tensor};
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
    println!("{:<28} {:>10} {:>10} {:>12} {:>12}", "projection (rows x cols)", "candle µs", "ours µs", "candle GB/s", "ours GB/s");
    for (name, rows, cols) in [("q/o_proj", 4096, 4096), ("k/v_proj", 1024, 4096), ("gate/up_proj", 14_336, 4096), ("down_proj", 4096, 14_336), ("lm_head", 128_256, 4096)] {
        let w = Tensor::randn(0f32, 0.02, (rows, cols), &dev)?.to_dtype(DType::BF16)?;
        let x = Tensor::randn(0f32, 1.0, (1, cols), &dev)?.to_dtype(DType::BF16)?;
        let wt = w.t()?;
        let candle = time(&dev, || x.matmul(&wt))?;
        let ours = time(&dev, || matvec(&x, &w))?;
        let bytes = (rows * cols * 2) as f64;
        println!("{:<28} {:>10.1} {:>10.1} {:>12.0} {:>12.0}", format!("{name} ({rows}x{cols})"), candle * 1e6, ours * 1e6, bytes / candle / 1e9, bytes / ours / 1e9);
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
    println!("{:<28} {:>10.1} {:>10.1} {:>12.0} {:>12.0}", "silu(gate)*up (2x14336x4096)", candle * 1e6, ours * 1e6, bytes / candle / 1e9, bytes / ours / 1e9);
    // Host cost of one small op (a 4096-element affine), queued back to back.
    let x = Tensor::zeros((1, 4096), DType::BF16, &dev)?;
    let op = time(&dev, || x.affine(1.0, 1.0))?;
    println!("small candle op (affine, 4096 bf16): {:.1} µs per op", op * 1e6);
    Ok(())
}
