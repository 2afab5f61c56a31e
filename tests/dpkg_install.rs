//! Installing a real (tiny) distribution with `install_packages`: the target's own dpkg
//! configures it in a chroot; the result is what dpkg reports as fully installed.

#[path = "support/minidistro.rs"]
mod minidistro;
#[path = "support/privilege.rs"]
mod privilege;

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::Command;

use ingot::stage::install::{InstallError, install_packages};
use ingot::stage::sandbox::{self, Network};

/// dpkg's own view of `root`: nothing half-installed, every package of `debs` "ii".
fn assert_all_installed(root: &Path, debs: &[ingot::stage::StageDeb]) {
    let (ok, audit) = in_sandbox(root, "/usr/bin/dpkg", &["--audit"]);
    assert!(ok && audit.trim().is_empty(), "dpkg --audit: {audit}");
    let (ok, status) = in_sandbox(
        root,
        "/usr/bin/dpkg-query",
        &["-W", "-f", "${Package} ${db:Status-Abbrev}\n"],
    );
    assert!(ok, "{status}");
    let mut names: Vec<&str> = debs.iter().map(|d| d.name.as_str()).collect();
    names.sort();
    let expected: String = names.iter().map(|n| format!("{n} ii \n")).collect();
    assert_eq!(status, expected);
}

fn in_sandbox(root: &Path, prog: &str, args: &[&str]) -> (bool, String) {
    let mut text = String::new();
    let finished = sandbox::run(root, prog, args, Network::Loopback, 0, &mut |l| {
        text.push_str(l);
        text.push('\n');
    })
    .unwrap();
    (finished.status.success(), text)
}

#[test]
fn installs_the_mini_distribution_with_its_own_dpkg() {
    privilege::require_root("chroot, and packages owned by other users");
    let tmp = tempfile::tempdir().unwrap();
    let debs = minidistro::build(&tmp.path().join("debs"));
    let root = tmp.path().join("root");
    fs::create_dir(&root).unwrap();
    let mut lines = Vec::new();
    install_packages(&root, &debs, &mut |l| lines.push(l.to_string()))
        .unwrap_or_else(|e| panic!("install failed: {e}\n{}", lines.join("\n")));

    assert_all_installed(&root, &debs);

    // The database layout mmdebstrap's setup starts from.
    assert_eq!(
        fs::read_to_string(root.join("var/lib/dpkg/arch")).unwrap(),
        format!("{}\n", minidistro::host_arch())
    );
    let tmp_mode = fs::metadata(root.join("tmp")).unwrap().permissions().mode();
    assert_eq!(tmp_mode & 0o7777, 0o1777);

    // Maintainer scripts ran, Essential first, and mini-caps' preinst (which needs
    // mini-hello configured: Pre-Depends) passed.
    assert_eq!(
        fs::read_to_string(root.join(minidistro::BASE_MARK)).unwrap(),
        "configure\n"
    );
    assert_eq!(
        fs::read_to_string(root.join(minidistro::HELLO_MARK)).unwrap(),
        "configured configure\n"
    );
    let order = fs::read_to_string(root.join(minidistro::ORDER_LOG)).unwrap();
    let order: Vec<&str> = order.lines().collect();
    assert_eq!(
        order,
        ["mini-base", "mini-passwd", "mini-hello", "mini-caps"]
    );

    // Merged /usr kept: ./bin/mini-hello landed in usr/bin, bin is still a symlink.
    assert_eq!(
        fs::read_link(root.join("bin")).unwrap(),
        Path::new("usr/bin")
    );
    assert!(root.join("usr/bin/mini-hello").is_file());
    let (ok, out) = in_sandbox(&root, "/bin/mini-hello", &[] as &[&str]);
    assert!(ok && out == "hello\n", "{out}");

    // Conffile registered.
    let conffiles =
        fs::read_to_string(root.join("var/lib/dpkg/info/mini-hello.conffiles")).unwrap();
    assert_eq!(conffiles.trim(), "/etc/mini-hello.conf");

    // Modes and owners.
    let suid = fs::metadata(root.join("usr/bin/mini-suid")).unwrap();
    assert_eq!(suid.mode() & 0o7777, 0o4755);
    assert_eq!((suid.uid(), suid.gid()), (0, 0));
    let owned = fs::metadata(root.join("var/lib/mini-caps/owned")).unwrap();
    assert_eq!(
        (owned.uid(), owned.gid(), owned.mode() & 0o7777),
        (100, 101, 0o640)
    );
    let owned_dir = fs::metadata(root.join("var/lib/mini-caps")).unwrap();
    assert_eq!(
        (owned_dir.uid(), owned_dir.gid(), owned_dir.mode() & 0o7777),
        (100, 101, 0o2750)
    );

    // Capabilities: set by a postinst (the way Debian's iputils does it).
    let getcap = Command::new("getcap")
        .arg(root.join("usr/bin/mini-ping-postinst"))
        .output()
        .unwrap();
    let getcap = String::from_utf8_lossy(&getcap.stdout);
    assert!(getcap.contains("cap_net_raw=p"), "getcap: {getcap:?}");

    // No scaffolding left: copied debs, fake start-stop-daemon.
    assert!(!root.join("tmp/ingot-debs").exists());
    assert!(!root.join("usr/sbin/start-stop-daemon.REAL").exists());
    assert_eq!(
        fs::read(root.join("usr/sbin/start-stop-daemon")).unwrap(),
        fs::read("/usr/sbin/start-stop-daemon").unwrap()
    );
    assert!(fs::read_dir(root.join("tmp")).unwrap().next().is_none());
}

