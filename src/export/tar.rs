//! The deterministic tar writer: one assembled root filesystem in, one POSIX (ustar + PAX) tar
//! stream out, the same bytes for the same tree on any filesystem, in any timezone, under any
//! umask.
//!
//! What the stream looks like (the golden-image contract, see DESIGN.md "The output"):
//! - names relative to the root without `./` (`bin`, `boot/`, `etc/passwd`), directories with
//!   a trailing `/`, no entry for the root itself;
//! - depth-first, a directory before its contents, the entries of each directory sorted
//!   bytewise by name (GNU `tar --sort=name`); note this is not a global sort of full paths
//!   (`a/`, `a/b`, `a-b` — `-` sorts before `/`);
//! - numeric owners (uid/gid 0..65535, user and group names empty), mode bits with
//!   setuid/setgid/sticky, mtime = min(mtime, epoch), no atime/ctime;
//! - PAX extended headers for names and link targets over 100 bytes, sizes of 8 GiB and more,
//!   and `SCHILY.xattr.<name>` for `security.*`, `user.*` and `trusted.*` xattrs;
//! - hard links (same device and inode) as link entries to the first path written;
//! - `dev/` as an empty directory (synthesised if the tree has none); device nodes anywhere
//!   else are skipped, sockets are skipped (tar has no socket type, GNU tar skips them too),
//!   fifos are kept (some packages ship them).
//!
//! POSIX ACLs (`system.posix_acl_*`) are not exported: dpkg never creates them, so an ACL in
//! the tree came from the build host, and a golden image must not carry host state. They are
//! counted in [`TarStats::skipped_acls`] so the caller can warn.
//!
//! The headers are written here on purpose: the `tar` crate's builder would pick GNU long-name
//! records and its deterministic mode fixes a 2006 mtime and drops owners.
//!
//! This module only reads the tree; it never follows a symlink (every stat is an `lstat`,
//! every open uses `O_NOFOLLOW`) and never descends into another filesystem.

use std::collections::HashMap;
use std::ffi::OsString;
use std::fs::{File, Metadata};
use std::io::{self, BufWriter, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tar::{EntryType, Header};

use super::ExportError;
use crate::epoch::BuildEpoch;

const BLOCK: usize = 512;
/// Largest value of an 11-digit octal ustar field (size, mtime).
const MAX_OCTAL_11: u64 = 0o777_7777_7777;
/// Largest uid/gid an image may use.
const MAX_ID: u32 = 65535;
/// The name of the PAX extended-header pseudo entries (as Python's `tarfile` writes them).
const PAX_HEADER_NAME: &[u8] = b"././@PaxHeader";
/// Xattr namespaces exported as `SCHILY.xattr.*`.
const EXPORTED_XATTR_PREFIXES: [&str; 3] = ["security.", "user.", "trusted."];
/// overlayfs bookkeeping: meaningless outside the overlay that wrote it.
const OVERLAY_XATTR_PREFIX: &str = "trusted.overlay.";
/// Copy buffer for file contents.
const COPY_BUFFER: usize = 256 * 1024;

/// What went into the stream, for the build log and the manifest.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TarStats {
    /// Entries written (every kind, hard links included, PAX headers not counted).
    pub entries: u64,
    /// Directory entries.
    pub directories: u64,
    /// Regular file entries.
    pub regular_files: u64,
    /// Symbolic link entries.
    pub symlinks: u64,
    /// Hard link entries (second and later paths of one inode).
    pub hard_links: u64,
    /// Fifo entries.
    pub fifos: u64,
    /// Bytes of regular file contents.
    pub content_bytes: u64,
    /// Bytes of the whole tar stream, end blocks included.
    pub archive_bytes: u64,
    /// Character and block devices left out (anywhere in the tree).
    pub skipped_devices: u64,
    /// Sockets left out.
    pub skipped_sockets: u64,
    /// Files whose POSIX ACLs were not exported.
    pub skipped_acls: u64,
    /// Whether `dev/` was absent from the tree and written as a fresh empty directory.
    pub synthesized_dev: bool,
}

