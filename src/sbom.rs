//! The SBOM: `<artifact>.spdx.json`, an SPDX 2.3 JSON document describing the image and every
//! Debian package installed in it (name, version, architecture, supplier, `purl`, the `.deb`'s
//! SHA-256, the declared license read from the package's `copyright` file, with the text of
//! every `LicenseRef-…` it uses).
//!
//! It is reproducible like the image: created at the build epoch, its namespace derived from
//! the artifact's SHA-256, packages in a fixed order, no wall-clock time and no host name.
//!
//! This module reads the verified `.deb`s of the cache (control file and
//! `usr/share/doc/<pkg>/copyright` from the data member), read-only, and renders the document;
//! [`crate::artifact`] writes it beside the image. It never writes anything itself.

use std::io::Read;

use rayon::prelude::*;
use serde::Serialize;
use serde_json::json;

use crate::deb::{self, DebError, DebMember};
use crate::epoch::BuildEpoch;
use crate::fetch::FetchedDeb;

/// The `distro` qualifier of every `purl`.
pub const PURL_DISTRO: &str = "ubuntu-24.04";

/// Largest `copyright` file read (the biggest in noble main is about 1 MiB).
const MAX_COPYRIGHT_BYTES: u64 = 8 << 20;

/// One installed package, as the SBOM lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SbomPackage {
    /// Package name.
    pub name: String,
    /// Debian version.
    pub version: String,
    /// Architecture.
    pub architecture: String,
    /// SHA-256 of the `.deb`.
    pub sha256: String,
    /// `Maintainer`, as the control file writes it.
    pub maintainer: Option<String>,
    /// The declared license read from the `copyright` file (see [`declared_license`]).
    pub license: Option<String>,
    /// The text of each `LicenseRef-…` in `license`.
    pub license_texts: Vec<(String, String)>,
}

/// A `.deb` whose control file could not be read.
#[derive(Debug, thiserror::Error)]
#[error("SBOM: {0}")]
pub struct SbomError(#[from] DebError);

/// Read maintainer and license of every fetched `.deb` (in parallel); sorted by name,
/// architecture, version.
pub fn describe_packages(debs: &[FetchedDeb]) -> Result<Vec<SbomPackage>, SbomError> {
    let mut shared: Vec<(usize, String)> = Vec::new();
    let mut out: Vec<SbomPackage> = debs
        .par_iter()
        .map(|d| {
            let control = deb::read_control(&d.path)?;
            let maintainer = control_field(&control, "Maintainer");
            let (declared, other) = match read_copyright(&d.path, &d.package.name)? {
                CopyrightFile::Text(text) => (declared_license(&text).unwrap_or_default(), None),
                CopyrightFile::SharedWith(other) => (DeclaredLicense::default(), Some(other)),
                CopyrightFile::None => (DeclaredLicense::default(), None),
            };
            let license = (!declared.expression.is_empty()).then_some(declared.expression);
            Ok((
                SbomPackage {
                    name: d.package.name.clone(),
                    version: d.package.version.clone(),
                    architecture: d.package.architecture.clone(),
                    sha256: d.package.sha256.clone(),
                    maintainer,
                    license,
                    license_texts: declared.extracted,
                },
                other,
            ))
        })
        .collect::<Result<Vec<_>, SbomError>>()?
        .into_iter()
        .enumerate()
        .map(|(i, (p, other))| {
            if let Some(other) = other {
                shared.push((i, other));
            }
            p
        })
        .collect();
    // A shared doc directory: the license of the package whose copyright it is (one level).
    for (i, other) in shared {
        if let Some(source) = out
            .iter()
            .find(|p| p.name == other && p.license.is_some())
            .cloned()
        {
            out[i].license = source.license;
            out[i].license_texts = source.license_texts;
        }
    }
    out.sort_by(|a, b| {
        (&a.name, &a.architecture, &a.version).cmp(&(&b.name, &b.architecture, &b.version))
    });
    Ok(out)
}

/// A single-line field of a control paragraph.
fn control_field(control: &str, field: &str) -> Option<String> {
    control.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        (k.eq_ignore_ascii_case(field) && !l.starts_with([' ', '\t'])).then(|| v.trim().to_string())
    })
}

