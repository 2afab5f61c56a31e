//! The one confined-root API: paths inside the staging root, resolved as the image itself
//! would resolve them (`openat2(RESOLVE_IN_ROOT)`): an absolute symlink such as `etc -> /host`
//! or `..` climbing out lands inside the root, never on the host; the last component is
//! handled with `*at` calls that never follow it. Every file the stage itself creates,
//! renames, reads or removes inside the root goes through here: [`RootDir`] (the root's
//! descriptor, with path-level operations used by the extraction and dpkg set-up) and the
//! descriptor-level functions (`open_in`, `ensure_dir_in`, `*_at`) used by the environment's
//! set-up and teardown.

use std::ffi::OsStr;
use std::fs::File;
use std::io::{self, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag, OpenHow, ResolveFlag, openat, openat2};
use nix::sys::stat::{FileStat, Mode, SFlag, fchmod, fstatat, mkdirat};
use nix::unistd::{UnlinkatFlags, unlinkat};

/// An error on a path inside the root, worded with the in-image path.
#[derive(Debug, thiserror::Error)]
#[error("{action} /{path} in the staging root: {errno}")]
pub struct ConfinedError {
    /// What was attempted (`creating`, `opening`, …).
    pub action: &'static str,
    /// The path relative to the root.
    pub path: String,
    /// The cause.
    pub errno: Errno,
}

fn err<'a>(action: &'static str, path: &'a str) -> impl FnOnce(Errno) -> ConfinedError + 'a {
    move |errno| ConfinedError {
        action,
        path: path.trim_start_matches('/').to_string(),
        errno,
    }
}

/// Open the staging root itself (a [`RootDir`], the one handle on it).
pub fn open_root(root: &Path) -> Result<RootDir, ConfinedError> {
    RootDir::open(root).map_err(|e| err("opening", "")(io_errno(&e)))
}

/// The `/proc/self/fd/N` path of `fd`, usable as a mount target or source.
pub fn fd_path(fd: &impl AsRawFd) -> PathBuf {
    PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()))
}

/// Open `rel` (a path inside the root) with `flags`, symlinks resolved inside the root.
pub fn open_in(root: &impl AsFd, rel: &str, flags: OFlag) -> Result<OwnedFd, ConfinedError> {
    let rel = rel.trim_start_matches('/');
    let how = OpenHow::new()
        .flags(flags | OFlag::O_CLOEXEC)
        .resolve(ResolveFlag::RESOLVE_IN_ROOT);
    nix::fcntl::openat2(root.as_fd(), if rel.is_empty() { "." } else { rel }, how)
        .map_err(err("opening", rel))
}

/// Open directory `rel`, creating missing components with `mode` (after umask). Every
/// directory created is appended to `created` (as `a`, `a/b`, … relative to the root).
pub fn ensure_dir_in(
    root: &impl AsFd,
    rel: &str,
    mode: u32,
    created: &mut Vec<String>,
) -> Result<OwnedFd, ConfinedError> {
    let rel = rel.trim_matches('/');
    let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY;
    match open_in(root, rel, flags) {
        Ok(fd) => return Ok(fd),
        Err(e) if e.errno == Errno::ENOENT && !rel.is_empty() => {}
        Err(e) => return Err(e),
    }
    let (parent, name) = match rel.rsplit_once('/') {
        Some((p, n)) => (p, n),
        None => ("", rel),
    };
    let parent_fd = ensure_dir_in(root, parent, mode, created)?;
    match nix::sys::stat::mkdirat(&parent_fd, name, Mode::from_bits_truncate(mode)) {
        Ok(()) => {
            created.push(rel.to_string());
            let fd = open_in(root, rel, flags)?;
            nix::sys::stat::fchmod(&fd, Mode::from_bits_truncate(mode))
                .map_err(err("setting the mode of", rel))?;
            Ok(fd)
        }
        Err(Errno::EEXIST) => open_in(root, rel, flags),
        Err(e) => Err(err("creating", rel)(e)),
    }
}

