//! The inner user namespace of every program run in the image (dpkg, maintainer scripts, the
//! recipe's scripts): ids 0..65535 of the build's namespace and nothing else.
//!
//! The build's own namespace may map more than the image's ids: as real root it also maps the
//! host's uid/gid 0 (as [`HOST_ROOT_IN_BUILD`](super::idmap::HOST_ROOT_IN_BUILD)), so that
//! ingot's worker can read a private cache and write the output. A program in the image must
//! never become that id nor hold a capability over the host's root-owned files (`/proc/sys`,
//! the host's `/dev/null` bound into `/dev`, …). So the [`sandbox`](super::sandbox), after it
//! has set up the program's mounts, unshares a user namespace of its own and waits; a thread of
//! the caller (which holds `CAP_SETUID` over the build's namespace) writes `0 0 65536` to its
//! `uid_map` and `gid_map` and lets it go on. The mount and network namespaces the program runs
//! in belong to the build's namespace, so the program cannot mount, unmount or reconfigure
//! anything the sandbox set up either.
//!
//! The maps are written through a procfs of the caller's own pid namespace: the build's worker
//! mounts one next to the image's root ([`mount_build_proc`]); elsewhere (a caller already in
//! the host's pid namespace) `/proc` is used once it is checked to be this pid namespace's.
//!
//! Never writes a map for any process but the program it started.

use std::io::{self, Read, Write};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use super::idmap::IMAGE_IDS;

static BUILD_PROC: OnceLock<PathBuf> = OnceLock::new();

/// Mount a fresh procfs of this process's pid namespace at `dir` (created) and use it for the
/// inner maps from now on. Called once by the build's worker (pid 1 of the build).
pub(crate) fn mount_build_proc(dir: &Path) -> Result<(), String> {
    std::fs::create_dir(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    nix::mount::mount(
        Some("proc"),
        dir,
        Some("proc"),
        nix::mount::MsFlags::MS_NOSUID
            | nix::mount::MsFlags::MS_NODEV
            | nix::mount::MsFlags::MS_NOEXEC,
        None::<&str>,
    )
    .map_err(|e| format!("mounting the build's procfs on {}: {e}", dir.display()))?;
    let _ = BUILD_PROC.set(dir.to_path_buf());
    Ok(())
}

/// The procfs through which this process's children are found by the pid they report.
fn proc_dir() -> io::Result<PathBuf> {
    if let Some(p) = BUILD_PROC.get() {
        return Ok(p.clone());
    }
    let me = std::process::id().to_string();
    match std::fs::read_link("/proc/self") {
        Ok(link) if link.as_os_str() == me.as_str() => Ok(PathBuf::from("/proc")),
        _ => Err(io::Error::other(
            "no procfs of this pid namespace to write a sandboxed program's id maps through",
        )),
    }
}

/// The caller's side of one handshake: the pipe ends the program's pre-exec code uses are
/// [`Handshake::child_fds`]; [`Handshake::start`] waits for the program on a thread.
pub(crate) struct Handshake {
    /// The program writes its pid (4 bytes, native endian) here after unsharing.
    ready_w: OwnedFd,
    /// The program reads one byte here before going on.
    go_r: OwnedFd,
    ready_r: OwnedFd,
    go_w: OwnedFd,
}

/// The raw descriptor numbers the program's pre-exec code uses (copied before the fork).
#[derive(Debug, Clone, Copy)]
pub(crate) struct ChildFds {
    /// The caller's read end of the pid pipe (closed in the program).
    pub ready_r: i32,
    /// The program's write end of the pid pipe.
    pub ready_w: i32,
    /// The program's read end of the go pipe.
    pub go_r: i32,
    /// The caller's write end of the go pipe (closed in the program).
    pub go_w: i32,
}

/// A running mapper thread.
pub(crate) struct Mapper {
    thread: std::thread::JoinHandle<io::Result<()>>,
}

impl Handshake {
    /// Two close-on-exec pipes.
    pub fn new() -> io::Result<Handshake> {
        let (ready_r, ready_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
        let (go_r, go_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
        Ok(Handshake {
            ready_w,
            go_r,
            ready_r,
            go_w,
        })
    }

    /// The descriptor numbers for the program's side.
    pub fn child_fds(&self) -> ChildFds {
        use std::os::fd::AsRawFd;
        ChildFds {
            ready_r: self.ready_r.as_raw_fd(),
            ready_w: self.ready_w.as_raw_fd(),
            go_r: self.go_r.as_raw_fd(),
            go_w: self.go_w.as_raw_fd(),
        }
    }

    /// Start the thread that maps the program's ids once it reports its pid. Keep
    /// `ready_w`/`go_r` open until the program has been spawned, then drop them.
    pub fn start(self) -> io::Result<(Mapper, OwnedFd, OwnedFd)> {
        let proc = proc_dir()?;
        let (ready_r, go_w) = (self.ready_r, self.go_w);
        let thread = std::thread::spawn(move || map_when_ready(ready_r, go_w, &proc));
        Ok((Mapper { thread }, self.ready_w, self.go_r))
    }
}

impl Mapper {
    /// The thread's outcome (an error only if the program asked and could not be mapped).
    pub fn finish(self) -> io::Result<()> {
        self.thread
            .join()
            .unwrap_or_else(|_| Err(io::Error::other("the id-mapping thread panicked")))
    }
}

fn map_when_ready(ready_r: OwnedFd, go_w: OwnedFd, proc: &Path) -> io::Result<()> {
    let mut pid = [0u8; 4];
    let mut ready = std::fs::File::from(ready_r);
    // End of file: the program failed before it unshared (its spawn reports why).
    if ready.read_exact(&mut pid).is_err() {
        return Ok(());
    }
    let pid = i32::from_ne_bytes(pid);
    for name in ["uid_map", "gid_map"] {
        let own = std::fs::read_to_string(Path::new("/proc/self").join(name))?;
        let path = proc.join(pid.to_string()).join(name);
        std::fs::write(&path, inner_map(&own)).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("writing {} for a sandboxed program: {e}", path.display()),
            )
        })?;
    }
    // The program may have died meanwhile (EPIPE): its spawn reports that.
    let _ = std::fs::File::from(go_w).write_all(&[1]);
    Ok(())
}

