//! The masked and read-only parts of the fresh `/proc` each sandboxed program gets, as
//! Docker's default `maskedPaths`/`readonlyPaths` and bubblewrap leave them: the kernel's
//! settings (`/proc/sys`, `/proc/sysrq-trigger`, `/proc/irq`, `/proc/bus`, `/proc/fs`) are
//! read-only, and what reveals the host's kernel memory, keys or timers (`/proc/kcore`,
//! `/proc/keys`, `/proc/timer_list`, …) is covered by `/dev/null` (files) or an empty
//! read-only tmpfs (directories).
//!
//! Applied between fork and exec by the [`sandbox`](super::sandbox), in the program's own mount
//! namespace, after its procfs is mounted and before `pivot_root`; the paths are prepared
//! before the fork ([`ProcMasks::new`]) so that applying them allocates nothing. An entry this
//! kernel does not have is skipped.

use std::ffi::CString;
use std::io;
use std::path::Path;

use nix::libc;

/// Read-only, relative to `/proc`.
pub const READ_ONLY: &[&str] = &["bus", "fs", "irq", "sys", "sysrq-trigger"];
/// Files covered by `/dev/null`.
pub const MASKED_FILES: &[&str] = &[
    "kcore",
    "keys",
    "latency_stats",
    "timer_list",
    "timer_stats",
    "sched_debug",
];
/// Directories covered by an empty read-only tmpfs.
pub const MASKED_DIRS: &[&str] = &["acpi", "asound", "scsi"];

/// The paths of one program's masks, prepared before the fork.
#[derive(Debug)]
pub struct ProcMasks {
    null: CString,
    read_only: Vec<CString>,
    files: Vec<CString>,
    dirs: Vec<CString>,
}

fn c(path: &Path) -> io::Result<CString> {
    CString::new(path.as_os_str().as_encoded_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "a path contains a NUL byte"))
}

impl ProcMasks {
    /// The masks of `root/proc`, with `root/dev/null` as the cover of files.
    pub fn new(root: &Path) -> io::Result<ProcMasks> {
        let proc = root.join("proc");
        let all = |names: &[&str]| -> io::Result<Vec<CString>> {
            names.iter().map(|n| c(&proc.join(n))).collect()
        };
        Ok(ProcMasks {
            null: c(&root.join("dev/null"))?,
            read_only: all(READ_ONLY)?,
            files: all(MASKED_FILES)?,
            dirs: all(MASKED_DIRS)?,
        })
    }

    /// Apply the masks. Async-signal-safe, allocation-free.
    pub fn apply(&self) -> io::Result<()> {
        const PROC_FLAGS: libc::c_ulong = libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC;
        // SAFETY: mount(2) on NUL-terminated strings prepared before the fork.
        unsafe {
            for path in &self.read_only {
                if skip_missing(libc::mount(
                    path.as_ptr(),
                    path.as_ptr(),
                    std::ptr::null(),
                    libc::MS_BIND | libc::MS_REC,
                    std::ptr::null(),
                ))? {
                    continue;
                }
                check(libc::mount(
                    std::ptr::null(),
                    path.as_ptr(),
                    std::ptr::null(),
                    libc::MS_BIND | libc::MS_REMOUNT | libc::MS_RDONLY | PROC_FLAGS,
                    std::ptr::null(),
                ))?;
            }
            for path in &self.files {
                skip_missing(libc::mount(
                    self.null.as_ptr(),
                    path.as_ptr(),
                    std::ptr::null(),
                    libc::MS_BIND,
                    std::ptr::null(),
                ))?;
            }
            for path in &self.dirs {
                skip_missing(libc::mount(
                    c"tmpfs".as_ptr(),
                    path.as_ptr(),
                    c"tmpfs".as_ptr(),
                    libc::MS_RDONLY | PROC_FLAGS,
                    c"size=4k,mode=0555".as_ptr().cast(),
                ))?;
            }
        }
        Ok(())
    }
}

fn check(ret: libc::c_int) -> io::Result<()> {
    if ret == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// Ok(true) when the mount failed because this kernel has no such entry.
fn skip_missing(ret: libc::c_int) -> io::Result<bool> {
    if ret == 0 {
        return Ok(false);
    }
    let err = io::Error::last_os_error();
    if err.raw_os_error() == Some(libc::ENOENT) {
        Ok(true)
    } else {
        Err(err)
    }
}
