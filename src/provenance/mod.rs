//! Provenance: `<artifact>.provenance.json`, a DSSE envelope ([`dsse`]) around an in-toto
//! Statement v1 with an SLSA provenance v1 predicate ([`statement`]), signed with an Ed25519
//! key ([`keys`]) when the build has one; and its check beside a tarball
//! ([`verify_beside`]: signature, subject digest, and the manifest and SBOM naming the same
//! digest).
//!
//! This module derives the statement from the build's verified inputs and renders the bytes;
//! [`crate::artifact`] publishes them with the other sidecars. It never prints, and never
//! writes a file except the key pair of [`keys::SignKey::write_pair`].

pub mod dsse;
pub mod keys;
pub mod statement;

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use serde::Serialize;

use crate::export::compress::Compression;
use crate::resolve::Resolved;
use crate::stage::staging::StagingMedium;
use dsse::{Envelope, EnvelopeError};
use keys::{KeyError, PublicKey, SignKey};
use statement::{
    BUILD_TYPE, BUILDER_ID, BuildDefinition, BuildMetadata, Builder, ExternalParameters,
    InternalParameters, LockParameter, PREDICATE_TYPE, Predicate, ResourceDescriptor, RunDetails,
    STATEMENT_TYPE, Statement, Subject, sha256_digest,
};

/// The sidecar's suffix: `<artifact>.provenance.json`.
pub const SIDECAR_SUFFIX: &str = ".provenance.json";

/// Largest envelope read (a golden image's is about 100 KiB).
const MAX_ENVELOPE_BYTES: u64 = 16 << 20;

