//! The archive stage: fetch each suite's `InRelease` (or `Release` + `Release.gpg`), verify its
//! OpenPGP signature against the recipe's keyring, then fetch the `Packages` indexes it lists
//! and accept them only if their size and SHA-256 match the signed `Release`.
//!
//! Nothing here trusts a byte that is not chained to a verified signature: `Release` fields are
//! parsed only from the verified signed text, and index contents only after their hash matched.

pub mod packages;

use serde::Serialize;

use crate::fetch::transport::Transport;
use crate::recipe::SuiteSource;

/// One binary package stanza from a verified `Packages` index (the fields ingot uses).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BinaryPackage {
    /// `Package`.
    pub name: String,
    /// `Version`, as written.
    pub version: String,
    /// `Architecture` (`amd64`, `all`, …).
    pub architecture: String,
    /// `Essential: yes`.
    pub essential: bool,
    /// `Priority` (`required`, `important`, …), if given.
    pub priority: Option<String>,
    /// `Multi-Arch` (`same`, `foreign`, `allowed`), if given.
    pub multi_arch: Option<String>,
    /// `Pre-Depends`, raw.
    pub pre_depends: Option<String>,
    /// `Depends`, raw.
    pub depends: Option<String>,
    /// `Provides`, raw.
    pub provides: Option<String>,
    /// `Conflicts`, raw.
    pub conflicts: Option<String>,
    /// `Breaks`, raw.
    pub breaks: Option<String>,
    /// `Recommends`, `Suggests`, `Replaces`, `Enhances`, raw, in that order (`None` where the
    /// field is absent). The resolver does not follow them, but apt numbers packages by the
    /// names these fields mention, and that order breaks ties between providers.
    pub weak_relations: [Option<String>; 4],
    /// `Protected: yes` or `Important: yes` (apt prefers such providers).
    pub protected: bool,
    /// `Source` (name only, without a version in parentheses), if given.
    pub source: Option<String>,
    /// `Filename`: the pool path relative to the archive root.
    pub filename: String,
    /// `Size` of the `.deb` in bytes.
    pub size: u64,
    /// `SHA256` of the `.deb`, lowercase hex.
    pub sha256: String,
    /// The suite whose index listed this stanza.
    pub suite: String,
    /// The archive root URL the `.deb` is fetched from.
    pub mirror: String,
}

/// What the signed `Release` of one suite says, after verification.
#[derive(Debug, Clone, Serialize)]
pub struct VerifiedRelease {
    /// The suite as the recipe names it, with its mirror.
    pub source: SuiteSource,
    /// The URL of the file that was verified (`…/InRelease` or `…/Release`).
    pub url: String,
    /// SHA-256 of the verified file as downloaded (the manifest records it).
    pub sha256: String,
    /// Fingerprint of the key that made the accepted signature (uppercase hex).
    pub signer: String,
    /// `Date`, seconds since the Unix epoch.
    pub date: i64,
    /// `Valid-Until`, if present.
    pub valid_until: Option<i64>,
    /// `Suite`, if present.
    pub suite_field: Option<String>,
    /// `Codename`, if present.
    pub codename: Option<String>,
    /// The `SHA256` file list: path relative to `dists/<suite>/` → (size, hex digest).
    pub files: std::collections::BTreeMap<String, (u64, String)>,
}

/// A verified suite: its release and every binary package of the requested components.
#[derive(Debug, Clone)]
pub struct SuiteIndex {
    /// The verified release file.
    pub release: VerifiedRelease,
    /// All stanzas of `<component>/binary-<arch>/Packages` for each component (and, for
    /// `Architecture: all` packages, those listed there).
    pub packages: Vec<BinaryPackage>,
}

/// Options that relax or pin verification.
#[derive(Debug, Clone, Copy)]
pub struct ArchiveOptions {
    /// Accept a `Valid-Until` in the past.
    pub allow_expired: bool,
    /// "Now", seconds since the epoch (tests pin it).
    pub now: i64,
}

/// Why an archive was refused; every variant names the URL (or file) at fault.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    /// Transfer failed.
    #[error(transparent)]
    Transport(#[from] crate::fetch::transport::TransportError),
    /// The keyring file could not be read or parsed.
    #[error("{path}: not a usable OpenPGP keyring: {message}")]
    Keyring {
        /// The keyring file.
        path: std::path::PathBuf,
        /// Why.
        message: String,
    },
    /// Neither `InRelease` nor `Release` + `Release.gpg` is signed.
    #[error("{url}: no OpenPGP signature (refusing an unsigned archive)")]
    Unsigned {
        /// The URL of the unsigned release file.
        url: String,
    },
    /// A signature is present but does not verify against any key in the keyring.
    #[error("{url}: {message}")]
    BadSignature {
        /// The release URL.
        url: String,
        /// Which key/why (unknown key id, bad signature, expired key, …).
        message: String,
    },
    /// `Valid-Until` lies in the past.
    #[error(
        "{url}: expired: Valid-Until {valid_until} is in the past (use --allow-expired for snapshot archives)"
    )]
    Expired {
        /// The release URL.
        url: String,
        /// The `Valid-Until` value as written.
        valid_until: String,
    },
    /// `Suite`/`Codename` does not name the suite that was asked for.
    #[error("{url}: Suite/Codename is {found:?}, expected {expected:?}")]
    WrongSuite {
        /// The release URL.
        url: String,
        /// The suite requested.
        expected: String,
        /// What the file says.
        found: String,
    },
    /// A field of the signed release is missing or malformed.
    #[error("{url}: malformed Release: {message}")]
    Malformed {
        /// The release or index URL.
        url: String,
        /// What is wrong.
        message: String,
    },
    /// A `Packages` index is missing from the signed `Release`.
    #[error(
        "{url}: not listed in the signed Release of {suite} (component {component}, architecture {arch})"
    )]
    IndexNotListed {
        /// The index URL tried.
        url: String,
        /// The suite.
        suite: String,
        /// The component.
        component: String,
        /// The architecture.
        arch: String,
    },
    /// An index's size or SHA-256 differs from the signed `Release`.
    #[error(
        "{url}: SHA-256/size mismatch: the signed Release says {expected_size} bytes {expected}, got {actual_size} bytes {actual}"
    )]
    HashMismatch {
        /// The index URL.
        url: String,
        /// Expected SHA-256.
        expected: String,
        /// Actual SHA-256.
        actual: String,
        /// Expected size.
        expected_size: u64,
        /// Actual size.
        actual_size: u64,
    },
}

/// Fetch and verify one suite and its `Packages` indexes for `components` and `arch`.
pub fn load_suite(
    transport: &Transport,
    keyring_path: &std::path::Path,
    suite: &SuiteSource,
    components: &[String],
    arch: &str,
    opts: ArchiveOptions,
) -> Result<SuiteIndex, ArchiveError> {
    let _ = (transport, keyring_path, suite, components, arch, opts);
    todo!("archive::load_suite")
}
