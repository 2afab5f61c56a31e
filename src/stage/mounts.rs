//! The image's environment while dpkg and the recipe's scripts run (in the
//! [`sandbox`](super::sandbox)), and its teardown.
//!
//! Set up inside the build's private mount namespace (nothing is visible on the host, and the
//! namespace dies with the build even if it is killed):
//! - `/proc`: only the directory here. The [`sandbox`](super::sandbox) runner mounts a fresh
//!   procfs of the build's pid namespace on it for each program, in the program's own mount
//!   namespace. Fresh rather than the
//!   host's: the build's processes see only each other (a postinst cannot see or signal the
//!   caller's processes), and killing the namespace's init ends every daemon a maintainer
//!   script left behind. Per program rather than here: the Essential extraction sets the
//!   owner, mode and mtime of `proc/`, which a mounted procfs refuses.
//! - `/dev`: a tmpfs holding empty files with the host's null, zero, full, random, urandom and
//!   tty bind-mounted onto them read-only (written to, never re-moded, re-owned or touched), `fd`/`stdin`/`stdout`/`stderr` symlinks, `shm/`, and a fresh
//!   devpts (`newinstance,ptmxmode=0666`) with `ptmx -> pts/ptmx`. Unmounting the tmpfs leaves
//!   the image's `dev/` exactly as empty as before.
//! - `/run`: a tmpfs of [`RUN_TMPFS_BYTES`] (64 MiB), so whatever maintainer scripts put there (pid files, sockets, locks)
//!   vanishes and the image's `/run` stays empty.
//! - `/usr/sbin/policy-rc.d` exiting 101 (no service starts), removed afterwards unless a
//!   package ships one.
//! - the provision network's `resolv.conf` (a file of the build's, never the host's: see
//!   [`usernet`](super::usernet)), bind-mounted read-only, only while provision scripts of a
//!   recipe with `[provision] network = true` run.
//!
//! Teardown goes through the root's directory descriptor with `*at` calls only: whatever a
//! script left in place of `dev/` (even a symlink to a host directory) is removed, never
//! followed.
//!
//! This module never mounts anything outside the staging root and never writes to the host.

use std::collections::HashSet;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::fcntl::OFlag;
use nix::mount::{MntFlags, MsFlags};
use nix::sys::stat::Mode;

use super::confined::{self, ConfinedError, RootDir};

/// The policy-rc.d every build installs while packages are configured.
pub const POLICY_RC_D: &[u8] =
    b"#!/bin/sh\n# ingot: no service may start while the image is built\nexit 101\n";

/// The size of the image's `/run` tmpfs while packages are configured and scripts run.
pub const RUN_TMPFS_BYTES: u64 = 64 << 20;
/// The size of its `/dev` tmpfs (which holds `/dev/shm`).
pub const DEV_TMPFS_BYTES: u64 = 16 << 20;

const DEV_BINDS: &[&str] = &["null", "zero", "full", "random", "urandom", "tty"];
const DEV_LINKS: &[(&str, &str)] = &[
    ("fd", "/proc/self/fd"),
    ("stdin", "/proc/self/fd/0"),
    ("stdout", "/proc/self/fd/1"),
    ("stderr", "/proc/self/fd/2"),
];
const SAVED_RESOLV: &str = ".resolv.conf.ingot-saved";

