//! Artifacts: `<image>-v<N>.tar.gz` naming, monotonic versions, no-clobber publishing, the
//! `.sha256`, `.manifest.json`, `.spdx.json` and `.provenance.json` beside each image. An existing version is never
//! overwritten.
//!
//! The orchestrator's sequence:
//!
//! 1. [`OutputDir::lock`]: an exclusive `flock` on `<dir>/.<image>.lock`, held for the whole
//!    build, so two concurrent `--next` builds of one image get different numbers (the second
//!    waits; [`OutputDir::try_lock`] lets the caller say so first). Leftover temp files of
//!    killed builds are removed then — nobody else can be writing them.
//! 2. [`OutputDir::claim`]: the next version (one above the highest `<image>-v<N>.tar*`, any
//!    compression, sidecars included) or exactly N, refused if any `<image>-v<N>.*` exists.
//!    The [`Claim`] is a hidden temp file in the same directory that hashes what is written.
//! 3. Write the compressed stream into the claim; verify [`Claim::temp_path`] if wanted.
//! 4. [`Claim::publish`]: `.sha256` and `.manifest.json` first, the tarball last (its
//!    appearance is the commit point), each with a no-clobber rename (`renameat2` with
//!    `RENAME_NOREPLACE`, `link` + `unlink` where unsupported).
//!
//! Dropping a [`Claim`] without publishing (any error on the way) removes the temp file; a
//! failed publish removes the sidecars it created. Earlier versions are never touched: this
//! module only ever creates names that do not exist.
//!
//! Signals: a build holds SIGINT/SIGTERM/SIGHUP from the end of its tar stream to the end of
//! its publish ([`crate::signal_hold`]), so they never cut a publish short. SIGKILL can: killed
//! between two renames, the sidecars renamed so far stay without their image, and the
//! claim's temp file stays hidden. The next build of the image removes the temp file (under
//! the lock) and, since a sidecar `<image>-v<N>.tar*.sha256` counts as version N, skips N:
//! nothing is overwritten and no number is used twice.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tempfile::NamedTempFile;

use crate::epoch::{BuildEpoch, EpochSource};
use crate::export::compress::Compression;

/// The manifest layout version written in every manifest.
pub const MANIFEST_VERSION: u32 = 1;
/// Suffix of the claim's temp file (hidden: it starts with a dot).
const PARTIAL_SUFFIX: &str = ".partial";
/// Prefix of a build log being written: `.log.<artifact>.<pid>.partial`.
const LOG_TEMP_PREFIX: &str = ".log.";

/// The hidden name a build log is written under until it is published beside `artifact`.
pub fn build_log_temp_name(artifact: &str, pid: u32) -> String {
    format!("{LOG_TEMP_PREFIX}{artifact}.{pid}{PARTIAL_SUFFIX}")
}

fn process_alive(pid: i32) -> bool {
    pid > 0
        && !matches!(
            nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None),
            Err(nix::errno::Errno::ESRCH)
        )
}
/// Write buffer between the compressor and the temp file.
const WRITE_BUFFER: usize = 256 * 1024;

/// Everything that can go wrong while claiming or publishing a version.
#[derive(Debug, thiserror::Error)]
pub enum ArtifactError {
    /// The image name cannot be used in a file name.
    #[error(
        "image name {name:?} cannot name an artifact: use letters, digits, '.', '-', '_' and do \
         not start with '.'"
    )]
    BadImageName {
        /// The name given.
        name: String,
    },
    /// Version numbers start at 1.
    #[error("version 0 is not a valid version: versions start at 1")]
    VersionZero,
    /// The exact version asked for is taken.
    #[error("version {version} of {image} already exists ({existing}); pick another or use --next")]
    VersionExists {
        /// The image.
        image: String,
        /// The version asked for.
        version: u32,
        /// One file that holds the version.
        existing: PathBuf,
    },
    /// There is no version after the highest one.
    #[error("{image} has reached version {highest}: no higher version number is available")]
    VersionsExhausted {
        /// The image.
        image: String,
        /// The highest version found.
        highest: u32,
    },
    /// Creating, locking or scanning the output directory failed.
    #[error("output directory {dir}: {what}: {source}")]
    Directory {
        /// The directory.
        dir: PathBuf,
        /// What was being done.
        what: &'static str,
        /// The underlying error.
        source: std::io::Error,
    },
    /// Writing a file in the output directory failed.
    #[error("cannot write {path}: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The final name appeared since the claim (someone wrote it without the lock).
    #[error("cannot publish {path}: {source} (an existing file is never replaced)")]
    Publish {
        /// The final name.
        path: PathBuf,
        /// The underlying error (`AlreadyExists` when the name is taken).
        source: std::io::Error,
    },
    /// The manifest could not be serialised.
    #[error("cannot serialise the manifest of {path}: {source}")]
    Manifest {
        /// The manifest's file.
        path: PathBuf,
        /// The underlying error.
        source: serde_json::Error,
    },
}

