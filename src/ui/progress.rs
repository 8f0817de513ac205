//! indicatif progress bars for downloads, drawn on stderr only when it is a
//! terminal and `--quiet` is off (the printer decides the draw target).

use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressStyle};

use crate::hub::{DownloadProgress, DownloadReporter};
use crate::printer::Printer;
use crate::pull::{PullEvent, PullReporter};

pub struct PullProgress {
    bars: MultiProgress,
    printer: Printer,
}

impl PullProgress {
    pub fn new(printer: Printer) -> PullProgress {
        PullProgress { bars: MultiProgress::with_draw_target(printer.progress_target()), printer }
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

fn bar_style() -> ProgressStyle {
    ProgressStyle::with_template("{msg:30!} {bar:30} {bytes:>10}/{total_bytes:<10} {bytes_per_sec:>12} eta {eta}")
        .expect("the template is valid")
}

impl DownloadReporter for PullProgress {
    fn start(&self, file: &str, total: Option<u64>) -> Box<dyn DownloadProgress> {
        let bar = self.bars.add(ProgressBar::new(total.unwrap_or(0)));
        bar.set_style(bar_style());
        bar.set_message(file.to_string());
        bar.enable_steady_tick(Duration::from_millis(200));
        Box::new(FileBar(bar))
    }
}

impl PullReporter for PullProgress {
    fn event(&self, event: PullEvent<'_>) {
        match event {
            PullEvent::Resolved { repo, commit, files } => {
                self.status(&format!("pulling {repo} at {} ({files} files)", &commit[..commit.len().min(12)]));
            }
            PullEvent::AlreadyStored { file } => self.status(&format!("{file}: already in the store")),
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

struct FileBar(ProgressBar);

impl DownloadProgress for FileBar {
    fn restart(&mut self, total: u64, done: u64) {
        self.0.set_length(total);
        self.0.set_position(done);
        self.0.reset_eta();
    }

    fn advance(&mut self, bytes: u64) {
        self.0.inc(bytes);
    }

    fn finish(&mut self) {
        self.0.finish();
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
        self.bar.set_message(format!("quality, {tokens} tokens"));
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
        self.bar.set_message(format!("{scheme} at {context} tokens"));
    }

    fn case_finished(&mut self) {
        self.bar.inc(1);
    }
}
