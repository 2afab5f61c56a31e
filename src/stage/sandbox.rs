//! The one runner for every program run inside the image: dpkg and its maintainer scripts,
//! the recipe's provision and cleanup scripts. Nothing run here reaches the build host.
//!
//! Each program starts in a fresh mount namespace whose root *is* the staging root, entered
//! with `pivot_root` and the old root detached, so no path leads back to the host's tree (a
//! second `chroot` followed by `cd ../../..` ends at the image's `/`). Before `exec` it also:
//! - mounts a fresh procfs of the build's own pid namespace on `/proc` (never the host's), with
//!   the kernel's settings read-only and its memory, keys and timers masked
//!   ([`proc_masks`](super::proc_masks));
//! - gets new IPC and UTS namespaces (no SysV IPC or POSIX message queue of the host or of
//!   another program; hostname `localhost`, as the image's `/etc/hostname` says, so nothing
//!   bakes the build host's name into the image) and a fresh anonymous session keyring (none
//!   of the caller's keys);
//! - gets a new network namespace with only `lo` up, or joins the one the caller prepared
//!   with a user-mode network stack ([`Network::Joined`], for `[provision] network = true`,
//!   see [`usernet`](super::usernet)); never the host's;
//! - starts a new session (`setsid`: no controlling terminal, so the host's `/dev/tty` cannot
//!   be opened and `TIOCSTI` has no terminal to inject into); `/dev/pts` is the namespace's own
//!   devpts;
//! - enters a user namespace of its own that maps only the image's ids 0..65535 (see
//!   [`nested_userns`](super::nested_userns)): as real root, the build's namespace also maps
//!   the host's root for ingot's own worker, and no program of the image may use it; its mount
//!   and network namespaces belong to the build's namespace, so it cannot change them;
//! - sets `no_new_privs` and drops `CAP_SYS_ADMIN` (no `mount`/`umount`/`pivot_root`/`setns`
//!   of what the sandbox set up), `CAP_SYS_PTRACE` and the other host-facing capabilities from
//!   its bounding set, so neither dpkg nor anything it starts can regain them;
//! - marks every descriptor but stdin/stdout/stderr close-on-exec, so nothing the build (or
//!   whoever started it) holds is inherited;
//! - installs the seccomp filter of [`syscall_filter`](super::syscall_filter): no nested user
//!   namespace, keyring, io_uring, userfaultfd, perf, bpf, kexec, mount or terminal injection.
//!
//! The caller (the build's worker, pid 1 of the build's pid namespace) is not dumpable (see
//! `child.rs`), so `/proc/1/root`, `/proc/1/cwd` and `/proc/1/fd` give the sandboxed programs
//! no handle on the host, and `ptrace` of it is refused.
//!
//! Output: stdout and stderr go through one pipe, streamed line by line to the caller's log
//! with control characters escaped ([`escape_control`]: no terminal escape sequence of a
//! script reaches the terminal or an error line); a
//! program's own exit (not the end of its output) ends the run, so a daemon a postinst left
//! holding the pipe cannot hang the build, and every process left over is killed afterwards.
//!
//! This module never runs anything on the host's root filesystem and owns no mounts that
//! outlive the program it runs.

use std::collections::VecDeque;
use std::ffi::{CString, OsStr};
use std::io;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, ExitStatus, Stdio};

use nix::libc;

/// The environment every program in the image gets: nothing of the caller's.
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

/// Capabilities no program in the image keeps: mounts and namespaces (`CAP_SYS_ADMIN`), the
/// build's own processes (`CAP_SYS_PTRACE`), and what only a host kernel would honour.
const DROPPED_CAPS: &[libc::c_int] = &[
    21, // CAP_SYS_ADMIN
    19, // CAP_SYS_PTRACE
    16, // CAP_SYS_MODULE
    17, // CAP_SYS_RAWIO
    22, // CAP_SYS_BOOT
    12, // CAP_NET_ADMIN
    33, // CAP_MAC_ADMIN
    32, // CAP_MAC_OVERRIDE
    34, // CAP_SYSLOG
];

/// Which network the program sees.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Network {
    /// A network namespace of its own with only `lo` up (the default for everything).
    Loopback,
    /// The network namespace `netns` (a descriptor of the caller's), served by the user-mode
    /// network stack with process id `stack_pid` ([`super::usernet::Link`]): provision scripts
    /// of a recipe with `network = true`. The stack is stopped when the program ends.
    Joined {
        /// The namespace's nsfs descriptor.
        netns: std::os::fd::RawFd,
        /// The stack's process id, 0 for none.
        stack_pid: i32,
    },
}

/// Processes (and threads) one program run in the image may have at once (`RLIMIT_NPROC`,
/// counted in the program's own user namespace): a fork bomb stops there.
pub const MAX_PROCESSES: u64 = 1024;

