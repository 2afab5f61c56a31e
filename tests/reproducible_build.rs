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

/// Fails the test (never skips it) when this host cannot build.
fn require_build_privileges() {
    support::privilege::require_build_privileges(INGOT);
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
    require_build_privileges();
    let f = fixture(PROVISION);
    let (http, _server) = serve_http(&f.dir.join("mirror"));
    let a = build(
        &f,
        &f.mirror_file,
        &f.dir.join("out-a"),
        "--next --staging disk",
        "022",
        "UTC",
    );
    assert_ok(&a);
    // No base cache for the second build: dpkg and the scripts must really run under its TZ
    // and umask (a restored tree would hide what they change).
    let b = build(
        &f,
        &http,
        &f.dir.join("out-b"),
        "--next --no-base-cache",
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
    // One tree was staged on disk, the other (the default for a tree this small) on a tmpfs.
    let log_of = |image: &Path| fs::read_to_string(format!("{}.log", image.display())).unwrap();
    assert!(!log_of(&pa).contains("staging on a private tmpfs"));
    assert!(log_of(&pb).contains("staging on a private tmpfs"));
    for (image, what) in [(&pa, "first"), (&pb, "second")] {
        let log = log_of(image);
        assert!(
            log.contains("installing ") && !log.contains("restored the configured tree"),
            "the {what} build did not run dpkg itself:\n{log}"
        );
    }

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
    require_build_privileges();
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
            "mini-rootfs-v1.tar.gz.log",
            "mini-rootfs-v1.tar.gz.manifest.json",
            "mini-rootfs-v1.tar.gz.provenance.json",
            "mini-rootfs-v1.tar.gz.sha256",
            "mini-rootfs-v1.tar.gz.spdx.json",
            "mini-rootfs-v2.tar.gz",
            "mini-rootfs-v2.tar.gz.log",
            "mini-rootfs-v2.tar.gz.manifest.json",
            "mini-rootfs-v2.tar.gz.provenance.json",
            "mini-rootfs-v2.tar.gz.sha256",
            "mini-rootfs-v2.tar.gz.spdx.json",
        ]
    );
}

#[test]
fn a_failing_provision_script_fails_the_build_and_leaves_nothing() {
    require_build_privileges();
    let f = fixture("#!/bin/sh\necho about to fail\nexit 3\n");
    let out = f.dir.join("out");
    let o = build(&f, &f.mirror_file, &out, "--next", "022", "UTC");
    assert_eq!(o.status.code(), Some(1), "a failed build exits 1");
    let err = String::from_utf8_lossy(&o.stderr);
    // The failing step, its status, once; its output once (in the tail); the log's path.
    assert_eq!(
        err.matches("provision script provision.sh exited with status 3")
            .count(),
        1,
        "the failure must be printed exactly once: {err}"
    );
    assert_eq!(
        err.matches("about to fail").count(),
        1,
        "the script's output once, in the tail: {err}"
    );
    let tail_at = err.find("lines of the build log:").expect(&err);
    assert!(
        err[tail_at..].contains("provision.sh: about to fail"),
        "{err}"
    );
    let last = err.lines().last().unwrap_or_default();
    let log = PathBuf::from(
        last.strip_prefix("ingot: the whole build log: ")
            .unwrap_or_else(|| panic!("the last line must name the log: {err}")),
    );
    assert_eq!(
        log.parent(),
        Some(out.join("failed-builds").as_path()),
        "{err}"
    );
    let text = fs::read_to_string(&log).unwrap();
    assert!(text.contains("provision.sh: about to fail"), "{text}");
    assert!(text.contains("dpkg: Setting up mini-base"), "{text}");
    assert!(
        text.contains("error: provision script provision.sh exited with status 3"),
        "{text}"
    );
    let left: Vec<_> = fs::read_dir(&out)
        .map(|d| {
            d.map(|e| e.unwrap().file_name())
                .filter(|n| {
                    let n = n.to_string_lossy();
                    !n.starts_with(".mini-rootfs.lock") && n != "failed-builds"
                })
                .collect()
        })
        .unwrap_or_default();
    assert!(
        left.is_empty(),
        "nothing may be published or left: {left:?}"
    );
    assert!(staging_is_empty(&f), "staging left behind");

    // With --json, the failure's fields for a pipeline: the step, its status, its output.
    let o = build(&f, &f.mirror_file, &out, "--next --json", "022", "UTC");
    assert_eq!(o.status.code(), Some(1));
    let doc: serde_json::Value = serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&o.stdout)));
    assert_eq!(doc["ok"], false, "{doc}");
    assert_eq!(doc["step"], "provision", "{doc}");
    assert_eq!(doc["status"], "exited with status 3", "{doc}");
    assert!(
        doc["output"].as_array().is_some_and(|lines| lines
            .iter()
            .any(|l| l.as_str().is_some_and(|l| l.contains("about to fail")))),
        "{doc}"
    );
}