#[test]
fn a_failing_postinst_names_the_package_and_status() {
    privilege::require_root("chroot, and packages owned by other users");
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("debs");
    let mut debs = minidistro::build(&out);
    debs.push(minidistro::build_package(
        &out,
        &minidistro::PackageSpec {
            name: "mini-broken",
            essential: false,
            depends: &["mini-base"],
            pre_depends: &[],
            scripts: &[(
                "postinst",
                "#!/bin/sh\necho 'mini-broken: the disk is made of lava' >&2\nexit 7\n",
            )],
            conffiles: &[],
            compression: "gzip",
        },
        |tree| {
            fs::create_dir_all(tree.join("usr/share/mini-broken")).unwrap();
            fs::write(tree.join("usr/share/mini-broken/README"), "broken\n").unwrap();
        },
    ));
    let root = tmp.path().join("root");
    fs::create_dir(&root).unwrap();
    let err = install_packages(&root, &debs, &mut |_| {}).unwrap_err();
    let text = err.to_string();
    match &err {
        InstallError::Dpkg { output, status, .. } => {
            assert!(output.contains("the disk is made of lava"), "{text}");
            assert!(output.contains("mini-broken"), "{text}");
            assert!(status.contains('1'), "{text}");
        }
        other => panic!("expected a dpkg error, got {other}"),
    }
    assert!(text.contains("--configure"), "{text}");
    // Scaffolding is removed on the error path too.
    assert!(!root.join("tmp/ingot-debs").exists());
    assert!(!root.join("usr/sbin/start-stop-daemon.REAL").exists());
}