/// A failure setting up or tearing down the chroot environment.
#[derive(Debug, thiserror::Error)]
pub enum MountError {
    /// A path inside the root.
    #[error(transparent)]
    Confined(#[from] ConfinedError),
    /// A mount or unmount.
    #[error("{what} at /{target} in the staging root failed: {errno}")]
    Mount {
        /// What was mounted.
        what: String,
        /// Where, relative to the root.
        target: String,
        /// The cause.
        errno: nix::errno::Errno,
    },
    /// Mounts that would not go away.
    #[error("mounts left under {root} after teardown: {left}")]
    Leftover {
        /// The staging root.
        root: PathBuf,
        /// The mount points.
        left: String,
    },
    /// Reading the mount table.
    #[error("reading /proc/self/mountinfo: {0}")]
    MountInfo(std::io::Error),
}

fn mount_err(what: &str, target: &str) -> impl FnOnce(nix::errno::Errno) -> MountError {
    let (what, target) = (what.to_string(), target.to_string());
    move |errno| MountError::Mount {
        what,
        target,
        errno,
    }
}

struct ResolvBind {
    /// The image's own resolv.conf was a symlink, parked under [`SAVED_RESOLV`].
    parked_symlink: bool,
    /// The image had no resolv.conf; ours is an empty placeholder.
    placeholder: bool,
}

/// The mounted chroot environment of one staging root.
pub struct ChrootEnv {
    root: PathBuf,
    root_fd: RootDir,
    /// Directories this environment created (relative), in creation order.
    created: Vec<String>,
    /// We wrote `/usr/sbin/policy-rc.d`.
    wrote_policy: bool,
    resolv: Option<ResolvBind>,
}

impl ChrootEnv {
    /// Create `/proc`, mount `/dev` and `/run`, and install policy-rc.d in `root`.
    pub fn enter(root: &Path, log: &mut dyn FnMut(&str)) -> Result<ChrootEnv, MountError> {
        let root_fd = confined::open_root(root)?;
        let mut env = ChrootEnv {
            root: root.to_path_buf(),
            root_fd,
            created: Vec::new(),
            wrote_policy: false,
            resolv: None,
        };
        confined::ensure_dir_in(&env.root_fd, "proc", 0o555, &mut env.created)?;
        env.mount_dev(log)?;
        let run = confined::ensure_dir_in(&env.root_fd, "run", 0o755, &mut env.created)?;
        mount_fs(
            "tmpfs",
            &run,
            "tmpfs",
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
            &format!("mode=0755,size={RUN_TMPFS_BYTES},nr_inodes=65536"),
            "run",
        )?;
        env.write_policy_rc_d(log)?;
        Ok(env)
    }

    fn mount_dev(&mut self, log: &mut dyn FnMut(&str)) -> Result<(), MountError> {
        let dev_under = confined::ensure_dir_in(&self.root_fd, "dev", 0o755, &mut self.created)?;
        mount_fs(
            "tmpfs",
            &dev_under,
            "tmpfs",
            MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC,
            &format!("mode=0755,size={DEV_TMPFS_BYTES},nr_inodes=16384"),
            "dev",
        )?;
        // The tmpfs now covers dev/: reopen to get its root.
        let dev = confined::open_in(&self.root_fd, "dev", OFlag::O_RDONLY | OFlag::O_DIRECTORY)?;
        for name in DEV_BINDS {
            let host = Path::new("/dev").join(name);
            if !host.exists() {
                log(&format!(
                    "host has no {}; /dev/{name} left out",
                    host.display()
                ));
                continue;
            }
            let shown = format!("dev/{name}");
            confined::create_file_at(&dev, name, 0o666, b"", &shown)?;
            let target = nix::fcntl::openat(
                dev.as_fd(),
                *name,
                OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                Mode::empty(),
            )
            .map_err(|errno| ConfinedError {
                action: "opening",
                path: shown.clone(),
                errno,
            })?;
            nix::mount::mount(
                Some(&host),
                &confined::fd_path(&target),
                None::<&str>,
                MsFlags::MS_BIND,
                None::<&str>,
            )
            .map_err(mount_err(&format!("bind of {}", host.display()), &shown))?;
            // Read-only: the host's node may be written to, never re-moded, re-owned or
            // touched.
            let mounted = nix::fcntl::openat(
                dev.as_fd(),
                *name,
                OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                Mode::empty(),
            )
            .map_err(|errno| ConfinedError {
                action: "opening",
                path: shown.clone(),
                errno,
            })?;
            remount_bind_read_only(&host, &confined::fd_path(&mounted), &shown)?;
        }
        for (name, to) in DEV_LINKS {
            nix::unistd::symlinkat(*to, dev.as_fd(), *name).map_err(|errno| ConfinedError {
                action: "creating",
                path: format!("dev/{name}"),
                errno,
            })?;
        }
        let mut scratch = Vec::new();
        let shm = confined::ensure_dir_in(&self.root_fd, "dev/shm", 0o755, &mut scratch)?;
        nix::sys::stat::fchmod(&shm, Mode::from_bits_truncate(0o1777)).map_err(|errno| {
            ConfinedError {
                action: "setting the mode of",
                path: "dev/shm".into(),
                errno,
            }
        })?;
        let pts = confined::ensure_dir_in(&self.root_fd, "dev/pts", 0o755, &mut scratch)?;
        match mount_fs(
            "devpts",
            &pts,
            "devpts",
            MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC,
            "newinstance,ptmxmode=0666,mode=0620,gid=5",
            "dev/pts",
        ) {
            Ok(()) => {
                nix::unistd::symlinkat("pts/ptmx", dev.as_fd(), "ptmx").map_err(|errno| {
                    ConfinedError {
                        action: "creating",
                        path: "dev/ptmx".into(),
                        errno,
                    }
                })?;
            }
            Err(e) => log(&format!("{e}; continuing without pseudo-terminals")),
        }
        Ok(())
    }