/// The default output of a piped build: one line per step with its duration; dpkg's and the
/// scripts' output only in the log published beside the image; `-v` streams it too.
#[test]
fn a_piped_build_prints_one_line_per_step_and_logs_the_rest_beside_the_image() {
    require_build_privileges();
    // The recipe's cleanup removes policy-rc.d itself, as the golden cleanup.sh does.
    let f = fixture(&format!("{PROVISION}rm -f /usr/sbin/policy-rc.d\n"));
    let out = f.dir.join("out");
    let o = build(&f, &f.mirror_file, &out, "--next", "022", "UTC");
    assert_ok(&o);
    let err = String::from_utf8_lossy(&o.stderr);
    let lines: Vec<&str> = err.lines().collect();
    assert!(lines.len() <= 40, "{} lines:\n{err}", lines.len());
    let steps = [
        "archive",
        "resolve",
        "fetch",
        "install",
        "base-store",
        "provision",
        "cleanup",
        "export",
        "verify",
    ];
    for step in steps {
        let prefix = format!("ingot: {step}: ");
        let matching: Vec<&&str> = lines.iter().filter(|l| l.starts_with(&prefix)).collect();
        assert_eq!(matching.len(), 1, "one line for {step}:\n{err}");
        assert!(
            matching[0].ends_with(" s)"),
            "{step} without its duration:\n{err}"
        );
    }
    assert!(
        !err.contains("Setting up"),
        "dpkg's output on the terminal:\n{err}"
    );
    assert!(!err.contains("starting ("), "raw byte counts:\n{err}");

    let image = stdout_path(&o);
    let log_path = PathBuf::from(format!("{}.log", image.display()));
    let log = fs::read_to_string(&log_path).unwrap();
    assert!(log.contains("dpkg: Setting up mini-base"), "{log}");
    assert!(!log.contains("keeping /usr/sbin/policy-rc.d"), "{log}");
    let manifest: serde_json::Value =
        serde_json::from_slice(&fs::read(format!("{}.manifest.json", image.display())).unwrap())
            .unwrap();
    let names: Vec<&str> = manifest["stages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            assert!(s["seconds"].as_f64().unwrap() >= 0.0);
            s["name"].as_str().unwrap()
        })
        .collect();
    assert_eq!(names, steps);

    // -v streams the log as well; --json carries the steps and the log's path.
    // (Without the base cache: the first build stored the configured tree, and a restore runs
    // no dpkg.)
    let v = build(
        &f,
        &f.mirror_file,
        &out,
        "--next --json -v --no-base-cache",
        "022",
        "UTC",
    );
    assert_ok(&v);
    let verr = String::from_utf8_lossy(&v.stderr);
    assert!(verr.contains("dpkg: Setting up mini-base"), "{verr}");
    let doc: serde_json::Value = serde_json::from_slice(&v.stdout).unwrap();
    assert_eq!(
        doc["stages"].as_array().unwrap().len(),
        steps.len() - 1,
        "{doc}"
    );
    assert!(
        doc["log"]
            .as_str()
            .unwrap()
            .ends_with("mini-rootfs-v2.tar.gz.log"),
        "{doc}"
    );
    assert_eq!(doc["manifest"]["stages"], doc["stages"]);
}

