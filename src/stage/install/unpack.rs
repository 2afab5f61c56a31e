//! Safe extraction of a package's `data.tar` into the staging root, as
//! `dpkg-deb --fsys-tarfile | tar -x --keep-directory-symlink` would do it inside a chroot.
//!
//! Owns: regular files, directories, symlinks, hard links, FIFOs; modes (setuid/setgid/sticky
//! included), numeric owners, mtimes, and extended attributes from PAX `SCHILY.xattr.*` records
//! (`security.capability` above all).
//!
//! Must never: write outside the root. Every path is resolved with `openat2(RESOLVE_IN_ROOT)`
//! from a descriptor of the root, so symlinks (`bin → usr/bin`, or a hostile `evil → /etc`)
//! resolve *inside* the root exactly as they would after `chroot`; the last component is always
//! handled with `*at` calls that do not follow it. Members with absolute paths or `..`
//! components are refused outright, naming the package and the member. Device nodes are not
//! created (they cannot be inside a user namespace); dpkg recreates whatever it needs later.
//! Owners outside 0..=65535 are refused (no container maps them), and so is a package whose
//! members add up to more than twice its `Installed-Size` plus 1 MiB (an expansion bomb).

use std::ffi::OsStr;
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag, openat};
use nix::sys::stat::{Mode, SFlag, UtimensatFlags, fchmod, fstatat, futimens, mkdirat};
use nix::sys::stat::{mknodat, utimensat};
use nix::sys::time::TimeSpec;
use nix::unistd::{Gid, Uid, UnlinkatFlags, fchown, fchownat, linkat, symlinkat, unlinkat};

use crate::deb::{DebError, DebMember, with_member};
use crate::stage::confined::{RootDir, clear_non_dir, components, file_type, open_subdir, other};

/// A package member that could not be extracted safely.
#[derive(Debug, thiserror::Error)]
pub enum UnpackError {
    /// The member would escape the root or is otherwise refused.
    #[error("package {package}: refusing member {member:?}: {reason}")]
    Refused {
        /// The package being extracted.
        package: String,
        /// The member path as written in the archive.
        member: String,
        /// Why it was refused.
        reason: String,
    },
    /// A filesystem operation failed while extracting a member.
    #[error("package {package}: cannot extract {member:?}: {source}")]
    Io {
        /// The package being extracted.
        package: String,
        /// The member path as written in the archive (or `data.tar` for stream errors).
        member: String,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// The `.deb` itself could not be read.
    #[error("package {package}: {source}")]
    Deb {
        /// The package being extracted.
        package: String,
        /// What was wrong with the file.
        #[source]
        source: DebError,
    },
}

/// Owner, mode, mtime and xattrs of one member.
struct Meta {
    uid: u32,
    gid: u32,
    mode: u32,
    mtime: i64,
    xattrs: Vec<(Vec<u8>, Vec<u8>)>,
}

impl Meta {
    /// chown first: it clears setuid bits and `security.capability`, so mode and xattrs after.
    fn apply_to_fd(&self, fd: &OwnedFd, set_mtime: bool) -> io::Result<()> {
        fchown(
            fd.as_fd(),
            Some(Uid::from_raw(self.uid)),
            Some(Gid::from_raw(self.gid)),
        )?;
        fchmod(fd.as_fd(), Mode::from_bits_truncate(self.mode & 0o7777))?;
        if !self.xattrs.is_empty() {
            let file = File::from(fd.try_clone()?);
            for (name, value) in &self.xattrs {
                xattr::FileExt::set_xattr(&file, OsStr::from_bytes(name), value).map_err(|e| {
                    other(format!(
                        "cannot set xattr {}: {e}",
                        String::from_utf8_lossy(name)
                    ))
                })?;
            }
        }
        if set_mtime {
            futimens(
                fd.as_fd(),
                &TimeSpec::UTIME_OMIT,
                &TimeSpec::new(self.mtime, 0),
            )?;
        }
        Ok(())
    }
}

/// Extracts one package's `data.tar` into a [`RootDir`].
struct Extraction<'a> {
    root: &'a RootDir,
    /// Directory mtimes are set last, as tar does: extracting into a directory changes it.
    dir_mtimes: Vec<(Vec<Vec<u8>>, i64)>,
    skipped: Vec<String>,
}

