//! The fetch stage: download the planned `.deb`s in parallel into a content-addressed cache,
//! verifying size and SHA-256 (from the signed index) before a file enters the cache, and
//! again before a cached file is used. It never writes into a root filesystem.
//!
//! The cache must be private ([`Cache::ensure`]: owned by the caller, not group/other
//! writable); partial downloads are created `O_EXCL|O_NOFOLLOW` and hashed through the
//! descriptor that wrote them; a cached entry that does not match is removed and downloaded
//! again, never used. (The stage hashes the bytes again while copying them into the root.)

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::net::{Transport, TransportError};
use crate::plan::{Plan, PlannedPackage};
use crate::progress::Reporter;

pub use crate::cache::Cache;
use crate::cache::CacheError;

/// A `.deb` that is in the cache and matched its expected hash.
#[derive(Debug, Clone, Serialize)]
pub struct FetchedDeb {
    /// The package it belongs to.
    pub package: PlannedPackage,
    /// Its path in the cache.
    pub path: PathBuf,
    /// Whether it was already cached (and re-verified) rather than downloaded.
    pub cached: bool,
}

/// Totals of a fetch run.
#[derive(Debug, Clone, Default, Serialize)]
pub struct FetchSummary {
    /// Packages in the plan.
    pub packages: usize,
    /// How many were downloaded now.
    pub downloaded: usize,
    /// How many came from the cache.
    pub cached: usize,
    /// Bytes downloaded now.
    pub downloaded_bytes: u64,
    /// Bytes of the whole set.
    pub total_bytes: u64,
}

/// A download or cache failure, naming the URL or file.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// Transfer failed.
    #[error(transparent)]
    Transport(#[from] TransportError),
    /// The downloaded bytes do not match the signed index.
    #[error(
        "{url}: SHA-256/size mismatch for package {package}: the signed index says {expected_size} bytes {expected}, got {actual_size} bytes {actual}"
    )]
    HashMismatch {
        /// The URL.
        url: String,
        /// The package.
        package: String,
        /// Expected SHA-256.
        expected: String,
        /// Actual SHA-256.
        actual: String,
        /// Expected size.
        expected_size: u64,
        /// Actual size.
        actual_size: u64,
    },
    /// The `.deb` matched its hash but its own control file names another package, version
    /// or architecture than the signed index.
    #[error("{url}: the .deb's control says {found}, but the signed index lists it as {expected}")]
    WrongPackage {
        /// The URL (or cache file) of the `.deb`.
        url: String,
        /// `Package Version Architecture` from the index.
        expected: String,
        /// The same fields from the `.deb`'s control file.
        found: String,
    },
    /// The `.deb` cannot be read as a Debian package.
    #[error("{url}: not a usable .deb for package {package}: {message}")]
    BadDeb {
        /// The URL (or cache file) of the `.deb`.
        url: String,
        /// The package.
        package: String,
        /// What is wrong.
        message: String,
    },
    /// The cache cannot be used (not private, or an I/O error in it).
    #[error(transparent)]
    Cache(#[from] CacheError),
}

/// The `.deb` at `path` (already hash-verified) must say in its own control file that it is
/// the package, version and architecture the signed index lists: dpkg installs what the
/// control file says.
fn check_identity(path: &Path, pkg: &PlannedPackage, shown: &str) -> Result<(), FetchError> {
    let control = crate::deb::read_control(path).map_err(|e| FetchError::BadDeb {
        url: shown.to_string(),
        package: pkg.name.clone(),
        message: e.to_string(),
    })?;
    let field = |name: &str| {
        control
            .lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
            .map(str::trim)
            .unwrap_or("")
            .to_string()
    };
    let found = [field("Package"), field("Version"), field("Architecture")];
    let expected = [
        pkg.name.clone(),
        pkg.version.clone(),
        pkg.architecture.clone(),
    ];
    if found != expected {
        return Err(FetchError::WrongPackage {
            url: shown.to_string(),
            expected: expected.join(" "),
            found: found.join(" "),
        });
    }
    Ok(())
}

