//! Safe extraction of `.deb` data: a benign package comes out exactly as GNU tar
//! (`--keep-directory-symlink`, as mmdebstrap runs it) extracts it, xattrs included; hostile
//! packages are refused or confined to the root, and nothing appears outside it.

#[path = "support/minidistro.rs"]
mod minidistro;
#[path = "support/privilege.rs"]
mod privilege;

use std::fs;
use std::os::unix::fs::{MetadataExt, symlink};
use std::path::{Path, PathBuf};
use std::process::Command;

use ingot::deb::{DebMember, with_member};
use ingot::stage::install::unpack::{UnpackError, extract_deb};
use minidistro::{Compression, Member, write_deb};

const CONTROL: &str = "Package: hostile\nVersion: 1\nArchitecture: all\nMaintainer: t <t@example.invalid>\nDescription: t\n";

fn deb(dir: &Path, name: &str, members: &[Member], compression: Compression) -> PathBuf {
    let path = dir.join(format!("{name}.deb"));
    write_deb(&path, CONTROL, &[], members, compression);
    path
}

/// Every entry under `dir`: path, type, mode, owner, mtime, contents or target, nlink, xattrs.
fn describe(dir: &Path) -> Vec<String> {
    fn walk(base: &Path, path: &Path, out: &mut Vec<String>) {
        let meta = path.symlink_metadata().unwrap();
        let rel = path.strip_prefix(base).unwrap().display().to_string();
        let what = if meta.file_type().is_symlink() {
            format!("link->{}", fs::read_link(path).unwrap().display())
        } else if meta.is_dir() {
            "dir".to_string()
        } else {
            format!(
                "file:{:?} nlink={}",
                String::from_utf8_lossy(&fs::read(path).unwrap()),
                meta.nlink()
            )
        };
        let mut xattrs = Vec::new();
        if !meta.file_type().is_symlink() {
            for name in xattr::list(path).unwrap() {
                let value = xattr::get(path, &name).unwrap().unwrap_or_default();
                xattrs.push(format!("{}={}", name.to_string_lossy(), hex::encode(value)));
            }
        }
        out.push(format!(
            "{rel:?} {what} mode={:o} owner={}:{} mtime={} xattrs={xattrs:?}",
            meta.mode() & 0o7777,
            meta.uid(),
            meta.gid(),
            if meta.file_type().is_symlink() {
                0
            } else {
                meta.mtime()
            },
        ));
        if meta.is_dir() {
            let mut children: Vec<PathBuf> = fs::read_dir(path)
                .unwrap()
                .map(|e| e.unwrap().path())
                .collect();
            children.sort();
            for c in children {
                walk(base, &c, out);
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out
}

fn benign_members() -> Vec<Member> {
    vec![
        Member::dir("./"),
        Member::dir("./usr/"),
        Member::dir("./usr/bin/"),
        Member::dir("./usr/lib/"),
        Member::symlink("./bin", "usr/bin"),
        // Relative: GNU tar on the host would follow an absolute one out of its -C directory.
        Member::symlink("./lib", "usr/lib"),
        Member::file("./usr/bin/ping", b"#!/bin/sh\necho ping\n", 0o755)
            .xattr("security.capability", &minidistro::cap_net_raw_p()),
        Member::file("./usr/bin/su", b"su\n", 0o4755),
        Member::dir("./var/"),
        Member::dir("./var/mail/").mode(0o2775).owner(0, 8),
        Member::file("./var/mail/box", b"mail\n", 0o660).owner(100, 8),
        Member::hardlink("./usr/bin/su-again", "./usr/bin/su"),
        Member::symlink("./usr/bin/sudo", "su"),
        Member::dir("./tmp/").mode(0o1777),
    ]
}

#[test]
fn benign_package_matches_gnu_tar_with_merged_usr() {
    privilege::require_root("extracting files owned by other users");
    let tmp = tempfile::tempdir().unwrap();
    let base = deb(tmp.path(), "base", &benign_members(), Compression::Zstd);
    // A second package written against the unmerged layout: ./bin/ls and ./lib/libx.
    let second_members = vec![
        Member::dir("./"),
        Member::dir("./bin/"),
        Member::file("./bin/ls", b"ls\n", 0o755),
        Member::dir("./lib/"),
        Member::file("./lib/libx.so", b"elf\n", 0o644),
    ];
    let second = deb(tmp.path(), "second", &second_members, Compression::Gzip);

    let ours = tmp.path().join("ours");
    fs::create_dir(&ours).unwrap();
    extract_deb(&ours, "base", &base).unwrap();
    extract_deb(&ours, "second", &second).unwrap();

    // The reference: GNU tar as mmdebstrap runs it.
    let reference = tmp.path().join("reference");
    fs::create_dir(&reference).unwrap();
    for (name, members) in [("base", benign_members()), ("second", second_members)] {
        let tarball = tmp.path().join(format!("{name}.tar"));
        fs::write(&tarball, minidistro::tar_bytes(&members)).unwrap();
        let status = Command::new("tar")
            .arg("-C")
            .arg(&reference)
            .args([
                "--keep-directory-symlink",
                "--xattrs",
                "--xattrs-include=*",
                "--numeric-owner",
                "-xpf",
            ])
            .arg(&tarball)
            .status()
            .unwrap();
        assert!(status.success());
    }
    assert_eq!(describe(&ours), describe(&reference));

    // Absolute symlinks resolve inside the root too. GNU tar cannot be the reference here
    // (on the host it follows them out of its -C directory), and the target is a directory
    // that exists both on the host (in the temp dir) and inside the root, so a broken
    // implementation would write to the temp dir, not to the real system.
    let host_lib = tmp.path().join("hostlib");
    fs::create_dir(&host_lib).unwrap();
    let host_lib_str = host_lib.display().to_string();
    let third = deb(
        tmp.path(),
        "third",
        &[
            Member::dir(&format!(".{host_lib_str}/")),
            Member::symlink("./lib64", &host_lib_str),
            Member::dir("./lib64/"),
            Member::file("./lib64/liby.so", b"elf64\n", 0o644),
        ],
        Compression::None,
    );
    extract_deb(&ours, "third", &third).unwrap();
    assert_eq!(fs::read_link(ours.join("lib64")).unwrap(), host_lib);
    let inside = ours.join(host_lib.strip_prefix("/").unwrap());
    assert_eq!(fs::read(inside.join("liby.so")).unwrap(), b"elf64\n");
    assert_eq!(fs::read_dir(&host_lib).unwrap().count(), 0);

    // And explicitly: merged /usr stayed, files landed under usr/.
    assert_eq!(
        fs::read_link(ours.join("bin")).unwrap(),
        Path::new("usr/bin")
    );
    assert_eq!(fs::read(ours.join("usr/bin/ls")).unwrap(), b"ls\n");
    assert_eq!(fs::read(ours.join("usr/lib/libx.so")).unwrap(), b"elf\n");
    let getcap = Command::new("getcap")
        .arg(ours.join("usr/bin/ping"))
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&getcap.stdout).contains("cap_net_raw=p"));
    let su = fs::metadata(ours.join("usr/bin/su")).unwrap();
    assert_eq!(su.mode() & 0o7777, 0o4755);
    assert_eq!(
        su.ino(),
        fs::metadata(ours.join("usr/bin/su-again")).unwrap().ino()
    );
}

/// A root and, beside it, an "outside" directory with a secret the packages go after.
struct Sandbox {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
    root: PathBuf,
    outside: PathBuf,
    outside_before: Vec<String>,
}

impl Sandbox {
    fn new() -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("a/b");
        let root = dir.join("root");
        let outside = tmp.path().join("outside");
        fs::create_dir_all(&root).unwrap();
        fs::create_dir_all(&outside).unwrap();
        fs::write(outside.join("secret"), "secret\n").unwrap();
        Sandbox {
            outside_before: describe(&outside),
            dir: tmp.path().to_path_buf(),
            _tmp: tmp,
            root,
            outside,
        }
    }

    /// Everything outside the root (and the .debs) must be exactly as set up.
    fn assert_outside_untouched(&self) {
        let mut seen = describe(&self.dir);
        seen.retain(|l| !l.starts_with("\"a/b/root") && !l.contains(".deb\""));
        let names: Vec<&str> = seen.iter().map(|l| l.split(' ').next().unwrap()).collect();
        assert_eq!(
            names,
            [
                "\"\"",
                "\"a\"",
                "\"a/b\"",
                "\"outside\"",
                "\"outside/secret\""
            ],
            "{seen:#?}"
        );
        assert_eq!(describe(&self.outside), self.outside_before);
        let secret = fs::metadata(self.outside.join("secret")).unwrap();
        assert_eq!(secret.nlink(), 1);
        assert_eq!(fs::read(self.outside.join("secret")).unwrap(), b"secret\n");
    }

    fn extract(&self, name: &str, members: &[Member]) -> Result<Vec<String>, UnpackError> {
        let deb = deb(&self.dir, name, members, Compression::Xz);
        extract_deb(&self.root, name, &deb)
    }
}