impl Extraction<'_> {
    fn entry(&mut self, entry: &mut tar::Entry<'_, &mut dyn Read>) -> io::Result<()> {
        let raw = entry.path_bytes().into_owned();
        let parts =
            components(&raw).map_err(|why| io::Error::new(io::ErrorKind::InvalidData, why))?;
        let header = entry.header();
        let kind = header.entry_type();
        let mut xattrs = Vec::new();
        if let Some(pax) = entry.pax_extensions()? {
            for ext in pax {
                let ext = ext?;
                if let Some(name) = ext.key_bytes().strip_prefix(b"SCHILY.xattr.") {
                    xattrs.push((name.to_vec(), ext.value_bytes().to_vec()));
                }
            }
        }
        let header = entry.header();
        let meta = Meta {
            uid: image_id("owner", header.uid()?)?,
            gid: image_id("group", header.gid()?)?,
            mode: header.mode()?,
            mtime: i64::try_from(header.mtime()?).map_err(|_| other("mtime out of range"))?,
            xattrs,
        };

        if parts.is_empty() {
            // "./": the root itself.
            if kind != tar::EntryType::Directory {
                return Err(other("the root entry is not a directory"));
            }
            let fd = self.root.open_dir_at(&[], OFlag::O_RDONLY)?;
            meta.apply_to_fd(&fd, false)?;
            self.dir_mtimes.push((Vec::new(), meta.mtime));
            return Ok(());
        }
        let (parent, name) = self.root.parent_of(&parts)?;
        match kind {
            tar::EntryType::Directory => {
                match fstatat(parent.as_fd(), name, AtFlags::AT_SYMLINK_NOFOLLOW) {
                    Ok(st) if file_type(&st) == SFlag::S_IFDIR => {
                        // A mount point the stage set up (/proc, /dev, /run…): the mounted
                        // filesystem is not ours to chown or chmod.
                        if st.st_dev != nix::sys::stat::fstat(parent.as_fd())?.st_dev {
                            self.skipped
                                .push(format!("{} (mount point)", String::from_utf8_lossy(&raw)));
                            return Ok(());
                        }
                    }
                    Ok(st) if file_type(&st) == SFlag::S_IFLNK => {
                        // --keep-directory-symlink: `bin → usr/bin` stays a symlink, as long
                        // as it resolves (inside the root) to a directory.
                        if self.root.open_dir_at(&parts, OFlag::O_PATH).is_ok() {
                            return Ok(());
                        }
                        unlinkat(parent.as_fd(), name, UnlinkatFlags::NoRemoveDir)?;
                        mkdirat(parent.as_fd(), name, Mode::from_bits_truncate(0o700))?;
                    }
                    Ok(_) => {
                        unlinkat(parent.as_fd(), name, UnlinkatFlags::NoRemoveDir)?;
                        mkdirat(parent.as_fd(), name, Mode::from_bits_truncate(0o700))?;
                    }
                    Err(Errno::ENOENT) => {
                        mkdirat(parent.as_fd(), name, Mode::from_bits_truncate(0o700))?
                    }
                    Err(e) => return Err(e.into()),
                }
                let fd = open_subdir(&parent, name)?;
                meta.apply_to_fd(&fd, false)?;
                self.dir_mtimes
                    .push((parts.iter().map(|p| p.to_vec()).collect(), meta.mtime));
            }
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                clear_non_dir(&parent, name)?;
                let fd = openat(
                    parent.as_fd(),
                    name,
                    OFlag::O_CREAT
                        | OFlag::O_EXCL
                        | OFlag::O_WRONLY
                        | OFlag::O_NOFOLLOW
                        | OFlag::O_CLOEXEC,
                    Mode::from_bits_truncate(0o600),
                )?;
                let mut file = File::from(fd);
                io::copy(entry, &mut file)?;
                meta.apply_to_fd(&file.into(), true)?;
            }
            tar::EntryType::Symlink => {
                let target = entry
                    .link_name_bytes()
                    .ok_or_else(|| other("symlink without a target"))?
                    .into_owned();
                clear_non_dir(&parent, name)?;
                // The target is stored as is: every later resolution is confined to the root.
                symlinkat(OsStr::from_bytes(&target), parent.as_fd(), name)?;
                fchownat(
                    parent.as_fd(),
                    name,
                    Some(Uid::from_raw(meta.uid)),
                    Some(Gid::from_raw(meta.gid)),
                    AtFlags::AT_SYMLINK_NOFOLLOW,
                )?;
                utimensat(
                    parent.as_fd(),
                    name,
                    &TimeSpec::UTIME_OMIT,
                    &TimeSpec::new(meta.mtime, 0),
                    UtimensatFlags::NoFollowSymlink,
                )?;
            }
            tar::EntryType::Link => {
                let target = entry
                    .link_name_bytes()
                    .ok_or_else(|| other("hard link without a target"))?
                    .into_owned();
                let target_parts = components(&target).map_err(|why| {
                    io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!(
                            "hard link target {:?}: {why}",
                            String::from_utf8_lossy(&target)
                        ),
                    )
                })?;
                let (target_name, target_dir) = target_parts
                    .split_last()
                    .ok_or_else(|| other("hard link to the root"))?;
                let target_dir = self.root.dir(target_dir, false)?;
                let target_name = OsStr::from_bytes(target_name);
                let st = fstatat(
                    target_dir.as_fd(),
                    target_name,
                    AtFlags::AT_SYMLINK_NOFOLLOW,
                )?;
                if file_type(&st) == SFlag::S_IFDIR {
                    return Err(other("hard link to a directory"));
                }
                clear_non_dir(&parent, name)?;
                // No AT_SYMLINK_FOLLOW: a link to a symlink links the symlink itself.
                linkat(
                    target_dir.as_fd(),
                    target_name,
                    parent.as_fd(),
                    name,
                    AtFlags::empty(),
                )?;
            }
            tar::EntryType::Fifo => {
                clear_non_dir(&parent, name)?;
                mknodat(
                    parent.as_fd(),
                    name,
                    SFlag::S_IFIFO,
                    Mode::from_bits_truncate(0o600),
                    0,
                )?;
                fchownat(
                    parent.as_fd(),
                    name,
                    Some(Uid::from_raw(meta.uid)),
                    Some(Gid::from_raw(meta.gid)),
                    AtFlags::AT_SYMLINK_NOFOLLOW,
                )?;
                nix::sys::stat::fchmodat(
                    parent.as_fd(),
                    name,
                    Mode::from_bits_truncate(meta.mode & 0o7777),
                    // We just created it as a FIFO: there is no symlink to follow.
                    nix::sys::stat::FchmodatFlags::FollowSymlink,
                )?;
            }
            tar::EntryType::Char | tar::EntryType::Block => {
                self.skipped
                    .push(String::from_utf8_lossy(&raw).into_owned());
            }
            other_kind => {
                return Err(other(format!("unsupported tar entry type {other_kind:?}")));
            }
        }
        Ok(())
    }

    fn finish(self) -> io::Result<Vec<String>> {
        for (parts, mtime) in self.dir_mtimes.iter().rev() {
            let parts: Vec<&[u8]> = parts.iter().map(|p| p.as_slice()).collect();
            let times = (TimeSpec::UTIME_OMIT, TimeSpec::new(*mtime, 0));
            match parts.split_last() {
                None => {
                    let fd = self.root.open_dir_at(&[], OFlag::O_RDONLY)?;
                    futimens(fd.as_fd(), &times.0, &times.1)?;
                }
                Some((name, parent)) => {
                    let parent = self.root.dir(parent, false)?;
                    utimensat(
                        parent.as_fd(),
                        OsStr::from_bytes(name),
                        &times.0,
                        &times.1,
                        UtimensatFlags::NoFollowSymlink,
                    )?;
                }
            }
        }
        Ok(self.skipped)
    }
}

