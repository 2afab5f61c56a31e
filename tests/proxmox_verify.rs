//! `ingot verify --proxmox`: each thing Proxmox VE's container setup reads or writes, broken
//! on purpose in an otherwise good image, is found as a violation of its own rule with one
//! line — and the good image passes, so that no rule can pass by finding nothing.

use std::collections::BTreeMap;
use std::path::Path;

use ingot::verify::{Report, Rule, VerifyOptions, verify_reader, verify_reader_with};

#[derive(Clone)]
enum Entry {
    Dir,
    File(Vec<u8>),
    Symlink(&'static str),
}

/// An ELF header of `class` (1 = 32-bit, 2 = 64-bit), little-endian, for `machine`.
fn elf(class: u8, machine: u16) -> Vec<u8> {
    let mut h = vec![0x7f, b'E', b'L', b'F', class, 1, 1, 0];
    h.resize(16, 0);
    h.extend_from_slice(&3u16.to_le_bytes()); // ET_DYN
    h.extend_from_slice(&machine.to_le_bytes());
    h.resize(64, 0);
    h
}

/// A good amd64 Ubuntu-like image for Proxmox.
fn base() -> BTreeMap<String, (Entry, u64)> {
    let mut m = BTreeMap::new();
    let mut put = |p: &str, e: Entry| {
        m.insert(p.to_string(), (e, 0));
    };
    for d in [
        "dev",
        "etc",
        "etc/ssh",
        "etc/ssh/sshd_config.d",
        "home",
        "root",
        "run",
        "tmp",
        "usr",
        "usr/bin",
        "usr/lib",
        "usr/lib/systemd",
        "usr/lib/x86_64-linux-gnu",
        "usr/lib/x86_64-linux-gnu/systemd",
        "usr/sbin",
        "var",
        "var/cache",
        "var/cache/apt",
        "var/lib",
        "var/lib/apt",
        "var/lib/apt/lists",
        "var/log",
        "var/tmp",
    ] {
        put(d, Entry::Dir);
    }
    put("bin", Entry::Symlink("usr/bin"));
    put("sbin", Entry::Symlink("usr/sbin"));
    put("lib", Entry::Symlink("usr/lib"));
    put("usr/bin/dash", Entry::File(elf(2, 62)));
    put("usr/bin/sh", Entry::Symlink("dash"));
    put("usr/lib/systemd/systemd", Entry::File(elf(2, 62)));
    put(
        "usr/lib/x86_64-linux-gnu/systemd/libsystemd-shared-255.so",
        Entry::File(elf(2, 62)),
    );
    put("usr/sbin/init", Entry::Symlink("../lib/systemd/systemd"));
    put(
        "etc/passwd",
        Entry::File(b"root:x:0:0:root:/root:/bin/sh\n".to_vec()),
    );
    put(
        "etc/shadow",
        Entry::File(b"root:*:19000:0:99999:7:::\n".to_vec()),
    );
    put("etc/group", Entry::File(b"root:x:0:\n".to_vec()));
    put("etc/gshadow", Entry::File(b"root:*::\n".to_vec()));
    put("etc/machine-id", Entry::File(Vec::new()));
    put("etc/hostname", Entry::File(b"localhost\n".to_vec()));
    put("etc/hosts", Entry::File(b"127.0.0.1 localhost\n".to_vec()));
    put(
        "etc/resolv.conf",
        Entry::Symlink("../run/systemd/resolve/stub-resolv.conf"),
    );
    put(
        "usr/lib/os-release",
        Entry::File(b"ID=ubuntu\nVERSION_ID=\"24.04\"\n".to_vec()),
    );
    put("etc/os-release", Entry::Symlink("../usr/lib/os-release"));
    put(
        "etc/lsb-release",
        Entry::File(b"DISTRIB_ID=Ubuntu\nDISTRIB_RELEASE=24.04\n".to_vec()),
    );
    put(
        "etc/ssh/sshd_config",
        Entry::File(b"PasswordAuthentication no\nKbdInteractiveAuthentication no\nPermitRootLogin prohibit-password\n".to_vec()),
    );
    m
}

fn tar_of(image: &BTreeMap<String, (Entry, u64)>) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (path, (entry, owner)) in image {
        let mut h = tar::Header::new_gnu();
        h.set_uid(*owner);
        h.set_gid(0);
        h.set_mtime(1_700_000_000);
        match entry {
            Entry::Dir => {
                h.set_entry_type(tar::EntryType::Directory);
                h.set_mode(match path.as_str() {
                    "tmp" | "var/tmp" => 0o1777,
                    "root" => 0o700,
                    _ => 0o755,
                });
                h.set_size(0);
                b.append_data(&mut h, path, std::io::empty()).unwrap();
            }
            Entry::File(data) => {
                h.set_entry_type(tar::EntryType::Regular);
                h.set_mode(if path.contains("bin/") || path.ends_with("systemd") {
                    0o755
                } else {
                    0o644
                });
                h.set_size(data.len() as u64);
                b.append_data(&mut h, path, &data[..]).unwrap();
            }
            Entry::Symlink(target) => {
                h.set_entry_type(tar::EntryType::Symlink);
                h.set_mode(0o777);
                h.set_size(0);
                b.append_link(&mut h, path, target).unwrap();
            }
        }
    }
    b.into_inner().unwrap()
}

