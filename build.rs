//! With the `cuda` feature, compiles the KV cache's CUDA kernels to PTX
//! (loaded at run time by `src/engine/kv_cache/cuda.rs`). nvcc comes from
//! `NVCC` or the PATH, the GPU family from `CUDA_COMPUTE_CAP` (default 90:
//! H100/H200), as for candle's own kernels. CPU builds need nothing.

use std::path::PathBuf;
use std::process::Command;

const KERNELS: &str = "src/engine/kv_cache/kernels.cu";

fn main() {
    println!("cargo::rerun-if-changed={KERNELS}");
    println!("cargo::rerun-if-env-changed=CUDA_COMPUTE_CAP");
    println!("cargo::rerun-if-env-changed=NVCC");
    if std::env::var_os("CARGO_FEATURE_CUDA").is_none() {
        return;
    }
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR")).join("kv_cache.ptx");
    let nvcc = std::env::var("NVCC").unwrap_or_else(|_| "nvcc".into());
    let cap = std::env::var("CUDA_COMPUTE_CAP").unwrap_or_else(|_| "90".into());
    let status = Command::new(&nvcc)
        .args(["--ptx", "-O3", "-std=c++17", &format!("-arch=sm_{cap}"), "-o"])
        .arg(&out)
        .arg(KERNELS)
        .status()
        .unwrap_or_else(|e| panic!("cannot run `{nvcc}` to compile {KERNELS}: {e} (see README, \"CUDA\")"));
    assert!(status.success(), "`{nvcc}` failed on {KERNELS}");
}
