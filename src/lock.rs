//! The lock file, `recipes/<name>/ingot.lock`: what a recipe resolved to on one day, so that
//! `ingot build --locked` installs exactly that set on any later day, from any mirror that
//! still serves it, and gives the same bytes.
//!
//! A lock holds (TOML, stable order, one entry per line where it can): a SHA-256 of the recipe
//! and of each script; per suite the mirror, the `Date` and the whole signed `InRelease`; per
//! package name, version, architecture, suite, pool path, size and SHA-256; and the build
//! epoch. Nothing in it is trusted by itself: a locked build re-verifies each `InRelease`
//! offline against the recipe's keyring, fetches the `Packages` indexes that signature covers,
//! resolves again and refuses, naming what differs, unless it gets exactly the locked set.
//!
//! This module owns the file format only: writing, reading and checking the lock against a
//! recipe and a plan. The locked resolution itself is [`crate::resolve::resolve_locked`]; this
//! module never touches the network and writes nothing but the lock file.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::plan::PlannedPackage;
use crate::recipe::Recipe;

/// The layout version written in every lock.
pub const LOCK_VERSION: u32 = 1;

/// The lock's file name, beside `recipe.toml`.
pub const LOCK_FILE_NAME: &str = "ingot.lock";

/// Largest lock file read (a golden recipe's lock is about 300 KiB, mostly `InRelease` text).
const MAX_LOCK_BYTES: u64 = 64 << 20;

/// `ingot.lock`, as written and read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct LockFile {
    /// [`LOCK_VERSION`].
    pub lock_version: u32,
    /// The build epoch of every build from this lock (seconds since 1970).
    pub epoch: i64,
    /// The recipe the lock was made from.
    pub recipe: RecipeLock,
    /// Every suite, in recipe order.
    #[serde(rename = "suite", default)]
    pub suites: Vec<SuiteLock>,
    /// Every package, sorted by name, architecture, version.
    #[serde(rename = "package", default)]
    pub packages: Vec<PackageLock>,
}

/// What the lock knows about the recipe.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct RecipeLock {
    /// The recipe digest (`recipe.toml` and its scripts), as the manifest records it.
    pub digest: String,
    /// SHA-256 of each file (`recipe.toml`, each script), by path relative to the recipe folder.
    pub files: BTreeMap<String, String>,
}

/// One suite of the lock.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct SuiteLock {
    /// The suite, e.g. `noble-updates`.
    pub suite: String,
    /// The archive root it was read from.
    pub mirror: String,
    /// The `Date` of its `InRelease` (signature keys are judged at this time).
    pub date: i64,
    /// SHA-256 of the `InRelease` bytes below.
    pub inrelease_sha256: String,
    /// The whole signed `InRelease`, byte for byte.
    pub inrelease: String,
}

/// One package of the lock.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct PackageLock {
    /// Package name.
    pub name: String,
    /// Debian version.
    pub version: String,
    /// Architecture (`amd64`, `all`).
    pub architecture: String,
    /// The suite whose index listed it.
    pub suite: String,
    /// Pool path relative to the archive root.
    pub filename: String,
    /// Size of the `.deb` in bytes.
    pub size: u64,
    /// SHA-256 of the `.deb`.
    pub sha256: String,
}

impl From<&PlannedPackage> for PackageLock {
    fn from(p: &PlannedPackage) -> Self {
        PackageLock {
            name: p.name.clone(),
            version: p.version.clone(),
            architecture: p.architecture.clone(),
            suite: p.suite.clone(),
            filename: p.filename.clone(),
            size: p.size,
            sha256: p.sha256.clone(),
        }
    }
}

/// Why a lock cannot be used; every variant names the file (or URL) at fault.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// No lock beside the recipe.
    #[error("{}: no lock file (run `ingot lock {}` first)", path.display(), recipe.display())]
    Missing {
        /// Where the lock was looked for.
        path: PathBuf,
        /// The recipe folder.
        recipe: PathBuf,
    },
    /// The lock cannot be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The lock file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The lock is not valid TOML of the expected layout.
    #[error("{}: not an ingot lock file: {message}", path.display())]
    Malformed {
        /// The lock file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A recipe file changed (or appeared, or went away) since the lock was written.
    #[error(
        "{}: {what} since {} was written (run `ingot lock` again)",
        file.display(), lock.display()
    )]
    RecipeChanged {
        /// The recipe file or script that differs.
        file: PathBuf,
        /// How it differs.
        what: &'static str,
        /// The lock file.
        lock: PathBuf,
    },
    /// The suites of the recipe are not the suites of the lock.
    #[error("{}: locks suites {locked:?}, the recipe names {wanted:?} (run `ingot lock` again)", lock.display())]
    SuitesDiffer {
        /// The lock file.
        lock: PathBuf,
        /// Suites in the lock.
        locked: Vec<String>,
        /// Suites in the recipe.
        wanted: Vec<String>,
    },
    /// The archive serves a release without `InRelease`: the lock must hold one signed file.
    #[error("{url}: the lock needs an InRelease (this archive only has Release + Release.gpg)")]
    NoInRelease {
        /// The `Release` URL.
        url: String,
    },
    /// The `InRelease` changed between verification and locking (the archive moved).
    #[error("{url}: changed while the lock was being written; run `ingot lock` again")]
    Moved {
        /// The `InRelease` URL.
        url: String,
    },
    /// Resolving the locked archive state did not give the locked set.
    #[error("{}: package {package}: {message}", lock.display())]
    PlanDiffers {
        /// The lock file.
        lock: PathBuf,
        /// The package that differs.
        package: String,
        /// How.
        message: String,
    },
}