    fn write_policy_rc_d(&mut self, log: &mut dyn FnMut(&str)) -> Result<(), MountError> {
        let sbin = confined::ensure_dir_in(&self.root_fd, "usr/sbin", 0o755, &mut self.created)?;
        match confined::create_file_at(
            &sbin,
            "policy-rc.d",
            0o755,
            POLICY_RC_D,
            "usr/sbin/policy-rc.d",
        ) {
            Ok(()) => self.wrote_policy = true,
            Err(e) if e.errno == nix::errno::Errno::EEXIST => {
                log("the root already has /usr/sbin/policy-rc.d; using it as it is");
            }
            Err(e) => return Err(e.into()),
        }
        Ok(())
    }

    /// Bind the file `source` (read-only) onto the image's `/etc/resolv.conf`, for
    /// provisioning.
    pub fn bind_resolv_conf(
        &mut self,
        source: &Path,
        log: &mut dyn FnMut(&str),
    ) -> Result<(), MountError> {
        let host = source;
        if self.resolv.is_some() {
            return Ok(());
        }
        let etc =
            match confined::open_in(&self.root_fd, "etc", OFlag::O_RDONLY | OFlag::O_DIRECTORY) {
                Ok(fd) => fd,
                Err(e) if e.errno == nix::errno::Errno::ENOENT => {
                    log("the image has no /etc; provisioning without name resolution");
                    return Ok(());
                }
                Err(e) => return Err(e.into()),
            };
        let shown = "etc/resolv.conf";
        let mut bind = ResolvBind {
            parked_symlink: false,
            placeholder: false,
        };
        match nix::sys::stat::fstatat(
            etc.as_fd(),
            "resolv.conf",
            nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
        ) {
            Ok(st) if st.st_mode & nix::libc::S_IFMT == nix::libc::S_IFREG => {}
            Ok(st) if st.st_mode & nix::libc::S_IFMT == nix::libc::S_IFLNK => {
                // A mount would follow the link (Ubuntu's points into /run): park the link
                // and mount onto a placeholder instead.
                nix::fcntl::renameat(etc.as_fd(), "resolv.conf", etc.as_fd(), SAVED_RESOLV)
                    .map_err(|errno| ConfinedError {
                        action: "parking",
                        path: shown.into(),
                        errno,
                    })?;
                bind.parked_symlink = true;
                bind.placeholder = true;
                confined::create_file_at(&etc, "resolv.conf", 0o644, b"", shown)?;
            }
            Ok(_) => {
                log("the image's /etc/resolv.conf is neither a file nor a symlink; not binding");
                return Ok(());
            }
            Err(nix::errno::Errno::ENOENT) => {
                bind.placeholder = true;
                confined::create_file_at(&etc, "resolv.conf", 0o644, b"", shown)?;
            }
            Err(errno) => {
                return Err(ConfinedError {
                    action: "inspecting",
                    path: shown.into(),
                    errno,
                }
                .into());
            }
        }
        // Record before mounting so a failure below is still undone.
        self.resolv = Some(bind);
        let target = open_resolv_conf(&etc, shown)?;
        let target_path = confined::fd_path(&target);
        nix::mount::mount(
            Some(host),
            &target_path,
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )
        .map_err(mount_err(
            "bind of the provision network's resolv.conf",
            shown,
        ))?;
        // Read-only: the file is the build's, not the image's to change.
        let mounted = open_resolv_conf(&etc, shown)?;
        nix::mount::mount(
            None::<&str>,
            &confined::fd_path(&mounted),
            None::<&str>,
            MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY,
            None::<&str>,
        )
        .map_err(mount_err("read-only remount of resolv.conf", shown))?;
        Ok(())
    }