/// What a `.deb` has at `usr/share/doc/<pkg>`.
enum CopyrightFile {
    /// `copyright` is a regular file: its text.
    Text(String),
    /// The doc directory is a symlink to another package's (Policy 12.5 allows it for a
    /// package of the same source that it depends on): that package's name.
    SharedWith(String),
    /// Neither.
    None,
}

/// `usr/share/doc/<pkg>/copyright` from the data member, if it is a regular file, or the
/// package whose doc directory `usr/share/doc/<pkg>` links to.
fn read_copyright(path: &std::path::Path, package: &str) -> Result<CopyrightFile, DebError> {
    let dir = format!("usr/share/doc/{package}");
    let wanted = format!("{dir}/copyright");
    let found = deb::with_member(path, DebMember::Data, |tar| {
        let mut archive = tar::Archive::new(tar);
        for entry in archive.entries()? {
            let entry = entry?;
            let name = entry.path_bytes();
            let name = name.strip_prefix(b"./").unwrap_or(&name);
            let name = name.strip_suffix(b"/").unwrap_or(name);
            if name == dir.as_bytes() && entry.header().entry_type().is_symlink() {
                let target = entry
                    .link_name_bytes()
                    .map(|t| String::from_utf8_lossy(&t).into_owned())
                    .unwrap_or_default();
                let other = target
                    .trim_end_matches('/')
                    .rsplit('/')
                    .next()
                    .unwrap_or_default()
                    .to_string();
                return Ok(if other.is_empty() {
                    CopyrightFile::None
                } else {
                    CopyrightFile::SharedWith(other)
                });
            }
            if name == wanted.as_bytes() {
                if !entry.header().entry_type().is_file() {
                    return Ok(CopyrightFile::None);
                }
                let mut bytes = Vec::new();
                entry.take(MAX_COPYRIGHT_BYTES).read_to_end(&mut bytes)?;
                return Ok(CopyrightFile::Text(
                    String::from_utf8_lossy(&bytes).into_owned(),
                ));
            }
        }
        Ok::<_, std::io::Error>(CopyrightFile::None)
    })?;
    found.map_err(|source| DebError::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// A package's declared license: an SPDX expression, and the text of each `LicenseRef-…` it
/// uses (SPDX's "extracted licensing info").
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct DeclaredLicense {
    /// The SPDX license expression.
    pub expression: String,
    /// `LicenseRef-<name>` → its text (or, without one, its name), sorted by id.
    pub extracted: Vec<(String, String)>,
}

/// The declared license of a `copyright` file. A DEP-5 (machine-readable) file: the `License:`
/// of every `Files` paragraph, each short name mapped to its SPDX identifier or, when it has
/// none, to `LicenseRef-<name>` with the text of the file's stand-alone `License` paragraph
/// (as syft and trivy do), `and`/`or`/`with`/commas kept as SPDX operators and parentheses;
/// paragraphs joined with `AND`. Any other file: the licenses it names on `License:` lines
/// and as `/usr/share/common-licenses/<name>` (syft's reading). `None` when it names none.
pub fn declared_license(copyright: &str) -> Option<DeclaredLicense> {
    let is_dep5 = copyright.lines().next().is_some_and(|first| {
        first
            .strip_prefix("Format:")
            .is_some_and(|f| f.contains("copyright-format/1.0"))
    });
    let mut refs = LicenseRefs::default();
    let mut expressions: Vec<String> = Vec::new();
    if is_dep5 {
        let paragraphs = dep5_paragraphs(copyright);
        for p in &paragraphs {
            if !p.has_files
                && let Some((name, text)) = &p.license
            {
                refs.texts
                    .entry(name.to_ascii_lowercase())
                    .or_insert_with(|| text.clone());
            }
        }
        for p in paragraphs.iter().filter(|p| p.has_files) {
            let Some((name, text)) = &p.license else {
                continue;
            };
            if !text.is_empty() {
                refs.texts
                    .entry(name.to_ascii_lowercase())
                    .or_insert_with(|| text.clone());
            }
            if let Some(e) = dep5_expression(name, &mut refs)
                && !expressions.contains(&e)
            {
                expressions.push(e);
            }
        }
    } else {
        let later = copyright.contains("any later version");
        for name in named_licenses(copyright) {
            let e = match spdx_id(&name) {
                Some(id) if later => id.replace("-only", "-or-later"),
                Some(id) => id.to_string(),
                None => refs.reference(&name),
            };
            if !expressions.contains(&e) {
                expressions.push(e);
            }
        }
    }
    if expressions.is_empty() {
        return None;
    }
    expressions.sort();
    let expression = if expressions.len() == 1 {
        expressions.remove(0)
    } else {
        expressions
            .iter()
            .map(|e| {
                if e.contains(' ') {
                    format!("({e})")
                } else {
                    e.clone()
                }
            })
            .collect::<Vec<_>>()
            .join(" AND ")
    };
    Some(DeclaredLicense {
        expression,
        extracted: refs.used.into_iter().collect(),
    })
}

/// [`declared_license`]'s expression alone.
pub fn dep5_license(copyright: &str) -> Option<String> {
    declared_license(copyright).map(|l| l.expression)
}

/// `LicenseRef-…`s made while reading one file, with their texts.
#[derive(Default)]
struct LicenseRefs {
    /// Lower-case short name → text, from the stand-alone `License` paragraphs.
    texts: std::collections::BTreeMap<String, String>,
    /// Id → text of every reference used.
    used: std::collections::BTreeMap<String, String>,
}

impl LicenseRefs {
    fn reference(&mut self, name: &str) -> String {
        let id = format!("LicenseRef-{}", spdx_id_chars(&name.replace('+', "-plus")));
        let text = self
            .texts
            .get(&name.to_ascii_lowercase())
            .filter(|t| !t.trim().is_empty())
            .cloned()
            .unwrap_or_else(|| name.to_string());
        self.used.entry(id.clone()).or_insert(text);
        id
    }
}

struct Dep5Paragraph {
    has_files: bool,
    /// The `License` field: its first line (the short names) and the text after it.
    license: Option<(String, String)>,
}

fn dep5_paragraphs(copyright: &str) -> Vec<Dep5Paragraph> {
    let text = copyright.replace("\r\n", "\n");
    let mut out = Vec::new();
    // Paragraphs are separated by lines that are empty or only whitespace.
    let mut current: Vec<&str> = Vec::new();
    for line in text.lines().chain(std::iter::once("")) {
        if line.trim().is_empty() {
            if !current.is_empty() {
                out.push(parse_paragraph(&current));
                current.clear();
            }
        } else {
            current.push(line);
        }
    }
    out
}

fn parse_paragraph(lines: &[&str]) -> Dep5Paragraph {
    let mut has_files = false;
    let mut license: Option<(String, Vec<String>)> = None;
    let mut in_license = false;
    for line in lines {
        if line.starts_with([' ', '\t']) {
            if in_license && let Some((_, text)) = license.as_mut() {
                let t = line.trim();
                text.push(if t == "." {
                    String::new()
                } else {
                    t.to_string()
                });
            }
            continue;
        }
        in_license = false;
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        if key.eq_ignore_ascii_case("Files") {
            has_files = true;
        } else if key.eq_ignore_ascii_case("License") {
            in_license = true;
            license = Some((value.trim().to_string(), Vec::new()));
        }
    }
    Dep5Paragraph {
        has_files,
        license: license
            .filter(|(name, _)| !name.is_empty())
            .map(|(name, text)| (name, text.join("\n").trim().to_string())),
    }
}

/// One DEP-5 `License:` value (`GPL-2+ or Artistic, and BSD-3-clause`, `GPL-2+ with OpenSSL
/// exception`) as an SPDX expression: names mapped, `and`/`or` as `AND`/`OR` (DEP-5 and SPDX
/// both bind `and` tighter), a comma ending a group of lower precedence.
fn dep5_expression(value: &str, refs: &mut LicenseRefs) -> Option<String> {
    // Groups split at commas; each later group starts with its operator.
    let mut groups: Vec<Vec<String>> = vec![Vec::new()];
    for word in value.split_whitespace() {
        let (word, comma) = match word.strip_suffix(',') {
            Some(w) => (w, true),
            None => (word, false),
        };
        if !word.is_empty()
            && let Some(g) = groups.last_mut()
        {
            g.push(word.to_string());
        }
        if comma {
            groups.push(Vec::new());
        }
    }
    let grouped = |e: String| if e.contains(' ') { format!("({e})") } else { e };
    let mut out = String::new();
    for (i, group) in groups.iter().enumerate() {
        if i == 0 {
            out = group_expression(group, refs)?;
            continue;
        }
        let (op, rest) = group.split_first()?;
        let op = match op.to_ascii_lowercase().as_str() {
            "and" => "AND",
            "or" => "OR",
            _ => return None,
        };
        // `A or B, and C or D`: each side of the comma is one operand.
        let right = grouped(group_expression(rest, refs)?);
        out = format!("{} {op} {right}", grouped(out));
    }
    Some(out)
}

/// `A or B and C with D exception` (no commas).
fn group_expression(words: &[String], refs: &mut LicenseRefs) -> Option<String> {
    fn flush(name: &mut Vec<&str>, parts: &mut Vec<String>, refs: &mut LicenseRefs) -> Option<()> {
        let first = *name.first()?;
        let id = match (name.len(), spdx_id(first)) {
            (1, Some(id)) => id.to_string(),
            _ => refs.reference(&name.join(" ")),
        };
        parts.push(id);
        name.clear();
        Some(())
    }
    let mut parts: Vec<String> = Vec::new();
    let mut name: Vec<&str> = Vec::new();
    for w in words {
        match w.to_ascii_lowercase().as_str() {
            op @ ("and" | "or") => {
                flush(&mut name, &mut parts, refs)?;
                parts.push(op.to_ascii_uppercase());
            }
            _ => name.push(w),
        }
    }
    flush(&mut name, &mut parts, refs)?;
    Some(parts.join(" "))
}

/// The licenses a free-form `copyright` file names: the first word of each `License:` line and
/// each `/usr/share/common-licenses/<name>`, sorted and without repeats.
fn named_licenses(copyright: &str) -> Vec<String> {
    const COMMON: &str = "/usr/share/common-licenses/";
    let mut names = std::collections::BTreeSet::new();
    for line in copyright.lines() {
        if let Some((key, value)) = line.trim_start().split_once(':')
            && key.eq_ignore_ascii_case("License")
            && let Some(first) = value.split_whitespace().next()
        {
            let first = first.trim_end_matches([',', '.', ';']);
            if spdx_id(first).is_some() {
                names.insert(first.to_string());
            }
        }
        let mut rest = line;
        while let Some(at) = rest.find(COMMON) {
            rest = &rest[at + COMMON.len()..];
            let name: String = rest
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | '+'))
                .collect();
            let name = name.trim_end_matches('.').to_string();
            if !name.is_empty() {
                names.insert(name);
            }
        }
    }
    names.into_iter().collect()
}

