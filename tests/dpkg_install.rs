//! Installing a real (tiny) distribution with `install_packages`: the target's own dpkg
//! configures it in a chroot; the result is what dpkg reports as fully installed.

#[path = "support/minidistro.rs"]
mod minidistro;

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::Command;

use ingot::stage::chroot::command_in_chroot;
use ingot::stage::install::{InstallError, install_packages};

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

fn in_chroot(root: &Path, prog: &str, args: &[&str]) -> (bool, String) {
    let out = command_in_chroot(root, prog, args).output().unwrap();
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

#[test]
fn installs_the_mini_distribution_with_its_own_dpkg() {
    if !is_root() {
        eprintln!("skipped: needs root (chroot)");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let debs = minidistro::build(&tmp.path().join("debs"));
    let root = tmp.path().join("root");
    fs::create_dir(&root).unwrap();
    let mut lines = Vec::new();
    install_packages(&root, &debs, &mut |l| lines.push(l.to_string()))
        .unwrap_or_else(|e| panic!("install failed: {e}\n{}", lines.join("\n")));

    // dpkg's own view: nothing half-installed, everything "ii".
    let (ok, audit) = in_chroot(&root, "/usr/bin/dpkg", &["--audit"]);
    assert!(ok && audit.trim().is_empty(), "dpkg --audit: {audit}");
    let (ok, status) = in_chroot(
        &root,
        "/usr/bin/dpkg-query",
        &["-W", "-f", "${Package} ${db:Status-Abbrev}\n"],
    );
    assert!(ok, "{status}");
    let mut names: Vec<&str> = debs.iter().map(|d| d.name.as_str()).collect();
    names.sort();
    let expected: String = names.iter().map(|n| format!("{n} ii \n")).collect();
    assert_eq!(status, expected);

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
    let (ok, out) = in_chroot(&root, "/bin/mini-hello", &[] as &[&str]);
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
    if !is_root() {
        eprintln!("skipped: needs root (chroot)");
        return;
    }
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