fn assert_refused(result: Result<Vec<String>, UnpackError>, package: &str, member: &str) {
    match result {
        Err(UnpackError::Refused {
            package: p,
            member: m,
            ..
        }) => {
            assert_eq!((p.as_str(), m.as_str()), (package, member));
        }
        other => panic!("{package}: expected {member:?} to be refused, got {other:?}"),
    }
}

#[test]
fn dot_dot_escape_is_refused() {
    privilege::require_root("extracting files owned by other users");
    let sb = Sandbox::new();
    let result = sb.extract(
        "dotdot",
        &[
            Member::dir("./"),
            Member::file("./../../escape", b"pwned\n", 0o644),
        ],
    );
    let err = result.as_ref().map(|_| ()).unwrap_err().to_string();
    assert!(
        err.contains("dotdot") && err.contains("../../escape"),
        "{err}"
    );
    assert_refused(result, "dotdot", "./../../escape");
    // Also in the middle of a path.
    assert_refused(
        sb.extract(
            "dotdot2",
            &[Member::file(
                "usr/../../../outside/secret",
                b"pwned\n",
                0o644,
            )],
        ),
        "dotdot2",
        "usr/../../../outside/secret",
    );
    sb.assert_outside_untouched();
}

#[test]
fn absolute_paths_are_refused() {
    privilege::require_root("extracting files owned by other users");
    let sb = Sandbox::new();
    let target = sb.outside.join("secret").display().to_string();
    assert_refused(
        sb.extract("absolute", &[Member::file(&target, b"pwned\n", 0o644)]),
        "absolute",
        &target,
    );
    assert_refused(
        sb.extract("passwd", &[Member::file("/etc/passwd", b"pwned\n", 0o644)]),
        "passwd",
        "/etc/passwd",
    );
    sb.assert_outside_untouched();
}

