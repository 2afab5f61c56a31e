//! `ingot new NAME --from RECIPE`: a new recipe folder, owned by the caller, made from an
//! existing recipe (by name or path; see [`crate::catalog`]).
//!
//! Copies the source recipe's files (its `recipe.toml`, scripts and anything else in its
//! folder, symlinks followed) except its `ingot.lock` and `README.md`, renames the image to
//! `NAME`, writes a README stub, and makes sure the keyring reference still resolves from the
//! new folder to the same keyring (else it is rewritten to that keyring's absolute path), and
//! likewise that `extends` still names the same golden policy. The
//! folder is assembled under a temporary name beside the destination, checked by loading it as
//! a recipe, and renamed into place without replacing anything: an existing folder is refused
//! and nothing is left behind on any failure.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::recipe::{Recipe, RecipeError, RecipeOverrides};

/// What `ingot new` wrote.
#[derive(Debug, Clone, Serialize)]
pub struct NewRecipe {
    /// The recipe's name (also its image name).
    pub name: String,
    /// The folder written.
    pub dir: PathBuf,
    /// The recipe folder it was made from.
    pub from: PathBuf,
    /// The files written, relative to `dir`, sorted.
    pub files: Vec<PathBuf>,
    /// The scripts the new recipe runs (provision, then cleanup), relative to `dir`.
    pub scripts: Vec<PathBuf>,
    /// The keyring the new recipe's reference resolves to.
    pub keyring: PathBuf,
    /// Whether the keyring reference had to be rewritten to an absolute path.
    pub keyring_rewritten: bool,
}

