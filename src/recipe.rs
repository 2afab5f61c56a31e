//! Recipes: `recipes/<name>/recipe.toml` and the scripts beside it, parsed and validated.
//!
//! This module owns the recipe format and its error messages (file, line, key, what was
//! expected). It never touches the network, nor the filesystem beyond the recipe's own folder
//! and the search path of [`crate::catalog`] (a recipe by name, a keyring by file name).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// A validated recipe, with every relative path resolved against the recipe's folder.
#[derive(Debug, Clone, Serialize)]
pub struct Recipe {
    /// The folder holding `recipe.toml`.
    pub dir: PathBuf,
    /// The `recipe.toml` file itself.
    pub file: PathBuf,
    /// SHA-256 over `recipe.toml` and every script it names, in order (for the manifest).
    pub digest: String,
    /// Artifact naming.
    pub image: ImageSection,
    /// Where packages come from.
    pub source: Source,
    /// What to install.
    pub packages: PackageSelection,
    /// Scripts run inside the image's sandbox after the packages are configured.
    pub provision: Vec<PathBuf>,
    /// `[provision] network = true`: the provision scripts get the host's network and its
    /// `resolv.conf` (read-only); by default they see only a loopback interface of their own.
    pub provision_network: bool,
    /// `[provision] timeout`: the time limit of each provision and cleanup script, in seconds
    /// ([`DEFAULT_SCRIPT_TIMEOUT_SECS`] unless the recipe says).
    pub script_timeout_secs: u64,
    /// Scripts run inside the image's sandbox after provisioning, before ingot's own cleanup invariants.
    pub cleanup: Vec<PathBuf>,
    /// `extends = "../golden"`: the golden policy's release this recipe builds (its scripts
    /// are already first in `provision` and `cleanup`). `None` for a recipe of its own.
    pub release: Option<crate::policy::Release>,
}

/// `[image]`: how artifacts are named.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImageSection {
    /// Artifact prefix: `<name>-v<N>.tar.gz`.
    pub name: String,
    /// Also publish `<name>-v<N>.oci.tar`, an OCI image archive (`ingot build --oci`).
    #[serde(default)]
    pub oci: bool,
}

/// `[source]` after validation: one entry per suite, each with its mirror.
#[derive(Debug, Clone, Serialize)]
pub struct Source {
    /// The suites, in recipe order.
    pub suites: Vec<SuiteSource>,
    /// Components to read (`main`, `universe`, …).
    pub components: Vec<String>,
    /// The Debian architecture (`amd64`, `arm64`, …).
    pub architecture: String,
    /// The OpenPGP keyring the `InRelease` signatures must verify against.
    pub keyring: PathBuf,
    /// Accept a `Valid-Until` in the past (snapshot archives).
    pub allow_expired: bool,
}

/// One suite and the mirror it is fetched from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SuiteSource {
    /// The suite or codename, e.g. `noble-updates`.
    pub suite: String,
    /// The archive root URL (`http://…/ubuntu`, `file:///srv/mirror`), without a trailing slash.
    pub mirror: String,
}

/// The debootstrap-style base selection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Variant {
    /// `Essential: yes` packages only (and their dependencies).
    Essential,
    /// Essential + `Priority: required` + `apt`, as mmdebstrap ≥ 1.5 does.
    Minbase,
}

