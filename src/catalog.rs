//! Where recipes and keyrings are found by name.
//!
//! A recipe named on the command line (`ingot build ubuntu-24.04`) is looked up in three
//! roots, first match wins: the working directory (`./recipes/<name>`), the user's
//! (`$XDG_CONFIG_HOME/ingot/recipes/<name>`) and the system's (`/usr/share/ingot/recipes/<name>`,
//! where the Debian package puts them; `INGOT_DATA_DIR` replaces `/usr/share/ingot`). Each root
//! holds `recipes/` and `keyrings/` side by side, as the repository does, so a recipe's
//! `keyring = "../../keyrings/…"` resolves inside whichever root it was found in; a keyring
//! reference that does not resolve beside the recipe is looked up by its file name in the
//! roots' `keyrings/` folders, in the same order.
//!
//! This module only finds paths; the recipe format is [`crate::recipe`]'s.

use std::path::{Component, Path, PathBuf};

use serde::Serialize;

/// Which of the three roots a path was found in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RootKind {
    /// The working directory: `./recipes/`, `./keyrings/`.
    Local,
    /// `$XDG_CONFIG_HOME/ingot/` (default `~/.config/ingot/`).
    User,
    /// `/usr/share/ingot/` (or `INGOT_DATA_DIR`): what the package installs.
    System,
}

/// One root of the search path: a folder holding `recipes/` and `keyrings/`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SearchRoot {
    /// Which root this is.
    pub kind: RootKind,
    /// The folder (empty for the working directory, so that paths print as `recipes/…`).
    pub dir: PathBuf,
}

impl SearchRoot {
    /// `<root>/recipes`.
    pub fn recipes(&self) -> PathBuf {
        self.dir.join("recipes")
    }
    /// `<root>/keyrings`.
    pub fn keyrings(&self) -> PathBuf {
        self.dir.join("keyrings")
    }
}

/// The default system root, where the Debian package installs recipes and keyrings.
pub const SYSTEM_DATA_DIR: &str = "/usr/share/ingot";

/// The three roots in search order, from the environment (`XDG_CONFIG_HOME`, `HOME`,
/// `INGOT_DATA_DIR`). A user root is left out when neither variable gives an absolute path.
pub fn search_roots() -> Vec<SearchRoot> {
    let mut roots = vec![SearchRoot {
        kind: RootKind::Local,
        dir: PathBuf::new(),
    }];
    let absolute = |v: Option<std::ffi::OsString>| {
        v.map(PathBuf::from)
            .filter(|p| p.is_absolute() && !p.as_os_str().is_empty())
    };
    let config = absolute(std::env::var_os("XDG_CONFIG_HOME"))
        .or_else(|| absolute(std::env::var_os("HOME")).map(|h| h.join(".config")));
    if let Some(config) = config {
        roots.push(SearchRoot {
            kind: RootKind::User,
            dir: config.join("ingot"),
        });
    }
    roots.push(SearchRoot {
        kind: RootKind::System,
        dir: std::env::var_os("INGOT_DATA_DIR")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(SYSTEM_DATA_DIR)),
    });
    roots
}

/// A recipe named on the command line that no root holds.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{name}: no such recipe: not a recipe folder here, and not in {} (`ingot recipes` lists them)",
    searched.iter().map(|p| format!("{}/", p.display())).collect::<Vec<_>>().join(", ")
)]
pub struct RecipeNotFound {
    /// The name asked for.
    pub name: String,
    /// The `recipes/` folders searched, in order.
    pub searched: Vec<PathBuf>,
}

/// Whether `arg` is a bare recipe name (one plain path component, not a `.toml` file).
pub fn is_recipe_name(arg: &Path) -> bool {
    let mut parts = arg.components();
    matches!((parts.next(), parts.next()), (Some(Component::Normal(n)), None)
        if !n.to_string_lossy().ends_with(".toml") && !n.to_string_lossy().starts_with('.'))
}

fn is_recipe_dir(dir: &Path) -> bool {
    dir.join("recipe.toml").is_file()
}

/// The recipe folder or file that `arg` means: a path to a recipe folder or file as given;
/// otherwise a bare name looked up in [`search_roots`]. Anything else is returned unchanged
/// (loading it then reports what is wrong with that path).
pub fn locate_recipe(arg: &Path, roots: &[SearchRoot]) -> Result<PathBuf, RecipeNotFound> {
    if arg.is_file() || is_recipe_dir(arg) || !is_recipe_name(arg) {
        return Ok(arg.to_path_buf());
    }
    for root in roots {
        let dir = root.recipes().join(arg);
        if is_recipe_dir(&dir) {
            return Ok(dir);
        }
    }
    Err(RecipeNotFound {
        name: arg.display().to_string(),
        searched: roots.iter().map(SearchRoot::recipes).collect(),
    })
}

/// The keyring a recipe in `recipe_dir` means by `reference`: the path relative to the recipe
/// folder (or absolute) when that file exists; otherwise, for a relative reference, its file
/// name in the roots' `keyrings/` folders, first match. `Err` lists every place tried.
pub fn resolve_keyring(
    recipe_dir: &Path,
    reference: &str,
    roots: &[SearchRoot],
) -> Result<PathBuf, Vec<PathBuf>> {
    let direct = recipe_dir.join(reference);
    if direct.is_file() {
        return Ok(direct);
    }
    let mut tried = vec![direct];
    let name = Path::new(reference).file_name();
    if let (false, Some(name)) = (Path::new(reference).is_absolute(), name) {
        for root in roots {
            let candidate = root.keyrings().join(name);
            if candidate.is_file() {
                return Ok(candidate);
            }
            tried.push(candidate);
        }
    }
    Err(tried)
}