/// Writes the tree at `root` as a deterministic tar stream to `out` (see the module doc for
/// the exact format), clamping every mtime to `epoch`.
///
/// Runs inside the build's user namespace, as its root, so that owners and
/// `security.capability` read as the image's own. File contents are streamed; memory use does
/// not grow with the size of the tree. `out` is flushed, not closed.
pub fn write_rootfs_tar(
    root: &Path,
    out: &mut dyn Write,
    epoch: BuildEpoch,
) -> Result<TarStats, ExportError> {
    let clamp = u64::try_from(epoch.0)
        .ok()
        .filter(|e| *e <= MAX_OCTAL_11)
        .ok_or(ExportError::EpochOutOfRange(epoch.0))?;
    let root_meta = std::fs::symlink_metadata(root).map_err(|source| ExportError::ReadTree {
        path: root.to_path_buf(),
        source,
    })?;
    if !root_meta.is_dir() {
        return Err(ExportError::ReadTree {
            path: root.to_path_buf(),
            source: io::Error::new(io::ErrorKind::NotADirectory, "the root is not a directory"),
        });
    }
    let mut writer = TarWriter {
        out: CountingWriter {
            inner: BufWriter::with_capacity(COPY_BUFFER, out),
            count: 0,
        },
        clamp,
        root_dev: root_meta.dev(),
        first_paths: HashMap::new(),
        buffer: vec![0; COPY_BUFFER],
        stats: TarStats::default(),
    };
    writer.write_tree(root)?;
    writer.finish()
}

/// Counts the bytes that pass through.
struct CountingWriter<W: Write> {
    inner: W,
    count: u64,
}

impl<W: Write> Write for CountingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.count += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// One directory being walked: its entries, sorted, not yet written.
struct Frame {
    path: PathBuf,
    name: Vec<u8>,
    entries: std::vec::IntoIter<OsString>,
}

/// What kind of entry a file becomes.
enum Kind {
    Directory,
    Regular,
    Symlink,
    Fifo,
}

struct TarWriter<'a> {
    out: CountingWriter<BufWriter<&'a mut dyn Write>>,
    clamp: u64,
    root_dev: u64,
    /// (device, inode) → the archive name the inode was first written under.
    first_paths: HashMap<(u64, u64), Vec<u8>>,
    buffer: Vec<u8>,
    stats: TarStats,
}