/// Which version to publish.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VersionRequest {
    /// One above the highest existing version (1 in an empty directory).
    Next,
    /// Exactly this version; refused if any file of it exists.
    Exact(u32),
}

/// An output directory, locked for one image for as long as this value lives.
#[derive(Debug)]
pub struct OutputDir {
    dir: PathBuf,
    image: String,
    /// Holds the `flock`; released when dropped (or when the process dies).
    _lock: File,
}

/// The UTF-8 file names in `dir` (names that are not UTF-8 cannot be ours).
fn file_names(dir: &Path) -> Result<Vec<String>, ArtifactError> {
    let scan_error = |source| ArtifactError::Directory {
        dir: dir.to_path_buf(),
        what: "listing",
        source,
    };
    let mut names = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(scan_error)? {
        if let Ok(name) = entry.map_err(scan_error)?.file_name().into_string() {
            names.push(name);
        }
    }
    Ok(names)
}

/// The file among `names` (in `dir`) that holds `version` of `image`, if any.
fn version_file(dir: &Path, names: &[String], image: &str, version: u32) -> Option<PathBuf> {
    names
        .iter()
        .find(|name| {
            parse_version(image, name)
                .is_some_and(|(v, rest)| v == version && (rest.is_empty() || rest.starts_with('.')))
        })
        .map(|name| dir.join(name))
}

/// Refuse an exact `version` that is 0 or already in `dir`, before any work is done (the claim
/// checks again under the directory's lock). A missing `dir` holds no version.
pub fn check_version_free(dir: &Path, image: &str, version: u32) -> Result<(), ArtifactError> {
    if version == 0 {
        return Err(ArtifactError::VersionZero);
    }
    if !dir.is_dir() {
        return Ok(());
    }
    match version_file(dir, &file_names(dir)?, image, version) {
        Some(existing) => Err(ArtifactError::VersionExists {
            image: image.to_string(),
            version,
            existing,
        }),
        None => Ok(()),
    }
}

impl OutputDir {
    /// Creates `dir` if needed and locks it for `image`, waiting for another build of the same
    /// image to finish.
    pub fn lock(dir: &Path, image: &str) -> Result<OutputDir, ArtifactError> {
        let file = open_lock(dir, image)?;
        file.lock().map_err(|source| ArtifactError::Directory {
            dir: dir.to_path_buf(),
            what: "locking",
            source,
        })?;
        OutputDir::locked(dir, image, file)
    }

    /// Like [`OutputDir::lock`], but returns `None` at once if another build holds the lock.
    pub fn try_lock(dir: &Path, image: &str) -> Result<Option<OutputDir>, ArtifactError> {
        let file = open_lock(dir, image)?;
        match file.try_lock() {
            Ok(()) => OutputDir::locked(dir, image, file).map(Some),
            Err(std::fs::TryLockError::WouldBlock) => Ok(None),
            Err(std::fs::TryLockError::Error(source)) => Err(ArtifactError::Directory {
                dir: dir.to_path_buf(),
                what: "locking",
                source,
            }),
        }
    }

