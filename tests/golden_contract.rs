//! The golden-image contract: `verify_tarball` accepts a good root filesystem in every
//! compression, rejects each broken variant naming exactly the rule it breaks, refuses
//! unreadable input, and agrees with `stage::invariants::enforce` (a dirty tree cleaned by
//! `enforce` and packed with GNU tar passes).
//!
//! Tarballs are built here with the `tar` crate (so that device nodes and foreign owners need
//! no privileges); nothing is committed.

#[path = "support/privilege.rs"]
mod privilege;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use ingot::export::compress::Compression;
use ingot::verify::{Report, Rule, VerifyError, verify_tarball};

#[derive(Clone)]
enum Entry {
    Dir(u32),
    File(u32, Vec<u8>),
    Symlink(String),
    CharDevice(u32, u32),
}

/// A root filesystem in memory: path → entry, plus owner overrides.
#[derive(Clone)]
struct Tree {
    entries: BTreeMap<String, Entry>,
    owners: BTreeMap<String, (u64, u64)>,
}

const OPENSSH_KEY_BODY: &str = "b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZW\nQyNTUxOQAAACDqYmtTUDe1pQ5EH9Ofe7gSE9LZ4S0K9P0ckVWGc6gMPAAAAJhDoSRgQ6Ek\n";

fn openssh_private_key() -> Vec<u8> {
    format!(
        "-----BEGIN OPENSSH PRIVATE KEY-----\n{OPENSSH_KEY_BODY}-----END OPENSSH PRIVATE KEY-----\n"
    )
    .into_bytes()
}

impl Tree {
    fn dir(&mut self, p: &str, mode: u32) -> &mut Self {
        self.entries.insert(p.into(), Entry::Dir(mode));
        self
    }
    fn file(&mut self, p: &str, mode: u32, data: impl AsRef<[u8]>) -> &mut Self {
        self.entries
            .insert(p.into(), Entry::File(mode, data.as_ref().to_vec()));
        self
    }
    fn link(&mut self, p: &str, target: &str) -> &mut Self {
        self.entries.insert(p.into(), Entry::Symlink(target.into()));
        self
    }
    fn remove(&mut self, p: &str) -> &mut Self {
        self.entries.remove(p);
        self
    }

