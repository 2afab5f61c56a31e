//! Every build writes `<artifact>.spdx.json`: an SPDX 2.3 document that is reproducible,
//! lists exactly the packages of the image's `var/lib/dpkg/status`, and validates against the
//! SPDX 2.3 JSON schema fixture (`tests/fixtures/spdx-2.3.schema.json`).
//!
//! Needs root (the builds run in namespaces).

#[path = "support/mini_recipe.rs"]
mod mini_recipe;
#[path = "support/minidistro.rs"]
mod minidistro;
mod support;

use std::collections::BTreeSet;
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

use mini_recipe::{
    arg, assert_ok, ingot, mini_recipe, require_build_privileges, sha256, stdout_path,
};
use support::FixtureOptions;

/// A package whose `copyright` is machine-readable (DEP-5): its license must map to SPDX.
fn documented_package(out: &Path) -> PathBuf {
    let spec = minidistro::PackageSpec {
        name: "mini-doc",
        essential: false,
        depends: &["mini-base"],
        pre_depends: &[],
        scripts: &[],
        conffiles: &[],
        compression: "xz",
    };
    minidistro::build_package(out, &spec, |tree| {
        let doc = tree.join("usr/share/doc/mini-doc");
        fs::create_dir_all(&doc).unwrap();
        fs::write(
            doc.join("copyright"),
            "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n\
             Upstream-Name: mini-doc\n\n\
             Files: *\nCopyright: 2026 ingot tests\nLicense: GPL-2+\n\n\
             Files: contrib/*\nCopyright: 2026 someone\nLicense: Expat or Apache-2.0\n\n\
             License: GPL-2+\n On Debian systems, see /usr/share/common-licenses/GPL-2.\n",
        )
        .unwrap();
    })
    .path
}

/// A package whose doc directory is a symlink to `mini-doc`'s (as `libstdc++6`'s is to
/// `gcc-14-base`'s): it has `mini-doc`'s license.
fn shared_doc_package(out: &Path) -> PathBuf {
    let spec = minidistro::PackageSpec {
        name: "mini-doc-data",
        essential: false,
        depends: &["mini-doc"],
        pre_depends: &[],
        scripts: &[],
        conffiles: &[],
        compression: "xz",
    };
    minidistro::build_package(out, &spec, |tree| {
        let doc = tree.join("usr/share/doc");
        fs::create_dir_all(&doc).unwrap();
        std::os::unix::fs::symlink("mini-doc", doc.join("mini-doc-data")).unwrap();
    })
    .path
}

/// `Package` → `Version` of `var/lib/dpkg/status` in a `.tar.gz` image.
fn dpkg_status(image: &Path) -> BTreeSet<(String, String)> {
    let gz = flate2::read::GzDecoder::new(fs::File::open(image).unwrap());
    let mut archive = tar::Archive::new(gz);
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        if entry.path().unwrap() == Path::new("var/lib/dpkg/status") {
            let mut text = String::new();
            entry.read_to_string(&mut text).unwrap();
            return text
                .split("\n\n")
                .filter_map(|stanza| {
                    let field = |k: &str| {
                        stanza
                            .lines()
                            .find_map(|l| l.strip_prefix(k).map(|v| v.trim().to_string()))
                    };
                    Some((field("Package:")?, field("Version:")?))
                })
                .collect();
        }
    }
    panic!("{}: no var/lib/dpkg/status", image.display());
}

#[test]
fn the_sbom_is_reproducible_lists_the_installed_packages_and_validates() {
    require_build_privileges();
    let debs = tempfile::tempdir().unwrap();
    let extra = documented_package(debs.path());
    let shared = shared_doc_package(debs.path());
    let f = mini_recipe(
        &[extra, shared],
        &["mini-doc", "mini-doc-data"],
        FixtureOptions::default(),
    );
    let mirror = f.archive.file_url();
    let build = |out: &str| {
        let o = ingot(&[
            "build",
            arg(&f.recipe),
            "--mirror",
            &mirror,
            "--cache-dir",
            arg(&f.dir.join("cache")),
            "--out",
            arg(&f.dir.join(out)),
        ]);
        assert_ok(&o);
        stdout_path(&o)
    };
    let (a, b) = (build("out-a"), build("out-b"));
    let sbom_of = |image: &Path| PathBuf::from(format!("{}.spdx.json", image.display()));
    let (sa, sb) = (
        fs::read(sbom_of(&a)).unwrap(),
        fs::read(sbom_of(&b)).unwrap(),
    );
    assert_eq!(sa, sb, "two builds must write byte-identical SBOMs");
    let doc: serde_json::Value = serde_json::from_slice(&sa).unwrap();

    // Valid against the SPDX 2.3 schema fixture.
    let schema: serde_json::Value = serde_json::from_slice(
        &fs::read(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/spdx-2.3.schema.json"),
        )
        .unwrap(),
    )
    .unwrap();
    let validator = jsonschema::draft7::new(&schema).unwrap();
    let errors: Vec<String> = validator
        .iter_errors(&doc)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    assert!(errors.is_empty(), "schema violations: {errors:#?}");
    // The fixture has teeth: a misspelt algorithm or a missing field is caught.
    let mut broken = doc.clone();
    broken["packages"][1]["checksums"][0]["algorithm"] = "SHA-256".into();
    assert!(!validator.is_valid(&broken));
    let mut broken = doc.clone();
    broken.as_object_mut().unwrap().remove("documentNamespace");
    assert!(!validator.is_valid(&broken));

    // The described package is the image, with its SHA-256; created at the build epoch.
    let manifest: serde_json::Value =
        serde_json::from_slice(&fs::read(format!("{}.manifest.json", a.display())).unwrap())
            .unwrap();
    let packages = doc["packages"].as_array().unwrap();
    assert_eq!(packages[0]["checksums"][0]["checksumValue"], sha256(&a));
    assert_eq!(
        doc["creationInfo"]["created"],
        ingot::sbom::rfc3339_utc(manifest["build_epoch"].as_i64().unwrap())
    );
    assert!(
        doc["relationships"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["relationshipType"] == "DESCRIBES"
                && r["relatedSpdxElement"] == packages[0]["SPDXID"])
    );

    // Exactly the packages dpkg says are installed.
    let listed: BTreeSet<(String, String)> = packages[1..]
        .iter()
        .map(|p| {
            (
                p["name"].as_str().unwrap().to_string(),
                p["versionInfo"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(listed, dpkg_status(&a));
    assert_eq!(listed.len(), packages.len() - 1, "no package twice");

    // Each with its .deb's SHA-256 (as the manifest records it), supplier, purl, license.
    let arch = minidistro::host_arch();
    for p in &packages[1..] {
        let name = p["name"].as_str().unwrap();
        let in_manifest = manifest["packages"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["name"] == name)
            .unwrap();
        assert_eq!(p["checksums"][0]["checksumValue"], in_manifest["sha256"]);
        assert_eq!(
            p["supplier"],
            "Organization: ingot tests (t@example.invalid)"
        );
        assert_eq!(
            p["externalRefs"][0]["referenceLocator"],
            format!("pkg:deb/ubuntu/{name}@1.0-1?arch={arch}&distro=ubuntu-24.04")
        );
        let expected = if name == "mini-doc" || name == "mini-doc-data" {
            "GPL-2.0-or-later AND (MIT OR Apache-2.0)"
        } else {
            "NOASSERTION"
        };
        assert_eq!(p["licenseDeclared"], expected, "{name}");
    }
}
