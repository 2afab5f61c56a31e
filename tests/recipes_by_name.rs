//! Recipes by name and `ingot new`: a recipe named on the command line is found in
//! `./recipes/`, then `$XDG_CONFIG_HOME/ingot/recipes/`, then the system's
//! (`INGOT_DATA_DIR`, `/usr/share/ingot` when installed), and its keyring resolves in the root
//! it was found in; `ingot recipes` lists them; `ingot new` writes a folder of the caller's own
//! that builds by name, and refuses, writing nothing, what it cannot do.
//!
//! The build test runs as root or as an ordinary user with a subordinate id range (the
//! ordinary-user pass of `.ci/hermetic-as-user` runs it so).

#[path = "support/mini_recipe.rs"]
mod mini_recipe;
#[path = "support/minidistro.rs"]
mod minidistro;
mod support;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use mini_recipe::{INGOT, MiniRecipe, mini_recipe};
use support::FixtureOptions;

/// Three roots laid out as the package and a user would have them: `sys/` (the system data
/// dir, the mini recipe as `recipes/mini` with its keyring in `keyrings/`), `config/` (an
/// empty `$XDG_CONFIG_HOME`) and `work/` (an empty working directory).
struct Roots {
    mini: MiniRecipe,
    tmp: tempfile::TempDir,
}

impl Roots {
    fn new() -> Roots {
        let mini = mini_recipe(&[], &[], FixtureOptions::default());
        let tmp = tempfile::tempdir().unwrap();
        let sys = tmp.path().join("sys");
        let recipe = sys.join("recipes/mini");
        fs::create_dir_all(&recipe).unwrap();
        fs::create_dir_all(sys.join("keyrings")).unwrap();
        fs::copy(
            mini.recipe.join("trusted.gpg"),
            sys.join("keyrings/mini-archive-keyring.gpg"),
        )
        .unwrap();
        let text = fs::read_to_string(mini.recipe.join("recipe.toml"))
            .unwrap()
            .replace(
                "keyring = \"trusted.gpg\"",
                "keyring = \"../../keyrings/mini-archive-keyring.gpg\"",
            );
        fs::write(recipe.join("recipe.toml"), text).unwrap();
        fs::copy(
            mini.recipe.join("provision.sh"),
            recipe.join("provision.sh"),
        )
        .unwrap();
        fs::set_permissions(
            recipe.join("provision.sh"),
            fs::Permissions::from_mode(0o755),
        )
        .unwrap();
        fs::write(recipe.join("README.md"), "# mini\n").unwrap();
        fs::write(recipe.join("ingot.lock"), "# the source's own lock\n").unwrap();
        fs::create_dir_all(tmp.path().join("config")).unwrap();
        fs::create_dir_all(tmp.path().join("work")).unwrap();
        Roots { mini, tmp }
    }
    fn path(&self, p: &str) -> PathBuf {
        self.tmp.path().join(p)
    }
    fn work(&self) -> PathBuf {
        self.path("work")
    }
    /// `ingot ARGS` run in `work/` with the three roots set.
    fn ingot(&self, args: &[&str]) -> Output {
        Command::new(INGOT)
            .args(args)
            .current_dir(self.work())
            .env("XDG_CONFIG_HOME", self.path("config"))
            .env("INGOT_DATA_DIR", self.path("sys"))
            .env("INGOT_CACHE_DIR", self.path("cache"))
            .env("INGOT_QUIET", "true")
            .env_remove("SOURCE_DATE_EPOCH")
            .output()
            .unwrap()
    }
    fn mirror(&self) -> String {
        self.mini.archive.file_url()
    }
}

fn ok(o: &Output) -> String {
    assert!(
        o.status.success(),
        "ingot failed ({:?}):\n{}",
        o.status,
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn bad_input(o: &Output) -> String {
    assert_eq!(
        o.status.code(),
        Some(2),
        "expected exit 2 (bad input), got {:?}: {}",
        o.status,
        String::from_utf8_lossy(&o.stderr)
    );
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    err
}

/// Every path under `dir` with its bytes (for "nothing changed").
fn snapshot(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = fs::read_dir(&d) else {
            continue;
        };
        for e in entries {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p.clone());
                out.push((p, Vec::new()));
            } else {
                out.push((p.clone(), fs::read(&p).unwrap()));
            }
        }
    }
    out.sort();
    out
}