    /// A minimal image that honours the contract, laid out like Ubuntu 24.04 (merged /usr,
    /// os-release symlink, sshd drop-in directory, systemd as init).
    fn good() -> Tree {
        let mut t = Tree {
            entries: BTreeMap::new(),
            owners: BTreeMap::new(),
        };
        for d in [
            "boot",
            "dev",
            "etc",
            "etc/ssh",
            "etc/ssh/sshd_config.d",
            "etc/ssl",
            "etc/ssl/certs",
            "home",
            "usr",
            "usr/bin",
            "usr/sbin",
            "usr/lib",
            "usr/lib/systemd",
            "var",
            "var/lib",
            "var/lib/apt",
            "var/lib/apt/lists",
            "var/lib/apt/lists/partial",
            "var/lib/dbus",
            "var/cache",
            "var/cache/apt",
            "var/cache/apt/archives",
            "var/log",
            "var/log/apt",
        ] {
            t.dir(d, 0o755);
        }
        t.dir("root", 0o700)
            .dir("tmp", 0o1777)
            .dir("var/tmp", 0o1777)
            .dir("run", 0o755);
        t.link("bin", "usr/bin")
            .link("sbin", "usr/sbin")
            .link("lib", "usr/lib");
        t.file("usr/lib/systemd/systemd", 0o755, b"\x7fELF systemd");
        t.link("usr/sbin/init", "../lib/systemd/systemd");
        t.file("usr/bin/bash", 0o755, b"\x7fELF bash");
        // How ssh-keygen carries the PEM marker: a C string with no key body after it.
        t.file(
            "usr/bin/ssh-keygen",
            0o755,
            b"\x7fELF\0-----BEGIN OPENSSH PRIVATE KEY-----\n\0-----END OPENSSH PRIVATE KEY-----\n\0",
        );
        t.file(
            "etc/ssl/certs/ca-certificates.crt",
            0o644,
            format!("-----BEGIN CERTIFICATE-----\n{OPENSSH_KEY_BODY}-----END CERTIFICATE-----\n"),
        );
        t.file(
            "etc/passwd",
            0o644,
            "root:x:0:0:root:/root:/bin/bash\ndaemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\n\
             _apt:x:42:65534::/nonexistent:/usr/sbin/nologin\n\
             nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n\
             systemd-network:x:998:998:systemd Network Management:/:/usr/sbin/nologin\n",
        );
        t.file(
            "etc/shadow",
            0o640,
            "root:!*:20000:0:99999:7:::\ndaemon:*:20000:0:99999:7:::\n_apt:*:20000:0:99999:7:::\n\
             nobody:*:20000:0:99999:7:::\nsystemd-network:!*:20000::::::\n",
        );
        t.file("etc/gshadow", 0o640, "root:*::\nshadow:*::\nutmp:*::\n");
        t.file(
            "etc/ssh/sshd_config",
            0o644,
            "# Ubuntu's layout: the Include comes first, so drop-ins win.\n\
             Include /etc/ssh/sshd_config.d/*.conf\n\
             KbdInteractiveAuthentication no\n#PasswordAuthentication yes\nUsePAM yes\n\
             Match User anoncvs\n\tPasswordAuthentication yes\n",
        );
        t.file(
            "etc/ssh/sshd_config.d/00-golden.conf",
            0o644,
            "PasswordAuthentication no\nKbdInteractiveAuthentication no\n\
             PermitRootLogin prohibit-password\n",
        );
        // Later drop-ins lose: the first value wins.
        t.file(
            "etc/ssh/sshd_config.d/50-cloud-init.conf",
            0o644,
            "PasswordAuthentication yes\n",
        );
        t.file(
            "usr/lib/os-release",
            0o644,
            "PRETTY_NAME=\"Ubuntu 24.04.3 LTS\"\nNAME=\"Ubuntu\"\nVERSION_ID=\"24.04\"\nID=ubuntu\nID_LIKE=debian\n",
        );
        t.link("etc/os-release", "../usr/lib/os-release");
        t.file(
            "etc/lsb-release",
            0o644,
            "DISTRIB_ID=Ubuntu\nDISTRIB_RELEASE=24.04\nDISTRIB_CODENAME=noble\n",
        );
        t.file("etc/machine-id", 0o444, b"");
        t.link("var/lib/dbus/machine-id", "/etc/machine-id");
        t.file("etc/hostname", 0o644, "localhost\n");
        t.link("etc/resolv.conf", "../run/systemd/resolve/stub-resolv.conf");
        t.file("var/lib/apt/lists/lock", 0o640, b"");
        t.file("var/cache/apt/archives/lock", 0o640, b"");
        t.file("var/log/dpkg.log", 0o644, b"");
        t.file("var/log/apt/history.log", 0o644, b"");
        t.file("root/.profile", 0o644, "mesg n\n");
        t
    }