/// Where the lock of `recipe` lives.
pub fn lock_path(recipe: &Recipe) -> PathBuf {
    recipe.dir.join(LOCK_FILE_NAME)
}

/// SHA-256 of `recipe.toml` and each script, by path relative to the recipe folder.
pub fn recipe_files(recipe: &Recipe) -> Result<BTreeMap<String, String>, LockError> {
    let mut files = BTreeMap::new();
    for path in std::iter::once(&recipe.file)
        .chain(&recipe.provision)
        .chain(&recipe.cleanup)
    {
        let bytes = std::fs::read(path).map_err(|source| LockError::Io {
            path: path.clone(),
            source,
        })?;
        let name = path.strip_prefix(&recipe.dir).unwrap_or(path);
        files.insert(
            name.to_string_lossy().into_owned(),
            hex::encode(Sha256::digest(&bytes)),
        );
    }
    Ok(files)
}

impl LockFile {
    /// Read and check the lock at `path`: layout, and each `InRelease` against its SHA-256.
    pub fn read(path: &Path) -> Result<LockFile, LockError> {
        let io = |source| LockError::Io {
            path: path.to_path_buf(),
            source,
        };
        let malformed = |message: String| LockError::Malformed {
            path: path.to_path_buf(),
            message,
        };
        let file = std::fs::File::open(path).map_err(io)?;
        let mut text = String::new();
        std::io::Read::read_to_string(
            &mut std::io::Read::take(file, MAX_LOCK_BYTES + 1),
            &mut text,
        )
        .map_err(io)?;
        if text.len() as u64 > MAX_LOCK_BYTES {
            return Err(malformed(format!("larger than {MAX_LOCK_BYTES} bytes")));
        }
        let lock: LockFile = toml::from_str(&text)
            .map_err(|e| malformed(e.to_string().lines().next().unwrap_or_default().to_string()))?;
        if lock.lock_version != LOCK_VERSION {
            return Err(malformed(format!(
                "lock-version {}, this ingot reads {LOCK_VERSION}",
                lock.lock_version
            )));
        }
        for s in &lock.suites {
            let actual = hex::encode(Sha256::digest(s.inrelease.as_bytes()));
            if actual != s.inrelease_sha256 {
                return Err(malformed(format!(
                    "suite {}: the InRelease text has SHA-256 {actual}, the lock says {}",
                    s.suite, s.inrelease_sha256
                )));
            }
        }
        Ok(lock)
    }

    /// The lock as TOML, with a header saying what it is.
    pub fn to_toml(&self) -> Result<String, LockError> {
        let body = toml::to_string_pretty(self).map_err(|e| LockError::Malformed {
            path: PathBuf::from(LOCK_FILE_NAME),
            message: e.to_string(),
        })?;
        Ok(format!(
            "# Written by `ingot lock`; read by `ingot build --locked` and `ingot mirror`.\n\
             # Do not edit: every InRelease is re-verified against the recipe's keyring.\n\n{body}"
        ))
    }

    /// Write the lock to `path` through a temp file and a rename (never half-written).
    pub fn write(&self, path: &Path) -> Result<(), LockError> {
        let text = self.to_toml()?;
        let io = |source| LockError::Io {
            path: path.to_path_buf(),
            source,
        };
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        let mut temp = tempfile::Builder::new()
            .prefix(".ingot.lock.")
            .tempfile_in(dir)
            .map_err(io)?;
        temp.write_all(text.as_bytes()).map_err(io)?;
        temp.as_file().sync_all().map_err(io)?;
        temp.persist(path).map_err(|e| io(e.error))?;
        Ok(())
    }

