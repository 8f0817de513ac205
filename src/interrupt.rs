//! Ctrl-C (SIGINT) and SIGTERM during work that must clean up after itself:
//! while an [`InterruptGuard`] lives, the signals only raise a flag that the
//! work polls ([`requested`]) and answers by unwinding normally, so its
//! drop guards run. Without a guard the default applies (the process ends
//! at once), which is what a resumable download wants.

use std::sync::atomic::{AtomicBool, Ordering};

static REQUESTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    // Only an atomic store: async-signal-safe.
    REQUESTED.store(true, Ordering::SeqCst);
}

/// Whether an interrupt arrived while a guard was installed.
pub fn requested() -> bool {
    REQUESTED.load(Ordering::SeqCst)
}

/// Turns SIGINT and SIGTERM into [`requested`] until dropped.
pub struct InterruptGuard {
    previous: [libc::sighandler_t; 2],
}

const SIGNALS: [libc::c_int; 2] = [libc::SIGINT, libc::SIGTERM];

impl InterruptGuard {
    /// Starts with no interrupt requested.
    pub fn install() -> InterruptGuard {
        REQUESTED.store(false, Ordering::SeqCst);
        let handler = on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
        // SAFETY: `on_signal` has the signature `signal` expects and does
        // nothing but an atomic store, which is async-signal-safe.
        let previous = SIGNALS.map(|signal| unsafe { libc::signal(signal, handler) });
        InterruptGuard { previous }
    }
}

impl Drop for InterruptGuard {
    fn drop(&mut self) {
        for (signal, previous) in SIGNALS.into_iter().zip(self.previous) {
            // SAFETY: restores the disposition `signal` returned in `install`.
            unsafe { libc::signal(signal, previous) };
        }
    }
}