    /// Write the tree as a tar stream with `prefix` before every name (`""`, `"./"`,
    /// `"rootfs/"`).
    fn tar(&self, prefix: &str) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        if prefix == "./" {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(tar::EntryType::Directory);
            h.set_mode(0o755);
            h.set_uid(0);
            h.set_gid(0);
            h.set_mtime(1_700_000_000);
            h.set_size(0);
            h.set_cksum();
            b.append_data(&mut h, "./", &[][..]).unwrap();
        }
        for (path, entry) in &self.entries {
            let mut h = tar::Header::new_gnu();
            let (uid, gid) = self.owners.get(path).copied().unwrap_or((0, 0));
            h.set_uid(uid);
            h.set_gid(gid);
            h.set_mtime(1_700_000_000);
            let name = format!("{prefix}{path}");
            match entry {
                Entry::Dir(mode) => {
                    h.set_entry_type(tar::EntryType::Directory);
                    h.set_mode(*mode);
                    h.set_size(0);
                    h.set_cksum();
                    b.append_data(&mut h, format!("{name}/"), &[][..]).unwrap();
                }
                Entry::File(mode, data) => {
                    h.set_entry_type(tar::EntryType::Regular);
                    h.set_mode(*mode);
                    h.set_size(data.len() as u64);
                    h.set_cksum();
                    b.append_data(&mut h, name, &data[..]).unwrap();
                }
                Entry::Symlink(target) => {
                    h.set_entry_type(tar::EntryType::Symlink);
                    h.set_mode(0o777);
                    h.set_size(0);
                    b.append_link(&mut h, name, target).unwrap();
                }
                Entry::CharDevice(major, minor) => {
                    h.set_entry_type(tar::EntryType::Char);
                    h.set_mode(0o666);
                    h.set_size(0);
                    h.set_device_major(*major).unwrap();
                    h.set_device_minor(*minor).unwrap();
                    h.set_cksum();
                    b.append_data(&mut h, name, &[][..]).unwrap();
                }
            }
        }
        b.into_inner().unwrap()
    }
}

fn compress(tar: &[u8], how: Compression) -> Vec<u8> {
    match how {
        Compression::Gzip => {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            e.write_all(tar).unwrap();
            e.finish().unwrap()
        }
        Compression::Zstd => zstd::encode_all(tar, 3).unwrap(),
        Compression::Xz => {
            let mut e = liblzma::write::XzEncoder::new(Vec::new(), 1);
            e.write_all(tar).unwrap();
            e.finish().unwrap()
        }
        Compression::None => tar.to_vec(),
    }
}

struct Fixture {
    dir: tempfile::TempDir,
}

impl Fixture {
    fn new() -> Self {
        Fixture {
            dir: tempfile::tempdir().unwrap(),
        }
    }
    fn write(&self, name: &str, bytes: &[u8]) -> PathBuf {
        let p = self.dir.path().join(name);
        std::fs::write(&p, bytes).unwrap();
        p
    }
    fn verify(&self, tree: &Tree) -> Report {
        let p = self.write("image.tar.gz", &compress(&tree.tar(""), Compression::Gzip));
        let before = std::fs::read(&p).unwrap();
        let report = verify_tarball(&p).unwrap();
        assert_eq!(
            std::fs::read(&p).unwrap(),
            before,
            "verify must not modify the tarball"
        );
        report
    }
}

fn broken_rules(report: &Report) -> BTreeSet<Rule> {
    report.violations.iter().map(|v| v.rule).collect()
}

/// `tree` must fail exactly `expected`, each violation naming `path`.
#[track_caller]
fn assert_breaks(tree: &Tree, expected: &[Rule], path: &str) {
    let report = Fixture::new().verify(tree);
    let want: BTreeSet<Rule> = expected.iter().copied().collect();
    assert_eq!(broken_rules(&report), want, "report:\n{report}");
    assert!(!report.ok());
    assert!(
        report.violations.iter().any(|v| v.path == path),
        "no violation names {path}:\n{report}"
    );
    let text = report.to_string();
    for rule in expected {
        assert!(text.contains(&format!("{rule}: ")), "{text}");
    }
}

#[test]
fn a_good_image_passes_in_every_compression_and_layout() {
    let fx = Fixture::new();
    let tree = Tree::good();
    for how in [
        Compression::Gzip,
        Compression::Zstd,
        Compression::Xz,
        Compression::None,
    ] {
        for prefix in ["", "./"] {
            let p = fx.write("good", &compress(&tree.tar(prefix), how));
            let report = verify_tarball(&p).unwrap();
            assert!(report.ok(), "{how:?} {prefix:?}:\n{report}");
            assert_eq!(report.compression, how);
            assert_eq!(report.checked.len(), Rule::ALL.len());
            assert!(report.to_string().starts_with("ok: "), "{report}");
        }
    }
    let json: serde_json::Value =
        serde_json::from_str(&Fixture::new().verify(&tree).to_json()).unwrap();
    assert_eq!(json["ok"], true);
    assert_eq!(json["compression"], "gzip");
    assert!(
        json["checked"]
            .as_array()
            .unwrap()
            .contains(&"sshd-config".into())
    );
}