/// A second build of the same image into the same directory waits for the first and says so.
#[test]
fn a_build_waiting_for_the_output_lock_says_so() {
    require_build_privileges();
    let f = fixture(PROVISION);
    let out = f.dir.join("out");
    fs::create_dir_all(&out).unwrap();
    let lock = fs::File::create(out.join(".mini-rootfs.lock")).unwrap();
    lock.lock().unwrap();
    let mut child = Command::new(INGOT)
        .arg("build")
        .arg(&f.recipe)
        .args(["--mirror", &f.mirror_file])
        .arg("--cache-dir")
        .arg(&f.cache)
        .arg("--out")
        .arg(&out)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let mut reader = std::io::BufRead::lines(std::io::BufReader::new(stderr));
    let mut seen = Vec::new();
    for line in reader.by_ref() {
        let line = line.unwrap();
        let waiting = line.contains("waiting for another build of mini-rootfs");
        seen.push(line);
        if waiting {
            break;
        }
    }
    assert!(
        seen.last().is_some_and(|l| l.contains(".mini-rootfs.lock")),
        "the build must say it waits for the lock: {seen:?}"
    );
    drop(lock);
    let rest: Vec<String> = reader.map(|l| l.unwrap()).collect();
    let status = child.wait().unwrap();
    assert!(status.success(), "{seen:?} {rest:?}");
    assert!(out.join("mini-rootfs-v1.tar.gz").exists());
}

#[test]
fn a_contract_breaking_image_is_not_published() {
    require_build_privileges();
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

#[test]
fn base_cache_restores_the_configured_tree_and_the_image_is_byte_identical() {
    require_build_privileges();
    let f = fixture(PROVISION);
    let run = |out: &str, extra: &str| {
        let o = build(&f, &f.mirror_file, &f.dir.join(out), extra, "022", "UTC");
        assert_ok(&o);
        let image = stdout_path(&o);
        // The stage's detail is in the build log beside the image, not on stderr.
        let log = fs::read_to_string(format!("{}.log", image.display())).unwrap();
        (image, log)
    };
    let base_dir = f.cache.join("base");
    let entries = || -> Vec<PathBuf> {
        fs::read_dir(&base_dir)
            .map(|d| d.map(|e| e.unwrap().path()).collect())
            .unwrap_or_default()
    };

    let (plain, _) = run("out-plain", "--next --no-base-cache");
    assert!(
        entries().is_empty(),
        "--no-base-cache wrote {:?}",
        entries()
    );
    let (stored, log) = run("out-stored", "--next");
    assert!(log.contains("stored the configured tree"), "{log}");
    assert!(
        log.contains("installing "),
        "no dpkg lines in the log:\n{log}"
    );
    let stored_entries = entries();
    assert_eq!(stored_entries.len(), 1, "{stored_entries:?}");
    assert!(
        stored_entries[0].to_string_lossy().ends_with(".tar.zst"),
        "{stored_entries:?}"
    );
    let (restored, log) = run("out-restored", "--next");
    assert!(log.contains("restored the configured tree"), "{log}");
    assert!(!log.contains("installing "), "dpkg ran again:\n{log}");
    assert_eq!(sha256(&plain), sha256(&stored), "storing changed the image");
    assert_eq!(
        sha256(&plain),
        sha256(&restored),
        "restoring changed the image"
    );
    assert!(staging_is_empty(&f));

    // A torn entry (entries are not fsynced: a crash can cut one short) is dropped, the
    // packages are installed instead, the image is the same, and a whole entry replaces it.
    let entry = &stored_entries[0];
    let whole = fs::read(entry).unwrap();
    fs::write(entry, &whole[..whole.len() / 2]).unwrap();
    let (torn, log) = run("out-torn", "--next");
    assert!(log.contains("removed the entry"), "{log}");
    assert!(log.contains("installing "), "{log}");
    assert_eq!(
        sha256(&plain),
        sha256(&torn),
        "a torn entry changed the image"
    );
    // Stored anew (its mtimes are the new build's, so not the same bytes); the next build
    // (the provision loop below) restores from it.
    let stored_again = fs::metadata(entry).map(|m| m.len()).unwrap_or(0);
    assert!(
        stored_again > (whole.len() / 2) as u64,
        "the entry was not stored anew ({stored_again} bytes)"
    );
    assert!(staging_is_empty(&f));

    // The provision loop: another provision.sh, same plan: restored, and provisioned anew.
    fs::write(
        f.recipe.join("provision.sh"),
        format!("{PROVISION}echo edited > /etc/edited\n"),
    )
    .unwrap();
    let (edited, log) = run("out-edited", "--next");
    assert!(log.contains("restored the configured tree"), "{log}");
    let list = Command::new("tar")
        .arg("-tzf")
        .arg(&edited)
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&list.stdout)
            .lines()
            .any(|l| l == "etc/edited"),
        "the edited provision.sh did not run on the restored tree"
    );

    // `ingot cache prune --max-size 0` empties it; the next build stores the entry again.
    let prune = Command::new(INGOT)
        .args(["cache", "prune", "--max-size", "0", "--cache-dir"])
        .arg(&f.cache)
        .output()
        .unwrap();
    assert!(prune.status.success(), "{prune:?}");
    assert!(entries().is_empty(), "prune left {:?}", entries());
}

