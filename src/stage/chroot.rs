//! Running a program inside the staging root, chroot-style, with a clean environment.
//!
//! The caller must already be root in the build's user namespace (or real root).

use std::ffi::OsStr;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;

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

/// A `Command` that runs `program` with `args` chrooted into `root`, cwd `/`, clean env.
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
    let root = root.to_path_buf();
    // SAFETY: chroot and chdir are async-signal-safe syscalls; the closure allocates nothing
    // after fork (the path was converted before).
    let root_c = std::ffi::CString::new(root.as_os_str().as_encoded_bytes()).unwrap_or_default();
    unsafe {
        cmd.pre_exec(move || {
            if libc_chroot(&root_c) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            nix::unistd::chdir(c"/").map_err(std::io::Error::from)?;
            Ok(())
        });
    }
    cmd
}

fn libc_chroot(path: &std::ffi::CStr) -> i32 {
    match nix::unistd::chroot(path) {
        Ok(()) => 0,
        Err(e) => {
            // Surface the errno to last_os_error().
            nix::errno::Errno::set_raw(e as i32);
            -1
        }
    }
}