/// The limits line of the build log: which limits apply and how they are enforced.
pub fn limits_line(limits: &super::limits::Applied, script_timeout: std::time::Duration) -> String {
    format!(
        "limits: at most {MAX_PROCESSES} processes per program (RLIMIT_NPROC); {}; /run {} \
         MiB, /dev {} MiB (tmpfs sizes); {} s per recipe script ([provision] timeout)",
        limits.describe(),
        super::mounts::RUN_TMPFS_BYTES >> 20,
        super::mounts::DEV_TMPFS_BYTES >> 20,
        script_timeout.as_secs()
    )
}

/// The address space each program run in the image may map (`RLIMIT_AS`), in bytes.
static PROGRAM_MEMORY: std::sync::atomic::AtomicU64 =
    std::sync::atomic::AtomicU64::new(super::limits::DEFAULT_MEMORY_BYTES);

/// Set the address-space limit of every program run from now on (the build's worker does,
/// from its [`super::limits::Applied`]).
pub fn set_memory_limit(bytes: u64) {
    PROGRAM_MEMORY.store(bytes, std::sync::atomic::Ordering::Relaxed);
}

/// How a program in the image ended, with its last lines of output.
#[derive(Debug)]
pub struct Finished {
    /// Its exit status.
    pub status: ExitStatus,
    /// It ran past the time limit it was given and was killed.
    pub timed_out: bool,
    /// Its last output lines (at most the number asked for).
    pub tail: Vec<String>,
}

/// Run `program` with `args` inside the image at `root`, sandboxed as the module describes,
/// with [`CLEAN_ENV`], cwd `/` and stdin from `/dev/null`. Every output line goes to `log`;
/// the last `tail_lines` are returned. Only fails when the program could not be started.
pub fn run<I, S>(
    root: &Path,
    program: &str,
    args: I,
    network: Network,
    tail_lines: usize,
    log: &mut dyn FnMut(&str),
) -> io::Result<Finished>
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    run_limited(root, program, args, &[], network, tail_lines, None, log)
}

/// [`run`] with `env` added to [`CLEAN_ENV`] (the recipe's scripts get the build's suite
/// mirrors this way) and a time limit: a program still running after `timeout` is killed,
/// with every process it started, and [`Finished::timed_out`] says so.
#[allow(clippy::too_many_arguments)]
pub fn run_limited<I, S>(
    root: &Path,
    program: &str,
    args: I,
    env: &[(String, String)],
    network: Network,
    tail_lines: usize,
    timeout: Option<std::time::Duration>,
    log: &mut dyn FnMut(&str),
) -> io::Result<Finished>
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let started = std::time::Instant::now();
    let (reader, writer) = io::pipe()?;
    let writer2 = writer.try_clone()?;
    let handshake = super::nested_userns::Handshake::new()?;
    let mut cmd = command(root, program, args, network, &handshake)?;
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.stdin(Stdio::null())
        .stdout(Stdio::from(writer))
        .stderr(Stdio::from(writer2));
    // spawn() returns only once the program has exec'd, i.e. after its ids are mapped: the
    // mapping happens on a thread meanwhile.
    let (mapper, ready_w, go_r) = handshake.start()?;
    let spawned = cmd.spawn();
    drop((ready_w, go_r));
    let mapped = mapper.finish();
    let mut child = match (spawned, mapped) {
        (Ok(child), _) => child,
        (Err(_), Err(why)) => return Err(why),
        (Err(e), Ok(())) => return Err(e),
    };
    // The Command still holds the write ends; drop it so EOF arrives when the program ends.
    drop(cmd);
    // Lines are read on a thread so that the program's own exit, not the end of its output,
    // ends the run: a daemon it left in the background may hold the pipe open forever.
    let (lines_tx, lines_rx) = std::sync::mpsc::channel::<String>();
    let reader_thread = std::thread::spawn(move || {
        super::for_each_line(reader, |line| lines_tx.send(line).is_ok());
    });
    let mut tail: VecDeque<String> = VecDeque::with_capacity(tail_lines);
    let mut show = |line: String, log: &mut dyn FnMut(&str)| {
        let line = crate::progress::escape_controls(&line);
        log(&line);
        if tail_lines > 0 {
            if tail.len() == tail_lines {
                tail.pop_front();
            }
            tail.push_back(line);
        }
    };
    let mut timed_out = false;
    let status = loop {
        // Checked on every line too: a program that never stops printing still stops here.
        if timeout.is_some_and(|t| started.elapsed() >= t) {
            timed_out = true;
            let _ = child.kill();
            break child.wait()?;
        }
        match lines_rx.recv_timeout(std::time::Duration::from_millis(100)) {
            Ok(line) => show(line, log),
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                if let Some(status) = child.try_wait()? {
                    break status;
                }
            }
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break child.wait()?,
        }
    };
    if let Network::Joined { stack_pid, .. } = network {
        super::usernet::stop_stack(stack_pid);
    }
    if kill_leftover_processes() {
        log(&format!("{program}: stopped the processes it left running"));
    }
    // Every writer is gone now (or never existed outside our pid namespace): drain.
    for line in lines_rx.iter() {
        show(line, log);
    }
    let _ = reader_thread.join();
    Ok(Finished {
        status,
        timed_out,
        tail: tail.into(),
    })
}