#[test]
fn host_keys_break_the_contract() {
    let mut t = Tree::good();
    t.file(
        "etc/ssh/ssh_host_ed25519_key.pub",
        0o644,
        "ssh-ed25519 AAAAC3Nz host",
    );
    assert_breaks(&t, &[Rule::HostKeys], "/etc/ssh/ssh_host_ed25519_key.pub");
    t.file("etc/ssh/ssh_host_ed25519_key", 0o600, openssh_private_key());
    assert_breaks(
        &t,
        &[Rule::HostKeys, Rule::PrivateKeys],
        "/etc/ssh/ssh_host_ed25519_key",
    );
}

#[test]
fn a_set_machine_id_breaks_the_contract() {
    let mut t = Tree::good();
    t.file(
        "etc/machine-id",
        0o444,
        "4c4c4544003510448052b4c04f4e3332\n",
    );
    assert_breaks(&t, &[Rule::MachineId], "/etc/machine-id");
    let mut t = Tree::good();
    t.remove("etc/machine-id");
    assert_breaks(&t, &[Rule::MachineId], "/etc/machine-id");
    let mut t = Tree::good();
    t.file(
        "var/lib/dbus/machine-id",
        0o644,
        "4c4c4544003510448052b4c04f4e3332\n",
    );
    assert_breaks(&t, &[Rule::DbusMachineId], "/var/lib/dbus/machine-id");
}

#[test]
fn a_password_breaks_the_contract() {
    let mut t = Tree::good();
    t.file(
        "etc/shadow",
        0o640,
        "root:$y$j9T$abcdefghijklmnop$0123456789abcdefghijklmnopqrstuvwxyzABCDEF:20000:0:99999:7:::\n",
    );
    assert_breaks(&t, &[Rule::Passwords], "/etc/shadow");
    t.file("etc/shadow", 0o640, "root::20000:0:99999:7:::\n");
    assert_breaks(&t, &[Rule::Passwords], "/etc/shadow");
    // A locked hash is fine.
    t.file(
        "etc/shadow",
        0o640,
        "root:!$6$salt$hash:20000:0:99999:7:::\n",
    );
    assert!(Fixture::new().verify(&t).ok());
}

#[test]
fn a_winning_password_authentication_yes_breaks_the_contract() {
    let mut t = Tree::good();
    // Sorts before 00-golden.conf, so sshd reads it first and its value wins.
    t.file(
        "etc/ssh/sshd_config.d/00-aaa.conf",
        0o644,
        "passwordauthentication=yes\n",
    );
    assert_breaks(
        &t,
        &[Rule::SshdConfig],
        "/etc/ssh/sshd_config.d/00-aaa.conf",
    );

    // The deprecated alias counts for KbdInteractiveAuthentication.
    let mut t = Tree::good();
    t.file(
        "etc/ssh/sshd_config.d/00-aaa.conf",
        0o644,
        "ChallengeResponseAuthentication yes\n",
    );
    assert_breaks(
        &t,
        &[Rule::SshdConfig],
        "/etc/ssh/sshd_config.d/00-aaa.conf",
    );

    // A main file whose own settings come before the Include wins over the drop-in.
    let mut t = Tree::good();
    t.file(
        "etc/ssh/sshd_config",
        0o644,
        "PermitRootLogin yes\nInclude /etc/ssh/sshd_config.d/*.conf\n",
    );
    assert_breaks(&t, &[Rule::SshdConfig], "/etc/ssh/sshd_config");

    // Without the golden drop-in, sshd's defaults (passwords allowed) apply.
    let mut t = Tree::good();
    t.remove("etc/ssh/sshd_config.d/00-golden.conf");
    t.remove("etc/ssh/sshd_config.d/50-cloud-init.conf");
    let report = Fixture::new().verify(&t);
    assert_eq!(
        report.violations_of(Rule::SshdConfig).count(),
        1,
        "{report}"
    );
    assert!(
        report.to_string().contains("PasswordAuthentication is yes"),
        "{report}"
    );

    // A relative Include is resolved under /etc/ssh; a Match block does not set the global.
    let mut t = Tree::good();
    t.file(
        "etc/ssh/sshd_config",
        0o644,
        "Include sshd_config.d/*.conf\nMatch Address 10.0.0.0/8\n PermitRootLogin yes\n",
    );
    assert!(Fixture::new().verify(&t).ok());
}

