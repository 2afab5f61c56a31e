//! The archive stage: fetch each suite's `InRelease` (or `Release` + `Release.gpg`), verify its
//! OpenPGP signature against the recipe's keyring, then fetch the `Packages` indexes it lists
//! and accept them only if their size and SHA-256 match the signed `Release`.
//!
//! Nothing here trusts a byte that is not chained to a verified signature: `Release` fields are
//! parsed only from the verified signed text, and index contents only after their hash matched.
//!
//! Layout: [`keyring`] answers "did a trusted key sign these bytes", [`release`] splits release
//! files and reads their fields, [`packages`] parses index stanzas; this file fetches and
//! chains them. It never writes anything to disk.

pub mod freshness;
pub mod keyring;
pub mod packages;
pub mod release;

use std::io::Read;

use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::net::{Transport, TransportError, join_url};
use crate::recipe::SuiteSource;

use keyring::Keyring;
use release::SignedRelease;

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
    /// Fingerprint of the key that made the accepted signature (uppercase hex): the primary
    /// key's, as `keyrings/README.md` lists them, also when one of its signing subkeys signed.
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
    /// The verified file's bytes exactly as fetched (the lock keeps them; a lock then needs
    /// no second download that could differ from what was verified).
    #[serde(skip)]
    pub file_bytes: Vec<u8>,
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
    /// Accept a `Valid-Until` in the past (and a `Date` in the future): for snapshot
    /// archives and wrong clocks. Signature checks are never relaxed.
    pub allow_expired: bool,
    /// "Now", seconds since the epoch (tests pin it).
    pub now: i64,
}

impl ArchiveOptions {
    /// The options of a build or check run now, by the system clock.
    pub fn now(allow_expired: bool) -> ArchiveOptions {
        ArchiveOptions {
            allow_expired,
            now: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs() as i64)
                .unwrap_or(0),
        }
    }
}