/// In the build's pid namespace (this process is its init, pid 1), kill every other process:
/// nothing a maintainer or recipe script started may outlive its step. Does nothing anywhere
/// else (outside its own pid namespace, `kill(-1)` would reach the host's processes). Returns
/// whether any process was killed.
pub fn kill_leftover_processes() -> bool {
    use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
    if nix::unistd::getpid().as_raw() != 1 {
        return false;
    }
    let any = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(-1),
        nix::sys::signal::Signal::SIGKILL,
    )
    .is_ok();
    if any {
        // Reap them (we are their reaper); none of our own children is still running here.
        loop {
            match waitpid(nix::unistd::Pid::from_raw(-1), None::<WaitPidFlag>) {
                Ok(WaitStatus::StillAlive) | Err(_) => break,
                Ok(_) => {}
            }
        }
    }
    any
}

fn cstring(path: &Path) -> io::Result<CString> {
    CString::new(path.as_os_str().as_encoded_bytes()).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{} contains a NUL byte", path.display()),
        )
    })
}

/// The `Command` that enters the sandbox between fork and exec.
fn command<I, S>(
    root: &Path,
    program: &str,
    args: I,
    network: Network,
    handshake: &super::nested_userns::Handshake,
) -> io::Result<Command>
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
    // multi-threaded, so the closure must not allocate.
    let root_c = cstring(root)?;
    let proc_c = cstring(&root.join("proc"))?;
    let net = match network {
        Network::Loopback => NetSetup::Fresh,
        Network::Joined { netns, .. } => NetSetup::Join(netns),
    };
    let fds = handshake.child_fds();
    let masks = super::proc_masks::ProcMasks::new(root)?;
    let memory = PROGRAM_MEMORY.load(std::sync::atomic::Ordering::Relaxed);
    let filters = super::syscall_filter::programs()?;
    // SAFETY: runs between fork and exec; it only makes async-signal-safe syscalls on strings
    // and structs prepared before the fork (or on the stack), and allocates nothing.
    unsafe {
        cmd.pre_exec(move || enter(&root_c, &proc_c, &masks, filters, net, memory, fds));
    }
    Ok(cmd)
}

/// The program's network namespace, as `enter` sets it up.
#[derive(Clone, Copy)]
enum NetSetup {
    /// A new one, `lo` up.
    Fresh,
    /// Join this one (an nsfs descriptor).
    Join(std::os::fd::RawFd),
}