/// A recipe folder found in a root.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FoundRecipe {
    /// Its name (the folder's name).
    pub name: String,
    /// The recipe folder.
    pub dir: PathBuf,
    /// The root it was found in.
    pub root: RootKind,
    /// The folder of the same name in an earlier root that a lookup by name finds instead.
    pub shadowed_by: Option<PathBuf>,
}

/// Every recipe folder (a folder with a `recipe.toml`) in the roots' `recipes/` folders, root
/// by root in search order, by name within a root. A root without `recipes/` adds nothing.
pub fn list_recipes(roots: &[SearchRoot]) -> Vec<FoundRecipe> {
    let mut found: Vec<FoundRecipe> = Vec::new();
    for root in roots {
        let Ok(entries) = std::fs::read_dir(root.recipes()) else {
            continue;
        };
        let mut here: Vec<(String, PathBuf)> = entries
            .filter_map(Result::ok)
            .filter_map(|e| Some((e.file_name().into_string().ok()?, e.path())))
            .filter(|(name, dir)| !name.starts_with('.') && is_recipe_dir(dir))
            .collect();
        here.sort();
        for (name, dir) in here {
            let shadowed_by = found
                .iter()
                .find(|f| f.name == name && f.shadowed_by.is_none())
                .map(|f| f.dir.clone());
            found.push(FoundRecipe {
                name,
                dir,
                root: root.kind,
                shadowed_by,
            });
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    fn recipe(root: &Path, name: &str) -> PathBuf {
        let dir = root.join("recipes").join(name);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("recipe.toml"), "").unwrap();
        dir
    }

    #[test]
    fn names_and_paths() {
        assert!(is_recipe_name(Path::new("ubuntu-24.04")));
        assert!(!is_recipe_name(Path::new("recipes/ubuntu-24.04")));
        assert!(!is_recipe_name(Path::new("./ubuntu-24.04")));
        assert!(!is_recipe_name(Path::new("recipe.toml")));
        assert!(!is_recipe_name(Path::new("/abs")));
        assert!(!is_recipe_name(Path::new("..")));
    }

    #[test]
    fn first_root_wins_and_shadows_later_ones() {
        let t = tempfile::tempdir().unwrap();
        let (a, b) = (t.path().join("a"), t.path().join("b"));
        let roots = [
            SearchRoot {
                kind: RootKind::User,
                dir: a.clone(),
            },
            SearchRoot {
                kind: RootKind::System,
                dir: b.clone(),
            },
        ];
        let in_b = recipe(&b, "x");
        assert_eq!(locate_recipe(Path::new("x"), &roots).unwrap(), in_b);
        let in_a = recipe(&a, "x");
        recipe(&b, "y");
        assert_eq!(locate_recipe(Path::new("x"), &roots).unwrap(), in_a);
        let e = locate_recipe(Path::new("z"), &roots).unwrap_err();
        assert_eq!(e.searched, vec![a.join("recipes"), b.join("recipes")]);
        assert!(e.to_string().starts_with("z: no such recipe"), "{e}");

        let listed = list_recipes(&roots);
        let names: Vec<_> = listed
            .iter()
            .map(|f| (f.name.as_str(), f.root, f.shadowed_by.is_some()))
            .collect();
        assert_eq!(
            names,
            [
                ("x", RootKind::User, false),
                ("x", RootKind::System, true),
                ("y", RootKind::System, false)
            ]
        );
        assert_eq!(listed[1].shadowed_by.as_deref(), Some(in_a.as_path()));
    }

    #[test]
    fn keyring_beside_the_recipe_first_then_by_file_name() {
        let t = tempfile::tempdir().unwrap();
        let sys = t.path().join("sys");
        std::fs::create_dir_all(sys.join("keyrings")).unwrap();
        std::fs::write(sys.join("keyrings/k.gpg"), "k").unwrap();
        let roots = [SearchRoot {
            kind: RootKind::System,
            dir: sys.clone(),
        }];
        let own = t.path().join("own");
        std::fs::create_dir_all(&own).unwrap();
        assert_eq!(
            resolve_keyring(&own, "../../keyrings/k.gpg", &roots).unwrap(),
            sys.join("keyrings/k.gpg")
        );
        std::fs::write(own.join("k.gpg"), "mine").unwrap();
        assert_eq!(
            resolve_keyring(&own, "k.gpg", &roots).unwrap(),
            own.join("k.gpg")
        );
        let tried = resolve_keyring(&own, "missing.gpg", &roots).unwrap_err();
        assert_eq!(
            tried,
            vec![own.join("missing.gpg"), sys.join("keyrings/missing.gpg")]
        );
        // An absolute reference means exactly that file.
        let abs = t.path().join("nope/k.gpg");
        assert_eq!(
            resolve_keyring(&own, abs.to_str().unwrap(), &roots).unwrap_err(),
            vec![abs]
        );
    }
}
