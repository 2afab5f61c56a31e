//! The SBOM: `<artifact>.spdx.json`, an SPDX 2.3 JSON document describing the image and every
//! Debian package installed in it (name, version, architecture, supplier, `purl`, the `.deb`'s
//! SHA-256, the declared license where the package's `copyright` file is machine-readable).
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
    /// An SPDX license expression from a machine-readable `copyright`, else `None`.
    pub license: Option<String>,
}

/// A `.deb` whose control file could not be read.
#[derive(Debug, thiserror::Error)]
#[error("SBOM: {0}")]
pub struct SbomError(#[from] DebError);

/// Read maintainer and license of every fetched `.deb` (in parallel); sorted by name,
/// architecture, version.
pub fn describe_packages(debs: &[FetchedDeb]) -> Result<Vec<SbomPackage>, SbomError> {
    let mut out: Vec<SbomPackage> = debs
        .par_iter()
        .map(|d| {
            let control = deb::read_control(&d.path)?;
            let maintainer = control_field(&control, "Maintainer");
            let license = read_copyright(&d.path, &d.package.name)?
                .as_deref()
                .and_then(dep5_license);
            Ok(SbomPackage {
                name: d.package.name.clone(),
                version: d.package.version.clone(),
                architecture: d.package.architecture.clone(),
                sha256: d.package.sha256.clone(),
                maintainer,
                license,
            })
        })
        .collect::<Result<_, SbomError>>()?;
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

/// `usr/share/doc/<pkg>/copyright` from the data member, if it is a regular file.
fn read_copyright(path: &std::path::Path, package: &str) -> Result<Option<String>, DebError> {
    let wanted = format!("usr/share/doc/{package}/copyright");
    let found = deb::with_member(path, DebMember::Data, |tar| {
        let mut archive = tar::Archive::new(tar);
        for entry in archive.entries()? {
            let entry = entry?;
            let name = entry.path_bytes();
            let name = name.strip_prefix(b"./").unwrap_or(&name);
            if name == wanted.as_bytes() {
                if !entry.header().entry_type().is_file() {
                    return Ok(None);
                }
                let mut bytes = Vec::new();
                entry.take(MAX_COPYRIGHT_BYTES).read_to_end(&mut bytes)?;
                return Ok(Some(String::from_utf8_lossy(&bytes).into_owned()));
            }
        }
        Ok::<_, std::io::Error>(None)
    })?;
    found.map_err(|source| DebError::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// The declared license of a DEP-5 (machine-readable) `copyright` file as an SPDX expression:
/// the `License:` short names of its `Files` paragraphs, each mapped to an SPDX identifier,
/// joined with `AND`. `None` when the file is not DEP-5 or any name does not map cleanly.
pub fn dep5_license(copyright: &str) -> Option<String> {
    let first = copyright.lines().next()?;
    let format = first.strip_prefix("Format:")?.trim();
    if !format.contains("copyright-format/1.0") {
        return None;
    }
    let mut expressions: Vec<String> = Vec::new();
    for paragraph in copyright.split("\n\n") {
        let is_files = paragraph
            .lines()
            .any(|l| l.to_ascii_lowercase().starts_with("files:"));
        if !is_files {
            continue;
        }
        let short = paragraph.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            (k.eq_ignore_ascii_case("License") && !l.starts_with([' ', '\t'])).then(|| v.trim())
        })?;
        let expr = spdx_expression(short)?;
        if !expressions.contains(&expr) {
            expressions.push(expr);
        }
    }
    if expressions.is_empty() {
        return None;
    }
    expressions.sort();
    if expressions.len() == 1 {
        return expressions.pop();
    }
    Some(
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
            .join(" AND "),
    )
}

/// One DEP-5 `License:` value (`GPL-2+ or Artistic`, `BSD-3-clause`) as an SPDX expression.
fn spdx_expression(value: &str) -> Option<String> {
    let words: Vec<&str> = value.split_whitespace().collect();
    if words.is_empty() {
        return None;
    }
    let mut out = Vec::new();
    let mut expect_name = true;
    for w in words {
        if expect_name {
            out.push(spdx_id(w.trim_end_matches(','))?.to_string());
        } else {
            match w.to_ascii_lowercase().as_str() {
                "or" => out.push("OR".to_string()),
                "and" => out.push("AND".to_string()),
                // "with … exception" and anything else has no clean mapping.
                _ => return None,
            }
        }
        expect_name = !expect_name;
    }
    if expect_name {
        return None;
    }
    let mixed = out.contains(&"OR".to_string()) && out.contains(&"AND".to_string());
    (!mixed).then(|| out.join(" "))
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
    let doc = json!({
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
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
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
        assert_eq!(dep5_license(&odd), None);
        assert_eq!(dep5_license("This is free software.\n"), None);
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
        };
        assert_eq!(
            purl(&p),
            "pkg:deb/ubuntu/libstdc%2B%2B6@1%3A2.0%2Bdfsg-1?arch=amd64&distro=ubuntu-24.04"
        );
    }
}