/// Why an archive was refused; every variant names the URL (or file) at fault.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    /// Transfer failed.
    #[error(transparent)]
    Transport(#[from] crate::net::TransportError),
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
    /// A signature is present but does not verify (altered text, corrupt signature block).
    #[error("{url}: {message}")]
    BadSignature {
        /// The release URL.
        url: String,
        /// Which key/why.
        message: String,
    },
    /// No signature was made by a key of the keyring.
    #[error("{url}: signed by unknown key ({issuers}), not in keyring {}", keyring.display())]
    UnknownKey {
        /// The release URL.
        url: String,
        /// Issuer fingerprints / key ids named by the signatures.
        issuers: String,
        /// The keyring that was searched.
        keyring: std::path::PathBuf,
    },
    /// The only signatures come from keyring keys that are expired, revoked or not allowed to
    /// sign (or use a broken hash).
    #[error("{url}: no usable signature: {message}")]
    KeyNotValid {
        /// The release URL.
        url: String,
        /// Which key and why (expired at …, revoked, …).
        message: String,
    },
    /// `Date` lies in the future: a clock problem or a forged release.
    #[error(
        "{url}: not valid yet: Date {date} is {ahead} s in the future (check the clock, or use --allow-expired)"
    )]
    NotYetValid {
        /// The release URL.
        url: String,
        /// The `Date` value as written.
        date: String,
        /// Seconds ahead of now.
        ahead: i64,
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
    /// The signed release is older than one already seen for this mirror and suite: a replay
    /// of an old archive (before a fix), unless `--allow-older`.
    #[error(
        "{url}: Date {date} is older than {seen}, the newest Date seen for this mirror and suite (recorded in {}): refusing a replayed archive (use --allow-older to accept it)", state.display()
    )]
    Replayed {
        /// The release URL.
        url: String,
        /// Its `Date`, seconds since the epoch.
        date: i64,
        /// The newest `Date` recorded.
        seen: i64,
        /// The state file.
        state: std::path::PathBuf,
    },
    /// The replay-protection state file cannot be read or written.
    #[error("{path}: replay-protection state: {message}")]
    State {
        /// The file.
        path: std::path::PathBuf,
        /// What is wrong.
        message: String,
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
    /// A verified index could not be decompressed or parsed.
    #[error("{url}: unusable Packages index: {message}")]
    BadIndex {
        /// The index URL.
        url: String,
        /// What is wrong.
        message: String,
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

/// Largest release file accepted (noble's `InRelease` is about 250 KiB).
const MAX_RELEASE_BYTES: u64 = 64 << 20;

/// Largest detached signature accepted.
const MAX_SIGNATURE_BYTES: u64 = 1 << 20;

/// Largest decompressed `Packages` index accepted (noble `universe` is about 80 MiB).
const MAX_INDEX_BYTES: u64 = 2 << 30;

/// How far a `Date` may lie in the future before the release counts as not valid yet (clock
/// skew between the archive and us).
const DATE_TOLERANCE_SECS: i64 = 600;

/// Fetch and verify one suite and its `Packages` indexes for `components` and `arch`.
pub fn load_suite(
    transport: &Transport,
    keyring_path: &std::path::Path,
    suite: &SuiteSource,
    components: &[String],
    arch: &str,
    opts: ArchiveOptions,
) -> Result<SuiteIndex, ArchiveError> {
    let keyring = Keyring::load(keyring_path)?;
    let release = verify_release(transport, &keyring, suite, opts)?;
    let packages = load_indexes(transport, &release, components, arch)?;
    Ok(SuiteIndex { release, packages })
}

/// Fetch `dists/<suite>/InRelease` (or `Release` + `Release.gpg` when there is no
/// `InRelease`), verify it against `keyring` and check its dates and suite name.
pub fn verify_release(
    transport: &Transport,
    keyring: &Keyring,
    suite: &SuiteSource,
    opts: ArchiveOptions,
) -> Result<VerifiedRelease, ArchiveError> {
    let dists = format!("dists/{}", suite.suite);
    let inrelease_url = join_url(&suite.mirror, &format!("{dists}/InRelease"));
    let (url, raw, signed) = match transport.get_bytes(&inrelease_url, MAX_RELEASE_BYTES) {
        Ok(bytes) => {
            let signed = release::open_inrelease(&inrelease_url, &bytes)?;
            (inrelease_url, bytes, signed)
        }
        Err(TransportError::NotFound { .. }) => fetch_detached(transport, &dists, suite)?,
        Err(e) => return Err(e.into()),
    };
    let good = keyring.verify(&url, &signed.signatures, &signed.signed_bytes, opts.now)?;
    let fields = release::parse_release(&url, &signed.text)?;

    if fields.date > opts.now + DATE_TOLERANCE_SECS && !opts.allow_expired {
        return Err(ArchiveError::NotYetValid {
            url,
            date: date_text(&signed.text),
            ahead: fields.date - opts.now,
        });
    }
    if let Some((text, secs)) = &fields.valid_until
        && *secs < opts.now
        && !opts.allow_expired
    {
        return Err(ArchiveError::Expired {
            url,
            valid_until: text.clone(),
        });
    }
    if !names_requested_suite(
        &suite.suite,
        fields.suite.as_deref(),
        fields.codename.as_deref(),
    ) {
        let found = [("Suite", &fields.suite), ("Codename", &fields.codename)]
            .iter()
            .filter_map(|(k, v)| v.as_ref().map(|v| format!("{k}: {v}")))
            .collect::<Vec<_>>()
            .join(", ");
        return Err(ArchiveError::WrongSuite {
            url,
            expected: suite.suite.clone(),
            found: if found.is_empty() {
                "absent".to_string()
            } else {
                found
            },
        });
    }

    Ok(VerifiedRelease {
        source: suite.clone(),
        url,
        sha256: hex::encode(Sha256::digest(&raw)),
        signer: good.primary,
        date: fields.date,
        valid_until: fields.valid_until.map(|(_, secs)| secs),
        suite_field: fields.suite,
        codename: fields.codename,
        files: fields.sha256,
        file_bytes: raw,
    })
}

/// Does a signed release with these `Suite` and `Codename` fields answer a request for
/// `requested`? `Suite` must equal it; a `Codename` match counts only for the same pocket.
///
/// Every Ubuntu pocket carries the release's codename (`noble`, `noble-updates`,
/// `noble-security`, `noble-proposed` all say `Codename: noble`), so a codename match alone
/// would let `noble-proposed` be served as `dists/noble`. Debian names suites by status
/// (`Suite: stable`, `Codename: trixie`; `Suite: stable-updates`, `Codename: trixie-updates`),
/// so a codename request is honoured when the pocket suffix (after the first `-`) of `Suite`
/// equals the request's: none for the release pocket.
pub fn names_requested_suite(requested: &str, suite: Option<&str>, codename: Option<&str>) -> bool {
    if suite == Some(requested) {
        return true;
    }
    let pocket = |s: &str| s.split_once('-').map(|(_, p)| p.to_string());
    codename == Some(requested) && suite.is_none_or(|s| pocket(s) == pocket(requested))
}

/// Verify an `InRelease` held as bytes (from a lock file, offline) as if fetched from `url`:
/// its signature against `keyring`, judging the keys at time `signed_at` (the release's own
/// `Date`, so a lock stays verifiable after a key expires), and its `Suite`/`Codename`.
/// Dates are not checked against the clock: the lock, not the day, decides what is built.
pub fn verify_inrelease_bytes(
    url: &str,
    bytes: &[u8],
    keyring: &Keyring,
    suite: &SuiteSource,
    signed_at: i64,
) -> Result<VerifiedRelease, ArchiveError> {
    let signed = release::open_inrelease(url, bytes)?;
    let good = keyring.verify(url, &signed.signatures, &signed.signed_bytes, signed_at)?;
    let fields = release::parse_release(url, &signed.text)?;
    if !names_requested_suite(
        &suite.suite,
        fields.suite.as_deref(),
        fields.codename.as_deref(),
    ) {
        return Err(ArchiveError::WrongSuite {
            url: url.to_string(),
            expected: suite.suite.clone(),
            found: format!("{:?}/{:?}", fields.suite, fields.codename),
        });
    }
    Ok(VerifiedRelease {
        source: suite.clone(),
        url: url.to_string(),
        sha256: hex::encode(Sha256::digest(bytes)),
        signer: good.primary,
        date: fields.date,
        valid_until: fields.valid_until.map(|(_, secs)| secs),
        suite_field: fields.suite,
        codename: fields.codename,
        files: fields.sha256,
        file_bytes: bytes.to_vec(),
    })
}

/// The `Release` + `Release.gpg` pair; returns the `Release` URL and bytes.
fn fetch_detached(
    transport: &Transport,
    dists: &str,
    suite: &SuiteSource,
) -> Result<(String, Vec<u8>, SignedRelease), ArchiveError> {
    let release_url = join_url(&suite.mirror, &format!("{dists}/Release"));
    let sig_url = join_url(&suite.mirror, &format!("{dists}/Release.gpg"));
    let release = transport.get_bytes(&release_url, MAX_RELEASE_BYTES)?;
    let signature = match transport.get_bytes(&sig_url, MAX_SIGNATURE_BYTES) {
        Ok(sig) => sig,
        Err(TransportError::NotFound { .. }) => {
            return Err(ArchiveError::Unsigned { url: release_url });
        }
        Err(e) => return Err(e.into()),
    };
    let signed = release::open_detached(&release_url, &release, &sig_url, &signature)?;
    Ok((release_url, release, signed))
}

/// The `Date` line as written, for messages.
fn date_text(text: &str) -> String {
    text.lines()
        .find_map(|l| l.strip_prefix("Date:"))
        .map(|v| v.trim().to_string())
        .unwrap_or_default()
}

/// Fetch, verify and parse `<component>/binary-<arch>/Packages` for every component, one
/// thread per component (xz decoding dominates), in component order.
pub fn load_indexes(
    transport: &Transport,
    release: &VerifiedRelease,
    components: &[String],
    arch: &str,
) -> Result<Vec<BinaryPackage>, ArchiveError> {
    // Refuse an unlisted index before downloading anything.
    for component in components {
        listed_index(release, component, arch)?;
    }
    let results: Vec<Result<Vec<BinaryPackage>, ArchiveError>> = std::thread::scope(|scope| {
        let handles: Vec<_> = components
            .iter()
            .map(|component| scope.spawn(move || load_index(transport, release, component, arch)))
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
            })
            .collect()
    });
    let mut packages = Vec::new();
    for result in results {
        packages.extend(result?);
    }
    Ok(packages)
}

