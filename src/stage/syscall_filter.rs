//! The seccomp filter of every program run in the image: the system calls no package or
//! recipe script needs and that are the kernel's attack surface or a way around the sandbox
//! fail with `EPERM`, everything else is allowed (a deny list, as Docker's and Flatpak's
//! filters work, so that dpkg and any maintainer script run unchanged).
//!
//! Refused: new user namespaces (`clone`/`unshare` with `CLONE_NEWUSER`; `clone3`, whose flags
//! a filter cannot read, fails with `ENOSYS` so that the C library falls back to `clone`), the
//! keyring (`keyctl`, `add_key`, `request_key`), `io_uring_*`, `userfaultfd`,
//! `perf_event_open`, `bpf`, `kexec_*`, the whole mount family (the sandbox's mounts are set
//! up before the filter is installed), and the `TIOCSTI`/`TIOCLINUX` ioctls (typing into a
//! terminal). Built with Firecracker's `seccompiler` (pure Rust) once per process, before any
//! fork; installed between fork and exec with one `seccomp(2)` call, after `no_new_privs`.
//!
//! Never: allocate or build anything between fork and exec, or filter a process of ingot's
//! own.

use std::collections::BTreeMap;
use std::io;
use std::sync::OnceLock;

use nix::libc;
use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule,
};

/// System calls refused outright (with `EPERM`).
pub const REFUSED: &[(&str, i64)] = &[
    ("keyctl", libc::SYS_keyctl),
    ("add_key", libc::SYS_add_key),
    ("request_key", libc::SYS_request_key),
    ("io_uring_setup", libc::SYS_io_uring_setup),
    ("io_uring_enter", libc::SYS_io_uring_enter),
    ("io_uring_register", libc::SYS_io_uring_register),
    ("userfaultfd", libc::SYS_userfaultfd),
    ("perf_event_open", libc::SYS_perf_event_open),
    ("bpf", libc::SYS_bpf),
    ("kexec_load", libc::SYS_kexec_load),
    ("kexec_file_load", libc::SYS_kexec_file_load),
    ("mount", libc::SYS_mount),
    ("umount2", libc::SYS_umount2),
    ("pivot_root", libc::SYS_pivot_root),
    ("move_mount", libc::SYS_move_mount),
    ("open_tree", libc::SYS_open_tree),
    ("fsopen", libc::SYS_fsopen),
    ("fsconfig", libc::SYS_fsconfig),
    ("fsmount", libc::SYS_fsmount),
    ("fspick", libc::SYS_fspick),
    ("mount_setattr", libc::SYS_mount_setattr),
];

const TIOCLINUX: u64 = 0x541C;

/// The compiled filters (built on first use, before any fork): the `EPERM` list, and `clone3`
/// with `ENOSYS` (one action per filter; the kernel runs both and the strictest verdict wins).
pub fn programs() -> io::Result<&'static [BpfProgram; 2]> {
    static PROGRAMS: OnceLock<Result<[BpfProgram; 2], String>> = OnceLock::new();
    PROGRAMS
        .get_or_init(|| build().map_err(|e| e.to_string()))
        .as_ref()
        .map_err(|e| io::Error::other(format!("building the sandbox's seccomp filter: {e}")))
}

fn build() -> Result<[BpfProgram; 2], seccompiler::BackendError> {
    let arch = std::env::consts::ARCH.try_into()?;
    let masked_newuser = |arg| {
        SeccompCondition::new(
            arg,
            SeccompCmpArgLen::Qword,
            SeccompCmpOp::MaskedEq(libc::CLONE_NEWUSER as u64),
            libc::CLONE_NEWUSER as u64,
        )
    };
    let ioctl_cmd = |cmd: u64| {
        SeccompCondition::new(1, SeccompCmpArgLen::Dword, SeccompCmpOp::Eq, cmd)
            .and_then(|c| SeccompRule::new(vec![c]))
    };
    let mut eperm: BTreeMap<i64, Vec<SeccompRule>> =
        REFUSED.iter().map(|(_, nr)| (*nr, Vec::new())).collect();
    eperm.insert(
        libc::SYS_unshare,
        vec![SeccompRule::new(vec![masked_newuser(0)?])?],
    );
    // x86-64's and arm64's clone(flags, …): the flags are the first argument.
    eperm.insert(
        libc::SYS_clone,
        vec![SeccompRule::new(vec![masked_newuser(0)?])?],
    );
    eperm.insert(
        libc::SYS_ioctl,
        vec![ioctl_cmd(libc::TIOCSTI)?, ioctl_cmd(TIOCLINUX)?],
    );
    let refuse = SeccompFilter::new(
        eperm,
        SeccompAction::Allow,
        SeccompAction::Errno(libc::EPERM as u32),
        arch,
    )?;
    let no_clone3 = SeccompFilter::new(
        BTreeMap::from([(libc::SYS_clone3, Vec::new())]),
        SeccompAction::Allow,
        SeccompAction::Errno(libc::ENOSYS as u32),
        arch,
    )?;
    Ok([refuse.try_into()?, no_clone3.try_into()?])
}

/// Install the `programs` on the calling thread. Between fork and exec: async-signal-safe,
/// allocation-free. `no_new_privs` must be set already.
pub fn install(programs: &[BpfProgram; 2]) -> io::Result<()> {
    for program in programs {
        install_one(program)?;
    }
    Ok(())
}

fn install_one(program: &BpfProgram) -> io::Result<()> {
    let fprog = libc::sock_fprog {
        len: program.len() as libc::c_ushort,
        filter: program.as_ptr() as *mut libc::sock_filter,
    };
    // SAFETY: seccomp(SECCOMP_SET_MODE_FILTER, 0, &fprog) with a program that outlives the
    // call.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_SET_MODE_FILTER as libc::c_long,
            0 as libc::c_long,
            &fprog as *const libc::sock_fprog,
        )
    };
    if ret == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}
