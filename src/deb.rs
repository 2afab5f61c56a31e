//! Reading a binary `.deb`: the outer `ar` archive, `debian-binary`, and the compressed
//! `control.tar*` / `data.tar*` members (none, gzip, xz, zstd).
//!
//! This module only reads and decompresses; it never writes to the filesystem. What a member
//! contains is untrusted: extraction rules live in [`crate::stage::install::unpack`]. It sits
//! outside the pipeline's stages because `fetch` (the identity check), `stage` (extraction)
//! and the SBOM all read `.deb`s, and no stage may reach into a later one.

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};

/// A `.deb` that could not be read, with the file and what was wrong.
#[derive(Debug, thiserror::Error)]
pub enum DebError {
    /// The file could not be opened or read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The `.deb`.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The file is not a well-formed binary package.
    #[error("{path} is not a valid .deb: {reason}")]
    Malformed {
        /// The `.deb`.
        path: PathBuf,
        /// What was expected and what was found.
        reason: String,
    },
}

/// Which tarball of the package to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DebMember {
    /// `control.tar{,.gz,.xz,.zst}`: the control file and maintainer scripts.
    Control,
    /// `data.tar{,.gz,.xz,.zst}`: the files installed on the system.
    Data,
}

impl DebMember {
    fn prefix(self) -> &'static str {
        match self {
            DebMember::Control => "control.tar",
            DebMember::Data => "data.tar",
        }
    }
}

/// Open `deb`, check its format, and hand the decompressed tar stream of `member` to `read`.
///
/// The member order is checked as dpkg-deb does: `debian-binary` (version 2.x) first, then
/// `control.tar*`, then `data.tar*`; members starting with `_` are ignored.
pub fn with_member<T, E>(
    deb: &Path,
    member: DebMember,
    read: impl FnOnce(&mut dyn Read) -> Result<T, E>,
) -> Result<Result<T, E>, DebError> {
    let malformed = |reason: String| DebError::Malformed {
        path: deb.to_path_buf(),
        reason,
    };
    let io = |source| DebError::Io {
        path: deb.to_path_buf(),
        source,
    };
    let file = File::open(deb).map_err(io)?;
    let mut archive = ar::Archive::new(BufReader::new(file));
    let mut index = 0usize;
    let mut seen_control = false;
    while let Some(entry) = archive.next_entry() {
        let mut entry = entry.map_err(io)?;
        let name = String::from_utf8_lossy(entry.header().identifier())
            .trim_end_matches('/')
            .to_string();
        index += 1;
        if index == 1 {
            if name != "debian-binary" {
                return Err(malformed(format!(
                    "first member is {name:?}, expected \"debian-binary\""
                )));
            }
            let mut version = String::new();
            entry
                .by_ref()
                .take(64)
                .read_to_string(&mut version)
                .map_err(io)?;
            if !version.starts_with("2.") {
                return Err(malformed(format!(
                    "format version {:?}, expected 2.x",
                    version.trim()
                )));
            }
            continue;
        }
        if name.starts_with('_') {
            continue;
        }
        let is_control = name.starts_with("control.tar");
        let is_data = name.starts_with("data.tar");
        if is_data && !seen_control {
            return Err(malformed(format!(
                "member {name:?} comes before control.tar"
            )));
        }
        seen_control |= is_control;
        if !name.starts_with(member.prefix()) {
            if !is_control && !is_data {
                return Err(malformed(format!("unexpected member {name:?}")));
            }
            continue;
        }
        let compression = &name[member.prefix().len()..];
        let mut reader: Box<dyn Read + '_> = match compression {
            "" => Box::new(entry),
            ".gz" => Box::new(flate2::read::GzDecoder::new(entry)),
            ".xz" => Box::new(liblzma::read::XzDecoder::new(entry)),
            ".zst" => Box::new(zstd::stream::read::Decoder::new(entry).map_err(io)?),
            other => {
                return Err(malformed(format!(
                    "member {name:?} uses unsupported compression {other:?} \
                     (expected none, .gz, .xz or .zst)"
                )));
            }
        };
        return Ok(read(&mut reader));
    }
    Err(malformed(format!("no {}* member", member.prefix())))
}

/// The `control` file of `deb`, as text.
pub fn read_control(deb: &Path) -> Result<String, DebError> {
    let found = with_member(deb, DebMember::Control, |tar| {
        let mut archive = tar::Archive::new(tar);
        for entry in archive.entries()? {
            let mut entry = entry?;
            let path = entry.path_bytes();
            let name = path.strip_prefix(b"./").unwrap_or(&path);
            if name == b"control" {
                let mut text = String::new();
                entry.read_to_string(&mut text)?;
                return Ok(Some(text));
            }
        }
        Ok::<_, std::io::Error>(None)
    })?;
    match found {
        Ok(Some(text)) => Ok(text),
        Ok(None) => Err(DebError::Malformed {
            path: deb.to_path_buf(),
            reason: "control.tar has no control file".into(),
        }),
        Err(source) => Err(DebError::Io {
            path: deb.to_path_buf(),
            source,
        }),
    }
}
