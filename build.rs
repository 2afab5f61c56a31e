//! Build script: records the source commit for `ingot --version` (`unknown` outside git, e.g.
//! from a release tarball).

use std::path::PathBuf;
use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    Command::new("git")
        .args(args)
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
}

fn main() {
    let commit = git(&["rev-parse", "--short=12", "HEAD"]).unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=INGOT_GIT_COMMIT={commit}");
    println!("cargo:rerun-if-changed=build.rs");
    // Rerun when HEAD moves: a checkout rewrites HEAD, a commit the branch's ref (or
    // packed-refs). Not the index: `git status` rewrites it, and every rerun rebuilds the crate.
    // Outside git there is nothing to watch.
    let (Some(git_dir), Some(common_dir)) = (
        git(&["rev-parse", "--git-dir"]),
        git(&["rev-parse", "--git-common-dir"]),
    ) else {
        return;
    };
    let mut watch = vec![
        PathBuf::from(&git_dir).join("HEAD"),
        PathBuf::from(&common_dir).join("packed-refs"),
    ];
    if let Some(head_ref) = git(&["symbolic-ref", "-q", "HEAD"]) {
        watch.push(PathBuf::from(&common_dir).join(head_ref));
    }
    for path in watch.into_iter().filter(|p| p.exists()) {
        println!("cargo:rerun-if-changed={}", path.display());
    }
}