/// Create a new file `name` in directory `dir` (never following or replacing anything) with
/// `contents` and `mode`.
pub fn create_file_at(
    dir: &impl AsFd,
    name: &str,
    mode: u32,
    contents: &[u8],
    shown_as: &str,
) -> Result<(), ConfinedError> {
    let fd = nix::fcntl::openat(
        dir.as_fd(),
        name,
        OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::from_bits_truncate(mode),
    )
    .map_err(err("creating", shown_as))?;
    nix::sys::stat::fchmod(&fd, Mode::from_bits_truncate(mode))
        .map_err(err("setting the mode of", shown_as))?;
    let mut file = std::fs::File::from(fd);
    file.write_all(contents)
        .map_err(|e| err("writing", shown_as)(io_errno(&e)))
}

/// Remove the non-directory `name` from `dir` (a symlink is removed, not followed).
pub fn unlink_at(dir: &impl AsFd, name: &str, shown_as: &str) -> Result<(), ConfinedError> {
    nix::unistd::unlinkat(dir.as_fd(), name, nix::unistd::UnlinkatFlags::NoRemoveDir)
        .map_err(err("removing", shown_as))
}

/// The errno behind an I/O error (EIO when there is none).
pub fn io_errno(e: &std::io::Error) -> Errno {
    Errno::from_raw(e.raw_os_error().unwrap_or(nix::libc::EIO))
}