fn check(ret: libc::c_int) -> io::Result<()> {
    if ret == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// Between fork and exec: enter the sandbox. Async-signal-safe, allocation-free.
fn enter(
    root: &std::ffi::CStr,
    proc_dir: &std::ffi::CStr,
    masks: &super::proc_masks::ProcMasks,
    filters: &[seccompiler::BpfProgram; 2],
    net: NetSetup,
    memory: u64,
    fds: super::nested_userns::ChildFds,
) -> io::Result<()> {
    // The caller's ends: closed here, so that a failed mapping reads as end of file below.
    // SAFETY: close(2) on descriptor numbers of this (forked) process only.
    unsafe {
        libc::close(fds.ready_r);
        libc::close(fds.go_w);
    }
    let nproc = libc::rlimit {
        rlim_cur: MAX_PROCESSES,
        rlim_max: MAX_PROCESSES,
    };
    // SAFETY: setrlimit(2) on a stack struct. Set before the nested user namespace exists, so
    // that its own limit (taken from its creator) is this one too.
    check(unsafe { libc::setrlimit(libc::RLIMIT_NPROC, &nproc) })?;
    let address_space = libc::rlimit {
        rlim_cur: memory,
        rlim_max: memory,
    };
    // SAFETY: setrlimit(2) on a stack struct.
    check(unsafe { libc::setrlimit(libc::RLIMIT_AS, &address_space) })?;
    let mut flags = libc::CLONE_NEWNS | libc::CLONE_NEWIPC | libc::CLONE_NEWUTS;
    match net {
        NetSetup::Fresh => flags |= libc::CLONE_NEWNET,
        // SAFETY: setns(2) on a descriptor the caller keeps open across the fork.
        NetSetup::Join(fd) => check(unsafe { libc::setns(fd, libc::CLONE_NEWNET) })?,
    }
    // SAFETY: plain syscalls on NUL-terminated strings that outlive the calls and on
    // stack-allocated structs; nothing here allocates or takes a lock.
    unsafe {
        check(libc::unshare(flags))?;
        let host = b"localhost";
        check(libc::sethostname(host.as_ptr().cast(), host.len()))?;
        let domain = b"(none)";
        check(libc::setdomainname(domain.as_ptr().cast(), domain.len()))?;
        // Nothing mounted here may propagate anywhere (matters as real root on the host).
        check(libc::mount(
            c"none".as_ptr(),
            c"/".as_ptr(),
            std::ptr::null(),
            libc::MS_REC | libc::MS_PRIVATE,
            std::ptr::null(),
        ))?;
        // pivot_root needs the new root to be a mount point; MS_REC keeps /dev, /run, … on it.
        check(libc::mount(
            root.as_ptr(),
            root.as_ptr(),
            std::ptr::null(),
            libc::MS_BIND | libc::MS_REC,
            std::ptr::null(),
        ))?;
        // A fresh procfs of the build's pid namespace, never the host's (no directory: no
        // /proc, as in a bare tree).
        if libc::mount(
            c"proc".as_ptr(),
            proc_dir.as_ptr(),
            c"proc".as_ptr(),
            libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
            std::ptr::null(),
        ) == -1
        {
            let err = io::Error::last_os_error();
            if !matches!(err.raw_os_error(), Some(libc::ENOENT) | Some(libc::ENOTDIR)) {
                return Err(err);
            }
        } else {
            masks.apply()?;
        }
        if matches!(net, NetSetup::Fresh) {
            loopback_up()?;
        }
        check(libc::chdir(root.as_ptr()))?;
        // pivot_root(".", "."): the old root ends up stacked on the new one; detaching it
        // leaves no mount of the host's tree in this namespace.
        check(libc::syscall(libc::SYS_pivot_root, c".".as_ptr(), c".".as_ptr()) as libc::c_int)?;
        check(libc::umount2(c".".as_ptr(), libc::MNT_DETACH))?;
        check(libc::chdir(c"/".as_ptr()))?;
        super::nested_userns::enter_in_child(fds.ready_w, fds.go_r)?;
        // A fresh anonymous session keyring; ENOSYS: a kernel without keys has none to leak.
        // keyctl(KEYCTL_JOIN_SESSION_KEYRING = 1, NULL)
        if libc::syscall(libc::SYS_keyctl, 1 as libc::c_long, 0 as libc::c_long) == -1 {
            let err = io::Error::last_os_error();
            if err.raw_os_error() != Some(libc::ENOSYS) {
                return Err(err);
            }
        }
        check(libc::setsid())?;
        check(libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0))?;
        for cap in DROPPED_CAPS {
            // EINVAL: a capability this kernel does not know; nothing to drop.
            if libc::prctl(libc::PR_CAPBSET_DROP, *cap, 0, 0, 0) == -1 {
                let err = io::Error::last_os_error();
                if err.raw_os_error() != Some(libc::EINVAL) {
                    return Err(err);
                }
            }
        }
        check(libc::close_range(
            3,
            libc::c_uint::MAX,
            libc::CLOSE_RANGE_CLOEXEC as libc::c_int,
        ))?;
    }
    // Last: from here on no mount, namespace or keyring call succeeds.
    super::syscall_filter::install(filters)
}

/// Bring `lo` up in a fresh network namespace. Async-signal-safe.
fn loopback_up() -> io::Result<()> {
    // SAFETY: socket/ioctl/close on a zeroed, stack-allocated ifreq; no allocation.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0);
        if fd == -1 {
            return Err(io::Error::last_os_error());
        }
        let mut req: libc::ifreq = std::mem::zeroed();
        for (dst, src) in req.ifr_name.iter_mut().zip(b"lo\0") {
            *dst = *src as libc::c_char;
        }
        let result = if libc::ioctl(fd, libc::SIOCGIFFLAGS, &mut req) == -1 {
            Err(io::Error::last_os_error())
        } else {
            req.ifr_ifru.ifru_flags |= (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short;
            check(libc::ioctl(fd, libc::SIOCSIFFLAGS, &req))
        };
        libc::close(fd);
        result
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn control_characters_are_escaped_and_text_is_kept() {
        assert_eq!(
            crate::progress::escape_controls("plain\ttext é"),
            "plain\ttext é"
        );
        assert_eq!(
            crate::progress::escape_controls("\x1b]0;title\x07\x1b[2Jok\r\u{9b}31m"),
            "\\x1b]0;title\\x07\\x1b[2Jok\\x0d\\u{9b}31m"
        );
    }
}
