//! Hostile images against `ingot verify`: tar spellings that GNU tar extracts to a bad file,
//! ambiguous archives, keys wrapped at odd widths, pathological sshd globs, and an archive
//! built to exhaust memory. Every test builds its tarball here (raw tar headers, so that any
//! spelling can be written) and fails if `verify` accepts the bad image.
//!
//! Where it matters, the test also extracts the tarball with GNU tar and checks that the bad
//! content really lands where the rule looks, so a test cannot pass on an archive that was
//! harmless anyway.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use ingot::verify::{Report, Rule, verify_reader};

/// One raw tar member: the name is written byte for byte into the header.
enum Raw<'a> {
    Dir(&'a str),
    File(&'a str, &'a [u8]),
    Symlink(&'a str, &'a str),
    HardLink(&'a str, &'a str),
}

fn header(name: &str, kind: tar::EntryType, size: u64, mode: u32) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    {
        let gnu = h.as_gnu_mut().expect("a GNU header");
        assert!(
            name.len() < gnu.name.len(),
            "name too long for the test: {name}"
        );
        gnu.name[..name.len()].copy_from_slice(name.as_bytes());
    }
    h.set_entry_type(kind);
    h.set_size(size);
    h.set_mode(mode);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(1_700_000_000);
    h
}

fn link_header(name: &str, kind: tar::EntryType, target: &str) -> tar::Header {
    let mut h = header(name, kind, 0, 0o777);
    let gnu = h.as_gnu_mut().expect("a GNU header");
    gnu.linkname[..target.len()].copy_from_slice(target.as_bytes());
    h.set_cksum();
    h
}

/// A plain tar of the good base image followed by `extra` members.
fn tar_of(extra: &[Raw<'_>]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let mut put = |raw: &Raw<'_>| match raw {
        Raw::Dir(n) => {
            let mut h = header(n, tar::EntryType::Directory, 0, dir_mode(n));
            h.set_cksum();
            b.append(&h, std::io::empty()).unwrap();
        }
        Raw::File(n, data) => {
            let mode = if n.contains("systemd/systemd") {
                0o755
            } else {
                0o644
            };
            let mut h = header(n, tar::EntryType::Regular, data.len() as u64, mode);
            h.set_cksum();
            b.append(&h, *data).unwrap();
        }
        Raw::Symlink(n, t) => {
            b.append(
                &link_header(n, tar::EntryType::Symlink, t),
                std::io::empty(),
            )
            .unwrap();
        }
        Raw::HardLink(n, t) => {
            b.append(&link_header(n, tar::EntryType::Link, t), std::io::empty())
                .unwrap();
        }
    };
    for raw in base() {
        put(&raw);
    }
    for raw in extra {
        put(raw);
    }
    b.into_inner().unwrap()
}

fn dir_mode(name: &str) -> u32 {
    match name.trim_end_matches('/') {
        "tmp" | "var/tmp" => 0o1777,
        "root" => 0o700,
        _ => 0o755,
    }
}

const SHADOW_LOCKED: &[u8] = b"root:*:19000:0:99999:7:::\n";
const SHADOW_HASH: &[u8] =
    b"root:$6$salt$0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJ:19000:0:99999:7:::\n";
const SSHD_MAIN: &[u8] = b"Include /etc/ssh/sshd_config.d/*.conf\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n";
const OPENSSH_BODY: &str = "b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZWQyNTUxOQAAACDqYmtTUDe1pQ5EH9Ofe7gSE9LZ4S0K9P0ckVWGc6gMPAAAAJhDoSRgQ6Ek";

/// A minimal image that honours the contract (checked by `the_base_image_passes`).
fn base() -> Vec<Raw<'static>> {
    let mut v = Vec::new();
    for d in [
        "etc",
        "etc/ssh",
        "etc/ssh/sshd_config.d",
        "usr",
        "usr/bin",
        "usr/sbin",
        "usr/lib",
        "usr/lib/systemd",
        "var",
        "var/lib",
        "var/lib/apt",
        "var/lib/apt/lists",
        "var/log",
        "var/cache",
        "var/cache/apt",
        "var/tmp",
        "root",
        "tmp",
        "run",
        "home",
    ] {
        v.push(Raw::Dir(d));
    }
    v.push(Raw::Symlink("bin", "usr/bin"));
    v.push(Raw::Symlink("sbin", "usr/sbin"));
    v.push(Raw::Symlink("lib", "usr/lib"));
    v.push(Raw::File("usr/lib/systemd/systemd", b"\x7fELF"));
    v.push(Raw::Symlink("usr/sbin/init", "../lib/systemd/systemd"));
    v.push(Raw::File(
        "etc/passwd",
        b"root:x:0:0:root:/root:/bin/bash\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n",
    ));
    v.push(Raw::File("etc/shadow", SHADOW_LOCKED));
    v.push(Raw::File("etc/group", b"root:x:0:\n"));
    v.push(Raw::File("etc/gshadow", b"root:*::\n"));
    v.push(Raw::File("etc/machine-id", b""));
    v.push(Raw::File("etc/hostname", b"localhost\n"));
    v.push(Raw::Symlink(
        "etc/resolv.conf",
        "../run/systemd/resolve/stub-resolv.conf",
    ));
    v.push(Raw::File(
        "usr/lib/os-release",
        b"ID=ubuntu\nVERSION_ID=\"24.04\"\n",
    ));
    v.push(Raw::Symlink("etc/os-release", "../usr/lib/os-release"));
    v.push(Raw::File(
        "etc/lsb-release",
        b"DISTRIB_ID=Ubuntu\nDISTRIB_RELEASE=24.04\n",
    ));
    v.push(Raw::File("etc/ssh/sshd_config", SSHD_MAIN));
    v.push(Raw::File(
        "etc/ssh/sshd_config.d/00-golden.conf",
        b"PermitRootLogin prohibit-password\n",
    ));
    v
}