/// The names in the directory `dir` (without `.` and `..`).
pub fn list_at(dir: &impl AsFd, shown_as: &str) -> Result<Vec<std::ffi::OsString>, ConfinedError> {
    use std::os::unix::ffi::OsStrExt;
    let fd = nix::fcntl::openat(
        dir.as_fd(),
        ".",
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(err("listing", shown_as))?;
    let mut listing = nix::dir::Dir::from_fd(fd).map_err(err("listing", shown_as))?;
    let mut names = Vec::new();
    for entry in listing.iter() {
        let entry = entry.map_err(err("listing", shown_as))?;
        let name = entry.file_name().to_bytes();
        if name != b"." && name != b".." {
            names.push(std::ffi::OsStr::from_bytes(name).to_os_string());
        }
    }
    Ok(names)
}

/// Open the directory `name` in `dir` itself, never through a symlink (`ELOOP`/`ENOTDIR`
/// when `name` is one).
pub fn open_dir_at(dir: &impl AsFd, name: &str, shown_as: &str) -> Result<OwnedFd, ConfinedError> {
    open_subdir(dir, OsStr::new(name)).map_err(err("opening", shown_as))
}

/// The contents of the file `name` in `dir`, never through a symlink.
pub fn read_at(dir: &impl AsFd, name: &str, shown_as: &str) -> Result<Vec<u8>, ConfinedError> {
    use std::io::Read;
    let fd = nix::fcntl::openat(
        dir.as_fd(),
        name,
        OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(err("opening", shown_as))?;
    let mut out = Vec::new();
    std::fs::File::from(fd)
        .read_to_end(&mut out)
        .map_err(|e| err("reading", shown_as)(io_errno(&e)))?;
    Ok(out)
}

/// Remove `name` from `dir` and, if it is a directory, everything in it, through directory
/// descriptors only: a symlink anywhere below is removed, never followed.
pub fn remove_all_at(
    dir: &impl AsFd,
    name: &std::ffi::OsStr,
    shown_as: &str,
) -> Result<(), ConfinedError> {
    use nix::unistd::UnlinkatFlags;
    let st = match nix::sys::stat::fstatat(
        dir.as_fd(),
        name,
        nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
    ) {
        Ok(st) => st,
        Err(Errno::ENOENT) => return Ok(()),
        Err(e) => return Err(err("inspecting", shown_as)(e)),
    };
    if st.st_mode & nix::libc::S_IFMT == nix::libc::S_IFDIR {
        let sub = open_subdir(dir, name).map_err(err("opening", shown_as))?;
        for child in list_at(&sub, shown_as)? {
            let shown = format!("{shown_as}/{}", child.to_string_lossy());
            remove_all_at(&sub, &child, &shown)?;
        }
        nix::unistd::unlinkat(dir.as_fd(), name, UnlinkatFlags::RemoveDir)
            .map_err(err("removing", shown_as))
    } else {
        nix::unistd::unlinkat(dir.as_fd(), name, UnlinkatFlags::NoRemoveDir)
            .map_err(err("removing", shown_as))
    }
}

/// Threads [`remove_tree`] uses: removing is waiting, not computing (see there).
const REMOVE_THREADS: usize = 16;
/// How many directory levels [`remove_tree`] opens itself to split the work.
const REMOVE_SPLIT_DEPTH: usize = 3;

/// One piece of work for [`remove_tree`]: `name` in the directory `parent`.
struct Doomed {
    parent: std::sync::Arc<OwnedFd>,
    name: std::ffi::OsString,
    shown: String,
}

/// Remove `name` from `dir` and everything below it, as [`remove_all_at`] does (descriptors
/// only, a symlink anywhere is removed, never followed), with several threads on separate
/// subtrees.
///
/// Why threads: on ext4 mounted with `discard` (as on the development machine), freeing a
/// file's blocks when its inode is evicted issues a *synchronous* discard to the disk, so
/// removing a built tree whose data has already been written back is a long series of waits
/// (measured: 8–12 s for the golden tree on a loaded 2-core VM, the supervisor using 0.2 s of
/// CPU). Waits overlap; the first levels are opened here and every entry below them is handed
/// to a pool. The first error is returned after every other entry has been tried.
pub fn remove_tree(dir: &impl AsFd, name: &OsStr, shown_as: &str) -> Result<(), ConfinedError> {
    use std::sync::Arc;
    let st = match fstatat(dir.as_fd(), name, AtFlags::AT_SYMLINK_NOFOLLOW) {
        Ok(st) => st,
        Err(Errno::ENOENT) => return Ok(()),
        Err(e) => return Err(err("inspecting", shown_as)(e)),
    };
    if file_type(&st) != SFlag::S_IFDIR {
        return remove_all_at(dir, name, shown_as);
    }
    let top = Arc::new(
        dir.as_fd()
            .try_clone_to_owned()
            .map_err(|e| err("opening", shown_as)(io_errno(&e)))?,
    );
    // Directories opened here, parents first: removed in reverse once their contents are gone.
    let mut skeleton: Vec<Doomed> = Vec::new();
    let mut frontier = vec![Doomed {
        parent: top,
        name: name.to_os_string(),
        shown: shown_as.to_string(),
    }];
    let mut work: Vec<Doomed> = Vec::new();
    for _ in 0..REMOVE_SPLIT_DEPTH {
        let mut next = Vec::new();
        for d in frontier {
            let sub = Arc::new(open_subdir(&*d.parent, &d.name).map_err(err("opening", &d.shown))?);
            for child in list_at(&*sub, &d.shown)? {
                let shown = format!("{}/{}", d.shown, child.to_string_lossy());
                let is_dir = fstatat(sub.as_fd(), child.as_os_str(), AtFlags::AT_SYMLINK_NOFOLLOW)
                    .map(|st| file_type(&st) == SFlag::S_IFDIR)
                    .map_err(err("inspecting", &shown))?;
                let doomed = Doomed {
                    parent: Arc::clone(&sub),
                    name: child,
                    shown,
                };
                if is_dir {
                    next.push(doomed)
                } else {
                    work.push(doomed)
                }
            }
            skeleton.push(d);
        }
        frontier = next;
    }
    work.extend(frontier);
    let next_item = std::sync::atomic::AtomicUsize::new(0);
    let first_error: std::sync::Mutex<Option<ConfinedError>> = std::sync::Mutex::new(None);
    std::thread::scope(|scope| {
        for _ in 0..REMOVE_THREADS.min(work.len()) {
            scope.spawn(|| {
                loop {
                    let i = next_item.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let Some(d) = work.get(i) else { break };
                    if let Err(e) = remove_all_at(&*d.parent, &d.name, &d.shown)
                        && let Ok(mut slot) = first_error.lock()
                    {
                        slot.get_or_insert(e);
                    }
                }
            });
        }
    });
    if let Some(e) = first_error.into_inner().ok().flatten() {
        return Err(e);
    }
    for d in skeleton.iter().rev() {
        unlinkat(
            d.parent.as_fd(),
            d.name.as_os_str(),
            UnlinkatFlags::RemoveDir,
        )
        .map_err(err("removing", &d.shown))?;
    }
    Ok(())
}

/// A directory used as `/` for every path operation: nothing resolved through it can leave it.
#[derive(Debug)]
pub struct RootDir {
    fd: OwnedFd,
    path: PathBuf,
}

/// Split a member or in-root path into normal components; `None`-like errors say why it is
/// refused. `./` prefixes and empty or `.` components are dropped.
pub(crate) fn components(raw: &[u8]) -> Result<Vec<&[u8]>, &'static str> {
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

pub(crate) fn join(components: &[&[u8]]) -> Vec<u8> {
    components.join(&b'/')
}

pub(crate) fn file_type(st: &FileStat) -> SFlag {
    SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT
}

pub(crate) fn other(msg: impl Into<String>) -> io::Error {
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
    pub(crate) fn open_dir_at(&self, rel: &[&[u8]], flags: OFlag) -> Result<OwnedFd, Errno> {
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
    pub(crate) fn dir(&self, rel: &[&[u8]], create: bool) -> io::Result<OwnedFd> {
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
    pub(crate) fn parent_of<'a>(&self, rel: &[&'a [u8]]) -> io::Result<(OwnedFd, &'a OsStr)> {
        let (name, parent) = rel
            .split_last()
            .ok_or_else(|| other("the root itself is not a file"))?;
        Ok((self.dir(parent, true)?, OsStr::from_bytes(name)))
    }

    pub(crate) fn checked(rel: &str) -> io::Result<Vec<&[u8]>> {
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
    pub(crate) fn stat(&self, rel: &str) -> io::Result<Option<FileStat>> {
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

    /// Whether `rel` is a directory (not following its last component).
    pub fn is_dir(&self, rel: &str) -> io::Result<bool> {
        Ok(self
            .stat(rel)?
            .is_some_and(|st| file_type(&st) == SFlag::S_IFDIR))
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
pub(crate) fn clear_non_dir(parent: &OwnedFd, name: &OsStr) -> io::Result<()> {
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

/// The directory `name` in `parent`, opened for reading, never through a symlink.
pub(crate) fn open_subdir(parent: &impl AsFd, name: &OsStr) -> nix::Result<OwnedFd> {
    openat(
        parent.as_fd(),
        name,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
}

impl AsFd for RootDir {
    fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

#[cfg(test)]
mod remove_tree_tests {
    use super::*;

    #[test]
    fn remove_tree_removes_everything_and_never_follows_a_symlink() {
        let d = tempfile::tempdir().unwrap();
        let outside = d.path().join("outside");
        std::fs::create_dir(&outside).unwrap();
        std::fs::write(outside.join("marker"), b"keep").unwrap();
        let tree = d.path().join("tree");
        // Deeper than the split depth, wider than the thread count, symlinks at every level.
        for i in 0..40 {
            let dir = tree.join(format!("a{i}/b/c/d/e"));
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(dir.join("f"), b"x").unwrap();
            std::os::unix::fs::symlink(&outside, tree.join(format!("a{i}/b/link"))).unwrap();
            std::os::unix::fs::symlink(&outside, dir.join("link")).unwrap();
        }
        std::os::unix::fs::symlink(&outside, tree.join("top-link")).unwrap();
        std::fs::write(tree.join("top-file"), b"x").unwrap();
        let parent = File::open(d.path()).unwrap();
        remove_tree(&parent, OsStr::new("tree"), "tree").unwrap();
        assert!(std::fs::symlink_metadata(&tree).is_err());
        assert_eq!(std::fs::read(outside.join("marker")).unwrap(), b"keep");
        // Nothing there is fine.
        remove_tree(&parent, OsStr::new("tree"), "tree").unwrap();
    }
}