/// Why provenance cannot be made or does not hold; every variant names the file at fault.
#[derive(Debug, thiserror::Error)]
pub enum ProvenanceError {
    /// A key could not be used (bad input: exit 2).
    #[error(transparent)]
    Key(#[from] KeyError),
    /// A recipe file or the lock could not be read while describing the build.
    #[error("{}: {source}", path.display())]
    Input {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// No envelope beside the tarball.
    #[error("{}: no provenance beside the tarball (expected {})", tarball.display(), path.display())]
    Missing {
        /// The tarball.
        tarball: PathBuf,
        /// Where the envelope was looked for.
        path: PathBuf,
    },
    /// A file beside the tarball cannot be read.
    #[error("{}: {source}", path.display())]
    Unreadable {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// Not an envelope, statement or sidecar of the expected layout.
    #[error("{}: {message}", path.display())]
    Malformed {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The envelope's signature (or payload type) does not hold.
    #[error("{}: {source}", path.display())]
    Envelope {
        /// The envelope.
        path: PathBuf,
        /// Why.
        source: EnvelopeError,
    },
    /// A recorded digest is not the tarball's.
    #[error(
        "{}: {what} is sha256 {recorded}, but {} has sha256 {actual}",
        path.display(), tarball.display()
    )]
    DigestMismatch {
        /// The file that records the digest (envelope, manifest, SBOM).
        path: PathBuf,
        /// Which field (`the subject`, `output.sha256`, `the image package's checksum`).
        what: &'static str,
        /// The tarball.
        tarball: PathBuf,
        /// What the file says.
        recorded: String,
        /// What the tarball hashes to.
        actual: String,
    },
}

impl ProvenanceError {
    /// A key file that cannot be read or parsed is bad input (exit 2); the rest is a failed
    /// check (exit 1).
    pub fn is_bad_input(&self) -> bool {
        matches!(self, ProvenanceError::Key(_))
    }
}

/// `<path>` + `suffix`.
pub fn sidecar_path(tarball: &Path, suffix: &str) -> PathBuf {
    let mut name = tarball.as_os_str().to_os_string();
    name.push(suffix);
    PathBuf::from(name)
}

fn unix_secs(t: SystemTime) -> i64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// The options of a build that change its bytes or its inputs (what the statement records of
/// `ingot build`'s flags).
#[derive(Debug, Clone, Copy)]
pub struct BuildChoices {
    /// `--locked`: the recipe's `ingot.lock` is an input.
    pub locked: bool,
    /// `--compression`.
    pub compression: Compression,
    /// `--staging`.
    pub staging: StagingMedium,
    /// Not `--no-base-cache`.
    pub base_cache: bool,
}

/// The statement of a finished tar build: `artifact` (file name) with `sha256`, built from
/// `r` with `b`, between `started` and now.
pub fn statement_for_build(
    r: &Resolved,
    b: &BuildChoices,
    artifact: &str,
    sha256: &str,
    started: SystemTime,
) -> Result<Statement, ProvenanceError> {
    let recipe = &r.recipe;
    let files = crate::lock::recipe_files(recipe).map_err(|e| match e {
        crate::lock::LockError::Io { path, source } => ProvenanceError::Input { path, source },
        other => ProvenanceError::Input {
            path: recipe.file.clone(),
            source: std::io::Error::other(other.to_string()),
        },
    })?;
    let lock = if b.locked {
        let path = crate::lock::lock_path(recipe);
        let (digest, _) =
            crate::fetch::hash_file(&path).map_err(|source| ProvenanceError::Input {
                path: path.clone(),
                source,
            })?;
        Some(LockParameter {
            path: crate::lock::LOCK_FILE_NAME.to_string(),
            sha256: digest,
        })
    } else {
        None
    };
    let mut dependencies: Vec<ResourceDescriptor> = r
        .releases
        .iter()
        .map(|s| ResourceDescriptor {
            uri: s.url.clone(),
            digest: sha256_digest(&s.sha256),
            name: format!("{}/InRelease", s.source.suite),
            annotations: [
                ("suite".to_string(), s.source.suite.clone()),
                ("date".to_string(), crate::sbom::rfc3339_utc(s.date)),
                ("signer".to_string(), s.signer.clone()),
            ]
            .into(),
        })
        .collect();
    let mut packages: Vec<&crate::plan::PlannedPackage> = r.plan.packages.iter().collect();
    packages.sort_by(|a, b| {
        (&a.name, &a.architecture, &a.version).cmp(&(&b.name, &b.architecture, &b.version))
    });
    dependencies.extend(packages.into_iter().map(|p| {
        ResourceDescriptor {
            uri: p.url(),
            digest: sha256_digest(&p.sha256),
            name: p.name.clone(),
            annotations: [
                ("version".to_string(), p.version.clone()),
                ("architecture".to_string(), p.architecture.clone()),
                ("suite".to_string(), p.suite.clone()),
            ]
            .into(),
        }
    }));
    Ok(Statement {
        statement_type: STATEMENT_TYPE.to_string(),
        subject: vec![Subject {
            name: artifact.to_string(),
            digest: sha256_digest(sha256),
        }],
        predicate_type: PREDICATE_TYPE.to_string(),
        predicate: Predicate {
            build_definition: BuildDefinition {
                build_type: BUILD_TYPE.to_string(),
                external_parameters: ExternalParameters {
                    recipe: recipe.image.name.clone(),
                    recipe_digest: recipe.digest.clone(),
                    files,
                    lock,
                },
                internal_parameters: InternalParameters {
                    build_epoch: r.epoch,
                    epoch_source: r.epoch_source,
                    compression: b.compression,
                    staging: b.staging,
                    base_cache: b.base_cache,
                    architecture: recipe.source.architecture.clone(),
                    components: recipe.source.components.clone(),
                },
                resolved_dependencies: dependencies,
            },
            run_details: RunDetails {
                builder: Builder {
                    id: BUILDER_ID.to_string(),
                    version: [
                        ("ingot".to_string(), env!("CARGO_PKG_VERSION").to_string()),
                        ("commit".to_string(), env!("INGOT_GIT_COMMIT").to_string()),
                    ]
                    .into(),
                },
                metadata: BuildMetadata {
                    started_on: crate::sbom::rfc3339_utc(unix_secs(started)),
                    finished_on: crate::sbom::rfc3339_utc(unix_secs(SystemTime::now())),
                },
            },
        },
    })
}

/// The sidecar's bytes: the statement in a DSSE envelope, signed with `key` when given.
pub fn render_envelope(statement: &Statement, key: Option<&SignKey>) -> Vec<u8> {
    Envelope::new(&statement.to_payload(), key).to_json()
}

/// Read `<tarball>.provenance.json` and decode its statement, checking the signature under
/// `key` when one is given (without one, only the layout is checked: for `rebuild`, which
/// compares bytes and trusts nothing the file says).
pub fn read_beside(
    tarball: &Path,
    key: Option<&PublicKey>,
) -> Result<(PathBuf, Statement), ProvenanceError> {
    let path = sidecar_path(tarball, SIDECAR_SUFFIX);
    let bytes = match read_limited(&path) {
        Err(ProvenanceError::Unreadable { source, .. })
            if source.kind() == std::io::ErrorKind::NotFound =>
        {
            return Err(ProvenanceError::Missing {
                tarball: tarball.to_path_buf(),
                path,
            });
        }
        other => other?,
    };
    let malformed = |message: String| ProvenanceError::Malformed {
        path: path.clone(),
        message,
    };
    let envelope: Envelope = serde_json::from_slice(&bytes)
        .map_err(|e| malformed(format!("not a DSSE envelope: {e}")))?;
    let payload = match key {
        Some(key) => envelope.verify(key),
        None => envelope.payload_bytes(),
    }
    .map_err(|source| ProvenanceError::Envelope {
        path: path.clone(),
        source,
    })?;
    let statement: Statement = serde_json::from_slice(&payload)
        .map_err(|e| malformed(format!("the payload is not an ingot SLSA statement: {e}")))?;
    if statement.statement_type != STATEMENT_TYPE || statement.predicate_type != PREDICATE_TYPE {
        return Err(malformed(format!(
            "_type {:?} / predicateType {:?}, expected {STATEMENT_TYPE:?} / {PREDICATE_TYPE:?}",
            statement.statement_type, statement.predicate_type
        )));
    }
    if statement.predicate.build_definition.build_type != BUILD_TYPE {
        return Err(malformed(format!(
            "buildType {:?}, expected {BUILD_TYPE:?}",
            statement.predicate.build_definition.build_type
        )));
    }
    Ok((path, statement))
}

fn read_limited(path: &Path) -> Result<Vec<u8>, ProvenanceError> {
    use std::io::Read;
    let unreadable = |source| ProvenanceError::Unreadable {
        path: path.to_path_buf(),
        source,
    };
    let file = std::fs::File::open(path).map_err(unreadable)?;
    let mut bytes = Vec::new();
    file.take(MAX_ENVELOPE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(unreadable)?;
    if bytes.len() as u64 > MAX_ENVELOPE_BYTES {
        return Err(ProvenanceError::Malformed {
            path: path.to_path_buf(),
            message: format!("larger than {MAX_ENVELOPE_BYTES} bytes"),
        });
    }
    Ok(bytes)
}

/// What `verify --provenance` established.
#[derive(Debug, Clone, Serialize)]
pub struct ProvenanceCheck {
    /// The envelope.
    pub envelope: PathBuf,
    /// The key its signature verified under.
    pub keyid: String,
    /// The subject's name.
    pub subject: String,
    /// The tarball's SHA-256, which the subject, the manifest and the SBOM all record.
    pub sha256: String,
    /// How many signed `InRelease`s and `.deb`s the statement lists.
    pub resolved_dependencies: usize,
    /// The compression the statement records.
    pub compression: Compression,
}

/// `verify --provenance --key PUB`: the envelope beside `tarball` verifies under `key`, its
/// subject is the tarball's SHA-256, and the `.manifest.json` and `.spdx.json` beside it
/// record the same digest. The first thing that does not hold is the error.
pub fn verify_beside(tarball: &Path, key: &PublicKey) -> Result<ProvenanceCheck, ProvenanceError> {
    let (envelope, statement) = read_beside(tarball, Some(key))?;
    let (actual, _) =
        crate::fetch::hash_file(tarball).map_err(|source| ProvenanceError::Unreadable {
            path: tarball.to_path_buf(),
            source,
        })?;
    let mismatch = |path: &Path, what, recorded: &str| ProvenanceError::DigestMismatch {
        path: path.to_path_buf(),
        what,
        tarball: tarball.to_path_buf(),
        recorded: recorded.to_string(),
        actual: actual.clone(),
    };
    let recorded = statement
        .subject_sha256()
        .ok_or_else(|| ProvenanceError::Malformed {
            path: envelope.clone(),
            message: "the statement must have exactly one subject with a sha256 digest".into(),
        })?;
    if recorded != actual {
        return Err(mismatch(&envelope, "the subject", recorded));
    }

    let manifest_path = sidecar_path(tarball, ".manifest.json");
    let manifest: serde_json::Value = read_json(&manifest_path)?;
    let in_manifest = manifest["output"]["sha256"].as_str().unwrap_or_default();
    if in_manifest != actual {
        return Err(mismatch(&manifest_path, "output.sha256", in_manifest));
    }
    let sbom_path = sidecar_path(tarball, ".spdx.json");
    let sbom: serde_json::Value = read_json(&sbom_path)?;
    let in_sbom = sbom["packages"]
        .as_array()
        .and_then(|p| p.iter().find(|p| p["SPDXID"] == "SPDXRef-Image"))
        .and_then(|p| p["checksums"].as_array())
        .and_then(|c| c.iter().find(|c| c["algorithm"] == "SHA256"))
        .and_then(|c| c["checksumValue"].as_str())
        .unwrap_or_default();
    if in_sbom != actual {
        return Err(mismatch(
            &sbom_path,
            "the image package's SHA256 checksum",
            in_sbom,
        ));
    }
    Ok(ProvenanceCheck {
        envelope,
        keyid: key.keyid().to_string(),
        subject: statement.subject[0].name.clone(),
        sha256: actual,
        resolved_dependencies: statement
            .predicate
            .build_definition
            .resolved_dependencies
            .len(),
        compression: statement
            .predicate
            .build_definition
            .internal_parameters
            .compression,
    })
}

fn read_json(path: &Path) -> Result<serde_json::Value, ProvenanceError> {
    let bytes = read_limited(path)?;
    serde_json::from_slice(&bytes).map_err(|e| ProvenanceError::Malformed {
        path: path.to_path_buf(),
        message: format!("not JSON: {e}"),
    })
}