    fn locked(dir: &Path, image: &str, lock: File) -> Result<OutputDir, ArtifactError> {
        let out = OutputDir {
            dir: dir.to_path_buf(),
            image: image.to_string(),
            _lock: lock,
        };
        out.remove_stale_partials()?;
        Ok(out)
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// The image name.
    pub fn image(&self) -> &str {
        &self.image
    }

    /// The versions present, ascending: every N with a file `<image>-v<N>.tar*`.
    pub fn versions(&self) -> Result<Vec<u32>, ArtifactError> {
        let mut versions: Vec<u32> = self
            .file_names()?
            .iter()
            .filter_map(|name| parse_version(&self.image, name))
            // The OCI archive counts too: a build killed after publishing it left version N.
            .filter(|(_, rest)| rest.starts_with(".tar") || rest.starts_with(".oci.tar"))
            .map(|(version, _)| version)
            .collect();
        versions.sort_unstable();
        versions.dedup();
        Ok(versions)
    }

    /// One above the highest version present, or 1.
    pub fn next_version(&self) -> Result<u32, ArtifactError> {
        match self.versions()?.last() {
            None => Ok(1),
            Some(&highest) => {
                highest
                    .checked_add(1)
                    .ok_or_else(|| ArtifactError::VersionsExhausted {
                        image: self.image.clone(),
                        highest,
                    })
            }
        }
    }

    /// A file that holds `version` (`<image>-v<N>` or `<image>-v<N>.*`), if any.
    pub fn existing_file(&self, version: u32) -> Result<Option<PathBuf>, ArtifactError> {
        Ok(version_file(
            &self.dir,
            &self.file_names()?,
            &self.image,
            version,
        ))
    }

    /// Picks the version and opens its temp file. For [`VersionRequest::Next`], a number whose
    /// name is taken by some other file (`<image>-v<N>.log`) is skipped, never reused.
    pub fn claim(
        &self,
        request: VersionRequest,
        compression: Compression,
    ) -> Result<Claim<'_>, ArtifactError> {
        let version = match request {
            VersionRequest::Exact(0) => return Err(ArtifactError::VersionZero),
            VersionRequest::Exact(version) => {
                if let Some(existing) = self.existing_file(version)? {
                    return Err(ArtifactError::VersionExists {
                        image: self.image.clone(),
                        version,
                        existing,
                    });
                }
                version
            }
            VersionRequest::Next => {
                let mut version = self.next_version()?;
                while self.existing_file(version)?.is_some() {
                    version =
                        version
                            .checked_add(1)
                            .ok_or_else(|| ArtifactError::VersionsExhausted {
                                image: self.image.clone(),
                                highest: version,
                            })?;
                }
                version
            }
        };
        let file_name = format!("{}-v{version}.{}", self.image, compression.extension());
        let temp = tempfile::Builder::new()
            .prefix(&format!(".{file_name}."))
            .suffix(PARTIAL_SUFFIX)
            .permissions(published_permissions())
            .tempfile_in(&self.dir)
            .map_err(|source| ArtifactError::Write {
                path: self.dir.join(format!(".{file_name}.*{PARTIAL_SUFFIX}")),
                source,
            })?;
        Ok(Claim {
            dir: self,
            version,
            compression,
            file_name,
            temp_path: temp.path().to_path_buf(),
            out: BufWriter::with_capacity(WRITE_BUFFER, temp),
            hasher: Sha256::new(),
            size: 0,
        })
    }

    fn file_names(&self) -> Result<Vec<String>, ArtifactError> {
        file_names(&self.dir)
    }

    /// Temp files of this image left by a killed build; safe to delete under the lock. Build
    /// logs in the making are written outside the lock, so only those of dead processes go.
    fn remove_stale_partials(&self) -> Result<(), ArtifactError> {
        let prefix = format!(".{}-v", self.image);
        let log_prefix = format!("{LOG_TEMP_PREFIX}{}-v", self.image);
        for name in self.file_names()? {
            let stale_log = name
                .strip_prefix(&log_prefix)
                .and_then(|rest| rest.strip_suffix(PARTIAL_SUFFIX))
                .and_then(|rest| rest.rsplit_once('.'))
                .and_then(|(_, pid)| pid.parse::<i32>().ok())
                .is_some_and(|pid| !process_alive(pid));
            if stale_log || (name.starts_with(&prefix) && name.ends_with(PARTIAL_SUFFIX)) {
                let path = self.dir.join(&name);
                match std::fs::remove_file(&path) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(source) => return Err(ArtifactError::Write { path, source }),
                }
            }
        }
        Ok(())
    }
}