impl TarWriter<'_> {
    fn write_tree(&mut self, root: &Path) -> Result<(), ExportError> {
        let mut root_entries = sorted_entries(root)?;
        if !root_entries.iter().any(|n| n.as_bytes() == b"dev") {
            let at = root_entries.partition_point(|n| n.as_bytes() < b"dev".as_slice());
            root_entries.insert(at, OsString::from("dev"));
        }
        let mut stack = vec![Frame {
            path: root.to_path_buf(),
            name: Vec::new(),
            entries: root_entries.into_iter(),
        }];
        while let Some(frame) = stack.last_mut() {
            let Some(entry) = frame.entries.next() else {
                stack.pop();
                continue;
            };
            let path = frame.path.join(&entry);
            let mut name = frame.name.clone();
            if !name.is_empty() {
                name.push(b'/');
            }
            name.extend_from_slice(entry.as_bytes());
            let top_level = frame.name.is_empty();

            let meta = match std::fs::symlink_metadata(&path) {
                Ok(meta) => meta,
                Err(e) if top_level && name == b"dev" && e.kind() == io::ErrorKind::NotFound => {
                    self.write_synthetic_dev()?;
                    continue;
                }
                Err(source) => return Err(ExportError::ReadTree { path, source }),
            };
            let is_dir = meta.file_type().is_dir();
            if is_dir && meta.dev() != self.root_dev {
                return Err(ExportError::MountPoint { path });
            }
            self.write_entry(&path, &name, &meta)?;
            // `dev/` stays empty: LXC and Proxmox provide the devices.
            if is_dir && !(top_level && name == b"dev") {
                let entries = sorted_entries(&path)?;
                stack.push(Frame {
                    path,
                    name,
                    entries: entries.into_iter(),
                });
            }
        }
        Ok(())
    }

    fn write_synthetic_dev(&mut self) -> Result<(), ExportError> {
        let mut header = self.header(EntryType::Directory, 0o755, 0, 0, self.clamp);
        set_name(&mut header, b"dev/");
        self.stats.synthesized_dev = true;
        self.stats.directories += 1;
        self.stats.entries += 1;
        self.write_header(&header)
    }

    fn write_entry(
        &mut self,
        path: &Path,
        name: &[u8],
        meta: &Metadata,
    ) -> Result<(), ExportError> {
        let file_type = meta.file_type();
        let kind = if file_type.is_dir() {
            Kind::Directory
        } else if file_type.is_file() {
            Kind::Regular
        } else if file_type.is_symlink() {
            Kind::Symlink
        } else if file_type.is_fifo() {
            Kind::Fifo
        } else if file_type.is_socket() {
            self.stats.skipped_sockets += 1;
            return Ok(());
        } else {
            // Character and block devices: never in the image.
            self.stats.skipped_devices += 1;
            return Ok(());
        };
        if meta.uid() > MAX_ID || meta.gid() > MAX_ID {
            return Err(ExportError::OwnerOutOfRange {
                path: path.to_path_buf(),
                uid: meta.uid(),
                gid: meta.gid(),
            });
        }
        let mtime = u64::try_from(meta.mtime()).unwrap_or(0).min(self.clamp);
        let mode = meta.mode() & 0o7777;
        let mut pax = PaxRecords::default();

        if !matches!(kind, Kind::Directory) && meta.nlink() > 1 {
            let key = (meta.dev(), meta.ino());
            if let Some(first) = self.first_paths.get(&key) {
                let first = first.clone();
                let mut header = self.header(EntryType::Link, mode, meta.uid(), meta.gid(), mtime);
                pax.name(&mut header, name);
                pax.link_name(&mut header, &first);
                self.stats.hard_links += 1;
                self.stats.entries += 1;
                self.write_pax(&pax, mtime)?;
                return self.write_header(&header);
            }
            self.first_paths.insert(key, name.to_vec());
        }

        let xattrs = read_xattrs(path, &mut self.stats)?;
        match kind {
            Kind::Directory => {
                let mut dir_name = name.to_vec();
                dir_name.push(b'/');
                let mut header =
                    self.header(EntryType::Directory, mode, meta.uid(), meta.gid(), mtime);
                pax.name(&mut header, &dir_name);
                pax.xattrs(xattrs);
                self.stats.directories += 1;
                self.stats.entries += 1;
                self.write_pax(&pax, mtime)?;
                self.write_header(&header)
            }
            Kind::Symlink => {
                let target = std::fs::read_link(path).map_err(|source| ExportError::ReadTree {
                    path: path.to_path_buf(),
                    source,
                })?;
                let mut header =
                    self.header(EntryType::Symlink, 0o777, meta.uid(), meta.gid(), mtime);
                pax.name(&mut header, name);
                pax.link_name(&mut header, target.as_os_str().as_bytes());
                pax.xattrs(xattrs);
                self.stats.symlinks += 1;
                self.stats.entries += 1;
                self.write_pax(&pax, mtime)?;
                self.write_header(&header)
            }
            Kind::Fifo => {
                let mut header = self.header(EntryType::Fifo, mode, meta.uid(), meta.gid(), mtime);
                pax.name(&mut header, name);
                pax.xattrs(xattrs);
                self.stats.fifos += 1;
                self.stats.entries += 1;
                self.write_pax(&pax, mtime)?;
                self.write_header(&header)
            }
            Kind::Regular => {
                let size = meta.len();
                let mut header =
                    self.header(EntryType::Regular, mode, meta.uid(), meta.gid(), mtime);
                pax.name(&mut header, name);
                pax.size(&mut header, size);
                pax.xattrs(xattrs);
                // Open before writing any header, so an unreadable file leaves no half entry.
                let file = open_regular(path, meta)?;
                self.stats.regular_files += 1;
                self.stats.entries += 1;
                self.stats.content_bytes += size;
                self.write_pax(&pax, mtime)?;
                self.write_header(&header)?;
                self.copy_contents(file, path, size)
            }
        }
    }

    /// A ustar header with the fields every entry shares; names are set by the caller.
    fn header(&self, kind: EntryType, mode: u32, uid: u32, gid: u32, mtime: u64) -> Header {
        let mut header = Header::new_ustar();
        header.set_entry_type(kind);
        header.set_mode(mode);
        header.set_uid(u64::from(uid));
        header.set_gid(u64::from(gid));
        header.set_mtime(mtime);
        header.set_size(0);
        header
    }

    fn write_header(&mut self, header: &Header) -> Result<(), ExportError> {
        let mut header = header.clone();
        header.set_cksum();
        self.out
            .write_all(header.as_bytes())
            .map_err(ExportError::WriteStream)
    }

    /// The PAX extended header for the next entry, if it needs one.
    fn write_pax(&mut self, pax: &PaxRecords, mtime: u64) -> Result<(), ExportError> {
        if pax.data.is_empty() {
            return Ok(());
        }
        let mut header = self.header(EntryType::XHeader, 0o644, 0, 0, mtime);
        set_name(&mut header, PAX_HEADER_NAME);
        header.set_size(pax.data.len() as u64);
        self.write_header(&header)?;
        self.out
            .write_all(&pax.data)
            .map_err(ExportError::WriteStream)?;
        self.pad(pax.data.len() as u64)
    }

    fn pad(&mut self, len: u64) -> Result<(), ExportError> {
        let rest = (BLOCK - (len % BLOCK as u64) as usize) % BLOCK;
        self.out
            .write_all(&[0; BLOCK][..rest])
            .map_err(ExportError::WriteStream)
    }

    /// Streams exactly `size` bytes of `file`; a file that shrank or grew is an error, since
    /// the header already promised `size`.
    fn copy_contents(&mut self, mut file: File, path: &Path, size: u64) -> Result<(), ExportError> {
        let mut left = size;
        let read_error = |source| ExportError::ReadTree {
            path: path.to_path_buf(),
            source,
        };
        while left > 0 {
            let want = self
                .buffer
                .len()
                .min(usize::try_from(left).unwrap_or(usize::MAX));
            let n = match file.read(&mut self.buffer[..want]) {
                Ok(0) => {
                    return Err(ExportError::FileChanged {
                        path: path.to_path_buf(),
                        expected: size,
                        found: format!("it ended after {} bytes", size - left),
                    });
                }
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(read_error(e)),
            };
            self.out
                .write_all(&self.buffer[..n])
                .map_err(ExportError::WriteStream)?;
            left -= n as u64;
        }
        let mut probe = [0u8; 1];
        match file.read(&mut probe) {
            Ok(0) => {}
            Ok(_) => {
                return Err(ExportError::FileChanged {
                    path: path.to_path_buf(),
                    expected: size,
                    found: "it grew while being read".to_string(),
                });
            }
            Err(e) => return Err(read_error(e)),
        }
        self.pad(size)
    }

    fn finish(mut self) -> Result<TarStats, ExportError> {
        self.out
            .write_all(&[0; 2 * BLOCK])
            .map_err(ExportError::WriteStream)?;
        self.out.flush().map_err(ExportError::WriteStream)?;
        self.stats.archive_bytes = self.out.count;
        Ok(self.stats)
    }
}