#[test]
fn no_ssh_host_keys_are_generated_while_packages_are_configured() {
    privilege::require_root("chroot, and packages owned by other users");
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("debs");
    let mut debs = minidistro::build(&out);
    // Like openssh-server's postinst: make each host key that is missing, note each present.
    let postinst = "#!/bin/sh\nset -e\nmkdir -p /var/lib/mini-sshd\n\
        for k in /etc/ssh/ssh_host_rsa_key /etc/ssh/ssh_host_ecdsa_key /etc/ssh/ssh_host_ed25519_key; do\n\
        if [ -f \"$k\" ]; then echo \"present $k\"; else echo \"generated $k\"; echo key > \"$k\"; fi\n\
        done >> /var/lib/mini-sshd/seen\n";
    debs.push(minidistro::build_package(
        &out,
        &minidistro::PackageSpec {
            name: "mini-sshd",
            essential: false,
            depends: &["mini-base"],
            pre_depends: &[],
            scripts: &[("postinst", postinst)],
            conffiles: &[],
            compression: "gzip",
        },
        |tree| {
            fs::create_dir_all(tree.join("etc/ssh")).unwrap();
            fs::write(tree.join("etc/ssh/moduli"), "# moduli\n").unwrap();
        },
    ));
    let root = tmp.path().join("root");
    fs::create_dir(&root).unwrap();
    let mut lines = Vec::new();
    install_packages(&root, &debs, &mut |l| lines.push(l.to_string()))
        .unwrap_or_else(|e| panic!("install failed: {e}\n{}", lines.join("\n")));
    let seen = fs::read_to_string(root.join("var/lib/mini-sshd/seen")).unwrap();
    assert_eq!(
        seen,
        "present /etc/ssh/ssh_host_rsa_key\npresent /etc/ssh/ssh_host_ecdsa_key\n\
         present /etc/ssh/ssh_host_ed25519_key\n",
        "the postinst generated host keys"
    );
    // The placeholders are gone: what comes next (provision) sees no host key at all.
    let left: Vec<String> = fs::read_dir(root.join("etc/ssh"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(left, ["moduli"]);
}

/// The real thing: `INGOT_E2E_DEBS=DIR` holds the `.deb`s of a package set (e.g. what
/// `mmdebstrap --variant=essential --include=apt --skip=essential/unlink
/// --skip=cleanup/apt/cache` left in `var/cache/apt/archives`); `INGOT_E2E_REFERENCE=DIR`
/// (optional) is mmdebstrap's tree for the same set. Installs the set and compares every path,
/// type, mode, owner and content (mtimes aside) and `var/lib/dpkg/status`.
/// Run as root: `cargo test --test dpkg_install -- --ignored --nocapture`.
#[test]
#[ignore]
fn real_package_set_matches_mmdebstrap() {
    privilege::require_root("chroot, mknod");
    let debs_dir = std::env::var("INGOT_E2E_DEBS").unwrap_or_else(|_| {
        panic!(
            "INGOT_E2E_DEBS is not set: this test needs the .debs of a real package set \
             (see the comment above it)"
        )
    });
    let debs = stage_debs_from_dir(Path::new(&debs_dir));
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    fs::create_dir(&root).unwrap();
    // What the stage provides: a minimal /dev (real root can mknod) and policy-rc.d.
    fs::create_dir_all(root.join("dev")).unwrap();
    for (name, minor) in [
        ("null", 3),
        ("zero", 5),
        ("full", 7),
        ("random", 8),
        ("urandom", 9),
    ] {
        nix::sys::stat::mknod(
            &root.join("dev").join(name),
            nix::sys::stat::SFlag::S_IFCHR,
            nix::sys::stat::Mode::from_bits_truncate(0o666),
            nix::sys::stat::makedev(1, minor),
        )
        .unwrap();
    }
    fs::create_dir_all(root.join("usr/sbin")).unwrap();
    fs::write(root.join("usr/sbin/policy-rc.d"), "#!/bin/sh\nexit 101\n").unwrap();
    fs::set_permissions(
        root.join("usr/sbin/policy-rc.d"),
        fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    let started = std::time::Instant::now();
    install_packages(&root, &debs, &mut |l| eprintln!("  {l}")).unwrap_or_else(|e| panic!("{e}"));
    eprintln!(
        "installed {} packages in {:?}",
        debs.len(),
        started.elapsed()
    );
    for name in ["null", "zero", "full", "random", "urandom"] {
        fs::remove_file(root.join("dev").join(name)).unwrap();
    }
    fs::remove_file(root.join("usr/sbin/policy-rc.d")).unwrap();

    let (ok, audit) = in_sandbox(&root, "/usr/bin/dpkg", &["--audit"]);
    assert!(ok && audit.trim().is_empty(), "dpkg --audit: {audit}");
    let (_, status) = in_sandbox(
        &root,
        "/usr/bin/dpkg-query",
        &["-W", "-f", "${db:Status-Abbrev}\n"],
    );
    assert!(status.lines().all(|l| l == "ii "), "{status}");
    assert_eq!(status.lines().count(), debs.len());

    if let Ok(reference) = std::env::var("INGOT_E2E_REFERENCE") {
        let reference = Path::new(&reference);
        let ours = listing(&root);
        let theirs = listing(reference);
        let only_ours: Vec<_> = ours.difference(&theirs).collect();
        let only_theirs: Vec<_> = theirs.difference(&ours).collect();
        eprintln!("only in ours ({}):", only_ours.len());
        for l in &only_ours {
            eprintln!("  + {l}");
        }
        eprintln!("only in mmdebstrap's ({}):", only_theirs.len());
        for l in &only_theirs {
            eprintln!("  - {l}");
        }
        assert_eq!(
            fs::read_to_string(root.join("var/lib/dpkg/status")).unwrap(),
            fs::read_to_string(reference.join("var/lib/dpkg/status")).unwrap()
        );
        assert!(only_ours.is_empty() && only_theirs.is_empty());
    }
}

/// Paths that legitimately differ from mmdebstrap's tree: its apt download/cache state,
/// logs, device nodes, the files it copies from the build host, and history-dependent backups.
fn ignored(rel: &str) -> bool {
    const PREFIXES: &[&str] = &[
        "dev/",
        "var/cache/apt/",
        "var/lib/apt/",
        "var/log/",
        "etc/apt/",
        "var/cache/ldconfig/aux-cache",
        "etc/hostname",
        "etc/resolv.conf",
    ];
    // `*-old` backups (dpkg status/diversions, debconf) depend on how many dpkg/debconf runs
    // there were, i.e. on apt's batching, not on the result.
    PREFIXES
        .iter()
        .any(|p| rel.starts_with(p) || p.trim_end_matches('/') == rel)
        || rel.ends_with("-old")
}

fn listing(root: &Path) -> std::collections::BTreeSet<String> {
    fn walk(root: &Path, dir: &Path, out: &mut std::collections::BTreeSet<String>) {
        for entry in fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let rel = path.strip_prefix(root).unwrap().display().to_string();
            if ignored(&rel) {
                continue;
            }
            let meta = path.symlink_metadata().unwrap();
            let what = if meta.file_type().is_symlink() {
                format!("-> {}", fs::read_link(&path).unwrap().display())
            } else if meta.is_dir() {
                "dir".to_string()
            } else if meta.is_file() {
                use sha2::Digest;
                format!(
                    "{} bytes sha256 {}",
                    meta.len(),
                    hex::encode(sha2::Sha256::digest(fs::read(&path).unwrap()))
                )
            } else {
                format!("special {:o}", meta.mode())
            };
            let caps = xattr::get(&path, "security.capability")
                .ok()
                .flatten()
                .map(hex::encode);
            out.insert(format!(
                "{rel} {what} {:o} {}:{} caps={caps:?}",
                meta.mode() & 0o7777,
                meta.uid(),
                meta.gid()
            ));
            if meta.is_dir() {
                walk(root, &path, out);
            }
        }
    }
    let mut out = std::collections::BTreeSet::new();
    walk(root, root, &mut out);
    out
}

/// `StageDeb`s for every `.deb` in `dir`, Depends/Pre-Depends mapped onto the set (first
/// alternative present, directly or through Provides), sorted by name.
fn stage_debs_from_dir(dir: &Path) -> Vec<ingot::stage::StageDeb> {
    let mut controls = Vec::new();
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "deb") {
            let text = ingot::deb::read_control(&path).unwrap();
            let mut fields = std::collections::HashMap::new();
            let mut last = String::new();
            for line in text.lines() {
                if line.starts_with([' ', '\t']) {
                    if let Some(v) = fields.get_mut(&last) {
                        let v: &mut String = v;
                        v.push(' ');
                        v.push_str(line.trim());
                    }
                } else if let Some((k, v)) = line.split_once(':') {
                    last = k.trim().to_string();
                    fields.insert(last.clone(), v.trim().to_string());
                }
            }
            controls.push((path, fields));
        }
    }
    let mut provider: std::collections::HashMap<String, String> = Default::default();
    for (_, f) in &controls {
        let name = f["Package"].clone();
        for p in f
            .get("Provides")
            .map(String::as_str)
            .unwrap_or("")
            .split(',')
        {
            let p = p.split_whitespace().next().unwrap_or("");
            if !p.is_empty() {
                provider.entry(p.to_string()).or_insert(name.clone());
            }
        }
        provider.insert(name.clone(), name);
    }
    let resolve = |field: Option<&String>| -> Vec<String> {
        let mut out = Vec::new();
        for group in field.map(String::as_str).unwrap_or("").split(',') {
            for alt in group.split('|') {
                let name = alt
                    .split(['(', ' ', ':'])
                    .find(|s| !s.is_empty())
                    .unwrap_or("");
                if let Some(p) = provider.get(name.trim()) {
                    out.push(p.clone());
                    break;
                }
            }
        }
        out
    };
    let mut debs: Vec<_> = controls
        .iter()
        .map(|(path, f)| ingot::stage::StageDeb {
            name: f["Package"].clone(),
            version: f["Version"].clone(),
            architecture: f["Architecture"].clone(),
            essential: f.get("Essential").is_some_and(|e| e == "yes"),
            path: path.clone(),
            sha256: ingot::fetch::hash_file(path).expect("hash the .deb").0,
            pre_depends_on: resolve(f.get("Pre-Depends")),
            depends_on: resolve(f.get("Depends")),
        })
        .collect();
    debs.sort_by(|a, b| a.name.cmp(&b.name));
    debs
}

