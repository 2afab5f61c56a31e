//! Signals held at the end of a build: from the moment the image's tar stream has been
//! written (the stage child is then only tearing down) until the artifact and its sidecars
//! are published (or a failed build has cleaned up), SIGINT, SIGTERM and SIGHUP must not take
//! their default action — that would end the process between two renames (sidecars published
//! without their image) or before the hidden temp files are removed. While a [`SignalHold`]
//! lives they are recorded instead, and the build acts on them at one decision point, just
//! before the publish begins:
//!
//! - a signal received before it (stage teardown, verification) abandons the build cleanly:
//!   the temp files are removed, nothing appears under a final name, the build fails (exit 1)
//!   saying which signal stopped it;
//! - a signal received once the publish began is acted on after it: a publish is a few small
//!   files and renames, and finishing it is what keeps the set whole. The build then succeeds
//!   (the exit status says whether the image was published) and a line says the signal came.
//!
//! This module owns only that recording. The stage's own handler (which forwards signals to
//! the stage's children, see `stage/signals.rs`) is replaced while a hold lives and restored
//! when it ends: a signal that comes while the stage child finishes its teardown is held, not
//! forwarded, and the build is abandoned once the stage has returned. SIGKILL cannot be held:
//! what a kill mid-publish can leave is described in [`crate::artifact`].
//!
//! For tests only: `INGOT_TEST_PAUSE_AT=verify` or `=publish` makes the build stop at that
//! point (`verify`: the stage is over, verification not begun; `publish`: the first sidecar is
//! under its final name, the image not yet), print `ingot: test pause at <point>` on stderr
//! and wait for a held signal (or a SIGKILL), so that a test can signal that exact moment.

use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};

use nix::sys::signal::{self, SaFlags, SigAction, SigHandler, SigSet, Signal};

/// The signals a hold records.
const HELD: [Signal; 3] = [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP];

/// The environment variable of the test pause (see the module doc).
pub const TEST_PAUSE_ENV: &str = "INGOT_TEST_PAUSE_AT";

/// The last signal recorded by the current hold (0: none).
static RECEIVED: AtomicI32 = AtomicI32::new(0);
/// Whether a hold is installed (holds do not nest: an inner one is a no-op).
static ACTIVE: AtomicBool = AtomicBool::new(false);

extern "C" fn record(sig: nix::libc::c_int) {
    RECEIVED.store(sig, Ordering::SeqCst);
}

/// While alive, SIGINT, SIGTERM and SIGHUP are recorded, not acted on. Dropping it restores
/// the dispositions it replaced.
#[derive(Debug)]
pub struct SignalHold {
    /// The actions replaced (empty for a nested hold).
    previous: Vec<(Signal, SigAction)>,
}

impl SignalHold {
    /// Start holding the signals.
    pub fn begin() -> SignalHold {
        if ACTIVE.swap(true, Ordering::SeqCst) {
            return SignalHold {
                previous: Vec::new(),
            };
        }
        RECEIVED.store(0, Ordering::SeqCst);
        let action = SigAction::new(
            SigHandler::Handler(record),
            SaFlags::SA_RESTART,
            SigSet::empty(),
        );
        let previous = HELD
            .iter()
            // SAFETY: sigaction(2); the handler only stores an atomic (async-signal-safe).
            .filter_map(|&sig| {
                unsafe { signal::sigaction(sig, &action) }
                    .ok()
                    .map(|old| (sig, old))
            })
            .collect();
        SignalHold { previous }
    }

    /// The signal received since the hold began (the last one, if several came).
    pub fn received(&self) -> Option<Signal> {
        received()
    }
}

impl Drop for SignalHold {
    fn drop(&mut self) {
        if self.previous.is_empty() {
            return;
        }
        for (sig, old) in &self.previous {
            // SAFETY: sigaction(2) putting back the action this hold replaced.
            let _ = unsafe { signal::sigaction(*sig, old) };
        }
        ACTIVE.store(false, Ordering::SeqCst);
    }
}

fn received() -> Option<Signal> {
    Signal::try_from(RECEIVED.load(Ordering::SeqCst)).ok()
}

/// The test pause (see the module doc): a no-op unless `INGOT_TEST_PAUSE_AT` names `point`.
/// It writes to stderr itself, the one place the library does: the line is for the test,
/// which must see it whatever the verbosity.
pub fn pause_for_test(point: &str) {
    if std::env::var_os(TEST_PAUSE_ENV).is_none_or(|v| v != point) {
        return;
    }
    eprintln!("ingot: test pause at {point} (pid {})", std::process::id());
    while received().is_none() {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The disposition of `sig`, as text (`SigHandler` has no `PartialEq`).
    fn current_handler(sig: Signal) -> String {
        let probe = SigAction::new(SigHandler::SigDfl, SaFlags::empty(), SigSet::empty());
        // SAFETY: sigaction(2) read back at once: the disposition is put back unchanged.
        unsafe {
            let old = signal::sigaction(sig, &probe).unwrap();
            signal::sigaction(sig, &old).unwrap();
            format!("{:?}", old.handler())
        }
    }

    #[test]
    fn a_held_signal_is_recorded_not_acted_on_and_the_old_action_comes_back() {
        // SIGHUP: the test harness does not use it; its default action would end this process,
        // so the test fails loudly if the hold does not hold.
        let before = current_handler(Signal::SIGHUP);
        let hold = SignalHold::begin();
        assert_eq!(hold.received(), None);
        signal::raise(Signal::SIGHUP).unwrap();
        assert_eq!(hold.received(), Some(Signal::SIGHUP));
        drop(hold);
        assert_eq!(current_handler(Signal::SIGHUP), before);
        let again = SignalHold::begin();
        assert_eq!(again.received(), None, "a new hold starts clean");
    }
}
