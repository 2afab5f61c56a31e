//! The base cache: the configured tree (every package installed by dpkg, apt's marks written,
//! before any provision script) kept in the cache as `<cache>/base/<key>.tar.zst`, so that a
//! rebuild with the same plan only provisions, cleans up and exports.
//!
//! The key is the SHA-256 of everything that decides that tree: this format's version, ingot's
//! version, every package in plan order (name, version, architecture, first-round flag,
//! Pre-Depends and Depends, the SHA-256 of its `.deb`), apt's extended states and the dpkg
//! install options. An entry is written inside the build's namespace with the deterministic tar
//! writer (owners, modes, hard links and xattrs kept; mtimes not clamped) compressed with
//! zstd, under a temporary name renamed into place, so an interrupted build never leaves a
//! half entry under a final name; it is restored inside the namespace with the confined
//! unpacker. [`prune`] bounds the cache (base entries and `.deb`s, least recently used first).
//!
//! Must never: restore an entry whose key does not match, write anything but its own entries
//! under `<cache>/base`, or change what the image contains (the image is byte-identical with
//! and without the cache).

use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::confined::RootDir;
use super::install::install_options;
use super::install::unpack::{UnpackError, extract_data_tar};
use super::mounts::{ChrootEnv, MountError};
use super::{StageDeb, StageSpec};
use crate::epoch::BuildEpoch;

/// Bumped whenever what goes into an entry (or how) changes.
const FORMAT: &str = "ingot-base-cache-v2";
/// zstd level for entries: fast to write, and restoring is what matters.
const ZSTD_LEVEL: i32 = 3;
/// The largest mtime a ustar header holds: the tar writer "clamps" to it, i.e. keeps mtimes.
const NO_CLAMP: BuildEpoch = BuildEpoch(0o777_7777_7777);

/// Why the base cache could not be read, written or pruned; names the path.
#[derive(Debug, thiserror::Error)]
pub enum BaseCacheError {
    /// A file or directory of the cache.
    #[error("base cache {path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// Restoring an entry failed.
    #[error("base cache {path}: {source}")]
    Restore {
        /// The entry.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: UnpackError,
    },
    /// Writing an entry failed.
    #[error("base cache {path}: {detail}")]
    Store {
        /// The entry.
        path: PathBuf,
        /// What the tree exporter reported.
        detail: String,
    },
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> BaseCacheError + '_ {
    move |source| BaseCacheError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The key of the configured tree these inputs give (hex SHA-256). Each `.deb` counts by the
/// SHA-256 the signed index gives it: the copy dpkg unpacks (and the Essential set's
/// extraction) is refused unless it has those bytes, and the `.deb`s need not be downloaded
/// yet when the key is computed.
pub fn key(debs: &[StageDeb], apt_extended_states: Option<&str>, install_options: &str) -> String {
    let mut h = Sha256::new();
    let mut field = |s: &[u8]| {
        h.update((s.len() as u64).to_le_bytes());
        h.update(s);
    };
    field(FORMAT.as_bytes());
    field(code_identity().as_bytes());
    field(install_options.as_bytes());
    field(apt_extended_states.unwrap_or("\0none").as_bytes());
    for deb in debs {
        for s in [&deb.name, &deb.version, &deb.architecture, &deb.sha256] {
            field(s.as_bytes());
        }
        field(if deb.essential { b"1" } else { b"0" });
        field(deb.pre_depends_on.join(",").as_bytes());
        field(deb.depends_on.join(",").as_bytes());
    }
    hex::encode(h.finalize())
}

/// The code that installs a tree: the source commit and the SHA-256 of the running binary
/// (in the stage child, `/proc/self/exe` is the `ingot` binary that does the installing).
///
/// The crate version alone (always `0.1.0`) would let an upgraded ingot restore a tree that
/// older install code configured, and the commit alone misses a dirty tree, another
/// toolchain or a patched build; hashing the binary (about 15 MB, some 20 ms) covers them all,
/// at the price of a cold base cache after any rebuild of ingot.
pub fn code_identity() -> &'static str {
    static IDENTITY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    IDENTITY.get_or_init(|| {
        let binary = std::fs::File::open("/proc/self/exe")
            .and_then(crate::fetch::hash_reader)
            .map(|(sha256, _)| sha256)
            // No readable binary: a key that matches nothing stored, never an old tree.
            .unwrap_or_else(|e| format!("unreadable-{e}-{}", std::process::id()));
        format!("commit {} binary {binary}", env!("INGOT_GIT_COMMIT"))
    })
}

/// The entry for `key` in the base-cache directory `dir`.
pub fn entry_path(dir: &Path, key: &str) -> PathBuf {
    dir.join(format!("{key}.tar.zst"))
}

