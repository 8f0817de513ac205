//! GPU memory as NVML measures it, not as llmctl estimates it. NVML is
//! loaded at run time; without it (or without a GPU, or in a CPU build)
//! every reading is `None`, shown as "unknown", never an error.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use serde::Serialize;

// One switch for the whole concern: NVML in CUDA builds, a reader of nothing otherwise.
#[cfg_attr(not(feature = "cuda"), path = "none.rs")]
mod nvml;

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
    inner: Option<Arc<nvml::Inner>>,
    pub report: VramReport,
}

impl VramProbe {
    /// A probe for CUDA device `index`; `None` (CPU runs) reads nothing.
    pub fn open(index: Option<usize>) -> VramProbe {
        let inner = index.and_then(|i| nvml::Inner::open(i as u32)).map(Arc::new);
        let report = VramReport { gpu: inner.as_ref().map(|n| n.name.clone()), ..VramReport::default() };
        let mut probe = VramProbe { inner, report };
        probe.report.before_load = probe.sample();
        probe.report.reading = probe.inner.as_ref().map(|n| n.kind);
        probe
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
        self.inner.as_ref().and_then(|n| n.process_bytes())
    }

    /// The device's free memory now, bytes (`None` without NVML).
    pub fn free_bytes(&self) -> Option<u64> {
        self.inner.as_ref().and_then(|n| n.free_bytes())
    }

    /// Samples in the background until `VramWatch::finish`, so the peak also
    /// catches transient buffers freed before anyone could sample after a step.
    pub fn watch(&self) -> VramWatch {
        let stop = Arc::new(AtomicBool::new(false));
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
        VramWatch { stop, handle }
    }
}

/// Between background samples; one NVML process query takes about a millisecond.
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