/// Set only in the child process `essential_packages_are_unpacked_once_and_registered_like_dpkg`
/// starts: the root to install into with the `double-unpack` lever, and the packages (JSON).
const DOUBLE_UNPACK_ROOT: &str = "INGOT_TEST_DOUBLE_UNPACK_ROOT";
const DOUBLE_UNPACK_DEBS: &str = "INGOT_TEST_DOUBLE_UNPACK_DEBS";

/// A package after the Essential set whose postinst calls start-stop-daemon, recording what
/// it said.
fn mini_ssd_user(out: &Path) -> ingot::stage::StageDeb {
    minidistro::build_package(
        out,
        &minidistro::PackageSpec {
            name: "mini-ssd-user",
            essential: false,
            depends: &["mini-base"],
            pre_depends: &[],
            scripts: &[(
                "postinst",
                "#!/bin/sh
mkdir -p /var/lib/mini-ssd-user
                 start-stop-daemon --start --exec /bin/true > /var/lib/mini-ssd-user/said 2>&1
                 exit 0
",
            )],
            conffiles: &[],
            compression: "gzip",
        },
        |tree| {
            fs::create_dir_all(tree.join("usr/share/mini-ssd-user")).unwrap();
            fs::write(tree.join("usr/share/mini-ssd-user/README"), "ssd\n").unwrap();
        },
    )
}