/// Why `ingot new` wrote nothing.
#[derive(Debug, thiserror::Error)]
pub enum ScaffoldError {
    /// The name cannot name a folder and an image.
    #[error(
        "{name:?}: a recipe name is letters, digits, `.`, `_`, `+` and `-`, starting with a letter or digit"
    )]
    BadName {
        /// The name given.
        name: String,
    },
    /// The destination exists.
    #[error("{}: already exists; choose another name or --dir (nothing was written)", dir.display())]
    Exists {
        /// The destination folder.
        dir: PathBuf,
    },
    /// The source recipe cannot be loaded.
    #[error("--from: {0}")]
    Source(#[source] RecipeError),
    /// The copy does not load as a recipe (e.g. a keyring that no longer resolves).
    #[error("the new recipe would not load, nothing was written: {0}")]
    Check(#[source] RecipeError),
    /// Reading the source or writing the copy failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file at fault.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
}

impl ScaffoldError {
    /// Bad input (exit 2) rather than a failure of the host (exit 1).
    pub fn is_bad_input(&self) -> bool {
        !matches!(self, ScaffoldError::Io { .. })
    }
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> ScaffoldError + '_ {
    move |source| ScaffoldError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// A recipe name: `[A-Za-z0-9][A-Za-z0-9._+-]*`, at most 100 characters.
pub fn valid_recipe_name(name: &str) -> bool {
    let b = name.as_bytes();
    !b.is_empty()
        && b.len() <= 100
        && b[0].is_ascii_alphanumeric()
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || b"._+-".contains(c))
}

/// The folder `ingot new NAME` writes by default: `recipes/NAME` in the working directory,
/// where `ingot build NAME` looks first.
pub fn default_dir(name: &str) -> PathBuf {
    Path::new("recipes").join(name)
}

/// Write the recipe `name` into `dest` from the recipe `from` (a name or a path).
pub fn new_recipe(name: &str, from: &Path, dest: &Path) -> Result<NewRecipe, ScaffoldError> {
    if !valid_recipe_name(name) {
        return Err(ScaffoldError::BadName { name: name.into() });
    }
    if dest.symlink_metadata().is_ok() {
        return Err(ScaffoldError::Exists {
            dir: dest.to_path_buf(),
        });
    }
    let source = Recipe::load(from, &RecipeOverrides::default()).map_err(ScaffoldError::Source)?;

    let parent = match dest.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    // Created parents are removed again on failure: nothing is left behind.
    let mut created = Vec::new();
    let mut p = parent.as_path();
    while p.symlink_metadata().is_err() {
        created.push(p.to_path_buf());
        match p.parent() {
            Some(up) if !up.as_os_str().is_empty() => p = up,
            _ => break,
        }
    }
    std::fs::create_dir_all(&parent).map_err(io(&parent))?;
    let result = assemble(name, &source, &parent, dest);
    if result.is_err() {
        for dir in &created {
            let _ = std::fs::remove_dir(dir);
        }
    }
    result
}

fn assemble(
    name: &str,
    source: &Recipe,
    parent: &Path,
    dest: &Path,
) -> Result<NewRecipe, ScaffoldError> {
    let tmp = tempfile::Builder::new()
        .prefix(".ingot-new-")
        .tempdir_in(parent)
        .map_err(io(parent))?;
    let work = tmp.path();

    let mut files = Vec::new();
    copy_tree(&source.dir, work, Path::new(""), &mut files)?;

    let recipe_file = work.join("recipe.toml");
    let text = std::fs::read_to_string(&recipe_file).map_err(io(&recipe_file))?;
    let mut text = set_string_key(&text, "image", "name", name);
    let reference = string_key(&text, "source", "keyring").unwrap_or_default();
    // The temporary folder sits beside the destination, so a relative reference resolves from
    // it exactly as it will from the destination.
    let same_keyring =
        |path: &Path| match (std::fs::read(path), std::fs::read(&source.source.keyring)) {
            (Ok(a), Ok(b)) => a == b,
            _ => false,
        };
    let resolves =
        crate::catalog::resolve_keyring(work, &reference, &crate::catalog::search_roots())
            .is_ok_and(|p| same_keyring(&p));
    let keyring_rewritten = !resolves;
    if keyring_rewritten {
        let absolute = source
            .source
            .keyring
            .canonicalize()
            .map_err(io(&source.source.keyring))?;
        text = set_string_key(&text, "source", "keyring", &absolute.to_string_lossy());
    }
    // A recipe of the golden family (`extends = "../golden"`) keeps its policy: the reference
    // stays when it reaches the same folder from the new place, else it becomes absolute.
    if let Some(extends) = string_key(&text, "", "extends") {
        let policy = source.dir.join(&extends);
        let policy = policy.canonicalize().map_err(io(&policy))?;
        let reaches = work
            .join(&extends)
            .canonicalize()
            .is_ok_and(|p| p == policy);
        if !reaches {
            text = set_string_key(&text, "", "extends", &policy.to_string_lossy());
        }
    }
    std::fs::write(&recipe_file, &text).map_err(io(&recipe_file))?;

    let readme = work.join("README.md");
    std::fs::write(&readme, readme_stub(name, &source.dir)).map_err(io(&readme))?;
    if !files.iter().any(|f| f == Path::new("README.md")) {
        files.push(PathBuf::from("README.md"));
    }
    files.sort();

    let check = Recipe::load(work, &RecipeOverrides::default()).map_err(ScaffoldError::Check)?;
    let relative = |p: &PathBuf| p.strip_prefix(work).unwrap_or(p).to_path_buf();
    let scripts = check
        .provision
        .iter()
        .chain(&check.cleanup)
        .map(relative)
        .collect();
    let keyring = if check.source.keyring.starts_with(work) {
        dest.join(relative(&check.source.keyring))
    } else {
        check.source.keyring.clone()
    };

    std::fs::set_permissions(work, std::fs::Permissions::from_mode(0o755)).map_err(io(work))?;
    match nix::fcntl::renameat2(
        nix::fcntl::AT_FDCWD,
        work,
        nix::fcntl::AT_FDCWD,
        dest,
        nix::fcntl::RenameFlags::RENAME_NOREPLACE,
    ) {
        Ok(()) => {
            // The folder now lives under its final name; the guard must not remove it.
            let _ = tmp.keep();
        }
        Err(nix::errno::Errno::EEXIST) => {
            return Err(ScaffoldError::Exists {
                dir: dest.to_path_buf(),
            });
        }
        Err(e) => return Err(io(dest)(std::io::Error::from(e))),
    }
    Ok(NewRecipe {
        name: name.to_string(),
        dir: dest.to_path_buf(),
        from: source.dir.clone(),
        files,
        scripts,
        keyring,
        keyring_rewritten,
    })
}

/// Files the copy leaves out: the source's lock (it pins the source recipe) and README (the
/// new recipe gets its own stub).
const NOT_COPIED: [&str; 2] = ["ingot.lock", "README.md"];

fn copy_tree(
    from: &Path,
    to: &Path,
    rel: &Path,
    files: &mut Vec<PathBuf>,
) -> Result<(), ScaffoldError> {
    let dir = from.join(rel);
    let mut entries: Vec<_> = std::fs::read_dir(&dir)
        .map_err(io(&dir))?
        .filter_map(Result::ok)
        .collect();
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let rel_path = rel.join(entry.file_name());
        if rel.as_os_str().is_empty() && NOT_COPIED.iter().any(|n| entry.file_name() == *n) {
            continue;
        }
        let src = from.join(&rel_path);
        // Follows symlinks: the new folder stands on its own.
        let meta = std::fs::metadata(&src).map_err(io(&src))?;
        let dst = to.join(&rel_path);
        if meta.is_dir() {
            if rel.components().count() >= 8 {
                continue;
            }
            std::fs::create_dir(&dst).map_err(io(&dst))?;
            copy_tree(from, to, &rel_path, files)?;
        } else if meta.is_file() {
            std::fs::copy(&src, &dst).map_err(io(&src))?;
            // The caller's own file, writable by the caller, exec bits as in the source.
            let mode = (meta.permissions().mode() & 0o755) | 0o600;
            std::fs::set_permissions(&dst, std::fs::Permissions::from_mode(mode))
                .map_err(io(&dst))?;
            files.push(rel_path);
        }
    }
    Ok(())
}