#[test]
fn writing_through_a_symlink_stays_inside_the_root() {
    privilege::require_root("extracting files owned by other users");
    let sb = Sandbox::new();
    let outside = sb.outside.display().to_string();
    // evil -> /…/outside (absolute), then evil/file: resolves to ROOT/…/outside, which does
    // not exist inside the root, so it is refused; nothing reaches the real directory.
    let result = sb.extract(
        "symlink-abs",
        &[
            Member::symlink("./evil", &outside),
            Member::file("./evil/secret", b"pwned\n", 0o644),
        ],
    );
    assert!(result.is_err(), "{result:?}");
    // rel -> ../../../outside: ".." stops at the root.
    let result = sb.extract(
        "symlink-rel",
        &[
            Member::symlink("./rel", "../../../outside"),
            Member::file("./rel/secret", b"pwned\n", 0o644),
        ],
    );
    assert!(result.is_err(), "{result:?}");
    // etc -> /etc with ROOT/etc present: the file is confined to ROOT/etc.
    sb.extract(
        "symlink-etc",
        &[
            Member::dir("./real-etc/"),
            Member::symlink("./etc", "/real-etc"),
            Member::symlink("./up", "../../.."),
            Member::file("./etc/passwd", b"inside\n", 0o644),
            Member::file("./up/real-etc/group", b"inside\n", 0o644),
        ],
    )
    .unwrap();
    assert_eq!(
        fs::read(sb.root.join("real-etc/passwd")).unwrap(),
        b"inside\n"
    );
    assert_eq!(
        fs::read(sb.root.join("real-etc/group")).unwrap(),
        b"inside\n"
    );
    // A directory member over a symlink to an outside directory (not present
    // inside the root): the symlink is replaced, the outside directory keeps its mode.
    sb.extract(
        "dir-over-link",
        &[
            Member::symlink("./d", &outside),
            Member::dir("./d/").mode(0o777),
        ],
    )
    .unwrap();
    assert!(fs::symlink_metadata(sb.root.join("d")).unwrap().is_dir());
    // evil2 -> /…/outside with the same directory present inside the root: confined there.
    sb.extract(
        "symlink-both",
        &[
            Member::dir(&format!(".{outside}/")),
            Member::symlink("./evil2", &outside),
            Member::file("./evil2/secret", b"pwned\n", 0o644),
        ],
    )
    .unwrap();
    let inside = sb.root.join(sb.outside.strip_prefix("/").unwrap());
    assert_eq!(fs::read(inside.join("secret")).unwrap(), b"pwned\n");
    // A file member replaces a symlink; it does not write through it.
    sb.extract(
        "replace-link",
        &[
            Member::symlink("./target", &format!("{outside}/secret")),
            Member::file("./target", b"replaced\n", 0o644),
        ],
    )
    .unwrap();
    assert!(
        fs::symlink_metadata(sb.root.join("target"))
            .unwrap()
            .is_file()
    );
    sb.assert_outside_untouched();
}

