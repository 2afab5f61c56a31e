//! Hostile package contents against the extraction of `.deb` data (the path the Essential set
//! takes, from Rust): device nodes and FIFOs, a setuid file owned by an id no container maps,
//! and a `data.tar` that expands far beyond its `Installed-Size`. Each `.deb` is written by hand
//! (`support/minidistro.rs`), so that any header can be forged; each test fails if the bad
//! member lands in the root, or anything lands outside it.

#[path = "support/minidistro.rs"]
mod minidistro;

use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

use ingot::stage::install::unpack::{UnpackError, extract_deb};
use minidistro::{Compression, Member, MemberKind, write_deb};

fn control(installed_size: Option<u64>) -> String {
    let mut c = String::from(
        "Package: hostile\nVersion: 1\nArchitecture: all\nMaintainer: t <t@example.invalid>\n",
    );
    if let Some(kib) = installed_size {
        c.push_str(&format!("Installed-Size: {kib}\n"));
    }
    c.push_str("Description: t\n");
    c
}

/// Extract a hand-written `.deb` of `members` into `<tmp>/root`; `<tmp>/outside` must stay
/// empty whatever happens.
fn extract(
    members: &[Member],
    installed_size: Option<u64>,
) -> (tempfile::TempDir, Result<Vec<String>, UnpackError>) {
    assert!(
        nix::unistd::geteuid().is_root(),
        "extraction with foreign owners needs root (CI runs the hermetic suite as root)"
    );
    let dir = tempfile::tempdir().unwrap();
    let deb = dir.path().join("hostile.deb");
    write_deb(
        &deb,
        &control(installed_size),
        &[],
        members,
        Compression::Xz,
    );
    fs::create_dir(dir.path().join("root")).unwrap();
    fs::create_dir(dir.path().join("outside")).unwrap();
    let result = extract_deb(&dir.path().join("root"), "hostile", &deb);
    let outside: Vec<_> = fs::read_dir(dir.path().join("outside"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(outside.is_empty(), "written outside the root: {outside:?}");
    (dir, result)
}

fn refused_member(result: &Result<Vec<String>, UnpackError>) -> (String, String) {
    match result {
        Err(UnpackError::Refused { member, reason, .. }) => (member.clone(), reason.clone()),
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[test]
fn a_device_node_in_data_tar_is_never_created() {
    let dev = Member {
        kind: MemberKind::CharDevice(1, 3),
        mode: 0o666,
        ..Member::dir("./usr/lib/null")
    };
    let (dir, result) = extract(
        &[
            Member::dir("./"),
            Member::dir("./usr"),
            Member::dir("./usr/lib"),
            dev,
        ],
        None,
    );
    let skipped = result.expect("a device node is skipped, not fatal");
    assert!(
        skipped.iter().any(|m| m.contains("usr/lib/null")),
        "{skipped:?}"
    );
    assert!(fs::symlink_metadata(dir.path().join("root/usr/lib/null")).is_err());
}

#[test]
fn a_fifo_is_created_inside_the_root_only() {
    let fifo = |path: &str| Member {
        kind: MemberKind::Fifo,
        mode: 0o644,
        ..Member::dir(path)
    };
    let outside = "../outside";
    let (dir, result) = extract(
        &[
            Member::dir("./"),
            Member::dir("./run"),
            fifo("./run/ctl"),
            // A symlinked directory that points outside, then a FIFO through it.
            Member::symlink("./escape", outside),
            fifo("./escape/planted"),
        ],
        None,
    );
    // The FIFO through the escaping symlink is refused or confined; never outside.
    let _ = result;
    let ctl = fs::symlink_metadata(dir.path().join("root/run/ctl")).unwrap();
    assert!(ctl.file_type().is_fifo());
    assert_eq!(ctl.mode() & 0o7777, 0o644);
    // `extract` already checked that nothing appeared in <tmp>/outside.
    assert!(!Path::new(&dir.path().join("outside/planted")).exists());
}

#[test]
fn a_setuid_file_owned_by_a_uid_above_65535_is_refused() {
    let (dir, result) = extract(
        &[
            Member::dir("./"),
            Member::dir("./usr"),
            Member::file("./usr/su", b"\x7fELF", 0o4755).owner(100000, 0),
        ],
        None,
    );
    let (member, reason) = refused_member(&result);
    assert_eq!(member, "./usr/su");
    assert!(
        reason.contains("100000") && reason.contains("65535"),
        "{reason}"
    );
    assert!(fs::symlink_metadata(dir.path().join("root/usr/su")).is_err());
}

#[test]
fn a_data_tar_expanding_far_beyond_installed_size_is_refused() {
    // 64 MiB of zeros (a few KiB of xz) in a package that says it installs 4 KiB.
    let bomb = vec![0u8; 64 << 20];
    let (dir, result) = extract(
        &[
            Member::dir("./"),
            Member::file("./small", b"ok", 0o644),
            Member::file("./bomb", &bomb, 0o644),
        ],
        Some(4),
    );
    let (member, reason) = refused_member(&result);
    assert_eq!(member, "./bomb");
    assert!(reason.contains("Installed-Size"), "{reason}");
    assert!(fs::symlink_metadata(dir.path().join("root/bomb")).is_err());
    // A package within its size extracts.
    let (dir, result) = extract(
        &[
            Member::dir("./"),
            Member::file("./small", &[1u8; 3000], 0o644),
        ],
        Some(3),
    );
    result.expect("within Installed-Size");
    assert_eq!(fs::read(dir.path().join("root/small")).unwrap().len(), 3000);
}
