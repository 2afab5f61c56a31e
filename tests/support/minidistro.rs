//! A tiny but real "distribution" for hermetic install tests, built from the host's own
//! binaries: an Essential `mini-base` with the host's dpkg, dash, coreutils bits, sed, tar,
//! diff, ldconfig, start-stop-daemon, setcap and every shared library they load (laid out
//! merged-/usr style), an Essential `mini-passwd`, and ordinary packages with maintainer
//! scripts, a conffile, a setuid file, a non-root owner (built by hand), a Pre-Depends, and a
//! capability set by a postinst with `setcap`, the way Debian's iputils does it: dpkg 1.21
//! refuses PAX headers outright ("unsupported PAX tar header type 'x'"), so no installable
//! `.deb` carries `SCHILY.xattr.*` records; those are tested on the extraction path only.
//!
//! Also the hand-built `.deb` writer the hostile-package tests use: member names are written
//! into the tar headers byte for byte, unchecked.
#![allow(dead_code)]

use std::collections::BTreeSet;
use std::fs;
use std::io::Write;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::process::Command;

use ingot::stage::StageDeb;

/// The host's dpkg architecture (the mini distribution is built from host binaries).
pub fn host_arch() -> String {
    let out = Command::new("dpkg")
        .arg("--print-architecture")
        .output()
        .expect("dpkg --print-architecture");
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// Programs `mini-base` carries: what dpkg's checkpath wants (sh, rm, tar, diff, ldconfig,
/// start-stop-daemon, dpkg-deb, dpkg-split) plus what maintainer scripts here use.
const BASE_PROGRAMS: &[&str] = &[
    "/usr/bin/dpkg",
    "/usr/bin/dpkg-deb",
    "/usr/bin/dpkg-query",
    "/usr/bin/dpkg-split",
    "/usr/bin/dpkg-divert",
    "/usr/bin/dpkg-trigger",
    "/usr/bin/dpkg-statoverride",
    "/usr/bin/dpkg-maintscript-helper",
    "/usr/bin/update-alternatives",
    "/usr/bin/dash",
    "/usr/bin/env",
    "/usr/bin/rm",
    "/usr/bin/tar",
    "/usr/bin/diff",
    "/usr/bin/cat",
    "/usr/bin/mkdir",
    "/usr/bin/chown",
    "/usr/bin/chmod",
    "/usr/bin/ln",
    "/usr/bin/mv",
    "/usr/bin/sed",
    "/usr/bin/touch",
    "/usr/sbin/ldconfig",
    "/usr/sbin/start-stop-daemon",
    "/usr/sbin/setcap",
];

/// A package built with `dpkg-deb --root-owner-group --build` from a directory tree.
pub struct PackageSpec<'a> {
    /// Package name.
    pub name: &'a str,
    /// `Essential: yes`.
    pub essential: bool,
    /// `Depends` (plain names).
    pub depends: &'a [&'a str],
    /// `Pre-Depends` (plain names).
    pub pre_depends: &'a [&'a str],
    /// Maintainer scripts: (`postinst`, body).
    pub scripts: &'a [(&'a str, &'a str)],
    /// Absolute paths of conffiles.
    pub conffiles: &'a [&'a str],
    /// `-Z` of dpkg-deb: gzip, xz, zstd, none.
    pub compression: &'a str,
}

fn control_text(spec: &PackageSpec<'_>, arch: &str) -> String {
    let mut c = format!(
        "Package: {}\nVersion: 1.0-1\nArchitecture: {arch}\nMaintainer: ingot tests <t@example.invalid>\n",
        spec.name
    );
    if spec.essential {
        c.push_str("Essential: yes\nPriority: required\n");
    } else {
        c.push_str("Priority: optional\n");
    }
    if !spec.pre_depends.is_empty() {
        c.push_str(&format!("Pre-Depends: {}\n", spec.pre_depends.join(", ")));
    }
    if !spec.depends.is_empty() {
        c.push_str(&format!("Depends: {}\n", spec.depends.join(", ")));
    }
    c.push_str(&format!("Description: {} for ingot tests\n", spec.name));
    c
}

