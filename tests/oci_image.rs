//! `ingot build --oci`: an OCI image-layout archive beside the tarball, built twice from the
//! mini distribution's signed archive. The same inputs give the same archive bytes; the real
//! OCI tools read it — `skopeo inspect`/`skopeo copy` and `umoci unpack` — and the tree umoci
//! unpacks equals the tarball's as GNU tar extracts it (paths, types, modes, owners, symlink
//! targets, contents, xattrs). `ingot verify` reads the archive and checks its layer.

#[path = "support/mini_recipe.rs"]
mod mini_recipe;
#[path = "support/minidistro.rs"]
mod minidistro;
mod support;

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use mini_recipe::{INGOT, arg, assert_ok, sha256};
use support::FixtureOptions;

fn build(m: &mini_recipe::MiniRecipe, out: &Path, extra: &[&str]) -> Output {
    Command::new(INGOT)
        .args(["build", arg(&m.recipe), "--mirror"])
        .arg(format!("file://{}", m.mirror.display()))
        .args(["--cache-dir", arg(&m.dir.join("cache")), "--out", arg(out)])
        .args(extra)
        .arg("--quiet")
        .env_remove("SOURCE_DATE_EPOCH")
        .env_remove("INGOT_OCI")
        .output()
        .unwrap()
}

/// (tarball, OCI archive) from a build's stdout.
fn outputs(o: &Output) -> (PathBuf, PathBuf) {
    let text = String::from_utf8_lossy(&o.stdout);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines.len(),
        2,
        "expected the tarball and the OCI archive: {text}"
    );
    (PathBuf::from(lines[0]), PathBuf::from(lines[1]))
}

/// Fails (never skips) when a tool the test needs is missing.
fn require_tool(tool: &str) {
    let found = Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {tool}"))
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        found,
        "{tool} is not installed: this test needs it (apt-get install {tool}; .ci/run installs it)"
    );
}

