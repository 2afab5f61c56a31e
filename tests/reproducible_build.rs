//! The whole pipeline on a hermetic archive: a signed archive of real `.deb`s (a tiny
//! distribution built from the host's own dpkg and shell) served over `file://` and loopback
//! HTTP, built by the `ingot` binary into versioned, reproducible artifacts.
//!
//! These tests need what a build needs: root, or an ordinary user with a subordinate id range
//! (CI runs them as root; the end-to-end suite covers the unprivileged user).

#[path = "support/minidistro.rs"]
mod minidistro;
mod support;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use sha2::{Digest, Sha256};
use support::{FixtureArchive, FixtureKey, FixtureOptions, serve_http};

const INGOT: &str = env!("CARGO_BIN_EXE_ingot");

/// Writes just enough of a system for the golden-image contract: identity files, an sshd
/// configuration that forbids passwords, an init, locked root.
const PROVISION: &str = r#"#!/bin/sh
set -eu
mkdir -p /etc/ssh/sshd_config.d /usr/lib/systemd /root
printf 'NAME="Mini"\nID=mini\nVERSION_ID="1"\nPRETTY_NAME="Mini 1"\n' > /etc/os-release
printf 'DISTRIB_ID=Mini\nDISTRIB_RELEASE=1\nDISTRIB_CODENAME=mini\nDISTRIB_DESCRIPTION="Mini 1"\n' > /etc/lsb-release
printf 'Include /etc/ssh/sshd_config.d/*.conf\nPasswordAuthentication yes\n' > /etc/ssh/sshd_config
printf 'PasswordAuthentication no\nKbdInteractiveAuthentication no\nPermitRootLogin prohibit-password\n' > /etc/ssh/sshd_config.d/00-golden.conf
printf '#!/bin/sh\nexec sleep infinity\n' > /usr/lib/systemd/systemd
chmod 755 /usr/lib/systemd/systemd
ln -sf ../lib/systemd/systemd /usr/sbin/init
printf 'root:x:0:0:root:/root:/bin/sh\n' > /etc/passwd
printf 'root:x:0:\n' > /etc/group
printf 'root:!*:19000:0:99999:7:::\n' > /etc/shadow
chmod 640 /etc/shadow
printf 'localhost\n' > /etc/hostname
echo provisioned > /etc/provisioned
"#;

struct Fixture {
    _dir: tempfile::TempDir,
    dir: PathBuf,
    recipe: PathBuf,
    mirror_file: String,
    cache: PathBuf,
}

fn fixture(provision: &str) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_path_buf();
    // Everything must be reachable by the namespaced child (root in the namespace = caller).
    let key = FixtureKey::generate("ingot test archive");
    let debs = minidistro::build(&root.join("debs"));
    let paths: Vec<PathBuf> = debs.iter().map(|d| d.path.clone()).collect();
    let archive = FixtureArchive::build(
        &root.join("mirror"),
        "mini",
        &paths,
        &key,
        &FixtureOptions {
            arch: minidistro::host_arch(),
            ..FixtureOptions::default()
        },
    );
    let recipe = root.join("recipe");
    fs::create_dir_all(&recipe).unwrap();
    key.write_keyring(&recipe.join("trusted.gpg"));
    fs::write(recipe.join("provision.sh"), provision).unwrap();
    fs::write(
        recipe.join("recipe.toml"),
        format!(
            r#"[image]
name = "mini-rootfs"

[source]
mirror = "http://mirror.invalid/mini"
suites = ["mini"]
architecture = "{}"
keyring = "trusted.gpg"

[packages]
variant = "essential"
include = ["mini-hello", "mini-caps"]

[provision]
scripts = ["provision.sh"]
"#,
            minidistro::host_arch()
        ),
    )
    .unwrap();
    Fixture {
        mirror_file: archive.file_url(),
        cache: root.join("cache"),
        recipe,
        dir: root,
        _dir: dir,
    }
}

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// Run `ingot build` through `sh` so that umask and TZ are the child's own.
fn build(f: &Fixture, mirror: &str, out: &Path, extra: &str, umask: &str, tz: &str) -> Output {
    let cmd = format!(
        "umask {umask} && exec '{INGOT}' build '{}' --mirror '{mirror}' --cache-dir '{}' --out '{}' {extra}",
        f.recipe.display(),
        f.cache.display(),
        out.display()
    );
    Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .env("TZ", tz)
        .env_remove("SOURCE_DATE_EPOCH")
        .output()
        .unwrap()
}

fn sha256(path: &Path) -> String {
    hex::encode(Sha256::digest(fs::read(path).unwrap()))
}

fn stdout_path(o: &Output) -> PathBuf {
    PathBuf::from(String::from_utf8_lossy(&o.stdout).trim())
}

fn assert_ok(o: &Output) {
    assert!(
        o.status.success(),
        "ingot failed ({:?}):\n{}",
        o.status,
        String::from_utf8_lossy(&o.stderr)
    );
}

fn staging_is_empty(f: &Fixture) -> bool {
    let staging = f.cache.join("staging");
    !staging.exists() || fs::read_dir(&staging).unwrap().next().is_none()
}

