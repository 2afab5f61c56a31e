//! The golden image's cleanup invariants, enforced by ingot after the recipe's cleanup scripts.
//!
//! Owns: removing per-instance identity (SSH host keys, machine-id, systemd's random seed and
//! credential secret), build leftovers (apt
//! lists and caches, logs, `/tmp`, `/var/tmp`, `/run`, `policy-rc.d`, shell history,
//! `/root/.ssh`) and neutralising the build host's traces (`/etc/hostname`,
//! `/etc/resolv.conf`). [`crate::verify`] checks the same rules on the finished tarball.
//!
//! Must never: follow a symlink out of the image (every path is walked component by component
//! and a symlink where a directory is expected is an error), act on the host's `/`, or delete
//! a file that dpkg tracks where emptying it is enough (logs are truncated, not removed).

use std::ffi::OsStr;
use std::fs;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag, openat};
use nix::sys::stat::{FileStat, Mode, SFlag, fchmod, fstatat, mkdirat};
use nix::unistd::UnlinkatFlags;

use super::confined::{self, ConfinedError, RootDir};

use crate::golden::{self, HISTORY_FILES, INSTANCE_SECRETS};

/// A cleanup invariant could not be applied.
#[derive(Debug, thiserror::Error)]
pub enum InvariantError {
    /// `enforce` was pointed at the host's root filesystem.
    #[error("refusing to clean {0}: it is the host's root filesystem, not a staging tree")]
    HostRoot(PathBuf),
    /// A path component that must be a directory is a symlink (or not a directory).
    #[error(
        "{path}: expected a real directory, found {found}; refusing to follow it out of the image"
    )]
    UnexpectedType {
        /// The path, inside the image.
        path: String,
        /// What was found.
        found: &'static str,
    },
    /// A filesystem operation failed.
    #[error("cannot {action} {path}: {source}")]
    Io {
        /// What was being done (`remove`, `truncate`, …).
        action: &'static str,
        /// The path, inside the image.
        path: String,
        /// The cause.
        source: io::Error,
    },
}

/// The staging tree, with every action recorded. Every operation goes through the root's
/// descriptor ([`RootDir`]): parents are opened component by component without following
/// symlinks, the last component is handled with `*at` calls.
struct Tree {
    root: RootDir,
    done: Vec<String>,
}

fn io_err<'a>(action: &'static str, rel: &'a str) -> impl FnOnce(io::Error) -> InvariantError + 'a {
    move |source| InvariantError::Io {
        action,
        path: format!("/{rel}"),
        source,
    }
}

fn errno_err<'a>(action: &'static str, rel: &'a str) -> impl FnOnce(Errno) -> InvariantError + 'a {
    move |errno| io_err(action, rel)(io::Error::from(errno))
}

fn confined_err<'a>(
    action: &'static str,
    rel: &'a str,
) -> impl FnOnce(ConfinedError) -> InvariantError + 'a {
    move |e| io_err(action, rel)(io::Error::from(e.errno))
}

fn kind_of(st: &FileStat) -> SFlag {
    SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT
}

fn found(st: &FileStat) -> &'static str {
    if kind_of(st) == SFlag::S_IFLNK {
        "a symlink"
    } else {
        "a file"
    }
}

impl Tree {
    /// The directory holding `rel` and `rel`'s last component, after checking that every
    /// parent component is a real directory (or missing). `None` when a parent is missing.
    fn parent(&self, rel: &str) -> Result<Option<(OwnedFd, String)>, InvariantError> {
        let parts: Vec<&str> = rel.split('/').collect();
        let (name, parents) = parts.split_last().unwrap_or((&"", &[]));
        let mut dir =
            confined::open_subdir(&self.root, OsStr::new(".")).map_err(errno_err("open", ""))?;
        let mut seen = String::new();
        for part in parents {
            if !seen.is_empty() {
                seen.push('/');
            }
            seen.push_str(part);
            match fstatat(dir.as_fd(), *part, AtFlags::AT_SYMLINK_NOFOLLOW) {
                Ok(st) if kind_of(&st) == SFlag::S_IFDIR => {}
                Ok(st) => {
                    return Err(InvariantError::UnexpectedType {
                        path: format!("/{seen}"),
                        found: found(&st),
                    });
                }
                Err(Errno::ENOENT) => return Ok(None),
                Err(e) => return Err(errno_err("inspect", &seen)(e)),
            }
            dir =
                confined::open_subdir(&dir, OsStr::new(part)).map_err(errno_err("open", &seen))?;
        }
        Ok(Some((dir, name.to_string())))
    }