fn verify(bytes: &[u8]) -> Report {
    verify_reader(Path::new("hostile.tar"), bytes).expect("a readable tarball")
}

fn assert_breaks(report: &Report, rule: Rule, path: &str) {
    assert!(
        report.violations_of(rule).any(|v| v.path == path),
        "verify must report {rule} at {path}; got:\n{report}"
    );
}

/// Extract with GNU tar and return the file at `rel`: proves what a real extraction yields.
fn gnu_tar_extracts(bytes: &[u8], rel: &str) -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let tarball = dir.path().join("t.tar");
    std::fs::write(&tarball, bytes).unwrap();
    let root = dir.path().join("root");
    std::fs::create_dir(&root).unwrap();
    let out = Command::new("tar")
        .arg("-xf")
        .arg(&tarball)
        .arg("-C")
        .arg(&root)
        .output()
        .expect("GNU tar must be installed to run this test");
    assert!(out.status.success(), "tar -x: {out:?}");
    std::fs::read(root.join(rel)).unwrap_or_else(|e| panic!("{rel} after extraction: {e}"))
}

/// `verify` finds that sshd's effective PasswordAuthentication is `yes`.
fn assert_password_authentication_wins(bytes: &[u8]) {
    let report = verify(bytes);
    assert!(
        report
            .violations_of(Rule::SshdConfig)
            .any(|v| v.detail.contains("PasswordAuthentication is yes")),
        "{report}"
    );
}

#[test]
fn the_base_image_passes() {
    let report = verify(&tar_of(&[]));
    assert!(report.ok(), "{report}");
}

#[test]
fn a_password_hash_at_etc_double_slash_shadow_is_caught() {
    // GNU tar writes the double-slash spelling over the base's locked etc/shadow.
    let bytes = tar_of(&[Raw::File("etc//shadow", SHADOW_HASH)]);
    assert_eq!(gnu_tar_extracts(&bytes, "etc/shadow"), SHADOW_HASH);
    let report = verify(&bytes);
    assert_breaks(&report, Rule::Passwords, "/etc/shadow");
}

#[test]
fn password_authentication_at_etc_dot_ssh_is_caught() {
    let bytes = tar_of(&[Raw::File(
        "etc/./ssh/sshd_config.d/01-evil.conf",
        b"PasswordAuthentication yes\n",
    )]);
    assert_eq!(
        gnu_tar_extracts(&bytes, "etc/ssh/sshd_config.d/01-evil.conf"),
        b"PasswordAuthentication yes\n"
    );
    assert_password_authentication_wins(&bytes);
}

#[test]
fn leading_dot_slash_and_trailing_slashes_name_the_same_paths() {
    let bytes = tar_of(&[
        Raw::Dir("./root/.ssh/"),
        Raw::File("./etc/ssh//ssh_host_ed25519_key", b"x"),
    ]);
    let report = verify(&bytes);
    assert_breaks(&report, Rule::RootSsh, "/root/.ssh");
    assert_breaks(&report, Rule::HostKeys, "/etc/ssh/ssh_host_ed25519_key");
}

#[test]
fn a_second_entry_for_one_path_is_a_violation() {
    // GNU tar keeps the last: an innocent first copy must not hide it.
    let bytes = tar_of(&[Raw::File("etc/hostname", b"buildhost-42\n")]);
    assert_eq!(gnu_tar_extracts(&bytes, "etc/hostname"), b"buildhost-42\n");
    let report = verify(&bytes);
    assert_breaks(&report, Rule::RootLayout, "/etc/hostname");
}

#[test]
fn a_hard_link_whose_target_is_redefined_is_a_violation() {
    // etc/shadow is re-pointed: a link captures the bad bytes, then the target is redefined
    // clean. GNU tar leaves the link with the first (bad) content.
    let bytes = tar_of(&[
        Raw::File("var/lib/stash", SHADOW_HASH),
        Raw::HardLink("etc/gshadow", "var/lib/stash"),
        Raw::File("var/lib/stash", b"root:*::\n"),
    ]);
    assert_eq!(gnu_tar_extracts(&bytes, "etc/gshadow"), SHADOW_HASH);
    let report = verify(&bytes);
    assert!(
        report
            .violations_of(Rule::RootLayout)
            .any(|v| v.path == "/var/lib/stash" && v.detail.contains("hard link")),
        "{report}"
    );
}

