//! `ingot doctor` and the stage's preflight: can this host build rootless, and if not, the one
//! line that says how to fix it.
//!
//! Checks the kernel switches for user namespaces, the caller's subordinate id ranges, the
//! setuid `newuidmap`/`newgidmap` helpers, and finally tries the real thing (a child in new
//! user, mount and pid namespaces that mounts a tmpfs, a fresh /proc and devpts and chowns a
//! file to subordinate ids). It only reads host configuration; it never changes it.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Stdio;

use super::check::Check;
use super::child::ChildTask;
use super::idmap::{self, SUBORDINATE_IDS_NEEDED};
use super::{StageError, spawn};

fn read_sysctl(path: &str) -> Option<i64> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// All checks for the calling user, with the trial re-executing `exe`.
pub(crate) fn run_checks(exe: &Path) -> Vec<Check> {
    let uid = nix::unistd::geteuid().as_raw();
    let root = uid == 0;
    let mut checks = Vec::new();

    checks.push(match read_sysctl("/proc/sys/user/max_user_namespaces") {
        Some(0) => Check::fail(
            "user namespaces",
            "user namespaces are disabled (user.max_user_namespaces = 0); fix: sysctl -w \
             user.max_user_namespaces=15000 and persist it in /etc/sysctl.d/",
        ),
        Some(n) => Check::pass("user namespaces", format!("user.max_user_namespaces = {n}")),
        None => Check::pass(
            "user namespaces",
            "user.max_user_namespaces not readable; assuming enabled",
        ),
    });
    if root {
        checks.push(Check::pass(
            "unprivileged user namespaces",
            "running as real root: not needed (ids mapped directly)",
        ));
        checks.push(root_range_check());
    } else {
        checks.push(
            match read_sysctl("/proc/sys/kernel/unprivileged_userns_clone") {
                Some(0) => Check::fail(
                    "unprivileged user namespaces",
                    "unprivileged user namespaces are disabled (kernel.unprivileged_userns_clone = \
                 0); fix: sysctl -w kernel.unprivileged_userns_clone=1 and persist it in \
                 /etc/sysctl.d/",
                ),
                Some(n) => Check::pass(
                    "unprivileged user namespaces",
                    format!("kernel.unprivileged_userns_clone = {n}"),
                ),
                None => Check::pass(
                    "unprivileged user namespaces",
                    "no kernel.unprivileged_userns_clone switch on this kernel",
                ),
            },
        );
        // The binary re-executed into the namespace is the one the profile must cover.
        checks.push(super::apparmor::userns_check(Path::new("/"), exe));
        let user = idmap::caller_name(uid);
        checks.push(subid_check(
            &user,
            uid,
            Path::new("/etc/subuid"),
            Path::new("/etc/subgid"),
        ));
        for tool in ["newuidmap", "newgidmap"] {
            checks.push(map_tool_check(tool));
        }
    }
    if checks.iter().all(|c| c.ok) {
        checks.push(trial(exe));
    }
    // Optional: only recipes with `[provision] network = true` need it, so it never fails.
    checks.push(match super::usernet::Helper::find(None) {
        Ok(helper) => Check::pass(
            "provision network",
            format!(
                "{} ({}) for recipes with [provision] network = true",
                helper.stack,
                helper.program.display()
            ),
        ),
        Err(why) => Check::pass(
            "provision network",
            format!("not available, needed only by recipes with network = true: {why}"),
        ),
    });
    checks
}

/// Real root's range: the image's ids land there, never on host uid 0.
fn root_range_check() -> Check {
    let name = "root's id range";
    let mut found = Vec::new();
    for path in ["/etc/subuid", "/etc/subgid"] {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => return Check::fail(name, format!("cannot read {path}: {e}")),
        };
        let (r, default) = idmap::root_range(&text);
        let end = u64::from(r.start) + u64::from(r.count) - 1;
        found.push(if default {
            format!(
                "{path}: no entry of 65536 ids for root, using the default {}..{end}",
                r.start
            )
        } else {
            format!("{path}: root's {}..{end}", r.start)
        });
    }
    Check::pass(name, format!("image ids 0..65535 on {}", found.join(", ")))
}