    fn meta(&self, rel: &str) -> Result<Option<(OwnedFd, String, FileStat)>, InvariantError> {
        let Some((dir, name)) = self.parent(rel)? else {
            return Ok(None);
        };
        match fstatat(dir.as_fd(), name.as_str(), AtFlags::AT_SYMLINK_NOFOLLOW) {
            Ok(st) => Ok(Some((dir, name, st))),
            Err(Errno::ENOENT) => Ok(None),
            Err(e) => Err(errno_err("inspect", rel)(e)),
        }
    }

    /// What `rel` is (`S_IFDIR`, `S_IFREG`, `S_IFLNK`, …), `None` when it is missing.
    fn kind(&self, rel: &str) -> Result<Option<SFlag>, InvariantError> {
        Ok(self.meta(rel)?.map(|(_, _, st)| kind_of(&st)))
    }

    fn exists(&self, rel: &str) -> Result<bool, InvariantError> {
        Ok(self.meta(rel)?.is_some())
    }

    /// Remove `rel` (a directory with everything in it; symlinks themselves, never targets).
    fn remove(&mut self, rel: &str) -> Result<(), InvariantError> {
        let Some((dir, name, _)) = self.meta(rel)? else {
            return Ok(());
        };
        confined::remove_all_at(&dir, OsStr::new(&name), rel)
            .map_err(confined_err("remove", rel))?;
        self.done.push(format!("removed /{rel}"));
        Ok(())
    }

    /// Names in directory `rel` (empty when it is missing); sorted for a stable report.
    fn list(&self, rel: &str) -> Result<Vec<String>, InvariantError> {
        let Some((dir, name, st)) = self.meta(rel)? else {
            return Ok(Vec::new());
        };
        if kind_of(&st) != SFlag::S_IFDIR {
            return Err(InvariantError::UnexpectedType {
                path: format!("/{rel}"),
                found: found(&st),
            });
        }
        let sub = confined::open_subdir(&dir, OsStr::new(&name)).map_err(errno_err("list", rel))?;
        let mut names: Vec<String> = confined::list_at(&sub, rel)
            .map_err(confined_err("list", rel))?
            .into_iter()
            .map(|n| n.to_string_lossy().into_owned())
            .collect();
        names.sort();
        Ok(names)
    }

    /// Remove everything inside directory `rel`, keeping the directory as it is.
    fn empty_contents(&mut self, rel: &str) -> Result<(), InvariantError> {
        for name in self.list(rel)? {
            self.remove(&format!("{rel}/{name}"))?;
        }
        Ok(())
    }

    /// Make `rel` an empty directory with `mode` (created if missing).
    fn empty_dir(&mut self, rel: &str, mode: u32) -> Result<(), InvariantError> {
        self.empty_contents(rel)?;
        let Some((dir, name)) = self.parent(rel)? else {
            return Ok(());
        };
        let want = Mode::from_bits_truncate(mode);
        match fstatat(dir.as_fd(), name.as_str(), AtFlags::AT_SYMLINK_NOFOLLOW) {
            Ok(st) if kind_of(&st) == SFlag::S_IFDIR => {
                if st.st_mode & 0o7777 != mode {
                    let sub = confined::open_subdir(&dir, OsStr::new(&name))
                        .map_err(errno_err("chmod", rel))?;
                    fchmod(sub.as_fd(), want).map_err(errno_err("chmod", rel))?;
                    self.done.push(format!("set mode {mode:04o} on /{rel}"));
                }
            }
            Ok(_) => unreachable_dir(rel)?,
            Err(_) => {
                mkdirat(dir.as_fd(), name.as_str(), want).map_err(errno_err("create", rel))?;
                let sub = confined::open_subdir(&dir, OsStr::new(&name))
                    .map_err(errno_err("chmod", rel))?;
                fchmod(sub.as_fd(), want).map_err(errno_err("chmod", rel))?;
                self.done
                    .push(format!("created /{rel} with mode {mode:04o}"));
            }
        }
        Ok(())
    }

