//! GPU memory as NVML measures it, not as llmctl estimates it. NVML is
//! loaded at run time; without it (or without a GPU, or in a CPU build)
//! every reading is `None`, shown as "unknown", never an error.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use serde::Serialize;

/// How a reading was obtained.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ReadingKind {
    /// NVML's per-process figure for this process.
    Process,
    /// The device's used memory minus what was used before loading (when the
    /// driver cannot attribute memory to processes, e.g. in some containers).
    DeviceDelta,
}

/// VRAM of this process at the milestones of a run, bytes.
#[derive(Debug, Clone, Default, Serialize)]
pub struct VramReport {
    pub gpu: Option<String>,
    pub reading: Option<ReadingKind>,
    pub before_load: Option<u64>,
    pub after_weights: Option<u64>,
    pub after_cache: Option<u64>,
    pub peak: Option<u64>,
}

/// Samples one GPU's memory use by this process.
pub struct VramProbe {
    #[cfg(feature = "cuda")]
    inner: Option<Arc<nvml::Inner>>,
    pub report: VramReport,
}

impl VramProbe {
    /// A probe for CUDA device `index`; `None` (CPU runs) reads nothing.
    pub fn open(index: Option<usize>) -> VramProbe {
        #[cfg(feature = "cuda")]
        {
            let inner = index.and_then(|i| nvml::Inner::open(i as u32)).map(Arc::new);
            let report = VramReport { gpu: inner.as_ref().map(|n| n.name.clone()), ..VramReport::default() };
            let mut probe = VramProbe { inner, report };
            probe.report.before_load = probe.sample();
            probe.report.reading = probe.inner.as_ref().map(|n| n.kind);
            probe
        }
        #[cfg(not(feature = "cuda"))]
        {
            let _ = index;
            VramProbe { report: VramReport::default() }
        }
    }

    /// This process's bytes now, also folded into the peak.
    pub fn sample(&mut self) -> Option<u64> {
        let now = self.current();
        if let Some(bytes) = now {
            self.report.peak = Some(self.report.peak.map_or(bytes, |p| p.max(bytes)));
        }
        now
    }

    /// This process's bytes now, without touching the peak.
    pub fn current(&self) -> Option<u64> {
        #[cfg(feature = "cuda")]
        return self.inner.as_ref().and_then(|n| n.process_bytes());
        #[cfg(not(feature = "cuda"))]
        None
    }

    /// The device's free memory now, bytes (`None` without NVML).
    pub fn free_bytes(&self) -> Option<u64> {
        #[cfg(feature = "cuda")]
        return self.inner.as_ref().and_then(|n| n.free_bytes());
        #[cfg(not(feature = "cuda"))]
        None
    }

    /// Samples in the background until `VramWatch::finish`, so the peak also
    /// catches transient buffers freed before anyone could sample after a step.
    pub fn watch(&self) -> VramWatch {
        let stop = Arc::new(AtomicBool::new(false));
        #[cfg(feature = "cuda")]
        let handle = self.inner.clone().map(|inner| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut peak = inner.process_bytes();
                while !stop.load(Ordering::Relaxed) {
                    std::thread::sleep(WATCH_INTERVAL);
                    peak = peak.max(inner.process_bytes());
                }
                peak.max(inner.process_bytes())
            })
        });
        #[cfg(not(feature = "cuda"))]
        let handle = None;
        VramWatch { stop, handle }
    }
}

/// Between background samples; one NVML process query takes about a millisecond.
#[cfg(feature = "cuda")]
const WATCH_INTERVAL: std::time::Duration = std::time::Duration::from_millis(2);

/// A background sampler started by `VramProbe::watch`.
pub struct VramWatch {
    stop: Arc<AtomicBool>,
    handle: Option<std::thread::JoinHandle<Option<u64>>>,
}

impl VramWatch {
    /// Stops sampling; the highest reading seen, if any.
    pub fn finish(self) -> Option<u64> {
        self.stop.store(true, Ordering::Relaxed);
        self.handle.and_then(|h| h.join().ok().flatten())
    }
}

#[cfg(feature = "cuda")]
mod nvml {
    use nvml_wrapper::Nvml;
    use nvml_wrapper::enums::device::UsedGpuMemory;

    use super::ReadingKind;

    pub struct Inner {
        nvml: Nvml,
        index: u32,
        baseline: u64,
        pub kind: ReadingKind,
        pub name: String,
    }

    impl Inner {
        pub fn open(index: u32) -> Option<Inner> {
            let nvml = Nvml::init().ok()?;
            let device = nvml.device_by_index(index).ok()?;
            let name = device.name().unwrap_or_default();
            let baseline = device.memory_info().ok()?.used;
            let mut inner = Inner { nvml, index, baseline, kind: ReadingKind::Process, name };
            if inner.own_process_bytes().is_none() {
                inner.kind = ReadingKind::DeviceDelta;
            }
            Some(inner)
        }

        fn own_process_bytes(&self) -> Option<u64> {
            let device = self.nvml.device_by_index(self.index).ok()?;
            let pid = std::process::id();
            let processes = device.running_compute_processes().ok()?;
            processes.iter().find(|p| p.pid == pid).and_then(|p| match p.used_gpu_memory {
                UsedGpuMemory::Used(bytes) => Some(bytes),
                UsedGpuMemory::Unavailable => None,
            })
        }

        pub fn free_bytes(&self) -> Option<u64> {
            Some(self.nvml.device_by_index(self.index).ok()?.memory_info().ok()?.free)
        }

        pub fn process_bytes(&self) -> Option<u64> {
            match self.kind {
                ReadingKind::Process => self.own_process_bytes(),
                ReadingKind::DeviceDelta => {
                    let used = self.nvml.device_by_index(self.index).ok()?.memory_info().ok()?.used;
                    Some(used.saturating_sub(self.baseline))
                }
            }
        }
    }
}