/// SHA-256 and length of everything `reader` yields.
pub fn hash_reader(mut reader: impl Read) -> std::io::Result<(String, u64)> {
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    let mut n = 0u64;
    loop {
        let k = match reader.read(&mut buf) {
            Ok(k) => k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if k == 0 {
            break;
        }
        h.update(&buf[..k]);
        n += k as u64;
    }
    Ok((hex::encode(h.finalize()), n))
}

/// SHA-256 and length of a file (opened without following a final symlink).
pub fn hash_file(path: &Path) -> std::io::Result<(String, u64)> {
    use std::os::unix::fs::OpenOptionsExt;
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NOFOLLOW)
        .open(path)?;
    hash_reader(f)
}

/// Download (or take from the cache) every package of `plan`, `jobs` at a time.
pub fn fetch_plan(
    transport: &Transport,
    plan: &Plan,
    cache: &Cache,
    jobs: usize,
    reporter: &dyn Reporter,
) -> Result<(Vec<FetchedDeb>, FetchSummary), FetchError> {
    let all: Vec<&PlannedPackage> = plan.packages.iter().collect();
    fetch_packages(transport, &all, cache, jobs, reporter)
}

/// Download (or take from the cache) `packages`, `jobs` at a time, as the reporter's `fetch`
/// step; the result is in the order given.
pub fn fetch_packages(
    transport: &Transport,
    packages: &[&PlannedPackage],
    cache: &Cache,
    jobs: usize,
    reporter: &dyn Reporter,
) -> Result<(Vec<FetchedDeb>, FetchSummary), FetchError> {
    cache.ensure()?;
    cache.remove_stale_partials();
    let total = packages.iter().map(|p| p.size).sum();
    reporter.begin("fetch", Some(total));
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<Result<FetchedDeb, FetchError>>>> =
        Mutex::new((0..packages.len()).map(|_| None).collect());
    let failed = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|s| {
        for _ in 0..jobs.max(1).min(packages.len().max(1)) {
            s.spawn(|| {
                loop {
                    if failed.load(Ordering::Relaxed) {
                        break;
                    }
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(pkg) = packages.get(i).copied() else {
                        break;
                    };
                    let r = fetch_one(transport, pkg, cache, reporter);
                    if r.is_err() {
                        failed.store(true, Ordering::Relaxed);
                    }
                    if let Ok(mut v) = results.lock() {
                        v[i] = Some(r);
                    }
                }
            });
        }
    });
    let mut out = Vec::with_capacity(packages.len());
    let mut summary = FetchSummary {
        packages: packages.len(),
        total_bytes: total,
        ..Default::default()
    };
    let results = results.into_inner().unwrap_or_default();
    // Report the first failure in plan order, so the message is stable.
    for r in results.into_iter().flatten() {
        let deb = r?;
        if deb.cached {
            summary.cached += 1;
        } else {
            summary.downloaded += 1;
            summary.downloaded_bytes += deb.package.size;
        }
        out.push(deb);
    }
    reporter.finish(&format!(
        "{} packages, {} downloaded ({:.1} MiB), {} from cache",
        summary.packages,
        summary.downloaded,
        summary.downloaded_bytes as f64 / 1048576.0,
        summary.cached
    ));
    Ok(out).map(|v| (v, summary))
}