fn readme_stub(name: &str, from: &Path) -> String {
    format!(
        "# {name}\n\n\
         Made with `ingot new {name} --from {from}`. Say here what this image is for and why\n\
         each package and script is in it.\n\n\
         - `recipe.toml`: `[packages] include` (what is installed), `[image] name` (the artifact\n  \
           prefix: `{name}-v<N>.tar.gz`), `[source]` (archive, suites, keyring).\n\
         - the scripts named in `[provision]` and `[cleanup]`: what runs inside the image after\n  \
           the packages are configured.\n\n\
         Build it with `ingot build {name}` (from the folder holding `recipes/`), check it with\n\
         `ingot verify`. The recipe it was made from is documented in {from}/README.md.\n",
        from = from.display()
    )
}

/// The string value of `key` in the TOML table `[section]`, read line by line (the recipe
/// format keeps these keys as `key = "value"` on one line).
fn string_key(text: &str, section: &str, key: &str) -> Option<String> {
    let line = key_line(text, section, key)?;
    let l = text.lines().nth(line)?;
    let (_, value) = l.split_once('=')?;
    let value = value.trim_start().strip_prefix('"')?;
    Some(value.split('"').next()?.to_string())
}

fn key_line(text: &str, section: &str, key: &str) -> Option<usize> {
    let mut current = String::new();
    for (i, l) in text.lines().enumerate() {
        let t = l.trim();
        if let Some(h) = t.strip_prefix('[').and_then(|h| h.split(']').next()) {
            current = h.trim().to_string();
            continue;
        }
        if current == section
            && t.strip_prefix(key)
                .is_some_and(|rest| rest.trim_start().starts_with('='))
        {
            return Some(i);
        }
    }
    None
}

/// `text` with `key` of `[section]` set to the string `value`, keeping a trailing comment; the
/// key is added under the section header when absent.
fn set_string_key(text: &str, section: &str, key: &str, value: &str) -> String {
    let quoted = toml::Value::String(value.to_string()).to_string();
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    match key_line(text, section, key) {
        Some(i) => {
            let old = &lines[i];
            let indent: String = old.chars().take_while(|c| c.is_whitespace()).collect();
            let comment = old
                .split_once('=')
                .and_then(|(_, v)| {
                    let v = v.trim_start();
                    let rest = v.strip_prefix('"')?.split_once('"')?.1;
                    rest.find('#').map(|at| rest[at..].to_string())
                })
                .map(|c| format!("   {c}"))
                .unwrap_or_default();
            lines[i] = format!("{indent}{key} = {quoted}{comment}");
        }
        None => {
            let header = lines
                .iter()
                .position(|l| l.trim() == format!("[{section}]"));
            match header {
                Some(h) => lines.insert(h + 1, format!("{key} = {quoted}")),
                None => lines.extend([
                    String::new(),
                    format!("[{section}]"),
                    format!("{key} = {quoted}"),
                ]),
            }
        }
    }
    let mut out = lines.join("\n");
    out.push('\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str =
        "[image]\nname = \"old\"   # the prefix\n\n[source]\nkeyring = \"../../keyrings/k.gpg\"\n";

    #[test]
    fn keys_are_read_and_set_in_their_section() {
        assert_eq!(
            string_key(TEXT, "source", "keyring").as_deref(),
            Some("../../keyrings/k.gpg")
        );
        assert_eq!(string_key(TEXT, "image", "keyring"), None);
        let t = set_string_key(TEXT, "image", "name", "new");
        assert!(t.contains("name = \"new\"   # the prefix\n"), "{t}");
        let t = set_string_key(&t, "source", "keyring", "/usr/share/ingot/keyrings/k.gpg");
        assert_eq!(
            string_key(&t, "source", "keyring").as_deref(),
            Some("/usr/share/ingot/keyrings/k.gpg")
        );
        assert!(toml::from_str::<toml::Value>(&t).is_ok(), "{t}");
    }

    #[test]
    fn names() {
        assert!(valid_recipe_name("my-image_2.0+x"));
        for bad in ["", ".hidden", "a/b", "-x", "a b", "..", "ä"] {
            assert!(!valid_recipe_name(bad), "{bad}");
        }
    }
}