fn stage_deb(spec: &PackageSpec<'_>, arch: &str, path: PathBuf) -> StageDeb {
    StageDeb {
        name: spec.name.to_string(),
        version: "1.0-1".to_string(),
        architecture: arch.to_string(),
        essential: spec.essential,
        sha256: ingot::fetch::hash_file(&path).expect("hash the .deb").0,
        path,
        pre_depends_on: spec.pre_depends.iter().map(|s| s.to_string()).collect(),
        depends_on: spec.depends.iter().map(|s| s.to_string()).collect(),
    }
}

/// Build a package from the tree `populate` writes into the given directory.
pub fn build_package(out: &Path, spec: &PackageSpec<'_>, populate: impl FnOnce(&Path)) -> StageDeb {
    let arch = host_arch();
    let tree = out.join(format!("tree-{}", spec.name));
    let debian = tree.join("DEBIAN");
    fs::create_dir_all(&debian).unwrap();
    populate(&tree);
    fs::write(debian.join("control"), control_text(spec, &arch)).unwrap();
    for (script, body) in spec.scripts {
        let p = debian.join(script);
        fs::write(&p, body).unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(0o755)).unwrap();
    }
    if !spec.conffiles.is_empty() {
        fs::write(debian.join("conffiles"), spec.conffiles.join("\n") + "\n").unwrap();
    }
    let deb = out.join(format!("{}_1.0-1_{arch}.deb", spec.name));
    let status = Command::new("dpkg-deb")
        .args([
            "--root-owner-group",
            "-z1",
            &format!("-Z{}", spec.compression),
            "--build",
        ])
        .arg(&tree)
        .arg(&deb)
        .stdout(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(status.success(), "dpkg-deb --build {} failed", spec.name);
    fs::remove_dir_all(&tree).unwrap();
    stage_deb(spec, &arch, deb)
}

/// The in-package path for a host path, merged-/usr style (`/lib/x` → `usr/lib/x`).
fn merged_usr(path: &Path) -> PathBuf {
    let s = path.to_str().unwrap().trim_start_matches('/');
    for top in ["bin", "sbin", "lib", "lib64"] {
        if let Some(rest) = s.strip_prefix(&format!("{top}/")) {
            return PathBuf::from(format!("usr/{top}/{rest}"));
        }
    }
    PathBuf::from(s)
}

/// Copy `host` into `tree` at its merged-/usr path; a path that is a symlink on the host
/// becomes the same symlink, and its target is copied too.
fn copy_into(tree: &Path, host: &Path) {
    let dest = tree.join(merged_usr(host));
    if dest.symlink_metadata().is_ok() {
        return;
    }
    fs::create_dir_all(dest.parent().unwrap()).unwrap();
    let meta = host.symlink_metadata().unwrap();
    if meta.file_type().is_symlink() {
        let target = fs::read_link(host).unwrap();
        symlink(&target, &dest).unwrap();
        let resolved = if target.is_absolute() {
            target
        } else {
            host.parent().unwrap().join(target)
        };
        copy_into(tree, &resolved);
    } else {
        fs::copy(host, &dest).unwrap();
    }
}

fn shared_libraries(program: &str) -> BTreeSet<PathBuf> {
    let out = Command::new("ldd").arg(program).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let mut libs = BTreeSet::new();
    for line in text.lines() {
        let path = match line.split_once("=>") {
            Some((_, right)) => right.trim().split(' ').next().unwrap_or(""),
            None => line.trim().split(' ').next().unwrap_or(""),
        };
        if path.starts_with('/') {
            libs.insert(PathBuf::from(path));
        }
    }
    libs
}

/// What the mini distribution's postinsts write, so tests can check they ran.
pub const BASE_MARK: &str = "var/lib/mini-base/configured";
/// Written by mini-hello's postinst.
pub const HELLO_MARK: &str = "var/lib/mini-hello/state";
/// Each postinst appends its package name here: the configure order.
pub const ORDER_LOG: &str = "var/log/mini-order";

/// A `security.capability` v2 value: `cap_net_raw+p`.
pub fn cap_net_raw_p() -> Vec<u8> {
    let mut v = Vec::new();
    v.extend_from_slice(&0x0200_0000u32.to_le_bytes()); // VFS_CAP_REVISION_2, no effective
    v.extend_from_slice(&(1u32 << 13).to_le_bytes()); // permitted: CAP_NET_RAW
    v.extend_from_slice(&0u32.to_le_bytes()); // inheritable
    v.extend_from_slice(&0u32.to_le_bytes());
    v.extend_from_slice(&0u32.to_le_bytes());
    v
}