fn open_lock(dir: &Path, image: &str) -> Result<File, ArtifactError> {
    check_image_name(image)?;
    std::fs::create_dir_all(dir).map_err(|source| ArtifactError::Directory {
        dir: dir.to_path_buf(),
        what: "creating",
        source,
    })?;
    let path = dir.join(format!(".{image}.lock"));
    std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|source| ArtifactError::Directory {
            dir: dir.to_path_buf(),
            what: "opening the lock file",
            source,
        })
}

fn check_image_name(image: &str) -> Result<(), ArtifactError> {
    let ok = !image.is_empty()
        && !image.starts_with('.')
        && image
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'));
    if ok {
        Ok(())
    } else {
        Err(ArtifactError::BadImageName {
            name: image.to_string(),
        })
    }
}

/// `<image>-v<digits><rest>` → (N, rest). Digits that overflow a u32 are not a version.
pub(crate) fn parse_version<'n>(image: &str, name: &'n str) -> Option<(u32, &'n str)> {
    let after = name.strip_prefix(image)?.strip_prefix("-v")?;
    let digits = after.bytes().take_while(u8::is_ascii_digit).count();
    if digits == 0 {
        return None;
    }
    let version = after[..digits].parse().ok()?;
    Some((version, &after[digits..]))
}

/// A claimed version: a temp file in the output directory that hashes and counts what is
/// written to it. Removed when dropped unless published.
pub struct Claim<'d> {
    dir: &'d OutputDir,
    version: u32,
    compression: Compression,
    file_name: String,
    temp_path: PathBuf,
    out: BufWriter<NamedTempFile>,
    hasher: Sha256,
    size: u64,
}

impl std::fmt::Debug for Claim<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Claim")
            .field("version", &self.version)
            .field("file_name", &self.file_name)
            .field("temp_path", &self.temp_path)
            .field("size", &self.size)
            .finish()
    }
}

impl Write for Claim<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.out.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.size += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.out.flush()
    }
}