/// Restore the entry at `entry` into the empty root `root`; false if there is no entry.
/// A used entry's mtime is set to now, for [`prune`]'s least-recently-used order.
pub fn restore(entry: &Path, root: &Path) -> Result<bool, BaseCacheError> {
    let file = match File::open(entry) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(io_err(entry)(e)),
    };
    let _ = file.set_modified(std::time::SystemTime::now());
    let mut decoder = zstd::Decoder::new(BufReader::new(file)).map_err(io_err(entry))?;
    let root_dir = RootDir::open(root).map_err(io_err(root))?;
    extract_data_tar(&root_dir, "base cache", &mut decoder as &mut dyn Read).map_err(|source| {
        BaseCacheError::Restore {
            path: entry.to_path_buf(),
            source,
        }
    })?;
    Ok(true)
}

/// Write the tree at `root` as the entry `entry` (temporary name, then rename; not fsynced,
/// see [`Base::restore`]). Mounts must be gone: the writer stays on the root's filesystem.
pub fn store(root: &Path, entry: &Path, export: super::TreeExporter) -> Result<(), BaseCacheError> {
    let dir = entry.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(io_err(dir))?;
    let temp = tempfile::Builder::new()
        .prefix(".partial-")
        .tempfile_in(dir)
        .map_err(io_err(dir))?;
    // The cache's owner owns its entries (a real-root build's namespace sees the host's root
    // as an id of its own, and would otherwise leave them to its subordinate range).
    if let Some(owner) = dir.parent().and_then(|p| std::fs::metadata(p).ok()) {
        use std::os::unix::fs::MetadataExt;
        let _ = std::os::unix::fs::lchown(dir, Some(owner.uid()), Some(owner.gid()));
        let _ = std::os::unix::fs::fchown(temp.as_file(), Some(owner.uid()), Some(owner.gid()));
    }
    {
        let mut encoder = zstd::Encoder::new(BufWriter::new(temp.as_file()), ZSTD_LEVEL)
            .map_err(io_err(temp.path()))?;
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get()) as u32;
        let _ = encoder.multithread(threads);
        export(root, &mut encoder, NO_CLAMP).map_err(|detail| BaseCacheError::Store {
            path: entry.to_path_buf(),
            detail,
        })?;
        let mut out = encoder.finish().map_err(io_err(temp.path()))?;
        out.flush().map_err(io_err(temp.path()))?;
    }
    // Not fsynced (that alone cost 0.3 s of a 0.6 s store here): an entry is only a
    // shortcut, and one that a crash tore fails to restore and is then replaced.
    temp.persist(entry)
        .map_err(|e| io_err(entry)(e.error))
        .map(|_| ())
}

/// The base cache as one build uses it: disabled, or the entry for this build's key.
#[derive(Debug)]
pub struct Base {
    entry: Option<PathBuf>,
}

impl Base {
    /// The entry for `spec` (disabled without `spec.base_cache`, for a seeded root, or
    /// without packages).
    pub fn for_spec(spec: &StageSpec, log: &mut dyn FnMut(&str)) -> Base {
        let entry = match &spec.base_cache {
            Some(dir) if spec.seed.is_none() && !spec.debs.is_empty() => {
                let key = key(
                    &spec.debs,
                    spec.apt_extended_states.as_deref(),
                    &install_options(),
                );
                log(&format!("base cache key {key} (code: {})", code_identity()));
                Some(entry_path(dir, &key))
            }
            _ => None,
        };
        Base { entry }
    }

    /// Restore the configured tree into the empty `root`; false if disabled or not cached.
    /// An entry that cannot be restored is removed, the root emptied again, and false
    /// returned: the build installs the packages and stores a new entry.
    pub fn restore(&self, root: &Path, log: &mut dyn FnMut(&str)) -> Result<bool, BaseCacheError> {
        let Some(entry) = &self.entry else {
            return Ok(false);
        };
        if !entry.is_file() {
            return Ok(false);
        }
        log(&crate::progress::step_line("base-restore"));
        log("restoring the configured tree from the base cache");
        match restore(entry, root) {
            Ok(true) => {
                log(&format!(
                    "restored the configured tree from {}",
                    entry.display()
                ));
                Ok(true)
            }
            Ok(false) => Ok(false),
            Err(e) => {
                // Entries are not fsynced (see [`store`]): one torn by a crash, or damaged
                // since, is dropped and the tree installed from the packages instead.
                let _ = std::fs::remove_file(entry);
                log(&format!(
                    "warning: {e}; removed the entry, installing the packages instead"
                ));
                empty_root(root).map_err(io_err(root))?;
                Ok(false)
            }
        }
    }