fn index_dir_url(release: &VerifiedRelease, component: &str, arch: &str) -> String {
    join_url(
        &release.source.mirror,
        &format!(
            "dists/{}/{component}/binary-{arch}/Packages",
            release.source.suite
        ),
    )
}

/// One component's `Packages` index, fetched, verified and parsed.
pub fn load_index(
    transport: &Transport,
    release: &VerifiedRelease,
    component: &str,
    arch: &str,
) -> Result<Vec<BinaryPackage>, ArchiveError> {
    let index = fetch_index(transport, release, component, arch)?;
    packages::parse_packages(&index.text, &release.source.suite, &release.source.mirror).map_err(
        |e| ArchiveError::BadIndex {
            url: index.url,
            message: e.to_string(),
        },
    )
}

/// A `Packages` index whose size and SHA-256 matched the signed `Release`, decompressed.
#[derive(Debug, Clone)]
pub struct IndexText {
    /// The URL of the file that was fetched (`…/Packages.xz`, `.gz` or plain).
    pub url: String,
    /// The decompressed index.
    pub text: String,
}

/// Fetch one component's index in the best compression the signed `Release` lists (`.xz`,
/// then `.gz`, then plain), check its size and SHA-256, and decompress it.
pub fn fetch_index(
    transport: &Transport,
    release: &VerifiedRelease,
    component: &str,
    arch: &str,
) -> Result<IndexText, ArchiveError> {
    let file = fetch_index_file(transport, release, component, arch)?;
    let text = decompress(&file.url, file.ext, &file.bytes)?;
    Ok(IndexText {
        url: file.url,
        text,
    })
}

