//! `ingot outdated`: is a rebuild due? Compares what the image was built from — the recipe's
//! `ingot.lock`, else the newest artifact's manifest — with today's signed archive, and lists
//! each package that has a newer version there, marking those a `-security` suite serves.
//!
//! It reads the archive through [`crate::resolve`], exactly as a build does (signatures, index
//! hashes, the replay ledger and `--allow-older`), and writes nothing but the ledger. The
//! binary turns the answer into the exit code a nightly job needs (see the README's table).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use debversion::Version;
use serde::Serialize;

use crate::archive::BinaryPackage;
use crate::artifact::Manifest;
use crate::lock;
use crate::progress::Reporter;
use crate::recipe::Recipe;
use crate::resolve::{self, CommonOptions};

/// What the comparison started from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Baseline {
    /// The lock or manifest file.
    pub file: PathBuf,
    /// `lock` or `manifest`.
    pub kind: &'static str,
    /// (name, architecture) → version.
    #[serde(skip)]
    pub packages: BTreeMap<(String, String), String>,
}

/// One package with a newer version today.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Outdated {
    /// Package name.
    pub name: String,
    /// Architecture.
    pub architecture: String,
    /// The version built (or locked).
    pub built: String,
    /// The newest version in today's archive.
    pub available: String,
    /// The suites that serve it.
    pub suites: Vec<String>,
    /// Whether a `-security` suite serves it.
    pub security: bool,
}

/// Why there is nothing to compare.
#[derive(Debug, thiserror::Error)]
pub enum OutdatedError {
    /// Neither a lock nor a manifest.
    #[error(
        "{}: no ingot.lock, and no {image}-v<N> manifest in {} (run `ingot lock` or build first)",
        recipe.display(), out.display()
    )]
    NoBaseline {
        /// The recipe folder.
        recipe: PathBuf,
        /// The image name.
        image: String,
        /// The artifact directory searched.
        out: PathBuf,
    },
    /// A manifest that cannot be read.
    #[error("{}: not an ingot manifest: {message}", path.display())]
    BadManifest {
        /// The manifest.
        path: PathBuf,
        /// Why.
        message: String,
    },
}

/// The lock of `recipe`, else the manifest of the highest version in `out`.
pub fn baseline(recipe: &Recipe, out: &Path) -> anyhow::Result<Baseline> {
    let path = lock::lock_path(recipe);
    if path.exists() {
        let lock = lock::LockFile::read(&path)?;
        return Ok(Baseline {
            file: path,
            kind: "lock",
            packages: lock
                .packages
                .into_iter()
                .map(|p| ((p.name, p.architecture), p.version))
                .collect(),
        });
    }
    let newest = std::fs::read_dir(out)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let (n, rest) = crate::artifact::parse_version(&recipe.image.name, &name)?;
            rest.ends_with(".manifest.json").then(|| (n, e.path()))
        })
        .max();
    let Some((_, path)) = newest else {
        return Err(OutdatedError::NoBaseline {
            recipe: recipe.dir.clone(),
            image: recipe.image.name.clone(),
            out: out.to_path_buf(),
        }
        .into());
    };
    let bad = |message: String| OutdatedError::BadManifest {
        path: path.clone(),
        message,
    };
    let text = std::fs::read_to_string(&path).map_err(|e| bad(e.to_string()))?;
    let manifest: Manifest = serde_json::from_str(&text).map_err(|e| bad(e.to_string()))?;
    Ok(Baseline {
        file: path,
        kind: "manifest",
        packages: manifest
            .packages
            .into_iter()
            .map(|p| ((p.name, p.architecture), p.version))
            .collect(),
    })
}

/// The packages of `baseline` that `universe` has in a newer version, sorted by name.
pub fn compare(baseline: &Baseline, universe: &[BinaryPackage]) -> Vec<Outdated> {
    let mut newest: BTreeMap<(&str, &str), (Version, &str, Vec<String>)> = BTreeMap::new();
    for p in universe {
        let Ok(v) = Version::from_str(&p.version) else {
            continue;
        };
        let key = (p.name.as_str(), p.architecture.as_str());
        match newest.get_mut(&key) {
            Some((best, _, suites)) if *best == v => suites.push(p.suite.clone()),
            Some((best, _, _)) if *best > v => {}
            _ => {
                newest.insert(key, (v, p.version.as_str(), vec![p.suite.clone()]));
            }
        }
    }
    let mut out = Vec::new();
    for ((name, arch), built) in &baseline.packages {
        let Some((best, text, suites)) = newest.get(&(name.as_str(), arch.as_str())) else {
            continue;
        };
        let Ok(built_v) = Version::from_str(built) else {
            continue;
        };
        if *best > built_v {
            let mut suites = suites.clone();
            suites.sort();
            suites.dedup();
            out.push(Outdated {
                name: name.clone(),
                architecture: arch.clone(),
                built: built.clone(),
                available: text.to_string(),
                security: suites.iter().any(|s| s.ends_with("-security")),
                suites,
            });
        }
    }
    out
}

/// What `ingot outdated` found.
#[derive(Debug, Clone, Serialize)]
pub struct OutdatedReport {
    /// What the comparison started from.
    pub baseline: Baseline,
    /// How many packages the baseline holds.
    pub baseline_packages: usize,
    /// Each package with a newer version today.
    pub outdated: Vec<Outdated>,
}

impl OutdatedReport {
    /// A rebuild is due when any package has a newer version.
    pub fn rebuild_due(&self) -> bool {
        !self.outdated.is_empty()
    }

    /// A `-security` suite serves one of the newer versions.
    pub fn security(&self) -> bool {
        self.outdated.iter().any(|p| p.security)
    }
}

/// `ingot outdated RECIPE`: compare the baseline with today's verified archive.
pub fn check(
    o: &CommonOptions,
    out_dir: &Path,
    reporter: &dyn Reporter,
) -> anyhow::Result<OutdatedReport> {
    let recipe = o.load_recipe()?;
    let base = baseline(&recipe, out_dir)?;
    reporter.begin("archive", None);
    let suites = resolve::verified_suites(
        &recipe,
        &o.transport()?,
        &o.cache(),
        o.allow_older,
        reporter,
    )?;
    reporter.finish(&format!("{} suites verified", suites.releases.len()));
    let outdated = compare(&base, &suites.universe);
    Ok(OutdatedReport {
        baseline_packages: base.packages.len(),
        baseline: base,
        outdated,
    })
}
