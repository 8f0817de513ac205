//! With the `cuda` feature, compiles llmctl's own CUDA kernels to PTX
//! (loaded at run time by the `cuda.rs` beside each: `src/engine/kv_cache/`,
//! `src/engine/linear/`, `src/engine/attention/`). nvcc comes from `NVCC` or the PATH, the GPU
//! family from `CUDA_COMPUTE_CAP` (default 90: H100/H200), as for candle's
//! own kernels. CPU builds need nothing.

#![allow(clippy::print_stdout, clippy::print_stderr, reason = "cargo reads its directives from stdout")]

use std::path::PathBuf;
use std::process::Command;

/// The header every kernel source includes.
const HEADER: &str = "src/engine/half.cuh";
/// Each kernel source and the PTX file it becomes in `OUT_DIR`.
const KERNELS: [(&str, &str); 3] = [
    ("src/engine/kv_cache/kernels.cu", "kv_cache.ptx"),
    ("src/engine/linear/matvec.cu", "matvec.ptx"),
    ("src/engine/attention/softmax.cu", "softmax.ptx"),
];

fn main() {
    for (source, _) in KERNELS {
        println!("cargo::rerun-if-changed={source}");
    }
    println!("cargo::rerun-if-changed={HEADER}");
    println!("cargo::rerun-if-changed=src/engine/kv_cache/decode_mma.cuh");
    println!("cargo::rerun-if-env-changed=CUDA_COMPUTE_CAP");
    println!("cargo::rerun-if-env-changed=NVCC");
    if std::env::var_os("CARGO_FEATURE_CUDA").is_none() {
        return;
    }
    let out_dir = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    let nvcc = std::env::var("NVCC").unwrap_or_else(|_| "nvcc".into());
    let cap = std::env::var("CUDA_COMPUTE_CAP").unwrap_or_else(|_| "90".into());
    for (source, ptx) in KERNELS {
        let status = Command::new(&nvcc)
            .args(["--ptx", "-O3", "-std=c++17", &format!("-arch=sm_{cap}"), "-o"])
            .arg(out_dir.join(ptx))
            .arg(source)
            .status()
            .unwrap_or_else(|e| panic!("cannot run `{nvcc}` to compile {source}: {e} (see README, \"CUDA\")"));
        assert!(status.success(), "`{nvcc}` failed on {source}");
    }
}
