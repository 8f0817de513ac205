//! Trying a hub request again while its failure says that may help: delays
//! doubling from the configured one, never shorter than a server's
//! `Retry-After`, each retry announced to the reporter.

use std::fmt::Display;

use super::{PullEvent, PullReporter};
use crate::hub::{Resilience, Retry};

/// Runs `op` up to `resilience.attempts` times; `retry` says whether (and
/// how soon) a failure may be tried again. `what` names the request in the
/// announcements.
pub(super) fn with_retries<T, E: Display>(
    resilience: &Resilience,
    what: &str,
    reporter: &dyn PullReporter,
    retry: impl Fn(&E) -> Retry,
    mut op: impl FnMut() -> Result<T, E>,
) -> Result<T, E> {
    let attempts = resilience.attempts.max(1);
    let mut delay = resilience.retry_delay;
    let mut attempt = 1;
    loop {
        let error = match op() {
            Ok(value) => return Ok(value),
            Err(error) => error,
        };
        let wait = match retry(&error) {
            _ if attempt >= attempts => return Err(error),
            Retry::Never => return Err(error),
            Retry::Backoff => delay,
            Retry::AtLeast(asked) => delay.max(asked),
        };
        attempt += 1;
        reporter.event(PullEvent::Retrying { what, attempt, attempts, reason: &error.to_string() });
        std::thread::sleep(wait);
        delay = delay.saturating_mul(2);
    }
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;
    use std::time::{Duration, Instant};

    use super::*;
    use crate::hub::{DownloadProgress, DownloadReporter};

    #[derive(Default)]
    struct Log(RefCell<Vec<String>>);
    impl DownloadReporter for Log {
        fn start(&self, _: &str, _: Option<u64>) -> Box<dyn DownloadProgress> {
            unreachable!()
        }
    }
    impl PullReporter for Log {
        fn event(&self, event: PullEvent<'_>) {
            if let PullEvent::Retrying { what, attempt, attempts, reason } = event {
                self.0.borrow_mut().push(format!("{what}: {reason} ({attempt}/{attempts})"));
            }
        }
    }

    fn fast() -> Resilience {
        Resilience { attempts: 3, retry_delay: Duration::from_millis(1), stall_after: Duration::from_secs(1) }
    }

    #[test]
    fn retries_until_the_attempts_run_out_and_announces_each() {
        let log = Log::default();
        let mut calls = 0;
        let out: Result<(), &str> = with_retries(
            &fast(),
            "f",
            &log,
            |_| Retry::Backoff,
            || {
                calls += 1;
                Err("boom")
            },
        );
        assert_eq!((out, calls), (Err("boom"), 3));
        assert_eq!(*log.0.borrow(), ["f: boom (2/3)", "f: boom (3/3)"]);
    }

    #[test]
    fn a_final_answer_is_not_retried_and_retry_after_is_waited_out() {
        let log = Log::default();
        let mut calls = 0;
        let out: Result<(), &str> = with_retries(
            &fast(),
            "f",
            &log,
            |_| Retry::Never,
            || {
                calls += 1;
                Err("no")
            },
        );
        assert_eq!((out, calls), (Err("no"), 1));
        let started = Instant::now();
        let mut first = true;
        let out = with_retries(
            &fast(),
            "f",
            &log,
            |_| Retry::AtLeast(Duration::from_millis(200)),
            || {
                if std::mem::take(&mut first) { Err("later") } else { Ok(7) }
            },
        );
        assert_eq!(out, Ok(7));
        assert!(started.elapsed() >= Duration::from_millis(200), "{:?}", started.elapsed());
    }
}
