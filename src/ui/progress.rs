//! indicatif progress bars for downloads, drawn on stderr only when it is a
//! terminal and `--quiet` is off (the printer decides the draw target).

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressState, ProgressStyle};

use super::format;
use super::progress_line::{self, Transfer};
use crate::hub::{DownloadProgress, DownloadReporter};
use crate::printer::Printer;
use crate::pull::{PullEvent, PullReporter};

pub struct PullProgress {
    bars: MultiProgress,
    printer: Printer,
    /// The bar of the whole pull, above the files' bars, when it moves several files.
    whole: Mutex<Option<Arc<WholeBar>>>,
}

impl PullProgress {
    pub fn new(printer: Printer) -> PullProgress {
        let bars = MultiProgress::with_draw_target(printer.progress_target());
        PullProgress { bars, printer, whole: Mutex::new(None) }
    }

    fn whole(&self) -> Option<Arc<WholeBar>> {
        self.whole.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).clone()
    }

    /// One bar for all `files` (the parts of a split model, a sharded safetensors model).
    fn start_whole(&self, files: usize, bytes: u64) {
        let bar = self.bars.insert(0, ProgressBar::new(bytes));
        let base = Arc::new(AtomicU64::new(0));
        let name = format!("all {}", format::counted(files as u64, "file"));
        bar.set_style(bar_style(self.printer.progress_width(), name, base.clone()));
        bar.enable_steady_tick(Duration::from_millis(200));
        let whole = WholeBar { bar, base, files, state: Mutex::default() };
        *self.whole.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(Arc::new(whole));
    }

    /// Prints a status line without tearing the bars.
    fn status(&self, text: &str) {
        if self.bars.is_hidden() {
            self.printer.status(text);
        } else {
            let _ = self.bars.println(text);
        }
    }
}

/// Finished bars are cleared when the pull is over (as uv does), so the
/// lines after them (`stored …`, an error) start on a line of their own.
impl Drop for PullProgress {
    fn drop(&mut self) {
        let _ = self.bars.clear();
    }
}

/// The whole line is one key that `progress_line` lays out, so that it fits
/// `width` and speaks the units of `format::bytes`. `base` is the position
/// the transfer (re)started from, so the rate counts only received bytes.
fn bar_style(width: usize, name: String, base: Arc<AtomicU64>) -> ProgressStyle {
    ProgressStyle::with_template("{line}").expect("the template is valid").with_key(
        "line",
        move |state: &ProgressState, w: &mut dyn std::fmt::Write| {
            let (done, base) = (state.pos(), base.load(Ordering::Relaxed));
            let rate = progress_line::wire_rate(done, base, state.elapsed());
            let transfer = Transfer { done, total: state.len().unwrap_or(0), rate };
            let _ = w.write_str(&progress_line::fit_line(width, &name, transfer));
        },
    )
}

impl DownloadReporter for PullProgress {
    fn start(&self, file: &str, total: Option<u64>) -> Box<dyn DownloadProgress> {
        let bar = self.bars.add(ProgressBar::new(total.unwrap_or(0)));
        let base = Arc::new(AtomicU64::new(0));
        bar.set_style(bar_style(self.printer.progress_width(), file.to_string(), base.clone()));
        bar.enable_steady_tick(Duration::from_millis(200));
        Box::new(FileBar { bar, base, whole: self.whole(), file: file.to_string() })
    }
}

impl PullReporter for PullProgress {
    fn event(&self, event: PullEvent<'_>) {
        match event {
            PullEvent::Resolved { repo, commit, files } => {
                let files = format::counted(files as u64, "file");
                self.status(&format!("pulling {repo} at {} ({files})", &commit[..commit.len().min(12)]));
            }
            PullEvent::AlreadyStored { file } => self.status(&format!("{file}: already in the store")),
            PullEvent::Transferring { files, bytes } if files > 1 => self.start_whole(files, bytes),
            PullEvent::Transferring { .. } => {}
            PullEvent::WaitingForLock => self.status("waiting for another llmctl to release the store lock..."),
            PullEvent::WaitingForPull { repo } => {
                self.status(&format!("waiting for another llmctl that is pulling {repo}..."))
            }
            PullEvent::Retrying { what, attempt, attempts, reason } => {
                self.status(&format!("{what}: {reason}; retrying (attempt {attempt} of {attempts})"));
            }
        }
    }
}

