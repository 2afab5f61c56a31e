//! Artifact versions: next/exact version choice, refusal to overwrite, concurrent `--next`
//! builds, clean failure, and a `.sha256` that `sha256sum -c` accepts.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Barrier};

use ingot::artifact::{
    ArtifactError, BuildInputs, Manifest, OutputDir, PackageRecord, SuiteRecord, VersionRequest,
};
use ingot::epoch::{BuildEpoch, EpochSource};
use ingot::export::compress::Compression;
use sha2::{Digest, Sha256};

const IMAGE: &str = "ubuntu-24.04-lxc-rootfs";

fn inputs() -> BuildInputs {
    BuildInputs {
        recipe_digest: "ab".repeat(32),
        build_epoch: BuildEpoch(1_700_000_000),
        epoch_source: EpochSource::InRelease,
        suites: vec![SuiteRecord {
            suite: "noble".into(),
            inrelease_url: "http://archive.ubuntu.com/ubuntu/dists/noble/InRelease".into(),
            inrelease_sha256: "cd".repeat(32),
        }],
        packages: vec![
            PackageRecord {
                name: "zlib1g".into(),
                version: "1:1.3.dfsg-3.1ubuntu2".into(),
                architecture: "amd64".into(),
                sha256: "01".repeat(32),
            },
            PackageRecord {
                name: "base-files".into(),
                version: "13ubuntu10".into(),
                architecture: "amd64".into(),
                sha256: "02".repeat(32),
            },
        ],
        stages: Vec::new(),
    }
}

/// Claims, writes `body`, publishes; returns the version.
fn publish(dir: &Path, request: VersionRequest, body: &[u8]) -> Result<u32, ArtifactError> {
    let out = OutputDir::lock(dir, IMAGE)?;
    let mut claim = out.claim(request, Compression::Gzip)?;
    claim.write_all(body).unwrap();
    let version = claim.version();
    claim.publish(inputs())?;
    Ok(version)
}

fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n != &format!(".{IMAGE}.lock"))
        .collect();
    names.sort();
    names
}

#[test]
fn next_counts_up_from_the_highest_version_of_any_compression() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    assert_eq!(publish(d, VersionRequest::Next, b"one").unwrap(), 1);
    assert_eq!(publish(d, VersionRequest::Next, b"two").unwrap(), 2);
    // A gap: v5 exists only as .tar.zst (published by hand), next is 6.
    std::fs::write(d.join(format!("{IMAGE}-v5.tar.zst")), b"zst").unwrap();
    assert_eq!(publish(d, VersionRequest::Next, b"six").unwrap(), 6);
    // The gap below stays usable exactly.
    assert_eq!(publish(d, VersionRequest::Exact(3), b"three").unwrap(), 3);
    // Other images and look-alikes do not count.
    std::fs::write(d.join(format!("{IMAGE}-extra-v40.tar.gz")), b"other").unwrap();
    std::fs::write(d.join(format!("{IMAGE}-v41-notes.txt")), b"not a version").unwrap();
    let out = OutputDir::lock(d, IMAGE).unwrap();
    assert_eq!(out.versions().unwrap(), vec![1, 2, 3, 5, 6]);
    assert_eq!(out.next_version().unwrap(), 7);
    drop(out);
    // A stray non-tar file of the next number pushes next past it rather than sharing it.
    std::fs::write(d.join(format!("{IMAGE}-v7.log")), b"log").unwrap();
    assert_eq!(publish(d, VersionRequest::Next, b"eight").unwrap(), 8);

    let listed = names(d);
    for v in [1, 2, 3, 6, 8] {
        for suffix in ["", ".sha256", ".manifest.json"] {
            let name = format!("{IMAGE}-v{v}.tar.gz{suffix}");
            assert!(listed.contains(&name), "{name} missing from {listed:?}");
        }
    }
    assert!(
        listed.iter().all(|n| !n.ends_with(".partial")),
        "{listed:?}"
    );
}

#[test]
fn an_existing_exact_version_is_refused_and_left_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    assert_eq!(
        publish(d, VersionRequest::Exact(4), b"original").unwrap(),
        4
    );
    let path = d.join(format!("{IMAGE}-v4.tar.gz"));
    let before = std::fs::read(&path).unwrap();
    let sidecar_before = std::fs::read(d.join(format!("{IMAGE}-v4.tar.gz.sha256"))).unwrap();
    match publish(d, VersionRequest::Exact(4), b"replacement") {
        Err(ArtifactError::VersionExists {
            version, existing, ..
        }) => {
            assert_eq!(version, 4);
            assert!(existing.starts_with(d));
        }
        other => panic!("expected VersionExists, got {other:?}"),
    }
    // Any file of the version blocks it, whatever the compression: even a lone sidecar.
    std::fs::write(d.join(format!("{IMAGE}-v9.tar.xz.manifest.json")), b"{}").unwrap();
    assert!(matches!(
        publish(d, VersionRequest::Exact(9), b"x"),
        Err(ArtifactError::VersionExists { version: 9, .. })
    ));
    assert!(matches!(
        publish(d, VersionRequest::Exact(0), b"x"),
        Err(ArtifactError::VersionZero)
    ));
    assert_eq!(std::fs::read(&path).unwrap(), before);
    assert_eq!(
        std::fs::read(d.join(format!("{IMAGE}-v4.tar.gz.sha256"))).unwrap(),
        sidecar_before
    );
    assert!(names(d).iter().all(|n| !n.ends_with(".partial")));
}