/// Extract the tar stream `tar` (a package's `data.tar`) into `root`. Returns the members
/// that were skipped: device nodes, and directories that are mount points (left as they are).
pub fn extract_data_tar(
    root: &RootDir,
    package: &str,
    tar: &mut dyn Read,
) -> Result<Vec<String>, UnpackError> {
    extract_data_tar_within(root, package, tar, None)
}

/// [`extract_data_tar`], refusing the package once its members add up to more than `budget`
/// bytes (a `data.tar` that expands far beyond its `Installed-Size`).
pub fn extract_data_tar_within(
    root: &RootDir,
    package: &str,
    tar: &mut dyn Read,
    budget: Option<u64>,
) -> Result<Vec<String>, UnpackError> {
    let mut total: u64 = 0;
    let stream_err = |source| UnpackError::Io {
        package: package.to_string(),
        member: "data.tar".to_string(),
        source,
    };
    let mut archive = tar::Archive::new(tar);
    let mut extraction = Extraction {
        root,
        dir_mtimes: Vec::new(),
        skipped: Vec::new(),
    };
    for entry in archive.entries().map_err(stream_err)? {
        let mut entry = entry.map_err(stream_err)?;
        let member = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        total = total.saturating_add(entry.size());
        if let Some(budget) = budget
            && total > budget
        {
            return Err(UnpackError::Refused {
                package: package.to_string(),
                member,
                reason: format!(
                    "data.tar expands to more than {budget} bytes, far beyond its Installed-Size"
                ),
            });
        }
        extraction.entry(&mut entry).map_err(|source| {
            if source.kind() == io::ErrorKind::InvalidData {
                UnpackError::Refused {
                    package: package.to_string(),
                    member: member.clone(),
                    reason: source.to_string(),
                }
            } else {
                UnpackError::Io {
                    package: package.to_string(),
                    member: member.clone(),
                    source,
                }
            }
        })?;
    }
    extraction.finish().map_err(stream_err)
}