fn proxmox(image: &BTreeMap<String, (Entry, u64)>) -> Report {
    verify_reader_with(
        Path::new("pve.tar"),
        &tar_of(image)[..],
        &VerifyOptions {
            proxmox: true,
            architecture: Some("amd64".into()),
        },
    )
    .expect("a readable tarball")
}

/// The only violations are of `rule`, exactly `count` of them, each one line naming `path`.
fn only(report: &Report, rule: Rule, path: &str) {
    assert!(
        !report.violations.is_empty() && report.violations.iter().all(|v| v.rule == rule),
        "expected only {rule} violations, got:\n{report}"
    );
    assert!(
        report.violations.iter().any(|v| v.path == path),
        "no {rule} violation at {path}:\n{report}"
    );
    for v in &report.violations {
        assert!(!v.to_string().contains('\n'), "more than one line: {v}");
    }
}

#[test]
fn the_good_image_passes_and_the_proxmox_rules_are_checked() {
    let report = proxmox(&base());
    assert!(report.ok(), "{report}");
    for rule in Rule::PROXMOX {
        assert!(report.checked.contains(rule), "{rule} not checked");
    }
    // Without --proxmox the rules are not part of the verdict.
    let plain = verify_reader(Path::new("pve.tar"), &tar_of(&base())[..]).unwrap();
    assert!(plain.ok(), "{plain}");
    assert!(!plain.checked.contains(&Rule::ProxmoxArch));
}

#[test]
fn no_os_release_is_found() {
    let mut image = base();
    image.remove("usr/lib/os-release");
    image.remove("etc/os-release");
    let report = proxmox(&image);
    assert!(
        report
            .violations_of(Rule::ProxmoxRelease)
            .any(|v| v.path == "/etc/os-release"),
        "{report}"
    );
}

#[test]
fn an_ubuntu_release_missing_from_lsb_release_is_found() {
    let mut image = base();
    image.insert(
        "etc/lsb-release".into(),
        (Entry::File(b"DISTRIB_ID=Ubuntu\n".to_vec()), 0),
    );
    let report = proxmox(&image);
    assert!(
        report
            .violations_of(Rule::ProxmoxRelease)
            .any(|v| v.path == "/etc/lsb-release"),
        "{report}"
    );
    // A release Proxmox does not know, before 17, is refused by Proxmox too.
    image.insert(
        "etc/lsb-release".into(),
        (
            Entry::File(b"DISTRIB_ID=Ubuntu\nDISTRIB_RELEASE=11.10\n".to_vec()),
            0,
        ),
    );
    image.insert(
        "usr/lib/os-release".into(),
        (
            Entry::File(b"ID=ubuntu\nVERSION_ID=\"11.10\"\n".to_vec()),
            0,
        ),
    );
    only(&proxmox(&image), Rule::ProxmoxRelease, "/etc/lsb-release");
    // An unknown one from 17 on only warns in Proxmox: not a violation.
    image.insert(
        "etc/lsb-release".into(),
        (
            Entry::File(b"DISTRIB_ID=Ubuntu\nDISTRIB_RELEASE=27.04\n".to_vec()),
            0,
        ),
    );
    image.insert(
        "usr/lib/os-release".into(),
        (
            Entry::File(b"ID=ubuntu\nVERSION_ID=\"27.04\"\n".to_vec()),
            0,
        ),
    );
    assert!(proxmox(&image).ok());
}