struct FileBar {
    bar: ProgressBar,
    /// Bytes on disk when the transfer last (re)started.
    base: Arc<AtomicU64>,
    whole: Option<Arc<WholeBar>>,
    file: String,
}

impl DownloadProgress for FileBar {
    fn restart(&mut self, total: u64, done: u64) {
        self.bar.set_length(total);
        self.bar.set_position(done);
        self.base.store(done, Ordering::Relaxed);
        self.bar.reset_elapsed();
        if let Some(whole) = &self.whole {
            whole.restart(&self.file, done);
        }
    }

    fn advance(&mut self, bytes: u64) {
        self.bar.inc(bytes);
        if let Some(whole) = &self.whole {
            whole.advance(&self.file, bytes);
        }
    }

    fn finish(&mut self) {
        self.bar.finish();
        if let Some(whole) = &self.whole {
            whole.finish(&self.file);
        }
    }
}

/// The whole pull's bar: its position is the sum of its files', and its
/// `base` the part of that which came over no wire now (resumed bytes).
/// Each retry of a file starts a new file bar, so files are known by name.
struct WholeBar {
    bar: ProgressBar,
    base: Arc<AtomicU64>,
    files: usize,
    state: Mutex<WholeState>,
}

#[derive(Default)]
struct WholeState {
    positions: HashMap<String, u64>,
    finished: HashSet<String>,
}

impl WholeBar {
    fn state(&self) -> std::sync::MutexGuard<'_, WholeState> {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// `file` (re)starts with `done` bytes on disk; fewer than before when
    /// bytes that failed verification were deleted: wrapping arithmetic moves
    /// the sums either way.
    fn restart(&self, file: &str, done: u64) {
        let before = self.state().positions.insert(file.to_string(), done).unwrap_or(0);
        let moved = done.wrapping_sub(before);
        self.bar.set_position(self.bar.position().wrapping_add(moved));
        self.base.fetch_add(moved, Ordering::Relaxed);
    }

    fn advance(&self, file: &str, bytes: u64) {
        let mut state = self.state();
        match state.positions.get_mut(file) {
            Some(position) => *position += bytes,
            None => drop(state.positions.insert(file.to_string(), bytes)),
        }
        drop(state);
        self.bar.inc(bytes);
    }

    fn finish(&self, file: &str) {
        let mut state = self.state();
        state.finished.insert(file.to_string());
        if state.finished.len() == self.files {
            self.bar.finish();
        }
    }
}

/// One bar over `bench`'s cases, with the case running as its message.
pub struct BenchProgress {
    bar: ProgressBar,
}

impl BenchProgress {
    pub fn new(printer: Printer, cases: u64) -> BenchProgress {
        let bar = ProgressBar::with_draw_target(Some(cases), printer.progress_target());
        bar.set_style(
            ProgressStyle::with_template("{msg:24!} {bar:30} {pos}/{len} cases  {elapsed}")
                .expect("the template is valid"),
        );
        bar.enable_steady_tick(Duration::from_millis(200));
        BenchProgress { bar }
    }

    pub fn quality_started(&mut self, tokens: usize) {
        self.bar.set_message(format!("quality, {}", format::counted(tokens as u64, "token")));
    }

    pub fn quality_finished(&mut self) {
        self.bar.inc(1);
    }

    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

impl crate::bench::BenchObserver for BenchProgress {
    fn case_started(&mut self, scheme: &str, context: usize) {
        self.bar.set_message(format!("{scheme} at {}", format::counted(context as u64, "token")));
    }

    fn case_finished(&mut self) {
        self.bar.inc(1);
    }
}
