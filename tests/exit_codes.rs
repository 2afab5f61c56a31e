//! The README's exit-code table, one test per row: 0 ok, 1 the build or check failed, 2 bad
//! usage or bad input (and `verify --json` prints JSON whatever the file is).
//!
//! None of these needs privileges: every build here stops before the stage.

mod support;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use support::{DebSpec, FixtureArchive, FixtureKey, FixtureOptions, write_recipe};

const INGOT: &str = env!("CARGO_BIN_EXE_ingot");

struct Fixture {
    _dir: tempfile::TempDir,
    dir: PathBuf,
    recipe: PathBuf,
    mirror: String,
}

/// A signed archive with one essential package and a recipe that trusts its key.
fn fixture(recipe_extra: &str) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_path_buf();
    let key = FixtureKey::generate("exit code test key");
    let deb = DebSpec::new("base", "1.0")
        .essential()
        .file("/usr/bin/base", b"#!/bin/sh\n", 0o755)
        .build(&root.join("debs"));
    let archive = FixtureArchive::build(
        &root.join("mirror"),
        "stable",
        &[deb],
        &key,
        &FixtureOptions::default(),
    );
    let recipe = write_recipe(
        &root.join("recipe"),
        &key,
        &format!(
            r#"[image]
name = "exit-test"
[source]
mirror = "http://unused.invalid/debian"
suites = ["stable"]
architecture = "amd64"
keyring = "trusted.gpg"
[packages]
variant = "essential"
{recipe_extra}"#
        ),
    );
    Fixture {
        mirror: archive.file_url(),
        recipe,
        dir: root,
        _dir: dir,
    }
}

fn ingot(args: &[&str]) -> Output {
    Command::new(INGOT)
        .args(args)
        .env_remove("INGOT_MIRROR")
        .env_remove("INGOT_SUITE_MIRRORS")
        .output()
        .unwrap()
}

/// `ingot build` of the fixture's recipe from its mirror into `<dir>/cache` and `<dir>/out`.
fn build(f: &Fixture, extra: &[&str]) -> Output {
    let (cache, out) = (f.dir.join("cache"), f.dir.join("out"));
    let mut args = vec![
        "build",
        s(&f.recipe),
        "--mirror",
        &f.mirror,
        "--cache-dir",
        s(&cache),
        "--out",
        s(&out),
    ];
    args.extend_from_slice(extra);
    ingot(&args)
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Exit code, with stderr in the message when it is not the one expected.
fn assert_exit(o: &Output, code: i32) {
    assert_eq!(
        o.status.code(),
        Some(code),
        "stderr: {}\nstdout: {}",
        String::from_utf8_lossy(&o.stderr),
        String::from_utf8_lossy(&o.stdout)
    );
}

/// The error is one line naming what was wrong.
fn assert_one_error_line(o: &Output, names: &str) {
    let err = String::from_utf8_lossy(&o.stderr);
    let errors: Vec<&str> = err.lines().filter(|l| l.contains("error")).collect();
    assert_eq!(errors.len(), 1, "{err}");
    assert!(errors[0].contains(names), "{err}");
}

#[test]
fn exit_0_resolve_succeeds_and_version_names_the_commit() {
    let f = fixture("");
    let o = ingot(&["resolve", s(&f.recipe), "--mirror", &f.mirror]);
    assert_exit(&o, 0);
    assert!(String::from_utf8_lossy(&o.stdout).starts_with("base "));
    let v = ingot(&["--version"]);
    assert_exit(&v, 0);
    let text = String::from_utf8_lossy(&v.stdout);
    assert!(
        text.starts_with(&format!("ingot {} (commit ", env!("CARGO_PKG_VERSION"))),
        "{text}"
    );
}

#[test]
fn exit_1_a_build_that_fails_on_a_bad_archive_signature() {
    let f = fixture("");
    // Trust another key: the archive's signature no longer verifies.
    FixtureKey::generate("some other key").write_keyring(&f.recipe.join("trusted.gpg"));
    let o = build(&f, &[]);
    assert_exit(&o, 1);
    assert_one_error_line(&o, "InRelease");
    assert!(o.stdout.is_empty());
}

#[test]
fn exit_1_verify_finds_violations() {
    let dir = tempfile::tempdir().unwrap();
    let tree = dir.path().join("tree");
    fs::create_dir_all(tree.join("etc")).unwrap();
    fs::write(tree.join("etc/hostname"), "build-host\n").unwrap();
    let tarball = dir.path().join("image.tar");
    let tar = Command::new("tar")
        .arg("-cf")
        .arg(&tarball)
        .arg("-C")
        .arg(&tree)
        .arg(".")
        .status()
        .unwrap();
    assert!(tar.success());
    let o = ingot(&["verify", s(&tarball)]);
    assert_exit(&o, 1);
    assert!(String::from_utf8_lossy(&o.stdout).contains("FAILED"));
    let j = ingot(&["verify", "--json", s(&tarball)]);
    assert_exit(&j, 1);
    let doc: serde_json::Value = serde_json::from_slice(&j.stdout).unwrap();
    assert_eq!(doc["ok"], false);
    assert!(!doc["violations"].as_array().unwrap().is_empty());
}

#[test]
fn exit_1_verify_on_a_corrupt_file_still_prints_json() {
    let dir = tempfile::tempdir().unwrap();
    let corrupt = dir.path().join("image.tar.gz");
    // A gzip magic followed by garbage.
    fs::write(
        &corrupt,
        b"\x1f\x8b\x08\x00garbage that is not deflate at all",
    )
    .unwrap();
    let o = ingot(&["verify", "--json", s(&corrupt)]);
    assert_exit(&o, 1);
    let doc: serde_json::Value = serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("no JSON ({e}): {}", String::from_utf8_lossy(&o.stdout)));
    assert_eq!(doc["ok"], false);
    assert_eq!(doc["violations"][0]["rule"], "archive-format", "{doc}");
    assert_one_error_line(&o, "image.tar.gz");
}

