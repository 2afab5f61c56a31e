//! `ingot outdated`: is a rebuild due? Compares what the image was built from — the recipe's
//! `ingot.lock`, else the newest artifact's manifest — with today's signed archive, and lists
//! each package that has a newer version there, marking those a `-security` suite serves.
//!
//! It reads the archive exactly as a build does (signatures, index hashes) and writes nothing.
//! The answer is the exit code: 1 when a rebuild is due, 0 when not; a pipeline runs it
//! nightly.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::str::FromStr;

use debversion::Version;
use serde::Serialize;

use crate::archive::{self, ArchiveOptions, BinaryPackage};
use crate::artifact::Manifest;
use crate::build::CommonOptions;
use crate::lock;
use crate::net::Transport;
use crate::progress::Reporter;
use crate::recipe::Recipe;

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

/// Every stanza of today's archive for the recipe's suites, verified as a build verifies them.
fn today(
    recipe: &Recipe,
    transport: &Transport,
    reporter: &dyn Reporter,
) -> anyhow::Result<Vec<BinaryPackage>> {
    let opts = ArchiveOptions::now(recipe.source.allow_expired);
    reporter.begin("archive", None);
    let mut universe = Vec::new();
    for suite in &recipe.source.suites {
        let idx = archive::load_suite(
            transport,
            &recipe.source.keyring,
            suite,
            &recipe.source.components,
            &recipe.source.architecture,
            opts,
        )?;
        reporter.message(&format!("{} verified", idx.release.url));
        universe.extend(idx.packages);
    }
    reporter.finish(&format!("{} suites verified", recipe.source.suites.len()));
    Ok(universe)
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

/// `ingot outdated RECIPE`: exit 1 when a rebuild is due.
pub fn cmd_outdated(
    o: &CommonOptions,
    out_dir: &Path,
    json: bool,
    reporter: &dyn Reporter,
) -> anyhow::Result<ExitCode> {
    let recipe = o.load_recipe()?;
    let base = baseline(&recipe, out_dir)?;
    let universe = today(&recipe, &o.transport()?, reporter)?;
    let outdated = compare(&base, &universe);
    let due = !outdated.is_empty();
    let mut out = std::io::stdout().lock();
    if json {
        let doc = serde_json::json!({
            "baseline": base,
            "rebuild_due": due,
            "security": outdated.iter().any(|p| p.security),
            "outdated": outdated,
        });
        serde_json::to_writer_pretty(&mut out, &doc)?;
        writeln!(out)?;
    } else {
        for p in &outdated {
            writeln!(
                out,
                "{:<36} {:<6} {} -> {} ({}){}",
                p.name,
                p.architecture,
                p.built,
                p.available,
                p.suites.join(", "),
                if p.security { " SECURITY" } else { "" }
            )?;
        }
        if !o.quiet {
            eprintln!(
                "ingot: {} of {} packages of {} have a newer version{}",
                outdated.len(),
                base.packages.len(),
                base.file.display(),
                if due { ": rebuild due" } else { "" }
            );
        }
    }
    Ok(if due {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}