impl Claim<'_> {
    /// The claimed version.
    pub fn version(&self) -> u32 {
        self.version
    }

    /// The final file name, e.g. `ubuntu-24.04-lxc-rootfs-v3.tar.gz`.
    pub fn file_name(&self) -> &str {
        &self.file_name
    }

    /// Where the artifact will be published.
    pub fn final_path(&self) -> PathBuf {
        self.dir.dir.join(&self.file_name)
    }

    /// The temp file being written (for a verification pass before publishing; call
    /// [`Write::flush`] first).
    pub fn temp_path(&self) -> &Path {
        &self.temp_path
    }

    /// Bytes written so far.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// SHA-256 (hex) of the bytes written so far (the OCI layer's digest, before publishing).
    pub fn sha256_so_far(&self) -> String {
        hex::encode(self.hasher.clone().finalize())
    }

    /// The compression being written.
    pub fn compression(&self) -> Compression {
        self.compression
    }

    /// The artifact's name without its compression extension: `<image>-v<N>`.
    pub fn base_name(&self) -> String {
        format!("{}-v{}", self.dir.image, self.version)
    }

    /// Publishes the artifact with its `.sha256` and `.manifest.json`, never replacing a file.
    pub fn publish(self, inputs: BuildInputs) -> Result<Published, ArtifactError> {
        self.publish_with_sbom(inputs, &[])
    }

    /// [`Claim::publish`], plus `<file>.spdx.json` describing the image and `packages` when
    /// there are any (see [`crate::sbom`]).
    pub fn publish_with_sbom(
        self,
        inputs: BuildInputs,
        sbom_packages: &[crate::sbom::SbomPackage],
    ) -> Result<Published, ArtifactError> {
        self.publish_with_sidecars(inputs, sbom_packages, Vec::new())
    }

    /// SHA-256 (hex) of what was written so far: the artifact's, once the stream is over.
    pub fn sha256(&self) -> String {
        hex::encode(self.hasher.clone().finalize())
    }

    /// [`Claim::publish_with_sbom`], plus `extra` sidecars (`(suffix, bytes)`, e.g.
    /// `.provenance.json`), written like the others: each new, before the tarball.
    pub fn publish_with_sidecars(
        self,
        inputs: BuildInputs,
        sbom_packages: &[crate::sbom::SbomPackage],
        extra: Vec<(&'static str, Vec<u8>)>,
    ) -> Result<Published, ArtifactError> {
        let final_path = self.final_path();
        let temp_path = self.temp_path.clone();
        let write_error = |source| ArtifactError::Write {
            path: temp_path.clone(),
            source,
        };
        let temp = self
            .out
            .into_inner()
            .map_err(|e| write_error(e.into_error()))?;
        temp.as_file().sync_all().map_err(write_error)?;
        let sha256 = hex::encode(self.hasher.finalize());

        let mut packages = inputs.packages;
        packages.sort_by(|a, b| {
            (&a.name, &a.architecture, &a.version).cmp(&(&b.name, &b.architecture, &b.version))
        });
        let manifest = Manifest {
            manifest_version: MANIFEST_VERSION,
            ingot_version: env!("CARGO_PKG_VERSION").to_string(),
            image: self.dir.image.clone(),
            version: self.version,
            recipe_digest: inputs.recipe_digest,
            build_epoch: inputs.build_epoch,
            epoch_source: inputs.epoch_source,
            suites: inputs.suites,
            packages,
            output: OutputRecord {
                file: self.file_name.clone(),
                compression: self.compression,
                sha256: sha256.clone(),
                size: self.size,
            },
            stages: inputs.stages,
        };
        let sha256_path = sidecar(&final_path, ".sha256");
        let manifest_path = sidecar(&final_path, ".manifest.json");
        let mut manifest_json =
            serde_json::to_vec_pretty(&manifest).map_err(|source| ArtifactError::Manifest {
                path: manifest_path.clone(),
                source,
            })?;
        manifest_json.push(b'\n');
        // `sha256sum -c` format: two spaces (text mode), the name relative to the directory.
        let sha256_line = format!("{sha256}  {}\n", self.file_name);
        let sbom_path = sidecar(&final_path, ".spdx.json");
        let sbom = (!sbom_packages.is_empty()).then(|| {
            crate::sbom::render(
                &crate::sbom::ImageDescription {
                    image: &self.dir.image,
                    version: self.version,
                    file_name: &self.file_name,
                    sha256: &sha256,
                    epoch: manifest.build_epoch,
                },
                sbom_packages,
            )
        });
        let mut sidecars = vec![
            (&sha256_path, sha256_line.as_bytes()),
            (&manifest_path, manifest_json.as_slice()),
        ];
        if let Some(sbom) = &sbom {
            sidecars.push((&sbom_path, sbom.as_slice()));
        }
        let extra: Vec<(PathBuf, Vec<u8>)> = extra
            .into_iter()
            .map(|(suffix, bytes)| (sidecar(&final_path, suffix), bytes))
            .collect();
        for (path, bytes) in &extra {
            sidecars.push((path, bytes.as_slice()));
        }

        let mut created = Vec::new();
        let result = (|| {
            for (path, bytes) in sidecars {
                self.dir.write_new(path, bytes)?;
                created.push(path.clone());
                if created.len() == 1 {
                    crate::signal_hold::pause_for_test("publish");
                }
            }
            temp.persist_noclobber(&final_path)
                .map_err(|e| ArtifactError::Publish {
                    path: final_path.clone(),
                    source: e.error,
                })
                .map(drop)
        })();
        if let Err(e) = result {
            for path in created {
                let _ = std::fs::remove_file(path);
            }
            return Err(e);
        }
        // Published: from here on an error must not remove anything.
        self.dir.sync()?;
        Ok(Published {
            path: final_path,
            sha256_path,
            manifest_path,
            manifest,
            sbom_path: sbom.map(|_| sbom_path),
            extra_paths: extra.into_iter().map(|(path, _)| path).collect(),
        })
    }
}