/// One component's index file exactly as the archive serves it (compressed), after its size
/// and SHA-256 matched the signed `Release`: what a mirror copies byte for byte.
#[derive(Debug, Clone)]
pub struct IndexFile {
    /// Its path under `dists/<suite>/` (`main/binary-amd64/Packages.xz`).
    pub path: String,
    /// The URL it was fetched from.
    pub url: String,
    /// Its compression suffix (`.xz`, `.gz` or empty).
    pub ext: &'static str,
    /// The verified bytes.
    pub bytes: Vec<u8>,
}

/// Fetch one component's index in the best compression the signed `Release` lists (`.xz`,
/// then `.gz`, then plain) and check its size and SHA-256, without decompressing it.
pub fn fetch_index_file(
    transport: &Transport,
    release: &VerifiedRelease,
    component: &str,
    arch: &str,
) -> Result<IndexFile, ArchiveError> {
    let (path, ext, size, sha256) = listed_index(release, component, arch)?;
    let url = join_url(
        &release.source.mirror,
        &format!("dists/{}/{path}", release.source.suite),
    );
    let bytes = match transport.get_bytes(&url, size) {
        Ok(bytes) => bytes,
        Err(TransportError::TooLarge { .. }) => {
            return Err(ArchiveError::HashMismatch {
                url,
                expected: sha256,
                actual: "(not computed: larger than listed)".to_string(),
                expected_size: size,
                actual_size: size.saturating_add(1),
            });
        }
        Err(e) => return Err(e.into()),
    };
    let actual = hex::encode(Sha256::digest(&bytes));
    if bytes.len() as u64 != size || actual != sha256 {
        return Err(ArchiveError::HashMismatch {
            url,
            expected: sha256,
            actual,
            expected_size: size,
            actual_size: bytes.len() as u64,
        });
    }
    Ok(IndexFile {
        path,
        url,
        ext,
        bytes,
    })
}

