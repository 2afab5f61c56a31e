//! A build starts on the Essential set while the other packages still download: the stage
//! waits for them only when it needs them, and a download that fails stops the build with the
//! download's own error.

#[path = "support/mini_recipe.rs"]
mod mini_recipe;
#[path = "support/minidistro.rs"]
mod minidistro;
mod support;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use mini_recipe::{INGOT, MiniRecipe, arg, mini_recipe, require_build_privileges};
use support::{Fault, FixtureOptions, faulty_server};

/// `ingot build -v` of `m` from `mirror` into `<dir>/out`, stderr piped.
fn start_build(m: &MiniRecipe, mirror: &str) -> std::process::Child {
    Command::new(INGOT)
        .args(["build", arg(&m.recipe), "--mirror", mirror, "--cache-dir"])
        .arg(m.dir.join("cache"))
        .arg("--out")
        .arg(m.dir.join("out"))
        .args(["--next", "-v"])
        .env_remove("SOURCE_DATE_EPOCH")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

#[test]
fn the_essential_set_is_installed_while_the_other_packages_download() {
    require_build_privileges();
    let m = mini_recipe(&[], &[], FixtureOptions::default());
    // mini-hello (not Essential) is held back until the stage, having installed the Essential
    // set, says it waits for it; a build that waited for every download first would never
    // get there (the watchdog would release it after two minutes, and the test fails).
    let released: &'static AtomicBool = Box::leak(Box::new(AtomicBool::new(false)));
    let server = faulty_server(&m.mirror, "mini-hello", Fault::HoldUntil(released));
    let mut child = start_build(&m, &server.url);
    let stderr = child.stderr.take().unwrap();
    let watchdog_fired: &'static AtomicBool = Box::leak(Box::new(AtomicBool::new(false)));
    std::thread::spawn(move || {
        std::thread::sleep(Duration::from_secs(120));
        if !released.swap(true, Ordering::SeqCst) {
            watchdog_fired.store(true, Ordering::SeqCst);
        }
    });
    let mut lines = Vec::new();
    for line in BufReader::new(stderr).lines() {
        let line = line.unwrap();
        if line.contains("waiting for the other packages") {
            released.store(true, Ordering::SeqCst);
        }
        lines.push(line);
    }
    let status = child.wait().unwrap();
    let log = lines.join("\n");
    assert!(status.success(), "{log}");
    assert!(
        !watchdog_fired.load(Ordering::SeqCst),
        "the Essential set was not installed before mini-hello arrived:\n{log}"
    );
    assert!(server.faults() >= 1, "mini-hello was never requested");
    let at = |needle: &str| {
        lines
            .iter()
            .position(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("no line with {needle:?}:\n{log}"))
    };
    // The stage asked for the others only once the Essential set was configured.
    assert!(
        at("extracting 2 essential packages") < at("Setting up mini-base"),
        "{log}"
    );
    assert!(
        at("Setting up mini-base") < at("waiting for the other packages"),
        "{log}"
    );
    assert!(
        at("waiting for the other packages") < at("Unpacking mini-hello"),
        "{log}"
    );
}

#[test]
fn a_package_that_fails_to_download_meanwhile_fails_the_build_naming_it() {
    require_build_privileges();
    let m = mini_recipe(&[], &[], FixtureOptions::default());
    let server = faulty_server(&m.mirror, "mini-hello", Fault::Status(404));
    let child = start_build(&m, &server.url);
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    // The download's error, naming the package's URL, not the stage's consequence.
    let error_lines: Vec<&str> = err
        .lines()
        .filter(|l| l.starts_with("ingot: error"))
        .collect();
    assert_eq!(error_lines.len(), 1, "{err}");
    assert!(error_lines[0].contains("mini-hello"), "{err}");
    assert!(error_lines[0].contains("not found"), "{err}");
    // Nothing published, no staging left.
    let out_dir = m.dir.join("out");
    let published: Vec<String> = std::fs::read_dir(&out_dir)
        .map(|d| {
            d.filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.ends_with(".tar.gz") || n.contains(".partial") || n.ends_with(".log"))
                .collect()
        })
        .unwrap_or_default();
    assert!(published.is_empty(), "{published:?}");
    let staging = m.dir.join("cache/staging");
    assert!(
        !staging.exists() || std::fs::read_dir(&staging).unwrap().next().is_none(),
        "staging left behind"
    );
}