/// The SPDX identifier of a DEP-5 short name (the common ones; others do not map).
fn spdx_id(short: &str) -> Option<&'static str> {
    Some(match short.to_ascii_lowercase().as_str() {
        "gpl-1" | "gpl-1.0" | "gpl-1.0-only" => "GPL-1.0-only",
        "gpl-1+" | "gpl-1.0+" | "gpl-1.0-or-later" => "GPL-1.0-or-later",
        "gpl-2" | "gpl-2.0" | "gpl-2.0-only" => "GPL-2.0-only",
        "gpl-2+" | "gpl-2.0+" | "gpl-2.0-or-later" => "GPL-2.0-or-later",
        "gpl-3" | "gpl-3.0" | "gpl-3.0-only" => "GPL-3.0-only",
        "gpl-3+" | "gpl-3.0+" | "gpl-3.0-or-later" => "GPL-3.0-or-later",
        "lgpl-2" | "lgpl-2.0" | "lgpl-2.0-only" => "LGPL-2.0-only",
        "lgpl-2+" | "lgpl-2.0+" | "lgpl-2.0-or-later" => "LGPL-2.0-or-later",
        "lgpl-2.1" | "lgpl-2.1-only" => "LGPL-2.1-only",
        "lgpl-2.1+" | "lgpl-2.1-or-later" => "LGPL-2.1-or-later",
        "lgpl-3" | "lgpl-3.0" | "lgpl-3.0-only" => "LGPL-3.0-only",
        "lgpl-3+" | "lgpl-3.0+" | "lgpl-3.0-or-later" => "LGPL-3.0-or-later",
        "agpl-3" | "agpl-3.0" => "AGPL-3.0-only",
        "agpl-3+" | "agpl-3.0+" => "AGPL-3.0-or-later",
        "artistic" | "artistic-1.0-perl" => "Artistic-1.0-Perl",
        "artistic-1.0" => "Artistic-1.0",
        "gfdl-1.2" => "GFDL-1.2-only",
        "gfdl-1.2+" => "GFDL-1.2-or-later",
        "gfdl-1.3" => "GFDL-1.3-only",
        "gfdl-1.3+" => "GFDL-1.3-or-later",
        "apache-2.0" | "apache-2" => "Apache-2.0",
        "artistic-2.0" => "Artistic-2.0",
        "bsd-2-clause" => "BSD-2-Clause",
        "bsd-3-clause" => "BSD-3-Clause",
        "bsd-4-clause" => "BSD-4-Clause",
        "cc0-1.0" | "cc0" => "CC0-1.0",
        "expat" | "mit" => "MIT",
        "x11" => "X11",
        "fsfullr" => "FSFULLR",
        "fsfap" => "FSFAP",
        "beerware" => "Beerware",
        "latex2e" => "Latex2e",
        "isc" => "ISC",
        "zlib" => "Zlib",
        "mpl-1.1" => "MPL-1.1",
        "mpl-2.0" => "MPL-2.0",
        "psf-2" => "PSF-2.0",
        "openssl" => "OpenSSL",
        "curl" => "curl",
        "bsl-1.0" => "BSL-1.0",
        "unicode-dfs-2016" => "Unicode-DFS-2016",
        _ => return None,
    })
}