/// Extract the `data.tar` of the `.deb` at `deb` (package `package`) into `root`, as
/// `dpkg-deb --fsys-tarfile DEB | tar -C ROOT --keep-directory-symlink -x` would inside a
/// chroot. Returns the members that were skipped (device nodes, mount points).
pub fn extract_deb(root: &Path, package: &str, deb: &Path) -> Result<Vec<String>, UnpackError> {
    let root = RootDir::open(root).map_err(|source| UnpackError::Io {
        package: package.to_string(),
        member: root.display().to_string(),
        source,
    })?;
    let budget = installed_size_budget(deb);
    with_member(deb, DebMember::Data, |tar| {
        extract_data_tar_within(&root, package, tar, budget)
    })
    .map_err(|source| UnpackError::Deb {
        package: package.to_string(),
        source,
    })?
}

/// An owner or group id an image may carry: 0..=65535, what an unprivileged container maps
/// (a setuid file owned by uid 100000 would be a foreign owner on every host).
fn image_id(what: &str, id: u64) -> io::Result<u32> {
    u32::try_from(id)
        .ok()
        .filter(|&v| v <= 65535)
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{what} {id} is outside 0..=65535, the ids an unprivileged container maps"),
            )
        })
}

/// How many bytes a package's members may add up to: twice its `Installed-Size` (KiB, which
/// dpkg rounds per file) plus 1 MiB; `None` when the control file gives no size (the stream
/// is then bounded only by the disk).
fn installed_size_budget(deb: &Path) -> Option<u64> {
    let control = crate::deb::read_control(deb).ok()?;
    let kib: u64 = control
        .lines()
        .find_map(|l| l.strip_prefix("Installed-Size:"))?
        .trim()
        .parse()
        .ok()?;
    Some(kib.saturating_mul(2048).saturating_add(1 << 20))
}

#[cfg(test)]
mod tests {
    use super::components;

    #[test]
    fn member_paths_are_checked() {
        assert_eq!(
            components(b"./usr/bin/ls").unwrap(),
            vec![&b"usr"[..], b"bin", b"ls"]
        );
        assert_eq!(components(b"./").unwrap(), Vec::<&[u8]>::new());
        assert!(components(b"/etc/passwd").is_err());
        assert!(components(b"./usr/../../etc").is_err());
        assert!(components(b"..").is_err());
    }
}
