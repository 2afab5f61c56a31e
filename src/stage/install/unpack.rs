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
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag, OpenHow, ResolveFlag, openat, openat2};
use nix::sys::stat::{FileStat, Mode, SFlag, UtimensatFlags, fchmod, fstatat, futimens, mkdirat};
use nix::sys::stat::{mknodat, utimensat};
use nix::sys::time::TimeSpec;
use nix::unistd::{Gid, Uid, UnlinkatFlags, fchown, fchownat, linkat, symlinkat, unlinkat};

use super::deb::{DebError, DebMember, with_member};

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

/// A directory used as `/` for every path operation: nothing resolved through it can leave it.
#[derive(Debug)]
pub struct RootDir {
    fd: OwnedFd,
    path: PathBuf,
}

/// Split a member or in-root path into normal components; `None`-like errors say why it is
/// refused. `./` prefixes and empty or `.` components are dropped.
fn components(raw: &[u8]) -> Result<Vec<&[u8]>, &'static str> {
    if raw.starts_with(b"/") {
        return Err("absolute path");
    }
    if raw.contains(&0) {
        return Err("NUL byte in path");
    }
    let mut out = Vec::new();
    for c in raw.split(|b| *b == b'/') {
        match c {
            b"" | b"." => {}
            b".." => return Err("\"..\" path component"),
            c => out.push(c),
        }
    }
    Ok(out)
}

fn join(components: &[&[u8]]) -> Vec<u8> {
    components.join(&b'/')
}

