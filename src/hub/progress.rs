//! The reporting seam between downloads and whatever shows them: the hub
//! calls these traits; only the UI knows about progress bars.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Creates one progress sink per downloaded file.
pub trait DownloadReporter {
    fn start(&self, file: &str, total: Option<u64>) -> Box<dyn DownloadProgress>;
}

/// Progress of one file (moved to the thread that downloads it).
pub trait DownloadProgress: Send {
    /// The file is `total` bytes and `done` of them are already on disk.
    fn restart(&mut self, total: u64, done: u64);
    fn advance(&mut self, bytes: u64);
    fn finish(&mut self);
}

/// When a download last made progress, shared with the thread watching it.
#[derive(Clone)]
pub(super) struct Heartbeat {
    start: Instant,
    last_ms: Arc<AtomicU64>,
}

impl Heartbeat {
    pub(super) fn new() -> Heartbeat {
        Heartbeat { start: Instant::now(), last_ms: Arc::new(AtomicU64::new(0)) }
    }

    fn beat(&self) {
        self.last_ms.store(self.start.elapsed().as_millis() as u64, Ordering::Relaxed);
    }

    /// Time since the last byte (or since the download began).
    pub(super) fn idle(&self) -> Duration {
        self.start.elapsed().saturating_sub(Duration::from_millis(self.last_ms.load(Ordering::Relaxed)))
    }
}

/// Bridges `hf-hub`'s `Progress` trait to ours.
pub(super) struct Adapter {
    inner: Box<dyn DownloadProgress>,
    total: u64,
    heartbeat: Heartbeat,
}

impl Adapter {
    pub(super) fn new(inner: Box<dyn DownloadProgress>, heartbeat: Heartbeat) -> Adapter {
        Adapter { inner, total: 0, heartbeat }
    }
}

impl hf_hub::api::Progress for Adapter {
    fn init(&mut self, size: usize, _filename: &str) {
        self.heartbeat.beat();
        self.total = size as u64;
        self.inner.restart(self.total, 0);
    }

    // hf-hub reports the resumed offset as one first update; we show it as
    // progress already made, which it is.
    fn update(&mut self, size: usize) {
        self.heartbeat.beat();
        self.inner.advance(size as u64);
    }

    fn finish(&mut self) {
        self.inner.finish();
    }
}