#[test]
fn hard_links_cannot_reach_outside() {
    privilege::require_root("extracting files owned by other users");
    let sb = Sandbox::new();
    assert_refused(
        sb.extract("hl-shadow", &[Member::hardlink("./shadow", "/etc/shadow")]),
        "hl-shadow",
        "./shadow",
    );
    assert_refused(
        sb.extract("hl-dotdot", &[Member::hardlink("./x", "../x")]),
        "hl-dotdot",
        "./x",
    );
    let outside = sb.outside.display().to_string();
    // Through a symlinked directory: resolved inside the root, where there is no secret.
    let result = sb.extract(
        "hl-through-link",
        &[
            Member::symlink("./o", &outside),
            Member::hardlink("./stolen", "./o/secret"),
        ],
    );
    assert!(result.is_err(), "{result:?}");
    assert!(!sb.root.join("stolen").exists());
    // A pre-existing symlink in the root pointing outside, as the link target itself: the
    // link is to the symlink, never to what it points at.
    symlink(sb.outside.join("secret"), sb.root.join("planted")).unwrap();
    sb.extract("hl-to-symlink", &[Member::hardlink("./copy", "./planted")])
        .unwrap();
    assert!(
        fs::symlink_metadata(sb.root.join("copy"))
            .unwrap()
            .file_type()
            .is_symlink()
    );
    sb.assert_outside_untouched();
}

#[test]
fn malformed_debs_are_reported() {
    let tmp = tempfile::tempdir().unwrap();
    let not_deb = tmp.path().join("junk.deb");
    fs::write(&not_deb, "this is not an ar archive at all").unwrap();
    let err = with_member(&not_deb, DebMember::Data, |_| Ok::<_, ()>(())).unwrap_err();
    assert!(err.to_string().contains("junk.deb"), "{err}");

    // An ar archive with a bzip2 data member (dpkg-deb dropped bzip2 for building long ago).
    let bz = tmp.path().join("bz.deb");
    let mut ar = ar::Builder::new(fs::File::create(&bz).unwrap());
    for (name, data) in [
        ("debian-binary", &b"2.0\n"[..]),
        ("control.tar.gz", &b""[..]),
        ("data.tar.bz2", &b"BZh"[..]),
    ] {
        ar.append(
            &ar::Header::new(name.as_bytes().to_vec(), data.len() as u64),
            data,
        )
        .unwrap();
    }
    drop(ar);
    let err = with_member(&bz, DebMember::Data, |_| Ok::<_, ()>(())).unwrap_err();
    assert!(err.to_string().contains("data.tar.bz2"), "{err}");

    // Wrong format version.
    let v3 = tmp.path().join("v3.deb");
    let mut ar = ar::Builder::new(fs::File::create(&v3).unwrap());
    ar.append(
        &ar::Header::new(b"debian-binary".to_vec(), 4),
        &b"3.0\n"[..],
    )
    .unwrap();
    drop(ar);
    let err = with_member(&v3, DebMember::Data, |_| Ok::<_, ()>(())).unwrap_err();
    assert!(err.to_string().contains("3.0"), "{err}");
}

#[test]
fn mount_points_in_the_root_are_left_alone() {
    privilege::require_root("extracting files owned by other users");
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    fs::create_dir_all(root.join("proc")).unwrap();
    // What the stage may have mounted before extraction (a tmpfs stands in for procfs).
    nix::mount::mount(
        Some("tmpfs"),
        &root.join("proc"),
        Some("tmpfs"),
        nix::mount::MsFlags::empty(),
        Some("mode=0700"),
    )
    .unwrap();
    struct Unmount(PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = nix::mount::umount2(&self.0, nix::mount::MntFlags::MNT_DETACH);
        }
    }
    let _guard = Unmount(root.join("proc"));
    let base = deb(
        tmp.path(),
        "base-files",
        &[
            Member::dir("./"),
            Member::dir("./proc/").mode(0o555),
            Member::dir("./etc/"),
        ],
        Compression::Gzip,
    );
    let skipped = extract_deb(&root, "base-files", &base).unwrap();
    assert_eq!(skipped, ["./proc/ (mount point)"]);
    let mode = fs::metadata(root.join("proc")).unwrap().mode() & 0o7777;
    assert_eq!(mode, 0o700, "the mounted filesystem was modified");
    assert!(root.join("etc").is_dir());
}