/// Build the mini distribution into `out`; returns the packages in plan order (Essential
/// first).
pub fn build(out: &Path) -> Vec<StageDeb> {
    fs::create_dir_all(out).unwrap();
    let mut debs = Vec::new();

    debs.push(build_package(
        out,
        &PackageSpec {
            name: "mini-base",
            essential: true,
            depends: &[],
            pre_depends: &[],
            scripts: &[(
                "postinst",
                "#!/bin/sh\nset -e\nmkdir -p /var/lib/mini-base\necho \"$1\" > /var/lib/mini-base/configured\necho mini-base >> /var/log/mini-order\n",
            )],
            conffiles: &[],
            compression: "gzip",
        },
        |tree| {
            let mut libs = BTreeSet::new();
            for program in BASE_PROGRAMS {
                copy_into(tree, Path::new(program));
                libs.extend(shared_libraries(program));
            }
            for lib in libs {
                copy_into(tree, &lib);
            }
            symlink("dash", tree.join("usr/bin/sh")).unwrap();
            for top in ["bin", "sbin", "lib", "lib64"] {
                fs::create_dir_all(tree.join("usr").join(top)).unwrap();
                symlink(format!("usr/{top}"), tree.join(top)).unwrap();
            }
            for dir in ["var/lib/dpkg", "var/log", "tmp", "etc"] {
                fs::create_dir_all(tree.join(dir)).unwrap();
            }
            fs::set_permissions(tree.join("tmp"), fs::Permissions::from_mode(0o1777)).unwrap();
        },
    ));

    debs.push(build_package(
        out,
        &PackageSpec {
            name: "mini-passwd",
            essential: true,
            depends: &["mini-base"],
            pre_depends: &[],
            scripts: &[(
                "postinst",
                "#!/bin/sh\nset -e\necho mini-passwd >> /var/log/mini-order\n",
            )],
            conffiles: &[],
            compression: "xz",
        },
        |tree| {
            fs::create_dir_all(tree.join("etc")).unwrap();
            fs::write(
                tree.join("etc/passwd"),
                "root:x:0:0:root:/root:/bin/sh\nmini:x:100:101:mini:/nonexistent:/usr/sbin/nologin\n",
            )
            .unwrap();
            fs::write(tree.join("etc/group"), "root:x:0:\nmini:x:101:\n").unwrap();
        },
    ));

    debs.push(build_package(
        out,
        &PackageSpec {
            name: "mini-hello",
            essential: false,
            depends: &["mini-base"],
            pre_depends: &[],
            scripts: &[(
                "postinst",
                "#!/bin/sh\nset -e\nmkdir -p /var/lib/mini-hello\nprintf 'configured %s\\n' \"$1\" > /var/lib/mini-hello/state\necho mini-hello >> /var/log/mini-order\n",
            )],
            conffiles: &["/etc/mini-hello.conf"],
            compression: "zstd",
        },
        |tree| {
            fs::create_dir_all(tree.join("etc")).unwrap();
            fs::write(tree.join("etc/mini-hello.conf"), "greeting = hello\n").unwrap();
            // Shipped under /bin: on a merged-/usr root it must land in /usr/bin.
            fs::create_dir_all(tree.join("bin")).unwrap();
            fs::write(tree.join("bin/mini-hello"), "#!/bin/sh\necho hello\n").unwrap();
            fs::set_permissions(tree.join("bin/mini-hello"), fs::Permissions::from_mode(0o755))
                .unwrap();
            fs::create_dir_all(tree.join("usr/bin")).unwrap();
            fs::write(tree.join("usr/bin/mini-suid"), "#!/bin/sh\nid\n").unwrap();
            fs::set_permissions(tree.join("usr/bin/mini-suid"), fs::Permissions::from_mode(0o4755))
                .unwrap();
        },
    ));

    // mini-caps: by hand, for the non-root owner. Pre-Depends on
    // mini-hello: its preinst fails unless mini-hello is already configured.
    let arch = host_arch();
    let caps_path = out.join(format!("mini-caps_1.0-1_{arch}.deb"));
    let spec = PackageSpec {
        name: "mini-caps",
        essential: false,
        depends: &["mini-base"],
        pre_depends: &["mini-hello"],
        scripts: &[],
        conffiles: &[],
        compression: "xz",
    };
    write_deb(
        &caps_path,
        &control_text(&spec, &arch),
        &[
            (
                "preinst",
                "#!/bin/sh\nset -e\n[ -f /var/lib/mini-hello/state ] || \
                 { echo 'mini-hello is not configured' >&2; exit 1; }\n",
            ),
            (
                "postinst",
                "#!/bin/sh\nset -e\nsetcap cap_net_raw+p /usr/bin/mini-ping-postinst\n\
                 echo mini-caps >> /var/log/mini-order\n",
            ),
        ],
        &[
            Member::dir("./"),
            Member::dir("./usr/"),
            Member::dir("./usr/bin/"),
            Member::file(
                "./usr/bin/mini-ping-postinst",
                b"#!/bin/sh\necho ping\n",
                0o755,
            ),
            Member::dir("./var/"),
            Member::dir("./var/lib/"),
            Member::dir("./var/lib/mini-caps/")
                .owner(100, 101)
                .mode(0o2750),
            Member::file("./var/lib/mini-caps/owned", b"secret\n", 0o640).owner(100, 101),
        ],
        Compression::Xz,
    );
    debs.push(stage_deb(&spec, &arch, caps_path));
    debs
}