#[test]
fn a_private_key_in_root_breaks_the_contract() {
    let mut t = Tree::good();
    t.file("root/id_ed25519", 0o600, openssh_private_key());
    assert_breaks(&t, &[Rule::PrivateKeys], "/root/id_ed25519");
    let mut t = Tree::good();
    let mut pem = b"some config\n".to_vec();
    pem.extend(openssh_private_key());
    let pem = String::from_utf8(pem)
        .unwrap()
        .replace("OPENSSH PRIVATE KEY", "RSA PRIVATE KEY");
    t.file("usr/lib/app/secrets.conf", 0o644, pem);
    assert_breaks(&t, &[Rule::PrivateKeys], "/usr/lib/app/secrets.conf");
}

#[test]
fn a_leading_rootfs_directory_breaks_the_contract() {
    let fx = Fixture::new();
    let p = fx.write(
        "rootfs.tar.gz",
        &compress(&Tree::good().tar("rootfs/"), Compression::Gzip),
    );
    let report = verify_tarball(&p).unwrap();
    let layout: Vec<_> = report.violations_of(Rule::RootLayout).collect();
    assert_eq!(layout.len(), 1, "{report}");
    assert!(layout[0].detail.contains("`rootfs/`"), "{}", layout[0]);
}

#[test]
fn a_device_node_breaks_the_contract() {
    let mut t = Tree::good();
    t.entries.insert("dev/null".into(), Entry::CharDevice(1, 3));
    assert_breaks(&t, &[Rule::DeviceNodes], "/dev/null");
}

#[test]
fn a_foreign_owner_breaks_the_contract() {
    let mut t = Tree::good();
    t.owners.insert("usr/bin/bash".into(), (200000, 200000));
    assert_breaks(&t, &[Rule::Owners], "/usr/bin/bash");
    let mut t = Tree::good();
    t.file(
        "etc/passwd",
        0o644,
        "root:x:0:0:root:/root:/bin/bash\nubuntu:x:1000:1000::/home/ubuntu:/bin/bash\n\
         nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\nbuilder:x:200000:200000::/:/bin/sh\n",
    );
    let report = Fixture::new().verify(&t);
    assert_eq!(broken_rules(&report), [Rule::Users].into(), "{report}");
    assert_eq!(report.violations_of(Rule::Users).count(), 2, "{report}");
}

#[test]
fn authorized_keys_break_the_contract() {
    let mut t = Tree::good();
    t.dir("home/deploy", 0o755).dir("home/deploy/.ssh", 0o700);
    t.file(
        "home/deploy/.ssh/authorized_keys",
        0o600,
        "ssh-ed25519 AAAAC3Nz me",
    );
    assert_breaks(
        &t,
        &[Rule::AuthorizedKeys],
        "/home/deploy/.ssh/authorized_keys",
    );
    let mut t = Tree::good();
    t.dir("root/.ssh", 0o700);
    t.file(
        "root/.ssh/authorized_keys",
        0o600,
        "ssh-ed25519 AAAAC3Nz me",
    );
    assert_breaks(
        &t,
        &[Rule::AuthorizedKeys, Rule::RootSsh],
        "/root/.ssh/authorized_keys",
    );
}

/// One edit of the good tree.
type Change = Box<dyn Fn(&mut Tree)>;

