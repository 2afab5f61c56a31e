//! `ingot recipes` (what the search path holds) and `ingot new` (a recipe folder of one's own).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use ingot::catalog::{self, RootKind};
use ingot::recipe::{Recipe, RecipeOverrides};

fn root_word(kind: RootKind) -> &'static str {
    match kind {
        RootKind::Local => "local",
        RootKind::User => "user",
        RootKind::System => "system",
    }
}

/// `ingot recipes`: every recipe of the search path, where it is, and what it builds.
pub fn list(json: bool) -> anyhow::Result<ExitCode> {
    let roots = catalog::search_roots();
    let found = catalog::list_recipes(&roots);
    let loaded: Vec<Result<Recipe, String>> = found
        .iter()
        .map(|f| Recipe::load(&f.dir, &RecipeOverrides::default()).map_err(|e| e.to_string()))
        .collect();
    let mut out = std::io::stdout().lock();
    if json {
        let doc = serde_json::json!({
            "search_path": roots.iter().map(|r| serde_json::json!({
                "root": r.kind,
                "recipes": r.recipes(),
                "keyrings": r.keyrings(),
                "exists": r.recipes().is_dir(),
            })).collect::<Vec<_>>(),
            "recipes": found.iter().zip(&loaded).map(|(f, r)| serde_json::json!({
                "name": f.name,
                "path": f.dir,
                "root": f.root,
                "shadowed_by": f.shadowed_by,
                "image": r.as_ref().ok().map(|r| &r.image.name),
                "suites": r.as_ref().ok().map(|r| r.source.suites.iter().map(|s| &s.suite).collect::<Vec<_>>()),
                "keyring": r.as_ref().ok().map(|r| &r.source.keyring),
                "error": r.as_ref().err(),
            })).collect::<Vec<_>>(),
        });
        serde_json::to_writer_pretty(&mut out, &doc)?;
        writeln!(out)?;
        return Ok(ExitCode::SUCCESS);
    }
    if found.is_empty() {
        let searched: Vec<String> = roots
            .iter()
            .map(|r| format!("{}/", r.recipes().display()))
            .collect();
        eprintln!("ingot: no recipes in {}", searched.join(", "));
        return Ok(ExitCode::SUCCESS);
    }
    let width = found.iter().map(|f| f.name.len()).max().unwrap_or(4).max(4);
    writeln!(
        out,
        "{:<width$}  {:<6}  {:<32}  PATH",
        "NAME", "ROOT", "IMAGE"
    )?;
    for (f, r) in found.iter().zip(&loaded) {
        let what = match r {
            Ok(r) => r.image.name.clone(),
            Err(_) => "(invalid, see below)".into(),
        };
        let note = match &f.shadowed_by {
            Some(by) => format!("  (shadowed by {})", by.display()),
            None => String::new(),
        };
        writeln!(
            out,
            "{:<width$}  {:<6}  {:<32}  {}{note}",
            f.name,
            root_word(f.root),
            what,
            f.dir.display()
        )?;
    }
    for r in loaded.iter().filter_map(|r| r.as_ref().err()) {
        writeln!(out, "invalid: {r}")?;
    }
    Ok(ExitCode::SUCCESS)
}

/// `ingot new NAME --from RECIPE [--dir DIR]`: write the folder, then say what to edit.
pub fn new(name: &str, from: &Path, dir: Option<PathBuf>, json: bool) -> anyhow::Result<ExitCode> {
    let dest = dir.unwrap_or_else(|| ingot::scaffold::default_dir(name));
    let made = ingot::scaffold::new_recipe(name, from, &dest)?;
    let mut out = std::io::stdout().lock();
    if json {
        serde_json::to_writer_pretty(&mut out, &made)?;
        writeln!(out)?;
        return Ok(ExitCode::SUCCESS);
    }
    let d = made.dir.display();
    writeln!(
        out,
        "{d}: a new recipe from {} ({} files)",
        made.from.display(),
        made.files.len()
    )?;
    writeln!(out, "edit:")?;
    writeln!(
        out,
        "  {d}/recipe.toml  [packages] include: the packages; [image] name: the artifact prefix (now {:?})",
        made.name
    )?;
    for s in &made.scripts {
        writeln!(out, "  {d}/{}  runs inside the image", s.display())?;
    }
    writeln!(out, "  {d}/README.md  what the image is for")?;
    writeln!(
        out,
        "keyring: {}{}",
        made.keyring.display(),
        if made.keyring_rewritten {
            " (the reference was made absolute: the original did not resolve from here)"
        } else {
            ""
        }
    )?;
    // A folder in ./recipes/ is found by name; anywhere else by its path.
    let by_name = made.dir == ingot::scaffold::default_dir(&made.name);
    writeln!(
        out,
        "build: ingot build {}",
        if by_name {
            made.name.clone()
        } else {
            made.dir.display().to_string()
        }
    )?;
    Ok(ExitCode::SUCCESS)
}
