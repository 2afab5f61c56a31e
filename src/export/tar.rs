//! TEMPORARY STAND-IN (branch `stage` only): helper `export` owns this file; the lead drops
//! this stub when merging the real deterministic tar writer.

use std::io::Write;
use std::path::Path;

use crate::epoch::BuildEpoch;

/// Stand-in error type until helper `export` lands.
#[derive(Debug, thiserror::Error)]
#[error("writing the tar stream of {path}: {source}")]
pub struct ExportError {
    /// The tree.
    pub path: std::path::PathBuf,
    /// The cause.
    pub source: std::io::Error,
}

/// Stand-in statistics.
#[derive(Debug, Default)]
pub struct TarStats {
    /// Entries written.
    pub entries: u64,
}

/// Stand-in: a plain (not deterministic) tar of `root` using the `tar` crate.
pub fn write_rootfs_tar(
    root: &Path,
    out: &mut dyn Write,
    epoch: BuildEpoch,
) -> Result<TarStats, ExportError> {
    let _ = epoch;
    let err = |source| ExportError {
        path: root.to_path_buf(),
        source,
    };
    let mut builder = tar::Builder::new(out);
    builder.follow_symlinks(false);
    builder.append_dir_all("", root).map_err(err)?;
    builder.finish().map_err(err)?;
    Ok(TarStats { entries: 0 })
}