fn run(cmd: &mut Command) -> Output {
    let o = cmd.output().unwrap();
    assert!(
        o.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    o
}

/// Every entry under `root`: type, mode, owner, link target or content digest, xattrs.
fn tree(root: &Path) -> BTreeMap<String, String> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, String>) {
        let mut names: Vec<_> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        names.sort();
        for p in names {
            let md = fs::symlink_metadata(&p).unwrap();
            let rel = p.strip_prefix(root).unwrap().display().to_string();
            let what = if md.file_type().is_symlink() {
                format!("link {}", fs::read_link(&p).unwrap().display())
            } else if md.is_dir() {
                "dir".to_string()
            } else {
                format!("file {}", sha256(&p))
            };
            let mut xattrs: Vec<String> = xattr::list(&p)
                .unwrap()
                .filter(|n| !n.to_string_lossy().starts_with("user.rootlesscontainers"))
                .map(|n| {
                    let v = xattr::get(&p, &n).unwrap().unwrap_or_default();
                    format!("{}={}", n.to_string_lossy(), hex::encode(v))
                })
                .collect();
            xattrs.sort();
            out.insert(
                rel,
                format!(
                    "{what} mode {:o} owner {}:{} xattrs [{}]",
                    md.mode() & 0o7777,
                    md.uid(),
                    md.gid(),
                    xattrs.join(",")
                ),
            );
            if md.is_dir() {
                walk(root, &p, out);
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out
}

#[test]
fn the_same_build_twice_gives_one_oci_archive_that_skopeo_and_umoci_read_as_the_tarball() {
    mini_recipe::require_build_privileges();
    require_tool("skopeo");
    require_tool("umoci");
    let m = mini_recipe::mini_recipe(&[], &["mini-caps"], FixtureOptions::default());
    let a = build(&m, &m.dir.join("out-a"), &["--oci"]);
    assert_ok(&a);
    // The second build dpkg-configures again (no base cache) into another directory.
    let b = build(&m, &m.dir.join("out-b"), &["--oci", "--no-base-cache"]);
    assert_ok(&b);
    let ((tar_a, oci_a), (tar_b, oci_b)) = (outputs(&a), outputs(&b));
    assert_eq!(oci_a.file_name().unwrap(), "mini-rootfs-v1.oci.tar");
    assert_eq!(sha256(&tar_a), sha256(&tar_b));
    assert_eq!(
        sha256(&oci_a),
        sha256(&oci_b),
        "same inputs, same OCI archive"
    );
    // Its own `.sha256`, in the tarball's sidecar format.
    let side = fs::read_to_string(format!("{}.sha256", oci_a.display())).unwrap();
    assert_eq!(
        side,
        format!("{}  mini-rootfs-v1.oci.tar\n", sha256(&oci_a))
    );

    // The layout as the spec names it, with the tarball's bytes as its one layer.
    let listing = run(Command::new("tar").arg("-tvf").arg(&oci_a));
    let listing = String::from_utf8_lossy(&listing.stdout);
    let tar_hex = sha256(&tar_a);
    for name in ["oci-layout", "index.json", "blobs/sha256/"] {
        assert!(listing.contains(name), "no {name} in:\n{listing}");
    }
    assert!(
        listing.contains(&format!("blobs/sha256/{tar_hex}")),
        "{listing}"
    );
    assert!(
        listing.lines().all(|l| l.contains("0/0")),
        "owners not 0/0:\n{listing}"
    );

    // ingot verify reads the archive (and its layer's digests).
    let v = Command::new(INGOT)
        .arg("verify")
        .arg(&oci_a)
        .output()
        .unwrap();
    assert!(v.status.success(), "{}", String::from_utf8_lossy(&v.stdout));

    // skopeo: the config and manifest as a registry client sees them.
    let inspect = run(Command::new("skopeo")
        .arg("inspect")
        .arg(format!("oci-archive:{}", oci_a.display())));
    let doc: serde_json::Value = serde_json::from_slice(&inspect.stdout).unwrap();
    let want_arch = match minidistro::host_arch().as_str() {
        "amd64" => "amd64",
        "arm64" => "arm64",
        other => panic!("add the OCI name of {other} to this test"),
    };
    assert_eq!(doc["Architecture"], want_arch, "{doc}");
    assert_eq!(doc["Os"], "linux");
    assert_eq!(doc["Labels"]["org.opencontainers.image.version"], "1");
    assert_eq!(doc["Layers"][0], format!("sha256:{tar_hex}"));
    let raw = run(Command::new("skopeo")
        .args(["inspect", "--config"])
        .arg(format!("oci-archive:{}", oci_a.display())));
    let config: serde_json::Value = serde_json::from_slice(&raw.stdout).unwrap();
    assert_eq!(config["config"]["Entrypoint"][0], "/sbin/init");
    let uncompressed = run(Command::new("sh")
        .arg("-c")
        .arg(format!("gzip -dc '{}' | sha256sum", tar_a.display())));
    let diff_id = String::from_utf8_lossy(&uncompressed.stdout)[..64].to_string();
    assert_eq!(config["rootfs"]["diff_ids"][0], format!("sha256:{diff_id}"));

    // skopeo copy back to an oci: directory, and umoci unpacks that.
    let layout = m.dir.join("layout");
    run(Command::new("skopeo")
        .arg("copy")
        .arg(format!("oci-archive:{}", oci_a.display()))
        .arg(format!("oci:{}:v1", layout.display())));
    let bundle = m.dir.join("bundle");
    run(Command::new("umoci")
        .args(["unpack", "--image"])
        .arg(format!("{}:v1", layout.display()))
        .arg(&bundle));
    let extracted = m.dir.join("extracted");
    fs::create_dir(&extracted).unwrap();
    run(Command::new("tar")
        .args(["--numeric-owner", "--xattrs", "--xattrs-include=*", "-xpzf"])
        .arg(&tar_a)
        .arg("-C")
        .arg(&extracted));
    let (want, got) = (tree(&extracted), tree(&bundle.join("rootfs")));
    assert!(want.len() > 20, "too few entries to compare: {want:?}");
    assert!(
        want.values().any(|v| v.contains("security.capability=")),
        "the tarball has no capability to compare: {want:?}"
    );
    let diff: Vec<_> = want
        .iter()
        .filter(|(k, v)| got.get(*k) != Some(v))
        .map(|(k, v)| format!("{k}: tar {v} / umoci {:?}", got.get(k)))
        .chain(
            got.keys()
                .filter(|k| !want.contains_key(*k))
                .map(|k| format!("{k}: only in umoci's tree")),
        )
        .collect();
    assert!(
        diff.is_empty(),
        "umoci's tree differs from the tarball's:\n{}",
        diff.join("\n")
    );
}

#[test]
fn a_zstd_oci_archive_has_a_zstd_layer() {
    mini_recipe::require_build_privileges();
    require_tool("skopeo");
    let m = mini_recipe::mini_recipe(&[], &[], FixtureOptions::default());
    let o = build(&m, &m.dir.join("out"), &["--oci", "--compression", "zstd"]);
    assert_ok(&o);
    let (tar, oci) = outputs(&o);
    let raw = run(Command::new("skopeo")
        .args(["inspect", "--raw"])
        .arg(format!("oci-archive:{}", oci.display())));
    let manifest: serde_json::Value = serde_json::from_slice(&raw.stdout).unwrap();
    assert_eq!(
        manifest["layers"][0]["mediaType"],
        "application/vnd.oci.image.layer.v1.tar+zstd"
    );
    assert_eq!(
        manifest["layers"][0]["digest"],
        format!("sha256:{}", sha256(&tar))
    );
    let v = Command::new(INGOT)
        .arg("verify")
        .arg(&oci)
        .output()
        .unwrap();
    assert!(v.status.success(), "{}", String::from_utf8_lossy(&v.stdout));
}

#[test]
fn an_oci_archive_that_cannot_be_made_is_refused_before_anything_is_written() {
    let m = mini_recipe::mini_recipe(&[], &[], FixtureOptions::default());
    let out = m.dir.join("out");
    let o = build(&m, &out, &["--oci", "--compression", "xz"]);
    assert_eq!(
        o.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("OCI layer cannot be xz"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    let left: Vec<_> = fs::read_dir(&out)
        .map(|d| {
            d.map(|e| e.unwrap().file_name())
                .filter(|n| !n.to_string_lossy().starts_with("."))
                .collect()
        })
        .unwrap_or_default();
    assert!(left.is_empty(), "left behind: {left:?}");
}

#[test]
fn a_tampered_oci_layer_is_refused_by_verify() {
    mini_recipe::require_build_privileges();
    let m = mini_recipe::mini_recipe(&[], &[], FixtureOptions::default());
    let o = build(&m, &m.dir.join("out"), &["--oci"]);
    assert_ok(&o);
    let (_, oci) = outputs(&o);
    let mut bytes = fs::read(&oci).unwrap();
    // The layer's gzip stream starts right after its header: flip a byte in its middle.
    let at = bytes.windows(2).position(|w| w == [0x1f, 0x8b]).unwrap() + 4096;
    bytes[at] ^= 0xff;
    let bad = m.dir.join("bad.oci.tar");
    fs::write(&bad, &bytes).unwrap();
    let v = Command::new(INGOT)
        .arg("verify")
        .arg(&bad)
        .output()
        .unwrap();
    assert_eq!(
        v.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&v.stdout)
    );
}

/// A small gzip tarball by GNU tar, wrapped by the library `build --oci` uses, with the
/// `diff_id` given.
fn wrapped(dir: &Path, diff_id: Option<&str>) -> PathBuf {
    fs::create_dir_all(dir).unwrap();
    let root = dir.join("root");
    fs::create_dir_all(root.join("etc")).unwrap();
    fs::write(root.join("etc/motd"), "hi\n").unwrap();
    let tarball = dir.join("layer.tar.gz");
    run(Command::new("tar")
        .args(["--numeric-owner", "--owner=0", "--group=0", "-czf"])
        .arg(&tarball)
        .arg("-C")
        .arg(&root)
        .arg("etc"));
    let bytes = fs::read(&tarball).unwrap();
    let mut plain = Vec::new();
    std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&bytes[..]), &mut plain).unwrap();
    let true_diff_id = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&plain));
    let layer_sha = sha256(&tarball);
    let archive = dir.join("x.oci.tar");
    ingot::oci::write_archive(
        &mut fs::File::create(&archive).unwrap(),
        &ingot::oci::OciImage {
            layer_path: &tarball,
            layer_sha256: &layer_sha,
            layer_size: bytes.len() as u64,
            compression: ingot::export::compress::Compression::Gzip,
            diff_id: diff_id.unwrap_or(&true_diff_id),
            debian_arch: "amd64",
            epoch: ingot::epoch::BuildEpoch(0),
            ref_name: "v1",
            version: "1",
            revision: "r",
            source: "s",
        },
    )
    .unwrap();
    archive
}

#[test]
fn verify_checks_the_layer_against_the_configs_diff_id() {
    let tmp = tempfile::tempdir().unwrap();
    let good = wrapped(&tmp.path().join("good"), None);
    // A readable archive: a report (this tiny tree breaks the contract, which is beside the
    // point), not an error.
    assert!(ingot::verify::verify_tarball(&good).is_ok());
    let bad = wrapped(&tmp.path().join("bad"), Some(&"0".repeat(64)));
    let err = ingot::verify::verify_tarball(&bad).unwrap_err().to_string();
    assert!(err.contains("diff_id"), "{err}");
}