    /// Undo [`ChrootEnv::bind_resolv_conf`]: unmount, and restore what the image had.
    pub fn unbind_resolv_conf(&mut self) -> Result<(), MountError> {
        let Some(bind) = self.resolv.take() else {
            return Ok(());
        };
        let shown = "etc/resolv.conf";
        let etc = confined::open_in(&self.root_fd, "etc", OFlag::O_RDONLY | OFlag::O_DIRECTORY)?;
        let mounted = open_resolv_conf(&etc, shown)?;
        match nix::mount::umount2(&confined::fd_path(&mounted), MntFlags::MNT_DETACH) {
            Ok(()) | Err(nix::errno::Errno::EINVAL) => {}
            Err(e) => return Err(mount_err("unmount", shown)(e)),
        }
        drop(mounted);
        if bind.placeholder {
            confined::unlink_at(&etc, "resolv.conf", shown)?;
        }
        if bind.parked_symlink {
            nix::fcntl::renameat(etc.as_fd(), SAVED_RESOLV, etc.as_fd(), "resolv.conf").map_err(
                |errno| ConfinedError {
                    action: "restoring",
                    path: shown.into(),
                    errno,
                },
            )?;
        }
        Ok(())
    }

    /// Unmount everything, remove policy-rc.d and the directories only we needed, and leave
    /// `dev/` an empty directory.
    pub fn leave(mut self, log: &mut dyn FnMut(&str)) -> Result<(), MountError> {
        self.unbind_resolv_conf()?;
        unmount_all_under(&self.root)?;
        // From here on only through the root's descriptor with *at calls: whatever the
        // scripts left at dev/ (even a symlink to a host directory) is removed, not followed.
        let owned = package_owned_paths(&self.root_fd);
        self.empty_dev(log)?;
        if self.wrote_policy {
            let sbin = confined::open_in(
                &self.root_fd,
                "usr/sbin",
                OFlag::O_RDONLY | OFlag::O_DIRECTORY,
            )?;
            let current = confined::read_at(&sbin, "policy-rc.d", "usr/sbin/policy-rc.d");
            let ours = current.as_ref().is_ok_and(|c| c == POLICY_RC_D);
            // A cleanup script that already removed it leaves nothing to keep or remove.
            let gone = matches!(&current, Err(e) if e.errno == nix::errno::Errno::ENOENT);
            if !gone && (owned.contains("/usr/sbin/policy-rc.d") || !ours) {
                log("keeping /usr/sbin/policy-rc.d: the image's packages or scripts provide it");
            } else {
                match confined::unlink_at(&sbin, "policy-rc.d", "usr/sbin/policy-rc.d") {
                    Ok(()) => {}
                    Err(e) if e.errno == nix::errno::Errno::ENOENT => {}
                    Err(e) => return Err(e.into()),
                }
            }
        }
        // Directories we created that no package ships and nothing filled: gone again.
        // dev/ always stays (the golden image has an empty dev/).
        for rel in self.created.iter().rev() {
            if rel == "dev" || owned.contains(&format!("/{rel}")) {
                continue;
            }
            let (parent, name) = rel.rsplit_once('/').unwrap_or(("", rel.as_str()));
            if let Ok(parent_fd) =
                confined::open_in(&self.root_fd, parent, OFlag::O_RDONLY | OFlag::O_DIRECTORY)
            {
                // ENOTEMPTY: something lives there now; keep it.
                let _ = nix::unistd::unlinkat(
                    parent_fd.as_fd(),
                    name,
                    nix::unistd::UnlinkatFlags::RemoveDir,
                );
            }
        }
        Ok(())
    }
}

impl ChrootEnv {
    /// Leave `dev/` an empty directory of the image: a symlink put in its place is replaced
    /// (never followed), everything inside is removed through descriptors.
    fn empty_dev(&self, log: &mut dyn FnMut(&str)) -> Result<(), MountError> {
        let dev = match confined::open_dir_at(&self.root_fd, "dev", "dev") {
            Ok(fd) => fd,
            Err(e)
                if matches!(
                    e.errno,
                    nix::errno::Errno::ELOOP | nix::errno::Errno::ENOTDIR
                ) =>
            {
                log("dev/ is no longer a directory; replacing it with an empty one");
                confined::remove_all_at(&self.root_fd, std::ffi::OsStr::new("dev"), "dev")?;
                nix::sys::stat::mkdirat(&self.root_fd, "dev", Mode::from_bits_truncate(0o755))
                    .map_err(|errno| ConfinedError {
                        action: "creating",
                        path: "dev".into(),
                        errno,
                    })?;
                return Ok(());
            }
            Err(e) if e.errno == nix::errno::Errno::ENOENT => return Ok(()),
            Err(e) => return Err(e.into()),
        };
        let leftovers = confined::list_at(&dev, "dev")?;
        if !leftovers.is_empty() {
            log(&format!(
                "removing {} entries found under the image's /dev",
                leftovers.len()
            ));
        }
        for name in leftovers {
            let shown = format!("dev/{}", name.to_string_lossy());
            confined::remove_all_at(&dev, &name, &shown)?;
        }
        Ok(())
    }
}

/// Remount the bind mount at `target` (of `source`) read-only, keeping the flags of the
/// source's mount that a user namespace may not drop (nosuid, nodev, noexec, atime).
pub(crate) fn remount_bind_read_only(
    source: &Path,
    target: &Path,
    shown: &str,
) -> Result<(), MountError> {
    use nix::sys::statvfs::FsFlags;
    let kept = nix::sys::statvfs::statvfs(source)
        .map(|st| st.flags())
        .unwrap_or(FsFlags::empty());
    let mut flags = MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY;
    for (fs, ms) in [
        (FsFlags::ST_NOSUID, MsFlags::MS_NOSUID),
        (FsFlags::ST_NODEV, MsFlags::MS_NODEV),
        (FsFlags::ST_NOEXEC, MsFlags::MS_NOEXEC),
        (FsFlags::ST_NOATIME, MsFlags::MS_NOATIME),
        (FsFlags::ST_NODIRATIME, MsFlags::MS_NODIRATIME),
        (FsFlags::ST_RELATIME, MsFlags::MS_RELATIME),
    ] {
        if kept.contains(fs) {
            flags |= ms;
        }
    }
    nix::mount::mount(None::<&str>, target, None::<&str>, flags, None::<&str>)
        .map_err(mount_err("read-only remount", shown))
}

fn mount_fs(
    source: &str,
    target: &OwnedFd,
    fstype: &str,
    flags: MsFlags,
    data: &str,
    shown: &str,
) -> Result<(), MountError> {
    nix::mount::mount(
        Some(source),
        &confined::fd_path(target),
        Some(fstype),
        flags,
        Some(data),
    )
    .map_err(mount_err(fstype, shown))
}

/// Every path some installed package lists (`/var/lib/dpkg/info/*.list`), read through the
/// root's descriptor.
pub fn package_owned_paths(root: &impl AsFd) -> HashSet<String> {
    let mut owned = HashSet::new();
    let Ok(info) = confined::open_in(
        root,
        "var/lib/dpkg/info",
        OFlag::O_RDONLY | OFlag::O_DIRECTORY,
    ) else {
        return owned;
    };
    let Ok(names) = confined::list_at(&info, "var/lib/dpkg/info") else {
        return owned;
    };
    for name in names {
        let Some(name) = name.to_str().filter(|n| n.ends_with(".list")) else {
            continue;
        };
        if let Ok(text) = confined::read_at(&info, name, name) {
            owned.extend(String::from_utf8_lossy(&text).lines().map(str::to_string));
        }
    }
    owned
}

/// Mount points at or below `root` in this mount namespace, deepest first.
pub fn mounts_under(root: &Path) -> Result<Vec<PathBuf>, MountError> {
    let text = std::fs::read_to_string("/proc/self/mountinfo").map_err(MountError::MountInfo)?;
    Ok(mounts_under_in(&text, root))
}

/// [`mounts_under`] on the text of a mountinfo file.
pub fn mounts_under_in(mountinfo: &str, root: &Path) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = mountinfo
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .map(|p| PathBuf::from(unescape_mountinfo(p)))
        .filter(|p| p.starts_with(root))
        .collect();
    found.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    found.dedup();
    found
}