/// One member of a hand-built data.tar; the path is written into the header as is.
#[derive(Clone)]
pub struct Member {
    /// Raw path bytes (may be hostile).
    pub path: Vec<u8>,
    /// What it is.
    pub kind: MemberKind,
    /// Permission bits.
    pub mode: u32,
    /// Numeric owner.
    pub uid: u64,
    /// Numeric group.
    pub gid: u64,
    /// PAX `SCHILY.xattr.NAME` records.
    pub xattrs: Vec<(String, Vec<u8>)>,
}

/// The type of a [`Member`].
#[derive(Clone)]
pub enum MemberKind {
    /// A directory.
    Dir,
    /// A regular file with these contents.
    File(Vec<u8>),
    /// A symlink to this target.
    Symlink(Vec<u8>),
    /// A hard link to this member path.
    Hardlink(Vec<u8>),
    /// A FIFO.
    Fifo,
    /// A character device (major, minor).
    CharDevice(u32, u32),
}

impl Member {
    /// A directory, 0755 root:root.
    pub fn dir(path: &str) -> Self {
        Member {
            path: path.as_bytes().to_vec(),
            kind: MemberKind::Dir,
            mode: 0o755,
            uid: 0,
            gid: 0,
            xattrs: vec![],
        }
    }
    /// A regular file.
    pub fn file(path: &str, data: &[u8], mode: u32) -> Self {
        Member {
            kind: MemberKind::File(data.to_vec()),
            mode,
            ..Member::dir(path)
        }
    }
    /// A symlink.
    pub fn symlink(path: &str, target: &str) -> Self {
        Member {
            kind: MemberKind::Symlink(target.as_bytes().to_vec()),
            mode: 0o777,
            ..Member::dir(path)
        }
    }
    /// A hard link.
    pub fn hardlink(path: &str, target: &str) -> Self {
        Member {
            kind: MemberKind::Hardlink(target.as_bytes().to_vec()),
            mode: 0o644,
            ..Member::dir(path)
        }
    }
    /// Set the owner.
    pub fn owner(mut self, uid: u64, gid: u64) -> Self {
        self.uid = uid;
        self.gid = gid;
        self
    }
    /// Set the mode.
    pub fn mode(mut self, mode: u32) -> Self {
        self.mode = mode;
        self
    }
    /// Add an extended attribute.
    pub fn xattr(mut self, name: &str, value: &[u8]) -> Self {
        self.xattrs.push((name.to_string(), value.to_vec()));
        self
    }
}

/// Compression of the hand-built data.tar.
#[derive(Clone, Copy)]
pub enum Compression {
    /// data.tar
    None,
    /// data.tar.gz
    Gzip,
    /// data.tar.xz
    Xz,
    /// data.tar.zst
    Zstd,
}

