//! The export stage: a deterministic tar stream of a root filesystem, and its compression.
//!
//! The tar is written inside the namespace (so owners are the image's own 0..65535) to a
//! pipe; the parent compresses it straight into the artifact file. Nothing buffers the whole
//! image: file contents are streamed, the compressors hold a few blocks at a time.
//!
//! This module must never write into the tree it exports, follow a symlink out of it, or
//! emit a device node.
pub mod compress;
pub mod tar;

use std::path::PathBuf;

use self::compress::Compression;

/// Everything that can go wrong while writing or compressing the image stream.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// A file or directory of the tree could not be read (stat, open, read, readlink, xattrs).
    #[error("cannot read {path} while exporting the root filesystem: {source}")]
    ReadTree {
        /// The file on disk.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The tar stream could not be written (a closed pipe, a full disk).
    #[error("cannot write the tar stream: {0}")]
    WriteStream(#[source] std::io::Error),
    /// An owner outside the image's id range: the namespace mapping or the tree is wrong.
    #[error(
        "{path} is owned by {uid}:{gid}, outside 0..65535: an image may only use the ids a \
         container maps (check the user-namespace mapping of the build)"
    )]
    OwnerOutOfRange {
        /// The file on disk.
        path: PathBuf,
        /// Its uid.
        uid: u32,
        /// Its gid.
        gid: u32,
    },
    /// A regular file changed size or identity while it was streamed.
    #[error("{path} changed while it was exported (expected {expected} bytes, {found})")]
    FileChanged {
        /// The file on disk.
        path: PathBuf,
        /// The size recorded in the tar header.
        expected: u64,
        /// What was seen instead.
        found: String,
    },
    /// A directory on another filesystem (e.g. `/proc` still mounted) inside the tree.
    #[error(
        "{path} is a mount point (another filesystem inside the tree): unmount it before \
         exporting; the image must not contain it"
    )]
    MountPoint {
        /// The directory on disk.
        path: PathBuf,
    },
    /// An extended attribute whose name is not UTF-8 cannot be written as a PAX record.
    #[error("{path} has an extended attribute whose name is not UTF-8 ({name:?})")]
    XattrName {
        /// The file on disk.
        path: PathBuf,
        /// The attribute name, lossily decoded.
        name: String,
    },
    /// The build epoch does not fit a tar header (after the year 2242).
    #[error("build epoch {0} does not fit an 11-digit octal tar mtime")]
    EpochOutOfRange(i64),
    /// The uncompressed stream could not be read (the child's pipe).
    #[error("cannot read the tar stream to compress it: {0}")]
    ReadStream(#[source] std::io::Error),
    /// The compressor failed or could not write the artifact.
    #[error("{kind:?} compression failed: {message}")]
    Compress {
        /// Which compressor.
        kind: Compression,
        /// What it said.
        message: String,
    },
}