fn wrapped(body: &str, width: usize) -> String {
    body.as_bytes()
        .chunks(width)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn an_openssh_key_wrapped_at_16_columns_is_caught() {
    let key = format!(
        "-----BEGIN OPENSSH PRIVATE KEY-----\n{}\n-----END OPENSSH PRIVATE KEY-----\n",
        wrapped(OPENSSH_BODY, 16)
    );
    let bytes = tar_of(&[Raw::File("usr/share/doc/key", key.as_bytes())]);
    assert_breaks(&verify(&bytes), Rule::PrivateKeys, "/usr/share/doc/key");
}

#[test]
fn a_pem_key_wrapped_at_16_columns_is_caught() {
    // An Ed25519 PKCS#8 key, as `openssl genpkey -algorithm ed25519` writes it, re-wrapped.
    let body = "MC4CAQAwBQYDK2VwBCIEIBhGgFYq3pZ5D8CSgKZR3xpDqVOJFE2CgVbUqJ3NNvbM";
    let key = format!(
        "-----BEGIN PRIVATE KEY-----\r\n{}\r\n-----END PRIVATE KEY-----\r\n",
        wrapped(body, 16).replace('\n', "\r\n")
    );
    let bytes = tar_of(&[Raw::File("opt/app/tls.key", key.as_bytes())]);
    assert_breaks(&verify(&bytes), Rule::PrivateKeys, "/opt/app/tls.key");
}

#[test]
fn an_include_glob_of_many_stars_is_evaluated_without_blowing_up() {
    // Exponential in a recursive matcher (40 stars against long names that never match);
    // the test would not finish in reasonable time there.
    let pattern = "*a".repeat(40) + "b";
    let main = format!("Include /etc/ssh/sshd_config.d/{pattern}\nPasswordAuthentication yes\n");
    let long = format!("etc/ssh/sshd_config.d/{}", "a".repeat(70));
    let bytes = tar_of(&[
        Raw::File(&long, b"PasswordAuthentication no\n"),
        Raw::File("etc/ssh/sshd_config", main.as_bytes()),
    ]);
    // The duplicate sshd_config is ambiguous, and the evaluated value is the winning `yes`.
    assert_password_authentication_wins(&bytes);
}

/// Peak RSS (KiB) of `ingot verify <tarball>`, measured by GNU time.
fn verify_peak_rss_kib(tarball: &Path) -> (u64, Option<i32>) {
    let time = Path::new("/usr/bin/time");
    assert!(
        time.exists(),
        "this test measures memory with GNU time: install it (apt-get install time)"
    );
    let out = Command::new(time)
        .arg("-v")
        .arg(env!("CARGO_BIN_EXE_ingot"))
        .arg("verify")
        .arg(tarball)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let kib = stderr
        .lines()
        .find_map(|l| {
            l.trim()
                .strip_prefix("Maximum resident set size (kbytes): ")
        })
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no peak RSS in GNU time's output: {stderr}"));
    (kib, out.status.code())
}

#[test]
fn two_thousand_padded_files_under_etc_keep_verify_memory_bounded() {
    // 2 000 files of 256 KiB of zeros under etc/: 500 MiB of content in a tiny .tar.xz.
    let dir = tempfile::tempdir().unwrap();
    let tarball: PathBuf = dir.path().join("many.tar.xz");
    {
        let f = std::fs::File::create(&tarball).unwrap();
        let xz = liblzma::write::XzEncoder::new(f, 1);
        let mut b = tar::Builder::new(xz);
        let zeros = vec![0u8; 256 * 1024];
        for raw in base() {
            if let Raw::Dir(d) = raw {
                let mut h = header(d, tar::EntryType::Directory, 0, dir_mode(d));
                h.set_cksum();
                b.append(&h, std::io::empty()).unwrap();
            }
        }
        b.append(
            &{
                let mut h = header("etc/many", tar::EntryType::Directory, 0, 0o755);
                h.set_cksum();
                h
            },
            std::io::empty(),
        )
        .unwrap();
        for i in 0..2000 {
            let mut h = header(
                &format!("etc/many/f{i:04}.conf"),
                tar::EntryType::Regular,
                zeros.len() as u64,
                0o644,
            );
            h.set_cksum();
            b.append(&h, &zeros[..]).unwrap();
        }
        b.into_inner().unwrap().finish().unwrap().flush().unwrap();
    }
    assert!(std::fs::metadata(&tarball).unwrap().len() < 1 << 20);
    let (kib, status) = verify_peak_rss_kib(&tarball);
    // A verdict (this image lacks most of the contract), not a crash or an out-of-memory kill.
    assert_eq!(status, Some(1), "ingot verify must give a verdict");
    assert!(
        kib < 128 * 1024,
        "verify peaked at {kib} KiB on 2 000 padded files; memory must stay bounded"
    );
}