/// The index file of `component` the signed `Release` lists, best compression first:
/// (path under `dists/<suite>/`, extension, size, SHA-256).
fn listed_index(
    release: &VerifiedRelease,
    component: &str,
    arch: &str,
) -> Result<(String, &'static str, u64, String), ArchiveError> {
    let base = format!("{component}/binary-{arch}/Packages");
    for ext in [".xz", ".gz", ""] {
        let path = format!("{base}{ext}");
        if let Some((size, sha256)) = release.files.get(&path) {
            return Ok((path, ext, *size, sha256.clone()));
        }
    }
    Err(ArchiveError::IndexNotListed {
        url: index_dir_url(release, component, arch),
        suite: release.source.suite.clone(),
        component: component.to_string(),
        arch: arch.to_string(),
    })
}

/// Decompress a verified index by its extension (`.xz`, `.gz` or none) into UTF-8 text.
fn decompress(url: &str, ext: &str, bytes: &[u8]) -> Result<String, ArchiveError> {
    let bad = |message: String| ArchiveError::BadIndex {
        url: url.to_string(),
        message,
    };
    let mut out = Vec::new();
    let read = match ext {
        ".xz" => liblzma::read::XzDecoder::new(bytes)
            .take(MAX_INDEX_BYTES + 1)
            .read_to_end(&mut out),
        ".gz" => flate2::read::GzDecoder::new(bytes)
            .take(MAX_INDEX_BYTES + 1)
            .read_to_end(&mut out),
        _ => {
            out.extend_from_slice(bytes);
            Ok(out.len())
        }
    };
    read.map_err(|e| bad(format!("cannot decompress: {e}")))?;
    if out.len() as u64 > MAX_INDEX_BYTES {
        return Err(bad(format!(
            "decompresses to more than {MAX_INDEX_BYTES} bytes"
        )));
    }
    String::from_utf8(out).map_err(|e| bad(format!("not UTF-8: {e}")))
}

#[cfg(test)]
mod tests {
    use super::names_requested_suite;

    #[test]
    fn only_the_release_pocket_matches_by_codename() {
        // Ubuntu, as the real InRelease files say it.
        assert!(names_requested_suite("noble", Some("noble"), Some("noble")));
        assert!(names_requested_suite(
            "noble-updates",
            Some("noble-updates"),
            Some("noble")
        ));
        assert!(!names_requested_suite(
            "noble",
            Some("noble-proposed"),
            Some("noble")
        ));
        assert!(!names_requested_suite(
            "noble",
            Some("noble-updates"),
            Some("noble")
        ));
        assert!(!names_requested_suite(
            "noble-security",
            Some("noble-proposed"),
            Some("noble")
        ));
        // Debian: codenames requested, suites named by status.
        assert!(names_requested_suite(
            "trixie",
            Some("stable"),
            Some("trixie")
        ));
        assert!(names_requested_suite(
            "trixie-updates",
            Some("stable-updates"),
            Some("trixie-updates")
        ));
        assert!(!names_requested_suite(
            "trixie",
            Some("stable-updates"),
            Some("trixie")
        ));
        assert!(names_requested_suite("trixie", None, Some("trixie")));
        assert!(!names_requested_suite("trixie", None, None));
    }
}
