//! Signals around a running stage: the parent forwards SIGINT/SIGTERM/SIGHUP to its stage
//! children (which clean up and exit), and the namespaced supervisor turns them into "kill the
//! worker, then tear down".
//!
//! Handlers only touch atomics and call `kill(2)`/`raise(2)`: nothing else is
//! async-signal-safe. The parent's handler stays installed once set; while no stage runs it
//! behaves like the disposition it replaced (default, ignore, or the previous handler).

use std::sync::Once;
use std::sync::atomic::{AtomicI32, AtomicUsize, Ordering};

use nix::libc;

/// The signals a build reacts to.
pub(crate) const HANDLED: [libc::c_int; 3] = [libc::SIGINT, libc::SIGTERM, libc::SIGHUP];

const SLOTS: usize = 64;
static CHILDREN: [AtomicI32; SLOTS] = [const { AtomicI32::new(0) }; SLOTS];
static SEEN: AtomicUsize = AtomicUsize::new(0);
static LAST: AtomicI32 = AtomicI32::new(0);
static OLD_HANDLER: [AtomicUsize; 3] = [const { AtomicUsize::new(libc::SIG_DFL) }; 3];
static OLD_FLAGS: [AtomicI32; 3] = [const { AtomicI32::new(0) }; 3];
static INSTALL: Once = Once::new();

extern "C" fn parent_handler(sig: libc::c_int, info: *mut libc::siginfo_t, ctx: *mut libc::c_void) {
    let mut forwarded = false;
    for slot in &CHILDREN {
        let pid = slot.load(Ordering::SeqCst);
        if pid > 0 {
            // SAFETY: kill(2) is async-signal-safe; the pid is a child we registered.
            unsafe { libc::kill(pid, libc::SIGTERM) };
            forwarded = true;
        }
    }
    if forwarded {
        LAST.store(sig, Ordering::SeqCst);
        SEEN.fetch_add(1, Ordering::SeqCst);
        return;
    }
    let Some(i) = HANDLED.iter().position(|s| *s == sig) else {
        return;
    };
    let old = OLD_HANDLER[i].load(Ordering::SeqCst);
    if old == libc::SIG_IGN {
        return;
    }
    if old == libc::SIG_DFL {
        // SAFETY: signal(2) and raise(2) are async-signal-safe; restores the default action
        // and delivers the signal again so the process ends as it would have without us.
        unsafe {
            libc::signal(sig, libc::SIG_DFL);
            libc::raise(sig);
        }
        return;
    }
    if OLD_FLAGS[i].load(Ordering::SeqCst) & libc::SA_SIGINFO != 0 {
        // SAFETY: `old` is the handler the process installed with SA_SIGINFO before us.
        let f: extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void) =
            unsafe { std::mem::transmute(old) };
        f(sig, info, ctx);
    } else {
        // SAFETY: `old` is the plain handler the process installed before us.
        let f: extern "C" fn(libc::c_int) = unsafe { std::mem::transmute(old) };
        f(sig);
    }
}

fn install_parent_handler() {
    INSTALL.call_once(|| {
        for (i, sig) in HANDLED.iter().enumerate() {
            // SAFETY: sigaction(2) with a zeroed, then filled struct; the handler is
            // async-signal-safe (see above).
            unsafe {
                let mut new: libc::sigaction = std::mem::zeroed();
                new.sa_sigaction = parent_handler as *const () as usize;
                new.sa_flags = libc::SA_SIGINFO | libc::SA_RESTART;
                libc::sigemptyset(&mut new.sa_mask);
                let mut old: libc::sigaction = std::mem::zeroed();
                if libc::sigaction(*sig, &new, &mut old) == 0 {
                    OLD_HANDLER[i].store(old.sa_sigaction, Ordering::SeqCst);
                    OLD_FLAGS[i].store(old.sa_flags, Ordering::SeqCst);
                }
            }
        }
    });
}

/// While alive, signals to this process are forwarded (as SIGTERM) to the registered child.
pub(crate) struct Forwarding {
    slot: Option<usize>,
    seen_at_start: usize,
}

impl Forwarding {
    /// Register `pid` for forwarding.
    pub(crate) fn register(pid: i32) -> Forwarding {
        install_parent_handler();
        let seen_at_start = SEEN.load(Ordering::SeqCst);
        let slot = CHILDREN.iter().position(|s| {
            s.compare_exchange(0, pid, Ordering::SeqCst, Ordering::SeqCst)
                .is_ok()
        });
        Forwarding {
            slot,
            seen_at_start,
        }
    }

    /// The signal received while registered, if any.
    pub(crate) fn interrupted_by(&self) -> Option<i32> {
        (SEEN.load(Ordering::SeqCst) != self.seen_at_start).then(|| LAST.load(Ordering::SeqCst))
    }
}

impl Drop for Forwarding {
    fn drop(&mut self) {
        if let Some(i) = self.slot {
            CHILDREN[i].store(0, Ordering::SeqCst);
        }
    }
}

// ---- the namespaced supervisor (one per process, single-threaded) ----

static WORKER: AtomicI32 = AtomicI32::new(0);
static SUPERVISOR_SIGNAL: AtomicI32 = AtomicI32::new(0);

extern "C" fn supervisor_handler(sig: libc::c_int) {
    SUPERVISOR_SIGNAL.store(sig, Ordering::SeqCst);
    let pid = WORKER.load(Ordering::SeqCst);
    if pid > 0 {
        // SAFETY: kill(2) is async-signal-safe; SIGKILL to the worker, the init of the build's
        // pid namespace, takes down every process of the build at once.
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
}

/// In the supervisor: on SIGINT/SIGTERM/SIGHUP, kill the worker and remember the signal.
pub(crate) fn install_supervisor_handlers() {
    for sig in HANDLED {
        // SAFETY: sigaction(2) with a zeroed, then filled struct; the handler only stores
        // atomics and calls kill(2).
        unsafe {
            let mut new: libc::sigaction = std::mem::zeroed();
            new.sa_sigaction = supervisor_handler as *const () as usize;
            new.sa_flags = libc::SA_RESTART;
            libc::sigemptyset(&mut new.sa_mask);
            libc::sigaction(sig, &new, std::ptr::null_mut());
        }
    }
}

/// In the worker (after fork): default dispositions again.
pub(crate) fn reset_handlers() {
    for sig in HANDLED {
        // SAFETY: restoring the default disposition is always valid.
        unsafe { libc::signal(sig, libc::SIG_DFL) };
    }
}

/// The supervisor learnt its worker's pid; kill it now if a signal already came.
pub(crate) fn set_worker(pid: i32) {
    WORKER.store(pid, Ordering::SeqCst);
    if SUPERVISOR_SIGNAL.load(Ordering::SeqCst) != 0 {
        // SAFETY: kill(2) on our own child.
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
}

/// The signal the supervisor received, if any.
pub(crate) fn supervisor_signal() -> Option<i32> {
    match SUPERVISOR_SIGNAL.load(Ordering::SeqCst) {
        0 => None,
        s => Some(s),
    }
}

/// A signal's name for messages (`SIGTERM`), or its number.
pub(crate) fn signal_name(sig: i32) -> String {
    nix::sys::signal::Signal::try_from(sig)
        .map(|s| s.as_str().to_string())
        .unwrap_or_else(|_| format!("signal {sig}"))
}
