//! Recipes: `recipes/<name>/recipe.toml` and the scripts beside it, parsed and validated.
//!
//! This module owns the recipe format and its error messages (file, line, key, what was
//! expected). It never touches the network or the filesystem beyond the recipe's own folder.

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
}

/// `[image]`: how artifacts are named.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImageSection {
    /// Artifact prefix: `<name>-v<N>.tar.gz`.
    pub name: String,
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
    mirror: String,
    suites: Vec<String>,
    #[serde(default = "default_components")]
    components: Vec<String>,
    architecture: String,
    keyring: String,
    #[serde(default, rename = "suite-mirrors")]
    suite_mirrors: BTreeMap<String, String>,
    #[serde(default, rename = "allow-expired")]
    allow_expired: bool,
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
}

impl Recipe {
    /// Load `RECIPE`, which is the recipe's folder or its `recipe.toml`.
    pub fn load(path: &Path, overrides: &RecipeOverrides) -> Result<Recipe, RecipeError> {
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
        let default_mirror = match &overrides.mirror {
            Some(m) => validate_mirror(m).map_err(|msg| RecipeError::Invalid {
                path: PathBuf::from("--mirror"),
                line: 0,
                key: "mirror".into(),
                message: msg,
            })?,
            None => check_mirror("source.mirror", &raw.source.mirror)?,
        };
        let mut suites = Vec::new();
        for s in &raw.source.suites {
            let mirror = match (&overrides.mirror, raw.source.suite_mirrors.get(s)) {
                (None, Some(m)) => check_mirror("suite-mirrors", m)?,
                _ => default_mirror.clone(),
            };
            suites.push(SuiteSource {
                suite: s.clone(),
                mirror,
            });
        }
        let keyring = dir.join(&raw.source.keyring);
        if !keyring.is_file() {
            return Err(invalid(
                "source.keyring",
                format!(
                    "expected an OpenPGP keyring file, {} does not exist",
                    keyring.display()
                ),
            ));
        }

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

        let mut digest_input = text.as_bytes().to_vec();
        let mut resolve_scripts =
            |key: &str, list: &[String]| -> Result<Vec<PathBuf>, RecipeError> {
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
        let provision = resolve_scripts("provision.scripts", &raw.provision.scripts)?;
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
        let cleanup = resolve_scripts("cleanup.scripts", &raw.cleanup.scripts)?;
        let digest = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&digest_input));

        Ok(Recipe {
            dir: dir.to_path_buf(),
            file: file.to_path_buf(),
            digest,
            image: ImageSection {
                name: name.to_string(),
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
            allow_expired: false,
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
}
