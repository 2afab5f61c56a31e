//! The payload of `<artifact>.provenance.json`: an in-toto Statement v1 whose predicate is SLSA
//! provenance v1 (<https://slsa.dev/spec/v1.0/provenance>), as typed serde structs so that
//! `verify` and `rebuild` read exactly what `build` writes.
//!
//! Reproducible: serialised from structs (fixed field order) and sorted maps, with no time of
//! run outside `runDetails.metadata`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::epoch::{BuildEpoch, EpochSource};
use crate::export::compress::Compression;
use crate::stage::staging::StagingMedium;

/// `_type` of an in-toto Statement v1.
pub const STATEMENT_TYPE: &str = "https://in-toto.io/Statement/v1";
/// `predicateType` of SLSA provenance v1.
pub const PREDICATE_TYPE: &str = "https://slsa.dev/provenance/v1";
/// ingot's build type: what `externalParameters` and `internalParameters` mean (documented in
/// the README's "Provenance" section). `.invalid` is reserved: the URI names, it does not
/// resolve.
pub const BUILD_TYPE: &str = "https://ingot.invalid/provenance/rootfs-build/v1";
/// The builder: ingot itself, run by whoever signs (the key says who).
pub const BUILDER_ID: &str = "https://ingot.invalid/provenance/builder/ingot";

/// An in-toto Statement v1 with an SLSA provenance v1 predicate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Statement {
    /// [`STATEMENT_TYPE`].
    #[serde(rename = "_type")]
    pub statement_type: String,
    /// The artifact.
    pub subject: Vec<Subject>,
    /// [`PREDICATE_TYPE`].
    #[serde(rename = "predicateType")]
    pub predicate_type: String,
    /// SLSA provenance.
    pub predicate: Predicate,
}

/// One subject: a file name and its digests.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Subject {
    /// The artifact's file name (`ubuntu-24.04-lxc-rootfs-v3.tar.gz`).
    pub name: String,
    /// `{"sha256": hex}`.
    pub digest: BTreeMap<String, String>,
}

/// SLSA provenance v1's predicate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Predicate {
    /// What was built, from what.
    pub build_definition: BuildDefinition,
    /// Who built it, and when.
    pub run_details: RunDetails,
}

/// `buildDefinition`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BuildDefinition {
    /// [`BUILD_TYPE`].
    pub build_type: String,
    /// The inputs a user controls: the recipe and its lock.
    pub external_parameters: ExternalParameters,
    /// The options that change the bytes.
    pub internal_parameters: InternalParameters,
    /// Every signed `InRelease` and every `.deb`.
    pub resolved_dependencies: Vec<ResourceDescriptor>,
}

/// `externalParameters`: the recipe, by content.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExternalParameters {
    /// `[image] name`.
    pub recipe: String,
    /// The recipe digest the manifest records (`recipe.toml` and its scripts, in order).
    pub recipe_digest: String,
    /// SHA-256 of `recipe.toml` and each script, by path relative to the recipe folder.
    pub files: BTreeMap<String, String>,
    /// The lock a `--locked` build installed (`None`: the archive of the day was resolved).
    pub lock: Option<LockParameter>,
}

/// The lock of a locked build.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LockParameter {
    /// Its path relative to the recipe folder (`ingot.lock`).
    pub path: String,
    /// SHA-256 of the file.
    pub sha256: String,
}

/// `internalParameters`: what else decides the bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InternalParameters {
    /// The mtime clamp, seconds since 1970.
    pub build_epoch: BuildEpoch,
    /// Where it came from.
    pub epoch_source: EpochSource,
    /// The artifact's compression.
    pub compression: Compression,
    /// The staging medium asked for (the bytes do not depend on it; recorded for a rebuilder).
    pub staging: StagingMedium,
    /// Whether the configured tree could come from the base cache.
    pub base_cache: bool,
    /// The Debian architecture.
    pub architecture: String,
    /// The components read.
    pub components: Vec<String>,
}

/// SLSA's `ResourceDescriptor`, the fields ingot uses.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResourceDescriptor {
    /// Where it was read from.
    pub uri: String,
    /// `{"sha256": hex}`.
    pub digest: BTreeMap<String, String>,
    /// `InRelease` of a suite (`noble-updates/InRelease`) or a package name.
    pub name: String,
    /// `suite` (and `date`) of an `InRelease`; `version`, `architecture`, `suite` of a `.deb`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// `runDetails`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunDetails {
    /// The builder.
    pub builder: Builder,
    /// When (the only part of the payload that changes between identical builds).
    pub metadata: BuildMetadata,
}

/// `runDetails.builder`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Builder {
    /// [`BUILDER_ID`].
    pub id: String,
    /// `{"ingot": "0.1.0", "commit": "<12 hex>"}`.
    pub version: BTreeMap<String, String>,
}

/// `runDetails.metadata`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BuildMetadata {
    /// RFC 3339, UTC.
    pub started_on: String,
    /// RFC 3339, UTC.
    pub finished_on: String,
}

impl Statement {
    /// The payload bytes: compact JSON (what is signed; the envelope carries it as base64).
    pub fn to_payload(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// The subject's SHA-256, when there is exactly one subject.
    pub fn subject_sha256(&self) -> Option<&str> {
        match self.subject.as_slice() {
            [one] => one.digest.get("sha256").map(String::as_str),
            _ => None,
        }
    }
}

/// `{"sha256": hex}`.
pub fn sha256_digest(hex: &str) -> BTreeMap<String, String> {
    [("sha256".to_string(), hex.to_string())].into()
}