/// `[packages]` after validation.
#[derive(Debug, Clone, Serialize)]
pub struct PackageSelection {
    /// The base set.
    pub variant: Variant,
    /// Extra packages, each a name (optionally `name=version`).
    pub include: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRecipe {
    #[serde(default)]
    extends: Option<String>,
    image: ImageSection,
    source: RawSource,
    packages: RawPackages,
    #[serde(default)]
    provision: RawProvision,
    #[serde(default)]
    cleanup: RawScripts,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSource {
    #[serde(default)]
    mirror: Option<String>,
    suites: Vec<String>,
    #[serde(default = "default_components")]
    components: Vec<String>,
    architecture: String,
    keyring: String,
    #[serde(default, rename = "suite-mirrors")]
    suite_mirrors: BTreeMap<String, String>,
    #[serde(default, rename = "allow-expired")]
    allow_expired: bool,
    /// Suites served from an archive of their own (Debian's `-security`): `--mirror` does
    /// not apply to them, each needs `--suite-mirror SUITE=URL` or a `suite-mirrors` entry.
    #[serde(default, rename = "separate-archive")]
    separate_archive: Vec<String>,
}

fn default_components() -> Vec<String> {
    vec!["main".to_string()]
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPackages {
    variant: Variant,
    #[serde(default)]
    include: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProvision {
    #[serde(default)]
    scripts: Vec<String>,
    #[serde(default)]
    network: bool,
    timeout: Option<u64>,
}

/// The time limit of each recipe script unless `[provision] timeout` says otherwise: 30 minutes.
pub const DEFAULT_SCRIPT_TIMEOUT_SECS: u64 = 1800;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawScripts {
    #[serde(default)]
    scripts: Vec<String>,
}

/// A recipe that cannot be used, with the file, line and key at fault.
#[derive(Debug, thiserror::Error)]
pub enum RecipeError {
    /// The recipe file or folder could not be read.
    #[error("{path}: cannot read recipe: {source}")]
    Read {
        /// The path that failed.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// TOML syntax or shape error (the message carries line and column).
    #[error("{path}: {message}")]
    Syntax {
        /// The recipe file.
        path: PathBuf,
        /// The parser's message, flattened to one line.
        message: String,
    },
    /// A recipe given by name that no folder of the search path holds.
    #[error(transparent)]
    NotFound(#[from] crate::catalog::RecipeNotFound),
    /// A value is present but wrong.
    #[error("{path}:{line}: `{key}`: {message}")]
    Invalid {
        /// The recipe file.
        path: PathBuf,
        /// The 1-based line of the key (0 if unknown).
        line: usize,
        /// The key, dotted (`source.mirror`).
        key: String,
        /// What was expected.
        message: String,
    },
}

/// Overrides from the command line or the environment, applied while loading.
#[derive(Debug, Clone, Default)]
pub struct RecipeOverrides {
    /// Replace every suite's mirror (air-gapped builds, local mirrors).
    pub mirror: Option<String>,
    /// Accept expired `Valid-Until` (snapshot archives).
    pub allow_expired: bool,
    /// `--suite-mirror SUITE=URL` (`INGOT_SUITE_MIRRORS`, comma-separated): one suite's mirror,
    /// over `--mirror` and the recipe.
    pub suite_mirrors: Vec<String>,
}

impl Recipe {
    /// The variables the recipe's scripts get besides the clean environment:
    /// `INGOT_SUITE_MIRRORS`, the build's suites and the mirror each came from
    /// (`suite=URL,…`, as `--suite-mirror` takes them), so that a policy can write the image's apt
    /// sources for a distribution whose public mirror the repository does not name.
    pub fn script_env(&self) -> Vec<(String, String)> {
        let pairs: Vec<String> = self
            .source
            .suites
            .iter()
            .map(|s| format!("{}={}", s.suite, s.mirror))
            .collect();
        vec![("INGOT_SUITE_MIRRORS".to_string(), pairs.join(","))]
    }

    /// Load `RECIPE`, which is the recipe's folder, its `recipe.toml`, or a recipe's name
    /// looked up in the search path ([`crate::catalog::locate_recipe`]).
    pub fn load(path: &Path, overrides: &RecipeOverrides) -> Result<Recipe, RecipeError> {
        let path = &crate::catalog::locate_recipe(path, &crate::catalog::search_roots())?;
        let file = if path.is_dir() {
            path.join("recipe.toml")
        } else {
            path.to_path_buf()
        };
        let text = std::fs::read_to_string(&file).map_err(|source| RecipeError::Read {
            path: file.clone(),
            source,
        })?;
        let dir = file
            .parent()
            .map(|p| {
                if p.as_os_str().is_empty() {
                    PathBuf::from(".")
                } else {
                    p.to_path_buf()
                }
            })
            .unwrap_or_else(|| PathBuf::from("."));
        Self::parse(&text, &file, &dir, overrides)
    }

    /// Parse recipe text; `file` is used in messages, `dir` to resolve relative paths.
    pub fn parse(
        text: &str,
        file: &Path,
        dir: &Path,
        overrides: &RecipeOverrides,
    ) -> Result<Recipe, RecipeError> {
        let raw: RawRecipe = toml::from_str(text).map_err(|e| RecipeError::Syntax {
            path: file.to_path_buf(),
            message: one_line(&e.to_string()),
        })?;
        let invalid = |key: &str, message: String| RecipeError::Invalid {
            path: file.to_path_buf(),
            line: line_of(text, key),
            key: key.to_string(),
            message,
        };

        let name = raw.image.name.trim();
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "._+-".contains(c))
        {
            return Err(invalid(
                "image.name",
                format!(
                    "expected a file-name-safe prefix like \"ubuntu-24.04-lxc-rootfs\", got {name:?}"
                ),
            ));
        }

        if raw.source.suites.is_empty() {
            return Err(invalid(
                "source.suites",
                "expected at least one suite".into(),
            ));
        }
        for s in &raw.source.suites {
            if s.is_empty() || s.contains('/') || s.contains(char::is_whitespace) {
                return Err(invalid(
                    "source.suites",
                    format!("{s:?} is not a suite name"),
                ));
            }
        }
        for s in raw.source.suite_mirrors.keys() {
            if !raw.source.suites.contains(s) {
                return Err(invalid(
                    "suite-mirrors",
                    format!("{s:?} is not one of source.suites"),
                ));
            }
        }
        if raw.source.components.is_empty() {
            return Err(invalid(
                "source.components",
                "expected at least one component".into(),
            ));
        }
        let arch = raw.source.architecture.trim();
        if arch.is_empty() || !arch.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
            return Err(invalid(
                "source.architecture",
                format!("expected a Debian architecture like \"amd64\", got {arch:?}"),
            ));
        }
        let check_mirror = |key: &str, url: &str| -> Result<String, RecipeError> {
            validate_mirror(url).map_err(|m| invalid(key, m))
        };
        let flag_error = |flag: &str, message: String| RecipeError::Invalid {
            path: PathBuf::from(flag),
            line: 0,
            key: flag.trim_start_matches('-').into(),
            message,
        };
        for s in &raw.source.separate_archive {
            if !raw.source.suites.contains(s) {
                return Err(invalid(
                    "separate-archive",
                    format!("{s:?} is not one of source.suites"),
                ));
            }
        }
        let cli_mirror = match &overrides.mirror {
            Some(m) => Some(validate_mirror(m).map_err(|msg| flag_error("--mirror", msg))?),
            None => None,
        };
        let mut cli_suite_mirrors = BTreeMap::new();
        for given in &overrides.suite_mirrors {
            let Some((suite, url)) = given.split_once('=').filter(|(s, _)| !s.is_empty()) else {
                return Err(flag_error(
                    "--suite-mirror",
                    format!("{given:?}: expected SUITE=URL, e.g. trixie-security=http://…"),
                ));
            };
            // One INGOT_SUITE_MIRRORS serves several recipes: another recipe's suite is not
            // an error here (a separate archive left without a mirror still is, below).
            if !raw.source.suites.iter().any(|s| s == suite) {
                continue;
            }
            let url = validate_mirror(url)
                .map_err(|msg| flag_error("--suite-mirror", format!("{suite}: {msg}")))?;
            cli_suite_mirrors.insert(suite.to_string(), url);
        }
        let recipe_mirror = match &raw.source.mirror {
            Some(m) => Some(check_mirror("source.mirror", m)?),
            None => None,
        };
        let mut suites = Vec::new();
        let (mut missing, mut missing_separate) = (Vec::new(), Vec::new());
        for s in &raw.source.suites {
            let separate = raw.source.separate_archive.contains(s);
            // --suite-mirror, then --mirror (not for a separate archive), then the recipe.
            let mirror = match (cli_suite_mirrors.get(s), &cli_mirror) {
                (Some(m), _) => Some(m.clone()),
                (None, Some(m)) if !separate => Some(m.clone()),
                _ => match raw.source.suite_mirrors.get(s) {
                    Some(m) if cli_mirror.is_none() || separate => {
                        Some(check_mirror("suite-mirrors", m)?)
                    }
                    _ if separate => None,
                    _ => cli_mirror.clone().or_else(|| recipe_mirror.clone()),
                },
            };
            match mirror {
                Some(mirror) => suites.push(SuiteSource {
                    suite: s.clone(),
                    mirror,
                }),
                None if separate => missing_separate.push(s.clone()),
                None => missing.push(s.clone()),
            }
        }
        if !missing.is_empty() || !missing_separate.is_empty() {
            let mut how = Vec::new();
            if !missing.is_empty() {
                how.push(format!(
                    "--mirror URL (INGOT_MIRROR) for {}",
                    missing.join(", ")
                ));
            }
            for s in &missing_separate {
                how.push(format!(
                    "--suite-mirror {s}=URL (INGOT_SUITE_MIRRORS={s}=URL; a separate archive)"
                ));
            }
            return Err(invalid(
                if missing.is_empty() {
                    "separate-archive"
                } else {
                    "source.suites"
                },
                format!(
                    "this recipe names no mirror for {}: give the site's with {}",
                    missing
                        .iter()
                        .chain(&missing_separate)
                        .cloned()
                        .collect::<Vec<_>>()
                        .join(", "),
                    how.join(" and ")
                ),
            ));
        }
        let keyring = crate::catalog::resolve_keyring(
            dir,
            &raw.source.keyring,
            &crate::catalog::search_roots(),
        )
        .map_err(|tried| {
            invalid(
                "source.keyring",
                format!(
                    "expected an OpenPGP keyring file, {} does not exist{}",
                    tried[0].display(),
                    if tried.len() > 1 {
                        format!(
                            " (nor does {})",
                            tried[1..]
                                .iter()
                                .map(|p| p.display().to_string())
                                .collect::<Vec<_>>()
                                .join(", ")
                        )
                    } else {
                        String::new()
                    }
                ),
            )
        })?;

        let mut include = Vec::new();
        for p in &raw.packages.include {
            let name = p.split('=').next().unwrap_or("");
            if !valid_package_name(name) {
                return Err(invalid(
                    "packages.include",
                    format!("{p:?} is not a Debian package name (lowercase, digits, + - .)"),
                ));
            }
            include.push(p.clone());
        }

        let policy = match &raw.extends {
            Some(rel) => {
                let base = dir.join(rel);
                let policy =
                    crate::policy::Policy::load(&base).map_err(|m| invalid("extends", m))?;
                let release = policy
                    .release(&raw.source.suites[0])
                    .map_err(|m| invalid("source.suites", m))?
                    .clone();
                Some((base, policy, release))
            }
            None => None,
        };

        let mut digest_input = text.as_bytes().to_vec();
        if let Some((_, policy, _)) = &policy {
            digest_input.extend_from_slice(policy.text.as_bytes());
            digest_input.push(0);
        }
        let mut resolve_scripts =
            |key: &str, dir: &Path, list: &[String]| -> Result<Vec<PathBuf>, RecipeError> {
                let mut out = Vec::new();
                for s in list {
                    let p = script_inside(dir, s).map_err(|m| invalid(key, m))?;
                    let body = std::fs::read(&p).map_err(|e| {
                        invalid(key, format!("script {} cannot be read: {e}", p.display()))
                    })?;
                    digest_input.extend_from_slice(s.as_bytes());
                    digest_input.push(0);
                    digest_input.extend_from_slice(&body);
                    out.push(p);
                }
                Ok(out)
            };
        let (mut provision, mut cleanup) = (Vec::new(), Vec::new());
        if let Some((base, policy, _)) = &policy {
            provision = resolve_scripts("extends", base, &policy.provision)?;
            cleanup = resolve_scripts("extends", base, &policy.cleanup)?;
        }
        provision.extend(resolve_scripts(
            "provision.scripts",
            dir,
            &raw.provision.scripts,
        )?);
        cleanup.extend(resolve_scripts(
            "cleanup.scripts",
            dir,
            &raw.cleanup.scripts,
        )?);
        let script_timeout_secs = match raw.provision.timeout {
            None => DEFAULT_SCRIPT_TIMEOUT_SECS,
            Some(0) => {
                return Err(invalid(
                    "provision.timeout",
                    "must be a number of seconds above 0".into(),
                ));
            }
            Some(secs) => secs,
        };
        let digest = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&digest_input));

        Ok(Recipe {
            dir: dir.to_path_buf(),
            file: file.to_path_buf(),
            digest,
            image: ImageSection {
                name: name.to_string(),
                oci: raw.image.oci,
            },
            source: Source {
                suites,
                components: raw.source.components,
                architecture: arch.to_string(),
                keyring,
                allow_expired: raw.source.allow_expired || overrides.allow_expired,
            },
            packages: PackageSelection {
                variant: raw.packages.variant,
                include,
            },
            provision,
            provision_network: raw.provision.network,
            script_timeout_secs,
            cleanup,
            release: policy.map(|(_, _, release)| release),
        })
    }
}

/// A Debian package name: `[a-z0-9][a-z0-9+.-]+`.
pub fn valid_package_name(name: &str) -> bool {
    let b = name.as_bytes();
    b.len() >= 2
        && (b[0].is_ascii_lowercase() || b[0].is_ascii_digit())
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || b"+-.".contains(c))
}

fn validate_mirror(url: &str) -> Result<String, String> {
    let url = url.trim().trim_end_matches('/');
    let ok = ["http://", "https://", "file://"]
        .iter()
        .any(|s| url.starts_with(s) && url.len() > s.len());
    if ok {
        Ok(url.to_string())
    } else {
        Err(format!(
            "expected an http://, https:// or file:// archive URL, got {url:?}"
        ))
    }
}

/// The 1-based line where the last component of a dotted key is assigned, or 0.
fn line_of(text: &str, key: &str) -> usize {
    let last = key.rsplit('.').next().unwrap_or(key);
    text.lines()
        .position(|l| {
            let l = l.trim_start();
            l.strip_prefix(last)
                .is_some_and(|rest| rest.trim_start().starts_with('=') || rest.starts_with(']'))
                || l == format!("[{last}]")
                || l == format!("[source.{last}]")
        })
        .map(|i| i + 1)
        .unwrap_or(0)
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The script `rel` of the recipe in `dir`: a relative path without `..` that stays inside the
/// recipe folder after symlinks are resolved. A recipe names its own scripts; it must not
/// smuggle a host file (`/etc/shadow`, `../../secret`) into the image build.
fn script_inside(dir: &Path, rel: &str) -> Result<PathBuf, String> {
    let escapes = Path::new(rel).is_absolute()
        || Path::new(rel)
            .components()
            .any(|c| matches!(c, std::path::Component::ParentDir));
    if escapes {
        return Err(format!(
            "script {rel:?} must be a relative path inside the recipe folder"
        ));
    }
    let p = dir.join(rel);
    if let (Ok(real), Ok(base)) = (p.canonicalize(), dir.canonicalize())
        && !real.starts_with(&base)
    {
        return Err(format!(
            "script {rel:?} resolves to {}, outside the recipe folder {}",
            real.display(),
            base.display()
        ));
    }
    Ok(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, body: &str) -> PathBuf {
        std::fs::write(dir.join("keyring.gpg"), b"x").unwrap();
        std::fs::write(dir.join("provision.sh"), b"true\n").unwrap();
        let f = dir.join("recipe.toml");
        std::fs::write(&f, body).unwrap();
        f
    }

    const GOOD: &str = r#"
[image]
name = "test-rootfs"

[source]
mirror = "http://archive.example/ubuntu/"
suites = ["noble", "noble-updates"]
components = ["main"]
architecture = "amd64"
keyring = "keyring.gpg"

[source.suite-mirrors]
noble-updates = "file:///srv/updates"

[packages]
variant = "minbase"
include = ["openssh-server", "python3"]

[provision]
scripts = ["provision.sh"]
"#;

    #[test]
    fn provision_network_is_opt_in_and_typed() {
        let d = tempfile::tempdir().unwrap();
        let with = GOOD.replace(
            "scripts = [\"provision.sh\"]",
            "scripts = [\"provision.sh\"]\nnetwork = true",
        );
        write(d.path(), &with);
        let r = Recipe::load(d.path(), &RecipeOverrides::default()).unwrap();
        assert!(r.provision_network);
        let bad = GOOD.replace(
            "scripts = [\"provision.sh\"]",
            "scripts = [\"provision.sh\"]\nnetwork = \"yes\"",
        );
        write(d.path(), &bad);
        let err = Recipe::load(d.path(), &RecipeOverrides::default()).unwrap_err();
        assert!(err.to_string().contains("network"), "{err}");
    }

    #[test]
    fn the_script_time_limit_has_a_default_and_must_be_positive() {
        let d = tempfile::tempdir().unwrap();
        write(d.path(), GOOD);
        let r = Recipe::load(d.path(), &RecipeOverrides::default()).unwrap();
        assert_eq!(r.script_timeout_secs, DEFAULT_SCRIPT_TIMEOUT_SECS);
        let with = GOOD.replace(
            "scripts = [\"provision.sh\"]",
            "scripts = [\"provision.sh\"]\ntimeout = 90",
        );
        write(d.path(), &with);
        let r = Recipe::load(d.path(), &RecipeOverrides::default()).unwrap();
        assert_eq!(r.script_timeout_secs, 90);
        for bad in ["timeout = 0", "timeout = -5", "timeout = \"1h\""] {
            let text = GOOD.replace(
                "scripts = [\"provision.sh\"]",
                &format!("scripts = [\"provision.sh\"]\n{bad}"),
            );
            write(d.path(), &text);
            let err = Recipe::load(d.path(), &RecipeOverrides::default()).unwrap_err();
            assert!(err.to_string().contains("timeout"), "{bad}: {err}");
        }
    }

    #[test]
    fn parses_the_documented_format() {
        let d = tempfile::tempdir().unwrap();
        write(d.path(), GOOD);
        let r = Recipe::load(d.path(), &RecipeOverrides::default()).unwrap();
        assert_eq!(r.image.name, "test-rootfs");
        assert_eq!(r.source.suites[0].mirror, "http://archive.example/ubuntu");
        assert_eq!(r.source.suites[1].mirror, "file:///srv/updates");
        assert_eq!(r.packages.variant, Variant::Minbase);
        assert_eq!(r.provision, vec![d.path().join("provision.sh")]);
        assert!(
            !r.provision_network,
            "no network unless the recipe asks for it"
        );
        assert_eq!(r.digest.len(), 64);

        let o = RecipeOverrides {
            mirror: Some("file:///mirror".into()),
            ..RecipeOverrides::default()
        };
        let r = Recipe::load(d.path(), &o).unwrap();
        assert!(r.source.suites.iter().all(|s| s.mirror == "file:///mirror"));
    }

    #[test]
    fn errors_name_file_line_and_key() {
        let d = tempfile::tempdir().unwrap();
        write(
            d.path(),
            &GOOD.replace("variant = \"minbase\"", "variant = \"maxbase\""),
        );
        let e = Recipe::load(d.path(), &RecipeOverrides::default())
            .unwrap_err()
            .to_string();
        assert!(e.contains("recipe.toml") && e.contains("variant"), "{e}");

        write(d.path(), &GOOD.replace("\"amd64\"", "\"amd 64\""));
        let e = Recipe::load(d.path(), &RecipeOverrides::default())
            .unwrap_err()
            .to_string();
        assert!(e.contains("recipe.toml:9: `source.architecture`"), "{e}");

        write(
            d.path(),
            &GOOD.replace("http://archive.example", "ftp://archive.example"),
        );
        let e = Recipe::load(d.path(), &RecipeOverrides::default())
            .unwrap_err()
            .to_string();
        assert!(e.contains("source.mirror") && e.contains("ftp://"), "{e}");

        write(d.path(), &GOOD.replace("\"python3\"", "\"Python3\""));
        let e = Recipe::load(d.path(), &RecipeOverrides::default())
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("packages.include") && e.contains("Python3"),
            "{e}"
        );

        write(d.path(), &GOOD.replace("keyring.gpg\"", "missing.gpg\""));
        let e = Recipe::load(d.path(), &RecipeOverrides::default())
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("source.keyring") && e.contains("missing.gpg"),
            "{e}"
        );

        write(
            d.path(),
            &GOOD.replace("[packages]", "[packages]\nbogus = 1"),
        );
        let e = Recipe::load(d.path(), &RecipeOverrides::default())
            .unwrap_err()
            .to_string();
        assert!(e.contains("bogus"), "{e}");
    }

