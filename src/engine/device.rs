//! Choosing the compute device. Asking for one the build or the machine
//! lacks is an error that says what is missing; it never falls back.

use std::fmt;
use std::str::FromStr;

use candle_core::Device;

use crate::exit::{Diagnostic, ExitStatus};

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

impl DeviceRequest {
    /// The CUDA device index of a request or of an opened device's name
    /// (`cuda:1` → 1); `None` for the CPU and `auto`.
    pub fn cuda_index(name: &str) -> Option<usize> {
        match name.parse() {
            Ok(DeviceRequest::Cuda(index)) => Some(index),
            _ => None,
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
    #[error("cannot open CUDA device {index}: {}", problem.what())]
    CudaUnavailable { index: usize, problem: CudaProblem, detail: String },
}

/// Why the CUDA driver would not open a device, from its error code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CudaProblem {
    /// The driver runs but sees no GPU.
    NoGpu,
    /// The GPU index is beyond those present.
    NoSuchGpu,
    /// No usable driver: missing, a stub, or older than the CUDA 13 runtime.
    Driver,
    Other,
}

impl CudaProblem {
    /// Classifies the driver's error text (cudarc prints the `CUresult` name).
    pub fn from_driver_error(detail: &str) -> CudaProblem {
        const KINDS: [(&str, CudaProblem); 6] = [
            ("CUDA_ERROR_NO_DEVICE", CudaProblem::NoGpu),
            ("CUDA_ERROR_INVALID_DEVICE", CudaProblem::NoSuchGpu),
            ("CUDA_ERROR_NO_DRIVER", CudaProblem::Driver),
            ("CUDA_ERROR_STUB_LIBRARY", CudaProblem::Driver),
            ("CUDA_ERROR_INSUFFICIENT_DRIVER", CudaProblem::Driver),
            ("CUDA_ERROR_COMPAT_NOT_SUPPORTED_ON_DEVICE", CudaProblem::Driver),
        ];
        KINDS.iter().find(|(code, _)| detail.contains(code)).map_or(CudaProblem::Other, |(_, kind)| *kind)
    }

    fn what(self) -> &'static str {
        match self {
            CudaProblem::NoGpu => "the NVIDIA driver sees no GPU",
            CudaProblem::NoSuchGpu => "there is no GPU with that index",
            CudaProblem::Driver => "no usable NVIDIA driver (missing, or older than CUDA 13 needs)",
            CudaProblem::Other => "the CUDA driver refused",
        }
    }
}

impl Diagnostic for DeviceError {
    fn exit_status(&self) -> ExitStatus {
        ExitStatus::Usage
    }

    fn hint(&self) -> Option<String> {
        const CPU: &str = "`--device cpu` runs without a GPU";
        Some(match self {
            DeviceError::NoCudaInBuild(_) => {
                "build the CUDA binary with `cargo build --release --features cuda` (see README, \"CUDA\"), or use `--device cpu`".into()
            }
            DeviceError::CudaUnavailable { problem: CudaProblem::NoGpu, .. } => {
                format!("check `nvidia-smi` and that `CUDA_VISIBLE_DEVICES` does not hide the GPU; {CPU}")
            }
            DeviceError::CudaUnavailable { problem: CudaProblem::NoSuchGpu, .. } => {
                format!("`nvidia-smi -L` lists the GPUs; `cuda:0` is the first; {CPU}")
            }
            DeviceError::CudaUnavailable { problem: CudaProblem::Driver, .. } => {
                format!("install an NVIDIA driver for CUDA 13 (R580 or newer) and check `nvidia-smi`; {CPU}")
            }
            DeviceError::CudaUnavailable { detail, .. } => format!("the driver said: {detail}; {CPU}"),
        })
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
        Err(e) => {
            let detail = e.to_string();
            Err(DeviceError::CudaUnavailable { index, problem: CudaProblem::from_driver_error(&detail), detail })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The driver errors a CUDA build meets on machines without a usable GPU,
    /// as candle reports them (cudarc's `DriverError` Debug text).
    #[test]
    fn cuda_indexes_come_from_requests_and_device_names() {
        assert_eq!(DeviceRequest::cuda_index("cuda:1"), Some(1));
        assert_eq!(DeviceRequest::cuda_index("cuda"), Some(0));
        assert_eq!(DeviceRequest::cuda_index("cpu"), None);
        assert_eq!(DeviceRequest::cuda_index("auto"), None);
    }

    #[test]
    fn driver_errors_become_what_is_missing_and_how_to_get_it() {
        let cases = [
            (
                "DriverError(CUDA_ERROR_NO_DEVICE, \"no CUDA-capable device is detected\")",
                CudaProblem::NoGpu,
                "CUDA_VISIBLE_DEVICES",
            ),
            (
                "DriverError(CUDA_ERROR_INVALID_DEVICE, \"invalid device ordinal\")",
                CudaProblem::NoSuchGpu,
                "nvidia-smi -L",
            ),
            ("DriverError(CUDA_ERROR_STUB_LIBRARY, \"CUDA driver is a stub library\")", CudaProblem::Driver, "R580"),
            (
                "DriverError(CUDA_ERROR_INSUFFICIENT_DRIVER, \"CUDA driver version is insufficient\")",
                CudaProblem::Driver,
                "R580",
            ),
            (
                "DriverError(CUDA_ERROR_OUT_OF_MEMORY, \"out of memory\")",
                CudaProblem::Other,
                "CUDA_ERROR_OUT_OF_MEMORY",
            ),
        ];
        for (detail, problem, in_hint) in cases {
            assert_eq!(CudaProblem::from_driver_error(detail), problem, "{detail}");
            let error = DeviceError::CudaUnavailable { index: 1, problem, detail: detail.into() };
            assert!(error.to_string().starts_with("cannot open CUDA device 1: "), "{error}");
            let hint = error.hint().unwrap();
            assert!(hint.contains(in_hint) && hint.ends_with("`--device cpu` runs without a GPU"), "{hint}");
        }
    }
}
