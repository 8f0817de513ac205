//! The memory meters `bench` reads: NVML for a GPU, `/proc` for the host.

use super::MemoryMeter;
use crate::gpu::{VramProbe, VramWatch};
use crate::memory;

/// This process's VRAM on one GPU, as NVML sees it.
pub struct GpuMeter {
    pub probe: VramProbe,
    watch: Option<VramWatch>,
}

impl GpuMeter {
    pub fn new(probe: VramProbe) -> GpuMeter {
        GpuMeter { probe, watch: None }
    }
}

impl MemoryMeter for GpuMeter {
    fn start_peak(&mut self) {
        self.watch = Some(self.probe.watch());
    }

    fn finish_peak(&mut self) -> Option<u64> {
        self.watch.take().and_then(VramWatch::finish)
    }

    fn current(&self) -> Option<u64> {
        self.probe.current()
    }

    fn free_bytes(&self) -> Option<u64> {
        self.probe.free_bytes()
    }
}

/// This process's resident memory, and what the system has available.
pub struct HostMeter {
    peak_resettable: bool,
}

impl HostMeter {
    pub fn new() -> HostMeter {
        HostMeter { peak_resettable: false }
    }
}

impl Default for HostMeter {
    fn default() -> Self {
        HostMeter::new()
    }
}

impl MemoryMeter for HostMeter {
    fn start_peak(&mut self) {
        self.peak_resettable = memory::reset_peak();
    }

    fn finish_peak(&mut self) -> Option<u64> {
        // Without a reset, VmHWM is the whole run's peak: not this case's.
        if self.peak_resettable { memory::read().peak_rss_bytes } else { None }
    }

    fn current(&self) -> Option<u64> {
        memory::read().rss_bytes
    }

    fn free_bytes(&self) -> Option<u64> {
        memory::available()
    }
}
