//! Host memory readings of this process (Linux `/proc`); unknown elsewhere.

use serde::Serialize;

#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct HostMemory {
    /// Resident set size now, bytes.
    pub rss_bytes: Option<u64>,
    /// Peak resident set size, bytes.
    pub peak_rss_bytes: Option<u64>,
}

pub fn read() -> HostMemory {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().strip_suffix("kB"))
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(|kb| kb * 1024)
    };
    HostMemory { rss_bytes: field("VmRSS:"), peak_rss_bytes: field("VmHWM:") }
}

/// Memory the system could still give out (`MemAvailable`), bytes.
pub fn available() -> Option<u64> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let kb = info
        .lines()
        .find_map(|l| l.strip_prefix("MemAvailable:"))?
        .trim()
        .strip_suffix("kB")?
        .trim()
        .parse::<u64>()
        .ok()?;
    Some(kb * 1024)
}

/// Restarts the peak-RSS count (`VmHWM`) from the current RSS; false where
/// the kernel does not allow it.
pub fn reset_peak() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}