    const DEBIAN: &str = r#"
extends = "golden"

[image]
name = "debian-13-lxc-rootfs"

[source]
suites = ["trixie", "trixie-updates", "trixie-security"]
architecture = "amd64"
keyring = "keyring.gpg"
separate-archive = ["trixie-security"]

[packages]
variant = "minbase"

[provision]
scripts = ["provision.sh"]
"#;

    fn golden(dir: &Path, codename: &str) {
        std::fs::create_dir_all(dir.join("golden")).unwrap();
        std::fs::write(dir.join("golden/policy.sh"), b"true\n").unwrap();
        std::fs::write(dir.join("golden/tidy.sh"), b"true\n").unwrap();
        std::fs::write(
            dir.join("golden/policy.toml"),
            format!(
                "[provision]\nscripts = [\"policy.sh\"]\n[cleanup]\nscripts = [\"tidy.sh\"]\n\
                 [[release]]\ncodename = \"{codename}\"\ndistro = \"debian\"\nversion = \"13\"\n"
            ),
        )
        .unwrap();
    }

    fn load_with(
        dir: &Path,
        mirror: Option<&str>,
        suite_mirrors: &[&str],
    ) -> Result<Recipe, String> {
        Recipe::load(
            dir,
            &RecipeOverrides {
                mirror: mirror.map(String::from),
                suite_mirrors: suite_mirrors.iter().map(|s| s.to_string()).collect(),
                ..RecipeOverrides::default()
            },
        )
        .map_err(|e| e.to_string())
    }

