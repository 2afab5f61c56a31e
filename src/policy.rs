//! Golden policies: the shared base a recipe names with `extends = "../golden"`.
//!
//! A policy folder holds `policy.toml` (the scripts every recipe that extends it runs, and the
//! releases the policy knows) and those scripts. This module owns that file's format and the
//! one question a recipe asks of it: is my release one you know? It never reads anything but
//! the policy folder, and it does not run the scripts (the stage does).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// A release the policy knows: the recipe's first suite names it by codename.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Release {
    /// The suite codename (`noble`, `trixie`).
    pub codename: String,
    /// `ID` in the image's `os-release` (`ubuntu`, `debian`).
    pub distro: String,
    /// `VERSION_ID` in the image's `os-release` (`24.04`, `13`).
    pub version: String,
}

/// A loaded policy: its scripts (host paths, in order) and its releases.
#[derive(Debug, Clone, Serialize)]
pub struct Policy {
    /// The policy's `policy.toml`.
    pub file: PathBuf,
    /// The file's text (part of the recipe digest).
    #[serde(skip)]
    pub text: String,
    /// Provision scripts run before the recipe's own, as written in `policy.toml`.
    pub provision: Vec<String>,
    /// Cleanup scripts run before the recipe's own.
    pub cleanup: Vec<String>,
    /// The releases the policy knows.
    pub releases: Vec<Release>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPolicy {
    #[serde(default)]
    provision: RawScripts,
    #[serde(default)]
    cleanup: RawScripts,
    #[serde(default, rename = "release")]
    releases: Vec<Release>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawScripts {
    #[serde(default)]
    scripts: Vec<String>,
}

impl Policy {
    /// Load `<dir>/policy.toml`. The error is one line naming the file.
    pub fn load(dir: &Path) -> Result<Policy, String> {
        let file = dir.join("policy.toml");
        let text = std::fs::read_to_string(&file).map_err(|e| {
            format!(
                "expected a golden policy folder holding policy.toml: {}: {e}",
                file.display()
            )
        })?;
        let raw: RawPolicy = toml::from_str(&text).map_err(|e| {
            format!(
                "{}: {}",
                file.display(),
                e.to_string()
                    .split_whitespace()
                    .collect::<Vec<_>>()
                    .join(" ")
            )
        })?;
        if raw.releases.is_empty() {
            return Err(format!("{}: names no [[release]]", file.display()));
        }
        Ok(Policy {
            file,
            text,
            provision: raw.provision.scripts,
            cleanup: raw.cleanup.scripts,
            releases: raw.releases,
        })
    }

    /// The release whose codename is `codename`, or a one-line refusal naming it and the
    /// releases the policy knows.
    pub fn release(&self, codename: &str) -> Result<&Release, String> {
        self.releases
            .iter()
            .find(|r| r.codename == codename)
            .ok_or_else(|| {
                let known: Vec<String> = self
                    .releases
                    .iter()
                    .map(|r| format!("{} ({} {})", r.codename, r.distro, r.version))
                    .collect();
                format!(
                    "release {codename:?} is not known to the golden policy {} (it knows {})",
                    self.file.display(),
                    known.join(", ")
                )
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn knows_its_releases_and_names_an_unknown_one() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(
            d.path().join("policy.toml"),
            "[provision]\nscripts = [\"p.sh\"]\n\n[[release]]\ncodename = \"noble\"\n\
             distro = \"ubuntu\"\nversion = \"24.04\"\n",
        )
        .unwrap();
        let p = Policy::load(d.path()).unwrap();
        assert_eq!(p.provision, vec!["p.sh".to_string()]);
        assert_eq!(p.release("noble").unwrap().version, "24.04");
        let e = p.release("bullseye").unwrap_err();
        assert!(
            e.contains("\"bullseye\" is not known") && e.contains("noble (ubuntu 24.04)"),
            "{e}"
        );
        assert!(!e.contains('\n'), "one line: {e}");
    }

    #[test]
    fn a_folder_without_policy_toml_is_refused() {
        let d = tempfile::tempdir().unwrap();
        let e = Policy::load(d.path()).unwrap_err();
        assert!(e.contains("policy.toml"), "{e}");
    }
}