/// The names in `dir`, sorted bytewise.
fn sorted_entries(dir: &Path) -> Result<Vec<OsString>, ExportError> {
    let read_error = |source| ExportError::ReadTree {
        path: dir.to_path_buf(),
        source,
    };
    let mut names = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(read_error)? {
        names.push(entry.map_err(read_error)?.file_name());
    }
    names.sort_unstable_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
    Ok(names)
}

/// Opens a regular file without following symlinks and checks it is the inode just stat'ed.
fn open_regular(path: &Path, meta: &Metadata) -> Result<File, ExportError> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_NOCTTY)
        .open(path)
        .map_err(|source| ExportError::ReadTree {
            path: path.to_path_buf(),
            source,
        })?;
    let opened = file.metadata().map_err(|source| ExportError::ReadTree {
        path: path.to_path_buf(),
        source,
    })?;
    if opened.ino() != meta.ino() || opened.dev() != meta.dev() {
        return Err(ExportError::FileChanged {
            path: path.to_path_buf(),
            expected: meta.len(),
            found: "it was replaced by another file".to_string(),
        });
    }
    Ok(file)
}

/// The exported xattrs of `path` (not following symlinks), sorted by name.
fn read_xattrs(path: &Path, stats: &mut TarStats) -> Result<Vec<(String, Vec<u8>)>, ExportError> {
    let read_error = |source| ExportError::ReadTree {
        path: path.to_path_buf(),
        source,
    };
    let names = match xattr::list(path) {
        Ok(names) => names,
        Err(e) if e.raw_os_error() == Some(nix::libc::ENOTSUP) => return Ok(Vec::new()),
        Err(e) => return Err(read_error(e)),
    };
    let mut xattrs = Vec::new();
    let mut has_acl = false;
    for name in names {
        let Some(text) = name.to_str() else {
            if exported_xattr(name.as_bytes()) {
                return Err(ExportError::XattrName {
                    path: path.to_path_buf(),
                    name: name.to_string_lossy().into_owned(),
                });
            }
            continue;
        };
        if text.starts_with("system.posix_acl_") {
            has_acl = true;
            continue;
        }
        if !exported_xattr(text.as_bytes()) {
            continue;
        }
        // Gone between list and get: it is not part of the tree any more.
        if let Some(value) = xattr::get(path, &name).map_err(read_error)? {
            xattrs.push((text.to_string(), value));
        }
    }
    if has_acl {
        stats.skipped_acls += 1;
    }
    xattrs.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    Ok(xattrs)
}