    #[test]
    fn a_recipe_without_mirrors_says_how_to_give_them() {
        let d = tempfile::tempdir().unwrap();
        write(d.path(), DEBIAN);
        golden(d.path(), "trixie");
        let e = load_with(d.path(), None, &[]).unwrap_err();
        assert!(
            e.contains("no mirror for trixie, trixie-updates, trixie-security")
                && e.contains("--mirror URL (INGOT_MIRROR)")
                && e.contains("--suite-mirror trixie-security=URL"),
            "{e}"
        );
        assert!(!e.contains('\n'), "one line: {e}");
        // --mirror alone does not reach the separate security archive.
        let e = load_with(d.path(), Some("http://m.example/debian"), &[]).unwrap_err();
        assert!(
            e.contains("no mirror for trixie-security") && !e.contains("INGOT_MIRROR"),
            "{e}"
        );
        let r = load_with(
            d.path(),
            Some("http://m.example/debian/"),
            &[
                "trixie-security=http://s.example/debian-security",
                "bookworm-security=http://other.example",
            ],
        )
        .unwrap();
        let mirrors: Vec<(&str, &str)> = r
            .source
            .suites
            .iter()
            .map(|s| (s.suite.as_str(), s.mirror.as_str()))
            .collect();
        assert_eq!(
            mirrors,
            [
                ("trixie", "http://m.example/debian"),
                ("trixie-updates", "http://m.example/debian"),
                ("trixie-security", "http://s.example/debian-security"),
            ]
        );
        let e = load_with(d.path(), Some("http://m.example"), &["trixie-security"]).unwrap_err();
        assert!(
            e.contains("--suite-mirror") && e.contains("SUITE=URL"),
            "{e}"
        );
        let e = load_with(
            d.path(),
            Some("http://m.example"),
            &["trixie-security=ftp://x"],
        )
        .unwrap_err();
        assert!(e.contains("--suite-mirror") && e.contains("ftp://x"), "{e}");
    }