/// The subordinate-id check for `user` (uid `uid`) against the given subuid/subgid files.
pub fn subid_check(user: &str, uid: u32, subuid: &Path, subgid: &Path) -> Check {
    let name = "subordinate ids";
    let mut found = Vec::new();
    for path in [subuid, subgid] {
        match idmap::subid_range_in(path, user, uid) {
            Ok(r) => found.push(format!(
                "{}: {}..{} ({} ids)",
                path.display(),
                r.start,
                u64::from(r.start) + u64::from(r.count) - 1,
                r.count
            )),
            Err(idmap::IdMapError::NoRange { .. }) => {
                return Check::fail(
                    name,
                    format!(
                        "user {user} has no range of at least {SUBORDINATE_IDS_NEEDED} ids in {}; \
                         fix: usermod --add-subuids 100000-165535 --add-subgids 100000-165535 {user}",
                        path.display()
                    ),
                );
            }
            Err(e) => return Check::fail(name, e.to_string()),
        }
    }
    Check::pass(name, found.join(", "))
}

fn find_in_path(tool: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/bin", "/usr/sbin", "/bin", "/sbin"].map(PathBuf::from))
        .map(|d| d.join(tool))
        .find(|p| p.is_file())
}

fn map_tool_check(tool: &str) -> Check {
    let Some(path) = find_in_path(tool) else {
        return Check::fail(
            tool,
            format!("{tool} is not installed; fix: apt-get install uidmap"),
        );
    };
    let Ok(meta) = std::fs::metadata(&path) else {
        return Check::fail(tool, format!("cannot inspect {}", path.display()));
    };
    let setuid_root = meta.permissions().mode() & 0o4000 != 0 && meta.uid() == 0;
    let has_caps = xattr::get(&path, "security.capability")
        .ok()
        .flatten()
        .is_some();
    if setuid_root || has_caps {
        Check::pass(
            tool,
            format!(
                "{} ({})",
                path.display(),
                if setuid_root {
                    "setuid root"
                } else {
                    "file capabilities"
                }
            ),
        )
    } else {
        Check::fail(
            tool,
            format!(
                "{} is neither setuid root nor has file capabilities; fix: apt-get install \
                 --reinstall uidmap",
                path.display()
            ),
        )
    }
}

fn trial(exe: &Path) -> Check {
    let name = "namespace trial";
    let released = match spawn::spawn_in_namespace(exe, ChildTask::Probe, Stdio::null(), &[]) {
        Ok(r) => r,
        Err(e) => return Check::fail(name, e.to_string()),
    };
    let mut child = released.child;
    let output = {
        let mut text = String::new();
        if let Some(mut err) = child.stderr.take() {
            let _ = std::io::Read::read_to_string(&mut err, &mut text);
        }
        text
    };
    match child.wait() {
        Ok(s) if s.success() => {
            let note = output
                .lines()
                .filter_map(|l| l.strip_prefix("ingot: stage: "))
                .collect::<Vec<_>>()
                .join("; ");
            let found = "mapped ids 0..65535, mounted tmpfs, /proc and devpts, chowned to \
                         subordinate ids";
            if note.is_empty() {
                Check::pass(name, found)
            } else {
                Check::pass(name, format!("{found} ({note})"))
            }
        }
        Ok(s) => Check::fail(
            name,
            super::last_error_line(output.lines()).unwrap_or_else(|| {
                format!("trial child {s}: {}", output.trim().replace('\n', " | "))
            }),
        ),
        Err(e) => Check::fail(name, format!("waiting for the trial child: {e}")),
    }
}

/// The preflight of a build: the first failing check as an error.
pub(crate) fn preflight(exe: &Path) -> Result<(), StageError> {
    match run_checks(exe).into_iter().find(|c| !c.ok) {
        Some(c) => Err(StageError::Preflight(format!("{}: {}", c.name, c.message))),
        None => Ok(()),
    }
}
