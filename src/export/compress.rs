//! Compression of the tar stream: gzip (block-parallel, one valid gzip member stream with a
//! fixed header), zstd, xz or none.

use serde::{Deserialize, Serialize};

/// The artifact's compression.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    /// `.tar.gz` (Proxmox's format; the default).
    Gzip,
    /// `.tar.zst`.
    Zstd,
    /// `.tar.xz`.
    Xz,
    /// `.tar`.
    None,
}

impl Compression {
    /// The file extension, without a leading dot: `tar.gz`, `tar.zst`, `tar.xz`, `tar`.
    pub fn extension(self) -> &'static str {
        match self {
            Compression::Gzip => "tar.gz",
            Compression::Zstd => "tar.zst",
            Compression::Xz => "tar.xz",
            Compression::None => "tar",
        }
    }
}