/// An Essential package with what registration must get right: a `preinst` (it records how
/// it was run: `$0`, arguments, dpkg's environment and its own state while it runs), a
/// conffile, trigger interests (a path and an explicit trigger) and no `md5sums`.
fn mini_conf(out: &Path) -> ingot::stage::StageDeb {
    minidistro::build_package(
        out,
        &minidistro::PackageSpec {
            name: "mini-conf",
            essential: true,
            depends: &["mini-base"],
            pre_depends: &[],
            scripts: &[
                (
                    "preinst",
                    "#!/bin/sh\nset -e\nmkdir -p /var/lib/mini-conf\n\
                     echo \"$0 $*\" > /var/lib/mini-conf/preinst-args\n\
                     env > /var/lib/mini-conf/preinst-env\n\
                     dpkg-query -W -f '${db:Status-Abbrev}\\n' mini-conf mini-base \
                     > /var/lib/mini-conf/preinst-status\n\
                     test -f /etc/mini-conf.conf\n",
                ),
                (
                    "triggers",
                    "interest-noawait /usr/share/mini-conf/hooks\ninterest mini-conf-reload\n",
                ),
            ],
            conffiles: &["/etc/mini-conf.conf"],
            compression: "xz",
        },
        |tree| {
            fs::create_dir_all(tree.join("etc")).unwrap();
            fs::write(tree.join("etc/mini-conf.conf"), "answer = 42\n").unwrap();
            fs::create_dir_all(tree.join("usr/share/mini-conf/hooks")).unwrap();
            fs::write(tree.join("usr/share/mini-conf/README"), "conf\n").unwrap();
        },
    )
}