#[test]
fn build_leftovers_break_the_contract() {
    let cases: Vec<(&str, Rule, Change)> = vec![
        (
            "/var/lib/apt/lists/archive.ubuntu.com_ubuntu_dists_noble_InRelease",
            Rule::AptLists,
            Box::new(|t| {
                t.file(
                    "var/lib/apt/lists/archive.ubuntu.com_ubuntu_dists_noble_InRelease",
                    0o644,
                    "x",
                );
            }),
        ),
        (
            "/var/cache/apt/pkgcache.bin",
            Rule::AptCache,
            Box::new(|t| {
                t.file("var/cache/apt/pkgcache.bin", 0o644, "x");
            }),
        ),
        (
            "/var/cache/apt/archives/bash_5.2_amd64.deb",
            Rule::AptCache,
            Box::new(|t| {
                t.file("var/cache/apt/archives/bash_5.2_amd64.deb", 0o644, "x");
            }),
        ),
        (
            "/tmp",
            Rule::TmpDirs,
            Box::new(|t| {
                t.file("tmp/build.log", 0o644, "x");
            }),
        ),
        (
            "/var/tmp",
            Rule::TmpDirs,
            Box::new(|t| {
                t.dir("var/tmp", 0o755);
            }),
        ),
        (
            "/run",
            Rule::TmpDirs,
            Box::new(|t| {
                t.dir("run/lock", 0o1777);
            }),
        ),
        (
            "/var/log/dpkg.log",
            Rule::Logs,
            Box::new(|t| {
                t.file("var/log/dpkg.log", 0o644, "2026-11-25 status installed");
            }),
        ),
        (
            "/etc/hostname",
            Rule::Hostname,
            Box::new(|t| {
                t.file("etc/hostname", 0o644, "buildhost-17\n");
            }),
        ),
        (
            "/etc/resolv.conf",
            Rule::ResolvConf,
            Box::new(|t| {
                t.file(
                    "etc/resolv.conf",
                    0o644,
                    "nameserver 10.20.0.1\nsearch corp.example\n",
                );
            }),
        ),
        (
            "/usr/sbin/policy-rc.d",
            Rule::PolicyRcD,
            Box::new(|t| {
                t.file("usr/sbin/policy-rc.d", 0o755, "exit 101\n");
            }),
        ),
        (
            "/root/.bash_history",
            Rule::ShellHistory,
            Box::new(|t| {
                t.file("root/.bash_history", 0o600, "ls\n");
            }),
        ),
        (
            "/root/.ssh",
            Rule::RootSsh,
            Box::new(|t| {
                t.dir("root/.ssh", 0o700);
            }),
        ),
        (
            "/usr/bin/bash",
            Rule::WorldWritable,
            Box::new(|t| {
                t.file("usr/bin/bash", 0o777, "x");
            }),
        ),
        (
            "/var/cache",
            Rule::WorldWritable,
            Box::new(|t| {
                t.dir("var/cache", 0o777);
            }),
        ),
        (
            "/sbin/init",
            Rule::Init,
            Box::new(|t| {
                t.remove("usr/lib/systemd/systemd");
            }),
        ),
        (
            "/etc/os-release",
            Rule::OsRelease,
            Box::new(|t| {
                t.remove("usr/lib/os-release");
            }),
        ),
        (
            "/etc/lsb-release",
            Rule::LsbRelease,
            Box::new(|t| {
                t.remove("etc/lsb-release");
            }),
        ),
        (
            "/etc/lsb-release",
            Rule::LsbRelease,
            Box::new(|t| {
                t.file(
                    "etc/lsb-release",
                    0o644,
                    "DISTRIB_ID=Ubuntu\nDISTRIB_RELEASE=22.04\n",
                );
            }),
        ),
    ];
    for (path, rule, change) in cases {
        let mut t = Tree::good();
        change(&mut t);
        assert_breaks(&t, &[rule], path);
    }
}

