//! The reporting seam between downloads and whatever shows them: the hub
//! calls these traits; only the UI knows about progress bars.

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
