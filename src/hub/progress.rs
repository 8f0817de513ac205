//! The reporting seam between downloads and whatever shows them: the hub
//! calls these traits; only the UI knows about progress bars.

/// Creates one progress sink per downloaded file.
pub trait DownloadReporter {
    fn start(&self, file: &str, total: Option<u64>) -> Box<dyn DownloadProgress>;
}

/// Progress of one file.
pub trait DownloadProgress {
    /// The file is `total` bytes and `done` of them are already on disk.
    fn restart(&mut self, total: u64, done: u64);
    fn advance(&mut self, bytes: u64);
    fn finish(&mut self);
}

/// Bridges `hf-hub`'s `Progress` trait to ours.
pub(super) struct Adapter {
    inner: Box<dyn DownloadProgress>,
    total: u64,
}

impl Adapter {
    pub(super) fn new(inner: Box<dyn DownloadProgress>) -> Adapter {
        Adapter { inner, total: 0 }
    }
}

impl hf_hub::api::Progress for Adapter {
    fn init(&mut self, size: usize, _filename: &str) {
        self.total = size as u64;
        self.inner.restart(self.total, 0);
    }

    // hf-hub reports the resumed offset as one first update; we show it as
    // progress already made, which it is.
    fn update(&mut self, size: usize) {
        self.inner.advance(size as u64);
    }

    fn finish(&mut self) {
        self.inner.finish();
    }
}