#[test]
fn exit_2_bad_usage() {
    assert_exit(&ingot(&[]), 2);
    assert_exit(&ingot(&["build"]), 2);
    assert_exit(&ingot(&["verify", "--no-such-flag", "x"]), 2);
}

#[test]
fn exit_2_a_missing_recipe() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no-such-recipe");
    let o = ingot(&["build", s(&missing), "--out", s(&dir.path().join("out"))]);
    assert_exit(&o, 2);
    assert_one_error_line(&o, "no-such-recipe");
    assert!(
        !dir.path().join("out").exists(),
        "nothing written for bad input"
    );
}

#[test]
fn exit_2_an_unknown_recipe_key() {
    let f = fixture("colour = \"blue\"\n");
    let o = ingot(&["resolve", s(&f.recipe), "--mirror", &f.mirror]);
    assert_exit(&o, 2);
    assert_one_error_line(&o, "colour");
}

#[test]
fn exit_2_a_staging_tmpfs_for_a_tree_that_must_outlive_the_build() {
    let f = fixture("");
    let cache = f.dir.join("cache");
    let kept = f.dir.join("kept");
    let o = build(&f, &["--staging", "tmpfs", "--keep-staging", s(&kept)]);
    assert_exit(&o, 2);
    assert_one_error_line(&o, "--keep-staging");
    // Refused before anything was fetched or staged.
    assert!(!cache.join("sha256").exists() && !cache.join("staging").exists());
    assert!(!f.dir.join("out").exists() && !kept.exists());
}