    /// Truncate the regular file `rel` to zero bytes, keeping owner and mode (dpkg may list
    /// it). Symlinks are left alone.
    fn truncate(&mut self, rel: &str) -> Result<(), InvariantError> {
        let Some((dir, name, st)) = self.meta(rel)? else {
            return Ok(());
        };
        if kind_of(&st) == SFlag::S_IFREG && st.st_size > 0 {
            let fd = openat(
                dir.as_fd(),
                name.as_str(),
                OFlag::O_WRONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                Mode::empty(),
            )
            .map_err(errno_err("truncate", rel))?;
            fs::File::from(fd)
                .set_len(0)
                .map_err(io_err("truncate", rel))?;
            self.done.push(format!("truncated /{rel}"));
        }
        Ok(())
    }

    /// Replace `rel` with `contents` unless it already holds exactly that.
    fn write(&mut self, rel: &str, contents: &[u8], mode: u32) -> Result<(), InvariantError> {
        let Some((dir, name)) = self.parent(rel)? else {
            return Ok(());
        };
        match fstatat(dir.as_fd(), name.as_str(), AtFlags::AT_SYMLINK_NOFOLLOW) {
            Ok(st)
                if kind_of(&st) == SFlag::S_IFREG
                    && confined::read_at(&dir, &name, rel).is_ok_and(|c| c == contents) =>
            {
                return Ok(());
            }
            Ok(_) => {
                nix::unistd::unlinkat(dir.as_fd(), name.as_str(), UnlinkatFlags::NoRemoveDir)
                    .map_err(errno_err("replace", rel))?;
            }
            Err(_) => {}
        }
        confined::create_file_at(&dir, &name, mode, contents, rel)
            .map_err(confined_err("write", rel))?;
        self.done.push(format!(
            "wrote /{rel} ({})",
            String::from_utf8_lossy(contents).trim()
        ));
        Ok(())
    }

    /// Make `rel` a symlink to `target` unless it already is one.
    fn link(&mut self, rel: &str, target: &str) -> Result<(), InvariantError> {
        let Some((dir, name)) = self.parent(rel)? else {
            return Ok(());
        };
        if nix::fcntl::readlinkat(dir.as_fd(), name.as_str()).is_ok_and(|t| t == target) {
            return Ok(());
        }
        if self.exists(rel)? {
            self.remove(rel)?;
        }
        nix::unistd::symlinkat(target, dir.as_fd(), name.as_str())
            .map_err(errno_err("symlink", rel))?;
        self.done.push(format!("linked /{rel} -> {target}"));
        Ok(())
    }
}

fn unreachable_dir(rel: &str) -> Result<(), InvariantError> {
    Err(InvariantError::UnexpectedType {
        path: format!("/{rel}"),
        found: "a non-directory",
    })
}

