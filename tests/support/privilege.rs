//! What a test needs from the host, checked up front: a test that cannot run here FAILS with
//! the reason and the way to run it; it never returns early and passes.
//!
//! Used by file path (`#[path = "support/privilege.rs"] mod privilege;`) from test files that
//! do not include the whole support module.
#![allow(dead_code)]

use std::process::Command;

/// Fail the calling test unless this process is real root. `why` says what needs root
/// (`chown to arbitrary owners`, `chroot`).
pub fn require_root(why: &str) {
    if nix::unistd::geteuid().is_root() {
        return;
    }
    panic!(
        "this test needs real root ({why}) and runs as uid {}: run it as root, as CI's first \
         pass does (.ci/run); the ordinary-user pass names it in --skip",
        nix::unistd::geteuid()
    );
}

/// Fail the calling test unless `ingot build` can run here: real root, or an ordinary user with
/// a subordinate id range, `newuidmap`/`newgidmap` and user namespaces — exactly what
/// `ingot doctor` checks (including a trial in a real namespace). The panic lists every
/// failing check with its fix.
pub fn require_build_privileges(ingot: &str) {
    let out = Command::new(ingot)
        .args(["doctor", "--json"])
        .output()
        .unwrap_or_else(|e| panic!("cannot run {ingot} doctor: {e}"));
    if out.status.success() {
        return;
    }
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{ingot} doctor --json printed no JSON ({e}): {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    let failing: Vec<String> = report["checks"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|c| c["ok"] != serde_json::Value::Bool(true))
        .map(|c| {
            format!(
                "{}: {}",
                c["name"].as_str().unwrap_or("?"),
                c["message"].as_str().unwrap_or("?")
            )
        })
        .collect();
    panic!(
        "this test runs a real build and this host cannot build as uid {} (`ingot doctor`): {}",
        nix::unistd::geteuid(),
        failing.join("; ")
    );
}