impl OutputDir {
    /// Publishes a new file `path` (in this directory) that `write` streams into a hidden temp
    /// file, with the same no-clobber rename as every sidecar; nothing is left if it fails.
    pub fn publish_new_with<E: From<ArtifactError>>(
        &self,
        path: &Path,
        write: impl FnOnce(&mut dyn Write) -> Result<(), E>,
    ) -> Result<(), E> {
        let write_error = |source| ArtifactError::Write {
            path: path.to_path_buf(),
            source,
        };
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let temp = tempfile::Builder::new()
            .prefix(&format!(".{name}."))
            .suffix(PARTIAL_SUFFIX)
            .permissions(published_permissions())
            .tempfile_in(&self.dir)
            .map_err(write_error)?;
        let mut out = BufWriter::with_capacity(WRITE_BUFFER, temp);
        write(&mut out)?;
        let temp = out.into_inner().map_err(|e| write_error(e.into_error()))?;
        temp.as_file().sync_all().map_err(write_error)?;
        temp.persist_noclobber(path)
            .map_err(|e| ArtifactError::Publish {
                path: path.to_path_buf(),
                source: e.error,
            })?;
        Ok(())
    }

    /// Publishes `path` as [`OutputDir::publish_new_with`] does, hashing what `write` writes,
    /// then `<path>.sha256` in the same `sha256sum` format as the tarball's (so `sha256sum -c`
    /// and `ingot upload` check it alike); if the sidecar cannot be published, `path` is
    /// removed again. Returns the SHA-256.
    pub fn publish_new_with_sha256<E: From<ArtifactError>>(
        &self,
        path: &Path,
        write: impl FnOnce(&mut dyn Write) -> Result<(), E>,
    ) -> Result<String, E> {
        let mut hasher = Sha256::new();
        self.publish_new_with(path, |out| {
            write(&mut HashingWriter {
                inner: out,
                hasher: &mut hasher,
            })
        })?;
        let sha256 = hex::encode(hasher.finalize());
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if let Err(e) = self.write_new(
            &sidecar(path, ".sha256"),
            format!("{sha256}  {name}\n").as_bytes(),
        ) {
            let _ = std::fs::remove_file(path);
            return Err(e.into());
        }
        Ok(sha256)
    }

    /// Writes a new file `path` through a temp file and a no-clobber rename.
    fn write_new(&self, path: &Path, bytes: &[u8]) -> Result<(), ArtifactError> {
        self.publish_new_with(path, |out| {
            out.write_all(bytes).map_err(|source| ArtifactError::Write {
                path: path.to_path_buf(),
                source,
            })
        })
    }

    /// Makes the new names durable.
    fn sync(&self) -> Result<(), ArtifactError> {
        File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(|source| ArtifactError::Directory {
                dir: self.dir.clone(),
                what: "syncing",
                source,
            })
    }
}

/// Artifacts are meant to be read by others (a web server, an upload job): 0644 minus the
/// umask, like any file the user creates, not the temp file's 0600.
fn published_permissions() -> std::fs::Permissions {
    std::os::unix::fs::PermissionsExt::from_mode(0o644)
}

/// Hashes the bytes on their way to `inner`.
struct HashingWriter<'w> {
    inner: &'w mut dyn Write,
    hasher: &'w mut Sha256,
}

impl Write for HashingWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// `path` with `suffix` appended to its file name.
pub fn sidecar(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_os_string();
    name.push(suffix);
    PathBuf::from(name)
}

/// What the build knows about its inputs, recorded in the manifest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BuildInputs {
    /// SHA-256 (hex) of the recipe and its scripts.
    pub recipe_digest: String,
    /// The mtime clamp.
    pub build_epoch: BuildEpoch,
    /// Where the epoch came from.
    pub epoch_source: EpochSource,
    /// The signed suites read.
    pub suites: Vec<SuiteRecord>,
    /// Every package installed.
    pub packages: Vec<PackageRecord>,
    /// How long each step of the build took.
    pub stages: Vec<crate::progress::StageTime>,
}