#[test]
fn a_shell_of_another_architecture_is_found() {
    let mut image = base();
    image.insert("usr/bin/dash".into(), (Entry::File(elf(2, 183)), 0)); // aarch64
    only(&proxmox(&image), Rule::ProxmoxArch, "/bin/sh");
    image.insert(
        "usr/bin/dash".into(),
        (Entry::File(b"#!/bin/busybox\n".to_vec()), 0),
    );
    only(&proxmox(&image), Rule::ProxmoxArch, "/bin/sh");
    // The same aarch64 shell is right for an arm64 image.
    image.insert("usr/bin/dash".into(), (Entry::File(elf(2, 183)), 0));
    let arm = verify_reader_with(
        Path::new("pve.tar"),
        &tar_of(&image)[..],
        &VerifyOptions {
            proxmox: true,
            architecture: Some("arm64".into()),
        },
    )
    .unwrap();
    assert_eq!(arm.violations_of(Rule::ProxmoxArch).count(), 0, "{arm}");
}

#[test]
fn a_systemd_too_old_for_cgroup_v2_is_found() {
    let mut image = base();
    image.remove("usr/lib/x86_64-linux-gnu/systemd/libsystemd-shared-255.so");
    image.insert(
        "usr/lib/x86_64-linux-gnu/systemd/libsystemd-shared-229.so".into(),
        (Entry::File(elf(2, 62)), 0),
    );
    only(&proxmox(&image), Rule::ProxmoxSystemd, "/sbin/init");
    image.remove("usr/lib/x86_64-linux-gnu/systemd/libsystemd-shared-229.so");
    only(&proxmox(&image), Rule::ProxmoxSystemd, "/sbin/init");
}

#[test]
fn files_proxmox_writes_that_are_directories_or_climb_out_are_found() {
    let mut image = base();
    image.insert("etc/hosts".into(), (Entry::Dir, 0));
    only(&proxmox(&image), Rule::ProxmoxWrittenFiles, "/etc/hosts");
    let mut image = base();
    image.insert(
        "etc/hostname".into(),
        (Entry::Symlink("../../../../etc/hostname"), 0),
    );
    let report = proxmox(&image);
    assert!(
        report
            .violations_of(Rule::ProxmoxWrittenFiles)
            .any(|v| v.path == "/etc/hostname"),
        "{report}"
    );
    let mut image = base();
    image.insert("run/resolvconf".into(), (Entry::Dir, 0));
    image.insert(
        "etc/resolv.conf".into(),
        (Entry::Symlink("../run/resolvconf"), 0),
    );
    let report = proxmox(&image);
    assert!(
        report
            .violations_of(Rule::ProxmoxWrittenFiles)
            .any(|v| v.path == "/etc/resolv.conf"),
        "{report}"
    );
}

#[test]
fn entries_under_dev_are_found() {
    let mut image = base();
    image.insert("dev/null".into(), (Entry::File(Vec::new()), 0));
    only(&proxmox(&image), Rule::ProxmoxDev, "/dev/null");
}

#[test]
fn owners_above_65535_are_found() {
    let mut image = base();
    image.insert(
        "etc/motd".into(),
        (Entry::File(b"hello\n".to_vec()), 100_000),
    );
    only(&proxmox(&image), Rule::Owners, "/etc/motd");
}
