//! The cache's layout, in one place: where the verified `.deb`s, the partial downloads, the
//! base-cache entries, the staging trees, the replay ledger and their locks live under one
//! root, and the privacy check that root must pass.
//!
//! ```text
//! <root>/sha256/<hex>              verified files, content-addressed (fetch)
//! <root>/partial/<hex>.<pid>.<t>   downloads in progress (fetch)
//! <root>/base/<key>.tar.zst        configured trees (stage::base_cache)
//! <root>/staging/                  staging directories of running builds (stage)
//! <root>/release-dates.json        newest Date per mirror and suite (archive::freshness)
//! <root>/release-dates.lock        its lock
//! ```
//!
//! Other modules ask this one for paths; none spells a name of the layout itself.

use std::path::{Path, PathBuf};

/// Verified files by SHA-256.
const DEBS: &str = "sha256";
/// Downloads in progress.
const PARTIAL: &str = "partial";
/// Base-cache entries.
const BASE: &str = "base";
/// Staging directories.
const STAGING: &str = "staging";
/// The replay ledger's state file.
pub const LEDGER_FILE: &str = "release-dates.json";
/// The replay ledger's lock.
pub const LEDGER_LOCK: &str = "release-dates.lock";

/// A cache directory that must not be used.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    /// The cache directory is not private to the caller: another user could plant or swap
    /// files in it.
    #[error("cache {path}: refusing to use it: {reason}")]
    Unsafe {
        /// The directory.
        path: PathBuf,
        /// Who owns it or who may write it, and what is expected.
        reason: String,
    },
    /// The cache directory cannot be used.
    #[error("cache {path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// The cache under one root (created on first use).
#[derive(Debug, Clone)]
pub struct Cache {
    root: PathBuf,
}

impl Cache {
    /// The cache at `root`.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Cache { root: root.into() }
    }

    /// `$XDG_CACHE_HOME/ingot`, else `~/.cache/ingot`, else `/var/tmp/ingot-cache`.
    pub fn default_root() -> PathBuf {
        if let Some(x) = std::env::var_os("XDG_CACHE_HOME").filter(|v| !v.is_empty()) {
            return PathBuf::from(x).join("ingot");
        }
        if let Some(h) = std::env::var_os("HOME").filter(|v| !v.is_empty()) {
            return PathBuf::from(h).join(".cache/ingot");
        }
        PathBuf::from("/var/tmp/ingot-cache")
    }

    /// The cache root.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The directory of verified files.
    pub fn debs_dir(&self) -> PathBuf {
        self.root.join(DEBS)
    }

    /// Where a file with this SHA-256 lives.
    pub fn path_for(&self, sha256: &str) -> PathBuf {
        self.debs_dir().join(sha256)
    }

    /// The directory of downloads in progress.
    pub fn partial_dir(&self) -> PathBuf {
        self.root.join(PARTIAL)
    }

    /// The base-cache entries' directory.
    pub fn base_dir(&self) -> PathBuf {
        self.root.join(BASE)
    }

    /// The parent of the staging directories.
    pub fn staging_dir(&self) -> PathBuf {
        self.root.join(STAGING)
    }

    /// The replay ledger's state file.
    pub fn ledger_file(&self) -> PathBuf {
        self.root.join(LEDGER_FILE)
    }

    /// The replay ledger's lock file.
    pub fn ledger_lock(&self) -> PathBuf {
        self.root.join(LEDGER_LOCK)
    }

    /// Create the cache (root, `sha256/`, `partial/`) if needed and check that it is private:
    /// owned by the calling user and not writable by group or others (a shared or planted
    /// cache could swap a verified `.deb` between the check and its use). The root may be
    /// reached through a symlink (`~/.cache` on another disk); the subdirectories may not.
    pub fn ensure(&self) -> Result<(), CacheError> {
        use std::os::unix::fs::DirBuilderExt;
        for (d, follow) in [
            (self.root.clone(), true),
            (self.debs_dir(), false),
            (self.partial_dir(), false),
        ] {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o755)
                .create(&d)
                .map_err(|source| CacheError::Io {
                    path: d.clone(),
                    source,
                })?;
            check_private_dir(&d, follow)?;
        }
        Ok(())
    }

    /// Remove the partial downloads of runs that are gone (killed mid-download): their names
    /// carry the pid (`<sha256>.<pid>.<thread>`); a live process's are left alone.
    pub fn remove_stale_partials(&self) {
        let Ok(entries) = std::fs::read_dir(self.partial_dir()) else {
            return;
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            let pid = name
                .to_str()
                .and_then(|n| n.split('.').nth(1))
                .and_then(|p| p.parse::<i32>().ok());
            let gone = pid.is_some_and(|p| {
                nix::sys::signal::kill(nix::unistd::Pid::from_raw(p), None)
                    == Err(nix::errno::Errno::ESRCH)
            });
            if gone {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }
}

/// Refuse a cache directory that is not a directory owned by the effective user, or that group
/// or others may write.
fn check_private_dir(dir: &Path, follow: bool) -> Result<(), CacheError> {
    use std::os::unix::fs::MetadataExt;
    let meta = if follow {
        std::fs::metadata(dir)
    } else {
        std::fs::symlink_metadata(dir)
    }
    .map_err(|source| CacheError::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    let unsafe_cache = |reason: String| CacheError::Unsafe {
        path: dir.to_path_buf(),
        reason,
    };
    if !meta.is_dir() {
        return Err(unsafe_cache(
            "not a directory (a symlink or file where a cache directory is expected)".into(),
        ));
    }
    let me = nix::unistd::geteuid().as_raw();
    if meta.uid() != me {
        return Err(unsafe_cache(format!(
            "owned by uid {}, expected the calling user (uid {me}); use a cache of your own (--cache-dir)",
            meta.uid()
        )));
    }
    let mode = meta.mode() & 0o7777;
    if mode & 0o022 != 0 {
        return Err(unsafe_cache(format!(
            "mode {mode:04o} lets group or others write it; expected no group/other write (chmod go-w)"
        )));
    }
    Ok(())
}