#[test]
fn a_recipe_name_is_found_in_the_roots_in_order_with_its_keyring() {
    let r = Roots::new();
    let mirror = r.mirror();

    // Only the system root has it: found there, its `../../keyrings/` keyring with it.
    let out = ok(&r.ingot(&["resolve", "mini", "--mirror", &mirror, "--json"]));
    let doc: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        doc["recipe"].as_str().unwrap(),
        r.path("sys/recipes/mini/recipe.toml").to_str().unwrap()
    );

    // The user's copy of the same name comes first; its keyring reference does not resolve
    // beside it, so it is found by file name (the user's keyrings/ has none: the system's).
    let user = r.path("config/ingot/recipes/mini");
    fs::create_dir_all(&user).unwrap();
    for f in ["recipe.toml", "provision.sh"] {
        fs::copy(r.path("sys/recipes/mini").join(f), user.join(f)).unwrap();
    }
    let out = ok(&r.ingot(&["resolve", "mini", "--mirror", &mirror, "--json"]));
    let doc: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        doc["recipe"].as_str().unwrap(),
        user.join("recipe.toml").to_str().unwrap()
    );

    let listed: serde_json::Value =
        serde_json::from_str(&ok(&r.ingot(&["recipes", "--json"]))).unwrap();
    let recipes = listed["recipes"].as_array().unwrap();
    let rows: Vec<(&str, &str, bool)> = recipes
        .iter()
        .map(|x| {
            (
                x["name"].as_str().unwrap(),
                x["root"].as_str().unwrap(),
                x["shadowed_by"].is_null(),
            )
        })
        .collect();
    assert_eq!(rows, [("mini", "user", true), ("mini", "system", false)]);
    assert_eq!(
        recipes[0]["keyring"].as_str().unwrap(),
        r.path("sys/keyrings/mini-archive-keyring.gpg")
            .to_str()
            .unwrap()
    );
    assert_eq!(recipes[0]["image"], "mini-rootfs");
    let roots: Vec<&str> = listed["search_path"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["root"].as_str().unwrap())
        .collect();
    assert_eq!(roots, ["local", "user", "system"]);
    let text = ok(&r.ingot(&["recipes"]));
    assert!(
        text.contains("shadowed by") && text.contains(user.to_str().unwrap()),
        "{text}"
    );

    // ./recipes/ beats both; a path still means that path.
    let local = r.work().join("recipes/mini");
    fs::create_dir_all(&local).unwrap();
    for f in ["recipe.toml", "provision.sh"] {
        fs::copy(r.path("sys/recipes/mini").join(f), local.join(f)).unwrap();
    }
    let out = ok(&r.ingot(&["resolve", "mini", "--mirror", &mirror, "--json"]));
    let doc: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(doc["recipe"], "recipes/mini/recipe.toml");
    let sys_recipe = r.path("sys/recipes/mini");
    let out = ok(&r.ingot(&[
        "resolve",
        sys_recipe.to_str().unwrap(),
        "--mirror",
        &mirror,
        "--json",
    ]));
    let doc: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        doc["recipe"].as_str().unwrap(),
        sys_recipe.join("recipe.toml").to_str().unwrap()
    );

    // A name found nowhere, and a keyring found nowhere: exit 2, one line naming the places.
    let err = bad_input(&r.ingot(&["resolve", "nosuch", "--mirror", &mirror]));
    assert!(
        err.contains("nosuch: no such recipe")
            && err.contains("recipes/")
            && err.contains(r.path("config/ingot/recipes").to_str().unwrap())
            && err.contains(r.path("sys/recipes").to_str().unwrap()),
        "{err}"
    );
    fs::remove_file(r.path("sys/keyrings/mini-archive-keyring.gpg")).unwrap();
    let err = bad_input(&r.ingot(&["resolve", "mini", "--mirror", &mirror]));
    assert!(
        err.contains("source.keyring")
            && err.contains(
                r.path("sys/keyrings/mini-archive-keyring.gpg")
                    .to_str()
                    .unwrap()
            ),
        "{err}"
    );
}