impl Tree {
    /// [`Tree::good`] as Debian 13 lays it out: Debian's os-release, `debian_version`, no
    /// `lsb-release` (Debian's base-files ships none) and no systemd-resolved stub.
    fn good_debian() -> Tree {
        let mut t = Tree::good();
        t.file(
            "usr/lib/os-release",
            0o644,
            "PRETTY_NAME=\"Debian GNU/Linux 13 (trixie)\"\nNAME=\"Debian GNU/Linux\"\n\
             VERSION_ID=\"13\"\nVERSION_CODENAME=trixie\nID=debian\n",
        );
        t.file("etc/debian_version", 0o644, "13.2\n");
        t.remove("etc/lsb-release");
        t.file("etc/resolv.conf", 0o644, b"");
        t
    }
}

#[test]
fn the_release_files_follow_the_images_own_os_release() {
    // Each distribution's own layout passes: Ubuntu with lsb-release, Debian without it.
    for (name, t) in [("ubuntu", Tree::good()), ("debian", Tree::good_debian())] {
        let report = Fixture::new().verify(&t);
        assert!(report.ok(), "{name}: {report}");
    }
    type Change = Box<dyn Fn(&mut Tree)>;
    let ubuntu: Vec<(&str, Rule, Change)> = vec![(
        "/etc/lsb-release",
        Rule::LsbRelease,
        Box::new(|t| {
            t.file(
                "etc/lsb-release",
                0o644,
                "DISTRIB_ID=Debian\nDISTRIB_RELEASE=24.04\n",
            );
        }),
    )];
    let debian: Vec<(&str, Rule, Change)> = vec![
        (
            "/etc/debian_version",
            Rule::DebianVersion,
            Box::new(|t| {
                t.remove("etc/debian_version");
            }),
        ),
        (
            "/etc/debian_version",
            Rule::DebianVersion,
            Box::new(|t| {
                t.file("etc/debian_version", 0o644, "12.12\n");
            }),
        ),
        (
            "/etc/debian_version",
            Rule::DebianVersion,
            Box::new(|t| {
                // "13" is not "130.1": a prefix of the version only counts up to a dot.
                t.file("etc/debian_version", 0o644, "130.1\n");
            }),
        ),
        (
            "/etc/os-release",
            Rule::OsRelease,
            Box::new(|t| {
                t.remove("usr/lib/os-release");
            }),
        ),
    ];
    for (path, rule, change) in ubuntu {
        let mut t = Tree::good();
        change(&mut t);
        assert_breaks(&t, &[rule], path);
    }
    for (path, rule, change) in debian {
        let mut t = Tree::good_debian();
        change(&mut t);
        assert_breaks(&t, &[rule], path);
    }
}

#[test]
fn unreadable_input_is_an_error_not_a_verdict() {
    let fx = Fixture::new();
    let text = fx.write("notes.txt", b"this is not a tarball at all");
    assert!(matches!(
        verify_tarball(&text),
        Err(VerifyError::UnknownFormat { .. })
    ));
    let bzip2 = fx.write("x.tar.bz2", b"BZh91AY&SY");
    assert!(matches!(
        verify_tarball(&bzip2),
        Err(VerifyError::UnknownFormat { .. })
    ));

    let gz = compress(&Tree::good().tar(""), Compression::Gzip);
    let truncated = fx.write("truncated.tar.gz", &gz[..gz.len() / 2]);
    let err = verify_tarball(&truncated).unwrap_err();
    assert!(matches!(err, VerifyError::Corrupt { .. }), "{err}");
    assert_eq!(err.rule(), Rule::ArchiveFormat);

    let mut bad_crc = gz.clone();
    let n = bad_crc.len();
    bad_crc[n - 6] ^= 0xff; // the gzip trailer's CRC-32
    let err = verify_tarball(&fx.write("crc.tar.gz", &bad_crc)).unwrap_err();
    assert!(matches!(err, VerifyError::Corrupt { .. }), "{err}");

    let mut tar = Tree::good().tar("");
    tar[148] ^= 0x01; // the first header's checksum
    let err = verify_tarball(&fx.write("sum.tar", &tar)).unwrap_err();
    assert!(err.to_string().contains("sum.tar"), "{err}");

    let missing = fx.dir.path().join("missing.tar.gz");
    assert!(matches!(
        verify_tarball(&missing),
        Err(VerifyError::Open { .. })
    ));
}

