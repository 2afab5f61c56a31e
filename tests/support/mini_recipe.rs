//! A buildable recipe over the mini distribution ([`super::minidistro`]) in a signed fixture
//! archive, for the lock, mirror, SBOM and outdated tests: a temp folder with
//! `mirror/` (the archive), `recipe/` (recipe.toml, provision.sh, the trusted keyring) and an
//! empty `cache/`. Include with `#[path = "support/mini_recipe.rs"] mod mini_recipe;` after
//! `minidistro` and `support`.
#![allow(dead_code)]

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use sha2::{Digest, Sha256};

use crate::minidistro;
use crate::support::{FixtureArchive, FixtureKey, FixtureOptions};

/// The `ingot` binary under test.
pub const INGOT: &str = env!("CARGO_BIN_EXE_ingot");

/// Just enough of a system for the golden-image contract.
pub const PROVISION: &str = r#"#!/bin/sh
set -eu
mkdir -p /etc/ssh/sshd_config.d /usr/lib/systemd /root
printf 'NAME="Mini"\nID=mini\nVERSION_ID="1"\nPRETTY_NAME="Mini 1"\n' > /etc/os-release
printf 'DISTRIB_ID=Mini\nDISTRIB_RELEASE=1\nDISTRIB_CODENAME=mini\nDISTRIB_DESCRIPTION="Mini 1"\n' > /etc/lsb-release
printf 'PasswordAuthentication no\nKbdInteractiveAuthentication no\nPermitRootLogin prohibit-password\n' > /etc/ssh/sshd_config
printf '#!/bin/sh\nexec sleep infinity\n' > /usr/lib/systemd/systemd
chmod 755 /usr/lib/systemd/systemd
ln -sf ../lib/systemd/systemd /usr/sbin/init
printf 'root:x:0:0:root:/root:/bin/sh\n' > /etc/passwd
printf 'root:x:0:\n' > /etc/group
printf 'root:!*:19000:0:99999:7:::\n' > /etc/shadow
chmod 640 /etc/shadow
"#;

/// The fixture: paths inside one temp folder.
pub struct MiniRecipe {
    _tmp: tempfile::TempDir,
    /// The temp folder.
    pub dir: PathBuf,
    /// `recipe/`.
    pub recipe: PathBuf,
    /// `mirror/`: the archive root.
    pub mirror: PathBuf,
    /// The archive's signing key.
    pub key: FixtureKey,
    /// The signed archive of suite `mini`.
    pub archive: FixtureArchive,
}

/// Fails the test (never skips it) when a build cannot run here: real root, or an ordinary
/// user with a subordinate id range (what `ingot doctor` checks).
pub fn require_build_privileges() {
    crate::support::privilege::require_build_privileges(INGOT);
}

/// The mini distribution plus `extra` `.deb`s in suite `mini`, with a recipe that installs
/// the Essential set, `mini-hello` and `include`. `options` shape the archive (its `arch` is
/// set to the host's).
pub fn mini_recipe(extra: &[PathBuf], include: &[&str], options: FixtureOptions) -> MiniRecipe {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    let key = FixtureKey::generate("ingot lock test archive");
    let mut debs: Vec<PathBuf> = minidistro::build(&dir.join("debs"))
        .into_iter()
        .map(|d| d.path)
        .collect();
    debs.extend(extra.iter().cloned());
    let archive = FixtureArchive::build(
        &dir.join("mirror"),
        "mini",
        &debs,
        &key,
        &FixtureOptions {
            arch: minidistro::host_arch(),
            ..options
        },
    );
    let recipe = dir.join("recipe");
    fs::create_dir_all(&recipe).unwrap();
    key.write_keyring(&recipe.join("trusted.gpg"));
    fs::write(recipe.join("provision.sh"), PROVISION).unwrap();
    let mut includes = vec!["\"mini-hello\"".to_string()];
    includes.extend(include.iter().map(|i| format!("{i:?}")));
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
include = [{}]

[provision]
scripts = ["provision.sh"]
"#,
            minidistro::host_arch(),
            includes.join(", ")
        ),
    )
    .unwrap();
    MiniRecipe {
        _tmp: tmp,
        mirror: dir.join("mirror"),
        recipe,
        dir,
        key,
        archive,
    }
}

/// Run `ingot ARGS` with `SOURCE_DATE_EPOCH` unset and `--quiet`.
pub fn ingot(args: &[&str]) -> Output {
    Command::new(INGOT)
        .args(args)
        .arg("--quiet")
        .env_remove("SOURCE_DATE_EPOCH")
        .output()
        .unwrap()
}

/// Panic with ingot's stderr unless it succeeded.
pub fn assert_ok(o: &Output) {
    assert!(
        o.status.success(),
        "ingot failed ({:?}):\n{}",
        o.status,
        String::from_utf8_lossy(&o.stderr)
    );
}

/// The first line of stdout as a path.
pub fn stdout_path(o: &Output) -> PathBuf {
    PathBuf::from(String::from_utf8_lossy(&o.stdout).trim())
}

/// SHA-256 of a file, hex.
pub fn sha256(path: &Path) -> String {
    hex::encode(Sha256::digest(fs::read(path).unwrap()))
}

/// `s` as a `&str` path argument.
pub fn arg(p: &Path) -> &str {
    p.to_str().unwrap()
}