#[test]
fn ingot_new_writes_a_recipe_that_builds_by_name() {
    let r = Roots::new();
    support::privilege::require_build_privileges(INGOT);
    let out = ok(&r.ingot(&["new", "my-mini", "--from", "mini"]));
    assert!(
        out.contains("recipes/my-mini/recipe.toml")
            && out.contains("recipes/my-mini/provision.sh")
            && out.contains("build: ingot build my-mini"),
        "{out}"
    );
    let dir = r.work().join("recipes/my-mini");
    let mut names: Vec<String> = fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    // The source's lock is not copied; the README is a stub of its own.
    assert_eq!(names, ["README.md", "provision.sh", "recipe.toml"]);
    assert!(
        fs::read_to_string(dir.join("README.md"))
            .unwrap()
            .starts_with("# my-mini\n")
    );
    let me = nix::unistd::geteuid().as_raw();
    for n in &names {
        let meta = fs::metadata(dir.join(n)).unwrap();
        assert_eq!(std::os::unix::fs::MetadataExt::uid(&meta), me, "{n}");
        assert!(meta.permissions().mode() & 0o200 != 0, "{n} is writable");
    }
    assert_eq!(
        fs::metadata(dir.join("provision.sh"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o755
    );
    let text = fs::read_to_string(dir.join("recipe.toml")).unwrap();
    assert!(text.contains("name = \"my-mini\""), "{text}");
    // Resolves from the new folder (by file name, in the system root): left as it was.
    assert!(
        text.contains("keyring = \"../../keyrings/mini-archive-keyring.gpg\""),
        "{text}"
    );

    let mirror = r.mirror();
    let out = ok(&r.ingot(&["build", "my-mini", "--mirror", &mirror, "--out", "out"]));
    let image = r.work().join(out.trim());
    assert!(
        out.trim().starts_with("out/my-mini-v1.tar.gz") && image.is_file(),
        "{out}"
    );
}

#[test]
fn ingot_new_refuses_and_writes_nothing() {
    let r = Roots::new();
    ok(&r.ingot(&["new", "taken", "--from", "mini"]));
    let before = snapshot(&r.work());

    let err = bad_input(&r.ingot(&["new", "taken", "--from", "mini"]));
    assert!(err.contains("recipes/taken: already exists"), "{err}");
    let err = bad_input(&r.ingot(&["new", "a/b", "--from", "mini"]));
    assert!(err.contains("a recipe name is"), "{err}");
    let err = bad_input(&r.ingot(&["new", "other", "--from", "nosuch"]));
    assert!(err.contains("nosuch: no such recipe"), "{err}");
    // An existing empty folder is refused too (a rename could replace it).
    fs::create_dir_all(r.work().join("recipes/empty")).unwrap();
    let before_empty = snapshot(&r.work());
    let err = bad_input(&r.ingot(&["new", "empty", "--from", "mini"]));
    assert!(err.contains("already exists"), "{err}");
    assert_eq!(snapshot(&r.work()), before_empty);
    fs::remove_dir(r.work().join("recipes/empty")).unwrap();
    assert_eq!(
        snapshot(&r.work()),
        before,
        "nothing written, nothing left behind"
    );

    // A fresh working directory: a refused `new` does not even create `recipes/`.
    let fresh = r.path("fresh");
    fs::create_dir_all(&fresh).unwrap();
    let o = Command::new(INGOT)
        .args(["new", "x", "--from", "nosuch"])
        .current_dir(&fresh)
        .env("XDG_CONFIG_HOME", r.path("config"))
        .env("INGOT_DATA_DIR", r.path("sys"))
        .output()
        .unwrap();
    bad_input(&o);
    assert_eq!(fs::read_dir(&fresh).unwrap().count(), 0);
}

#[test]
fn ingot_new_makes_a_keyring_reference_absolute_when_it_would_not_resolve() {
    let r = Roots::new();
    // A recipe outside every root, with its keyring in its own tree's keyrings/.
    let elsewhere = r.path("elsewhere");
    fs::create_dir_all(elsewhere.join("recipes")).unwrap();
    fs::create_dir_all(elsewhere.join("keyrings")).unwrap();
    fs::rename(
        r.path("sys/keyrings/mini-archive-keyring.gpg"),
        elsewhere.join("keyrings/mini-archive-keyring.gpg"),
    )
    .unwrap();
    fs::rename(r.path("sys/recipes/mini"), elsewhere.join("recipes/mini")).unwrap();
    let from = elsewhere.join("recipes/mini");
    let out = ok(&r.ingot(&["new", "moved", "--from", from.to_str().unwrap()]));
    assert!(out.contains("the reference was made absolute"), "{out}");
    let text = fs::read_to_string(r.work().join("recipes/moved/recipe.toml")).unwrap();
    let absolute = elsewhere
        .join("keyrings/mini-archive-keyring.gpg")
        .canonicalize()
        .unwrap();
    assert!(
        text.contains(&format!("keyring = \"{}\"", absolute.display())),
        "{text}"
    );
    let mirror = r.mirror();
    ok(&r.ingot(&["resolve", "moved", "--mirror", &mirror]));
}