fn repo_path(rel: &str) -> String {
    format!("{}/{rel}", env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn exit_2_a_release_the_golden_policy_does_not_know() {
    let dir = tempfile::tempdir().unwrap();
    let recipe = dir.path().join("debian-11");
    fs::create_dir_all(&recipe).unwrap();
    fs::write(
        recipe.join("recipe.toml"),
        format!(
            "extends = \"{}\"\n[image]\nname = \"debian-11-lxc-rootfs\"\n[source]\n\
             mirror = \"http://unused.invalid/debian\"\nsuites = [\"bullseye\"]\n\
             architecture = \"amd64\"\nkeyring = \"{}\"\n[packages]\nvariant = \"minbase\"\n",
            repo_path("recipes/golden"),
            repo_path("keyrings/debian-archive-keyring.gpg")
        ),
    )
    .unwrap();
    let (cache, out) = (dir.path().join("cache"), dir.path().join("out"));
    let o = ingot(&[
        "build",
        s(&recipe),
        "--cache-dir",
        s(&cache),
        "--out",
        s(&out),
    ]);
    assert_exit(&o, 2);
    assert_one_error_line(&o, "release \"bullseye\" is not known to the golden policy");
    assert!(!cache.exists() && !out.exists(), "refused before any work");
}

#[test]
fn exit_2_a_debian_recipe_without_mirrors_says_how_to_give_them() {
    let dir = tempfile::tempdir().unwrap();
    let (cache, out) = (dir.path().join("cache"), dir.path().join("out"));
    let recipe = repo_path("recipes/debian-13");
    let base = [
        "build",
        recipe.as_str(),
        "--cache-dir",
        s(&cache),
        "--out",
        s(&out),
    ];
    let o = ingot(&base);
    assert_exit(&o, 2);
    assert_one_error_line(&o, "--mirror URL (INGOT_MIRROR)");
    assert_one_error_line(&o, "--suite-mirror trixie-security=URL");
    // --mirror alone leaves Debian's separate security archive without one.
    let mut args = base.to_vec();
    args.extend(["--mirror", "http://unused.invalid/debian"]);
    let o = ingot(&args);
    assert_exit(&o, 2);
    assert_one_error_line(&o, "no mirror for trixie-security");
    assert!(!cache.exists() && !out.exists(), "refused before any work");
}

#[test]
fn exit_2_a_bad_url_scheme() {
    let f = fixture("");
    let o = ingot(&[
        "fetch",
        s(&f.recipe),
        "--mirror",
        "ftp://mirror.example/debian",
    ]);
    assert_exit(&o, 2);
    assert_one_error_line(&o, "ftp://mirror.example/debian");
}

#[test]
fn exit_2_verify_on_a_missing_tarball_still_prints_json() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.tar.gz");
    let o = ingot(&["verify", s(&missing)]);
    assert_exit(&o, 2);
    assert_one_error_line(&o, "missing.tar.gz");
    let j = ingot(&["verify", "--json", s(&missing)]);
    assert_exit(&j, 2);
    let doc: serde_json::Value = serde_json::from_slice(&j.stdout).unwrap();
    assert_eq!(doc["ok"], false);
    assert!(doc["error"].as_str().unwrap().contains("missing.tar.gz"));
}

#[test]
fn exit_2_a_locked_build_without_a_lock() {
    let f = fixture("");
    let o = build(&f, &["--locked"]);
    assert_exit(&o, 2);
    assert_one_error_line(&o, "ingot.lock");
    assert!(!f.dir.join("cache").join("sha256").exists());
}

#[test]
fn exit_2_an_output_directory_that_cannot_be_written() {
    let f = fixture("");
    // A file where the output directory's parent should be: nothing can be created below it.
    let blocker = f.dir.join("blocker");
    fs::write(&blocker, b"").unwrap();
    let out = blocker.join("out");
    let o = ingot(&[
        "build",
        s(&f.recipe),
        "--mirror",
        &f.mirror,
        "--cache-dir",
        s(&f.dir.join("cache")),
        "--out",
        s(&out),
    ]);
    assert_exit(&o, 2);
    assert_one_error_line(&o, "not writable");
    assert!(
        !f.dir.join("cache").join("sha256").exists(),
        "fetched first"
    );
}

#[test]
fn exit_2_an_exact_version_that_exists_is_refused_before_anything_is_fetched() {
    let f = fixture("");
    let out = f.dir.join("out");
    fs::create_dir_all(&out).unwrap();
    fs::write(out.join("exit-test-v3.tar.gz"), b"an older image").unwrap();
    // A mirror that cannot answer: a refusal that waited for the download would name it.
    let o = ingot(&[
        "build",
        s(&f.recipe),
        "--mirror",
        "http://127.0.0.1:9/never",
        "--cache-dir",
        s(&f.dir.join("cache")),
        "--out",
        s(&out),
        "--version",
        "3",
    ]);
    assert_exit(&o, 2);
    assert_one_error_line(&o, "exit-test-v3.tar.gz");
    assert!(!f.dir.join("cache").exists(), "the cache was touched");
    assert_eq!(
        fs::read(out.join("exit-test-v3.tar.gz")).unwrap(),
        b"an older image"
    );
}

/// `ingot outdated` splits its answers for a cron job: 0 up to date, 1 rebuild due, 2 bad
/// input, 3 could not check.
#[test]
fn outdated_exit_codes_tell_a_stale_image_from_a_broken_mirror() {
    let f = fixture("");
    let cache = f.dir.join("cache");
    let run = |mirror: &str| {
        ingot(&[
            "outdated",
            s(&f.recipe),
            "--mirror",
            mirror,
            "--cache-dir",
            s(&cache),
            "--out",
            s(&f.dir.join("out")),
        ])
    };
    // No lock and no manifest: bad input.
    let o = run(&f.mirror);
    assert_exit(&o, 2);
    assert_one_error_line(&o, "no ingot.lock");
    // Up to date against its own lock.
    let lock = ingot(&[
        "lock",
        s(&f.recipe),
        "--mirror",
        &f.mirror,
        "--cache-dir",
        s(&cache),
    ]);
    assert_exit(&lock, 0);
    assert_exit(&run(&f.mirror), 0);
    // A stale lock (an older version of `base` locked): rebuild due.
    let path = f.recipe.join("ingot.lock");
    let text = fs::read_to_string(&path).unwrap();
    fs::write(
        &path,
        text.replace("version = \"1.0\"", "version = \"0.9\""),
    )
    .unwrap();
    let o = run(&f.mirror);
    assert_exit(&o, 1);
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("0.9 -> 1.0"),
        "{o:?}"
    );
    // A mirror that does not answer: could not check, never "up to date".
    let o = run("http://127.0.0.1:9/never");
    assert_exit(&o, 3);
    assert_one_error_line(&o, "127.0.0.1:9");
}

/// Boolean environment equivalents take the values a pipeline writes (`1`, `yes`, `true`), as
/// `INGOT_ALLOW_OLDER` always did: `INGOT_QUIET=1` is quiet, not "invalid value".
#[test]
fn boolean_environment_variables_accept_1_and_0() {
    let f = fixture("");
    for (value, quiet) in [("1", true), ("yes", true), ("0", false)] {
        let o = Command::new(INGOT)
            .args([
                "resolve",
                s(&f.recipe),
                "--mirror",
                &f.mirror,
                "--cache-dir",
            ])
            .arg(f.dir.join("cache"))
            .env("INGOT_QUIET", value)
            .output()
            .unwrap();
        assert_exit(&o, 0);
        assert_eq!(o.stderr.is_empty(), quiet, "INGOT_QUIET={value}: {o:?}");
    }
}
