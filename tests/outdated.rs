//! `ingot outdated`: a hermetic archive where one package gets a newer version in a second
//! (security) suite reports exactly that package and exits 1; unchanged, it exits 0. Without
//! a lock it compares with the newest artifact's manifest.

mod support;

use std::fs;
use std::path::Path;
use std::process::{Command, Output};

use support::{DebSpec, FixtureArchive, FixtureKey, FixtureOptions};

const INGOT: &str = env!("CARGO_BIN_EXE_ingot");

fn ingot(args: &[&str]) -> Output {
    Command::new(INGOT)
        .args(args)
        .arg("--quiet")
        .output()
        .unwrap()
}

/// Suite `stable` with `alpha` and `beta` 1.0; `stable-security` with `security` in it.
fn publish(root: &Path, key: &FixtureKey, security: &[&str]) {
    let debs = root.join("debs");
    let build = |name: &str, version: &str| DebSpec::new(name, version).essential().build(&debs);
    let stable = [build("alpha", "1.0"), build("beta", "1.0")];
    FixtureArchive::build(
        &root.join("mirror"),
        "stable",
        &stable,
        key,
        &FixtureOptions::default(),
    );
    let newer: Vec<_> = security
        .iter()
        .map(|spec| {
            let (name, version) = spec.split_once('=').unwrap();
            build(name, version)
        })
        .collect();
    FixtureArchive::build(
        &root.join("mirror"),
        "stable-security",
        &newer,
        key,
        &FixtureOptions::default(),
    );
}

#[test]
fn outdated_reports_exactly_the_package_with_a_newer_version_and_exits_1() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let key = FixtureKey::generate("ingot outdated test");
    publish(root, &key, &[]);
    let recipe = root.join("recipe");
    fs::create_dir_all(&recipe).unwrap();
    key.write_keyring(&recipe.join("trusted.gpg"));
    fs::write(
        recipe.join("recipe.toml"),
        format!(
            "[image]\nname = \"tiny\"\n\n[source]\nmirror = \"file://{}\"\n\
             suites = [\"stable\", \"stable-security\"]\narchitecture = \"amd64\"\n\
             keyring = \"trusted.gpg\"\n\n[packages]\nvariant = \"essential\"\n",
            root.join("mirror").display()
        ),
    )
    .unwrap();
    let r = recipe.to_str().unwrap();
    let out = root.join("out");
    let o = out.to_str().unwrap();

    let locked = ingot(&["lock", r]);
    assert!(locked.status.success(), "{locked:?}");
    let same = ingot(&["outdated", r, "--out", o]);
    assert_eq!(same.status.code(), Some(0), "{same:?}");
    assert!(same.stdout.is_empty(), "{same:?}");

    // beta 1.1 appears in the security suite.
    publish(root, &key, &["beta=1.1"]);
    let due = ingot(&["outdated", r, "--out", o]);
    assert_eq!(due.status.code(), Some(1), "{due:?}");
    let text = String::from_utf8_lossy(&due.stdout);
    assert_eq!(text.lines().count(), 1, "{text}");
    assert!(
        text.starts_with("beta ") && text.contains("1.0 -> 1.1") && text.contains("SECURITY"),
        "{text}"
    );
    let json = ingot(&["outdated", r, "--out", o, "--json"]);
    assert_eq!(json.status.code(), Some(1));
    let doc: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(doc["rebuild_due"], true);
    assert_eq!(doc["baseline"]["kind"], "lock");
    let listed = doc["outdated"].as_array().unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["name"], "beta");
    assert_eq!(listed[0]["available"], "1.1");
    assert_eq!(listed[0]["security"], true);
    assert_eq!(listed[0]["suites"], serde_json::json!(["stable-security"]));

    // No lock: the newest manifest in --out is the baseline (v2 here, which has beta 1.1 but
    // an older alpha).
    fs::remove_file(recipe.join("ingot.lock")).unwrap();
    fs::create_dir_all(&out).unwrap();
    let manifest = |version: u32, alpha: &str, beta: &str| {
        serde_json::json!({
            "manifest_version": 1, "ingot_version": "0.1.0", "image": "tiny", "version": version,
            "recipe_digest": "00", "build_epoch": 0, "epoch_source": "in-release", "suites": [],
            "packages": [
                { "name": "alpha", "version": alpha, "architecture": "amd64", "sha256": "00" },
                { "name": "beta", "version": beta, "architecture": "amd64", "sha256": "00" },
            ],
            "output": { "file": format!("tiny-v{version}.tar.gz"), "compression": "gzip",
                        "sha256": "00", "size": 0 },
        })
        .to_string()
    };
    fs::write(
        out.join("tiny-v1.tar.gz.manifest.json"),
        manifest(1, "1.0", "1.0"),
    )
    .unwrap();
    fs::write(
        out.join("tiny-v2.tar.gz.manifest.json"),
        manifest(2, "0.9", "1.1"),
    )
    .unwrap();
    let due = ingot(&["outdated", r, "--out", o, "--json"]);
    assert_eq!(due.status.code(), Some(1), "{due:?}");
    let doc: serde_json::Value = serde_json::from_slice(&due.stdout).unwrap();
    assert_eq!(doc["baseline"]["kind"], "manifest");
    let names: Vec<&str> = doc["outdated"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["alpha"]);
    assert_eq!(doc["outdated"][0]["security"], false);
}