/// A ustar tar of `members`, names written byte for byte (no validation).
pub fn tar_bytes(members: &[Member]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for m in members {
        if !m.xattrs.is_empty() {
            // Written by hand: the tar crate's append_pax_extensions leaves the header name
            // empty, which dpkg rejects ("invalid tar header with empty name field").
            let mut records = Vec::new();
            for (k, v) in &m.xattrs {
                let key = format!("SCHILY.xattr.{k}");
                let rest = 3 + key.len() + v.len();
                let mut len = rest + 1;
                while len != rest + len.to_string().len() {
                    len = rest + len.to_string().len();
                }
                records.extend_from_slice(format!("{len} {key}=").as_bytes());
                records.extend_from_slice(v);
                records.push(b'\n');
            }
            let mut h = tar::Header::new_ustar();
            let base = m
                .path
                .rsplit(|b| *b == b'/')
                .find(|c| !c.is_empty())
                .unwrap_or(b"x");
            let name = [b"./PaxHeaders/".as_slice(), base].concat();
            h.as_old_mut().name[..name.len()].copy_from_slice(&name);
            h.set_mode(0o644);
            h.set_mtime(1_700_000_000);
            h.set_entry_type(tar::EntryType::XHeader);
            h.set_size(records.len() as u64);
            h.set_cksum();
            builder.append(&h, &records[..]).unwrap();
        }
        let mut h = tar::Header::new_ustar();
        let name = &mut h.as_old_mut().name;
        assert!(m.path.len() < name.len(), "test member path too long");
        name[..m.path.len()].copy_from_slice(&m.path);
        h.set_mode(m.mode);
        h.set_uid(m.uid);
        h.set_gid(m.gid);
        h.set_mtime(1_700_000_000);
        let data: &[u8] = match &m.kind {
            MemberKind::Dir => {
                h.set_entry_type(tar::EntryType::Directory);
                &[]
            }
            MemberKind::File(d) => {
                h.set_entry_type(tar::EntryType::Regular);
                d
            }
            MemberKind::Symlink(t) => {
                h.set_entry_type(tar::EntryType::Symlink);
                h.set_link_name_literal(t).unwrap();
                &[]
            }
            MemberKind::Hardlink(t) => {
                h.set_entry_type(tar::EntryType::Link);
                h.set_link_name_literal(t).unwrap();
                &[]
            }
            MemberKind::Fifo => {
                h.set_entry_type(tar::EntryType::Fifo);
                &[]
            }
            MemberKind::CharDevice(major, minor) => {
                h.set_entry_type(tar::EntryType::Char);
                h.set_device_major(*major).unwrap();
                h.set_device_minor(*minor).unwrap();
                &[]
            }
        };
        h.set_size(data.len() as u64);
        h.set_cksum();
        builder.append(&h, data).unwrap();
    }
    builder.into_inner().unwrap()
}

fn compress(data: Vec<u8>, compression: Compression) -> (Vec<u8>, &'static str) {
    match compression {
        Compression::None => (data, ""),
        Compression::Gzip => {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            e.write_all(&data).unwrap();
            (e.finish().unwrap(), ".gz")
        }
        Compression::Xz => {
            let mut e = liblzma::write::XzEncoder::new(Vec::new(), 1);
            e.write_all(&data).unwrap();
            (e.finish().unwrap(), ".xz")
        }
        Compression::Zstd => (zstd::encode_all(&data[..], 1).unwrap(), ".zst"),
    }
}

/// Write a `.deb` by hand: `debian-binary`, `control.tar.gz` (control + scripts) and
/// `data.tar[.gz|.xz|.zst]` from `members`.
pub fn write_deb(
    path: &Path,
    control: &str,
    scripts: &[(&str, &str)],
    members: &[Member],
    compression: Compression,
) {
    let mut control_members = vec![
        Member::dir("./"),
        Member::file("./control", control.as_bytes(), 0o644),
    ];
    for (name, body) in scripts {
        control_members.push(Member::file(&format!("./{name}"), body.as_bytes(), 0o755));
    }
    let (control_tar, _) = compress(tar_bytes(&control_members), Compression::Gzip);
    let (data_tar, suffix) = compress(tar_bytes(members), compression);
    let file = fs::File::create(path).unwrap();
    let mut ar = ar::Builder::new(file);
    for (name, data) in [
        ("debian-binary".to_string(), b"2.0\n".to_vec()),
        ("control.tar.gz".to_string(), control_tar),
        (format!("data.tar{suffix}"), data_tar),
    ] {
        let mut header = ar::Header::new(name.into_bytes(), data.len() as u64);
        header.set_mode(0o100644);
        ar.append(&header, &data[..]).unwrap();
    }
}