#[test]
fn two_builds_give_the_same_bytes_whatever_the_mirror_tz_umask_and_output_dir() {
    if !is_root() {
        eprintln!("skipped: needs root or a subuid range (the e2e suite runs it unprivileged)");
        return;
    }
    let f = fixture(PROVISION);
    let (http, _server) = serve_http(&f.dir.join("mirror"));
    let a = build(
        &f,
        &f.mirror_file,
        &f.dir.join("out-a"),
        "--next",
        "022",
        "UTC",
    );
    assert_ok(&a);
    let b = build(
        &f,
        &http,
        &f.dir.join("out-b"),
        "--next",
        "077",
        "Asia/Tokyo",
    );
    assert_ok(&b);
    let (pa, pb) = (stdout_path(&a), stdout_path(&b));
    assert_eq!(pa.file_name().unwrap(), "mini-rootfs-v1.tar.gz");
    assert_eq!(
        sha256(&pa),
        sha256(&pb),
        "same inputs must give the same bytes"
    );

    // The manifest and checksum are beside it, and sha256sum agrees.
    let check = Command::new("sha256sum")
        .arg("-c")
        .arg("mini-rootfs-v1.tar.gz.sha256")
        .current_dir(pa.parent().unwrap())
        .output()
        .unwrap();
    assert!(check.status.success(), "{check:?}");
    let manifest: serde_json::Value =
        serde_json::from_slice(&fs::read(pa.with_extension("gz.manifest.json")).unwrap()).unwrap();
    assert_eq!(manifest["output"]["sha256"], sha256(&pa));
    assert!(manifest["packages"].as_array().unwrap().len() >= 4);

    // GNU tar reads it: names at the root, numeric owners, the provisioned file, no staging.
    let list = Command::new("tar").arg("-tvzf").arg(&pa).output().unwrap();
    assert!(list.status.success() && list.stderr.is_empty(), "{list:?}");
    let text = String::from_utf8_lossy(&list.stdout);
    let plain = Command::new("tar").arg("-tzf").arg(&pa).output().unwrap();
    let names = String::from_utf8_lossy(&plain.stdout);
    assert!(
        names
            .lines()
            .all(|n| !n.starts_with("./") && !n.starts_with('/')),
        "{names}"
    );
    assert!(names.lines().any(|n| n == "etc/"), "{names}");
    assert!(text.contains(" 0/0 ") && text.contains("etc/provisioned"));
    assert!(
        text.lines().any(|l| l.ends_with(" usr/bin/mini-hello")),
        "{text}"
    );
    assert!(staging_is_empty(&f), "staging left behind");
}

#[test]
fn versions_are_monotonic_and_never_overwritten() {
    if !is_root() {
        eprintln!("skipped: needs root or a subuid range");
        return;
    }
    let f = fixture(PROVISION);
    let out = f.dir.join("out");
    let v1 = build(&f, &f.mirror_file, &out, "--next", "022", "UTC");
    assert_ok(&v1);
    let v2 = build(&f, &f.mirror_file, &out, "--next", "022", "UTC");
    assert_ok(&v2);
    assert_eq!(
        stdout_path(&v2).file_name().unwrap(),
        "mini-rootfs-v2.tar.gz"
    );
    let v1_path = stdout_path(&v1);
    let before = sha256(&v1_path);
    let again = build(&f, &f.mirror_file, &out, "--version 1", "022", "UTC");
    assert!(
        !again.status.success(),
        "--version 1 over an existing v1 must be refused"
    );
    let err = String::from_utf8_lossy(&again.stderr);
    assert!(err.contains("v1") || err.contains("version 1"), "{err}");
    assert_eq!(sha256(&v1_path), before, "v1 must be untouched");
    let mut files: Vec<String> = fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| !n.starts_with(".mini-rootfs.lock"))
        .collect();
    files.sort();
    assert_eq!(
        files,
        [
            "mini-rootfs-v1.tar.gz",
            "mini-rootfs-v1.tar.gz.manifest.json",
            "mini-rootfs-v1.tar.gz.sha256",
            "mini-rootfs-v1.tar.gz.spdx.json",
            "mini-rootfs-v2.tar.gz",
            "mini-rootfs-v2.tar.gz.manifest.json",
            "mini-rootfs-v2.tar.gz.sha256",
            "mini-rootfs-v2.tar.gz.spdx.json",
        ]
    );
}

#[test]
fn a_failing_provision_script_fails_the_build_and_leaves_nothing() {
    if !is_root() {
        eprintln!("skipped: needs root or a subuid range");
        return;
    }
    let f = fixture("#!/bin/sh\necho about to fail\nexit 3\n");
    let out = f.dir.join("out");
    let o = build(&f, &f.mirror_file, &out, "--next", "022", "UTC");
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    let last = err.lines().last().unwrap_or_default();
    assert!(
        last.contains("provision.sh") && last.contains('3'),
        "the last line must name the script and its status: {err}"
    );
    let left: Vec<_> = fs::read_dir(&out)
        .map(|d| {
            d.map(|e| e.unwrap().file_name())
                .filter(|n| !n.to_string_lossy().starts_with(".mini-rootfs.lock"))
                .collect()
        })
        .unwrap_or_default();
    assert!(
        left.is_empty(),
        "nothing may be published or left: {left:?}"
    );
    assert!(staging_is_empty(&f), "staging left behind");
}

#[test]
fn a_contract_breaking_image_is_not_published() {
    if !is_root() {
        eprintln!("skipped: needs root or a subuid range");
        return;
    }
    let breaking = format!(
        "{PROVISION}\nprintf 'user:$6$salt$hash:19000:0:99999:7:::\\n' >> /etc/shadow\nprintf 'user:x:1000:1000::/home/user:/bin/sh\\n' >> /etc/passwd\n"
    );
    let f = fixture(&breaking);
    let out = f.dir.join("out");
    let o = build(&f, &f.mirror_file, &out, "--next", "022", "UTC");
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("refusing to publish"), "{err}");
    assert!(!out.join("mini-rootfs-v1.tar.gz").exists());
}