/// The base cache is keyed by the code that configured a tree: a changed `ingot` binary (an
/// upgrade, a rebuild with changed install code; here the same binary with one byte
/// appended, which still runs) never restores a tree another binary stored, and gives the
/// bytes a build without the base cache gives.
#[test]
fn a_changed_ingot_binary_never_restores_a_tree_stored_by_another() {
    require_build_privileges();
    let f = fixture(PROVISION);
    let other = f.dir.join("ingot-changed");
    let mut bytes = fs::read(INGOT).unwrap();
    bytes.push(0);
    fs::write(&other, bytes).unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(&other, fs::Permissions::from_mode(0o755)).unwrap();
    }
    let run = |binary: &Path, out: &str, extra: &str| {
        let cmd = format!(
            "umask 022 && exec '{}' build '{}' --mirror '{}' --cache-dir '{}' --out '{}' --next {extra}",
            binary.display(),
            f.recipe.display(),
            f.mirror_file,
            f.cache.display(),
            f.dir.join(out).display()
        );
        let o = Command::new("sh")
            .arg("-c")
            .arg(cmd)
            .env("TZ", "UTC")
            .env_remove("SOURCE_DATE_EPOCH")
            .output()
            .unwrap();
        assert_ok(&o);
        let image = stdout_path(&o);
        let log = fs::read_to_string(format!("{}.log", image.display())).unwrap();
        (image, log)
    };
    let (plain, _) = run(Path::new(INGOT), "out-plain", "--no-base-cache");
    let (_, log) = run(Path::new(INGOT), "out-stored", "");
    assert!(log.contains("stored the configured tree"), "{log}");
    let (changed, log) = run(&other, "out-changed", "");
    assert!(
        !log.contains("restored the configured tree"),
        "another binary restored the tree this one stored:\n{log}"
    );
    assert!(log.contains("installing "), "{log}");
    assert!(log.contains("stored the configured tree"), "{log}");
    assert_eq!(
        sha256(&plain),
        sha256(&changed),
        "the changed binary's build differs from a build without the base cache"
    );
    // The same binary again restores its own entry.
    let (_, log) = run(&other, "out-again", "");
    assert!(log.contains("restored the configured tree"), "{log}");
}
