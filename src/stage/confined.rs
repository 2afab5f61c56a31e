//! Paths inside the staging root, resolved as the chroot would resolve them
//! (`openat2(RESOLVE_IN_ROOT)`): an absolute symlink such as `etc -> /host` or `..` climbing
//! out lands inside the root, never on the host. Every file the stage itself creates, renames
//! or removes inside the root goes through here.

use std::io::Write;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::PathBuf;

use nix::errno::Errno;
use nix::fcntl::{OFlag, OpenHow, ResolveFlag};
use nix::sys::stat::Mode;

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

/// Open the staging root itself.
pub fn open_root(root: &std::path::Path) -> Result<OwnedFd, ConfinedError> {
    nix::fcntl::open(
        root,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(err("opening", ""))
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
    nix::fcntl::openat(
        dir.as_fd(),
        name,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(err("opening", shown_as))
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
        let sub = nix::fcntl::openat(
            dir.as_fd(),
            name,
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(err("opening", shown_as))?;
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