    /// Refuse, naming the file, when the recipe or one of its scripts differs from the lock.
    pub fn check_recipe(&self, recipe: &Recipe, lock_path: &Path) -> Result<(), LockError> {
        let now = recipe_files(recipe)?;
        let changed = |name: &str, what| LockError::RecipeChanged {
            file: recipe.dir.join(name),
            what,
            lock: lock_path.to_path_buf(),
        };
        for (name, sha) in &now {
            match self.recipe.files.get(name) {
                None => return Err(changed(name, "added to the recipe")),
                Some(locked) if locked != sha => return Err(changed(name, "changed")),
                Some(_) => {}
            }
        }
        if let Some(name) = self.recipe.files.keys().find(|n| !now.contains_key(*n)) {
            return Err(changed(name, "no longer part of the recipe"));
        }
        if self.recipe.digest != recipe.digest {
            return Err(changed(
                &recipe.file.to_string_lossy(),
                "lists its scripts differently",
            ));
        }
        let locked: Vec<String> = self.suites.iter().map(|s| s.suite.clone()).collect();
        let wanted: Vec<String> = recipe
            .source
            .suites
            .iter()
            .map(|s| s.suite.clone())
            .collect();
        if locked != wanted {
            return Err(LockError::SuitesDiffer {
                lock: lock_path.to_path_buf(),
                locked,
                wanted,
            });
        }
        Ok(())
    }
}

/// Read the lock of `recipe`; [`LockError::Missing`] when there is none.
pub fn read_for(recipe: &Recipe) -> Result<(LockFile, PathBuf), LockError> {
    let path = lock_path(recipe);
    if !path.exists() {
        return Err(LockError::Missing {
            path,
            recipe: recipe.dir.clone(),
        });
    }
    Ok((LockFile::read(&path)?, path))
}

impl LockFile {
    /// Refuse unless `planned` is exactly the locked set (`path`: the lock, for the message).
    pub fn check_plan(&self, planned: &[PlannedPackage], path: &Path) -> Result<(), LockError> {
        let lock = self;
        let differs = |package: &str, message: String| LockError::PlanDiffers {
            lock: path.to_path_buf(),
            package: package.to_string(),
            message,
        };
        let locked: BTreeMap<&str, &PackageLock> =
            lock.packages.iter().map(|p| (p.name.as_str(), p)).collect();
        for p in planned {
            let now = PackageLock::from(p);
            match locked.get(p.name.as_str()) {
                None => {
                    return Err(differs(
                        &p.name,
                        format!("resolved to {} but not in the lock", p.version),
                    ));
                }
                Some(l) if **l != now => {
                    return Err(differs(
                        &p.name,
                        format!(
                            "locked {} {} SHA-256 {}, the archive gives {} {} SHA-256 {}",
                            l.version, l.filename, l.sha256, now.version, now.filename, now.sha256
                        ),
                    ));
                }
                Some(_) => {}
            }
        }
        if let Some(l) = lock
            .packages
            .iter()
            .find(|l| !planned.iter().any(|p| p.name == l.name))
        {
            return Err(differs(
                &l.name,
                "in the lock but no longer resolved".to_string(),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_toml_round_trips_the_inrelease_byte_for_byte() {
        let inrelease = "-----BEGIN PGP SIGNED MESSAGE-----\nHash: SHA512\n\nOrigin: Ubuntu\n \
                         trailing space \r\n\"quoted\" '''triple''' \"\"\"\\back\\slash\t\n-----END-----\n";
        let lock = LockFile {
            lock_version: LOCK_VERSION,
            epoch: 1_700_000_000,
            recipe: RecipeLock {
                digest: "ab".repeat(32),
                files: [("recipe.toml".to_string(), "cd".repeat(32))].into(),
            },
            suites: vec![SuiteLock {
                suite: "noble".into(),
                mirror: "http://archive.ubuntu.com/ubuntu".into(),
                date: 1_700_000_000,
                inrelease_sha256: hex::encode(Sha256::digest(inrelease.as_bytes())),
                inrelease: inrelease.into(),
            }],
            packages: vec![PackageLock {
                name: "libc6".into(),
                version: "2.39-0ubuntu8".into(),
                architecture: "amd64".into(),
                suite: "noble".into(),
                filename: "pool/main/g/glibc/libc6_2.39-0ubuntu8_amd64.deb".into(),
                size: 3_263_000,
                sha256: "ef".repeat(32),
            }],
        };
        let text = lock.to_toml().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(LOCK_FILE_NAME);
        std::fs::write(&path, &text).unwrap();
        assert_eq!(LockFile::read(&path).unwrap(), lock);
        assert!(
            text.contains("[[package]]") && text.contains("[[suite]]"),
            "{text}"
        );

        let tampered = text.replace("Origin: Ubuntu", "Origin: Ubunto");
        std::fs::write(&path, tampered).unwrap();
        assert!(matches!(
            LockFile::read(&path),
            Err(LockError::Malformed { .. })
        ));
    }
}