fn exported_xattr(name: &[u8]) -> bool {
    EXPORTED_XATTR_PREFIXES
        .iter()
        .any(|p| name.starts_with(p.as_bytes()))
        && !name.starts_with(OVERLAY_XATTR_PREFIX.as_bytes())
}

/// Writes `name` into the ustar name field; callers guarantee it fits.
fn set_name(header: &mut Header, name: &[u8]) {
    if let Some(ustar) = header.as_ustar_mut() {
        ustar.name = [0; 100];
        ustar.name[..name.len()].copy_from_slice(name);
    }
}

/// The body of one PAX extended header (`<len> <key>=<value>\n` records), in a fixed order:
/// `path`, `linkpath`, `size`, then the xattrs by name.
///
/// Names are bytes, written as they are. A name of up to 100 bytes goes in the ustar field
/// even when it is not ASCII: every reader takes raw bytes there, while a non-ASCII `path`
/// record makes bsdtar fail under the C locale. Longer names need a `path` record; one that is
/// not UTF-8 is written raw, as GNU tar does (`hdrcharset=BINARY` would be the POSIX way, but
/// GNU tar 1.34 warns about it, and GNU tar is what Proxmox extracts with).
#[derive(Default)]
struct PaxRecords {
    data: Vec<u8>,
}

