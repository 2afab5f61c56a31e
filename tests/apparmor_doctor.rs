//! `ingot doctor` on a host with `kernel.apparmor_restrict_unprivileged_userns = 1`: whether
//! the shipped profile (`packaging/apparmor.d/ingot`, installed as `/etc/apparmor.d/ingot`) is
//! installed, loaded and in force for this process, each failing state with the one command
//! that fixes it. The host is a prepared folder (this kernel has no AppArmor): the check reads
//! every path under the root it is given.

use std::fs;
use std::path::{Path, PathBuf};

use ingot::stage::apparmor::userns_check;

struct Host(tempfile::TempDir);

impl Host {
    fn new() -> Host {
        Host(tempfile::tempdir().unwrap())
    }
    fn write(&self, path: &str, text: &str) -> &Host {
        let p = self.0.path().join(path);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, text).unwrap();
        self
    }
    fn restricted(&self) -> &Host {
        self.write(
            "proc/sys/kernel/apparmor_restrict_unprivileged_userns",
            "1\n",
        )
    }
    fn with_shipped_profile(&self) -> &Host {
        let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("packaging/apparmor.d/ingot");
        self.write(
            "etc/apparmor.d/ingot",
            &fs::read_to_string(shipped).unwrap(),
        )
    }
    fn root(&self) -> &Path {
        self.0.path()
    }
}

fn packaged() -> PathBuf {
    PathBuf::from("/usr/bin/ingot")
}

#[test]
fn no_restriction_passes() {
    let h = Host::new();
    let c = userns_check(h.root(), &packaged());
    assert!(c.ok && c.message.contains("not present"), "{c}");
    h.write(
        "proc/sys/kernel/apparmor_restrict_unprivileged_userns",
        "0\n",
    );
    let c = userns_check(h.root(), Path::new("/anywhere/ingot"));
    assert!(c.ok, "{c}");
}

#[test]
fn restricted_without_the_profile_says_to_install_the_package() {
    let h = Host::new();
    h.restricted();
    let c = userns_check(h.root(), &packaged());
    assert!(!c.ok, "{c}");
    assert!(
        c.message
            .contains("apparmor_restrict_unprivileged_userns = 1")
            && c.message.contains("/etc/apparmor.d/ingot")
            && c.message.contains("fix: install the ingot package")
            && c.message.contains("sudo apt-get install ./ingot_"),
        "{c}"
    );
    // A file of that name without `userns,` for /usr/bin/ingot is not the shipped profile.
    h.write("etc/apparmor.d/ingot", "profile ingot /usr/bin/ingot {}\n");
    assert!(
        userns_check(h.root(), &packaged())
            .message
            .contains("no AppArmor profile")
    );
}

#[test]
fn restricted_with_the_profile_installed_but_not_loaded_says_how_to_load_it() {
    let h = Host::new();
    h.restricted().with_shipped_profile();
    h.write("proc/self/attr/current", "unconfined\n");
    let c = userns_check(h.root(), &packaged());
    assert!(!c.ok, "{c}");
    assert!(
        c.message.contains("installed but not loaded")
            && c.message
                .ends_with("fix: sudo apparmor_parser -r /etc/apparmor.d/ingot"),
        "{c}"
    );
}

#[test]
fn restricted_with_the_profile_for_another_binary_says_to_run_the_packaged_one() {
    let h = Host::new();
    h.restricted().with_shipped_profile();
    let c = userns_check(
        h.root(),
        Path::new("/home/u/src/ingot/target/release/ingot"),
    );
    assert!(!c.ok, "{c}");
    assert!(
        c.message
            .contains("allows only /usr/bin/ingot, not /home/u/src/ingot/target/release/ingot")
            && c.message.ends_with("fix: run /usr/bin/ingot instead"),
        "{c}"
    );
}

#[test]
fn restricted_and_running_under_the_profile_passes() {
    let h = Host::new();
    h.restricted().with_shipped_profile();
    // Newer kernels (stacked LSMs) have the AppArmor-specific file; it wins.
    h.write("proc/self/attr/current", "unconfined\n");
    h.write("proc/self/attr/apparmor/current", "ingot (unconfined)\n");
    let c = userns_check(h.root(), &packaged());
    assert!(
        c.ok && c.message.contains("runs under the AppArmor profile ingot"),
        "{c}"
    );
    let h = Host::new();
    h.restricted().with_shipped_profile();
    h.write("proc/self/attr/current", "ingot (unconfined)\0");
    assert!(userns_check(h.root(), &packaged()).ok);
}

#[test]
fn restricted_loaded_but_not_in_force_says_to_run_again() {
    let h = Host::new();
    h.restricted().with_shipped_profile();
    h.write("proc/self/attr/current", "unconfined\n");
    h.write(
        "sys/kernel/security/apparmor/profiles",
        "lsb_release (enforce)\ningot (unconfined)\n",
    );
    let c = userns_check(h.root(), &packaged());
    assert!(
        !c.ok
            && c.message
                .contains("is loaded but this process did not start under it"),
        "{c}"
    );
    // Another profile whose name starts with "ingot" is not ours.
    h.write(
        "sys/kernel/security/apparmor/profiles",
        "ingotx (enforce)\n",
    );
    assert!(
        userns_check(h.root(), &packaged())
            .message
            .contains("installed but not loaded")
    );
}

#[test]
fn the_shipped_profile_grants_userns_to_the_packaged_binary_only() {
    let text = fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("packaging/apparmor.d/ingot"),
    )
    .unwrap();
    let rules: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    assert_eq!(
        rules,
        [
            "abi <abi/4.0>,",
            "include <tunables/global>",
            "profile ingot /usr/bin/ingot flags=(unconfined) {",
            "userns,",
            "include if exists <local/ingot>",
            "}",
        ]
    );
}