#[test]
fn concurrent_next_builds_get_different_versions() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_path_buf();
    publish(&d, VersionRequest::Next, b"seed").unwrap();
    let n = 4;
    let barrier = Arc::new(Barrier::new(n));
    let handles: Vec<_> = (0..n)
        .map(|i| {
            let d = d.clone();
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                barrier.wait();
                let out = OutputDir::lock(&d, IMAGE).unwrap();
                let mut claim = out.claim(VersionRequest::Next, Compression::Gzip).unwrap();
                // Hold the claim a while: without the lock, everyone would pick 2.
                std::thread::sleep(std::time::Duration::from_millis(100));
                claim.write_all(format!("build {i}").as_bytes()).unwrap();
                let version = claim.version();
                claim.publish(inputs()).unwrap();
                version
            })
        })
        .collect();
    let mut versions: Vec<u32> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    versions.sort();
    assert_eq!(versions, vec![2, 3, 4, 5]);
}

#[test]
fn try_lock_reports_a_busy_directory() {
    let dir = tempfile::tempdir().unwrap();
    let held = OutputDir::lock(dir.path(), IMAGE).unwrap();
    assert!(OutputDir::try_lock(dir.path(), IMAGE).unwrap().is_none());
    // Another image in the same directory is independent.
    assert!(
        OutputDir::try_lock(dir.path(), "debian-12")
            .unwrap()
            .is_some()
    );
    drop(held);
    assert!(OutputDir::try_lock(dir.path(), IMAGE).unwrap().is_some());
}

#[test]
fn a_failed_build_leaves_no_temp_and_no_final_file() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    publish(d, VersionRequest::Next, b"good v1").unwrap();
    let before = names(d);
    {
        let out = OutputDir::lock(d, IMAGE).unwrap();
        let mut claim = out.claim(VersionRequest::Next, Compression::Gzip).unwrap();
        claim.write_all(b"half an image").unwrap();
        claim.flush().unwrap();
        assert!(claim.temp_path().exists());
        assert!(claim.temp_path().starts_with(d));
        // The build fails here: the claim is dropped unpublished.
    }
    assert_eq!(names(d), before);

    // Publishing onto a name that appeared behind the lock's back fails cleanly too.
    let out = OutputDir::lock(d, IMAGE).unwrap();
    let mut claim = out.claim(VersionRequest::Next, Compression::Gzip).unwrap();
    claim.write_all(b"second build").unwrap();
    let intruder = claim.final_path();
    std::fs::write(&intruder, b"written without the lock").unwrap();
    let err = claim.publish(inputs()).unwrap_err();
    assert!(matches!(err, ArtifactError::Publish { .. }), "{err:?}");
    assert_eq!(
        std::fs::read(&intruder).unwrap(),
        b"written without the lock"
    );
    let after = names(d);
    assert!(after.iter().all(|n| !n.ends_with(".partial")), "{after:?}");
    assert!(
        !after.contains(&format!("{IMAGE}-v2.tar.gz.sha256")),
        "{after:?}"
    );
    assert!(
        !after.contains(&format!("{IMAGE}-v2.tar.gz.manifest.json")),
        "{after:?}"
    );
    drop(out);

    // A temp file left by a killed build is cleaned up by the next lock holder.
    let stale = d.join(format!(".{IMAGE}-v3.tar.gz.abc123.partial"));
    std::fs::write(&stale, b"killed").unwrap();
    let _out = OutputDir::lock(d, IMAGE).unwrap();
    assert!(!stale.exists());
}

#[test]
fn sha256_file_passes_sha256sum_and_manifest_describes_the_output() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let body: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    let out = OutputDir::lock(d, IMAGE).unwrap();
    let mut claim = out.claim(VersionRequest::Next, Compression::Zstd).unwrap();
    claim.write_all(&body).unwrap();
    let published = claim.publish(inputs()).unwrap();
    drop(out);
    assert_eq!(
        published.path.file_name().unwrap(),
        format!("{IMAGE}-v1.tar.zst").as_str()
    );

    // Readable by others (the test process runs with umask 022), unlike a 0600 temp file.
    for path in [
        &published.path,
        &published.sha256_path,
        &published.manifest_path,
    ] {
        let mode = std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o644 & !current_umask(), "{}", path.display());
    }

    let check = Command::new("sha256sum")
        .arg("-c")
        .arg(published.sha256_path.file_name().unwrap())
        .current_dir(d)
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&check.stdout),
        format!("{IMAGE}-v1.tar.zst: OK\n")
    );

    // Tampering is caught by the same file.
    std::fs::write(&published.path, b"tampered").unwrap();
    let check = Command::new("sha256sum")
        .arg("-c")
        .arg(&published.sha256_path)
        .current_dir(d)
        .output()
        .unwrap();
    assert!(!check.status.success());

    let manifest: Manifest =
        serde_json::from_slice(&std::fs::read(&published.manifest_path).unwrap()).unwrap();
    assert_eq!(manifest, published.manifest);
    assert_eq!(manifest.output.sha256, hex::encode(Sha256::digest(&body)));
    assert_eq!(manifest.output.size, body.len() as u64);
    assert_eq!(manifest.output.file, format!("{IMAGE}-v1.tar.zst"));
    assert_eq!(manifest.version, 1);
    assert_eq!(manifest.build_epoch, BuildEpoch(1_700_000_000));
    assert_eq!(manifest.suites.len(), 1);
    let names: Vec<&str> = manifest.packages.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["base-files", "zlib1g"]);
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&published.manifest_path).unwrap()).unwrap();
    assert_eq!(json["epoch_source"], "in-release");
    assert_eq!(json["build_epoch"], 1_700_000_000);
    assert_eq!(json["output"]["compression"], "zstd");
}

/// The process umask (read without changing it for long: set and restore).
fn current_umask() -> u32 {
    let old = nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o022));
    nix::sys::stat::umask(old);
    old.bits()
}