    /// After the packages are configured: if enabled, leave `env`, store the tree, and set the
    /// environment up again (a failed store is only logged: the build goes on without it).
    pub fn store_between(
        &self,
        env: ChrootEnv,
        root: &Path,
        export: super::TreeExporter,
        log: &mut dyn FnMut(&str),
    ) -> Result<ChrootEnv, MountError> {
        let Some(entry) = &self.entry else {
            return Ok(env);
        };
        env.leave(log)?;
        log(&crate::progress::step_line("base-store"));
        log("storing the configured tree in the base cache");
        match store(root, entry, export) {
            Ok(()) => log(&format!(
                "stored the configured tree as {}",
                entry.display()
            )),
            Err(e) => log(&format!("warning: not cached: {e}")),
        }
        ChrootEnv::enter(root, log)
    }
}

/// Remove everything inside `root` (a half-restored tree), never following a symlink.
fn empty_root(root: &Path) -> io::Result<()> {
    let dir = RootDir::open(root)?;
    let gone = |e: super::confined::ConfinedError| io::Error::other(e.to_string());
    for name in super::confined::list_at(&dir, "").map_err(gone)? {
        super::confined::remove_all_at(&dir, &name, &name.to_string_lossy()).map_err(gone)?;
    }
    Ok(())
}

/// What [`prune`] did.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct PruneSummary {
    /// Files removed.
    pub removed: usize,
    /// Bytes freed.
    pub freed_bytes: u64,
    /// Bytes left in the cache's base entries and `.deb`s.
    pub kept_bytes: u64,
}

/// Remove leftovers of interrupted writes, then the least recently used base entries and
/// `.deb`s (oldest mtime first) until at most `max_bytes` remain. Only files ingot writes
/// (`<cache>/base/*.tar.zst`, `<cache>/sha256/<hex>`, `<cache>/partial/*`) are considered.
pub fn prune(cache: &crate::cache::Cache, max_bytes: u64) -> Result<PruneSummary, BaseCacheError> {
    let mut summary = PruneSummary::default();
    let mut files: Vec<(std::time::SystemTime, u64, PathBuf)> = Vec::new();
    #[derive(PartialEq)]
    enum Sub {
        Base,
        Debs,
        Partial,
    }
    for (sub, dir) in [
        (Sub::Base, cache.base_dir()),
        (Sub::Debs, cache.debs_dir()),
        (Sub::Partial, cache.partial_dir()),
    ] {
        let leftovers = sub == Sub::Partial;
        let listing = match std::fs::read_dir(&dir) {
            Ok(l) => l,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(io_err(&dir)(e)),
        };
        for entry in listing {
            let entry = entry.map_err(io_err(&dir))?;
            let path = entry.path();
            let meta = entry.metadata().map_err(io_err(&path))?;
            if !meta.is_file() {
                continue;
            }
            let name = entry.file_name();
            let name = name.to_string_lossy();
            let partial_base = sub == Sub::Base && name.starts_with(".partial-");
            if leftovers || partial_base {
                std::fs::remove_file(&path).map_err(io_err(&path))?;
                summary.removed += 1;
                summary.freed_bytes += meta.len();
                continue;
            }
            let ours = match sub {
                Sub::Base => name.ends_with(".tar.zst"),
                _ => name.len() == 64 && name.bytes().all(|b| b.is_ascii_hexdigit()),
            };
            if ours {
                let mtime = meta.modified().map_err(io_err(&path))?;
                files.push((mtime, meta.len(), path));
            }
        }
    }
    files.sort();
    let mut total: u64 = files.iter().map(|f| f.1).sum();
    for (_, size, path) in files {
        if total <= max_bytes {
            break;
        }
        std::fs::remove_file(&path).map_err(io_err(&path))?;
        total -= size;
        summary.removed += 1;
        summary.freed_bytes += size;
    }
    summary.kept_bytes = total;
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prune_removes_least_recently_used_first() {
        let d = tempfile::tempdir().unwrap();
        let cache = crate::cache::Cache::new(d.path());
        let base = cache.base_dir();
        let debs = cache.debs_dir();
        std::fs::create_dir_all(&base).unwrap();
        std::fs::create_dir_all(&debs).unwrap();
        let old = base.join(format!("{}.tar.zst", "a".repeat(64)));
        let new = base.join(format!("{}.tar.zst", "b".repeat(64)));
        let deb = debs.join("c".repeat(64));
        let partial = base.join(".partial-xyz");
        let foreign = base.join("notes.txt");
        for (p, n) in [
            (&old, 100),
            (&new, 100),
            (&deb, 50),
            (&partial, 7),
            (&foreign, 9),
        ] {
            std::fs::write(p, vec![0u8; n]).unwrap();
        }
        let t = std::time::SystemTime::now();
        File::options()
            .write(true)
            .open(&old)
            .unwrap()
            .set_modified(t - std::time::Duration::from_secs(3600))
            .unwrap();
        let s = prune(&cache, 160).unwrap();
        assert!(!old.exists() && !partial.exists());
        assert!(new.exists() && deb.exists() && foreign.exists());
        assert_eq!((s.removed, s.freed_bytes, s.kept_bytes), (2, 107, 150));
    }
}
