//! Readings through NVML (CUDA builds): per-process VRAM, or the device's
//! used memory minus a baseline where the driver cannot attribute it.

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