/// Apply the cleanup invariants to the image tree at `root` (run inside the build's
/// namespace, after the recipe's cleanup scripts). Returns what was done, one line per
/// action, for the build log.
pub fn enforce(root: &Path) -> Result<Vec<String>, InvariantError> {
    if fs::canonicalize(root).is_ok_and(|p| p == Path::new("/")) {
        return Err(InvariantError::HostRoot(root.to_path_buf()));
    }
    let mut tree = Tree {
        root: RootDir::open(root).map_err(io_err("open", ""))?,
        done: Vec::new(),
    };
    let t = &mut tree;

    // Per-instance identity: generated at first boot (ssh-keygen -A, systemd).
    for name in t.list(golden::HOST_KEY_DIR)? {
        if name.starts_with(golden::HOST_KEY_PREFIX) {
            t.remove(&format!("{}/{name}", golden::HOST_KEY_DIR))?;
        }
    }
    match t.kind(golden::MACHINE_ID)? {
        Some(SFlag::S_IFREG) => t.truncate(golden::MACHINE_ID)?,
        _ => {
            t.remove(golden::MACHINE_ID)?;
            t.write(golden::MACHINE_ID, b"", 0o444)?;
        }
    }
    if t.exists(golden::DBUS_MACHINE_ID)? {
        t.link(golden::DBUS_MACHINE_ID, golden::DBUS_MACHINE_ID_TARGET)?;
    }

    for secret in INSTANCE_SECRETS {
        t.remove(secret)?;
    }

    // apt: lists and caches are stale the day the image ships.
    let lists = golden::APT_LISTS;
    for name in t.list(lists)? {
        match name.as_str() {
            golden::APT_LISTS_LOCK => {}
            // Directories apt (and dpkg, for partial/) own: kept, with their modes, emptied.
            "partial" | "auxfiles" => t.empty_contents(&format!("{lists}/{name}"))?,
            _ => t.remove(&format!("{lists}/{name}"))?,
        }
    }
    let cache = golden::APT_CACHE;
    for name in t.list(cache)? {
        if name.ends_with(".bin") {
            t.remove(&format!("{cache}/{name}"))?;
        }
    }
    for name in t.list(&format!("{cache}/archives"))? {
        if name.ends_with(".deb") {
            t.remove(&format!("{cache}/archives/{name}"))?;
        }
    }
    t.empty_contents(&format!("{cache}/archives/partial"))?;

    // ldconfig's auxiliary cache records inode numbers and ctimes of the build's filesystem:
    // host state that changes the bytes of every build. ldconfig rebuilds it when needed.
    t.remove("var/cache/ldconfig/aux-cache")?;

    // Scratch space: empty, with the modes systemd-tmpfiles would give.
    for &(dir, mode) in golden::SCRATCH_DIRS {
        t.empty_dir(dir, mode)?;
    }

    clean_logs(t, golden::LOG_DIR)?;

    // The build host's name and resolvers must not leak.
    t.write(golden::HOSTNAME, golden::NEUTRAL_HOSTNAME, 0o644)?;
    match t.kind(golden::RESOLV_CONF)? {
        Some(SFlag::S_IFLNK) => {}
        _ if t.exists("usr/lib/systemd/systemd-resolved")? => {
            t.link(golden::RESOLV_CONF, golden::RESOLVED_STUB_LINK)?
        }
        Some(_) => t.write(golden::RESOLV_CONF, b"", 0o644)?,
        None => {}
    }

    t.remove(golden::POLICY_RC_D)?;

    let mut homes = vec!["root".to_string()];
    homes.extend(t.list("home")?.into_iter().map(|h| format!("home/{h}")));
    for home in &homes {
        if t.kind(home)? == Some(SFlag::S_IFDIR) {
            for file in HISTORY_FILES {
                t.remove(&format!("{home}/{file}"))?;
            }
        }
    }
    t.remove(golden::ROOT_SSH)?;

    Ok(tree.done)
}

