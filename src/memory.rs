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
        status.lines().find_map(|l| l.strip_prefix(name)).and_then(|v| v.trim().strip_suffix("kB")).and_then(|v| v.trim().parse::<u64>().ok()).map(|kb| kb * 1024)
    };
    HostMemory { rss_bytes: field("VmRSS:"), peak_rss_bytes: field("VmHWM:") }
}
