//! The AppArmor side of `ingot doctor`: on a host with
//! `kernel.apparmor_restrict_unprivileged_userns = 1` (Ubuntu ≥ 23.10), may this ingot create
//! user namespaces? Yes only when it runs under the profile the Debian package ships
//! (`/etc/apparmor.d/ingot`, `userns,` for `/usr/bin/ingot` only).
//!
//! Every path is read under a host root (`/` in use, a prepared folder in tests), so the
//! decision is testable on a kernel without AppArmor. Reads only; never loads anything.

use std::path::Path;

use super::check::Check;

/// The profile's name, as `/proc/self/attr/current` shows it (`ingot (unconfined)`).
pub const PROFILE_NAME: &str = "ingot";
/// Where the package installs the profile.
pub const PROFILE_PATH: &str = "etc/apparmor.d/ingot";
/// The only binary the profile attaches to.
pub const PACKAGED_BINARY: &str = "/usr/bin/ingot";

const CHECK: &str = "apparmor userns restriction";
const SYSCTL: &str = "kernel.apparmor_restrict_unprivileged_userns";

/// The AppArmor label of this process (`ingot`, `unconfined`, …), mode suffix removed.
fn current_label(root: &Path) -> Option<String> {
    // Kernels with stacking LSMs have the AppArmor-specific file; older ones only the generic.
    ["proc/self/attr/apparmor/current", "proc/self/attr/current"]
        .iter()
        .find_map(|p| std::fs::read_to_string(root.join(p)).ok())
        .map(|s| {
            let s = s.trim_end_matches(['\n', '\0']).trim();
            s.split(" (").next().unwrap_or(s).to_string()
        })
        .filter(|s| !s.is_empty())
}

/// Whether the kernel has the profile loaded: `Some` only where the list is readable (it is
/// not to ordinary users).
fn profile_loaded(root: &Path) -> Option<bool> {
    let list = std::fs::read_to_string(root.join("sys/kernel/security/apparmor/profiles")).ok()?;
    Some(
        list.lines()
            .any(|l| l.split(" (").next() == Some(PROFILE_NAME)),
    )
}

/// The check for a process running `exe`, with every host path under `root`.
pub fn userns_check(root: &Path, exe: &Path) -> Check {
    let sysctl = root.join("proc/sys/kernel/apparmor_restrict_unprivileged_userns");
    let value = std::fs::read_to_string(&sysctl)
        .ok()
        .and_then(|s| s.trim().parse::<i64>().ok());
    let pass = |m: String| Check {
        name: CHECK.into(),
        ok: true,
        message: m,
    };
    let fail = |m: String| Check {
        name: CHECK.into(),
        ok: false,
        message: format!("AppArmor restricts unprivileged user namespaces ({SYSCTL} = 1) and {m}"),
    };
    match value {
        None => return pass("not present on this kernel".into()),
        Some(1) => {}
        Some(n) => return pass(format!("{SYSCTL} = {n}")),
    }
    let profile = Path::new("/").join(PROFILE_PATH);
    if current_label(root).as_deref() == Some(PROFILE_NAME) {
        return pass(format!(
            "{SYSCTL} = 1; this process runs under the AppArmor profile {PROFILE_NAME} ({}), \
             which allows user namespaces",
            profile.display()
        ));
    }
    let installed = std::fs::read_to_string(root.join(PROFILE_PATH))
        .is_ok_and(|text| text.contains("userns,") && text.contains(PACKAGED_BINARY));
    if !installed {
        return fail(format!(
            "no AppArmor profile for ingot is installed at {}; fix: install the ingot package \
             (it ships and loads that profile for {PACKAGED_BINARY}): sudo apt-get install \
             ./ingot_*.deb (make deb builds it)",
            profile.display()
        ));
    }
    let exe = exe.canonicalize().unwrap_or_else(|_| exe.to_path_buf());
    if exe != Path::new(PACKAGED_BINARY) {
        return fail(format!(
            "{} allows only {PACKAGED_BINARY}, not {}; fix: run {PACKAGED_BINARY} instead",
            profile.display(),
            exe.display()
        ));
    }
    match profile_loaded(root) {
        Some(true) => fail(format!(
            "{} is loaded but this process did not start under it (loaded since?); fix: run \
             {PACKAGED_BINARY} again",
            profile.display()
        )),
        _ => fail(format!(
            "{} is installed but not loaded; fix: sudo apparmor_parser -r {}",
            profile.display(),
            profile.display()
        )),
    }
}