fn file_type(st: &FileStat) -> SFlag {
    SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT
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

fn other(msg: impl Into<String>) -> io::Error {
    io::Error::other(msg.into())
}

impl RootDir {
    /// Open `root` (a directory we created) as the confinement root.
    pub fn open(root: &Path) -> io::Result<Self> {
        let fd = nix::fcntl::open(
            root,
            OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )?;
        Ok(RootDir {
            fd,
            path: root.to_path_buf(),
        })
    }

    /// The host path of the root.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Resolve `rel` (components already checked) to a directory, confined to the root.
    fn open_dir_at(&self, rel: &[&[u8]], flags: OFlag) -> Result<OwnedFd, Errno> {
        let path = if rel.is_empty() {
            b".".to_vec()
        } else {
            join(rel)
        };
        let how = OpenHow::new()
            .flags(flags | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC)
            .resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS);
        openat2(self.fd.as_fd(), OsStr::from_bytes(&path), how)
    }

    /// The directory `rel` as an `O_PATH` descriptor, creating missing components (0755,
    /// owned by the caller) when `create` is set.
    fn dir(&self, rel: &[&[u8]], create: bool) -> io::Result<OwnedFd> {
        match self.open_dir_at(rel, OFlag::O_PATH) {
            Ok(fd) => return Ok(fd),
            Err(Errno::ENOENT) if create && !rel.is_empty() => {}
            Err(e) => return Err(e.into()),
        }
        let mut parent = self.open_dir_at(&[], OFlag::O_PATH)?;
        for i in 0..rel.len() {
            match self.open_dir_at(&rel[..=i], OFlag::O_PATH) {
                Ok(fd) => parent = fd,
                Err(Errno::ENOENT) => {
                    mkdirat(
                        parent.as_fd(),
                        OsStr::from_bytes(rel[i]),
                        Mode::from_bits_truncate(0o755),
                    )?;
                    parent = self.open_dir_at(&rel[..=i], OFlag::O_PATH)?;
                }
                Err(e) => return Err(e.into()),
            }
        }
        Ok(parent)
    }

    /// Parent directory (created if needed) and last component of an in-root path.
    fn parent_of<'a>(&self, rel: &[&'a [u8]]) -> io::Result<(OwnedFd, &'a OsStr)> {
        let (name, parent) = rel
            .split_last()
            .ok_or_else(|| other("the root itself is not a file"))?;
        Ok((self.dir(parent, true)?, OsStr::from_bytes(name)))
    }

    fn checked(rel: &str) -> io::Result<Vec<&[u8]>> {
        components(rel.as_bytes()).map_err(|why| other(format!("{rel:?}: {why}")))
    }

    /// `mkdir -p` inside the root (missing parents get 0755). The last component gets `mode`
    /// if it is created here, or always with `force_mode`.
    pub fn create_dir_all(&self, rel: &str, mode: u32, force_mode: bool) -> io::Result<()> {
        let parts = Self::checked(rel)?;
        let (parent, name) = self.parent_of(&parts)?;
        match mkdirat(parent.as_fd(), name, Mode::from_bits_truncate(0o700)) {
            Ok(()) => {}
            Err(Errno::EEXIST) if !force_mode => {
                // Still check that it is a directory (or a symlink to one, inside the root).
                self.open_dir_at(&parts, OFlag::O_PATH)?;
                return Ok(());
            }
            Err(Errno::EEXIST) => {}
            Err(e) => return Err(e.into()),
        }
        let dir = open_subdir(&parent, name)?;
        fchmod(dir.as_fd(), Mode::from_bits_truncate(mode))?;
        Ok(())
    }

    /// Write `contents` to the file `rel` inside the root (replacing a non-directory), mode
    /// `mode`, owned by the caller.
    pub fn write_file(&self, rel: &str, contents: &[u8], mode: u32) -> io::Result<()> {
        let mut file = self.create_file(rel, mode)?;
        file.write_all(contents)?;
        Ok(())
    }

    /// Create (replacing a non-directory) the file `rel` inside the root and return it open
    /// for writing.
    pub fn create_file(&self, rel: &str, mode: u32) -> io::Result<File> {
        let parts = Self::checked(rel)?;
        let (parent, name) = self.parent_of(&parts)?;
        clear_non_dir(&parent, name)?;
        let fd = openat(
            parent.as_fd(),
            name,
            OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_WRONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::from_bits_truncate(0o600),
        )?;
        fchmod(fd.as_fd(), Mode::from_bits_truncate(mode))?;
        Ok(File::from(fd))
    }

    /// Whether `rel` exists inside the root (without following its last component).
    pub fn exists(&self, rel: &str) -> io::Result<bool> {
        Ok(self.stat(rel)?.is_some())
    }

    /// `lstat` of `rel`, confined; `None` if it does not exist.
    fn stat(&self, rel: &str) -> io::Result<Option<FileStat>> {
        let parts = Self::checked(rel)?;
        let Some((name, parent)) = parts.split_last() else {
            return Ok(None);
        };
        let parent = match self.dir(parent, false) {
            Ok(fd) => fd,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        match fstatat(
            parent.as_fd(),
            OsStr::from_bytes(name),
            AtFlags::AT_SYMLINK_NOFOLLOW,
        ) {
            Ok(st) => Ok(Some(st)),
            Err(Errno::ENOENT) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Whether `rel` is a regular file (not following its last component).
    pub fn is_regular_file(&self, rel: &str) -> io::Result<bool> {
        Ok(self
            .stat(rel)?
            .is_some_and(|st| file_type(&st) == SFlag::S_IFREG))
    }

    /// Remove the non-directory `rel` inside the root; a missing file is not an error.
    pub fn remove_file(&self, rel: &str) -> io::Result<()> {
        let parts = Self::checked(rel)?;
        let Some((name, parent)) = parts.split_last() else {
            return Err(other("cannot remove the root"));
        };
        let parent = match self.dir(parent, false) {
            Ok(fd) => fd,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e),
        };
        match unlinkat(
            parent.as_fd(),
            OsStr::from_bytes(name),
            UnlinkatFlags::NoRemoveDir,
        ) {
            Ok(()) | Err(Errno::ENOENT) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Remove the files `names` from the directory `rel`, then the directory itself (which
    /// must then be empty). Missing entries are not an error.
    pub fn remove_dir_with(&self, rel: &str, names: &[String]) -> io::Result<()> {
        let parts = Self::checked(rel)?;
        let Some((name, parent_parts)) = parts.split_last() else {
            return Err(other("cannot remove the root"));
        };
        let parent = match self.dir(parent_parts, false) {
            Ok(fd) => fd,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e),
        };
        let name = OsStr::from_bytes(name);
        match fstatat(parent.as_fd(), name, AtFlags::AT_SYMLINK_NOFOLLOW) {
            Err(Errno::ENOENT) => return Ok(()),
            Err(e) => return Err(e.into()),
            Ok(st) if file_type(&st) != SFlag::S_IFDIR => {
                return Err(other(format!("{rel} is not a directory")));
            }
            Ok(_) => {}
        }
        let dir = openat(
            parent.as_fd(),
            name,
            OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::empty(),
        )?;
        for file in names {
            let file = Self::checked(file)?;
            let [file] = file.as_slice() else {
                return Err(other("not a plain file name"));
            };
            match unlinkat(
                dir.as_fd(),
                OsStr::from_bytes(file),
                UnlinkatFlags::NoRemoveDir,
            ) {
                Ok(()) | Err(Errno::ENOENT) => {}
                Err(e) => return Err(e.into()),
            }
        }
        unlinkat(parent.as_fd(), name, UnlinkatFlags::RemoveDir)?;
        Ok(())
    }

    /// Rename `from` to `to` inside the root (last components not followed).
    pub fn rename(&self, from: &str, to: &str) -> io::Result<()> {
        let from_parts = Self::checked(from)?;
        let to_parts = Self::checked(to)?;
        let (from_dir, from_name) = self.parent_of(&from_parts)?;
        let (to_dir, to_name) = self.parent_of(&to_parts)?;
        nix::fcntl::renameat(from_dir.as_fd(), from_name, to_dir.as_fd(), to_name)?;
        Ok(())
    }
}

/// Make room for a new non-directory called `name` in `parent`: unlink whatever non-directory
/// is there; a directory in the way is an error (GNU tar would only remove an empty one).
fn clear_non_dir(parent: &OwnedFd, name: &OsStr) -> io::Result<()> {
    match fstatat(parent.as_fd(), name, AtFlags::AT_SYMLINK_NOFOLLOW) {
        Err(Errno::ENOENT) => Ok(()),
        Err(e) => Err(e.into()),
        Ok(st) if file_type(&st) == SFlag::S_IFDIR => {
            match unlinkat(parent.as_fd(), name, UnlinkatFlags::RemoveDir) {
                Ok(()) => Ok(()),
                Err(_) => Err(other("a non-empty directory is in the way")),
            }
        }
        Ok(_) => Ok(unlinkat(parent.as_fd(), name, UnlinkatFlags::NoRemoveDir)?),
    }
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

/// How many bytes a package's members may add up to: twice its `Installed-Size` (KiB, which
/// dpkg rounds per file) plus 1 MiB; `None` when the control file gives no size (the stream
/// is then bounded only by the disk).
fn installed_size_budget(deb: &Path) -> Option<u64> {
    let control = super::deb::read_control(deb).ok()?;
    let kib: u64 = control
        .lines()
        .find_map(|l| l.strip_prefix("Installed-Size:"))?
        .trim()
        .parse()
        .ok()?;
    Some(kib.saturating_mul(2048).saturating_add(1 << 20))
}

/// The directory `name` in `parent`, opened for reading, never through a symlink.
fn open_subdir(parent: &impl AsFd, name: &OsStr) -> nix::Result<OwnedFd> {
    openat(
        parent.as_fd(),
        name,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
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