/// Truncate every log under `dir`; remove rotated/compressed logs and journal files (an
/// emptied compressed file or journal would be corrupt, and no package ships them).
fn clean_logs(t: &mut Tree, dir: &str) -> Result<(), InvariantError> {
    for name in t.list(dir)? {
        let rel = format!("{dir}/{name}");
        let Some(kind) = t.kind(&rel)? else {
            continue;
        };
        if kind == SFlag::S_IFDIR {
            clean_logs(t, &rel)?;
        } else if kind == SFlag::S_IFREG {
            let rotated = [
                ".gz",
                ".xz",
                ".zst",
                ".bz2",
                ".old",
                ".journal",
                ".journal~",
            ]
            .iter()
            .any(|s| name.ends_with(s))
                || name
                    .rsplit_once('.')
                    .is_some_and(|(_, n)| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
            if rotated {
                t.remove(&rel)?;
            } else {
                t.truncate(&rel)?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;
    use std::os::unix::fs::{PermissionsExt, symlink};

    fn put(root: &Path, rel: &str, contents: &str) {
        let p = root.join(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, contents).unwrap();
    }

    fn dirty_tree() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let r = dir.path();
        for d in [
            "bin",
            "usr/sbin",
            "usr/lib/systemd",
            "var/tmp",
            "home/alice",
            "run/lock",
        ] {
            fs::create_dir_all(r.join(d)).unwrap();
        }
        put(r, "etc/ssh/ssh_host_ed25519_key", "secret");
        put(r, "etc/ssh/ssh_host_ed25519_key.pub", "public");
        put(
            r,
            "etc/ssh/sshd_config",
            "Include /etc/ssh/sshd_config.d/*.conf\n",
        );
        put(r, "etc/machine-id", "0123456789abcdef0123456789abcdef\n");
        put(
            r,
            "var/lib/dbus/machine-id",
            "0123456789abcdef0123456789abcdef\n",
        );
        put(
            r,
            "var/lib/apt/lists/archive.ubuntu.com_ubuntu_dists_noble_InRelease",
            "x",
        );
        put(r, "var/lib/apt/lists/lock", "");
        put(r, "var/lib/apt/lists/partial/half", "x");
        put(r, "var/lib/apt/lists/auxfiles/x", "x");
        fs::set_permissions(
            r.join("var/lib/apt/lists/auxfiles"),
            fs::Permissions::from_mode(0o755),
        )
        .unwrap();
        put(r, "var/cache/apt/pkgcache.bin", "x");
        put(r, "var/cache/apt/archives/bash_5.2_amd64.deb", "x");
        put(r, "var/cache/apt/archives/lock", "");
        put(r, "tmp/build.sock", "x");
        put(r, "var/tmp/x/y", "x");
        put(r, "run/lock/z", "x");
        put(r, "var/log/dpkg.log", "2026 install bash");
        put(r, "var/log/apt/history.log", "Start-Date");
        put(r, "var/log/apt/eipp.log.xz", "xz");
        put(r, "var/log/syslog.1", "old");
        put(r, "etc/hostname", "buildhost\n");
        put(
            r,
            "etc/resolv.conf",
            "nameserver 10.0.0.2\nsearch corp.example\n",
        );
        put(r, "usr/lib/systemd/systemd-resolved", "");
        put(r, "usr/sbin/policy-rc.d", "#!/bin/sh\nexit 101\n");
        put(r, "root/.bash_history", "ls");
        put(r, "root/.ssh/authorized_keys", "ssh-ed25519 AAAA");
        put(r, "home/alice/.python_history", "1+1");
        put(r, "root/.profile", "keep me");
        put(r, "var/lib/systemd/random-seed", "entropy");
        fs::set_permissions(r.join("tmp"), fs::Permissions::from_mode(0o755)).unwrap();
        dir
    }

    #[test]
    fn cleans_a_dirty_tree_and_is_idempotent() {
        let dir = dirty_tree();
        let r = dir.path();
        let done = enforce(r).unwrap();
        assert!(
            done.contains(&"removed /etc/ssh/ssh_host_ed25519_key".to_string()),
            "{done:?}"
        );
        assert!(!r.join("etc/ssh/ssh_host_ed25519_key.pub").exists());
        assert!(r.join("etc/ssh/sshd_config").exists());
        assert_eq!(fs::metadata(r.join("etc/machine-id")).unwrap().len(), 0);
        assert_eq!(
            fs::read_link(r.join("var/lib/dbus/machine-id")).unwrap(),
            Path::new("/etc/machine-id")
        );
        let lists: Vec<_> = fs::read_dir(r.join("var/lib/apt/lists"))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(lists.len(), 3, "{lists:?}"); // lock, and empty partial/ and auxfiles/
        let aux = fs::symlink_metadata(r.join("var/lib/apt/lists/auxfiles")).unwrap();
        assert_eq!(aux.mode() & 0o7777, 0o755, "apt's directory keeps its mode");
        assert!(r.join("var/lib/apt/lists/lock").exists());
        assert_eq!(
            fs::read_dir(r.join("var/lib/apt/lists/partial"))
                .unwrap()
                .count(),
            0
        );
        assert!(!r.join("var/cache/apt/pkgcache.bin").exists());
        assert!(!r.join("var/cache/apt/archives/bash_5.2_amd64.deb").exists());
        assert!(r.join("var/cache/apt/archives/lock").exists());
        for (d, mode) in [("tmp", 0o1777), ("var/tmp", 0o1777), ("run", 0o755)] {
            let m = fs::symlink_metadata(r.join(d)).unwrap();
            assert!(m.is_dir());
            assert_eq!(m.mode() & 0o7777, mode, "{d}");
            assert_eq!(fs::read_dir(r.join(d)).unwrap().count(), 0, "{d}");
        }
        assert_eq!(fs::metadata(r.join("var/log/dpkg.log")).unwrap().len(), 0);
        assert_eq!(
            fs::metadata(r.join("var/log/apt/history.log"))
                .unwrap()
                .len(),
            0
        );
        assert!(!r.join("var/log/apt/eipp.log.xz").exists());
        assert!(!r.join("var/log/syslog.1").exists());
        assert_eq!(
            fs::read_to_string(r.join("etc/hostname")).unwrap(),
            "localhost\n"
        );
        assert_eq!(
            fs::read_link(r.join("etc/resolv.conf")).unwrap(),
            Path::new("../run/systemd/resolve/stub-resolv.conf")
        );
        assert!(!r.join("usr/sbin/policy-rc.d").exists());
        assert!(!r.join("root/.bash_history").exists());
        assert!(!r.join("root/.ssh").exists());
        assert!(!r.join("home/alice/.python_history").exists());
        assert_eq!(
            fs::read_to_string(r.join("root/.profile")).unwrap(),
            "keep me"
        );

        assert_eq!(
            enforce(r).unwrap(),
            Vec::<String>::new(),
            "second run must do nothing"
        );
    }

    #[test]
    fn keeps_the_distributions_resolv_conf_symlink_and_truncates_without_resolved() {
        let dir = tempfile::tempdir().unwrap();
        let r = dir.path();
        put(r, "etc/hostname", "localhost\n");
        symlink("../run/resolvconf/resolv.conf", r.join("etc/resolv.conf")).unwrap();
        enforce(r).unwrap();
        assert_eq!(
            fs::read_link(r.join("etc/resolv.conf")).unwrap(),
            Path::new("../run/resolvconf/resolv.conf")
        );
        fs::remove_file(r.join("etc/resolv.conf")).unwrap();
        put(r, "etc/resolv.conf", "nameserver 192.168.1.1\n");
        enforce(r).unwrap();
        assert_eq!(fs::metadata(r.join("etc/resolv.conf")).unwrap().len(), 0);
    }

    #[test]
    fn never_follows_a_symlink_out_of_the_tree() {
        let outside = tempfile::tempdir().unwrap();
        put(outside.path(), "precious", "keep");
        put(outside.path(), "ssh_host_rsa_key", "host's own key");
        let dir = tempfile::tempdir().unwrap();
        let r = dir.path();
        fs::create_dir_all(r.join("etc")).unwrap();
        symlink(outside.path(), r.join("etc/ssh")).unwrap();
        let err = enforce(r).unwrap_err();
        assert!(
            matches!(err, InvariantError::UnexpectedType { .. }),
            "{err}"
        );
        assert!(outside.path().join("ssh_host_rsa_key").exists());

        // A symlinked /tmp is replaced by nothing but reported; its target is untouched.
        fs::remove_file(r.join("etc/ssh")).unwrap();
        symlink(outside.path(), r.join("tmp")).unwrap();
        assert!(enforce(r).is_err());
        assert!(outside.path().join("precious").exists());
        // /root/.ssh as a symlink: the link goes, the target stays.
        fs::remove_file(r.join("tmp")).unwrap();
        fs::create_dir_all(r.join("root")).unwrap();
        symlink(outside.path(), r.join("root/.ssh")).unwrap();
        enforce(r).unwrap();
        assert!(fs::symlink_metadata(r.join("root/.ssh")).is_err());
        assert!(outside.path().join("precious").exists());
    }

    #[test]
    fn refuses_the_host_root() {
        assert!(matches!(
            enforce(Path::new("/")),
            Err(InvariantError::HostRoot(_))
        ));
    }
}