/// Materialise `tree` on disk (as the invoking user), dirty it, clean it with `enforce`, pack
/// it with GNU tar as the real exporter's layout (no `./`, numeric owners): it passes.
#[test]
fn a_tree_cleaned_by_enforce_passes_verify() {
    use std::os::unix::fs::{PermissionsExt, symlink};
    privilege::require_root("enforcing the invariants on files owned by root");
    let fx = Fixture::new();
    let root = fx.dir.path().join("rootfs");
    let mut t = Tree::good();
    t.file("etc/ssh/ssh_host_rsa_key", 0o600, openssh_private_key());
    t.file(
        "etc/machine-id",
        0o444,
        "4c4c4544003510448052b4c04f4e3332\n",
    );
    t.file(
        "var/lib/apt/lists/archive.ubuntu.com_ubuntu_dists_noble_InRelease",
        0o644,
        "x",
    );
    t.file("var/cache/apt/srcpkgcache.bin", 0o644, "x");
    t.file("tmp/x", 0o644, "x");
    t.file("var/lib/systemd/credential.secret", 0o400, "secret");
    t.file("var/log/apt/term.log", 0o644, "Log started");
    t.file("etc/hostname", 0o644, "buildhost\n");
    t.file("usr/sbin/policy-rc.d", 0o755, "exit 101\n");
    t.file("root/.bash_history", 0o600, "ls\n");
    t.dir("root/.ssh", 0o700);
    t.file("root/.ssh/authorized_keys", 0o600, "ssh-ed25519 AAAA me\n");
    std::fs::create_dir(&root).unwrap();
    for (path, entry) in &t.entries {
        let p = root.join(path);
        match entry {
            Entry::Dir(mode) => {
                std::fs::create_dir_all(&p).unwrap();
                std::fs::set_permissions(&p, std::fs::Permissions::from_mode(*mode)).unwrap();
            }
            Entry::File(mode, data) => {
                std::fs::create_dir_all(p.parent().unwrap()).unwrap();
                std::fs::write(&p, data).unwrap();
                std::fs::set_permissions(&p, std::fs::Permissions::from_mode(*mode)).unwrap();
            }
            Entry::Symlink(target) => symlink(target, &p).unwrap(),
            Entry::CharDevice(..) => unreachable!(),
        }
    }
    let dirty = pack(&root, &fx.dir.path().join("dirty.tar"));
    let before = verify_tarball(&dirty).unwrap();
    assert!(before.violations.len() >= 9, "{before}");

    let done = ingot::stage::invariants::enforce(&root).unwrap();
    assert!(!done.is_empty());
    let clean = pack(&root, &fx.dir.path().join("clean.tar"));
    let after = verify_tarball(&clean).unwrap();
    assert!(after.ok(), "after enforce:\n{after}\nactions: {done:#?}");
}

fn pack(root: &Path, out: &Path) -> PathBuf {
    let names: Vec<String> = std::fs::read_dir(root)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    let status = Command::new("tar")
        .args(["--numeric-owner", "--sort=name", "-C"])
        .arg(root)
        .arg("-cf")
        .arg(out)
        .args(&names)
        .status()
        .unwrap();
    assert!(status.success());
    out.to_path_buf()
}

/// `INGOT_VERIFY_TARBALL=path cargo test --test golden_contract -- --ignored --nocapture`:
/// verify a real image (e.g. one from scripts/e2e/make-reference-image.sh) and print the
/// report.
#[test]
#[ignore = "needs a real image in INGOT_VERIFY_TARBALL"]
fn a_real_image() {
    let path = std::env::var_os("INGOT_VERIFY_TARBALL").expect("set INGOT_VERIFY_TARBALL");
    let started = std::time::Instant::now();
    let report = verify_tarball(Path::new(&path)).unwrap();
    println!("{report}\n({:.1} s)", started.elapsed().as_secs_f64());
    if std::env::var_os("INGOT_VERIFY_EXPECT_FAIL").is_none() {
        assert!(report.ok());
    }
}
