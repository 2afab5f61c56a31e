//! Running a program inside the staging root, chroot-style, with a clean environment and its
//! own `/proc`.
//!
//! The caller must already be root in the build's user namespace (or real root). Each program
//! gets a private mount namespace in which a fresh procfs (of the build's pid namespace) is
//! mounted on the root's `/proc`, so `/proc` exists only for programs running in the chroot
//! and vanishes with them. The root's `proc/` directory itself stays an ordinary directory for
//! the host-side extraction of the Essential set, which sets its owner, mode and mtime (a
//! mounted procfs refuses all three; mmdebstrap mounts /proc only after that extraction for
//! the same reason).

use std::ffi::{CString, OsStr};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;

use nix::libc;

/// The environment every program in the chroot gets: nothing of the caller's.
pub const CLEAN_ENV: &[(&str, &str)] = &[
    (
        "PATH",
        "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    ),
    ("LANG", "C.UTF-8"),
    ("LC_ALL", "C.UTF-8"),
    ("DEBIAN_FRONTEND", "noninteractive"),
    ("DEBCONF_NONINTERACTIVE_SEEN", "true"),
    ("HOME", "/root"),
    ("TERM", "dumb"),
];

/// A `Command` that runs `program` with `args` chrooted into `root`, cwd `/`, clean env, with
/// a fresh `/proc` mounted privately for it (skipped when the root has no `proc/`).
pub fn command_in_chroot<I, S>(root: &Path, program: &str, args: I) -> Command
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let mut cmd = Command::new(program);
    cmd.args(args).env_clear();
    for (k, v) in CLEAN_ENV {
        cmd.env(k, v);
    }
    // Everything the closure needs is allocated here, before fork: the parent may be
    // multi-threaded, so the closure must not allocate. A path with a NUL byte becomes ""
    // and chroot("") fails with ENOENT, which spawn() reports.
    let root_c = CString::new(root.as_os_str().as_encoded_bytes()).unwrap_or_default();
    let proc_c = CString::new(root.join("proc").as_os_str().as_encoded_bytes()).unwrap_or_default();
    // SAFETY: runs between fork and exec; it only makes async-signal-safe syscalls (unshare,
    // mount, chroot, chdir) on strings prepared before the fork, and allocates nothing.
    unsafe {
        cmd.pre_exec(move || {
            if libc::unshare(libc::CLONE_NEWNS) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            // Nothing mounted here may propagate anywhere (matters as real root on the host).
            if libc::mount(
                c"none".as_ptr(),
                c"/".as_ptr(),
                std::ptr::null(),
                libc::MS_REC | libc::MS_PRIVATE,
                std::ptr::null(),
            ) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            mount_proc(&proc_c)?;
            if libc::chroot(root_c.as_ptr()) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            if libc::chdir(c"/".as_ptr()) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    cmd
}

/// Mount a fresh procfs on `target`, or rbind the host's where a fresh one is refused;
/// nothing when `target` does not exist. Async-signal-safe.
fn mount_proc(target: &std::ffi::CStr) -> std::io::Result<()> {
    // SAFETY: plain syscalls on NUL-terminated strings that outlive the calls.
    unsafe {
        let flags = libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC;
        if libc::mount(
            c"proc".as_ptr(),
            target.as_ptr(),
            c"proc".as_ptr(),
            flags,
            std::ptr::null(),
        ) == 0
        {
            return Ok(());
        }
        let fresh = std::io::Error::last_os_error();
        if fresh.raw_os_error() == Some(libc::ENOENT) || fresh.raw_os_error() == Some(libc::ENOTDIR)
        {
            return Ok(());
        }
        if libc::mount(
            c"/proc".as_ptr(),
            target.as_ptr(),
            std::ptr::null(),
            libc::MS_BIND | libc::MS_REC,
            std::ptr::null(),
        ) == 0
        {
            return Ok(());
        }
        Err(fresh)
    }
}