fn unescape_mountinfo(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' && i + 4 <= bytes.len() {
            let value = std::str::from_utf8(&bytes[i + 1..i + 4])
                .ok()
                .and_then(|oct| u8::from_str_radix(oct, 8).ok());
            if let Some(v) = value {
                out.push(v);
                i += 4;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Detach every mount at or below `root` (lazily, deepest first) until none is left.
pub fn unmount_all_under(root: &Path) -> Result<usize, MountError> {
    let mut count = 0;
    for _ in 0..8 {
        let mounts = mounts_under(root)?;
        if mounts.is_empty() {
            return Ok(count);
        }
        for m in mounts {
            if nix::mount::umount2(&m, MntFlags::MNT_DETACH | MntFlags::UMOUNT_NOFOLLOW).is_ok() {
                count += 1;
            }
        }
    }
    let left = mounts_under(root)?;
    if left.is_empty() {
        return Ok(count);
    }
    Err(MountError::Leftover {
        root: root.to_path_buf(),
        left: left
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(", "),
    })
}

/// An `O_PATH` handle on `etc/resolv.conf` itself (never following it), for bind mounts.
fn open_resolv_conf(etc: &impl AsFd, shown: &str) -> Result<OwnedFd, ConfinedError> {
    nix::fcntl::openat(
        etc.as_fd(),
        "resolv.conf",
        OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|errno| ConfinedError {
        action: "opening",
        path: shown.into(),
        errno,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_selects_mounts_under_root_deepest_first() {
        let info = "22 27 0:21 / /proc rw - proc proc rw\n\
                    50 27 0:40 / /tmp/st/r/proc rw - proc proc rw\n\
                    51 27 0:41 / /tmp/st/r/dev rw - tmpfs tmpfs rw\n\
                    52 51 0:6 /null /tmp/st/r/dev/null rw - devtmpfs udev rw\n\
                    53 27 0:42 / /tmp/st/r2/run rw - tmpfs tmpfs rw\n\
                    54 27 0:43 / /tmp/st/r/with\\040space rw - tmpfs tmpfs rw\n";
        let got = mounts_under_in(info, Path::new("/tmp/st/r"));
        assert_eq!(got[0], PathBuf::from("/tmp/st/r/dev/null"));
        assert_eq!(got.len(), 4);
        assert!(got.contains(&PathBuf::from("/tmp/st/r/with space")));
        assert!(!got.iter().any(|p| p.starts_with("/tmp/st/r2")));
    }
}
