//! `ingot mirror`: a self-contained partial archive of a recipe's locked set, laid out like the
//! real one, so that `ingot build --locked --mirror file:///DIR` (or any plain HTTP server in
//! front of DIR) works with no other network.
//!
//! It writes each suite's signed `InRelease` byte for byte (from the lock), the `Packages`
//! index of each component exactly as the archive serves it (compressed, whole, unmodified:
//! the signature covers its hash) and only the locked pool `.deb`s, each verified by SHA-256
//! on the way. Every file is written under a temporary name and renamed into place; a file
//! already there with the right content is kept. This module owns the layout of DIR; it never
//! writes anywhere else but the download cache (through [`crate::fetch`]).

use std::path::{Component, Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::archive;
use crate::fetch;
use crate::lock;
use crate::progress;
use crate::resolve::CommonOptions;

/// Why a mirror could not be written.
#[derive(Debug, thiserror::Error)]
pub enum MirrorError {
    /// A path from the archive would leave DIR (`..`, absolute).
    #[error("{path:?}: not a relative path inside the mirror (from {origin})")]
    UnsafePath {
        /// The offending path.
        path: String,
        /// Where it came from.
        origin: String,
    },
    /// Writing into DIR failed.
    #[error("{}: {source}", path.display())]
    Write {
        /// The file or directory.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// What was written.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct MirrorSummary {
    /// Suites written.
    pub suites: usize,
    /// Index files written.
    pub indexes: usize,
    /// `.deb`s in the mirror.
    pub packages: usize,
    /// Bytes of those `.deb`s.
    pub package_bytes: u64,
}

/// `rel` joined under `dir`, refused unless it is a plain relative path.
fn inside(dir: &Path, rel: &str, origin: &str) -> Result<PathBuf, MirrorError> {
    let p = Path::new(rel);
    let plain = !rel.is_empty() && p.components().all(|c| matches!(c, Component::Normal(_)));
    if !plain {
        return Err(MirrorError::UnsafePath {
            path: rel.to_string(),
            origin: origin.to_string(),
        });
    }
    Ok(dir.join(p))
}

/// Write `bytes` to `path` through a temp file and a rename, unless it already holds them.
fn put(path: &Path, bytes: &[u8]) -> Result<(), MirrorError> {
    if let Ok(existing) = std::fs::read(path)
        && Sha256::digest(&existing) == Sha256::digest(bytes)
    {
        return Ok(());
    }
    put_from(path, &mut &bytes[..])
}

/// Stream `from` into a new file at `path`: a temp file beside it, then a rename.
fn put_from(path: &Path, from: &mut dyn std::io::Read) -> Result<(), MirrorError> {
    let err = |path: &Path| {
        let path = path.to_path_buf();
        move |source| MirrorError::Write { path, source }
    };
    let parent = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent).map_err(err(parent))?;
    let mut temp = tempfile::Builder::new()
        .prefix(".ingot-mirror.")
        .tempfile_in(parent)
        .map_err(err(parent))?;
    std::io::copy(from, &mut temp).map_err(err(path))?;
    temp.as_file().sync_all().map_err(err(path))?;
    // A mirror is meant to be served: world-readable like any file the user creates.
    std::fs::set_permissions(
        temp.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o644),
    )
    .map_err(err(path))?;
    temp.persist(path).map_err(|e| err(path)(e.error))?;
    Ok(())
}

/// Write the partial archive of the recipe's locked set into `dir`.
pub fn write_mirror(
    o: &CommonOptions,
    dir: &Path,
    reporter: &dyn progress::Reporter,
) -> anyhow::Result<MirrorSummary> {
    // The same checks as a locked build: recipe unchanged, InReleases verified, indexes
    // matching their signed hashes, resolution giving exactly the locked set.
    let resolved = crate::resolve::resolve_locked(o, reporter)?;
    let recipe = &resolved.recipe;
    let origin = lock::lock_path(recipe).display().to_string();
    let cache = o.cache();
    let (debs, _) = fetch::fetch_plan(
        &resolved.transport,
        &resolved.plan,
        &cache,
        o.jobs,
        reporter,
    )
    .map_err(crate::resolve::explain_locked_fetch_error)?;

    let mut summary = MirrorSummary::default();
    for release in &resolved.releases {
        let suite = &release.source.suite;
        let dists = inside(dir, &format!("dists/{suite}"), &origin)?;
        put(&dists.join("InRelease"), &release.file_bytes)?;
        for component in &recipe.source.components {
            let index = archive::fetch_index_file(
                &resolved.transport,
                release,
                component,
                &recipe.source.architecture,
            )?;
            put(&inside(&dists, &index.path, &index.url)?, &index.bytes)?;
            summary.indexes += 1;
        }
        summary.suites += 1;
    }
    for deb in &debs {
        let origin = format!("the index entry of {}", deb.package.name);
        let dest = inside(dir, &deb.package.filename, &origin)?;
        let already = fetch::hash_file(&dest)
            .map(|(sha, size)| sha == deb.package.sha256 && size == deb.package.size)
            .unwrap_or(false);
        if !already {
            let mut cached =
                std::fs::File::open(&deb.path).map_err(|source| MirrorError::Write {
                    path: deb.path.clone(),
                    source,
                })?;
            put_from(&dest, &mut cached)?;
        }
        summary.packages += 1;
        summary.package_bytes += deb.package.size;
    }
    Ok(summary)
}