/// The image an SBOM describes.
#[derive(Debug, Clone, Copy)]
pub struct ImageDescription<'a> {
    /// Image name (`ubuntu-24.04-lxc-rootfs`).
    pub image: &'a str,
    /// Artifact version.
    pub version: u32,
    /// The artifact's file name.
    pub file_name: &'a str,
    /// The artifact's SHA-256.
    pub sha256: &'a str,
    /// The build epoch: the document's creation time.
    pub epoch: BuildEpoch,
}

/// The SPDX 2.3 JSON document for `image` and `packages`, pretty-printed, ending in a newline.
pub fn render(image: &ImageDescription<'_>, packages: &[SbomPackage]) -> Vec<u8> {
    const IMAGE_ID: &str = "SPDXRef-Image";
    let mut spdx_packages = vec![json!({
        "SPDXID": IMAGE_ID,
        "name": image.image,
        "versionInfo": format!("v{}", image.version),
        "packageFileName": image.file_name,
        "downloadLocation": "NOASSERTION",
        "filesAnalyzed": false,
        "checksums": [{ "algorithm": "SHA256", "checksumValue": image.sha256 }],
        "licenseConcluded": "NOASSERTION",
        "licenseDeclared": "NOASSERTION",
        "copyrightText": "NOASSERTION",
        "primaryPackagePurpose": "OPERATING-SYSTEM",
    })];
    let mut relationships = vec![json!({
        "spdxElementId": "SPDXRef-DOCUMENT",
        "relationshipType": "DESCRIBES",
        "relatedSpdxElement": IMAGE_ID,
    })];
    for (i, p) in packages.iter().enumerate() {
        let id = format!("SPDXRef-Package-{}-{}", i + 1, spdx_id_chars(&p.name));
        let mut package = json!({
            "SPDXID": id,
            "name": p.name,
            "versionInfo": p.version,
            "supplier": p.maintainer.as_deref().map(supplier).unwrap_or_else(|| "NOASSERTION".to_string()),
            "downloadLocation": "NOASSERTION",
            "filesAnalyzed": false,
            "checksums": [{ "algorithm": "SHA256", "checksumValue": p.sha256 }],
            "licenseConcluded": "NOASSERTION",
            "licenseDeclared": p.license.as_deref().unwrap_or("NOASSERTION"),
            "copyrightText": "NOASSERTION",
            "externalRefs": [{
                "referenceCategory": "PACKAGE-MANAGER",
                "referenceType": "purl",
                "referenceLocator": purl(p),
            }],
            "primaryPackagePurpose": "INSTALL",
        });
        package["comment"] = json!(format!("architecture {}", p.architecture));
        spdx_packages.push(package);
        relationships.push(json!({
            "spdxElementId": IMAGE_ID,
            "relationshipType": "CONTAINS",
            "relatedSpdxElement": id,
        }));
    }
    // One text per `LicenseRef-…` id: the first package's (packages are sorted).
    let mut extracted: std::collections::BTreeMap<&str, &str> = std::collections::BTreeMap::new();
    for p in packages {
        for (id, text) in &p.license_texts {
            extracted.entry(id).or_insert(text);
        }
    }
    let mut doc = json!({
        "spdxVersion": "SPDX-2.3",
        "dataLicense": "CC0-1.0",
        "SPDXID": "SPDXRef-DOCUMENT",
        "name": image.file_name,
        "documentNamespace": format!(
            "https://ingot.invalid/spdx/{}/sha256-{}", image.file_name, image.sha256
        ),
        "creationInfo": {
            "created": rfc3339_utc(image.epoch.0),
            "creators": [format!("Tool: ingot-{}", env!("CARGO_PKG_VERSION"))],
        },
        "packages": spdx_packages,
        "relationships": relationships,
    });
    if !extracted.is_empty() {
        doc["hasExtractedLicensingInfos"] = extracted
            .into_iter()
            .map(|(id, text)| {
                json!({
                    "licenseId": id,
                    "name": id.trim_start_matches("LicenseRef-"),
                    "extractedText": text,
                })
            })
            .collect();
    }
    let mut out = serde_json::to_vec_pretty(&doc).unwrap_or_default();
    out.push(b'\n');
    out
}