/// The inner map for a caller whose own map is `own` (the text of its `uid_map`/`gid_map`):
/// each of its extents, cut to the image's ids 0..65535, mapped to itself. One extent per
/// extent of the caller's: the kernel wants each inner extent inside one outer extent
/// (an ordinary user's build maps 0 and 1..65535 apart).
pub(crate) fn inner_map(own: &str) -> String {
    let mut out = String::new();
    for line in own.lines() {
        let mut fields = line.split_whitespace().map(|f| f.parse::<u64>());
        let (Some(Ok(first)), Some(Ok(_)), Some(Ok(count))) =
            (fields.next(), fields.next(), fields.next())
        else {
            continue;
        };
        let end = (first + count).min(u64::from(IMAGE_IDS));
        if first < end {
            out.push_str(&format!("{first} {first} {}\n", end - first));
        }
    }
    out
}

/// Between fork and exec, in the program: unshare the user namespace, report the pid on
/// `ready_w`, and wait for one byte on `go_r`. Async-signal-safe, allocation-free.
pub(crate) fn enter_in_child(ready_w: i32, go_r: i32) -> io::Result<()> {
    // SAFETY: plain syscalls on descriptors inherited from the caller and on stack buffers.
    unsafe {
        if nix::libc::unshare(nix::libc::CLONE_NEWUSER) == -1 {
            return Err(io::Error::last_os_error());
        }
        // This process is a fork of the non-dumpable worker, so its /proc files belong to
        // the host's root, out of the worker's reach unless that is mapped (real root only):
        // dumpable for as long as the maps are written (exec sets it anew anyway).
        if nix::libc::prctl(nix::libc::PR_SET_DUMPABLE, 1, 0, 0, 0) == -1 {
            return Err(io::Error::last_os_error());
        }
        let pid = nix::libc::getpid().to_ne_bytes();
        if nix::libc::write(ready_w, pid.as_ptr().cast(), pid.len()) != pid.len() as isize {
            return Err(io::Error::last_os_error());
        }
        let mut byte = 0u8;
        loop {
            let n = nix::libc::read(go_r, (&mut byte as *mut u8).cast(), 1);
            if n == 1 {
                break;
            }
            if n == -1 && io::Error::last_os_error().raw_os_error() == Some(nix::libc::EINTR) {
                continue;
            }
            return Err(io::Error::from_raw_os_error(nix::libc::EPERM));
        }
        if nix::libc::prctl(nix::libc::PR_SET_DUMPABLE, 0, 0, 0, 0) == -1 {
            return Err(io::Error::last_os_error());
        }
        nix::libc::close(ready_w);
        nix::libc::close(go_r);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::inner_map;

    #[test]
    fn the_inner_map_keeps_the_image_ids_one_extent_per_outer_extent() {
        // An ordinary user: 0 is the caller, 1..65535 the subordinate range.
        assert_eq!(
            inner_map("         0       1001          1\n         1     800000      65535\n"),
            "0 0 1\n1 1 65535\n"
        );
        // Real root: the host's root (65536 here) stays out.
        assert_eq!(inner_map("0 100000 65536\n65536 0 1\n"), "0 0 65536\n");
        // The host's own namespace (a caller outside any build).
        assert_eq!(inner_map("0 0 4294967295\n"), "0 0 65536\n");
    }
}
