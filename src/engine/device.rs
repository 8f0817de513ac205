//! Choosing the compute device. Asking for one the build or the machine
//! lacks is an error that says what is missing; it never falls back.

use std::fmt;
use std::str::FromStr;

use candle_core::Device;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceRequest {
    /// The GPU when the build has CUDA and a GPU is present, else the CPU.
    Auto,
    Cpu,
    Cuda(usize),
}

impl FromStr for DeviceRequest {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "auto" => Ok(DeviceRequest::Auto),
            "cpu" => Ok(DeviceRequest::Cpu),
            "cuda" => Ok(DeviceRequest::Cuda(0)),
            _ => text
                .strip_prefix("cuda:")
                .and_then(|n| n.parse().ok())
                .map(DeviceRequest::Cuda)
                .ok_or_else(|| format!("`{text}` is not a device: use `cpu`, `cuda`, `cuda:N` or `auto`")),
        }
    }
}

impl fmt::Display for DeviceRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeviceRequest::Auto => f.write_str("auto"),
            DeviceRequest::Cpu => f.write_str("cpu"),
            DeviceRequest::Cuda(n) => write!(f, "cuda:{n}"),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    #[error("`--device {0}` asks for CUDA, but this llmctl was built without CUDA support")]
    NoCudaInBuild(DeviceRequest),
    #[error("cannot open CUDA device {index}: {detail}")]
    CudaUnavailable { index: usize, detail: String },
}

impl DeviceError {
    pub fn hint(&self) -> String {
        match self {
            DeviceError::NoCudaInBuild(_) => {
                "build the CUDA binary with `cargo build --release --features cuda` (see README, \"CUDA\"), or use `--device cpu`".into()
            }
            DeviceError::CudaUnavailable { .. } => {
                "check `nvidia-smi`: an NVIDIA driver for CUDA 13 and a GPU are needed; `--device cpu` runs without one".into()
            }
        }
    }
}

/// The device and a name for it, e.g. `cpu` or `cuda:0`.
pub fn open(request: DeviceRequest) -> Result<(Device, String), DeviceError> {
    match request {
        DeviceRequest::Cpu => Ok((Device::Cpu, "cpu".into())),
        DeviceRequest::Cuda(index) => open_cuda(request, index),
        DeviceRequest::Auto if cfg!(feature = "cuda") => {
            open_cuda(request, 0).or_else(|_| Ok((Device::Cpu, "cpu".into())))
        }
        DeviceRequest::Auto => Ok((Device::Cpu, "cpu".into())),
    }
}

fn open_cuda(request: DeviceRequest, index: usize) -> Result<(Device, String), DeviceError> {
    if !cfg!(feature = "cuda") {
        return Err(DeviceError::NoCudaInBuild(request));
    }
    match Device::new_cuda(index) {
        Ok(device) => Ok((device, format!("cuda:{index}"))),
        Err(e) => Err(DeviceError::CudaUnavailable { index, detail: e.to_string() }),
    }
}