/// `pkg:deb/ubuntu/<name>@<version>?arch=<arch>&distro=ubuntu-24.04`, percent-encoded.
pub fn purl(p: &SbomPackage) -> String {
    format!(
        "pkg:deb/ubuntu/{}@{}?arch={}&distro={PURL_DISTRO}",
        percent_encode(&p.name),
        percent_encode(&p.version),
        percent_encode(&p.architecture)
    )
}

fn percent_encode(s: &str) -> String {
    crate::net::percent_encode(s, b"")
}

/// SPDX identifiers allow letters, digits, `.` and `-`.
fn spdx_id_chars(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '-'
            }
        })
        .collect()
}

/// `Name <mail>` as SPDX's `Organization: Name (mail)` (a Debian maintainer is often a team;
/// SPDX has no neutral kind).
fn supplier(maintainer: &str) -> String {
    match maintainer.split_once('<') {
        Some((name, rest)) => format!(
            "Organization: {} ({})",
            name.trim(),
            rest.trim_end_matches('>').trim()
        ),
        None => format!("Organization: {}", maintainer.trim()),
    }
}

/// Seconds since 1970 as `YYYY-MM-DDThh:mm:ssZ`.
pub fn rfc3339_utc(secs: i64) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn creation_time_is_utc_rfc3339() {
        assert_eq!(rfc3339_utc(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339_utc(1_700_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(rfc3339_utc(951_782_400), "2000-02-29T00:00:00Z");
    }

    #[test]
    fn dep5_licenses_map_to_spdx_or_noassertion() {
        let dep5 = "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n\
                    Upstream-Name: x\n\nFiles: *\nCopyright: me\nLicense: GPL-2+\n\n\
                    Files: lib/*\nCopyright: you\nLicense: Expat or GPL-2+\n\n\
                    License: GPL-2+\n text\n";
        assert_eq!(
            dep5_license(dep5).as_deref(),
            Some("GPL-2.0-or-later AND (MIT OR GPL-2.0-or-later)")
        );
        let odd = dep5.replace(
            "License: Expat or GPL-2+",
            "License: GPL-2+ with OpenSSL exception",
        );
        let odd = declared_license(&odd).unwrap();
        assert_eq!(
            odd.expression,
            "GPL-2.0-or-later AND LicenseRef-GPL-2-plus-with-OpenSSL-exception"
        );
        assert_eq!(
            odd.extracted,
            vec![(
                "LicenseRef-GPL-2-plus-with-OpenSSL-exception".to_string(),
                "GPL-2+ with OpenSSL exception".to_string()
            )]
        );
        assert_eq!(dep5_license("This is free software.\n"), None);
    }

    #[test]
    fn names_without_an_spdx_id_become_license_refs_with_their_text() {
        let dep5 = "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n\n\
                    Files: *\nCopyright: me\nLicense: GPL-2+ or Artistic, and public-domain\n\n\
                    Files: x/*\nCopyright: you\nLicense: BSD-3-clause and ISC or MIT\n\n\
                    License: public-domain\n Nobody owns this.\n .\n Really.\n";
        let l = declared_license(dep5).unwrap();
        assert_eq!(
            l.expression,
            "((GPL-2.0-or-later OR Artistic-1.0-Perl) AND LicenseRef-public-domain) AND \
             (BSD-3-Clause AND ISC OR MIT)"
        );
        assert_eq!(
            l.extracted,
            vec![(
                "LicenseRef-public-domain".to_string(),
                "Nobody owns this.\n\nReally.".to_string()
            )]
        );
        let comma = dep5.replace(
            "License: BSD-3-clause and ISC or MIT",
            "License: REGCOMP, and GPL-1+ or Artistic",
        );
        assert!(
            dep5_license(&comma)
                .unwrap()
                .ends_with("AND (LicenseRef-REGCOMP AND (GPL-1.0-or-later OR Artistic-1.0-Perl))"),
            "{:?}",
            dep5_license(&comma)
        );
        // Not DEP-5: the licenses named on License: lines and under common-licenses.
        let free = "This package is free software; you can redistribute it under the GPL,\n\
                    either version 2, or (at your option) any later version.\n\
                    On Debian systems see /usr/share/common-licenses/GPL-2.\n\
                    Parts: /usr/share/common-licenses/BSD.\n";
        assert_eq!(
            dep5_license(free).as_deref(),
            Some("GPL-2.0-or-later AND LicenseRef-BSD")
        );
    }

    #[test]
    fn purl_encodes_epoch_and_plus() {
        let p = SbomPackage {
            name: "libstdc++6".into(),
            version: "1:2.0+dfsg-1".into(),
            architecture: "amd64".into(),
            sha256: String::new(),
            maintainer: None,
            license: None,
            license_texts: Vec::new(),
        };
        assert_eq!(
            purl(&p),
            "pkg:deb/ubuntu/libstdc%2B%2B6@1%3A2.0%2Bdfsg-1?arch=amd64&distro=ubuntu-24.04"
        );
    }
}