    #[test]
    fn extends_runs_the_policy_first_and_knows_the_release() {
        let d = tempfile::tempdir().unwrap();
        write(d.path(), DEBIAN);
        golden(d.path(), "trixie");
        let mirrors = ["trixie-security=http://s.example"];
        let r = load_with(d.path(), Some("http://m.example"), &mirrors).unwrap();
        assert_eq!(
            r.provision,
            vec![
                d.path().join("golden/policy.sh"),
                d.path().join("provision.sh")
            ]
        );
        assert_eq!(r.cleanup, vec![d.path().join("golden/tidy.sh")]);
        assert_eq!(r.release.as_ref().unwrap().version, "13");
        // The policy's scripts are part of the digest.
        let before = r.digest.clone();
        std::fs::write(d.path().join("golden/policy.sh"), b"false\n").unwrap();
        let r = load_with(d.path(), Some("http://m.example"), &mirrors).unwrap();
        assert_ne!(r.digest, before);

        golden(d.path(), "bookworm");
        let e = load_with(d.path(), Some("http://m.example"), &mirrors).unwrap_err();
        assert!(
            e.contains("`source.suites`")
                && e.contains("release \"trixie\" is not known to the golden policy")
                && e.contains("bookworm (debian 13)"),
            "{e}"
        );
        assert!(!e.contains('\n'), "one line: {e}");
        std::fs::remove_file(d.path().join("golden/policy.toml")).unwrap();
        let e = load_with(d.path(), Some("http://m.example"), &mirrors).unwrap_err();
        assert!(e.contains("`extends`") && e.contains("policy.toml"), "{e}");
    }
}
