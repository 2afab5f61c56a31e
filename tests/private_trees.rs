//! A tree that outlives the build (`--format dir`, `--keep-staging`) sits inside a directory
//! only the caller can enter (mode 0700): the image's setuid files are never runnable by other
//! users of the host (for a root build, setuid to the image's root).
//!
//! Hermetic: the mini distribution (whose `mini-hello` ships a setuid `/usr/bin/mini-suid`) from
//! a signed fixture archive, built with the real `ingot build`. Runs as root and as an ordinary
//! user with a subordinate id range.

#[path = "support/mini_recipe.rs"]
mod mini_recipe;
#[path = "support/minidistro.rs"]
mod minidistro;
mod support;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use mini_recipe::{INGOT, arg, assert_ok, ingot, mini_recipe, stdout_path};
use support::FixtureOptions;

/// The directory is the caller's, mode 0700, and holds the tree at `rootfs/` with its setuid
/// file; as root, another user cannot reach the file.
fn assert_private(dir: &Path) {
    let meta = std::fs::metadata(dir).unwrap();
    assert_eq!(
        meta.mode() & 0o7777,
        0o700,
        "{} is not private to the caller",
        dir.display()
    );
    assert_eq!(meta.uid(), nix::unistd::geteuid().as_raw());
    let suid = dir.join("rootfs/usr/bin/mini-suid");
    let mode = std::fs::metadata(&suid).unwrap().permissions().mode();
    assert_eq!(mode & 0o7777, 0o4755, "the tree's setuid file is not there");
    if nix::unistd::geteuid().is_root() {
        let other = std::process::Command::new("setpriv")
            .args([
                "--reuid",
                "65534",
                "--regid",
                "65534",
                "--clear-groups",
                "test",
                "-e",
            ])
            .arg(&suid)
            .status()
            .expect("setpriv (util-linux)");
        assert!(!other.success(), "another user reaches {}", suid.display());
    }
}

#[test]
fn a_dir_build_is_inside_a_directory_only_the_caller_can_enter() {
    support::privilege::require_build_privileges(INGOT);
    let f = mini_recipe(&[], &[], FixtureOptions::default());
    let out = f.dir.join("tree");
    let o = ingot(&[
        "build",
        arg(&f.recipe),
        "--mirror",
        &f.archive.file_url(),
        "--cache-dir",
        arg(&f.dir.join("cache")),
        "--format",
        "dir",
        "--out",
        arg(&out),
    ]);
    assert_ok(&o);
    assert_eq!(stdout_path(&o), out.join("rootfs"));
    assert_private(&out);
    let names: Vec<String> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        names,
        ["rootfs"],
        "the staging directory was left next to the tree"
    );
    ingot::stage::StageBinary::at(INGOT)
        .remove_tree(&out.join("rootfs"))
        .unwrap();
}

#[test]
fn a_kept_staging_tree_is_inside_a_directory_only_the_caller_can_enter() {
    support::privilege::require_build_privileges(INGOT);
    let f = mini_recipe(&[], &[], FixtureOptions::default());
    let kept = f.dir.join("kept");
    let o = ingot(&[
        "build",
        arg(&f.recipe),
        "--mirror",
        &f.archive.file_url(),
        "--cache-dir",
        arg(&f.dir.join("cache")),
        "--out",
        arg(&f.dir.join("out")),
        "--staging",
        "disk",
        "--keep-staging",
        arg(&kept),
    ]);
    assert_ok(&o);
    assert_private(&kept);
    ingot::stage::StageBinary::at(INGOT)
        .remove_tree(&kept.join("rootfs"))
        .unwrap();
}
