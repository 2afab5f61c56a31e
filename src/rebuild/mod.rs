//! `ingot rebuild TARBALL --recipe DIR`: the independent rebuilder's question — do this recipe
//! and its lock give exactly these bytes? It reads the provenance beside the tarball (or, for
//! an image without one, its manifest), refuses a recipe folder whose `recipe.toml`, scripts or
//! `ingot.lock` differ from what was recorded (naming the file), builds `--locked` into a
//! private temporary directory, and compares: identical SHA-256, or the first differing tar
//! entries ([`tardiff`]).
//!
//! Nothing is published: the rebuild's output directory is removed when the comparison is
//! done. The recorded digests are compared, not trusted: the build's own checks (signatures,
//! the lock, every `.deb`'s SHA-256) run as for any locked build.

pub mod tardiff;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::build::{self, BuildOptions, CommonOptions, OutputFormat};
use crate::export::compress::Compression;
use crate::progress::Reporter;
use crate::provenance::{self, ProvenanceError};
use tardiff::TarDiff;

/// Why a rebuild could not compare (the comparison itself is a [`RebuildOutcome`]).
#[derive(Debug, thiserror::Error)]
pub enum RebuildError {
    /// The tarball's provenance (or manifest) cannot be read.
    #[error(transparent)]
    Provenance(#[from] ProvenanceError),
    /// A recipe file differs from the recorded one.
    #[error("{}: {what} (the build of {} recorded sha256 {recorded}); refusing to rebuild", file.display(), tarball.display())]
    RecipeDiffers {
        /// The file.
        file: PathBuf,
        /// `differs`, `is missing`, `is not part of the recorded build`.
        what: &'static str,
        /// The tarball.
        tarball: PathBuf,
        /// What was recorded (`none` for a file the build did not have).
        recorded: String,
    },
    /// The image was not built from a lock: there is nothing to rebuild it from.
    #[error(
        "{}: was not built --locked (its {} records no lock); a rebuild needs the ingot.lock it \
         was built from", tarball.display(), record.display()
    )]
    NotLocked {
        /// The tarball.
        tarball: PathBuf,
        /// The provenance or manifest.
        record: PathBuf,
    },
    /// The recipe folder cannot be read.
    #[error("{}: {message}", path.display())]
    Recipe {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// The private output directory cannot be made.
    #[error("cannot create a temporary directory for the rebuild: {0}")]
    TempDir(std::io::Error),
    /// The tarballs cannot be read for the comparison.
    #[error(transparent)]
    Read(#[from] crate::verify::VerifyError),
}

/// What a rebuild found.
#[derive(Debug, Clone, Serialize)]
pub struct RebuildOutcome {
    /// The tarball asked about.
    pub tarball: PathBuf,
    /// Its SHA-256.
    pub sha256: String,
    /// The rebuild's SHA-256.
    pub rebuilt_sha256: String,
    /// Where the recorded inputs came from (the provenance or the manifest).
    pub record: PathBuf,
    /// `None` when identical.
    pub differences: Option<TarDiff>,
}

impl RebuildOutcome {
    /// Same bytes.
    pub fn identical(&self) -> bool {
        self.sha256 == self.rebuilt_sha256
    }
}

/// What the tarball's build recorded about its inputs.
struct Recorded {
    record: PathBuf,
    /// Every recipe file's SHA-256, when recorded one by one (provenance).
    files: Option<BTreeMap<String, String>>,
    recipe_digest: String,
    lock_sha256: Option<String>,
    compression: Compression,
    version: Option<u32>,
}

fn recorded_inputs(tarball: &Path) -> Result<Recorded, RebuildError> {
    match provenance::read_beside(tarball, None) {
        Ok((record, statement)) => {
            let def = &statement.predicate.build_definition;
            let version = statement.subject.first().and_then(|s| {
                let image = &def.external_parameters.recipe;
                crate::artifact::parse_version(image, &s.name).map(|(v, _)| v)
            });
            Ok(Recorded {
                record,
                files: Some(def.external_parameters.files.clone()),
                recipe_digest: def.external_parameters.recipe_digest.clone(),
                lock_sha256: def
                    .external_parameters
                    .lock
                    .as_ref()
                    .map(|l| l.sha256.clone()),
                compression: def.internal_parameters.compression,
                version,
            })
        }
        Err(ProvenanceError::Missing { .. }) => {
            // An image from before provenance: its manifest has the recipe digest and the
            // epoch's source, not the lock's digest (the locked build checks the lock itself).
            let record = provenance::sidecar_path(tarball, ".manifest.json");
            let bytes = std::fs::read(&record).map_err(|source| {
                if source.kind() == std::io::ErrorKind::NotFound {
                    ProvenanceError::Missing {
                        tarball: tarball.to_path_buf(),
                        path: provenance::sidecar_path(tarball, provenance::SIDECAR_SUFFIX),
                    }
                } else {
                    ProvenanceError::Unreadable {
                        path: record.clone(),
                        source,
                    }
                }
            })?;
            let manifest: crate::artifact::Manifest =
                serde_json::from_slice(&bytes).map_err(|e| ProvenanceError::Malformed {
                    path: record.clone(),
                    message: format!("not an ingot manifest: {e}"),
                })?;
            if manifest.epoch_source != crate::epoch::EpochSource::Lock {
                return Err(RebuildError::NotLocked {
                    tarball: tarball.to_path_buf(),
                    record,
                });
            }
            Ok(Recorded {
                record,
                files: None,
                recipe_digest: manifest.recipe_digest,
                lock_sha256: Some(String::new()),
                compression: manifest.output.compression,
                version: Some(manifest.version),
            })
        }
        Err(e) => Err(e.into()),
    }
}

/// Refuse, naming the file, when the recipe folder is not the recorded one.
fn check_recipe(
    recorded: &Recorded,
    recipe: &crate::recipe::Recipe,
    tarball: &Path,
) -> Result<(), RebuildError> {
    let differs = |file: PathBuf, what, recorded: &str| RebuildError::RecipeDiffers {
        file,
        what,
        tarball: tarball.to_path_buf(),
        recorded: recorded.to_string(),
    };
    let now = crate::lock::recipe_files(recipe).map_err(|e| RebuildError::Recipe {
        path: recipe.file.clone(),
        message: e.to_string(),
    })?;
    if let Some(files) = &recorded.files {
        for (name, sha) in files {
            match now.get(name) {
                None => return Err(differs(recipe.dir.join(name), "is missing", sha)),
                Some(have) if have != sha => {
                    return Err(differs(recipe.dir.join(name), "differs", sha));
                }
                Some(_) => {}
            }
        }
        if let Some(name) = now.keys().find(|n| !files.contains_key(*n)) {
            return Err(differs(
                recipe.dir.join(name),
                "is not part of the recorded build",
                "none",
            ));
        }
    }
    if recipe.digest != recorded.recipe_digest {
        return Err(differs(
            recipe.file.clone(),
            "differs, or lists its scripts differently",
            &recorded.recipe_digest,
        ));
    }
    let Some(lock_sha) = &recorded.lock_sha256 else {
        return Err(RebuildError::NotLocked {
            tarball: tarball.to_path_buf(),
            record: recorded.record.clone(),
        });
    };
    let lock = crate::lock::lock_path(recipe);
    let have = crate::fetch::hash_file(&lock)
        .map(|(h, _)| h)
        .map_err(|e| RebuildError::Recipe {
            path: lock.clone(),
            message: e.to_string(),
        })?;
    // A manifest does not record the lock's digest (empty): the locked build checks it.
    if !lock_sha.is_empty() && &have != lock_sha {
        return Err(differs(lock, "differs", lock_sha));
    }
    Ok(())
}

/// `ingot rebuild`: check the recipe folder `o.recipe` against what `tarball`'s build recorded,
/// build it `--locked` into a private temporary directory, and compare.
pub fn rebuild(
    o: &CommonOptions,
    tarball: &Path,
    reporter: &dyn Reporter,
) -> Result<RebuildOutcome, anyhow::Error> {
    let (sha256, _) =
        crate::fetch::hash_file(tarball).map_err(|source| crate::verify::VerifyError::Open {
            path: tarball.to_path_buf(),
            source,
        })?;
    let recorded = recorded_inputs(tarball)?;
    let recipe = o.load_recipe()?;
    check_recipe(&recorded, &recipe, tarball)?;
    reporter.message(&format!(
        "{}: the recipe, its scripts and {} match {}",
        recipe.dir.display(),
        crate::lock::LOCK_FILE_NAME,
        recorded.record.display()
    ));
    let out = tempfile::Builder::new()
        .prefix("ingot-rebuild-")
        .tempdir()
        .map_err(RebuildError::TempDir)?;
    let options = BuildOptions {
        out: out.path().to_path_buf(),
        format: OutputFormat::Tar,
        next: recorded.version.is_none(),
        version: recorded.version,
        compression: recorded.compression,
        keep_staging: None,
        // An independent rebuild: dpkg runs again rather than restoring a cached tree.
        no_base_cache: true,
        staging: crate::stage::staging::StagingMedium::Auto,
        json: false,
        locked: true,
        sign_key: None,
        network_stack: None,
        // The tarball is what is compared (a recipe's own `oci = true` still applies).
        oci: false,
    };
    let built = build::build_image(o, &options, reporter).map_err(|f| f.error)?;
    let (rebuilt_sha256, _) = crate::fetch::hash_file(&built.path).map_err(|source| {
        crate::verify::VerifyError::Open {
            path: built.path.clone(),
            source,
        }
    })?;
    let differences = if rebuilt_sha256 == sha256 {
        None
    } else {
        Some(tardiff::compare(tarball, &built.path)?)
    };
    Ok(RebuildOutcome {
        tarball: tarball.to_path_buf(),
        sha256,
        rebuilt_sha256,
        record: recorded.record,
        differences,
    })
}