impl PaxRecords {
    fn record(&mut self, key: &str, value: &[u8]) {
        // The length counts itself: find the digit count that is consistent.
        let rest = 1 + key.len() + 1 + value.len() + 1;
        let mut len = rest + 1;
        while len != rest + len.to_string().len() {
            len = rest + len.to_string().len();
        }
        self.data.extend_from_slice(len.to_string().as_bytes());
        self.data.push(b' ');
        self.data.extend_from_slice(key.as_bytes());
        self.data.push(b'=');
        self.data.extend_from_slice(value);
        self.data.push(b'\n');
    }

    /// A name that fits the 100-byte ustar field goes there; a longer one goes in a `path`
    /// record, with an ASCII stand-in in the header for readers without PAX.
    fn name(&mut self, header: &mut Header, name: &[u8]) {
        if fits_ustar(name) {
            set_name(header, name);
        } else {
            self.record("path", name);
            set_name(header, &ascii_stand_in(name));
        }
    }

    fn link_name(&mut self, header: &mut Header, target: &[u8]) {
        let stored = if fits_ustar(target) {
            target.to_vec()
        } else {
            self.record("linkpath", target);
            ascii_stand_in(target)
        };
        if let Some(ustar) = header.as_ustar_mut() {
            ustar.linkname = [0; 100];
            ustar.linkname[..stored.len()].copy_from_slice(&stored);
        }
    }

    fn size(&mut self, header: &mut Header, size: u64) {
        if size > MAX_OCTAL_11 {
            self.record("size", size.to_string().as_bytes());
            header.set_size(0);
        } else {
            header.set_size(size);
        }
    }

    fn xattrs(&mut self, xattrs: Vec<(String, Vec<u8>)>) {
        for (name, value) in xattrs {
            self.record(&format!("SCHILY.xattr.{name}"), &value);
        }
    }
}

fn fits_ustar(name: &[u8]) -> bool {
    name.len() <= 100 && !name.contains(&0)
}

/// The first 100 bytes of `name` with non-ASCII bytes replaced, for the header's name field.
fn ascii_stand_in(name: &[u8]) -> Vec<u8> {
    name.iter()
        .take(100)
        .map(|b| if b.is_ascii() && *b != 0 { *b } else { b'_' })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pax_record_length_counts_itself() {
        let mut pax = PaxRecords::default();
        pax.record("path", b"abc");
        // "12 path=abc\n" is 12 bytes.
        assert_eq!(pax.data, b"12 path=abc\n");
        let mut pax = PaxRecords::default();
        let value = vec![b'x'; 90];
        pax.record("path", &value);
        // 1+4+1+90+1 = 97 plus 2 digits = 99 (the shortest consistent length).
        assert!(pax.data.starts_with(b"99 path="));
        assert_eq!(pax.data.len(), 99);
        let mut pax = PaxRecords::default();
        // 98 + 2 = 100 needs 3 digits: 101.
        let value = vec![b'x'; 91];
        pax.record("path", &value);
        assert!(pax.data.starts_with(b"101 path="));
        assert_eq!(pax.data.len(), 101);
    }

    #[test]
    fn long_names_and_huge_sizes_go_to_pax_records() {
        let mut pax = PaxRecords::default();
        let mut header = Header::new_ustar();
        pax.size(&mut header, MAX_OCTAL_11 + 1);
        let short = "caf\u{e9}".as_bytes();
        pax.name(&mut header, short);
        // A short name, even non-ASCII, stays in the ustar field.
        assert_eq!(
            &header.as_ustar().map(|u| u.name).unwrap_or([0; 100])[..5],
            short
        );
        let long = [b"x/".as_slice(), &[0xe9; 120]].concat();
        pax.name(&mut header, &long);
        let text = String::from_utf8_lossy(&pax.data).into_owned();
        assert!(text.starts_with("19 size=8589934592\n"), "{text}");
        assert!(
            pax.data
                .ends_with(&[b"path=".as_slice(), &long, b"\n"].concat())
        );
        let stand_in = header.as_ustar().map(|u| u.name).unwrap_or([0; 100]);
        assert_eq!(&stand_in[..4], b"x/__");
        assert!(stand_in.is_ascii());
    }
}
