//! Fetching `.deb`s: parallel downloads over `file://` and loopback HTTP into the
//! content-addressed cache, each verified against the signed index; a tampered `.deb` is
//! refused naming its URL, and a corrupted cache entry is replaced, never used.

mod support;

use std::fs;
use std::path::Path;
use std::process::{Command, Output};

use support::{DebSpec, FixtureArchive, FixtureKey, FixtureOptions, serve_http, write_recipe};

const INGOT: &str = env!("CARGO_BIN_EXE_ingot");

fn setup(dir: &Path) -> (FixtureArchive, std::path::PathBuf) {
    let key = FixtureKey::generate("fetch test key");
    let debs_dir = dir.join("debs");
    let mut debs = vec![
        DebSpec::new("base", "1.0")
            .essential()
            .depends("libthing (>= 2)")
            .file("/usr/bin/base", b"#!/bin/sh\n", 0o755)
            .build(&debs_dir),
    ];
    for v in ["1.0", "2.1"] {
        debs.push(
            DebSpec::new("libthing", v)
                .file(&format!("/usr/lib/libthing-{v}"), v.as_bytes(), 0o644)
                .build(&debs_dir),
        );
    }
    let archive = FixtureArchive::build(
        &dir.join("mirror"),
        "stable",
        &debs,
        &key,
        &FixtureOptions::default(),
    );
    let recipe = write_recipe(
        &dir.join("recipe"),
        &key,
        r#"[image]
name = "fetch-test"
[source]
mirror = "http://unused.invalid/debian"
suites = ["stable"]
architecture = "amd64"
keyring = "trusted.gpg"
[packages]
variant = "essential"
"#,
    );
    (archive, recipe)
}

fn ingot(args: &[&str]) -> Output {
    Command::new(INGOT).args(args).output().unwrap()
}

fn fetch(recipe: &Path, mirror: &str, cache: &Path) -> Output {
    ingot(&[
        "fetch",
        recipe.to_str().unwrap(),
        "--mirror",
        mirror,
        "--cache-dir",
        cache.to_str().unwrap(),
        "--json",
    ])
}

#[test]
fn resolves_fetches_and_reuses_the_cache_over_file_and_http() {
    let dir = tempfile::tempdir().unwrap();
    let (archive, recipe) = setup(dir.path());
    let (http, _guard) = serve_http(&archive.root);

    let resolved = ingot(&[
        "resolve",
        recipe.to_str().unwrap(),
        "--mirror",
        &http,
        "--json",
    ]);
    assert!(resolved.status.success(), "{resolved:?}");
    let plan: serde_json::Value = serde_json::from_slice(&resolved.stdout).unwrap();
    let got: Vec<String> = plan["packages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            format!(
                "{}={}",
                p["name"].as_str().unwrap(),
                p["version"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(
        got,
        ["base=1.0", "libthing=2.1"],
        "highest satisfying version"
    );

    let cache = dir.path().join("cache");
    let first = fetch(&recipe, &http, &cache);
    assert!(first.status.success(), "{first:?}");
    let totals: serde_json::Value = serde_json::from_slice(&first.stdout).unwrap();
    assert_eq!(
        (totals["downloaded"].as_u64(), totals["cached"].as_u64()),
        (Some(2), Some(0))
    );

    // The same set over file:// comes from the cache: it is keyed by content, not by URL.
    let second = fetch(&recipe, &archive.file_url(), &cache);
    assert!(second.status.success(), "{second:?}");
    let totals: serde_json::Value = serde_json::from_slice(&second.stdout).unwrap();
    assert_eq!(
        (totals["downloaded"].as_u64(), totals["cached"].as_u64()),
        (Some(0), Some(2))
    );

    // A corrupted cache entry is detected on use and replaced by a verified download.
    let entry = fs::read_dir(cache.join("sha256"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    fs::write(&entry, b"rotten").unwrap();
    let third = fetch(&recipe, &archive.file_url(), &cache);
    assert!(third.status.success(), "{third:?}");
    let totals: serde_json::Value = serde_json::from_slice(&third.stdout).unwrap();
    assert_eq!(totals["downloaded"].as_u64(), Some(1));
    assert_ne!(fs::read(&entry).unwrap(), b"rotten");
}

#[test]
fn a_tampered_deb_is_refused_and_never_cached() {
    let dir = tempfile::tempdir().unwrap();
    let (archive, recipe) = setup(dir.path());
    let (_, pool_path, sha) = archive
        .pool
        .iter()
        .find(|(_, p, _)| p.contains("libthing_2.1"))
        .unwrap()
        .clone();
    // Same size, one byte changed: only the hash can tell.
    let deb = archive.root.join(&pool_path);
    let mut bytes = fs::read(&deb).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    fs::write(&deb, bytes).unwrap();

    let (http, _guard) = serve_http(&archive.root);
    for mirror in [archive.file_url(), http] {
        let cache = dir.path().join(format!("cache-{}", mirror.len()));
        let o = fetch(&recipe, &mirror, &cache);
        assert_eq!(o.status.code(), Some(1), "{o:?}");
        let stderr = String::from_utf8_lossy(&o.stderr);
        let errors: Vec<&str> = stderr.lines().filter(|l| l.contains("error:")).collect();
        assert_eq!(errors.len(), 1, "one error line: {stderr}");
        let err = errors[0];
        assert!(
            err.contains(&pool_path) && err.contains("SHA-256") && err.contains("libthing"),
            "error must name the URL, the package and the hash: {err}"
        );
        assert!(
            !cache.join("sha256").join(&sha).exists(),
            "a bad file entered the cache"
        );
        let partial: Vec<_> = fs::read_dir(cache.join("partial")).unwrap().collect();
        assert!(partial.is_empty(), "partial download left behind");
    }
}

#[test]
fn bad_input_exits_2_with_one_line_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let (_archive, recipe) = setup(dir.path());
    let toml = recipe.join("recipe.toml");
    let text = fs::read_to_string(&toml)
        .unwrap()
        .replace("\"essential\"", "\"everything\"");
    fs::write(&toml, text).unwrap();
    let o = ingot(&["resolve", recipe.to_str().unwrap(), "-q"]);
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(
        err.contains("recipe.toml") && err.contains("variant"),
        "{err}"
    );
}