fn fetch_one(
    transport: &Transport,
    pkg: &PlannedPackage,
    cache: &Cache,
    reporter: &dyn Reporter,
) -> Result<FetchedDeb, FetchError> {
    let dest = cache.path_for(&pkg.sha256);
    let cache_err = |path: &Path| {
        let path = path.to_path_buf();
        move |source| FetchError::Cache(CacheError::Io { path, source })
    };
    match std::fs::symlink_metadata(&dest) {
        Ok(meta) => {
            let verified = meta.is_file()
                && matches!(hash_file(&dest), Ok((sha, size)) if sha == pkg.sha256 && size == pkg.size);
            if verified {
                // One file may be listed under several names: it must be this one.
                check_identity(&dest, pkg, &dest.display().to_string())?;
                reporter.advance(pkg.size);
                return Ok(FetchedDeb {
                    package: pkg.clone(),
                    path: dest,
                    cached: true,
                });
            }
            // A corrupted (or planted) cache entry is never used: drop it and download again.
            std::fs::remove_file(&dest).map_err(cache_err(&dest))?;
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(cache_err(&dest)(e)),
    }
    let url = pkg.url();
    let partial = cache.partial_dir().join(format!(
        "{}.{}.{:?}",
        pkg.sha256,
        std::process::id(),
        std::thread::current().id()
    ));
    // A fresh file of ours: never an existing one, never through a symlink planted there.
    // A leftover of a killed run (same pid, same thread) is unlinked (the name, never what a
    // symlink points to) and the file created anew.
    let create = || {
        use std::os::unix::fs::OpenOptionsExt;
        std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .custom_flags(nix::libc::O_NOFOLLOW)
            .mode(0o644)
            .open(&partial)
    };
    let mut file = match create() {
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            std::fs::remove_file(&partial).map_err(cache_err(&partial))?;
            create()
        }
        other => other,
    }
    .map_err(cache_err(&partial))?;
    let result = (|| {
        transport.download_into(&url, &mut file, &partial, pkg.size)?;
        // Hash the bytes in the file we wrote, through the same descriptor.
        use std::io::Seek;
        file.rewind().map_err(cache_err(&partial))?;
        let (sha, size) = hash_reader(&mut file).map_err(cache_err(&partial))?;
        if sha != pkg.sha256 || size != pkg.size {
            return Err(FetchError::HashMismatch {
                url: url.clone(),
                package: pkg.name.clone(),
                expected: pkg.sha256.clone(),
                actual: sha,
                expected_size: pkg.size,
                actual_size: size,
            });
        }
        check_identity(&partial, pkg, &url)?;
        std::fs::rename(&partial, &dest).map_err(cache_err(&dest))?;
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&partial);
    }
    result?;
    reporter.advance(pkg.size);
    Ok(FetchedDeb {
        package: pkg.clone(),
        path: dest,
        cached: false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn package(mirror: &str, bytes: &[u8]) -> PlannedPackage {
        PlannedPackage {
            name: "p".into(),
            version: "1".into(),
            architecture: "all".into(),
            essential: false,
            priority: None,
            size: bytes.len() as u64,
            sha256: hex::encode(Sha256::digest(bytes)),
            filename: "p.deb".into(),
            mirror: mirror.into(),
            suite: "s".into(),
            source: "p".into(),
            pre_depends_on: vec![],
            depends_on: vec![],
        }
    }

    #[test]
    fn a_partial_download_never_follows_a_planted_symlink() {
        let d = tempfile::tempdir().unwrap();
        let mirror = d.path().join("mirror");
        std::fs::create_dir(&mirror).unwrap();
        std::fs::write(mirror.join("p.deb"), b"not a deb").unwrap();
        let cache = Cache::new(d.path().join("cache"));
        cache.ensure().unwrap();
        let pkg = package(&format!("file://{}", mirror.display()), b"not a deb");
        // Where this very thread would write its partial file: a symlink to a victim.
        let victim = d.path().join("victim");
        std::fs::write(&victim, b"precious").unwrap();
        let partial = cache.partial_dir().join(format!(
            "{}.{}.{:?}",
            pkg.sha256,
            std::process::id(),
            std::thread::current().id()
        ));
        std::os::unix::fs::symlink(&victim, &partial).unwrap();
        // The leftover name is replaced; the download goes to a new file of ours (and is then
        // refused: it is not a .deb), the victim is untouched.
        let err = fetch_one(&Transport::new(), &pkg, &cache, &crate::progress::Silent)
            .expect_err("not a .deb");
        assert!(matches!(err, FetchError::BadDeb { .. }), "{err}");
        assert_eq!(std::fs::read(&victim).unwrap(), b"precious");
        assert!(
            std::fs::symlink_metadata(&partial).is_err(),
            "partial removed"
        );
    }
}