/// One verified suite.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SuiteRecord {
    /// The suite, e.g. `noble-updates`.
    pub suite: String,
    /// The `InRelease` URL it was read from.
    pub inrelease_url: String,
    /// SHA-256 (hex) of that `InRelease`.
    pub inrelease_sha256: String,
}

/// One installed package.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PackageRecord {
    /// Package name.
    pub name: String,
    /// Debian version.
    pub version: String,
    /// Architecture (`amd64`, `all`).
    pub architecture: String,
    /// SHA-256 (hex) of the `.deb`.
    pub sha256: String,
}

/// The published file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutputRecord {
    /// File name, relative to the output directory.
    pub file: String,
    /// Its compression.
    pub compression: Compression,
    /// SHA-256 (hex) of the file.
    pub sha256: String,
    /// Size in bytes.
    pub size: u64,
}

/// `<file>.manifest.json`: what went in and what came out. Deterministic: no wall-clock
/// times, packages sorted by name, architecture, version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// Layout version of this file ([`MANIFEST_VERSION`]).
    pub manifest_version: u32,
    /// The ingot that built it.
    pub ingot_version: String,
    /// Image name.
    pub image: String,
    /// Artifact version.
    pub version: u32,
    /// SHA-256 (hex) of the recipe and its scripts.
    pub recipe_digest: String,
    /// The mtime clamp, in seconds since 1970.
    pub build_epoch: BuildEpoch,
    /// Where the epoch came from.
    pub epoch_source: EpochSource,
    /// The signed suites read.
    pub suites: Vec<SuiteRecord>,
    /// Every package installed.
    pub packages: Vec<PackageRecord>,
    /// The artifact.
    pub output: OutputRecord,
    /// How long each step of the build took (`[{name, seconds}]`; wall-clock, so not part of
    /// what makes two builds identical).
    #[serde(default)]
    pub stages: Vec<crate::progress::StageTime>,
}

/// A published version.
#[derive(Debug, Clone)]
pub struct Published {
    /// The artifact.
    pub path: PathBuf,
    /// Its `.sha256`.
    pub sha256_path: PathBuf,
    /// Its `.manifest.json`.
    pub manifest_path: PathBuf,
    /// The manifest written.
    pub manifest: Manifest,
    /// Its `.spdx.json`, when one was written.
    pub sbom_path: Option<PathBuf>,
    /// The extra sidecars written (`.provenance.json`).
    pub extra_paths: Vec<PathBuf>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_oci_archive_gets_its_own_sha256_and_counts_as_its_version() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = OutputDir::lock(tmp.path(), "img").unwrap();
        let path = tmp.path().join("img-v4.oci.tar");
        let sha = dir
            .publish_new_with_sha256::<ArtifactError>(&path, |out| {
                out.write_all(b"layout bytes").unwrap();
                Ok(())
            })
            .unwrap();
        assert_eq!(sha, hex::encode(Sha256::digest(b"layout bytes")));
        assert_eq!(
            std::fs::read_to_string(tmp.path().join("img-v4.oci.tar.sha256")).unwrap(),
            format!("{sha}  img-v4.oci.tar\n")
        );
        // A build killed after publishing its OCI archive used up the number.
        assert_eq!(dir.next_version().unwrap(), 5);
        // Never overwritten.
        assert!(
            dir.publish_new_with_sha256::<ArtifactError>(&path, |_| Ok(()))
                .is_err()
        );
    }

    #[test]
    fn version_names_parse_strictly() {
        assert_eq!(parse_version("img", "img-v3.tar.gz"), Some((3, ".tar.gz")));
        assert_eq!(parse_version("img", "img-v12.tar"), Some((12, ".tar")));
        assert_eq!(parse_version("img", "img-v2-rc.tar"), Some((2, "-rc.tar")));
        assert_eq!(parse_version("img", "img-vx.tar"), None);
        assert_eq!(parse_version("img", "img2-v1.tar"), None);
        assert_eq!(parse_version("img", "img-v99999999999.tar"), None);
        assert!(check_image_name("ubuntu-24.04-lxc-rootfs").is_ok());
        assert!(check_image_name("../x").is_err());
        assert!(check_image_name(".hidden").is_err());
        assert!(check_image_name("").is_err());
    }
}