/// Owner, group, mode and type (and a symlink's target) of every path under `root`.
fn metadata_listing(root: &Path) -> Vec<String> {
    let out = Command::new("find")
        .arg(".")
        .args(["-printf", "%p %U %G %m %y %l\n"])
        .current_dir(root)
        .output()
        .unwrap();
    assert!(out.status.success());
    let mut lines: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect();
    lines.sort();
    lines
}

fn dpkg_env(root: &Path) -> Vec<String> {
    let env = fs::read_to_string(root.join("var/lib/mini-conf/preinst-env")).unwrap();
    let mut env: Vec<String> = env.lines().map(str::to_string).collect();
    env.sort();
    env
}

#[test]
fn essential_packages_are_unpacked_once_and_registered_like_dpkg() {
    privilege::require_root("chroot, and packages owned by other users");
    if let Some(root) = std::env::var_os(DOUBLE_UNPACK_ROOT) {
        // The child: the same packages, dpkg unpacking the Essential set a second time.
        let debs: Vec<ingot::stage::StageDeb> =
            serde_json::from_str(&std::env::var(DOUBLE_UNPACK_DEBS).unwrap()).unwrap();
        let root = Path::new(&root);
        fs::create_dir(root).unwrap();
        install_packages(root, &debs, &mut |l| eprintln!("{l}")).unwrap_or_else(|e| panic!("{e}"));
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("debs");
    let mut debs = minidistro::build(&out);
    debs.push(mini_conf(&out));
    debs.push(mini_ssd_user(&out));
    let essential = ["mini-base", "mini-passwd", "mini-conf"];

    let root = tmp.path().join("registered");
    fs::create_dir(&root).unwrap();
    let mut lines = Vec::new();
    install_packages(&root, &debs, &mut |l| lines.push(l.to_string()))
        .unwrap_or_else(|e| panic!("install failed: {e}\n{}", lines.join("\n")));
    let log = lines.join("\n");
    assert!(
        log.contains("registering 3 extracted essential packages with dpkg"),
        "{log}"
    );
    // dpkg unpacked the others (so its "Unpacking" lines are in the log) but no Essential one.
    assert!(log.contains("Unpacking mini-hello"), "{log}");
    for name in essential {
        assert!(
            !log.contains(&format!("Unpacking {name} ")),
            "{name}:\n{log}"
        );
        assert!(
            log.contains(&format!("Setting up {name} ")),
            "{name}:\n{log}"
        );
    }

    // What the packages after the Essential set get for start-stop-daemon is mmdebstrap's
    // fake (it starts nothing), on this path and, through the tree comparison below, on the
    // double-unpack one, where dpkg's unpack of the Essential set had put the real one back.
    let ssd = fs::read_to_string(root.join("var/lib/mini-ssd-user/said")).unwrap();
    assert!(ssd.contains("Fake start-stop-daemon called"), "{ssd}");

    // dpkg's view: nothing half-installed, everything "ii", conffile recorded with its md5.
    assert_all_installed(&root, &debs);
    let (ok, conffiles) = in_sandbox(
        &root,
        "/usr/bin/dpkg-query",
        &["-W", "-f", "${Conffiles}\n", "mini-conf"],
    );
    let md5 = Command::new("md5sum")
        .arg(root.join("etc/mini-conf.conf"))
        .output()
        .unwrap();
    let md5 = String::from_utf8_lossy(&md5.stdout);
    let md5 = md5.split_whitespace().next().unwrap();
    assert!(ok, "{conffiles}");
    assert_eq!(conffiles.trim(), format!("/etc/mini-conf.conf {md5}"));
    assert!(!root.join("etc/mini-conf.conf.dpkg-new").exists());
    // The preinst ran as dpkg runs it: from tmp.ci, `install`, itself half-installed, with
    // its conffile already extracted.
    assert_eq!(
        fs::read_to_string(root.join("var/lib/mini-conf/preinst-args")).unwrap(),
        "/var/lib/dpkg/tmp.ci/preinst install\n"
    );
    assert_eq!(
        fs::read_to_string(root.join("var/lib/mini-conf/preinst-status")).unwrap(),
        // mini-base (sorted first) unpacked, mini-conf half-installed, reinstall required.
        "iU \niHR\n"
    );

    // The same packages with the double-unpack lever (dpkg --install of the Essential set),
    // in a child process so that the lever is not set for the other tests here.
    let twice = tmp.path().join("twice");
    let child = Command::new(std::env::current_exe().unwrap())
        .args([
            "essential_packages_are_unpacked_once_and_registered_like_dpkg",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("INGOT_BENCH_DPKG", "double-unpack")
        .env(DOUBLE_UNPACK_ROOT, &twice)
        .env(DOUBLE_UNPACK_DEBS, serde_json::to_string(&debs).unwrap())
        .output()
        .unwrap();
    let child_log = String::from_utf8_lossy(&child.stderr);
    assert!(child.status.success(), "{child_log}");
    assert!(
        child_log.contains("dpkg unpacks the essential set again"),
        "{child_log}"
    );
    assert!(child_log.contains("Unpacking mini-conf "), "{child_log}");

    // Byte for byte the same tree (dpkg's log has times; the environment's order differs),
    // same owners, modes and types, and the preinst saw the same environment.
    let diff = Command::new("diff")
        .args([
            "-r",
            "--no-dereference",
            "-x",
            "dpkg.log",
            "-x",
            "preinst-env",
        ])
        .arg(&twice)
        .arg(&root)
        .output()
        .unwrap();
    assert!(
        diff.status.success(),
        "registered tree differs from dpkg's double unpack:\n{}{}",
        String::from_utf8_lossy(&diff.stdout),
        String::from_utf8_lossy(&diff.stderr)
    );
    assert_eq!(metadata_listing(&twice), metadata_listing(&root));
    assert_eq!(dpkg_env(&twice), dpkg_env(&root));
    assert!(
        dpkg_env(&root)
            .iter()
            .any(|l| l == "DPKG_MAINTSCRIPT_NAME=preinst")
    );
}

#[test]
fn an_essential_deb_changed_after_verification_is_refused_before_extraction() {
    privilege::require_root("chroot, and packages owned by other users");
    let tmp = tempfile::tempdir().unwrap();
    let debs = minidistro::build(&tmp.path().join("debs"));
    // dpkg never unpacks the Essential set again: the extracted bytes are all there is.
    let passwd = debs.iter().find(|d| d.name == "mini-passwd").unwrap();
    assert!(passwd.essential);
    let mut file = fs::OpenOptions::new()
        .append(true)
        .open(&passwd.path)
        .unwrap();
    std::io::Write::write_all(&mut file, b"\n").unwrap();
    let root = tmp.path().join("root");
    fs::create_dir(&root).unwrap();
    match install_packages(&root, &debs, &mut |_| {}) {
        Err(InstallError::Tampered { package, .. }) => assert_eq!(package, "mini-passwd"),
        other => panic!("expected the changed .deb to be refused, got {other:?}"),
    }
    assert!(!root.join("etc/passwd").exists());
}
