//! The NVML seam of a CPU build: there is never a device to read, so
//! [`Inner::open`] answers `None` and nothing else is ever called.

use super::ReadingKind;

pub struct Inner {
    pub kind: ReadingKind,
    pub name: String,
}

impl Inner {
    pub fn open(_index: u32) -> Option<Inner> {
        None
    }

    pub fn free_bytes(&self) -> Option<u64> {
        None
    }

    pub fn process_bytes(&self) -> Option<u64> {
        None
    }
}
